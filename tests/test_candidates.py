"""Candidate selection on hand-made candidate sets."""
from drax.decode.candidates import select_mbr, select_mode, select_oracle


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
