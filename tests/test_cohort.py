"""Cohort manifests: validation, ADNIMERGE / NACC importers, participant splits and the leakage guard."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from elr_mri.data import clinical_join, import_mapping, import_tables, mapped_import, table_values, visit_dates
from elr_mri.data.cohort import ManifestError, label_indices, load_manifest, true_label_indices
from elr_mri.data.import_keys import adni_diagnosis, adni_participant_key, adni_session_key, mapped_session_key
from elr_mri.data.import_mapping import load_mapping
from elr_mri.data.adni_import import import_adnimerge
from elr_mri.data.mapped_import import import_mapped_table
from elr_mri.data.splits import (
    LeakageError,
    check_no_leakage,
    check_no_shared_scans,
    diagnoses_left_out,
    load_splits,
    participant_diagnosis,
    run_participants,
    split_balance,
    split_participants,
)
from elr_mri.data.table_values import has_usable_status
from preprocess.inputs import InputError

CLASSES = ["CN", "MCI", "AD"]
NACC_MAPPING = Path(__file__).resolve().parents[1] / "configs" / "nacc" / "nacc_mapping.yaml"


def write_manifest(tmp_path: Path, rows: list[dict], touch: bool = True) -> Path:
    for row in rows:
        if touch and row.get("path"):
            (tmp_path / row["path"]).write_bytes(b"")
    path = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def scan(participant: str, session: str, diagnosis: str = "CN", age: float | None = 70.0, **extra) -> dict:
    return {"participant_id": participant, "session_id": session, "path": f"{participant}_{session}.nii.gz",
            "diagnosis": diagnosis, "age": age, **extra}


# --- manifest validation -------------------------------------------------------------------------------

def test_load_manifest_resolves_paths_and_normalises_diagnoses(tmp_path):
    path = write_manifest(tmp_path, [scan("P1", "M00", "cn"), scan("P2", "M00", " ad ", age=None)])
    frame = load_manifest(path, CLASSES)
    assert frame["diagnosis"].tolist() == ["CN", "AD"]
    assert frame["image_path"][0] == str(tmp_path / "P1_M00.nii.gz")
    assert np.isnan(frame["age"][1])
    assert label_indices(frame["diagnosis"], CLASSES).tolist() == [0, 2]


def test_an_age_typed_with_a_decimal_comma_is_named_as_such(tmp_path):
    """"70,5", quoted in a comma-separated table as a European spreadsheet writes it, was only "not a number" in
    training and an imported age dropped with a warning: the one fix, a decimal point, is said."""
    path = write_manifest(tmp_path, [scan("007", "01", age="70,5"), scan("008", "01")])
    with pytest.raises(ManifestError, match=r"line 2 \(participant '007', session '01'\): age '70,5' is not a number "
                                            r"\(a decimal comma\? write 70\.5\)$"):
        load_manifest(path, CLASSES)
    adnimerge = tmp_path / "ADNIMERGE.csv"
    adnimerge.write_text('PTID,VISCODE,DX,DX_bl,AGE,Years_bl\n011_S_0001,bl,CN,CN,"73,5",0\n')
    scans = pd.DataFrame({"participant_id": ["011_S_0001"], "session_id": "bl", "path": ["a"]})
    assert import_adnimerge(adnimerge, scans).age_problems == [
        "011_S_0001/bl: AGE '73,5' is not a number (a decimal comma? write 73.5)"]


def test_a_clinical_table_of_a_header_alone_is_refused_in_one_line(tmp_path):
    """An export that stopped after its header (or a filter that kept no visit) ended in a pandas traceback."""
    scans = pd.DataFrame({"participant_id": ["011_S_0001"], "session_id": "bl", "path": ["a"]})
    adnimerge = tmp_path / "ADNIMERGE.csv"
    adnimerge.write_text("PTID,VISCODE,DX,DX_bl,AGE,Years_bl\n")
    with pytest.raises(ValueError, match=rf"^ADNIMERGE table \(--adnimerge\) {adnimerge}: has a header but no rows; "
                                         "export the table again with its visits$"):
        import_adnimerge(adnimerge, scans)
    uds = tmp_path / "UDS.csv"
    uds.write_text("NACCID,NACCVNUM,VISITYR,VISITMO,VISITDAY,BIRTHYR,BIRTHMO,NACCUDSD,NACCAGE,SEX,NACCALZP\n")
    with pytest.raises(ValueError, match=rf"^clinical table \(--table\) {uds}: has a header but no rows; export"):
        import_mapped_table(uds, scans.assign(participant_id="NACC000001", session_id="ses-01"), NACC_MAPPING)


def test_a_column_named_twice_in_a_manifest_is_refused_not_read_from_its_first(tmp_path):
    """A corrected diagnosis pasted as a second `diagnosis` column: pandas read it as "diagnosis.1" and training
    took the first, the labels it was meant to replace, without a word."""
    (tmp_path / "a.nii.gz").write_bytes(b"")
    path = tmp_path / "manifest.csv"
    path.write_text("participant_id,session_id,path,diagnosis,age, diagnosis\n007,01,a.nii.gz,CN,70,AD\n")
    with pytest.raises(ValueError, match="manifest.csv: the header names column 'diagnosis' twice, and only the first "
                                         "would be read; keep one of them, or rename the other$"):
        load_manifest(path, CLASSES)


def test_an_id_read_as_missing_is_named_as_such_not_only_as_empty(tmp_path):
    """A participant typed NA is read as a missing value: "empty participant_id" sent the user to a cell that is not."""
    path = write_manifest(tmp_path, [scan("NA", "M00"), scan("P2", "M00")])
    with pytest.raises(ManifestError, match=r"line 2 \(participant '', session 'M00'\): no participant_id \(empty, or a "
                                            r"text such as NA or None that tables read as missing\)"):
        load_manifest(path, CLASSES)


def test_a_manifest_typed_with_spaces_around_its_column_names_is_read_with_its_ids_as_text(tmp_path):
    """Typed as `participant_id, session_id , path`, training refused it for missing the columns it shows (preprocess
    reads it); named " session_id", that column also escaped the ids' text reading: session 01 came out as 1."""
    for name in ("0042_01.nii.gz", "0043_02.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    path = tmp_path / "manifest.csv"
    path.write_text("participant_id, session_id , path,diagnosis , age\n0042,01,0042_01.nii.gz,CN,70\n"
                    "0043,02,0043_02.nii.gz,AD,71.5\n")
    frame = load_manifest(path, CLASSES)
    assert frame[["participant_id", "session_id", "diagnosis"]].values.tolist() == [["0042", "01", "CN"],
                                                                                   ["0043", "02", "AD"]]
    assert frame["age"].tolist() == [70.0, 71.5]


def test_a_manifest_made_on_windows_finds_its_scans_by_backslashed_relative_paths(tmp_path):
    """`scans\\P1.nii.gz`, from a table written on Windows, was one file name on Linux and macOS: not found."""
    (tmp_path / "scans").mkdir()
    path = write_manifest(tmp_path, [scan("P1", "M00", path="scans/P1.nii.gz")])
    path.write_text(path.read_text().replace("scans/", "scans\\"))
    assert load_manifest(path, CLASSES)["image_path"][0] == str(tmp_path / "scans" / "P1.nii.gz")


def test_processed_path_is_loaded_and_failed_scans_are_dropped_loudly(tmp_path, caplog):
    (tmp_path / "p1.nii.gz").write_bytes(b"")
    rows = [scan("P1", "M00", processed_path="p1.nii.gz", status="ok"),
            scan("P2", "M00", processed_path="", status="failed"), scan("P3", "M00", processed_path="", status=None)]
    path = write_manifest(tmp_path, rows, touch=False)
    with caplog.at_level(logging.WARNING):
        frame = load_manifest(path, CLASSES)
    assert frame["participant_id"].tolist() == ["P1"]
    assert frame["image_path"][0] == str(tmp_path / "p1.nii.gz")
    assert "dropped 2 scan(s) whose preprocessing status is not ok/done/skipped (failed: 1, empty: 1)" in caplog.text


def test_every_problem_is_one_line_naming_its_row(tmp_path):
    rows = [
        scan("P1", "M00"),
        scan("P2", "M00", "Dementia"),
        scan("P3", "M00", age=None),
        scan("P1", "M00"),
        scan("P4", "M00"),
        scan("P5", "M00", age="seventy"),
        scan("sub-p5", "M06"),  # the split would put one person in two splits
        scan("sub-p5", "M12"),
    ]
    path = write_manifest(tmp_path, rows)
    (tmp_path / "P4_M00.nii.gz").unlink()
    with pytest.raises(ManifestError) as err:
        load_manifest(path, CLASSES, require_age=True)
    lines = str(err.value).splitlines()
    assert lines[0].endswith("6 problem(s):")
    assert ("line 8 (participant 'sub-p5', session 'M06'): the participant of line 7 spelled another way ('P5'); "
            "write one ID per person") in str(err.value)
    assert "line 7 (participant 'P5', session 'M00'): age 'seventy' is not a number" in str(err.value)
    for scan_file in tmp_path.glob("*.nii.gz"):  # the images' folder moved: said once, above the rows
        scan_file.unlink()
    with pytest.raises(ManifestError, match=r"problem\(s\) \(not one of the 8 scans' files is there: did their folder "
                                            r"move, or is its drive not mounted\? point path at where they are now\):"):
        load_manifest(path, CLASSES, require_age=True)
    assert "P5', session 'M00'): no age" not in str(err.value)
    # lines of the file, the header being line 1
    assert "line 3 (participant 'P2', session 'M00'): diagnosis 'Dementia' is not one of CN, MCI, AD (the run's " \
           "classes, data.mri.classes; a cohort's own codes, such as Dementia, are recoded into these by `elr-mri " \
           "import-cohort`)" in lines[1]
    assert "line 4 (participant 'P3', session 'M00'): no age" in str(err.value)
    assert "line 5 (participant 'P1', session 'M00'): duplicate of line 2" in str(err.value)
    assert "line 6 (participant 'P4', session 'M00'): file not found" in str(err.value)


def test_a_folder_given_for_the_manifest_is_said_to_be_one(tmp_path):
    with pytest.raises(ManifestError, match=rf"^manifest {tmp_path}: is a folder, not a file \(pass the file in it\)$"):
        load_manifest(tmp_path, CLASSES, require_age=True)
    with pytest.raises(ManifestError, match=rf"^manifest {tmp_path / 'gone.csv'}: no such file$"):
        load_manifest(tmp_path / "gone.csv", CLASSES, require_age=True)


def test_scans_of_a_class_the_run_leaves_out_are_dropped_in_one_warning_and_other_codes_refused(tmp_path, caplog):
    """data.mri.classes [CN, AD] on a cohort with MCI trains CN vs AD on the other scans (the official code's
    choice); a code that is none of the project's diagnoses is still refused, one line for all its rows."""
    rows = [scan("P1", "M00", true_diagnosis="MCI"), scan("P2", "M00", "MCI", true_diagnosis="MCI"),
            scan("P3", "M00", "mci", true_diagnosis="CN"),
            scan("P4", "M00", "AD", true_diagnosis="AD")]
    with caplog.at_level(logging.WARNING):
        frame = load_manifest(write_manifest(tmp_path, rows), ["CN", "AD"], require_age=True)
    assert list(frame.participant_id) == ["P1", "P4"]
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "left out 2 scan(s) diagnosed MCI, not among the run's classes CN, AD (data.mri.classes)"]
    assert list(true_label_indices(frame.true_diagnosis, ["CN", "AD"])) == [-1, 1]  # wrong, with no right class
    with pytest.raises(ManifestError, match=r"diagnosis 'AD' is not one of CN, Alzheimer"):  # a typo drops nothing
        load_manifest(write_manifest(tmp_path, rows), ["CN", "Alzheimer"], require_age=True)
    with pytest.raises(ManifestError, match=r"manifest.csv: every scan is diagnosed MCI, which the run's classes CN, AD "
                                            r"leave out \(data.mri.classes\); pass a manifest with scans of those"):
        load_manifest(write_manifest(tmp_path, rows[1:3]), ["CN", "AD"], require_age=True)
    rows += [scan("P5", "M00", "Dementia", true_diagnosis="AD"), scan("P6", "M00", "Dementia", true_diagnosis="AD")]
    with pytest.raises(ManifestError) as err:
        load_manifest(write_manifest(tmp_path, rows), ["CN", "AD"], require_age=True)
    assert str(err.value).splitlines()[1:] == [
        "  line 6 (participant 'P5', session 'M00') and 1 more row(s): diagnosis 'Dementia' is not one of CN, AD (the "
        "run's classes, data.mri.classes; a cohort's own codes, such as Dementia, are recoded into these by `elr-mri "
        "import-cohort`)"]


def test_a_scan_without_a_diagnosis_is_said_to_have_none(tmp_path):
    """An empty cell (or NA, which tables read as missing) was quoted as diagnosis '' with advice to recode a cohort's
    own codes through import-cohort, which an empty cell is not."""
    rows = [scan("P1", "M00"), scan("P2", "M00", None), scan("P3", "M00", "NA"), scan("P4", "M00", "AD")]
    with pytest.raises(ManifestError) as err:
        load_manifest(write_manifest(tmp_path, rows), CLASSES)
    assert str(err.value).splitlines()[1:] == [
        "  line 3 (participant 'P2', session 'M00') and 1 more row(s): no diagnosis (empty, or a text such as NA or "
        "None that tables read as missing); give the scan one of CN, MCI, AD, or remove its row"]


def test_missing_age_is_fine_when_the_model_does_not_use_it(tmp_path):
    path = write_manifest(tmp_path, [scan("P1", "M00", age=None)])
    assert len(load_manifest(path, CLASSES, require_age=False)) == 1


def test_a_missing_age_column_is_one_line_and_a_folder_or_a_pipe_is_named_as_one(tmp_path):
    rows = [{k: v for k, v in scan(f"P{i}", "M00").items() if k != "age"} for i in range(30)]
    with pytest.raises(ManifestError, match=r"manifest.csv: no age column, and the model uses age") as err:
        load_manifest(write_manifest(tmp_path, rows), CLASSES, require_age=True)
    assert "\n" not in str(err.value)  # one line, not one per row
    (tmp_path / "scans").mkdir()
    folder = write_manifest(tmp_path, [scan("P1", "M00", path="scans")], touch=False)
    with pytest.raises(ManifestError, match=rf"{tmp_path / 'scans'} is a folder, not a NIfTI file; point path at"):
        load_manifest(folder, CLASSES)
    os.mkfifo(tmp_path / "pipe.nii.gz")  # not opened: the check asks the file system what it is
    pipe = write_manifest(tmp_path, [scan("P1", "M00", path="pipe.nii.gz")], touch=False)
    with pytest.raises(ManifestError, match=rf"{tmp_path / 'pipe.nii.gz'} is not a regular file \(a named pipe, socket "
                                            r"or device\); point path at the .nii or .nii.gz file$"):
        load_manifest(pipe, CLASSES)


def test_a_row_without_its_path_is_said_to_have_none(tmp_path):
    """An empty path cell was read as the manifest's own folder: the row was said to name a folder, and a second
    such row to name the same file as the first."""
    rows = [scan("P1", "M00"), scan("P2", "M00", path=None), scan("P3", "M00", path="  ")]
    with pytest.raises(ManifestError) as err:
        load_manifest(write_manifest(tmp_path, rows), CLASSES)
    assert str(err.value).splitlines()[1:] == [
        f"  line {line} (participant 'P{line - 1}', session 'M00'): no path (the cell is empty); fill in the scan's "
        ".nii or .nii.gz file, or remove its row" for line in (3, 4)]


def test_missing_columns_are_named(tmp_path):
    """Without diagnoses, as preprocess writes its manifest, the refusal says where they come from."""
    path = tmp_path / "m.csv"
    pd.DataFrame({"participant_id": ["P1"], "path": ["x"]}).to_csv(path, index=False)
    with pytest.raises(ManifestError, match="missing column\\(s\\) session_id, diagnosis \\(it has participant_id, "
                                            "path\\); a manifest needs participant_id, session_id, path or "
                                            "processed_path, diagnosis; "
                                            "preprocess's manifest has no diagnoses: `elr-mri import-cohort` joins a "
                                            "cohort's \\(ADNIMERGE, NACC\\) to it$"):
        load_manifest(path, CLASSES)
    pd.DataFrame({"participant_id": ["P1"], "path": ["x"], "diagnosis": ["CN"]}).to_csv(path, index=False)
    with pytest.raises(ManifestError, match="a manifest needs participant_id, session_id, path or processed_path, "
                                            "diagnosis$"):
        load_manifest(path, CLASSES)


def test_a_manifest_needs_either_scan_column_and_says_so(tmp_path):
    """Without `path`, "missing column(s) path" hid that preprocess's `processed_path` would do, and a manifest of
    `processed_path` alone, which README allows, was refused for lacking `path`."""
    path = tmp_path / "m.csv"
    pd.DataFrame({"participant_id": ["P1"], "session_id": ["M00"], "diagnosis": ["CN"]}).to_csv(path, index=False)
    with pytest.raises(ManifestError, match=f"^{re.escape(str(path))}: missing column\\(s\\) path or processed_path "
                                            "\\(it has participant_id, session_id, diagnosis\\);"):
        load_manifest(path, CLASSES)
    (tmp_path / "p1.nii.gz").write_bytes(b"")
    pd.DataFrame({"participant_id": [" P1"], "session_id": ["M00"], "processed_path": ["p1.nii.gz"],
                  "diagnosis": ["CN"]}).to_csv(path, index=False)
    frame = load_manifest(path, CLASSES)
    assert frame[["participant_id", "image_path"]].values.tolist() == [["P1", str(tmp_path / "p1.nii.gz")]]


def test_a_required_column_spelled_otherwise_is_named_beside_the_one_missing(tmp_path):
    """"Participant_ID" or "Session ID", as spreadsheets and other tools write them: "missing column(s)
    participant_id" alone sent the user looking for a column the file seems to have."""
    path = tmp_path / "m.csv"
    path.write_text("Participant_ID,Session ID,path,diagnosis\n007,01,x,CN\n")
    with pytest.raises(ManifestError, match="missing column\\(s\\) participant_id, session_id \\(spelled "
                                            "'Participant_ID', 'Session ID' in it; it has Participant_ID, Session ID, "
                                            "path, diagnosis\\)"):
        load_manifest(path, CLASSES)


# --- ADNIMERGE ---------------------------------------------------------------------------------------

ADNIMERGE = pd.DataFrame({
    "PTID": ["011_S_0002", "011_S_0002", "011_S_0002", "022_S_0007", "022_S_0007", "033_S_0009", "044_S_0001"],
    "VISCODE": ["bl", "m06", "m12", "bl", "m24", "bl", "bl"],
    "DX_bl": ["EMCI", "EMCI", "EMCI", "AD", "AD", "SMC", "LMCI"],
    "DX": ["MCI", "", "Dementia", "", "Dementia", "CN", "MCI"],
    "AGE": ["70.2", "70.2", "70.2", "81.0", "81.0", "65.5", "77.0"],
    "Years_bl": ["0", "0.5", "1.0", "0", "2.0", "0", "0"],
    "PTGENDER": ["Male", "Male", "Male", "Female", "Female", "Female", "Male"],
})


def test_adni_keys_match_ptid_viscode_and_bids_labels():
    assert adni_participant_key("011_S_0002") == adni_participant_key("sub-ADNI011S0002") == "011S0002"
    composed, decomposed = "sub-\u00c401", "sub-A\u030801"  # Ä as one character, and as A + combining diaeresis
    assert adni_participant_key(composed) == adni_participant_key(decomposed) != adni_participant_key("sub-A01")
    assert adni_participant_key("sub-Ä01") != adni_participant_key("sub-Ö01")  # two people, not one spelled twice
    assert adni_session_key("bl") == adni_session_key("ses-M00") == adni_session_key("M000") == "0"
    assert adni_session_key("m06") == adni_session_key("ses-M06") == adni_session_key("M6") == "6"
    assert adni_session_key("ses-M06_run-2") == "6"  # preprocess's name for one of several T1s of a session
    assert adni_session_key("sc") == adni_session_key("scmri") == "0"  # ADNI1's baseline MRI
    assert mapped_session_key("ses-01") == mapped_session_key("01_run-2") == mapped_session_key(1.0) == "1"
    assert mapped_session_key("visit_2") == "VISIT_2" and adni_session_key("2015_03_02") == "2015_03_02"
    dates = ("ses-20120304", "2012-03-04", "2012/03/04 00:00:00", "2012_03_04", "20120304")  # BIDS and exports
    assert {mapped_session_key(date) for date in dates} == {"20120304"}
    assert mapped_session_key("03/04/2012") == "03/04/2012"  # month or day first: not guessed


def test_participant_keys_keep_digits_apart_and_read_ids_of_digits_as_numbers():
    """Dropping every separator made 1.5 and 15 (12.0 and 120) one person, while 007 and the 7 a spreadsheet re-saves
    it as were two."""
    key = adni_participant_key
    assert key("1.5") == key("1_5") == key("1 - 5") != key("15")
    assert key("12.5") != key("125") and key("2_13") != key("21_3") and key("P1.5") != key("P15")
    assert key("007") == key("7") == key("sub-007") == key("7.0") == key("_007") == "7"  # 7.0: a float column's 7
    assert key("12.0") == "12" != key("120")
    assert key("P007") != key("P7")  # a spreadsheet keeps text as it is: only IDs of digits alone are numbers
    assert key("ADNI_011_S_0002") == key("011 S 0002") == "011S0002"


def test_import_adnimerge_maps_diagnoses_and_visit_age():
    scans = pd.DataFrame({
        "participant_id": ["sub-ADNI011S0002", "sub-ADNI011S0002", "011_S_0002", "sub-ADNI022S0007",
                           "sub-ADNI022S0007", "sub-ADNI033S0009", "sub-ADNI099S0099"],
        "session_id": ["ses-M00", "ses-M06", "m12", "ses-M00", "ses-M24", "ses-M00", "ses-M00"],
        "path": [f"s{i}.nii.gz" for i in range(7)],
        "processed_path": [f"p{i}.nii.gz" for i in range(7)],
        "status": "ok",
    })
    result = import_adnimerge(ADNIMERGE, scans)
    m = result.manifest.set_index(["participant_id", "session_id"])
    assert m.loc[("sub-ADNI011S0002", "ses-M00"), "diagnosis"] == "MCI"
    assert m.loc[("011_S_0002", "m12"), "diagnosis"] == "AD"  # Dementia → AD
    assert m.loc[("011_S_0002", "m12"), "age"] == pytest.approx(71.2)  # AGE at baseline + Years_bl
    assert m.loc[("sub-ADNI022S0007", "ses-M00"), "diagnosis"] == "AD"  # empty DX at bl: DX_bl stands in
    assert m.loc[("sub-ADNI033S0009", "ses-M00"), ["diagnosis", "sex", "cohort"]].tolist() == ["CN", "F", "ADNI"]
    assert m.loc[("sub-ADNI022S0007", "ses-M24"), "processed_path"] == "p4.nii.gz"
    dropped = dict(zip(result.dropped["participant_id"] + "/" + result.dropped["session_id"], result.dropped["reason"]))
    assert dropped == {
        "sub-ADNI011S0002/ses-M06": "without a diagnosis (DX) at that visit",  # empty DX after baseline
        "sub-ADNI099S0099/ses-M00": "without a clinical row for the participant (not in the table under that id)",
    }
    assert result.summary().startswith("5 scans imported, 2 left out")
    one = import_adnimerge(ADNIMERGE, scans[scans["participant_id"] == "sub-ADNI033S0009"])
    assert one.summary() == "1 scan imported"  # not "1 scans"


def test_an_adni_visit_age_is_written_to_the_decimals_adnimerge_gives_not_with_float_noise():
    """AGE 86.1 + Years_bl 1.00205 was written 87.10204999999999 in the manifest (and so in evaluate's age warning)."""
    adnimerge = pd.DataFrame({"PTID": "011_S_0001", "VISCODE": ["bl", "m12", "m03"], "DX": "CN", "DX_bl": "CN",
                              "AGE": "86.1", "Years_bl": ["0", "1.00205", "0.251882"]})
    scans = pd.DataFrame({"participant_id": "011_S_0001", "session_id": ["bl", "m12", "m03"], "path": list("abc")})
    manifest = import_adnimerge(adnimerge, scans).manifest
    assert manifest["age"].tolist() == [86.1, 87.10205, 86.351882]  # every decimal given kept
    assert manifest.to_csv(index=False).count("87.10205,") == 1


def test_an_imported_age_of_0_is_named_and_written_as_no_age_as_training_refuses_it():
    """AGE 0 (a missing age typed as 0) was imported as it was, and training refused the manifest row by row."""
    adnimerge = pd.DataFrame({"PTID": ["011_S_0001", "011_S_0002"], "VISCODE": "bl", "DX": "CN", "DX_bl": "CN",
                              "AGE": ["0", "70"], "Years_bl": "0"})
    scans = pd.DataFrame({"participant_id": adnimerge["PTID"], "session_id": "bl", "path": list("ab")})
    result = import_adnimerge(adnimerge, scans)
    assert result.age_problems == ["011_S_0001/bl: age 0 is outside 18-120 years"]
    assert result.manifest["age"].isna().tolist() == [True, False]


def test_imported_ages_that_are_not_years_at_the_scan_are_named_and_a_blank_baseline_year_is_0():
    """'73 years' became an empty age and 900 was imported as it was, both unnamed until training refused them."""
    adnimerge = pd.DataFrame({"PTID": ["011_S_0001", "011_S_0002", "011_S_0003", "011_S_0004"], "VISCODE": "bl",
                              "DX": "CN", "DX_bl": "CN", "AGE": ["73 years", "71", "900", "70"],
                              "Years_bl": ["0", "soon", "0", ""]})
    scans = pd.DataFrame({"participant_id": adnimerge["PTID"], "session_id": "bl", "path": list("abcd")})
    result = import_adnimerge(adnimerge, scans)
    assert result.age_problems == ["011_S_0001/bl: AGE '73 years' is not a number",
                                   "011_S_0002/bl: Years_bl 'soon' is not a number",
                                   "011_S_0003/bl: age 900 is outside 18-120 years"]
    ages = result.manifest["age"]  # every use of a manifest refuses 900: written as no age, as the text ones
    assert ages.isna().tolist() == [True, True, True, False] and ages[3] == 70.0  # a blank baseline year is 0
    assert "_age_problem" not in result.manifest.columns
    table = pd.DataFrame({"ID": ["n1", "n2"], "VISIT": [1, 1], "DX": ["CN", "CN"], "AGE": [-4, 70]})
    mapping = {"columns": {"participant_id": "ID", "session_id": "VISIT", "diagnosis": "DX", "age": "AGE"}}
    scans = pd.DataFrame({"participant_id": ["n1", "n2"], "session_id": ["1", "1"], "path": ["a", "b"]})
    assert import_mapped_table(table, scans, mapping).age_problems == ["n1/1: age -4 is outside 18-120 years"]


def test_scans_preprocess_did_not_finish_are_left_out_at_import_with_the_reason():
    """A failed row was counted as imported and only dropped, with a warning, when training read the manifest."""
    adnimerge = pd.DataFrame({"PTID": ["011_S_0001", "011_S_0002"], "VISCODE": "bl", "DX": "CN", "DX_bl": "CN",
                              "AGE": [70, 71], "Years_bl": 0})
    scans = pd.DataFrame({"participant_id": ["011_S_0001", "011_S_0002", "sub-ADNI011S0002"],
                          "session_id": ["bl", "bl", "ses-M00"], "path": ["a", "b", "c"],
                          "status": ["done", "failed", "done"]})
    result = import_adnimerge(adnimerge, scans)
    assert result.manifest["participant_id"].tolist() == ["011_S_0001", "sub-ADNI011S0002"]  # the visit's finished one
    assert result.dropped["reason"].tolist() == ["its status in --scans is 'failed'"]
    blank = import_adnimerge(adnimerge, scans.assign(status=["done", "failed", np.nan]))
    assert blank.dropped["reason"].tolist()[1] == "its status in --scans is empty"  # it read `is nan`


def test_the_scans_own_clinical_values_that_the_table_replaces_with_others_are_named_at_import():
    """A participants.tsv's sex, age and diagnosis carried in --scans were replaced by the table's without a word,
    where they disagreed. The table's are still written; values that only spell the same thing otherwise pass."""
    adnimerge = pd.DataFrame({"PTID": ["011_S_0001", "011_S_0002", "011_S_0003"], "VISCODE": "bl",
                              "DX": ["CN", "CN", "MCI"], "DX_bl": "CN", "AGE": ["70.4", "75", "80"], "Years_bl": "0",
                              "PTGENDER": ["Male", "Male", "Female"]})
    scans = pd.DataFrame({"participant_id": adnimerge["PTID"], "session_id": "bl", "path": list("abc"),
                          "sex": ["F", "male", None], "age": ["70", "60", "81"], "diagnosis": ["cn", "AD", "AD"]})
    result = import_adnimerge(adnimerge, scans)
    assert result.replaced == [
        "diagnosis disagrees with the clinical table's in 2 imported scans (first: 011_S_0002/bl, 'AD' in --scans, "
        "'CN' in the table)",
        "age disagrees with the clinical table's in 2 imported scans (first: 011_S_0002/bl, '60' in --scans, 75.0 in "
        "the table)",  # 70 beside 70.4 is one age in whole years
        "sex disagrees with the clinical table's in 1 imported scan (first: 011_S_0001/bl, 'F' in --scans, 'M' in the "
        "table)"]
    assert result.manifest[["diagnosis", "sex"]].values.tolist() == [["CN", "M"], ["CN", "M"], ["MCI", "F"]]
    assert import_adnimerge(adnimerge, result.manifest).replaced == []  # an imported manifest given again


def test_one_person_under_two_ids_in_the_scans_is_named_at_import():
    """Imported as two people and refused only when training read the manifest."""
    adnimerge = pd.DataFrame({"PTID": ["011_S_0001", "011_S_0001", "011_S_0002"], "VISCODE": ["bl", "m06", "bl"],
                              "DX": "CN", "DX_bl": "CN", "AGE": 70, "Years_bl": [0, 0.5, 0]})
    scans = pd.DataFrame({"participant_id": ["011_S_0001", "sub-ADNI011S0001", "011_S_0002"],
                          "session_id": ["bl", "ses-M06", "bl"], "path": ["a", "b", "c"]})
    assert import_adnimerge(adnimerge, scans).two_spellings == ["011_S_0001 and sub-ADNI011S0001"]


def test_an_imported_table_s_header_may_have_spaces_after_its_commas(tmp_path):
    adnimerge = tmp_path / "ADNIMERGE.csv"
    adnimerge.write_text("PTID, VISCODE, DX, DX_bl, AGE, Years_bl\n011_S_0001,bl,CN,CN,70,0\n")
    scans = pd.DataFrame({"participant_id": ["011_S_0001"], "session_id": "bl", "path": ["a"]})
    assert import_adnimerge(adnimerge, scans).manifest["age"].tolist() == [70.0]


def test_adni_diagnoses_are_read_in_any_case():
    """A table re-saved in lower case ("dementia", "mci") had those scans left out as unknown diagnoses."""
    assert [adni_diagnosis(v) for v in ("dementia", "mci", "nl to Dementia", "Emci", "cn")] == [
        "AD", "MCI", "AD", "MCI", "CN"]
    assert np.isnan(adni_diagnosis("probable AD"))


def test_a_blank_years_since_baseline_of_a_follow_up_visit_leaves_no_age_not_the_baseline_age():
    """Only the baseline is year 0 by definition; a blank Years_bl at m12 is an unknown time since baseline, and
    AGE + 0 there would be the baseline age, a year too young."""
    adnimerge = pd.DataFrame({"PTID": ["011_S_0001", "011_S_0001"], "VISCODE": ["bl", "m12"], "DX": "CN",
                              "DX_bl": "CN", "AGE": "70", "Years_bl": ["", ""]})
    scans = pd.DataFrame({"participant_id": "011_S_0001", "session_id": ["bl", "m12"], "path": ["a", "b"]})
    ages = import_adnimerge(adnimerge, scans).manifest.set_index("session_id")["age"]
    assert ages["bl"] == 70.0 and np.isnan(ages["m12"])


def test_a_code_written_as_a_float_is_its_integer_code_negative_ones_included():
    """A column re-saved as floats writes NACC's missing-data code -4 as -4.0, which must still meet a mapping's -4."""
    given = (-4.0, "-4.0", "3.0", 3.0, " 7 ", "2.5")
    assert [table_values.as_code(value) for value in given] == ["-4", "-4", "3", "3", "7", "2.5"]


def test_a_tab_or_tsv_table_is_read_tab_separated():
    assert [import_tables.column_separator(Path(f"t.{suffix}")) for suffix in ("tab", "tsv", "csv", "txt")] == [
        "\t", "\t", ",", ","]


def test_a_visit_window_of_0_days_is_allowed_and_a_negative_one_refused():
    """0 days takes only a visit on the scan's very day: strict, not wrong; the message says "0 or more"."""
    mapping = {"columns": {"visit_date": "VISITDATE"}, "visit_window_days": 0}
    import_mapping._require_visit_window(Path("m.yaml"), mapping)
    with pytest.raises(ValueError, match="visit_window_days must be a number of days, 0 or more"):
        import_mapping._require_visit_window(Path("m.yaml"), {**mapping, "visit_window_days": -1})


def test_a_mapping_may_name_the_classes_in_any_case():
    """Manifests read CN, MCI and AD in any case, so a mapping writing them 'cn', 'Mci', 'ad' names the stages."""
    diagnoses = {1: "cn", 2: "Mci", 3: "ad"}
    assert import_mapping._mapped_classes(Path("m.yaml"), diagnoses) == {"cn", "Mci", "ad"}


def test_a_status_is_usable_in_any_case_and_with_spaces_around():
    """A hand-edited manifest's ' done' or 'OK ' is the status preprocess wrote, not a failed scan."""
    statuses = pd.Series([" done", "OK ", "Skipped", "failed", " failed ", np.nan])
    assert has_usable_status(statuses).tolist() == [True, True, True, False, False, False]


def test_each_adni_diagnosis_spelling_reads_as_its_stage():
    """ADNIMERGE's DX_bl and DX spellings by ADNI's criteria: significant memory concern is cognitively normal, early
    and late MCI are both MCI, dementia is AD; a visit's change ("MCI to Dementia") counts as the stage reached."""
    stages = {"CN": "CN", "NL": "CN", "SMC": "CN", "EMCI": "MCI", "LMCI": "MCI", "MCI": "MCI", "Dementia": "AD",
              "AD": "AD", "NL to MCI": "MCI", "MCI to Dementia": "AD", "MCI to NL": "CN"}
    assert {given: adni_diagnosis(given) for given in stages} == stages


def test_import_adnimerge_reads_sex_in_any_spelling_and_keeps_the_scans_own_without_ptgender():
    """`male` and `Female ` came out empty, unreported; a table without PTGENDER erased the scans' own sex."""
    scans = pd.DataFrame({"participant_id": ["011_S_0002", "022_S_0007", "033_S_0009"], "session_id": "bl",
                          "path": ["a", "b", "c"], "sex": ["M", "F", "F"]})
    spelled = ADNIMERGE.assign(PTGENDER=["male", "Male", "Male", "Female ", "Female", "woman", "Male"])
    assert import_adnimerge(spelled, scans).manifest["sex"].tolist() == ["M", "F", "woman"]  # the last is named later
    assert import_adnimerge(ADNIMERGE.drop(columns="PTGENDER"), scans).manifest["sex"].tolist() == ["M", "F", "F"]


def test_import_adnimerge_with_baseline_diagnosis():
    scans = pd.DataFrame({"participant_id": ["011_S_0002", "011_S_0002"], "session_id": ["bl", "m12"], "path": ["a", "b"]})
    result = import_adnimerge(ADNIMERGE, scans, use_baseline_diagnosis=True)
    assert result.manifest["diagnosis"].tolist() == ["MCI", "MCI"]  # EMCI at baseline for both scans


def test_dxsum_as_adnimerge_is_told_which_scans_a_mapping_would_meet():
    """The refusal sent DXSUM to --table with a mapping, where Clinica's sub-ADNI011S0002 at ses-M00 (the BIDS names of
    `clinica convert adni-to-bids`) meets none of its rows, each 'not in the table under that id'."""
    dxsum = pd.DataFrame({"Phase": "ADNI3", "RID": 2, "PTID": "011_S_0002", "VISCODE": ["sc", "v06"],
                          "VISCODE2": ["bl", "m06"], "DIAGNOSIS": [1, 2]})
    clinica = pd.DataFrame({"participant_id": "sub-ADNI011S0002", "session_id": ["ses-M00", "ses-M06"],
                            "path": ["a", "b"]})
    with pytest.raises(ValueError, match=r"DXSUM as --table with a mapping meets only scans named as DXSUM names them, "
                                         r"011_S_0002 at bl, not sub-ADNI011S0002 at ses-M00\)$"):
        import_adnimerge(dxsum, clinica)
    mapping = {"columns": {"participant_id": "PTID", "session_id": "VISCODE2", "diagnosis": "DIAGNOSIS"},
               "values": {"diagnosis": {1: "CN", 2: "MCI", 3: "AD"}}}
    assert import_mapped_table(dxsum, clinica, mapping).manifest.empty
    named_as_dxsum = clinica.assign(participant_id="011_S_0002", session_id=["bl", "m06"])
    assert import_mapped_table(dxsum, named_as_dxsum, mapping).manifest["diagnosis"].tolist() == ["CN", "MCI"]


def test_import_errors_name_the_table_its_option_and_file(tmp_path):
    adnimerge = tmp_path / "ADNIMERGE.csv"
    ADNIMERGE.drop(columns="Years_bl").to_csv(adnimerge, index=False)
    scans = tmp_path / "scans.csv"
    pd.DataFrame({"participant_id": ["011_S_0002"], "path": ["a"]}).to_csv(scans, index=False)
    with pytest.raises(ValueError, match=rf"ADNIMERGE table \(--adnimerge\) {adnimerge}: missing column\(s\) Years_bl "
                                         r".*; --adnimerge takes ADNIMERGE \(DXSUM has no ages"):
        import_adnimerge(adnimerge, scans)
    ADNIMERGE.to_csv(adnimerge, index=False)
    with pytest.raises(ValueError, match=rf"scans manifest \(--scans\) {scans}: missing column\(s\) session_id"):
        import_adnimerge(adnimerge, scans)
    with pytest.raises(IsADirectoryError, match=rf"scans manifest \(--scans\) {tmp_path}: is a folder; pass the "
                                                rf"table's CSV file$"):
        import_adnimerge(adnimerge, tmp_path)
    (tmp_path / "manifest.csv").write_text("")  # preprocess's --output folder given for its manifest: named
    with pytest.raises(IsADirectoryError, match=rf"is a folder; pass the table's CSV file \(the manifest preprocess "
                                                rf"wrote there is {tmp_path / 'manifest.csv'}\)$"):
        import_adnimerge(adnimerge, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"scans manifest \(--scans\) nothere.csv: file not found"):
        import_adnimerge(adnimerge, "nothere.csv")


# --- NACC through the YAML mapping --------------------------------------------------------------------

NACC = pd.DataFrame({
    "NACCID": ["NACC000001", "NACC000001", "NACC000002", "NACC000003", "NACC000004", "NACC000005"],
    "NACCVNUM": [1, 2, 1, 1, 1, 1],
    "NACCUDSD": [1, 3, 4, 2, 4, 3],
    "NACCAGE": [71, 72, 80, 66, 77, 69],
    "SEX": [2, 2, 1, 1, 2, 1],
    "NACCALZP": [8, 1, 1, 7, 7, 2],
})


def nacc_scans() -> pd.DataFrame:
    return pd.DataFrame({
        "participant_id": ["NACC000001", "NACC000001", "sub-NACC000002", "NACC000003", "NACC000004", "NACC000005"],
        "session_id": ["1", "ses-2", "1", "1", "1", "7"],
        "path": [f"n{i}.nii.gz" for i in range(6)],
    })


def test_a_mapped_tables_numeric_ids_meet_the_zero_padded_bids_labels_of_their_scans():
    """sub-007 missed the table's 7 (a spreadsheet's re-save, or a numeric id column), while the leakage guard and a
    splits file take them for one participant."""
    table = NACC.assign(NACCID=["7", "7", "12.0", "3", "4", "5"])
    scans = nacc_scans().assign(participant_id=["sub-007", "0007", "12", "sub-03", "NACC000004", "5"])
    result = import_mapped_table(table, scans, NACC_MAPPING)
    assert result.manifest["participant_id"].tolist() == ["sub-007", "0007", "12"]
    assert result.dropped["participant_id"].tolist() == ["sub-03", "NACC000004", "5"]  # NACCUDSD 2; not listed; no visit 7


def test_a_mapping_without_a_cohort_keeps_the_scans_own_cohort():
    """A mapping naming no `cohort:` wrote every scan's cohort as empty, erasing the one --scans gave."""
    mapping = {"columns": {"participant_id": "NACCID", "session_id": "NACCVNUM", "diagnosis": "NACCUDSD"},
               "values": {"diagnosis": {1: "CN", 3: "MCI", 4: "AD"}}}
    scans = nacc_scans().assign(cohort=["east", "east", "west", "west", "west", "west"])
    assert import_mapped_table(NACC, scans, mapping).manifest["cohort"].tolist() == ["east", "east", "west", "west"]
    assert "cohort" not in import_mapped_table(NACC, nacc_scans(), mapping).manifest  # none to keep: no empty column


def test_a_cohort_the_import_writes_over_the_scans_own_is_named_with_both():
    """A mapping's cohort: replaced --scans' own without a word. Cohorts are compared as text in any case (nacc is
    NACC), as diagnoses are, and named three at most."""
    scans = nacc_scans().assign(cohort=["nacc", "NACC", "east", "NACC", "west", "NACC"])
    result = import_mapped_table(NACC, scans, NACC_MAPPING)
    assert result.cohort_written_over == "'NACC' over --scans' own 'east' in 1 imported scan (first: sub-NACC000002/1)"
    mapping = {"columns": {"participant_id": "NACCID", "session_id": "NACCVNUM", "diagnosis": "NACCUDSD"},
               "values": {"diagnosis": {1: "CN", 3: "MCI", 4: "AD"}}, "cohort": "NACC"}  # four scans kept
    assert import_mapped_table(NACC, nacc_scans().assign(cohort=list("dcbfae")), mapping).cohort_written_over == (
        "'NACC' over --scans' own 'a', 'b', 'c' and 1 more in 4 imported scans (first: NACC000001/1)")
    assert import_mapped_table(NACC, nacc_scans(), NACC_MAPPING).cohort_written_over == ""


def test_nacc_mapping_recodes_udsd_and_sex():
    result = import_mapped_table(NACC, nacc_scans(), NACC_MAPPING)
    m = result.manifest
    assert m["diagnosis"].tolist() == ["CN", "MCI", "AD"]
    assert m["sex"].tolist() == ["F", "F", "M"]
    assert m["age"].tolist() == [71, 72, 80]
    assert (m["cohort"] == "NACC").all()
    reasons = dict(zip(result.dropped["participant_id"], result.dropped["reason"]))
    blank = import_mapped_table(NACC.assign(NACCUDSD=[1, 3, 4, None, 4, 3]), nacc_scans(), NACC_MAPPING)
    assert "without a diagnosis (NACCUDSD) at that visit" in blank.dropped["reason"].tolist()
    assert reasons == {
        "NACC000003": "with NACCUDSD '2', not in the mapping's values.diagnosis",  # impaired, not MCI
        "NACC000004": "with NACCUDSD '4' (AD) but NACCALZP '7', not 1 (the mapping's require)",  # dementia, not AD
        "NACC000005": "without a clinical row at that session (the table has the participant at other sessions: "
                      "a visit it lacks, or one it spells otherwise)",
    }


UDS = pd.DataFrame({  # NACC's UDS export: one row a visit, numbered (NACCVNUM) and dated in three columns
    "NACCID": ["NACC000001", "NACC000001", "NACC000002", "NACC000002", "NACC000003", "NACC000003", "NACC000004"],
    "NACCVNUM": [1, 2, 1, 2, 1, 2, 1],
    "VISITYR": [2010, 2011, 2012, 2013, 2008, 2008, 2015], "VISITMO": [3, 3, 6, 6, 7, 7, 88],
    "VISITDAY": [4, 10, 1, 1, 7, 17, 2], "NACCUDSD": [1, 3, 4, 1, 1, 3, 3], "NACCALZP": [8, 1, 1, 8, 8, 1, 1],
    "NACCAGE": [63, 64, 75, 76, 59, 59, 70], "SEX": [1, 1, 2, 2, 2, 2, 1],
})


def test_a_scan_named_by_its_mri_date_takes_the_uds_visit_nearest_in_time_within_the_window():
    """NACC dates each MRI (its MRI table's MRIYR, MRIMO, MRIDY) and numbers and dates each UDS visit: the mapping could
    name no visit date, so every scan named by its date was dropped, and the user had to find its visit by hand."""
    scans = pd.DataFrame({"participant_id": ["NACC000001", "NACC000001", "NACC000002", "NACC000002", "NACC000003",
                                             "NACC000004"],
                          "session_id": ["ses-20110120", "ses-01", "ses-20121201", "ses-20130601", "ses-20080712",
                                         "ses-20150202"], "path": list("abcdef")})
    result = import_mapped_table(UDS, scans, NACC_MAPPING)
    m = result.manifest
    assert m["session_id"].tolist() == ["ses-20110120", "ses-01", "ses-20130601", "ses-20080712"]
    assert m["diagnosis"].tolist() == ["MCI", "CN", "CN", "CN"]  # visit 2 of 001 (49 days on); the earlier of a tie
    assert m["age"].tolist() == [round(64 - 49 / 365.25, 2), 63, 76, round(59 + 5 / 365.25, 2)]  # at the scan
    assert m["days_from_visit"].tolist()[:1] + m["days_from_visit"].tolist()[2:] == [-49, 0, 5]
    assert np.isnan(m["days_from_visit"][1]) and m["days_from_visit"].dtype == float  # met by its visit number
    assert dict(zip(result.dropped["session_id"], result.dropped["reason"])) == {
        "ses-20121201": "without a clinical visit within 180 days of its date (the nearest, 2013-06-01, is 182 days "
                        "after it; the mapping's visit_window_days sets the limit)",
        "ses-20150202": "without a clinical visit whose date can be read (the mapping's columns.visit_date)"}


def test_a_scan_exactly_the_window_from_its_visit_takes_that_visit():
    """visit_window_days is the most days between a scan and its visit, so 180 days is within 180 (2012-06-01 to
    2012-11-28)."""
    scans = pd.DataFrame({"participant_id": ["NACC000002"], "session_id": ["ses-20121128"], "path": ["a"]})
    result = import_mapped_table(UDS, scans, NACC_MAPPING)
    assert result.manifest["days_from_visit"].tolist() == [180] and result.dropped.empty


def test_a_dated_scan_between_two_visits_as_near_takes_the_earlier_whatever_the_tables_row_order():
    """2008-07-12 is 5 days after NACC000003's visit 1 (2008-07-07, CN) and 5 before its visit 2 (AD)."""
    scans = pd.DataFrame({"participant_id": ["NACC000003"], "session_id": ["ses-20080712"], "path": ["a"]})
    later_first = UDS.iloc[::-1].reset_index(drop=True)
    manifest = import_mapped_table(later_first, scans, NACC_MAPPING).manifest
    assert manifest[["diagnosis", "days_from_visit"]].values.tolist() == [["CN", 5]]


def test_a_scan_named_by_its_date_is_given_its_age_at_the_scan_not_at_its_visit():
    """NACCAGE is the age at the UDS visit, up to visit_window_days from the MRI: a scan 175 days after its visit was
    given the visit's age, a bin off in the model's half-year age encoding. A scan named by the visit's number, whose
    date is unknown, keeps the visit's age; age_at says which each row holds."""
    table = UDS.assign(NACCAGE=[63, 64, 75, 76, 59, 59, "-4"])
    scans = pd.DataFrame({"participant_id": ["NACC000001", "NACC000001", "NACC000001", "NACC000004"],
                          "session_id": ["ses-01", "ses-20110901", "ses-20110120", "ses-01"], "path": list("abcd")})
    m = import_mapped_table(table, scans, NACC_MAPPING).manifest
    assert m["age"].tolist()[:3] == [63, round(64 + 175 / 365.25, 2), round(64 - 49 / 365.25, 2)]
    assert m["age_at"].tolist()[:3] == ["visit", "scan", "scan"] and m["age"].isna().tolist()[3]
    assert pd.isna(m["age_at"][3])  # no age, at no date
    ages_of_scans = UDS.drop(columns="NACCAGE")
    without_age = load_mapping(NACC_MAPPING)
    del without_age["columns"]["age"], without_age["columns"]["birth_date"]  # the scans' own age (NACCMRIA) is
    # the scan's already
    m = import_mapped_table(ages_of_scans, scans.assign(age=70.5), without_age).manifest
    assert m["age"].tolist() == [70.5] * 4 and "age_at" not in m


def test_an_age_is_computed_from_the_birth_date_in_decimal_years_not_read_from_naccage_s_whole_ones():
    """NACCAGE is in whole years, 0.5 under ADNI's decimal ages on average: NACC was evaluated half a year younger than
    ADNI trained on, a bin of the age encoding. The shipped mapping computes the age from BIRTHYR and BIRTHMO (born
    mid-month) at the scan's date, or the visit's for a scan named by its number; where a birth or visit date is a
    missing-data code (9999, 99, VISITMO 88), NACCAGE is used, and age_from says which."""
    table = UDS.assign(BIRTHYR=[1946, 1946, 1936, 1936, 1949, 1949, 1945],
                       BIRTHMO=[9, 9, 99, 99, 1, 1, 2]).astype({"BIRTHYR": object})
    table.loc[4:5, "BIRTHYR"] = ["9999", "1949"]  # a code, as a CSV read as text gives it
    scans = pd.DataFrame({"participant_id": ["NACC000001", "NACC000001", "NACC000002", "NACC000003", "NACC000003",
                                             "NACC000004"],
                          "session_id": ["ses-01", "ses-20110901", "ses-01", "ses-01", "ses-02", "ses-01"],
                          "path": list("abcdef")})
    result = import_mapped_table(table, scans, NACC_MAPPING)
    m = result.manifest
    born = pd.Timestamp("1946-09-16")  # mid-September (30 days: the 1st plus 15)
    assert m["age"].tolist() == [round((pd.Timestamp(day) - born).days / 365.25, 2) for day in ("2010-03-04",
                                                                                                "2011-09-01")] + [
        75, 59, round((pd.Timestamp("2008-07-17") - pd.Timestamp("1949-01-16 12:00")).days / 365.25, 2), 70]
    assert m["age"][1] == 64.96  # NACCAGE 64, the visit's, moved to the scan: 64.48
    assert m["age_at"].tolist() == ["visit", "scan", "visit", "visit", "visit", "visit"]
    assert m["age_from"].tolist() == ["birth date", "birth date", "NACCAGE", "NACCAGE", "birth date", "NACCAGE"]
    assert "4 aged by NACCAGE" not in result.summary() and "3 aged by NACCAGE, whole years" in result.summary()


def test_the_scans_own_age_is_compared_with_the_age_written_at_the_scan_s_date_not_the_visit_s():
    """The warning compared --scans' ages with the table's visit age, unrounded (71.79876796714579 in --scans' warning
    beside 72.05 in the manifest): an MRI half a year from its visit was warned of, or not, by the wrong age."""
    scans = pd.DataFrame({"participant_id": "NACC000001", "session_id": ["ses-20100831", "ses-20110901"],
                          "path": ["a", "b"], "age": ["64.7", "63.9"]})  # visits 2010-03-04 and 2011-03-10
    result = import_mapped_table(UDS.assign(BIRTHYR=1946, BIRTHMO=9), scans, NACC_MAPPING)
    assert result.manifest["age"].tolist() == [63.96, 64.96]  # the visits' 63.46 and 64.48, moved 180 and 175 days
    assert result.replaced == [  # 64.7 is within a year of 63.96 (not of 63.46); 63.9 is not of 64.96
        "age disagrees with the clinical table's in 1 imported scan (first: NACC000001/ses-20110901, '63.9' in "
        "--scans, 64.96 from the table's visit age moved to the scan's date)"]


def test_a_birth_date_gives_the_age_where_naccage_is_a_code_and_a_mapping_without_its_partners_is_refused(tmp_path):
    """A NACCAGE code (-4) beside a readable birth date is no age problem: the birth date gives the age. A mapping's
    birth_date needs the visits' dates (an age is at a date) and the age column (where a birth date is a code)."""
    table = UDS.assign(BIRTHYR=[1940] * 4 + [9999] * 2 + [1940], BIRTHMO=6, NACCAGE=[63, 64, 75, 76, -4, 59, -4],
                       VISITMO=[3, 3, 6, 6, 7, 7, 2])
    scans = pd.DataFrame({"participant_id": ["NACC000004", "NACC000003"], "session_id": ["ses-01", "ses-01"],
                          "path": ["a", "b"]})
    result = import_mapped_table(table, scans, NACC_MAPPING)
    m = result.manifest
    assert m["age"][0] == 74.63 and m["age_from"][0] == "birth date"  # 2015-02-02 from 1940-06-16
    assert np.isnan(m["age"][1]) and m[["age_at", "age_from"]].iloc[1].isna().all()  # neither gives an age
    assert result.age_problems == ["NACC000003/ses-01: age -4 is outside 18-120 years"]
    text = NACC_MAPPING.read_text()
    for cut, message in (("  visit_date: [VISITYR, VISITMO, VISITDAY]\n", "birth_date needs columns.visit_date"),
                         ("  age: NACCAGE\n", "birth_date needs columns.age, e.g. age: NACCAGE"),
                         ("BIRTHYR, BIRTHMO", "birth_date must name the two columns of the birth's year, month")):
        path = tmp_path / "m.yaml"
        path.write_text(text.replace(cut, "BIRTHYR" if cut.startswith("B") else "").replace(
            "visit_window_days: 180\n", "" if "visit_date" in cut else "visit_window_days: 180\n"))
        with pytest.raises(ValueError, match=re.escape(message)):
            load_mapping(path)


def test_an_imported_manifest_imported_again_without_birth_date_keeps_no_stale_age_from():
    """Imported again through a mapping without birth_date, a manifest kept the age_from 'birth date' of its first
    import beside NACCAGE's whole years."""
    scans = pd.DataFrame({"participant_id": "NACC000001", "session_id": ["ses-01"], "path": ["a"]})
    imported = import_mapped_table(UDS.assign(BIRTHYR=1946, BIRTHMO=9), scans, NACC_MAPPING).manifest
    assert imported["age_from"].tolist() == ["birth date"]
    mapping = load_mapping(NACC_MAPPING)
    del mapping["columns"]["birth_date"]
    again = import_mapped_table(UDS, imported, mapping).manifest
    assert again["age"].tolist() == [63] and "age_from" not in again
    dated = pd.DataFrame({"participant_id": "NACC000001", "session_id": ["ses-20100310"], "path": ["a"]})
    imported = import_mapped_table(UDS.assign(BIRTHYR=1946, BIRTHMO=9), dated, NACC_MAPPING).manifest
    again = import_mapped_table(UDS, imported, mapping).manifest  # a scan named by its date kept 'birth date'
    assert again["age"].tolist() == [63.02] and "age_from" not in again


def test_two_mris_whose_nearest_visit_is_one_are_two_scans_and_two_runs_of_one_day_are_not():
    """Two MRIs months apart both nearest one UDS visit were dropped as one visit's scan given twice."""
    scans = pd.DataFrame({"participant_id": "NACC000001", "path": list("abcd"),
                          "session_id": ["ses-20110120", "ses-20110401", "ses-20100301", "ses-20100301_run-2"]})
    result = import_mapped_table(UDS, scans, NACC_MAPPING)
    assert result.manifest["session_id"].tolist() == ["ses-20110120", "ses-20110401"]
    assert result.manifest["days_from_visit"].tolist() == [-49, 22]
    assert set(result.dropped["reason"]) == {"one of several scans of one visit (e.g. bl and ses-M00): keep one in "
                                             "--scans"}


def test_a_visit_named_by_its_number_and_by_a_date_near_it_is_not_imported_twice():
    """ses-02 and ses-20110301 (nine days before visit 2) were both imported as visit 2: one MRI under two names, as a
    merge of two exports leaves it, trained on twice. A failed scan rivals none; visit 1's dated scan stays."""
    scans = pd.DataFrame({"participant_id": "NACC000001", "path": list("abcd"),
                          "session_id": ["ses-02", "ses-20110301", "ses-20100301", "ses-01"],
                          "status": ["ok", "ok", "ok", "failed"]})
    result = import_mapped_table(UDS, scans, NACC_MAPPING)
    assert result.manifest["session_id"].tolist() == ["ses-20100301"]
    assert result.dropped["reason"].tolist()[:2] == [clinical_join.NAMED_BY_NUMBER_AND_DATE] * 2


def test_an_imported_manifest_imported_again_has_days_from_visit_once():
    """Given as --scans again (to import with an edited mapping), an imported manifest came back with days_from_visit
    twice, a manifest every train refuses."""
    scans = pd.DataFrame({"participant_id": "NACC000001", "session_id": ["ses-01", "ses-20110120"], "path": list("ab")})
    imported = import_mapped_table(UDS, scans, NACC_MAPPING).manifest
    again = import_mapped_table(UDS, imported, NACC_MAPPING).manifest
    assert list(again.columns) == list(imported.columns)
    assert again["days_from_visit"].tolist()[1:] == [-49]
    assert again["age"].tolist() == imported["age"].tolist()  # the visit's age moved once, not twice


def test_nacc_s_mri_table_given_as_the_clinical_table_is_told_to_pass_the_uds_table():
    """NACC delivers an MRI table (one row an MRI: NACCMRFI, MRIYR, MRIMO, MRIDY) beside the UDS one; passed as
    --table it was told to name its own columns in the mapping, which has no diagnosis to name."""
    mri = pd.DataFrame({"NACCID": ["NACC000001"], "MRIMO": [1], "MRIDY": [20], "MRIYR": [2011],
                        "NACCMRFI": ["mri1000.zip"], "NACCMNUM": [1], "MRIT1": [1]})
    scans = pd.DataFrame({"participant_id": ["NACC000001"], "session_id": ["ses-20110120"], "path": ["a"]})
    with pytest.raises(ValueError, match=r"missing column\(s\) NACCVNUM, NACCUDSD, NACCAGE, SEX \(it has NACCID, .*\); "
                                         r"this is NACC's MRI table, which dates the scans but holds no diagnosis: pass "
                                         r"NACC's UDS table as --table, .* ses-YYYYMMDD from MRIYR, MRIMO, MRIDY$"):
        import_mapped_table(mri, scans, NACC_MAPPING)


def test_a_mappings_visit_date_and_window_are_refused_where_they_cannot_be_read(tmp_path):
    """A visit date without a window (or a window without dates, or a window that is no number of days) would match
    scans by rules the user did not mean; each is one line naming the key."""
    base = "columns: {participant_id: NACCID, session_id: NACCVNUM, diagnosis: NACCUDSD%s}\nvalues: {diagnosis: {1: CN}}\n"
    cases = {
        ", visit_date: [VISITYR, VISITMO, VISITDAY]": "columns.visit_date needs visit_window_days",
        "}\nvisit_window_days: 90\n#": "visit_window_days needs columns.visit_date",
        ", visit_date: VISITDATE}\nvisit_window_days: soon\n#": "visit_window_days must be a number of days, 0 or more",
        ", visit_date: [VISITYR, VISITMO]}\nvisit_window_days: 90\n#": "columns.visit_date must name one column of dates",
    }
    for i, (extra, message) in enumerate(cases.items()):
        mapping = tmp_path / f"m{i}.yaml"
        mapping.write_text(base % extra)
        with pytest.raises(ValueError, match=re.escape(f"{mapping}: {message}")):
            load_mapping(mapping)


def test_mapped_ids_join_in_any_case_and_an_unmatched_visit_is_told_from_an_unknown_participant():
    scans = nacc_scans().assign(participant_id=["sub-nacc000001", "NACC000001", "sub-NACC000002", "nacc000003",
                                                "NACC000004", "sub-NACC000099"])
    result = import_mapped_table(NACC, scans, NACC_MAPPING)
    assert result.manifest["participant_id"].tolist()[:2] == ["sub-nacc000001", "NACC000001"]
    reasons = dict(zip(result.dropped["participant_id"], result.dropped["reason"]))
    assert reasons["sub-NACC000099"] == "without a clinical row for the participant (not in the table under that id)"
    assert result.two_spellings == ["sub-nacc000001 and NACC000001"]


def test_an_age_recode_changes_only_the_codes_it_lists():
    """`values: {age: {888: .nan}}`, the natural way to say NACC's missing-age code, used to turn every age it
    did not list into no age, without a word."""
    mapping = load_mapping(NACC_MAPPING)
    mapping["values"] = {**mapping["values"], "age": {888: float("nan"), 999: "unknown"}}
    table = NACC.assign(NACCAGE=[71, "999", 888, 66, 77, "77 y"], SEX=[2, 2, 9, 1, 2, 1])  # NACC000004: no AD
    result = import_mapped_table(table, nacc_scans().assign(session_id=["1", "2", "1", "1", "1", "1"]), mapping)
    ages = result.manifest["age"].tolist()
    assert ages[0] == 71 and np.isnan(ages[1]) and np.isnan(ages[2]) and np.isnan(ages[3])
    assert result.age_problems == ["NACC000005/1: NACCAGE '77 y' is not a number"]  # the table's value, quoted
    assert result.manifest["sex"].isna().tolist() == [False, False, True, False]  # sex 9: not listed, unknown


def test_the_shipped_nacc_mapping_makes_ad_only_of_dementia_with_ad_as_its_primary_cause():
    """NACCUDSD 4 is dementia of any cause; the shipped mapping made Lewy body, FTLD and vascular dementia AD. NACC
    derives NACCALZP from form D1 (1 primary, 2 contributing, 3 non-contributing, 7 impaired with AD no cause)."""
    table = pd.DataFrame({"NACCID": [f"NACC00000{i}" for i in range(1, 7)], "NACCVNUM": 1,
                          "NACCUDSD": [4, 4, 4, 4, 4, 3], "NACCALZP": [1, 2, 7, -4, None, 7],
                          "NACCETPR": [1, 2, 8, 99, 99, 2], "NACCAGE": 75, "SEX": 1})
    scans = pd.DataFrame({"participant_id": table["NACCID"], "session_id": "ses-01", "path": list("abcdef")})
    result = import_mapped_table(table, scans, NACC_MAPPING)
    assert result.manifest[["participant_id", "diagnosis"]].values.tolist() == [["NACC000001", "AD"],
                                                                                ["NACC000006", "MCI"]]
    assert result.dropped["reason"].tolist() == [
        f"with NACCUDSD '4' (AD) but {found}, not 1 (the mapping's require)"
        for found in ("NACCALZP '2'", "NACCALZP '7'", "NACCALZP '-4'", "no NACCALZP")]
    with pytest.raises(ValueError, match=r"missing column\(s\) NACCALZP \(.*\); the mapping's require.AD reads it: "
                                         r"export it with the table, or delete that condition from the mapping$"):
        import_mapped_table(table.drop(columns="NACCALZP"), scans, NACC_MAPPING)


def test_mapping_require_keeps_only_ad_with_ad_as_primary_cause(tmp_path):
    mapping = load_mapping(NACC_MAPPING)
    mapping["require"] = {"AD": {"NACCALZP": [1]}}
    result = import_mapped_table(NACC, nacc_scans(), mapping)
    assert result.manifest["participant_id"].tolist() == ["NACC000001", "NACC000001", "sub-NACC000002"]
    assert "NACC000004" in result.dropped["participant_id"].tolist()  # dementia without AD (NACCALZP 7)


def test_a_mapping_code_given_twice_or_in_another_base_is_refused_naming_its_line(tmp_path):
    """Plain YAML kept the last of a code given twice: `3: MCI` then `3: AD` imported every MCI scan as AD."""
    bad = tmp_path / "bad.yaml"
    columns = "columns: {participant_id: NACCID, session_id: NACCVNUM, diagnosis: NACCUDSD}\n"
    bad.write_text(columns + "values:\n  diagnosis:\n    1: CN\n    3: MCI\n    3: AD\n")
    with pytest.raises(ValueError, match=rf"^{bad} line 6: the key '3' is given twice in one section; keep one$"):
        load_mapping(bad)
    bad.write_text(columns + "values: {diagnosis: {1: CN, 3: MCI, 4: AD}}\nrequire: {AD: {NACCALZP: [010]}}\n")
    with pytest.raises(ValueError, match=rf"^{bad} line 3: 010 reads as 8 in YAML"):
        load_mapping(bad)


def test_a_mapping_code_before_a_colon_is_read_as_written(tmp_path):
    """Plain YAML read `010: AD` as the code 8, which met no row of a table that writes 010 (tables are read as text)."""
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("columns: {participant_id: NACCID, session_id: NACCVNUM, diagnosis: NACCUDSD}\n"
                       "values: {diagnosis: {010: AD, 1: CN}}\n")
    assert load_mapping(mapping)["values"] == {"diagnosis": {"010": "AD", "1": "CN"}}


def test_mapping_file_is_checked(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns: {participant_id: NACCID, session_id: NACCVNUM}\nvalues: {diagnosis: {1: CN}}\n")
    with pytest.raises(ValueError, match="columns must name the table's column for diagnosis"):
        load_mapping(bad)
    bad.write_text("colums: {}\n")
    with pytest.raises(ValueError, match="unknown key 'colums'"):
        load_mapping(bad)
    bad.write_text("columns: {participant_id: NACCID\n")
    with pytest.raises(ValueError, match=rf"{bad} line 2: not valid YAML"):
        load_mapping(bad)
    bad.write_text("- columns\n- values\n")
    with pytest.raises(ValueError, match="the top level must be a mapping with columns: and values:"):
        load_mapping(bad)
    good = "columns: {participant_id: NACCID, session_id: NACCVNUM, diagnosis: NACCUDSD, sex: SEX}\n"
    bad.write_text(good + "values: {diagnosis: {1: CN, 4: AD}, gender: {1: M}}\n")
    with pytest.raises(ValueError, match="values.gender recodes no mapped column; values may recode diagnosis, sex"):
        load_mapping(bad)
    bad.write_text(good + "values: {diagnosis: {1: CN, 4: AD}}\nrequire: {Dementia: {NACCALZP: [1]}}\n")
    with pytest.raises(ValueError, match=r"require.Dementia names no class of values.diagnosis \(AD, CN\)"):
        load_mapping(bad)
    bad.write_text(good + "values: {diagnosis: {1: CN, 2: .nan, 3: mci, 4: Dementia}}\n")  # written, then refused
    with pytest.raises(ValueError, match=r"values.diagnosis maps codes to 'Dementia'; map them to CN, MCI or AD"):
        load_mapping(bad)  # by every train and evaluate
    for shape, message in (("require: {AD: [NACCALZP]}", r"require.AD must be a mapping of a column to its allowed "
                            r"codes, e.g. NACCALZP: \[1\]; it is \['NACCALZP'\]"),
                           ("require: {AD: {NACCALZP: {1: yes}}}", r"require.AD.NACCALZP must list the allowed codes"),
                           ("require: [AD]", r"require must be a mapping of a class to its conditions"),
                           ("values: {diagnosis: [CN, AD]}", r"values.diagnosis must be a mapping of the table's codes"),
                           ("values: {diagnosis: {1: CN, 4: [AD]}}", r"values.diagnosis.4 must be one value; it is "
                            r"\['AD'\]"),
                           ("cohort: [NACC]", r"cohort must be the cohort's name, e.g. cohort: NACC; it is \['NACC'\]")):
        bad.write_text(good + ("" if shape.startswith("values") else "values: {diagnosis: {1: CN, 4: AD}}\n") + shape)
        with pytest.raises(ValueError, match=message):
            load_mapping(bad)


@pytest.mark.parametrize(("column", "message"), [
    ("[NACCUDSD]", r"columns.diagnosis must name one column of the table; it is \['NACCUDSD'\]$"),
    ("", r"columns.diagnosis must name one column of the table; it is None \(write the table's column name after"),
    ("2024", r"columns.diagnosis must name one column of the table; it is 2024 \(quote a name YAML reads as a number: "
             r"diagnosis: '2024'\)")])
def test_a_mapped_column_that_is_no_column_name_is_one_line(tmp_path, column, message):
    """A list or a blank for a column crashed the import with a TypeError from pandas; a number named no column."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"columns: {{participant_id: NACCID, session_id: NACCVNUM, diagnosis: {column}}}\n"
                   "values: {diagnosis: {1: CN, 4: AD}}\n")
    with pytest.raises(ValueError, match=message):
        load_mapping(bad)


def test_a_mapping_that_is_a_folder_is_named_as_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"mapping file {tmp_path}: is a folder, not a file"):
        load_mapping(tmp_path)


def test_a_require_condition_may_give_one_code_alone(tmp_path):
    """`NACCALZP: 1` crashed (an int is not iterable) and `NACCALZP: "12"` allowed codes 1 and 2, letter by letter."""
    mapping = load_mapping(NACC_MAPPING)
    for alone in (1, "1"):
        mapping["require"] = {"AD": {"NACCALZP": alone}}
        assert import_mapped_table(NACC, nacc_scans(), mapping).manifest["participant_id"].tolist() == [
            "NACC000001", "NACC000001", "sub-NACC000002"]
    mapping["require"] = {"AD": {"NACCALZP": "12"}}  # code 12: no row has it, so no AD is left
    assert "AD" not in import_mapped_table(NACC, nacc_scans(), mapping).manifest["diagnosis"].tolist()


def test_duplicate_clinical_rows_are_reported_not_guessed():
    repeated = pd.concat([NACC, NACC.iloc[[0]]], ignore_index=True)  # an export appended twice: still one visit
    assert import_mapped_table(repeated, nacc_scans(), NACC_MAPPING).manifest["participant_id"].tolist() == [
        "NACC000001", "NACC000001", "sub-NACC000002"]
    conflicting = pd.concat([NACC, NACC.iloc[[0]].assign(NACCUDSD=4)], ignore_index=True)
    result = import_mapped_table(conflicting, nacc_scans(), NACC_MAPPING)
    assert ("matching several clinical rows that differ (the table gives that visit two diagnoses, ages or sexes: keep "
            "the right row)") in result.dropped["reason"].tolist()


def test_older_adnimerge_spellings_and_the_screening_scan_are_read():
    """Older ADNIMERGE and TADPOLE tables spell normal NL and a conversion visit "NL to MCI"; ADNI1's baseline MRI
    is its screening scan."""
    table = ADNIMERGE.assign(DX=["NL", "NL to MCI", "MCI to Dementia", "", "Dementia to MCI", "nonsense", "MCI"])
    scans = pd.DataFrame({"participant_id": ["011_S_0002"] * 3 + ["022_S_0007", "033_S_0009", "044_S_0001"],
                          "session_id": ["sc", "m06", "m12", "m24", "bl", "bl"], "path": list("abcdef")})
    result = import_adnimerge(table, scans)
    assert result.manifest["diagnosis"].tolist() == ["CN", "MCI", "AD", "MCI", "MCI"]
    assert result.dropped["reason"].tolist() == ["with DX 'nonsense', not one ADNI uses (CN, SMC, EMCI, LMCI, MCI, "
                                                 "Dementia, AD, NL, 'X to Y')"]  # not DX_bl SMC in its place


def test_dxsum_codes_as_dx_are_named_once_in_the_summary():
    """DXSUM's DIAGNOSIS 1/2/3 copied into DX dropped every scan "with DX '1'", nowhere saying what the codes were."""
    scans = pd.DataFrame({"participant_id": ["011_S_0002", "022_S_0007", "033_S_0009"], "session_id": "bl",
                          "path": ["a", "b", "c"]})
    coded = ADNIMERGE.assign(DX=["1", "", "3", "3.0", "", 2, "nonsense"], DX_bl=["1", "", "", "3", "", "2", ""])
    result = import_adnimerge(coded, scans)
    assert result.dropped["reason"].str.startswith("with DX ").all()
    assert result.summary().endswith(" (DX 1, 2, 3 are DXSUM's DIAGNOSIS codes, 1 CN, 2 MCI, 3 Dementia, which "
                                     "ADNIMERGE writes as words: write DX and DX_bl as CN, MCI, Dementia and import "
                                     "again)")
    assert result.summary().count("DXSUM") == 1
    worded = import_adnimerge(ADNIMERGE.assign(DX="nonsense", DX_bl="nonsense"), scans)
    assert "DXSUM" not in worded.summary()  # another unknown value: no hint
    unmet = import_adnimerge(pd.concat([ADNIMERGE, coded.iloc[[6]].assign(PTID="099_S_0001", DX="2")]), scans)
    assert "DXSUM" not in unmet.summary()  # a code in a row no scan meets


def test_adni1_dxsum_codes_are_named_as_such():
    """ADNI1's DXSUM has DXCURREN (1 NL, 2 MCI, 3 AD) and DXCHANGE (1 to 9), not the later phases' DIAGNOSIS: DXCHANGE
    copied into DX was a generic "with DX '5'", and a mapping naming DIAGNOSIS was told to name "the table's own
    columns", neither saying which or how to code them."""
    scans = pd.DataFrame({"participant_id": ["011_S_0002", "022_S_0007"], "session_id": "bl", "path": ["a", "b"]})
    changes = import_adnimerge(ADNIMERGE.assign(DX=["2", "", "", "5", "", "", ""], DX_bl=""), scans)
    assert changes.summary().endswith(" (DX 4 to 9 are DXSUM's DXCHANGE codes, a change of stage: the stage reached "
                                      "is NL for 1, 7, 9, MCI for 2, 4, 8 and Dementia for 3, 5, 6; ADNIMERGE writes "
                                      "it as words: write DX and DX_bl as CN, MCI, Dementia and import again)")
    dxsum = pd.DataFrame({"RID": ["2"], "PTID": ["011_S_0002"], "VISCODE": ["bl"], "DXCHANGE": [""], "DXCURREN": ["1"]})
    mapping = {"columns": {"participant_id": "PTID", "session_id": "VISCODE", "diagnosis": "DIAGNOSIS"},
               "values": {"diagnosis": {1: "CN", 2: "MCI", 3: "AD"}}}
    with pytest.raises(ValueError, match=r"missing column\(s\) DIAGNOSIS \(it has .*\); ADNI1's DXSUM gives the "
                                         r"diagnosis as DXCURREN, 1 NL, 2 MCI, 3 AD \(its DXCHANGE, 1 to 9, is a "
                                         r"change of stage\): name DXCURREN as the mapping's columns.diagnosis, "
                                         r"with values.diagnosis \{1: CN, 2: MCI, 3: AD\}$"):
        import_mapped_table(dxsum, scans, mapping)
    mapping["columns"]["diagnosis"] = "DXCURREN"
    assert import_mapped_table(dxsum, scans, mapping).manifest["diagnosis"].tolist() == ["CN"]  # as the hint says


def test_two_scans_of_one_visit_are_left_out_with_the_reason():
    scans = pd.DataFrame({"participant_id": ["011_S_0002", "sub-ADNI011S0002", "011_S_0002"],
                          "session_id": ["bl", "ses-M00", "m06"], "path": ["a", "b", "c"]})
    result = import_adnimerge(ADNIMERGE.assign(DX="MCI"), scans)
    assert result.manifest["path"].tolist() == ["c"]
    assert result.dropped["reason"].tolist() == ["one of several scans of one visit (e.g. bl and ses-M00): keep one "
                                                 "in --scans"] * 2
    # the summary separates its reasons with '; ', so no reason holds one (it read as a count-less reason)
    assert all(part[0].isdigit() for part in result.summary().split(", ", 1)[1].split("; "))


def test_padded_sessions_match_visit_numbers_and_relative_paths_become_absolute(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    nacc_scans().assign(session_id=["ses-01", "ses-02", "01", "1", "1", "7"]).to_csv(folder / "s.csv", index=False)
    result = import_mapped_table(NACC, folder / "s.csv", NACC_MAPPING)
    assert len(result.manifest) == 3
    assert result.manifest["path"].tolist()[0] == str(folder.resolve() / "n0.nii.gz")


# --- splits and the leakage guard --------------------------------------------------------------------

def cohort(n_per_class: int = 20, scans_per_participant: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for label in CLASSES:
        for p in range(n_per_class):
            pid = f"{label}{p:03d}"
            age, sex = float(rng.normal(75, 6)), "F" if p % 2 else "M"
            rows += [scan(pid, f"M{6 * s:02d}", label, age + s / 2, sex=sex) for s in range(scans_per_participant)]
    return pd.DataFrame(rows)


def test_participant_diagnosis_is_majority_then_earliest():
    frame = pd.DataFrame([
        scan("A", "M00", "CN", 70), scan("A", "M12", "MCI", 71), scan("A", "M24", "MCI", 72),
        scan("B", "M12", "AD", 81), scan("B", "M00", "MCI", 80),
    ])
    assert participant_diagnosis(frame).to_dict() == {"A": "MCI", "B": "MCI"}  # B: tie → earliest age
    # a participant who reverted: two scans each, the tie goes to the first visit's, not the one last seen first
    reverted = pd.DataFrame([scan("C", f"M{12 * i:02d}", dx, 70 + i) for i, dx in enumerate(["CN", "MCI", "MCI", "CN"])])
    assert participant_diagnosis(reverted).to_dict() == {"C": "CN"}


def test_a_tie_is_not_given_to_a_scan_without_an_age():
    """A scan of unknown age is not known to be the earliest: the tie goes to the dated scan's diagnosis."""
    frame = pd.DataFrame([scan("D", "M00", "CN", 70), scan("D", "M12", "AD", None)])
    assert participant_diagnosis(frame).to_dict() == {"D": "CN"}


def test_split_is_by_participant_and_stratified():
    frame = cohort(n_per_class=20)
    split = split_participants(frame, test_fraction=0.15, val_fraction=0.1, seed=3)
    diagnosis = participant_diagnosis(frame)
    for label in CLASSES:
        counts = split[diagnosis == label].value_counts()
        assert (counts["test"], counts["val"], counts["train"]) == (3, 2, 15)  # 15% of 20; 10% of 17
    assert split.index.is_unique and set(split.index) == set(frame["participant_id"])
    assert not split.equals(split_participants(frame, 0.15, 0.1, seed=4))
    assert split.equals(split_participants(frame, 0.15, 0.1, seed=3))


def test_a_diagnosis_too_small_for_the_test_split_is_named():
    """3 AD participants at test_fraction 0.15: round(0.45) = 0, so no AD participant is tested (nor validated)."""
    frame = pd.concat([cohort(n_per_class=20), pd.DataFrame([scan(f"AD9{i}", "M00", "AD", 75) for i in range(3)])])
    frame = frame[(frame["diagnosis"] != "AD") | frame["participant_id"].str.startswith("AD9")]
    split = split_participants(frame, 0.15, 0.1, seed=0)
    assert diagnoses_left_out(frame, split, CLASSES, "test") == ["AD"] == diagnoses_left_out(frame, split, CLASSES, "val")
    assert diagnoses_left_out(frame, split, CLASSES, "train") == []
    no_val = split_participants(frame, 0.15, 0.0, seed=0)
    assert diagnoses_left_out(frame, no_val, CLASSES, "val") == []  # a run without a validation split: nothing to say


def test_a_converters_scans_count_under_each_diagnosis_they_carry_when_a_split_lacks_one():
    """The check counted participants by the diagnosis they are stratified under (most of their scans), so a
    validation split whose one AD scan is a converter's third visit (MCI, MCI, AD) was said to hold "no participant
    diagnosed AD, so nothing there scores it" while its balanced accuracy did score AD; and AD reached only by
    converters, none of them tested, went unnamed."""
    people = {"S1": "CN CN CN", "S2": "CN CN CN", "S3": "MCI MCI MCI", "S4": "MCI MCI MCI", "C1": "MCI MCI AD",
              "C2": "MCI MCI AD", "C3": "MCI AD AD", "C4": "CN CN MCI"}
    frame = pd.DataFrame([scan(p, f"M{6 * s:02d}", dx, 70 + s / 2) for p, visits in people.items()
                          for s, dx in enumerate(visits.split())])
    split = pd.Series({"S1": "train", "S2": "test", "S3": "train", "S4": "test", "C1": "val", "C2": "train",
                       "C3": "train", "C4": "val"})
    assert split_balance(frame, split, CLASSES).set_index("split").loc["val", "AD"] == 0  # C1 is stratified MCI
    assert diagnoses_left_out(frame, split, CLASSES, "val") == []  # C1's M12 scan is AD
    assert diagnoses_left_out(frame, split, CLASSES, "test") == ["AD"]  # C1, C2, C3 reach AD, none tested


def test_split_balance_reports_diagnosis_age_and_sex():
    frame = cohort(n_per_class=20)
    split = split_participants(frame, 0.15, 0.1, seed=0)
    table = split_balance(frame, split, CLASSES).set_index("split")
    assert table.loc["test", ["participants", "scans", "CN", "MCI", "AD"]].tolist() == [9, 27, 3, 3, 3]
    assert 60 < table.loc["train", "age_mean"] < 90 and table.loc["train", "age_sd"] > 0
    assert 0.0 <= table.loc["val", "female_fraction"] <= 1.0


def test_split_balance_ages_and_sexes_count_each_participant_once_at_the_first_scan():
    """Baseline age, one a participant: P1 scanned at 70 and 74, P2 at 80 and 90 give 75 ± 5 (their last scans,
    82 ± 8; every scan, 78.5 ± 7.5)."""
    frame = pd.DataFrame([scan("P2", "M120", age=90.0, sex="M"), scan("P1", "M00", age=70.0, sex="F"),
                          scan("P2", "M00", age=80.0, sex="M"), scan("P1", "M48", age=74.0, sex="F")])
    row = split_balance(frame, pd.Series({"P1": "train", "P2": "train"}), CLASSES).iloc[0]
    assert (row["participants"], row["scans"], row["age_mean"], row["age_sd"]) == (2, 4, 75.0, 5.0)
    assert row["female_fraction"] == 0.5


def test_split_balance_has_a_row_for_each_split_the_run_has_and_none_for_another():
    """At data.val_fraction 0 there is no validation split: an empty val row would read as one with no participants."""
    frame = pd.DataFrame([scan("P1", "M00", age=70.0, sex="F"), scan("P2", "M00", age=80.0, sex="M")])
    table = split_balance(frame, pd.Series({"P1": "train", "P2": "test"}), CLASSES)
    assert table["split"].tolist() == ["train", "test"] and table["participants"].tolist() == [1, 1]

def test_leakage_guard_refuses_shared_participants():
    assert check_no_leakage({"train": ["A", "B"], "val": ["C"], "test": ["D"]}) == []
    # one spelling in both splits is named once ("B", not "B = B")
    with pytest.raises(LeakageError, match="1 participant\\(s\\) are in both train and test, e.g. B; results"):
        check_no_leakage({"train": ["A", "B"], "val": ["C"], "test": ["B", "D"]})
    with pytest.raises(LeakageError, match="holdout"):
        check_no_leakage({"training": ["A"], "holdout": ["A"]})
    # one person, spelled as BIDS and as ADNIMERGE (or without the prefix) spell it
    with pytest.raises(LeakageError, match="e.g. sub-ADNI011S0002 = 011_S_0002, sub-X1 = x1;"):
        check_no_leakage({"training": ["sub-ADNI011S0002", "sub-X1"], "holdout": ["011_S_0002", "x1", "Y"]})


@pytest.mark.parametrize("spelling", ["sub-adni011s0002", "Sub-Adni011S0002", " sub-ADNI011S0002 "])
def test_leakage_guard_meets_a_bids_label_in_any_case_and_with_spaces_around_it(spelling: str) -> None:
    """BIDS labels and hand-typed tables spell the prefixes in any case and keep stray spaces: still one person."""
    with pytest.raises(LeakageError, match="1 participant"):
        check_no_leakage({"training": [spelling, "A"], "holdout": ["011_S_0002", "B"]})


def test_leakage_guard_tells_ids_apart_by_the_digits_and_names_a_number_re_saved_without_its_zeros():
    assert check_no_leakage({"training": ["1.5", "12.0", "2_13"], "holdout": ["15", "120", "213"]}) == []
    with pytest.raises(LeakageError, match=r"e\.g\. 007 = 7 \(IDs of digits alone are compared as numbers, as a "
                                           r"spreadsheet drops leading zeros: give two people IDs that are not one "
                                           r"number\); results would be inflated"):
        check_no_leakage({"training": ["007", "A"], "holdout": ["7", "B"]})
    with pytest.raises(LeakageError) as err:  # the same number written alike: no note
        check_no_leakage({"training": ["sub-7"], "holdout": ["7"]})
    assert "e.g. sub-7 = 7; results" in str(err.value)


def test_a_holdout_scan_reached_by_a_link_or_another_spelling_of_its_path_is_a_training_scan(tmp_path):
    """A holdout put together from the training files under other names (a link, a path through ..) is refused."""
    (tmp_path / "train").mkdir()
    scan_file = tmp_path / "train" / "sub-01.nii.gz"
    scan_file.write_bytes(b"")
    (tmp_path / "holdout").mkdir()
    (tmp_path / "holdout" / "sub-H1.nii.gz").symlink_to(scan_file)
    other = tmp_path / "holdout" / "sub-H2.nii.gz"
    other.write_bytes(b"")
    holdout = [str(tmp_path / "holdout" / "sub-H1.nii.gz"), str(tmp_path / "holdout" / ".." / "train" / "sub-01.nii.gz"),
               str(other)]
    with pytest.raises(LeakageError, match="holdout: 2 scan\\(s\\) are files of the training manifest"):
        check_no_shared_scans([str(scan_file)], holdout)
    assert check_no_shared_scans([str(scan_file)], [str(other)]) == []


def test_the_leakage_refusal_names_both_commands_that_read_the_override_from_the_runs_config():
    """explain refuses a shared holdout as evaluate does; its user was told the setting was for evaluate only."""
    with pytest.raises(LeakageError, match="for `elr-mri evaluate` or `explain`: in the run's config.yaml"):
        check_no_leakage({"training": ["A", "B"], "holdout": ["B", "C"]})


def test_leakage_guard_override_is_reported():
    notes = check_no_leakage({"training": ["A", "B"], "holdout": ["B", "C"]}, allow=True)
    assert len(notes) == 1 and "allowed by data.mri.allow_participant_overlap" in notes[0] and "B" in notes[0]


def test_a_runs_participants_keep_leading_zeros(tmp_path):
    (tmp_path / "splits.csv").write_text("participant_id,split\n0042,train\n0043,test\n")
    seen = run_participants(tmp_path)
    assert seen.tolist() == ["0042", "0043"]
    with pytest.raises(LeakageError, match="0042"):  # a holdout sharing 0042 is refused
        check_no_leakage({"training": seen, "holdout": ["0042", "0099"]})


def test_splits_csv_is_checked(tmp_path):
    path = tmp_path / "splits.csv"
    path.write_text("participant_id,split\nA,train\nB,test\nC,Val\n")
    assert load_splits(path, ["A", "B", "C"]).to_dict() == {"A": "train", "B": "test", "C": "val"}
    path.write_text("participant_id,split\n A,train\nB ,test\nC,val\n")  # ids typed with spaces, as manifests'
    assert load_splits(path, ["A", "B", "C"]).to_dict() == {"A": "train", "B": "test", "C": "val"}
    path.write_text("participant_id,split\nA,train\nB,test\nC,Val\n")
    with pytest.raises(ValueError, match="1 participant\\(s\\) of the manifest have no split, e.g. D; give each a row "
                                         "\\(participant_id,split\\), or remove their scans from the manifest$"):
        load_splits(path, ["A", "B", "C", "D"])
    path.write_text("participant_id,split\nA,train\nA,test\n")
    with pytest.raises(LeakageError):
        load_splits(path, ["A"])
    path.write_text("participant_id,split\nA,holdout\n")
    with pytest.raises(ValueError, match="'holdout' is not one of train, val, test"):
        load_splits(path, ["A"])
    path.write_text("participant_id,split\nA,train\nB,\n")  # a cell left empty: not "split nan"
    with pytest.raises(ValueError, match="row 2: no split for participant 'B'; write one of train, val, test$"):
        load_splits(path, ["A", "B"])
    path.write_text("participant_id,split\nA,train,\nB,test,\n")  # a comma ending each row, as spreadsheets write
    assert load_splits(path, ["A", "B"]).to_dict() == {"A": "train", "B": "test"}
    path.write_text("")
    with pytest.raises(ValueError, match="splits.csv: cannot be read as a CSV table"):
        load_splits(path, ["A"])


def test_a_participant_in_two_splits_of_a_splits_file_is_refused_without_offering_the_override(tmp_path):
    """data.mri.allow_participant_overlap cannot let a splits file through (each participant gets one split), so the
    error must not tell the user to set it: with it set, the same error came back, telling them to set it."""
    path = tmp_path / "splits.csv"
    path.write_text("participant_id,split\nA,train\nB,test\nsub-ADNI011S0002,val\n011_S_0002,train\n")
    with pytest.raises(LeakageError) as err:
        load_splits(path, ["A", "B", "011_S_0002"])
    message = str(err.value)
    assert "1 participant(s) are in both train and val, e.g. 011_S_0002 = sub-ADNI011S0002" in message
    assert message.endswith("List each participant under one split only")
    assert "allow_participant_overlap" not in message


def test_a_splits_file_meets_the_manifests_ids_spelled_another_way(tmp_path):
    """As the leakage guard and the validation panel match them: a file written from a BIDS tree splits a manifest
    of ADNIMERGE's IDs (it said their participants had no split)."""
    path = tmp_path / "splits.csv"
    path.write_text("participant_id,split\nsub-ADNI011S0002,train\nsub-ADNI011S0003,test\nsub-ADNI011S0009,val\n")
    assert load_splits(path, ["011_S_0002", "011_S_0003"]).to_dict() == {"011_S_0002": "train", "011_S_0003": "test",
                                                                        "sub-ADNI011S0009": "val"}


def test_a_splits_file_re_saved_by_a_spreadsheet_splits_the_manifests_zero_padded_ids(tmp_path):
    """Excel writes 007 back as 7: the file said 007 had no split, while 1.5 and 15 were one person in two splits."""
    path = tmp_path / "splits.csv"
    path.write_text("participant_id,split\n7,train\n8,test\n1.5,train\n15,val\n")
    assert load_splits(path, ["007", "008", "1.5", "15"]).to_dict() == {"007": "train", "008": "test", "1.5": "train",
                                                                        "15": "val"}


def test_ids_apart_only_by_a_separator_between_digits_are_named_with_both_spellings(tmp_path, caplog):
    """02_013 and its BIDS label sub-02013 are two people to the key, as 1.5 and 15 are: maybe one person, so the
    guard warns naming both, and a splits file's 'no split' names the file's spelling beside the manifest's."""
    with caplog.at_level(logging.WARNING, logger="elr_mri.data.splits"):
        assert check_no_leakage({"training": ["02_013", "1.5", "A"], "holdout": ["sub-02013", "15", "B"]},
                                source="nacc.csv") == []
    assert ("nacc.csv: training's 02_013 and holdout's sub-02013 differ only in a separator between digits, as 1.5 "
            "and 15 do, so they are taken for two people (and 1 more such pair(s)); if one, write one ID for both and "
            "run again") in caplog.messages
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="elr_mri.data.splits"):
        check_no_leakage({"training": ["02_013"], "holdout": ["sub-02013"]}, source="nacc.csv")
    assert caplog.messages == ["nacc.csv: training's 02_013 and holdout's sub-02013 differ only in a separator between "
                               "digits, as 1.5 and 15 do, so they are taken for two people; if one, write one ID for "
                               "both and run again"]  # one pair: no "(and 0 more ...)"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="elr_mri.data.splits"):  # one person in two spellings: one key
        check_no_leakage({"training": ["011_S_0002"], "holdout": ["sub-ADNI011S0002"]}, allow=True)
    assert not caplog.messages
    path = tmp_path / "splits.csv"
    path.write_text("participant_id,split\nsub-02013,train\nA,test\n")
    with pytest.raises(ValueError, match=r"no split, e\.g\. 02_013; .* \(the file's sub-02013 and the manifest's "
                                         r"02_013 differ only in a separator between digits, as 1\.5 and 15 do: if "
                                         r"one person, write the manifest's ID\)$"):
        load_splits(path, ["02_013", "A"])


def test_a_manifest_holds_ids_apart_by_their_digits_and_names_two_read_as_one_number(tmp_path):
    """1.5 and 15 were refused as one person spelled two ways; 007 and 7 are one number, which the refusal says."""
    frame = load_manifest(write_manifest(tmp_path, [scan("1.5", "M00"), scan("15", "M00"), scan("12.0", "M00"),
                                                    scan("120", "M00")]), CLASSES)
    assert frame["participant_id"].tolist() == ["1.5", "15", "12.0", "120"]
    with pytest.raises(ManifestError) as err:
        load_manifest(write_manifest(tmp_path, [scan("007", "M00"), scan("7", "M06")]), CLASSES)
    assert ("line 3 (participant '7', session 'M06'): the participant of line 2 spelled another way ('007': IDs of "
            "digits alone are compared as numbers, as a spreadsheet drops leading zeros); write one ID per person, or "
            "give two people IDs that are not one number") in str(err.value)


def test_ages_in_months_or_birth_years_are_refused_by_row(tmp_path):
    rows = [scan("P1", "M00", age=120), scan("P2", "M00", age=870), scan("P3", "M00", age=1948)]
    with pytest.raises(ManifestError) as err:
        load_manifest(write_manifest(tmp_path, rows), CLASSES)
    assert str(err.value).splitlines()[0].endswith("2 problem(s):")
    assert "line 3 (participant 'P2', session 'M00'): age 870 is over 120" in str(err.value)
    assert "line 4 (participant 'P3', session 'M00'): age 1948 is over 120" in str(err.value)


def test_an_age_of_0_or_under_18_is_refused_by_row_as_a_missing_age_typed_as_0(tmp_path):
    """Age 0 (an empty cell filled with 0) trained as a newborn's, with the negative ages refused beside it."""
    rows = [scan("P1", "M00", age=0), scan("P2", "M00", age=17.5), scan("P3", "M00", age=18), scan("P4", "M00")]
    with pytest.raises(ManifestError) as err:
        load_manifest(write_manifest(tmp_path, rows), CLASSES)
    assert str(err.value).splitlines()[0].endswith("2 problem(s):")
    assert ("line 2 (participant 'P1', session 'M00'): age 0 is under 18, implausible in an Alzheimer's cohort (a "
            "missing age typed as 0? leave the cell empty)") in str(err.value)
    assert "line 3 (participant 'P2', session 'M00'): age 17.5 is under 18" in str(err.value)


def test_a_negative_age_is_refused_by_row_and_an_age_of_0_is_not_called_negative(tmp_path):
    """Mutation round 5: no test read the negative-age check, and `<= 0` for `< 0` survived (0 is under 18 only)."""
    rows = [scan("P1", "M00", age=-1), scan("P2", "M00", age=0)]
    with pytest.raises(ManifestError) as err:
        load_manifest(write_manifest(tmp_path, rows), CLASSES)
    assert str(err.value).splitlines()[1:] == [
        "  line 2 (participant 'P1', session 'M00'): age is negative",
        "  line 3 (participant 'P2', session 'M00'): age 0 is under 18, implausible in an Alzheimer's cohort (a missing "
        "age typed as 0? leave the cell empty)"]


def test_a_manifest_error_lists_20_problems_and_counts_the_rest(tmp_path):
    """Mutation round 5: `>=` for `>` at the 20-problem limit (a trailing "... and 0 more") survived."""
    for scans, tail in ((20, "age is negative"), (21, "... and 1 more")):
        rows = [scan(f"P{i:02d}", "M00", age=-1) for i in range(scans)]
        with pytest.raises(ManifestError) as err:
            load_manifest(write_manifest(tmp_path, rows), CLASSES)
        lines = str(err.value).splitlines()
        assert lines[0].endswith(f"{scans} problem(s):") and len(lines) == 1 + min(scans, 20) + (scans > 20)
        assert lines[-1].endswith(tail)


def test_the_moved_folder_hint_needs_more_than_one_scan(tmp_path):
    """Mutation round 5: `> 0` for `> 1` survived; one scan's missing file is that file's problem, not a folder's."""
    with pytest.raises(ManifestError) as err:
        load_manifest(write_manifest(tmp_path, [scan("P1", "M00")], touch=False), CLASSES)
    assert str(err.value).splitlines()[0].endswith(": 1 problem(s):") and "file not found" in str(err.value)


def test_two_rows_naming_one_file_by_different_paths_are_refused(tmp_path):
    """sub/../P1_M00.nii.gz is P1_M00.nii.gz: mutation round 5 compared the paths as written, and it survived."""
    (tmp_path / "sub").mkdir()
    rows = [scan("P1", "M00"), {**scan("P2", "M00"), "path": "sub/../P1_M00.nii.gz"}]
    with pytest.raises(ManifestError, match="line 3 .*: the same path file as line 2 "):
        load_manifest(write_manifest(tmp_path, rows), CLASSES)


def test_qc_flags_written_1_are_flags_and_20_are_named_without_a_count_of_more(tmp_path, caplog):
    """Mutation round 5: dropping "1" from the flag spellings, and `>=` at the 20-name limit, survived."""
    rows = [scan(f"P{i:02d}", "M00", qc_flag=1) for i in range(20)]
    with caplog.at_level(logging.WARNING):
        load_manifest(write_manifest(tmp_path, rows), CLASSES)
    assert "20 scan(s) flagged by preprocessing QC are used: P00/M00, " in caplog.text
    assert "P19/M00; look at their QC overlays" in caplog.text


def test_a_status_of_spaces_is_counted_as_empty_when_its_scan_is_dropped(tmp_path, caplog):
    """Mutation round 5: counting only a missing cell as empty survived; a cell of spaces gave no reason."""
    rows = [scan("P1", "M00", status="ok"), scan("P2", "M00", status="   ")]
    with caplog.at_level(logging.WARNING):
        frame = load_manifest(write_manifest(tmp_path, rows), CLASSES)
    assert frame["participant_id"].tolist() == ["P1"]
    assert "dropped 1 scan(s) whose preprocessing status is not ok/done/skipped (empty: 1)" in caplog.text


def test_scans_flagged_by_qc_are_kept_and_named(tmp_path, caplog):
    rows = [scan("P1", "M00", qc_flag=False, qc_reason=""), scan("P2", "M06", qc_flag=True, qc_reason="NCC 0.312 < 0.45"),
            scan("P3", "M00", qc_flag=True, qc_reason="")]
    with caplog.at_level(logging.WARNING):
        frame = load_manifest(write_manifest(tmp_path, rows), CLASSES)
    assert len(frame) == 3
    assert "2 scan(s) flagged by preprocessing QC are used: P2/M06 (NCC 0.312 < 0.45), P3/M00;" in caplog.text
    assert "drop a bad scan's row from preprocess's input table" in caplog.text  # manifest.csv is rewritten
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # evaluate reads one manifest for each baseline: said once a process
        load_manifest(write_manifest(tmp_path, rows), CLASSES)
    assert "flagged by preprocessing QC" not in caplog.text
    rows[0] = scan("P1", "M00", qc_flag=True, qc_reason="")  # other scans flagged: said again
    with caplog.at_level(logging.WARNING):
        load_manifest(write_manifest(tmp_path, rows), CLASSES)
    assert "3 scan(s) flagged by preprocessing QC are used: P1/M00, P2/M06" in caplog.text


def test_the_holdout_check_reads_the_training_manifest_without_repeating_its_qc_warning(tmp_path, caplog):
    """evaluate/explain read the run's training manifest only to compare files with the holdout's: its QC warning
    there read as if it were about the holdout scans; a moved training manifest skipped that comparison unsaid."""
    from elr_mri.config import DataConfig, MRIDataConfig
    from elr_mri.data.mri import training_manifest_images

    rows = [scan("Q1", "M00", qc_flag=True, qc_reason="NCC 0.2 < 0.45"), scan("Q2", "M00")]
    manifest = write_manifest(tmp_path, rows)
    cfg = DataConfig(name="mri", mri=MRIDataConfig(manifest=str(manifest), classes=list(CLASSES)))
    with caplog.at_level(logging.WARNING):
        assert len(training_manifest_images(cfg)) == 2
    assert "flagged by preprocessing QC" not in caplog.text
    manifest.rename(tmp_path / "elsewhere.csv")
    with caplog.at_level(logging.WARNING):
        assert training_manifest_images(cfg) == []
    assert f"{manifest} has moved, so holdout scans are not compared with its files; participants still are" in \
        caplog.text


def test_one_file_under_two_ids_is_refused(tmp_path):
    rows = [scan("P1", "M00"), scan("P2", "M00", path="P1_M00.nii.gz"), scan("P3", "M00", path="./P1_M00.nii.gz")]
    with pytest.raises(ManifestError) as err:
        load_manifest(write_manifest(tmp_path, rows), CLASSES)
    assert str(err.value).splitlines()[0].endswith("2 problem(s):")
    assert ("line 3 (participant 'P2', session 'M00'): the same path file as line 2 ('P1', 'M00'); one scan, one row"
            in str(err.value))
    assert "line 4 (participant 'P3', session 'M00'): the same path file as line 2" in str(err.value)


def test_sex_spellings_become_m_or_f_and_a_code_is_refused(tmp_path):
    sexes = ["Male", " female", "m", "F", "Unknown", None]
    rows = [scan(f"P{i}", "M00", sex=sex) for i, sex in enumerate(sexes)]
    frame = load_manifest(write_manifest(tmp_path, rows), CLASSES)
    assert frame["sex"].tolist()[:4] == ["M", "F", "M", "F"] and frame["sex"][4:].isna().all()
    with pytest.raises(ManifestError, match=r"line 3 \(participant 'P1', session 'M00'\): sex 2 is neither male nor "
                                            r"female \(M/F, Male/Female\); leave it empty when unknown"):
        load_manifest(write_manifest(tmp_path, [scan("P0", "M00", sex=1), scan("P1", "M00", sex=2)]), CLASSES)


@pytest.mark.parametrize("n_per_class, test_fraction, val_fraction, expected", [
    (20, 0.15, 0.3, (3, 5, 12)),
    (9, 0.3, 0.1, (3, 1, 5)),
])
def test_validation_fraction_is_taken_of_the_participants_left_after_test(
        n_per_class: int, test_fraction: float, val_fraction: float, expected: tuple[int, int, int]) -> None:
    """val_fraction splits what test leaves (the paper's 90/10 of the training set): of 20 a class, 15% (3) test,
    then 30% of the other 17, round(5.1) = 5, validate; 30% of all 20 would be 6. Counts are rounded, not truncated:
    of 9 at 30%, round(2.7) = 3 test, then round(0.1 · 6) = 1 validates."""
    frame = cohort(n_per_class=n_per_class)
    split = split_participants(frame, test_fraction=test_fraction, val_fraction=val_fraction, seed=3)
    diagnosis = participant_diagnosis(frame)
    for label in CLASSES:
        counts = split[diagnosis == label].value_counts()
        assert (counts["test"], counts["val"], counts["train"]) == expected, label


@pytest.mark.parametrize("test_fraction, val_fraction", [(1.0, 0.1), (0.15, 1.0)])
def test_a_split_fraction_of_one_is_refused(test_fraction: float, val_fraction: float) -> None:
    """Either would leave no participant to train on."""
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\)"):
        split_participants(cohort(n_per_class=3), test_fraction, val_fraction, seed=0)


def test_a_diagnosis_of_one_participant_is_not_named_missing_from_the_splits_it_cannot_reach() -> None:
    """One person sits in one split, so every other split lacks their diagnosis whatever the fractions: no rounding
    left it out, and naming it would say nothing a user could change."""
    frame = pd.concat([cohort(n_per_class=20).query("diagnosis != 'AD'"), pd.DataFrame([scan("AD900", "M00", "AD")])])
    split = split_participants(frame, 0.15, 0.1, seed=0)
    assert split["AD900"] == "train" and diagnoses_left_out(frame, split, CLASSES, "test") == []


def test_split_balance_reads_age_and_sex_where_known() -> None:
    """P1's first scan has no age: the first with one (71) is theirs, not a gap. P3's sex is unknown: the female
    share is of the two whose sex is known (1 of 2), not of all three."""
    frame = pd.DataFrame([scan("P1", "M00", age=None, sex="F"), scan("P1", "M12", age=71.0, sex="F"),
                          scan("P2", "M00", age=79.0, sex="M"), scan("P3", "M00", age=75.0, sex=None)])
    row = split_balance(frame, pd.Series({"P1": "train", "P2": "train", "P3": "train"}), CLASSES).iloc[0]
    assert (row["age_mean"], row["female_fraction"]) == (75.0, 0.5)


def test_a_word_that_only_starts_like_male_or_female_is_refused_not_read_as_a_sex(tmp_path):
    """`missing` was read as M and `Fehlend` (German: missing) as F, from their first letters."""
    rows = [scan("P0", "M00", sex="MALE"), scan("P1", "M00", sex="fem"), scan("P2", "M00", sex="missing"),
            scan("P3", "M00", sex="Fehlend")]
    with pytest.raises(ManifestError) as err:
        load_manifest(write_manifest(tmp_path, rows), CLASSES)
    assert str(err.value).splitlines()[0].endswith("2 problem(s):")
    assert "line 4 (participant 'P2', session 'M00'): sex 'missing' is neither male nor female" in str(err.value)
    assert "line 5 (participant 'P3', session 'M00'): sex 'Fehlend' is neither male nor female" in str(err.value)


def visits_by_date_mapping() -> dict:
    """The shipped NACC mapping for a table whose visits are named by one column of dates, VISIT, that scans' sessions
    meet as they are (without a nearest-visit window)."""
    mapping = load_mapping(NACC_MAPPING)
    mapping["columns"]["session_id"] = "VISIT"
    del mapping["columns"]["visit_date"], mapping["visit_window_days"]
    return mapping


def test_a_year_first_date_without_zero_padding_meets_the_bids_session_of_that_day():
    """Spreadsheets in East Asian locales write 2012/3/4; it met no `ses-20120304` scan, every scan dropped."""
    assert {mapped_session_key(d) for d in ("2012/3/4", "2012-3-04 0:00", "2012.03.4")} == {"20120304"}
    table = NACC.assign(VISIT=["2012/3/4", "2013/3/5", "2012/11/20", "2012/1/2", "2012/1/3", "2012/1/4"])
    scans = nacc_scans().assign(session_id=["ses-20120304", "ses-20130305", "ses-20121120", "x", "x", "x"])
    mapping = visits_by_date_mapping()
    assert import_mapped_table(table, scans, mapping).manifest["session_id"].tolist() == scans["session_id"][:3].tolist()


def test_a_table_whose_visit_dates_are_month_or_day_first_says_so_for_the_scans_it_cannot_match():
    """Excel re-saves 2012-03-04 as 3/4/2012: every scan was dropped as a visit the table lacks or spells otherwise."""
    table = NACC.assign(VISIT=["3/4/2012", "3/5/2013", "11/20/2012", "1/2/2012", "1/3/2012", "1/4/2012"])
    scans = nacc_scans().assign(session_id=["ses-20120304", "ses-20130305", "ses-20121120", "ses-20120102",
                                            "ses-20120103", "ses-20120105"])
    mapping = visits_by_date_mapping()
    result = import_mapped_table(table, scans, mapping)
    assert result.manifest.empty and len(result.dropped) == 6
    assert set(result.dropped["reason"]) == {
        "without a clinical row at that session (the table's VISIT writes dates month or day first, e.g. '3/4/2012', "
        "which are not guessed: write them year first, YYYY-MM-DD, and import again)"}


def test_visit_dates_written_month_first_are_named_as_such_for_the_dated_scans_they_leave_out():
    """A column of visit dates (columns.visit_date: VISITDATE) re-saved by Excel as 3/10/2011 gave every scan named by
    its date 'without a clinical visit whose date can be read', naming the mapping's key but not what was wrong."""
    mapping = load_mapping(NACC_MAPPING)
    mapping["columns"]["visit_date"] = "VISITDATE"
    scans = pd.DataFrame({"participant_id": "NACC000001", "session_id": ["ses-20110120"], "path": ["a"]})
    table = UDS.assign(VISITDATE=["3/4/2010", "3/10/2011", "6/1/2012", "6/1/2013", "7/7/2008", "7/17/2008", ""])
    assert import_mapped_table(table, scans, mapping).dropped["reason"].tolist() == [
        "without a clinical visit whose date can be read (the mapping's columns.visit_date: the table's VISITDATE "
        "writes dates month or day first, e.g. '3/4/2010', which are not guessed: write them year first, YYYY-MM-DD, "
        "and import again)"]
    year_first = table.assign(VISITDATE=["2010-03-04", "2011-03-10", "2012-06-01", "2013-06-01", "", "", ""])
    assert import_mapped_table(year_first, scans, mapping).manifest["days_from_visit"].tolist() == [-49]


def test_a_tables_ages_and_visits_are_read_per_problem_and_per_spelling_not_per_row(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A NACC UDS table has 200,000 rows: its ages' problems and its visits' spellings were worked out a row at a
    time, about 1.6 s of import-cohort's CPU on a table of that size; the same words come of the few wrong ages and
    of each visit spelled once."""
    read: list[object] = []
    blank, session_key = table_values.blank, mapped_session_key  # the real ones, counted
    for module in (visit_dates, table_values):
        monkeypatch.setattr(module, "blank", lambda value: read.append(value) or blank(value))
    monkeypatch.setattr(visit_dates, "mapped_session_key", lambda value: read.append(value) or session_key(value))
    visits = pd.Series([" 1", 2, 3, None, " "] * 200)
    assert visit_dates.date_session_hint(visits, "NACCVNUM").startswith("the table's NACCVNUM holds no dates, e.g. '1'")
    ages = pd.Series(["70", "73,5", None, "-4", " ", "seventy"] * 200)
    assert table_values.row_age_problems({"NACCAGE": ages}, pd.to_numeric(ages, errors="coerce"))[:6] == [
        "", "NACCAGE '73,5' is not a number (a decimal comma? write 73.5)", "", "age -4 is outside 18-120 years", "",
        "NACCAGE 'seventy' is not a number"]
    assert len(read) <= 3, f"{len(read)} values read one at a time"


def test_a_scan_named_by_an_adni_visit_code_is_told_how_the_table_names_its_visits():
    """ses-M00 (ADNI's baseline) in a NACC import was dropped as a visit the table lacks or spells otherwise, leaving
    the user to find NACC's naming."""
    scans = nacc_scans().assign(session_id=["ses-M00", "bl", "1", "1", "1", "1"])
    reasons = import_mapped_table(UDS, scans, NACC_MAPPING).dropped.set_index("session_id")["reason"]
    assert reasons["ses-M00"] == reasons["bl"] == (
        "without a clinical row at that session (ses-M00, bl, m06 are ADNI's visit codes; the table's NACCVNUM spells "
        "its visits as '1' and '2': name the scan's session so, e.g. ses-1, or by its MRI's date, ses-YYYYMMDD, which "
        "meets the visit nearest it)")
    by_number = load_mapping(NACC_MAPPING)  # a mapping without the visits' dates: a number only
    del by_number["columns"]["visit_date"], by_number["visit_window_days"]
    assert import_mapped_table(NACC, scans, by_number).dropped["reason"][0].endswith("name the scan's session so, "
                                                                                       "e.g. ses-1)")


def test_a_scan_named_by_date_is_told_to_take_its_visit_number_where_the_table_holds_no_dates():
    """NACC's MRI table dates each scan, and its UDS visits are numbered (NACCVNUM): a scan named by its MRI date was
    dropped as a visit the table lacks or spells otherwise."""
    scans = nacc_scans().assign(session_id=["ses-20120310", "2", "1", "1", "1", "1"])
    by_number = load_mapping(NACC_MAPPING)  # a mapping without the visits' dates
    del by_number["columns"]["visit_date"], by_number["visit_window_days"]
    result = import_mapped_table(NACC, scans, by_number)
    assert result.dropped["reason"].tolist()[0] == (
        "without a clinical row at that session (the table's NACCVNUM holds no dates, e.g. '1': name the scan's session "
        "by its NACCVNUM, the visit its MRI belongs to, or name the visits' dates in the mapping (columns.visit_date "
        "with visit_window_days, as configs/nacc/nacc_mapping.yaml does) to meet the visit nearest the MRI)")
    with pytest.raises(ValueError, match=r"missing column\(s\) VISITYR, VISITMO, VISITDAY \(it has NACCID, .*\); the "
                                         r"mapping's columns.visit_date reads it .*or name the scans' sessions by "
                                         r"NACCVNUM$"):
        import_mapped_table(NACC, scans, NACC_MAPPING)  # the shipped mapping reads them for a scan named by date
    dated = NACC.assign(VISIT=["2012-03-04", "2013-03-05", "2012-11-20", "2012-01-02", "2012-01-03", "2012-01-04"])
    mapping = visits_by_date_mapping()
    assert import_mapped_table(dated, scans, mapping).dropped["reason"].tolist()[0] == (
        "without a clinical row at that session (the table has the participant at other sessions: a visit it lacks, "
        "or one it spells otherwise)")  # a table of dates: this scan's date is one it lacks


def test_adnimerge_as_the_r_package_writes_it_is_imported_as_loni_s(tmp_path):
    """The ADNIMERGE R package's table, written by write.csv (row names, DX.bl, Years.bl, NA), is LONI's ADNIMERGE:
    it was refused, told to export ADNIMERGE, and the user had to rename its columns by hand."""
    scans = pd.DataFrame({"participant_id": ["sub-ADNI011S0002", "sub-ADNI022S0007", "sub-ADNI022S0007"],
                          "session_id": ["ses-M012", "ses-M000", "ses-M024"], "path": list("abc")})
    exported = tmp_path / "adnimerge_r.csv"
    ADNIMERGE.replace("", "NA").rename(columns={"DX_bl": "DX.bl", "Years_bl": "Years.bl"}).to_csv(exported)
    manifest = import_adnimerge(exported, scans).manifest
    assert manifest["diagnosis"].tolist() == ["AD", "AD", "AD"]  # 022_S_0007's empty DX at bl: its DX.bl
    assert manifest["age"].tolist() == pytest.approx([71.2, 81.0, 83.0])  # AGE + Years.bl


def test_a_table_given_to_the_other_import_names_the_option_it_belongs_to():
    """ADNIMERGE under --table was told to name its columns in the NACC mapping, a NACC table under --adnimerge to
    export ADNIMERGE instead of DXSUM: neither said the table only went to the wrong option."""
    with pytest.raises(ValueError, match=r"missing column\(s\) NACCID, NACCVNUM, NACCUDSD, NACCAGE, SEX \(it has PTID, "
                                         r".*\); this is ADNIMERGE: pass it as --adnimerge, without --mapping$"):
        import_mapped_table(ADNIMERGE, nacc_scans(), NACC_MAPPING)
    with pytest.raises(ValueError, match=r"missing column\(s\) PTID, VISCODE, DX, DX_bl, AGE, Years_bl \(it has NACCID, "
                                         r".*\); this is a mapped table, such as NACC's: pass it as --table with "
                                         r"--mapping \(configs/nacc/nacc_mapping\.yaml\)$"):
        import_adnimerge(NACC, nacc_scans())
    dxsum = pd.DataFrame({"RID": ["2"], "PTID": ["011_S_0002"], "VISCODE": ["bl"], "DIAGNOSIS": ["1"]})
    with pytest.raises(ValueError, match=r"; --adnimerge takes ADNIMERGE \(DXSUM has no ages: export ADNIMERGE;"):
        import_adnimerge(dxsum, nacc_scans())


def test_a_missing_column_names_the_one_spelled_otherwise_and_a_wide_table_is_not_listed_whole():
    """R's ADNIMERGE package writes DX.bl: a table where it stands as dx_bl is told so; a NACC UDS table of ~1000
    columns with naccudsd in lower case made a refusal of 7 kB that hid it."""
    scans = pd.DataFrame({"participant_id": ["011_S_0002"], "session_id": ["bl"], "path": ["a"]})
    with pytest.raises(ValueError, match=r"missing column\(s\) DX_bl \(spelled 'dx_bl' in it; "
                                         r"it has PTID, VISCODE, dx_bl, DX, AGE, Years_bl, PTGENDER\)"):
        import_adnimerge(ADNIMERGE.rename(columns={"DX_bl": "dx_bl"}), scans)
    wide = pd.concat([NACC.rename(columns={"NACCUDSD": "naccudsd"}),
                      pd.DataFrame({f"VAR{i:03d}": [0] * len(NACC) for i in range(900)})], axis=1)
    with pytest.raises(ValueError) as err:
        import_mapped_table(wide, nacc_scans(), NACC_MAPPING)
    message = str(err.value)
    assert "it spells the mapping's NACCUDSD otherwise, as 'naccudsd': write them so in the mapping" in message
    assert len(message) < 500 and "VAR899" not in message
    with pytest.raises(ValueError) as err:  # a column missing, not spelled otherwise: the table's first columns
        import_mapped_table(wide.drop(columns="naccudsd"), nacc_scans(), NACC_MAPPING)
    assert "missing column(s) NACCUDSD (it has 905 columns: NACCID, NACCVNUM," in str(err.value)
    assert len(str(err.value)) < 500


def test_a_nacc_export_is_read_by_the_mappings_columns_and_still_checked_whole(tmp_path):
    """A NACC UDS export has ~1000 columns and ~190k visits: read whole, 30,000 visits took ~1 GB. Only the mapping's
    columns are read now, yet an unquoted comma in a column it does not read is still refused, and a column it lacks
    is named beside the table's others."""
    path = tmp_path / "nacc.csv"
    NACC.assign(DECOTHRX="").to_csv(path, index=False)
    table, header, _ = mapped_import._read_mapped(path, load_mapping(NACC_MAPPING))
    assert list(table.columns) == ["NACCID", "NACCVNUM", "NACCUDSD", "NACCAGE", "SEX", "NACCALZP"]
    assert list(header.columns) == [*NACC.columns, "DECOTHRX"]
    assert import_mapped_table(path, nacc_scans(), NACC_MAPPING).manifest["diagnosis"].tolist() == ["CN", "MCI", "AD"]
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:3], lines[3] + "Lewy, possible", *lines[4:]]) + "\n")
    with pytest.raises(InputError, match=r"nacc.csv: cannot be read as a CSV table \(.*Expected 7 fields in line 4"):
        import_mapped_table(path, nacc_scans(), NACC_MAPPING)
    NACC.drop(columns="NACCALZP").assign(DECOTHRX="").to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) NACCALZP \(it has NACCID, NACCVNUM, NACCUDSD, NACCAGE, "
                                         r"SEX, DECOTHRX\); the mapping's require.AD reads it"):
        import_mapped_table(path, nacc_scans(), NACC_MAPPING)


def test_a_nacc_export_in_lower_case_is_told_every_column_the_mapping_spells_otherwise_at_once() -> None:
    """A NACC export with lower-case headers was refused a part at a time: the mapping's columns, then (renamed)
    require.AD's NACCALZP, said to be missing from the table and to be exported, then the visits' dates."""
    lower = NACC.assign(VISITYR=2012, VISITMO=3, VISITDAY=4).rename(columns=str.lower)
    with pytest.raises(ValueError, match=r"^clinical table \(--table\): it spells the mapping's NACCID, NACCVNUM, "
                                         r"VISITYR, VISITMO, VISITDAY, NACCUDSD, NACCAGE, SEX, NACCALZP otherwise, as "
                                         r"'naccid', 'naccvnum', 'visityr', 'visitmo', 'visitday', 'naccudsd', "
                                         r"'naccage', 'sex', 'naccalzp': write them so in the mapping, or the table's "
                                         r"header as the mapping does \(names are matched as written: a table may "
                                         r"hold both\)$"):
        import_mapped_table(lower, nacc_scans(), NACC_MAPPING)
    both = pd.concat([NACC, lower[["naccid"]]], axis=1)  # both spellings: the mapping's is read, as written
    assert len(import_mapped_table(both, nacc_scans(), NACC_MAPPING).manifest) == len(
        import_mapped_table(NACC, nacc_scans(), NACC_MAPPING).manifest)
    by_number = nacc_scans()  # visit dates alone spelled otherwise, unread for scans named by visit number
    dates_lower = NACC.assign(visityr=2012, visitmo=3, visitday=4)
    assert len(import_mapped_table(dates_lower, by_number, NACC_MAPPING).manifest) == len(
        import_mapped_table(NACC, by_number, NACC_MAPPING).manifest)


def test_an_adni_scan_named_by_its_date_is_told_that_adnimerge_matches_visits():
    """ADNI's downloads name scans by acquisition date, weeks from EXAMDATE; the reason only said 'spells otherwise'."""
    scans = pd.DataFrame({"participant_id": ["011_S_0002", "011_S_0002"], "session_id": ["ses-20060315", "m12"],
                          "path": ["a", "b"]})
    result = import_adnimerge(ADNIMERGE, scans)
    assert result.manifest["session_id"].tolist() == ["m12"]
    assert result.dropped["reason"].tolist() == [
        "without a clinical row at that session (ADNIMERGE's sessions are visits, VISCODE bl, m06, m12: name the "
        "scan's session by its visit, e.g. ses-M06, not by its date)"]


def test_an_adni_scan_named_by_its_phase_s_own_visit_code_is_told_to_use_viscode2():
    """ADNI-GO/2's v03 and ADNI3's init are not ADNIMERGE's VISCODE; the reason only said 'spells otherwise'."""
    scans = pd.DataFrame({"participant_id": ["011_S_0002"] * 3 + ["022_S_0007"],
                          "session_id": ["v03", "ses-init", "y1", "ses-M36"], "path": list("abcd")})
    reasons = import_adnimerge(ADNIMERGE, scans).dropped["reason"].tolist()
    phase_code = ("without a clinical row at that session (v03, init, y1 are a phase's own visit codes; ADNIMERGE's "
                  "VISCODE is their VISCODE2: name the scan's session by it, e.g. bl or ses-M12)")
    assert reasons == [phase_code] * 3 + ["without a clinical row at that session (the table has the participant at "
                                          "other sessions: a visit it lacks, or one it spells otherwise)"]


def test_sex_codes_a_mapping_does_not_list_are_counted_and_named_not_erased_unsaid():
    """A table spelling SEX Male/Female, read through values.sex {1: M, 2: F}, lost every scan's sex without a word."""
    table = NACC.assign(SEX=NACC["SEX"].map({1: "Male", 2: "Female"}))
    result = import_mapped_table(table, nacc_scans(), NACC_MAPPING)
    assert result.manifest["sex"].isna().all()
    assert result.summary().startswith("3 scans imported (3 without a sex and 3 aged by NACCAGE, whole years, not by "
                                       "the birth date), 3 left out: ")  # NACC has no birth date or visit date
    assert result.unlisted_sex_codes == ["SEX 'Female' (2 scans)", "SEX 'Male' (1 scan)"]
    assert import_mapped_table(NACC, nacc_scans(), NACC_MAPPING).unlisted_sex_codes == []


def test_an_adni_scan_named_by_its_rid_is_told_to_use_its_ptid():
    """A manifest keyed by ADNI's RID (2 for 011_S_0002) met no row, each scan 'not in the table under that id'."""
    scans = pd.DataFrame({"participant_id": ["2", "sub-0007", "011_S_0002", "ABC"], "session_id": "bl",
                          "path": list("abcd")})
    result = import_adnimerge(ADNIMERGE.assign(RID=["2", "2", "2", "7", "7", "9", "1"]), scans)
    assert result.manifest["participant_id"].tolist() == ["011_S_0002"]
    rid = ("without a clinical row for the participant (an ID of digits alone is ADNIMERGE's RID; rows are met by "
           "PTID, as training and splits compare participants: name the scan by its PTID, e.g. 011_S_0002 for RID 2)")
    assert result.dropped["reason"].tolist() == [rid, rid, "without a clinical row for the participant (not in the "
                                                           "table under that id)"]


def test_the_dxsum_hint_follows_the_drops_it_explains_not_the_last_reason():
    """The hint was put after the last reason of all, so "1 its status in --scans is 'failed' (DX 1, 2, 3 are DXSUM's
    DIAGNOSIS codes ...)" read as if a failed scan had a DXSUM code."""
    scans = pd.DataFrame({"participant_id": ["011_S_0002", "022_S_0007"], "session_id": "bl", "path": ["a", "b"],
                          "status": ["ok", "failed"]})
    result = import_adnimerge(ADNIMERGE.assign(DX=["2", "", "3", "", "", "", ""]), scans)
    summary = result.summary()
    assert "1 its status in --scans is 'failed'; 1 with DX '2', not one ADNI uses" in summary, summary
    assert summary.endswith("'X to Y') (DX 1, 2, 3 are DXSUM's DIAGNOSIS codes, 1 CN, 2 MCI, 3 Dementia, which "
                            "ADNIMERGE writes as words: write DX and DX_bl as CN, MCI, Dementia and import again)")
