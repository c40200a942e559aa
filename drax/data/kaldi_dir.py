"""Kaldi-style data directories: write, read and validate.

A data dir holds one utterance per line in plain-text "key value" files, all sorted by key in
C-locale (byte) order, which is Python's ``str`` order::

    wav.scp    <utt-id> <audio path>           (or a Kaldi pipe "cmd ... |" / "ark:offset")
    text       <utt-id> <transcript>
    utt2spk    <utt-id> <speaker-id>
    spk2utt    <speaker-id> <utt-id> <utt-id> ...
    utt2lang   <utt-id> <language>             (optional)
    utt2dur    <utt-id> <seconds>              (optional)

Utterance ids should start with their speaker id (``<spk>-<rest>``) so that sorting by
utterance also groups by speaker, as Kaldi requires. :func:`validate_data_dir` is the project's
one validator of data dirs (synthetic and real corpora alike); it raises :class:`DataDirError`
naming the file and line of the first problem.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from drax.fileio import temp_dir

UTT_FILES = ("wav.scp", "text", "utt2spk", "utt2lang", "utt2dur")
ALL_FILES = UTT_FILES + ("spk2utt",)
REQUIRED_FILES = ("wav.scp", "text", "utt2spk")

_KEY_RE = re.compile(r"^\S+$")
_ARK_OFFSET = re.compile(r":\d+$")


class DataDirError(ValueError):
    """A data dir is malformed; the message starts with ``<path>:<line>:`` where one applies."""


@dataclass
class Utterance:
    """One utterance of a data dir."""

    utt_id: str
    speaker: str
    wav: str
    text: str
    lang: str | None = None
    duration: float | None = None


# ----------------------------------------------------------------------------------------------
# Low-level "key value" files
# ----------------------------------------------------------------------------------------------

def format_kv(items: Iterable[tuple[str, str]]) -> str:
    """Kaldi "key value" lines (value may contain spaces; keys may not)."""
    lines = []
    for k, v in items:
        if not _KEY_RE.match(k):
            raise ValueError(f"invalid key {k!r}: keys must be non-empty and contain no whitespace")
        if "\n" in v or "\r" in v:
            raise ValueError(f"value of {k!r} contains a line break")
        lines.append(f"{k} {v}\n" if v != "" else f"{k}\n")
    return "".join(lines)


def read_kv(path: str) -> list[tuple[int, str, str]]:
    """``(line_number, key, value)`` for every line of a "key value" file (value may be '')."""
    out = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
            except UnicodeDecodeError as e:
                raise DataDirError(f"{path}:{n}: not UTF-8 ({e.reason} at byte {e.start}); re-encode the file, "
                                   "e.g. iconv -f latin1 -t utf-8") from None
            key, _, value = line.partition(" ")
            if "\t" in key:
                key, _, rest = line.partition("\t")
                value = rest
            out.append((n, key, value.strip()))
    return out


def read_kv_dict(path: str) -> dict[str, str]:
    """A "key value" file as a dict; a key on two lines is an error naming both (one utterance
    would otherwise silently take another's value). Otherwise no validation: see
    :func:`validate_data_dir`."""
    out: dict[str, str] = {}
    first: dict[str, int] = {}
    for n, k, v in read_kv(path):
        if k in out:
            raise DataDirError(f"{path}:{n}: duplicate id {k!r} (first on line {first[k]}); "
                               "every id must appear once: rename or remove one of them")
        out[k], first[k] = v, n
    return out


# ----------------------------------------------------------------------------------------------
# Writing and reading whole data dirs
# ----------------------------------------------------------------------------------------------

def write_data_dir(path: str, utts: Iterable[Utterance], validate: bool = True,
                   check_audio: bool = True) -> None:
    """Write ``utts`` as a Kaldi data dir at ``path`` (created if needed).

    Utterances are sorted by id; ``spk2utt`` is derived from ``utt2spk``; ``utt2lang`` /
    ``utt2dur`` are written when every utterance has a language / duration. Every file is first
    written to a temporary file, all of them are validated, then they are renamed into place, so
    a crash never leaves a half-written file. Stale optional files (``utt2lang``/``utt2dur`` not
    written this time) are removed so the directory stays consistent.
    """
    utts = sorted(utts, key=lambda u: u.utt_id)
    ids = [u.utt_id for u in utts]
    for a, b in zip(ids, ids[1:]):
        if a == b:
            raise DataDirError(f"{path}: duplicate utterance id {a!r}")
    spk2utt: dict[str, list[str]] = {}
    for u in utts:
        spk2utt.setdefault(u.speaker, []).append(u.utt_id)
    files: dict[str, str] = {
        "wav.scp": format_kv((u.utt_id, u.wav) for u in utts),
        "text": format_kv((u.utt_id, u.text) for u in utts),
        "utt2spk": format_kv((u.utt_id, u.speaker) for u in utts),
        "spk2utt": format_kv((s, " ".join(spk2utt[s])) for s in sorted(spk2utt)),
    }
    if utts and all(u.lang for u in utts):
        files["utt2lang"] = format_kv((u.utt_id, u.lang) for u in utts)
    if utts and all(u.duration is not None for u in utts):
        files["utt2dur"] = format_kv((u.utt_id, f"{u.duration:.3f}") for u in utts)

    os.makedirs(path, exist_ok=True)
    staging = temp_dir(path, "staging")
    try:
        for name, content in files.items():
            with open(os.path.join(staging, name), "w", encoding="utf-8", newline="\n") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
        if validate:
            validate_data_dir(staging, check_audio=check_audio, _report_as=path)
        for name in ALL_FILES:
            if name not in files and os.path.exists(os.path.join(path, name)):
                os.unlink(os.path.join(path, name))
        for name in files:
            os.replace(os.path.join(staging, name), os.path.join(path, name))
    finally:
        for name in os.listdir(staging):
            os.unlink(os.path.join(staging, name))
        os.rmdir(staging)


def read_data_dir(path: str, validate: bool = True, check_audio: bool = False) -> list[Utterance]:
    """The utterances of a data dir, sorted by id (validated first unless ``validate=False``)."""
    if validate:
        validate_data_dir(path, check_audio=check_audio)
    wav = read_kv_dict(os.path.join(path, "wav.scp"))
    text = read_kv_dict(os.path.join(path, "text"))
    spk = read_kv_dict(os.path.join(path, "utt2spk"))
    lang = (read_kv_dict(os.path.join(path, "utt2lang"))
            if os.path.exists(os.path.join(path, "utt2lang")) else {})
    dur = (read_kv_dict(os.path.join(path, "utt2dur"))
           if os.path.exists(os.path.join(path, "utt2dur")) else {})
    return [Utterance(utt_id=u, speaker=spk[u], wav=wav[u], text=text[u], lang=lang.get(u),
                      duration=float(dur[u]) if u in dur else None) for u in sorted(wav)]


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------

def _audio_path(value: str) -> str | None:
    """The file a wav.scp value points at, or None for pipes / commands."""
    v = value.strip()
    if v.endswith("|") or v.startswith("-") or " " in v:
        return None  # "cmd ... |" pipe or a command line: cannot check
    if _ARK_OFFSET.search(v):
        v = _ARK_OFFSET.sub("", v)  # foo.ark:1234
    return v


def validate_data_dir(path: str, check_audio: bool = True, audio_root: str | None = None,
                      required: Sequence[str] = REQUIRED_FILES, _report_as: str | None = None
                      ) -> dict:
    """Check a Kaldi data dir; raise :class:`DataDirError` at the first problem.

    Checks: the ``required`` files exist; every line is ``<key> <value>`` with a non-empty value
    (an empty transcript is reported as "empty text"); keys strictly increase in C-locale order
    (reported as "not sorted" or "duplicate id"); all per-utterance files have the same id set
    (the first missing/extra id is named); utterances of one speaker are contiguous in id order
    (i.e. ids prefixed by speaker ids); ``spk2utt`` (if present) matches ``utt2spk`` exactly;
    ``utt2dur`` values are finite positive numbers; with ``check_audio``, plain audio paths in
    ``wav.scp`` exist (relative paths resolved against ``audio_root``, default the current
    directory; pipes and ``ark:offset`` entries are not opened).

    Returns a summary: ``{"num_utts", "num_speakers", "total_dur" (s or None), "langs"}``.
    """
    shown = _report_as or path
    if not os.path.isdir(path):
        raise DataDirError(f"{shown}: not a directory")
    for name in required:
        if not os.path.isfile(os.path.join(path, name)):
            raise DataDirError(f"{shown}/{name}: missing (required files: {', '.join(required)})")

    keys: dict[str, list[str]] = {}
    values: dict[str, dict[str, str]] = {}
    lines_of: dict[str, dict[str, int]] = {}
    for name in ALL_FILES:
        fp = os.path.join(path, name)
        if not os.path.isfile(fp):
            continue
        where = f"{shown}/{name}"
        rows = read_kv(fp)
        if not rows:
            raise DataDirError(f"{where}: empty file")
        prev = None
        ks: list[str] = []
        vals: dict[str, str] = {}
        lns: dict[str, int] = {}
        for n, k, v in rows:
            if not k:
                raise DataDirError(f"{where}:{n}: empty line or line starting with whitespace")
            if "/" in k or "\\" in k or k.startswith("."):
                raise DataDirError(f"{where}:{n}: id {k!r} is not a safe file name (ids name files of later "
                                   "stages): no '/' or '\\', no leading '.'")
            if v == "":
                what = "empty text" if name == "text" else "missing value"
                raise DataDirError(f"{where}:{n}: {what} for id {k!r}")
            if prev is not None:
                if k == prev:
                    raise DataDirError(f"{where}:{n}: duplicate id {k!r}")
                if k < prev:
                    raise DataDirError(f"{where}:{n}: not sorted: {k!r} comes after {prev!r} "
                                       "(sort with LC_ALL=C)")
            prev = k
            ks.append(k)
            vals[k] = v
            lns[k] = n
        keys[name], values[name], lines_of[name] = ks, vals, lns

    # same utterance ids everywhere
    ref_name = "wav.scp" if "wav.scp" in keys else next(n for n in UTT_FILES if n in keys)
    ref = keys[ref_name]
    ref_set = set(ref)
    for name in UTT_FILES:
        if name not in keys or name == ref_name:
            continue
        other = set(keys[name])
        if other != ref_set:
            extra = sorted(other - ref_set)
            missing = sorted(ref_set - other)
            if extra:
                k = extra[0]
                raise DataDirError(f"{shown}/{name}:{lines_of[name][k]}: id {k!r} not in "
                                   f"{ref_name} ({len(extra)} such ids)")
            k = missing[0]
            raise DataDirError(f"{shown}/{name}: id {k!r} of {ref_name}:{lines_of[ref_name][k]} "
                               f"missing ({len(missing)} ids missing)")

    # speakers contiguous in utterance order; spk2utt consistent
    spk_of = values.get("utt2spk", {})
    if spk_of:
        finished: set[str] = set()
        cur = None
        for k in keys["utt2spk"]:
            s = spk_of[k]
            if s != cur:
                if s in finished:
                    raise DataDirError(
                        f"{shown}/utt2spk:{lines_of['utt2spk'][k]}: utterances of speaker {s!r} "
                        "are not contiguous in sorted id order; prefix utterance ids with their "
                        "speaker id")
                if cur is not None:
                    finished.add(cur)
                cur = s
        if "spk2utt" in keys:
            expect: dict[str, list[str]] = {}
            for k in keys["utt2spk"]:
                expect.setdefault(spk_of[k], []).append(k)
            for s in keys["spk2utt"]:
                got = values["spk2utt"][s].split()
                ln = lines_of["spk2utt"][s]
                if s not in expect:
                    raise DataDirError(f"{shown}/spk2utt:{ln}: speaker {s!r} not in utt2spk")
                if got != expect[s]:
                    if sorted(got) == expect[s]:
                        raise DataDirError(f"{shown}/spk2utt:{ln}: utterances of {s!r} not sorted")
                    diff = sorted(set(got) ^ set(expect[s]))
                    raise DataDirError(f"{shown}/spk2utt:{ln}: utterances of {s!r} differ from "
                                       f"utt2spk (e.g. {diff[0] if diff else got[0]!r})")
            missing_spk = sorted(set(expect) - set(keys["spk2utt"]))
            if missing_spk:
                raise DataDirError(f"{shown}/spk2utt: speaker {missing_spk[0]!r} of utt2spk missing")

    total_dur = None
    if "utt2dur" in values:
        total_dur = 0.0
        for k in keys["utt2dur"]:
            v = values["utt2dur"][k]
            try:
                d = float(v)
            except ValueError:
                d = float("nan")
            if not math.isfinite(d) or d <= 0:
                raise DataDirError(f"{shown}/utt2dur:{lines_of['utt2dur'][k]}: invalid duration "
                                   f"{v!r} for {k!r}")
            total_dur += d

    if check_audio and "wav.scp" in values:
        root = audio_root or os.getcwd()
        for k in keys["wav.scp"]:
            p = _audio_path(values["wav.scp"][k])
            if p is None:
                continue
            full = p if os.path.isabs(p) else os.path.join(root, p)
            if not os.path.isfile(full):
                raise DataDirError(f"{shown}/wav.scp:{lines_of['wav.scp'][k]}: audio file of "
                                   f"{k!r} not found: {full}")

    langs: dict[str, int] = {}
    for v in values.get("utt2lang", {}).values():
        langs[v] = langs.get(v, 0) + 1
    return {"num_utts": len(ref), "num_speakers": len(set(spk_of.values())),
            "total_dur": total_dur, "langs": dict(sorted(langs.items()))}
