"""Reading audio for the models: mono float32 at 16 kHz, or a ValueError that names the file and what
is wrong with it (missing, unreadable, truncated, NaN, empty, too short, too long).

libsndfile (soundfile) reads WAV, FLAC, MP3 and OGG; any other container (M4A, AAC, WebM, video)
is decoded by FFmpeg through PyAV."""
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


def to_model_rate(audio: np.ndarray, rate: int) -> tuple[np.ndarray, list[str]]:
    """Samples (n,) or (n, channels) at `rate` -> mono float32 at 16 kHz, and the fixes applied."""
    audio, fixes = np.asarray(audio, dtype=np.float32), []
    if audio.ndim == 2:
        if audio.shape[1] > 1:
            fixes.append("downmixed")
        audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        import torchaudio.functional as AF  # slow to import; needed only for audio at another rate

        audio = AF.resample(torch.from_numpy(np.ascontiguousarray(audio)), rate, SAMPLE_RATE).numpy()
        fixes.append("resampled")
    return audio, fixes


def _read_with_av(path: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """(samples, channels) float32 and the rate of a container libsndfile cannot read, by FFmpeg."""
    import av  # PyAV: only for the formats libsndfile does not read

    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise ValueError(f"no audio stream in {path}")
            stream = container.streams.audio[0]
            rate, frames, length = stream.rate, [], 0
            for frame in container.decode(stream):
                data = frame.to_ndarray()  # (channels, n) planar or (1, n * channels) packed
                data = data.reshape(-1, len(frame.layout.channels)) if not frame.format.is_planar else data.T
                frames.append(data.astype(np.float32) / (np.iinfo(data.dtype).max + 1.0)
                              if np.issubdtype(data.dtype, np.integer) else data.astype(np.float32))
                length += data.shape[0]
                if max_seconds is not None and length > max_seconds * rate:
                    raise ValueError(f"audio over {max_seconds:.0f} s {path}")
    except av.error.FFmpegError as e:
        raise ValueError(f"unreadable audio {path}: {e}") from None
    if not frames:
        raise ValueError(f"empty audio {path}")
    return np.concatenate(frames), rate


def load_audio(path: str, max_seconds: float | None = MAX_SECONDS) -> tuple[np.ndarray, list[str]]:
    """Mono float32 audio at 16 kHz and the fixes applied; raises ValueError naming the problem.
    max_seconds: longer audio is refused (None: any length, for long-form transcription)."""
    if not os.path.exists(path):
        raise ValueError(f"missing audio file {path}")
    try:
        info = sf.info(path)
    except Exception:  # soundfile raises several types for files it cannot read: FFmpeg may
        info = None
    if info is None:
        audio, rate = _read_with_av(path, max_seconds)
    else:
        if max_seconds is not None and info.frames > max_seconds * info.samplerate:  # before reading an hour
            raise ValueError(f"audio over {max_seconds:.0f} s ({info.frames / info.samplerate:.1f} s) {path}")
        try:
            audio, rate = sf.read(path, dtype="float32", always_2d=True)
        except Exception as e:
            raise ValueError(f"unreadable audio {path}: {e}") from None
        _check_wav_complete(path)
        if audio.shape[0] < 0.99 * info.frames:  # e.g. an MP3 cut off: libsndfile decodes what is there
            raise ValueError(f"truncated audio {path}: {audio.shape[0]} of the {info.frames} samples its header declares")
    if not np.isfinite(audio).all():
        raise ValueError(f"audio with NaN or infinite samples {path}")
    audio, fixes = to_model_rate(audio, rate)
    if audio.size == 0:
        raise ValueError(f"empty audio {path}")
    if audio.size < MIN_SECONDS * SAMPLE_RATE:
        raise ValueError(f"audio shorter than {MIN_SECONDS} s ({audio.size / SAMPLE_RATE:.3f} s) {path}")
    if max_seconds is not None and audio.size > max_seconds * SAMPLE_RATE:
        raise ValueError(f"audio over {max_seconds:.0f} s ({audio.size / SAMPLE_RATE:.1f} s) {path}")
    return audio, fixes


def pad_batch(items: list, device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms or feature matrices (arrays or tensors) -> zero-padded batch (B, T[, D]) and lengths (B,)."""
    tensors = [x if torch.is_tensor(x) else torch.from_numpy(np.array(x, dtype=np.float32)) for x in items]
    lengths = torch.tensor([t.shape[0] for t in tensors])
    return torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True).to(device), lengths.to(device)
