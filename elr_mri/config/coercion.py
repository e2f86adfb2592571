"""Typed sections from plain YAML values: each value checked against its setting's type hint.

YAML guesses types (`rate: 1e-3` is a string in YAML 1.1, `name: 2024` an int, `compile: 1` looks true), and a
dataclass would keep whatever it is given, so a wrong type would surface epochs later as a crash or a silent
misreading; here it is one line naming the key, and where it helps, what to write.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import types
import typing
from typing import Any, Literal, Union

from elr_mri.config.schema import ConfigError, RunConfig, dotted_keys
from elr_mri.config.unread import setting_text


def build_section(cls: type, raw: Any, prefix: str, source: str) -> Any:
    """An instance of the section dataclass `cls` from its mapping `raw`, refusing unknown keys and values of the
    wrong type; `prefix` (`data.`) and `source` (the file) name where a refused key stands."""
    where = prefix.rstrip(".") or "top level"
    if raw is None:  # `train:` with nothing but comments under it, or `--set train=`: not Python's "NoneType"
        raise ConfigError(f"{source}: {where} is given no settings; indent them under it, or drop it")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(raw).__name__}"
                          f"{_scalar_meant(cls, raw, where, source)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in raw if key not in names)  # str: a dict not read from YAML may hold 1: or None:
    if unknown:
        raise ConfigError(f"{source}: unknown key {prefix + unknown[0]!r}{_did_you_mean(prefix, unknown[0], names)}; "
                          f"allowed in {where}: {', '.join(sorted(names))}")
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, f"{prefix}{name}", source)
    return cls(**values)


def _scalar_meant(cls: type, raw: Any, where: str, source: str) -> str:
    """` (did you mean KEY=VALUE?)` for a word given to a section (`--set data.noise=symmetric`): the one setting of
    the section with that word among its choices (data.noise.mode), else its `name` or `mode`, which picks what the
    section is; nothing where that is no guess (`train=auto`: eight settings take auto). Written as --set wrote it
    where a --set gave it, else as the file's YAML."""
    if not isinstance(raw, str):
        return ""
    hints = typing.get_type_hints(cls)
    choosing = [key for key in ("name", "mode") if key in hints]
    keys = [key for key, hint in hints.items() if typing.get_origin(hint) is Literal and raw in typing.get_args(hint)]
    keys = (keys if len(keys) < 2 else [key for key in keys if key in choosing]) or \
        [key for key in choosing if hints[key] is str]
    if len(keys) != 1:
        return ""
    meant = f"--set {where}.{keys[0]}={raw}" if f"{where}={raw}" in source else f"{where}: {{{keys[0]}: {raw}}}"
    return f" (did you mean {meant}?)"


# Names other code gives these settings (the official ELR configs' `percent`, `arch`, `lr_scheduler`; common trainers'
# `learning_rate`, `amp`), which no spelling is near: without them `model.arch` was asked "did you mean data.mri.cache?"
_KNOWN_AS = {
    "learning_rate": "optim.lr", "wd": "optim.weight_decay", "arch": "model.name", "architecture": "model.name",
    "network": "model.name", "percent": "data.noise.rate", "asym": "data.noise.mode", "lr_scheduler": "schedule",
    "trainer": "train", "train_loss": "loss", "amp": "train.precision", "mixed_precision": "train.precision",
    "step_size": "schedule.milestones", "bs": "train.batch_size", "n_gpu": "train.device",
}


def _did_you_mean(prefix: str, name: str, names: set[str]) -> str:
    """` (did you mean KEY?)` for the key an unknown one most likely meant: the setting another code's name for it
    names (_KNOWN_AS), else the same name, or it with an s added or dropped, in another section (`optim.epochs`:
    train.epochs), which the list of its section's keys misses, else a near spelling in its own section, else in
    another. The same name first: `train.milestones` is schedule's, not a misspelt train.compile_step."""
    if name in _KNOWN_AS:
        return f" (did you mean {_KNOWN_AS[name]}?)"
    everywhere = dotted_keys(RunConfig)
    for keys, cutoff in ((everywhere, 1.0), ([prefix + known for known in names], 0.6), (everywhere, 0.6)):
        leaves = {key.rsplit(".", 1)[-1] for key in keys}
        near = difflib.get_close_matches(name, leaves, n=1, cutoff=cutoff) if cutoff < 1 else \
            [same for same in (name, name + "s", name.removesuffix("s")) if same in leaves][:1]
        if near:
            return f" (did you mean {' or '.join(sorted(k for k in keys if k.rsplit('.', 1)[-1] == near[0]))}?)"
    return ""


def _coerce(hint: Any, value: Any, key: str, source: str) -> Any:
    """`value` as the type `hint` asks for (an int where a float is wanted becomes one), refusing any other type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build_section(hint, value, prefix=f"{key}.", source=source)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key, source)
    if origin is Literal:  # by type too: 1 == True, and `compile: 1` would pass for true but not act as it
        if not any(type(value) is type(allowed) and value == allowed for allowed in args):
            choices = ", ".join(repr(a) if isinstance(a, str) else setting_text(a) for a in args)  # YAML's true
            raise ConfigError(f"{source}: {key} = {value!r} is not one of {choices}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" as a string; accept it as the number it obviously is
            return float(value)
        except ValueError:
            pass
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        quote = ""
        if hint is str and isinstance(value, (bool, int, float, datetime.date)):  # YAML made it of unquoted text
            text = "..." if isinstance(value, bool) else value  # True was yes, on or true: the text is gone
            example = f"'{text}'" if "[" in key else f"--set \"{key}='{text}'\""  # a list item: no --set of its own
            quote = f"; quote it to keep it as text, e.g. {example}"
        if hint is int:
            quote = _whole_number_meant(value)
        raise ConfigError(f"{source}: {key} must be {hint.__name__}, got {value!r}{quote}")
    return value


def _whole_number_meant(value: Any) -> str:
    """`; write it as 40000` for a count written as a float (`ema_ramp_steps: 4e4`, which YAML 1.1 reads as text,
    or `epochs: 100.0`): the number meant is plain, but a float would be a fraction of a step to the code."""
    if isinstance(value, bool) or not isinstance(value, (str, float)):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    return f"; write it as {int(number)}" if number.is_integer() else ""
