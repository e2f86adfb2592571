"""`elr-mri import-cohort`'s summary line, its warnings and its refusal of an --out that is an input, in-process."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write_scans(folder: Path, processed: list[str]) -> Path:
    """A scans manifest of one baseline scan each for ADNI participants 2, 3, ..., with these processed paths."""
    scans = folder / "scans.csv"
    pd.DataFrame({"participant_id": [f"sub-ADNI011S000{i + 2}" for i in range(len(processed))],
                  "session_id": "ses-M00", "path": "/a.nii.gz", "processed_path": processed}).to_csv(scans, index=False)
    return scans


def write_adnimerge(folder: Path) -> Path:
    """ADNIMERGE's baseline rows of participants 2 and 3."""
    adnimerge = folder / "ADNIMERGE.csv"
    pd.DataFrame({"PTID": ["011_S_0002", "011_S_0003"], "VISCODE": "bl", "DX": "CN", "DX_bl": "CN", "AGE": 74.3,
                  "Years_bl": 0.0, "PTGENDER": "Male"}).to_csv(adnimerge, index=False)
    return adnimerge


def test_an_import_that_leaves_nothing_out_names_no_list_of_reasons(tmp_path, cli_in_process):
    """The list of drops is named where it holds some: an import keeping every scan says its count alone."""
    scans, adnimerge, out = write_scans(tmp_path, ["/p.nii.gz"]), write_adnimerge(tmp_path), tmp_path / "m.csv"
    result = cli_in_process("import-cohort", "--scans", str(scans), "--adnimerge", str(adnimerge), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{out}: 1 scan imported\n"


def test_a_warning_of_several_scans_names_the_first(tmp_path, cli_in_process):
    """Two scans without a processed_path: the warning counts both and names the first in --scans' order."""
    scans, adnimerge = write_scans(tmp_path, ["", ""]), write_adnimerge(tmp_path)
    result = cli_in_process("import-cohort", "--scans", str(scans), "--adnimerge", str(adnimerge), "--out",
                            str(tmp_path / "m.csv"))
    assert "warning: 2 imported scan(s) have an empty processed_path (first: sub-ADNI011S0002/ses-M00); " in (
        result.stderr)


def test_an_out_naming_the_mapped_table_or_its_mapping_is_refused_before_writing_over_it(tmp_path, cli_in_process):
    """--out naming --table or --mapping would write the manifest over the clinical table or the mapping: refused in
    one line, both kept as they were."""
    scans = write_scans(tmp_path, ["/p.nii.gz"])
    table, mapping = tmp_path / "table.csv", tmp_path / "mapping.yaml"
    table.write_text("ID,VISIT,DX\nADNI011S0002,M00,1\n")
    mapping.write_text("columns: {participant_id: ID, session_id: VISIT, diagnosis: DX}\n"
                       "values: {diagnosis: {1: CN}}\n")
    given = {path: path.read_text() for path in (table, mapping)}
    for out in (table, mapping):
        result = cli_in_process("import-cohort", "--scans", str(scans), "--table", str(table), "--mapping",
                                str(mapping), "--out", str(out))
        assert result.returncode == 2
        refusal = f"--out {out} is one of the input files; name a new file for the manifest"
        assert result.stderr.strip().endswith(refusal)
        assert {path: path.read_text() for path in given} == given
