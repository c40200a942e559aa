"""Sharded stage work on a job backend: processes on this machine or Slurm jobs, through submitit.

    jobs = JobsConfig(backend="slurm", slurm={"partition": "cpu", "time": 60, "mem": "8G"})
    run_shards("stage 8 test", partial(decode_drax, asr_dir, ...), [{"out_dir": d0, "shard": (0, 2)},
               {"out_dir": d1, "shard": (1, 2)}], Path("exp/.../log"), jobs, request={"inputs": fingerprint})

A shard is a call `fn(**kwargs)` that writes its own outputs. Shard i logs to `<log_dir>/<i>.log` (on
either backend), and a shard that finished leaves `<log_dir>/<i>.done` holding the request it ran
for: a re-run with the same request does only the shards that did not finish. A failed shard fails
the stage with the path of its log; the other shards still run to the end. Before a stage merges
the shards' outputs, `check_shard_outputs` checks that they hold every utterance of the set exactly
once; a shard at fault loses its done mark, so the re-run redoes it.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from drax.fileio import atomic_write_text

logger = logging.getLogger("drax.recipe")

BACKENDS = ("local", "slurm")
# what a Slurm job may ask for (submitit's SlurmExecutor parameters; `time` in minutes)
SLURM_KEYS = {"partition", "time", "cpus_per_task", "gpus_per_node", "mem", "account", "qos", "constraint",
              "exclude", "nodelist", "gres", "additional_parameters", "setup"}
# submitit stops a local job after 2 minutes and asks Slurm for 5 unless told otherwise: a shard on this
# machine runs until it ends; a Slurm job asks for the `time` the recipe names
LOCAL_TIMEOUT_MIN = 60 * 24 * 365


class ShardError(RuntimeError):
    """One or more shards failed; the message names each one's log."""


@dataclass
class JobsConfig:
    """Recipe key `jobs`: where the shards of feature dumping and decoding run."""

    backend: str = "local"  # local: processes on this machine; slurm: sbatch jobs (submitit)
    threads: int = 1  # torch threads per shard
    slurm: dict = field(default_factory=dict)  # SLURM_KEYS, e.g. {partition: gpu, time: 120, gpus_per_node: 1}

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"recipe key jobs.backend: unknown choice '{self.backend}'; valid: {', '.join(BACKENDS)}")
        if not (isinstance(self.threads, int) and self.threads >= 1):
            raise ValueError(f"recipe key jobs.threads must be an integer >= 1 (got {self.threads!r})")
        bad = sorted(set(self.slurm) - SLURM_KEYS)
        if bad:
            raise ValueError(f"recipe key jobs.slurm: unknown key(s) {bad}; valid: {sorted(SLURM_KEYS)}")
        if self.backend == "slurm" and "time" not in self.slurm:
            raise ValueError("recipe key jobs.slurm.time (minutes per shard's job) is required for backend slurm, "
                             "e.g. jobs: {backend: slurm, slurm: {partition: cpu, time: 60}} (submitit would ask for 5)")


def executor(config: JobsConfig, folder: Path):
    import submitit  # only where shards run

    if config.backend == "slurm":
        ex = submitit.SlurmExecutor(folder=folder)
        ex.update_parameters(**{"cpus_per_task": config.threads, **config.slurm})
        return ex
    ex = submitit.LocalExecutor(folder=folder)
    ex.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
    return ex


def _end_with(owner: int) -> None:
    """In a local shard: SIGKILL itself once process `owner` (the recipe) is gone."""
    def watch():
        while True:
            try:
                os.kill(owner, 0)
            except ProcessLookupError:
                os.kill(os.getpid(), signal.SIGKILL)
            except PermissionError:  # alive, another user's
                pass
            time.sleep(0.5)

    threading.Thread(target=watch, name="end-with-recipe", daemon=True).start()


def _run_logged(fn: Callable, kwargs: dict, log_file: str, done_file: str, request: dict, threads: int,
                owner: int | None = None):
    """One shard, in its job: ends with process `owner` where given, holds its lock, logs to its own
    file, marks itself done."""
    import torch

    if owner is not None:
        _end_with(owner)
    with open(Path(done_file).with_suffix(".lock"), "a") as lock:  # released by the kernel however the shard ends
        fcntl.flock(lock, fcntl.LOCK_EX)
        torch.set_num_threads(threads)
        os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        handler = logging.FileHandler(log_file, mode="w", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            result = fn(**kwargs)
        except BaseException:
            logging.getLogger("drax.recipe").exception("shard failed")
            raise
        finally:
            root.removeHandler(handler)
            handler.close()
        atomic_write_text(done_file, json.dumps(request, sort_keys=True) + "\n")
    return result


def run_shards(name: str, fn: Callable, shard_kwargs: list[dict], log_dir: Path, config: JobsConfig,
               request: dict | None = None) -> int:
    """Run fn(**kwargs) for every shard not done for `request`; returns how many ran."""
    log_dir.mkdir(parents=True, exist_ok=True)
    request = {"shards": len(shard_kwargs), **(request or {})}
    wanted = json.dumps(request, sort_keys=True)
    todo = []
    for i, kwargs in enumerate(shard_kwargs):
        done = log_dir / f"{i}.done"
        if done.exists() and done.read_text(encoding="utf-8").strip() == wanted:
            continue
        done.unlink(missing_ok=True)
        todo.append((i, kwargs))
    if not todo:
        logger.info("%s: all %d shard(s) done before for the same request", name, len(shard_kwargs))
        return 0
    logger.info("%s: %d of %d shard(s) on the %s backend; logs in %s", name, len(todo), len(shard_kwargs),
                config.backend, log_dir)
    ex = executor(config, log_dir / "submitit")
    owner = os.getpid() if config.backend == "local" else None
    jobs = []
    failed = []
    try:
        for i, kwargs in todo:
            jobs.append((i, ex.submit(_run_logged, fn, kwargs, str(log_dir / f"{i}.log"), str(log_dir / f"{i}.done"),
                                      request, config.threads, owner)))
        for i, job in jobs:
            try:
                job.result()
            except Exception as e:  # submitit re-raises the job's error (FailedJobError, or the exception)
                logger.error("%s: shard %d failed: %s", name, i, str(e).splitlines()[-1] if str(e) else type(e).__name__)
                failed.append(i)
    except BaseException:  # Ctrl-C, SIGTERM (drax.bin.run_recipe makes it an exit), an error: no job outlives us
        unfinished = [job for _, job in jobs if not job.done()]
        for job in unfinished:
            job.cancel(check=False)
        if unfinished:
            logger.warning("%s: cancelled %d unfinished shard(s)", name, len(unfinished))
        raise
    if failed:
        raise ShardError(f"{name}: shard(s) {failed} of {len(shard_kwargs)} failed; see "
                         + ", ".join(str(log_dir / f"{i}.log") for i in failed)
                         + " (a re-run does only the unfinished shards)")
    return len(todo)


def check_shard_outputs(name: str, shard_dirs: list[Path], outputs: Callable[[Path], Iterable[str]],
                        expected: set[str], log_dir: Path) -> None:
    """Check what a merge is about to take: `outputs(shard_dir)` lists the utterances a shard wrote
    (raising OSError or ValueError for outputs that are missing or damaged), and together the shards
    must hold each utterance of `expected` exactly once. Otherwise the done marks of the shards at
    fault (of all of them where an utterance is in none) are removed and ShardError says what is wrong."""
    faults: dict[int, str] = {}
    owner: dict[str, int] = {}
    for i, d in enumerate(shard_dirs):
        try:
            utts = list(outputs(d))
        except (OSError, ValueError) as e:
            faults[i] = f"its outputs in {d} cannot be read: {e}"
            continue
        for utt in utts:
            if utt in owner:
                faults.setdefault(i, f"{utt} is also in shard {owner[utt]}")
                faults.setdefault(owner[utt], f"{utt} is also in shard {i}")
            elif utt not in expected:
                faults.setdefault(i, f"{d} holds {utt}, which is not in the set (outputs of another run?)")
            owner.setdefault(utt, i)
    lost = sorted(expected - set(owner))
    if lost:
        for i in range(len(shard_dirs)):
            faults.setdefault(i, f"{len(lost)} utterance(s) of the set are in no shard (e.g. {lost[0]})")
    if not faults:
        return
    for i in faults:
        (log_dir / f"{i}.done").unlink(missing_ok=True)
    raise ShardError(f"{name}: the shards' outputs do not add up to the set: "
                     + "; ".join(f"shard {i}: {why}" for i, why in sorted(faults.items()))
                     + ". Their done marks are removed: run the stage again to redo them.")
