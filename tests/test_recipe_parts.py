"""Recipe building blocks: output units, feature dumping and filtering of bad input, scoring, config."""
import json
import re

import numpy as np
import pytest
import soundfile as sf

from drax.data.features import dump_features
from drax.data.filtering import filter_set, read_text_file
from drax.data.kaldi_dir import DataDirError, Utterance, read_kv_dict, write_data_dir
from drax.data.tokenize import fit_output_length, fit_token_rate, write_shapes, write_token_text
from drax.decode.scoring import normalize, score
from drax.recipe.config import load_recipe
from drax.text.units import PROMPT_TEMPLATE, BPEUnits, WhisperUnits, load_units, prompt_ids, prompt_tokens, save_units


@pytest.fixture(scope="module")
def byte_bpe_dir(tmp_path_factory):
    """A small byte-level BPE tokenizer in transformers' format (stands in for Whisper's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the cat sat on the mat", "a dog and a cat", "der Hund und die Katze"] * 20, trainer)
    path = tmp_path_factory.mktemp("bpe")
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(path)
    return path


def test_whisper_units_cover_unseen_text_and_round_trip(byte_bpe_dir, tmp_path):
    units = WhisperUnits.build(byte_bpe_dir, ["the cat sat on the mat"], max_units=300)
    assert len(units.units) <= 300 and len(units.units) >= 256
    for text in ["the cat sat on the mat", "zebra quartz 你好 ÉTÉ"]:
        tokens = units.encode(text)
        assert all(t in units._known for t in tokens)
        assert units.decode(tokens) == text
    # a token outside the list is split into the longest listed pieces, not into bytes
    assert "Ġcat" in units._known and units.split("Ġcatsz") == ["Ġcat", "s", "z"]
    tokens_file = save_units(units, tmp_path, ["en", "de"])
    tokens = tokens_file.read_text().splitlines()
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<|endoftext|>"
    assert "<|de|>" in tokens and len(tokens) == len(set(tokens))
    again = load_units(tmp_path)
    assert again.encode("the cat") == units.encode("the cat")


def test_units_named_from_a_recipe_dir_load_from_any_working_directory(byte_bpe_dir, tmp_path, monkeypatch):
    import shutil

    recipe = tmp_path / "recipe"
    shutil.copytree(byte_bpe_dir, recipe / "downloads" / "whisper")
    monkeypatch.chdir(recipe)  # the recipe names its Whisper relative to its own directory
    units = WhisperUnits.build("downloads/whisper", ["the cat sat on the mat"], max_units=300)
    save_units(units, "dump/units", ["en"])
    for cwd in (tmp_path, recipe / "dump"):
        monkeypatch.chdir(cwd)
        again = load_units(recipe / "dump" / "units")
        assert again.encode("the cat") == units.encode("the cat"), cwd


def test_bpe_units_round_trip(tmp_path):
    texts = [f"sentence number {w} about cats and dogs" for w in ("one", "two", "three", "four")] * 10
    units = BPEUnits.build(tmp_path, texts, vocab_size=300)
    assert units.decode(units.encode("cats and dogs")) == "cats and dogs"
    save_units(units, tmp_path, ["en"])
    assert load_units(tmp_path).encode("cats") == units.encode("cats")


def _wav(path, seconds, rate=16000, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    audio = 0.1 * np.sin(2 * np.pi * 220 * t)
    sf.write(path, np.stack([audio] * channels, 1) if channels > 1 else audio, rate)
    return str(path)


@pytest.fixture
def messy_data_dir(tmp_path):
    """Good, corrupt, missing, over-30-s, 8 kHz stereo and empty/non-UTF-8-transcript utterances."""
    audio = tmp_path / "audio"
    audio.mkdir()
    corrupt = audio / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00not really a wav")
    utts = [
        Utterance("s1-good", "s1", _wav(audio / "good.wav", 1.0), "hello world", "en", 1.0),
        Utterance("s1-corrupt", "s1", str(corrupt), "broken audio", "en", 1.0),
        Utterance("s1-long", "s1", _wav(audio / "long.wav", 31.0), "far too long", "en", 31.0),
        Utterance("s1-rate", "s1", _wav(audio / "rate.wav", 1.0, rate=8000, channels=2), "eight kilohertz", "en", 1.0),
        Utterance("s2-missing", "s2", str(audio / "nope.wav"), "no file", "de", 1.0),
        Utterance("s2-notext", "s2", _wav(audio / "notext.wav", 1.0), "placeholder", "de", 1.0),
        Utterance("s2-latin1", "s2", _wav(audio / "latin1.wav", 1.0), "placeholder", "de", 1.0),
    ]
    data = tmp_path / "data"
    write_data_dir(str(data), utts, check_audio=False)
    lines = (data / "text").read_bytes().splitlines()
    fixed = []
    for line in lines:
        if line.startswith(b"s2-notext"):
            line = b"s2-notext "
        if line.startswith(b"s2-latin1"):
            line = "s2-latin1 Straße".encode("latin-1")
        fixed.append(line)
    (data / "text").write_bytes(b"\n".join(fixed) + b"\n")
    return data


def test_dump_and_filter_report_every_bad_utterance(messy_data_dir, tmp_path):
    dump = tmp_path / "dump"
    summary = dump_features(messy_data_dir, dump, kind="logmel")
    assert set(summary.skipped) == {"s1-corrupt", "s1-long", "s2-missing"}
    assert "missing audio file" in summary.skipped["s2-missing"]
    assert "over 30 s" in summary.skipped["s1-long"]
    assert summary.fixed == {"resampled": 1, "downmixed": 1}
    feats = read_kv_dict(str(dump / "dumped.scp"))
    assert set(feats) == {"s1-good", "s1-rate", "s2-notext", "s2-latin1"}
    shape = read_kv_dict(str(dump / "feats_shape"))["s1-rate"]
    assert shape == "100,80"  # 1 s at 8 kHz resampled to 16 kHz: 100 frames of 80 mels
    assert not list(dump.glob(".*tmp"))

    dropped = filter_set(messy_data_dir, dump)
    assert set(dropped) == {"s1-corrupt", "s1-long", "s2-missing", "s2-notext", "s2-latin1"}
    assert "empty transcript" in dropped["s2-notext"] and "not UTF-8" in dropped["s2-latin1"]
    assert set(read_kv_dict(str(dump / "text.raw"))) == {"s1-good", "s1-rate"}
    assert set(read_kv_dict(str(dump / "filtered"))) == set(dropped)
    assert set(read_kv_dict(str(dump / "feats.scp"))) == {"s1-good", "s1-rate"}

    # filtering again with other settings starts from everything dumped: a stricter run, then the
    # original one, gives the original result (it used to rewrite its own input and lose utterances)
    strict = filter_set(messy_data_dir, dump, max_duration=0.5)
    assert {"s1-good", "s1-rate"} <= set(strict) and "max_duration" in strict["s1-good"]
    assert filter_set(messy_data_dir, dump) == dropped
    assert set(read_kv_dict(str(dump / "feats.scp"))) == {"s1-good", "s1-rate"}


# utterance -> what stages 3 + 4 must do with it: kept (as is, or resampled / downmixed), or dropped
# and listed with a reason containing the given words
BAD_INPUT_MATRIX = {
    "a-good": "kept", "a-8khz": "kept", "a-44khz": "kept", "a-stereo": "kept",
    "a-unicode": "kept",  # every path holds a space and non-ASCII letters
    "b-corrupt": "unreadable audio", "b-truncated": "truncated audio", "b-empty": "empty audio",
    "b-nan": "NaN or infinite", "b-short": "shorter than", "b-long": "over 30 s", "b-missing": "missing audio",
    "c-emptytext": "empty transcript", "c-latin1": "not UTF-8",
}


def test_bad_input_matrix_every_case_kept_or_listed_with_its_reason(tmp_path):
    audio = tmp_path / "audio dir ü"
    audio.mkdir()
    whole = open(_wav(audio / "whole.wav", 2.0), "rb").read()
    (audio / "cut.wav").write_bytes(whole[: len(whole) // 3])  # what an interrupted copy leaves
    (audio / "corrupt.wav").write_bytes(b"RIFF\x00\x00not really a wav")
    sf.write(audio / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(audio / "nan.wav", np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    wavs = {"a-good": _wav(audio / "good.wav", 1.0), "a-8khz": _wav(audio / "8k.wav", 1.0, rate=8000),
            "a-44khz": _wav(audio / "44k.wav", 1.0, rate=44100), "a-stereo": _wav(audio / "st.wav", 1.0, channels=2),
            "a-unicode": _wav(audio / "ünï çødé.wav", 1.0),
            "b-corrupt": str(audio / "corrupt.wav"), "b-truncated": str(audio / "cut.wav"),
            "b-empty": str(audio / "empty.wav"), "b-nan": str(audio / "nan.wav"),
            "b-short": _wav(audio / "short.wav", 0.01), "b-long": _wav(audio / "long.wav", 31.0),
            "b-missing": str(audio / "nope.wav"),
            "c-emptytext": _wav(audio / "et.wav", 1.0), "c-latin1": _wav(audio / "l1.wav", 1.0)}
    utts = [Utterance(u, u.split("-")[0], w, "some words", "en", 1.0) for u, w in wavs.items()]
    data = tmp_path / "data"
    write_data_dir(str(data), utts, check_audio=False)
    lines = [line for line in (data / "text").read_bytes().splitlines()]
    lines = [b"c-emptytext " if x.startswith(b"c-emptytext") else
             "c-latin1 Straße".encode("latin-1") if x.startswith(b"c-latin1") else x for x in lines]
    (data / "text").write_bytes(b"\n".join(lines) + b"\n")

    summary = dump_features(data, tmp_path / "dump", kind="logmel")
    assert summary.fixed == {"resampled": 2, "downmixed": 1}
    dropped = filter_set(data, tmp_path / "dump")
    kept = set(read_kv_dict(str(tmp_path / "dump" / "feats.scp")))
    listed = read_kv_dict(str(tmp_path / "dump" / "filtered"))
    for utt in wavs:
        want = BAD_INPUT_MATRIX[utt]
        if want == "kept":
            assert utt in kept and utt not in dropped, utt
        else:
            assert utt not in kept and want in dropped[utt] and want in listed[utt], (utt, dropped.get(utt))
    assert kept | set(dropped) == set(wavs)  # nothing dropped without a reason
    assert not list((tmp_path / "dump").glob(".*tmp"))


def test_feature_dump_interrupted_midway_leaves_nothing_and_the_rerun_equals_a_clean_run(tmp_path, monkeypatch):
    import drax.data.features as F

    utts = [Utterance(f"s1-u{i}", "s1", _wav(tmp_path / f"{i}.wav", 0.5 + i / 10), "words", "en", 1.0)
            for i in range(6)]
    write_data_dir(str(tmp_path / "data"), utts)
    clean = tmp_path / "clean"
    dump_features(tmp_path / "data", clean, kind="logmel", batch_size=2)
    calls, log_mel = [], F.log_mel

    def dies_on_the_fourth(*args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # the kill, as Python sees a Ctrl-C
        return log_mel(*args)

    monkeypatch.setattr(F, "log_mel", dies_on_the_fourth)
    dump = tmp_path / "dump"
    with pytest.raises(KeyboardInterrupt):
        dump_features(tmp_path / "data", dump, kind="logmel", batch_size=2)
    assert list(dump.iterdir()) == []  # no half-written ark, no temp file
    monkeypatch.setattr(F, "log_mel", log_mel)
    dump_features(tmp_path / "data", dump, kind="logmel", batch_size=2)
    import kaldiio
    again = dict(kaldiio.load_scp(str(dump / "dumped.scp")))
    for utt, mat in kaldiio.load_scp(str(clean / "dumped.scp")).items():
        np.testing.assert_array_equal(again[utt], mat)
    assert len(again) == 6


def test_duplicate_ids_fail_naming_the_file_and_tabs_separate_ids(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("u1 a.wav\nu2 b.wav\nu1 c.wav\n")
    with pytest.raises(DataDirError, match=r"wav.scp:3: duplicate id 'u1' \(first on line 1\)"):
        read_kv_dict(str(scp))
    text = tmp_path / "text"
    text.write_bytes(b"u1\tone two\nu2 three\n\n")
    assert read_text_file(text) == ({"u1": "one two", "u2": "three"}, {})
    text.write_bytes(b"u1 one\nu1 two\n")
    with pytest.raises(DataDirError, match="text:2: duplicate id 'u1'"):
        read_text_file(text)


def test_unusable_features_are_named_and_bad_decode_options_refused(tmp_path):
    import kaldiio

    from drax.decode.decode_sets import load_features
    from drax.decode.options import DecodingOptions
    from drax.options import load_options

    mats = {"a-good": np.ones((5, 4), np.float32), "b-empty": np.zeros((0, 4), np.float32),
            "c-nan": np.full((5, 4), np.nan, np.float32), "d-wide": np.ones((5, 6), np.float32)}
    kaldiio.save_ark(str(tmp_path / "f.ark"), mats, scp=str(tmp_path / "f.scp"))
    scp = read_kv_dict(str(tmp_path / "f.scp"))
    assert load_features(scp["a-good"], 4).shape == (5, 4)
    for utt, message in (("b-empty", "empty features"), ("c-nan", "NaN"), ("d-wide", "dimension 6, the model reads 4")):
        with pytest.raises(ValueError, match=message):
            load_features(scp[utt], 4)
    # checked when the options are made, before any model is loaded
    for option, message in (({"num_candidates": 0}, "num_candidates: 0 must be >= 1"),
                            ({"nfe": 0}, "nfe: 0 must be >= 1"), ({"temperature": -1.0}, "temperature: -1.0 must be"),
                            ({"nfe": 2.5}, "nfe: 2.5 is not an int"), ({"output_length": "twelve"}, "is not an int"),
                            ({"jump_order": "best"}, "jump_order: unknown choice 'best'; valid: random"),
                            ({"scoring": "vote"}, "scoring: unknown choice 'vote'"),
                            ({"jump_order": "jacobi", "jacobi_window": 0}, "jacobi_window: 0 must be >= 1"),
                            ({"jacobi_window": 2}, "jacobi_window: 2 needs jump_order: jacobi")):
        with pytest.raises(ValueError, match=message):
            load_options(DecodingOptions, option, "decode config")


def test_token_text_shapes_and_output_length(byte_bpe_dir, tmp_path):
    d = tmp_path / "set"
    d.mkdir()
    (d / "text.raw").write_text("u1 the cat\nu2 the cat sat on the mat and the dog\n")
    (d / "utt2lang").write_text("u1 en\nu2 de\n")
    (d / "feats_shape").write_text("u1 50,512\nu2 90,512\n")
    units = WhisperUnits.build(byte_bpe_dir, ["the cat sat on the mat"])
    save_units(units, tmp_path / "units", ["en", "de"])
    write_token_text(units, d)
    text = read_kv_dict(str(d / "text"))
    assert text["u1"].split()[:4] == ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    n2 = len(text["u2"].split())
    assert fit_output_length(d / "text", 448) == 8 * -(-(n2 + 1) // 8)
    write_shapes(d, tmp_path / "units" / "tokens.txt", output_length=len(text["u1"].split()) + 1)
    assert set(read_kv_dict(str(d / "speech_shape"))) == {"u1"}
    assert set(read_kv_dict(str(d / "too_long"))) == {"u2"}
    write_shapes(d, tmp_path / "units" / "tokens.txt", output_length=len(text["u1"].split()) + 1, drop_too_long=False)
    assert set(read_kv_dict(str(d / "speech_shape"))) == {"u1", "u2"}
    assert set(read_kv_dict(str(d / "too_long"))) == {"u2"}
    rates = sorted([(len(text["u1"].split()) - 4) / 50, (n2 - 4) / 90])  # the prompt's 4 tokens left out
    assert fit_token_rate(d, 1.0) == rates[1] and fit_token_rate(d, 0.5) == rates[0]
    # 20 frames of appended silence left out: the rate per frame of speech
    assert fit_token_rate(d, 1.0, silence_frames=20) == max((len(text["u1"].split()) - 4) / 30, (n2 - 4) / 70)
    with pytest.raises(ValueError, match="no utterance .* at most L - 1"):
        write_shapes(d, tmp_path / "units" / "tokens.txt", output_length=3)
    (d / "text.raw").write_text("u1 the cat\nu2 the end <|endoftext|> and more\n")
    with pytest.raises(ValueError, match=r"set/text.raw: utterance u2 holds '<\|endoftext\|>', a special token"):
        write_token_text(units, d)


def test_scoring_per_language_metrics_and_missing():
    refs = {"a": "Hello world, this is it.", "b": "你好世界", "c": "Guten Tag"}
    hyps = {"a": "hello word this is it", "b": "你好世"}
    scores = {s.lang: s for s in score(refs, hyps, {"a": "en", "b": "zh", "c": "de"})[0]}
    assert scores["en"].wer == pytest.approx(20.0)
    assert scores["zh"].wer is None and scores["zh"].cer == pytest.approx(25.0)
    assert scores["de"].n_missing == 1 and scores["de"].wer == pytest.approx(100.0)
    assert normalize("Mr. Smith's cat!", "en") == "mister smith is cat"
    assert normalize("你好， 世界。", "zh") == "你好世界"
    assert scores["zh"].char_deletions == 1 and scores["zh"].short_hyps == 1  # 3 of 4 characters < 0.8x
    # the error shape: deletions, insertions, short and repeating hypotheses
    shape = {s.lang: s for s in score({"a": "the cat sat on the mat today", "b": "go go now"},
                                      {"a": "the cat cat sat", "b": "go go now"}, {"a": "en", "b": "de"})[0]}
    en, de = shape["en"], shape["de"]
    assert en.char_deletions + en.char_substitutions + en.char_insertions == en.char_errors
    assert en.short_hyps == 1 and en.repeat_hyps == 1
    assert de.repeat_hyps == 0 and de.char_errors == 0  # the reference repeats it too


def test_recipe_config_rejects_unknown_keys(tmp_path):
    (tmp_path / "r.yaml").write_text("corpus: synthetic\nwhispr: base\n")
    with pytest.raises(ValueError, match=r"unknown recipe key\(s\) \['whispr'\].*valid keys: corpus"):
        load_recipe(tmp_path / "r.yaml")
    conf = load_recipe(None, {"ngpu": "2", "langs": "[en, de]"})
    assert conf.ngpu == 2 and conf.langs == ["en", "de"]
    assert json.dumps(conf.test_sets) == '["test"]'


@pytest.mark.parametrize("flags,message", [
    ({"langs": "en"}, "recipe key langs: 'en' is not a list"),
    ({"test_sets": "test"}, "recipe key test_sets: 'test' is not a list"),
    ({"max_duration": "abc"}, "recipe key max_duration: 'abc' is not a float"),
    ({"max_duration": "-5"}, "recipe key max_duration: -5 must be > 0"),
    ({"nj": "two"}, "recipe key nj: 'two' is not an int"),
    ({"ngpu": "1.5"}, "recipe key ngpu: 1.5 is not an int"),
    ({"whisper_baseline": "maybe"}, "recipe key whisper_baseline: 'maybe' is not a bool"),
    ({"features": "mfcc"}, "recipe key features: unknown choice 'mfcc'; valid: logmel, whisper_states"),
    ({"corpus": "timit"}, "recipe key corpus: unknown choice 'timit'"),
    ({"encoder_autocast": "fp8"}, r"recipe key encoder_autocast: unknown choice 'fp8'; valid: null \(float32\), bfloat16"),
    ({"exp_tag": "../../../outside"}, "recipe key exp_tag: '../../../outside' must be a plain name"),
    ({"test_sets": "[test, ../x]"}, "recipe key test_sets: '../x' must be a plain name"),
    ({"speed_perturb_factors": "[0.9, -1]"}, "speed_perturb_factors: .* must all be > 0"),
    ({"whisper_baseline_langs": "[en]"}, r"recipe key whisper_baseline_langs: \['en'\] is not a dict"),
    ({"whisper_baseline_langs": "{dev: [en]}"}, r"whisper_baseline_langs.dev: not one of test_sets \['test'\]"),
    ({"whisper_baseline_langs": "{test: [xx]}"}, "whisper_baseline_langs.test: .* must be a list of languages"),
    ({"device": "gpu"}, "recipe key device: unknown choice 'gpu'; valid: cpu, cuda, cuda:<n>"),
    ({"jobs": "{backend: pbs}"}, "jobs.backend: unknown choice 'pbs'; valid: local, slurm"),
    ({"jobs": "{slurm: {partiton: a}}"}, r"jobs.slurm: unknown key\(s\) \['partiton'\]"),
    ({"jobs": "{threads: 0}"}, "jobs.threads must be an integer >= 1"),
    ({"study_variants": "[1]"}, "recipe key study_variants: .* must be a list of names"),
    ({"length_cap": "1.5"}, r"recipe key length_cap: 1.5 must be a quantile in \(0, 1\], or null"),
    ({"encoder_trailing_silence": "-1"}, r"recipe key encoder_trailing_silence: -1 must be seconds in \[0, 30\)"),
    ({"encoder_trailing_silence": "3", "encoder_pad_to_30s": "true"},
     "encoder_trailing_silence and encoder_pad_to_30s: set one"),
])
def test_recipe_values_are_checked_before_any_stage(flags, message):
    from drax.recipe.config import RecipeError

    with pytest.raises(RecipeError, match=message):
        load_recipe(None, flags)


def test_a_recipe_config_that_is_not_a_mapping_is_named(tmp_path):
    from drax.recipe.config import RecipeError

    (tmp_path / "recipe.yaml").write_text("- langs: [en]\n")
    with pytest.raises(RecipeError, match="recipe.yaml: a recipe config is a mapping of recipe keys .*not a list"):
        load_recipe(tmp_path / "recipe.yaml")


def test_sets_sharing_an_utterance_stop_stage_1(tmp_path):
    from drax.recipe.config import RecipeError
    from drax.recipe.stages import check_disjoint

    for name, ids in (("train", "a-1 a-2 a-3"), ("dev", "b-1"), ("test", "c-1 a-2")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "text").write_text("".join(f"{u} words\n" for u in ids.split()))
    check_disjoint(tmp_path, ["train", "dev", "dev"])  # a dev set also decoded as a test set is one set
    with pytest.raises(RecipeError, match=r"1 utterance id\(s\) in both .*train and .*test \(e.g. a-2\)"):
        check_disjoint(tmp_path, ["train", "dev", "test"])


def test_a_set_that_no_corpus_made_stops_stage_1(tmp_path):
    from drax.recipe.config import RecipeError
    from drax.recipe.stages import check_made

    for name in ("train", "dev", "test"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "wav.scp").write_text("u a.wav\n")
    check_made(tmp_path, {"train_set": ["train"], "dev_set": ["dev"], "test_sets": ["test"]})
    with pytest.raises(RecipeError, match=r"recipe key dev_sets: dev_asterisk was not made by stage 1 .*remove it"):
        check_made(tmp_path, {"dev_set": ["dev"], "dev_sets": ["dev_asterisk"], "test_sets": ["test"]})


def test_device_cuda_needs_a_gpu_torch_can_use():
    import torch

    from drax.recipe.config import RecipeError
    from drax.recipe.engine import Recipe

    assert Recipe(load_recipe(None, {})).torch_device() == "cpu"
    recipe = Recipe(load_recipe(None, {"device": "cuda:1"}))
    if torch.cuda.is_available():
        assert recipe.torch_device() == "cuda:1"
    else:
        with pytest.raises(RecipeError, match="recipe key device: 'cuda:1', but torch sees no CUDA GPU here; set device: cpu"):
            recipe.torch_device()


def test_transcripts_are_capped_only_for_a_trained_model_on_true_length_states():
    from drax.recipe.engine import Recipe

    assert Recipe(load_recipe(None)).caps_length()
    for flags in ({"length_cap": "null"}, {"encoder_pad_to_30s": "true"}, {"pretrained": "exp/drax_v1"}):
        assert not Recipe(load_recipe(None, flags)).caps_length(), flags  # 30 s states: one length for all


def test_data_tag_moves_every_output_of_a_data_variant_and_shares_downloads(tmp_path):
    from drax.recipe.engine import Recipe

    plain = Recipe(load_recipe(None, {}), tmp_path)
    variant = Recipe(load_recipe(None, {"data_tag": "voices", "exp_tag": "x"}), tmp_path)
    assert (plain.data, plain.dump, plain.units_dir, plain.exp) == (
        tmp_path / "data", tmp_path / "dump" / "whisper_states", tmp_path / "dump" / "units", tmp_path / "exp")
    assert (variant.data, variant.dump, variant.units_dir, variant.exp, variant.markers, variant.asr_dir) == (
        tmp_path / "data_voices", tmp_path / "dump_voices" / "whisper_states", tmp_path / "dump_voices" / "units",
        tmp_path / "exp_voices", tmp_path / "exp_voices" / "stages", tmp_path / "exp_voices" / "asr_x")
    assert variant.data.parent == plain.data.parent  # corpora download into <data dir>/../downloads: shared
    from drax.recipe.config import RecipeError

    with pytest.raises(RecipeError, match="recipe key data_tag: '../x' must be a plain name"):
        load_recipe(None, {"data_tag": "../x"})


def test_stage_range_and_missing_or_misspelt_configs_fail_before_stage_one(tmp_path):
    from drax.recipe.config import RecipeError
    from drax.recipe.stages import run_stages

    (tmp_path / "train.yaml").write_text("model: drax\n")
    (tmp_path / "decode.yaml").write_text("nfe: 8\ntemprature: 0.5\n")
    conf = load_recipe(None, {"train_config": "train.yaml", "decode_config": "decode.yaml"})
    with pytest.raises(RecipeError, match="--stage 99 .* stages run from 1 to 13"):
        run_stages(conf, 99, root=tmp_path)
    with pytest.raises(RecipeError, match=r"decode.yaml: unknown decode config key\(s\) \['temprature'\]"):
        run_stages(conf, 1, root=tmp_path)
    conf = load_recipe(None, {"train_config": "nope.yaml", "decode_config": "decode.yaml"})
    with pytest.raises(RecipeError, match="recipe key train_config: .*nope.yaml does not exist"):
        run_stages(conf, 1, root=tmp_path)
    # the corpora's keys and value types, the test-only corpora's too (prepared after the main corpus)
    (tmp_path / "decode.yaml").write_text("nfe: 8\n")
    for flags, message in [({"corpus_conf": {"seed": "3"}}, r"corpus_conf key seed: '3' is not an int \(corpus synthetic\)"),
                           ({"corpus_conf": {"n_trian": 4}}, r"unknown corpus_conf key\(s\) \['n_trian'\] for corpus synthetic"),
                           ({"extra_corpora": {"asterisk": {"max_per_lang": "all"}}},
                            r"recipe key extra_corpora.asterisk key max_per_lang: 'all' is not an int \(or null\)")]:
        conf = load_recipe(None, {"train_config": "train.yaml", "decode_config": "decode.yaml", **flags})
        with pytest.raises(RecipeError, match=message):
            run_stages(conf, 1, root=tmp_path)
    assert not (tmp_path / "data").exists() and not (tmp_path / "exp").exists()  # nothing ran


def test_a_train_config_with_a_base_is_checked_and_fingerprinted_through_its_base(tmp_path):
    """A train config naming a `base`: a missing base fails before stage 1, naming the key; stage 7's
    inputs cover the base (an edit of the base retrains), and the model keys are the resolved ones."""
    from drax.recipe.config import RecipeError
    from drax.recipe.engine import Recipe
    from drax.recipe.stages import run_stages, stage_inputs

    (tmp_path / "decode.yaml").write_text("nfe: 8\n")
    (tmp_path / "variant.yaml").write_text("base: nowhere.yaml\nmodel_conf: {time_power: 1.0}\n")
    conf = load_recipe(None, {"train_config": "variant.yaml", "decode_config": "decode.yaml"})
    with pytest.raises(RecipeError, match=r"recipe key train_config: .*variant.yaml: base 'nowhere.yaml'"):
        run_stages(conf, 1, root=tmp_path)
    (tmp_path / "base.yaml").write_text("model: drax\nmodel_conf: {time_power: 0.1, audio_dropout: 0.1}\n")
    (tmp_path / "variant.yaml").write_text("base: base.yaml\nmodel_conf: {time_power: 1.0}\n")
    conf = load_recipe(None, {"train_config": str(tmp_path / "variant.yaml"), "decode_config": "decode.yaml"})
    r = Recipe(conf, tmp_path)
    assert r.model_keys() == {"model": "drax", "model_conf": {"time_power": 1.0, "audio_dropout": 0.1}}
    before = stage_inputs(r, 7)
    (tmp_path / "base.yaml").write_text("model: drax\nmodel_conf: {time_power: 0.1, audio_dropout: 0.0}\n")
    assert stage_inputs(r, 7) != before


def test_decoded_text_keeps_one_line_per_hypothesis(tmp_path):
    from drax.decode.decode_sets import _write_outputs

    _write_outputs(tmp_path, {"u1": "two\nlines ", "u2": ""}, {}, {})  # Whisper units include "\n"
    assert read_kv_dict(str(tmp_path / "text")) == {"u1": "two lines", "u2": ""}


def test_prompt_ids_name_the_language_slot_or_leave_it_free():
    tokens = ["<blank>", "<unk>", "a"] + prompt_tokens(["en", "de"]) + ["<|endoftext|>"]
    assert [tokens[i] for i in prompt_ids(PROMPT_TEMPLATE, tokens, "de")] == \
        ["<|startoftranscript|>", "<|de|>", "<|transcribe|>", "<|notimestamps|>"]
    free = prompt_ids(PROMPT_TEMPLATE, tokens, None)
    assert free[1] == -1 and free[0] == tokens.index("<|startoftranscript|>")
    with pytest.raises(ValueError, match=re.escape("language 'fr': token '<|fr|>' is not in the token list")):
        prompt_ids(PROMPT_TEMPLATE, tokens, "fr")
    with pytest.raises(ValueError, match=re.escape("prompt token '<|transcribe|>' is not in the token list")):
        prompt_ids(PROMPT_TEMPLATE, [t for t in tokens if t != "<|transcribe|>"], "en")
