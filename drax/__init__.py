"""Drax: speech recognition with discrete flow matching, as an ESPnet-style toolkit.

    import drax
    model = drax.load("egs/mini/exp/asr_train_drax")
    print(model.transcribe("talk.mp3", language="en").text)
"""

__version__ = "0.1.0"


def load(model, device: str = "cpu", **options):
    """A Transcriber for a recipe's experiment directory (drax/transcribe/__init__.py)."""
    from drax.transcribe import load as _load  # torch and ESPnet load only when a model does

    return _load(model, device, **options)
