"""Block-parallel Drax (`model_conf.active_block`) and its block decoder (drax/flow/block.py).

The training mask (clean causal prefix, bidirectional active block, nothing after it), the decoder's
block step against its full forward, the block decoder against AR greedy (a one-position block), its
key/value cache against recomputing the prefix, and the threshold rule (at least one commit per call,
a committed token never changes).
"""
import dataclasses

import pytest
import torch
from test_training_options import build

from drax.decode.autoregressive import DiTAR, batched_greedy
from drax.decode.options import DecodingOptions
from drax.flow.block import BlockSampler
from drax.flow.path import build_path
from drax.nets.dit import Denoiser, DiTDecoder

VOCAB = 20
BLOCK = {"hidden_size": 16, "num_blocks": 2, "num_heads": 2, "time_embed_dim": 16, "attention_block": 1,
         "shift_readout": True, "max_positions": 16, "rotary": False}


def random_decoder_and_audio(**conf):
    """A small random causal DiT and the audio memory of two utterances (9 and 6 frames)."""
    torch.manual_seed(0)
    dec = DiTDecoder(VOCAB, 12, **{**BLOCK, **conf}).eval()
    for p in dec.parameters():  # zero-initialised modulation would hide the time input
        torch.nn.init.normal_(p, std=0.3)
    return dec, dec.encode_audio(torch.randn(2, 9, 12), torch.tensor([9, 6]))


def block_model(size, **model_conf):
    torch.manual_seed(0)
    model = build({"active_block": size, "canvas_margin": 0, "length_predictor": False, "prompt_prob": 0.0, **model_conf},
                  decoder_conf=BLOCK).eval()
    for p in model.decoder.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return model


@pytest.mark.parametrize("rotary", [False, True])
def test_active_block_mask_clean_prefix_visible_future_hidden_block_bidirectional(rotary):
    dec, audio = random_decoder_and_audio(rotary=rotary)
    x, t = torch.randint(VOCAB, (2, 12)), torch.tensor([0.3, 0.7])
    active = torch.zeros(2, 12, dtype=torch.bool)
    active[0, 4:7], active[1, 6:10] = True, True
    base = dec(x, t, audio, active=active)

    def changed(row, pos):
        y = x.clone()
        y[row, pos] = (y[row, pos] + 1) % VOCAB
        return (dec(y, t, audio, active=active)[row] - base[row]).abs().amax(-1) > 1e-5

    # logits of position j read state j - 1 (the shifted readout): row 0's block is positions 4..6,
    # read from states 3..5; state 3 is the last committed position
    assert not changed(0, 8)[:8].any()  # a token after the block: nothing up to the block's reach sees it
    assert changed(0, 6)[5:7].all()  # the block's last token: seen by the block's earlier states
    assert not changed(0, 6)[:5].any()  # ... not by the prefix (nor by the state predicting position 4)
    assert changed(0, 1)[2:7].all()  # the prefix: seen by everything after it
    # the prefix is clean: read at t = 1 whatever the block's t
    other_t = dec(x, torch.tensor([0.9, 0.1]), audio, active=active)
    torch.testing.assert_close(other_t[0, :5], base[0, :5])
    assert (other_t[0, 5:7] - base[0, 5:7]).abs().amax() > 1e-4


@pytest.mark.parametrize("rotary", [False, True])
def test_block_step_with_cached_prefix_equals_the_full_forward(rotary):
    dec, audio = random_decoder_and_audio(rotary=rotary)
    x, t = torch.randint(VOCAB, (2, 10)), torch.tensor([0.3, 0.7])
    active = torch.zeros(2, 10, dtype=torch.bool)
    active[:, 5:9] = True
    full = dec(x, t, audio, active=active)  # shifted: position j from state j - 1
    pos = torch.arange(10)[None].expand(2, -1)
    ones = torch.ones(2, 10, dtype=torch.bool)
    whole, _ = dec.block_step(x, pos, t, audio, active, ones)
    torch.testing.assert_close(whole[:, :-1], full[:, 1:], rtol=1e-4, atol=1e-4)
    # the first 3 positions cached (rows may hold different numbers of them: row 1 has 2)
    _, kv = dec.block_step(x[:, :3], pos[:, :3], t, audio, active[:, :3], ones[:, :3])
    past_valid = torch.tensor([[True, True, True], [True, True, False]])
    lo = torch.tensor([3, 2])
    idx = lo[:, None] + torch.arange(7)[None]
    valid = idx < 10
    idx = idx.clamp(max=9)
    rest, _ = dec.block_step(x.gather(1, idx), idx, t, audio, active.gather(1, idx) & valid, valid, kv, past_valid)
    for r in range(2):
        n = int(valid[r].sum())
        torch.testing.assert_close(rest[r, :n], whole[r, lo[r]:lo[r] + n], rtol=1e-4, atol=1e-4)


def test_a_one_position_block_is_ar_greedy():
    model = block_model(1)
    speech, lens = torch.randn(3, 11, 8), torch.tensor([11, 9, 7])
    prompt = torch.tensor([model.prompt_ids("en")] * 3)
    out = model.generate(speech, lens, DecodingOptions(jump_order="block", temperature=0.0), prompt=prompt)
    enc, enc_lens = model.encode(speech, lens)
    greedy = batched_greedy(DiTAR(model.decoder, model.eot_id), enc, enc_lens, prompt,
                            model.output_length - prompt.shape[1])
    for row, ref in zip(out.tokens[:, 0], greedy):
        assert row[prompt.shape[1]:prompt.shape[1] + len(ref)].tolist() == ref
    longest = max(len(ref) for ref in greedy)
    assert out.samples.steps == longest  # one token per call, the end token included


@pytest.mark.parametrize("path", ["audio_mid", "mask_mid", "uniform"])
def test_the_cache_of_committed_positions_decodes_as_recomputing_them(path):
    model = block_model(3, path=path)
    speech, lens = torch.randn(3, 11, 8), torch.tensor([11, 9, 7])
    enc, enc_lens = model.encode(speech, lens)
    audio = model.decoder.encode_audio(enc, enc_lens)
    canvas = torch.full((3, model.output_length), model.eot_id)
    canvas[:, :4] = torch.tensor(model.prompt_ids("en"))
    given = torch.zeros_like(canvas, dtype=torch.bool)
    given[:, :4] = True
    pmid = model.pmid(enc, enc_lens, model.output_length) if model.pmid is not None else None
    outs = [BlockSampler(model.path, 3, 0.3, end_token=model.eot_id, pmid_logits=pmid, reuse_cache=reuse).sample(
        Denoiser(model.decoder, audio), canvas, given, torch.Generator().manual_seed(2)) for reuse in (True, False)]
    assert torch.equal(outs[0].tokens, outs[1].tokens) and outs[0].steps == outs[1].steps


class RandomLogits:
    """A decoder whose every call returns fresh random logits (sharp at some positions)."""

    def __init__(self, vocab):
        self.vocab, self.generator = vocab, torch.Generator().manual_seed(0)
        self.decoder, self.audio = self, None

    def block_step(self, tokens, positions, t, audio, active, valid, past=None, past_valid=None):
        b, q = tokens.shape
        logits = torch.randn(b, q, self.vocab, generator=self.generator) * 6
        return logits, [(torch.zeros(b, 1, q, 1), torch.zeros(b, 1, q, 1))]


@pytest.mark.parametrize("threshold", [1.0, 0.9, 0.5, 0.0])
def test_threshold_commits_at_least_one_token_per_call_and_never_changes_one(threshold):
    path, end = build_path("uniform", VOCAB), VOCAB - 1
    canvas = torch.full((4, 14), end)
    canvas[:, :2] = torch.tensor([3, 4])
    given = torch.zeros_like(canvas, dtype=torch.bool)
    given[:, :2] = True
    out = BlockSampler(path, 4, threshold, end_token=end).sample(RandomLogits(VOCAB), canvas, given,
                                                                 torch.Generator().manual_seed(1), return_trajectory=True)
    before_tokens, before = canvas, given
    finished = torch.zeros(4, dtype=torch.bool)
    for tokens, committed in zip(out.trajectory, out.committed):
        new = (committed & ~before).sum(1)
        assert (new[~finished] >= 1).all() and (new[finished] == 0).all()
        assert (committed >= before).all() and (tokens[before] == before_tokens[before]).all()
        if threshold == 1.0:  # nothing is that sure: exactly one token per call, the first open one
            assert (new[~finished] == 1).all()
            rows = ~finished
            assert ((committed & ~before)[rows].int().argmax(1) == (~before)[rows].int().argmax(1)).all()
        is_end = (tokens == end) & committed
        first = torch.where(is_end.any(1), is_end.int().argmax(1), 14)
        finished |= (committed | (torch.arange(14)[None] > first[:, None])).all(1)  # ended, or the canvas is full
        before_tokens, before = tokens, committed
    assert len(out.trajectory) == out.steps
    if threshold == 0.0:  # everything sure: a whole block per call
        assert out.steps <= 3


def test_a_free_language_slot_is_decoded_before_the_given_prompt_tokens_after_it():
    """prompt [sot, ?, transcribe, notimestamps]: the language slot is a block of its own (given
    positions never enter a block), and each call commits a token."""
    model = block_model(4)
    prompt = torch.tensor([model.prompt_ids(None)] * 2)
    out = model.generate(torch.randn(2, 11, 8), torch.tensor([11, 9]), DecodingOptions(jump_order="block"),
                         prompt=prompt, return_trajectory=True)
    first = out.samples.committed[0]
    assert first[:, :4].all() and not first[:, 4:].any()  # the language slot alone
    assert (out.tokens[:, 0, 2:4] == prompt[:, 2:]).all()
    states = [torch.zeros_like(first)] + out.samples.committed
    for call, (before, after) in enumerate(zip(states, states[1:])):
        decoding = out.samples.row_steps > call  # a row takes part in its first row_steps calls
        assert ((after & ~before).sum(1)[decoding] >= 1).all() and torch.equal(after[~decoding], before[~decoding])


def test_block_training_noises_only_the_active_block_and_adds_the_prefix_loss():
    model = block_model(2, prompt_prob=0.0).train()
    from test_training_options import batch

    seen = {}
    forward = model.decoder.forward

    def spy(xt, t, audio, soft_delta=None, self_mask=None, pinned=None, soft_rows=None, active=None):
        seen.update(xt=xt, active=active, soft_rows=soft_rows)
        return forward(xt, t, audio, soft_delta, self_mask, pinned, soft_rows, active)

    model.decoder.forward = spy
    data = batch(model)
    torch.manual_seed(3)
    loss, stats, _ = model(**data)
    loss.backward()
    active = seen["active"]
    assert active.shape == seen["xt"].shape and (active.sum(1) >= 1).all() and (active.sum(1) <= 2).all()
    start = active.int().argmax(1)
    assert (start >= model.prompt_length).all() and (start <= data["text_lengths"]).all()
    text = torch.where(data["text"] >= 0, data["text"], model.eot_id)
    for r in range(2):  # the committed prefix is the clean text
        assert torch.equal(seen["xt"][r, :start[r]], text[r, :start[r]])
    assert not (seen["soft_rows"] & ~active).any()
    assert {"loss_prefix", "loss_dfm", "loss_mid"} <= set(stats)
    assert model.pmid.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("conf, decoder_conf, message", [
    ({"active_block": 0}, BLOCK, "model_conf key active_block: 0 must be >= 1"),
    ({"active_block": 4}, {**BLOCK, "attention_block": None}, "attention_block: 1 and shift_readout"),
    ({"active_block": 4}, {**BLOCK, "shift_readout": False}, "attention_block: 1 and shift_readout"),
    ({"active_block": 4, "canvas_margin": 2, "length_predictor": True}, BLOCK, "length_predictor: false"),
    ({"active_block": 4, "prompt_prob": 0.1}, BLOCK, "set prompt_prob: 0"),
    ({"active_block": 4}, {**BLOCK, "preserve_embedding": True}, "preserve_embedding: false"),
])
def test_bad_active_block_settings_name_the_key(conf, decoder_conf, message):
    with pytest.raises(ValueError, match=message):
        build(conf, decoder_conf=decoder_conf)


def test_block_decoding_options():
    with pytest.raises(ValueError, match="threshold"):
        DecodingOptions(jump_order="block", threshold=1.5)
    with pytest.raises(ValueError, match="block_size"):
        DecodingOptions(jump_order="block", block_size=0)
    model = build({}, decoder_conf={**BLOCK, "attention_block": None})
    with pytest.raises(ValueError, match="block-parallel model"):
        model.generate(torch.randn(1, 11, 8), torch.tensor([11]), DecodingOptions(jump_order="block"),
                       prompt=torch.tensor([model.prompt_ids("en")]))
    # a causal decoder with the shifted readout decodes in blocks when told the size
    causal = build({}, decoder_conf=BLOCK).eval()
    out = causal.generate(torch.randn(1, 11, 8), torch.tensor([11]),
                          dataclasses.replace(DecodingOptions(jump_order="block"), block_size=2),
                          prompt=torch.tensor([causal.prompt_ids("en")]))
    assert out.tokens.shape == (1, 1, causal.output_length)


def test_decoding_options_choose_the_sampler():
    from drax.flow.sampler import ConfidenceOrder, EulerJumps, JacobiSteps

    model = block_model(4)
    chosen = {order: type(model.sampler(DecodingOptions(jump_order=order)))
              for order in ("random", "confidence", "jacobi", "block")}
    assert chosen == {"random": EulerJumps, "confidence": ConfidenceOrder, "jacobi": JacobiSteps, "block": BlockSampler}
    assert model.sampler(DecodingOptions(jump_order="block")).block_size == 4  # the trained block
    assert model.sampler(DecodingOptions(jump_order="block", block_size=2)).block_size == 2
    for order in ("confidence", "jacobi", "block"):
        with pytest.raises(ValueError, match=f"the {order} order has no p_mid term"):
            model.sampler(DecodingOptions(jump_order=order, use_pmid=True))
    with pytest.raises(ValueError, match="jump_order: unknown choice 'best'"):
        DecodingOptions(jump_order="best")


def test_all_blocks_in_one_forward_equal_each_block_after_its_clean_prefix():
    """forward_blocks (clean canvas beside the noised one) gives every block the logits the one-block
    forward gives it with that block active after the clean prefix, and the clean copy AR logits."""
    dec, audio = random_decoder_and_audio()
    clean, noised = torch.randint(VOCAB, (2, 11)), torch.randint(VOCAB, (2, 11))
    t = torch.tensor([0.3, 0.8])
    block = torch.full((2, 11), -1)
    block[:, 3:] = (torch.arange(8) // 3)[None]  # blocks [3, 6), [6, 9), [9, 11)
    block[1, 10] = -1  # row 1's canvas ends earlier
    logits, ar = dec.forward_blocks(clean, noised, t, audio, block)
    causal = torch.ones(11, 11, dtype=torch.bool).tril()[None, None]
    torch.testing.assert_close(ar, dec(clean, torch.ones(2), audio, self_mask=causal), rtol=1e-4, atol=1e-4)
    for lo, hi in ((3, 6), (6, 9), (9, 11)):
        x = torch.cat([clean[:, :lo], noised[:, lo:hi]], 1)
        active = torch.zeros_like(x, dtype=torch.bool)
        active[:, lo:] = True
        one = dec(x, t, audio, active=active)
        for row in range(2):
            upto = hi if row == 0 or hi < 11 else 10
            torch.testing.assert_close(logits[row, lo:upto], one[row, lo:upto], rtol=1e-4, atol=1e-4)


def test_all_blocks_training_loss_trains_every_block_and_the_ar_prefix():
    from test_training_options import batch

    model = block_model(2, block_loss="all").train()
    data = batch(model)
    loss, stats, _ = model(**data)
    loss.backward()
    assert torch.isfinite(loss) and {"loss_prefix", "loss_dfm", "loss_mid", "acc"} <= set(stats)
    assert model.pmid.head.weight.grad.abs().sum() > 0 and model.decoder.head.weight.grad.abs().sum() > 0
    twice = block_model(2, block_loss="all", time_draws=2).train()
    assert torch.isfinite(twice(**data)[0])
    with pytest.raises(ValueError, match="block_loss: unknown choice 'some'"):
        block_model(2, block_loss="some")


def test_consistency_rows_read_the_text_then_the_models_own_guesses_at_t1():
    torch.manual_seed(0)
    model = build({"consistency_prob": 1.0, "canvas_margin": 0, "length_predictor": False, "prompt_prob": 0.0,
                   "lang_replace_prob": 0.0}, decoder_conf=BLOCK).train()
    for p in model.decoder.parameters():
        torch.nn.init.normal_(p, std=0.5)
    from test_training_options import batch

    calls = []
    forward = model.decoder.forward

    def spy(xt, t, audio, soft_delta=None, self_mask=None, pinned=None, soft_rows=None, active=None):
        logits = forward(xt, t, audio, soft_delta, self_mask, pinned, soft_rows, active)
        calls.append(dict(xt=xt, t=t, soft_rows=soft_rows, logits=logits, grad=torch.is_grad_enabled()))
        return logits

    model.decoder.forward = spy
    data = batch(model)
    loss, _, _ = model(**data)
    loss.backward()
    draft, train = calls  # the guess of the path draw (no gradient), then the jacobi state
    assert not draft["grad"] and train["grad"]
    assert torch.equal(train["t"], torch.ones_like(train["t"])) and (draft["t"] < 1).any()
    assert train["soft_rows"] is None or not train["soft_rows"].any()
    guess = draft["logits"].argmax(-1)
    text = torch.where(data["text"] >= 0, data["text"], model.eot_id)
    n = data["text_lengths"]
    for r in range(text.shape[0]):
        own = train["xt"][r] == guess[r]
        clean = train["xt"][r, :n[r] + 1] == torch.cat([text[r, :n[r]], text.new_tensor([model.eot_id])])
        settle = int((~clean).int().argmax()) if not clean.all() else int(n[r]) + 1
        assert model.prompt_length <= settle
        assert clean[:settle].all()  # the settled prefix is the text
        assert own[settle:n[r] + 1].all()  # from the settle point on: the model's own guesses
    assert model.decoder.blocks[0].self_attn.qkv.weight.grad.abs().sum() > 0


def test_consistency_needs_a_causal_decoder_and_no_block():
    with pytest.raises(ValueError, match="consistency_prob trains the jacobi states"):
        build({"consistency_prob": 0.5}, decoder_conf={**BLOCK, "attention_block": None})
    with pytest.raises(ValueError, match="model_conf key consistency_prob: 2.0 must be <= 1"):
        build({"consistency_prob": 2.0}, decoder_conf=BLOCK)


def test_decoding_options_jacobi_time_reaches_the_sampler():
    model = block_model(2)
    assert model.sampler(DecodingOptions(jump_order="jacobi", jacobi_time=0.7)).time(0) == 0.7
    with pytest.raises(ValueError, match="jacobi_time"):
        DecodingOptions(jump_order="jacobi", jacobi_time=1.5)
