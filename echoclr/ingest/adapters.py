"""Adapters from common dataset layouts to manifest rows (the same validation as a hand-written manifest).

- EchoNet-LVH (``MeasurementsList.csv`` + ``Batch1..4/``): see :mod:`echoclr.ingest.echonet_lvh`.
- MIMIC-IV-ECHO (``echo-record-list.csv`` + ``files/``): see :mod:`echoclr.ingest.mimic_echo`.

- EchoNet-style folder: ``FileList.csv`` (``FileName``, ``Split``, other columns) beside ``Videos/``. One video per
  patient, so each video is its own study. Columns holding only 0/1/empty become labels; others are ignored.
- DICOM tree: every DICOM file below a folder; studies come from StudyInstanceUID. The UIDs are hashed into the ids
  so that no header value reaches the store. No labels (write a manifest for labelled data).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from echoclr.ingest.decode import is_dicom
from echoclr.ingest.echonet_lvh import DEFAULT_LVH_THRESHOLD_CM, MEASUREMENTS_NAME, echonet_lvh_rows
from echoclr.ingest.manifest import ManifestError, ManifestRow, read_table, validate_rows
from echoclr.ingest.mimic_echo import RECORD_LIST_NAME, mimic_echo_rows

_VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv")


def _is_binary_column(values: list[str]) -> bool:
    present = [v.strip() for v in values if v.strip()]
    return bool(present) and all(v in ("0", "1", "0.0", "1.0") for v in present)


def echonet_rows(folder: str | Path, *, split_seed: int = 0) -> list[ManifestRow]:
    """Manifest rows for an EchoNet-style folder (``FileList.csv`` + ``Videos/``).

    Raises:
        ManifestError: ``FileList.csv`` lacks ``FileName`` or names videos that are not in ``Videos/``.
    """
    folder = Path(folder)
    file_list = folder / "FileList.csv"
    columns, rows = read_table(file_list)
    if "FileName" not in columns:
        raise ManifestError(f"{file_list}: an EchoNet-style FileList.csv needs a `FileName` column; found {columns}")
    labels = [c for c in columns if c not in ("FileName", "Split") and _is_binary_column([r.get(c, "") for r in rows])]
    out = []
    for row in rows:
        name = row["FileName"]
        path = Path("Videos") / name
        if path.suffix.lower() not in _VIDEO_SUFFIXES:
            path = path.with_suffix(".avi")
        entry = {"path": str(path), "study_id": Path(name).stem, "video_id": Path(name).stem}
        split = row.get("Split", "").lower()
        entry["split"] = {"train": "train", "val": "val", "test": "test"}.get(split, "")
        entry.update({label: row.get(label, "") for label in labels})
        out.append(entry)
    columns_out = ["path", "study_id", "video_id", "split", *labels]
    return validate_rows(out, columns_out, base=folder, source=str(file_list), split_seed=split_seed)


def _hashed(prefix: str, value: str) -> str:
    return f"{prefix}-{hashlib.sha256(value.encode()).hexdigest()[:16]}"


def dicom_tree_rows(folder: str | Path, *, split_seed: int = 0) -> list[ManifestRow]:
    """Manifest rows for every DICOM file below ``folder`` (studies from hashed StudyInstanceUID).

    Raises:
        ManifestError: no DICOM file was found.
    """
    import pydicom

    folder = Path(folder)
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if not (path.suffix.lower() in (".dcm", ".dicom") or is_dicom(path)):
            continue
        relative = path.relative_to(folder).as_posix()
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SOPInstanceUID"])
            study_uid = str(header.get("StudyInstanceUID", "")) or relative
            instance_uid = str(header.get("SOPInstanceUID", "")) or relative
        except Exception:  # unreadable headers still go through ingest, which reports them per file
            study_uid = instance_uid = relative
        out.append({"path": relative, "study_id": _hashed("study", study_uid), "video_id": _hashed("video", instance_uid)})
    if not out:
        raise ManifestError(f"{folder}: no DICOM files found (looked for *.dcm and files with a DICM preamble)")
    return validate_rows(out, ["path", "study_id", "video_id"], base=folder, source=f"DICOM tree {folder}",
                         split_seed=split_seed)


def detect_layout(source: str | Path) -> str:
    """Name the layout of ``source``: ``manifest`` (a CSV file), ``echonet-lvh`` (``MeasurementsList.csv``),
    ``mimic-iv-echo`` (``echo-record-list.csv``), ``echonet`` (``FileList.csv``) or ``dicom-tree`` (any other folder).
    """
    source = Path(source)
    if not source.is_dir():
        return "manifest"
    if (source / MEASUREMENTS_NAME).is_file():
        return "echonet-lvh"
    if (source / RECORD_LIST_NAME).is_file():
        return "mimic-iv-echo"
    if (source / "FileList.csv").is_file():
        return "echonet"
    return "dicom-tree"


def rows_for(
    source: str | Path, *, split_seed: int = 0, lvh_threshold_cm: float = DEFAULT_LVH_THRESHOLD_CM
) -> list[ManifestRow]:
    """Manifest rows for a manifest CSV or a dataset folder in one of the layouts of :func:`detect_layout`.

    Args:
        source: the manifest CSV or the dataset folder.
        split_seed: seed of the split assignment for rows the layout gives no split.
        lvh_threshold_cm: EchoNet-LVH only: wall thickness above which ``lvh = 1``.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ManifestError: the layout's files are malformed (the message names the file, line and column).
    """
    from echoclr.ingest.manifest import read_manifest

    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist: pass a manifest CSV or a dataset folder")
    layout = detect_layout(source)
    if layout == "echonet-lvh":
        return echonet_lvh_rows(source, threshold_cm=lvh_threshold_cm, split_seed=split_seed)
    if layout == "mimic-iv-echo":
        return mimic_echo_rows(source, split_seed=split_seed)
    if layout == "echonet":
        return echonet_rows(source, split_seed=split_seed)
    if layout == "dicom-tree":
        return dicom_tree_rows(source, split_seed=split_seed)
    return read_manifest(source, split_seed=split_seed)
