"""The AR yardstick (`model: drax_ar`): Drax's DiT decoder trained and decoded autoregressively.

Initialised from Whisper-base it computes Whisper's decoder; its KV-cached greedy equals a greedy
that recomputes the whole causal forward every step; its loss is the next-token CE on the text and
the first end token; and it goes through stages 5-10 of a recipe (ESPnet training, greedy decoding,
scoring, RESULTS.md).
"""
import argparse
import json
import re

import kaldiio
import pytest
import torch
import torch.nn.functional as F
import yaml

import drax.asr.registry  # noqa: F401
from drax.asr.checkpoint import reporter_stats
from drax.decode.autoregressive import DiTAR, greedy

PROMPT = ["<|startoftranscript|>", "<|{lang}|>", "<|transcribe|>", "<|notimestamps|>"]
TOKENS = ["<blank>", "<unk>", *"abcdefgh", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|transcribe|>",
          "<|notimestamps|>", "<|endoftext|>"]
SMALL_DIT = dict(hidden_size=16, num_blocks=2, num_heads=2, time_embed_dim=16, max_positions=16, rotary=False,
                 shift_readout=True)


def build(token_list=TOKENS, input_size=8, decoder_conf=None, model_conf=None):
    from espnet2.tasks.asr import ASRTask

    args = argparse.Namespace(
        token_list=list(token_list), input_size=input_size, frontend=None, frontend_conf={}, specaug=None,
        specaug_conf={}, normalize=None, normalize_conf={}, preencoder=None, preencoder_conf={},
        encoder="precomputed", encoder_conf={}, postencoder=None, postencoder_conf={}, decoder="dit",
        decoder_conf={**SMALL_DIT, **(decoder_conf or {})}, ctc_conf={}, model="drax_ar",
        model_conf={"prompt_template": PROMPT, "eot_token": "<|endoftext|>", **(model_conf or {})}, init=None,
    )
    return ASRTask.build_model(args)


def random_small_model(seed=0):
    """A small random model whose time modulation is not zero (as after training)."""
    torch.manual_seed(seed)
    model = build().eval()
    with torch.no_grad():
        for block in model.decoder.blocks:
            block.modulation[1].weight.normal_(0, 0.2)
        model.decoder.final_modulation[1].weight.normal_(0, 0.2)
    return model


def causal(n):
    return torch.ones(n, n, dtype=torch.bool).tril()[None, None]


# ---- (a) at initialisation: Whisper's decoder ---------------------------------------------------

def test_initialised_ar_model_is_whisper_decoder(whisper_base):
    from transformers import AutoTokenizer, WhisperForConditionalGeneration

    whisper = WhisperForConditionalGeneration.from_pretrained(whisper_base).eval()
    tokenizer = AutoTokenizer.from_pretrained(whisper_base)
    inv = {i: t for t, i in tokenizer.get_vocab().items()}
    text = tokenizer.tokenize(" I would like to buy a cup of coffee.")
    prompt = [tok.format(lang="en") for tok in PROMPT]
    token_list = ["<blank>", "<unk>", *sorted(set(text) | {inv[i] for i in range(300)}), *prompt, "<|endoftext|>"]
    model = build(token_list, 512, dict(hidden_size=512, num_blocks=6, num_heads=8, time_embed_dim=256,
                                        max_positions=32, init_from_whisper=str(whisper_base))).eval()

    torch.manual_seed(0)
    enc = whisper.model.encoder.layer_norm(torch.randn(2, 40, 512))  # encoder outputs end with this norm
    seq = prompt + text
    ours = torch.tensor([[token_list.index(t) for t in seq]] * 2)
    with torch.no_grad():
        ref = whisper(decoder_input_ids=torch.tensor([tokenizer.convert_tokens_to_ids(seq)] * 2),
                      encoder_outputs=(enc,)).logits
        # the causal path training takes, and the cached one decoding takes (fed in two blocks)
        logits, _ = model.decoder.step(ours, torch.full((2,), model.T), model.decoder.encode_audio(enc, torch.tensor([40, 40])))
        ar = DiTAR(model.decoder, model.eot_id, model.T)
        ar.reset(enc[:1])
        cached = torch.cat([ar.extend(ours[0, :6].tolist()), ar.extend(ours[0, 6:].tolist())])
    columns = [*range(2, len(token_list) - 5), len(token_list) - 1]  # the units and the end token
    ref_p = ref[..., tokenizer.convert_tokens_to_ids([token_list[i] for i in columns])].softmax(-1)
    for ours_p in (logits[..., columns].softmax(-1), cached[None, :, columns].softmax(-1)):
        assert (ours_p.argmax(-1) == ref_p[: len(ours_p)].argmax(-1)).all()
        assert (ours_p - ref_p[: len(ours_p)]).abs().max() < 0.02  # GELU tanh vs erf and LN eps only


# ---- (b) KV-cached greedy = uncached greedy -----------------------------------------------------

def uncached_greedy(model, enc, lens, prompt, max_length):
    """Greedy that runs the whole causal forward (DiTDecoder.forward, a causal self_mask) every step.

    With shift_readout the logits of position n are read from state n - 1, which a causal mask keeps
    blind to the token at n: a placeholder there gives the prediction after the last token."""
    audio = model.decoder.encode_audio(enc, lens)
    t = torch.full((len(prompt),), model.T)
    seq, done = prompt.clone(), torch.zeros(len(prompt), dtype=torch.bool)
    while seq.shape[1] < max_length and not done.all():
        n = seq.shape[1]
        logits = model.decoder(torch.cat([seq, seq[:, -1:]], 1), t, audio, self_mask=causal(n + 1))[:, n]
        token = logits.argmax(-1).masked_fill(done, model.eot_id)
        seq = torch.cat([seq, token[:, None]], 1)
        done |= token == model.eot_id
    return [[tok for tok in row[prompt.shape[1]:] if tok != model.eot_id] for row in seq.tolist()]


def test_cached_greedy_equals_uncached_greedy():
    model = random_small_model(2)
    torch.manual_seed(2)  # a seed where one row ends early and the others run to max_length
    enc, lens = 3 * torch.randn(4, 9, 8), torch.tensor([9, 5, 7, 3])
    prompt = torch.tensor([model.prompt_ids(lang) for lang in ("en", "de", "de", "en")])
    with torch.no_grad():
        cached = model.generate_encoded(enc, lens, prompt)
        ref = uncached_greedy(model, enc, lens, prompt, model.max_length)
    assert cached == ref
    lengths = [len(row) for row in ref]
    assert len(set(lengths)) > 1 and max(lengths) == model.max_length - len(PROMPT)  # not all alike
    # one utterance at a time through the IncrementalDecoder protocol, and after a rollback
    ar = DiTAR(model.decoder, model.eot_id, model.T)
    row = greedy(ar, enc[1:2, :5], prompt[1].tolist(), model.max_length - len(PROMPT))
    assert [tok for tok in row if tok != model.eot_id] == ref[1]
    with torch.no_grad():  # speculative verification's pattern: feed a block, forget part of it
        ar.reset(enc[1:2, :5])
        full = ar.extend(prompt[1].tolist() + row[:3])
        ar.rollback(len(PROMPT) + 1)
        assert torch.allclose(ar.extend(row[1:3]), full[-2:], atol=1e-5)


# ---- (c) the loss -------------------------------------------------------------------------------

def test_loss_is_next_token_ce_on_text_and_first_end():
    model = random_small_model(1)
    en, de = model.prompt_ids("en"), model.prompt_ids("de")
    text = torch.tensor([en + [2, 3, 4], de + [5, -1, -1]])
    lengths = torch.tensor([7, 5])
    speech, speech_lengths = torch.randn(2, 6, 8), torch.tensor([6, 4])
    loss, stats, _ = model(speech, speech_lengths, text, lengths)
    # by hand, one utterance at a time through the fixed-length forward (shift_readout: logits of
    # position j predict token j): -log p of every text token and of the end token after it
    terms, hits = [], []
    for b in range(2):
        seq = torch.tensor([text[b, : lengths[b]].tolist() + [model.eot_id]])
        audio = model.decoder.encode_audio(speech[b:b + 1, : speech_lengths[b]], speech_lengths[b:b + 1])
        logits = model.decoder(seq, torch.tensor([1.0]), audio, self_mask=causal(seq.shape[1]))[0]
        for j in range(len(PROMPT), seq.shape[1]):
            terms.append(-F.log_softmax(logits[j], -1)[seq[0, j]])
            hits.append(float(logits[j].argmax() == seq[0, j]))
    assert len(terms) == 3 + 1 + 1 + 1
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-6)
    assert torch.isclose(stats["acc"], torch.tensor(sum(hits) / len(hits)))
    loss.backward()
    assert model.decoder.blocks[0].modulation[1].weight.grad.abs().sum() > 0  # t = 1 is a learned constant


# ---- (d) configuration errors -------------------------------------------------------------------

@pytest.mark.parametrize("model_conf,decoder_conf,match", [
    ({"output_length": 48}, {}, r"unknown model_conf key\(s\) \['output_length'\].*max_length"),
    ({"max_length": 17}, {}, "max_length 17 exceeds decoder_conf.max_positions 16"),
    ({}, {"max_positions": 0, "rotary": True}, "model_conf.max_length is needed"),
    ({"prompt_template": ["<|startoftranscript|>", "<|nope|>"]}, {}, "'<|nope|>' is not in the token list"),
    ({"prompt_template": []}, {}, "needs model_conf.prompt_template"),
    ({"eot_token": "<sos/eos>"}, {}, "eot_token '<sos/eos>' is not in the token list"),
])
def test_configuration_errors_name_the_key(model_conf, decoder_conf, match):
    with pytest.raises(ValueError, match=match):
        build(model_conf=model_conf, decoder_conf=decoder_conf)


def test_text_without_prompt_and_language_without_token_are_named():
    model = build()
    with pytest.raises(ValueError, match="prompt_template"):
        model(torch.randn(1, 4, 8), torch.tensor([4]), torch.tensor([[2, 3, 4, 5, 6]]), torch.tensor([5]))
    with pytest.raises(ValueError, match="language 'fr'"):
        model.prompt_ids("fr")


# ---- end to end: stages 5-10 of a recipe on tiny features ---------------------------------------

@pytest.mark.slow
def test_recipe_trains_decodes_and_lists_the_yardstick(tmp_path, whisper_base, monkeypatch):
    """Stage 5 (Whisper units) to 10 (RESULTS.md) on features that spell the transcript, the
    yardstick trained with ESPnet's trainer and decoded with the recipe's Drax decode config."""
    from drax.bin.tiny_train import make_data
    from drax.data.kaldi_dir import format_kv, read_kv_dict
    from drax.recipe.config import RecipeConfig
    from drax.recipe.stages import run_stages

    utts = make_data(tmp_path / "src", n_utts=8)
    for name in ("train", "dev", "test"):
        d = tmp_path / "dump" / "whisper_states" / name
        d.mkdir(parents=True)
        (d / "feats.scp").write_text((tmp_path / "src" / "data" / "feats.scp").read_text())
        shapes = {u: f"{m.shape[0]},{m.shape[1]}" for u, m in kaldiio.load_scp(str(d / "feats.scp")).items()}
        (d / "feats_shape").write_text(format_kv(sorted(shapes.items())))
        (d / "text.raw").write_text(format_kv((u, " ".join(words)) for u, _, words in utts))
        (d / "utt2lang").write_text(format_kv((u, lang) for u, lang, _ in utts))
    (tmp_path / "conf").mkdir()
    train = {
        "encoder": "transformer", "normalize": None,
        "encoder_conf": {"output_size": 64, "attention_heads": 4, "linear_units": 128, "num_blocks": 1,
                         "input_layer": "linear", "dropout_rate": 0.0, "positional_dropout_rate": 0.0,
                         "attention_dropout_rate": 0.0},
        "decoder": "dit", "decoder_conf": {**SMALL_DIT, "hidden_size": 64, "num_heads": 4},
        "model": "drax_ar", "model_conf": {"prompt_template": PROMPT, "eot_token": "<|endoftext|>"},
        "optim": "adam", "optim_conf": {"lr": 0.003}, "batch_type": "unsorted", "batch_size": 8,
        "max_epoch": 4, "num_iters_per_epoch": 50, "num_workers": 0, "seed": 0,
        "best_model_criterion": [["valid", "loss", "min"]], "keep_nbest_models": 1, "num_att_plot": 0,
    }
    (tmp_path / "conf" / "train_ar.yaml").write_text(yaml.safe_dump(train))
    (tmp_path / "conf" / "decode_drax.yaml").write_text(yaml.safe_dump({"nfe": 4, "batch_size": 3}))
    config = RecipeConfig(langs=["en", "de"], whisper=str(whisper_base), train_config="conf/train_ar.yaml",
                          decode_config="conf/decode_drax.yaml", whisper_baseline=False, max_output_length=64)
    monkeypatch.chdir(tmp_path)
    run_stages(config, stage=5, stop_stage=10)

    asr = tmp_path / "exp" / "asr_train_ar"
    assert yaml.safe_load((asr / "config.yaml").read_text())["model_conf"]["max_length"] == 16  # stage 6's L
    stats = reporter_stats(asr / "checkpoint.pth")
    losses = [stats[e]["train"]["loss"] for e in sorted(stats)]
    assert losses[-1] < 0.2 * losses[0], losses
    decoded = asr / "decode_drax" / "test"
    assert read_kv_dict(str(decoded / "text")) == {u: " ".join(words) for u, _, words in utts}
    timing = json.loads((decoded / "timing.json").read_text())
    assert timing["method"] == "greedy (KV cache)" and timing["output_length"] == 16 and "nfe" not in timing
    results = (tmp_path / "exp" / "RESULTS.md").read_text()
    assert re.search(r"\| AR yardstick greedy \(KV cache\) train_ar \(decode_drax\) \| WER/CER \| 0\.0 \| 0\.0 \|",
                     results), results
