"""Transcribe recordings with a trained Drax model: files or directories in, txt/json/srt/vtt out.

    drax-transcribe talk.mp3 --model egs/mini/exp/asr_train_drax --language en
    drax-transcribe recordings/ --model egs/mini/exp/asr_train_drax --output_format all --output_dir out
    python -m drax.bin.transcribe talk.mp3 --model egs/mini/exp/asr_train_drax --nfe 16

Recordings of any length, format, sample rate and channel count (drax/transcribe/__init__.py); a file
that cannot be read is reported and counted, the others are still transcribed (exit status 1 when
any failed). Without --output_dir the text goes to stdout; a summary (files, audio hours, RTFx) ends
the run.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
import time
import typing
from collections import Counter
from pathlib import Path

from drax.decode.options import DecodingOptions
from drax.transcribe.windows import VADS, WINDOW_PAD
from drax.transcribe.writers import FORMATS, write_result

logger = logging.getLogger("drax.bin.transcribe")
OWN = ("batch_size",)  # decode options with a flag of their own


def decode_flags(parser: argparse.ArgumentParser) -> None:
    """One --<key> per DecodingOptions field (drax/decode/options.py), default: the model's."""
    group = parser.add_argument_group("decode options (default: the experiment's decode config)")
    hints = typing.get_type_hints(DecodingOptions)
    for f in dataclasses.fields(DecodingOptions):
        if f.name in OWN:
            continue
        kind = next((t for t in (bool, int, float, str) if t in (hints[f.name], *typing.get_args(hints[f.name]))), str)
        convert = (lambda v: v.lower() in ("1", "true", "yes")) if kind is bool else kind
        group.add_argument(f"--{f.name}", type=convert, default=None, metavar=kind.__name__.upper())


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio", nargs="+", help="audio files or directories (searched recursively)")
    parser.add_argument("--model", required=True, help="a recipe's experiment directory, e.g. exp/asr_train_drax")
    parser.add_argument("--language", default=None, help="language code, e.g. en (default: the model detects it)")
    parser.add_argument("--output_format", choices=(*FORMATS, "all"), default="txt")
    parser.add_argument("--output_dir", type=Path, default=None, help="one file per recording and format "
                        "(default: the text to stdout)")
    parser.add_argument("--batch_size", type=int, default=None, help="windows per decoder batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vad", choices=VADS, default="silero", help="voice activity detector of long recordings")
    parser.add_argument("--max_window", type=float, default=None, help="the longest window in seconds (default: the "
                        "longest utterance the model was trained on)")
    parser.add_argument("--merge_window", type=float, default=0.0, help="merge stretches of speech into a window "
                        "while it spans at most this many seconds (default 0: each stretch its own window)")
    parser.add_argument("--window_pad", type=float, default=WINDOW_PAD, help="seconds of the pauses a window takes "
                        "in on each side")
    decode_flags(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    from drax.transcribe import audio_files, load

    files = audio_files(list(map(str, args.audio)))
    same = sorted(stem for stem, n in Counter(Path(f).stem for f in files).items() if n > 1)
    if args.output_dir is not None and same:
        raise SystemExit(f"error: several recordings named {', '.join(same)} would write the same files in "
                         f"{args.output_dir}; transcribe them into separate --output_dir")

    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(DecodingOptions)
               if f.name not in OWN and getattr(args, f.name) is not None}
    with contextlib.redirect_stdout(sys.stderr):  # what libraries print while loading: stdout holds transcripts only
        model = load(args.model, args.device, **options)
    start = time.perf_counter()
    results = model.transcribe(files, args.language, args.batch_size, vad=args.vad,
                               max_window=args.max_window, merge_window=args.merge_window,
                               window_pad=args.window_pad, progress=True)
    seconds = time.perf_counter() - start
    formats = FORMATS if args.output_format == "all" else (args.output_format,)
    failed = [r for r in results if r.error]
    for result in results:
        if result.error:
            continue
        if args.output_dir is None:
            print(f"{result.path}\t{result.text}" if len(results) > 1 else result.text, flush=True)
        else:
            write_result(result, args.output_dir, formats)
    audio = sum(r.duration for r in results)
    logger.info("%d file(s), %.3f h of audio in %.1f s (RTFx %.1f)%s", len(results) - len(failed), audio / 3600,
                seconds, audio / seconds if seconds else float("inf"),
                f"; {len(failed)} failed: " + ", ".join(r.path for r in failed) if failed else "")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
