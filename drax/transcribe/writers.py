"""Transcripts written as txt, json, srt (SubRip) or vtt (WebVTT), as `whisper --output_format` does."""
from __future__ import annotations

import json
from pathlib import Path

from drax.fileio import atomic_write_text

FORMATS = ("txt", "json", "srt", "vtt")


def timestamp(seconds: float, decimal: str) -> str:
    """HH:MM:SS,mmm (SubRip: decimal ',') or HH:MM:SS.mmm (WebVTT: '.')."""
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def to_txt(result) -> str:
    return result.text + "\n"


def to_json(result) -> str:
    return json.dumps(result.as_dict(), ensure_ascii=False, indent=2) + "\n"


def to_srt(result) -> str:
    return "".join(f"{i}\n{timestamp(s.start, ',')} --> {timestamp(s.end, ',')}\n{s.text}\n\n"
                   for i, s in enumerate(result.segments, 1))


def to_vtt(result) -> str:
    return "WEBVTT\n\n" + "".join(f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{s.text}\n\n"
                                  for s in result.segments)


WRITERS = {"txt": to_txt, "json": to_json, "srt": to_srt, "vtt": to_vtt}


def write_result(result, out_dir: Path, formats: tuple[str, ...]) -> list[Path]:
    """`out_dir/<audio file stem>.<format>` for each format; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{Path(result.path).stem}.{fmt}"
        atomic_write_text(path, WRITERS[fmt](result))
        paths.append(path)
    return paths
