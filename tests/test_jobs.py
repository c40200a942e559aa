"""Sharded stage work (drax/recipe/jobs.py) and sharded decoding (drax/decode/decode_sets.py)."""
import functools
import shutil

import kaldiio
import pytest
import yaml

from drax.bin import tiny_train
from drax.bin.train import main as train_main
from drax.decode.decode_sets import decode_drax, merge_shards
from drax.decode.options import DecodingOptions
from drax.options import load_options
from drax.recipe.jobs import JobsConfig, ShardError, run_shards


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


def test_jobs_config_errors_name_the_key():
    with pytest.raises(ValueError, match="jobs.backend: unknown choice 'sge'; valid: local, slurm"):
        JobsConfig(backend="sge")
    with pytest.raises(ValueError, match=r"jobs.slurm: unknown key\(s\) \['partiton'\]"):
        JobsConfig(slurm={"partiton": "gpu"})
    with pytest.raises(ValueError, match=r"unknown recipe key jobs key\(s\) \['nodes'\]|'nodes'"):
        load_options(JobsConfig, {"nodes": 2}, "recipe key jobs")


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
