"""The recipe's ESPnet baselines (`model: espnet`: attention decoder and/or CTC) decoded the way Drax
is: the prompt (language) given, greedy or beam search on the attention decoder, or CTC greedy."""
from __future__ import annotations

import logging

import torch
from espnet.nets.beam_search import BeamSearch
from espnet.nets.scorer_interface import ScorerInterface

from drax.decode.autoregressive import ESPnetTransformerAR, batched_greedy, greedy
from drax.decode.speech2text import load_model
from drax.text.units import PROMPT_TEMPLATE, load_units


class NoEndBefore(ScorerInterface):
    """An ESPnet beam-search scorer making the end token impossible while a sequence is shorter than
    `length` (the interface's defaults: no state, no final score)."""

    def __init__(self, eos: int, length: int, vocab_size: int):
        self.eos, self.length, self.vocab_size = eos, length, vocab_size

    def score(self, y: torch.Tensor, state, x: torch.Tensor):
        scores = torch.zeros(self.vocab_size, dtype=x.dtype)
        if len(y) < self.length:
            scores[self.eos] = float("-inf")
        return scores, None


class ESPnetBaseline:
    """A recipe's `model: espnet` baseline (attention decoder and/or CTC) for decoding.

    The transcript layout is Drax's: [prompt, text, end]; the attention decoder starts from
    [<sos>, prompt] (prompt given, as for Drax and Whisper), CTC emits the prompt tokens itself and
    they are dropped.
    """

    METHODS = ("greedy", "beam", "ctc")

    def __init__(self, config, model_file, units_dir, prompt_template: list[str] | None = None):
        self.model, self.args = load_model(config, model_file)
        self.token_list = list(self.args.token_list)
        self.units = load_units(units_dir)
        self.prompt_template = prompt_template or PROMPT_TEMPLATE
        self.specials = {i for i, tok in enumerate(self.token_list) if tok.startswith("<|") or tok in ("<blank>", "<unk>")}
        self.ar = ESPnetTransformerAR(self.model.decoder, self.model.eos) if self.model.decoder is not None else None

    def prompt(self, lang: str) -> list[int]:
        return [self.token_list.index(tok.format(lang=lang)) for tok in self.prompt_template]

    @torch.no_grad()
    def encode(self, feats) -> torch.Tensor:
        x = torch.as_tensor(feats, dtype=torch.float32)[None]
        enc, _ = self.model.encode(x, torch.tensor([x.shape[1]]))
        return enc

    @torch.no_grad()
    def greedy_batch(self, feats: torch.Tensor, lengths: torch.Tensor, langs: list[str], max_new: int) -> list[list[int]]:
        """Attention-decoder greedy over a padded batch of features (B, T, D): token ids per utterance
        (prompt and end token removed)."""
        if self.ar is None:
            raise ValueError("greedy decoding needs an attention decoder; this model is CTC only (method: ctc)")
        enc, enc_lens = self.model.encode(feats, lengths)
        prefixes = torch.tensor([[self.model.sos] + self.prompt(lang) for lang in langs])
        rows = batched_greedy(self.ar, enc, enc_lens, prefixes, max_new)
        return [[t for t in row if t != self.model.eos] for row in rows]

    @torch.no_grad()
    def decode(self, enc: torch.Tensor, lang: str, method: str, max_new: int, beam_size: int = 5,
               min_new: int = 0) -> list[int]:
        """Token ids of the transcript (prompt and end token removed); min_new: see greedy()."""
        if method == "ctc":
            ids = self.model.ctc.argmax(enc)[0].tolist()
            return [t for i, t in enumerate(ids) if (i == 0 or t != ids[i - 1]) and t not in self.specials]
        if self.ar is None:
            raise ValueError(f"decode method '{method}' needs an attention decoder; this model is CTC only (method: ctc)")
        prefix = [self.model.sos] + self.prompt(lang)
        if method == "greedy":
            ids = greedy(self.ar, enc, prefix, max_new, min_new)
        elif method == "beam":
            ids = self.beam(enc, prefix, max_new, beam_size, min_new)
        else:
            raise ValueError(f"unknown decode method '{method}'; valid: {', '.join(self.METHODS)}")
        return [t for t in ids if t != self.model.eos]

    def beam(self, enc, prefix, max_new, beam_size, min_new=0) -> list[int]:
        scorers, weights = {"decoder": self.model.decoder}, {"decoder": 1.0}
        if min_new:  # ESPnet's minlen drops hypotheses that end early (and may return none): mask the end instead
            scorers["min_length"], weights["min_length"] = NoEndBefore(self.model.eos, len(prefix) + min_new,
                                                                       len(self.token_list)), 1.0
        search = BeamSearch(scorers=scorers, weights=weights, beam_size=beam_size,
                            vocab_size=len(self.token_list), sos=self.model.sos, eos=self.model.eos,
                            token_list=self.token_list, pre_beam_score_key="full", hyp_primer=prefix)
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.WARNING)  # BeamSearch logs every hypothesis at INFO
        try:
            best = search(enc[0], maxlenratio=-float(max_new))[0]
        finally:
            logging.getLogger().setLevel(level)
        return best.yseq[len(prefix):].tolist()

    def text(self, ids: list[int]) -> str:
        return self.units.decode([self.token_list[i] for i in ids])
