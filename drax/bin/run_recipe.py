"""The stage engine behind every recipe's run.sh (ESPnet's asr.sh plays this role in ESPnet).

    python -m drax.bin.run_recipe --recipe conf/recipe.yaml [--stage N] [--stop_stage M] [--<key> <value> ...]

Run from the recipe directory (egs/<corpus>). Any key of the recipe YAML can be overridden by a flag,
e.g. `--whisper /models/whisper-large-v3 --ngpu 4`; values are parsed as YAML. One entry of a mapping
key is set with a dotted flag, e.g. `--corpus_conf.synthetic true` or `--corpus_conf.root /data/LibriSpeech`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from drax.recipe.config import FIELDS, RecipeError, load_recipe
from drax.recipe.engine import output_dir, stop_on_sigterm


def parse(argv: list[str]):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=Path("conf/recipe.yaml"))
    parser.add_argument("--stage", type=int, default=1)
    parser.add_argument("--stop_stage", type=int, default=None,
                        help="default: 10 (results), or --stage if later (11: the paper's decoding tables)")
    for name in FIELDS:
        parser.add_argument(f"--{name}", dest=f"override_{name}", default=None, metavar="VALUE")
    args, rest = parser.parse_known_args(argv)
    overrides = {k[len("override_"):]: v for k, v in vars(args).items() if k.startswith("override_") and v is not None}
    while rest:  # --corpus_conf.synthetic true / --corpus_conf.root=/data: one entry of a mapping
        flag = rest.pop(0)
        key, eq, value = flag[2:].partition("=")
        if not flag.startswith("--") or "." not in key or not (eq or rest):
            parser.error(f"unrecognized argument {flag}")
        overrides[key] = value if eq else rest.pop(0)
    return args, overrides


def main(argv: list[str] | None = None) -> None:
    args, overrides = parse(sys.argv[1:] if argv is None else argv)
    if not args.recipe.exists():
        sys.exit(f"error: recipe config {args.recipe} not found; run from a recipe directory (egs/<corpus>) "
                 "or pass --recipe")
    try:
        config = load_recipe(args.recipe, overrides)
    except (ValueError, TypeError) as e:
        sys.exit(f"error: {e}")
    exp = output_dir(config, Path("."), "exp")
    exp.mkdir(exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(exp / "run.log", encoding="utf-8")],
    )
    # after the config loaded and checked: a bad flag fails before torch and ESPnet load
    from drax.data.corpora import CorpusError
    from drax.data.kaldi_dir import DataDirError
    from drax.recipe.stages import run_stages

    stop_on_sigterm()
    try:
        run_stages(config, args.stage, args.stop_stage)
    except (CorpusError, DataDirError, RecipeError) as e:  # the message says what to set or fix
        logging.getLogger("drax.recipe").error("%s", e)
        sys.exit(1)


if __name__ == "__main__":
    main()
