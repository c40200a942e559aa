"""Faults a long run meets: a kill while the trainer saves, a damaged checkpoint, a killed recipe engine."""
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from drax.asr.checkpoint import atomic_torch_save, reporter_stats, set_aside_damaged_checkpoint
from drax.bin.tiny_train import config, make_data, train_args
from drax.bin.train import main as train_main


class _Boom:
    def __reduce__(self):
        raise KeyboardInterrupt("interrupted mid-save")


def test_interrupted_save_keeps_the_previous_file_whole(tmp_path):
    path = tmp_path / "checkpoint.pth"
    atomic_torch_save({"epoch": 1, "w": torch.arange(4.0)}, path)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"epoch": 2, "w": torch.zeros(1000), "late": _Boom()}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]  # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as torch.save's own file would be, not 0600


def test_sigkill_during_saves_never_leaves_an_unreadable_checkpoint(tmp_path):
    """A process that saves a 32 MB checkpoint in a loop is killed at some moment: whatever it was
    doing, checkpoint.pth loads (ESPnet's plain torch.save left a truncated file here)."""
    path = tmp_path / "checkpoint.pth"
    script = textwrap.dedent(f"""
        import torch
        from drax.asr.checkpoint import atomic_torch_save
        state = {{"w": torch.randn(8_000_000)}}
        for epoch in range(10_000):
            state["epoch"] = epoch
            atomic_torch_save(state, {str(path)!r})
            print(epoch, flush=True)
    """)
    for delay in (0.05, 0.17, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # one save finished
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert torch.load(path, weights_only=True)["w"].numel() == 8_000_000


def test_damaged_checkpoint_is_set_aside_and_training_starts_again(tmp_path, caplog):
    make_data(tmp_path, n_utts=4)
    conf = config(max_epoch=1)
    conf["num_iters_per_epoch"] = 5
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(conf))
    args = train_args(tmp_path, tmp_path / "train.yaml")
    train_main(args)
    checkpoint = tmp_path / "asr" / "checkpoint.pth"
    assert set_aside_damaged_checkpoint(tmp_path / "asr") is None  # a good one stays
    checkpoint.write_bytes(b"")  # what a kill during ESPnet's own save left behind
    conf["max_epoch"] = 2
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(conf))
    train_main(args)  # used to raise EOFError on every re-run
    assert (tmp_path / "asr" / "checkpoint.pth.damaged").read_bytes() == b""
    assert "cannot be read" in caplog.text and "checkpoint.pth.damaged" in caplog.text
    stats = reporter_stats(checkpoint)
    assert sorted(stats) == [1, 2]


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _processes_under(path: Path) -> list[int]:
    """Pids of the processes whose command line names a file under `path` (submitit's local jobs run
    `python -m submitit.core._submit <their log folder>`)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(path) in (proc / "cmdline").read_bytes().decode(errors="replace") \
                    and _alive(int(proc.name)):
                pids.append(int(proc.name))
        except OSError:  # gone meanwhile
            pass
    return pids



def kill_while_shards_work(command: list[str], recipe: Path, log_dir: Path, sig: signal.Signals, shards: int = 2) -> None:
    """Run the recipe `command` in `recipe`, send `sig` once each of its `shards` shards has opened its
    log in `log_dir` (it holds its lock and has begun), and check that the recipe ended, that no
    process under `recipe` outlived it and that no shard was marked done."""
    proc = subprocess.Popen(command, cwd=recipe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not all((log_dir / f"{i}.log").exists() for i in range(shards)) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) != 0
    deadline = time.time() + 20
    while _processes_under(recipe) and time.time() < deadline:
        time.sleep(0.2)
    orphans = _processes_under(recipe)
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    assert not orphans, f"process(es) {orphans} outlived the recipe ({sig.name})"
    assert not list(log_dir.glob("*.done")), f"a shard stopped by {sig.name} was marked done"

def test_killing_the_recipe_engine_takes_its_trainer_along(tmp_path):
    """stage 7 runs the trainer through run_logged; SIGKILL on the recipe must not orphan it."""
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    engine = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from drax.recipe.engine import run_logged
        run_logged([sys.executable, "-c", {child!r}], Path({str(tmp_path / "train.log")!r}))
    """)
    proc = subprocess.Popen([sys.executable, "-c", engine])
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    trainer = int(pid_file.read_text())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for _ in range(100):
        if not _alive(trainer):
            return
        time.sleep(0.05)
    os.kill(trainer, signal.SIGKILL)
    pytest.fail("the trainer outlived the recipe engine that started it")


def test_runs_in_one_recipe_directory_lock_what_they_write(tmp_path):
    """Data stages need the recipe directory to themselves; two different experiments may train side
    by side, the same experiment twice may not; the refusal names the holder; re-entrant in-process."""
    from drax.recipe.config import RecipeError, load_recipe
    from drax.recipe.stages import stages_lock

    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from drax.recipe.config import load_recipe
        from drax.recipe.stages import stages_lock
        with stages_lock(load_recipe(None, {{"train_config": "conf/a.yaml"}}), 7, 10, Path({str(tmp_path)!r})):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    a, b = (load_recipe(None, {"train_config": f"conf/{n}.yaml"}) for n in "ab")
    try:
        assert holder.stdout.readline().strip() == "locked"
        with stages_lock(b, 7, 10, tmp_path):  # another experiment: fine
            pass
        for conf, stage, what in ((a, 7, "experiment a"), (b, 1, str(tmp_path.resolve()))):
            with pytest.raises(RecipeError, match=f"another run \\(pid {holder.pid}\\) is using {what}"):
                with stages_lock(conf, stage, 10, tmp_path):
                    pass
    finally:
        holder.kill()
        holder.wait()
    with stages_lock(a, 1, 12, tmp_path):  # free again once the holder is gone, however it ended
        with stages_lock(a, 7, 7, tmp_path):  # and re-entrant within a process (stage 12 runs stage 7)
            pass


def test_a_changed_training_sets_the_old_run_aside_without_deleting_earlier_ones(tmp_path):
    from drax.recipe.engine import set_aside

    runs = []
    for i in range(3):
        run = tmp_path / "asr_train"
        run.mkdir()
        (run / "checkpoint.pth").write_text(f"run {i}")
        runs.append(set_aside(run))
    assert [p.name for p in runs] == ["asr_train.prev", "asr_train.prev1", "asr_train.prev2"]
    assert [(p / "checkpoint.pth").read_text() for p in runs] == ["run 0", "run 1", "run 2"]


def sigkill_when_renaming_to(suffix: str) -> str:
    """Script lines after which the interpreter SIGKILLs itself just before a temp file is renamed
    to a path ending in `suffix` (what a kill at that moment leaves behind)."""
    return textwrap.dedent(f"""
        import os, signal
        real = os.replace
        def dies(src, dst):
            if str(dst).endswith({suffix!r}):
                os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst)
        os.replace = dies
    """)


def _killed_at(script: str, cwd) -> None:
    """Run `script` in a fresh interpreter that SIGKILLs itself where the script says."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def _tiny_data_dir(path):
    import numpy as np
    import soundfile as sf

    from drax.data.kaldi_dir import Utterance, write_data_dir

    utts = []
    for i in range(6):
        wav = path / f"{i}.wav"
        sf.write(wav, 0.1 * np.sin(np.arange(int(16000 * (0.5 + i / 10))) / 5.0), 16000)
        utts.append(Utterance(f"s1-u{i}", "s1", str(wav), f"words {i}", "en", 0.5 + i / 10))
    write_data_dir(str(path / "data"), utts)


def _listing(d):
    return sorted(p.name for p in d.iterdir())


@pytest.mark.parametrize("stage", ["features", "filter"])
def test_sigkill_mid_stage_leaves_a_stale_temp_the_rerun_sweeps_and_equal_outputs(tmp_path, stage):
    """Stages 3 and 4 killed (SIGKILL: no cleanup runs) in the middle of writing, then run again:
    the re-run's outputs equal an uninterrupted run's and the killed writer's temp files are swept."""
    from drax.data.features import dump_features
    from drax.data.filtering import filter_set
    from drax.fileio import remove_stale_temp_files

    _tiny_data_dir(tmp_path)
    clean, dump = tmp_path / "clean", tmp_path / "dump"
    dump_features(tmp_path / "data", clean, kind="logmel", batch_size=2)
    if stage == "features":  # killed while the fourth utterance's features are computed
        _killed_at(f"""
            import os, signal
            import drax.data.features as F
            calls, real = [], F.log_mel
            def dies(*args):
                calls.append(1)
                if len(calls) == 4:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args)
            F.log_mel = dies
            F.dump_features({str(tmp_path / "data")!r}, {str(dump)!r}, kind="logmel", batch_size=2)
        """, tmp_path)
    else:  # killed between the filter's outputs: feats.scp renamed, text.raw not yet
        filter_set(tmp_path / "data", clean)
        dump_features(tmp_path / "data", dump, kind="logmel", batch_size=2)
        _killed_at(sigkill_when_renaming_to("text.raw") + textwrap.dedent(f"""
            from drax.data.filtering import filter_set
            filter_set({str(tmp_path / "data")!r}, {str(dump)!r})
        """), tmp_path)
    stale = [p for p in dump.iterdir() if p.name.endswith(".tmp")]
    assert stale  # what SIGKILL leaves: a temp file, never a half-written output
    assert sorted(remove_stale_temp_files(dump)) == sorted(stale)
    if stage == "features":
        dump_features(tmp_path / "data", dump, kind="logmel", batch_size=2)
    else:
        filter_set(tmp_path / "data", dump)
    assert _listing(dump) == _listing(clean)
    for name in _listing(clean):
        if name != "feats.ark":  # scp files name their own ark
            assert (dump / name).read_text().replace(str(dump), "") == (clean / name).read_text().replace(
                str(clean), ""), name
    import kaldiio
    again = dict(kaldiio.load_scp(str(dump / "dumped.scp")))
    for utt, mat in kaldiio.load_scp(str(clean / "dumped.scp")).items():
        assert (again[utt] == mat).all()


def test_only_temp_files_of_finished_writers_of_this_host_are_swept(tmp_path):
    from drax.fileio import HOST, atomic_write_text, remove_stale_temp_files, temp_dir, temp_path

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / f".text.{HOST}.{dead}.abc_12.tmp", tmp_path / "sub" / f".a.flac.{HOST}.{dead}.x9.tmp.flac"]
    for p in stale:
        p.write_text("half")
    stale_dir = tmp_path / f".staging.{HOST}.{dead}.q1w2.tmp"
    (stale_dir / "inner").mkdir(parents=True)
    live = [Path(temp_path(tmp_path / "text")), Path(temp_dir(tmp_path, "staging"))]  # ours: still writing
    kept = [tmp_path / "text.tmp", tmp_path / f".notes.{dead}.tmp",  # not our naming: never touched
            tmp_path / f".feats.ark.{HOST}x.{dead}.abc_12.tmp"]  # another node's (shared disk): its pid means nothing here
    for p in kept:
        p.write_text("user file")
    assert sorted(remove_stale_temp_files(tmp_path)) == sorted(stale + [stale_dir])
    assert all(p.exists() for p in live + kept) and not any(p.exists() for p in stale + [stale_dir])
    atomic_write_text(tmp_path / "out.txt", "whole")
    assert (tmp_path / "out.txt").read_text() == "whole"


def _tiny_training(out: Path, max_epoch: int = 2, **conf) -> list[str]:
    make_data(out, n_utts=4)
    train = config(max_epoch=max_epoch) | {"num_iters_per_epoch": 3, "keep_nbest_models": 2} | conf
    (out / "train.yaml").write_text(yaml.safe_dump(train))
    return train_args(out, out / "train.yaml")


def test_a_kill_between_the_trainers_two_saves_resumes_as_the_uninterrupted_run(tmp_path):
    """ESPnet writes checkpoint.pth, then <n>epoch.pth: killed between the two, the resume used to
    skip epoch 1's model file and fail averaging the 2 best epochs at every re-run."""
    reference = _tiny_training(tmp_path / "reference")
    train_main(reference)
    args = _tiny_training(tmp_path / "killed")
    _killed_at(sigkill_when_renaming_to("/1epoch.pth") + textwrap.dedent(f"""
        from drax.bin.train import main
        main({args!r})
    """), tmp_path)
    asr, ref = tmp_path / "killed" / "asr", tmp_path / "reference" / "asr"
    assert (asr / "checkpoint.pth").exists() and not (asr / "1epoch.pth").exists()
    train_main(args)
    def losses(checkpoint):
        return {(epoch, phase, key): value for epoch, phases in reporter_stats(checkpoint).items()
                for phase, stats in phases.items() for key, value in stats.items() if key.startswith(("loss", "acc"))}
    assert losses(asr / "checkpoint.pth") == losses(ref / "checkpoint.pth")
    assert sorted(reporter_stats(asr / "checkpoint.pth")) == [1, 2]
    for name in ("1epoch.pth", "2epoch.pth", "valid.loss.ave_2best.pth", "valid.loss.best.pth"):
        ours, theirs = torch.load(asr / name, weights_only=True), torch.load(ref / name, weights_only=True)
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name
    assert os.readlink(asr / "valid.loss.best.pth") == os.readlink(ref / "valid.loss.best.pth")


class _RunsCode:
    """Unpickled, it creates the file `marker` (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_at_resume_init_param_and_averaging(tmp_path):
    from espnet2.main_funcs.average_nbest_models import average_nbest_models
    from espnet2.train.reporter import Reporter

    from drax.bin.train import weights_only_loads

    marker = tmp_path / "code_ran"
    args = _tiny_training(tmp_path / "resume")
    (tmp_path / "resume" / "asr").mkdir()
    torch.save({"model": {}, "reporter": _RunsCode(marker)}, tmp_path / "resume" / "asr" / "checkpoint.pth")
    with pytest.raises(pickle.UnpicklingError):
        train_main(args)
    args = _tiny_training(tmp_path / "init")
    torch.save({"decoder.blocks.0.norm1.weight": _RunsCode(marker)}, tmp_path / "init" / "release.pth")
    with pytest.raises(pickle.UnpicklingError):
        train_main(args + ["--init_param", str(tmp_path / "init" / "release.pth")])
    reporter = Reporter()
    for epoch in (1, 2):
        reporter.set_epoch(epoch)
        with reporter.observe("valid") as sub:
            sub.register({"loss": float(epoch)})
        torch.save({"w": _RunsCode(marker)}, tmp_path / f"{epoch}epoch.pth")
    with weights_only_loads(), pytest.raises(pickle.UnpicklingError):
        average_nbest_models(tmp_path, reporter, [["valid", "loss", "min"]], nbest=2)
    assert not marker.exists()
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # the switch is the trainer's, not its caller's
