"""Generate the synthetic multilingual mini corpus (espeak-ng speech of local text sources).

    python -m drax.bin.make_synthetic data/synth                       # defaults (see --help)
    python -m drax.bin.make_synthetic data/synth --langs en,de --n-train 500 --jobs 2
    python -m drax.bin.make_synthetic data/synth --n-train en=4000,1500 --n-dev 100 --n-test 100
    python -m drax.bin.make_synthetic data/synth --voices en=hibari:0.2,piper:0.1   # other English voices

Writes data/synth/{train,dev,test} (Kaldi dirs with utt2lang, utt2dur), data/synth/audio/,
data/synth/text_pool/<lang>.txt and data/synth/manifest.json (last). Re-running with the same
arguments does nothing; after an interruption it reuses the finished audio. Logs to --log
(default <out_dir>/generate.log) and to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from drax.data.synthetic.generate import DEFAULT_N_DEV, DEFAULT_N_TEST, DEFAULT_N_TRAIN, generate_corpus
from drax.data.synthetic.normalise import LANGS
from drax.data.synthetic.sources import SOURCES


def parse_sizes(spec: str, langs: list[str], name: str) -> dict[str, int]:
    """``"1500"`` or ``"en=4000,de=2000,1500"`` (a bare number is the default for the rest)."""
    default = None
    out: dict[str, int] = {}
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        try:
            if "=" in item:
                lang, n = item.split("=", 1)
                lang = lang.strip()
                if lang not in langs:
                    raise argparse.ArgumentTypeError(f"{name}: language {lang!r} not in --langs")
                out[lang] = int(n)
            else:
                default = int(item)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{name}: bad size {item!r} in {spec!r}") from e
    for lang in langs:
        if lang not in out:
            if default is None:
                raise argparse.ArgumentTypeError(f"{name}: no size for {lang} in {spec!r}")
            out[lang] = default
    return out


def parse_voices(spec: str) -> dict[str, dict[str, float]]:
    """``"en=hibari:0.2,piper:0.1"`` -> {"en": {"hibari": 0.2, "piper": 0.1}} (``;`` between languages)."""
    out: dict[str, dict[str, float]] = {}
    for item in (x.strip() for x in spec.split(";")):
        if not item:
            continue
        lang, sep, families = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--voices: expected lang=family:fraction,... in {item!r}")
        for part in (x.strip() for x in families.split(",") if x.strip()):
            family, _, frac = part.partition(":")
            try:
                out.setdefault(lang.strip(), {})[family.strip()] = float(frac)
            except ValueError as e:
                raise argparse.ArgumentTypeError(f"--voices: bad fraction in {part!r}") from e
    return out


def _default_train_spec() -> str:
    rest = DEFAULT_N_TRAIN["de"]
    return ",".join([f"{k}={v}" for k, v in DEFAULT_N_TRAIN.items() if v != rest] + [str(rest)])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m drax.bin.make_synthetic",
        description="Generate the synthetic multilingual espeak-ng corpus (Kaldi data dirs).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out_dir", help="output directory")
    p.add_argument("--langs", default=",".join(LANGS),
                   help=f"comma-separated languages among {','.join(LANGS)}")
    p.add_argument("--n-train", default=_default_train_spec(),
                   help="training utterances per language: N or lang=N,...,N")
    p.add_argument("--n-dev", default=str(DEFAULT_N_DEV), help="dev utterances per language")
    p.add_argument("--n-test", default=str(DEFAULT_N_TEST), help="test utterances per language")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="parallel espeak-ng processes")
    p.add_argument("--text-pool-size", type=int, default=None,
                   help="max lines of text_pool/<lang>.txt; None: the whole pool minus dev/test")
    p.add_argument("--sources", default=None,
                   help=f"comma-separated text sources among {','.join(SOURCES)}; None: all")
    p.add_argument("--random-frac", type=float, default=0.0,
                   help="fraction of training sentences replaced by random word sequences "
                        "(needs pip wordfreq)")
    p.add_argument("--n-eval-speakers", type=int, default=10,
                   help="speakers per language in dev and in test (disjoint from train)")
    p.add_argument("--max-duration", type=float, default=30.0,
                   help="skip utterances longer than this many seconds")
    p.add_argument("--voices", default=None,
                   help="fractions of a language's training sentences read by other voice families, "
                        "e.g. en=hibari:0.2,piper:0.1 (drax.data.voices; the rest: espeak-ng)")
    p.add_argument("--force", action="store_true",
                   help="regenerate texts even if manifest.json matches (audio is still reused)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--log", default=None, help="log file (default: <out_dir>/generate.log)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    langs = [x.strip() for x in a.langs.split(",") if x.strip()]
    bad = [x for x in langs if x not in LANGS]
    if bad:
        parser.error(f"unsupported languages {bad}; choose among {','.join(LANGS)}")
    try:
        n_train = parse_sizes(a.n_train, langs, "--n-train")
        n_dev = parse_sizes(a.n_dev, langs, "--n-dev")
        n_test = parse_sizes(a.n_test, langs, "--n-test")
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    sources = [x.strip() for x in a.sources.split(",")] if a.sources else None
    try:
        voices = parse_voices(a.voices) if a.voices else None
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))

    os.makedirs(a.out_dir, exist_ok=True)
    log_path = a.log or os.path.join(a.out_dir, "generate.log")
    if os.path.dirname(log_path):
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    fh = logging.FileHandler(log_path, encoding="utf-8")
    fh.setFormatter(fmt)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(fmt)
    sh.setLevel(logging.WARNING if not a.no_progress else logging.INFO)
    root.addHandler(fh)
    root.addHandler(sh)
    logging.getLogger(__name__).info("command: %s", " ".join([sys.argv[0]] + (argv or sys.argv[1:])))
    try:
        m = generate_corpus(a.out_dir, langs=langs, n_train=n_train, n_dev=n_dev, n_test=n_test,
                            seed=a.seed, jobs=a.jobs, text_pool_size=a.text_pool_size,
                            sources=sources, random_frac=a.random_frac,
                            n_eval_speakers=a.n_eval_speakers, max_duration=a.max_duration,
                            voices=voices, force=a.force, progress=not a.no_progress)
    except Exception:
        logging.getLogger(__name__).exception("corpus generation failed")
        raise
    finally:
        root.removeHandler(fh)
        root.removeHandler(sh)
        fh.close()
    for split in ("train", "dev", "test"):
        c = m["counts"][split]
        print(f"{split}: {c['utts']} utts, {c['speakers']} speakers, {c['hours']:.2f} h")
    print(f"corpus: {os.path.abspath(a.out_dir)} (log: {log_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
