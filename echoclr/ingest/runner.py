"""Ingest: manifest rows → decoded, preprocessed, stored videos, in parallel, resumable, failures reported.

Each video is one independent task (decode, mask, resize, write its own array), so a process pool — or a cluster
engine mapping :func:`ingest_one` — runs them without any shared state. A rerun skips the videos whose array is
complete and whose source file has the same SHA-256; anything else is (re)written. The index and the failure report
are rewritten at the end of every run, so a killed run leaves a valid store and a rerun completes it.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from echoclr.files import file_sha256
from echoclr.ingest.decode import DecodeError, decode_file
from echoclr.ingest.manifest import ManifestRow
from echoclr.ingest.preprocess import preprocess_frames
from echoclr.store import EchoStore, PreprocessConfig, VideoRecord
from echoclr.store.schema import SHORT_VIDEO_FRAMES

SHORT_FLAG = f"shorter_than_{SHORT_VIDEO_FRAMES}_frames"
REPORT_NAME = "ingest_report.json"


@dataclass(frozen=True)
class Failure:
    """A video that could not be ingested: its manifest line, file and the reason."""

    row: int
    path: str
    video_id: str
    reason: str


@dataclass(frozen=True)
class Outcome:
    status: str  # "written" | "skipped" | "failed"
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


_STORES: dict[str, EchoStore] = {}


def _store_for(location: str) -> EchoStore:
    store = _STORES.get(location)
    if store is None:
        store = _STORES[location] = EchoStore.open(location, mode="r+")
    return store


def ingest_one(row: ManifestRow, location: str, preprocess: PreprocessConfig) -> Outcome:
    """Ingest one manifest row into the store at ``location``; never raises for bad input (returns a failure)."""
    try:
        sha = file_sha256(row.path)
    except OSError as exc:
        return Outcome("failed", failure=Failure(row.row, str(row.path), row.video_id, f"cannot read file: {exc}"))
    store = _store_for(location)
    existing = store.complete_record(row.key)
    if existing is not None and existing.source_sha256 == sha:
        wanted = replace(existing, video_id=row.video_id, study_id=row.study_id, split=row.split, labels=row.labels)
        return Outcome("skipped", record=wanted)
    try:
        decoded = decode_file(row.path)
        frames = preprocess_frames(decoded.frames, preprocess)
    except DecodeError as exc:
        return Outcome("failed", failure=Failure(row.row, str(row.path), row.video_id, str(exc)))
    except (ValueError, MemoryError) as exc:
        reason = f"{row.path}: cannot preprocess ({type(exc).__name__}: {exc})"
        return Outcome("failed", failure=Failure(row.row, str(row.path), row.video_id, reason))
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
    )
    store.write_video(record, frames)
    return Outcome("written", record=record)


def _ingest_task(args: tuple[ManifestRow, str, PreprocessConfig]) -> Outcome:
    return ingest_one(*args)


def ingest_rows(
    rows: Sequence[ManifestRow],
    location: str | Path,
    *,
    preprocess: PreprocessConfig | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> IngestResult:
    """Ingest validated manifest rows into a store (created, or resumed if it exists with the same preprocessing).

    Args:
        rows: from :func:`echoclr.ingest.read_manifest` or an adapter.
        location: the store (local path or fsspec URL).
        preprocess: preprocessing parameters (the paper's by default).
        workers: processes; 1 runs in this process.
        overwrite: delete whatever is at ``location`` first.
        progress: called with (done, total) after each video.

    Returns:
        The result; failures are also written to ``ingest_report.json`` in the store.
    """
    preprocess = preprocess or PreprocessConfig()
    location = str(location)
    store = EchoStore.create(location, preprocess, overwrite=overwrite)
    _STORES.pop(location, None)
    tasks = [(row, location, preprocess) for row in rows]
    outcomes: list[Outcome] = []
    if workers <= 1:
        for i, task in enumerate(tasks, 1):
            outcomes.append(_ingest_task(task))
            if progress:
                progress(i, len(tasks))
    else:
        context = multiprocessing.get_context("spawn")  # zarr runs an event-loop thread: never fork after it starts
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for i, outcome in enumerate(pool.map(_ingest_task, tasks, chunksize=1), 1):
                outcomes.append(outcome)
                if progress:
                    progress(i, len(tasks))

    result = IngestResult(store=store)
    for outcome in outcomes:
        if outcome.status == "failed":
            result.failures.append(outcome.failure)
            continue
        result.records.append(outcome.record)
        result.n_written += outcome.status == "written"
        result.n_skipped += outcome.status == "skipped"
    store.write_index(result.records)
    report = {
        "n_rows": len(rows),
        "n_ingested": len(result.records),
        "n_written_this_run": result.n_written,
        "n_skipped_this_run": result.n_skipped,
        "failures": [f.__dict__ for f in result.failures],
    }
    store.write_text(REPORT_NAME, json.dumps(report, indent=2) + "\n")
    return result
