"""Options as dataclasses, loaded from YAML mappings by one loader.

A config file's keys are the fields of one dataclass (RecipeConfig, DecodingOptions, the studies'
configs). `load_options` fills in the defaults; an unknown key or a value of the wrong type is a
ValueError that says where it came from, the key, the value and what is valid. Ranges and choices
are each dataclass's own `__post_init__`. A config file may build on another (`read_config`):
`base: <file>` names it, and the file lists only what differs (`merge_config`).
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import yaml

T = TypeVar("T")

# annotation (as written, `from __future__ import annotations`) -> accepted Python types
_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "dict": (dict,),
          "list": (list,), "tuple": (list, tuple)}


def _accepted(annotation: str) -> tuple[tuple[type, ...], bool] | None:
    """(types, None allowed) of a field annotation such as "int", "str | None", "list[str]"; None when
    the annotation is not one of the simple kinds (then the value is not checked)."""
    parts = [p.strip() for p in annotation.split("|")]
    optional = "None" in parts
    kinds = [p.split("[")[0] for p in parts if p != "None"]
    if len(kinds) != 1 or kinds[0] not in _TYPES:
        return None
    return _TYPES[kinds[0]], optional


def check_type(what: str, name: str, annotation, value) -> None:
    """`value` of key `name` is of the simple kind its annotation names (not checked otherwise)."""
    accepted = _accepted(str(annotation))
    if accepted is None:
        return
    types, optional = accepted
    if value is None and optional:
        return
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        kind = str(annotation).split("|")[0].strip()
        raise ValueError(f"{what} key {name}: {value!r} is not {'an' if kind[0] in 'aeiou' else 'a'} {kind}"
                         + (" (or null)" if optional else ""))


def load_options(cls: type[T], raw: Mapping | None, what: str) -> T:
    """An instance of the dataclass `cls` from the mapping `raw` (None: all defaults); `what` names the
    source in errors (e.g. "decode config conf/decode_drax.yaml")."""
    if raw is not None and not isinstance(raw, Mapping):
        raise ValueError(f"{what}: expected a mapping of options, got {type(raw).__name__}")
    raw = dict(raw or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown}; valid keys: {', '.join(fields)}")
    for name, value in raw.items():
        check_type(what, name, fields[name].type, value)
    return cls(**raw)


def check_range(what: str, name: str, value, low=None, choices=None, strict: bool = False, high=None) -> None:
    """`value` >= low (> low when strict), <= high, or among `choices` (None passes the bounds); a
    ValueError naming the key otherwise."""
    if choices is not None and value not in choices:
        raise ValueError(f"{what} key {name}: unknown choice {value!r}; valid: {', '.join(map(str, choices))}")
    if low is not None and value is not None and not (value > low if strict else value >= low):
        raise ValueError(f"{what} key {name}: {value!r} must be {'>' if strict else '>='} {low}")
    if high is not None and value is not None and not value <= high:
        raise ValueError(f"{what} key {name}: {value!r} must be <= {high}")


def config_files(path: str | Path) -> list[Path]:
    """A config file and the files it builds on, its own first: `base: <file>` (a path relative to the
    config) names the config whose keys it starts from. A file that does not exist is its own chain."""
    files = [Path(path)]
    while files[-1].is_file():
        raw = yaml.safe_load(files[-1].read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or raw.get("base") is None:
            break
        base = files[-1].parent / str(raw["base"])
        if not base.is_file():
            raise ValueError(f"{files[-1]}: base {raw['base']!r}: {base} does not exist")
        if base.resolve() in {f.resolve() for f in files}:
            raise ValueError(f"{files[-1]}: base {raw['base']!r} builds on itself ({' -> '.join(map(str, files))})")
        files.append(base)
    return files


def merge_config(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` on top: a key is replaced, except that a mapping (`model_conf`,
    `decoder_conf`, ...) is updated key by key, one level deep, and that choosing another class
    (`scheduler: warmuplr`, `model: drax_ar`) takes only its own `<key>_conf`, none of the base's."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        other_class = key.endswith("_conf") and overrides.get(key[:-5], base.get(key[:-5])) != base.get(key[:-5])
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not other_class:
            out[key] = {**out[key], **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    for key, value in overrides.items():  # another class without a _conf of its own: the class's defaults
        if value != base.get(key) and f"{key}_conf" in base and f"{key}_conf" not in overrides:
            out[f"{key}_conf"] = {}
    return out


def read_config(path: str | Path) -> dict:
    """A config file's keys: those of its `base` chain (config_files), each file's own merged on top."""
    keys: dict = {}
    for f in reversed(config_files(path)):
        raw = yaml.safe_load(f.read_text(encoding="utf-8"))
        if raw is not None and not isinstance(raw, dict):
            raise ValueError(f"{f}: a config file is a mapping of keys, not a {type(raw).__name__}")
        keys = merge_config(keys, {k: v for k, v in (raw or {}).items() if k != "base"})
    return keys
