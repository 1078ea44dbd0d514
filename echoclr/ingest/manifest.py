"""The ingest manifest: a CSV with named columns that says which study each video belongs to, its split and labels.

Columns (never positional): ``path`` and ``study_id`` are required; ``video_id`` (default: the path without its
extension) and ``split`` (``train|val|test|ext_test``; empty = assigned per study) are optional; every other column
is a 0/1 label, empty meaning unknown. A label and a split must be constant within a study.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from echoclr.errors import UsageError
from echoclr.store.schema import SPLITS

REQUIRED_COLUMNS = ("path", "study_id")
RESERVED_COLUMNS = ("path", "study_id", "video_id", "split")
SPLIT_FRACTIONS = (("train", 0.75), ("val", 0.10), ("test", 0.15))
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ManifestError(UsageError):
    """The manifest cannot be ingested as written. The message lists every problem with its row and column."""


@dataclass(frozen=True)
class ManifestRow:
    """One video to ingest. ``row`` is the 1-based CSV line number (header = line 1)."""

    row: int
    path: Path
    video_id: str
    study_id: str
    split: str
    labels: dict[str, float | None] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The video's array name in the store: the video_id made safe for any object store."""
        return video_key(self.video_id)


def video_key(video_id: str) -> str:
    return _KEY_UNSAFE.sub("_", video_id).strip("._") or "video"


def video_keys(video_ids: Sequence[str]) -> list[str]:
    """``[video_key(v) for v in video_ids]``, with one regex pass over all ids when they are already safe keys."""
    if not _KEY_UNSAFE.search("".join(video_ids)) and all(v and v[0] not in "._" and v[-1] not in "._"
                                                         for v in video_ids):
        return list(video_ids)
    return [video_key(v) for v in video_ids]


def read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV file (BOM tolerated), names and values stripped; extra unnamed fields dropped."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [(c or "").strip() for c in reader.fieldnames or []]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    return columns, rows


def parse_label(value: str) -> float | None:
    """A label cell: empty -> None (unknown), 0/1 -> float; anything else raises ValueError."""
    text = value.strip()
    if text == "":
        return None
    if text in ("0", "1", "0.0", "1.0"):
        return float(text)
    raise ValueError(text)


def assign_splits(
    study_ids: list[str], seed: int, fractions: tuple[float, float, float] | None = None
) -> dict[str, str]:
    """Assign whole studies to train/val/test, as a pure function of the study set, ``seed`` and ``fractions``.

    Args:
        fractions: train, val and test fractions summing to 1 (default: the paper's 0.75/0.10/0.15).

    Raises:
        ValueError: fractions that are negative or do not sum to 1.
    """
    train, val, test = fractions or tuple(f for _, f in SPLIT_FRACTIONS)
    if min(train, val, test) < 0 or abs(train + val + test - 1) > 1e-6:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {(train, val, test)}")
    studies = sorted(set(study_ids))
    order = np.random.default_rng(seed).permutation(len(studies))
    n = len(studies)
    n_train = round(n * train)
    n_val = round(n * val)
    splits = {}
    for rank, index in enumerate(order):
        splits[studies[index]] = "train" if rank < n_train else ("val" if rank < n_train + n_val else "test")
    return splits


def read_manifest(
    csv_path: str | Path, *, split_seed: int = 0, split_fractions: tuple[float, float, float] | None = None
) -> list[ManifestRow]:
    """Read and validate a manifest CSV.

    Args:
        csv_path: the CSV; relative ``path`` values are resolved against its folder.
        split_seed: seed of the per-study split assignment for rows without a split.
        split_fractions: train/val/test fractions of that assignment (default 0.75/0.10/0.15, the paper's).

    Returns:
        One row per video, in file order, every split filled in.

    Raises:
        FileNotFoundError: the CSV does not exist.
        ManifestError: missing columns, empty values, duplicate video ids, paths that escape the manifest's folder,
            unknown split names, non-0/1 labels, or labels/splits that differ within a study. All problems are
            listed at once, each with its line and column.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"manifest {csv_path} does not exist")
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        raw_rows = [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]
    return validate_rows(raw_rows, columns, base=csv_path.parent, source=str(csv_path), split_seed=split_seed,
                         split_fractions=split_fractions)


def validate_rows(
    raw_rows: list[dict[str, str]],
    columns: list[str],
    *,
    base: Path,
    source: str,
    split_seed: int = 0,
    split_fractions: tuple[float, float, float] | None = None,
) -> list[ManifestRow]:
    """Validate manifest rows given as text (from a CSV or an adapter). See :func:`read_manifest`.

    Args:
        raw_rows: one dict of column → text per video; its line number is its position + 2 (after a header).
        columns: the column names, in order.
        base: the folder relative paths are resolved against (and must stay inside).
        source: how to name the manifest in messages.
    """
    csv_path = source
    base = Path(base).resolve()
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ManifestError(
            f"{csv_path}: missing required column(s) {', '.join(missing)}; found columns {columns}. "
            "A manifest needs at least `path` and `study_id`."
        )
    label_names = [c for c in columns if c not in RESERVED_COLUMNS and c]
    raw_rows = [(row, line) for line, row in enumerate(raw_rows, 2)]

    problems: list[str] = []
    rows: list[ManifestRow] = []
    seen_ids: dict[str, int] = {}
    seen_keys: dict[str, str] = {}
    for raw, line in raw_rows:
        where = f"{csv_path}:{line}"
        path_text, study_id = raw["path"].strip(), raw["study_id"].strip()
        if not path_text:
            problems.append(f"{where}: column `path` is empty")
            continue
        if not study_id:
            problems.append(f"{where}: column `study_id` is empty")
            continue
        path = Path(path_text)
        if not path.is_absolute():
            resolved = (base / path).resolve()
            if not resolved.is_relative_to(base):
                problems.append(
                    f"{where}: path {path_text!r} escapes the manifest's folder {base}; use a path inside it or an "
                    "absolute path"
                )
                continue
            path = resolved
        video_id = raw.get("video_id", "").strip() or str(PurePosixPath(path_text).with_suffix(""))
        if video_id in seen_ids:
            problems.append(f"{where}: duplicate video_id {video_id!r} (first on line {seen_ids[video_id]})")
            continue
        seen_ids[video_id] = line
        key = video_key(video_id)
        if key in seen_keys:
            problems.append(
                f"{where}: video_id {video_id!r} maps to the same store key {key!r} as {seen_keys[key]!r}; "
                "make the ids differ in letters, digits, '.', '_' or '-'"
            )
            continue
        seen_keys[key] = video_id
        split = raw.get("split", "").strip().lower()
        if split and split not in SPLITS:
            problems.append(f"{where}: column `split` has {split!r}; use one of {', '.join(SPLITS)} or leave it empty")
            continue
        labels: dict[str, float | None] = {}
        for name in label_names:
            try:
                labels[name] = parse_label(raw.get(name, ""))
            except ValueError:
                problems.append(f"{where}: label column `{name}` has {raw.get(name)!r}; labels must be 0, 1 or empty")
        rows.append(ManifestRow(line, path, video_id, study_id, split, labels))

    problems.extend(_study_consistency(rows, label_names, csv_path))
    if problems:
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise ManifestError(f"{csv_path}: {len(problems)} problem(s), nothing was ingested:\n  {shown}{more}")

    given = {r.study_id: r.split for r in rows if r.split}
    assigned = assign_splits([r.study_id for r in rows if r.study_id not in given], split_seed, split_fractions)
    return [
        ManifestRow(r.row, r.path, r.video_id, r.study_id, r.split or given.get(r.study_id) or assigned[r.study_id], r.labels)
        for r in rows
    ]


def _study_consistency(rows: list[ManifestRow], label_names: list[str], csv_path: str) -> list[str]:
    problems = []
    by_study: dict[str, list[ManifestRow]] = {}
    for r in rows:
        by_study.setdefault(r.study_id, []).append(r)
    for study, members in by_study.items():
        for name in label_names:
            values = {m.labels.get(name) for m in members}
            if len(values) > 1:
                lines = ", ".join(f"line {m.row}: {m.labels.get(name)}" for m in members)
                problems.append(
                    f"{csv_path}: study {study!r} has different `{name}` labels across its videos ({lines}); a "
                    "label belongs to the study, so make them equal"
                )
        splits = {m.split for m in members if m.split}
        if len(splits) > 1:
            problems.append(f"{csv_path}: study {study!r} is in several splits {sorted(splits)}; splits are per study")
    return problems
