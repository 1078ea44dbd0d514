"""EchoNet-LVH layout: ``MeasurementsList.csv`` beside ``Batch1/`` .. ``Batch4/`` of AVIs (PLAX videos).

``MeasurementsList.csv`` has one row per caliper measurement: an unnamed index column, then ``HashedFileName, Calc,
CalcValue, Frame, X1, X2, Y1, Y2, Frames, FPS, Width, Height, split``. ``Calc`` is ``IVSd``, ``LVIDd``, ``LVIDs`` or
``LVPWd`` and ``CalcValue`` is in cm. Each ``HashedFileName`` is one video, found as ``HashedFileName.avi`` in any
batch folder.

The ``lvh`` label (0/1, or unknown) is derived per video from the diastolic wall thicknesses:

* ``lvh = 1`` when an IVSd or an LVPWd measurement of the video exceeds the threshold (one thick wall suffices,
  even when the other wall was not measured);
* ``lvh = 0`` only when the video has *both* an IVSd and an LVPWd measurement and every one of them is at or below
  the threshold;
* unknown otherwise: neither wall measured, or only one wall measured and it is at or below the threshold (the
  unmeasured wall could be thick, so 0 would be a guess).

Repeated measurements of one wall count individually (any value over the threshold makes the video positive).

The default threshold, 1.1 cm, sits above the upper limit of normal septal and posterior wall thickness of the
ASE/EACVI chamber-quantification guideline (Lang et al., J Am Soc Echocardiogr 2015;28:1-39: 0.6-1.0 cm in men,
0.6-0.9 cm in women), so a wall over 1.1 cm is abnormal for either sex (the dataset records no sex). It is not the
paper's LVH definition (LV mass index > 115 g/m2 in men, > 95 g/m2 in women), which needs sex and body surface area.

Each video is its own study (the dataset has no study ids); a video-keyed ``--labels`` table with a ``study_id``
column groups videos into studies.
"""

from __future__ import annotations

import math
from pathlib import Path

from echoclr.ingest.manifest import ManifestError, ManifestRow, read_table, validate_rows

MEASUREMENTS_NAME = "MeasurementsList.csv"
BATCH_FOLDERS = ("Batch1", "Batch2", "Batch3", "Batch4")
WALLS = ("IVSd", "LVPWd")
DEFAULT_LVH_THRESHOLD_CM = 1.1
_REQUIRED = ("HashedFileName", "Calc", "CalcValue", "split")
_CALCS = ("IVSd", "LVIDd", "LVIDs", "LVPWd")
_SPLITS = {"train": "train", "val": "val", "test": "test"}


def lvh_label(walls: dict[str, list[float]], threshold_cm: float) -> float | None:
    """The ``lvh`` label of one video from its wall measurements (see the module docstring for the rule).

    Args:
        walls: ``{"IVSd": [cm, ...], "LVPWd": [cm, ...]}``; a missing or empty list is an unmeasured wall.
        threshold_cm: a wall thicker than this is hypertrophic.

    Returns:
        1.0, 0.0, or None (unknown).
    """
    values = [v for wall in WALLS for v in walls.get(wall, [])]
    if any(v > threshold_cm for v in values):
        return 1.0
    if all(walls.get(wall) for wall in WALLS):
        return 0.0
    return None


def _find_videos(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for batch in BATCH_FOLDERS:
        directory = folder / batch
        if directory.is_dir():
            for path in directory.iterdir():
                if path.suffix.lower() == ".avi":
                    found.setdefault(path.stem, path.relative_to(folder))
    return found


def echonet_lvh_rows(
    folder: str | Path, *, threshold_cm: float = DEFAULT_LVH_THRESHOLD_CM, split_seed: int = 0
) -> list[ManifestRow]:
    """Manifest rows for an EchoNet-LVH folder: one per video of ``MeasurementsList.csv``, with its split and ``lvh``.

    Args:
        folder: holds ``MeasurementsList.csv`` and ``Batch1/`` .. ``Batch4/``.
        threshold_cm: wall thickness (cm) above which a video is labelled ``lvh = 1``.
        split_seed: unused when every video has a split (the dataset's); kept for the common adapter signature.

    Returns:
        One row per ``HashedFileName`` in first-appearance order; ``study_id`` = ``video_id`` = ``HashedFileName``.

    Raises:
        ManifestError: missing columns, unreadable values, a video with two splits, or videos that are in no batch
            folder (all named).
    """
    if not (math.isfinite(threshold_cm) and threshold_cm > 0):
        raise ValueError(f"--lvh-threshold-cm must be > 0 cm, got {threshold_cm}")
    folder = Path(folder)
    source = folder / MEASUREMENTS_NAME
    columns, raw = read_table(source)
    missing = [c for c in _REQUIRED if c not in columns]
    if missing:
        raise ManifestError(
            f"{source}: missing column(s) {', '.join(missing)}; found {columns}. EchoNet-LVH's MeasurementsList.csv "
            f"has {', '.join(_REQUIRED)} (and Frame, X1, X2, Y1, Y2, Frames, FPS, Width, Height)"
        )

    problems: list[str] = []
    walls: dict[str, dict[str, list[float]]] = {}
    splits: dict[str, tuple[str, int]] = {}
    for line, row in enumerate(raw, 2):
        name, calc, split = row["HashedFileName"], row["Calc"], row["split"].lower()
        if name.lower().endswith(".avi"):  # tolerate names written with their extension
            name = name[: -len(".avi")]
        where = f"{source}:{line}"
        if not name:
            problems.append(f"{where}: column `HashedFileName` is empty")
            continue
        walls.setdefault(name, {})
        if split not in _SPLITS:
            problems.append(f"{where}: column `split` has {row['split']!r}; expected train, val or test")
        elif name in splits and splits[name][0] != split:
            problems.append(f"{where}: video {name} is in split {split!r} here but {splits[name][0]!r} on line "
                            f"{splits[name][1]}")
        else:
            splits.setdefault(name, (split, line))
        if calc not in _CALCS:
            problems.append(f"{where}: column `Calc` has {calc!r}; expected one of {', '.join(_CALCS)}")
            continue
        if calc not in WALLS or not row["CalcValue"]:
            continue
        try:
            value = float(row["CalcValue"])
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            problems.append(f"{where}: column `CalcValue` has {row['CalcValue']!r}; expected a thickness in cm")
            continue
        walls[name].setdefault(calc, []).append(value)

    videos = _find_videos(folder)
    absent = [name for name in walls if name not in videos]
    if absent:
        shown = ", ".join(absent[:20]) + (f", ... and {len(absent) - 20} more" if len(absent) > 20 else "")
        problems.append(
            f"{source}: {len(absent)} video(s) named in the measurements are in none of "
            f"{'/, '.join(BATCH_FOLDERS)}/ as NAME.avi: {shown}. Download the missing batches, or remove those "
            "videos' rows from the measurements file"
        )
    if problems:
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise ManifestError(f"{source}: {len(problems)} problem(s), nothing was ingested:\n  {shown}{more}")

    rows = [
        {"path": videos[name].as_posix(), "study_id": name, "video_id": name, "split": splits[name][0],
         "lvh": _label_text(lvh_label(measured, threshold_cm))}
        for name, measured in walls.items()
    ]
    return validate_rows(rows, ["path", "study_id", "video_id", "split", "lvh"], base=folder,
                         source=f"EchoNet-LVH {source}", split_seed=split_seed)


def _label_text(value: float | None) -> str:
    return "" if value is None else str(int(value))
