"""Candidate selection on hand-made candidate sets, and Whisper rescoring."""
import pytest
import torch

from drax.decode.candidates import select, select_mbr, select_mode, select_oracle


def test_mode_picks_the_majority_and_breaks_ties_by_order():
    assert select_mode(["a b", "c d", "c d", "a b", "c d"]) == 1
    assert select_mode(["x", "y"]) == 0


def test_mbr_picks_the_medoid():
    # "the cat sat" is one edit from each of the others; each other is two edits apart
    cands = ["the cat sat down", "the cat sat", "a cat sat", "the dog sat"]
    assert select_mbr(cands, "en") == 1


def test_mbr_uses_characters_for_chinese():
    cands = ["你好世界", "你好世", "你好世界", "您好世界"]
    assert select_mbr(cands, "zh") == 0


def test_oracle_picks_the_closest_to_the_reference():
    cands = ["the dog sat", "a cat sat", "the cat sat down"]
    assert select_oracle(cands, "the cat sat down", "en") == 2
    assert select_oracle(cands, "The dog sat.", "en") == 0  # normalised before comparing


def test_select_dispatches_and_scores_pick_the_maximum():
    cands = ["a", "b", "b", "c"]
    assert select("mode", cands, "en") == 1
    assert select("ar", cands, "en", [-3.0, -1.0, -2.0, -1.0]) == 1  # ties: the earliest
    assert select("elbo", cands, "en", [-0.5, -9.0, -9.0, -0.1]) == 3
    with pytest.raises(ValueError, match="one score per candidate"):
        select("elbo", cands, "en", None)
    with pytest.raises(ValueError, match="valid: mode, mbr, ar, elbo"):
        select("beam", cands, "en")


def test_whisper_rescorer_matches_one_candidate_at_a_time(whisper_base):
    """The batched, padded forward gives each candidate the log-likelihood transformers' own loss
    gives it alone (text tokens + end token, after the prompt)."""
    from drax.decode.rescoring import WhisperRescorer

    rescorer = WhisperRescorer(str(whisper_base))
    torch.manual_seed(0)
    enc = rescorer.model.model.encoder.layer_norm(torch.randn(60, 512))
    cands = ["I would like a cup of coffee.", "I would", "Eye wood like a cop of toffee and cake."]
    scores = rescorer.score(enc, cands, "en")
    for text, score in zip(cands, scores):
        prompt = rescorer.prompt("en")
        ids = prompt + rescorer.tokenizer.encode(" " + text, add_special_tokens=False) + [rescorer.eot]
        labels = torch.tensor([ids[1:]])
        labels[0, : len(prompt) - 1] = -100  # prompt tokens are given, not scored
        with torch.no_grad():
            out = rescorer.model(decoder_input_ids=torch.tensor([ids[:-1]]), encoder_outputs=(enc[None],),
                                 labels=labels)
        n = int((labels >= 0).sum())
        assert score.item() == pytest.approx(-out.loss.item() * n, rel=1e-4, abs=1e-3)
    assert rescorer.prompt(None) == [rescorer.prompt("en")[0], *rescorer.prompt("en")[2:]]
    with pytest.raises(ValueError, match="language 'xx' has no token in the rescorer's Whisper vocabulary"):
        rescorer.score(enc, cands, "xx")  # used to be scored after the unknown token
    with pytest.raises(ValueError, match="rescore with the Whisper the encoder came from"):
        rescorer.score(torch.randn(10, 256), cands, "en")
