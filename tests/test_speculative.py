"""Incremental AR decoding and speculative decoding (paper Sec. 5.3) on tiny random models.

The cached block decoders must give the logits of a full teacher-forced pass; speculative decoding
must return the target's greedy output token for token whatever the drafter proposes.
"""
import argparse

import pytest
import torch
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder

from drax.decode.autoregressive import ESPnetTransformerAR, WhisperAR, batched_greedy, greedy
from drax.decode.speculative import ARDrafter, DraxDrafter, SubwordMap, TokenMap, speculative

VOCAB, DIM = 24, 16
EOT = VOCAB - 1


def espnet_decoder(seed: int, blocks: int = 2, sharp: float = 8.0) -> TransformerDecoder:
    torch.manual_seed(seed)
    dec = TransformerDecoder(VOCAB, DIM, attention_heads=2, linear_units=32, num_blocks=blocks).eval()
    with torch.no_grad():
        dec.output_layer.weight.mul_(sharp)  # spread the logits: no near-ties in argmax
    return dec


def whisper_model(seed: int):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    config = WhisperConfig(vocab_size=VOCAB, d_model=DIM, encoder_layers=1, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                           decoder_ffn_dim=32, max_source_positions=64, max_target_positions=64,
                           num_mel_bins=8, pad_token_id=EOT, bos_token_id=0, eos_token_id=EOT,
                           decoder_start_token_id=0)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.proj_out.weight.mul_(8.0)
    return model


class ListDrafter:
    """Drafts from a fixed continuation (the oracle when it is the target's output)."""

    def __init__(self, continuation, prefix_len):
        self.continuation, self.prefix_len = continuation, prefix_len

    def reset(self, memory, lang):
        pass

    def draft(self, sequence, block):
        done = len(sequence) - self.prefix_len
        return self.continuation[done: done + block]


class RandomDrafter(ListDrafter):
    def __init__(self, seed):
        self.gen = torch.Generator().manual_seed(seed)

    def draft(self, sequence, block):
        return torch.randint(VOCAB, (block,), generator=self.gen).tolist()


@pytest.mark.parametrize("make", ["espnet", "whisper"])
def test_block_extension_equals_the_full_forward(make):
    memory = torch.randn(1, 9, DIM)
    tokens = [0, 5, 7, 2, 9, 11, 3]
    if make == "espnet":
        dec = espnet_decoder(0)
        full = dec(memory, torch.tensor([9]), torch.tensor([tokens]), torch.tensor([len(tokens)]))[0][0]
        ar = ESPnetTransformerAR(dec, EOT)
    else:
        model = whisper_model(0)
        full = model.proj_out(model.model.decoder(input_ids=torch.tensor([tokens]),
                                                  encoder_hidden_states=memory).last_hidden_state)[0]
        ar = WhisperAR(model, EOT)
    ar.reset(memory)
    parts = [ar.extend(tokens[:3]), ar.extend(tokens[3:4]), ar.extend(tokens[4:])]
    torch.testing.assert_close(torch.cat(parts), full, rtol=1e-4, atol=1e-4)
    ar.rollback(4)  # forget tokens 4.., feed different ones: as if they were never fed
    torch.testing.assert_close(ar.extend(tokens[4:]), full[4:], rtol=1e-4, atol=1e-4)


def test_greedy_is_the_argmax_chain_of_full_forwards():
    dec = espnet_decoder(1)
    memory = torch.randn(1, 7, DIM)
    out = greedy(ESPnetTransformerAR(dec, EOT), memory, [0, 4], max_new=10)
    seq = [0, 4]
    for token in out:
        logits = dec(memory, torch.tensor([7]), torch.tensor([seq]), torch.tensor([len(seq)]))[0][0, -1]
        assert int(logits.argmax()) == token
        seq.append(token)
    assert len(out) == 10 or out[-1] == EOT


def test_batched_greedy_equals_greedy_per_utterance_on_padded_memory():
    dec = espnet_decoder(2)
    with torch.no_grad():
        dec.output_layer.bias[EOT] += 8.0  # make rows end at different steps
    lengths = torch.tensor([9, 4, 7, 1, 6])
    memories = [torch.randn(1, int(n), DIM) for n in lengths]
    padded = torch.nn.utils.rnn.pad_sequence([m[0] for m in memories], batch_first=True)
    padded[1, 4:] = 100.0  # padding must not matter
    prefixes = torch.tensor([[0, 4], [0, 5], [0, 4], [0, 6], [0, 7]])
    rows = batched_greedy(ESPnetTransformerAR(dec, EOT), padded, lengths, prefixes, max_new=12)
    singles = [greedy(ESPnetTransformerAR(dec, EOT), m, p.tolist(), max_new=12) for m, p in zip(memories, prefixes)]
    assert rows == singles
    assert len({len(r) for r in rows}) > 1  # rows end at different steps: the lockstep padding was exercised


@pytest.mark.parametrize("target_kind", ["espnet", "whisper"])
def test_speculative_output_equals_target_greedy_for_any_drafter(target_kind):
    draft_dec = espnet_decoder(100, blocks=1)
    for seed in range(10 if target_kind == "espnet" else 4):  # transformers' per-call overhead is larger
        memory = torch.randn(1, 5 + seed, DIM)
        if target_kind == "espnet":
            target = ESPnetTransformerAR(espnet_decoder(seed), EOT)
        else:
            target = WhisperAR(whisper_model(seed), EOT)
        prefix = [0, 1 + seed % 5]
        reference = greedy(target, memory, prefix, max_new=20)
        drafters = [ListDrafter(reference, len(prefix)), RandomDrafter(seed),
                    ARDrafter(ESPnetTransformerAR(draft_dec, EOT), TokenMap.identity(VOCAB)),
                    ListDrafter(reference[:3] + [(t + 1) % VOCAB for t in reference[3:]], len(prefix))]
        for block in (1, 5, 10):
            for drafter in drafters:
                res = speculative(target, drafter, memory, prefix, max_new=20, block=block)
                assert res.tokens == reference, (seed, block, type(drafter).__name__)
                assert len(res.accepted_per_step) == res.verify_steps and res.accepted <= res.drafted
        oracle = speculative(target, ListDrafter(reference, len(prefix)), memory, prefix, max_new=20, block=5)
        # every drafted token is right: one verification per block of 5 + the target's own token
        assert oracle.accepted == oracle.drafted and oracle.verify_steps <= -(-len(reference) // 6)


def drax_model(vocab_tokens):
    from espnet2.tasks.asr import ASRTask

    import drax.asr.registry  # noqa: F401

    args = argparse.Namespace(
        token_list=vocab_tokens, input_size=DIM, frontend=None, frontend_conf={}, specaug=None, specaug_conf={},
        normalize=None, normalize_conf={}, preencoder=None, preencoder_conf={}, encoder="precomputed",
        encoder_conf={}, postencoder=None, postencoder_conf={}, decoder="dit",
        decoder_conf={"hidden_size": 16, "num_blocks": 1, "num_heads": 2, "time_embed_dim": 16},
        ctc_conf={}, model="drax",
        model_conf={"output_length": 16, "path": "uniform", "prompt_template": ["t0", "t1"], "eot_token": vocab_tokens[-1]},
        init=None,
    )
    torch.manual_seed(0)
    return ASRTask.build_model(args).eval()


def test_drax_drafter_pins_the_prefix_and_maps_vocabularies():
    # Drax's vocabulary is a permuted subset of the target's: token "t{i}" is target id i
    drax_tokens = [f"t{i}" for i in range(VOCAB - 4)] + [f"t{EOT}"]
    target_index = {f"t{i}": i for i in range(VOCAB)}
    token_map = TokenMap(drax_tokens, target_index)
    model = drax_model(drax_tokens)
    drafter = DraxDrafter(model, token_map, nfe=2)
    memory = torch.randn(1, 6, DIM)
    drafter.reset(memory, "en")
    draft = drafter.draft([0, 1, 7, 3], block=5)
    assert 1 <= len(draft) <= 5 and all(d in token_map.backward for d in draft)
    assert drafter.draft([0, 1, VOCAB - 2], block=5) == []  # the target token has no Drax unit
    target = ESPnetTransformerAR(espnet_decoder(3), EOT)
    reference = greedy(target, memory, [0, 1], max_new=14)
    res = speculative(target, drafter, memory, [0, 1], max_new=14, block=8)
    assert res.tokens == reference and res.drafted > 0


def test_subword_map_splits_and_retokenises_like_the_units(whisper_base):
    """Compact Whisper units vs Whisper: a target token the units lack is split the way the units
    tokenise text, and drafted pieces come back as Whisper's own tokens."""
    from drax.text.units import EOT as EOT_TOKEN
    from drax.text.units import WhisperUnits, prompt_tokens

    units = WhisperUnits.build(whisper_base, ["the cat sat on the mat", "der Hund und die Katze"])
    tok = units.tokenizer  # Whisper's
    source = units.units + prompt_tokens(["en", "de", "zh"]) + [EOT_TOKEN]
    index = {t: i for i, t in enumerate(source)}
    bridge = SubwordMap(source, units)
    eot = tok.get_vocab()[EOT_TOKEN]
    for text in ["the unpolished shoes", "die Straße über dem Hund", "我们今天去北京"]:
        target = tok.encode(" " + text, add_special_tokens=False)
        pieces = units.encode(text)
        assert len(pieces) > len(target)  # the text needs tokens outside the units
        assert bridge.to_source(target) == [index[t] for t in pieces]
        assert bridge.to_target([index[t] for t in pieces] + [index[EOT_TOKEN]]) == target + [eot]
        assert bridge.to_target([index[t] for t in pieces]) == target[:-1]  # the last word may go on
    prompt = tok.convert_tokens_to_ids(["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"])
    assert bridge.to_target(bridge.to_source(prompt)) == prompt
    assert bridge.to_source(tok.convert_tokens_to_ids(["<|fr|>"])) is None  # a special the drafter lacks


def test_beam_search_with_a_forced_length_returns_it_when_the_model_wants_to_stop():
    """ESPnet's minlen only drops hypotheses that end early (all of them, on a real model, so the search
    returned nothing); NoEndBefore makes the end token impossible before the forced length."""
    from espnet.nets.beam_search import BeamSearch

    from drax.decode.baselines import NoEndBefore

    dec = espnet_decoder(0)
    with torch.no_grad():
        dec.output_layer.bias[EOT] = 1e3  # the end token is everyone's top-1
    memory, prefix, n = torch.randn(5, DIM), [0, 3], 7
    tokens = [str(i) for i in range(VOCAB)]

    def search(scorers, weights, **ratios):
        return BeamSearch(scorers=scorers, weights=weights, beam_size=3, vocab_size=VOCAB, sos=0, eos=EOT,
                          token_list=tokens, pre_beam_score_key="full", hyp_primer=prefix)(memory, **ratios)

    assert search({"decoder": dec}, {"decoder": 1.0}, maxlenratio=-(n + 1.0))[0].yseq.tolist() == prefix + [EOT]
    best = search({"decoder": dec, "min_length": NoEndBefore(EOT, len(prefix) + n, VOCAB)},
                  {"decoder": 1.0, "min_length": 1.0}, maxlenratio=-(n + 1.0))[0]
    generated = best.yseq[len(prefix):].tolist()
    assert EOT not in generated[:n] and len(generated) >= n
