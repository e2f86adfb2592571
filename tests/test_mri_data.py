"""MONAI transforms and datasets for MRI cohorts, and `build_mri_data` against the NoisyImageData contract."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from elr_mri.config import DataConfig, MRIDataConfig, NoiseConfig
from elr_mri.data import build_data
from elr_mri.data.cohort import IMAGE_COLUMN, ManifestError
from elr_mri.data.disk_cache import DiskCache
from elr_mri.data.grid import ScanReadError, VolumeGrid, read_grid
from elr_mri.data.memory_cache import MemoryCache
from elr_mri.data.mri import (
    MRIScans,
    _note_padding,
    build_mri_data,
    build_mri_eval_dataset,
    mri_transforms,
    participants_by_split,
    read_scan_as_the_network_does,
)
from elr_mri.data.seeded_items import SeededItems
from elr_mri.data.splits import LeakageError, load_splits

CLASSES = ["CN", "MCI", "AD"]
SHAPE = (32, 32, 32)
CROP = [16, 16, 16]


def write_volume(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([1.5, 1.5, 1.5, 1.0]) if affine is None else affine), path)
    return path


def make_cohort(tmp_path: Path, participants: int = 12, scans: int = 2, **columns) -> Path:
    """A manifest of `participants` × `scans` random 32³ volumes, diagnoses cycling CN, MCI, AD."""
    rng = np.random.default_rng(0)
    rows = []
    for p in range(participants):
        for s in range(scans):
            name = f"sub-{p:02d}_ses-{s}.nii.gz"
            write_volume(tmp_path / name, rng.random(SHAPE) * 100 + p)
            rows.append({"participant_id": f"sub-{p:02d}", "session_id": f"ses-{s}", "path": name,
                         "diagnosis": CLASSES[p % 3], "age": 70.0 + p + s, "sex": "F" if p % 2 else "M"})
    frame = pd.DataFrame(rows)
    for name, values in columns.items():
        frame[name] = values
    path = tmp_path / "manifest.csv"
    frame.to_csv(path, index=False)
    return path


def config(manifest: Path, **mri) -> DataConfig:
    return DataConfig(name="mri", val_fraction=0.25, mri=MRIDataConfig(
        manifest=str(manifest), **{"test_fraction": 0.25, "cache": "none", "crop_size": CROP, **mri}))


def trained_elsewhere(tmp_path: Path) -> DataConfig:
    """The data settings of a run whose manifest is not the holdout's (it has moved: no scan files to compare)."""
    return config(tmp_path / "moved" / "manifest.csv")


# --- transforms --------------------------------------------------------------------------------------

def test_eval_transform_reorients_to_ras_scales_and_centre_crops(tmp_path):
    data = np.random.default_rng(1).random((20, 24, 18)) * 50 + 10
    flipped_x = np.diag([-1.5, 1.5, 1.5, 1.0])  # stored left-to-right reversed (LAS)
    path = write_volume(tmp_path / "v.nii.gz", data, flipped_x)
    out = mri_transforms([10, 12, 8], train=False)({"image": str(path)})["image"]
    ras = data[::-1]
    expected = (ras - ras.min()) / (ras.max() - ras.min())
    expected = expected[5:15, 6:18, 5:13]
    assert out.shape == (1, 10, 12, 8)
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-5)


def test_small_volumes_are_padded_to_the_crop(tmp_path):
    path = write_volume(tmp_path / "v.nii.gz", np.ones((10, 12, 8)) + np.arange(8))
    out = mri_transforms([16, 16, 16], train=False)({"image": str(path)})["image"]
    assert out.shape == (1, 16, 16, 16) and out.min() == 0.0


def test_train_crop_without_blur_is_a_window_of_the_scaled_volume(tmp_path):
    data = np.random.default_rng(2).random(SHAPE)
    path = write_volume(tmp_path / "v.nii.gz", data)
    transform = mri_transforms(CROP, train=True, blur_sigma_max=0.0)
    transform.set_random_state(seed=0)
    scaled = (data - data.min()) / (data.max() - data.min())
    corners = set()
    for _ in range(5):
        out = transform({"image": str(path)})["image"][0].numpy()
        matches = [
            (i, j, k)
            for i in range(17) for j in range(17) for k in range(17)
            if abs(scaled[i, j, k] - out[0, 0, 0]) < 1e-6 and np.allclose(scaled[i:i + 16, j:j + 16, k:k + 16], out, atol=1e-6)
        ]
        assert len(matches) == 1
        corners.add(matches[0])
    assert len(corners) > 1  # the crop moves


def test_max_shift_keeps_training_crops_near_the_centre_crop(tmp_path):
    data = np.random.default_rng(3).random((40, 40, 40))
    path = write_volume(tmp_path / "v.nii.gz", data)
    scaled = (data - data.min()) / (data.max() - data.min())
    transform = mri_transforms(CROP, train=True, blur_sigma_max=0.0, max_shift=2)
    transform.set_random_state(seed=0)
    centre = (40 - 16) // 2
    offsets = set()
    for _ in range(30):
        out = transform({"image": str(path)})["image"][0].numpy()
        found = [(i, j, k) for i in range(centre - 2, centre + 3) for j in range(centre - 2, centre + 3)
                 for k in range(centre - 2, centre + 3) if np.allclose(scaled[i:i + 16, j:j + 16, k:k + 16], out, atol=1e-6)]
        assert len(found) == 1  # always within ±2 voxels of the centre crop
        offsets.add(tuple(c - centre for c in found[0]))
    assert {o[0] for o in offsets} == {-2, -1, 0, 1, 2}  # and it uses the whole ±2 range
    with pytest.raises(ValueError, match="max_shift"):
        mri_transforms(CROP, train=True, max_shift=-1)


def test_the_training_flip_mirrors_left_and_right_half_the_time(tmp_path):
    """data.mri.flip mirrors a RAS volume along its first axis, the one a brain is roughly symmetric about: a flip
    front to back or top to bottom would train on heads no scanner gives."""
    data = np.random.default_rng(4).random((12, 10, 8))
    path = write_volume(tmp_path / "v.nii.gz", data)
    scaled = (data - data.min()) / (data.max() - data.min())
    transform = mri_transforms(list(data.shape), train=True, blur_sigma_max=0.0, flip=True)
    transform.set_random_state(seed=0)
    outputs = [transform({"image": str(path)})["image"][0].numpy() for _ in range(40)]
    flipped = [np.allclose(out, scaled[::-1], atol=1e-6) for out in outputs]
    assert all(f or np.allclose(out, scaled, atol=1e-6) for f, out in zip(flipped, outputs))
    assert 10 <= sum(flipped) <= 30  # p = 0.5: 20 ± 3.2 of 40


def test_nan_voxels_are_zeroed_before_min_max(tmp_path):
    data = np.random.default_rng(0).random((20, 20, 20)).astype(np.float32) + 1.0
    data[0, 0, 0] = np.nan  # e.g. background an external pipeline masked out
    path = tmp_path / "scan.nii.gz"
    nib.Nifti1Image(data, np.eye(4)).to_filename(path)
    image = mri_transforms((16, 16, 16), train=False)({"image": str(path)})["image"]
    assert torch.isfinite(image).all() and 0.0 <= float(image.min()) and float(image.max()) <= 1.0


def test_nan_voxels_are_scaled_as_zeros(tmp_path):
    """As in the official code, masked-out background (NaN) is 0 before min-max: a scan of 1..2 with a NaN voxel
    scales from 0, so that voxel reads 0 and the others x / max (read as 1, the scan would scale from 1)."""
    data = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32) + 1.0
    data[4, 4, 4] = np.nan
    path = tmp_path / "scan.nii.gz"
    nib.Nifti1Image(data, np.eye(4)).to_filename(path)
    expected = np.nan_to_num(data, nan=0.0) / np.nanmax(data)
    np.testing.assert_allclose(read_scan_as_the_network_does(path), expected, atol=1e-6)


def test_a_crop_the_size_of_the_scans_is_not_said_to_pad_them(tmp_path, caplog):
    """Padding is warned of where a scan is smaller than the crop along an axis, not where it is just as large."""
    grid, source = VolumeGrid((32, 32, 32), (1.5, 1.5, 1.5)), str(tmp_path / "manifest.csv")
    _note_padding(grid, [32, 32, 32], source)
    assert "zero-padded" not in caplog.text
    _note_padding(grid, [32, 33, 32], source)
    assert "smaller than data.mri.crop_size [32, 33, 32] along axis 1 and are zero-padded" in caplog.text


@pytest.mark.parametrize("blank", ["+inf", "-inf", "all NaN", "constant"])
def test_a_scan_min_max_would_blank_is_one_line_naming_it(tmp_path, blank: str):
    """One +inf voxel made the scaled brain all 0 (-inf: all 1), an all-NaN scan all 0: trained on without a word."""
    data = np.random.default_rng(0).random((20, 20, 20)).astype(np.float32) * 100
    if blank in ("+inf", "-inf"):
        data[3, 3, 3] = float(blank)
    else:
        data[:] = np.nan if blank == "all NaN" else 7.0
    path = tmp_path / "scan.nii.gz"
    nib.Nifti1Image(data, np.eye(4)).to_filename(path)
    with pytest.raises(RuntimeError) as info:  # MONAI's, naming the transform; ours is its cause
        mri_transforms((16, 16, 16), train=False)({"image": str(path)})
    assert isinstance(info.value.__cause__, ScanReadError)
    assert re.match(rf"{path}: (has infinite voxels|holds no image)", str(info.value.__cause__))


# --- datasets and build_mri_data ---------------------------------------------------------------------

def test_build_mri_data_contract(tmp_path):
    data = build_mri_data(config(make_cohort(tmp_path)))
    assert (data.num_classes, data.input_shape, data.class_names) == (3, (1, 16, 16, 16), CLASSES)
    assert data.train_clean_labels is None  # real cohort, no injected noise: the truth is unknown
    assert len(data.train) + len(data.val) + len(data.test) == 24
    groups = {name: set(d.frame["participant_id"]) for name, d in (("train", data.train), ("val", data.val), ("test", data.test))}
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"] or groups["val"] & groups["test"])
    for position in range(len(data.train)):
        item = data.train[position]
        row = data.train.frame.iloc[position]
        assert item["index"] == position and item["label"] == data.train_labels[position]
        assert item["label"] == CLASSES.index(row["diagnosis"])
        assert item["age"] == row["age"] and isinstance(item["age"], float)
        assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 16, 16, 16)
        assert type(item["image"]) is torch.Tensor
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    batch = next(iter(DataLoader(data.val, batch_size=2)))
    assert batch["age"].shape == (2,) and batch["image"].shape == (2, 1, 16, 16, 16)


def test_validation_test_and_holdout_scans_are_the_centre_crop_with_every_augmentation_on(tmp_path):
    """Checkpoint selection and every score read the scans un-augmented: no blur, flip or shift, whatever the seed."""
    cfg = config(make_cohort(tmp_path), flip=True, max_shift=4, blur_sigma_max=2.0)
    data = build_mri_data(cfg)
    (tmp_path / "holdout").mkdir()  # another site's people, numbered as the training cohort's
    holdout, _ = build_mri_eval_dataset(make_cohort(tmp_path / "holdout", participants=3, scans=1), cfg, ["sub-99"])
    centre = slice(8, 24)  # 16 of 32 voxels
    for scans in (data.val, data.test, holdout):
        for i in range(len(scans)):
            scan = read_scan_as_the_network_does(scans.frame[IMAGE_COLUMN].iloc[i])[centre, centre, centre]
            assert all(torch.equal(scans.item(i, seed)["image"][0], torch.from_numpy(scan)) for seed in (None, 0, 1))
    assert not torch.equal(data.train.item(0, 0)["image"], data.train.item(0, 1)["image"])  # training's are augmented


def test_volumes_are_scored_in_training_sized_batches_unless_eval_batch_size_is_set(tmp_path):
    """The default of 512 at once was a small-image figure: a split of 96³ volumes through the ×8 network asked for
    ~220 MB each, tens of GB in one forward pass."""
    from elr_mri.config import RunConfig, TrainLoopConfig
    from elr_mri.distributed import DistContext
    from elr_mri.engine.feeding import BatchFeeder

    data_cfg = config(make_cohort(tmp_path, participants=24, scans=1), test_fraction=0.5)
    data = build_mri_data(data_cfg)
    assert len(data.test) == 12
    for eval_batch_size, sizes in ((0, [3, 3, 3, 3]), (5, [5, 5, 2])):
        cfg = RunConfig(data=data_cfg, train=TrainLoopConfig(batch_size=3, eval_batch_size=eval_batch_size))
        feeder = BatchFeeder(data, cfg, DistContext(), torch.device("cpu"))
        assert [len(batch["label"]) for batch in feeder.evaluation("test")] == sizes
        # under torchrun each rank reads its run of those whole batches alone (every rank read every volume)
        shares = [[batch["index"].tolist() for batch in BatchFeeder(data, cfg, DistContext(rank, 2), torch.device(
            "cpu")).evaluation("test")] for rank in range(2)]
        assert [[len(batch) for batch in share] for share in shares] == [sizes[:(len(sizes) + 1) // 2],
                                                                          sizes[(len(sizes) + 1) // 2:]]
        assert sum(sum(shares, []), []) == list(range(12))


def test_volumes_keep_compiles_default_mode_without_cuda_graphs(tmp_path):
    """The 3D step is bound by the GPU's arithmetic, not the host: `compile_mode: auto` leaves CUDA graphs (and
    their memory pool) to device-resident image batches."""
    from elr_mri.config import RunConfig
    from elr_mri.distributed import DistContext
    from elr_mri.engine.runner import cuda_graphs_tested

    data_cfg = config(make_cohort(tmp_path, participants=6, scans=1))
    assert not cuda_graphs_tested(RunConfig(data=data_cfg), build_mri_data(data_cfg), DistContext())


def test_splits_csv_and_round_trip(tmp_path):
    manifest = make_cohort(tmp_path, participants=6)
    first = build_mri_data(config(manifest))
    table = participants_by_split(first)
    splits = tmp_path / "splits.csv"
    table.to_csv(splits, index=False)
    assert load_splits(splits, table["participant_id"]).to_dict() == dict(zip(table["participant_id"], table["split"]))
    pd.DataFrame({"participant_id": [f"sub-{p:02d}" for p in range(6)],
                  "split": ["train", "train", "train", "train", "val", "test"]}).to_csv(splits, index=False)
    data = build_mri_data(config(manifest, splits=str(splits)))
    assert set(data.test.frame["participant_id"]) == {"sub-05"} and len(data.train) == 8


def test_true_diagnosis_column_gives_clean_labels(tmp_path):
    truth = [CLASSES[(p // 2) % 3] for p in range(24)]  # per scan; differs from the given diagnosis for some
    data = build_mri_data(config(make_cohort(tmp_path, true_diagnosis=truth)))
    expected = [CLASSES.index(t) for t in data.train.frame["true_diagnosis"]]
    assert data.train_clean_labels.tolist() == expected
    assert data.train_labels.tolist() == [CLASSES.index(d) for d in data.train.frame["diagnosis"]]


def test_injected_noise_reaches_train_and_val_not_test(tmp_path):
    cfg = config(make_cohort(tmp_path, participants=30))
    cfg.noise = NoiseConfig(mode="symmetric_exclusive", rate=0.5, seed=0)
    data = build_mri_data(cfg)
    given = np.array([CLASSES.index(d) for d in data.train.frame["diagnosis"]])
    assert np.array_equal(data.train_clean_labels, given)
    assert 0.3 < (data.train_labels != given).mean() < 0.7
    val_given = np.array([CLASSES.index(d) for d in data.val.frame["diagnosis"]])
    assert (data.val.labels != val_given).any()
    test_given = np.array([CLASSES.index(d) for d in data.test.frame["diagnosis"]])
    assert np.array_equal(data.test.labels, test_given)


def adjudicated_table(manifest: Path, relabel: dict[str, str]) -> pd.DataFrame:
    """Every scan of `manifest` with its diagnosis, then `relabel` (participant → class) applied."""
    table = pd.read_csv(manifest, dtype=str)[["participant_id", "session_id", "diagnosis"]]
    table["diagnosis"] = [relabel.get(p, d) for p, d in zip(table["participant_id"], table["diagnosis"])]
    return table


def test_val_labels_replace_validation_labels_only(tmp_path):
    manifest = make_cohort(tmp_path, participants=30)
    plain = build_mri_data(config(manifest))
    # a "panel" that disagrees with the manifest on every participant, spelled in lower case
    relabel = {p: CLASSES[(CLASSES.index(d) + 1) % 3].lower()
               for p, d in pd.read_csv(manifest, dtype=str)[["participant_id", "diagnosis"]].values}
    labels = tmp_path / "panel.csv"
    adjudicated_table(manifest, relabel).sample(frac=1.0, random_state=0).to_csv(labels, index=False)
    data = build_mri_data(config(manifest, val_labels=str(labels)))
    expected_val = [(CLASSES.index(d) + 1) % 3 for d in data.val.frame["diagnosis"]]
    assert data.val.labels.tolist() == expected_val
    assert [data.val[i]["label"] for i in range(len(data.val))] == expected_val
    assert np.array_equal(data.train_labels, plain.train_labels)  # training labels untouched
    assert np.array_equal(data.test.labels, plain.test.labels)


def test_val_labels_accepts_the_simulators_truth_column(tmp_path):
    manifest = make_cohort(tmp_path, participants=12)
    truth = tmp_path / "truth.csv"
    # as the simulator writes it: `diagnosis` is the noisy label given, `true_diagnosis` the truth
    adjudicated_table(manifest, {}).assign(true_diagnosis="AD").to_csv(truth, index=False)
    data = build_mri_data(config(manifest, val_labels=str(truth)))
    assert set(data.val.labels.tolist()) == {CLASSES.index("AD")}


def test_val_labels_of_a_diagnosis_the_run_leaves_out_take_those_scans_out_of_validation(tmp_path, caplog):
    """A CN-vs-AD run validated on the simulator's truth.csv: a validation scan given CN but truly MCI has no right
    class, so it is not validated on (it was refused as if the file lacked it)."""
    manifest = make_cohort(tmp_path, participants=30)
    plain = build_mri_data(config(manifest, classes=["CN", "AD"]))
    truly_mci = plain.val.frame["participant_id"].iloc[0]
    truth = tmp_path / "truth.csv"
    adjudicated_table(manifest, {truly_mci: "MCI"}).rename(columns={"diagnosis": "true_diagnosis"}).to_csv(truth,
                                                                                                         index=False)
    data = build_mri_data(config(manifest, classes=["CN", "AD"], val_labels=str(truth)))
    assert truly_mci not in set(data.val.frame["participant_id"])
    assert len(data.val) == len(plain.val) - (plain.val.frame["participant_id"] == truly_mci).sum()
    assert data.val.labels.tolist() == [["CN", "AD"].index(d) for d in data.val.frame["diagnosis"]]
    assert "validation scan(s) adjudicated as a diagnosis the run's classes CN, AD leave out are not validated on" \
        in caplog.text


def test_val_labels_missing_a_validation_scan_is_one_clear_error(tmp_path):
    manifest = make_cohort(tmp_path, participants=12)
    val_participants = set(build_mri_data(config(manifest)).val.frame["participant_id"])
    labels = tmp_path / "panel.csv"
    table = adjudicated_table(manifest, {})
    table[~table["participant_id"].isin(val_participants)].to_csv(labels, index=False)
    with pytest.raises(ValueError, match=r"data.mri.val_labels .*panel.csv: no diagnosis .* for validation scan sub-"):
        build_mri_data(config(manifest, val_labels=str(labels)))
    table.drop(columns="session_id").to_csv(labels, index=False)
    with pytest.raises(ValueError, match="needs the columns participant_id, session_id and diagnosis"):
        build_mri_data(config(manifest, val_labels=str(labels)))
    with pytest.raises(ValueError, match="file not found"):
        build_mri_data(config(manifest, val_labels=str(tmp_path / "absent.csv")))
    labels.write_text("")
    with pytest.raises(ValueError, match=r"panel.csv: cannot be read as a CSV table"):
        build_mri_data(config(manifest, val_labels=str(labels)))


def test_val_labels_listing_a_scan_with_an_unknown_or_blank_diagnosis_or_no_session_say_so(tmp_path):
    """A panel writing AD as Dementia, leaving a cell blank or a session_id out was told "no diagnosis ... for
    validation scan X; list every validation scan", though X was listed: the line now says what its row holds."""
    manifest = make_cohort(tmp_path, participants=12)
    val = build_mri_data(config(manifest)).val.frame
    first = val.iloc[0]
    labels = tmp_path / "panel.csv"
    table = adjudicated_table(manifest, {first["participant_id"]: "Dementia"})
    table.to_csv(labels, index=False)
    with pytest.raises(ValueError, match=rf"panel.csv: validation scan {first['participant_id']} "
                                         rf"{first['session_id']} has diagnosis 'Dementia' \(2 of {len(val)} .* none "
                                         "of CN, MCI, AD\\); write each"):
        build_mri_data(config(manifest, val_labels=str(labels)))
    table.loc[table["participant_id"] == first["participant_id"], "diagnosis"] = ""
    table.to_csv(labels, index=False)
    with pytest.raises(ValueError, match=rf"validation scan {first['participant_id']} .* has a blank diagnosis"):
        build_mri_data(config(manifest, val_labels=str(labels)))
    # a second row of the scan with a readable diagnosis is the panel's word on it
    pd.concat([table, adjudicated_table(manifest, {})]).to_csv(labels, index=False)
    assert np.array_equal(build_mri_data(config(manifest, val_labels=str(labels))).val.labels,
                          build_mri_data(config(manifest)).val.labels)
    table = adjudicated_table(manifest, {})
    table.loc[3, "session_id"] = None
    table.to_csv(labels, index=False)
    with pytest.raises(ValueError, match=r"panel.csv: data row 4 gives diagnosis '\w+' but no session_id \(1 such"):
        build_mri_data(config(manifest, val_labels=str(labels)))


def test_val_labels_that_change_nothing_or_label_no_validation_scan_say_why(tmp_path, caplog):
    """A copy of the manifest with the panel's column added as `adjudicated` was read by its `diagnosis`, the noisy
    labels, without a word; a panel's re-read of the flagged training scans was told to list every validation scan,
    not that it listed none."""
    manifest = make_cohort(tmp_path, participants=12)
    plain = build_mri_data(config(manifest))
    labels = tmp_path / "panel.csv"
    relabel = {p: "AD" for p in plain.val.frame["participant_id"]}
    pd.read_csv(manifest, dtype=str).assign(adjudicated=adjudicated_table(manifest, relabel)["diagnosis"]).to_csv(
        labels, index=False)
    data = build_mri_data(config(manifest, val_labels=str(labels)))
    assert np.array_equal(data.val.labels, plain.val.labels)
    assert (f"panel.csv: gives all {len(plain.val)} validation scans the manifest's own diagnoses, so the run "
            "validates as without it") in caplog.text
    caplog.clear()
    adjudicated_table(manifest, relabel).to_csv(labels, index=False)  # a panel that changes a label: no warning
    assert (build_mri_data(config(manifest, val_labels=str(labels))).val.labels == CLASSES.index("AD")).all()
    assert "validates as without it" not in caplog.text
    table = adjudicated_table(manifest, {})
    flagged = table[table["participant_id"].isin(plain.train.frame["participant_id"])].head(5)
    flagged.to_csv(labels, index=False)
    with pytest.raises(ValueError, match=rf"\({len(plain.val)} of {len(plain.val)} lack one; none of its 5 rows is a "
                                         "validation scan: it labels the validation split alone"):
        build_mri_data(config(manifest, val_labels=str(labels)))


def test_val_labels_as_spreadsheets_write_them_and_two_raters_disagreeing_on_a_scan(tmp_path):
    """Ids padded with spaces and a comma ending every row (a spreadsheet export) are the panel's ids; a scan listed
    twice with two diagnoses was given the first row's silently."""
    manifest = make_cohort(tmp_path, participants=12)
    table = adjudicated_table(manifest, {})
    labels = tmp_path / "panel.csv"
    lines = [f"{p} ,{s},{d}," for p, s, d in table.values]
    labels.write_text("participant_id,session_id,diagnosis\n" + "\n".join(lines) + "\n")
    data = build_mri_data(config(manifest, val_labels=str(labels)))
    assert np.array_equal(data.val.labels, build_mri_data(config(manifest)).val.labels)
    first = data.val.frame.iloc[0]
    other = CLASSES[(CLASSES.index(first["diagnosis"]) + 1) % 3]
    labels.write_text(labels.read_text() + f"{first['participant_id']},{first['session_id']},{other},\n")
    with pytest.raises(ValueError, match=rf"panel.csv: data rows \d+ and {len(lines) + 1} give scan "
                                         rf"{first['participant_id']} {first['session_id']} two diagnoses"):
        build_mri_data(config(manifest, val_labels=str(labels)))


def test_val_labels_meet_the_scans_of_ids_spelled_another_way(tmp_path):
    """A panel writing sub-03 as 03 and ses-1 as 1 (the spellings the manifest's own check counts as one person) was
    said to lack every validation scan."""
    manifest = make_cohort(tmp_path, participants=12)
    table = adjudicated_table(manifest, {})
    table["participant_id"] = table["participant_id"].str.removeprefix("sub-")
    table["session_id"] = table["session_id"].str.removeprefix("ses-")
    labels = tmp_path / "panel.csv"
    table.to_csv(labels, index=False)
    data = build_mri_data(config(manifest, val_labels=str(labels)))
    assert np.array_equal(data.val.labels, build_mri_data(config(manifest)).val.labels)


def test_memory_cache_serves_volumes_without_rereading(tmp_path):
    data = build_mri_data(config(make_cohort(tmp_path), cache="memory"))
    before = data.val[0]["image"].clone()
    for nifti in tmp_path.glob("*.nii.gz"):
        nifti.unlink()
    assert torch.equal(data.val[0]["image"], before)
    assert data.train[0]["image"].shape == (1, 16, 16, 16)  # random steps still run on the cached volume


def test_disk_cache_is_keyed_by_settings(tmp_path):
    manifest = make_cohort(tmp_path)
    cache = tmp_path / "cache"
    data = build_mri_data(config(manifest, cache="disk", cache_dir=str(cache)))
    expected = data.val[0]["image"].clone()
    written = len(list(cache.glob("*.pt")))
    assert written == 1
    assert torch.equal(build_mri_data(config(manifest, cache="disk", cache_dir=str(cache))).val[0]["image"], expected)
    assert len(list(cache.glob("*.pt"))) == written  # served from the cache
    build_mri_data(config(manifest, cache="disk", cache_dir=str(cache), crop_size=[8, 8, 8])).val[0]
    assert len(list(cache.glob("*.pt"))) == written + 1  # another crop size is another entry
    with pytest.raises(ValueError, match="cache_dir"):
        build_mri_data(config(manifest, cache="disk"))


def test_a_scan_written_again_at_the_same_size_is_not_served_from_the_disk_cache(tmp_path):
    """The disk cache is keyed by each scan's size and modification time: a scan preprocessed again in place is read
    anew, though an uncompressed .nii of the same grid keeps its size to the byte."""
    manifest = make_cohort(tmp_path, participants=12, scans=1)
    frame = pd.read_csv(manifest)
    for name in frame["path"]:
        nib.save(nib.load(tmp_path / name), tmp_path / name.replace(".nii.gz", ".nii"))
    frame.assign(path=frame["path"].str.replace(".nii.gz", ".nii")).to_csv(manifest, index=False)
    cfg = config(manifest, cache="disk", cache_dir=str(tmp_path / "cache"))
    data = build_mri_data(cfg)
    before, scan = data.val[0]["image"].clone(), Path(data.val.frame[IMAGE_COLUMN].iloc[0])
    size, written = scan.stat().st_size, scan.stat().st_mtime_ns
    write_volume(scan, np.random.default_rng(9).random(SHAPE))
    os.utime(scan, ns=(written + 10**9, written + 10**9))  # a later write, whatever the file system's clock step
    assert scan.stat().st_size == size
    assert not torch.equal(build_mri_data(cfg).val[0]["image"], before)


def test_a_cached_volume_cut_short_is_made_again(tmp_path, caplog):
    """A job killed while a cached volume was copied into a cache on another drive left it cut short: torch's zip
    error and a traceback at every later run, where the scan itself is fine."""
    manifest = make_cohort(tmp_path)
    cache = tmp_path / "cache"
    data = build_mri_data(config(manifest, cache="disk", cache_dir=str(cache)))
    expected = [data.val[0]["image"].clone(), data.train.item(0, seed=5)["image"].clone()]
    for cached in cache.glob("*.pt"):
        cached.write_bytes(cached.read_bytes()[:1000])
    again = build_mri_data(config(manifest, cache="disk", cache_dir=str(cache)))
    assert torch.equal(again.val[0]["image"], expected[0]) and torch.equal(again.train.item(0, 5)["image"], expected[1])
    assert "a cached volume that cannot be read" in caplog.text
    assert all(torch.load(cached, weights_only=True) is not None for cached in cache.glob("*.pt"))  # written whole


def test_a_cached_volume_holding_code_is_not_run_but_made_again(tmp_path, caplog, code_in_a_pickle):
    """A shared cache's file made to run code: torch refused it, and the warning repeated torch's first line, which
    invited loading it with weights_only=False; it names the objects."""
    manifest = make_cohort(tmp_path)
    cache = tmp_path / "cache"
    expected = build_mri_data(config(manifest, cache="disk", cache_dir=str(cache))).val[0]["image"].clone()
    (code, ran), (cached,) = code_in_a_pickle, list(cache.glob("*.pt"))
    torch.save({"image": code}, cached)
    assert torch.equal(build_mri_data(config(manifest, cache="disk", cache_dir=str(cache))).val[0]["image"], expected)
    assert (f"{cached}: a cached volume that cannot be read (it holds Python objects ({os.mkdir.__module__}.mkdir) "
            "that only running code from it could make, so it was not loaded); made again from its scan") in caplog.text
    assert not ran.exists()


def test_cached_volumes_are_written_in_the_cache_folder_itself(tmp_path, monkeypatch):
    """Written in the system's temporary folder and moved, a volume was copied across drives (not renamed), and a
    kill during that copy left it cut short; here no temporary folder elsewhere is needed."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    cache = tmp_path / "cache"
    data = build_mri_data(config(make_cohort(tmp_path), cache="disk", cache_dir=str(cache)))
    data.val[0]
    assert len(list(cache.glob("*.pt"))) == 1 and not list(cache.glob(".tmp*"))


def test_a_cache_dir_that_cannot_be_written_is_read_and_said_once(tmp_path, caplog, read_only):
    """A lab's cache shared read-only: MONAI served it uncached without a word where the OS said "permission denied",
    and a read-only mount stopped the first uncached item with a traceback naming a temporary file."""
    manifest = make_cohort(tmp_path)
    cache = tmp_path / "cache"
    build_mri_data(config(manifest, cache="disk", cache_dir=str(cache))).val[0]
    filled = sorted(cache.iterdir())
    read_only(cache)
    caplog.clear()
    data = build_mri_data(config(manifest, cache="disk", cache_dir=str(cache)))  # train, val, test: one warning
    assert torch.equal(data.val[0]["image"], data.val[0]["image"]) and data.train[0]["image"].shape == (1, 16, 16, 16)
    assert sorted(cache.iterdir()) == filled
    warned = [record.getMessage() for record in caplog.records if "cache_dir" in record.getMessage()]
    assert len(warned) == 1 and re.fullmatch(
        rf"data.mri.cache_dir = {cache}: cannot write there \((Read-only file system|Permission denied)\); the volumes "
        "cached there are read, every other one is made from its scan each time it is loaded; name a folder you can "
        "write to cache them", warned[0])
    with pytest.raises(ValueError, match=rf"^data.mri.cache_dir = {cache / 'new'} cannot be made \((Read-only file "
                                         r"system|Permission denied)\); name a folder you can write, or set "
                                         "data.mri.cache: memory$"):
        build_mri_data(config(manifest, cache="disk", cache_dir=str(cache / "new")))


def test_a_cached_volume_the_os_refuses_is_made_from_its_scan_and_said_once(tmp_path, caplog, monkeypatch):
    """Another user's cached file (mode 000) in a shared cache: reading it stopped the first batch with a traceback,
    and one that could not be replaced was served uncached without a word. As root the OS refuses no read, so
    torch.load here raises the PermissionError open() raises for such a file."""
    import errno
    import os

    from elr_mri.data import disk_cache

    manifest = make_cohort(tmp_path)
    cache = tmp_path / "cache"
    build_mri_data(config(manifest, cache="disk", cache_dir=str(cache))).val[0]
    filled = {path: path.read_bytes() for path in cache.iterdir()}

    def refused(path: Path, **_) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(disk_cache.torch, "load", refused)
    caplog.clear()
    data = build_mri_data(config(manifest, cache="disk", cache_dir=str(cache)))
    assert torch.equal(data.val[0]["image"], data.val[0]["image"]) and data.val[0]["image"].shape == (1, 16, 16, 16)
    assert {path: path.read_bytes() for path in cache.iterdir()} == filled  # theirs left as it is, once and again
    warned = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warned == [f"data.mri.cache_dir = {cache}: a cached volume there cannot be read or replaced (Permission "
                      "denied; another user's file?); such volumes are made from their scans each time they are "
                      "loaded; name a folder of your own to cache them"]


def test_a_cached_volume_the_os_will_not_let_be_replaced_is_said_once(tmp_path, caplog, monkeypatch):
    """A shared cache folder with the sticky bit (as /tmp) holding another user's file of the same name: the rename
    onto it is refused, and the volume was served uncached each time without a word. As root no rename is refused,
    so os.replace here raises the PermissionError the OS raises for one."""
    import errno
    import os

    cache = tmp_path / "cache"
    replace = os.replace

    def refused(source: str, target: str) -> None:
        if Path(target).parent == cache:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(source), None, str(target))
        replace(source, target)

    monkeypatch.setattr(os, "replace", refused)
    caplog.clear()
    data = build_mri_data(config(make_cohort(tmp_path), cache="disk", cache_dir=str(cache)))
    assert torch.equal(data.val[0]["image"], data.val[0]["image"]) and not list(cache.iterdir())
    warned = [record.getMessage() for record in caplog.records if "cache_dir" in record.getMessage()]
    assert warned == [f"data.mri.cache_dir = {cache}: a cached volume there cannot be read or replaced (Operation "
                      "not permitted; another user's file?); such volumes are made from their scans each time they "
                      "are loaded; name a folder of your own to cache them"]


def test_a_cache_dir_that_is_a_file_is_named(tmp_path):
    occupied = tmp_path / "cache"
    occupied.write_text("")
    with pytest.raises(ValueError, match=rf"data.mri.cache_dir = {occupied} is a file, not a folder"):
        build_mri_data(config(make_cohort(tmp_path), cache="disk", cache_dir=str(occupied)))


def test_dataloader_workers_draw_different_crops(tmp_path):
    path = write_volume(tmp_path / "v.nii.gz", np.random.default_rng(3).random(SHAPE))
    frame = pd.DataFrame({"participant_id": ["a", "b"], "session_id": ["1", "1"], "image_path": [str(path)] * 2,
                          "age": [70.0, 71.0]})
    scans = MRIScans(frame, np.array([0, 1]), mri_transforms(CROP, train=True, blur_sigma_max=0.0), cache="none")
    torch.manual_seed(0)
    first, second = DataLoader(scans, batch_size=1, num_workers=2)
    assert not torch.equal(first["image"], second["image"])  # same volume, same step, different workers


def test_a_scans_augmentation_comes_from_its_own_seed_whichever_worker_reads_it(tmp_path):
    """Training reads scans through `SeededItems`: MONAI's crop, flip and blur of scan i come from (epoch seed, i),
    so two workers give what the main process gives, and another epoch draws anew."""
    paths = [write_volume(tmp_path / f"v{i}.nii.gz", np.random.default_rng(i).random(SHAPE)) for i in range(4)]
    frame = pd.DataFrame({"participant_id": list("abcd"), "session_id": ["1"] * 4, "image_path": [str(p) for p in paths],
                          "age": [70.0] * 4})
    scans = MRIScans(frame, np.array([0, 1, 2, 0]), mri_transforms(CROP, train=True, blur_sigma_max=1.0), cache="none")

    def epoch(seed: int, workers: int) -> torch.Tensor:
        return torch.cat([b["image"] for b in DataLoader(SeededItems(scans, seed), batch_size=1, num_workers=workers)])

    in_main = epoch(7, workers=0)
    assert torch.equal(in_main, epoch(7, workers=2))
    assert not torch.equal(in_main, epoch(8, workers=0))


def test_a_holdout_scan_preprocessed_from_a_training_scan_s_input_voxels_is_refused_unless_allowed(tmp_path):
    """The same raw scan preprocessed again into the holdout's folder under other IDs is another processed file, and
    was scored without a word: preprocess's input_voxels_sha256, in both manifests, tells it."""
    (tmp_path / "train").mkdir(), (tmp_path / "holdout").mkdir()
    digests = [f"{i:064x}" for i in range(3)]
    training = make_cohort(tmp_path / "train", participants=3, scans=1, input_voxels_sha256=digests)
    holdout_ids = ["sub-H0", "sub-H1", "sub-H2"]
    holdout = make_cohort(tmp_path / "holdout", participants=3, scans=1, participant_id=holdout_ids,
                          input_voxels_sha256=[f"{9:064x}", digests[1], ""])
    cfg = config(training)
    with pytest.raises(LeakageError, match=r"1 scan\(s\) were preprocessed from the input voxels of a training scan "
                                           r"\(input_voxels_sha256\), e.g. sub-H1 ses-0, the same scan as training's "
                                           r"sub-01; results would be inflated"):
        build_mri_eval_dataset(holdout, cfg, training_participants=["sub-00", "sub-01", "sub-02"])
    cfg.mri.allow_participant_overlap = True
    _, notes = build_mri_eval_dataset(holdout, cfg, training_participants=["sub-00", "sub-01", "sub-02"])
    assert len(notes) == 1 and "allowed by data.mri.allow_participant_overlap" in notes[0]
    without = make_cohort(tmp_path / "holdout", participants=3, scans=1, participant_id=holdout_ids)
    assert build_mri_eval_dataset(without, config(training), training_participants=["sub-00"])[1] == []


def test_holdout_sharing_participants_is_refused_unless_allowed(tmp_path):
    manifest = make_cohort(tmp_path, participants=3, scans=1)
    cfg = config(manifest)
    with pytest.raises(LeakageError, match=r"in both training and holdout, e.g. sub-01; results would be inflated. "
                                           rf"Remove their scans from {manifest}, or set"):  # it said: fix the splits
        build_mri_eval_dataset(manifest, cfg, training_participants=["sub-01", "x"])
    cfg.mri.allow_participant_overlap = True
    holdout, notes = build_mri_eval_dataset(manifest, cfg, training_participants=["sub-01"])
    assert len(notes) == 2 and "sub-01" in notes[0] and "3 scan(s) are files of the training manifest" in notes[1]
    assert len(holdout) == 3 and holdout[2]["label"] == 2 and holdout[0]["image"].shape == (1, 16, 16, 16)
    clean, notes = build_mri_eval_dataset(manifest, trained_elsewhere(tmp_path), training_participants=["other"])
    assert notes == [] and (clean.frame["split"] == "holdout").all()


def test_a_holdout_listing_the_training_scans_under_other_ids_is_refused(tmp_path):
    """The participant check passes (no shared id): the image files alone say it is the training manifest again."""
    manifest = make_cohort(tmp_path, participants=3, scans=1)
    with pytest.raises(LeakageError, match=r": 3 scan\(s\) are files of the training manifest, e\.g\. "):
        build_mri_eval_dataset(manifest, config(manifest), training_participants=["other"])


def test_a_holdout_whose_scans_all_failed_preprocessing_is_refused_before_scoring(tmp_path):
    """A holdout of failed scans alone is dropped to no rows by the manifest's reader: one line saying so, not an
    empty evaluation."""
    manifest = make_cohort(tmp_path, participants=2, scans=1, status=["failed", "failed"])
    with pytest.raises(ManifestError, match=rf"{re.escape(str(manifest))}: no scans to score"):
        build_mri_eval_dataset(manifest, trained_elsewhere(tmp_path), training_participants=["other"])


def test_a_holdout_is_read_without_the_runs_cache(tmp_path):
    """Each holdout scan is scored once: with the run's cache: disk its crops were written into the run's cache_dir,
    with cache: memory every volume was held, neither checked against the room there."""
    (tmp_path / "holdout").mkdir()
    manifest = make_cohort(tmp_path / "holdout", participants=3, scans=1)
    for cache in ("disk", "memory"):
        cfg = config(tmp_path / "moved" / "manifest.csv", cache=cache, cache_dir=str(tmp_path / "cache"))
        holdout, _ = build_mri_eval_dataset(manifest, cfg, ["other"])
        assert [holdout[i]["label"] for i in range(len(holdout))] == [0, 1, 2]
        assert not isinstance(holdout.volumes, (DiskCache, MemoryCache))
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_converters_sessions_stay_in_one_split_stratified_by_their_most_frequent_diagnosis(tmp_path):
    """Longitudinal cohorts: a participant whose diagnosis changes (CN → MCI → MCI) has every session in one split,
    and is counted (stratified) under the diagnosis most of their scans carry."""
    from elr_mri.data.mri import split_balance_table

    diagnoses = []
    for p in range(12):
        first = CLASSES[p % 3]
        later = CLASSES[min(p % 3 + 1, 2)] if p % 2 else first  # odd participants convert after their first scan
        diagnoses += [first, later, later]
    data = build_mri_data(config(make_cohort(tmp_path, participants=12, scans=3, diagnosis=diagnoses)))
    frames = {name: getattr(data, name).frame for name in ("train", "val", "test")}
    sessions = pd.concat(frames.values()).groupby("participant_id").size()
    assert (sessions == 3).all() and len(sessions) == 12  # every session of every participant, each once
    for name, frame in frames.items():
        others = set().union(*(set(f["participant_id"]) for n, f in frames.items() if n != name))
        assert not set(frame["participant_id"]) & others
    balance = split_balance_table(data)
    majority = pd.Series(diagnoses[1::3]).value_counts()  # the second and third scans agree
    assert balance[CLASSES].sum().to_dict() == {c: int(majority.get(c, 0)) for c in CLASSES}


def test_scans_without_an_age_are_refused_only_for_a_model_that_reads_it(tmp_path):
    """model.use_age defaults to true for every model, but only the widened CNN reads the age: a MONAI baseline on a
    cohort without ages must train (the README's manifest checks say so)."""
    from elr_mri.config import ModelConfig, RunConfig
    from elr_mri.data.cohort import ManifestError
    from elr_mri.models import uses_age

    data_cfg = config(make_cohort(tmp_path, participants=6, scans=1, age=[np.nan] * 6))
    for model, reads_age in ((ModelConfig(name="widened_cnn3d"), True), (ModelConfig(name="resnet18_3d"), False),
                             (ModelConfig(name="widened_cnn3d", use_age=False), False)):
        cfg = RunConfig(data=data_cfg, model=model)
        assert uses_age(cfg) is reads_age, model
        if reads_age:
            with pytest.raises(ManifestError, match="no age"):
                build_data(cfg.data, require_age=uses_age(cfg))
        else:
            assert np.isnan(build_data(cfg.data, require_age=uses_age(cfg)).train.ages).all()


def test_a_training_subset_keeps_each_diagnosis_share(tmp_path):
    cfg = config(make_cohort(tmp_path, participants=24, scans=1))
    full = build_mri_data(cfg)
    assert np.bincount(full.train_labels).tolist() == [4, 4, 4]
    subset = build_mri_data(replace(cfg, train_subset=6))
    assert np.bincount(subset.train_labels).tolist() == [2, 2, 2]
    assert set(subset.train.frame["participant_id"]) < set(full.train.frame["participant_id"])
    with pytest.raises(ValueError, match=r"data.train_subset = 13 must lie in \[1, 12\]"):
        build_mri_data(replace(cfg, train_subset=13))


def test_a_training_subset_of_a_noisy_run_keeps_the_given_diagnoses_shares(tmp_path):
    """The subset is drawn by the manifest's diagnoses, as an image data set's by its classes, not by the labels the
    run's injected noise gave: those would keep the noise's shares and unbalance the scans' diagnoses."""
    noise = NoiseConfig(mode="symmetric_exclusive", rate=0.5, seed=1)
    cfg = replace(config(make_cohort(tmp_path, participants=24, scans=1)), noise=noise, train_subset=6)
    subset = build_mri_data(cfg)
    assert np.bincount(subset.train_clean_labels).tolist() == [2, 2, 2]
    assert np.bincount(subset.train_labels).tolist() != [2, 2, 2]  # the noise moved the shares: the test can tell


def test_a_runs_splits_csv_passed_back_as_data_mri_splits_gives_the_same_splits(tmp_path):
    """A run on a training subset listed only the participants it kept, so its splits.csv, passed back as
    data.mri.splits to train again on the same splits, was refused for not listing the manifest's others."""
    from elr_mri.data.splits import read_run_splits
    from elr_mri.engine.run_records import record_run_data

    cfg = replace(config(make_cohort(tmp_path, participants=24, scans=1)), train_subset=6)
    first = build_mri_data(cfg)
    (tmp_path / "run").mkdir()
    record_run_data(tmp_path / "run", first, record_ages=False)
    assert read_run_splits(tmp_path / "run")["participant_id"].tolist() == (
        first.train.frame["participant_id"].tolist() + first.val.frame["participant_id"].tolist()
        + first.test.frame["participant_id"].tolist())  # what the run used, as the leakage guard needs it
    again = build_mri_data(replace(cfg, mri=replace(cfg.mri, splits=str(tmp_path / "run" / "splits.csv"))))
    for split in ("train", "val", "test"):
        assert getattr(again, split).frame["participant_id"].tolist() == (
            getattr(first, split).frame["participant_id"].tolist())


def test_a_diagnosis_a_given_test_split_lacks_is_warned_of_naming_the_splits_file(tmp_path, caplog):
    """With data.mri.splits the fractions are not read, yet the warning said to raise data.mri.test_fraction."""
    from elr_mri.data.mri import split_balance_table

    manifest = make_cohort(tmp_path, participants=9, scans=1)  # sub-02, sub-05, sub-08 are AD
    splits = tmp_path / "splits.csv"
    given = {"sub-00": "test", "sub-01": "test", "sub-03": "val", "sub-04": "val", "sub-05": "val"}
    pd.DataFrame({"participant_id": [f"sub-{p:02d}" for p in range(9)],
                  "split": [given.get(f"sub-{p:02d}", "train") for p in range(9)]}).to_csv(splits, index=False)
    with caplog.at_level(logging.WARNING, logger="elr_mri.data.mri"):
        split_balance_table(build_mri_data(config(manifest, splits=str(splits))))
    assert [message for message in caplog.messages if "test split holds no" in message] == [f"the run's test split holds no participant diagnosed AD, so nothing there scores it; "
                               f"list some as test in data.mri.splits ({splits}), which gave the splits"]
    caplog.clear()
    (tmp_path / "drawn").mkdir()
    drawn = make_cohort(tmp_path / "drawn", participants=12, scans=1, diagnosis=["CN", "MCI"] * 5 + ["AD"] * 2)
    with caplog.at_level(logging.WARNING, logger="elr_mri.data.mri"):
        split_balance_table(build_mri_data(config(drawn, test_fraction=0.2)))  # 2 AD: round(0.4) = 0
    assert [message for message in caplog.messages if "test split holds no" in message] == [
        "the run's test split holds no participant diagnosed AD, so nothing there scores it; raise "
        "data.mri.test_fraction or give the splits in data.mri.splits"]


def test_a_configured_holdout_is_checked_before_training(tmp_path):
    manifest = make_cohort(tmp_path, participants=6, scans=1)
    with pytest.raises(LeakageError, match="in both training and holdout"):  # the cohort is its own holdout
        build_mri_data(config(manifest, holdout_manifest=str(manifest)))
    other = tmp_path / "other"
    other.mkdir()
    holdout = make_cohort(other, participants=3, scans=1)
    pd.read_csv(holdout).assign(participant_id=lambda t: "nacc-" + t["participant_id"]).to_csv(holdout, index=False)
    assert len(build_mri_data(config(manifest, holdout_manifest=str(holdout))).train) > 0


def test_missing_manifest_setting_is_explained():
    with pytest.raises(ValueError, match="data.mri.manifest"):
        build_mri_data(DataConfig(name="mri"))


# --- voxel grids ---------------------------------------------------------------------------------------

def test_the_cohorts_grid_is_recorded_in_ras_order(tmp_path):
    manifest = make_cohort(tmp_path, participants=6, scans=1)
    assert build_mri_data(config(manifest)).volume_grid == VolumeGrid((32, 32, 32), (1.5, 1.5, 1.5))
    stored_pli = np.array([[0, 0, 2.0, 0], [-1.0, 0, 0, 0], [0, -3.0, 0, 0], [0, 0, 0, 1]])  # axes P, I, R
    path = write_volume(tmp_path / "pli.nii.gz", np.zeros((10, 20, 30)), stored_pli)
    assert read_grid(str(path)) == VolumeGrid((30, 10, 20), (2.0, 1.0, 3.0))


def test_a_scan_on_another_grid_is_refused_naming_it(tmp_path):
    manifest = make_cohort(tmp_path, participants=6, scans=1)
    odd = write_volume(tmp_path / "sub-03_ses-0.nii.gz", np.ones(SHAPE), np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=rf"1 of 6 scan\(s\) are on another voxel grid, e\.g\. {odd} is 32x32x32 "
                                         r"voxels of 2x2x2 mm and the other scans are 32x32x32 voxels of 1.5x1.5x1.5"):
        build_mri_data(config(manifest))


def test_a_surface_file_is_refused_as_holding_no_voxel_grid(tmp_path):
    surface = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(np.zeros(3, dtype=np.float32))])
    path = tmp_path / "lh.pial.gii"
    nib.save(surface, str(path))
    with pytest.raises(ScanReadError, match=rf"{path}: cannot be read as a volume \(TypeError: a GiftiImage holds no "
                                            r"voxel grid\); preprocess the scan again"):
        read_grid(str(path))


def test_a_4d_scan_is_refused_and_a_series_of_one_volume_is_read(tmp_path):
    manifest = make_cohort(tmp_path, participants=6, scans=1)
    write_volume(tmp_path / "sub-02_ses-0.nii.gz", np.ones((*SHAPE, 1)))
    assert build_mri_data(config(manifest)).volume_grid.shape == SHAPE
    four_d = write_volume(tmp_path / "sub-02_ses-0.nii.gz", np.ones((*SHAPE, 3)))
    with pytest.raises(ScanReadError, match=rf"{four_d}: holds a 4-D image of shape \(32, 32, 32, 3\), not one 3-D"):
        build_mri_data(config(manifest))


def test_a_holdout_off_the_training_grid_is_refused(tmp_path):
    manifest = make_cohort(tmp_path, participants=3, scans=1)
    trained_on = VolumeGrid((32, 32, 32), (1.5, 1.5, 1.5))
    cfg = trained_elsewhere(tmp_path)
    assert len(build_mri_eval_dataset(manifest, cfg, ["other"], grid=trained_on)[0]) == 3
    with pytest.raises(ValueError, match=r"3 of 3 scan\(s\) are on another voxel grid.*the run trained on 32x32x40"):
        build_mri_eval_dataset(manifest, cfg, ["other"], grid=VolumeGrid((32, 32, 40), (1.5,) * 3))


def _shifted(path: Path, mm: float) -> Path:
    """The scan at `path` rewritten with its origin `mm` further along x: the same grid elsewhere in space."""
    image = nib.load(path)
    affine = image.affine.copy()
    affine[0, 3] += mm
    return write_volume(path, np.asarray(image.dataobj), affine)


def test_voxels_a_hundredth_of_a_millimetre_off_are_another_grid_and_a_recorded_grid_matches_its_scans(tmp_path):
    """Resampling writes exact spacings (header rounding stays far below 0.001 mm): 0.01 mm more a voxel drifts 0.3 mm
    across 32 voxels. A run records its scans' grid, and what it reads back must still be theirs."""
    from elr_mri.data.grid import common_grid

    paths = [str(write_volume(tmp_path / f"{name}.nii.gz", np.ones(SHAPE), np.diag([size, 1.5, 1.5, 1.0])))
             for name, size in (("a", 1.5), ("b", 1.5), ("c", 1.51))]
    with pytest.raises(ValueError, match=r"1 of 3 scan\(s\) are on another voxel grid, e\.g\. .*c\.nii\.gz is 32x32x32 "
                                         r"voxels of 1\.51x1\.5x1\.5 mm"):
        common_grid(paths, "manifest.csv")
    recorded = VolumeGrid(SHAPE, (1.2345, 1.5, 1.5))
    assert VolumeGrid.from_dict(recorded.as_dict()).matches(recorded)


def test_scans_over_half_a_voxel_apart_are_refused_and_without_a_majority_the_first_scans_place_is_the_reference(
        tmp_path):
    manifest = make_cohort(tmp_path, participants=4, scans=1)
    odd = _shifted(tmp_path / "sub-02_ses-0.nii.gz", 1.0)  # over half a 1.5 mm voxel, under a whole one
    with pytest.raises(ValueError, match=rf"1 of 4 scan\(s\) are on its voxel grid but elsewhere in space, e\.g\. "
                                         rf"{odd} lies up to 1 mm from {tmp_path / 'sub-00_ses-0.nii.gz'}"):
        build_mri_data(config(manifest))
    _shifted(tmp_path / "sub-03_ses-0.nii.gz", 1.0)  # two and two: no place where most lie
    with pytest.raises(ValueError, match=rf"2 of 4 scan\(s\) are on its voxel grid but elsewhere in space, e\.g\. "
                                         rf"{odd} lies up to 1 mm from {tmp_path / 'sub-00_ses-0.nii.gz'}"):
        build_mri_data(config(manifest))


def test_scans_on_one_grid_but_elsewhere_in_space_are_refused_naming_one(tmp_path):
    """Same shape and voxel size was all the check compared: scans of another origin were trained on, scored and
    averaged into one saliency map (drawn on the first scan's affine) without a word."""
    manifest = make_cohort(tmp_path, participants=6, scans=1)
    _shifted(tmp_path / "sub-04_ses-0.nii.gz", 0.7)  # under half a voxel (1.5 mm): header rounding, not a move
    assert build_mri_data(config(manifest)).volume_grid == VolumeGrid(SHAPE, (1.5, 1.5, 1.5))
    odd = _shifted(tmp_path / "sub-03_ses-0.nii.gz", 12.0)
    with pytest.raises(ValueError, match=rf"1 of 6 scan\(s\) are on its voxel grid but elsewhere in space, e\.g\. {odd} "
                                         rf"lies up to 12 mm from {tmp_path / 'sub-00_ses-0.nii.gz'}.*same --template"):
        build_mri_data(config(manifest))
    (tmp_path / "holdout").mkdir()
    holdout = make_cohort(tmp_path / "holdout", participants=3, scans=1)
    odd = _shifted(tmp_path / "holdout" / "sub-01_ses-0.nii.gz", -9.0)
    for grid in (VolumeGrid(SHAPE, (1.5, 1.5, 1.5)), None):  # None: a run from before its grid was recorded
        with pytest.raises(ValueError, match=rf"1 of 3 scan\(s\) are on its voxel grid but elsewhere.*{odd} lies up"):
            build_mri_eval_dataset(holdout, trained_elsewhere(tmp_path), ["other"], grid=grid)


def test_a_holdout_elsewhere_in_space_than_the_training_scans_is_refused_where_the_run_recorded_their_place(tmp_path):
    """A holdout registered to another template or origin, all its scans in one place, is on the run's grid: only
    the place recorded with the run (data_shape.json's volume_ras_affine) tells it from the training scans'."""
    from elr_mri.engine.run_records import record_run_data
    from elr_mri.evaluation.scored_scans import run_grid

    data = build_mri_data(config(make_cohort(tmp_path, participants=6, scans=1)))
    (tmp_path / "run").mkdir()
    record_run_data(tmp_path / "run", data, record_ages=False)
    recorded = run_grid(tmp_path / "run")
    (tmp_path / "holdout").mkdir()
    holdout = make_cohort(tmp_path / "holdout", participants=3, scans=1)
    _shifted(tmp_path / "holdout" / "sub-00_ses-0.nii.gz", 0.7)  # under half a voxel: accepted
    assert len(build_mri_eval_dataset(holdout, trained_elsewhere(tmp_path), ["other"], grid=recorded)[0]) == 3
    moved = _shifted(tmp_path / "holdout" / "sub-01_ses-0.nii.gz", 1.0)  # over half a voxel from where it trained
    with pytest.raises(ValueError, match=rf"1 of 3 scan\(s\) are on the run's voxel grid but elsewhere in space than "
                                         rf"the scans it trained on, e\.g\. {moved} lies up to 1 mm"):
        build_mri_eval_dataset(holdout, trained_elsewhere(tmp_path), ["other"], grid=recorded)
    _shifted(moved, -1.0)
    for i in range(3):
        _shifted(tmp_path / "holdout" / f"sub-0{i}_ses-0.nii.gz", 9.0)
    with pytest.raises(ValueError, match=r"3 of 3 scan\(s\) are on the run's voxel grid but elsewhere in space than the "
                                         r"scans it trained on, e\.g\. .*sub-00_ses-0\.nii\.gz lies up to 9\.7 mm"):
        build_mri_eval_dataset(holdout, trained_elsewhere(tmp_path), ["other"], grid=recorded)
    without_place = VolumeGrid.from_dict(data.volume_grid.as_dict())  # a run from before the place was recorded
    assert len(build_mri_eval_dataset(holdout, trained_elsewhere(tmp_path), ["other"], grid=without_place)[0]) == 3


def test_a_scan_stored_in_another_axis_order_at_the_same_place_is_accepted(tmp_path):
    """MONAI reorients to RAS, so a scan stored left-to-right reversed whose voxels land on the others' is fine."""
    manifest = make_cohort(tmp_path, participants=6, scans=1)
    path = tmp_path / "sub-02_ses-0.nii.gz"
    las = np.diag([-1.5, 1.5, 1.5, 1.0])
    las[0, 3] = 1.5 * (SHAPE[0] - 1)  # its last voxel along x at 0 mm, where the others' first is
    write_volume(path, np.asarray(nib.load(path).dataobj)[::-1], las)
    assert len(build_mri_data(config(manifest)).train) > 0


def test_scans_smaller_than_the_crop_are_padded_with_a_warning(tmp_path, caplog):
    manifest = make_cohort(tmp_path, participants=6, scans=1)
    data = build_mri_data(config(manifest, crop_size=[16, 40, 16]))
    assert data.train[0]["image"].shape == (1, 16, 40, 16)
    assert "smaller than data.mri.crop_size [16, 40, 16] along axis 1 and are zero-padded" in caplog.text
    with pytest.raises(ValueError, match=r"crop_size \[16, 80, 16\] is more than 2× the scans \(32x32x32 .*along axis 1, "
                                         "so the crops would be mostly padding"):
        build_mri_data(config(manifest, crop_size=[16, 80, 16]))
    assert "no processed_path column, so the scans in `path` are read as they are" in caplog.text
    caplog.clear()
    frame = pd.read_csv(manifest)
    frame.rename(columns={"path": "processed_path"}).assign(path="raw.nii.gz").to_csv(manifest, index=False)
    build_mri_data(config(manifest))
    assert "processed_path" not in caplog.text  # what `preprocess` writes: read without a word


def test_one_diagnosis_is_refused_and_an_absent_class_warned_of(tmp_path, caplog):
    with pytest.raises(ValueError, match=r"every training scan is labelled CN; a classifier needs at least two"):
        build_mri_data(config(make_cohort(tmp_path, participants=6, scans=1, diagnosis="CN")))
    two = make_cohort(tmp_path, participants=8, scans=1, diagnosis=["CN", "AD"] * 4)
    assert build_mri_data(config(two)).num_classes == 3
    assert "no training scan is labelled MCI; the network will never predict it" in caplog.text
    three = make_cohort(tmp_path, participants=6, scans=1)  # CN, MCI, AD: splits that leave one are named
    frame = pd.read_csv(three)
    frame.assign(split=frame["diagnosis"].map({"MCI": "train", "CN": "val", "AD": "test"}))[
        ["participant_id", "split"]].to_csv(tmp_path / "splits.csv", index=False)
    with pytest.raises(ValueError, match=r"the 2 training scan\(s\) left after splitting are all labelled MCI, "
                                         r"though the manifest has other diagnoses; list participants of other "
                                         r"diagnoses as train in data.mri.splits \(.*splits.csv\)") as err:
        build_mri_data(config(three, splits=str(tmp_path / "splits.csv")))
    assert "test_fraction" not in str(err.value)  # not read where the splits are given
    (tmp_path / "few_ad").mkdir()  # 10 CN, 2 AD at test_fraction 0.75: 8 CN and both AD go to test
    few_ad = config(make_cohort(tmp_path / "few_ad", participants=12, scans=1, diagnosis=["CN"] * 10 + ["AD"] * 2),
                    test_fraction=0.75)
    with pytest.raises(ValueError, match=r"all labelled CN, though the manifest has other diagnoses; lower "
                                         r"data.mri.test_fraction or data.val_fraction"):
        build_mri_data(replace(few_ad, val_fraction=0.0))


@pytest.mark.parametrize(("shape", "crop"), [((110, 120, 100), (96, 96, 96)), ((98, 116, 94), (96, 96, 96)),
                                             ((75, 80, 73), (96, 96, 96)), ((110, 80, 73), (97, 97, 97))])
def test_saliency_affine_places_the_crop_where_the_evaluation_transform_took_it(tmp_path, shape, crop):
    """A single bright voxel: its world position by the scan's affine equals its position in the
    evaluation crop by `crop_affine`, whether the crop cuts the scan or pads it, by an even or an odd margin (an odd
    crop of an even axis starts at half the axis less half the crop, each rounded down, as MONAI's centre crop)."""
    from elr_mri.data.mri import mri_transforms
    from elr_mri.evaluation.explain import crop_affine

    volume = np.zeros(shape, dtype=np.float32)
    voxel = (shape[0] // 2 + 3, shape[1] // 2 - 5, shape[2] // 2 + 7)
    volume[voxel] = 1.0
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = [-70.0, -100.0, -60.0]
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(volume, affine), path)
    cropped = mri_transforms(crop, train=False)({"image": str(path)})["image"][0].numpy()
    found = np.argwhere(cropped == cropped.max())
    assert len(found) == 1
    in_crop = crop_affine(str(path), crop) @ np.append(found[0], 1.0)
    assert np.allclose(in_crop, affine @ np.append(voxel, 1.0))


def test_an_epochs_augmentations_do_not_depend_on_the_epochs_before(tmp_path):
    """A resumed run starts at an epoch in a fresh process; MONAI's random state is not in the checkpoint,
    so that epoch's augmentations must come from the epoch alone, as the uninterrupted run drew them."""
    from elr_mri.config import RunConfig
    from elr_mri.distributed import DistContext
    from elr_mri.engine.feeding import BatchFeeder

    manifest = make_cohort(tmp_path, participants=6, scans=1)
    cfg = RunConfig(data=config(manifest))
    cfg.train.loader, cfg.train.batch_size = "dataloader", 2

    def images(feeder: BatchFeeder, epoch: int) -> torch.Tensor:
        return torch.cat([batch["image"] for batch in feeder.train_epoch(epoch)])

    uninterrupted = BatchFeeder(build_mri_data(cfg.data), cfg, DistContext(), torch.device("cpu"))
    first, second = images(uninterrupted, 1), images(uninterrupted, 2)
    resumed = BatchFeeder(build_mri_data(cfg.data), cfg, DistContext(), torch.device("cpu"))
    assert not torch.equal(first, second)  # the augmentations do change between epochs
    assert torch.equal(images(resumed, 2), second)


def test_a_scan_drawn_again_in_an_epoch_is_augmented_again(tmp_path):
    """Class-balanced batches draw with replacement; seeded by (epoch, index) alone, each of the 18 repeat draws of
    6 scans in 24 was the same crop and blur as the scan's first draw. Counted over the global order, the draws
    are the same under any number of processes."""
    from elr_mri.config import RunConfig
    from elr_mri.distributed import DistContext, GlobalBatchSampler, NumberedDraws
    from elr_mri.engine.feeding import BatchFeeder

    cfg = RunConfig(data=config(make_cohort(tmp_path, participants=12, scans=1)))
    cfg.train.loader, cfg.train.batch_size, cfg.data.balanced_batches = "dataloader", 4, 6
    data = build_mri_data(cfg.data)
    first_draws: dict[int, torch.Tensor] = {}
    repeats = 0
    for batch in BatchFeeder(data, cfg, DistContext(), torch.device("cpu")).train_epoch(1):
        for index, image in zip(batch["index"].tolist(), batch["image"]):
            if index in first_draws:
                repeats += 1
                assert not torch.equal(image, first_draws[index])
            first_draws.setdefault(index, image)
    assert repeats == 24 - len(first_draws) > 0
    weights = torch.ones(len(data.train), dtype=torch.double)

    def numbered(rank: int, world: int) -> list[list[tuple[int, int]]]:
        return list(NumberedDraws(GlobalBatchSampler(len(data.train), 4, torch.Generator().manual_seed(3), rank, world,
                                                     weights=weights, num_samples=24)))

    alone, ranks = numbered(0, 1), [numbered(rank, 2) for rank in (0, 1)]
    assert alone == [first + second for first, second in zip(*ranks)]
    assert [[index for index, _ in batch] for batch in alone] == list(
        GlobalBatchSampler(len(data.train), 4, torch.Generator().manual_seed(3), weights=weights, num_samples=24))
    draws = [draw for batch in alone for _, draw in batch]
    indices = [index for batch in alone for index, _ in batch]
    assert draws == [indices[:position].count(index) for position, index in enumerate(indices)]


@pytest.mark.parametrize("workers", [0, 2])
def test_training_batches_blurred_on_the_device_are_the_loaders(tmp_path, workers):
    """`data.mri.blur_on: device`: the feeder's batches equal those blurred in the loader (here both on the CPU),
    whichever process cut each crop."""
    from elr_mri.config import RunConfig
    from elr_mri.distributed import DistContext
    from elr_mri.engine.feeding import BatchFeeder

    manifest = make_cohort(tmp_path, participants=6, scans=1)
    cfg = RunConfig(data=config(manifest, flip=True))
    cfg.train.loader, cfg.train.batch_size, cfg.data.num_workers = "dataloader", 2, workers

    def images(blur_on_device: bool) -> torch.Tensor:
        data = build_mri_data(cfg.data, blur_on_device=blur_on_device)
        feeder = BatchFeeder(data, cfg, DistContext(), torch.device("cpu"), blur_on_device=blur_on_device)
        batches = list(feeder.train_epoch(3))
        assert all("blur_sigma" not in batch and batch["image"].shape[2:] == tuple(CROP) for batch in batches)
        return torch.cat([batch["image"] for batch in batches])

    in_loader = images(blur_on_device=False)
    assert torch.allclose(images(blur_on_device=True), in_loader, rtol=0, atol=2e-6)


@pytest.mark.parametrize("progress", [True, False])
def test_filling_a_memory_cache_shows_a_bar_only_where_progress_allows(tmp_path, capfd, progress: bool):
    """MONAI's bar showed with train.progress: false, and on every torchrun rank: the runner passes its own setting."""
    manifest = make_cohort(tmp_path, participants=60, scans=3, age=70.0)
    data = build_data(config(manifest, cache="memory", test_fraction=0.1), progress=progress)
    assert len(data.train) > 100  # a smaller cache fills without a bar either way
    assert ("Loading dataset" in capfd.readouterr().err) == progress


def test_a_cache_dir_on_a_disk_that_fills_mid_run_serves_the_volumes_and_says_so_once(tmp_path, caplog):
    """A cache disk that filled during a run (a 1 MB tmpfs, filled after the cache was opened): torch's writer stopped
    the run at the next volume with "unexpected pos" and a traceback. A file size limit refuses the writes here as
    that disk did."""
    import resource

    manifest = make_cohort(tmp_path)
    cache = tmp_path / "cache"
    expected = build_mri_data(config(manifest, cache="memory")).val[0]["image"]
    data = build_mri_data(config(manifest, cache="disk", cache_dir=str(cache)))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4 * 1024, hard))
    try:
        served = [data.val[0]["image"], data.train[0]["image"], data.val[0]["image"]]
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert torch.equal(served[0], expected) and torch.equal(served[2], expected)
    assert not list(cache.iterdir())  # nothing cut short left, not even a temporary file
    assert caplog.text.count("File too large there, so the volumes not cached yet are made from their scans") == 1


def test_a_relative_manifest_path_not_found_says_where_it_was_read_from(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs made before 2026-12-03 recorded their paths as given: evaluated from another directory, such a run's
    manifest was "no such file ... put the file back there", though it lay where it was, beside the directory the
    run had trained in."""
    monkeypatch.chdir(tmp_path)
    line = (f"data.mri.manifest = cohort/manifest.csv: no such file; a relative path, read from {tmp_path}, which does "
            "not hold it; a run made before 2026-12-03 recorded its paths as given: run the command from the directory "
            "it was trained in")
    with pytest.raises(ValueError, match=f"^{re.escape(line)}$"):
        build_data(DataConfig(name="mri", mri=MRIDataConfig(manifest="cohort/manifest.csv")))
