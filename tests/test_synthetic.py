"""Synthetic corpus: text sources, spoken forms, and tiny end-to-end generations with espeak-ng.

The end-to-end tests use only the chatterbot text source (fast, all 8 languages) and a handful
of utterances per language; they skip only when espeak-ng is not installed.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from drax.data.kaldi_dir import read_data_dir, read_kv_dict, validate_data_dir
from drax.data.synthetic import normalise as norm
from drax.data.synthetic import sources as ts
from drax.data.synthetic.generate import SPLITS, generate_corpus
from drax.data.synthetic.roff import strip_roff
from drax.data.synthetic.speakers import speaker_sets
from drax.data.synthetic.speech import to_spoken

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")

LANGS = list(norm.LANGS)
ARGS = dict(langs=LANGS, n_train=3, n_dev=1, n_test=1, seed=7, sources=("chatterbot",),
            progress=False)


# ---------------------------------------------------------------------------------------------
# text sources (no synthesis)
# ---------------------------------------------------------------------------------------------

def test_normalize_and_clean():
    assert norm.normalize("  “Hello”   world ,  ok… ", "en") == '"Hello" world, ok...'
    assert norm.normalize("ｈｅｌｌｏ　there friend", "en") == "Hello there friend"
    assert norm.normalize("你好，世界！", "zh") == "你好，世界！"
    assert norm.is_clean("The cat sat on the mat.", "en")
    for bad in ("I have 3 cats here.", "See https://example.com now.", "Use the --force flag.",
                "The NASA launch was fine.", "Call foo_bar() here.", "Hi.",
                "Das ist schön, sagte er."):
        assert not norm.is_clean(norm.normalize(bad, "en"), "en"), bad
    assert norm.is_clean("Das ist schön, sagte er.", "de")
    assert norm.is_clean("这是一个测试句子。", "zh")
    assert not norm.is_clean("这是一个test句子。", "zh")  # Latin letters in Chinese
    assert not norm.is_clean("这是第3个句子。", "zh")  # digits
    assert norm.is_clean("これはテストです。", "ja")
    assert not norm.is_clean("這是一個測試。", "ja")  # no kana: not Japanese
    assert norm.language_ok("Der Hund ist nicht hier.", "de")
    assert not norm.language_ok("This option is not supported by the kernel.", "de")
    assert norm.dedup_key("Hello, World!", "en") == norm.dedup_key("hello world", "en")
    assert norm.normalize("E' piu' facile, perche' si'.", "it") == "È più facile, perché sì."
    assert not norm.is_clean("Q: What is it?", "en")


def test_sentence_pool_deterministic():
    a = ts.sentence_pool("en", max_sentences=50, seed=3, sources=["chatterbot"])
    b = ts.sentence_pool("en", max_sentences=50, seed=3, sources=["chatterbot"])
    c = ts.sentence_pool("en", max_sentences=50, seed=4, sources=["chatterbot"])
    assert a == b and len(a) == 50 and a != c
    assert len({norm.dedup_key(s, "en") for s in a}) == 50
    assert all(norm.is_clean(s, "en") for s in a)
    with pytest.raises(ValueError, match="unknown text source"):
        ts.sentence_pool("en", sources=["nope"])
    with pytest.raises(ValueError, match="unsupported language"):
        ts.sentence_pool("xx")


def test_missing_source_named(monkeypatch, tmp_path):
    monkeypatch.setattr(ts, "FORTUNE_DIR", str(tmp_path / "none"))
    ts.fortune_sentences.cache_clear()
    try:
        with pytest.raises(ts.MissingSourceError, match="fortunes-de"):
            ts.fortune_sentences("de")
        # skipped with a warning while other sources suffice, an error when nothing is left
        pool = ts.sentence_pool("de", sources=["fortunes", "chatterbot"])
        assert pool and "fortunes-de" in ts.last_pool_stats["de"]["missing"][0]
        with pytest.raises(ts.MissingSourceError, match="apt-get install fortunes-de"):
            ts.sentence_pool("de", sources=["fortunes"])
    finally:
        ts.fortune_sentences.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "chatterbot_corpus", None)
    ts.chatterbot_sentences.cache_clear()
    try:
        with pytest.raises(ts.MissingSourceError, match="pip install chatterbot-corpus"):
            ts.chatterbot_sentences("fr")
    finally:
        ts.chatterbot_sentences.cache_clear()


def test_roff_stripping():
    src = (".TH LS 1\n.SH NAME\nls \\- list\n.SH DESCRIPTION\n.PP\nThis lists the files.\n"
           "Use \\fB\\-a\\fP to see all.\n.TP\n\\fB\\-l\\fP\nlong listing format\n.nf\ncode here\n"
           ".fi\nIt is \\(lqfine\\(rq.\n")
    paras = strip_roff(src)
    sents = [s for p in paras for s in norm.split_sentences(p, "en") if "\x00" not in s]
    assert "This lists the files." in sents
    assert not any("code here" in s or "to see all" in s for s in sents)
    assert 'It is "fine".' in sents


def test_to_spoken():
    assert to_spoken("Hello there.", "en") == "Hello there."
    zh = to_spoken("你好，世界。", "zh")
    assert zh == "ni3 hao3, shi4 jie4."
    ja = to_spoken("大文字と小文字を区別しません。", "ja")
    assert re.fullmatch(r"[\u30a1-\u30fa\u30fc 、。]+", ja), ja


def test_speaker_sets_disjoint():
    sets = speaker_sets("en", seed=0, n_eval_speakers=10)
    ids = {s: {spk.id for spk in sets[s]} for s in SPLITS}
    assert len(ids["dev"]) == len(ids["test"]) == 10 and len(ids["train"]) == 13 * 9 - 20
    assert not (ids["train"] & ids["dev"]) and not (ids["train"] & ids["test"])
    assert not (ids["dev"] & ids["test"])


# ---------------------------------------------------------------------------------------------
# end to end (espeak-ng)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    a = str(tmp_path_factory.mktemp("corpus_a"))
    b = str(tmp_path_factory.mktemp("corpus_b"))
    ma = generate_corpus(a, jobs=2, **ARGS)
    mb = generate_corpus(b, jobs=1, **ARGS)
    return a, b, ma, mb


def _audio_md5(corpus, split):
    out = {}
    for utt, path in read_kv_dict(os.path.join(corpus, split, "wav.scp")).items():
        with open(path, "rb") as f:
            out[utt] = hashlib.md5(f.read()).hexdigest()
    return out


@needs_espeak
def test_deterministic(corpora):
    a, b, ma, mb = corpora
    for split in SPLITS:
        for name in ("text", "utt2spk", "spk2utt", "utt2lang", "utt2dur"):
            with open(os.path.join(a, split, name), "rb") as fa, \
                    open(os.path.join(b, split, name), "rb") as fb:
                assert fa.read() == fb.read(), f"{split}/{name} differs"
        assert _audio_md5(a, split) == _audio_md5(b, split)
    for lang in LANGS:
        with open(os.path.join(a, "text_pool", f"{lang}.txt"), "rb") as fa, \
                open(os.path.join(b, "text_pool", f"{lang}.txt"), "rb") as fb:
            assert fa.read() == fb.read()
    assert ma["counts"] == mb["counts"]


@needs_espeak
def test_valid_dirs_and_counts(corpora):
    a, _, m, _ = corpora
    for split in SPLITS:
        summary = validate_data_dir(os.path.join(a, split))
        want = ARGS[f"n_{split}"] * len(LANGS)
        skipped = sum(len(v) for v in m["skipped"].values())
        assert want - skipped <= summary["num_utts"] <= want
        assert set(summary["langs"]) == set(LANGS)
        for u in read_data_dir(os.path.join(a, split)):
            assert u.utt_id.startswith(u.speaker + "-") and u.speaker.startswith(u.lang + "_")
    assert os.path.isfile(os.path.join(a, "manifest.json"))


@needs_espeak
def test_splits_disjoint(corpora):
    a = corpora[0]
    data = {s: read_data_dir(os.path.join(a, s)) for s in SPLITS}
    keys = {s: {(u.lang, norm.dedup_key(u.text, u.lang)) for u in data[s]} for s in SPLITS}
    assert not keys["train"] & keys["dev"]
    assert not keys["train"] & keys["test"]
    assert not keys["dev"] & keys["test"]
    spk = {s: {u.speaker for u in data[s]} for s in SPLITS}
    assert not spk["train"] & (spk["dev"] | spk["test"])
    for lang in LANGS:
        with open(os.path.join(a, "text_pool", f"{lang}.txt"), encoding="utf-8") as f:
            pool = {norm.dedup_key(line.strip(), lang) for line in f}
        assert len(pool) > 10
        for s in ("dev", "test"):
            assert not pool & {k for (lg, k) in keys[s] if lg == lang}
        assert {k for (lg, k) in keys["train"] if lg == lang} <= pool


@needs_espeak
def test_audio_16k_mono_nonsilent_all_languages(corpora):
    a = corpora[0]
    seen = set()
    for split in SPLITS:
        for u in read_data_dir(os.path.join(a, split)):
            info = sf.info(u.wav)
            assert info.samplerate == 16000 and info.channels == 1
            assert info.format == "FLAC" and info.subtype == "PCM_16"
            x, sr = sf.read(u.wav, dtype="float32")
            assert abs(len(x) / sr - u.duration) < 1e-3
            assert 0.3 < u.duration < 30
            assert np.abs(x).max() < 1.0, f"{u.utt_id} clips"
            rms = float(np.sqrt(np.mean(x ** 2)))
            assert rms > 0.01, f"{u.utt_id} ({u.lang}) is near silent: rms={rms}"
            seen.add(u.lang)
    assert seen == set(LANGS)


@needs_espeak
def test_transcripts_in_original_script(corpora):
    a = corpora[0]
    for u in read_data_dir(os.path.join(a, "train")):
        if u.lang == "zh":
            assert re.search("[\u4e00-\u9fff]", u.text) and not re.search("[a-z0-9]", u.text)
        if u.lang == "ja":
            assert re.search("[\u3041-\u30fa\u4e00-\u9fff]", u.text)
            assert not re.search("[a-zA-Z0-9]", u.text)


@needs_espeak
def test_idempotent_rerun(corpora):
    a, _, m, _ = corpora
    mtimes = {p: os.path.getmtime(p) for s in SPLITS
              for p in read_kv_dict(os.path.join(a, s, "wav.scp")).values()}
    again = generate_corpus(a, jobs=1, **ARGS)  # manifest matches: nothing to do
    assert again == m
    forced = generate_corpus(a, jobs=1, force=True, **ARGS)  # texts rewritten, audio reused
    assert forced["synthesis"]["new"] == 0
    assert forced["synthesis"]["reused"] == len(mtimes)
    assert {p: os.path.getmtime(p) for p in mtimes} == mtimes
    assert forced["counts"] == m["counts"]


@needs_espeak
def test_skips_long_utterances(tmp_path):
    out = str(tmp_path / "c")
    m = generate_corpus(out, langs=["en"], n_train=6, n_dev=1, n_test=1, seed=1,
                        sources=("chatterbot",), max_duration=1.5, progress=False)
    skipped = set(m["skipped"]["too_long"])
    kept = {u.utt_id for s in SPLITS if m["counts"][s]["utts"]
            for u in read_data_dir(os.path.join(out, s))}
    assert skipped and not skipped & kept
    assert all(u.duration <= 1.5 for s in SPLITS if m["counts"][s]["utts"]
               for u in read_data_dir(os.path.join(out, s)))


def test_wordfreq_sequences():
    pytest.importorskip("wordfreq", reason="optional: pip install wordfreq")
    en = ts.wordfreq_sequences("en", 20, seed=1)
    assert en == ts.wordfreq_sequences("en", 20, seed=1) and len(set(en)) == 20
    assert all(norm.is_clean(s, "en") for s in en)
    zh = ts.wordfreq_sequences("zh", 5, seed=1)
    assert len(zh) == 5 and all(norm.is_clean(s, "zh") for s in zh)


@needs_espeak
def test_cli(tmp_path):
    from drax.bin.make_synthetic import main, parse_sizes

    assert parse_sizes("en=5,2", ["en", "de"], "x") == {"en": 5, "de": 2}
    out = tmp_path / "cli"
    rc = main([str(out), "--langs", "en,de", "--n-train", "en=2,1", "--n-dev", "1", "--n-test",
               "1", "--sources", "chatterbot", "--jobs", "1", "--no-progress"])
    assert rc == 0
    assert (out / "generate.log").read_text().count("corpus ready") == 1
    m = json.loads((out / "manifest.json").read_text())
    assert m["args"]["n_train"] == {"en": 2, "de": 1}
    validate_data_dir(str(out / "train"))


def test_worker_pool_ends_under_run_recipes_sigterm_handler():
    """drax.bin.run_recipe makes SIGTERM an exit; pool workers forked from it must still die on the
    SIGTERM of Pool.terminate. With the inherited handler a worker hung within 15-80 pools."""
    script = """
import signal
from drax.data.synthetic.speech import worker_pool
from drax.recipe.engine import stop_on_sigterm

def square(i):
    return i * i

stop_on_sigterm()
for _ in range(300):
    with worker_pool(2) as pool:
        assert sum(1 for _ in pool.imap_unordered(square, range(3000), chunksize=16)) == 3000
        handler = pool.apply(signal.getsignal, (signal.SIGTERM,))
print(handler == signal.SIG_DFL)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the hung worker with it
        proc.communicate()
        pytest.fail("a pool worker outlived Pool.terminate: the pools hung")
    assert proc.returncode == 0, err[-3000:]
    assert out.strip() == "True"
