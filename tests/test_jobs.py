"""Sharded stage work (drax/recipe/jobs.py) and sharded decoding (drax/decode/decode_sets.py)."""
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import yaml
from test_distributed import free_port

from drax.bin import tiny_train
from drax.bin.train import main as train_main
from drax.decode.decode_sets import decode_drax, merge_shards
from drax.decode.options import DecodingOptions
from drax.options import load_options
from drax.recipe.jobs import JobsConfig, ShardError, run_shards

from test_fault_tolerance import _alive, kill_while_shards_work


def test_shards_log_apart_a_failed_one_names_its_log_and_a_rerun_does_only_the_unfinished(tmp_path):
    src = tmp_path / "src"
    src.write_text("x")
    shards = [{"src": str(src), "dst": str(tmp_path / "out0")}, {"src": str(tmp_path / "absent"), "dst": str(tmp_path / "out1")}]
    log_dir, jobs = tmp_path / "log", JobsConfig()
    with pytest.raises(ShardError, match=r"stage x: shard\(s\) \[1\] of 2 failed; see .*log/1.log"):
        run_shards("stage x", shutil.copyfile, shards, log_dir, jobs, request={"inputs": "a"})
    assert (tmp_path / "out0").read_text() == "x" and (log_dir / "0.done").exists() and not (log_dir / "1.done").exists()
    assert "absent" in (log_dir / "1.log").read_text()  # the shard's own error, in its own log
    (tmp_path / "absent").write_text("y")
    (tmp_path / "out0").unlink()
    assert run_shards("stage x", shutil.copyfile, shards, log_dir, jobs, request={"inputs": "a"}) == 1
    assert (tmp_path / "out1").read_text() == "y" and not (tmp_path / "out0").exists()  # shard 0 was done
    assert run_shards("stage x", shutil.copyfile, shards, log_dir, jobs, request={"inputs": "a"}) == 0
    assert run_shards("stage x", shutil.copyfile, shards, log_dir, jobs, request={"inputs": "b"}) == 2  # new inputs


def test_a_local_shard_is_not_stopped_by_submitits_two_minute_default(tmp_path):
    """submitit's local controller signals a job after timeout_min (2 by default): stage 3 on the default
    corpus was killed 90 s in. The controller's own limit, read inside the job, is the recipe's: none."""
    env = tmp_path / "environ"
    run_shards("stage x", shutil.copyfile, [{"src": "/proc/self/environ", "dst": str(env)}], tmp_path / "log", JobsConfig())
    timeout_s = dict(v.split("=", 1) for v in env.read_text().split("\0") if "=" in v)["SUBMITIT_LOCAL_TIMEOUT_S"]
    assert int(timeout_s) >= 30 * 24 * 3600


def test_jobs_config_errors_name_the_key():
    with pytest.raises(ValueError, match="jobs.backend: unknown choice 'sge'; valid: local, slurm"):
        JobsConfig(backend="sge")
    with pytest.raises(ValueError, match=r"jobs.slurm: unknown key\(s\) \['partiton'\]"):
        JobsConfig(slurm={"partiton": "gpu"})
    with pytest.raises(ValueError, match=r"jobs.slurm.time \(minutes per shard's job\) is required"):
        JobsConfig(backend="slurm", slurm={"partition": "gpu"})
    with pytest.raises(ValueError, match=r"unknown recipe key jobs key\(s\) \['nodes'\]|'nodes'"):
        load_options(JobsConfig, {"nodes": 2}, "recipe key jobs")


def test_a_feature_dump_in_shards_lists_the_same_features_as_one(tmp_path):
    from drax.data.features import dump_features, merge_dumps
    from drax.data.kaldi_dir import read_kv_dict

    from test_fault_tolerance import _tiny_data_dir

    _tiny_data_dir(tmp_path)
    wav_scp = tmp_path / "data" / "wav.scp"
    wav_scp.write_text(wav_scp.read_text().replace(f"{tmp_path}/2.wav", f"{tmp_path}/gone.wav"))  # one skipped
    one = dump_features(tmp_path / "data", tmp_path / "one", kind="logmel", batch_size=2)
    shard_dirs = [tmp_path / "split2" / str(i) for i in range(2)]
    for i, d in enumerate(shard_dirs):
        dump_features(tmp_path / "data", d, kind="logmel", batch_size=2, shard=(i, 2))
    merged = merge_dumps(shard_dirs, tmp_path / "two")
    assert (merged.written, merged.skipped, merged.feat_dim) == (one.written, one.skipped, one.feat_dim) == \
        (5, {"s1-u2": merged.skipped["s1-u2"]}, 80)
    for name in ("feats_shape", "skipped"):
        assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text()
    whole, parts = (dict(kaldiio.load_scp(str(tmp_path / d / "dumped.scp"))) for d in ("one", "two"))
    assert sorted(whole) == sorted(parts) and all((whole[u] == parts[u]).all() for u in whole)
    # longest first, batches of 2 dealt round-robin: (u5 u4) (u1 u0) to the first shard, (u3 u2) to the second
    assert [len(read_kv_dict(str(d / "dumped.scp"))) for d in shard_dirs] == [4, 1]


def test_a_merge_checks_that_the_shards_hold_each_utterance_once(tmp_path):
    """What an orphaned or stale shard would leave behind (outputs of another set, an utterance twice or
    in none, a dumped.scp pointing into another ark or past its end) fails the merge, naming the shard,
    and takes the done mark of the shard at fault only, so the re-run redoes it."""
    from drax.data.features import dumped_utterances
    from drax.decode.decode_sets import decoded_utterances
    from drax.recipe.jobs import check_shard_outputs

    log = tmp_path / "log"
    log.mkdir()
    shards = [tmp_path / str(i) for i in range(2)]

    def decoded(*per_shard):
        for d, (text, missing) in zip(shards, per_shard):
            d.mkdir(exist_ok=True)
            (d / "text").write_text("".join(f"{u} hi\n" for u in text))
            (d / "missing").write_text("".join(f"{u} no features\n" for u in missing))
            (d / "timing.json").write_text("{}")
        for i in range(2):
            (log / f"{i}.done").write_text("{}")

    def check():
        check_shard_outputs("stage 8 test", shards, decoded_utterances, {"a", "b", "c", "d"}, log)

    decoded((["a", "b"], []), (["c"], ["d"]))
    check()  # a missing utterance is listed by its shard: it counts
    decoded((["a", "b"], []), (["c", "x"], ["d"]))
    with pytest.raises(ShardError, match=r"shard 1: .*/1 holds x, which is not in the set .*run the stage again"):
        check()
    assert (log / "0.done").exists() and not (log / "1.done").exists()
    decoded((["a", "b"], []), (["b", "c"], ["d"]))
    with pytest.raises(ShardError, match=r"shard 0: b is also in shard 1; shard 1: b is also in shard 0"):
        check()
    decoded((["a", "b"], []), (["c"], []))
    with pytest.raises(ShardError, match=r"1 utterance\(s\) of the set are in no shard \(e.g. d\)"):
        check()
    assert not list(log.glob("*.done"))
    decoded((["a", "b"], []), (["c"], ["d"]))
    (shards[1] / "timing.json").unlink()
    with pytest.raises(ShardError, match=r"shard 1: its outputs in .* cannot be read: .*timing.json does not exist"):
        check()

    for i, d in enumerate(shards):  # feature dumps: each shard's scp must point into its own ark
        with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/dumped.scp") as writer:
            writer(f"u{i}", np.ones((3, 2), dtype=np.float32))
        (d / "skipped").write_text("")
    check_shard_outputs("stage 3 test", shards, dumped_utterances, {"u0", "u1"}, log)
    (shards[1] / "dumped.scp").write_text((shards[0] / "dumped.scp").read_text().replace("u0", "u1"))
    with pytest.raises(ShardError, match=r"shard 1: .*u1 points to .*/0/feats.ark:\d+, not into .*/1/feats.ark"):
        check_shard_outputs("stage 3 test", shards, dumped_utterances, {"u0", "u1"}, log)
    (shards[1] / "dumped.scp").write_text(f"u1 {shards[1]}/feats.ark:999\n")  # past the end of a truncated ark
    with pytest.raises(ShardError, match=r"shard 1: .*u1 points to .*feats.ark:999, not into .* \(\d+ bytes\)"):
        check_shard_outputs("stage 3 test", shards, dumped_utterances, {"u0", "u1"}, log)


def test_features_with_nan_are_a_listed_skip_never_dumped(tmp_path, monkeypatch):
    """An encoder in bf16/fp16 that overflows writes NaN states that training would read silently."""
    from drax.data import features
    from drax.data.kaldi_dir import read_kv_dict

    from test_fault_tolerance import _tiny_data_dir

    _tiny_data_dir(tmp_path)
    log_mel = features.log_mel
    monkeypatch.setattr(features, "log_mel", lambda audio, filters: log_mel(audio, filters) / (len(audio) != 8000))
    summary = features.dump_features(tmp_path / "data", tmp_path / "dump", kind="logmel", batch_size=2)
    assert summary.written == 5 and set(summary.skipped) == {"s1-u0"}  # the 0.5 s utterance: inf
    assert "logmel with NaN or infinite values" in read_kv_dict(str(tmp_path / "dump" / "skipped"))["s1-u0"]
    assert "s1-u0" not in read_kv_dict(str(tmp_path / "dump" / "dumped.scp"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    utts = tiny_train.make_data(out, n_utts=10)
    conf = tiny_train.config(1)
    conf["num_iters_per_epoch"] = 5
    (out / "train.yaml").write_text(yaml.safe_dump(conf), encoding="utf-8")
    train_main(tiny_train.train_args(out, out / "train.yaml"))
    data = out / "data"  # a dumped set: the features, their shapes and languages
    feats = dict(kaldiio.load_scp(str(data / "feats.scp")))
    (data / "feats_shape").write_text("".join(f"{u} {m.shape[0]},{m.shape[1]}\n" for u, m in feats.items()))
    (data / "utt2lang").write_text("".join(f"{u} {lang}\n" for u, lang, _ in utts))
    return out


def test_a_decode_in_shards_writes_the_same_files_as_one(tmp_path, tiny_model):
    options = DecodingOptions(nfe=4, temperature=1.0, num_candidates=2, scoring="mbr", batch_size=3,
                              model_file="1epoch.pth")
    decode = functools.partial(decode_drax, asr_dir=tiny_model / "asr", set_dir=tiny_model / "data", units_dir=None,
                               options=options)
    decode(out_dir=tmp_path / "one")
    shard_dirs = [tmp_path / "split3" / str(i) for i in range(3)]
    for i, d in enumerate(shard_dirs):
        decode(out_dir=d, shard=(i, 3))
    merge_shards(shard_dirs, tmp_path / "three")
    for name in ("text", "missing", "candidates.jsonl"):
        assert (tmp_path / "three" / name).read_text() == (tmp_path / "one" / name).read_text(), name
    assert len((tmp_path / "one" / "text").read_text().splitlines()) == 10
    texts = [len((d / "text").read_text().splitlines()) for d in shard_dirs]
    assert texts == [3 + 1, 3, 3]  # batches of 3 dealt round-robin: 0 and 3 to the first shard
    one, three = (json.loads((tmp_path / name / "timing.json").read_text()) for name in ("one", "three"))
    assert (three["batches"], three["sampler_steps"]) == (one["batches"], one["sampler_steps"]) == (4, 4 * 4)


SLURM_PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scontrol")


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A single-node Slurm cluster on this machine (Debian's slurm-wlm and munge, tools/apt-packages.txt),
    started for these tests and stopped after them; SLURM_CONF points the client commands at it."""
    missing = [p for p in SLURM_PROGRAMS if shutil.which(p) is None]
    if missing:
        pytest.skip(f"no Slurm here ({', '.join(missing)} not installed): tools/setup.sh installs slurm-wlm and munge")
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd and munged needs root")
    root = tmp_path_factory.mktemp("slurm")
    for d in ("state", "spool", "log"):
        (root / d).mkdir()
    host = socket.gethostname().split(".")[0]
    ports = [free_port(), free_port()]
    conf = root / "slurm.conf"
    conf.write_text(f"""ClusterName=drax
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started = []
    if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:  # no munged answering yet
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", shutil.which("munged")], check=True)
        started.append(Path("/run/munge/munged.pid"))
    subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env)
    subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env)
    started += [root / "slurmd.pid", root / "slurmctld.pid"]
    deadline = time.time() + 60
    while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env).stdout:
        if time.time() > deadline:
            pytest.fail(f"the test cluster did not come up; see {root}/log")
        time.sleep(0.5)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    yield root
    if old is None:
        os.environ.pop("SLURM_CONF")
    else:
        os.environ["SLURM_CONF"] = old
    deadline = time.time() + 60  # let the jobs' steps finish before the daemons go
    while subprocess.run(["squeue", "-h"], capture_output=True, text=True, env=env).stdout.strip() and time.time() < deadline:
        time.sleep(0.5)
    subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True)
    for pid_file in reversed(started):  # slurmctld, slurmd, then munged if these tests started it
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except ProcessLookupError:  # scontrol shutdown stopped it
                pass


def test_slurm_backend_decodes_the_same_files_as_local_processes(tmp_path, tiny_model, slurm_cluster):
    options = DecodingOptions(nfe=4, temperature=1.0, batch_size=3, model_file="1epoch.pth")
    decode = functools.partial(decode_drax, asr_dir=tiny_model / "asr", set_dir=tiny_model / "data", units_dir=None,
                               options=options)
    for backend in ("local", "slurm"):
        shard_dirs = [tmp_path / backend / "split2" / str(i) for i in range(2)]
        jobs = JobsConfig(backend=backend, slurm={"partition": "debug", "time": 10} if backend == "slurm" else {})
        run_shards(f"decode on {backend}", decode, [{"out_dir": d, "shard": (i, 2)} for i, d in enumerate(shard_dirs)],
                   tmp_path / backend / "log", jobs)
        merge_shards(shard_dirs, tmp_path / backend)
        assert all((tmp_path / backend / "log" / f"{i}.done").exists() for i in range(2))
    for name in ("text", "missing"):
        assert (tmp_path / "slurm" / name).read_text() == (tmp_path / "local" / name).read_text(), name
    assert len(list((tmp_path / "slurm" / "log" / "submitit").glob("*_log.out"))) == 2  # two sbatch jobs ran


MINI = Path(__file__).resolve().parents[1] / "egs" / "mini"
STAGE3_FLAGS = ["--langs", "[en]", "--corpus_conf", "{n_train: 24, n_dev: 1, n_test: 1, seed: 3}", "--extra_corpora",
                "{}", "--dev_sets", "[]", "--test_sets", "[test]", "--nj", "2", "--whisper_baseline", "false"]
STAGE3_SETS = ("train", "dev", "test")


def run_mini(recipe: Path, *args: str) -> None:
    proc = subprocess.run([str(MINI.parents[1] / "run.sh"), "--recipe", "conf/recipe.yaml", *args], cwd=recipe,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def load_dumps(recipe: Path) -> dict[str, dict]:
    """{set: {utt: states}} of stage 3 in `recipe` (scp paths are relative to the recipe, as in ESPnet)."""
    with contextlib.chdir(recipe):
        return {name: dict(kaldiio.load_scp(f"dump/whisper_states/{name}/dumped.scp")) for name in STAGE3_SETS}


@pytest.fixture(scope="module")
def stage3_reference(tmp_path_factory, whisper_base):
    """A mini recipe through stages 1-3 on local processes, uninterrupted: what stage 3 must dump
    however it runs (the recipe dir, its flags, its dumps); run once per worker that needs it."""
    recipe = tmp_path_factory.mktemp("stage3") / "local"
    shutil.copytree(MINI / "conf", recipe / "conf")
    flags = [*STAGE3_FLAGS, "--whisper", str(whisper_base)]
    run_mini(recipe, *flags, "--stop_stage", "3")
    return recipe, flags, load_dumps(recipe)


def fresh_stage3(reference: Path, to: Path) -> Path:
    """A copy of the reference recipe with stages 1-2 done and stage 3 not run."""
    shutil.copytree(reference, to, ignore=shutil.ignore_patterns("dump", "features", "3_features.done"))
    return to


def assert_same_dumps(got: dict, want: dict, what: str) -> None:
    for name, feats in want.items():
        assert got[name].keys() == feats.keys() and feats, (what, name)
        for utt, mat in feats.items():
            assert (got[name][utt] == mat).all(), (what, name, utt)


@pytest.mark.slow
def test_recipe_stage_3_on_slurm_writes_what_local_processes_write(tmp_path, stage3_reference, slurm_cluster):
    """The recipe key `jobs` through ./run.sh: stage 3's shards as sbatch jobs, the same dumps as with
    local processes (stage 8's shards on Slurm: test_slurm_backend_decodes_the_same_files_as_local_processes)."""
    reference, flags, want = stage3_reference
    slurm = fresh_stage3(reference, tmp_path / "slurm")
    run_mini(slurm, *flags, "--stage", "3", "--stop_stage", "3",
             "--jobs", "{backend: slurm, slurm: {partition: debug, time: 10}}")
    assert_same_dumps(load_dumps(slurm), want, "slurm")
    for name in STAGE3_SETS:
        logs = slurm / "exp" / "features" / name / "log"
        assert sorted(p.name for p in logs.glob("*.done")) == ["0.done", "1.done"]
        assert len(list((logs / "submitit").glob("*_log.out"))) == 2  # two sbatch jobs ran


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_no_local_shard_outlives_the_recipe_that_started_it(tmp_path, sig):
    """submitit's local jobs are built to outlive their submitter: a killed recipe left its shards
    running beside its re-run. SIGKILL: each shard ends itself; SIGTERM: the recipe cancels them."""
    script = textwrap.dedent(f"""
        import os, time
        from pathlib import Path
        from drax.recipe.engine import stop_on_sigterm
        from drax.recipe.jobs import JobsConfig, run_shards

        def shard(i):
            Path({str(tmp_path)!r}, f"{{i}}.pid").write_text(str(os.getpid()))
            time.sleep(300)

        stop_on_sigterm()
        run_shards("stage x", shard, [{{"i": 0}}, {{"i": 1}}], Path({str(tmp_path / "log")!r}), JobsConfig())
    """)
    recipe = subprocess.Popen([sys.executable, "-c", script])
    pids = [tmp_path / "0.pid", tmp_path / "1.pid"]
    deadline = time.time() + 120
    while not all(p.exists() and p.read_text() for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    shards = [int(p.read_text()) for p in pids]
    recipe.send_signal(sig)
    assert recipe.wait(timeout=30) == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + signal.SIGTERM)
    deadline = time.time() + 15
    while any(_alive(pid) for pid in shards) and time.time() < deadline:
        time.sleep(0.1)
    alive = [pid for pid in shards if _alive(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"shard process(es) {alive} outlived the recipe ({sig.name})"
    assert not (tmp_path / "log" / "0.done").exists()  # what was stopped is not marked done


def test_a_shard_waits_for_the_writer_holding_its_lock(tmp_path):
    """A shard holds <log_dir>/<i>.lock while it works: a second writer of the same shard (an orphan
    of an earlier run) is waited for, never overlapped."""
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    released = tmp_path / "released"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, time
        f = open({str(log_dir / "0.lock")!r}, "a")
        fcntl.flock(f, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(10)  # longer than a local job takes to start
        open({str(released)!r}, "w").write(repr(time.time()))
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    run_shards("stage x", shutil.copyfile, [{"src": "/proc/self/stat", "dst": str(tmp_path / "out")}], log_dir,
               JobsConfig())
    holder.wait()
    assert (tmp_path / "out").stat().st_mtime >= float(released.read_text())  # written after the holder let go


@pytest.mark.slow
def test_a_recipe_killed_in_stage_3_leaves_no_shard_and_its_rerun_dumps_what_one_run_dumps(tmp_path, stage3_reference):
    """./run.sh SIGKILLed while stage 3's two shards encode: no shard process outlives it, no unfinished
    shard is marked done, and running the same command again dumps exactly what a run that was never
    interrupted dumps (SIGTERM through the recipe: the stage 8 test of tests/test_release.py)."""
    reference, flags, want = stage3_reference
    recipe = fresh_stage3(reference, tmp_path / "killed")
    command = [str(MINI.parents[1] / "run.sh"), "--recipe", "conf/recipe.yaml", *flags, "--stage", "3", "--stop_stage", "3"]
    kill_while_shards_work(command, recipe, recipe / "exp" / "features" / "train" / "log", signal.SIGKILL)
    run_mini(recipe, *flags, "--stage", "3", "--stop_stage", "3")
    assert_same_dumps(load_dumps(recipe), want, "killed, then run again")
