"""Transcribe recordings with a trained Drax model.

    import drax
    model = drax.load("egs/mini/exp/asr_train_drax")      # a recipe's experiment directory
    result = model.transcribe("talk.mp3", language="en")
    print(result.text)
    for segment in result.segments:
        print(f"{segment.start:.2f} {segment.end:.2f} {segment.text}")

`transcribe` takes a path, a directory (its audio files, recursively), a list of them, or a waveform
(numpy, with its `sample_rate`). Each recording is read as 16 kHz mono (drax/data/audio.py: WAV,
FLAC, MP3, OGG by libsndfile, any other container by FFmpeg), cut at its pauses into windows no
longer than the longest utterance the model was trained on (`max_window` of the experiment, at most
Whisper's 30 s; drax/transcribe/windows.py): by default each stretch of speech its own window, with
up to WINDOW_PAD seconds of the pauses around it, as the utterances of a recipe's training set are
single sentences with some silence at their ends (measured: `benchmarks/long_form.py`, tables in
egs/mini/tables/long_form). The windows of all recordings (an hour of audio at a time) are decoded
together in batches of `batch_size`, longest first; each window is one segment of its recording,
timed by the speech it holds (the pauses it reads left out). A recording
that cannot be read gets a result with its `error`, and the others are still transcribed.

Without a language, a model trained with its language token on the path (`model_conf.
lang_replace_prob` > 0) detects it in each window (DraxASRModel.detect_language: its most probable
language token), and decodes the window in that language; a recording's language is its windows'
most common one.

The experiment directory holds what stage 7 of a recipe wrote: config.yaml, the checkpoints, and
`transcribe.yaml`, which names the recipe's units, the Whisper whose encoder made the training
features, the longest window and the decode options (paths relative to the directory).
"""
from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from drax.data.audio import MAX_SECONDS, SAMPLE_RATE, load_audio, pad_batch, to_model_rate
from drax.decode.scoring import CER_LANGS
from drax.transcribe.windows import WINDOW_PAD, speech_windows

logger = logging.getLogger(__name__)

MANIFEST = "transcribe.yaml"
GROUP_SECONDS = 3600.0  # audio read and decoded together (about 230 MB of 16 kHz float32)
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".webm", ".mp4", ".mkv")


@dataclass
class Segment:
    start: float  # seconds from the start of the recording
    end: float
    text: str


@dataclass
class Transcription:
    path: str | None  # the file (None for a waveform given as an array)
    text: str = ""
    language: str | None = None
    segments: list[Segment] = field(default_factory=list)
    duration: float = 0.0  # seconds of audio
    error: str | None = None  # why the recording could not be transcribed

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def audio_files(inputs) -> list[str]:
    """The files of `inputs` (a path or a list of paths), directories expanded to their audio files."""
    out = []
    for item in [inputs] if isinstance(inputs, (str, Path)) else inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                logger.warning("%s: no audio file (%s)", path, " ".join(AUDIO_SUFFIXES))
            out += found
        else:
            out.append(str(path))
    return out


class Transcriber:
    """A loaded model and the Whisper encoder it reads through (see the module docstring)."""

    def __init__(self, speech2text, audio_encoder, device: str = "cpu", max_window: float = MAX_SECONDS):
        self.s2t, self.encoder, self.device = speech2text, audio_encoder, device
        self.max_window = max_window
        model = speech2text.model
        self.detects_language = model.lang_position is not None and model.lang_replace_prob > 0

    def transcribe(self, audio, language: str | None = None, batch_size: int | None = None,
                   sample_rate: int | None = None, vad: str = "silero", max_window: float | None = None,
                   merge_window: float | None = 0.0, window_pad: float = WINDOW_PAD, progress: bool = False,
                   **options):
        """One Transcription for one file or waveform, a list for a list or a directory. batch_size:
        windows per decoder batch (default: the decode options'); max_window: the longest window in
        seconds (default: the experiment's); merge_window: speech regions are merged into a window while
        it spans at most this (0: each region a window; None: up to max_window); window_pad: seconds of the
        pauses around a window it takes in (drax/transcribe/windows.py); options: DecodingOptions keys for
        this call (drax/decode/options.py)."""
        if language is None and not self.detects_language:
            raise ValueError("this model was trained with the language given (model_conf.lang_replace_prob: 0): "
                             "pass language=..., or --language on the command line")
        if isinstance(audio, np.ndarray):
            if sample_rate is None:
                raise ValueError("a waveform given as an array needs its sample_rate")
            wave = to_model_rate(audio, sample_rate)[0]
            if wave.size == 0 or not np.isfinite(wave).all():
                raise ValueError("the waveform is empty or holds NaN or infinite samples")
            recordings = [(None, wave)]
        else:
            recordings = [(path, None) for path in audio_files(audio)]
        single = isinstance(audio, np.ndarray) or (isinstance(audio, (str, Path)) and not Path(audio).is_dir())
        saved = self.s2t.options
        if options or batch_size:
            self.s2t.options = dataclasses.replace(saved, **options, **({"batch_size": batch_size} if batch_size else {}))
        try:
            results = self._transcribe(recordings, language, vad, max_window or self.max_window, merge_window,
                                       window_pad, progress)
        finally:
            self.s2t.options = saved
        return results[0] if single else results

    def _transcribe(self, recordings, language, vad: str, max_window: float, merge_window: float | None,
                    window_pad: float, progress: bool) -> list[Transcription]:
        """Read the recordings and decode their windows, a group of at most GROUP_SECONDS of audio at a
        time (what is held in memory)."""
        from tqdm import tqdm

        results, group, seconds = [], [], 0.0
        for path, wave in tqdm(recordings, desc="read", unit="file", disable=not progress):
            result = Transcription(path=path)
            results.append(result)
            try:
                if wave is None:
                    wave, fixes = load_audio(path, max_seconds=None)
                    if fixes:
                        logger.info("%s: %s to 16 kHz mono", path, " and ".join(fixes))
            except ValueError as e:
                result.error = str(e)
                logger.error("%s", e)
                continue
            result.duration = len(wave) / SAMPLE_RATE
            windows = speech_windows(wave, vad, max_window, merge_seconds=merge_window, pad_seconds=window_pad)
            if not windows:
                logger.warning("%s: no speech found (%.1f s of audio)", path or "waveform", result.duration)
            group.append((result, wave, windows))
            seconds += result.duration
            if seconds >= GROUP_SECONDS:
                self._decode_group(group, language, progress)
                group, seconds = [], 0.0
        self._decode_group(group, language, progress)
        return results

    def _decode_group(self, group, language, progress: bool) -> None:
        """Fill in the segments, text and language of each (result, waveform, windows) of `group`."""
        windows = [(k, window) for k, (_, _, found) in enumerate(group) for window in found]
        texts = self._decode([wave for _, wave, _ in group], windows, language, progress)
        decoded = [[] for _ in group]
        for (k, window), (text, lang) in zip(windows, texts):
            start, end = round(window.speech_start / SAMPLE_RATE, 3), round(window.speech_end / SAMPLE_RATE, 3)
            decoded[k].append((Segment(start, end, text), lang))
        for (result, _, _), mine in zip(group, decoded):
            result.segments = [segment for segment, _ in mine]
            langs = Counter(lang for _, lang in mine if lang)
            result.language = language or (langs.most_common(1)[0][0] if langs else None)
            sep = "" if result.language in CER_LANGS else " "  # languages written without spaces
            result.text = sep.join(s.text for s in result.segments if s.text).strip()

    def _decode(self, waves, windows, language, progress: bool) -> list[tuple[str, str | None]]:
        """(text, language) of each (recording index, Window), decoded in batches of the longest first."""
        from tqdm import tqdm

        order = sorted(range(len(windows)), key=lambda k: windows[k][1].start - windows[k][1].end)
        size = self.s2t.options.batch_size
        out: list[tuple[str, str | None]] = [("", None)] * len(windows)
        for first in tqdm(range(0, len(order), size), desc="decode", unit="batch", disable=not progress):
            batch = order[first: first + size]
            speech = [waves[windows[k][0]][windows[k][1].start: windows[k][1].end] for k in batch]
            encoded = self.encoder(*pad_batch(speech, self.device))
            langs = [language] * len(batch) if language else self.s2t.model.detect_language(*encoded)
            for k, lang, decoded in zip(batch, langs, self.s2t.decode_encoded(encoded, langs)):
                out[k] = (decoded.best.text, lang)
        return out


def load(model: str | Path, device: str = "cpu", **options) -> Transcriber:
    """A Transcriber for an experiment directory of a recipe (see the module docstring); options:
    DecodingOptions keys over the directory's decode options (drax/decode/options.py)."""
    from drax.decode.options import DecodingOptions
    from drax.decode.speech2text import Speech2Text
    from drax.nets.whisper import AudioEncoder
    from drax.options import load_options

    model = Path(model)
    manifest = model / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{model} has no {MANIFEST}: give a recipe's experiment directory (exp/asr_<tag>) "
                                "after its stage 7, which writes it")
    spec = yaml.safe_load(manifest.read_text(encoding="utf-8")) or {}
    decode = load_options(DecodingOptions, {**(spec.get("decode") or {}), **options}, f"{manifest} decode")
    local = lambda key: str((model / spec[key]).resolve()) if spec.get(key) else None  # noqa: E731
    whisper = spec.get("whisper")
    if whisper and (model / whisper).exists():
        whisper = local("whisper")
    s2t = Speech2Text(model / "config.yaml", model / decode.model_file, decode, units_dir=local("units_dir"),
                      device=device)
    encoder = AudioEncoder(s2t.model, whisper, spec.get("encoder_autocast"),
                           pad_to_30s=bool(spec.get("encoder_pad_to_30s")),
                           trailing_silence=float(spec.get("encoder_trailing_silence") or 0.0), device=device)
    return Transcriber(s2t, encoder, device, min(float(spec.get("max_window") or MAX_SECONDS), MAX_SECONDS))

