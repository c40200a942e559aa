"""The autoregressive yardstick for Drax as an ESPnet ASR model (`model: drax_ar`).

Drax's own DiT decoder (`decoder: dit`, initialised from Whisper's decoder with
decoder_conf.init_from_whisper), trained on the same encoder states, units, batches and steps, but
autoregressively: teacher forcing on the clean sequence [prompt, text, end] with causal
self-attention (DiTDecoder.step), and the next-token cross-entropy (mean over tokens) on the
positions after the prompt, i.e. the text tokens and the first end token. Row j of the logits is
read from the state of position j and predicts token j + 1, Whisper's convention, so at
initialisation the model is Whisper's decoder. The DiT's time input is fixed at t = 1, the clean end
of Drax's path (x_t = x1); its modulation weights start at zero, so t only adds what training makes
of it. Decoding is greedy with a key/value cache (drax.decode.autoregressive.DiTAR), the prompt (and
so the language) given, up to `max_length` positions.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel

from drax.asr.model import attach_espnet_parts, transcript_cap
from drax.decode.autoregressive import DiTAR, batched_greedy
from drax.options import load_options
from drax.text.units import prompt_ids

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DraxARModelOptions:
    """`model_conf` of `model: drax_ar`."""

    prompt_template: list[str] | None = None
    eot_token: str = "<sos/eos>"
    # the longest sequence, prompt and end token included, in training (longer texts are cut) and
    # decoding (default: decoder_conf.max_positions; a recipe sets Drax's output length L)
    max_length: int | None = None
    audio_dropout: float = 0.0  # the probability that an utterance sees only the null-audio frame in training


class DraxARModel(ESPnetASRModel):
    """Frozen (or trainable) encoder + DiT decoder trained with teacher forcing, decoded greedily."""

    T = 1.0  # the DiT's time input, in training and decoding: the clean end of Drax's path

    def __init__(self, vocab_size: int, token_list, frontend, specaug, normalize, preencoder, encoder, postencoder,
                 decoder, ctc, joint_network=None, **model_conf):
        o = load_options(DraxARModelOptions, model_conf, "model_conf")
        AbsESPnetModel.__init__(self)  # see attach_espnet_parts
        attach_espnet_parts(self, "drax_ar", vocab_size, list(token_list), frontend, specaug, normalize,
                            preencoder, encoder, postencoder, decoder, o.prompt_template, o.eot_token)
        if not self.prompt_template:
            raise ValueError("model 'drax_ar' needs model_conf.prompt_template: decoding starts from the prompt")
        max_positions = decoder.positions.num_embeddings if decoder.positions is not None else 0
        max_length = o.max_length or max_positions
        if not max_length:
            raise ValueError("model_conf.max_length is needed when the decoder has no decoder_conf.max_positions")
        if max_positions and max_length > max_positions:
            raise ValueError(f"model_conf.max_length {max_length} exceeds decoder_conf.max_positions {max_positions}")
        if self.prompt_length >= max_length:
            raise ValueError(f"model_conf.prompt_template is not shorter than max_length ({max_length})")
        self.max_length = max_length
        self.audio_dropout = o.audio_dropout
        if o.audio_dropout == 0:  # the null frame is never read: no parameter without a gradient under DDP
            decoder.null_audio.requires_grad_(False)

    def prompt_ids(self, lang: str) -> list[int]:
        """Ids of the prompt for language `lang` (e.g. 'en')."""
        if lang is None:
            raise ValueError("the AR yardstick decodes with a given language (it has no language detection)")
        return prompt_ids(self.prompt_template, self.token_list, lang)

    # ---- training ------------------------------------------------------------------------------
    def build_sequences(self, text: torch.Tensor, text_lengths: torch.Tensor):
        """Teacher-forcing sequences (B, n) [prompt, text, end, end, ...] and the position of each
        row's first end token (B,); texts (padded with -1) are cut to max_length - 1 tokens."""
        n = text_lengths.clamp(max=self.max_length - 1)
        if (text_lengths > self.max_length - 1).any():
            logger.warning("%d utterance(s) longer than max_length - 1 = %d tokens were truncated",
                           int((text_lengths > self.max_length - 1).sum()), self.max_length - 1)
        width = int(n.max())
        seq = torch.full((text.shape[0], width + 1), self.eot_id, dtype=torch.long, device=text.device)
        keep = torch.arange(width, device=text.device)[None] < n[:, None]
        seq[:, :width] = torch.where(keep, text[:, :width], seq[:, :width])
        p, fixed = self.prompt_length, self.prompt_fixed
        if (n < p).any() or ((seq[:, :p] != fixed) & (fixed >= 0)).any():
            raise ValueError(
                f"a text does not start with model_conf.prompt_template {self.prompt_template}; "
                "write the prompt tokens at the start of every transcript in the data's text file"
            )
        return seq, n

    def forward(self, speech, speech_lengths, text, text_lengths, **kwargs):
        enc, enc_lens = self.encode(speech, speech_lengths)
        seq, end = self.build_sequences(text, text_lengths)
        b = seq.shape[0]
        drop = None
        if self.training and self.audio_dropout > 0:
            drop = torch.rand(b, device=seq.device) < self.audio_dropout
        audio = self.decoder.encode_audio(enc, enc_lens, drop)
        t = torch.full((b,), self.T, device=seq.device)
        logits, _ = self.decoder.step(seq[:, :-1], t, audio)  # row j predicts seq[:, j + 1]
        pos = torch.arange(1, seq.shape[1], device=seq.device)[None]
        target = (pos >= self.prompt_length) & (pos <= end[:, None])  # text and the first end token
        labels = seq[:, 1:][target]
        loss = F.cross_entropy(logits[target], labels)
        stats = dict(loss=loss.detach(), acc=(logits[target].argmax(-1) == labels).float().mean())
        loss, stats, weight = force_gatherable((loss, stats, b), loss.device)
        return loss, stats, weight

    # ---- inference -----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, speech: torch.Tensor, speech_lengths: torch.Tensor, prompt: torch.Tensor,
                 max_length: int | None = None, max_token_rate: float | None = None) -> list[list[int]]:
        """Encode a batch and transcribe it: `generate_encoded` on `encode(speech, speech_lengths)`."""
        return self.generate_encoded(*self.encode(speech, speech_lengths), prompt, max_length, max_token_rate)

    def generate_encoded(self, enc: torch.Tensor, enc_lens: torch.Tensor, prompt: torch.Tensor,
                         max_length: int | None = None, max_token_rate: float | None = None) -> list[list[int]]:
        """Greedy transcription of encoder output (B, T, D), lengths (B,), with a key/value cache.

        prompt: (B, prompt_length) ids, `prompt_ids(lang)` of each utterance's language.
        max_length: positions, prompt and end token included (default: model_conf.max_length).
        max_token_rate: at most `transcript_cap(enc_lens, max_token_rate)` tokens per transcript.
        Returns each utterance's transcript ids, prompt and end token dropped.
        """
        if prompt.shape[1] != self.prompt_length or (prompt < 0).any():
            raise ValueError(f"the AR yardstick needs the whole prompt ({self.prompt_length} ids, language given)")
        length = max_length or self.max_length
        caps = None if max_token_rate is None else transcript_cap(enc_lens, max_token_rate)
        rows = batched_greedy(DiTAR(self.decoder, self.eot_id, self.T), enc, enc_lens, prompt.to(enc.device),
                              length - self.prompt_length, caps)
        return [[tok for tok in row if tok != self.eot_id] for row in rows]
