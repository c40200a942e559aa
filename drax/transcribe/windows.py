"""Long recordings cut at pauses into windows the models read (at most `max_seconds`: Whisper's 30 s,
or less for a model trained on shorter utterances).

A voice activity detector finds the speech regions; consecutive regions are merged into one window
while it spans at most `max_seconds` (faster-whisper's batched pipeline does the same), so a
window starts and ends in a pause and the windows do not depend on each other's text: all of them
can be decoded in one batch. A region longer than `max_seconds` is cut by the detector at its
longest inner pause (silero) or at `max_seconds` (energy).

    silero  Silero VAD (PyPI silero-vad, MIT; its model ships in the wheel), 32 ms frames
    energy  frames whose RMS level is within `energy_range_db` of the recording's loudest (95th
            percentile) frame are speech; a pause is at least `min_pause` seconds of other frames

Audio of at most `max_seconds` is one window, the whole recording, as Whisper reads a short file.
A window may take in some of the pauses around its speech (`pad_windows`); its segment's times stay
those of the speech.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from drax.data.audio import SAMPLE_RATE

VADS = ("silero", "energy")
FRAME = 480  # 30 ms at 16 kHz: the energy detector's frame
WINDOW_PAD = 0.6  # seconds of the pauses a window takes in on each side (transcription's default)


class Window(NamedTuple):
    start: int  # the samples the model reads: [start, end)
    end: int
    speech_start: int  # the speech inside them, the segment's times: [speech_start, speech_end)
    speech_end: int


def speech_regions_silero(audio: np.ndarray, max_seconds: float, min_pause: float) -> list[tuple[int, int]]:
    """Speech regions [start, end) in samples by Silero VAD, none longer than max_seconds."""
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    model = load_silero_vad()
    stamps = get_speech_timestamps(torch.from_numpy(audio), model, sampling_rate=SAMPLE_RATE,
                                   max_speech_duration_s=max_seconds, min_silence_duration_ms=int(min_pause * 1000))
    return [(s["start"], s["end"]) for s in stamps]


def speech_regions_energy(audio: np.ndarray, max_seconds: float, min_pause: float,
                          energy_range_db: float = 35.0) -> list[tuple[int, int]]:
    """Speech regions [start, end) in samples by frame energy, none longer than max_seconds."""
    n = len(audio) // FRAME
    if n == 0:
        return []
    rms = np.sqrt(np.mean(audio[: n * FRAME].reshape(n, FRAME) ** 2, axis=1) + 1e-12)
    level = 20 * np.log10(rms)
    loud = level > np.percentile(level, 95) - energy_range_db
    regions, start, quiet = [], None, 0
    gap = max(1, round(min_pause * SAMPLE_RATE / FRAME))
    for i, on in enumerate(loud):
        if on:
            start = i if start is None else start
            quiet = 0
        elif start is not None:
            quiet += 1
            if quiet >= gap:
                regions.append((start, i - quiet + 1))
                start, quiet = None, 0
    if start is not None:
        regions.append((start, n - quiet))
    longest = int(max_seconds * SAMPLE_RATE)
    out = []
    for s, e in regions:
        s, e = s * FRAME, e * FRAME
        out += [(a, min(a + longest, e)) for a in range(s, e, longest)]
    return out


def merge_regions(regions: list[tuple[int, int]], max_samples: int) -> list[tuple[int, int]]:
    """Consecutive regions merged into windows [start, end) while a window spans at most max_samples
    (a region longer than that stays one window of its own)."""
    windows: list[tuple[int, int]] = []
    for start, end in regions:
        if windows and end - windows[-1][0] <= max_samples:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows


def pad_windows(windows: list[tuple[int, int]], pad: int, total: int, max_samples: int) -> list[tuple[int, int]]:
    """Each window widened by up to `pad` samples on each side into the pauses around it: never past
    the middle of a pause it shares with a neighbour, the recording's ends or `max_samples` in all."""
    out = []
    for i, (start, end) in enumerate(windows):
        lo = 0 if i == 0 else (windows[i - 1][1] + start) // 2
        hi = total if i == len(windows) - 1 else (end + windows[i + 1][0]) // 2
        room = max(0, max_samples - (end - start))
        before, after = min(pad, max(0, start - lo)), min(pad, max(0, hi - end))
        if before + after > room:  # share what the longest window leaves between the two sides
            before = min(before, max(room // 2, room - after))
            after = room - before
        out.append((start - before, end + after))
    return out


def speech_windows(audio: np.ndarray, vad: str = "silero", max_seconds: float = 30.0,
                   min_pause: float = 0.3, merge_seconds: float | None = None,
                   pad_seconds: float = 0.0) -> list[Window]:
    """Windows of mono 16 kHz `audio` to decode, in order (see the module docstring); none when a long
    recording holds no speech. merge_seconds: regions are merged while a window spans at most this
    (default: max_seconds; 0: every region its own window); pad_seconds: each window then reads up to
    this much of the pauses on either side (`pad_windows`), as the utterances a model was trained on
    start and end in some silence."""
    if vad not in VADS:
        raise ValueError(f"unknown voice activity detector '{vad}'; valid: {', '.join(VADS)}")
    if pad_seconds < 0:
        raise ValueError(f"window_pad: {pad_seconds} seconds must be >= 0 (0: windows end where speech does)")
    max_samples = int(max_seconds * SAMPLE_RATE)
    if len(audio) <= max_samples:
        return [Window(0, len(audio), 0, len(audio))]
    find = speech_regions_silero if vad == "silero" else speech_regions_energy
    merge = max_samples if merge_seconds is None else int(min(merge_seconds, max_seconds) * SAMPLE_RATE)
    speech = [(s, min(e, s + max_samples)) for s, e in merge_regions(find(audio, max_seconds, min_pause), merge)]
    padded = pad_windows(speech, int(pad_seconds * SAMPLE_RATE), len(audio), max_samples)
    return [Window(*read, *inner) for read, inner in zip(padded, speech)]
