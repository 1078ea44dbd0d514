"""Dataset layouts: EchoNet-LVH and MIMIC-IV-ECHO folders of real AVI/DICOM files, label joins, and their bad inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from echoclr.cli.app import app
from echoclr.ingest import ManifestError, echonet_lvh_rows, join_labels, lvh_label, mimic_echo_rows, rows_for
from echoclr.store import open_store
from echoclr.synth.writers import write_avi, write_dicom

SMALL = ["--size", "32"]


def fan_frames(n_frames: int, brightness: int = 150, seed: int = 0, size=(48, 64)) -> np.ndarray:
    """``uint8 (T, H, W, 3)`` BGR: a noisy bright fan (the ultrasound sector) on black."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    fan = (np.abs(np.degrees(np.arctan2(xx - w / 2, yy + 3))) < 40) & (np.hypot(xx - w / 2, yy + 3) < h * 0.95)
    frames = np.zeros((n_frames, h, w, 3), np.uint8)
    for t in range(n_frames):
        gray = np.zeros((h, w), np.uint8)
        gray[fan] = np.clip(rng.normal(brightness, 20, fan.sum()), 1, 255).astype(np.uint8)
        frames[t] = gray[..., None]
    return frames


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def squeeze(text: str) -> str:
    """Text without whitespace: rich wraps long messages at the terminal width, anywhere in a line."""
    return "".join(text.split())


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_error_line(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert squeeze(needle) in squeeze(result.output), (needle, result.output)


# ---------------------------------------------------------------------------------------------------- EchoNet-LVH
LVH_HEADER = ["", "HashedFileName", "Calc", "CalcValue", "Frame", "X1", "X2", "Y1", "Y2", "Frames", "FPS", "Width",
              "Height", "split"]


def _measurement(i: int, name: str, calc: str, value: float | str, split: str) -> list:
    return [i, name, calc, value, 10, 1, 2, 3, 4, 12, 30, 64, 48, split]


def lvh_folder(root: Path, measurements: list[tuple[str, str, float | str, str]], batches: dict[str, str]) -> Path:
    """An EchoNet-LVH folder: MeasurementsList.csv and the named videos as AVIs in their batch folders."""
    root.mkdir(parents=True, exist_ok=True)
    for i, (name, batch) in enumerate(batches.items()):
        (root / batch).mkdir(exist_ok=True)
        write_avi(root / batch / f"{name}.avi", fan_frames(12, seed=i), fps=30)
    write_csv(root / "MeasurementsList.csv", LVH_HEADER,
              [_measurement(i, *m) for i, m in enumerate(measurements)])
    return root


LVH_MEASUREMENTS = [
    ("0XA1", "IVSd", 1.30, "train"), ("0XA1", "LVPWd", 0.90, "train"), ("0XA1", "LVIDd", 4.8, "train"),  # thick septum
    ("0XB2", "IVSd", 0.90, "val"), ("0XB2", "LVPWd", 1.00, "val"), ("0XB2", "LVIDs", 3.1, "val"),  # both normal
    ("0XC3", "IVSd", 0.80, "test"), ("0XC3", "LVIDd", 5.0, "test"),  # only the septum, normal: unknown
    ("0XD4", "LVIDd", 4.9, "train"), ("0XD4", "LVIDs", 3.3, "train"),  # no wall measured: unknown
    ("0XE5.avi", "LVPWd", 1.25, "test"),  # only the posterior wall, thick: positive (name with its extension)
]
LVH_BATCHES = {"0XA1": "Batch1", "0XB2": "Batch2", "0XC3": "Batch4", "0XD4": "Batch1", "0XE5": "Batch3"}


@pytest.mark.parametrize(
    "walls, expected",
    [
        ({"IVSd": [1.2], "LVPWd": [0.9]}, 1.0),
        ({"IVSd": [1.0], "LVPWd": [1.1]}, 0.0),  # equal to the threshold does not exceed it
        ({"IVSd": [1.3]}, 1.0),  # one thick wall suffices
        ({"LVPWd": [0.8]}, None),  # one normal wall, the other unmeasured
        ({}, None),
        ({"IVSd": [0.9, 1.15], "LVPWd": [0.9]}, 1.0),  # repeated measurements count individually
    ],
)
def test_lvh_label_rule(walls, expected):
    assert lvh_label(walls, 1.1) == expected


def test_echonet_lvh_folder_ingests_with_splits_and_labels(tmp_path):
    folder = lvh_folder(tmp_path / "lvh", LVH_MEASUREMENTS, LVH_BATCHES)
    done = invoke("ingest", folder, "--out", tmp_path / "store.zarr", *SMALL)
    assert done.exit_code == 0, done.output
    store = open_store(tmp_path / "store.zarr")
    got = {r.video_id: (r.study_id, r.split, r.labels["lvh"], r.n_frames) for r in store.records}
    assert got == {
        "0XA1": ("0XA1", "train", 1.0, 12),
        "0XB2": ("0XB2", "val", 0.0, 12),
        "0XC3": ("0XC3", "test", None, 12),
        "0XD4": ("0XD4", "train", None, 12),
        "0XE5": ("0XE5", "test", 1.0, 12),
    }
    # A lower threshold turns the normal pair into a positive; the single normal wall stays unknown.
    rows = {r.video_id: r.labels["lvh"] for r in echonet_lvh_rows(folder, threshold_cm=0.95)}
    assert rows == {"0XA1": 1.0, "0XB2": 1.0, "0XC3": None, "0XD4": None, "0XE5": 1.0}


def test_echonet_lvh_measurement_naming_a_missing_video_is_one_error(tmp_path):
    batches = {k: v for k, v in LVH_BATCHES.items() if k != "0XC3"}
    folder = lvh_folder(tmp_path / "lvh", LVH_MEASUREMENTS, batches)
    done = invoke("ingest", folder, "--out", tmp_path / "store.zarr", *SMALL)
    assert_one_error_line(done, "0XC3", "Batch1", "MeasurementsList.csv")
    assert not (tmp_path / "store.zarr").exists()


@pytest.mark.parametrize(
    "bad, message",
    [
        (("0XA1", "IVSd", "thick", "train"), "`CalcValue` has 'thick'"),
        (("0XA1", "IVSd", 1.0, "val"), "video 0XA1 is in split 'val' here but 'train'"),
        (("0XA1", "EF", 55, "train"), "`Calc` has 'EF'"),
        (("0XA1", "IVSd", 1.0, "holdout"), "`split` has 'holdout'"),
    ],
)
def test_echonet_lvh_bad_measurements_are_named(tmp_path, bad, message):
    folder = lvh_folder(tmp_path / "lvh", [*LVH_MEASUREMENTS, bad], LVH_BATCHES)
    with pytest.raises(ManifestError, match="MeasurementsList.csv:13") as error:
        rows_for(folder)
    assert message in str(error.value)


# ---------------------------------------------------------------------------------------------------- MIMIC-IV-ECHO
MIMIC_HEADER = ["subject_id", "study_id", "acquisition_datetime", "dicom_filepath"]


def mimic_folder(root: Path) -> Path:
    """Two subjects; subject 10000032 has two studies (one with a cine and a still), 10000033 one study."""
    files = [
        ("10000032", "50000001", "files/p10/p10000032/s50000001/50000001_0001.dcm", 14),
        ("10000032", "50000001", "files/p10/p10000032/s50000001/50000001_0002.dcm", 1),  # a still image
        ("10000032", "", "files/p10/p10000032/s50000002/50000002_0001.dcm", 10),  # study from the sSTUDY folder
        ("10000033", "50000003", "files/p10/p10000033/s50000003/50000003_0001.dcm", 9),
    ]
    rows = []
    for i, (subject, study, path, n_frames) in enumerate(files):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        write_dicom(root / path, fan_frames(n_frames, seed=i), fps=25,
                    header={"PatientName": "DOE^JANE", "PatientID": subject, "StudyDate": "21800101"})
        rows.append([subject, study, "2180-01-01 10:00:00", path])
    write_csv(root / "echo-record-list.csv", MIMIC_HEADER, rows)
    return root


def test_mimic_folder_ingests_cines_and_skips_stills(tmp_path):
    folder = mimic_folder(tmp_path / "mimic")
    done = invoke("ingest", folder, "--out", tmp_path / "store.zarr", *SMALL, "--max-failures", "0")
    assert done.exit_code == 0, done.output  # the still is not a failure
    assert squeeze("50000001_0002.dcm: skipped (still image)") in squeeze(done.output)
    store = open_store(tmp_path / "store.zarr")
    got = {r.video_id: (r.study_id, r.n_frames) for r in store.records}
    assert got == {"50000001_0001": ("50000001", 14), "50000002_0001": ("50000002", 10),
                   "50000003_0001": ("50000003", 9)}
    splits = {r.study_id: r.split for r in store.records}
    assert splits["50000001"] == splits["50000002"]  # one subject's studies share a split
    report = json.loads((tmp_path / "store.zarr" / "ingest_report.json").read_text())
    assert report["failures"] == []
    assert [(Path(e["path"]).name, e["reason"]) for e in report["excluded"]] == [
        ("50000001_0002.dcm", "skipped (still image)")]


def test_mimic_record_list_pointing_outside_the_folder_is_one_error(tmp_path):
    folder = mimic_folder(tmp_path / "mimic")
    with (folder / "echo-record-list.csv").open("a", newline="") as handle:
        csv.writer(handle).writerow(["10000034", "50000009", "2180-01-01", "../elsewhere/50000009_0001.dcm"])
    done = invoke("ingest", folder, "--out", tmp_path / "store.zarr", *SMALL)
    assert_one_error_line(done, "echo-record-list.csv:6", "escapes", "../elsewhere/50000009_0001.dcm")
    assert not (tmp_path / "store.zarr").exists()


def test_mimic_record_list_without_study_anywhere_is_named(tmp_path):
    folder = mimic_folder(tmp_path / "mimic")
    with (folder / "echo-record-list.csv").open("a", newline="") as handle:
        csv.writer(handle).writerow(["10000034", "", "2180-01-01", "files/loose/clip.dcm"])
    with pytest.raises(ManifestError, match=r"echo-record-list.csv:6: column `study_id` is empty"):
        mimic_echo_rows(folder)


# ---------------------------------------------------------------------------------------------------- label joins
def test_study_labels_join_onto_mimic_and_unknown_ids_are_named(tmp_path):
    folder = mimic_folder(tmp_path / "mimic")
    labels = write_csv(tmp_path / "labels.csv", ["study_id", "severe_as", "lvh"],
                       [["50000001", 1, 0], ["50000003", 0, ""], ["59999999", 1, 1]])
    done = invoke("ingest", folder, "--out", tmp_path / "store.zarr", *SMALL, "--labels", labels)
    assert done.exit_code == 0, done.output
    assert squeeze("match no video and were ignored: 59999999") in squeeze(done.output)
    got = {r.study_id: r.labels for r in open_store(tmp_path / "store.zarr").records}
    assert got == {"50000001": {"severe_as": 1.0, "lvh": 0.0}, "50000002": {"severe_as": None, "lvh": None},
                   "50000003": {"severe_as": 0.0, "lvh": None}}


def test_video_labels_conflicting_with_derived_lvh_are_refused(tmp_path):
    folder = lvh_folder(tmp_path / "lvh", LVH_MEASUREMENTS, LVH_BATCHES)
    labels = write_csv(tmp_path / "labels.csv", ["video_id", "lvh"], [["0XA1", 0], ["0XC3", 1]])
    done = invoke("ingest", folder, "--out", tmp_path / "store.zarr", *SMALL, "--labels", labels,
                  "--labels-key", "video_id")
    assert_one_error_line(done, "labels.csv:2", "`lvh` = 0 for video_id '0XA1'", "gives 1")
    # Without the conflicting row, the table fills the unknown label of 0XC3.
    write_csv(labels, ["video_id", "lvh"], [["0XA1", 1], ["0XC3", 1]])
    joined = join_labels(rows_for(folder), labels, "video_id")
    assert {r.video_id: r.labels["lvh"] for r in joined.rows}["0XC3"] == 1.0


def test_video_table_with_study_ids_groups_lvh_videos_into_studies(tmp_path):
    folder = lvh_folder(tmp_path / "lvh", LVH_MEASUREMENTS, LVH_BATCHES)
    # 0XC3 (lvh unknown) and 0XE5 (lvh 1) are both test videos; grouped into one study their labels would differ.
    studies = write_csv(tmp_path / "studies.csv", ["video_id", "study_id"], [["0XC3", "S9"], ["0XE5", "S9"]])
    with pytest.raises(ManifestError, match=r"study 'S9' would have different `lvh` labels .*0XC3: None, 0XE5: 1.0"):
        join_labels(rows_for(folder), studies, "video_id")
    # The same table with the study's label is accepted: one study, two videos, one label.
    write_csv(studies, ["video_id", "study_id", "lvh"], [["0XC3", "S9", 1], ["0XE5", "S9", 1]])
    joined = join_labels(rows_for(folder), studies, "video_id")
    assert {r.video_id: (r.study_id, r.labels["lvh"]) for r in joined.rows} == {
        "0XA1": ("0XA1", 1.0), "0XB2": ("0XB2", 0.0), "0XC3": ("S9", 1.0), "0XD4": ("0XD4", None),
        "0XE5": ("S9", 1.0)}
    # Grouping videos of different splits is refused: a study lives in one split.
    write_csv(studies, ["video_id", "study_id"], [["0XA1", "S1"], ["0XB2", "S1"]])
    with pytest.raises(ManifestError, match=r"study 'S1' would span splits \['train', 'val'\]"):
        join_labels(rows_for(folder), studies, "video_id")


@pytest.mark.parametrize(
    "header, rows, key, message",
    [
        (["study_id", "lvh"], [["50000001", 1], ["50000001", 0]], "study_id", "appears again (first on line 2)"),
        (["study_id", "lvh"], [["50000001", "yes"]], "study_id", "`lvh` has 'yes'"),
        (["study", "lvh"], [["50000001", 1]], "study_id", "no `study_id` column"),
        (["study_id", "lvh"], [["s50000001", 1]], "study_id", "none of its 1 study_id values matches"),
        (["video_id", "lvh"], [["50000001_0001", 1], ["50000002_0001", 0]], "patient_id", "--labels-key must be"),
    ],
)
def test_bad_label_tables_are_named(tmp_path, header, rows, key, message):
    folder = mimic_folder(tmp_path / "mimic")
    table = write_csv(tmp_path / "labels.csv", header, rows)
    with pytest.raises(ManifestError) as error:
        join_labels(rows_for(folder), table, key)
    assert message in str(error.value)
