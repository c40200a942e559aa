"""The authors' released Drax through drax/pretrained/release.py, against a tiny random release written
in the published layout by an independent re-implementation (tests/release_reference.py)."""
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from release_reference import write_release
from safetensors.torch import load_file, save_file

from drax.bin.convert_release import main as convert_main
from drax.decode.options import DecodingOptions
from drax.decode.speech2text import Speech2Text, load_model
from drax.pretrained.release import convert_release

from test_fault_tolerance import kill_while_shards_work


@pytest.fixture(scope="module")
def release(tmp_path_factory, whisper_base):
    """A converted tiny release: (release dir, converted dir, reference decoder, reference encoder)."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("release")
    vocab = len(AutoTokenizer.from_pretrained(whisper_base))
    decoder, encoder = write_release(root / "drax-tiny", vocab)
    convert_main(["--release", str(root / "drax-tiny"), "--tokenizer", str(whisper_base), "--out", str(root / "converted")])
    out = root / "converted"
    return root / "drax-tiny", out, decoder, encoder


def test_the_converted_model_gives_the_releases_logits_at_pinned_and_free_positions(release):
    _, out, reference, ref_encoder = release
    model, args = load_model(out / "config.yaml", out / "model.pth")
    offset = args.token_list.index("!")  # Whisper id 0
    wav = torch.from_numpy(np.random.default_rng(0).normal(scale=0.1, size=(2, 16000)).astype(np.float32))
    enc, enc_lens = model.encode(wav, torch.tensor([16000, 12000]))
    assert enc.shape[1] == 1500 and (enc_lens == 1500).all()  # padded to 30 s, as the release reads audio
    feats, _ = model.frontend(wav, torch.tensor([16000, 12000]))
    with torch.no_grad():
        ref_states = ref_encoder(feats.transpose(1, 2)).last_hidden_state
    assert torch.allclose(enc, ref_states, atol=1e-4)

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, reference.vocab_embed.num_embeddings, (2, 12), generator=gen)
    t = torch.tensor([0.1, 0.7])
    pinned = torch.zeros(2, 12, dtype=torch.bool)
    pinned[:, :4] = True
    with torch.no_grad():
        want = reference(x, t, ref_states, pinned)
        got = model.decoder(x + offset, t, model.decoder.encode_audio(enc, enc_lens), pinned=pinned)
    assert want.abs().max() > 1.0  # a release whose blocks are far from the identity
    assert torch.allclose(got[..., offset:], want, atol=1e-4, rtol=1e-4)
    assert (got[..., :offset] < -1e3).all()  # <blank>, <unk>: never predicted
    with torch.no_grad():  # the pinned mask is read: the same tokens unpinned give other logits
        other = model.decoder(x + offset, t, model.decoder.encode_audio(enc, enc_lens), pinned=~pinned)
    assert not torch.allclose(other, got, atol=1e-3)


def test_the_converted_model_decodes_through_speech2text(release):
    _, out, _, _ = release
    s2t = Speech2Text(out / "config.yaml", out / "model.pth", DecodingOptions(nfe=4, temperature=0.1),
                      units_dir=out / "units")
    wav = np.random.default_rng(1).normal(scale=0.1, size=16000).astype(np.float32)
    first = s2t.batch([wav], ["en"])[0].best
    s2t.reseed(0)
    again = s2t.batch([wav], ["en"])[0].best
    assert first.token_ids == again.token_ids and len(first.token_ids) <= 12 - 4
    assert all(i >= 2 for i in first.token_ids)  # no <blank> / <unk>
    assert (out / "units" / "tokens.txt").read_text().split("\n")[2:4] == ["!", '"']  # Whisper ids 0, 1
    assert json.loads((out / "release.json").read_text())["config"]["model_type"] == "drax"


def _broken_copy(src, dst, edit):
    dst.mkdir()
    (dst / "config.json").write_text((src / "config.json").read_text())
    (dst / "encoder.safetensors").write_bytes((src / "encoder.safetensors").read_bytes())
    state = load_file(str(src / "decoder.safetensors"))
    edit(state)
    save_file(state, str(dst / "decoder.safetensors"))
    return dst


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("blocks.1.kw.weight"), r"missing \['blocks.1.kw.weight'\]"),
    (lambda s: s.update({"blocks.0.extra.weight": torch.zeros(1)}), r"unexpected \['blocks.0.extra.weight'\]"),
    (lambda s: s.update({"audio_proj.0.weight": torch.zeros(32, 25)}), r"mis-shaped \['audio_proj.0.weight: \(32, 25\)"),
])
def test_a_release_with_a_missing_extra_or_misshaped_tensor_fails_naming_it(release, tmp_path, whisper_base, edit,
                                                                            message):
    src = release[0]
    broken = _broken_copy(src, tmp_path / "broken", edit)
    with pytest.raises(ValueError, match=message):
        convert_release(broken, whisper_base, tmp_path / "out")
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["broken"]  # nothing left


def test_a_tokenizer_of_another_size_or_an_existing_output_fails_before_writing(release, tmp_path, whisper_base):
    src, out, reference, _ = release
    vocab = reference.vocab_embed.num_embeddings
    write_release(tmp_path / "larger", vocab + 1)  # e.g. large-v3's 51,866 tokens against base's tokenizer
    with pytest.raises(ValueError, match=f"has {vocab} tokens but the release's decoder_config.vocab_size is {vocab + 1}"):
        convert_release(tmp_path / "larger", whisper_base, tmp_path / "out")
    with pytest.raises(FileExistsError, match="exists"):
        convert_release(src, whisper_base, out)
    with pytest.raises(FileNotFoundError, match="not found"):
        convert_release(tmp_path / "absent", whisper_base, tmp_path / "out2")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_finetune_yaml_trains_the_converted_decoder_from_the_releases_weights(release, tmp_path):
    """The converter's finetune.yaml through ESPnet's trainer (init_param), on dumped states as a recipe
    gives them: after two small steps the decoder is still the release's, p_mid trained from scratch."""
    import kaldiio
    import yaml

    from drax.bin.train import main as train_main
    from drax.text.units import load_units

    _, out, _, _ = release
    units = load_units(out / "units")
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    feats = {f"utt{i}": rng.normal(size=(20 + 3 * i, 24)).astype(np.float32) for i in range(4)}
    kaldiio.save_ark(str(data / "feats.ark"), feats, scp=str(data / "feats.scp"))
    prompt = "<|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|>"
    (data / "text").write_text("".join(f"{u} {prompt} {' '.join(units.encode(t))}\n"
                                       for u, t in zip(feats, ["hello", "good day", "yes", "one two"])))
    conf = yaml.safe_load((out / "finetune.yaml").read_text())
    assert conf["init_param"] == [f"{out}/model.pth:decoder:decoder"]
    conf["model_conf"].update(output_length=12)
    conf.update(batch_type="unsorted", batch_size=2, max_epoch=1, num_iters_per_epoch=2, optim_conf={"lr": 1e-5},
                scheduler=None, scheduler_conf={}, use_tensorboard=False)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(conf))
    pairs = [f"{data}/feats.scp,speech,kaldi_ark", f"{data}/text,text,text"]
    args = ["--config", str(tmp_path / "train.yaml"), "--output_dir", str(tmp_path / "asr"), "--ngpu", "0",
            "--token_type", "word", "--token_list", str(out / "units" / "tokens.txt"), "--input_size", "24",
            "--train_shape_file", f"{data}/feats.scp", "--valid_shape_file", f"{data}/feats.scp"]
    for p in pairs:
        args += ["--train_data_path_and_name_and_type", p, "--valid_data_path_and_name_and_type", p]
    train_main(args)
    trained = torch.load(tmp_path / "asr" / "1epoch.pth", weights_only=True)
    converted = torch.load(out / "model.pth", weights_only=True)
    decoder = [k for k in trained if k.startswith("decoder.")]
    assert decoder and all(k in converted for k in decoder)
    drift = max(((trained[k] - converted[k]).abs() / (1 + converted[k].abs())).max().item() for k in decoder)
    assert 0 < drift < 1e-3  # trained, from the release's weights (a fresh DiT differs by ~0.1-1)
    assert not torch.equal(trained["pmid.head.weight"], converted["pmid.head.weight"])


def test_recipe_units_of_the_whole_vocabulary_are_the_converted_models(release, tmp_path, whisper_base):
    from drax.data.tokenize import build_units

    _, out, _, _ = release
    build_units("whisper", {"full_vocabulary": True}, tmp_path / "units", [], ["en"], whisper_dir=str(out / "whisper"))
    assert (tmp_path / "units" / "tokens.txt").read_text() == (out / "units" / "tokens.txt").read_text()
    with pytest.raises(ValueError, match="full_vocabulary takes no other key"):
        build_units("whisper", {"full_vocabulary": True, "max_units": 10}, tmp_path / "u2", [], ["en"],
                    whisper_dir=str(whisper_base))


def test_the_authors_output_cleaning_drops_every_special_token_and_keeps_text_after_an_end(release):
    from drax.decode.options import load_decode_options

    _, out, _, _ = release
    model, args = load_model(out / "config.yaml", out / "model.pth")
    ids = [args.token_list.index(t) for t in ("Ġhello", "<|endoftext|>", "Ġworld", "<|en|>", "<|0.00|>", "!")]
    tokens = torch.tensor(model.prompt_ids("en") + ids)
    hello, _, world, _, _, bang = ids
    assert model.strip(tokens) == [hello]  # ours: up to the first end token
    assert model.strip(tokens, "drop_specials") == [hello, world, bang]
    options = load_decode_options(Path(__file__).parents[1] / "egs" / "TEMPLATE" / "conf" / "decode_drax_authors.yaml")
    assert (options.output_cleaning, options.temperature, options.jump_order, options.model_file) == (
        "drop_specials", 0.1, "random", "model.pth")
    with pytest.raises(ValueError, match="output_cleaning"):
        DecodingOptions(output_cleaning="all")


@pytest.mark.slow
def test_a_recipe_decodes_the_converted_release_through_its_stages(release, tmp_path, monkeypatch):
    """Recipe key `pretrained`: stages 1-6 prepare the data with the release's encoder (30 s padded) and
    units, stage 7 installs the converted model, stage 8 decodes the dumped states: the same text as
    the converted model decoding the audio itself, as `Speech2Text` on its own config."""
    import subprocess

    from drax.data.audio import load_audio
    from drax.data.kaldi_dir import read_kv_dict
    from drax.decode.options import load_decode_options

    _, out, _, _ = release
    repo = Path(__file__).resolve().parents[1]
    recipe = tmp_path / "mini"
    shutil.copytree(repo / "egs" / "mini" / "conf", recipe / "conf")
    flags = ["--langs", "[en]", "--corpus_conf", "{n_train: 2, n_dev: 1, n_test: 3, seed: 5}", "--extra_corpora", "{}",
             "--dev_sets", "[]", "--test_sets", "[test]", "--whisper", str(out / "whisper"), "--encoder_pad_to_30s", "true",
             "--units_conf", "{full_vocabulary: true}", "--pretrained", str(out), "--nj", "1",
             "--decode_config", "conf/decode_drax_authors.yaml", "--whisper_baseline", "false"]
    proc = subprocess.run([str(repo / "run.sh"), "--recipe", "conf/recipe.yaml", *flags], cwd=recipe,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    asr = recipe / "exp" / f"asr_{out.name}"
    assert (asr / "valid.loss.best.pth").resolve() == (asr / "model.pth").resolve()
    assert not (asr / "train.log").exists()  # installed, not trained
    hyps = read_kv_dict(str(asr / "decode_drax_authors" / "test" / "text"))
    assert sorted(hyps) == sorted(read_kv_dict(str(recipe / "data" / "test" / "text"))) and len(hyps) == 3
    assert "test" in (recipe / "exp" / "RESULTS.md").read_text()
    # SIGTERMed while stage 8's two shards decode, then run again: no shard outlives the recipe, and the
    # re-run decodes what the uninterrupted run decoded
    shutil.rmtree(asr / "decode_drax_authors")
    for marker in (recipe / "exp" / "stages").glob("8_decode.*.done"):
        marker.unlink()
    two = [("2" if flag == "1" and flags[i - 1] == "--nj" else flag) for i, flag in enumerate(flags)]
    rerun = [str(repo / "run.sh"), "--recipe", "conf/recipe.yaml", *two, "--stage", "8", "--stop_stage", "8"]
    kill_while_shards_work(rerun, recipe, asr / "decode_drax_authors" / "test" / "log", signal.SIGTERM)
    proc = subprocess.run(rerun, cwd=recipe, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert read_kv_dict(str(asr / "decode_drax_authors" / "test" / "text")) == hyps

    monkeypatch.chdir(recipe)  # wav.scp paths are relative to the recipe
    options = load_decode_options(recipe / "conf" / "decode_drax_authors.yaml")
    s2t = Speech2Text(out / "config.yaml", out / "model.pth", options, units_dir=out / "units")
    utts = sorted(hyps)  # stage 8's order: all states are 1,500 frames long
    wavs = read_kv_dict("data/test/wav.scp")
    s2t.reseed(options.seed)
    direct = s2t.batch([load_audio(wavs[u])[0] for u in utts], ["en"] * len(utts))
    assert [d.best.text for d in direct] == [hyps[u] for u in utts]
    import drax  # the converted directory transcribes files as it is

    s2t.reseed(options.seed)
    alone = s2t.batch([load_audio(wavs[utts[0]])[0]], ["en"])[0].best.text  # a batch of one: its own draws
    assert drax.load(out).transcribe(wavs[utts[0]], language="en").text == alone
    from drax.decode.options import DecodingOptions
    from drax.options import load_options
    from drax.pretrained.release import AUTHORS_DECODING  # the converted directory's own: the config's

    assert load_options(DecodingOptions, AUTHORS_DECODING, "release") == options


def test_installing_a_release_into_a_recipe_with_other_units_or_states_fails_naming_the_fix(release, tmp_path):
    from drax.pretrained.release import install_converted
    from drax.recipe.config import RecipeError, load_recipe
    from drax.recipe.stages import check_stage_configs

    _, out, _, _ = release
    units = tmp_path / "units"
    units.mkdir()
    (units / "tokens.txt").write_text("<blank>\n<unk>\nhello\n")
    d_model = json.loads((out / "whisper" / "config.json").read_text())["d_model"]
    with pytest.raises(ValueError, match=r"has 3: run stages 5-10 with --units_conf \"\{full_vocabulary: true\}\""):
        install_converted(out, tmp_path / "asr", units, d_model, "whisper_states")
    shutil.copy(out / "units" / "tokens.txt", units / "tokens.txt")
    with pytest.raises(ValueError, match=f"dumped {d_model + 1}-dim whisper_states .* --encoder_pad_to_30s true"):
        install_converted(out, tmp_path / "asr", units, d_model + 1, "whisper_states")
    assert not (tmp_path / "asr").exists()  # nothing written before the checks pass
    install_converted(out, tmp_path / "asr", units, d_model, "whisper_states")
    model, args = load_model(tmp_path / "asr" / "config.yaml", tmp_path / "asr" / "valid.loss.best.pth")
    assert args.encoder == "precomputed" and args.frontend is None and args.input_size == d_model

    config = load_recipe(None, {"pretrained": str(tmp_path / "absent")})
    with pytest.raises(RecipeError, match="recipe key pretrained: .*absent holds no config.yaml"):
        check_stage_configs(config, 7, 7, tmp_path)
