"""Strict YAML for configs and `--set` values: YAML as the user wrote it, not as YAML 1.1 may reread it.

A key given twice, `on:` read as True, `010` read as 8: each would train other settings than the file shows without
a word, so each is refused here as one line naming the line and what to write instead.
"""

from __future__ import annotations

import collections.abc
import re
from pathlib import Path
from typing import Any

import yaml

from elr_mri.config.schema import ConfigError


def read_yaml_file(path: Path) -> Any:
    """The YAML document in `path` (None where the file is empty), a problem in it as one ConfigError line."""
    try:  # UTF-8 as the refusal below says, not the locale's encoding (ASCII under LC_ALL=C without coercion)
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the config as UTF-8") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        if isinstance(err, yaml.reader.ReaderError):  # it has a position in characters, no mark
            line = text.count("\n", 0, err.position)
        where = f" line {line + 1}" if line is not None else ""
        problem = _problem(err)
        what = problem if isinstance(err, _Refused) else f"not valid YAML ({problem})"
        if problem == _TAB_PROBLEM:  # the editor's indentation, which the scanner's words do not name
            what = _TAB_FIX
        raise ConfigError(f"{path}{where}: {what}") from None


_TAB_PROBLEM = f"found character {chr(9)!r} that cannot start any token"  # PyYAML's words for a tab
_TAB_FIX = "a tab, where YAML takes only spaces (to indent, and after a key's colon); replace it with spaces"


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML for configs and `--set` values, read as written: it refuses a key given twice in one mapping (plain
    YAML keeps the last one silently, so a second `train:` block would replace the whole first one), reads a plain
    key as its text and refuses numbers YAML 1.1 reads in another base (`_decimal_number`)."""


class _Refused(yaml.constructor.ConstructorError):
    """YAML that parses but that `_UniqueKeyLoader` refuses; `problem` says why and what to write instead."""


def _problem(err: yaml.YAMLError) -> str:
    """What YAML refused, in one line: a control character's own text is two lines, naming a character offset."""
    if isinstance(err, yaml.reader.ReaderError):
        return f"the control character U+{err.character:04X}, which YAML does not allow; delete it"
    return str(getattr(err, "problem", err))


def parse_yaml_value(text: str) -> Any:
    """A `--set` value, read as a config file's values are, with the same refusals."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def _mapping_without_repeats(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """SafeLoader's mapping, after refusing a repeated key, also inside mappings merged in with `<<:` (which
    SafeLoader flattens without constructing them); a key that is no hashable value is left to SafeLoader,
    which refuses it in its own words."""
    _refuse_repeated_keys(loader, node, deep)
    return loader.construct_mapping(node, deep=deep)


def _refuse_repeated_keys(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool) -> None:
    seen = set()
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for mapping in merged:
                if isinstance(mapping, yaml.MappingNode):
                    _refuse_repeated_keys(loader, mapping, deep)
            continue
        if isinstance(key_node, yaml.ScalarNode) and key_node.style is None:
            key_node.tag = "tag:yaml.org,2002:str"  # a key names a setting: `on:` is 'on', not True
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, collections.abc.Hashable):
            continue
        if key in seen:
            raise _Refused(problem=f"the key {key!r} is given twice in one section; keep one",
                           problem_mark=key_node.start_mark)
        seen.add(key)


_INT_TAG = "tag:yaml.org,2002:int"


def _decimal_number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | float:
    """SafeLoader's int or float, refusing the YAML 1.1 forms that read as another number than the one written:
    `epochs: 010` is 8 (octal), 0x10 is 16, 0b10 is 2 and `lr: 1:30` is 90.0 (base 60). Underscores between digits
    (1_000) are accepted: they change no value. 0o17 is text in YAML 1.1, which a number setting refuses."""
    value = loader.construct_yaml_int(node) if node.tag == _INT_TAG else loader.construct_yaml_float(node)
    digits = node.value.lstrip("+-").replace("_", "")
    if ":" in digits or (node.tag == _INT_TAG and digits.startswith("0") and digits != "0"):
        example = f", e.g. {int(node.value)}" if digits.isdecimal() else ""  # a leading 0 is padding, mostly
        raise _Refused(problem=f"{node.value} reads as {value} in YAML, which takes a leading 0 as octal, 0x as hex, "
                               f"0b as binary and a ':' as base 60; write the number in decimal{example}, or quote it "
                               "if it is text", problem_mark=node.start_mark)
    return value


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats)
_UniqueKeyLoader.add_constructor(_INT_TAG, _decimal_number)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float", _decimal_number)


# The words YAML reads as null (and an empty value, which a --set is not given on purpose).
_NULL_WORDS = ("null", "Null", "NULL", "~")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> None:
    """Set dotted keys in place: `train.epochs=5` or `loss.name=elr` (values parsed as YAML). A mapping given to a
    section (`optim={lr: 0.1}`) sets the keys it names and keeps the section's others, as one `--set` each would."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=5")
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            if node.get(part) is None:  # absent, or a section left empty in the file (`data:` with nothing under it)
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
        try:
            parsed = parse_yaml_value(value)
        except _Refused as err:
            raise ConfigError(f"--set {item!r}: {err.problem}") from None
        except yaml.YAMLError as err:
            if _problem(err) == _TAB_PROBLEM:  # pasted from a table: quoting, the advice below, would keep it
                raise ConfigError(f"--set {item!r}: {_TAB_FIX}") from None
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({_problem(err)}); "
                              "quote it, e.g. --set 'key=[1, 2]'") from None
        _refuse_lost_text(item, key, value, parsed)
        node[parts[-1]] = _merged(node.get(parts[-1]), parsed)


def _refuse_lost_text(item: str, key: str, value: str, parsed: Any) -> None:
    """Refuse a --set `value` that YAML reads as less than was typed, which would train other settings without a
    word: from a # first or after a space it is a comment (`data.root=/scans #2` is '/scans'), and an empty value is
    null (`model.pretrained_checkpoint=$UNSET` trained from scratch)."""
    if re.search(r"(^|\s)#", value) and "#" not in str(parsed):
        left = "nothing" if parsed is None else repr(parsed)
        text = parsed is None or isinstance(parsed, str)
        fix = f"quote the value to keep it, e.g. --set \"{key}='{value}'\"" if text else "drop the comment"
        raise ConfigError(f"--set {item!r}: YAML reads the text from its # on as a comment, leaving {left}; {fix}")
    if parsed is None and value.strip() not in _NULL_WORDS:
        raise ConfigError(f"--set {item!r}: no value after '=' (an unset shell variable?); give one, or write null "
                          "where the setting may be left unset")


def _merged(old: Any, new: Any) -> Any:
    """`new` over `old`, key by key where both are mappings."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **{key: _merged(old.get(key), value) for key, value in new.items()}}
    return new
