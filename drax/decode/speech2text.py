"""Speech2Text for Drax models trained with ESPnet (config.yaml + model .pth), ESPnet-style.

    s2t = Speech2Text("exp/asr/config.yaml", "exp/asr/valid.loss.best.pth", DecodingOptions(nfe=16))
    hyp = s2t(speech, lang="en")           # one utterance: waveform (samples,) or features (T, D)

ARSpeech2Text does the same for Drax's AR yardstick (`model: drax_ar`): greedy, key/value cache.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from espnet2.text.token_id_converter import TokenIDConverter

from drax.asr.build import build_model
from drax.asr.model import DraxASRModel
from drax.data.audio import pad_batch
from drax.decode.candidates import select
from drax.decode.options import DecodingOptions
from drax.decode.rescoring import WhisperRescorer
from drax.text.units import load_units


@dataclass
class Hypothesis:
    text: str
    token_ids: list[int]
    scores: dict[str, float] = field(default_factory=dict)  # ar: log-likelihood, elbo: ELBO


@dataclass
class Decoded:
    candidates: list[Hypothesis]
    picks: dict[str, int]  # scoring -> index of the candidate it chose
    scoring: str
    steps: int = 0  # decoder calls of the sampler for the utterance's batch (the jacobi order may stop early)
    calls: int = 0  # of those, the calls that decoded this utterance (the block decoder's rows finish apart)

    @property
    def best(self) -> Hypothesis:
        return self.candidates[self.picks[self.scoring]]


def load_model(config: str | Path, model_file: str | Path | None, device: str = "cpu"):
    """Build the model from ESPnet's config.yaml and load its weights; mismatches are named."""

    with open(config, encoding="utf-8") as f:
        args = argparse.Namespace(**yaml.safe_load(f))
    if model_file is not None and (args.decoder_conf or {}).get("init_from_whisper"):
        args.decoder_conf = {**args.decoder_conf, "init_from_whisper": None}  # the checkpoint has the weights
    model = build_model(args)
    if model_file is not None:
        state = torch.load(model_file, map_location=device, weights_only=True)
        own = model.state_dict()
        for key, value in state.items():
            if key in own and own[key].shape != value.shape:
                raise ValueError(
                    f"checkpoint {model_file} does not fit {config}: '{key}' has shape {tuple(value.shape)} "
                    f"in the checkpoint but {tuple(own[key].shape)} in the model (token_list of "
                    f"{len(args.token_list)} entries). Use the config.yaml saved with this checkpoint."
                )
        model.load_state_dict(state)
    return model.to(device).eval(), args


class Speech2Text:
    def __init__(self, asr_train_config: str | Path, asr_model_file: str | Path | None = None,
                 options: DecodingOptions = DecodingOptions(), units_dir: str | Path | None = None,
                 device: str = "cpu", rescorer: str | None = None):
        """options: how to decode (drax/decode/options.py); `options.scoring` chooses one of
        `options.num_candidates` (drax/decode/candidates.py), `ar` rescoring with the Whisper model
        `options.rescorer`, else `rescorer` (the recipe's, whose encoder Drax uses).
        units_dir: the recipe's output units (dump/units); without it ESPnet's tokenizer of the
        training config maps tokens back to text."""

        self.model, self.args = load_model(asr_train_config, asr_model_file, device)
        if not isinstance(self.model, DraxASRModel):
            raise ValueError(f"{asr_train_config} is not a Drax model (model: {self.args.model})")
        self.device, self.rescorer, self.rescorer_source = device, None, options.rescorer or rescorer
        self.options = options
        self.generator = torch.Generator(device).manual_seed(options.seed)
        self.converter = TokenIDConverter(self.args.token_list)
        if units_dir is not None:

            self.detokenize = load_units(units_dir).decode
        else:
            from espnet2.text.build_tokenizer import build_tokenizer  # imports g2p (nltk) modules

            self.detokenize = build_tokenizer(self.args.token_type, getattr(self.args, "bpemodel", None)).tokens2text

    @property
    def options(self) -> DecodingOptions:
        return self._options

    @options.setter
    def options(self, options: DecodingOptions) -> None:
        """New options for the next batches (a study sweeps them on one loaded model)."""
        shortest = self.model.prompt_length + 1
        if options.output_length is not None and options.output_length < shortest:
            raise ValueError(f"decode option output_length must be null or an integer >= {shortest} (the prompt "
                             f"and one token; got {options.output_length!r})")
        self._options = options
        if options.scoring == "ar" and options.num_candidates > 1:
            self.ar_rescorer()  # load now: a wrong path fails before decoding starts

    def reseed(self, seed: int) -> None:
        """Restart the sampler's random stream (a decode stage seeds each batch: shards draw as one run)."""
        self.generator.manual_seed(seed)

    @torch.no_grad()
    def batch(self, speech: list, langs: list[str | None] | None = None,
              scorings: tuple[str, ...] | None = None) -> list[Decoded]:
        """Decode a list of utterances (waveforms or features, as the model's front-end expects).

        langs: the language of each utterance for the prompt; None lets the model pick it.
        scorings: the candidate selections to apply (default: this decoder's `scoring`); all of
        them pick from the same candidates.
        """
        langs = langs or [None] * len(speech)
        return self.decode_encoded(self.model.encode(*pad_batch(speech, self.device)), langs, scorings)

    @torch.no_grad()
    def decode_encoded(self, encoded: tuple[torch.Tensor, torch.Tensor], langs: list[str | None],
                       scorings: tuple[str, ...] | None = None) -> list[Decoded]:
        """As `batch`, from encoder output (states (B, T, D), lengths (B,))."""
        scorings = tuple(scorings or (self.options.scoring,))
        choose = self.options.num_candidates > 1
        out = self.model.generate_encoded(
            *encoded, self.options, prompt=torch.tensor([self.model.prompt_ids(lang) for lang in langs]),
            generator=self.generator, elbo=choose and "elbo" in scorings)
        results = []
        for b, (cands, lang) in enumerate(zip(out.tokens, langs)):
            hyps = [self.to_hypothesis(c) for c in cands]
            picks = {s: 0 for s in scorings}
            if choose:
                if "elbo" in scorings:
                    for h, score in zip(hyps, out.elbo[b].tolist()):
                        h.scores["elbo"] = score
                if "ar" in scorings:
                    enc = out.encoder_out[b, : out.encoder_out_lens[b]]
                    for h, score in zip(hyps, self.ar_rescorer().score(enc, [h.text for h in hyps], lang).tolist()):
                        h.scores["ar"] = score
                texts = [h.text for h in hyps]
                for s in scorings:
                    scores = [h.scores[s] for h in hyps] if s in ("ar", "elbo") else None
                    picks[s] = select(s, texts, lang or "en", scores)
            row_steps = out.samples.row_steps
            calls = out.samples.steps if row_steps is None else int(row_steps[b * len(cands)])
            results.append(Decoded(candidates=hyps, picks=picks, scoring=scorings[0], steps=out.samples.steps,
                                   calls=calls))
        return results

    def ar_rescorer(self):
        if self.rescorer is None:
            if not self.rescorer_source:
                raise ValueError("scoring 'ar' needs a rescorer (a Whisper model dir or hub id)")

            self.rescorer = WhisperRescorer(self.rescorer_source, self.device)
        return self.rescorer

    def __call__(self, speech, lang: str | None = None) -> Hypothesis:
        return self.batch([speech], [lang])[0].best

    def to_hypothesis(self, tokens: torch.Tensor) -> Hypothesis:
        ids = self.model.strip(tokens, self.options.output_cleaning)
        return Hypothesis(text=self.detokenize(self.converter.ids2tokens(ids)), token_ids=ids)


class ARSpeech2Text:
    """Greedy transcription with the `model: drax_ar` yardstick, the prompt (language) given."""

    def __init__(self, asr_train_config: str | Path, asr_model_file: str | Path, units_dir: str | Path,
                 device: str = "cpu", max_length: int | None = None, max_token_rate: float | None = None):
        """max_length: positions, prompt and end included (default: the trained model_conf.max_length);
        max_token_rate: transcripts capped by their audio's encoder frames (DecodingOptions)."""

        self.model, self.args = load_model(asr_train_config, asr_model_file, device)
        if self.args.model != "drax_ar":
            raise ValueError(f"{asr_train_config} is not an AR yardstick (model: {self.args.model})")
        self.device, self.max_length, self.max_token_rate = device, max_length, max_token_rate
        self.detokenize = load_units(units_dir).decode

    @torch.no_grad()
    def token_ids(self, speech: list, langs: list[str]) -> list[list[int]]:
        """Each utterance's transcript token ids (the end token left out): one decoder call each, and one
        for the end token (none where max_token_rate ends the row)."""
        prompt = torch.tensor([self.model.prompt_ids(lang) for lang in langs])
        return self.model.generate(*pad_batch(speech, self.device), prompt, self.max_length, self.max_token_rate)

    def text(self, ids: list[int]) -> str:
        return self.detokenize([self.model.token_list[t] for t in ids])

    def batch(self, speech: list, langs: list[str]) -> list[str]:
        return [self.text(row) for row in self.token_ids(speech, langs)]
