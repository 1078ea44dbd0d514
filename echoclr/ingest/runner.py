"""Ingest: manifest rows → decoded, preprocessed, stored videos, in parallel, resumable, failures reported.

One task per study (decode, mask, resize, write each of its videos' own array) runs on an engine
(:mod:`echoclr.ingest.engines`: a local process pool or Dask) without any shared state. A rerun skips the videos
whose source file has the same SHA-256 as the one recorded for them: the index says so for indexed videos (no read
of their arrays); a video written by an interrupted run but not yet indexed is checked through its array's
``complete`` attribute. Anything else is (re)written.

The index is published as the run goes, in runs of ``INDEX_FLUSH`` records of the manifest-order prefix that is
done, at absolute positions; at the end the rest is appended (or, if earlier records changed, the index is
rewritten). So the index only ever lists complete videos, a killed run leaves a valid store whose index covers most
of the work done, and an interrupted-then-resumed ingest writes the same files as an uninterrupted one.

Known limit: if a source file changes, a run rewriting its video is killed before publishing, and the file is then
changed back, the rerun trusts the index (same SHA-256) and keeps the newer frames. Rerun with ``--overwrite`` (or
touch nothing in between) when sources are edited back and forth.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from echoclr.files import file_sha256
from echoclr.ingest.decode import DecodeError, decode_file
from echoclr.ingest.engines import run_tasks
from echoclr.ingest.manifest import ManifestRow, video_keys
from echoclr.ingest.preprocess import preprocess_frames
from echoclr.ingest.view_filter import ViewFilter, classifier_for
from echoclr.store import EchoStore, PreprocessConfig, StoreIndex, VideoRecord
from echoclr.store.echo_store import INDEX_FLUSH
from echoclr.store.schema import SHORT_VIDEO_FRAMES

SHORT_FLAG = f"shorter_than_{SHORT_VIDEO_FRAMES}_frames"
REPORT_NAME = "ingest_report.json"
STILL_IMAGE = "skipped (still image)"


@dataclass(frozen=True)
class Failure:
    """A video that could not be ingested (or was excluded on purpose): its manifest line, file and the reason."""

    row: int
    path: str
    video_id: str
    reason: str


@dataclass(frozen=True)
class Outcome:
    status: str  # "written" | "skipped" | "failed" | "excluded" (a still image, or the view filter said no)
    record: VideoRecord | None = None
    failure: Failure | None = None


@dataclass
class IngestResult:
    """What an ingest run did. ``records`` are the store's index after the run, in manifest order."""

    store: EchoStore
    records: list[VideoRecord] = field(default_factory=list)
    n_written: int = 0
    n_skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    excluded: list[Failure] = field(default_factory=list)


_STORES: dict[str, EchoStore] = {}


def _store_for(location: str, storage_options: Mapping[str, Any] | None = None) -> EchoStore:
    cache_key = json.dumps([location, dict(storage_options or {})], sort_keys=True, default=str)
    store = _STORES.get(cache_key)
    if store is None:
        store = _STORES[cache_key] = EchoStore.open(location, mode="r+", storage_options=storage_options)
    return store


def _excluded(row: ManifestRow, reason: str) -> Outcome:
    return Outcome("excluded", failure=Failure(row.row, str(row.path), row.video_id, reason))


def ingest_one(
    row: ManifestRow,
    location: str,
    preprocess: PreprocessConfig,
    indexed: VideoRecord | Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    view_filter: ViewFilter | None = None,
) -> Outcome:
    """Ingest one manifest row into the store at ``location``; never raises for bad input (returns a failure).

    A single-frame source (a still image) is excluded, not failed. With ``view_filter``, the view model runs on the
    preprocessed frames and a video it does not keep is excluded (and not written).

    Args:
        indexed: the row's record in the store's index (a record or its ``to_json`` dict), if it has one (then its
            array is not read to resume).
    """
    try:
        sha = file_sha256(row.path)
    except OSError as exc:
        return Outcome("failed", failure=Failure(row.row, str(row.path), row.video_id, f"cannot read file: {exc}"))
    store = _store_for(location, storage_options)
    if isinstance(indexed, Mapping):
        indexed = VideoRecord.from_json(indexed) if indexed.get("source_sha256") == sha else None
    existing = indexed if indexed is not None and indexed.source_sha256 == sha else store.complete_record(row.key)
    if existing is not None and existing.source_sha256 == sha:
        wanted = replace(existing, video_id=row.video_id, study_id=row.study_id, split=row.split, labels=row.labels)
        if view_filter is not None:  # the stored frames are what the model saw when the video was written
            decision = classifier_for(view_filter).decide(store.read_frames(row.key))
            if not decision.keep:
                return _excluded(row, decision.reason)
            wanted = replace(wanted, view=decision.view, view_prob=decision.prob)
        return Outcome("skipped", record=wanted)
    try:
        decoded = decode_file(row.path)
        frames = preprocess_frames(decoded.frames, preprocess)
    except DecodeError as exc:
        return Outcome("failed", failure=Failure(row.row, str(row.path), row.video_id, str(exc)))
    except (ValueError, MemoryError) as exc:
        reason = f"{row.path}: cannot preprocess ({type(exc).__name__}: {exc})"
        return Outcome("failed", failure=Failure(row.row, str(row.path), row.video_id, reason))
    if frames.shape[0] == 1:
        return _excluded(row, STILL_IMAGE)
    view = prob = None
    if view_filter is not None:
        decision = classifier_for(view_filter).decide(frames)
        if not decision.keep:
            return _excluded(row, decision.reason)
        view, prob = decision.view, decision.prob
    flags = []
    if frames.shape[0] < SHORT_VIDEO_FRAMES:
        flags.append(SHORT_FLAG)
    if decoded.frames.ndim == 4:
        flags.append("converted_from_color")
    record = VideoRecord(
        video_id=row.video_id,
        study_id=row.study_id,
        split=row.split,
        n_frames=int(frames.shape[0]),
        fps=decoded.fps,
        key=row.key,
        source_sha256=sha,
        labels=dict(row.labels),
        flags=tuple(flags),
        view=view,
        view_prob=prob,
    )
    store.write_video(record, frames)
    return Outcome("written", record=record)


def ingest_study(
    rows: Sequence[ManifestRow],
    indexed: Sequence[VideoRecord | Mapping[str, Any] | None],
    location: str,
    preprocess: PreprocessConfig,
    storage_options: Mapping[str, Any] | None = None,
    view_filter: ViewFilter | None = None,
) -> list[Outcome]:
    """Ingest the videos of one study (one engine task): :func:`ingest_one` for each row, in order."""
    return [ingest_one(row, location, preprocess, known, storage_options, view_filter)
            for row, known in zip(rows, indexed)]


def indexed_positions(index: StoreIndex, rows: Sequence[ManifestRow]) -> np.ndarray:
    """``int64 (len(rows),)``: each row's position in the index (by array key), -1 where the index does not list it.
    The resume scan, from the index alone and vectorised (one sort of the key column and a binary search)."""
    return index.positions("key", video_keys([row.video_id for row in rows]))


def indexed_rows(index: StoreIndex, rows: Sequence[ManifestRow]) -> list[dict[str, Any] | None]:
    """Each row's indexed record as a :meth:`VideoRecord.to_json` dict (by array key), or None: the resume plan that
    ingest's tasks receive. :func:`indexed_positions`, then the found rows decoded a column at a time; a task makes a
    :class:`VideoRecord` only for a row it skips (same source SHA-256)."""
    positions = indexed_positions(index, rows)
    found = np.flatnonzero(positions >= 0)
    plan: list[dict[str, Any] | None] = [None] * len(rows)
    for i, record in zip(found.tolist(), index.rows(positions[found])):
        plan[i] = record
    return plan


_COMPARE_BLOCK = 8 * INDEX_FLUSH


class _Publisher:
    """Publishes the manifest-order prefix of finished records in runs of ``INDEX_FLUSH`` at absolute positions,
    appending to the existing index while it is a prefix of this run's records."""

    def __init__(self, store: EchoStore, base: StoreIndex) -> None:
        self.store = store
        self.base = base
        self._base_block: tuple[int, list[VideoRecord]] = (-1, [])
        self.records: list[VideoRecord] = []
        self.published = base.n
        self.diverged = False

    def add(self, record: VideoRecord) -> None:
        position = len(self.records)
        self.records.append(record)
        if not self.diverged and position < self.base.n:
            block = position // _COMPARE_BLOCK
            if self._base_block[0] != block:  # the base records, decoded in bulk a block at a time
                start = block * _COMPARE_BLOCK
                stop = min(start + _COMPARE_BLOCK, self.base.n)
                self._base_block = (block, self.base.records(np.arange(start, stop)))
            self.diverged = self._base_block[1][position % _COMPARE_BLOCK] != record
        while self._appending() and len(self.records) >= (boundary := (self.published // INDEX_FLUSH + 1) * INDEX_FLUSH):
            self.store.append_index(self.records[self.published:boundary])
            self.published = boundary

    def _appending(self) -> bool:
        return not self.diverged and len(self.records) >= self.base.n

    def finish(self) -> None:
        if self._appending():
            self.store.append_index(self.records[self.published:])
        else:
            self.store.write_index(self.records)


def ingest_rows(
    rows: Sequence[ManifestRow],
    location: str | Path,
    *,
    preprocess: PreprocessConfig | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    view_filter: ViewFilter | None = None,
    engine: str = "local",
    scheduler: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> IngestResult:
    """Ingest validated manifest rows into a store (created, or resumed if it exists with the same preprocessing).

    Args:
        rows: from :func:`echoclr.ingest.read_manifest` or an adapter.
        location: the store (local path or fsspec URL).
        preprocess: preprocessing parameters (the paper's by default).
        workers: processes (local engine; 1 runs in this process) or LocalCluster workers (dask engine).
        overwrite: replace the echoclr store at ``location`` (never anything else).
        progress: called with (videos done, total) after each study's task finishes.
        view_filter: keep only the videos a user's view model assigns to one view (see ``view_filter.py``).
        engine: ``"local"`` or ``"dask"`` (see :func:`echoclr.ingest.engines.run_tasks`).
        scheduler: Dask scheduler address (dask engine); a LocalCluster is started when None.
        storage_options: fsspec options for a URL store (credentials, ``endpoint_url``).

    Returns:
        The result; failures and exclusions are also written to ``ingest_report.json`` in the store.

    Raises:
        StoreError: ``location`` holds something else (see :meth:`EchoStore.create`).
        ViewModelError, FileNotFoundError: the view model cannot be used (checked before any video is read).
    """
    preprocess = preprocess or PreprocessConfig()
    if view_filter is not None:
        classifier_for(view_filter)
    location = str(location)
    store = EchoStore.create(location, preprocess, overwrite=overwrite, storage_options=storage_options)
    _STORES.clear()
    base = store.records
    known = indexed_rows(base, rows)
    studies: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        studies.setdefault(row.study_id, []).append(i)
    groups = list(studies.values())
    tasks = [([rows[i] for i in g], [known[i] for i in g], location, preprocess, storage_options, view_filter)
             for g in groups]

    outcomes: list[Outcome | None] = [None] * len(rows)
    publisher = _Publisher(store, base)
    next_row, done = 0, 0
    for position, results in run_tasks(ingest_study, tasks, engine=engine, workers=workers, scheduler=scheduler):
        for i, outcome in zip(groups[position], results):
            outcomes[i] = outcome
        while next_row < len(rows) and outcomes[next_row] is not None:
            if outcomes[next_row].status not in ("failed", "excluded"):
                publisher.add(outcomes[next_row].record)
            next_row += 1
        done += len(groups[position])
        if progress:
            progress(done, len(rows))
    publisher.finish()

    result = IngestResult(store=store)
    for outcome in outcomes:
        if outcome.status == "failed":
            result.failures.append(outcome.failure)
            continue
        if outcome.status == "excluded":
            result.excluded.append(outcome.failure)
            continue
        result.records.append(outcome.record)
        result.n_written += outcome.status == "written"
        result.n_skipped += outcome.status == "skipped"
    report = {
        "n_rows": len(rows),
        "n_ingested": len(result.records),
        "n_written_this_run": result.n_written,
        "n_skipped_this_run": result.n_skipped,
        "failures": [f.__dict__ for f in result.failures],
        "n_excluded": len(result.excluded),
        "excluded": [f.__dict__ for f in result.excluded],
    }
    store.write_text(REPORT_NAME, json.dumps(report, indent=2) + "\n")
    return result
