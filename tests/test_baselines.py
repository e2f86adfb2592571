"""The linear baselines end to end on a tiny simulated cohort: simulate → preprocess → volumes → fit → score."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("ants")

from elr_mri.baselines.evaluate import (OneDiagnosisLeft, _baseline_inputs, _warn_if_unscaled,  # noqa: E402
                                       evaluate_baselines)
from elr_mri.baselines.features import (CovariateFill, read_volumes, training_fill, volume_features,  # noqa: E402
                                       voxel_features)
from elr_mri.baselines.models import (BASELINES, ScaledSVM, class_scores, fit_baseline,  # noqa: E402
                                     validation_chooses_c)
from elr_mri.config import config_to_dict, load_config, load_run_config  # noqa: E402
from elr_mri.data import build_data  # noqa: E402
from elr_mri.data.images import NoisyImageData  # noqa: E402
from elr_mri.engine.run_records import record_run_data  # noqa: E402
from elr_mri.engine.selection import selection_rule  # noqa: E402
from elr_mri.evaluation.calibration import brier_score, expected_calibration_error  # noqa: E402
from elr_mri.evaluation.compare import comparison_table  # noqa: E402
from elr_mri.simulate.cli import main as simulate  # noqa: E402
from elr_mri.volumes.measure import VolumeParams, measure_manifest, volume_columns  # noqa: E402
from preprocess.cli import main as preprocess  # noqa: E402

ROOT = Path(__file__).parents[1]
RESOLUTION = 4.0  # coarse: this is a test of the plumbing and of the signal, not of the accuracy


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A simulated ADNI-like + NACC-like cohort, preprocessed and measured, split like a run would."""
    root = tmp_path_factory.mktemp("baselines")
    assert simulate(["--out", str(root / "raw"), "--subjects", "15", "--holdout-subjects", "6", "--label-noise", "0.2",
                     "--seed", "2", "--resolution", str(RESOLUTION), "--jobs", "2"]) == 0
    assert preprocess(["--input", str(root / "raw" / "manifest.csv"), "--output", str(root / "pre"),
                       "--resolution", str(RESOLUTION), "--jobs", "2", "--no-progress"]) == 0
    manifest = pd.read_csv(root / "pre" / "manifest.csv")
    sites = {site: root / f"{site}.csv" for site in ("adni_sim", "nacc_sim")}
    for site, path in sites.items():
        manifest[manifest["cohort"] == site].to_csv(path, index=False)
    volumes = measure_manifest(root / "pre" / "manifest.csv", params=VolumeParams(registration_mm=RESOLUTION),
                               jobs=2, progress=False)[0]
    # what `elr-mri train` writes before its first epoch that the baselines read: config.yaml, data_shape.json (the
    # training labels' fingerprint) and splits.csv, from the engine's own data set
    run = root / "run"
    run.mkdir()
    cfg = load_config(ROOT / "configs" / "adni" / "cpu_small.yaml", [f"data.mri.manifest={sites['adni_sim']}"])
    (run / "config.yaml").write_text(yaml.safe_dump({**config_to_dict(cfg), "selection_rule": selection_rule(cfg)},
                                                   sort_keys=False))
    record_run_data(run, build_data(cfg.data), record_ages=False)
    return {"run": run, "volumes": volumes, "holdout": sites["nacc_sim"], "truth": root / "raw" / "truth.csv"}


@pytest.mark.slow  # simulating and preprocessing 21 scans: 1-3 min on 2 cores
def test_volume_features_carry_the_simulated_atrophy(cohort: dict[str, Path]) -> None:
    volumes = pd.read_csv(cohort["volumes"])
    truth = pd.read_csv(cohort["truth"])
    joined = volumes.merge(truth, on=["participant_id", "session_id"])
    ventricles = joined.groupby("true_diagnosis")["ventricle_l_per_brain"].mean()
    assert ventricles["AD"] > ventricles["CN"]
    r = np.corrcoef(joined["brain_ratio"], joined["volume_ratio_brain"])[0, 1]
    assert r > 0.8


@pytest.mark.slow  # simulating and preprocessing 21 scans: 1-3 min on 2 cores
def test_baselines_score_the_test_split_and_the_holdout_in_the_cnn_format(cohort: dict[str, Path]) -> None:
    run = cohort["run"]
    for manifest in (None, cohort["holdout"]):
        results = evaluate_baselines(run, [cohort["volumes"]], manifest, n_boot=50)
        assert set(results) == {b.name for b in BASELINES}
        name = "test" if manifest is None else manifest.stem
        for baseline in results:
            folder = run / f"eval-{name}" / "baselines" / baseline
            summary = json.loads((folder / "summary.json").read_text())
            assert summary["baseline"] == baseline and summary["C"] > 0 and summary["C_chosen_on_validation"]
            assert 0 <= summary["participant"]["accuracy"]["estimate"] <= 1
            predictions = pd.read_csv(folder / "predictions.csv")
            assert np.allclose(predictions[["p_CN", "p_MCI", "p_AD"]].sum(axis=1), 1)
            assert (folder / "roc.png").exists()
        table = comparison_table(run / f"eval-{name}", "cnn_ce")
        assert set(table["method"]) == set(results)  # no CNN summary in this run: baselines only


@pytest.mark.slow  # simulating and preprocessing 21 scans: 1-3 min on 2 cores
def test_dropping_flagged_scans_trains_on_fewer(cohort: dict[str, Path], tmp_path: Path) -> None:
    run = cohort["run"]
    flagging = tmp_path / "elr"
    flagging.mkdir()
    for name in ("splits.csv", "config.yaml"):
        (flagging / name).write_bytes((run / name).read_bytes())
    splits = pd.read_csv(run / "splits.csv")
    first = splits.loc[splits["split"] == "train", "participant_id"].iloc[0]
    given = pd.read_csv(run.parent / "adni_sim.csv").set_index("participant_id").loc[first, "diagnosis"]
    flags = pd.DataFrame({"index": [0], "participant_id": [first], "session_id": ["ses-M00"], "given_name": [given]})
    for wrong, message in ((flags.assign(session_id="ses-M99"), "are not training scans of"),
                           (flags.assign(given_name="XX"), "was flagged as XX, the manifest now says")):
        wrong.to_csv(flagging / "suspected_mislabels.csv", index=False)
        with pytest.raises(ValueError, match=message):
            evaluate_baselines(run, [cohort["volumes"]], None, flagging, n_boot=20)
    flags.to_csv(flagging / "suspected_mislabels.csv", index=False)
    results = evaluate_baselines(run, [cohort["volumes"]], None, flagging, n_boot=20)
    summary = json.loads((run / "eval-test" / "baselines" / "volumes_logreg_without_suspected" / "summary.json")
                         .read_text())
    assert set(results) == {f"{b.name}_without_suspected" for b in BASELINES}
    assert summary["dropped_suspected"] == 1 and summary["flagging_run"] == str(flagging.resolve())
    assert summary["dropped_scans"] == [f"{first}/ses-M00"]  # which scans, and from which list of flags
    assert summary["flags_sha256"] == hashlib.sha256((flagging / "suspected_mislabels.csv").read_bytes()).hexdigest()
    splits["diagnosis"] = pd.read_csv(run.parent / "adni_sim.csv").drop_duplicates("participant_id").set_index(
        "participant_id")["diagnosis"].reindex(splits["participant_id"]).to_numpy()
    every_but_one_class = splits[(splits["split"] == "train") & (splits["diagnosis"] != "MCI")]
    every_but_one_class.assign(index=0, session_id="ses-M00").to_csv(flagging / "suspected_mislabels.csv", index=False)
    with pytest.raises(OneDiagnosisLeft, match="only MCI is left"):  # the one case the demo skips
        evaluate_baselines(run, [cohort["volumes"]], None, flagging, n_boot=20)


@pytest.mark.slow  # simulating and preprocessing 21 scans: 1-3 min on 2 cores
def test_missing_volumes_name_the_scan_and_the_fix(cohort: dict[str, Path]) -> None:
    frame = pd.read_csv(cohort["holdout"], dtype={"participant_id": str})
    with pytest.raises(ValueError, match="run `elr-mri volumes"):
        volume_features(frame, pd.read_csv(cohort["volumes"]).iloc[:0], "holdout.csv", CovariateFill(0.0, 0.5))


def test_models_learn_a_separable_signal_from_both_feature_kinds(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    x = rng.normal(size=(60, 5)) + y[:, None] * 3.0
    assert validation_chooses_c(y) and not validation_chooses_c(np.ones(5)) and not validation_chooses_c(None)
    for baseline in BASELINES:
        _, kept, tried = fit_baseline(baseline, x[::2], y[::2], np.arange(30), x[1::2], np.ones(30, dtype=int), 3)
        assert kept == 1.0 and tried == {}  # one validation diagnosis ranks no C above another
        model, chosen, tried = fit_baseline(baseline, x[::2], y[::2], np.arange(30), x[1::2], y[1::2], 3)
        assert list(tried) == ["0.001", "0.01", "0.1", "1.0", "10.0"]  # for summary.json: was anything chosen?
        assert chosen == min(float(c) for c, score in tried.items() if score == max(tried.values()))
        scores = class_scores(model, x[1::2], 3)
        assert (scores.argmax(1) == y[1::2]).mean() > 0.9
    volume = np.arange(6 * 6 * 6, dtype=np.float32).reshape(6, 6, 6)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "v.nii.gz")
    blocks = voxel_features([str(tmp_path / "v.nii.gz")], 3)
    assert blocks.shape == (1, 8) and blocks[0, 0] == pytest.approx((volume / volume.max())[:3, :3, :3].mean())



def test_a_refit_gives_the_same_scores() -> None:
    """LinearSVC's dual solver shuffles the scans with numpy's global generator unless seeded: two fits on the same
    matrix differed by ~1e-6, so a rerun of `evaluate --baselines` could move a score across a decision boundary."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 10)
    x = rng.normal(size=(30, 400)) + y[:, None] * 0.3  # more voxels than scans, as the SVM's features
    for baseline in BASELINES:
        first, second = (class_scores(fit_baseline(baseline, x, y, np.arange(30), None, None, 3)[0], x, 3)
                         for _ in range(2))
        assert np.array_equal(first, second), baseline.name


def _three_diagnoses(rng: np.random.Generator, scans: int) -> tuple[np.ndarray, np.ndarray]:
    """Voxel-like features (more than scans) of which 30 carry the diagnosis: 80% accuracy for a linear model."""
    y = np.arange(scans) % 3
    x = rng.normal(size=(scans, 300))
    x[:, :30] += np.repeat(y[:, None] == np.arange(3), 10, axis=1)
    return x, y


def test_the_svm_probabilities_are_calibrated_on_held_out_participants_and_keep_its_predictions() -> None:
    """The SVM's probabilities were the softmax of its raw margins: at the C validation picks most often (0.001) they
    sat near 1/3 while it was right 80% of the time, an ECE of 39 that spoke of its C, not of its calibration."""
    rng = np.random.default_rng(0)
    (x, y), (x_new, y_new) = _three_diagnoses(rng, 60), _three_diagnoses(rng, 600)
    svm, logreg = (next(b for b in BASELINES if b.features == kind) for kind in ("voxels", "volumes"))
    model, chosen, _ = fit_baseline(svm, x, y, np.arange(60), x_new[:30], y_new[:30], 3)
    assert isinstance(model, ScaledSVM) and chosen == 0.001 and model.held_out == 60
    probs = class_scores(model, x_new, 3)
    assert np.array_equal(probs.argmax(1), model.svm.predict(x_new))  # the SVM's own predictions
    assert (probs.argmax(1) == y_new).mean() > 0.75
    assert expected_calibration_error(y_new, probs) < 0.05 and brier_score(y_new, probs) < 0.3
    lr = fit_baseline(logreg, x, y, np.arange(60), None, None, 3)[0]
    assert np.array_equal(class_scores(lr, x_new, 3), lr.predict_proba(x_new))  # its own probabilities, as they are


def test_a_two_diagnosis_svm_gives_the_sigmoid_of_its_margin_to_the_class_it_predicts() -> None:
    """scikit-learn gives a two-class SVM one signed margin m, positive for its second class: unscaled, the
    probability of that class is the sigmoid of m (softmax of −m/2 and m/2), and the argmax is the SVM's prediction."""
    x, y = _three_diagnoses(np.random.default_rng(0), 60)
    x, y = x[y < 2], y[y < 2]
    svm = fit_baseline(BASELINES[1], x, y, np.arange(len(y)), None, None, 2)[0].svm
    probs = class_scores(ScaledSVM(svm, 1.0, 0), x, 2)
    np.testing.assert_allclose(probs[:, 1], 1 / (1 + np.exp(-svm.decision_function(x))))
    assert np.array_equal(probs.argmax(1), svm.predict(x))


def test_the_svm_scale_of_three_participants_uses_the_folds_fitted_on_both_diagnoses() -> None:
    """Three participants of six scans give three folds (not SCALE_FOLDS); the fold holding out the one participant of
    diagnosis 1 fits diagnosis 0 alone and is left out, so the scale is fitted on the other two's 12 scans."""
    x, _ = _three_diagnoses(np.random.default_rng(2), 18)
    y, participants = np.repeat([0, 1, 0], 6), np.repeat([0, 1, 2], 6)
    x[:, :30] += np.repeat(y[:, None] == np.arange(3), 10, axis=1)
    model = fit_baseline(BASELINES[1], x, y, participants, None, None, 3)[0]
    assert isinstance(model, ScaledSVM) and model.held_out == 12


def test_a_diagnosis_the_training_split_lacks_scores_0_and_a_split_of_one_is_refused() -> None:
    """Scores keep the run's class columns: trained on diagnoses 0 and 2, column 1 is 0 and the model's two columns go
    to 0 and 2; a split of one diagnosis has nothing to tell apart, said in the baseline's words. Both models weight
    the diagnoses inversely to their frequency, as the module says (balanced accuracy is a headline metric)."""
    x, y = _three_diagnoses(np.random.default_rng(0), 60)
    x, y = x[y != 1], y[y != 1]
    for baseline in BASELINES:
        model = fit_baseline(baseline, x, y, np.arange(len(y)), None, None, 3)[0]
        scores = class_scores(model, x, 3)
        assert (scores[:, 1] == 0).all() and np.allclose(scores[:, [0, 2]], model.predict_proba(x))
        assert baseline.estimator(1.0)[-1].class_weight == "balanced"
        with pytest.raises(ValueError, match=f"^{baseline.name}: the training split has one class only"):
            fit_baseline(baseline, x[y == 0], y[y == 0], np.arange(int((y == 0).sum())), None, None, 3)


def test_the_svm_scale_holds_out_whole_participants(capsys: pytest.CaptureFixture[str]) -> None:
    """Two near-alike scans of each participant (visits of a stable person): folds that split a participant fitted
    the scale on margins of scans whose twin the SVM had fitted, and made it sure of them (a scale of 69, not 3-4)."""
    rng = np.random.default_rng(1)
    x, y = _three_diagnoses(rng, 30)
    alone = fit_baseline(BASELINES[1], x, y, np.arange(30), None, None, 3)[0]
    visits = np.repeat(x, 2, axis=0) + rng.normal(0, 0.3, (60, x.shape[1]))
    twice = fit_baseline(BASELINES[1], visits, np.repeat(y, 2), np.repeat(np.arange(30), 2), None, None, 3)[0]
    assert twice.held_out == 60 and 0.5 < twice.scale / alone.scale < 2
    two = fit_baseline(BASELINES[1], x[:2], y[:2], np.arange(2), None, None, 3)[0]  # no fold holds both diagnoses
    assert (two.scale, two.held_out) == (1.0, 0)
    _warn_if_unscaled(two, "voxels_linear_svm", 2)  # said, once: its ece and brier are then the raw margins'
    assert capsys.readouterr().err.count("\n") == 1


def test_voxel_blocks_leave_out_the_voxels_past_the_last_whole_block(tmp_path: Path) -> None:
    """A 7-voxel axis holds two whole 3-voxel blocks: 2³ features, the last the mean of voxels 3-5 on each axis; the
    seventh voxel is left out, not averaged as a block of one."""
    volume = np.arange(7 * 7 * 7, dtype=np.float32).reshape(7, 7, 7)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "v.nii.gz")
    blocks = voxel_features([str(tmp_path / "v.nii.gz")], 3)
    assert blocks.shape == (1, 8) and blocks[0, -1] == pytest.approx((volume / volume.max())[3:6, 3:6, 3:6].mean())


def test_voxel_features_of_scans_on_two_grids_are_refused_naming_the_scan(tmp_path: Path) -> None:
    """Scans of two preprocessings (other resolutions) have no voxel in common: one line naming the odd one."""
    for name, shape in (("a", (6, 6, 6)), ("b", (6, 6, 8))):
        image = np.random.default_rng(0).random(shape, np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / f"{name}.nii.gz")
    with pytest.raises(ValueError, match=r"b.nii.gz: shape \(6, 6, 8\) differs from \(6, 6, 6\); preprocess every "
                                         "cohort onto one grid$"):
        voxel_features([str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz")], 3)


def test_voxel_features_are_the_scan_as_the_network_reads_it(tmp_path: Path) -> None:
    """The SVM read raw arrays: the same scan stored in LPS axis order, in scanner units or with a NaN voxel (which
    the CNN reads as 0) gave other features, or crashed scikit-learn after the CNN was scored."""
    volume = np.random.default_rng(0).random((6, 8, 10)).astype(np.float32)
    ras = nib.Nifti1Image(volume, np.diag([2.0, 2.0, 2.0, 1.0]))
    nib.save(ras, tmp_path / "ras.nii.gz")
    nib.save(ras.as_reoriented(np.array([[0, -1], [1, -1], [2, 1]])), tmp_path / "lps.nii.gz")
    nib.save(nib.Nifti1Image(volume * 1000.0, ras.affine), tmp_path / "units.nii.gz")
    with_nan = volume.copy()
    with_nan[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(with_nan, ras.affine), tmp_path / "nan.nii.gz")
    features = voxel_features([str(tmp_path / f"{name}.nii.gz") for name in ("ras", "lps", "units", "nan")], 2)
    assert np.allclose(features[1], features[0], atol=1e-6) and np.allclose(features[2], features[0], atol=1e-6)
    assert np.isfinite(features[3]).all() and np.allclose(features[3, 1:], features[0, 1:], atol=0.05)


def test_a_missing_age_is_filled_with_the_training_mean_in_every_set() -> None:
    """Filling with the scored set's own mean put that set's statistics into its features."""
    keys = {"participant_id": ["a", "b"], "session_id": ["ses-M00"] * 2}
    volumes = pd.DataFrame({**keys, **{column: [0.1, 0.2] for column in volume_columns()}})
    train = pd.DataFrame({**keys, "age": [60.0, 80.0]})
    scored = pd.DataFrame({**keys, "age": [90.0, None], "sex": ["F", "M"]})
    features = volume_features(scored, volumes, "test", training_fill(train))
    assert features[:, -2].tolist() == [90.0, 70.0]
    assert training_fill(train.assign(age=None)).age == 0.0


def test_a_missing_sex_is_filled_with_the_training_share_of_men_in_every_set() -> None:
    """A fixed 0.5 for an unknown sex: with three in four training scans women, standardisation put it 0.58 sd
    towards men, and a set without sex (a holdout whose manifest has no column) was pushed that way as a whole. The
    training share maps to 0, where the sex coefficient adds nothing."""
    keys = {"participant_id": list("abcd"), "session_id": ["ses-M00"] * 4}
    volumes = pd.DataFrame({**keys, **{column: [0.1, 0.2, 0.3, 0.4] for column in volume_columns()}})
    train = pd.DataFrame({**keys, "age": 70.0, "sex": ["F", "F", "F", "M"]})
    fill = training_fill(train)
    assert fill.sex == 0.25
    assert volume_features(train.assign(sex=["F", None, "M", None]), volumes, "test", fill)[:, -1].tolist() == [
        0.0, 0.25, 1.0, 0.25]
    assert (volume_features(train.drop(columns="sex"), volumes, "holdout", fill)[:, -1] == 0.25).all()
    assert training_fill(train.drop(columns="sex")).sex == 0.5  # none known: a constant column, any value would do



def test_a_blank_or_unreadable_volume_is_refused_naming_the_file_scan_and_region(tmp_path: Path) -> None:
    """A volumes CSV with an empty or n/a cell past its first region passed the check made before the CNN was scored, then
    stopped in scikit-learn ("Input X contains NaN") naming no file or scan; "7e-3x" failed as a float conversion."""
    keys = {"participant_id": ["a", "b"], "session_id": ["ses-M00"] * 2}
    volumes = pd.DataFrame({**keys, **{column: [0.1, 0.2] for column in volume_columns()}})
    volumes.to_csv(tmp_path / "good.csv", index=False)
    assert read_volumes([tmp_path / "good.csv"])[volume_columns()].to_numpy().tolist() == [[0.1] * 6, [0.2] * 6]
    for value, shown in ((None, "missing"), ("n/a", "missing"), ("7e-3x", "'7e-3x'"), ("inf", "'inf'")):
        volumes.astype(object).assign(ventricle_r_per_brain=[0.1, value]).to_csv(tmp_path / "bad.csv", index=False)
        with pytest.raises(ValueError, match=rf"^{tmp_path / 'bad.csv'}: 1 scan\(s\) have a missing, non-numeric or "
                                             rf"infinite regional volume \(first b ses-M00: ventricle_r_per_brain "
                                             rf"{shown}\); measure that cohort again with `elr-mri volumes`$"):
            read_volumes([tmp_path / "good.csv", tmp_path / "bad.csv"])


@pytest.mark.slow  # simulating and preprocessing 21 scans: 1-3 min on 2 cores
def test_baselines_choose_c_on_the_labels_the_run_validated_on(cohort: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(cohort["run"], run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    scans = pd.read_csv(config["data"]["mri"]["manifest"], dtype=str)
    panel = scans[["participant_id", "session_id"]].assign(diagnosis="AD")  # an adjudication panel's labels
    panel.to_csv(tmp_path / "panel.csv", index=False)
    config["data"]["mri"]["val_labels"] = str(tmp_path / "panel.csv")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    record_run_data(run, build_data(load_run_config(run).data), record_ages=False)  # as a run on that panel records
    inputs = _baseline_inputs(run, [cohort["volumes"]], None, None)
    assert len(inputs.val) and (inputs.val_labels == 2).all()


def _cn_vs_ad_run_on_a_panel(tmp_path: Path) -> tuple[Path, pd.DataFrame, pd.DataFrame, NoisyImageData]:
    """(run, manifest rows, panel rows, data): what `elr-mri train` records before its first epoch for a CN-vs-AD
    run on fixed splits, validated on a panel that calls three validation participants and every second scan MCI."""
    rng = np.random.default_rng(0)
    rows, splits = [], []
    for k, diagnosis in enumerate(("CN", "AD")):
        for split, count in (("train", 4), ("val", 2), ("test", 2)):
            for i in range(count):
                participant = f"sub-{diagnosis}{split}{i}"
                splits.append({"participant_id": participant, "split": split})
                for session in ("ses-M00", "ses-M12")[:1 + (participant == "sub-CNval0")]:
                    path = tmp_path / f"{participant}_{session}.nii.gz"
                    volume = rng.normal(100 + 30 * k, 10, size=(36, 36, 36)).astype(np.float32)
                    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
                    rows.append({"participant_id": participant, "session_id": session, "path": str(path),
                                 "diagnosis": diagnosis, "age": 70.0, "sex": "F"})
    scans = pd.DataFrame(rows)
    scans.to_csv(tmp_path / "manifest.csv", index=False)
    pd.DataFrame(splits).to_csv(tmp_path / "splits.csv", index=False)
    panel = scans[["participant_id", "session_id", "diagnosis"]].copy()
    called_mci = (panel["participant_id"].isin(["sub-CNval1", "sub-ADval0", "sub-ADval1"])
                  | (panel["session_id"] == "ses-M12"))
    panel.loc[called_mci, "diagnosis"] = "MCI"
    panel.to_csv(tmp_path / "panel.csv", index=False)
    cfg = load_config(ROOT / "configs" / "adni" / "cpu_small.yaml",
                      [f"data.mri.manifest={tmp_path / 'manifest.csv'}", "data.mri.classes=[CN,AD]",
                       f"data.mri.splits={tmp_path / 'splits.csv'}", f"data.mri.val_labels={tmp_path / 'panel.csv'}"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({**config_to_dict(cfg), "selection_rule": selection_rule(cfg)},
                                                   sort_keys=False))
    data = build_data(cfg.data)
    record_run_data(run, data, record_ages=False)
    return run, scans, panel, data


def test_baselines_fit_choose_and_score_on_the_scans_the_run_did(tmp_path: Path) -> None:
    """A CN-vs-AD run validated on a panel that calls some validation scans MCI leaves them out of validation, and
    a participant with no other scan out of splits.csv: the baselines chose C counting those scans as AD (label -1
    indexes the last class), or stopped saying that participant of the manifest had no split."""
    run, scans, _, data = _cn_vs_ad_run_on_a_panel(tmp_path)
    inputs = _baseline_inputs(run, [], None, None)
    for rows, dataset in ((inputs.train, data.train), (inputs.val, data.val), (inputs.scored, data.test)):
        assert rows[["participant_id", "session_id"]].values.tolist() == (
            dataset.frame[["participant_id", "session_id"]].values.tolist())
    assert inputs.val_labels.tolist() == data.val.labels.tolist() == [0]
    evaluate_baselines(run, n_boot=20)
    summary = json.loads((run / "eval-test" / "baselines" / "voxels_linear_svm" / "summary.json").read_text())
    assert summary["C"] == 1.0 and not summary["C_chosen_on_validation"]  # the run validated on CN alone
    assert summary["validation_balanced_accuracy_by_C"] == {}
    assert summary["probability_scale"] > 0 and summary["probability_scale_scans"] == 8  # every training scan
    shutil.copy(scans["path"].iloc[0], tmp_path / "new.nii.gz")  # a participant added to the manifest since the run
    scans.iloc[[0]].assign(participant_id="sub-CNnew", path=str(tmp_path / "new.nii.gz")).to_csv(
        tmp_path / "manifest.csv", mode="a", header=False, index=False)
    with pytest.raises(ValueError, match=r"1 participant\(s\) of the manifest have no split, e.g. sub-CNnew$"):
        _baseline_inputs(run, [], None, None)



def test_baselines_refuse_a_run_that_trained_on_a_balanced_subset_of_its_scans(tmp_path: Path) -> None:
    """A run with data.balanced_subset trained on at most balanced_batches × batch_size / classes scans of each
    diagnosis; the baselines fitted all of them, unlike data.train_subset, which is refused, and nothing said so."""
    run, _, _, _ = _cn_vs_ad_run_on_a_panel(tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"].update(balanced_batches=1, balanced_subset=True)
    config["train"]["batch_size"] = 8  # a subset of every one of the 4 CN and 4 AD training scans: accepted
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert len(_baseline_inputs(run, [], None, None).train) == 8
    config["train"]["batch_size"] = 4  # two of each
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(ValueError, match=rf"^{run}: the run trained on a class-balanced subset of 4 of its 8 training "
                                         r"scans \(data.balanced_subset, 1 balanced_batches × 4 batch_size\); the "
                                         "baselines fit them all"):
        _baseline_inputs(run, [], None, None)


def test_baselines_refuse_a_panel_relabelled_since_the_run_trained(tmp_path: Path) -> None:
    """A resume refused a validation panel edited since training, but `evaluate --baselines` read it as it is now and
    chose C on other labels than the run's checkpoint was selected on, without a word."""
    run, _, panel, _ = _cn_vs_ad_run_on_a_panel(tmp_path)
    assert _baseline_inputs(run, [], None, None).val_labels.tolist() == [0]  # as recorded: accepted
    panel.loc[panel["participant_id"] == "sub-CNval0", "diagnosis"] = "AD"
    panel.to_csv(tmp_path / "panel.csv", index=False)
    with pytest.raises(ValueError, match=rf"{run}: {tmp_path / 'panel.csv'} \(data.mri.val_labels\) or "
                                         rf"{tmp_path / 'manifest.csv'} now gives its validation scans other "
                                         "diagnoses than the run trained with"):
        _baseline_inputs(run, [], None, None)


def test_baselines_take_a_relabelled_test_scan_as_evaluate_does(tmp_path: Path) -> None:
    """C is chosen on validation labels only: a test scan relabelled since training (a revised diagnosis, which
    `evaluate` scores with a warning) was refused saying the baselines 'would choose C on other labels'. A run from
    before data_shape.json listed the test diagnoses cannot tell which set changed, and says so."""
    run, scans, _, _ = _cn_vs_ad_run_on_a_panel(tmp_path)
    scans.loc[scans["participant_id"] == "sub-CNtest0", "diagnosis"] = "AD"
    scans.to_csv(tmp_path / "manifest.csv", index=False)
    inputs = _baseline_inputs(run, [], None, None)
    assert inputs.scored.set_index("participant_id").loc["sub-CNtest0", "diagnosis"] == "AD"  # scored as it is now
    shape = json.loads((run / "data_shape.json").read_text())
    del shape["test_diagnoses"]
    (run / "data_shape.json").write_text(json.dumps(shape))
    with pytest.raises(ValueError, match=r"now gives its validation or test scans other diagnoses than the run trained "
                                         r"with \(its data_shape.json, from before test_diagnoses was recorded, "
                                         "cannot say which"):
        _baseline_inputs(run, [], None, None)


def test_the_scored_set_enters_no_fitted_step_of_the_volume_baseline(tmp_path: Path) -> None:
    """Standardisation, class weights and C are the training (and validation) scans' alone: test volumes shifted
    above every training scan's are all called CN, the diagnosis of the larger hippocampi. A scaler that saw the test
    set would centre the shift away and call its AD scans AD."""
    run, scans, _, _ = _cn_vs_ad_run_on_a_panel(tmp_path)
    split = pd.read_csv(tmp_path / "splits.csv").set_index("participant_id")["split"]
    noise = np.random.default_rng(1).normal(0, 0.0002, len(scans))
    hippocampus = np.where(scans["diagnosis"] == "CN", 0.012, 0.009) + noise
    hippocampus += np.where(scans["participant_id"].map(split) == "test", 0.006, 0.0)  # another scanner, say
    volumes = scans[["participant_id", "session_id"]].assign(**{column: 0.01 for column in volume_columns()})
    volumes["hippocampus_l_per_brain"] = hippocampus
    volumes.to_csv(tmp_path / "volumes.csv", index=False)
    evaluate_baselines(run, [tmp_path / "volumes.csv"], n_boot=20)
    predictions = pd.read_csv(run / "eval-test" / "baselines" / "volumes_logreg" / "predictions.csv")
    assert len(predictions) == 4 and (predictions["p_CN"] > 0.5).all()
