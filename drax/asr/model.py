"""Drax as an ESPnet ASR model (`model: drax`).

Training (paper Sec. 3.2, Eq. 5, 8, 9; App. C.2): the target x1 is the token sequence
[prompt, text, end, end, ...] of fixed length L. Draw t ~ U[0, 1] and x_t from the configured
probability path, predict p_{1|t}(x1 | x_t, audio) with the DiT decoder, and minimise

    L = L_CDFM + L_mid = CE(p_{1|t}, x1) + CE(p_mid, x1)

over the positions that are not pinned. Options that change how much is learned per step, each with
the paper's behaviour as its default (the learning-efficiency study, egs/mini/tables/efficiency):

    pad_weight              loss weight of the end tokens after the first one (1: every position)
    canvas_margin           null: a fixed canvas of L = output_length; m: each utterance's canvas is its
                            own length + 1 + U{0..2m} end tokens (m at validation), the rest of the batch
                            width pinned, and the length comes from a LengthPredictor at inference
    length_predictor        true: that LengthPredictor; false (a causal decoder only): none, decoding
                            runs on the full L up to the first end token, as with the fixed canvas;
                            the positions after the end cannot change the text before them
    time_sampling           uniform (t ~ U[0, 1]) | stratified (one t in each of B strata of a batch)
    time_power              t -> t^power (> 1: more training on noisy states)
    time_draws              k: each utterance trained at k times t per step (own t, noise, prompt
                            prefix), sharing its encoder states, p_mid and cross-attention K/V
    loss_positions          all | noised (only positions drawn from the source or the middle)
    attention_anneal_steps  0: bidirectional from the start; n: self-attention mask "causal OR
                            Bernoulli(step / n)" per (query, key) over the first n updates (DiffuLLaMA)
    active_block            null: the path noises the whole canvas (the paper); n (a causal decoder with
                            the shifted readout): block-parallel Drax. Each utterance gets one active
                            block of n positions at a random start s in its text (up to its end token):
                            positions before s are the clean committed prefix (causal, read at t = 1),
                            the block follows the path at t and is bidirectional inside, what follows
                            is not seen. The block decoder (drax/flow/block.py) commits blocks of n
    block_loss              with active_block: one (a random block per utterance, as above; one forward
                            of the canvas) | all (every block of the canvas, on a grid from the end of
                            the prompt, each after its clean prefix: the noised canvas beside the clean
                            one in one forward of twice the positions, DiTDecoder.forward_blocks)
    prefix_loss_weight      with active_block: weight of the next-token CE on the clean prefix (its
                            logits are those of an AR decoder, computed anyway); 0: the block's loss only
    consistency_prob        (a causal decoder) probability that an utterance is trained on a jacobi state
                            instead of its path draw: its text before a settle point s drawn over its text
                            and end token, from s on the decoder's own greedy prediction of the draw (one
                            forward without gradient), read at t = 1 as the jacobi sampler reads it
                            (consistency training, CLLM arXiv 2403.00835, the text as the fixed point)

Every `text` starts with the prompt described by
`prompt_template`, e.g. Whisper's <|startoftranscript|><|{lang}|><|transcribe|><|notimestamps|>; it stays pinned;
the language token goes through the path with probability `lang_replace_prob`; with probability
`prompt_prob` a random text prefix stays pinned too (this is what speculative decoding conditions on).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel

from drax.decode.options import DecodingOptions
from drax.flow.block import BlockSampler
from drax.flow.elbo import trajectory_elbo
from drax.flow.noise import RowNoise, randint, uniform
from drax.flow.path import build_path
from drax.flow.sampler import ConfidenceOrder, EulerJumps, JacobiSteps, SampleOutput
from drax.flow.scheduler import PolynomialScheduler
from drax.nets.dit import Denoiser, DiTDecoder, PrefixCache
from drax.nets.length import LengthPredictor
from drax.nets.pmid import PMidNetwork
from drax.nets.whisper_init import init_dit_from_whisper
from drax.options import check_range, load_options
from drax.text.units import prompt_ids

logger = logging.getLogger(__name__)


@dataclass
class GenerateOutput:
    tokens: torch.Tensor  # (B, K, L) candidates per utterance
    samples: SampleOutput  # raw sampler output over the B*K rows (trajectory when asked for)
    encoder_out: torch.Tensor  # (B, T, D) and its lengths: reused by external rescoring
    encoder_out_lens: torch.Tensor
    elbo: torch.Tensor | None = None  # (B, K) trajectory ELBO of each candidate, when asked for


TIME_SAMPLINGS = ("uniform", "stratified")
LOSS_POSITIONS = ("all", "noised")
BLOCK_LOSSES = ("one", "all")


# tokens a capped transcript may hold beyond rate × frames: a short prompt's few frames round to
# almost no tokens
LENGTH_SLACK = 2


def transcript_cap(enc_lens: torch.Tensor, max_token_rate: float) -> torch.Tensor:
    """The most transcript tokens (B,) each utterance of enc_lens (B,) encoder frames may hold:
    ceil(max_token_rate × frames) + LENGTH_SLACK. A model that misses its end token on audio unlike
    its training data (real speech, a one-word prompt) otherwise repeats itself to the end of L."""
    return (enc_lens.float() * max_token_rate).ceil().long() + LENGTH_SLACK


def weighted_ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Sum of weight * CE over positions with weight > 0, divided by the sum of the weights."""
    sel = weight > 0
    ce = F.cross_entropy(logits[sel], target[sel], reduction="none")
    return (ce * weight[sel]).sum() / weight[sel].sum().clamp_min(1e-8)


def attach_espnet_parts(model, name: str, vocab_size: int, token_list: list[str], frontend, specaug, normalize,
                        preencoder, encoder, postencoder, decoder, prompt_template, eot_token: str) -> None:
    """What every Drax-family ESPnet model (`drax`, `drax_ar`) sets up alike: the ESPnet modules and the
    attributes ESPnetASRModel.encode()/collect_feats() read, the DiT decoder (from Whisper's decoder if
    asked), the token list, the prompt (its fixed ids in `prompt_fixed`, -1 for the language slot) and
    the end token. ESPnetASRModel.__init__ is not called: it builds CTC/attention losses these models do
    not use; the parent class stays for ESPnet's type check and for encode()/collect_feats()."""
    if not isinstance(decoder, DiTDecoder):
        raise ValueError(f"model '{name}' needs `decoder: dit` (got {type(decoder).__name__})")
    if eot_token not in token_list:
        raise ValueError(
            f"model_conf.eot_token '{eot_token}' is not in the token list; add it to the token list "
            "or set eot_token to one of its entries (ESPnet lists end with '<sos/eos>')"
        )
    model.prompt_template = list(prompt_template or [])
    for tok in model.prompt_template:
        if "{lang}" not in tok and tok not in token_list:
            raise ValueError(f"model_conf.prompt_template token '{tok}' is not in the token list")
    model.vocab_size = vocab_size
    model.token_list = token_list
    model.frontend, model.specaug, model.normalize = frontend, specaug, normalize
    model.preencoder, model.encoder, model.postencoder = preencoder, encoder, postencoder
    model.decoder = decoder
    if decoder.init_from_whisper:
        init_dit_from_whisper(decoder, decoder.init_from_whisper, token_list)
    model.ctc = None
    model.autocast_frontend = False
    model.extract_feats_in_collect_stats = True
    model.is_encoder_whisper = False
    model.prompt_length = len(model.prompt_template)
    model.eot_id = token_list.index(eot_token)
    fixed = [-1 if "{lang}" in tok else token_list.index(tok) for tok in model.prompt_template]
    model.register_buffer("prompt_fixed", torch.tensor(fixed, dtype=torch.long), persistent=False)


@dataclass(frozen=True)
class DraxModelOptions:
    """`model_conf` of `model: drax` (ESPnet's --model_conf), each key described in this module's docstring."""

    path: str = "audio_mid"
    scheduler: str | None = None
    scheduler_conf: dict | None = None
    output_length: int = 64
    prompt_template: list[str] | None = None
    eot_token: str = "<sos/eos>"
    audio_dropout: float = 0.1
    lang_replace_prob: float = 0.2
    prompt_prob: float = 0.0
    gumbel_tau: float = 1.0
    pmid_conf: dict | None = None
    pad_weight: float = 1.0
    canvas_margin: int | None = None
    length_predictor: bool = True
    length_conf: dict | None = None
    time_sampling: str = "uniform"
    time_power: float = 1.0
    time_draws: int = 1
    loss_positions: str = "all"
    attention_anneal_steps: int = 0
    active_block: int | None = None
    block_loss: str = "one"
    prefix_loss_weight: float = 1.0
    consistency_prob: float = 0.0

    def __post_init__(self):
        what = "model_conf"
        check_range(what, "output_length", self.output_length, 1)
        for key in ("audio_dropout", "lang_replace_prob", "prompt_prob", "consistency_prob"):  # probabilities
            check_range(what, key, getattr(self, key), 0, high=1)
        for key, choices in (("time_sampling", TIME_SAMPLINGS), ("loss_positions", LOSS_POSITIONS),
                             ("block_loss", BLOCK_LOSSES)):
            check_range(what, key, getattr(self, key), choices=choices)
        for key in ("gumbel_tau", "time_power"):
            check_range(what, key, getattr(self, key), 0, strict=True)
        for key, low in (("pad_weight", 0), ("attention_anneal_steps", 0), ("prefix_loss_weight", 0),
                         ("time_draws", 1), ("canvas_margin", 0), ("active_block", 1)):  # None passes
            check_range(what, key, getattr(self, key), low)
        if self.active_block is not None:
            if self.canvas_margin is not None and self.length_predictor:
                raise ValueError("model_conf.active_block: the block decoder stops at the end token and reads "
                                 "no predicted length; set length_predictor: false")
            if self.prompt_prob > 0:
                raise ValueError("model_conf.active_block trains on a clean committed prefix already; a pinned "
                                 f"random prefix (prompt_prob {self.prompt_prob}) would only take it out of the "
                                 "prefix loss: set prompt_prob: 0")


class DraxASRModel(ESPnetASRModel):
    """Frozen (or trainable) encoder + DiT decoder + p_mid, trained with discrete flow matching."""

    def __init__(self, vocab_size: int, token_list, frontend, specaug, normalize, preencoder, encoder, postencoder,
                 decoder, ctc, joint_network=None, **model_conf):
        o = load_options(DraxModelOptions, model_conf, "model_conf")
        AbsESPnetModel.__init__(self)  # see attach_espnet_parts
        token_list = list(token_list)
        attach_espnet_parts(self, "drax", vocab_size, token_list, frontend, specaug, normalize, preencoder,
                            encoder, postencoder, decoder, o.prompt_template, o.eot_token)
        self.special_ids = frozenset(i for i, tok in enumerate(token_list) if tok.startswith("<|") and tok.endswith("|>"))
        if len(self.prompt_template) >= o.output_length:
            raise ValueError(f"model_conf.prompt_template is not shorter than output_length ({o.output_length})")
        if not o.length_predictor and (o.canvas_margin is None or decoder.attention_block != 1):
            raise ValueError(
                "model_conf.length_predictor: false decodes a fitted canvas on the full output_length, which "
                "needs model_conf.canvas_margin and causal self-attention (decoder_conf.attention_block: 1); "
                f"got canvas_margin {o.canvas_margin}, attention_block {decoder.attention_block}")
        if o.active_block is not None:
            if decoder.attention_block != 1 or not decoder.shift_readout:
                raise ValueError("model_conf.active_block trains a causal decoder whose logits of position j come "
                                 "from state j - 1: set decoder_conf.attention_block: 1 and shift_readout: true "
                                 f"(got {decoder.attention_block}, {decoder.shift_readout})")
            if decoder.preserve is not None:
                raise ValueError("model_conf.active_block: the block decoder has no pinned-position embedding; "
                                 "set decoder_conf.preserve_embedding: false")
        if o.consistency_prob > 0 and (decoder.attention_block != 1 or o.active_block is not None):
            raise ValueError("model_conf.consistency_prob trains the jacobi states of a causal decoder: set "
                             "decoder_conf.attention_block: 1 and no model_conf.active_block "
                             f"(got {decoder.attention_block}, {o.active_block})")

        self.path = build_path(o.path, vocab_size, o.scheduler, o.scheduler_conf, o.gumbel_tau)
        self.output_length = o.output_length
        lang_slots = [i for i, tok in enumerate(self.prompt_template) if "{lang}" in tok]
        self.lang_position = lang_slots[0] if lang_slots else None
        self.audio_dropout = o.audio_dropout
        if o.audio_dropout == 0:  # the null frame is never read: no parameter without a gradient under DDP
            decoder.null_audio.requires_grad_(False)
        self.lang_replace_prob = o.lang_replace_prob
        self.prompt_prob = o.prompt_prob
        enc_size = decoder.audio_proj[0].in_features  # what the encoder (+ post-encoder) outputs
        self.pmid = (
            PMidNetwork(vocab_size, enc_size, o.output_length, **(o.pmid_conf or {}))
            if self.path.uses_audio_pmid else None
        )
        self.pad_weight = float(o.pad_weight)
        self.canvas_margin = o.canvas_margin
        self.length_predictor = (
            LengthPredictor(enc_size, **(o.length_conf or {})) if o.canvas_margin is not None and o.length_predictor
            else None
        )
        self.time_sampling, self.time_power = o.time_sampling, float(o.time_power)
        self.time_draws = o.time_draws
        self.loss_positions = o.loss_positions
        self.attention_anneal_steps = int(o.attention_anneal_steps)
        self.active_block, self.block_loss = o.active_block, o.block_loss
        self.prefix_loss_weight = float(o.prefix_loss_weight)
        self.consistency_prob = float(o.consistency_prob)
        # training updates seen, saved with the model: a resumed run continues the anneal and the noise
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self._register_load_state_dict_pre_hook(_count_from_zero)
        self.noise_seed = torch.initial_seed()  # the trainer's seed (ESPnet seeds before building)

    def prompt_ids(self, lang: str | None = None) -> list[int]:
        """Ids of the prompt for language `lang` (e.g. 'en'); -1 leaves the language slot free."""
        return prompt_ids(self.prompt_template, self.token_list, lang)

    @torch.no_grad()
    def detect_language(self, enc: torch.Tensor, enc_lens: torch.Tensor) -> list[str]:
        """The most probable language of each utterance of encoder output (B, T, D): the decoder's
        logits at the prompt's language slot (canvas: the prompt, read as clean), over the language
        tokens of the token list only, as Whisper's detect_language does."""
        from transformers.models.whisper.tokenization_whisper import LANGUAGES

        if self.lang_position is None:
            raise ValueError(f"model_conf.prompt_template {self.prompt_template} has no language slot")
        slot = self.prompt_template[self.lang_position]
        codes = [code for code in LANGUAGES if slot.format(lang=code) in self.token_list]
        if not codes:
            raise ValueError(f"no language token {slot} in the token list")
        ids = torch.tensor([self.token_list.index(slot.format(lang=code)) for code in codes], device=enc.device)
        x = torch.cat([self.prompt_fixed, self.prompt_fixed.new_tensor([self.eot_id])]).clamp(min=0)
        x[self.lang_position] = self.eot_id
        x = x[None].expand(enc.shape[0], -1)
        logits = self.decoder(x, torch.ones(x.shape[0], device=enc.device), self.decoder.encode_audio(enc, enc_lens))
        return [codes[i] for i in logits[:, self.lang_position, ids].argmax(-1).tolist()]

    # ---- targets -------------------------------------------------------------------------------
    def build_targets(self, text: torch.Tensor, text_lengths: torch.Tensor, noise: RowNoise | None = None):
        """x1 (B, W): text padded with the end token; pinned (B, W): prompt (and sampled prefix) and,
        with a fitted canvas, the batch padding beyond each utterance's canvas; weight (B, W): loss
        weight of each position (pad_weight after the first end token).

        W = output_length for the fixed canvas; with `canvas_margin` m, the longest canvas of the
        batch, each utterance's being its own length + 1 + U{0..2m} in training (m at validation).
        Every text starts with the prompt, e.g. '<|startoftranscript|> <|en|> <|transcribe|> ...'.
        """
        b, length = text.shape[0], self.output_length
        n = text_lengths.clamp(max=length - 1)
        if (text_lengths > length - 1).any():
            logger.warning(
                "%d utterance(s) longer than output_length - 1 = %d tokens were truncated; filter them "
                "in data preparation or raise model_conf.output_length",
                int((text_lengths > length - 1).sum()), length - 1,
            )
        canvas = torch.full_like(n, length)
        if self.canvas_margin is not None:
            m = self.canvas_margin
            extra = (randint(2 * m + 1, n.shape, noise, n.device) if self.training else torch.full_like(n, m))
            canvas = (n + 1 + extra).clamp(max=length)
            length = int(canvas.max())
        x1 = torch.full((b, length), self.eot_id, dtype=torch.long, device=text.device)
        width = min(text.shape[1], length - 1)
        keep = torch.arange(width, device=text.device)[None] < n[:, None]
        x1[:, :width] = torch.where(keep, text[:, :width], x1[:, :width])  # text is padded with -1
        fixed = self.prompt_fixed
        if self.prompt_length and ((x1[:, : self.prompt_length] != fixed) & (fixed >= 0)).any():
            raise ValueError(
                f"a text does not start with model_conf.prompt_template {self.prompt_template}; "
                "write the prompt tokens at the start of every transcript in the data's text file"
            )
        pos = torch.arange(length, device=text.device)[None]
        pinned = (pos < self.prompt_length) | (pos >= canvas[:, None])
        if self.training:
            if self.lang_position is not None and self.lang_replace_prob > 0:
                free = uniform((b,), noise, text.device) < self.lang_replace_prob
                pinned[:, self.lang_position] &= ~free
            if self.prompt_prob > 0:
                use = uniform((b,), noise, text.device) < self.prompt_prob
                body = (n - self.prompt_length).clamp(min=0)
                prefix = (uniform((b,), noise, text.device) * (body + 1).float()).long()
                prefix = torch.where(use, prefix, torch.zeros_like(prefix))
                pinned |= (pos >= self.prompt_length) & (pos < self.prompt_length + prefix[:, None])
        weight = torch.where(pos > n[:, None], self.pad_weight, 1.0) * (~pinned)
        return x1, pinned, weight

    def sample_time(self, b: int, device, noise: RowNoise | None = None) -> torch.Tensor:
        """t (B,) for a training batch: uniform or stratified over [0, 1], then raised to time_power.
        The strata are the batch's: a stratified t depends on which utterances share the batch."""
        u = uniform((b,), noise, device)
        if self.time_sampling == "stratified":
            u = (torch.randperm(b, device=device) + u) / b
        return u**self.time_power if self.time_power != 1.0 else u

    def forward_all_blocks(self, enc, enc_lens, x1, pinned, weight, text_lengths, noise, n_utts, k=1):
        """The training loss of `block_loss: all`: every block of active_block positions from the end of
        the prompt on (the last one holding the end token, completed with end tokens) noised at the
        row's t beside the clean canvas; CE of the blocks' predictions + prefix_loss_weight x the
        next-token CE of the clean canvas."""
        b, n = x1.shape[0], text_lengths.clamp(max=self.output_length - 1)
        size, first = self.active_block, self.prompt_length
        reach = (first + ((n + 1 - first + size - 1) // size) * size).clamp(max=self.output_length)  # whole blocks
        x1, pinned, weight = self.widen(x1, pinned, weight, int(reach.max()))
        pos = torch.arange(x1.shape[1], device=x1.device)[None]
        text = (weight > 0) & (pos <= n[:, None])  # the AR loss: text and its end token
        blocks = (pos >= first) & (pos < reach[:, None])
        beyond = blocks & pinned & (pos > n[:, None])  # end tokens completing the last block: trained
        pinned, weight = pinned & ~beyond, torch.where(beyond, self.pad_weight, weight)
        block = torch.where(blocks, (pos - first) // size, -1)
        t = self.sample_time(b, x1.device, noise)
        pmid_logits, sample, xt, soft_delta, soft_rows, audio = self.noised_input(enc, enc_lens, x1, t,
                                                                                blocks & ~pinned, k, noise)
        logits, ar_logits = self.decoder.forward_blocks(x1, xt, t, audio, block, soft_delta, soft_rows)
        if self.training:
            self.updates += 1
        w = weight * blocks * sample.noised if self.loss_positions == "noised" else weight * blocks
        loss_dfm = weighted_ce(logits, x1, w)
        loss_prefix = weighted_ce(ar_logits, x1, weight * text)
        target = w > 0
        stats = dict(loss_dfm=loss_dfm.detach(), loss_prefix=loss_prefix.detach(),
                     acc=(logits[target].argmax(-1) == x1[target]).float().mean())
        loss = loss_dfm + self.prefix_loss_weight * loss_prefix + self.mid_loss(pmid_logits, x1, weight, target, stats)
        stats["loss"] = loss.detach()
        return force_gatherable((loss, stats, n_utts), loss.device)

    def widen(self, x1, pinned, weight, width: int):
        """(x1, pinned, weight) (B, W) widened to `width` (if wider) with pinned end tokens of weight 0."""
        b, extra = x1.shape[0], width - x1.shape[1]
        if extra <= 0:
            return x1, pinned, weight
        return (torch.cat([x1, x1.new_full((b, extra), self.eot_id)], 1), torch.cat([pinned, pinned.new_ones(b, extra)], 1),
                torch.cat([weight, weight.new_zeros(b, extra)], 1))

    def noised_input(self, enc, enc_lens, x1, t, noised, k: int, noise: RowNoise | None):
        """What a training step feeds the decoder: p_mid's logits of the canvas (None without an audio
        p_mid), the path's draw x_t, the input (the draw where `noised` (B, W), x1 elsewhere), its
        straight-through p_mid term and rows, and the audio memory (dropped per utterance, its k draws
        sharing it)."""
        pmid_logits = None
        if self.pmid is not None:
            pmid_logits = self.pmid(enc, enc_lens, x1.shape[1]).repeat_interleave(k, 0)
        sample = self.path.sample(x1, t, pmid_logits, noise)
        xt = torch.where(noised, sample.xt, x1)
        soft_delta = soft_rows = None
        if sample.soft_delta is not None:
            soft_delta, soft_rows = sample.soft_delta * noised[..., None], sample.soft_rows & noised
        drop = None
        if self.training and self.audio_dropout > 0:  # per utterance: its draws share its audio
            drop = (uniform((x1.shape[0],), noise, x1.device) < self.audio_dropout)[::k]
        audio = self.decoder.encode_audio(enc, enc_lens, drop)
        return pmid_logits, sample, xt, soft_delta, soft_rows, audio.repeat_interleave(k) if k > 1 else audio

    def mid_loss(self, pmid_logits, x1, weight, target, stats: dict):
        """L_mid = CE(p_mid, x1) over the weighted positions (0 without an audio p_mid); its stats."""
        if pmid_logits is None:
            return 0.0
        loss_mid = weighted_ce(pmid_logits, x1, weight)
        stats["loss_mid"] = loss_mid.detach()
        stats["acc_mid"] = (pmid_logits[target].argmax(-1) == x1[target]).float().mean()
        return loss_mid

    def jacobi_states(self, x1, xt, t, pinned, drawn, soft_delta, soft_rows, audio, text_lengths, noise):
        """`consistency_prob`: each row drawn with that probability becomes a jacobi state, its input
        the text x1 before a settle point s (uniform over prompt_length .. n) and from s on the decoder's
        greedy prediction of its path draw xt (no gradient), at t = 1. What a jacobi step needs to
        settle more than one position is a right guess after a position that is still a guess: these rows
        teach the decoder to make it from its own guesses (egs/mini/tables/consistency_study). Returns
        (xt, t, drawn, soft_delta, soft_rows) with those rows replaced (drawn: the guessed positions; no
        p_mid term on them)."""
        b, n = x1.shape[0], text_lengths.clamp(max=self.output_length - 1)
        use = uniform((b,), noise, x1.device) < self.consistency_prob
        choices = (n - self.prompt_length + 1).clamp(min=1)
        settle = self.prompt_length + (uniform((b,), noise, x1.device) * choices).long().clamp(max=choices - 1)
        if not use.any():
            return xt, t, drawn, soft_delta, soft_rows
        rows = lambda z: None if z is None else z[use]  # noqa: E731
        with torch.no_grad():
            guess = self.decoder(xt[use], t[use], audio.select(use), rows(soft_delta), pinned=pinned[use],
                                 soft_rows=rows(soft_rows)).argmax(-1)
        pos = torch.arange(x1.shape[1], device=x1.device)[None]
        guessed = (pos >= settle[use][:, None]) & ~pinned[use]
        xt, drawn, t = xt.clone(), drawn.clone(), t.clone()
        xt[use] = torch.where(guessed, guess, x1[use])
        drawn[use], t[use] = guessed, 1.0
        if soft_delta is not None:
            soft_delta, soft_rows = soft_delta * ~use[:, None, None], soft_rows & ~use[:, None]
        return xt, t, drawn, soft_delta, soft_rows

    def draw_active_block(self, x1, pinned, weight, text_lengths, noise: RowNoise | None = None):
        """Each row's active block of `active_block` positions from a start s uniform over its text and
        end token (prompt_length .. n): (x1, pinned, weight) widened with end tokens where a block
        runs past the canvas (up to output_length), and active (B, W) bool."""
        b, n = x1.shape[0], text_lengths.clamp(max=self.output_length - 1)
        choices = (n - self.prompt_length + 1).clamp(min=1)
        start = self.prompt_length + (uniform((b,), noise, x1.device) * choices).long().clamp(max=choices - 1)
        stop = (start + self.active_block).clamp(max=self.output_length)
        x1, pinned, weight = self.widen(x1, pinned, weight, int(stop.max()))
        pos = torch.arange(x1.shape[1], device=x1.device)[None]
        active = (pos >= start[:, None]) & (pos < stop[:, None])
        beyond = active & pinned & (pos > n[:, None])  # end tokens past the canvas, inside the block: trained
        pinned = pinned & ~beyond
        weight = torch.where(beyond, self.pad_weight, weight)
        return x1, pinned, weight, active

    def self_attention_mask(self, length: int, b: int, device, noise: RowNoise | None = None) -> torch.Tensor | None:
        """The annealed mask (B, 1, L, L) of `attention_anneal_steps`, or None for full attention."""
        if not self.training or self.attention_anneal_steps == 0:
            return None
        p = float(self.updates) / self.attention_anneal_steps
        if p >= 1:
            return None
        causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
        return causal | (uniform((b, 1, length, length), noise, device, canvas_dims=(2, 3)) < p)

    # ---- training ------------------------------------------------------------------------------
    def batch_noise(self, utt_id: list[str] | None, device) -> RowNoise | None:
        """The batch's random streams, one per utterance (drax/flow/noise.py), when the trainer names
        the utterances (ESPnet passes utt_id); otherwise None: torch's global generator."""
        if utt_id is None:
            return None
        step = int(self.updates) if self.training else -1  # validation: the same noise at every epoch
        return RowNoise.for_utterances(self.noise_seed, list(utt_id), step, self.output_length, device)

    def forward(self, speech, speech_lengths, text, text_lengths, utt_id=None, **kwargs):
        """Training loss of a batch; with `utt_id` every random draw is the utterance's own (the same
        on any number of ranks and in any batch), without it torch's global generator draws."""
        if utt_id is not None and logger.isEnabledFor(logging.DEBUG):  # which rank trained on which utterances
            logger.debug("%s batch: %s", "train" if self.training else "valid", " ".join(utt_id))
        enc, enc_lens = self.encode(speech, speech_lengths)
        k = self.time_draws if self.training else 1  # rows u*k .. u*k+k-1 are utterance u's draws
        n_utts = text.shape[0]
        if k > 1:
            text, text_lengths = text.repeat_interleave(k, 0), text_lengths.repeat_interleave(k)
            if utt_id is not None:  # draw 0 keeps the utterance's own stream: k = 1 draws the same
                utt_id = [u if j == 0 else f"{u}#{j}" for u in utt_id for j in range(k)]
        noise = self.batch_noise(utt_id, text.device)
        x1, pinned, weight = self.build_targets(text, text_lengths, noise)
        if self.active_block is not None and self.block_loss == "all":
            return self.forward_all_blocks(enc, enc_lens, x1, pinned, weight, text_lengths, noise, n_utts, k)
        active = None
        if self.active_block is not None:
            x1, pinned, weight, active = self.draw_active_block(x1, pinned, weight, text_lengths, noise)
        b, length = x1.shape
        t = self.sample_time(b, x1.device, noise)
        noised = ~pinned if active is None else active & ~pinned  # the committed prefix stays clean
        pmid_logits, sample, xt, soft_delta, soft_rows, audio = self.noised_input(enc, enc_lens, x1, t, noised, k, noise)
        drawn = sample.noised
        if self.training and self.consistency_prob > 0:
            xt, t, drawn, soft_delta, soft_rows = self.jacobi_states(x1, xt, t, pinned, drawn, soft_delta, soft_rows,
                                                                     audio, text_lengths, noise)
        logits = self.decoder(xt, t, audio, soft_delta, self_mask=self.self_attention_mask(length, b, x1.device, noise),
                              pinned=pinned, soft_rows=soft_rows, active=active)
        if self.training:
            self.updates += 1

        w = weight * drawn if self.loss_positions == "noised" else weight
        if active is not None:
            w = w * active
        loss_dfm = weighted_ce(logits, x1, w)
        target = (weight > 0) if active is None else (weight > 0) & active
        stats = dict(loss_dfm=loss_dfm.detach(), acc=(logits[target].argmax(-1) == x1[target]).float().mean())
        loss = loss_dfm
        if active is not None:
            prefix = (weight > 0) & ~active & (torch.arange(length, device=x1.device)[None] < active.int().argmax(1)[:, None])
            loss_prefix = weighted_ce(logits, x1, weight * prefix)
            loss = loss + self.prefix_loss_weight * loss_prefix
            stats["loss_prefix"] = loss_prefix.detach()
        loss = loss + self.mid_loss(pmid_logits, x1, weight, target, stats)
        if self.length_predictor is not None:
            n_text = (text_lengths[::k].clamp(max=self.output_length - 1) - self.prompt_length).float()
            n_hat = self.length_predictor(enc, enc_lens)
            loss_len = (n_hat - n_text).abs().mean()
            loss = loss + loss_len
            stats["loss_len"] = loss_len.detach()
            stats["acc_len"] = (n_hat.round() == n_text).float().mean()
        stats["loss"] = loss.detach()
        loss, stats, weight = force_gatherable((loss, stats, n_utts), loss.device)
        return loss, stats, weight

    # ---- inference -----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, speech: torch.Tensor, speech_lengths: torch.Tensor,
                 options: DecodingOptions = DecodingOptions(), **kwargs) -> GenerateOutput:
        """Encode a batch and sample from it: `generate_encoded` on `encode(speech, speech_lengths)`."""
        return self.generate_encoded(*self.encode(speech, speech_lengths), options, **kwargs)

    def generate_encoded(
        self,
        enc: torch.Tensor,
        enc_lens: torch.Tensor,
        options: DecodingOptions = DecodingOptions(),
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
        elbo: bool = False,
        audio_memory=None,
    ) -> GenerateOutput:
        """Sample `options.num_candidates` transcriptions per utterance of encoder output (B, T, D) with
        lengths (B,), in one batch; the sampler's options (nfe, temperature, use_pmid, output_length,
        max_token_rate, jump_order, jacobi_window, jacobi_time, sampling_exponent, start) come from `options`
        (drax/decode/options.py).

        prompt: (B, prompt_length) ids to pin; -1 leaves a position free (e.g. an unknown language).
        use_pmid adds the p_mid term to the velocity (App. D.6) using the training scheduler;
        output_length None: the trained L or, with a fitted canvas (canvas_margin) and its length
        predictor, each utterance's predicted length + 1 + canvas_margin; jump_order "random" (the paper's independent jumps),
        "confidence" (mask-predict ordering) or "jacobi" (every position re-predicted each step at
        t = 1; with a causal decoder it converges to greedy left-to-right decoding): drax/flow/sampler.py.
        elbo: also estimate each candidate's ELBO along its trajectory (drax/flow/elbo.py; NFE more
        decoder calls).
        audio_memory: `decoder.encode_audio(enc, enc_lens)` if already computed (a drafter samples
        many times per utterance).
        """
        use_pmid, output_length = options.use_pmid, options.output_length
        if elbo and use_pmid:
            raise ValueError("ELBO scoring is defined for the two-way sampler; use it without use_pmid")
        b, k = enc.shape[0], options.num_candidates
        canvas = self.canvas_lengths(enc, enc_lens, output_length, options.max_token_rate).repeat_interleave(k)
        if prompt is not None:  # a pinned prefix (speculative decoding) keeps room for one more token
            canvas = canvas.clamp(min=min(prompt.shape[1] + 1, self.output_length))
        length = int(canvas.max())
        if use_pmid and (self.pmid is None or length > self.output_length):
            raise ValueError("use_pmid needs a path with an audio p_mid and at most the trained output_length")
        audio = audio_memory if audio_memory is not None else self.decoder.encode_audio(enc, enc_lens)
        audio = audio.repeat_interleave(k)
        if options.start == "pmid" and (self.pmid is None or length > self.output_length):
            raise ValueError("decode option start: pmid needs a path with an audio p_mid (model_conf.path: audio_mid) "
                             "and at most the trained output_length")
        pmid_logits = None
        if self.pmid is not None and (use_pmid or self.path.source == "audio" or options.start == "pmid"
                                      or options.jump_order == "block"):
            pmid_logits = self.pmid(enc, enc_lens, length).repeat_interleave(k, 0)
        if options.start == "pmid":  # p_mid's most likely token per position instead of noise
            x0 = pmid_logits.argmax(-1)
        else:
            x0 = self.path.sample_source((b * k, length), pmid_logits, generator, enc.device)
        pinned = torch.arange(length, device=enc.device)[None] >= canvas[:, None]  # beyond the canvas: end
        x0[pinned] = self.eot_id
        if prompt is not None and prompt.shape[1] > 0:
            prompt = prompt.to(x0.device).repeat_interleave(k, 0)
            p = prompt.shape[1]
            pinned[:, :p] = prompt >= 0
            x0[:, :p] = torch.where(prompt >= 0, prompt, x0[:, :p])
        sampler = self.sampler(options, pmid_logits)
        if isinstance(sampler, JacobiSteps) and sampler.causal and self.decoder.preserve is None:
            posterior = PrefixCache(self.decoder, audio)  # each step from the first changed position on
        else:
            posterior = Denoiser(self.decoder, audio, pinned)
        samples = sampler.sample(posterior, x0, pinned, generator, return_trajectory=return_trajectory or elbo)
        scores = None
        if elbo:
            if not isinstance(sampler, EulerJumps):
                raise ValueError("ELBO scoring reads the trajectory of the paper's sampler (jump_order: random)")
            scores = trajectory_elbo(posterior, samples.trajectory, samples.times, samples.tokens, ~pinned,
                                     sampler.scheduler).view(b, k)
        return GenerateOutput(tokens=samples.tokens.view(b, k, length), samples=samples, encoder_out=enc,
                              encoder_out_lens=enc_lens, elbo=scores)

    def sampler(self, options: DecodingOptions, pmid_logits: torch.Tensor | None = None):
        """The decoding algorithm of `options.jump_order` (drax/flow/sampler.py, drax/flow/block.py), set
        up from the options and this model; pmid_logits (B, L, V): p_mid of the rows to decode."""
        order, causal = options.jump_order, self.decoder.attention_block == 1
        if order != "random" and options.use_pmid:
            raise ValueError(f"the {order} order has no p_mid term; use it without use_pmid")
        if order == "block":
            size = options.block_size or self.active_block
            if size is None or not causal or not self.decoder.shift_readout:
                raise ValueError("decode option jump_order: block needs a block-parallel model (model_conf.active_block) "
                                 "or a causal decoder with the shifted readout and the option block_size")
            return BlockSampler(self.path, size, options.threshold, options.temperature, self.eot_id, pmid_logits)
        if order == "jacobi":
            return JacobiSteps(options.nfe, options.temperature, self.eot_id, causal, options.jacobi_window,
                               options.jacobi_time)
        scheduler = self.path.scheduler if options.use_pmid else PolynomialScheduler(options.sampling_exponent)
        if order == "confidence":
            return ConfidenceOrder(scheduler, options.nfe, options.temperature)
        return EulerJumps(scheduler, options.nfe, options.temperature,
                          pmid_logits.softmax(-1) if options.use_pmid else None)

    def canvas_lengths(self, enc: torch.Tensor, enc_lens: torch.Tensor, output_length: int | None = None,
                       max_token_rate: float | None = None):
        """Canvas length (B,) per utterance: `output_length` if given, else the trained L or, with a
        fitted canvas and its length predictor, prompt + predicted text length + 1 + canvas_margin
        (at most L); with max_token_rate, at most prompt + transcript_cap (the positions beyond a
        canvas are pinned to the end token)."""
        b = enc.shape[0]
        if output_length is not None or self.length_predictor is None:
            canvas = torch.full((b,), output_length or self.output_length, dtype=torch.long, device=enc.device)
        else:
            n_hat = self.length_predictor(enc, enc_lens).round().long()
            canvas = (self.prompt_length + n_hat + 1 + self.canvas_margin).clamp(self.prompt_length + 1,
                                                                                  self.output_length)
        if max_token_rate is not None:
            canvas = canvas.minimum(self.prompt_length + transcript_cap(enc_lens, max_token_rate).to(canvas.device))
        return canvas

    def strip(self, tokens: torch.Tensor, cleaning: str = "first_end") -> list[int]:
        """Token ids of the transcript: drop the prompt, then stop at the first end token (first_end)
        or drop every special token <|...|> wherever it stands (drop_specials)."""
        if cleaning == "drop_specials":
            return [tok for tok in tokens[self.prompt_length:].tolist() if tok not in self.special_ids]
        out = []
        for tok in tokens[self.prompt_length:].tolist():
            if tok == self.eot_id:
                break
            out.append(tok)
        return out


def _count_from_zero(state_dict, prefix, *args):
    """Checkpoints written before the update counter existed load with it at zero."""
    state_dict.setdefault(prefix + "updates", torch.zeros((), dtype=torch.long))
