"""Drax's parts as ESPnet ASR choices, and a model built from ESPnet's config.yaml.

    model = build_model(argparse.Namespace(**yaml.safe_load(open("exp/asr/config.yaml"))))

`build_model` follows ESPnet's `ASRTask.build_model` (frontend, pre-encoder, encoder, decoder, model)
for a model made of these parts only, without importing `espnet2.tasks.asr`: that module imports
every encoder, decoder and front-end ESPnet offers (SSL, BEATs, Hugging Face; ~10 s a process),
which a decode shard or `drax-transcribe` would pay before its first utterance. Any other model
(ESPnet's own, a SpecAugment, a normaliser, a post-encoder, an `init`) is built by ESPnet's task.
"""
from __future__ import annotations

import argparse

from drax.asr.ar_model import DraxARModel
from drax.asr.model import DraxASRModel
from drax.nets.dit import DiTDecoder
from drax.nets.whisper import FramePooling, FrozenWhisperEncoder, PrecomputedEncoder, WhisperLogMelFrontend

# ESPnet's ASR choice lists (`<kind>_choices`) and the names Drax adds to them
CHOICES = {
    "model": {"drax": DraxASRModel, "drax_ar": DraxARModel},
    "decoder": {"dit": DiTDecoder},
    "encoder": {"whisper_frozen": FrozenWhisperEncoder, "precomputed": PrecomputedEncoder},
    "frontend": {"whisper_logmel": WhisperLogMelFrontend},
    "preencoder": {"pool": FramePooling},
}
NOT_BUILT_HERE = ("specaug", "normalize", "postencoder", "init")  # ESPnet's task builds a model that sets these


def register_in_espnet():
    """Add CHOICES to ESPnet's ASR task (its ClassChoices are module-level objects read when its argument
    parser is built; ESPnet has no plugin entry point); returns the task module."""
    from espnet2.tasks import asr

    for kind, classes in CHOICES.items():
        choices = getattr(asr, f"{kind}_choices")
        for name, cls in classes.items():
            if choices.base_type is not None and not issubclass(cls, choices.base_type):
                raise TypeError(f"{cls.__name__} must subclass {choices.base_type.__name__}")
            choices.classes[name] = cls
    return asr


def _part(args: argparse.Namespace, kind: str):
    """The class of `kind` that args choose (None: none chosen), or False: not one of Drax's."""
    name = getattr(args, kind, None)
    return None if name is None else CHOICES[kind].get(name, False)


def drax_parts_only(args: argparse.Namespace) -> bool:
    """Whether args choose Drax's parts (and a front-end where no features are given) and nothing else."""
    required = ("model", "decoder", "encoder") + (("frontend",) if getattr(args, "input_size", None) is None else ())
    return (all(getattr(args, key, None) is None for key in NOT_BUILT_HERE)
            and all(_part(args, kind) for kind in required) and _part(args, "preencoder") is not False)


def build_model(args: argparse.Namespace):
    """The model of an ESPnet ASR config (args as config.yaml holds them); like ASRTask.build_model,
    it makes `args.token_list` the list itself and drops the front-end where features are given."""
    if not drax_parts_only(args):
        return register_in_espnet().ASRTask.build_model(args)
    if isinstance(args.token_list, str):
        with open(args.token_list, encoding="utf-8") as f:
            args.token_list = [line.rstrip() for line in f]
    token_list = list(args.token_list)
    if getattr(args, "input_size", None) is None:
        frontend = CHOICES["frontend"][args.frontend](**(args.frontend_conf or {}))
        input_size = frontend.output_size()
    else:
        args.frontend, args.frontend_conf, frontend = None, {}, None
        input_size = args.input_size
    preencoder = None
    if getattr(args, "preencoder", None) is not None:
        preencoder = CHOICES["preencoder"][args.preencoder](**(args.preencoder_conf or {}))
        input_size = preencoder.output_size()
    encoder = CHOICES["encoder"][args.encoder](input_size=input_size, **(args.encoder_conf or {}))
    decoder = CHOICES["decoder"][args.decoder](vocab_size=len(token_list), encoder_output_size=encoder.output_size(),
                                               **(args.decoder_conf or {}))
    return CHOICES["model"][args.model](
        vocab_size=len(token_list), frontend=frontend, specaug=None, normalize=None, preencoder=preencoder,
        encoder=encoder, postencoder=None, decoder=decoder, ctc=None, token_list=token_list,
        **(args.model_conf or {}))
