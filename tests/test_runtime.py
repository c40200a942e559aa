"""Runtime-set binning and RTFx bookkeeping (paper App. C.4)."""
import pytest

from drax.studies.report import Timer
from drax.studies.runtime import Seconds, runtime_set


def test_runtime_set_draws_equally_from_each_duration_bin():
    durations = {f"u{i:03d}": i * 0.25 for i in range(121)}  # 0 .. 30 s in 0.25 s steps
    bins = runtime_set(durations, per_bin=3, seed=1)
    assert list(bins) == ["0-5 s", "5-10 s", "10-15 s", "15-20 s", "20-25 s", "25-30 s"]
    for label, utts in bins.items():
        lo, hi = (float(x) for x in label[:-2].split("-"))
        assert len(utts) == 3 and all(lo <= durations[u] <= hi for u in utts)
    assert "u120" in runtime_set({"u120": 30.0}, per_bin=1)["25-30 s"]  # 30 s itself belongs to the last bin
    assert runtime_set(durations, per_bin=3, seed=1) == bins  # seeded
    assert runtime_set(durations, per_bin=3, seed=2) != bins


def test_runtime_set_reports_short_bins_as_they_are():
    bins = runtime_set({"a": 1.0, "b": 2.0, "c": 7.0, "long": 31.0}, per_bin=5)
    assert bins["0-5 s"] == ["a", "b"] and bins["5-10 s"] == ["c"] and bins["25-30 s"] == []
    assert "long" not in sum(bins.values(), [])


def test_rtfx_is_audio_seconds_over_compute_seconds_per_part():
    sec = Seconds(audio=12.0)
    sec.add("encoder", 1.0)
    sec.add("decoder", 2.0)
    sec.add("decoder", 1.0)
    assert sec.rtfx("encoder") == 12.0 and sec.rtfx("decoder") == 4.0 and sec.rtfx() == 3.0
    assert sec.rtfx("scoring") == float("inf")
    with Timer() as t:
        sum(range(1000))
    sec.add("scoring", t.seconds)
    assert 0 < sec.parts["scoring"] < 1 and sec.total == pytest.approx(4.0 + sec.parts["scoring"])
