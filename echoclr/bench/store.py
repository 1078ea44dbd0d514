"""Store index benchmark: open time, index update time for 1,000 new videos and resume-scan time at 10⁴–10⁶ videos.

For each scale N it makes a store whose index lists N videos. Real (tiny: 2 frames of 8×8 px) video arrays are
written for all of them when N <= ``real_arrays`` and for none otherwise: creating 10⁵–10⁶ zarr arrays on this
2-core machine takes hours and nothing measured here reads them (that is the point of the index). The result says, per scale, exactly
how many arrays exist. Rows (seconds, median of ``repeats`` after one warm-up):

- ``open``: :func:`open_store` plus loading the whole index (every column of every segment);
- ``summary``: counts per split and label from the open index;
- ``index update, 1,000 new videos``: :meth:`EchoStore.append_index` of 1,000 new records (a new segment, tail merges
  as the binary counter needs them, one root write); each repeat appends to the grown index;
- ``resume scan``: the plan of a rerun over the N manifest rows: open the index and find which rows it already
  covers, by array key (vectorised: :func:`~echoclr.ingest.runner.indexed_positions`; no video array read);
- ``resume plan for the tasks``: decoding the found rows' records (column-wise, as ``to_json`` dicts) that
  ingest hands to its tasks, from the open index (:func:`~echoclr.ingest.runner.indexed_rows`); one run at 10⁶;
- ``array check per unindexed video`` (at the largest scale with real arrays): the per-video read a rerun makes for
  a row the index does not cover (a video written by a killed run), and ``v1 index rebuild (list every array)``:
  what schema version 1 did at the end of every ingest.

On the local S3 server (moto, 127.0.0.1) the same rows run at ``s3_scale`` with ``s3_real_arrays`` arrays.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from echoclr.bench.environment import machine_info
from echoclr.bench.results import make_result, row
from echoclr.bench.timing import Stats
from echoclr.ingest.manifest import ManifestRow
from echoclr.ingest.runner import indexed_positions, indexed_rows
from echoclr.store import EchoStore, PreprocessConfig, StoreIndex, VideoRecord, open_store

TINY = PreprocessConfig(size=8, chunk_frames=2)
TINY_FRAMES = 2


@dataclass(frozen=True)
class StoreBenchConfig:
    """Args:
        scales: index sizes (videos) to measure locally.
        real_arrays: scales up to this size get a real video array per video; larger ones exist only in the index.
        append: new videos per index update.
        repeats: timed repeats per row (after one warm-up).
        s3_scale: index size on the local S3 server (0 skips the S3 rows).
        s3_real_arrays: real video arrays in a second, small S3 store (for the per-array check and the v1 rebuild).
    """

    scales: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    real_arrays: int = 10_000
    append: int = 1_000
    repeats: int = 3
    s3_scale: int = 10_000
    s3_real_arrays: int = 100

    def __post_init__(self) -> None:
        if not self.scales or min(self.scales) < 1:
            raise ValueError(f"scales must be >= 1, got {self.scales}")
        if self.repeats < 1 or self.append < 1:
            raise ValueError("repeats and append must be >= 1")

    @classmethod
    def smoke(cls) -> "StoreBenchConfig":
        return cls(scales=(100, 2_000), real_arrays=100, append=100, repeats=2, s3_scale=500, s3_real_arrays=10)


def synthetic_record(i: int) -> VideoRecord:
    """A plausible index entry: ~3 videos per study, a 75/10/15 split, two labels, a SHA-256."""
    split = "train" if i % 20 < 15 else ("val" if i % 20 < 17 else "test")
    study = i // 3
    return VideoRecord(video_id=f"video-{i:08d}", study_id=f"study-{study:08d}", split=split, n_frames=TINY_FRAMES,
                       fps=30.0, key=f"video-{i:08d}", source_sha256=f"{i * 2654435761 % (1 << 256):064x}",
                       labels={"lvh": float(study % 2), "severe_as": None if study % 7 == 0 else float(study % 3 == 0)})


def _timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[Stats, Any]:
    out = None
    values = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        out = fn()
        if i >= warmup:
            values.append(time.perf_counter() - start)
    return Stats(tuple(values), warmup, "s"), out


def build_store(location: str, n: int, real_arrays: int, storage_options: dict[str, Any] | None = None) -> dict:
    """A store indexing ``n`` synthetic videos, ``min(n, real_arrays)`` of them with real arrays."""
    store = EchoStore.create(location, TINY, overwrite=True, storage_options=storage_options)
    frames = np.full((TINY_FRAMES, TINY.size, TINY.size), 7, np.uint8)
    n_real = n if n <= real_arrays else 0  # a scale above real_arrays exists only in the index
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: store.write_video(synthetic_record(i), frames), range(n_real)))
    arrays_s = time.perf_counter() - start
    start = time.perf_counter()
    index = _synthetic_index(n)
    store.write_index(index)
    return {"n_index_records": n, "n_video_arrays": n_real, "write_arrays_s": arrays_s,
            "write_index_s": time.perf_counter() - start}


def _synthetic_index(n: int, offset: int = 0) -> StoreIndex:
    """The columns of ``synthetic_record(offset..offset+n)``, built with numpy (10⁶ records in seconds)."""
    if n <= 10_000:
        return StoreIndex.from_records(synthetic_record(i) for i in range(offset, offset + n))
    i = np.arange(offset, offset + n)
    study = i // 3
    ids = np.char.add(b"video-", np.char.zfill(i.astype("S8"), 8))
    split = np.where(i % 20 < 15, b"train", np.where(i % 20 < 17, b"val", b"test")).astype("S5")
    digests = np.zeros((n, 32), np.uint8)
    digests[:, 24:] = ((i * 2654435761).astype(">u8")).view(np.uint8).reshape(n, 8)
    severe = np.where(study % 7 == 0, np.nan, (study % 3 == 0).astype(float))
    columns = {"video_id": ("str", ids), "study_id": ("str", np.char.add(b"study-", np.char.zfill(study.astype("S8"), 8))),
               "split": ("str", split), "n_frames": ("int", np.full(n, TINY_FRAMES, np.int64)),
               "fps": ("float", np.full(n, 30.0)), "key": ("str", ids), "source_sha256": ("hex", digests),
               "labels:lvh": ("float", (study % 2).astype(float)), "labels:severe_as": ("float", severe),
               "flags": ("list", np.full(n, b"", dtype="S1"))}
    return StoreIndex(n, columns)


def _manifest_rows(n: int) -> list[ManifestRow]:
    return [ManifestRow(row=i + 2, path=Path(f"videos/video-{i:08d}.avi"), video_id=f"video-{i:08d}",
                        study_id=f"study-{i // 3:08d}", split="train") for i in range(n)]


def measure_scale(location: str, n: int, config: StoreBenchConfig, where: str, real_arrays: int,
                  storage_options: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    built = build_store(location, n, real_arrays, storage_options)
    settings = {"n_videos": n, "where": where, **built}
    common = {"precision": "n/a", "memory_format": "zarr v3 columnar index segments", "device": "cpu", **settings}
    rows = []

    open_stats, store = _timed(lambda: _open_full(location, storage_options), config.repeats)
    rows.append(row(f"open ({where}, {n:,} videos)", open_stats, **common))
    summary_stats, _ = _timed(store.summary, config.repeats)
    rows.append(row(f"summary ({where}, {n:,} videos)", summary_stats, **common))

    writer = EchoStore.open(location, mode="r+", storage_options=storage_options)
    grown = [n]
    appends = [_synthetic_index(config.append, offset=n + k * config.append) for k in range(config.repeats + 1)]

    def append() -> None:
        writer.append_index(appends[len(grown) - 1])
        grown.append(grown[-1] + config.append)

    append_stats, _ = _timed(append, config.repeats)
    rows.append(row(f"index update, {config.append:,} new videos ({where}, {n:,} videos)", append_stats,
                    segments_after=len(writer._segments), **common))

    manifest = _manifest_rows(n)
    scan_stats, positions = _timed(lambda: indexed_positions(open_store(location, storage_options).records, manifest),
                                   config.repeats)
    assert (positions == np.arange(n)).all(), "every manifest row must be found at its index position"
    rows.append(row(f"resume scan ({where}, {n:,} rows)", scan_stats, **common))
    index = open_store(location, storage_options).records
    plan_stats, plan = _timed(lambda: indexed_rows(index, manifest), *((config.repeats, 1) if n <= 100_000 else (1, 0)))
    assert sum(p is not None for p in plan) == n
    rows.append(row(f"resume plan for the tasks: decode the found rows ({where}, {n:,} rows)", plan_stats, **common))
    return rows, settings


def _open_full(location: str, storage_options: dict[str, Any] | None) -> EchoStore:
    store = open_store(location, storage_options)
    len(store.records)  # the whole index: every column of every segment
    return store


def measure_array_checks(location: str, n_real: int, repeats: int,
                         storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The per-video cost a rerun pays for rows outside the index, and schema v1's rebuild by listing arrays."""
    store = EchoStore.open(location, mode="r+", storage_options=storage_options)
    keys = [synthetic_record(i).key for i in range(min(n_real, 1_000))]
    check, found = _timed(lambda: [store.complete_record(k) for k in keys], repeats)
    assert all(found), "every checked array must be complete"
    per_video = Stats(tuple(v / len(keys) for v in check.values), check.warmup, "s")
    where = "s3" if "://" in location else "local"
    common = {"precision": "n/a", "memory_format": "per-video zarr arrays", "device": "cpu", "where": where}
    rows = [row(f"array check per unindexed video ({where})", per_video, n_checked=len(keys), **common)]
    scan, records = _timed(store.scan_complete, max(1, repeats // 2))
    rows.append(row(f"v1 index rebuild: list and read every array ({where}, {n_real:,} arrays)", scan,
                    n_video_arrays=n_real, **common))
    assert len(records) == n_real
    return rows


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_store_bench(config: StoreBenchConfig, work_dir: str | Path, *, quick: bool = False) -> dict[str, Any]:
    """Run the store benchmark; stores are made under ``work_dir`` (and on a moto S3 server in this process).

    Returns:
        A result document (:func:`echoclr.bench.results.make_result`).
    """
    machine = machine_info()
    work = Path(work_dir) / "store-bench"
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    created = []
    for n in config.scales:
        location = str(work / f"store-{n}.zarr")
        scale_rows, settings = measure_scale(location, n, config, "local", config.real_arrays)
        rows += scale_rows
        created.append(settings)
    with_arrays = [n for n in config.scales if n <= config.real_arrays]
    if with_arrays:
        rows += measure_array_checks(str(work / f"store-{max(with_arrays)}.zarr"), max(with_arrays), config.repeats)
    for n in config.scales:
        shutil.rmtree(work / f"store-{n}.zarr", ignore_errors=True)

    s3_note = "skipped (s3_scale = 0)"
    if config.s3_scale:
        try:
            from moto.server import ThreadedMotoServer
            import s3fs
        except ImportError:
            s3_note = "skipped: moto[server] and s3fs are not installed (pip install 'echoclr[scale]')"
        else:
            port = _free_port()
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()
            try:
                options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "bench", "secret": "bench"}
                s3fs.S3FileSystem(**options).mkdir("bench")
                url = f"s3://bench/store-{config.s3_scale}.zarr"
                scale_rows, settings = measure_scale(url, config.s3_scale, config, "s3", config.s3_real_arrays, options)
                rows += scale_rows
                created.append(settings)
                if config.s3_real_arrays:
                    real = f"s3://bench/arrays-{config.s3_real_arrays}.zarr"
                    created.append({**build_store(real, config.s3_real_arrays, config.s3_real_arrays, options),
                                    "where": "s3"})
                    rows += measure_array_checks(real, config.s3_real_arrays, config.repeats, options)
                s3_note = f"moto {_version('moto')} server on 127.0.0.1 in this process, through s3fs"
            finally:
                server.stop()

    def median(name: str) -> float | None:
        return next((r["median"] for r in rows if r["name"] == name), None)

    biggest = max(config.scales)
    summary = {
        "open_s_at_largest_local_scale": median(f"open (local, {biggest:,} videos)"),
        "largest_local_scale": biggest,
        "target_open_s_at_1e6": 1.0,
        "created": created,
        "s3": s3_note,
        "what_exists": "per scale: n_index_records entries in the index; n_video_arrays real video arrays "
                       "(the first ones); the index never reads the arrays it lists",
    }
    return make_result("store", machine=machine, settings=asdict(config), rows=rows, summary=summary, quick=quick)


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)
