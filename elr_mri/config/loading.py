"""A run's config from its YAML file (or a run directory's config.yaml) and `--set` overrides, checked."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from elr_mri.config.checks import check_each_value, refuse_contradictions
from elr_mri.config.coercion import build_section
from elr_mri.config.schema import ConfigError, RunConfig
from elr_mri.config.strict_yaml import apply_overrides, read_yaml_file
from elr_mri.shipped import nearest_own_config

# The key under which a run's config.yaml, its summary.json and an evaluation's summary.json record, in words, how the
# scored checkpoint was chosen; its presence marks a config.yaml `elr-mri train` wrote.
SELECTION_RULE_KEY = "selection_rule"
# Top-level keys the engine adds to a run directory's config.yaml for its readers; not settings.
RUN_RECORD_KEYS = (SELECTION_RULE_KEY,)


def _config_in(folder: Path) -> Path | None:
    """A YAML file at most two folders down, not in a hidden one (`--config .` in the project: configs/...), for an
    example; no deeper, since a home folder's whole tree would take minutes to walk."""
    for pattern in ("*.yaml", "*/*.yaml", "*/*/*.yaml"):
        found = sorted(p for p in folder.glob(pattern) if not any(part.startswith(".") for part in
                                                                   p.relative_to(folder).parts))
        if found:
            return found[0]
    return None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML file, apply `key.sub=value` overrides and validate the result.

    A run directory's config.yaml loads too (its record-only keys are dropped), so a finished run's
    settings can start a new run: `--config runs/x/config.yaml --set ... --out runs/y`.
    """
    path = Path(path)
    if path.is_dir():
        example = _config_in(path)
        raise ConfigError(f"--config {path} is a folder; pass a YAML file" + (f", e.g. {example}" if example else ""))
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (pass an existing YAML file to --config"
                          f"{nearest_own_config(path)})")
    raw = read_yaml_file(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (data:, model:, ...)")
    if _is_column_mapping(raw):  # it sits in configs/ beside the run configs; its `cohort:` was the key refused
        raise ConfigError(f"{path}: a column mapping for `elr-mri import-cohort --mapping`, not a run config; pass a "
                          "run config, e.g. configs/adni/elr.yaml")
    for key in RUN_RECORD_KEYS:
        raw.pop(key, None)
    if not raw:  # before the overrides: `--set` on an empty file would train the built-in defaults
        raise ConfigError(f"{path}: the config is empty; start from one in configs/, e.g. configs/digits/elr_sym40.yaml")
    overrides = overrides or []
    given = copy.deepcopy(raw)
    try:
        apply_overrides(raw, overrides)
        source = f"{path} with --set {' '.join(overrides)}" if overrides else str(path)
        return config_from_dict(raw, source=source)
    except ConfigError:
        refused = _refused_alone(given, overrides)
        if len(refused) < 2:
            raise
        numbered = "; ".join(f"{i}) {problem}" for i, problem in enumerate(refused, 1))
        raise ConfigError(f"{path}: {len(refused)} --set values are refused: {numbered}") from None


def _is_column_mapping(raw: dict[str, Any]) -> bool:
    """Whether `raw` is an import's column-and-value mapping (configs/nacc/nacc_mapping.yaml) rather than a run."""
    if "columns" not in raw:
        return False
    from elr_mri.data.import_mapping import MAPPING_KEYS  # pandas: loaded for no run config

    return set(raw) <= set(MAPPING_KEYS)


def load_run_config(run_dir: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """A run folder's config.yaml (`load_config`), refused where it lacks the selection rule: `elr-mri train` has
    written it there as the last key since its first version, so a file without it was cut short or emptied, and
    every setting it lost would otherwise be read as its default (a run scored as another model)."""
    path = Path(run_dir) / "config.yaml"
    raw = read_yaml_file(path) if path.is_file() else {SELECTION_RULE_KEY: ""}  # a missing one: load_config says so
    if raw is None or (isinstance(raw, dict) and SELECTION_RULE_KEY not in raw):
        raise ConfigError(f"{path}: no {SELECTION_RULE_KEY}, the last key `elr-mri train` writes there, so the file "
                          "is cut short or not the run's; restore the config.yaml the run was trained with")
    return load_config(path, overrides)


def _refused_alone(raw: dict[str, Any], overrides: list[str]) -> list[str]:
    """What is wrong with each `--set` that the file's settings refuse on its own (an unknown key, a wrong type, a
    number out of its range), so that a command line with several mistakes hears of all in one go, not one per
    attempt. None when the file alone is refused: every --set would then be blamed for it. Checks between settings
    are left out: another --set may be what satisfies them."""
    try:
        check_each_value(build_section(RunConfig, copy.deepcopy(raw), prefix="", source=""), "")
    except ConfigError:
        return []
    refused = []
    for item in overrides:
        alone = copy.deepcopy(raw)
        source = f"--set {item!r}"
        try:
            apply_overrides(alone, [item])
            check_each_value(build_section(RunConfig, alone, prefix="", source=source), source)
        except ConfigError as err:
            refused.append(str(err))
    return refused


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> RunConfig:
    """Build a `RunConfig`, refusing unknown keys, values of the wrong type and contradictory settings."""
    cfg = build_section(RunConfig, raw, prefix="", source=source)
    refuse_contradictions(cfg, source)
    return cfg
