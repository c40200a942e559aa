"""Speech2Text for Drax models trained with ESPnet (config.yaml + model .pth), ESPnet-style.

    s2t = Speech2Text("exp/asr/config.yaml", "exp/asr/valid.loss.best.pth", nfe=16)
    hyps = s2t(speech, lang="en")          # one utterance: waveform (samples,) or features (T, D)
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

import drax.asr.registry  # noqa: F401
from drax.asr.model import DraxASRModel


@dataclass
class Hypothesis:
    text: str
    token_ids: list[int]


def load_model(config: str | Path, model_file: str | Path | None, device: str = "cpu"):
    """Build the model from ESPnet's config.yaml and load its weights; mismatches are named."""
    from espnet2.tasks.asr import ASRTask

    with open(config, encoding="utf-8") as f:
        args = argparse.Namespace(**yaml.safe_load(f))
    if model_file is not None and (args.decoder_conf or {}).get("init_from_whisper"):
        args.decoder_conf = {**args.decoder_conf, "init_from_whisper": None}  # the checkpoint has the weights
    model = ASRTask.build_model(args)
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
    def __init__(
        self,
        asr_train_config: str | Path,
        asr_model_file: str | Path | None = None,
        device: str = "cpu",
        nfe: int = 16,
        temperature: float = 0.01,
        num_candidates: int = 1,
        use_pmid: bool = False,
        seed: int = 0,
        units_dir: str | Path | None = None,
    ):
        """units_dir: the recipe's output units (dump/units); without it ESPnet's tokenizer of the
        training config maps tokens back to text."""
        from espnet2.text.build_tokenizer import build_tokenizer
        from espnet2.text.token_id_converter import TokenIDConverter

        self.model, self.args = load_model(asr_train_config, asr_model_file, device)
        if not isinstance(self.model, DraxASRModel):
            raise ValueError(f"{asr_train_config} is not a Drax model (model: {self.args.model})")
        self.device = device
        self.nfe, self.temperature = nfe, temperature
        self.num_candidates, self.use_pmid = num_candidates, use_pmid
        self.generator = torch.Generator(device).manual_seed(seed)
        self.converter = TokenIDConverter(self.args.token_list)
        if units_dir is not None:
            from drax.text.units import load_units

            self.detokenize = load_units(units_dir).decode
        else:
            self.detokenize = build_tokenizer(self.args.token_type, getattr(self.args, "bpemodel", None)).tokens2text

    @torch.no_grad()
    def batch(self, speech: list, langs: list[str | None] | None = None) -> list[list[Hypothesis]]:
        """Decode a list of utterances; returns num_candidates hypotheses per utterance.

        langs: the language of each utterance for the prompt; None lets the model pick it.
        """
        tensors = [torch.from_numpy(np.array(s, dtype=np.float32)) for s in speech]
        lengths = torch.tensor([len(s) for s in tensors])
        padded = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True).to(self.device)
        out = self.model.generate(
            padded, lengths.to(self.device),
            prompt=torch.tensor([self.model.prompt_ids(lang) for lang in (langs or [None] * len(speech))]),
            nfe=self.nfe, temperature=self.temperature, num_candidates=self.num_candidates,
            use_pmid=self.use_pmid, generator=self.generator,
        )
        return [[self.to_hypothesis(c) for c in cands] for cands in out.tokens]

    def __call__(self, speech, lang: str | None = None) -> list[Hypothesis]:
        return self.batch([speech], [lang])[0]

    def to_hypothesis(self, tokens: torch.Tensor) -> Hypothesis:
        ids = self.model.strip(tokens)
        return Hypothesis(text=self.detokenize(self.converter.ids2tokens(ids)), token_ids=ids)
