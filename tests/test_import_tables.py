"""The note an import gives on the scans preprocess failed on."""

from __future__ import annotations

from elr_mri.data.import_tables import preprocess_failures, read_scans
from preprocess.batch import FAILURE_COLUMNS


def test_a_failure_list_of_its_header_alone_gives_no_note(tmp_path):
    """preprocess writes failures.csv with its header where no scan failed: no note of '0 scan(s)' failing."""
    scans = tmp_path / "manifest.csv"
    scans.write_text("participant_id,session_id,path\n")
    (tmp_path / "failures.csv").write_text(",".join(FAILURE_COLUMNS) + "\n")
    assert preprocess_failures(scans) is None
    (tmp_path / "failures.csv").write_text(",".join(FAILURE_COLUMNS) + "\na,1,/x.nii.gz,unreadable\n")
    assert preprocess_failures(scans).startswith("note: preprocess failed on 1 scan(s), so they are not in ")


def test_an_empty_processed_path_stays_empty_while_a_relative_one_is_made_absolute(tmp_path):
    """An empty processed_path is a scan preprocess did not process, warned of as such: it is no file of the scans'
    folder named 'nan'."""
    scans = tmp_path / "manifest.csv"
    scans.write_text("participant_id,session_id,path,processed_path\na,1,a.nii.gz,\nb,1,b.nii.gz,out/b.nii.gz\n")
    table, _ = read_scans(scans)
    assert table["processed_path"].isna().tolist() == [True, False]
    assert table["processed_path"][1] == str(tmp_path / "out" / "b.nii.gz")
