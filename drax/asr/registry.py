"""Register Drax's components in ESPnet's ASR task choices.

ESPnet has no plugin entry point: its ClassChoices are module-level objects read when the argument
parser is built, so importing this module before `ASRTask.main()` / `build_model_from_file` makes
`model: drax` (and its AR yardstick `model: drax_ar`), `decoder: dit`, `encoder: whisper_frozen | precomputed` and
`frontend: whisper_logmel` and `preencoder: pool` valid in any ESPnet ASR config.
"""
from espnet2.tasks import asr

from drax.asr.ar_model import DraxARModel
from drax.asr.model import DraxASRModel
from drax.nets.dit import DiTDecoder
from drax.nets.whisper import FramePooling, FrozenWhisperEncoder, PrecomputedEncoder, WhisperLogMelFrontend

_CHOICES = {
    asr.model_choices: {"drax": DraxASRModel, "drax_ar": DraxARModel},
    asr.decoder_choices: {"dit": DiTDecoder},
    asr.encoder_choices: {"whisper_frozen": FrozenWhisperEncoder, "precomputed": PrecomputedEncoder},
    asr.frontend_choices: {"whisper_logmel": WhisperLogMelFrontend},
    asr.preencoder_choices: {"pool": FramePooling},
}

for choices, classes in _CHOICES.items():
    for name, cls in classes.items():
        if choices.base_type is not None and not issubclass(cls, choices.base_type):
            raise TypeError(f"{cls.__name__} must subclass {choices.base_type.__name__}")
        choices.classes[name] = cls
