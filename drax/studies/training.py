"""Training studies (recipe stage 12): the recipe's model trained in several variants on an equal
budget, dev error against training CPU-seconds, one curve per variant.

    ./run.sh --stage 12                                          # conf/path_study.yaml (paper Sec. 5.4, Fig. 3)
    ./run.sh --stage 12 --study_config conf/efficiency_study.yaml  # learning efficiency

A variant is the study's `base_config` (default: the recipe's train config) or the variant's own
`config` (e.g. conf/train_drax_ar.yaml for the autoregressive yardstick, decoded greedily) with
`train` overrides: a top-level key is replaced, except
that a mapping (`model_conf`, `decoder_conf`, `optim_conf`, ...) is updated key by key, one level
deep (so `model_conf: {path: uniform, scheduler_conf: {exponent: 2.0}}` keeps the other model_conf
keys and replaces scheduler_conf as a whole), and that a variant choosing another class (`scheduler:
piecewiselinearwarmuplr`) gets only its own `<key>_conf`, none of the base's. Every variant then gets the study's budget
(`max_epoch` x `num_iters_per_epoch` steps) and is an experiment of the recipe
(exp/asr_<study>_<variant>, resumable like any training). `jobs` trainings run side by side with
`threads` threads each (on a small CPU two 1-thread jobs make more steps per second than one 2-thread
job); each epoch's checkpoint is decoded on a per-language subset of the dev set, never the test set.
Written to exp/<study>/ (<study> = the config file's stem): <study>.md (table), <study>.png (dev CER
and validation loss against training CPU-seconds = the trainer's epoch times x threads), results.json.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import kaldiio
import torch
import yaml

from drax.asr.checkpoint import reporter_stats
from drax.data.kaldi_dir import read_kv_dict
from drax.decode.options import DecodingOptions
from drax.decode.scoring import score
from drax.decode.speech2text import ARSpeech2Text, Speech2Text
from drax.fileio import atomic_save_figure, atomic_write_text
from drax.options import load_options, merge_config, read_config
from drax.recipe.config import is_plain_name
from drax.recipe.engine import Recipe, file_digest
from drax.studies.report import fmt, per_language_subset
from drax.text.units import load_units

logger = logging.getLogger("drax.recipe")


@dataclass(frozen=True)
class StudyConfig:
    """Stage 12 (conf/path_study.yaml, conf/efficiency_study.yaml): the variants and their budget."""

    title: str = "Training study"
    base_config: str | None = None  # train config the variants start from (default: the recipe's train_config)
    # name -> {label: str, config: train config (default: base_config), train: {overrides}}
    variants: dict = field(default_factory=dict)
    # name -> {label, decode: {sampler options}, model_file, variants}: on the last epoch's checkpoint (of the
    # variants listed, default all; options on top of a variant's own `decode`), or on the
    # trainer's `model_file` in the experiment (e.g. valid.loss.ave_3best.pth, ESPnet's average of the
    # 3 epochs of lowest validation loss: the variants keep that average beside every epoch)
    decodes: dict = field(default_factory=dict)
    max_epoch: int = 6  # budget: max_epoch x num_iters_per_epoch steps for every variant
    num_iters_per_epoch: int = 50  # one dev evaluation per epoch
    jobs: int = 2  # trainings side by side
    threads: int = 1  # torch threads per training / evaluation
    utts_per_lang: int = 10  # dev subset
    dev_set: str | None = None  # the set decoded: the recipe's dev_set (default) or one of its dev_sets
    nfe: int = 16
    temperature: float = 0.01
    jump_order: str = "random"  # the curves' sampler order (drax/flow/sampler.py); `decodes` add others
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self):
        self.decoding_options(None, "study config")
        if not self.variants:
            raise ValueError("study config: `variants` is empty; give at least one (name: {label, train})")
        for name, spec in self.variants.items():
            if not is_plain_name(name):
                raise ValueError(f"study config variants: {name!r} must be a plain name (letters, digits, . _ -): "
                                 "it names the variant's experiment directory")
            bad = set(spec or {}) - _VARIANT_KEYS
            if bad:
                raise ValueError(f"study config variants.{name}: unknown key(s) {sorted(bad)}; "
                                 f"valid: {sorted(_VARIANT_KEYS)}")
            if not isinstance((spec or {}).get("train", {}), dict):
                raise ValueError(f"study config variants.{name}.train must be a mapping of train-config overrides")
            self.decoding_options((spec or {}).get("decode"), f"study config variants.{name}.decode")
        for name, spec in self.decodes.items():
            bad = set(spec or {}) - _DECODE_KEYS
            if bad:
                raise ValueError(f"study config decodes.{name}: unknown key(s) {sorted(bad)}; valid: {sorted(_DECODE_KEYS)}")
            self.decoding_options((spec or {}).get("decode"), f"study config decodes.{name}.decode")

    def decoding_options(self, sampler: dict | None, what: str) -> DecodingOptions:
        """The study's sampler (nfe, temperature, jump_order, seed) with `sampler`, any DecodingOptions, on top."""
        owned = sorted(set(sampler or {}) & _STUDY_OWNED)
        if owned:
            raise ValueError(f"{what}: {owned} belong to the study (its top-level batch_size and seed, a decode's "
                             "model_file), not to a variant's or a decode's `decode`")
        return load_options(DecodingOptions, {"nfe": self.nfe, "temperature": self.temperature, "seed": self.seed,
                                              "jump_order": self.jump_order, **(sampler or {})}, what)


_VARIANT_KEYS = {"label", "config", "train", "decode"}
_DECODE_KEYS = {"label", "decode", "model_file", "variants"}
_AVERAGE = re.compile(r"^valid\.loss\.ave_(\d+)best\.pth$")
_STUDY_OWNED = {"batch_size", "seed", "model_file"}


def variant_train_config(base: dict, overrides: dict, conf: dict) -> dict:
    """The recipe's train config with one variant's overrides and the study's budget; it keeps every
    epoch's checkpoint (the curve) and the averages the study's decodes read."""
    out = merge_config(base, overrides or {})
    averages = {int(m.group(1)) for spec in conf.decodes.values()
                if (m := _AVERAGE.match((spec or {}).get("model_file", "")))}
    keep = sorted(averages | {conf.max_epoch})
    out.update(max_epoch=conf.max_epoch, num_iters_per_epoch=conf.num_iters_per_epoch,
               keep_nbest_models=keep[0] if len(keep) == 1 else keep)
    return out


def dev_subset(set_dir: Path, utts_per_lang: int, seed: int) -> list[str]:
    return per_language_subset(read_kv_dict(str(set_dir / "feats.scp")), read_kv_dict(str(set_dir / "utt2lang")),
                               utts_per_lang, seed)


def epoch_stats(asr_dir: Path) -> dict[int, dict]:
    """epoch -> {valid_loss_dfm, train_seconds} from the trainer's reporter in checkpoint.pth."""

    path = asr_dir / "checkpoint.pth"
    if not path.exists():
        return {}
    stats = reporter_stats(path)
    out = {}
    for epoch, s in stats.items():
        valid = s.get("valid", {}).get("loss_dfm")  # Drax's CE; the AR yardstick reports only `loss`
        out[int(epoch)] = {"valid_loss_dfm": None if valid is None else float(valid),
                           "train_seconds": s["train"]["time"].total_seconds() if "train" in s else None}
    return out


def evaluate_checkpoint(asr_dir: Path, model_file: Path, set_dir: Path, units_dir: Path, utts: list[str],
                        conf: StudyConfig, sampler: dict | None = None,
                        device: str = "cpu") -> dict[str, dict[str, float]]:
    """{'wer': lang -> WER (CER for zh/ja), 'cer': lang -> CER} of one checkpoint on `utts`, each with 'avg'.

    sampler: decoding options on top of the study's sampler (nfe, temperature, jump_order)."""
    options = conf.decoding_options(sampler, f"study decode of {model_file}")
    if is_autoregressive(asr_dir):
        ar = ARSpeech2Text(asr_dir / "config.yaml", model_file, units_dir, device=device)
        transcribe = ar.batch
    else:
        s2t = Speech2Text(asr_dir / "config.yaml", model_file, options, units_dir, device=device)
        steps, tokens, calls = [], [], []

        def transcribe(feats, langs):
            decoded = s2t.batch(feats, langs)
            steps.append(decoded[0].steps)
            tokens.extend(len(d.best.token_ids) + 1 for d in decoded)  # the end token counted once
            calls.extend(d.calls for d in decoded)
            return [d.best.text for d in decoded]
    feats = read_kv_dict(str(set_dir / "feats.scp"))
    langs = read_kv_dict(str(set_dir / "utt2lang"))
    refs = read_kv_dict(str(set_dir / "text.raw"))
    hyps = {}
    for i in range(0, len(utts), conf.batch_size):
        batch = utts[i: i + conf.batch_size]
        hyps.update(zip(batch, transcribe([kaldiio.load_mat(feats[u]) for u in batch], [langs[u] for u in batch])))
    scores, _ = score({u: refs[u] for u in utts}, hyps, langs)
    out = {"wer": {s.lang: (s.wer if s.wer is not None else s.cer) for s in scores},
           "cer": {s.lang: s.cer for s in scores}}
    for errors in out.values():
        errors["avg"] = sum(errors.values()) / len(errors)
    if not is_autoregressive(asr_dir):
        out["steps"] = sum(steps) / len(steps)  # decoder calls per batch
        out["tokens_per_call"] = sum(tokens) / sum(calls)  # per utterance: its tokens over the calls that decoded it
    return out


def is_autoregressive(asr_dir: Path) -> bool:
    """True for the `model: drax_ar` yardstick (greedy decoding, no sampler options)."""
    return (yaml.safe_load((asr_dir / "config.yaml").read_text(encoding="utf-8")) or {}).get("model") == "drax_ar"


class Study:
    """One training study of `recipe`; `train(variant_recipe)` runs a variant's training (the recipe's
    stage 7, given by the stage that runs the study)."""

    def __init__(self, recipe: Recipe, conf: dict, name: str, train: Callable[[Recipe], object],
                 only: list | None = None):
        self.r, self.train = recipe, train
        self.conf = load_options(StudyConfig, conf, "study config")
        for decode, spec in self.conf.decodes.items():
            unknown = sorted(set((spec or {}).get("variants") or []) - set(self.conf.variants))
            if unknown:
                raise ValueError(f"study config decodes.{decode}.variants: {unknown} are not among the variants "
                                 f"({', '.join(self.conf.variants)})")
        if only:  # a subset of the variants (recipe key study_variants), in the study config's order
            unknown = sorted(set(only) - set(self.conf.variants))
            if unknown:
                raise ValueError(f"recipe key study_variants: {unknown} not in the study config's variants "
                                 f"({', '.join(self.conf.variants)})")
            variants = {k: v for k, v in self.conf.variants.items() if k in only}
            self.conf = dataclasses.replace(self.conf, variants=variants)
        dev_set = self.conf.dev_set or recipe.c.dev_set
        if dev_set not in (recipe.c.dev_set, *recipe.c.dev_sets):
            raise ValueError(f"study config dev_set: {dev_set!r} is neither the recipe's dev_set ({recipe.c.dev_set}) "
                             f"nor one of its dev_sets {recipe.c.dev_sets}: choices are made on dev sets only")
        self.dev_dir = recipe.dump / dev_set
        self.name = name
        self.out_dir = recipe.exp / name
        base_config = self.conf.base_config
        base = recipe.root / base_config if base_config else Path(recipe.c.train_config)
        self.base = read_config(base)

    def label(self, variant: str) -> str:
        return (self.conf.variants[variant] or {}).get("label", variant)

    def recipe_for(self, variant: str):
        """The recipe with this variant's train config and experiment tag."""
        conf_path = self.out_dir / "conf" / f"train_{variant}.yaml"
        spec = self.conf.variants[variant] or {}
        base = self.base
        if spec.get("config"):
            base = read_config(self.r.root / spec["config"])
        text = yaml.safe_dump(variant_train_config(base, spec.get("train", {}), self.conf), sort_keys=False)
        if not conf_path.exists() or conf_path.read_text(encoding="utf-8") != text:
            conf_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(str(conf_path), text)
        config = dataclasses.replace(self.r.c, train_config=str(conf_path), exp_tag=f"{self.name}_{variant}")
        return Recipe(config, self.r.root)

    def decode_request(self) -> dict:
        """What a cached dev decode depends on besides the checkpoint (the paper's jump order, the
        default, is left out: decodes cached before the key existed stay valid)."""
        keys = ("nfe", "temperature", "utts_per_lang", "seed") + (("jump_order",) if self.conf.jump_order != "random" else ())
        return {**{k: getattr(self.conf, k) for k in keys},
                **({"dev_set": self.dev_dir.name} if self.dev_dir.name != self.r.c.dev_set else {})}

    def train_and_evaluate(self, variant: str) -> dict:
        r = self.recipe_for(variant)
        self.train(r)  # skipped when done; resumes an interrupted training
        utts = dev_subset(self.dev_dir, self.conf.utts_per_lang, self.conf.seed)
        eval_dir = self.out_dir / "eval" / variant
        eval_dir.mkdir(parents=True, exist_ok=True)
        stats = epoch_stats(r.asr_dir)
        own = (self.conf.variants[variant] or {}).get("decode", {})  # the variant's own decoding (e.g. block)
        curve, seconds = [], 0.0
        for epoch in range(1, self.conf.max_epoch + 1):
            model_file = r.asr_dir / f"{epoch}epoch.pth"
            if not model_file.exists():
                raise FileNotFoundError(f"{model_file} is missing: the training in {r.asr_dir} did not keep "
                                        "every epoch (keep_nbest_models); delete that directory and run again")
            cached = eval_dir / f"epoch{epoch}.json"
            request = {"checkpoint": file_digest(model_file),  # a retrained variant is decoded again
                       **self.decode_request(), **({"sampler": own} if own else {})}
            point = json.loads(cached.read_text()) if cached.exists() else None
            if point is None or point.get("request") != request:
                errors = evaluate_checkpoint(r.asr_dir, model_file, self.dev_dir, self.r.units_dir,
                                             utts, self.conf, own, device=self.r.torch_device())
                point = {"request": request, "epoch": epoch, "step": epoch * self.conf.num_iters_per_epoch,
                         **errors}
                atomic_write_text(str(cached), json.dumps(point, indent=1) + "\n")
                logger.info("study %s, %s epoch %d: dev CER %.1f %%", self.name, variant, epoch, errors["cer"]["avg"])
            s = stats.get(epoch, {})
            point["valid_loss_dfm"] = s.get("valid_loss_dfm")
            seconds += (s.get("train_seconds") or 0.0) * self.conf.threads
            point["cpu_seconds"] = round(seconds, 1)
            curve.append(point)
        decodes = {}  # sampler levers on the last checkpoint (Drax only: the AR yardstick decodes greedily)
        for name, spec in ({} if is_autoregressive(r.asr_dir) else self.conf.decodes).items():
            if (spec or {}).get("variants") and variant not in spec["variants"]:
                continue
            sampler = {**own, **(spec or {}).get("decode", {})}
            cached = eval_dir / f"last_{name}.json"
            model_file = r.asr_dir / ((spec or {}).get("model_file") or f"{self.conf.max_epoch}epoch.pth")
            if not model_file.exists():
                raise FileNotFoundError(f"study config decodes.{name}: {model_file} is missing (the trainer "
                                        "writes valid.loss.ave_<n>best.pth when keep_nbest_models lists n)")
            digest = file_digest(model_file) if (spec or {}).get("model_file") else curve[-1]["request"]["checkpoint"]
            request = {"checkpoint": digest, "sampler": sampler, **self.decode_request()}  # last epoch: hashed above
            point = json.loads(cached.read_text()) if cached.exists() else None
            if point is None or point.get("request") != request:
                point = {"request": request, **evaluate_checkpoint(
                    r.asr_dir, model_file, self.dev_dir, self.r.units_dir, utts, self.conf, sampler,
                    device=self.r.torch_device())}
                atomic_write_text(str(cached), json.dumps(point, indent=1) + "\n")
            decodes[name] = point
        return {"name": variant, "label": self.label(variant), "curve": curve, "decodes": decodes,
                "n_dev_utts": len(utts)}

    def run(self, command: str = "") -> Path:
        torch.set_num_threads(self.conf.threads)
        threads = str(self.conf.threads)
        saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        os.environ.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)  # inherited by the trainings
        try:
            # each thread's evaluations load the units; the first load imports transformers' tokenizers, whose lazy
            # imports fail when two threads make them at once ("cannot import name 'AutoTokenizer'")
            load_units(self.r.units_dir)
            with ThreadPoolExecutor(max_workers=self.conf.jobs) as pool:
                results = list(pool.map(self.train_and_evaluate, self.conf.variants))
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        atomic_write_text(str(self.out_dir / "results.json"), json.dumps(results, indent=1) + "\n")
        self.plot(results)
        path = self.out_dir / f"{self.name}.md"
        atomic_write_text(str(path), self.table(results, command))
        return path

    def table(self, results: list[dict], command: str) -> str:
        c = self.conf
        steps = [p["step"] for p in results[0]["curve"]]
        lines = [
            f"# {c.title}", "",
            f"Written on {date.today()} ({os.cpu_count()} CPU cores) by `{command}`. Every variant: "
            f"`{c.base_config or self.r.c.train_config}` (or its own config) with the overrides of "
            f"`{self.r.c.study_config}`, {c.max_epoch * c.num_iters_per_epoch} "
            f"steps ({c.max_epoch} epochs x {c.num_iters_per_epoch}), {c.jobs} trainings side by side with "
            f"{c.threads} thread(s) each. Dev CER (%, mean over languages) on {results[0]['n_dev_utts']} utterances "
            f"of `{self.dev_dir.name}` ({c.utts_per_lang} per language), NFE {c.nfe}, {c.jump_order} jumps, one sample at "
            f"temperature {c.temperature}; CPU-s = the trainer's epoch time x threads. Figure: `{self.name}.png`.", "",
            "A variant's own decoding options, where it has them, are listed under its overrides; tokens per call: "
            "each dev utterance's tokens (its end token once) over the decoder calls that decoded it (1 for AR "
            "greedy).", "",
            "| variant | " + " | ".join(f"step {s}" for s in steps)
            + " | WER (last) | tokens / call (last) | valid loss_dfm (last) | train CPU-s |",
            "|---|" + "---|" * (len(steps) + 4),
        ]
        for res in results:
            last = res["curve"][-1]
            lines.append(f"| {res['label']} | " + " | ".join(fmt(p["cer"]["avg"]) for p in res["curve"])
                         + f" | {fmt(last['wer']['avg'])} | {last.get('tokens_per_call', 1.0):.2f} "
                         f"| {fmt(last['valid_loss_dfm'])} | {fmt(last['cpu_seconds'])} |")
        langs = [k for k in results[0]["curve"][-1]["cer"] if k != "avg"]
        lines += ["", f"Dev CER per language at step {steps[-1]}:", "",
                  "| variant | " + " | ".join(langs) + " | avg |", "|---|" + "---|" * (len(langs) + 1)]
        for res in results:
            last = res["curve"][-1]["cer"]
            lines.append(f"| {res['label']} | " + " | ".join(fmt(last[k]) for k in langs) + f" | {fmt(last['avg'])} |")
        if c.decodes:
            names = list(c.decodes)
            labels = [(c.decodes[n] or {}).get("label", n) for n in names]
            lines += ["", "Decodes of each variant's last checkpoint, or of the trainer's model file named below "
                      "(dev CER %, mean over languages, and "
                      f"in brackets the decoder calls per batch of {c.batch_size} and the tokens per call; the first "
                      f"column is the curves' decoding: the {c.jump_order} sampler, or the variant's own; a decode's "
                      "options apply on top of the variant's own):", "",
                      "| variant | curves' decoding | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(names)]

            def cell(point):
                calls = f" ({point['steps']:.1f}" if point.get("steps") else ""
                if calls and point.get("tokens_per_call"):
                    calls += f", {point['tokens_per_call']:.2f}"
                return fmt(point["cer"]["avg"]) + (calls + ")" if calls else "")

            for res in results:
                if res["decodes"]:
                    lines.append(f"| {res['label']} | {cell(res['curve'][-1])} | "
                                 + " | ".join(cell(res["decodes"][n]) if n in res["decodes"] else "-" for n in names)
                                 + " |")
            lines += [""] + [f"- {label} (`{n}`): `{json.dumps((c.decodes[n] or {}).get('decode', {}), sort_keys=True)}`"
                             + (f" on `{c.decodes[n]['model_file']}`" if (c.decodes[n] or {}).get("model_file") else "")
                             for n, label in zip(names, labels)]
        lines += ["", "Overrides of each variant:", ""]
        for name, spec in c.variants.items():
            overrides = json.dumps((spec or {}).get("train", {}), sort_keys=True)
            base = f"`{spec['config']}` with " if (spec or {}).get("config") else ""
            decode = (spec or {}).get("decode")
            decode = f", decoded with `{json.dumps(decode, sort_keys=True)}`" if decode else ""
            lines.append(f"- {self.label(name)} (`{name}`): {base}`{overrides}`{decode}")
        best = min(results, key=lambda res: res["curve"][-1]["cer"]["avg"])
        lines += ["", f"Lowest dev CER after {steps[-1]} steps: **{best['label']}**."]
        return "\n".join(lines) + "\n"

    def plot(self, results: list[dict]) -> None:
        import matplotlib  # slow to import; only for figures

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # slow to import; only for figures

        ncol = 1 if len(results) <= 6 else 2
        legend_inches = 0.2 + 0.19 * -(-len(results) // ncol)  # below the plots: no curve hidden
        fig, (ax_err, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2 + legend_inches))
        colors = plt.get_cmap("tab10" if len(results) <= 10 else "tab20").colors  # one colour per variant
        for res, color in zip(results, colors * (1 + len(results) // len(colors))):
            secs = [p["cpu_seconds"] for p in res["curve"]]
            ax_err.plot(secs, [p["cer"]["avg"] for p in res["curve"]], marker="o", color=color, label=res["label"])
            pts = [(p["cpu_seconds"], p["valid_loss_dfm"]) for p in res["curve"] if p["valid_loss_dfm"] is not None]
            ax_loss.plot([s for s, _ in pts], [v for _, v in pts], marker="o", color=color, label=res["label"])
        ax_err.set(xlabel="training CPU-seconds", ylabel="dev CER (%)", title="dev CER (mean over languages)")
        ax_loss.set(xlabel="training CPU-seconds", ylabel="validation loss_dfm", title="validation loss (CE)")
        for ax in (ax_err, ax_loss):
            ax.grid(alpha=0.3)
        handles, labels = ax_err.get_legend_handles_labels()
        fig.tight_layout(rect=(0, legend_inches / (4.2 + legend_inches), 1, 1))
        fig.legend(handles, labels, loc="lower center", fontsize=8, ncol=ncol, frameon=False)
        atomic_save_figure(fig, self.out_dir / f"{self.name}.png")
