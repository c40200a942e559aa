"""The authors' released Drax (hub id `aiola-labs/drax-v1`, their README) as an experiment of this toolkit.

    python -m drax.bin.convert_release --release aiola-labs/drax-v1 --tokenizer openai/whisper-large-v3 --out exp/drax_v1

A release directory holds `config.json` (`model_type: drax`, `decoder_config`, `whisper_config`),
`decoder.safetensors` and `encoder.safetensors` (`.bin` fallbacks). The conversion writes what the
`Speech2Text` reads and what a train config's `init_param` fine-tunes from:

    <out>/config.yaml      an ESPnet ASR config: whisper_logmel front-end padded to 30 s (as the
                           release reads audio), whisper_frozen encoder, the DiT in the release's layout
    <out>/model.pth        the model's state dict
    <out>/whisper/         the release's Whisper encoder and the tokenizer, in transformers' format
    <out>/units/           tokens.txt (<blank>, <unk>, then Whisper's vocabulary in id order) and units.yaml
    <out>/finetune.yaml    a recipe train config that fine-tunes the decoder from model.pth (its header
                           has the ./run.sh command)

A recipe decodes the converted model through its stages with the key `pretrained: <out>` (stage 7
then installs it as the experiment's model instead of training: install_converted).

Every tensor of the release is mapped (a missing, extra or mis-shaped key fails, naming it). The
release's q/k/v and cross-attention k/v matrices are stacked into ours; what the release does not
have keeps the toolkit's initialisation: the rows of <blank> and <unk> (embedding: the mean
embedding; output: never predicted, bias -1e4), the mask-token embedding row, the null audio frame
of audio dropout and the p_mid network (the release's decoder has none; fine-tuning with the Drax
path trains it from scratch).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path

import torch
import yaml

from drax.fileio import atomic_path, atomic_write_text, temp_dir
from drax.text.units import EOT, PROMPT_TEMPLATE

logger = logging.getLogger(__name__)

KEY = "--release"
TIME_EMBED_DIM = 256  # the release's sinusoidal time features
UNREACHABLE_LOGIT = -1e4  # output bias of the units the release does not have
# the authors' Transcriber defaults as decode options (egs/mini/conf/decode_drax_authors.yaml)
AUTHORS_DECODING = {"nfe": 16, "temperature": 0.1, "jump_order": "random", "output_cleaning": "drop_specials",
                    "model_file": "model.pth"}
DECODER_KEYS = ("vocab_size", "masked", "hidden_size", "cond_dim", "whisper_dim", "n_heads", "n_blocks", "dropout",
                "length")


def resolve_release(name_or_dir: str | os.PathLike) -> Path:
    """A local release directory, or a hub id downloaded where a hub is reachable."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_dir)
    if name.startswith(("/", ".", "~")) or name.count("/") != 1:
        raise FileNotFoundError(f"{KEY}: release directory '{name}' not found")
    from huggingface_hub import snapshot_download  # only for a hub id

    try:
        return Path(snapshot_download(name, allow_patterns=["config.json", "*.safetensors", "*.bin", "*.md"]))
    except Exception as err:  # no hub here: say what to do instead
        raise FileNotFoundError(f"{KEY}: '{name}' is no local directory and the hub did not answer ({err}); "
                                "download the release on a machine with hub access and pass its directory") from err


def read_config(release: Path) -> dict:
    path = release / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{KEY}: {release} holds no config.json: not a Drax release directory")
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("model_type") != "drax":
        raise ValueError(f"{path}: model_type is {config.get('model_type')!r}, not 'drax'")
    for section in ("decoder_config", "whisper_config"):
        if not isinstance(config.get(section), dict):
            raise ValueError(f"{path}: no '{section}' section")
    missing = [k for k in DECODER_KEYS if k not in config["decoder_config"]]
    if missing:
        raise ValueError(f"{path}: decoder_config lacks {missing}")
    if config["decoder_config"]["masked"]:
        raise ValueError(f"{path}: decoder_config.masked is true (a mask-source model, whose head predicts the mask "
                         "token); the released Drax uses the uniform source and only that layout converts")
    return config


def read_tensors(release: Path, name: str) -> dict[str, torch.Tensor]:
    """`<name>.safetensors`, else `<name>.bin`."""
    if (release / f"{name}.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(release / f"{name}.safetensors"))
    if (release / f"{name}.bin").is_file():
        return torch.load(release / f"{name}.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{KEY}: {release} has neither {name}.safetensors nor {name}.bin")


def release_shapes(dc: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of a release decoder and its shape, from its decoder_config."""
    h, c, v, w = dc["hidden_size"], dc["cond_dim"], dc["vocab_size"], dc["whisper_dim"]
    shapes = {
        "vocab_embed.weight": (v, h),
        "time_embedding.mlp.0.weight": (c, TIME_EMBED_DIM), "time_embedding.mlp.0.bias": (c,),
        "time_embedding.mlp.2.weight": (c, c), "time_embedding.mlp.2.bias": (c,),
        "audio_proj.0.weight": (h, w), "audio_proj.0.bias": (h,),
        "audio_proj.2.weight": (h, h), "audio_proj.2.bias": (h,),
        "rotary_emb.inv_freq": (h // dc["n_heads"] // 2,),
        "preserve_embeddings.weight": (2, h),
        "output_layer.norm_final.weight": (h,),
        "output_layer.linear.weight": (v, h), "output_layer.linear.bias": (v,),
        "output_layer.adaLN_modulation.weight": (2 * h, c), "output_layer.adaLN_modulation.bias": (2 * h,),
    }
    for i in range(dc["n_blocks"]):
        b = f"blocks.{i}."
        shapes.update({b + n + ".weight": (h,) for n in ("norm1", "norm_cross", "norm_audio", "norm2")})
        shapes.update({b + n + ".weight": (h, h) for n in ("qw", "kw", "vw", "attn_out", "q_cross", "k_cross",
                                                            "v_cross", "cross_out")})
        shapes.update({b + "mlp.0.weight": (4 * h, h), b + "mlp.0.bias": (4 * h,),
                       b + "mlp.2.weight": (h, 4 * h), b + "mlp.2.bias": (h,),
                       b + "adaLN_modulation.weight": (9 * h, c), b + "adaLN_modulation.bias": (9 * h,)})
    return shapes


def check_keys(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], what: str) -> None:
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(f"{k}: {tuple(state[k].shape)}, expected {expected[k]}" for k in set(expected) & set(state)
                   if tuple(state[k].shape) != expected[k])
    if missing or extra or wrong:
        raise ValueError(f"{what} does not have the release layout of its config.json: "
                         + "; ".join(f"{name} {keys[:6]}" + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")
                                     for name, keys in (("missing", missing), ("unexpected", extra),
                                                        ("mis-shaped", wrong)) if keys))


def decoder_conf(dc: dict) -> dict:
    """Our DiT's options for the release's decoder (drax/nets/dit.py: the layout keys)."""
    return dict(hidden_size=dc["hidden_size"], num_blocks=dc["n_blocks"], num_heads=dc["n_heads"], mlp_ratio=4.0,
                dropout=dc["dropout"], time_embed_dim=TIME_EMBED_DIM, cond_dim=dc["cond_dim"], time_scale=1.0,
                audio_proj="mlp", attention_bias=False, norm_weight=True, norm_eps=1e-5, preserve_embedding=True)


def train_config(config: dict, token_list: list[str], whisper_dir: str) -> dict:
    """The ESPnet ASR config of the converted model: ESPnet's defaults plus what the release sets."""
    from espnet2.tasks.asr import ASRTask

    import drax.asr.registry  # noqa: F401  (model: drax, decoder: dit, ...)

    dc, wc = config["decoder_config"], config["whisper_config"]
    args = vars(ASRTask.get_parser().parse_args([]))
    pmid = min(dc["hidden_size"], 512)
    args.update(
        token_list=token_list, token_type="word", input_size=None,
        frontend="whisper_logmel", frontend_conf={"n_mels": wc.get("num_mel_bins", 80), "pad_to_30s": True},
        specaug=None, normalize=None,
        encoder="whisper_frozen", encoder_conf={"model": whisper_dir},
        decoder="dit", decoder_conf=decoder_conf(dc),
        model="drax",
        model_conf={"path": "audio_mid", "scheduler": "tri_mixture", "scheduler_conf": {"p": 2.0, "q": 0.6666667},
                    "prompt_template": PROMPT_TEMPLATE, "eot_token": EOT, "output_length": dc["length"],
                    "pmid_conf": {"hidden_size": pmid, "num_heads": max(1, pmid // 64)}},
    )
    return args


FINETUNE_HEADER = """\
# Fine-tune the converted release in a recipe: units are its whole Whisper vocabulary, features the
# states of its encoder on 30 s of audio, as it reads them (stage 3 dumps them from {out}/whisper),
# the decoder starts from its weights (ESPnet's init_param), p_mid from scratch:
#   ./run.sh --whisper {out}/whisper --encoder_pad_to_30s true --units_conf "{{full_vocabulary: true}}" \\
#       --whisper_baseline false --train_config {out}/finetune.yaml
# (the converted whisper/ holds the release's encoder only: Whisper's zero-shot rows need a full Whisper)
"""


def finetune_config(args: dict, out_dir: Path) -> dict:
    """A recipe train config (stage 7) that fine-tunes the converted decoder on dumped encoder states."""
    model_conf = {k: v for k, v in args["model_conf"].items() if k != "output_length"}  # stage 6 fits L
    return {"encoder": "precomputed", "normalize": None, "decoder": "dit", "decoder_conf": args["decoder_conf"],
            "model": "drax", "model_conf": model_conf, "init_param": [f"{out_dir}/model.pth:decoder:decoder"],
            "optim": "adamw", "optim_conf": {"lr": 1.0e-4, "weight_decay": 0.01, "betas": [0.9, 0.98]},
            "scheduler": "warmuplr", "scheduler_conf": {"warmup_steps": 500},
            "batch_type": "folded", "batch_size": 32, "max_epoch": 5, "grad_clip": 1.0, "num_workers": 0,
            "best_model_criterion": [["valid", "loss", "min"]], "keep_nbest_models": 1, "num_att_plot": 0}


@torch.no_grad()
def map_decoder(state: dict[str, torch.Tensor], decoder, offset: int) -> None:
    """Copy the release's decoder tensors into our DiT (layout of decoder_conf()); the release's
    token i is our unit offset + i."""
    get = state.__getitem__
    d = decoder
    head_dim = d.hidden_size // d.num_heads
    ours = 1.0 / 10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    if not torch.allclose(get("rotary_emb.inv_freq").float(), ours, rtol=1e-4):
        raise ValueError("rotary_emb.inv_freq: not base-10000 rotary frequencies, which the DiT computes")
    v = get("vocab_embed.weight").shape[0]
    embed = get("vocab_embed.weight")
    d.embed.weight[offset: offset + v] = embed
    d.embed.weight[:offset] = embed.mean(0)
    d.head.weight.zero_()
    d.head.bias.fill_(UNREACHABLE_LOGIT)
    d.head.weight[offset: offset + v] = get("output_layer.linear.weight")
    d.head.bias[offset: offset + v] = get("output_layer.linear.bias")
    d.time_mlp[0].weight.copy_(get("time_embedding.mlp.0.weight"))
    d.time_mlp[0].bias.copy_(get("time_embedding.mlp.0.bias"))
    d.time_mlp[2].weight.copy_(get("time_embedding.mlp.2.weight"))
    d.time_mlp[2].bias.copy_(get("time_embedding.mlp.2.bias"))
    for i in (0, 2):
        d.audio_proj[i].weight.copy_(get(f"audio_proj.{i}.weight"))
        d.audio_proj[i].bias.copy_(get(f"audio_proj.{i}.bias"))
    d.preserve.weight.copy_(get("preserve_embeddings.weight"))
    for i, block in enumerate(d.blocks):
        w = lambda name: get(f"blocks.{i}.{name}")  # noqa: E731
        block.norm1.weight.copy_(w("norm1.weight"))
        block.norm2.weight.copy_(w("norm_cross.weight"))
        block.norm_audio.weight.copy_(w("norm_audio.weight"))
        block.norm3.weight.copy_(w("norm2.weight"))
        block.self_attn.qkv.weight.copy_(torch.cat([w("qw.weight"), w("kw.weight"), w("vw.weight")]))
        block.self_attn.out.weight.copy_(w("attn_out.weight"))
        block.cross_attn.q.weight.copy_(w("q_cross.weight"))
        block.cross_attn.kv.weight.copy_(torch.cat([w("k_cross.weight"), w("v_cross.weight")]))
        block.cross_attn.out.weight.copy_(w("cross_out.weight"))
        block.mlp[0].weight.copy_(w("mlp.0.weight"))
        block.mlp[0].bias.copy_(w("mlp.0.bias"))
        block.mlp[-1].weight.copy_(w("mlp.2.weight"))
        block.mlp[-1].bias.copy_(w("mlp.2.bias"))
        block.modulation[1].weight.copy_(w("adaLN_modulation.weight"))
        block.modulation[1].bias.copy_(w("adaLN_modulation.bias"))
    d.final_norm.weight.copy_(get("output_layer.norm_final.weight"))
    d.final_modulation[1].weight.copy_(get("output_layer.adaLN_modulation.weight"))
    d.final_modulation[1].bias.copy_(get("output_layer.adaLN_modulation.bias"))


def write_whisper_dir(config: dict, encoder_state: dict[str, torch.Tensor], tokenizer, out: Path) -> None:
    """The release's encoder (plain WhisperEncoder keys) and the tokenizer as a transformers Whisper dir."""
    from safetensors.torch import save_file
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    whisper_config = WhisperConfig(**config["whisper_config"])
    encoder = WhisperEncoder(whisper_config)
    own = encoder.state_dict()
    check_keys(encoder_state, {k: tuple(t.shape) for k, t in own.items()}, "encoder weights")
    out.mkdir(parents=True)
    whisper_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    save_file({f"encoder.{k}": t.contiguous() for k, t in encoder_state.items()}, str(out / "model.safetensors"))


def convert_release(release: str | os.PathLike, tokenizer_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Release directory (or hub id) -> `out_dir` as described in the module docstring; returns out_dir."""
    from transformers import AutoTokenizer  # slow to import; only this path needs it

    from drax.asr.build import build_model
    from drax.pretrained.whisper import resolve_whisper
    from drax.text.units import save_whisper_vocabulary
    from drax.transcribe import MANIFEST

    release = resolve_release(release)
    config = read_config(release)
    dc = config["decoder_config"]
    decoder_state = read_tensors(release, "decoder")
    check_keys(decoder_state, release_shapes(dc), f"{release}/decoder weights")
    encoder_state = read_tensors(release, "encoder")
    tokenizer = AutoTokenizer.from_pretrained(resolve_whisper(tokenizer_dir, key="--tokenizer"))
    if len(tokenizer) != dc["vocab_size"]:
        raise ValueError(f"--tokenizer {tokenizer_dir} has {len(tokenizer)} tokens but the release's "
                         f"decoder_config.vocab_size is {dc['vocab_size']}: give the tokenizer of the release's "
                         "Whisper (openai/whisper-large-v3 for drax-v1)")
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"--out {out_dir} exists; remove it or choose another directory")
    tmp = Path(temp_dir(out_dir.parent, out_dir.name))
    try:
        write_whisper_dir(config, encoder_state, tokenizer, tmp / "whisper")
        tokens = save_whisper_vocabulary(tmp / "whisper", tmp / "units")  # names ../whisper
        args = train_config(config, tokens, str(tmp / "whisper"))
        model = build_model(argparse.Namespace(**args))
        offset = tokens.index(tokenizer.convert_ids_to_tokens(0))
        map_decoder(decoder_state, model.decoder, offset)
        encoder = model.encoder.whisper
        for key, tensor in encoder_state.items():  # the built encoder read them from whisper/: check it did
            if not torch.equal(encoder.state_dict()[key], tensor.to(encoder.state_dict()[key].dtype)):
                raise RuntimeError(f"encoder tensor {key} did not load from {tmp / 'whisper'}")
        with atomic_path(tmp / "model.pth") as path:
            torch.save(model.state_dict(), path)
        args["encoder_conf"]["model"] = str(out_dir / "whisper")
        atomic_write_text(tmp / "config.yaml", yaml.safe_dump(args, allow_unicode=True, sort_keys=False))
        atomic_write_text(tmp / "finetune.yaml", FINETUNE_HEADER.format(out=out_dir)
                          + yaml.safe_dump(finetune_config(args, out_dir), sort_keys=False))
        atomic_write_text(tmp / MANIFEST, yaml.safe_dump(  # what drax.load reads
            {"units_dir": "units", "whisper": "whisper", "max_window": 30.0, "decode": AUTHORS_DECODING}, sort_keys=False))
        atomic_write_text(tmp / "release.json", json.dumps(
            {"release": str(release), "tokenizer": str(tokenizer_dir), "config": config}, indent=1) + "\n")
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n = sum(t.numel() for t in decoder_state.values())
    logger.info("converted %s (%.1fM decoder parameters, %d blocks x %d) to %s", release, n / 1e6, dc["n_blocks"],
                dc["hidden_size"], out_dir)
    return out_dir


def install_converted(converted: str | os.PathLike, asr_dir: Path, units_dir: Path, feat_dim: int,
                      features: str) -> None:
    """A converted release as a recipe experiment (stage 7 with recipe key `pretrained`): `asr_dir`
    gets config.yaml for the features stage 3 dumped (`features` of dimension `feat_dim`), model.pth
    and valid.loss.best.pth (linked to it, as ESPnet's trainer links its best epoch: the name the
    decode configs read). The recipe's units must be the converted model's."""
    from drax.asr.build import build_model

    converted = Path(converted)
    for name in ("config.yaml", "model.pth", "units/tokens.txt", "whisper/config.json"):
        if not (converted / name).is_file():
            raise FileNotFoundError(f"recipe key pretrained: {converted} has no {name}; give the --out directory "
                                    "of python -m drax.bin.convert_release")
    ours, theirs = ((d / "tokens.txt").read_text(encoding="utf-8").splitlines() for d in (units_dir, converted / "units"))
    if ours != theirs:
        raise ValueError(f"recipe key pretrained: {converted} reads Whisper's whole vocabulary ({len(theirs)} units) "
                         f"but this recipe's {units_dir} has {len(ours)}: run stages 5-10 with "
                         '--units_conf "{full_vocabulary: true}"')
    args = yaml.safe_load((converted / "config.yaml").read_text(encoding="utf-8"))
    whisper = json.loads((converted / "whisper" / "config.json").read_text(encoding="utf-8"))
    expected = whisper["d_model"] if features == "whisper_states" else whisper["num_mel_bins"]
    if feat_dim != expected:
        raise ValueError(f"recipe key pretrained: stage 3 dumped {feat_dim}-dim {features} but the release's encoder "
                         f"takes or gives {expected}: run stages 3-10 with --whisper {converted}/whisper "
                         "--encoder_pad_to_30s true")
    state = torch.load(converted / "model.pth", map_location="cpu", weights_only=True)
    args.update(token_list=ours, input_size=feat_dim, frontend=None, frontend_conf={})
    if features == "whisper_states":  # the encoder ran in stage 3: its weights stay out
        args.update(encoder="precomputed", encoder_conf={})
        state = {k: v for k, v in state.items() if not k.startswith("encoder.")}
    build_model(argparse.Namespace(**args)).load_state_dict(state, strict=True)  # every tensor has its place
    asr_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(asr_dir / "model.pth") as path:
        torch.save(state, path)
    link = asr_dir / "valid.loss.best.pth"
    link.unlink(missing_ok=True)
    link.symlink_to("model.pth")
    atomic_write_text(asr_dir / "config.yaml", yaml.safe_dump(args, allow_unicode=True, sort_keys=False))
    logger.info("installed %s as %s (%s in, %d units)", converted, asr_dir, features, len(ours))
