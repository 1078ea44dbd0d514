"""Labels from a separate table, joined onto any layout's manifest rows by ``study_id`` or ``video_id``.

The table is a CSV with the key column and one column per label (0, 1 or empty = unknown). Keyed by ``video_id``
it may also carry a ``study_id`` column, which regroups videos into studies (for layouts whose videos are each
their own study, such as EchoNet-LVH). A label that the layout already derived (e.g. EchoNet-LVH's ``lvh``) is
kept when the table agrees or is empty, filled when the layout had no value, and refused when the two differ.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from echoclr.ingest.manifest import ManifestError, ManifestRow, parse_label, read_table

LABEL_KEYS = ("study_id", "video_id")
_LIST_AT_MOST = 20


@dataclass(frozen=True)
class LabelJoin:
    """The joined rows and the table's ids that matched no video (reported, not an error)."""

    rows: list[ManifestRow]
    unknown_ids: list[str]
    n_matched: int


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_LIST_AT_MOST])
    return shown + (f", ... and {len(names) - _LIST_AT_MOST} more" if len(names) > _LIST_AT_MOST else "")


def join_labels(rows: list[ManifestRow], table: str | Path, key: str) -> LabelJoin:
    """Add the label columns of ``table`` to ``rows``, matching ``key`` (``study_id`` or ``video_id``).

    Args:
        rows: validated manifest rows (from a manifest or an adapter).
        table: the labels CSV; its ``key`` column identifies studies or videos.
        key: ``study_id`` (one label row per study) or ``video_id`` (one per video; may carry ``study_id``).

    Returns:
        The rows with labels added (unknown for rows the table does not mention) and the table's unmatched ids.

    Raises:
        FileNotFoundError: no table.
        ManifestError: an unknown key, a missing key column, no label columns, duplicate ids, values other than
            0/1/empty, no id matching any video, a value that contradicts the layout's own label, or a label or split
            that would differ within a study. Every problem is named.
    """
    if key not in LABEL_KEYS:
        raise ManifestError(f"--labels-key must be one of {', '.join(LABEL_KEYS)}, got {key!r}")
    table = Path(table)
    if not table.is_file():
        raise FileNotFoundError(f"--labels {table} does not exist")
    columns, raw = read_table(table)
    if key not in columns:
        raise ManifestError(f"{table}: no `{key}` column (--labels-key {key}); found {columns}")
    regroup = key == "video_id" and "study_id" in columns
    reserved = {key, "study_id", "path", "split", "video_id"}
    names = [c for c in columns if c and c not in reserved]
    if not names and not regroup:
        raise ManifestError(f"{table}: no label columns besides `{key}`; found {columns}")

    problems: list[str] = []
    by_id: dict[str, tuple[int, dict[str, float | None], str]] = {}
    for line, row in enumerate(raw, 2):
        ident = row[key]
        if not ident:
            problems.append(f"{table}:{line}: column `{key}` is empty")
            continue
        if ident in by_id:
            problems.append(f"{table}:{line}: {key} {ident!r} appears again (first on line {by_id[ident][0]})")
            continue
        values: dict[str, float | None] = {}
        for name in names:
            try:
                values[name] = parse_label(row.get(name, ""))
            except ValueError:
                problems.append(f"{table}:{line}: label column `{name}` has {row.get(name)!r}; use 0, 1 or empty")
        by_id[ident] = (line, values, row.get("study_id", "") if regroup else "")

    row_ids = {getattr(r, key) for r in rows}
    unknown = [ident for ident in by_id if ident not in row_ids]
    if by_id and len(unknown) == len(by_id):
        problems.append(
            f"{table}: none of its {len(by_id)} {key} values matches a video being ingested (e.g. "
            f"{_listing(unknown[:3])}; ingest ids look like {_listing(sorted(row_ids)[:3])}); check --labels-key"
        )

    joined: list[ManifestRow] = []
    for r in rows:
        entry = by_id.get(getattr(r, key))
        labels = dict(r.labels)
        study = r.study_id
        if entry is not None:
            line, values, new_study = entry
            for name, value in values.items():
                own = labels.get(name)
                if own is not None and value is not None and own != value:
                    problems.append(
                        f"{table}:{line}: `{name}` = {value:g} for {key} {getattr(r, key)!r}, but the dataset itself "
                        f"gives {own:g} for video {r.video_id!r}; fix the table or drop that column"
                    )
                labels[name] = own if value is None else value
            study = new_study or study
        for name in names:
            labels.setdefault(name, None)
        joined.append(replace(r, labels=labels, study_id=study))
    problems.extend(_within_study_conflicts(joined, names, table))
    if problems:
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise ManifestError(f"{table}: {len(problems)} problem(s), nothing was ingested:\n  {shown}{more}")
    return LabelJoin(joined, unknown, n_matched=len(by_id) - len(unknown))


def _within_study_conflicts(rows: list[ManifestRow], names: list[str], table: Path) -> list[str]:
    problems = []
    by_study: dict[str, list[ManifestRow]] = {}
    for r in rows:
        by_study.setdefault(r.study_id, []).append(r)
    for study, members in by_study.items():
        for name in sorted({n for m in members for n in m.labels} | set(names)):
            values = {m.labels.get(name) for m in members}
            if len(values) > 1:
                detail = ", ".join(f"{m.video_id}: {m.labels.get(name)}" for m in members[:_LIST_AT_MOST])
                problems.append(f"{table}: study {study!r} would have different `{name}` labels across its videos "
                                f"({detail}); a label belongs to the study")
        splits = sorted({m.split for m in members})
        if len(splits) > 1:
            detail = ", ".join(f"{m.video_id}: {m.split}" for m in members[:_LIST_AT_MOST])
            problems.append(f"{table}: study {study!r} would span splits {splits} ({detail}); splits are per study")
    return problems
