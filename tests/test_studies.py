"""The training studies' configs (stage 12) and the comparison's runtime set (stage 13)."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from drax.options import load_options, read_config
from drax.studies.compare import CompareConfig, joined_runtime_set
from drax.studies.runtime import BINS, bin_label
from drax.studies.training import StudyConfig, variant_train_config

MINI = Path(__file__).resolve().parents[1] / "egs" / "mini" / "conf"


def test_each_variant_changes_only_its_overrides_and_the_budget():
    base = {"model": "drax", "decoder_conf": {"hidden_size": 512},
            "model_conf": {"path": "audio_mid", "scheduler": "tri_mixture", "scheduler_conf": {"p": 2.0},
                           "prompt_prob": 0.1},
            "max_epoch": 6, "num_iters_per_epoch": 100, "keep_nbest_models": 1, "optim": "adamw"}
    conf = load_options(StudyConfig, {**yaml.safe_load((MINI / "path_study.yaml").read_text()),
                                      "max_epoch": 3, "num_iters_per_epoch": 20}, "study config")
    for name, spec in conf.variants.items():
        out = variant_train_config(base, spec["train"], conf)
        want = spec["train"]["model_conf"]
        assert out["model_conf"]["path"] == want["path"] and out["model_conf"]["scheduler"] == want["scheduler"]
        assert out["model_conf"]["scheduler_conf"] == want["scheduler_conf"]  # replaced whole, not merged
        assert out["model_conf"]["prompt_prob"] == 0.1 and out["decoder_conf"] == base["decoder_conf"]
        assert (out["max_epoch"], out["num_iters_per_epoch"], out["keep_nbest_models"]) == (3, 20, 3)
    assert base["model_conf"]["path"] == "audio_mid" and base["max_epoch"] == 6  # the base is not modified
    # every path of the path study reaches the target at the same rate, kappa_1(t) = t^2
    exps = {spec["train"]["model_conf"]["scheduler"]: spec["train"]["model_conf"]["scheduler_conf"]
            for spec in conf.variants.values()}
    assert exps["polynomial"]["exponent"] == exps["tri_mixture"]["p"] == 2.0
    assert variant_train_config(base, {"optim": "sgd", "batch_size": 8}, conf)["optim"] == "sgd"


def test_a_variant_choosing_another_class_gets_only_its_own_conf_and_the_averages_are_kept():
    base = {"scheduler": "warmuplr", "scheduler_conf": {"warmup_steps": 100}, "optim": "adamw",
            "optim_conf": {"lr": 1e-4, "weight_decay": 0.01}, "keep_nbest_models": 1}
    conf = load_options(StudyConfig, yaml.safe_load((MINI / "schedule_study.yaml").read_text()), "study config")
    schedule = {"warmup_steps_list": [0, 100, 2000], "warmup_lr_list": [0.0, 1e-4, 0.0]}
    linear = variant_train_config(base, {"scheduler": "piecewiselinearwarmuplr", "scheduler_conf": schedule}, conf)
    assert linear["scheduler"] == "piecewiselinearwarmuplr" and linear["scheduler_conf"] == schedule  # no warmup_steps
    assert linear["optim_conf"] == base["optim_conf"]  # an unchanged class keeps its conf
    assert variant_train_config(base, {"scheduler": "noamlr"}, conf)["scheduler_conf"] == {}  # the class's defaults
    assert variant_train_config(base, {"scheduler_conf": {"warmup_steps": 50}}, conf)["scheduler_conf"] == {
        "warmup_steps": 50}
    # every epoch kept for the curve, and the trainer writes the average the decodes read
    assert linear["keep_nbest_models"] == [3, 8] and conf.decodes["ave3"]["model_file"] == "valid.loss.ave_3best.pth"
    with pytest.raises(ValueError, match=r"decodes.avg: unknown key\(s\) \['checkpoint'\]"):
        load_options(StudyConfig, {"variants": {"a": {}}, "decodes": {"avg": {"checkpoint": "x"}}}, "study config")


def mini_recipe(tmp_path):
    """What a Study reads of the mini recipe (the recipe's dev sets as conf/recipe.yaml names them)."""
    from types import SimpleNamespace

    recipe = yaml.safe_load((MINI / "recipe.yaml").read_text())
    return SimpleNamespace(root=MINI.parent, exp=tmp_path, dump=tmp_path / "dump", c=SimpleNamespace(
        train_config=str(MINI / "train_drax.yaml"), dev_set="dev", dev_sets=recipe["dev_sets"]))


def test_mini_studies_measure_against_the_paper_recipe_not_the_default(tmp_path):
    """The default train config adopts what the efficiency study found; the paper-lever studies start
    from the paper-faithful config, so adopting a lever does not change (and retrain) their baseline."""
    from drax.studies.training import Study

    recipe = mini_recipe(tmp_path)
    paper = read_config(MINI / "train_drax_paper.yaml")  # its base chain resolved
    for name in ("efficiency_study", "path_study"):
        conf = yaml.safe_load((MINI / f"{name}.yaml").read_text())
        assert conf["base_config"] == "conf/train_drax_paper.yaml"
        assert Study(recipe, conf, name, train=print).base == paper
    conf.pop("base_config")
    assert Study(recipe, conf, "path_study", train=print).base == yaml.safe_load((MINI / "train_drax.yaml").read_text())
    # a study of the default's own levers starts from the default and decodes as the default does
    default_study = Study(recipe, yaml.safe_load((MINI / "default_study.yaml").read_text()), "default_study", train=print)
    assert default_study.base == yaml.safe_load((MINI / "train_drax.yaml").read_text())
    decode = yaml.safe_load((MINI / "decode_drax.yaml").read_text())
    assert {k: getattr(default_study.conf, k) for k in ("nfe", "temperature", "jump_order")} == \
        {k: decode[k] for k in ("nfe", "temperature", "jump_order")}


def test_study_variants_run_a_subset_in_the_study_configs_order(tmp_path):
    from drax.studies.training import Study

    recipe = mini_recipe(tmp_path)
    conf = yaml.safe_load((MINI / "default_study.yaml").read_text())
    study = Study(recipe, conf, "default_study", train=print, only=["fitted", "default"])
    assert list(study.conf.variants) == ["default", "fitted"]
    assert study.conf.variants["fitted"] == conf["variants"]["fitted"] and study.conf.max_epoch == conf["max_epoch"]
    assert list(Study(recipe, conf, "default_study", train=print).conf.variants) == list(conf["variants"])
    with pytest.raises(ValueError, match=r"study_variants: \['fited'\] not in the study config's variants"):
        Study(recipe, conf, "default_study", train=print, only=["fited"])


def test_a_study_chooses_on_the_real_speech_dev_set_never_on_a_test_set(tmp_path):
    from drax.studies.training import Study

    recipe = mini_recipe(tmp_path)
    conf = yaml.safe_load((MINI / "default_study.yaml").read_text())
    default = Study(recipe, conf, "default_study", train=print)
    real = Study(recipe, {**conf, "dev_set": "dev_asterisk"}, "default_study", train=print)
    assert (default.dev_dir, real.dev_dir) == (tmp_path / "dump" / "dev", tmp_path / "dump" / "dev_asterisk")
    assert "dev_set" not in default.decode_request() and real.decode_request()["dev_set"] == "dev_asterisk"
    with pytest.raises(ValueError, match=r"dev_set: 'test_asterisk' is neither the recipe's dev_set \(dev\) nor one "
                                         r"of its dev_sets \['dev_asterisk'\]"):
        Study(recipe, {**conf, "dev_set": "test_asterisk"}, "default_study", train=print)


def test_block_study_decodes_its_variants_with_their_own_options(tmp_path):
    """A variant's own `decode` applies to its curve and under its decodes; a decode naming `variants`
    applies to those only (the rest decode as the study says); the study keeps its file's name."""
    from drax.studies.training import Study

    recipe = mini_recipe(tmp_path)
    conf = yaml.safe_load((MINI / "block_study.yaml").read_text())
    study = Study(recipe, conf, "block_study", train=print, only=["block4", "default"])
    assert study.name == "block_study" and study.out_dir == tmp_path / "block_study"
    assert study.conf.variants["block4"]["decode"]["jump_order"] == "block"
    assert "decode" not in study.conf.variants["default"] and study.conf.jump_order == "jacobi"
    blocks = {name for name, spec in conf["variants"].items() if "active_block" in spec["train"].get("model_conf", {})}
    assert all(set(spec["variants"]) == blocks for spec in conf["decodes"].values())  # thresholds: block models
    bad = {**conf, "decodes": {"x": {"decode": {"threshold": 0.5}, "variants": ["block3"]}}}
    with pytest.raises(ValueError, match=r"decodes.x.variants: \['block3'\] are not among the variants"):
        Study(recipe, bad, "block_study", train=print)
    with pytest.raises(ValueError, match=r"unknown study config variants.a.decode key\(s\) \['beam'\]"):
        load_options(StudyConfig, {"variants": {"a": {"decode": {"beam": 2}}}}, "study config")
    # a decode may set any decoding option (checked as DecodingOptions checks it), but not the study's own keys
    conf = load_options(StudyConfig, {"variants": {"a": {"decode": {"num_candidates": 4, "scoring": "mode"}}}},
                        "study config")
    assert conf.decoding_options({"num_candidates": 4}, "x").num_candidates == 4
    with pytest.raises(ValueError, match=r"decodes.d.decode: \['batch_size'\] belong to the study"):
        load_options(StudyConfig, {"variants": {"a": {}}, "decodes": {"d": {"decode": {"batch_size": 2}}}},
                     "study config")
    with pytest.raises(ValueError, match=r"key num_candidates: 0 must be >= 1"):
        load_options(StudyConfig, {"variants": {"a": {"decode": {"num_candidates": 0}}}}, "study config")


def test_study_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"unknown study config key\(s\) \['epochs'\]"):
        load_options(StudyConfig, {"epochs": 3, "variants": {"a": {}}}, "study config")
    with pytest.raises(ValueError, match="`variants` is empty"):
        load_options(StudyConfig, {}, "study config")
    with pytest.raises(ValueError, match=r"variants.mine: unknown key\(s\) \['model_conf'\]"):
        load_options(StudyConfig, {"variants": {"mine": {"model_conf": {}}}}, "study config")
    with pytest.raises(ValueError, match=r"variants: '../exp' must be a plain name"):  # it names a directory
        load_options(StudyConfig, {"variants": {"../exp": {}}}, "study config")
    with pytest.raises(ValueError, match="key jump_order: unknown choice 'greedy'; valid: random"):
        load_options(StudyConfig, {"jump_order": "greedy", "variants": {"a": {}}}, "study config")
    with pytest.raises(ValueError, match=r"unknown compare config key\(s\) \['tables'\]"):
        load_options(CompareConfig, {"tables": 1}, "compare config")


class CharUnits:
    def encode(self, text):
        return list(text.replace(" ", ""))


def test_joined_runtime_set_fills_bins_with_same_language_utterances(tmp_path):
    data, dump = tmp_path / "data", tmp_path / "dump"
    data.mkdir()
    dump.mkdir()
    rng = np.random.default_rng(0)
    wav, dur, lang, text = [], [], [], []
    for i in range(40):
        utt, seconds = f"u{i:02d}", float(rng.uniform(1.0, 9.0))
        path = tmp_path / f"{utt}.wav"
        sf.write(path, np.full(int(seconds * 16000), 0.01 * (i + 1), dtype=np.float32), 16000)
        wav.append(f"{utt} {path}")
        dur.append(f"{utt} {int(seconds * 16000) / 16000}")
        lang.append(f"{utt} {'en' if i % 2 else 'de'}")
        text.append(f"{utt} word{i}")
    (data / "wav.scp").write_text("\n".join(wav) + "\n")
    (data / "utt2dur").write_text("\n".join(dur) + "\n")
    (dump / "utt2lang").write_text("\n".join(lang) + "\n")
    (dump / "text.raw").write_text("\n".join(text) + "\n")
    bins = joined_runtime_set(data, dump, CharUnits(), per_bin=2, seed=1)
    assert list(bins) == [bin_label(lo, hi) for lo, hi in zip(BINS[:-1], BINS[1:])]
    for (lo, hi), members in zip(zip(BINS[:-1], BINS[1:]), bins.values()):
        assert len(members) == 2
        for utt in members:
            parts = utt.id.split("+")
            assert lo <= utt.duration < hi and len(utt.audio) == round(utt.duration * 16000)
            assert {("en" if int(p[1:]) % 2 else "de") for p in parts} == {utt.lang}
            assert utt.text == " ".join(f"word{int(p[1:])}" for p in parts)
            assert utt.n_tokens == len(utt.text.replace(" ", ""))
    again = joined_runtime_set(data, dump, CharUnits(), per_bin=2, seed=1)
    assert [u.id for m in again.values() for u in m] == [u.id for m in bins.values() for u in m]  # seeded
