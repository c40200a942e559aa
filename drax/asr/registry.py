"""Importing this module registers Drax's components in ESPnet's ASR task choices (drax.asr.build.CHOICES).

Import it before `ASRTask.main()` / `build_model_from_file`: `model: drax` (and its AR yardstick
`model: drax_ar`), `decoder: dit`, `encoder: whisper_frozen | precomputed`, `frontend: whisper_logmel`
and `preencoder: pool` are then valid in any ESPnet ASR config.
"""
from drax.asr.build import register_in_espnet

register_in_espnet()
