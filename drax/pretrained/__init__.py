"""Pretrained models that drax builds on (Whisper), obtainable without a model hub."""
