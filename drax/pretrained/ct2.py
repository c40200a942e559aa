"""CTranslate2 Whisper (``model.bin`` + ``config.json`` + tokenizer) -> transformers
``WhisperForConditionalGeneration``: the reader of the binary format and the weight mapping.

CT2 ``model.bin`` format, binary version 6 (``ctranslate2/specs/model_spec.py:_serialize``, the
writer of every current converter; read back by ``src/models/model.cc``). Little-endian, no magic:

    u32 binary_version (6) | str spec_name ("WhisperSpec") | u32 spec_revision (3)
    u32 n_variables, then per variable, sorted by name:
        str name | u8 rank | u32 dim * rank | u8 dtype_id | u32 n_bytes | n_bytes of row-major data
    u32 n_aliases, then per alias: str alias_name | str target_name
    str = u16 length including a trailing NUL, UTF-8 bytes, NUL
    dtype_id: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16 (``include/ctranslate2/types.h``)

Aliases replace a variable equal to an earlier one; in Whisper, ``decoder/projection/weight`` aliases
the token embedding (tied, as in transformers). Scalars (rank 0) are model metadata
(``num_heads``, ``pre_norm``, ...). The model-level config (``suppress_ids``, ``lang_ids``,
``alignment_heads``) lives in ``config.json`` beside ``model.bin``.

Whisper's CT2 variable layout (``ctranslate2/converters/transformers.py:WhisperLoader``, a
``BartLoader``): nn.Linear weights keep torch's (out, in) layout; attention projections are fused
along the output dim, ``self_attention/linear_0`` = [q; k; v] and, for cross-attention,
``attention/linear_0`` = q and ``attention/linear_1`` = [k; v]. transformers' k_proj has no bias, so
the converter filled the k slice of the fused bias with zeros; we check it is zero and drop it.
Layer norms are ``gamma``/``beta``; position tables are ``position_encodings/encodings``.
"""
from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch

# what convert_ct2_whisper writes: a transformers Whisper directory
CONVERTED_FILES = ("config.json", "generation_config.json", "model.safetensors",
                   "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json")


# ------------------------------------------------------------------------------------------------
# CTranslate2 model.bin reader


CT2_BINARY_VERSION = 6
CT2_DTYPES = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32,
              4: torch.float16, 5: torch.bfloat16}


@dataclass
class Ct2Model:
    """The contents of a CT2 ``model.bin``: tensors by name and aliases (alias -> target name)."""

    spec: str
    revision: int
    variables: dict[str, torch.Tensor]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> torch.Tensor:
        return self.variables[self.aliases.get(name, name)]


class _Cursor:
    """Sequential little-endian reads over a buffer, with a clear error when it runs out."""

    def __init__(self, buf: bytearray, source: str):
        self.buf, self.pos, self.source = buf, 0, source

    def need(self, n: int, what: str) -> None:
        if self.pos + n > len(self.buf):
            raise ValueError(
                f"{self.source} is truncated: {what} needs bytes {self.pos}..{self.pos + n} but the "
                f"file has {len(self.buf)} (are all model.bin parts present and in order?)")

    def unpack(self, fmt: str, what: str):
        size = struct.calcsize("<" + fmt)
        self.need(size, what)
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self, what: str) -> str:
        n = self.unpack("H", what)  # length includes the trailing NUL
        self.need(n, what)
        text = self.buf[self.pos:self.pos + n - 1].decode("utf-8")
        self.pos += n
        return text


def read_ct2_model(path: str | os.PathLike) -> Ct2Model:
    """Read a CT2 ``model.bin`` (binary version 6, see the module docstring) into torch tensors.

    Tensors are views of one in-memory copy of the file (no per-tensor copy).
    """
    path = Path(path)
    buf = bytearray(path.read_bytes())
    cur = _Cursor(buf, str(path))
    version = cur.unpack("I", "the binary version")
    if version != CT2_BINARY_VERSION:
        raise ValueError(f"{path}: CT2 binary version {version} is not supported "
                         f"(only {CT2_BINARY_VERSION}, written by ctranslate2 >= 3)")
    spec = cur.string("the spec name")
    revision = cur.unpack("I", "the spec revision")
    variables = {}
    for _ in range(cur.unpack("I", "the variable count")):
        name = cur.string("a variable name")
        shape = [cur.unpack("I", name) for _ in range(cur.unpack("B", name))]
        dtype_id = cur.unpack("B", name)
        if dtype_id not in CT2_DTYPES:
            raise ValueError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
        dtype = CT2_DTYPES[dtype_id]
        n_bytes = cur.unpack("I", name)
        numel = 1
        for dim in shape:
            numel *= dim
        if n_bytes != numel * dtype.itemsize:
            raise ValueError(f"{path}: variable {name} {shape} {dtype} has {n_bytes} bytes")
        cur.need(n_bytes, f"variable {name} {shape}")
        if numel:
            tensor = torch.frombuffer(buf, dtype=dtype, count=numel, offset=cur.pos)
        else:
            tensor = torch.empty(0, dtype=dtype)
        variables[name] = tensor.reshape(shape)
        cur.pos += n_bytes
    aliases = {}
    for _ in range(cur.unpack("I", "the alias count")):
        alias = cur.string("an alias name")
        aliases[alias] = cur.string(f"the target of alias {alias}")
    if cur.pos != len(buf):
        raise ValueError(f"{path}: {len(buf) - cur.pos} unexpected bytes after the aliases")
    return Ct2Model(spec, revision, variables, aliases)


# ------------------------------------------------------------------------------------------------
# CT2 Whisper -> transformers WhisperForConditionalGeneration


class _Take:
    """Hands out CT2 tensors by name and remembers which were used, so none is silently dropped."""

    def __init__(self, model: Ct2Model):
        self.model, self.used = model, set()

    def __call__(self, name: str) -> torch.Tensor:
        self.used.add(self.model.aliases.get(name, name))
        return self.model.get(name).float()  # float16 -> float32 is exact

    def has(self, name: str) -> bool:
        return name in self.model.variables or name in self.model.aliases

    def unused_tensors(self) -> list[str]:
        # Rank-0 variables are metadata (num_heads, pre_norm, ...), read by whisper_config().
        return sorted(n for n, t in self.model.variables.items() if t.dim() > 0 and n not in self.used)


def _num_layers(model: Ct2Model, stack: str) -> int:
    pattern = re.compile(rf"{stack}/layer_(\d+)/")
    return 1 + max(int(m.group(1)) for n in model.variables if (m := pattern.match(n)))


def _split_fused(take: _Take, ct2: str, hf: str, parts: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Undo CT2's fusion of q/k/v projections; the k bias must be the zeros the converter added."""
    out = {}
    weights = take(f"{ct2}/weight").chunk(len(parts), dim=0)
    biases = take(f"{ct2}/bias").chunk(len(parts), dim=0)
    for part, weight, bias in zip(parts, weights, biases):
        out[f"{hf}.{part}.weight"] = weight
        if part == "k_proj":
            if bias.any():
                raise ValueError(f"{ct2}: the k slice of the fused bias is not zero; transformers' "
                                 "Whisper k_proj has no bias, so this model cannot be converted exactly")
        else:
            out[f"{hf}.{part}.bias"] = bias
    return out


def _linear(take: _Take, ct2: str, hf: str) -> dict[str, torch.Tensor]:
    return {f"{hf}.weight": take(f"{ct2}/weight"), f"{hf}.bias": take(f"{ct2}/bias")}


def _layer_norm(take: _Take, ct2: str, hf: str) -> dict[str, torch.Tensor]:
    return {f"{hf}.weight": take(f"{ct2}/gamma"), f"{hf}.bias": take(f"{ct2}/beta")}


def _ffn(take: _Take, ct2: str, hf: str) -> dict[str, torch.Tensor]:
    return {**_linear(take, f"{ct2}/linear_0", f"{hf}.fc1"),
            **_linear(take, f"{ct2}/linear_1", f"{hf}.fc2"),
            **_layer_norm(take, f"{ct2}/layer_norm", f"{hf}.final_layer_norm")}


def _self_attention(take: _Take, ct2: str, hf: str) -> dict[str, torch.Tensor]:
    return {**_split_fused(take, f"{ct2}/linear_0", hf, ("q_proj", "k_proj", "v_proj")),
            **_linear(take, f"{ct2}/linear_1", f"{hf}.out_proj")}


def _cross_attention(take: _Take, ct2: str, hf: str) -> dict[str, torch.Tensor]:
    return {**_linear(take, f"{ct2}/linear_0", f"{hf}.q_proj"),
            **_split_fused(take, f"{ct2}/linear_1", hf, ("k_proj", "v_proj")),
            **_linear(take, f"{ct2}/linear_2", f"{hf}.out_proj")}


def ct2_to_state_dict(model: Ct2Model) -> dict[str, torch.Tensor]:
    """Map every tensor of a CT2 WhisperSpec to a float32 ``WhisperForConditionalGeneration`` key.

    Raises if the model is not a float/unquantized WhisperSpec or if a tensor would be left over.
    """
    if model.spec != "WhisperSpec":
        raise ValueError(f"expected a CT2 WhisperSpec model, got {model.spec}")
    if any(n.endswith("_scale") for n in model.variables):
        raise ValueError("quantized (int8/int16) CT2 models are not supported; use a float16 one")
    take = _Take(model)
    sd = {}
    enc, dec = "model.encoder", "model.decoder"
    sd |= _linear(take, "encoder/conv1", f"{enc}.conv1")
    sd |= _linear(take, "encoder/conv2", f"{enc}.conv2")
    sd[f"{enc}.embed_positions.weight"] = take("encoder/position_encodings/encodings")
    for i in range(_num_layers(model, "encoder")):
        ct2, hf = f"encoder/layer_{i}", f"{enc}.layers.{i}"
        sd |= _self_attention(take, f"{ct2}/self_attention", f"{hf}.self_attn")
        sd |= _layer_norm(take, f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
        sd |= _ffn(take, f"{ct2}/ffn", hf)
    sd |= _layer_norm(take, "encoder/layer_norm", f"{enc}.layer_norm")

    sd[f"{dec}.embed_tokens.weight"] = take("decoder/embeddings/weight")
    sd[f"{dec}.embed_positions.weight"] = take("decoder/position_encodings/encodings")
    for i in range(_num_layers(model, "decoder")):
        ct2, hf = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        sd |= _self_attention(take, f"{ct2}/self_attention", f"{hf}.self_attn")
        sd |= _layer_norm(take, f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
        sd |= _cross_attention(take, f"{ct2}/attention", f"{hf}.encoder_attn")
        sd |= _layer_norm(take, f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
        sd |= _ffn(take, f"{ct2}/ffn", hf)
    sd |= _layer_norm(take, "decoder/layer_norm", f"{dec}.layer_norm")
    # Tied to the embedding via an alias in every Whisper conversion; kept general all the same.
    sd["proj_out.weight"] = take("decoder/projection/weight")
    if take.has("decoder/projection/bias"):
        raise ValueError("decoder/projection/bias has no counterpart in transformers' Whisper")
    if left := take.unused_tensors():
        raise ValueError(f"CT2 tensors without a transformers counterpart: {left}")
    return sd


def _token_ids(tokenizer_json: dict) -> dict[str, int]:
    ids = dict(tokenizer_json["model"]["vocab"])
    ids.update({t["content"]: t["id"] for t in tokenizer_json["added_tokens"]})
    return ids


def add_timestamp_tokens(tokenizer_json: dict, vocab_size: int) -> dict:
    """Give the ids up to ``vocab_size`` that the tokenizer lacks their timestamp tokens.

    Whisper's timestamps ``<|0.00|>``, ``<|0.02|>``, ... ``<|30.00|>`` follow ``<|notimestamps|>``
    and fill the vocabulary; some tokenizer.json files stop before them. Added the way
    transformers' own Whisper tokenizer files list them (non-special added tokens).
    """
    token = _token_ids(tokenizer_json)
    first_timestamp = token["<|notimestamps|>"] + 1
    for i in range(max(token.values()) + 1, vocab_size):
        tokenizer_json["added_tokens"].append({
            "id": i, "content": "<|%.2f|>" % ((i - first_timestamp) * 0.02), "single_word": False,
            "lstrip": False, "rstrip": False, "normalized": True, "special": False})
    return tokenizer_json


def whisper_config(model: Ct2Model, ct2_config: dict, tokenizer_json: dict):
    """transformers ``WhisperConfig`` for a CT2 Whisper: sizes from the tensors, ids from the tokenizer."""
    from transformers import WhisperConfig  # slow to import; only this path needs it

    token = _token_ids(tokenizer_json)
    eot = token["<|endoftext|>"]
    conv1 = model.get("encoder/conv1/weight")  # (d_model, n_mels, 3)
    return WhisperConfig(
        vocab_size=model.get("decoder/embeddings/weight").shape[0],
        num_mel_bins=conv1.shape[1],
        d_model=conv1.shape[0],
        encoder_layers=_num_layers(model, "encoder"),
        decoder_layers=_num_layers(model, "decoder"),
        encoder_attention_heads=int(model.get("encoder/num_heads")),
        decoder_attention_heads=int(model.get("decoder/num_heads")),
        encoder_ffn_dim=model.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=model.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=model.get("encoder/position_encodings/encodings").shape[0],
        max_target_positions=model.get("decoder/position_encodings/encodings").shape[0],
        scale_embedding=False,  # CT2's WhisperSpec sets decoder.scale_embeddings = False too
        tie_word_embeddings=model.aliases.get("decoder/projection/weight") == "decoder/embeddings/weight",
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        decoder_start_token_id=token["<|startoftranscript|>"],
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [220, eot])),
        architectures=["WhisperForConditionalGeneration"],
    )


def whisper_generation_config(config, ct2_config: dict, tokenizer_json: dict):
    """The ``GenerationConfig`` that ``WhisperForConditionalGeneration.generate`` needs for
    ``language=``/``task=`` prompts and timestamp handling (as on the hub's Whisper repos)."""
    from transformers import GenerationConfig  # slow to import; only this path needs it

    token = _token_ids(tokenizer_json)
    name = {i: t for t, i in token.items()}
    lang_ids = ct2_config.get("lang_ids", [])
    heads = ct2_config.get("alignment_heads") or [  # CT2's default: every head of the last half
        [layer, head] for layer in range(config.decoder_layers // 2, config.decoder_layers)
        for head in range(config.decoder_attention_heads)]
    return GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id, decoder_start_token_id=config.decoder_start_token_id,
        max_length=config.max_target_positions,
        suppress_tokens=config.suppress_tokens, begin_suppress_tokens=config.begin_suppress_tokens,
        alignment_heads=[list(h) for h in heads],
        is_multilingual=bool(lang_ids),
        lang_to_id={name[i]: i for i in lang_ids},
        task_to_id={"transcribe": token["<|transcribe|>"], "translate": token["<|translate|>"]},
        no_timestamps_token_id=token["<|notimestamps|>"],
        prev_sot_token_id=token["<|startofprev|>"],
        max_initial_timestamp_index=50,
        return_timestamps=False,
    )


def convert_ct2_whisper(ct2_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert a faster-whisper/CT2 Whisper directory (``model.bin``, ``config.json``,
    ``tokenizer.json``) into a transformers Whisper directory ``out_dir`` (created, must not hold
    another model). Returns ``out_dir``."""
    # slow to import; only this path needs it
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    model = read_ct2_model(ct2_dir / "model.bin")
    for name in ("config.json", "tokenizer.json"):
        if not (ct2_dir / name).is_file():
            raise FileNotFoundError(f"{ct2_dir} has no {name}")
    ct2_config = json.loads((ct2_dir / "config.json").read_text())
    tokenizer_json = json.loads((ct2_dir / "tokenizer.json").read_text(encoding="utf-8"))
    config = whisper_config(model, ct2_config, tokenizer_json)
    add_timestamp_tokens(tokenizer_json, config.vocab_size)
    state_dict = ct2_to_state_dict(model)

    # A model on the meta device costs nothing to build; strict loading proves every key matches.
    with torch.device("meta"):
        hf_model = WhisperForConditionalGeneration(config)
    hf_model.load_state_dict(state_dict, strict=True, assign=True)
    if config.tie_word_embeddings:
        hf_model.tie_weights()
    hf_model.generation_config = whisper_generation_config(config, ct2_config, tokenizer_json)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(out_dir)

    tokenizer_file = out_dir / "source_tokenizer.json"
    tokenizer_file.write_text(json.dumps(tokenizer_json, ensure_ascii=False), encoding="utf-8")
    eot = "<|endoftext|>"
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(tokenizer_file), unk_token=eot, bos_token=eot,
                                     eos_token=eot, pad_token=eot,
                                     model_max_length=config.max_target_positions)
    tokenizer.save_pretrained(out_dir)  # rewrites tokenizer.json, adds tokenizer_config.json
    tokenizer_file.unlink()
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out_dir)
    _apply_umask(out_dir)
    return out_dir


def _apply_umask(directory: Path) -> None:
    """save_pretrained writes the weights through a private (0600) temp file; give them the mode
    every other file gets, so a shared exp/ stays readable by the group."""
    umask = os.umask(0)
    os.umask(umask)
    for path in directory.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)
