"""Data preparation: text sources, the synthetic multilingual corpus and Kaldi-style data dirs."""

FEATURE_KINDS = ("logmel", "whisper_states")  # what stage 3 dumps (drax/data/features.py), recipe key `features`
# Whisper encoder states per dumped feature frame (its strided conv halves the log-mel rate)
STATES_PER_FRAME = {"logmel": 0.5, "whisper_states": 1.0}
FRAMES_PER_SECOND = {"logmel": 100, "whisper_states": 50}
