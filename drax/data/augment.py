"""Training-audio augmentation (recipe stage 2): speed perturbation, and effects that make synthetic
speech look recorded.

Speed perturbation (Ko et al. 2015; ESPnet/Kaldi's 0.9/1.0/1.1 convention, sox) adds a copy of the
training set per factor. `augment_set` replaces a share of the training utterances by an augmented
version (no extra copies: the encoder dump of stage 3 costs the same). Each chosen utterance gets a
random chain of effects, drawn from a generator seeded by the utterance id and `seed`, so a re-run
writes the same audio:

    gain       level change of U[gain_db] dB (clipped to [-1, 1])
    reverb     convolution with an exponentially decaying noise impulse response of RT60 U[rt60] s
               (a synthetic room; the output is longer by the reverberation tail)
    noise      coloured noise (white, pink or brown) or babble (three other training utterances)
               at an SNR of U[snr_db] dB
    telephone  the 300-3400 Hz telephone band: resampled to 8 kHz and back, no energy above 4 kHz
    codec      an MP3 round trip (libsndfile) at a random quality

The probability of each effect is its key (`reverb: 0.3` = 30 % of the augmented utterances).
Audio that cannot be read or altered (too short or long, NaN, truncated, a failing sox) is a counted
skip, listed in the output set's `skipped` (utt reason): the utterance stays as it was, and out of
the babble pool.
"""
from __future__ import annotations

import hashlib
import io
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from drax.data.audio import SAMPLE_RATE, load_audio
from drax.data.kaldi_dir import Utterance, format_kv, read_data_dir, write_data_dir
from drax.fileio import atomic_path, atomic_write_text
from drax.options import check_range

logger = logging.getLogger(__name__)
EFFECTS = ("gain", "reverb", "noise", "telephone", "codec")


def speed_perturb(src: Path, dst: Path, factors: list[float]) -> None:
    """Write `dst` with every utterance of `src` at each speed factor (ids and speakers prefixed sp<f>-)."""
    utts = read_data_dir(str(src))
    out = []
    wav_dir = Path(dst) / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    skipped = {}
    for factor in factors:
        for u in tqdm(utts, desc=f"speed {factor}", unit="utt", mininterval=5):
            if float(factor) == 1.0:
                out.append(u)
                continue
            prefix = f"sp{factor}-"
            path = wav_dir / f"{prefix}{u.utt_id}.flac"
            if not path.exists():
                try:
                    with atomic_path(path, suffix=".flac") as tmp:  # sox reads the format from the extension
                        subprocess.run(["sox", u.wav, tmp, "speed", str(factor)], check=True, capture_output=True)
                except subprocess.CalledProcessError as e:
                    message = e.stderr.decode(errors="replace").strip().splitlines()
                    skipped[prefix + u.utt_id] = f"sox: {message[-1] if message else f'exit code {e.returncode}'}"
                    continue
            out.append(Utterance(utt_id=prefix + u.utt_id, speaker=prefix + u.speaker, wav=str(path.resolve()),
                                 text=u.text, lang=u.lang,
                                 duration=None if u.duration is None else u.duration / float(factor)))
    write_data_dir(str(dst), out)
    _list_skipped(Path(dst), skipped, "speed-perturbed copies")


@dataclass(frozen=True)
class AugmentConfig:
    """Recipe key `augment_conf` (empty: no augmentation)."""

    prob: float = 0.5  # share of the training utterances replaced by an augmented version
    gain: float = 0.5  # per-effect probabilities, for an augmented utterance
    reverb: float = 0.3
    noise: float = 0.5
    telephone: float = 0.15
    codec: float = 0.15
    gain_db: list = (-6.0, 6.0)
    rt60: list = (0.15, 0.6)
    snr_db: list = (5.0, 30.0)
    seed: int = 0

    def __post_init__(self):
        for name in ("prob", *EFFECTS):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"augment_conf key {name}: {value!r} must be a probability in [0, 1]")
        for name in ("gain_db", "rt60", "snr_db"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ValueError(f"augment_conf key {name}: [{low}, {high}] must be [low, high]")
        check_range("augment_conf", "rt60", self.rt60[0], low=0, strict=True)


def rng_for(utt_id: str, seed: int) -> np.random.Generator:
    """The generator of one utterance: the same id and seed give the same effects on any machine."""
    return np.random.default_rng(int.from_bytes(hashlib.sha256(f"{seed}/{utt_id}".encode()).digest()[:8], "little"))


def gain(x: np.ndarray, db: float) -> np.ndarray:
    return np.clip(x * 10 ** (db / 20), -1.0, 1.0)


def reverb(x: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """x convolved with a synthetic room response: the direct sound, then noise decaying by 60 dB in
    rt60 seconds; the result keeps x's RMS level and is longer by the tail."""
    from scipy.signal import fftconvolve  # only augmentation needs it

    n = int(rt60 * SAMPLE_RATE)
    decay = np.exp(-6.9078 * np.arange(n) / n)  # ln(1000): -60 dB at rt60
    ir = rng.standard_normal(n) * decay * 0.1
    ir[0] = 1.0
    y = fftconvolve(x, ir)
    return _level(y, x)


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise whose power falls as 1 / f^exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 1 else 1.0
    y = np.fft.irfft(spectrum / f ** (exponent / 2), n)
    return y / (np.sqrt(np.mean(y**2)) + 1e-12)


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """x plus `noise` (tiled or cut to x's length) scaled to the given signal-to-noise ratio."""
    noise = np.resize(noise, x.shape)
    p_x, p_n = np.mean(x**2), np.mean(noise**2) + 1e-12
    return x + noise * np.sqrt(p_x / (p_n * 10 ** (snr_db / 10)))


def telephone(x: np.ndarray) -> np.ndarray:
    """The telephone band: down to 8 kHz and back up (soxr's anti-aliasing removes all above 4 kHz)."""
    import soxr  # the synthetic corpus's resampler

    return soxr.resample(soxr.resample(x, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE)[: len(x)].astype(np.float32)


def codec(x: np.ndarray, quality: float) -> np.ndarray:
    """An MP3 encode/decode round trip at libsndfile's compression level `quality` (0 best, 1 worst)."""
    buf = io.BytesIO()
    sf.write(buf, x, SAMPLE_RATE, format="MP3", compression_level=quality)
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    return np.resize(y, x.shape) if len(y) != len(x) else y


def _level(y: np.ndarray, like: np.ndarray) -> np.ndarray:
    scale = np.sqrt(np.mean(like**2) / (np.mean(y**2) + 1e-12))
    return np.clip(y * scale, -1.0, 1.0).astype(np.float32)


def augment(x: np.ndarray, conf: AugmentConfig, rng: np.random.Generator,
            babble: list[np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """One utterance's chain of effects (in the order of EFFECTS) and their names."""
    applied = []
    for name in EFFECTS:
        if rng.random() >= getattr(conf, name):
            continue
        if name == "gain":
            x = gain(x, rng.uniform(*conf.gain_db))
        elif name == "reverb":
            x = reverb(x, rng.uniform(*conf.rt60), rng)
        elif name == "noise":
            snr = rng.uniform(*conf.snr_db)
            if babble and rng.random() < 0.5:
                picks = [babble[i] for i in rng.choice(len(babble), size=min(3, len(babble)), replace=False)]
                noise = sum(np.resize(p, x.shape) for p in picks)
                name = "babble"
            else:
                noise = coloured_noise(len(x), float(rng.choice([0.0, 1.0, 2.0])), rng)
            x = np.clip(add_noise(x, noise, snr), -1.0, 1.0)
        elif name == "telephone":
            x = telephone(x)
        else:
            x = codec(x, float(rng.uniform(0.2, 0.9)))
        applied.append(name)
    return x.astype(np.float32), applied


def augment_set(src: Path, dst: Path, conf: AugmentConfig) -> dict[str, list[str]]:
    """Write `dst`: the utterances of `src`, a share `conf.prob` of them (drawn per utterance id)
    replaced by augmented audio under dst/wav; returns {utt: effects applied} of the augmented ones."""
    utts = read_data_dir(str(src))
    wav_dir = Path(dst) / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    skipped = {}
    pool, babble = [], []  # babble sources
    for u in [u for u in utts if rng_for(u.utt_id, conf.seed + 1).random() < 0.01][:200]:
        try:
            babble.append(load_audio(u.wav)[0])
            pool.append(u)
        except ValueError as e:
            skipped[u.utt_id] = str(e).splitlines()[0]
    out, applied = [], {}
    for u in tqdm(utts, desc="augment", unit="utt", mininterval=5):
        rng = rng_for(u.utt_id, conf.seed)
        if u.utt_id in skipped or rng.random() >= conf.prob:
            out.append(u)
            continue
        path = wav_dir / f"{u.utt_id}.flac"
        try:
            audio, _ = load_audio(u.wav)
            y, effects = augment(audio, conf, rng, [b for b, p in zip(babble, pool) if p.utt_id != u.utt_id])
            with atomic_path(path, suffix=".flac") as tmp:
                sf.write(tmp, y, SAMPLE_RATE, format="FLAC")
        except (ValueError, RuntimeError) as e:  # load_audio names the problem; libsndfile and soxr raise RuntimeError
            skipped[u.utt_id] = str(e).splitlines()[0]
            out.append(u)
            continue
        applied[u.utt_id] = effects
        out.append(Utterance(utt_id=u.utt_id, speaker=u.speaker, wav=str(path.resolve()), text=u.text, lang=u.lang,
                             duration=len(y) / SAMPLE_RATE))
    write_data_dir(str(dst), out)
    _list_skipped(Path(dst), skipped, "utterances kept unaugmented")
    return applied


def _list_skipped(dst: Path, skipped: dict[str, str], what: str) -> None:
    """dst/skipped (utt reason), written for every run so that none is left from an earlier one."""
    atomic_write_text(dst / "skipped", format_kv(sorted(skipped.items())))
    if skipped:
        logger.warning("%s: %d %s, their audio unusable (listed in %s): %s", dst, len(skipped), what,
                       dst / "skipped", "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3]))
