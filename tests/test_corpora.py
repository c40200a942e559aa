"""Data preparation of the real corpora on small hand-written trees in their native layouts (tiny
tones written with soundfile), the synthetic stand-in tree, the combination of recipes' data dirs,
and the recipe plumbing around them (dotted flags, the all-test-sets results table)."""
import json
import logging
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from drax.data.audio import load_audio
from drax.data.corpora import CorpusError, prepare, stage_inputs
from drax.data.kaldi_dir import read_data_dir, read_kv_dict
from drax.recipe.config import load_recipe


def tone(path: Path, seconds: float = 0.5, rate: int = 16000, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, **kw)
    return path


def lines(path: Path, *rows: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")


def data(folder: Path) -> dict[str, tuple[str, str, str]]:
    """{utt: (speaker, language, text)} of a prepared data dir (validated on reading)."""
    return {u.utt_id: (u.speaker, u.lang, u.text) for u in read_data_dir(str(folder), check_audio=True)}


def skipped(folder: Path) -> dict[str, str]:
    return read_kv_dict(str(folder / "skipped"))


@pytest.fixture(autouse=True)
def no_corpus_variables(monkeypatch):
    for var in ("LIBRISPEECH", "MLS", "COMMONVOICE", "AISHELL", "REAZONSPEECH"):
        monkeypatch.delenv(var, raising=False)


# ---- one corpus at a time ----------------------------------------------------------------------------

def test_librispeech(tmp_path, monkeypatch):
    root = tmp_path / "LibriSpeech"
    chapter = root / "train-clean-100" / "19" / "198"
    for n in range(3):
        tone(chapter / f"19-198-000{n}.flac", 0.5 + n / 10)
    lines(chapter / "19-198.trans.txt", "19-198-0000 NORTHANGER ABBEY", "", "19-198-0001 THAT'S ALL",
          "19-198-0002", "19-198-0004 NO AUDIO HERE", "19-999-0005 WRONG CHAPTER")
    tone(chapter / "19-198-0003.flac")  # audio that no transcript line names
    tone(root / "dev-clean" / "84" / "121" / "84-121-0000.flac")
    lines(root / "dev-clean" / "84" / "121" / "84-121.trans.txt", "84-121-0000 GOOD EVENING")
    monkeypatch.setenv("LIBRISPEECH", str(root))  # an empty corpus_conf.root reads the variable

    sets = prepare("librispeech", tmp_path / "data", ["en"], 1, {"parts": ["train-clean-100", "dev-clean"]})

    assert sets == ["train_clean_100", "dev_clean"]
    train = tmp_path / "data" / "train_clean_100"
    assert data(train) == {"19-198-0000": ("19", "en", "northanger abbey"), "19-198-0001": ("19", "en", "that's all")}
    assert read_kv_dict(str(train / "utt2dur")) == {"19-198-0000": "0.500", "19-198-0001": "0.600"}
    why = skipped(train)
    assert set(why) == {"19-198-0002", "19-198-0003", "19-198-0004", "19-999-0005"}
    assert why["19-198-0003"].startswith("audio without a transcript line")
    assert why["19-198-0002"] == "empty transcript (19-198.trans.txt:4)"
    assert why["19-198-0004"].startswith("missing audio ") and why["19-198-0004"].endswith("19-198-0004.flac")
    assert why["19-999-0005"].startswith("malformed line (19-198.trans.txt:6)")
    assert data(tmp_path / "data" / "dev_clean") == {"84-121-0000": ("84", "en", "good evening")}
    assert skipped(tmp_path / "data" / "dev_clean") == {}


def test_non_utf8_transcript_names_the_file_and_line(tmp_path, monkeypatch):
    root = tmp_path / "LibriSpeech"
    chapter = root / "dev-clean" / "84" / "121"
    tone(chapter / "84-121-0000.flac")
    tone(chapter / "84-121-0001.flac")
    (chapter / "84-121.trans.txt").write_bytes("84-121-0000 GOOD\n84-121-0001 STRA\u00dfE\n".encode("latin-1"))
    monkeypatch.setenv("LIBRISPEECH", str(root))
    with pytest.raises(CorpusError, match=r"84-121.trans.txt:2: not UTF-8 .* iconv"):
        prepare("librispeech", tmp_path / "data", ["en"], 1, {"parts": ["dev-clean"]})


def test_mls_flac_and_opus_releases_and_limited_supervision(tmp_path):
    root = tmp_path / "mls"
    for seg, split in enumerate(("train", "dev", "test"), start=1):
        de = root / "mls_german" / split
        fr = root / "mls_french_opus" / split
        tone(de / "audio" / "10" / "20" / f"10_20_00000{seg}.flac")
        tone(fr / "audio" / "30" / "40" / f"30_40_00000{seg}.opus", format="OGG", subtype="OPUS")
        lines(de / "transcripts.txt", f"10_20_00000{seg}\tguten tag {split}")
        lines(fr / "transcripts.txt", f"30_40_00000{seg}\tbonjour {split}")
    tone(root / "mls_german" / "train" / "audio" / "11" / "20" / "11_20_000000.flac")
    lines(root / "mls_german" / "train" / "transcripts.txt", "10_20_000001\tguten tag train",
          "11_20_000000\tnicht im subset", "10_20_000002 no tab here")
    lines(root / "mls_german" / "train" / "limited_supervision" / "1hr" / "0" / "handles.txt", "10_20_000001",
          "10_20_000009")
    lines(root / "mls_french_opus" / "train" / "limited_supervision" / "1hr" / "3" / "handles.txt", "30_40_000001")

    conf = {"root": str(root), "train_subset": "1hr"}
    assert prepare("mls", tmp_path / "data", ["de", "fr"], 2, conf) == ["train", "dev", "test"]

    assert data(tmp_path / "data" / "train") == {"10_20_000001": ("10", "de", "guten tag train"),
                                                 "30_40_000001": ("30", "fr", "bonjour train")}
    why = skipped(tmp_path / "data" / "train")
    assert set(why) == {"10_20_000002", "10_20_000009"}
    assert why["10_20_000002"].startswith("malformed line (transcripts.txt:3)")
    assert "not in train/transcripts.txt" in why["10_20_000009"]
    assert data(tmp_path / "data" / "test") == {"10_20_000003": ("10", "de", "guten tag test"),
                                                "30_40_000003": ("30", "fr", "bonjour test")}
    with pytest.raises(CorpusError, match=r"no language 'ja' in MLS"):
        prepare("mls", tmp_path / "data", ["ja"], 1, conf)


CV_OLD = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent"
CV_NEW = ("client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\t"
          "variant\tlocale\tsegment")


def cv_row(header: str, client: str, clip: str, sentence: str) -> str:
    row = dict.fromkeys(header.split("\t"), "") | {"client_id": client, "path": clip, "sentence": sentence}
    return "\t".join(row.values())


def test_commonvoice_header_variants_mp3_and_validated(tmp_path):
    root = tmp_path / "cv-corpus-17.0"
    for lang, header in (("de", CV_OLD), ("zh-CN", CV_NEW)):
        folder = root / lang
        for n in range(6):
            tone(folder / "clips" / f"common_voice_{lang}_{n}.mp3")
        dev = cv_row(header, "c2", f"common_voice_{lang}_1.mp3", "dev satz")
        test = cv_row(header, "c3", f"common_voice_{lang}_2.mp3", 'sie sagte "hallo"')
        train = [cv_row(header, "c1", f"common_voice_{lang}_0.mp3", "ein satz"),
                 cv_row(header, "c1", f"common_voice_{lang}_5.mp3", "  "),
                 "c9\tcommon_voice_x_9.mp3"]
        lines(folder / "train.tsv", header, *train, "")
        lines(folder / "dev.tsv", header, dev)
        lines(folder / "test.tsv", header, test)
        lines(folder / "validated.tsv", header, train[0], dev, test,
              cv_row(header, "c4", f"common_voice_{lang}_3.mp3", "dev satz"),  # another reading of a dev sentence
              cv_row(header, "c4", f"common_voice_{lang}_4.mp3", "noch ein satz"))

    prepare("commonvoice", tmp_path / "data", ["de", "zh"], 2, {"root": str(root)})

    train = tmp_path / "data" / "train"
    assert data(train) == {"c1-common_voice_de_0": ("c1", "de", "ein satz"),
                           "c1-common_voice_zh-CN_0": ("c1", "zh", "ein satz")}
    why = skipped(train)
    assert why["c1-common_voice_de_5"] == "empty sentence (train.tsv:3)"
    assert why["c9-common_voice_x_9"] == "malformed line (train.tsv:4): not as many fields as the header"
    assert data(tmp_path / "data" / "test")["c3-common_voice_de_2"] == ("c3", "de", 'sie sagte "hallo"')
    assert read_data_dir(str(train))[0].wav.endswith("de/clips/common_voice_de_0.mp3")

    prepare("commonvoice", tmp_path / "val", ["de"], 1, {"root": str(root), "train": "validated"})
    assert set(data(tmp_path / "val" / "train")) == {"c1-common_voice_de_0", "c4-common_voice_de_4"}

    lines(root / "de" / "dev.tsv", "client_id\tpath\ttext")
    with pytest.raises(CorpusError, match=r"dev.tsv: no column\(s\) \['sentence'\]"):
        prepare("commonvoice", tmp_path / "data", ["de"], 1, {"root": str(root)})


def test_aishell_removes_word_segmentation_spaces(tmp_path, caplog):
    base = tmp_path / "aishell" / "data_aishell"
    for split, spk, n in (("train", "S0002", 122), ("train", "S0002", 123), ("dev", "S0724", 1), ("test", "S0764", 2)):
        tone(base / "wav" / split / spk / f"BAC009{spk}W{n:04d}.wav")
    tone(base / "wav" / "train" / "S0003" / "BAC009S0003W0001.wav")
    lines(base / "transcript" / "aishell_transcript_v0.8.txt",
          "BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购", "BAC009S0002W0123",
          "BAC009S0724W0001 广州 市 房地产 中介 协会 分析", "BAC009S0764W0002 一 二 三", "BAC009S0900W0001 没有 音频")

    with caplog.at_level(logging.WARNING):
        prepare("aishell", tmp_path / "data", ["zh"], 2, {"root": str(tmp_path / "aishell")})

    assert data(tmp_path / "data" / "train") == {
        "S0002-BAC009S0002W0122": ("S0002", "zh", "而对楼市成交抑制作用最大的限购")}
    assert skipped(tmp_path / "data" / "train") == {
        "S0002-BAC009S0002W0123": "empty transcript (aishell_transcript_v0.8.txt:2)",
        "S0003-BAC009S0003W0001": "no line in aishell_transcript_v0.8.txt"}
    assert data(tmp_path / "data" / "dev") == {"S0724-BAC009S0724W0001": ("S0724", "zh", "广州市房地产中介协会分析")}
    assert "1 transcript line(s) without audio, e.g. BAC009S0900W0001" in caplog.text
    with pytest.raises(CorpusError, match=r"utterances in language\(s\) \['zh'\].*add them to `langs`"):
        prepare("aishell", tmp_path / "data", ["en"], 1, {"root": str(tmp_path / "aishell")})


def test_reazonspeech_splits_by_name_order(tmp_path):
    root = tmp_path / "reazon"
    names = ["000/a1.flac", "000/a0.flac", "001/b0.flac", "001/b1.flac", "002/c0.flac", "002/c1.flac"]
    for name in names:
        if name != "001/b1.flac":
            tone(root / name)
    lines(root / "all.tsv", "name\ttranscription", "001/b1.flac\t音声がない", "000/a1.flac\tこんばんは",
          "002/c0.flac\t", "000/a0.flac\tこんにちは", "", "001/b0.flac\tおはよう", "002/c1.flac\tさようなら")

    prepare("reazonspeech", tmp_path / "data", ["ja"], 1, {"root": str(root), "n_dev": 2, "n_test": 1})

    assert data(tmp_path / "data" / "dev") == {"000-a0": ("000-a0", "ja", "こんにちは"),
                                               "000-a1": ("000-a1", "ja", "こんばんは")}
    assert data(tmp_path / "data" / "test") == {"001-b0": ("001-b0", "ja", "おはよう")}
    assert data(tmp_path / "data" / "train") == {"002-c1": ("002-c1", "ja", "さようなら")}
    assert skipped(tmp_path / "data" / "train") == {"001-b1": f"missing audio {root}/001/b1.flac",
                                                    "002-c0": "empty or missing transcription (all.tsv:4)"}
    with pytest.raises(CorpusError, match=r"6 utterances leave none for train.*lower corpus_conf.n_dev"):
        prepare("reazonspeech", tmp_path / "data", ["ja"], 1, {"root": str(root), "n_dev": 3, "n_test": 3})


def test_missing_or_wrong_root_names_the_setting_and_the_layout(tmp_path, monkeypatch):
    with pytest.raises(CorpusError) as err:
        prepare("librispeech", tmp_path / "data", ["en"], 1, {})
    assert "corpus location not set" in str(err.value) and "corpus_conf.root" in str(err.value)
    assert "export LIBRISPEECH" in str(err.value) and "<spk>-<chapter>.trans.txt" in str(err.value)
    monkeypatch.setenv("AISHELL", str(tmp_path / "nowhere"))
    with pytest.raises(CorpusError, match=r"aishell: .*nowhere not found(.|\n)*export AISHELL(.|\n)*BAC009<spk>W<nnnn>.wav"):
        prepare("aishell", tmp_path / "data", ["zh"], 1, {})
    with pytest.raises(CorpusError, match=r"unknown corpus_conf key\(s\) \['rot'\] for corpus aishell; valid keys: root"):
        prepare("aishell", tmp_path / "data", ["zh"], 1, {"rot": "/x"})
    assert stage_inputs("aishell", {}) == [str(tmp_path / "nowhere")]  # stage 1 re-runs when the variable changes


# ---- combining recipes ---------------------------------------------------------------------------

def _recipe_data(recipe: Path, name: str, utts: list[tuple[str, str, str]]) -> None:
    from drax.data.kaldi_dir import Utterance, write_data_dir

    write_data_dir(str(recipe / "data" / name), [
        Utterance(utt, spk, str(tone(recipe / "audio" / f"{utt}.wav")), f"text of {utt}", lang, 0.5)
        for utt, spk, lang in utts])


def test_combine_prefixes_ids_and_refuses_collisions(tmp_path):
    _recipe_data(tmp_path / "ls", "train_clean_100", [("19-198-0000", "19", "en")])
    _recipe_data(tmp_path / "ai", "train", [("19-198-0000", "19", "zh"), ("S2-B1", "S2", "zh")])
    _recipe_data(tmp_path / "ai", "test", [("S3-B1", "S3", "zh")])
    conf = {"sources": {"ls": str(tmp_path / "ls" / "data"), "ai": str(tmp_path / "ai" / "data")},
            "sets": {"train": ["ls/train_clean_100", "ai/train"], "test_ai": ["ai/test"]}}

    assert prepare("combine", tmp_path / "data", ["en", "zh"], 1, conf) == ["train", "test_ai"]
    assert data(tmp_path / "data" / "train") == {"ai-19-198-0000": ("ai-19", "zh", "text of 19-198-0000"),
                                                 "ai-S2-B1": ("ai-S2", "zh", "text of S2-B1"),
                                                 "ls-19-198-0000": ("ls-19", "en", "text of 19-198-0000")}
    assert set(data(tmp_path / "data" / "test_ai")) == {"ai-S3-B1"}
    assert len(stage_inputs("combine", conf)) == 9  # wav.scp, text, utt2lang of each combined data dir

    with pytest.raises(CorpusError, match=r"utterance id 19-198-0000 is in both ls/train_clean_100 and ai/train"):
        prepare("combine", tmp_path / "data", ["en", "zh"], 1, conf | {"prefix_ids": False})
    shutil.rmtree(tmp_path / "ai" / "data" / "train")
    _recipe_data(tmp_path / "ai", "train", [("19-198-0001", "19", "zh")])
    with pytest.raises(CorpusError, match=r"speaker id 19 is in both ls and ai"):
        prepare("combine", tmp_path / "data", ["en", "zh"], 1, conf | {"prefix_ids": False})
    with pytest.raises(CorpusError, match=r"not found \(corpus_conf.sets.train: ai/dev\).*cd .*ai && ./run.sh --stop_stage 1"):
        prepare("combine", tmp_path / "data", ["en", "zh"], 1, conf | {"sets": {"train": ["ai/dev"]}})


# ---- synthetic stand-in, audio, recipe plumbing --------------------------------------------------

@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_synthetic_commonvoice_tree_goes_through_the_same_prep(tmp_path):
    sizes = {"n_train": 2, "n_dev": 1, "n_test": 1}
    prepare("commonvoice", tmp_path / "data", ["en"], 1, {"synthetic": sizes})

    tree = tmp_path / "downloads" / "synthetic" / "cv-corpus-synthetic" / "en"
    assert sorted(p.name for p in tree.glob("*.tsv")) == ["dev.tsv", "test.tsv", "train.tsv", "validated.tsv"]
    assert len(list(tree.glob("clips/*.mp3"))) == 4 and sf.info(next(tree.glob("clips/*.mp3"))).format == "MP3"
    espeak = {u.text: u for s in ("train", "dev", "test")
              for u in read_data_dir(str(tmp_path / "downloads" / "synthetic" / "espeak" / s))}
    train = read_data_dir(str(tmp_path / "data" / "train"))
    assert len(train) == 2 and all(u.text in espeak and u.lang == "en" for u in train)
    assert all(u.utt_id.startswith(u.speaker + "-common_voice_en_") for u in train)


def test_load_audio_reads_mp3(tmp_path):
    audio, fixes = load_audio(str(tone(tmp_path / "clip.mp3", 1.0, rate=48000)))
    assert fixes == ["resampled"] and abs(len(audio) - 16000) < 1200  # MP3 frames pad a little


def test_truncated_compressed_audio_is_named(tmp_path):
    """libsndfile decodes a cut-off MP3 up to the cut without an error; a cut-off FLAC loses sync."""
    for ext in ("mp3", "flac"):
        whole = tone(tmp_path / f"clip.{ext}", 2.0).read_bytes()
        (tmp_path / f"cut.{ext}").write_bytes(whole[: len(whole) // 3])
        with pytest.raises(ValueError, match=r"truncated audio .*cut.mp3: \d+ of the 32000 samples|unreadable audio"):
            load_audio(str(tmp_path / f"cut.{ext}"))


def test_audio_over_30_s_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import soundfile

    long = tone(tmp_path / "long.flac", 31.0, rate=8000)
    monkeypatch.setattr(soundfile, "read", lambda *a, **k: pytest.fail("an over-long file was read"))
    with pytest.raises(ValueError, match=r"audio over 30 s \(31.0 s\)"):
        load_audio(str(long))


def test_dotted_flags_set_one_entry_of_a_mapping(tmp_path):
    from drax.bin.run_recipe import parse

    (tmp_path / "r.yaml").write_text("corpus: aishell\ncorpus_conf: {root: /data, synthetic: false}\n")
    _, overrides = parse(["--corpus_conf.synthetic", "{n_train: 4}", "--corpus_conf.root=", "--nj", "1"])
    conf = load_recipe(tmp_path / "r.yaml", overrides)
    assert conf.corpus_conf == {"root": None, "synthetic": {"n_train": 4}} and conf.nj == 1
    with pytest.raises(ValueError, match=r"'langs.en': only mapping keys take a .<entry>"):
        load_recipe(tmp_path / "r.yaml", {"langs.en": "x"})


def test_results_table_over_all_test_sets(tmp_path):
    from drax.recipe.stages import STAGES
    from drax.studies.results import write_results

    for name, rows in (("test_a", [("en", 12.5, None)]), ("test_b", [("ja", None, 30.0), ("zh", None, 40.0)])):
        d = tmp_path / "exp" / "asr_tiny" / "decode_d" / name
        d.mkdir(parents=True)
        (d / "scores.json").write_text(json.dumps([{"lang": lang, "n_utts": 3, "wer": wer, "cer": cer or 5.0}
                                                   for lang, wer, cer in rows]))
        (d / "timing.json").write_text(json.dumps({"utterances": 3, "decode_seconds": 1.0}))
    compare = tmp_path / "exp" / "compare" / "test_b"  # stage 13 ran for test_b only
    compare.mkdir(parents=True)
    (compare / "table1.md").write_text("## Table 1: baselines side by side\n\nnote\n\n| system |\n|---|\n| CTC |\n")
    (compare / "table3.md").write_text("## Table 3: speculative decoding\n\nnote\n\n| target |\n|---|\n| AR |\n")
    r = types.SimpleNamespace(c=types.SimpleNamespace(test_sets=["test_a", "test_b"], whisper="base"),
                              exp=tmp_path / "exp", dump=tmp_path / "dump", root=tmp_path)
    write_results(r, tmp_path / "RESULTS.md", STAGES)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| test set | lang | utterances | Drax tiny (decode_d) |\n|---|---|---|---|\n| test_a | en | 3 | 12.5 |\n" \
           "| test_b | ja | 3 | 30.0 |\n| test_b | zh | 3 | 40.0 |" in text
    test_a, test_b = text.split("## test_b\n")
    assert "Table 1" not in test_a and "### Table 1: baselines side by side\n\nnote\n\n| system |\n|---|\n| CTC |" in test_b
    assert "### Table 3: speculative decoding" in test_b and "`exp/compare/test_b/compare.md`" in test_b


def test_results_stage_times_per_decoding(tmp_path):
    """Stages 8-10 are timed per decode config: each decoding of an experiment is a column with the
    experiment's training time, and the totals cover stages 1-10 of that column only."""
    from drax.recipe.stages import STAGES
    from drax.studies.results import write_results

    times = {"1_data": 10.0, "3_features": 20.0, "7_train.tiny": 100.0, "8_decode.tiny.decode_d": 5.0,
             "9_score.tiny.decode_d": 1.0, "8_decode.tiny.decode_d16": 3.0, "7_train.ar": 50.0,
             "8_decode.ar.decode_d": 2.0, "12_study.tiny": 400.0, "7_train.study_x": 9.0}
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "stage_times.json").write_text(json.dumps(times))
    r = types.SimpleNamespace(c=types.SimpleNamespace(test_sets=[], whisper="base"),
                              exp=tmp_path / "exp", dump=tmp_path / "dump", root=tmp_path)
    write_results(r, tmp_path / "RESULTS.md", STAGES)
    table = (tmp_path / "RESULTS.md").read_text().split("## Stage times")[1]
    assert "| stage | ar (decode_d) | tiny (decode_d) | tiny (decode_d16) |" in table
    assert "| 7_train | 50.0 | 100.0 | 100.0 |" in table and "| 8_decode | 2.0 | 5.0 | 3.0 |" in table
    assert "| 12_study | - | 400.0 | 400.0 |" in table and "study_x" not in table
    assert "| total, stages 1-10 | 82.0 | 136.0 | 133.0 |" in table


def _g722(path: Path, seconds: float, freq: float = 440.0) -> None:
    """A raw G.722 file of a sine, as the asterisk -g722 packages ship their prompts."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    samples = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)[None]
    with av.open(str(path), "w", format="g722") as container:
        stream = container.add_stream("g722", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def _asterisk_tree(root: Path) -> None:
    import gzip

    lines = {"en": "\ufeff; Core Asterisk Sounds in English\n\nactivated: Activated.\nbeep: [this is a simple beep tone]\n"
                   "digits/1: One.\nvm-star: Press * to repeat.\nlost: Never recorded.\nempty:\n",
             "fr": "; Core Asterisk Sounds in French\nactivated: activé\n"}
    for lang, text in lines.items():
        doc = root / "usr/share/doc" / f"asterisk-core-sounds-{lang}"
        doc.mkdir(parents=True)
        with gzip.open(doc / f"core-sounds-{lang}.txt.gz", "wt", encoding="utf-8") as f:
            f.write(text)
    voice = root / "usr/share/asterisk/sounds"
    for rel in ("en_US_f_Allison/activated", "en_US_f_Allison/beep", "en_US_f_Allison/digits/1",
                "en_US_f_Allison/vm-star", "fr_CA_f_June/activated"):
        _g722(voice / f"{rel}.g722", 0.5)


def test_asterisk_real_prompts_test_set(tmp_path):
    """Native package layout in, one Kaldi test dir out: ids carry the language and the folder of the
    prompt, G.722 is decoded to 16 kHz FLAC, notes, key symbols, empty texts and prompts without
    audio are skipped with their reason, a fixed subset per language is drawn with `max_per_lang`."""
    _asterisk_tree(tmp_path / "tree")
    data = tmp_path / "recipe" / "data"
    assert prepare("asterisk", data, ["en", "fr", "de"], 1, {"root": str(tmp_path / "tree")}) == ["test_asterisk"]
    texts = read_kv_dict(str(data / "test_asterisk" / "text"))
    assert texts == {"en_asterisk-activated": "Activated.", "en_asterisk-digits-1": "One.",
                     "fr_asterisk-activated": "activé"}
    assert read_kv_dict(str(data / "test_asterisk" / "utt2lang"))["fr_asterisk-activated"] == "fr"
    skipped = read_kv_dict(str(data / "test_asterisk" / "skipped"))
    assert set(skipped) == {"en_asterisk-beep", "en_asterisk-vm-star", "en_asterisk-lost", "en_asterisk-empty"}
    assert "bracketed note" in skipped["en_asterisk-beep"] and "missing audio" in skipped["en_asterisk-lost"]
    assert "empty transcript" in skipped["en_asterisk-empty"]
    wav = read_kv_dict(str(data / "test_asterisk" / "wav.scp"))["en_asterisk-digits-1"]
    audio, fixes = load_audio(wav)
    assert wav.endswith(".flac") and not fixes and abs(len(audio) - 8000) < 200 and 0.2 < np.abs(audio).max() < 0.4
    # the prompts left out of the test set give the dev set to choose on: disjoint, drawn with a fixed seed
    assert prepare("asterisk", data, ["en"], 1, {"root": str(tmp_path / "tree"), "max_per_lang": 1, "seed": 3}) \
        == ["test_asterisk", "dev_asterisk"]
    test, dev = (read_kv_dict(str(data / name / "text")) for name in ("test_asterisk", "dev_asterisk"))
    assert len(test) == len(dev) == 1 and {**test, **dev} == {"en_asterisk-activated": "Activated.",
                                                                "en_asterisk-digits-1": "One."}
    prepare("asterisk", data, ["en"], 1, {"root": str(tmp_path / "tree"), "max_per_lang": 1, "seed": 3})
    assert read_kv_dict(str(data / "dev_asterisk" / "text")) == dev
    assert prepare("asterisk", tmp_path / "other", ["en"], 1, {"root": str(tmp_path / "tree"), "max_per_lang": 1,
                                                               "seed": 3, "dev_per_lang": 0}) == ["test_asterisk"]
    with pytest.raises(CorpusError, match="none of the recipe's langs"):
        prepare("asterisk", data, ["de"], 1, {"root": str(tmp_path / "tree")})


def test_asterisk_packages_unpack_without_dpkg(tmp_path):
    """A .deb is an ar archive around data.tar.*: unpacked in Python, so no dpkg is needed."""
    import io
    import tarfile

    from drax.data.corpora.asterisk import unpack_deb

    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:xz") as tar:
        info = tarfile.TarInfo("./usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", b"x"), ("data.tar.xz", payload.getvalue())]
    raw = b"!<arch>\n"
    for name, body in members:
        raw += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode() + body
        raw += b"\n" if len(body) % 2 else b""
    deb = tmp_path / "asterisk-core-sounds-en_1.0_all.deb"
    deb.write_bytes(raw)
    unpack_deb(deb, tmp_path / "tree")
    assert (tmp_path / "tree/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz").read_bytes() == b"hello"
    deb.write_bytes(b"not a package")
    with pytest.raises(CorpusError, match="not a Debian package"):
        unpack_deb(deb, tmp_path / "tree")
