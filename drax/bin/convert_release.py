"""Convert the authors' released Drax into an experiment of this toolkit (drax/pretrained/release.py).

    python -m drax.bin.convert_release --release aiola-labs/drax-v1 --tokenizer openai/whisper-large-v3 --out exp/drax_v1
    python -m drax.bin.convert_release --release downloads/drax-v1 --tokenizer downloads/whisper-large-v3 --out exp/drax_v1

--release: a release directory (config.json, decoder.safetensors, encoder.safetensors) or a hub id
where a hub is reachable; --tokenizer: the release's Whisper tokenizer (directory or hub id). Then
decode with exp/drax_v1/config.yaml, exp/drax_v1/model.pth and units exp/drax_v1/units, or in a recipe
with --pretrained exp/drax_v1 (README: "The authors' released model").
"""
from __future__ import annotations

import argparse
import logging

from drax.pretrained.release import convert_release


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release", required=True, help="release directory or hub id")
    parser.add_argument("--tokenizer", required=True, help="Whisper tokenizer of the release (directory or hub id)")
    parser.add_argument("--out", required=True, help="output directory (must not exist)")
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(cmd: list[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = convert_release(args.release, args.tokenizer, args.out)
    print(f"converted: decode with {out}/config.yaml, {out}/model.pth and units {out}/units")


if __name__ == "__main__":
    main()
