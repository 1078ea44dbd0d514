"""MIMIC-IV-ECHO layout: ``echo-record-list.csv`` at the root and ``files/pNN/pSUBJECT/sSTUDY/STUDY_NNNN.dcm``.

``echo-record-list.csv`` has ``subject_id, study_id, acquisition_datetime, dicom_filepath`` (the path relative to
the root). Each DICOM is one video (``video_id`` = the file name without ``.dcm``); its study is the list's
``study_id``, or the ``sSTUDY`` folder of its path when that cell is empty. Splits are assigned per *subject* (so
one patient's studies never straddle train and test), seeded, 75/10/15. ``acquisition_datetime`` is not copied.
Single-frame DICOMs (stills) are skipped at ingest and listed as "skipped (still image)". The dataset has no
labels: join them with ``--labels TABLE --labels-key study_id``.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from echoclr.ingest.manifest import ManifestError, ManifestRow, assign_splits, read_table, validate_rows

RECORD_LIST_NAME = "echo-record-list.csv"
_REQUIRED = ("subject_id", "study_id", "dicom_filepath")
_STUDY_FOLDER = re.compile(r"^s(\d+)$")


def _study_from_path(path: str) -> str:
    for part in reversed(PurePosixPath(path).parts[:-1]):
        match = _STUDY_FOLDER.match(part)
        if match:
            return match.group(1)
    return ""


def mimic_echo_rows(folder: str | Path, *, split_seed: int = 0) -> list[ManifestRow]:
    """Manifest rows for a MIMIC-IV-ECHO folder (one per line of ``echo-record-list.csv``).

    Args:
        folder: the dataset root, holding ``echo-record-list.csv`` and ``files/``.
        split_seed: seed of the per-subject train/val/test assignment.

    Returns:
        One row per DICOM, in list order; no labels.

    Raises:
        ManifestError: missing columns, empty paths, a row with neither a study id nor an ``sSTUDY`` folder,
            duplicate files, or paths that leave ``folder`` (all named with their line).
    """
    folder = Path(folder)
    source = folder / RECORD_LIST_NAME
    columns, raw = read_table(source)
    missing = [c for c in _REQUIRED if c not in columns]
    if missing:
        raise ManifestError(
            f"{source}: missing column(s) {', '.join(missing)}; found {columns}. MIMIC-IV-ECHO's record list has "
            "subject_id, study_id, acquisition_datetime, dicom_filepath"
        )
    problems: list[str] = []
    subjects: dict[str, str] = {}  # study -> subject
    rows = []
    for line, row in enumerate(raw, 2):
        where = f"{source}:{line}"
        path = row["dicom_filepath"]
        if not path:
            problems.append(f"{where}: column `dicom_filepath` is empty")
            continue
        study = row["study_id"] or _study_from_path(path)
        if not study:
            problems.append(f"{where}: column `study_id` is empty and the path {path!r} has no sSTUDY folder")
            continue
        subject = row["subject_id"] or study
        if subjects.setdefault(study, subject) != subject:
            problems.append(f"{where}: study {study} belongs to subject {subjects[study]} on an earlier line, not "
                            f"{subject}")
            continue
        rows.append({"path": path, "study_id": study, "video_id": PurePosixPath(path).stem, "subject": subject})
    if problems:
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise ManifestError(f"{source}: {len(problems)} problem(s), nothing was ingested:\n  {shown}{more}")
    by_subject = assign_splits([r["subject"] for r in rows], split_seed)
    manifest = [{"path": r["path"], "study_id": r["study_id"], "video_id": r["video_id"],
                 "split": by_subject[r["subject"]]} for r in rows]
    return validate_rows(manifest, ["path", "study_id", "video_id", "split"], base=folder, source=str(source),
                         split_seed=split_seed)
