"""Turn the clinical tables users download (ADNIMERGE, NACC UDS) into a manifest for training.

Each importer joins a clinical table to the scans preprocess/ produced (its output manifest:
participant_id, session_id, path, processed_path, ...) by participant and session, and returns
the joined manifest together with the scans it could not use and why, so nothing disappears
silently. Diagnoses come out as CN / MCI / AD.

Join rule for ADNI (`adni_participant_key`, `adni_session_key`):
- participant: ADNIMERGE's PTID ("011_S_0002") matches a scan's participant_id written either the
  same way or as Clinica's BIDS label ("sub-ADNI011S0002"): both reduce to "011S0002".
- session: VISCODE "bl" and "m06" match "ses-M00"/"M00"/"bl" and "ses-M06"/"M06"/"m06" (BIDS months,
  with or without zero padding, "M000" included): both reduce to the number of months.

NACC (or any cohort) goes through a YAML column-and-value mapping (configs/nacc/nacc_mapping.yaml);
participants and sessions match after stripping BIDS "sub-"/"ses-" prefixes.

Public names: `ImportResult`, `ADNI_DIAGNOSES`, `import_adnimerge`, `import_mapped_table`,
`load_mapping`, `adni_participant_key`, `adni_session_key`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import yaml

from preprocess.inputs import read_csv_table

__all__ = [
    "ImportResult",
    "ADNI_DIAGNOSES",
    "import_adnimerge",
    "import_mapped_table",
    "load_mapping",
    "adni_participant_key",
    "adni_session_key",
]

# ADNIMERGE's visit diagnosis DX (CN, MCI, Dementia) and baseline DX_bl (CN, SMC, EMCI, LMCI, AD).
# SMC (significant memory concern) participants are cognitively normal by ADNI's criteria.
ADNI_DIAGNOSES = {
    "CN": "CN", "SMC": "CN", "EMCI": "MCI", "LMCI": "MCI", "MCI": "MCI", "Dementia": "AD", "AD": "AD",
}
MAPPING_KEYS = ("columns", "values", "require", "cohort")
MAPPED_FIELDS = ("participant_id", "session_id", "diagnosis", "age", "sex")


@dataclass
class ImportResult:
    """The joined manifest and the scans left out, each with a one-line reason."""

    manifest: pd.DataFrame  # the scans' columns plus diagnosis, age, sex, cohort
    dropped: pd.DataFrame  # participant_id, session_id, reason

    def summary(self) -> str:
        reasons = self.dropped["reason"].value_counts()
        left_out = "; ".join(f"{count} {reason}" for reason, count in reasons.items())
        imported = f"{len(self.manifest)} scans imported"
        return f"{imported}, {len(self.dropped)} left out: {left_out}" if left_out else imported


SCANS = "scans manifest (--scans)"  # the table of scans both importers join their clinical rows to


def import_adnimerge(
    adnimerge: str | Path | pd.DataFrame,
    scans: str | Path | pd.DataFrame,
    use_baseline_diagnosis: bool = False,
) -> ImportResult:
    """Diagnosis, visit age and sex of each scan from ADNIMERGE (PTID, VISCODE, DX, DX_bl, AGE, Years_bl, PTGENDER).

    The diagnosis is the visit's DX (at baseline DX_bl stands in when DX is empty); with
    `use_baseline_diagnosis` every scan gets its participant's DX_bl instead. ADNIMERGE's AGE is the
    age at baseline, so the visit age is AGE + Years_bl.
    """
    table, where = _read(adnimerge, "ADNIMERGE table (--adnimerge)")
    _require(table, ("PTID", "VISCODE", "DX", "DX_bl", "AGE", "Years_bl"), where)
    visit_dx = table["DX"].map(ADNI_DIAGNOSES)
    baseline_dx = table["DX_bl"].map(ADNI_DIAGNOSES)
    is_baseline = table["VISCODE"].astype(str).str.strip().str.lower() == "bl"
    diagnosis = baseline_dx if use_baseline_diagnosis else visit_dx.where(visit_dx.notna() | ~is_baseline, baseline_dx)
    clinical = pd.DataFrame({
        "_participant": table["PTID"].map(adni_participant_key),
        "_session": table["VISCODE"].map(adni_session_key),
        "diagnosis": diagnosis,
        "age": pd.to_numeric(table["AGE"], errors="coerce") + pd.to_numeric(table["Years_bl"], errors="coerce"),
        "sex": table["PTGENDER"].map({"Male": "M", "Female": "F"}) if "PTGENDER" in table else np.nan,
        "cohort": "ADNI",
    })
    return _join(*_read(scans, SCANS), clinical, adni_participant_key, adni_session_key)


def load_mapping(path: str | Path) -> dict[str, Any]:
    """Read and check a YAML column-and-value mapping (see configs/nacc/nacc_mapping.yaml)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mapping file not found: {path}")
    try:
        mapping = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable YAML mapping ({getattr(err, 'problem', None) or err}); "
                         "compare configs/nacc/nacc_mapping.yaml") from None
    if not isinstance(mapping, dict):
        raise ValueError(f"{path}: the top level must be a mapping with columns: and values: (see "
                         "configs/nacc/nacc_mapping.yaml)")
    unknown = sorted(set(mapping) - set(MAPPING_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}; allowed: {', '.join(MAPPING_KEYS)}")
    columns = mapping.get("columns") or {}
    missing = [f for f in ("participant_id", "session_id", "diagnosis") if f not in columns]
    if missing:
        raise ValueError(f"{path}: columns must name the table's column for {', '.join(missing)}")
    bad = sorted(set(columns) - set(MAPPED_FIELDS))
    if bad:
        raise ValueError(f"{path}: columns.{bad[0]} is not a manifest field; allowed: {', '.join(MAPPED_FIELDS)}")
    if not (mapping.get("values") or {}).get("diagnosis"):
        raise ValueError(f"{path}: values.diagnosis must map the table's diagnosis codes to classes")
    return mapping


def import_mapped_table(
    table: str | Path | pd.DataFrame, scans: str | Path | pd.DataFrame, mapping: dict[str, Any] | str | Path
) -> ImportResult:
    """Join a clinical table (e.g. NACC's UDS export) to the scans through a column-and-value mapping.

    `mapping["columns"]` names the table's column for each manifest field, `mapping["values"]`
    recodes a field's values (codes not listed are dropped, with the reason), and
    `mapping["require"]` optionally adds conditions per class (e.g. AD only when NACCALZP is 1).
    """
    if not isinstance(mapping, dict):
        mapping = load_mapping(mapping)
    table, where = _read(table, "clinical table (--table)")
    columns: dict[str, str] = mapping["columns"]
    _require(table, tuple(columns.values()), where)
    values = {field: {_code(k): v for k, v in codes.items()} for field, codes in (mapping.get("values") or {}).items()}
    clinical = pd.DataFrame({"_participant": table[columns["participant_id"]].map(_bids_key),
                             "_session": table[columns["session_id"]].map(_bids_key)})
    for field in ("diagnosis", "age", "sex"):
        if field not in columns:
            continue
        raw = table[columns[field]]
        clinical[field] = raw.map(_code).map(values[field]) if field in values else raw
    if "age" in clinical:
        clinical["age"] = pd.to_numeric(clinical["age"], errors="coerce")
    for label, conditions in (mapping.get("require") or {}).items():
        for column, allowed in conditions.items():
            _require(table, (column,), where)
            fails = (clinical["diagnosis"] == label) & ~table[column].map(_code).isin({_code(a) for a in allowed})
            clinical.loc[fails, "diagnosis"] = np.nan
    clinical["cohort"] = mapping.get("cohort", "")
    return _join(*_read(scans, SCANS), clinical, _bids_key, _bids_key)


def adni_participant_key(value: Any) -> str:
    """"011_S_0002" and "sub-ADNI011S0002" → "011S0002"."""
    text = re.sub(r"^sub-", "", str(value).strip(), flags=re.IGNORECASE)
    text = re.sub(r"^ADNI", "", text, flags=re.IGNORECASE)
    return re.sub(r"[^0-9A-Za-z]", "", text).upper()


def adni_session_key(value: Any) -> str:
    """"bl", "M00", "ses-M000" → "0"; "m06", "ses-M06", "M6" → "6"; anything else upper-cased as is."""
    text = re.sub(r"^ses-", "", str(value).strip(), flags=re.IGNORECASE).upper()
    if text == "BL":
        return "0"
    months = re.fullmatch(r"M(\d+)", text)
    return str(int(months.group(1))) if months else text


def _bids_key(value: Any) -> str:
    return re.sub(r"^(sub|ses)-", "", _code(value), flags=re.IGNORECASE)


def _code(value: Any) -> str:
    """A table value as a string key: 1, 1.0 and "1" are the same code."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text[:-2] if re.fullmatch(r"-?\d+\.0", text) else text


def _join(
    scans: pd.DataFrame,
    scans_source: str,
    clinical: pd.DataFrame,
    participant_key: Callable[[Any], str],
    session_key: Callable[[Any], str],
) -> ImportResult:
    """Attach each scan's clinical row; list scans without one, with two, or without a usable diagnosis."""
    _require(scans, ("participant_id", "session_id"), scans_source)
    keys = pd.DataFrame({"_participant": scans["participant_id"].map(participant_key),
                         "_session": scans["session_id"].map(session_key)})
    counts = clinical.groupby(["_participant", "_session"]).size().rename("_matches").reset_index()
    clinical = clinical.drop_duplicates(["_participant", "_session"], keep=False)
    imported = [c for c in clinical.columns if not c.startswith("_")]
    joined = pd.concat([scans.drop(columns=[c for c in imported if c in scans.columns]), keys], axis=1)
    joined = joined.merge(counts, on=["_participant", "_session"], how="left").merge(
        clinical, on=["_participant", "_session"], how="left"
    )
    reason = pd.Series("", index=joined.index)
    reason[joined["diagnosis"].isna()] = "without a usable diagnosis at that visit"
    reason[joined["_matches"] > 1] = "matching several clinical rows"
    reason[joined["_matches"].isna()] = "without a clinical row for the participant and session"
    dropped = joined.loc[reason != "", ["participant_id", "session_id"]].assign(reason=reason[reason != ""])
    manifest = joined[reason == ""].drop(columns=["_participant", "_session", "_matches"]).reset_index(drop=True)
    return ImportResult(manifest=manifest, dropped=dropped.reset_index(drop=True))


def _read(source: str | Path | pd.DataFrame, what: str) -> tuple[pd.DataFrame, str]:
    """(table, what and where it is, for messages): `what` names the table and the option it came from."""
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True), what
    path = Path(source)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path}: is a folder; pass the table's CSV file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: file not found")
    return read_csv_table(path, dtype=str, sep="\t" if path.suffix in (".tsv", ".tab") else ","), f"{what} {path}"


def _require(table: pd.DataFrame, columns: tuple[str, ...], where: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)}")
