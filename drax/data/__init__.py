"""Data preparation: text sources, the synthetic multilingual corpus and Kaldi-style data dirs."""

FEATURE_KINDS = ("logmel", "whisper_states")  # what stage 3 dumps (drax/data/features.py), recipe key `features`
