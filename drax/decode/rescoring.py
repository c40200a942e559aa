"""Rescoring candidates with an external autoregressive model: Whisper's decoder (paper Sec. 3.2 (iii)).

All candidates of one utterance go through Whisper's decoder in one teacher-forced forward pass over
the encoder states Drax already computed (the rescorer must be the Whisper whose encoder the Drax
model uses); the score is the candidate's total log-likelihood including the end token:

    log p(<|endoftext|>, y_n, ..., y_1 | <|startoftranscript|><|lang|><|transcribe|><|notimestamps|>, audio)
"""
from __future__ import annotations

import torch

from drax.pretrained.whisper import resolve_whisper
from drax.text.units import EOT, prompt_names


class WhisperRescorer:
    def __init__(self, whisper: str, device: str = "cpu"):
        """whisper: a Whisper model dir or hub id (the one the recipe's encoder comes from)."""
        # slow to import; only this path needs it
        from transformers import AutoTokenizer, WhisperForConditionalGeneration


        source = resolve_whisper(whisper, key="decode_conf.rescorer")
        self.model = WhisperForConditionalGeneration.from_pretrained(source).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.device = device
        self.eot = self.tokenizer.convert_tokens_to_ids(EOT)

    def prompt(self, lang: str | None) -> list[int]:
        """Whisper's prompt for `lang` (None: without its language token)."""
        ids = self.tokenizer.convert_tokens_to_ids(prompt_names(lang))
        if self.tokenizer.unk_token_id in ids:
            raise ValueError(f"language {lang!r} has no token in the rescorer's Whisper vocabulary: "
                             "give a Whisper language code (en, de, zh, ...)")
        return ids

    @torch.no_grad()
    def score(self, encoder_out: torch.Tensor, candidates: list[str], lang: str | None) -> torch.Tensor:
        """Log-likelihoods (K,) of the K candidate texts given one utterance's encoder states (T, D)."""
        d_model = self.model.config.d_model
        if encoder_out.shape[-1] != d_model:
            raise ValueError(f"rescorer d_model {d_model} does not match the encoder states "
                             f"({encoder_out.shape[-1]}): rescore with the Whisper the encoder came from")
        prompt = self.prompt(lang)
        seqs = [prompt + self.tokenizer.encode(" " + text.strip(), add_special_tokens=False) + [self.eot]
                for text in candidates]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.eot, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
        ids = ids.to(self.device)
        memory = encoder_out[None].to(self.device).expand(len(seqs), -1, -1)
        logits = self.model(decoder_input_ids=ids[:, :-1], encoder_outputs=(memory,)).logits
        logp = logits.float().log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
        lengths = torch.tensor([len(s) for s in seqs], device=self.device)
        target = torch.arange(1, width, device=self.device)[None]  # index of each predicted token
        scored = (target >= len(prompt)) & (target < lengths[:, None])  # text + end token
        return (logp * scored).sum(-1).cpu()
