"""Networks and the ESPnet model: cache equivalence, frozen Whisper encoder, bad configurations."""
import argparse
import math

import pytest
import torch

import drax.asr.registry  # noqa: F401
from drax.decode.options import DecodingOptions
from drax.nets import precision
from drax.nets.dit import AudioMemory, DiTDecoder
from drax.nets.pmid import PMidNetwork
from drax.nets.whisper import FrozenWhisperEncoder, WhisperLogMelFrontend, load_whisper_encoder

VOCAB = 20
TOKENS = ["<blank>", "<unk>", *"abcdefghijkl", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|transcribe|>",
          "<|notimestamps|>", "<sos/eos>"]
PROMPT = ["<|startoftranscript|>", "<|{lang}|>", "<|transcribe|>", "<|notimestamps|>"]


@pytest.mark.parametrize("max_positions", [0, 16])
def test_audio_cache_gives_same_logits_as_recomputing(max_positions):
    torch.manual_seed(0)
    dec = DiTDecoder(VOCAB, 12, hidden_size=32, num_blocks=2, num_heads=4, time_embed_dim=16,
                     max_positions=max_positions).eval()
    for p in dec.parameters():  # leave the zero-init, so the blocks are not the identity
        torch.nn.init.normal_(p, std=0.1)
    enc, lens = torch.randn(3, 9, 12), torch.tensor([9, 5, 7])
    x, t = torch.randint(VOCAB, (3, 10)), torch.rand(3)
    cache = dec.encode_audio(enc, lens)
    cached = [dec(x, t, cache) for _ in range(3)]
    fresh = dec(x, t, dec.encode_audio(enc, lens))
    for out in cached:
        torch.testing.assert_close(out, fresh)
    # padding frames beyond an utterance's length do not matter
    enc2 = enc.clone()
    enc2[1, 5:] = 100.0
    torch.testing.assert_close(dec(x, t, dec.encode_audio(enc2, lens)), fresh, rtol=1e-5, atol=1e-5)
    # candidates expanded from the cache equal per-row computation
    rep = dec(x.repeat_interleave(2, 0), t.repeat_interleave(2), cache.repeat_interleave(2))
    torch.testing.assert_close(rep[::2], fresh, rtol=1e-5, atol=1e-5)


def test_absolute_positions_break_translation_symmetry():
    """With all-equal input tokens, rotary-only outputs are (nearly) position-free; learned absolute
    positions make positions distinguishable, and too long an output is refused."""
    torch.manual_seed(0)
    enc, lens = torch.randn(1, 9, 12), torch.tensor([9])
    x, t = torch.full((1, 10), 3), torch.rand(1)
    outs = {}
    for max_positions in (0, 16):
        dec = DiTDecoder(VOCAB, 12, hidden_size=32, num_blocks=1, num_heads=4, time_embed_dim=16,
                         max_positions=max_positions).eval()
        for p in dec.parameters():
            torch.nn.init.normal_(p, std=0.1)
        outs[max_positions] = dec(x, t, dec.encode_audio(enc, lens))
    spread = {k: (v - v.mean(1, keepdim=True)).abs().max().item() for k, v in outs.items()}
    assert spread[0] < 1e-4 < spread[16]
    with pytest.raises(ValueError, match="exceeds decoder_conf.max_positions 16"):
        dec(torch.zeros(1, 17, dtype=torch.long), t, dec.encode_audio(enc, lens))


@pytest.mark.parametrize("block", [1, 3])
def test_block_causal_attention_reads_no_later_block(block):
    """With attention_block n, position i's state (readout shifted: the logits of i + 1) depends on the
    tokens of blocks up to i // n only; n = 1 is the causal mask Whisper's decoder was trained with."""
    torch.manual_seed(0)
    dec = DiTDecoder(VOCAB, 12, hidden_size=32, num_blocks=2, num_heads=4, time_embed_dim=16,
                     max_positions=16, shift_readout=True, attention_block=block).eval()
    for p in dec.parameters():
        torch.nn.init.normal_(p, std=0.1)
    audio = dec.encode_audio(torch.randn(1, 9, 12), torch.tensor([9]))
    x, t = torch.randint(VOCAB, (1, 12)), torch.rand(1)
    base = dec(x, t, audio)
    for j in range(1, 12):
        y = x.clone()
        y[0, j] = (x[0, j] + 1) % VOCAB
        changed = (dec(y, t, audio) - base).abs().amax(-1)[0] > 1e-6
        # logits of position i are read from state i - 1 (position 0 from its own)
        readers = torch.tensor([max(i - 1, 0) // block >= j // block for i in range(12)])
        assert torch.equal(changed, readers), (j, changed, readers)
    causal = torch.ones(12, 12, dtype=torch.bool).tril()
    if block == 1:
        free = DiTDecoder(VOCAB, 12, hidden_size=32, num_blocks=2, num_heads=4, time_embed_dim=16,
                          max_positions=16, shift_readout=True)
        free.load_state_dict(dec.state_dict())
        torch.testing.assert_close(free.eval()(x, t, audio, self_mask=causal), base)
    with pytest.raises(ValueError, match="attention_block"):
        DiTDecoder(VOCAB, 12, hidden_size=32, num_heads=4, attention_block=0)


def test_audio_dropout_uses_null_frame_only():
    torch.manual_seed(0)
    dec = DiTDecoder(VOCAB, 12, hidden_size=32, num_blocks=1, num_heads=4, time_embed_dim=16).eval()
    for p in dec.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randint(VOCAB, (2, 6)), torch.rand(2)
    drop = torch.tensor([True, True])
    a = dec(x, t, dec.encode_audio(torch.randn(2, 7, 12), torch.tensor([7, 3]), drop))
    b = dec(x, t, dec.encode_audio(torch.randn(2, 4, 12), torch.tensor([4, 4]), drop))
    torch.testing.assert_close(a, b)  # dropped audio: output independent of the audio


def test_dropped_audio_reads_the_null_frame_as_if_it_were_the_memory():
    """Dropped utterances get the null frame's K/V substituted after the projection: the same logits
    as projecting a memory whose first frame is the null frame, only the null frame's K/V carry a
    gradient into the null frame, and a frozen K/V projection runs no backward over the real frames."""
    torch.manual_seed(0)
    dec = DiTDecoder(VOCAB, 12, hidden_size=32, num_blocks=2, num_heads=4, time_embed_dim=16)
    for p in dec.parameters():
        torch.nn.init.normal_(p, std=0.1)
    enc, lens = torch.randn(2, 5, 12), torch.tensor([5, 4])
    x, t, drop = torch.randint(VOCAB, (2, 6)), torch.rand(2), torch.tensor([True, False])
    out = dec(x, t, dec.encode_audio(enc, lens, drop))
    memory = dec.audio_proj(enc)
    memory[0] = dec.null_audio[0]
    mask = torch.tensor([[True] + [False] * 4, [True] * 4 + [False]])[:, None, None, :]
    want = AudioMemory(kv=[blk.cross_attn.memory_kv(memory) for blk in dec.blocks], mask=mask)
    torch.testing.assert_close(out, dec(x, t, want))
    out.sum().backward()
    assert dec.null_audio.grad.abs().sum() > 0
    dec.zero_grad()
    dec.audio_proj.requires_grad_(False)
    for blk in dec.blocks:
        blk.cross_attn.kv.requires_grad_(False)
    audio = dec.encode_audio(enc, lens, drop)
    for k, v in audio.kv:  # the real frames' K/V enter the graph as constants: no backward through them
        assert [fn is None for fn, _ in k.grad_fn.next_functions] == [False, True]
        assert [fn is None for fn, _ in v.grad_fn.next_functions] == [False, True]


@pytest.fixture
def bf16_cpu(monkeypatch):
    """bf16 autocast on this CPU even where it lacks native bf16 (emulated: slow, but the same math)."""
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)


def test_bf16_runs_float32_on_a_cpu_without_native_bf16(monkeypatch, caplog):
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: False)
    precision._warn_float32_instead.cache_clear()
    with caplog.at_level("WARNING"):
        dtype = precision.autocast_dtype("bfloat16", "decoder_conf.autocast")
    assert dtype == torch.bfloat16 and "runs float32 instead" in caplog.text and "decoder_conf.autocast" in caplog.text
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with precision.autocast(torch.device("cpu"), dtype):
        assert (a @ b).dtype == torch.float32
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)
    with precision.autocast(torch.device("cpu"), dtype):
        assert (a @ b).dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", ["bfloat16"])
def test_autocast_decoder_returns_float32_logits_close_to_float32(dtype, bf16_cpu):
    """decoder_conf.autocast runs the matrix products in bf16: logits (and the cached autoregressive
    step) stay float32, within bf16 rounding of the float32 decoder, and training steps update the
    float32 weights; an unknown precision names the key and the choices."""
    torch.manual_seed(0)
    kw = dict(hidden_size=32, num_blocks=2, num_heads=4, time_embed_dim=16, max_positions=16, shift_readout=True)
    ref = DiTDecoder(VOCAB, 12, **kw).eval()
    for p in ref.parameters():
        torch.nn.init.normal_(p, std=0.1)
    low = DiTDecoder(VOCAB, 12, autocast=dtype, **kw).eval()
    low.load_state_dict(ref.state_dict())
    enc, lens = torch.randn(2, 9, 12), torch.tensor([9, 6])
    x, t = torch.randint(VOCAB, (2, 10)), torch.rand(2)
    want, got = ref(x, t, ref.encode_audio(enc, lens)), low(x, t, low.encode_audio(enc, lens))
    assert got.dtype == torch.float32
    assert 0 < (got - want).abs().max() < 0.05 * want.abs().max()
    step, _ = low.step(x, t, low.encode_audio(enc, lens))
    assert step.dtype == torch.float32
    low.train()
    opt = torch.optim.SGD(low.parameters(), lr=0.1)
    low(x, t, low.encode_audio(enc, lens)).logsumexp(-1).mean().backward()
    opt.step()
    assert all(p.dtype == torch.float32 for p in low.parameters())
    assert not torch.equal(low.head.weight, ref.head.weight)
    with pytest.raises(ValueError, match="decoder_conf.autocast: unknown choice 'bf16'; valid: null"):
        DiTDecoder(VOCAB, 12, autocast="bf16", **kw)


def test_pmid_shapes_and_masking():
    net = PMidNetwork(VOCAB, 12, output_length=7, hidden_size=32, num_heads=4).eval()
    enc, lens = torch.randn(2, 9, 12), torch.tensor([9, 4])
    out = net(enc, lens)
    assert out.shape == (2, 7, VOCAB)
    enc2 = enc.clone()
    enc2[1, 4:] = -50
    torch.testing.assert_close(net(enc2, lens), out, rtol=1e-5, atol=1e-5)
    # a shorter canvas reads the first positions' logits of the full L, computed for those only
    torch.testing.assert_close(net(enc, lens, 3), out[:, :3])


@pytest.mark.parametrize("autocast", [None, "bfloat16"])
def test_soft_delta_on_its_rows_only_gives_the_dense_logits_and_gradients(autocast):
    """The straight-through term multiplied with the embedding table at the rows drawn from p_mid only
    (soft_rows) equals the dense product: the same logits, the same gradients into p_mid and the table."""
    from drax.flow.path import build_path

    torch.manual_seed(0)
    dec = DiTDecoder(VOCAB, 12, hidden_size=32, num_blocks=2, num_heads=4, time_embed_dim=16, max_positions=16,
                     autocast=autocast)
    for p in dec.parameters():
        torch.nn.init.normal_(p, std=0.1)
    pmid, pmid_in = torch.nn.Linear(12, VOCAB), torch.randn(3, 10, 12)
    enc, lens = torch.randn(3, 9, 12), torch.tensor([9, 5, 7])
    x1, t = torch.randint(VOCAB, (3, 10)), torch.tensor([0.3, 0.5, 0.8])
    path = build_path("audio_mid", VOCAB)
    grads = []
    for sparse in (False, True):
        dec.zero_grad(), pmid.zero_grad()
        s = path.sample(x1, t, pmid(pmid_in), torch.Generator().manual_seed(1))
        assert 0 < s.soft_rows.sum() < s.soft_rows.numel() and not s.soft_delta[~s.soft_rows].any()
        logits = dec(s.xt, t, dec.encode_audio(enc, lens), s.soft_delta, soft_rows=s.soft_rows if sparse else None)
        (logits.square().mean()).backward()
        grads.append((logits.detach(), pmid.weight.grad.clone(), dec.embed.weight.grad.clone()))
    assert grads[0][1].abs().sum() > 0  # the loss reaches p_mid
    for dense, rows in zip(*grads):
        torch.testing.assert_close(rows, dense, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_whisper_dir(tmp_path_factory):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(vocab_size=60, num_mel_bins=80, encoder_layers=2, decoder_layers=1, d_model=32,
                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                        decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=32,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("whisper")
    WhisperForConditionalGeneration(cfg).save_pretrained(path)
    return path


def test_frozen_whisper_true_length_matches_transformers_and_batching(tiny_whisper_dir, bf16_cpu):
    enc = FrozenWhisperEncoder(80, str(tiny_whisper_dir))
    assert all(not p.requires_grad for p in enc.parameters())
    feats = torch.randn(2, 3000, 80)
    ref = load_whisper_encoder(str(tiny_whisper_dir)).eval()(feats.transpose(1, 2)).last_hidden_state
    out, olens, _ = enc(feats, torch.tensor([3000, 3000]))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert olens.tolist() == [1500, 1500]
    # a short utterance inside a padded batch equals the same utterance alone
    short = torch.randn(1, 201, 80)
    alone, alone_len, _ = enc(short, torch.tensor([201]))
    batch = torch.cat([short, torch.zeros(1, 99, 80)], dim=1)
    batch = torch.cat([batch, torch.randn(1, 300, 80)])
    both, lens, _ = enc(batch, torch.tensor([201, 300]))
    assert lens.tolist() == [101, 150] and alone_len.tolist() == [101]
    torch.testing.assert_close(both[0, :101], alone[0], rtol=1e-4, atol=1e-4)
    enc.train()
    assert not enc.whisper.training  # stays frozen in train mode
    with pytest.raises(ValueError, match="30 s"):
        enc(torch.randn(1, 3002, 80), torch.tensor([3002]))
    with pytest.raises(ValueError, match="set frontend_conf.n_mels: 80"):
        FrozenWhisperEncoder(128, str(tiny_whisper_dir))
    low, low_lens, _ = FrozenWhisperEncoder(80, str(tiny_whisper_dir), autocast="bfloat16")(feats, torch.tensor([3000, 3000]))
    assert low.dtype == torch.float32 and low_lens.tolist() == [1500, 1500]
    assert 0 < (low - ref).abs().max() < 0.1 * ref.abs().max()


def test_logmel_frontend_matches_transformers_feature_extractor():
    from transformers import WhisperFeatureExtractor

    wav = torch.randn(16000 * 2) * 0.1
    fe = WhisperFeatureExtractor(feature_size=80)
    ref = fe(wav.numpy(), sampling_rate=16000, return_tensors="pt").input_features[0].T  # padded to 30 s
    front = WhisperLogMelFrontend(pad_to_30s=True)
    feats, lens = front(wav[None], torch.tensor([wav.numel()]))
    assert lens.tolist() == [3000]
    torch.testing.assert_close(feats[0], ref, rtol=1e-3, atol=1e-3)
    feats, lens = WhisperLogMelFrontend()(wav[None], torch.tensor([wav.numel()]))
    assert lens.tolist() == [200] and feats.shape == (1, 200, 80)
    with pytest.raises(ValueError, match="frontend_conf.fs must be 16000"):
        WhisperLogMelFrontend(fs=8000)


def test_trailing_silence_appends_zeros_within_the_30s_window():
    from drax.nets.whisper import CHUNK_SAMPLES, whisper_input

    wav = torch.randn(16000 * 2) + 1.0  # no zero sample of its own
    out = whisper_input(wav, trailing_silence=1.5)
    assert out.shape == (16000 * 2 + 24000,) and torch.equal(out[: wav.numel()], wav) and not out[wav.numel():].any()
    assert torch.equal(whisper_input(wav), wav)
    assert whisper_input(wav, pad_to_30s=True).shape == (CHUNK_SAMPLES,)
    long = torch.randn(CHUNK_SAMPLES - 8000)
    assert whisper_input(long, trailing_silence=3.0).shape == (CHUNK_SAMPLES,)  # never past Whisper's window
    feats, lens = WhisperLogMelFrontend(trailing_silence=1.5)(wav[None], torch.tensor([wav.numel()]))
    assert lens.tolist() == [350]


def test_missing_whisper_dir_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder_conf.model.*fetch_whisper"):
        FrozenWhisperEncoder(80, str(tmp_path / "nope"))


def build(model_conf=None, **overrides):
    from espnet2.tasks.asr import ASRTask

    args = argparse.Namespace(
        token_list=list(TOKENS), input_size=8, frontend=None, frontend_conf={}, specaug=None, specaug_conf={},
        normalize=None, normalize_conf={}, preencoder=None, preencoder_conf={}, encoder="transformer",
        encoder_conf={"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 1,
                      "input_layer": "linear"},
        postencoder=None, postencoder_conf={}, decoder="dit",
        decoder_conf={"hidden_size": 16, "num_blocks": 1, "num_heads": 2, "time_embed_dim": 16},
        ctc_conf={}, model="drax",
        model_conf={"output_length": 10, "prompt_template": PROMPT, "pmid_conf": {"hidden_size": 16, "num_heads": 2},
                    **(model_conf or {})},
        init=None,
    )
    for k, v in overrides.items():
        setattr(args, k, v)
    return ASRTask.build_model(args)


def batch(model, lang="en"):
    ids = [model.token_list.index(t.format(lang=lang)) for t in PROMPT] + [2, 3, 4]
    text = torch.tensor([ids, ids[:-1] + [-1]])
    return dict(speech=torch.randn(2, 11, 8), speech_lengths=torch.tensor([11, 8]), text=text,
                text_lengths=torch.tensor([7, 6]))


@pytest.mark.parametrize("path", ["uniform", "mask", "uniform_mid", "audio_mid", "mask_mid", "audio_src"])
def test_every_path_trains_and_generates(path):
    torch.manual_seed(0)
    model = build({"path": path})
    loss, stats, weight = model(**batch(model))
    loss.backward()
    assert torch.isfinite(loss) and {"loss", "loss_dfm", "acc"} <= set(stats)
    assert ("loss_mid" in stats) == (path in ("audio_mid", "mask_mid", "audio_src"))
    if path in ("audio_mid", "mask_mid", "audio_src"):
        assert model.pmid.head.weight.grad.abs().sum() > 0
    model.eval()
    out = model.generate(torch.randn(2, 11, 8), torch.tensor([11, 9]), DecodingOptions(nfe=3, num_candidates=4),
                         prompt=torch.tensor([model.prompt_ids("de")] * 2), elbo=True)
    assert out.tokens.shape == (2, 4, 10)
    assert (out.tokens[:, :, :4] == torch.tensor(model.prompt_ids("de"))).all()
    assert out.elbo.shape == (2, 4) and (out.elbo <= 0).all()


def causal_model_and_batch(autocast: str | None = None):
    """A causal Drax with large random weights (long, varied transcripts), 3 utterances' encoder
    output and lengths, and their English prompts."""
    torch.manual_seed(0)
    model = build(decoder_conf={"hidden_size": 16, "num_blocks": 2, "num_heads": 2, "time_embed_dim": 16,
                                "attention_block": 1, "shift_readout": True, "max_positions": 16,
                                "autocast": autocast}).eval()
    for p in model.decoder.parameters():
        torch.nn.init.normal_(p, std=0.5)
    enc, lens = model.encode(torch.randn(3, 11, 8), torch.tensor([11, 9, 6]))
    return model, enc, lens, torch.tensor([model.prompt_ids("en")] * 3)


@pytest.mark.parametrize("autocast", [None, "bfloat16"])
def test_causal_jacobi_decoding_reaches_greedy_left_to_right(autocast, bf16_cpu):
    """A causal Drax decoded with the jacobi order (which then evaluates only up to the furthest end
    token) ends where greedy left-to-right decoding of the same network at t = 1 ends, in float32
    and in bf16 autocast alike."""
    from drax.decode.autoregressive import DiTAR, batched_greedy

    model, enc, lens, prompt = causal_model_and_batch(autocast)
    out = model.generate_encoded(enc, lens, DecodingOptions(nfe=10, temperature=0.0, jump_order="jacobi"),
                                 prompt=prompt)
    want = batched_greedy(DiTAR(model.decoder, model.eot_id), enc, lens, prompt, max_new=6)
    for row, ids in enumerate(want):
        got = model.strip(out.tokens[row, 0])
        assert got == [i for i in ids if i != model.eot_id], row


def test_a_token_rate_cap_ends_a_causal_decode_and_greedy_where_the_uncapped_ones_pass_it():
    """max_token_rate: a causal jacobi decode and batched greedy keep at most ceil(rate x frames) + 2
    transcript tokens, the uncapped transcript's prefix (the cap bites on at least one row)."""
    from drax.asr.model import transcript_cap
    from drax.decode.autoregressive import DiTAR, batched_greedy

    model, enc, lens, prompt = causal_model_and_batch()
    caps = transcript_cap(lens, 0.1).tolist()
    assert caps == [math.ceil(0.1 * n) + 2 for n in lens.tolist()]
    decode = lambda rate: model.generate_encoded(  # noqa: E731
        enc, lens, DecodingOptions(nfe=12, temperature=0.0, jump_order="jacobi", max_token_rate=rate), prompt=prompt)
    full, capped = decode(None), decode(0.1)
    full = [model.strip(full.tokens[row, 0]) for row in range(3)]
    assert any(len(f) > c for f, c in zip(full, caps))
    assert [model.strip(capped.tokens[row, 0]) for row in range(3)] == [f[:c] for f, c in zip(full, caps)]
    greedy = batched_greedy(DiTAR(model.decoder, model.eot_id), enc, lens, prompt, max_new=12,
                            caps=transcript_cap(lens, 0.1))
    assert [[i for i in row if i != model.eot_id] for row in greedy] == [f[:c] for f, c in zip(full, caps)]
    with pytest.raises(ValueError, match="max_token_rate: 0 must be > 0"):
        DecodingOptions(max_token_rate=0)


def test_a_pmid_start_begins_at_pmids_most_likely_tokens_and_reaches_the_same_greedy_fixed_point():
    """start: pmid puts p_mid's argmax at every free position of the first state; a causal jacobi
    decode from there ends where it ends from noise (greedy is its only fixed point)."""
    model, enc, lens, prompt = causal_model_and_batch()
    ends = {}
    for start in ("source", "pmid"):
        out = model.generate_encoded(enc, lens, DecodingOptions(nfe=10, temperature=0.0, jump_order="jacobi",
                                                                start=start), prompt=prompt, return_trajectory=True)
        ends[start] = [model.strip(out.tokens[row, 0]) for row in range(3)]
        if start == "pmid":
            first, p = out.samples.trajectory[0], prompt.shape[1]
            assert torch.equal(first[:, p:], model.pmid(enc, lens)[:, : first.shape[1]].argmax(-1)[:, p:])
            assert torch.equal(first[:, :p], prompt)
    assert ends["pmid"] == ends["source"]
    plain = build(model_conf={"path": "uniform"}).eval()
    with pytest.raises(ValueError, match="start: pmid needs a path with an audio p_mid"):
        plain.generate(torch.randn(1, 11, 8), torch.tensor([11]), DecodingOptions(nfe=2, start="pmid"))
    with pytest.raises(ValueError, match="start: unknown choice 'zeros'"):
        DecodingOptions(start="zeros")


def test_pmid_in_velocity_and_free_language_slot():
    model = build().eval()
    prompt = torch.tensor([model.prompt_ids(None)] * 2)
    assert prompt[0, 1] == -1
    out = model.generate(torch.randn(2, 11, 8), torch.tensor([11, 9]), DecodingOptions(nfe=4, use_pmid=True),
                         prompt=prompt, return_trajectory=True)
    assert len(out.samples.trajectory) == 4
    assert (out.tokens[:, 0, 0] == model.token_list.index("<|startoftranscript|>")).all()


def test_model_rejects_text_without_prompt():
    model = build()
    b = batch(model)
    b["text"][:, 0] = 5
    with pytest.raises(ValueError, match="prompt_template"):
        model(**b)


@pytest.mark.parametrize(
    "conf,message",
    [
        ({"path": "diagonal"}, "unknown path 'diagonal'; valid choices: uniform, mask, uniform_mid, audio_mid"),
        ({"scheduler": "cosine"}, "unknown scheduler 'cosine'; valid choices: tri_mixture, polynomial"),
        ({"scheduler_conf": {"p": 0}}, r"scheduler_conf.p must be > 0"),
        ({"scheduler_conf": {"q": -0.5}}, r"scheduler_conf.q must be > 0"),
        ({"eot_token": "<eos>"}, "model_conf.eot_token '<eos>' is not in the token list"),
        ({"lr": 1.0}, r"unknown model_conf key\(s\) \['lr'\]; valid keys: path, scheduler"),
        ({"prompt_template": ["<|sot|>"]}, "prompt_template token '<|sot|>' is not in the token list"),
        ({"audio_dropout": -0.5}, r"model_conf key audio_dropout: -0.5 must be >= 0"),
        ({"lang_replace_prob": 1.5}, r"model_conf key lang_replace_prob: 1.5 must be <= 1"),
        ({"output_length": "twelve"}, r"model_conf key output_length: 'twelve' is not an int"),
        ({"gumbel_tau": 0}, r"model_conf key gumbel_tau: 0 must be > 0"),
    ],
)
def test_bad_model_configuration_names_the_key(conf, message):
    with pytest.raises(ValueError, match=message):
        build(conf)


def test_unknown_encoder_choice_lists_valid_choices():
    from espnet2.tasks.asr import ASRTask

    parser = ASRTask.get_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--encoder", "whispr", "--output_dir", "x"])
    assert "whisper_frozen" in ASRTask.get_parser().format_help()


def test_save_load_identical_outputs_and_vocab_mismatch(tmp_path):
    import yaml

    from drax.decode.speech2text import load_model

    torch.manual_seed(0)
    model = build().eval()
    conf = {"token_list": list(TOKENS), "input_size": 8, "frontend": None, "frontend_conf": {}, "specaug": None,
            "specaug_conf": {}, "normalize": None, "normalize_conf": {}, "encoder": "transformer",
            "encoder_conf": {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 1,
                             "input_layer": "linear"},
            "decoder": "dit", "decoder_conf": {"hidden_size": 16, "num_blocks": 1, "num_heads": 2, "time_embed_dim": 16},
            "ctc_conf": {}, "model": "drax",
            "model_conf": {"output_length": 10, "prompt_template": PROMPT, "pmid_conf": {"hidden_size": 16, "num_heads": 2}},
            "init": None}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(conf))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    loaded, _ = load_model(tmp_path / "config.yaml", tmp_path / "model.pth")
    speech, lens = torch.randn(2, 11, 8), torch.tensor([11, 9])
    options = DecodingOptions(nfe=4, temperature=0.5)
    a = model.generate(speech, lens, options, generator=torch.Generator().manual_seed(1))
    b = loaded.generate(speech, lens, options, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.tokens, b.tokens)
    conf["token_list"] = list(TOKENS) + ["<extra>"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(conf))
    with pytest.raises(ValueError, match=r"does not fit .*bad.yaml.*token_list of 21 entries"):
        load_model(tmp_path / "bad.yaml", tmp_path / "model.pth")


def test_a_drax_model_decodes_without_espnets_task_module(tmp_path):
    """load_model builds a model of Drax's parts (drax/asr/build.py) without importing espnet2.tasks.asr,
    whose imports of every ESPnet model cost each decode process seconds; it decodes what ESPnet's
    build of the same config decodes."""
    import subprocess
    import sys

    import yaml

    torch.manual_seed(0)
    model = build(encoder="precomputed", encoder_conf={}).eval()
    conf = {"token_list": list(TOKENS), "input_size": 8, "frontend": None, "specaug": None, "normalize": None,
            "encoder": "precomputed", "encoder_conf": {}, "decoder": "dit",
            "decoder_conf": {"hidden_size": 16, "num_blocks": 1, "num_heads": 2, "time_embed_dim": 16}, "model": "drax",
            "model_conf": {"output_length": 10, "prompt_template": PROMPT, "pmid_conf": {"hidden_size": 16, "num_heads": 2}},
            "init": None}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(conf))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    speech = torch.randn(2, 11, 8, generator=torch.Generator().manual_seed(2))
    torch.save(speech, tmp_path / "speech.pt")
    expected = model.generate(speech, torch.tensor([11, 9]), DecodingOptions(nfe=4), generator=torch.Generator().manual_seed(1))
    decode = f"""
import sys, torch
from drax.decode.options import DecodingOptions
from drax.decode.speech2text import load_model
model, _ = load_model({str(tmp_path / "config.yaml")!r}, {str(tmp_path / "model.pth")!r})
out = model.generate(torch.load({str(tmp_path / "speech.pt")!r}), torch.tensor([11, 9]), DecodingOptions(nfe=4),
                     generator=torch.Generator().manual_seed(1))
print(out.tokens.tolist(), "espnet2.tasks.asr" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", decode], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[-2] == f"{expected.tokens.tolist()} False"


def test_frame_pooling_averages_valid_frames_only():
    from drax.nets.whisper import FramePooling

    pool = FramePooling(4, 4, stride=3)
    with torch.no_grad():
        pool.proj.weight.copy_(torch.eye(4))
        pool.proj.bias.zero_()
    x = torch.randn(2, 7, 4)
    x[1, 4:] = 1e6  # padding of the shorter utterance must not leak into its last pooled frame
    y, lens = pool(x, torch.tensor([7, 4]))
    assert lens.tolist() == [3, 2] and y.shape == (2, 3, 4)
    torch.testing.assert_close(y[0, 0], x[0, :3].mean(0))
    torch.testing.assert_close(y[0, 2], x[0, 6])
    torch.testing.assert_close(y[1, 1], x[1, 3])


def test_causal_decoder_logits_do_not_depend_on_the_canvas_behind_them():
    """With causal self-attention (attention_block 1) the logits of the first k positions are the
    same on a canvas of k as on a longer one: a fitted canvas (model_conf.canvas_margin) drops only
    the loss and compute of the trailing positions."""
    torch.manual_seed(0)
    dec = DiTDecoder(VOCAB, 12, hidden_size=32, num_blocks=2, num_heads=4, time_embed_dim=16, max_positions=16,
                     shift_readout=True, attention_block=1).eval()
    for p in dec.parameters():
        torch.nn.init.normal_(p, std=0.1)
    enc, lens = torch.randn(2, 9, 12), torch.tensor([9, 6])
    x, t = torch.randint(VOCAB, (2, 12)), torch.rand(2)
    audio = dec.encode_audio(enc, lens)
    full = dec(x, t, audio)
    for k in (3, 7):
        torch.testing.assert_close(dec(x[:, :k], t, audio), full[:, :k], rtol=1e-5, atol=1e-5)
    bidirectional = DiTDecoder(VOCAB, 12, hidden_size=32, num_blocks=2, num_heads=4, time_embed_dim=16,
                               max_positions=16, shift_readout=True).eval()
    bidirectional.load_state_dict(dec.state_dict())
    short = bidirectional(x[:, :7], t, bidirectional.encode_audio(enc, lens))
    assert not torch.allclose(short, bidirectional(x, t, bidirectional.encode_audio(enc, lens))[:, :7], atol=1e-4)


@pytest.mark.parametrize("shift_readout,rotary", [(True, False), (False, True)])
def test_prefix_cache_gives_the_decoders_logits_from_the_first_changed_position_on(shift_readout, rotary):
    """PrefixCache (the jacobi sampler's causal posterior) returns what the decoder's forward does on
    every call: canvases that change from some position on, of another width, at another time."""
    from drax.nets.dit import PrefixCache

    torch.manual_seed(0)
    dec = DiTDecoder(VOCAB, 12, hidden_size=32, num_blocks=2, num_heads=4, time_embed_dim=16, max_positions=16,
                     shift_readout=shift_readout, rotary=rotary, attention_block=1).eval()
    for p in dec.parameters():
        torch.nn.init.normal_(p, std=0.1)
    audio = dec.encode_audio(torch.randn(2, 9, 12), torch.tensor([9, 6]))
    cached, t = PrefixCache(dec, audio), torch.ones(2)
    x = torch.randint(VOCAB, (2, 12))
    calls = []
    for change, width, time in ((None, 12, t), (5, 12, t), (9, 12, t), (None, 8, t), (2, 10, t), (None, 10, t / 2)):
        x = x.clone()
        if change is not None:
            x[1, change:] = (x[1, change:] + 1) % VOCAB  # every token from `change` on differs
        calls.append((x[:, :width], time))
    computed, step = [], dec.step
    dec.step = lambda tokens, *args: computed.append(tokens.shape[1]) or step(tokens, *args)
    with torch.no_grad():
        for tokens, time in calls:
            torch.testing.assert_close(cached(tokens, time), dec(tokens, time, audio), rtol=1e-5, atol=1e-5)
    # from the first changed position on, all of it at a new time; with the shifted readout not the last
    # position, whose state predicts one beyond the canvas (at least one position a call)
    assert computed == ([11, 6, 2, 1, 7, 9] if shift_readout else [12, 7, 3, 1, 8, 10])
    with pytest.raises(ValueError, match="PrefixCache needs causal self-attention"):
        PrefixCache(DiTDecoder(VOCAB, 12, hidden_size=32, num_heads=4), audio)
