"""Reading audio for the models: mono float32 at 16 kHz, or a ValueError that names the file and what
is wrong with it (missing, unreadable, truncated, NaN, empty, too short, over 30 s)."""
from __future__ import annotations

import os
import struct

import numpy as np
import soundfile as sf
import torch

SAMPLE_RATE = 16000  # Whisper's, and so every model's here
MAX_SECONDS = 30.0  # Whisper's window
MIN_SECONDS = 0.05  # shorter holds no word, and is less than the log-mel window's reflect padding needs


def _check_wav_complete(path: str) -> None:
    """A RIFF/WAV file shorter than its header says was cut off (libsndfile reads what is there)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) == 8 and head[:4] == b"RIFF":
        declared = struct.unpack("<I", head[4:])[0] + 8
        if declared not in (8, 0xFFFFFFFF + 8) and os.path.getsize(path) < declared:  # 0 / -1: streamed, unknown
            raise ValueError(f"truncated audio {path}: {os.path.getsize(path)} of the {declared} bytes "
                             "its header declares")


def load_audio(path: str) -> tuple[np.ndarray, list[str]]:
    """Mono float32 audio at 16 kHz and the fixes applied; raises ValueError naming the problem."""
    if not os.path.exists(path):
        raise ValueError(f"missing audio file {path}")
    try:
        info = sf.info(path)
    except Exception as e:  # soundfile raises several types for corrupt files
        raise ValueError(f"unreadable audio {path}: {e}") from None
    if info.frames > MAX_SECONDS * info.samplerate:  # said before an hour of audio is read and resampled
        raise ValueError(f"audio over {MAX_SECONDS:.0f} s ({info.frames / info.samplerate:.1f} s) {path}")
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:
        raise ValueError(f"unreadable audio {path}: {e}") from None
    _check_wav_complete(path)
    if audio.shape[0] < 0.99 * info.frames:  # e.g. an MP3 cut off: libsndfile decodes what is there
        raise ValueError(f"truncated audio {path}: {audio.shape[0]} of the {info.frames} samples its header declares")
    if not np.isfinite(audio).all():
        raise ValueError(f"audio with NaN or infinite samples {path}")
    fixes = []
    if audio.shape[1] > 1:
        fixes.append("downmixed")
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        import torchaudio.functional as AF  # slow to import; needed only for audio at another rate

        audio = AF.resample(torch.from_numpy(audio), rate, SAMPLE_RATE).numpy()
        fixes.append("resampled")
    if audio.size == 0:
        raise ValueError(f"empty audio {path}")
    if audio.size < MIN_SECONDS * SAMPLE_RATE:
        raise ValueError(f"audio shorter than {MIN_SECONDS} s ({audio.size / SAMPLE_RATE:.3f} s) {path}")
    if audio.size > MAX_SECONDS * SAMPLE_RATE:
        raise ValueError(f"audio over {MAX_SECONDS:.0f} s ({audio.size / SAMPLE_RATE:.1f} s) {path}")
    return audio, fixes
