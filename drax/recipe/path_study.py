"""The path-design study (paper Sec. 5.4, Figure 3): one model trained with each probability path on
an equal budget, dev error against training steps (recipe stage 12, `conf/path_study.yaml`).

Each path is an experiment of the recipe (exp/asr_path_<name>, resumable like any training): a copy
of the recipe's train config in which only the path, its scheduler and the budget differ. Every path
keeps kappa_1(t) = t^2 (tri-mixture p = 2, polynomial exponent 2), so the paths see the target at the
same rate and differ in what the noise is made of:

    uniform_mid   uniform source + uniform middle
    audio_mid     uniform source + audio-conditioned middle p_mid(. | a)   (Drax)
    audio_src     audio-conditioned source, two-way
    uniform       uniform source, two-way

`jobs` trainings run side by side with `threads` threads each (on a small CPU machine two 1-thread
jobs make more steps per second than one 2-thread job); every epoch's checkpoint is then decoded on
a per-language subset of the dev set. Written to exp/path_study/: path_study.md (table),
path_study.png (dev error and validation loss against steps), results.json.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import yaml

from drax.data.kaldi_dir import atomic_write_text, read_kv_dict

logger = logging.getLogger("drax.recipe")

_TWO_WAY = {"scheduler": "polynomial", "scheduler_conf": {"exponent": 2.0}}
_TRI = {"scheduler": "tri_mixture", "scheduler_conf": {"p": 2.0, "q": 0.6666667}}
STUDY_DEFAULTS = {
    "paths": {
        "uniform_mid": {"path": "uniform_mid", **_TRI},
        "audio_mid": {"path": "audio_mid", **_TRI},
        "audio_src": {"path": "audio_src", **_TWO_WAY},
        "uniform": {"path": "uniform", **_TWO_WAY},
    },
    "max_epoch": 6,              # budget: max_epoch x num_iters_per_epoch steps for every path
    "num_iters_per_epoch": 50,   # one dev evaluation per epoch
    "jobs": 2,                   # trainings side by side
    "threads": 1,                # torch threads per training / evaluation
    "utts_per_lang": 10,         # dev subset
    "nfe": 16,
    "temperature": 0.01,
    "batch_size": 16,
    "seed": 0,
}
LABELS = {
    "uniform_mid": "uniform source + uniform middle",
    "audio_mid": "uniform source + audio middle (Drax)",
    "audio_src": "audio source (2-way)",
    "uniform": "uniform source (2-way)",
}
_PATH_KEYS = {"path", "scheduler", "scheduler_conf"}


def study_conf(conf: dict) -> dict:
    """The study config with defaults filled in; unknown keys are an error naming them."""
    unknown = set(conf) - set(STUDY_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown path study config key(s) {sorted(unknown)}; valid keys: {', '.join(STUDY_DEFAULTS)}")
    conf = {**STUDY_DEFAULTS, **conf}
    from drax.flow.path import PATH_CHOICES

    for name, spec in conf["paths"].items():
        bad = set(spec) - _PATH_KEYS
        if bad:
            raise ValueError(f"path study config paths.{name}: unknown key(s) {sorted(bad)}; valid: {sorted(_PATH_KEYS)}")
        if spec.get("path") not in PATH_CHOICES:
            raise ValueError(f"path study config paths.{name}.path: {spec.get('path')!r} is not one of "
                             f"{', '.join(PATH_CHOICES)}")
    return conf


def path_train_config(base: dict, spec: dict, conf: dict) -> dict:
    """The recipe's train config with one path and the study's budget (everything else unchanged)."""
    out = json.loads(json.dumps(base))  # deep copy
    model_conf = out.setdefault("model_conf", {})
    model_conf["path"] = spec["path"]
    for key in ("scheduler", "scheduler_conf"):
        if key in spec:
            model_conf[key] = spec[key]
        else:
            model_conf.pop(key, None)
    out.update(max_epoch=conf["max_epoch"], num_iters_per_epoch=conf["num_iters_per_epoch"],
               keep_nbest_models=conf["max_epoch"])  # keep every epoch's checkpoint for the curve
    return out


def dev_subset(set_dir: Path, utts_per_lang: int, seed: int) -> list[str]:
    feats = read_kv_dict(str(set_dir / "feats.scp"))
    langs = read_kv_dict(str(set_dir / "utt2lang"))
    rng = random.Random(seed)
    subset = []
    for lang in sorted(set(langs[u] for u in feats)):
        utts = sorted(u for u in feats if langs[u] == lang)
        subset += sorted(rng.sample(utts, min(utts_per_lang, len(utts))))
    return subset


def validation_losses(asr_dir: Path) -> dict[int, float]:
    """epoch -> validation loss_dfm, from the trainer's reporter in checkpoint.pth."""
    import torch

    path = asr_dir / "checkpoint.pth"
    if not path.exists():
        return {}
    stats = torch.load(path, map_location="cpu", weights_only=False)["reporter"]["stats"]
    return {int(e): float(s["valid"]["loss_dfm"]) for e, s in stats.items() if "valid" in s}


def evaluate_checkpoint(asr_dir: Path, model_file: Path, set_dir: Path, units_dir: Path, utts: list[str],
                        conf: dict) -> dict[str, float]:
    """lang -> error (%) of one checkpoint on `utts` (WER, CER for zh/ja), plus 'avg' over languages."""
    import kaldiio

    from drax.decode.scoring import score
    from drax.decode.speech2text import Speech2Text

    s2t = Speech2Text(asr_dir / "config.yaml", model_file, nfe=conf["nfe"], temperature=conf["temperature"],
                      seed=conf["seed"], units_dir=units_dir)
    feats = read_kv_dict(str(set_dir / "feats.scp"))
    langs = read_kv_dict(str(set_dir / "utt2lang"))
    refs = read_kv_dict(str(set_dir / "text.raw"))
    hyps = {}
    for i in range(0, len(utts), conf["batch_size"]):
        batch = utts[i: i + conf["batch_size"]]
        decoded = s2t.batch([kaldiio.load_mat(feats[u]) for u in batch], [langs[u] for u in batch])
        hyps.update((u, d.best.text) for u, d in zip(batch, decoded))
    scores, _ = score({u: refs[u] for u in utts}, hyps, langs)
    errors = {s.lang: (s.wer if s.wer is not None else s.cer) for s in scores}
    errors["avg"] = sum(errors.values()) / len(errors)
    return errors


class PathStudy:
    def __init__(self, recipe, conf: dict):
        self.r = recipe
        self.conf = study_conf(conf)
        self.out_dir = recipe.exp / "path_study"
        base = yaml.safe_load(Path(recipe.c.train_config).read_text(encoding="utf-8")) or {}
        self.base = base

    def recipe_for(self, name: str):
        """The recipe with this path's train config and experiment tag."""
        from drax.recipe.stages import Recipe

        conf_path = self.out_dir / "conf" / f"train_path_{name}.yaml"
        text = yaml.safe_dump(path_train_config(self.base, self.conf["paths"][name], self.conf), sort_keys=False)
        if not conf_path.exists() or conf_path.read_text(encoding="utf-8") != text:
            conf_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(str(conf_path), text)
        config = dataclasses.replace(self.r.c, train_config=str(conf_path), exp_tag=f"path_{name}")
        return Recipe(config, self.r.root)

    def train_and_evaluate(self, name: str) -> dict:
        from drax.recipe.stages import run_stages

        r = self.recipe_for(name)
        run_stages(r.c, 7, 7, r.root)  # skipped when done; resumes an interrupted training
        utts = dev_subset(self.r.dump / r.c.dev_set, self.conf["utts_per_lang"], self.conf["seed"])
        eval_dir = self.out_dir / "eval" / name
        eval_dir.mkdir(parents=True, exist_ok=True)
        losses = validation_losses(r.asr_dir)
        curve = []
        for epoch in range(1, self.conf["max_epoch"] + 1):
            model_file = r.asr_dir / f"{epoch}epoch.pth"
            cached = eval_dir / f"epoch{epoch}.json"
            request = {k: self.conf[k] for k in ("nfe", "temperature", "utts_per_lang", "seed")}
            point = json.loads(cached.read_text()) if cached.exists() else None
            if point is None or point.get("request") != request:
                if not model_file.exists():
                    raise FileNotFoundError(f"{model_file} is missing: the training in {r.asr_dir} did not keep "
                                            "every epoch (keep_nbest_models); delete that directory and run again")
                errors = evaluate_checkpoint(r.asr_dir, model_file, self.r.dump / r.c.dev_set, self.r.units_dir,
                                             utts, self.conf)
                point = {"request": request, "epoch": epoch, "step": epoch * self.conf["num_iters_per_epoch"],
                         "errors": errors}
                atomic_write_text(str(cached), json.dumps(point, indent=1) + "\n")
                logger.info("path study %s epoch %d: dev error %.1f %%", name, epoch, errors["avg"])
            point["valid_loss_dfm"] = losses.get(epoch)
            curve.append(point)
        times = json.loads((self.r.exp / "stage_times.json").read_text())
        return {"name": name, "label": LABELS.get(name, name), "curve": curve,
                "train_seconds": times.get(f"7_train.path_{name}"), "n_dev_utts": len(utts)}

    def run(self, command: str = "") -> Path:
        import torch

        torch.set_num_threads(self.conf["threads"])
        names = list(self.conf["paths"])
        threads = str(self.conf["threads"])
        saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        os.environ.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)  # inherited by the trainings
        try:
            with ThreadPoolExecutor(max_workers=self.conf["jobs"]) as pool:
                results = list(pool.map(self.train_and_evaluate, names))
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        atomic_write_text(str(self.out_dir / "results.json"), json.dumps(results, indent=1) + "\n")
        self.plot(results)
        path = self.out_dir / "path_study.md"
        atomic_write_text(str(path), self.table(results, command))
        return path

    def table(self, results: list[dict], command: str) -> str:
        c = self.conf
        steps = [p["step"] for p in results[0]["curve"]]
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        lines = [
            "# Path-design study (paper Sec. 5.4, Figure 3)", "",
            f"Written on {date.today()} ({os.cpu_count()} CPU cores) by `{command}`. Every path: the recipe's "
            f"model (`{self.r.c.train_config}`), {c['max_epoch'] * c['num_iters_per_epoch']} steps "
            f"({c['max_epoch']} epochs x {c['num_iters_per_epoch']}), {c['jobs']} trainings side by side with "
            f"{c['threads']} thread(s) each. Dev error (WER %, CER % for zh/ja, mean over languages) on "
            f"{results[0]['n_dev_utts']} dev utterances ({c['utts_per_lang']} per language), NFE {c['nfe']}, "
            f"one sample at temperature {c['temperature']}. Figure: `path_study.png`.", "",
            "| path | " + " | ".join(f"step {s}" for s in steps) + " | valid loss_dfm (last) | train time (s) |",
            "|---|" + "---|" * (len(steps) + 2),
        ]
        for res in results:
            errs = [fmt(p["errors"]["avg"]) for p in res["curve"]]
            lines.append(f"| {res['label']} | " + " | ".join(errs)
                         + f" | {fmt(res['curve'][-1]['valid_loss_dfm'])} | {fmt(res['train_seconds'])} |")
        langs = [k for k in results[0]["curve"][-1]["errors"] if k != "avg"]
        lines += ["", f"Per language at step {steps[-1]}:", "",
                  "| path | " + " | ".join(langs) + " | avg |", "|---|" + "---|" * (len(langs) + 1)]
        for res in results:
            last = res["curve"][-1]["errors"]
            lines.append(f"| {res['label']} | " + " | ".join(fmt(last[k]) for k in langs) + f" | {fmt(last['avg'])} |")
        best = min(results, key=lambda res: res["curve"][-1]["errors"]["avg"])
        lines += ["", f"Lowest dev error after {steps[-1]} steps: **{best['label']}**."]
        return "\n".join(lines) + "\n"

    def plot(self, results: list[dict]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax_err, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
        for res in results:
            steps = [p["step"] for p in res["curve"]]
            ax_err.plot(steps, [p["errors"]["avg"] for p in res["curve"]], marker="o", label=res["label"])
            pts = [(p["step"], p["valid_loss_dfm"]) for p in res["curve"] if p["valid_loss_dfm"] is not None]
            ax_loss.plot([s for s, _ in pts], [v for _, v in pts], marker="o", label=res["label"])
        ax_err.set(xlabel="training steps", ylabel="dev error (%)", title="dev error")
        ax_loss.set(xlabel="training steps", ylabel="validation loss_dfm", title="validation loss (CE)")
        for ax in (ax_err, ax_loss):
            ax.grid(alpha=0.3)
        ax_err.legend(fontsize=7)
        fig.tight_layout()
        tmp = self.out_dir / ".path_study.tmp.png"
        fig.savefig(tmp, dpi=120)
        plt.close(fig)
        os.replace(tmp, self.out_dir / "path_study.png")
