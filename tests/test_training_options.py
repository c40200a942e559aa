"""The learning-efficiency options of the Drax model (model_conf), each against its definition."""
import dataclasses

import pytest
import torch

from drax.asr.model import weighted_ce
from drax.decode.options import DecodingOptions
from drax.flow.path import build_path
from drax.nets.length import LengthPredictor

from test_nets import PROMPT, batch, build

P = len(PROMPT)


def test_fitted_canvas_pins_beyond_each_utterance_and_validation_uses_the_margin():
    torch.manual_seed(0)
    model = build({"canvas_margin": 2})
    b = batch(model)  # text lengths 7 and 6 (prompt included)
    n = b["text_lengths"]
    for _ in range(20):
        x1, pinned, weight = model.build_targets(b["text"], n)
        canvas = (~pinned[:, P:]).sum(1) + P  # lengths of the free canvases (prompt aside)
        assert x1.shape[1] == int(canvas.max()) <= model.output_length
        assert ((canvas >= n + 1) & (canvas <= n + 1 + 4)).all()  # own length + 1 + U{0..2m}
        # beyond the canvas: pinned end tokens, no loss; inside: text then end tokens, all weighted
        pos = torch.arange(x1.shape[1])[None]
        assert (x1[pos >= n[:, None]] == model.eot_id).all()
        assert (weight[pinned] == 0).all() and (weight[~pinned] == 1).all()
    model.eval()
    x1, pinned, _ = model.build_targets(b["text"], n)
    assert ((~pinned[:, P:]).sum(1) + P).tolist() == (n + 1 + 2).tolist()


def test_pads_after_the_first_end_token_carry_pad_weight():
    model = build({"pad_weight": 0.25})
    b = batch(model)
    x1, pinned, weight = model.build_targets(b["text"], b["text_lengths"])
    for row, n in enumerate(b["text_lengths"].tolist()):
        assert (weight[row, P:n + 1] == 1).all()  # text and the first end token
        assert (weight[row, n + 1:] == 0.25).all() and (x1[row, n + 1:] == model.eot_id).all()
        assert (weight[row, :P] == 0).all()  # pinned prompt
    logits = torch.randn(2, x1.shape[1], model.vocab_size)
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x1, reduction="none")
    torch.testing.assert_close(weighted_ce(logits, x1, weight), (ce * weight).sum() / weight.sum())


def test_length_predictor_learns_the_text_token_count_and_sets_the_sampler_canvas():
    torch.manual_seed(0)
    model = build({"canvas_margin": 1}).eval()  # eval: the encoder's dropout off
    b = batch(model)
    loss, stats, _ = model(**b)
    with torch.no_grad():
        enc, lens = model.encode(b["speech"], b["speech_lengths"])
        n_hat = model.length_predictor(enc, lens)
    n_text = (b["text_lengths"] - P).float()  # text tokens only: no prompt, no end token
    torch.testing.assert_close(stats["loss_len"].squeeze(), (n_hat - n_text).abs().mean())

    class Fixed(torch.nn.Module):
        def forward(self, enc, lens):
            return torch.tensor([2.2, 0.4])

    model.length_predictor = Fixed()
    out = model.generate(b["speech"], b["speech_lengths"], DecodingOptions(nfe=2),
                         prompt=torch.tensor([model.prompt_ids("en")] * 2))
    canvas = torch.tensor([P + 2 + 1 + 1, P + 0 + 1 + 1])  # prompt + round(n_hat) + end + margin
    assert out.tokens.shape == (2, 1, int(canvas.max()))
    assert (out.tokens[1, 0, canvas[1]:] == model.eot_id).all()  # pinned beyond the shorter canvas
    # an explicit output_length still gives a fixed canvas
    assert model.generate(b["speech"], b["speech_lengths"], DecodingOptions(nfe=2, output_length=9)).tokens.shape[-1] == 9


CAUSAL = {"hidden_size": 16, "num_blocks": 1, "num_heads": 2, "time_embed_dim": 16, "attention_block": 1}


def test_a_causal_fitted_canvas_without_length_predictor_trains_on_text_plus_end_and_decodes_on_l():
    torch.manual_seed(0)
    model = build({"canvas_margin": 0, "length_predictor": False}, decoder_conf=CAUSAL)
    assert model.length_predictor is None
    b = batch(model)
    n = b["text_lengths"]
    x1, pinned, weight = model.build_targets(b["text"], n)
    assert x1.shape[1] == int(n.max()) + 1  # text + one end token, nothing after it
    assert ((~pinned[:, P:]).sum(1) + P).tolist() == (n + 1).tolist()
    assert (x1[torch.arange(2), n] == model.eot_id).all() and (weight[torch.arange(2), n] == 1).all()
    loss, stats, _ = model(**b)
    assert torch.isfinite(loss) and "loss_len" not in stats
    model.eval()
    out = model.generate(b["speech"], b["speech_lengths"], DecodingOptions(nfe=12, jump_order="jacobi"),
                         prompt=torch.tensor([model.prompt_ids("en")] * 2))
    assert out.tokens.shape == (2, 1, model.output_length)  # the full L: no predicted length truncates


@pytest.mark.parametrize("conf,decoder_conf", [
    ({"canvas_margin": 0, "length_predictor": False}, None),  # bidirectional: the canvas length is seen
    ({"length_predictor": False}, CAUSAL),  # a fixed canvas has no length predictor to leave out
])
def test_leaving_out_the_length_predictor_needs_a_causal_fitted_canvas(conf, decoder_conf):
    overrides = {"decoder_conf": decoder_conf} if decoder_conf else {}
    with pytest.raises(ValueError, match="model_conf.length_predictor: false .* needs model_conf.canvas_margin and "
                                         "causal self-attention"):
        build(conf, **overrides)


def test_length_predictor_counts_scale_with_duration():
    torch.manual_seed(0)
    pred = LengthPredictor(8, hidden_size=4)
    frames = torch.randn(1, 20, 8)
    doubled = torch.cat([frames, frames], 1)
    with torch.no_grad():
        one, two = pred(frames, torch.tensor([20])), pred(doubled, torch.tensor([40]))
        half = pred(doubled, torch.tensor([20]))
    assert abs(float(one) - 20 * 0.08) < 1e-4  # the initial rate per frame
    assert float(two) == pytest.approx(2 * float(one), rel=1e-4)
    assert float(half) == pytest.approx(float(one), rel=1e-4)  # frames beyond the length are ignored


def test_annealed_attention_is_causal_at_step_zero_and_full_at_the_end():
    torch.manual_seed(0)
    model = build({"attention_anneal_steps": 10})
    mask = model.self_attention_mask(6, 3, "cpu")
    assert torch.equal(mask, torch.ones(6, 6, dtype=torch.bool).tril().expand(3, 1, 6, 6))
    model.updates.fill_(5)
    mask = model.self_attention_mask(40, 64, "cpu")
    upper = torch.ones(40, 40, dtype=torch.bool).triu(1)
    assert abs(mask[..., upper].float().mean().item() - 0.5) < 0.02 and mask[..., ~upper].all()
    model.updates.fill_(10)
    assert model.self_attention_mask(6, 3, "cpu") is None
    model.updates.zero_()
    model.eval()
    assert model.self_attention_mask(6, 3, "cpu") is None  # validation and inference read everything
    model.train()
    model(**batch(model))
    assert int(model.updates) == 1 and "updates" in model.state_dict()
    older = {k: v for k, v in build().state_dict().items() if k != "updates"}  # written before the counter
    model.load_state_dict(older)
    assert int(model.updates) == 0


def test_stratified_time_puts_one_draw_in_each_stratum_and_power_skews_to_noise():
    torch.manual_seed(0)
    model = build({"time_sampling": "stratified"})
    t = model.sample_time(16, "cpu")
    assert sorted((t * 16).floor().long().tolist()) == list(range(16))
    skewed = build({"time_power": 2.0}).sample_time(100_000, "cpu")
    assert abs(skewed.mean().item() - 1 / 3) < 0.01  # E[u^2] = 1/3


def test_loss_on_noised_positions_only_ignores_target_draws():
    torch.manual_seed(0)
    model = build({"loss_positions": "noised", "lang_replace_prob": 0.0})  # pins as build_targets below
    b = batch(model)
    seen = {}
    decoder_forward = model.decoder.forward

    def spy(xt, t, audio, soft_delta=None, self_mask=None, pinned=None, soft_rows=None, active=None):
        seen["xt"] = xt
        logits = decoder_forward(xt, t, audio, soft_delta, self_mask, pinned, soft_rows, active)
        seen["logits"] = logits
        return logits

    model.decoder.forward = spy
    sample = model.path.sample
    model.path.sample = lambda x1, t, pmid=None, generator=None: (seen.setdefault("s", sample(x1, t, pmid, generator)))
    _, stats, _ = model(**b)
    x1, _, weight = model.build_targets(b["text"], b["text_lengths"])  # fixed canvas: the same targets
    w = weight * seen["s"].noised
    assert (w < weight).any()  # some target positions were not noised and are left out
    torch.testing.assert_close(stats["loss_dfm"].squeeze(), weighted_ce(seen["logits"], x1, w).detach())


def test_mask_source_tri_mixture_path():
    path = build_path("mask_mid", 10)
    assert path.source == "mask" and path.uses_audio_pmid and path.scheduler.has_mid
    x1 = torch.randint(10, (4, 50))
    logits = torch.randn(4, 50, 10, requires_grad=True)
    at0 = path.sample(x1, torch.zeros(4), logits)
    assert (at0.xt == path.mask_id).all() and at0.noised.all()  # t = 0: all source
    mid = path.sample(x1, torch.full((4,), 0.5), logits)
    from_mid = mid.noised & (mid.xt != path.mask_id)
    assert from_mid.any() and (mid.xt[~mid.noised] == x1[~mid.noised]).all()
    assert mid.soft_delta is not None  # the middle component still trains p_mid


@pytest.mark.parametrize("conf,message", [
    ({"time_sampling": "sobol"}, "model_conf key time_sampling: unknown choice 'sobol'; valid: uniform, stratified"),
    ({"loss_positions": "some"}, "model_conf key loss_positions: unknown choice 'some'; valid: all, noised"),
    ({"pad_weight": -1}, "model_conf key pad_weight: -1 must be >= 0"),
    ({"canvas_margin": -2}, "model_conf key canvas_margin: -2 must be >= 0"),
    ({"time_power": 0}, "model_conf key time_power: 0 must be > 0"),
    ({"time_draws": 0}, "model_conf key time_draws: 0 must be >= 1"),
])
def test_bad_option_values_name_the_key(conf, message):
    with pytest.raises(ValueError, match=message):
        build(conf)


QUIET_ENCODER = {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 1, "input_layer": "linear",
                 "dropout_rate": 0.0, "positional_dropout_rate": 0.0, "attention_dropout_rate": 0.0}


def test_with_utterance_ids_a_batch_loss_is_the_token_weighted_mean_of_its_utterances():
    """ESPnet names the batch's utterances (utt_id): every draw is then the utterance's own, so a loss
    does not depend on which utterances share the batch, nor on how many ranks split it."""
    torch.manual_seed(0)
    model = build({"prompt_prob": 0.5, "lang_replace_prob": 0.5, "audio_dropout": 0.5}, encoder_conf=QUIET_ENCODER)
    b, ids = batch(model), ["spk-a", "spk-b"]

    def loss_at(step, rows):
        model.updates.fill_(step)
        part = {k: v[rows] for k, v in b.items()}
        noise = model.batch_noise([ids[r] for r in rows], "cpu")
        weight = model.build_targets(part["text"], part["text_lengths"], noise)[2].sum()  # the forward's first draws
        model.updates.fill_(step)
        stats = model(**part, utt_id=[ids[r] for r in rows])[1]
        return stats, weight

    pair, _ = loss_at(5, [0, 1])
    (first, w0), (second, w1) = loss_at(5, [0]), loss_at(5, [1])
    for key in ("loss_dfm", "loss_mid"):
        torch.testing.assert_close(pair[key], (first[key] * w0 + second[key] * w1) / (w0 + w1))
    assert int(model.updates) == 6  # a training forward counts an update
    assert not torch.equal(loss_at(6, [0, 1])[0]["loss_dfm"], pair["loss_dfm"])  # the next update draws anew
    model.eval()  # validation: the same draws at every epoch
    assert torch.equal(model(**b, utt_id=ids)[1]["loss"], model(**b, utt_id=ids)[1]["loss"])


@pytest.mark.parametrize("audio_dropout", [0.0, 1e-9])
def test_every_trained_parameter_gets_a_gradient_every_step(audio_dropout):
    """What DDP needs without find_unused_parameters: with audio dropout, the null frame is in the
    graph of a batch in which no utterance is dropped; without it, the null frame is not trained."""
    torch.manual_seed(0)
    model = build({"audio_dropout": audio_dropout, "canvas_margin": 1}, encoder_conf=QUIET_ENCODER)
    model(**batch(model))[0].backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []
    assert model.decoder.null_audio.requires_grad == (audio_dropout > 0)


def test_time_draws_train_each_utterance_at_k_times_on_one_audio_memory():
    """time_draws k: k rows per utterance, the first drawing what k = 1 draws, the others their own t;
    the cross-attention K/V are computed once per utterance; validation trains at one t."""
    torch.manual_seed(0)
    one = build({"audio_dropout": 0.5}, encoder_conf=QUIET_ENCODER)
    two = build({"audio_dropout": 0.5, "time_draws": 2}, encoder_conf=QUIET_ENCODER)
    two.load_state_dict(one.state_dict())
    b, ids = batch(one), ["spk-a", "spk-b"]
    seen = {}
    for name, model in (("one", one), ("two", two)):
        decoder_forward, memory_kv = model.decoder.forward, model.decoder.blocks[0].cross_attn.memory_kv

        def spy(xt, t, audio, soft_delta=None, self_mask=None, pinned=None, soft_rows=None, active=None, name=name,
                decoder_forward=decoder_forward):
            seen[name] = (xt, t, audio.kv[0][0])
            return decoder_forward(xt, t, audio, soft_delta, self_mask, pinned, soft_rows, active)

        def kv_spy(memory, name=name, memory_kv=memory_kv):
            seen.setdefault(name + "_kv_rows", []).append(memory.shape[0])  # utterances, then the null frame
            return memory_kv(memory)

        model.decoder.forward, model.decoder.blocks[0].cross_attn.memory_kv = spy, kv_spy
        model.train()
        model(**b, utt_id=ids)[0].backward()
    (xt1, t1, k1), (xt2, t2, k2) = seen["one"], seen["two"]
    assert xt2.shape[0] == 4 and seen["two_kv_rows"] == seen["one_kv_rows"] == [2, 1]  # K/V once per utterance
    torch.testing.assert_close(t2[::2], t1)  # draw 0 of each utterance is the k = 1 draw
    assert torch.equal(xt2[::2], xt1) and torch.equal(k2[::2], k1) and torch.equal(k2[1::2], k1)
    assert not torch.equal(t2[1::2], t1)  # draw 1: its own t
    one.eval(), two.eval()
    torch.testing.assert_close(two(**b, utt_id=ids)[1]["loss"], one(**b, utt_id=ids)[1]["loss"])
    assert seen["two"][0].shape[0] == 2


def test_jacobi_decoding_of_a_causal_model_is_the_same_with_the_prefix_cache(monkeypatch):
    """generate's jacobi steps run the causal decoder through PrefixCache; the plain decoder reaches
    the same tokens in the same number of steps."""
    import drax.asr.model as drax_model

    torch.manual_seed(0)
    model = build({}, decoder_conf=CAUSAL).eval()
    for p in model.decoder.parameters():
        torch.nn.init.normal_(p, std=0.3)
    speech, lens = torch.randn(3, 11, 8), torch.tensor([11, 9, 7])
    options = DecodingOptions(nfe=model.output_length, jump_order="jacobi")
    prompt = torch.tensor([model.prompt_ids("en")] * 3)
    cached = model.generate(speech, lens, options, prompt=prompt, generator=torch.Generator().manual_seed(1))
    calls = []
    monkeypatch.setattr(drax_model, "PrefixCache", lambda dec, audio: lambda x, t: calls.append(1) or dec(x, t, audio))
    plain = model.generate(speech, lens, options, prompt=prompt, generator=torch.Generator().manual_seed(1))
    assert 3 < len(calls) == plain.samples.steps == cached.samples.steps
    assert torch.equal(cached.tokens, plain.tokens)
    # re-predicting a window of 2 positions a step: with as many steps as positions, the same greedy canvas
    monkeypatch.undo()
    windowed = model.generate(speech, lens, dataclasses.replace(options, jacobi_window=2), prompt=prompt,
                              generator=torch.Generator().manual_seed(1))
    assert torch.equal(windowed.tokens, cached.tokens)
