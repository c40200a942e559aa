"""Inference: loading trained models and turning audio into text."""
