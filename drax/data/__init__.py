"""Data preparation: text sources, the synthetic multilingual corpus and Kaldi-style data dirs."""
