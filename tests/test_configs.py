"""Every shipped training config builds its model (on the meta device: no memory, no weights).

Whisper encoders come from a small random model of the right mel count where the real weights are
absent; the decoder, p_mid and losses are built exactly as configured.
"""
import argparse
from pathlib import Path

import pytest
import torch
import yaml

import drax.asr.registry  # noqa: F401
from drax.asr.build import build_model, drax_parts_only
from drax.decode.options import load_decode_options
from drax.options import config_files, read_config
from drax.text.units import prompt_tokens

REPO = Path(__file__).resolve().parents[1]
# each file once: a recipe's conf/ links the configs it shares with the others to egs/TEMPLATE/conf/
CONFIGS = sorted({p.resolve() for p in [*REPO.glob("conf/tuning/*.yaml"), *REPO.glob("egs/*/conf/train_*.yaml")]})
LANGS = ["en", "de", "es", "fr", "it", "pt", "zh", "ja"]


@pytest.fixture(scope="module")
def random_whisper(tmp_path_factory):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    dirs = {}
    for n_mels in (80, 128):
        cfg = WhisperConfig(vocab_size=64, num_mel_bins=n_mels, encoder_layers=1, decoder_layers=1, d_model=32,
                            encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                            decoder_ffn_dim=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                            decoder_start_token_id=1)
        dirs[n_mels] = tmp_path_factory.mktemp(f"whisper{n_mels}")
        WhisperForConditionalGeneration(cfg).save_pretrained(dirs[n_mels])
    return dirs


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_config_builds_its_model(path, random_whisper):
    from espnet2.tasks.asr import ASRTask

    conf = read_config(path)
    vocab = ["<blank>", "<unk>"] + [f"u{i}" for i in range(51_000)] + prompt_tokens(LANGS) + ["<|endoftext|>"]
    input_size = 512
    if conf["encoder"] == "whisper_frozen":
        n_mels = 128 if "large-v3" in conf["encoder_conf"]["model"] else 80
        conf["encoder_conf"]["model"] = str(random_whisper[n_mels])
        input_size = n_mels
    if conf["model"] == "espnet":
        return check_baseline(conf, vocab)
    if conf["decoder_conf"].get("init_from_whisper"):  # loading the weights: tests/test_whisper_init.py
        assert conf["decoder_conf"]["init_from_whisper"] == "recipe"
        conf["decoder_conf"]["init_from_whisper"] = None
    model_conf = {"output_length" if conf["model"] == "drax" else "max_length": 48, **conf.get("model_conf", {})}
    args = argparse.Namespace(
        token_list=vocab, input_size=input_size, frontend=None, frontend_conf={}, specaug=None, specaug_conf={},
        normalize=conf.get("normalize"), normalize_conf={}, preencoder=None, preencoder_conf={},
        encoder=conf["encoder"], encoder_conf=conf.get("encoder_conf", {}), postencoder=None, postencoder_conf={},
        decoder=conf["decoder"], decoder_conf=conf["decoder_conf"], ctc_conf={}, model=conf["model"],
        model_conf=model_conf, init=None,
    )
    with torch.device("meta"):
        model = ASRTask.build_model(argparse.Namespace(**vars(args)))
        ours = build_model(args)  # decoding builds it without ESPnet's task module: the same model
    assert drax_parts_only(args) and repr(ours) == repr(model)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    dec = conf["decoder_conf"]
    assert len(model.decoder.blocks) == dec["num_blocks"]
    assert model.decoder.hidden_size == dec["hidden_size"]
    if conf["model"] == "drax":
        assert model.path.name == model_conf["path"] and model.pmid is not None
    else:  # the AR yardstick (model: drax_ar): decoder, precision and budget of the default Drax beside
        # it, with the paper's optimiser (a lower learning rate measured no better for it)
        drax = read_config(path.parent / "train_drax.yaml")
        drax["decoder_conf"]["init_from_whisper"] = None
        drax["decoder_conf"]["attention_block"] = None  # the AR model masks its self-attention itself
        own = ("model", "model_conf", "optim_conf", "scheduler_conf")
        assert {k: v for k, v in conf.items() if k not in own} == {k: v for k, v in drax.items() if k not in own}
        for c in (conf, drax):  # the same schedule, to each one's own peak learning rate
            assert c["scheduler_conf"] == {"warmup_steps_list": [0, 100, c["max_epoch"] * c["num_iters_per_epoch"]],
                                           "warmup_lr_list": [0.0, c["optim_conf"]["lr"], 0.0]}
        assert model.max_length == 48
    assert model.prompt_ids("ja")[1] == vocab.index("<|ja|>")
    n_params = sum(p.numel() for n, p in model.named_parameters() if n.startswith("decoder."))
    assert n_params > 12 * dec["hidden_size"] ** 2 * dec["num_blocks"]


def check_baseline(conf: dict, vocab: list[str]) -> None:
    """The `model: espnet` baselines: AR transformer decoder or CTC on the dumped states, sized as configured."""
    from espnet2.tasks.asr import ASRTask

    args = argparse.Namespace(
        token_list=vocab, input_size=512, frontend=None, frontend_conf={}, specaug=None, specaug_conf={},
        normalize=conf.get("normalize"), normalize_conf={}, preencoder=conf.get("preencoder"),
        preencoder_conf=conf.get("preencoder_conf", {}), encoder=conf["encoder"],
        encoder_conf=conf.get("encoder_conf", {}), postencoder=None, postencoder_conf={},
        decoder=None if conf.get("decoder") == "none" else conf.get("decoder"),  # the CLI reads "none" as None
        decoder_conf=conf.get("decoder_conf", {}), ctc_conf={}, model="espnet",
        model_conf=conf["model_conf"], init=None,
    )
    with torch.device("meta"):
        model = ASRTask.build_model(argparse.Namespace(**vars(args)))
        assert not drax_parts_only(args) and type(build_model(args)) is type(model)  # ESPnet's task builds it
    assert model.sos == model.eos == vocab.index("<|endoftext|>")
    if conf["model_conf"]["ctc_weight"] == 1.0:
        assert model.decoder is None and len(model.encoder.encoders) == conf["encoder_conf"]["num_blocks"]
        assert model.encoder.output_size() == conf["encoder_conf"]["output_size"]
    else:
        assert len(model.decoder.decoders) == conf["decoder_conf"]["num_blocks"]
        assert model.encoder.output_size() == conf["preencoder_conf"]["output_size"]  # the decoder's width


MINI = REPO / "egs" / "mini" / "conf"


def test_paper_config_trains_and_decodes_as_the_paper_does():
    """conf/train_drax_paper.yaml is the paper-faithful Drax: Drax's path, bidirectional attention, a
    fixed canvas, t ~ U[0, 1], the loss everywhere, i.e. every learning-efficiency key at its default,
    which is the paper's behaviour; conf/decode_drax_paper.yaml samples with the paper's random jumps."""
    import dataclasses

    from drax.asr.model import DraxModelOptions
    from drax.decode.options import DecodingOptions

    conf = read_config(MINI / "train_drax_paper.yaml")
    defaults = {f.name: f.default for f in dataclasses.fields(DraxModelOptions)}
    keys = ("canvas_margin", "pad_weight", "time_sampling", "time_power", "loss_positions", "attention_anneal_steps")
    assert {k: conf["model_conf"].get(k, defaults[k]) for k in keys} == {k: defaults[k] for k in keys}
    assert defaults["canvas_margin"] is None and defaults["pad_weight"] == 1.0 and defaults["loss_positions"] == "all"
    assert conf["model_conf"]["path"] == "audio_mid" and conf["model_conf"]["scheduler"] == "tri_mixture"
    assert conf["decoder_conf"].get("attention_block") is None
    assert read_config(MINI / "decode_drax_paper.yaml").get("jump_order", DecodingOptions.jump_order) == "random"


def test_shipped_variants_list_only_what_differs_from_their_base():
    """A config naming a `base` lists only keys whose values differ from the base's (in a mapping,
    key by key; a mapping of another class is its own), so a variant reads as what it changes."""
    variants = 0
    for path in sorted(MINI.glob("*.yaml")):
        own = yaml.safe_load(path.read_text()) or {}
        if "base" not in own:
            continue
        variants += 1
        base = read_config(path.parent / own.pop("base"))
        for key, value in own.items():
            other_class = key.endswith("_conf") and own.get(key[:-5], base.get(key[:-5])) != base.get(key[:-5])
            if isinstance(value, dict) and isinstance(base.get(key), dict) and not other_class:
                same = [f"{key}.{k}" for k, v in value.items() if k in base[key] and base[key][k] == v]
            else:
                same = [key] if key in base and base[key] == value else []
            assert not same, f"{path.name}: {same} repeat the values of its base"
    assert variants >= 6  # the paper, long, scratch and AR train configs, the nfe16 and paper decode configs


def test_a_config_lists_only_what_differs_from_its_base(tmp_path):
    """`base: <file>` (relative to the config): the base's keys, the config's own replacing them, a chain
    of any length; a missing base or a loop is an error naming the file."""
    (tmp_path / "a.yaml").write_text("nfe: 32\ntemperature: 0.0\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("base: ../a.yaml\nnfe: 16\n")
    (tmp_path / "c.yaml").write_text("base: sub/b.yaml\ntemperature: 0.5\n")
    assert read_config(tmp_path / "c.yaml") == {"nfe": 16, "temperature": 0.5}
    assert config_files(tmp_path / "c.yaml") == [tmp_path / "c.yaml", tmp_path / "sub" / "b.yaml",
                                                 tmp_path / "sub" / "../a.yaml"]
    assert load_decode_options(tmp_path / "c.yaml").nfe == 16
    (tmp_path / "a.yaml").write_text("base: c.yaml\n")
    with pytest.raises(ValueError, match=r"a.yaml: base 'c.yaml' builds on itself"):
        read_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ValueError, match=r"d.yaml: base 'nowhere.yaml': .*nowhere.yaml does not exist"):
        load_decode_options(tmp_path / "d.yaml")
