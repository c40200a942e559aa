"""The numbered stages of a recipe (the role ESPnet's asr.sh plays), run from the recipe directory.

    1 data        corpus -> data/<set> Kaldi dirs                       (drax.data.corpora)
    2 augment     optional speed perturbation (sox) and augmentation of the training audio
    3 features    Whisper log-mel or frozen-encoder states -> dump/      (kaldiio)
    4 filter      drop and list unusable utterances (unreadable audio, empty text, > max_duration)
    5 tokenizer   output units + token list; tokenised text with the Whisper-style prompt
    6 shapes      shape files for length-bucketed batches; output length L fitted to the data
    7 train       ESPnet trainer on the Drax model (resumable)
    8 decode      Drax on every test set (and Whisper's own decoder as the zero-shot baseline)
    9 score       WER / CER per language, per-utterance alignments
   10 results     exp/RESULTS.md tables
   11 tables      the paper's decoding tables and figures            (only when asked for: --stage 11)
   12 study       the model trained in several variants, dev CER vs CPU-s (only when asked for: --stage 12)
   13 compare     baselines side by side, speculative decoding, speed (only when asked for: --stage 13)

A stage that finished writes exp/stages/<n>_<name>.done holding a fingerprint of its inputs; run
again with the same inputs it is skipped, so any stage can be re-run and an interrupted run resumes.
Each stage imports what it runs inside its function, so a run checks every config in a fraction of a
second, before torch and ESPnet load.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from drax.data.kaldi_dir import read_kv_dict
from drax.fileio import atomic_write_text, remove_stale_temp_files
from drax.options import config_files, load_options, read_config
from drax.recipe.config import RecipeConfig, RecipeError
from drax.recipe.engine import (
    Recipe,
    file_digest,
    fingerprint,
    recipe_lock,
    run_logged,
    set_aside,
)

logger = logging.getLogger("drax.recipe")


# ---- stages ----------------------------------------------------------------------------------------

def stage_data(r: Recipe):
    from drax.data.corpora import prepare

    prepare(r.c.corpus, r.data, r.c.langs, r.c.nj, r.c.corpus_conf)
    for corpus, conf in r.c.extra_corpora.items():
        sets = prepare(corpus, r.data, r.c.langs, r.c.nj, conf or {})
        stray = [s for s in sets if s not in r.c.test_sets + r.c.dev_sets]
        if stray:
            raise RecipeError(f"recipe key extra_corpora.{corpus} made set(s) {stray} that neither dev_sets nor "
                              "test_sets lists: extra corpora give evaluation sets only; add them to one of the two")
    check_made(r.data, {"train_set": [r.c.train_set], "dev_set": [r.c.dev_set], "dev_sets": r.c.dev_sets,
                        "test_sets": r.c.test_sets})
    check_disjoint(r.data, [r.c.train_set, r.c.dev_set, *r.c.dev_sets, *r.c.test_sets])


def check_made(data: Path, sets: dict[str, list[str]]) -> None:
    """Every set a recipe key names ({key: sets}) was made by stage 1: the later stages read them all."""
    for key, names in sets.items():
        for name in names:
            if not (data / name / "wav.scp").is_file():
                raise RecipeError(f"recipe key {key}: {name} was not made by stage 1 (no {data / name / 'wav.scp'}): "
                                  "name a set that the corpus or an extra corpus makes, or remove it from the key")


def check_disjoint(data: Path, sets: list[str]) -> None:
    """No utterance id in two sets: a test utterance trained on, or chosen on, makes its error meaningless."""
    ids = {name: set(read_kv_dict(str(data / name / "text"))) for name in dict.fromkeys(sets)
           if (data / name / "text").exists()}  # a set named twice (a dev set also decoded as a test set) is one
    for a, b in itertools.combinations(ids, 2):
        if both := sorted(ids[a] & ids[b]):
            raise RecipeError(f"{len(both)} utterance id(s) in both {data / a} and {data / b} (e.g. "
                              f"{', '.join(both[:3])}): train, dev and test sets must not share utterances; "
                              "fix the corpus's set lists (or its corpus_conf) and run stage 1 again")


def stage_augment(r: Recipe):
    from collections import Counter

    from drax.data.augment import AugmentConfig, augment_set, speed_perturb

    src = r.data / r.c.train_set
    if r.c.speed_perturb_factors:
        speed_perturb(src, r.data / f"{r.c.train_set}_sp", r.c.speed_perturb_factors)
        src = r.data / f"{r.c.train_set}_sp"
    if r.c.augment_conf:
        applied = augment_set(src, r.data / r.train_name, load_options(AugmentConfig, r.c.augment_conf, "augment_conf"))
        counts = Counter(e for effects in applied.values() for e in effects)
        logger.info("%s: %d utterances augmented (%s)", r.train_name, len(applied),
                    ", ".join(f"{e} {n}" for e, n in sorted(counts.items())))
    if not r.c.speed_perturb_factors and not r.c.augment_conf:
        logger.info("speed_perturb_factors and augment_conf are empty: training audio as prepared")


def stage_features(r: Recipe):
    """Each set dumped in `nj` shards on the recipe's job backend (drax/recipe/jobs.py), logs in
    exp/features/<set>/log; a re-run dumps only the shards that did not finish."""
    from drax.data.features import dump_features, dumped_utterances, merge_dumps
    from drax.recipe.jobs import JobsConfig, check_shard_outputs, run_shards

    jobs = load_options(JobsConfig, r.c.jobs, "recipe key jobs")
    dump = functools.partial(dump_features, kind=r.c.features, whisper=r.whisper_dir(), **r.encoder_options(),
                             device=r.torch_device())
    for name in r.all_sets:
        shard_dirs = [r.dump / name / f"split{r.c.nj}" / str(i) for i in range(r.c.nj)]
        log_dir = r.exp / "features" / name / "log"
        run_shards(f"stage 3 {name}", dump, [{"data_dir": r.data / name, "out_dir": d, "shard": (i, r.c.nj)}
                                             for i, d in enumerate(shard_dirs)],
                   log_dir, jobs, request={"inputs": r.fingerprint, "set": name})
        check_shard_outputs(f"stage 3 {name}", shard_dirs, dumped_utterances,
                            set(read_kv_dict(str(r.data / name / "wav.scp"))), log_dir)
        summary = merge_dumps(shard_dirs, r.dump / name)
        logger.info("%s: %d utterances dumped, %d skipped (dim %d)", name, summary.written,
                    len(summary.skipped), summary.feat_dim)
        if summary.skipped:
            logger.warning("%s: %d utterance(s) skipped, listed with reasons in %s", name, len(summary.skipped),
                           r.dump / name / "skipped")


def stage_filter(r: Recipe):
    from drax.data.filtering import filter_set

    for name in r.all_sets:
        filter_set(r.data / name, r.dump / name, r.c.max_duration)


def stage_tokenizer(r: Recipe):
    from drax.data.tokenize import build_units, unit_texts, write_token_text

    texts = unit_texts(r.dump / r.train_name, r.data)
    units = build_units(r.c.units, r.c.units_conf, r.units_dir, texts, r.c.langs,
                        whisper_dir=r.whisper_dir() if r.c.units == "whisper" else None)
    for name in r.all_sets:
        write_token_text(units, r.dump / name)


def stage_shapes(r: Recipe):
    from drax.data.tokenize import fit_output_length, write_shapes

    length = fit_output_length(r.dump / r.train_name / "text", r.c.max_output_length)
    # train leaves out what L cannot hold; dev keeps it (a tiny train set may fit no dev text), listed
    # with the truncation validation applies; the other dev sets and test are never filtered
    write_shapes(r.dump / r.train_name, r.units_dir / "tokens.txt", length)
    write_shapes(r.dump / r.c.dev_set, r.units_dir / "tokens.txt", length, drop_too_long=False)
    for name in dict.fromkeys(r.c.dev_sets + r.c.test_sets):
        write_shapes(r.dump / name, r.units_dir / "tokens.txt")
    atomic_write_text(r.dump / "output_length", f"{length}\n")
    logger.info("output length L = %d tokens (prompt + longest training transcript + end, rounded up to 8)", length)


def write_transcribe_manifest(r: Recipe) -> None:
    """asr_dir/transcribe.yaml for a Drax model: what `drax.load` reads beside the checkpoints (the units,
    the Whisper that made the features and how it ran, the longest window to decode, the decode
    options), paths relative to asr_dir."""
    import dataclasses
    import os

    from drax.transcribe import MANIFEST

    if r.model_keys().get("model") != "drax":
        return
    whisper = r.whisper_dir()
    relative = lambda path: os.path.relpath(Path(path).resolve(), r.asr_dir.resolve())  # noqa: E731
    trained = read_kv_dict(str(r.dump / r.train_name / "speech_shape"))  # what the trainer reads (stage 6)
    durations = read_kv_dict(str(r.data / r.train_name / "utt2dur"))
    spec = {"units_dir": relative(r.units_dir), "whisper": relative(whisper) if Path(whisper).exists() else whisper,
            "features": r.c.features, "encoder_autocast": r.c.encoder_autocast,
            "encoder_pad_to_30s": r.c.encoder_pad_to_30s, "encoder_trailing_silence": r.c.encoder_trailing_silence,
            "max_window": round(max(float(durations[u]) for u in trained), 2),  # the longest training utterance
            "decode": dataclasses.asdict(r.decode_options())}
    atomic_write_text(r.asr_dir / MANIFEST, yaml.safe_dump(spec, sort_keys=False))


def stage_train(r: Recipe):
    feat_dim = int((r.dump / r.train_name / "feats_shape").read_text().split()[1].split(",")[1])
    if r.c.pretrained:  # a converted release is the model: nothing to train
        from drax.pretrained.release import install_converted

        install_converted(r.c.pretrained, r.asr_dir, r.units_dir, feat_dim, r.c.features)
        write_transcribe_manifest(r)
        return
    # Resume an interrupted run with the same inputs; start afresh (keeping the old run aside) otherwise.
    stamp = r.asr_dir / "inputs.fingerprint"
    if r.asr_dir.exists() and (not stamp.exists() or stamp.read_text().strip() != r.fingerprint):
        logger.warning("training inputs changed: previous run moved to %s", set_aside(r.asr_dir))
    r.asr_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stamp, r.fingerprint + "\n")
    length = int((r.dump / "output_length").read_text())
    train_conf = r.model_keys()
    resolved = r.asr_dir / "train_config.yaml"  # its `base` chain resolved: the trainer reads one file
    atomic_write_text(resolved, yaml.safe_dump(train_conf, sort_keys=False))
    args = [sys.executable, "-m", "drax.bin.train", "--config", str(resolved), "--output_dir", str(r.asr_dir),
            "--ngpu", str(r.c.ngpu), "--token_type", "word", "--token_list", str(r.units_dir / "tokens.txt"),
            "--input_size", str(feat_dim), "--resume", "true"]
    if train_conf.get("model") == "drax":  # the `model: espnet` baselines have no fixed length
        args += ["--model_conf", f"output_length={length}"]
    elif train_conf.get("model") == "drax_ar":  # the AR yardstick: Drax's length budget
        args += ["--model_conf", f"max_length={length}"]
    for split, name in (("train", r.train_name), ("valid", r.c.dev_set)):
        d = r.dump / name
        args += [f"--{split}_data_path_and_name_and_type", f"{d}/feats.scp,speech,kaldi_ark",
                 f"--{split}_data_path_and_name_and_type", f"{d}/text,text,text",
                 f"--{split}_shape_file", f"{d}/speech_shape", f"--{split}_shape_file", f"{d}/text_shape"]
    if r.c.features == "logmel":
        args += ["--encoder_conf", f"model={r.whisper_dir()}"]
    if (train_conf.get("decoder_conf") or {}).get("init_from_whisper") == "recipe":
        args += ["--decoder_conf", f"init_from_whisper={r.whisper_dir()}"]
    write_transcribe_manifest(r)
    run_logged(args, r.asr_dir / "train.log")


def stage_decode(r: Recipe):
    from drax.decode.decode_sets import decode_baseline, decode_drax, decode_drax_ar, decode_whisper

    options = r.decode_options()
    write_transcribe_manifest(r)  # the decode options drax.load reads: this stage's, length cap included
    model = r.model_keys().get("model")
    for name in r.c.test_sets:
        common = dict(asr_dir=r.asr_dir, set_dir=r.dump / name, units_dir=r.units_dir, options=options)
        if model == "drax":
            rescorer = r.whisper_dir() if options.scoring == "ar" and not options.rescorer else None
            decode_sharded(r, name, functools.partial(decode_drax, **common, whisper_dir=rescorer,
                                                      device=r.torch_device()))
        elif model == "drax_ar":  # the AR yardstick: greedy, KV cache
            decode_sharded(r, name, functools.partial(decode_drax_ar, **common, device=r.torch_device()))
        else:  # the recipe's AR / CTC baselines (model: espnet; on the CPU)
            decode_sharded(r, name, functools.partial(decode_baseline, **common))
        if r.c.whisper_baseline:  # shared by every experiment of the recipe: decoded once
            decode_whisper(r.whisper_dir(), r.data / name, r.dump / name, r.exp / "whisper_zero_shot" / name,
                           langs=r.c.whisper_baseline_langs.get(name) or None, reuse=True, device=r.torch_device())


def decode_sharded(r: Recipe, name: str, decode) -> None:
    """decode(out_dir=, shard=) in `nj` shards on the recipe's job backend (drax/recipe/jobs.py),
    merged into the set's decode directory; a re-run decodes only the shards that did not finish."""
    from drax.decode.decode_sets import decoded_utterances, merge_shards
    from drax.recipe.jobs import JobsConfig, check_shard_outputs, run_shards

    out = r.decode_dir(name)
    shard_dirs = [out / f"split{r.c.nj}" / str(i) for i in range(r.c.nj)]
    run_shards(f"stage 8 {name}", decode, [{"out_dir": d, "shard": (i, r.c.nj)} for i, d in enumerate(shard_dirs)],
               out / "log", load_options(JobsConfig, r.c.jobs, "recipe key jobs"),
               request={"inputs": r.fingerprint, "set": name})
    check_shard_outputs(f"stage 8 {name}", shard_dirs, decoded_utterances,
                        set(read_kv_dict(str(r.dump / name / "feats.scp"))), out / "log")
    merge_shards(shard_dirs, out)


def stage_score(r: Recipe):
    from drax.decode.decode_sets import score_dir

    for name in r.c.test_sets:
        score_dir(r.decode_dir(name), r.dump / name)
        if r.c.whisper_baseline:
            score_dir(r.exp / "whisper_zero_shot" / name, r.dump / name)


def stage_results(r: Recipe):
    from drax.studies.results import write_results

    write_results(r, r.exp / "RESULTS.md", STAGES)


def stage_tables(r: Recipe):
    """The paper's decoding tables and figures (drax/studies/suite.py) for every test set."""
    from drax.studies.suite import Suite

    conf = yaml.safe_load(Path(r.c.tables_config).read_text(encoding="utf-8")) or {}
    command = f"./run.sh --stage 11 --train_config {r.c.train_config} --tables_config {r.c.tables_config}"
    for name in r.c.test_sets:
        suite = Suite(r.asr_dir, r.dump / name, r.data / name, r.units_dir, r.whisper_dir(),
                      r.asr_dir / f"tables_{name}", conf, encoder_options=r.encoder_options())
        logger.info("tables for %s: %s", name, suite.run(command))


def stage_study(r: Recipe):
    """Variants of the train config on an equal budget, dev CER against CPU-seconds (drax/studies/training.py):
    conf/path_study.yaml is the paper's Sec. 5.4 / Figure 3, conf/efficiency_study.yaml the learning efficiency."""
    from drax.studies.training import Study

    conf = yaml.safe_load(Path(r.c.study_config).read_text(encoding="utf-8")) or {}
    command = f"./run.sh --stage 12 --train_config {r.c.train_config} --study_config {r.c.study_config}"
    if r.c.study_variants:
        command += f" --study_variants '[{', '.join(r.c.study_variants)}]'"
    study = Study(r, conf, Path(r.c.study_config).stem, train=lambda variant: run_stages(variant.c, 7, 7, variant.root),
                  only=r.c.study_variants)
    logger.info("study: %s", study.run(command))


def stage_compare(r: Recipe):
    """Paper Tables 1 and 3 and the CPU speed study for every test set (drax/studies/compare/)."""
    from drax.studies.compare import Compare

    conf = yaml.safe_load(Path(r.c.compare_config).read_text(encoding="utf-8")) or {}
    command = f"./run.sh --stage 13 --compare_config {r.c.compare_config}"
    for name in r.c.test_sets:
        logger.info("comparison for %s: %s", name, Compare(r, name, conf).run(command))
    stage_results(r)  # RESULTS.md takes in Tables 1 and 3


@dataclass(frozen=True)
class Stage:
    """One numbered stage: everything the engine, the checks and the locks know of it."""

    number: int
    name: str
    run: Callable[[Recipe], None]
    inputs: Callable[[Recipe], list]  # what its result depends on, beyond the previous stage's fingerprint
    scope: str = "data"  # data: every experiment's | experiment: one train config's | decode: one decoding's | study
    config: str | None = None  # the recipe key of the config file it reads
    on_request: bool = False  # runs only when asked for (--stage N)


def _data_inputs(r: Recipe) -> list:
    from drax.data import corpora

    c = r.c
    # corpus location from the environment / combined data dirs; left out when there is none, so
    # that fingerprints of earlier runs stay valid
    outside = corpora.stage_inputs(c.corpus, c.corpus_conf)
    return [c.corpus, c.corpus_conf, c.langs] + ([outside] if outside else []) + (
        [c.extra_corpora] if c.extra_corpora else [])


def _train_inputs(r: Recipe) -> list:
    c = r.c
    if c.pretrained:
        return [file_digest(Path(c.pretrained) / n) for n in ("config.yaml", "release.json")]
    return [*map(file_digest, config_files(c.train_config)), c.ngpu]


STAGES = [
    Stage(1, "data", stage_data, _data_inputs),
    Stage(2, "augment", stage_augment,
          lambda r: [r.c.speed_perturb_factors] + ([r.c.augment_conf] if r.c.augment_conf else [])),
    Stage(3, "features", stage_features,
          lambda r: [r.c.features, r.c.whisper] + ([r.c.encoder_autocast] if r.c.encoder_autocast else [])
          + (["pad_to_30s"] if r.c.encoder_pad_to_30s else []) + ([r.c.dev_sets] if r.c.dev_sets else [])
          + ([f"trailing_silence {float(r.c.encoder_trailing_silence)}"] if r.c.encoder_trailing_silence else [])),
    Stage(4, "filter", stage_filter, lambda r: [r.c.max_duration]),
    Stage(5, "tokenizer", stage_tokenizer, lambda r: [r.c.units, r.c.units_conf]),
    Stage(6, "shapes", stage_shapes, lambda r: [r.c.max_output_length]),
    Stage(7, "train", stage_train, _train_inputs, "experiment", "train_config"),
    # where it writes counts too: a renamed decode directory decodes again
    Stage(8, "decode", stage_decode,
          lambda r: [*map(file_digest, config_files(r.c.decode_config)), r.c.whisper_baseline,
                     r.c.whisper_baseline_langs, r.c.test_sets, r.decode_dir("").name]
          + ([r.c.length_cap] if r.caps_length() else []), "decode", "decode_config"),
    Stage(9, "score", stage_score, lambda r: [], "decode"),
    Stage(10, "results", stage_results, lambda r: [], "decode"),
    Stage(11, "tables", stage_tables, lambda r: [file_digest(Path(r.c.tables_config)), r.c.test_sets],
          "experiment", "tables_config", on_request=True),
    Stage(12, "study", stage_study,
          lambda r: [file_digest(Path(r.c.study_config)), r.c.dev_set]
          + ([r.c.study_variants] if r.c.study_variants else []), "study", "study_config", on_request=True),
    Stage(13, "compare", stage_compare, lambda r: [file_digest(Path(r.c.compare_config)), r.c.test_sets],
          "experiment", "compare_config", on_request=True),
]
STAGE = {s.number: s for s in STAGES}
LAST_DEFAULT_STAGE = max(s.number for s in STAGES if not s.on_request)


def stage_inputs(r: Recipe, number: int) -> list:
    """What a stage's result depends on, beyond the previous stage's fingerprint."""
    return STAGE[number].inputs(r)


def stage_key(r: Recipe, s: Stage) -> str:
    """Data stages are shared by every experiment; the others belong to one (the train config's tag),
    and decode stages to one decoding of it (its decode dir's name): decoding with another config
    keeps what the first decoded, and each decode's stage times."""
    if s.scope == "data":
        return f"{s.number}_{s.name}"
    if s.scope == "decode":
        return f"{s.number}_{s.name}.{r.c.tag}.{r.decode_dir('').name}"
    return f"{s.number}_{s.name}.{r.c.tag}"


@contextlib.contextmanager
def stages_lock(config: RecipeConfig, stage: int, stop_stage: int, root: Path):
    """recipe_lock for stages stage..stop_stage: the recipe directory to itself when a data stage runs,
    its experiment (or study) to itself otherwise."""
    run = [s for s in STAGES if stage <= s.number <= stop_stage]
    experiments = {f"study.{Path(config.study_config).stem}" if s.scope == "study" else config.tag
                   for s in run if s.scope != "data"}
    with recipe_lock(config, root, any(s.scope == "data" for s in run), experiments):
        yield


def check_stage_configs(config: RecipeConfig, stage: int, stop_stage: int, root: Path) -> None:
    """Every config file the stages to run read exists and parses to a mapping, and a decode config's
    keys are known, as are the corpora's keys when stage 1 runs: a typo fails now, not after the
    stages before it ran for an hour."""
    from drax.decode.options import load_decode_options

    if stage <= 1 <= stop_stage:
        from drax.data.corpora import CorpusError, check_conf

        try:
            check_conf(config.corpus, config.corpus_conf)
            for corpus, conf in config.extra_corpora.items():
                check_conf(corpus, conf or {}, f"recipe key extra_corpora.{corpus}")
        except CorpusError as e:
            raise RecipeError(str(e)) from None
    needed = {s.config: s.number for s in STAGES if s.config}
    if config.pretrained:
        if not (root / config.pretrained / "config.yaml").is_file():
            raise RecipeError(f"recipe key pretrained: {root / config.pretrained} holds no config.yaml; give the --out "
                              "directory of python -m drax.bin.convert_release")
        needed.pop("train_config")
    for key, number in needed.items():
        if not stage <= number <= stop_stage:
            continue
        path = root / getattr(config, key)
        if not path.is_file():
            raise RecipeError(f"recipe key {key}: {path} does not exist (stage {number} reads it)")
        try:
            conf = read_config(path) if key in ("train_config", "decode_config") else yaml.safe_load(
                path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise RecipeError(f"recipe key {key}: {e}") from None
        if not isinstance(conf, dict):
            raise RecipeError(f"recipe key {key}: {path} is not a YAML mapping of options")
        if key == "decode_config":
            try:
                load_decode_options(path, root / Recipe(config, root).model_config())
            except ValueError as e:
                raise RecipeError(str(e)) from None


def run_stages(config: RecipeConfig, stage: int = 1, stop_stage: int | None = None, root: Path = Path(".")) -> dict:
    """Run stages stage..stop_stage; returns {stage: seconds} for the stages that ran (not skipped).

    stop_stage defaults to the last default stage (10), or to `stage` if that is later.
    exp/stage_times.json keeps the last time of every stage."""
    if stop_stage is None:
        stop_stage = max(stage, LAST_DEFAULT_STAGE)
    last = STAGES[-1].number
    if not 1 <= stage <= stop_stage <= last:
        raise RecipeError(f"--stage {stage} --stop_stage {stop_stage}: stages run from 1 to {last}, "
                         "and --stage must not come after --stop_stage")
    check_stage_configs(config, stage, stop_stage, root)
    with stages_lock(config, stage, stop_stage, root):
        return _run_stages(config, stage, stop_stage, root)


def _run_stages(config: RecipeConfig, stage: int, stop_stage: int, root: Path) -> dict:
    r = Recipe(config, root)
    r.markers.mkdir(parents=True, exist_ok=True)
    # a stage killed before its rename left a temp file; its own re-run writes the output again
    remove_stale_temp_files(r.data, r.dump.parent, r.exp, r.root / "downloads")
    times_file = r.exp / "stage_times.json"
    previous = ""
    ran = {}
    for s in STAGES:
        number, name = s.number, s.name
        key = stage_key(r, s)
        marker = r.markers / f"{key}.done"
        fp = fingerprint(previous, s.inputs(r))
        previous = fp
        if not stage <= number <= stop_stage:
            continue
        if marker.exists() and marker.read_text().strip() == fp:
            logger.info("stage %d (%s): done before with the same inputs, skipped", number, name)
            continue
        logger.info("stage %d (%s): start", number, name)
        marker.unlink(missing_ok=True)
        r.fingerprint = fp
        start = time.perf_counter()
        s.run(r)
        seconds = time.perf_counter() - start
        ran[key] = round(seconds, 1)
        # re-read: a study runs several experiments' stages side by side
        times = json.loads(times_file.read_text()) if times_file.exists() else {}
        times[key] = ran[key]
        atomic_write_text(str(times_file), json.dumps(times, indent=1))
        atomic_write_text(marker, fp + "\n")
        logger.info("stage %d (%s): done in %.1f s", number, name, seconds)
    return ran
