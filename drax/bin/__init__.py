"""Command-line entry points (python -m drax.bin.<name>)."""
