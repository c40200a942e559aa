"""End to end through ESPnet's trainer: a tiny Drax model learns a handful of utterances.

Kaldi ark features -> `python -m drax.bin.train` (ESPnet ASRTask + Trainer) -> checkpoint ->
Speech2Text. The loss must fall and every training utterance must decode back exactly.
"""
import pytest

from drax.bin.tiny_train import run


@pytest.mark.slow
def test_tiny_training_learns_and_decodes_exactly(tmp_path):
    result = run(tmp_path, max_epoch=8)
    assert result["loss_last_epoch"] < 0.25 * result["loss_first_epoch"], result
    assert result["hyps"] == result["refs"]
    assert (tmp_path / "asr" / "config.yaml").exists()
