"""The zarr v3 echo store: one uint8 (T, H, W) array per video, an index of records in the root attributes.

Layout (any zarr v3 store: a local folder or an fsspec URL)::

    zarr.json                 root group; attributes: schema, schema_version, software_version, preprocess, index
    videos/<key>/zarr.json    per-video array, attributes: complete (bool), record (the VideoRecord)
    videos/<key>/c/<t>/0/0    chunk t: frames [t*chunk, (t+1)*chunk)
    ingest_report.json        failures of the last ingest run (plain JSON, not a zarr node)

A video becomes visible in two steps: its array is written with ``complete: false``, then its attributes are
updated to ``complete: true`` with the record. Readers use the root ``index``, which ingest rewrites from the
complete arrays at the end of every run, so a crash at any point leaves a valid store.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from echoclr._version import __version__
from echoclr.errors import UsageError
from echoclr.store.schema import SCHEMA_NAME, SCHEMA_VERSION, PreprocessConfig, VideoRecord

_INDEX_FIELDS = ("video_id", "study_id", "split", "n_frames", "fps", "key", "source_sha256", "labels", "flags")


class StoreError(UsageError, RuntimeError):
    """A store that is missing, of another schema, or used in a way that would lose data."""


def _is_url(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def _local_path(location: str) -> Path:
    return Path(location.removeprefix("file://"))


def _zarr_store(location: str, *, read_only: bool) -> Any:
    if _is_url(location):
        return zarr.storage.FsspecStore.from_url(location, read_only=read_only)
    return zarr.storage.LocalStore(_local_path(location), read_only=read_only)


def _has_root(location: str) -> bool:
    if _is_url(location):
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        return fs.exists(f"{path.rstrip('/')}/zarr.json")
    return (_local_path(location) / "zarr.json").exists()


class EchoStore:
    """A preprocessed echo video store.

    Open an existing store with :meth:`open`; make one with :meth:`create` (ingest does this). Reading is safe from
    many processes; each video array has a single writer.
    """

    def __init__(self, location: str | os.PathLike[str], root: zarr.Group) -> None:
        self.location = str(location)
        self._root = root
        attrs = dict(root.attrs)
        if attrs.get("schema") != SCHEMA_NAME:
            raise StoreError(f"{self.location} is not an echoclr store (schema {attrs.get('schema')!r})")
        if attrs.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(
                f"{self.location} has store schema version {attrs.get('schema_version')}, this echoclr reads "
                f"version {SCHEMA_VERSION}: re-ingest it with this version (`echoclr ingest ... --overwrite`)"
            )
        self.preprocess = PreprocessConfig.from_json(attrs["preprocess"])
        self.software_version: str = attrs.get("software_version", "unknown")
        self.records: list[VideoRecord] = _records_from_columns(attrs.get("index", {}))
        self._by_id = {r.video_id: i for i, r in enumerate(self.records)}
        self._arrays: dict[str, zarr.Array] = {}

    # ------------------------------------------------------------------ opening and creating
    @classmethod
    def open(cls, location: str | os.PathLike[str], *, mode: str = "r") -> "EchoStore":
        """Open an existing store (``mode="r"`` read-only, ``"r+"`` to write videos into it).

        Raises:
            FileNotFoundError: no store at ``location``.
            StoreError: the location holds something that is not an echoclr store of this schema version.
        """
        location = str(location)
        if not _has_root(location):
            raise FileNotFoundError(f"no echoclr store at {location}: create one with `echoclr ingest`")
        root = zarr.open_group(_zarr_store(location, read_only=mode == "r"), mode="r" if mode == "r" else "r+")
        return cls(location, root)

    @classmethod
    def create(
        cls, location: str | os.PathLike[str], preprocess: PreprocessConfig, *, overwrite: bool = False
    ) -> "EchoStore":
        """Create a store, or reopen an existing one made with the same preprocessing (to resume an ingest).

        Raises:
            StoreError: something else is at ``location`` (another schema, other preprocessing, or a non-empty
                folder that is not a store) and ``overwrite`` is False.
        """
        location = str(location)
        if not overwrite and _has_root(location):
            store = cls.open(location, mode="r+")
            if store.preprocess != preprocess:
                raise StoreError(
                    f"{location} was made with preprocessing {store.preprocess.to_json()}, not "
                    f"{preprocess.to_json()}: pass --overwrite to rebuild it or choose another --out"
                )
            return store
        if not overwrite and not _is_url(location):
            path = _local_path(location)
            if path.exists() and any(path.iterdir()):
                raise StoreError(f"{location} exists and is not an echoclr store: pass --overwrite or choose another --out")
        root = zarr.open_group(_zarr_store(location, read_only=False), mode="w")
        root.attrs.update(
            {
                "schema": SCHEMA_NAME,
                "schema_version": SCHEMA_VERSION,
                "software_version": __version__,
                "preprocess": preprocess.to_json(),
                "index": _records_to_columns([]),
            }
        )
        root.create_group("videos")
        return cls(location, root)

    # ------------------------------------------------------------------ writing
    def write_video(self, record: VideoRecord, frames: np.ndarray) -> None:
        """Write one video's frames, then mark it complete. Safe to run in parallel for different keys.

        Args:
            record: the video's index entry; ``record.key`` names the array and ``record.n_frames`` must match.
            frames: ``uint8 (T, size, size)``.
        """
        size = self.preprocess.size
        if frames.dtype != np.uint8 or frames.ndim != 3 or frames.shape[1:] != (size, size):
            raise ValueError(f"frames must be uint8 (T, {size}, {size}), got {frames.dtype} {frames.shape}")
        if frames.shape[0] != record.n_frames or record.n_frames < 1:
            raise ValueError(f"record says {record.n_frames} frames, frames hold {frames.shape[0]}")
        videos = self._root["videos"]
        array = videos.create_array(
            record.key,
            shape=frames.shape,
            dtype="uint8",
            chunks=(self.preprocess.chunk_frames, size, size),
            compressors=BloscCodec(cname=self.preprocess.cname, clevel=self.preprocess.clevel, shuffle="noshuffle"),
            fill_value=0,
            dimension_names=("t", "y", "x"),
            attributes={"complete": False},
            overwrite=True,
        )
        array[...] = frames
        array.attrs.update({"complete": True, "record": record.to_json()})

    def complete_record(self, key: str) -> VideoRecord | None:
        """The record of the complete video array ``key``, or None if it is absent or was never finished."""
        try:
            array = self._root["videos"][key]
        except KeyError:
            return None
        attrs = dict(array.attrs)
        if not attrs.get("complete"):
            return None
        return VideoRecord.from_json(attrs["record"])

    def scan_complete(self) -> dict[str, VideoRecord]:
        """Records of every complete video array, by key (reads each array's metadata)."""
        found: dict[str, VideoRecord] = {}
        for key, array in self._root["videos"].arrays():
            attrs = dict(array.attrs)
            if attrs.get("complete"):
                found[key] = VideoRecord.from_json(attrs["record"])
        return found

    def write_index(self, records: Sequence[VideoRecord], extra_attrs: dict[str, Any] | None = None) -> None:
        """Publish ``records`` as the store's index (every record must name a complete array)."""
        self._root.attrs.update({"index": _records_to_columns(records), **(extra_attrs or {})})
        self.records = list(records)
        self._by_id = {r.video_id: i for i, r in enumerate(self.records)}

    def write_text(self, name: str, text: str) -> None:
        """Write a small text file (a report) at the store's root, atomically on local disk."""
        if _is_url(self.location):
            import fsspec

            with fsspec.open(f"{self.location.rstrip('/')}/{name}", "w") as handle:
                handle.write(text)
            return
        path = _local_path(self.location) / name
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
            handle.write(text)
        os.replace(handle.name, path)

    def read_text(self, name: str) -> str | None:
        if _is_url(self.location):
            import fsspec

            url = f"{self.location.rstrip('/')}/{name}"
            fs, path = fsspec.core.url_to_fs(url)
            return fs.cat_file(path).decode() if fs.exists(path) else None
        path = _local_path(self.location) / name
        return path.read_text() if path.exists() else None

    @property
    def attrs(self) -> dict[str, Any]:
        return {k: v for k, v in self._root.attrs.items() if k != "index"}

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self.records)

    def index_of(self, video_id: str) -> int:
        try:
            return self._by_id[video_id]
        except KeyError:
            raise KeyError(f"no video {video_id!r} in {self.location}") from None

    def array(self, video: int | str) -> zarr.Array:
        """The zarr array of a video, by position in the index or by video_id."""
        record = self.records[video if isinstance(video, (int, np.integer)) else self.index_of(video)]
        array = self._arrays.get(record.key)
        if array is None:
            array = self._arrays[record.key] = self._root["videos"][record.key]
        return array

    def read_frames(self, video: int | str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames ``[start, stop)`` of a video as ``uint8 (stop - start, H, W)``; reads only the chunks needed.

        Raises:
            IndexError: the range is empty or outside the video.
        """
        array = self.array(video)
        n = array.shape[0]
        stop = n if stop is None else stop
        if not 0 <= start < stop <= n:
            raise IndexError(f"frame range [{start}, {stop}) is outside video of {n} frames")
        return np.asarray(array[start:stop])

    # ------------------------------------------------------------------ summaries
    @property
    def study_ids(self) -> list[str]:
        return sorted({r.study_id for r in self.records})

    @property
    def label_names(self) -> list[str]:
        return sorted({name for r in self.records for name in r.labels})

    def select(self, splits: Iterable[str] | None = None) -> list[int]:
        """Positions of the videos in the given splits (all videos when None)."""
        wanted = None if splits is None else set(splits)
        return [i for i, r in enumerate(self.records) if wanted is None or r.split in wanted]

    def summary(self) -> dict[str, Any]:
        """Counts of videos, studies and frames, per split and per label value (JSON-ready)."""
        splits: dict[str, dict[str, int]] = {}
        for r in self.records:
            entry = splits.setdefault(r.split, {"n_videos": 0, "n_studies": 0, "n_frames": 0})
            entry["n_videos"] += 1
            entry["n_frames"] += r.n_frames
        for split in splits:
            splits[split]["n_studies"] = len({r.study_id for r in self.records if r.split == split})
        labels: dict[str, dict[str, int]] = {}
        for name in self.label_names:
            counts = {"positive_studies": 0, "negative_studies": 0, "unknown_studies": 0}
            per_study = {r.study_id: r.labels.get(name) for r in self.records}
            for value in per_study.values():
                key = "unknown_studies" if value is None else ("positive_studies" if value >= 0.5 else "negative_studies")
                counts[key] += 1
            labels[name] = counts
        return {
            "location": self.location,
            "schema_version": SCHEMA_VERSION,
            "software_version": self.software_version,
            "preprocess": self.preprocess.to_json(),
            "n_videos": len(self.records),
            "n_studies": len(self.study_ids),
            "n_frames": int(sum(r.n_frames for r in self.records)),
            "n_flagged": {flag: sum(flag in r.flags for r in self.records) for flag in _all_flags(self.records)},
            "splits": dict(sorted(splits.items())),
            "labels": labels,
        }


def _all_flags(records: Sequence[VideoRecord]) -> list[str]:
    return sorted({flag for r in records for flag in r.flags})


def _records_to_columns(records: Sequence[VideoRecord]) -> dict[str, list[Any]]:
    rows = [r.to_json() for r in records]
    return {name: [row[name] for row in rows] for name in _INDEX_FIELDS}


def _records_from_columns(columns: dict[str, list[Any]]) -> list[VideoRecord]:
    if not columns:
        return []
    n = len(columns["video_id"])
    return [VideoRecord.from_json({name: columns[name][i] for name in _INDEX_FIELDS}) for i in range(n)]


def open_store(location: str | os.PathLike[str]) -> EchoStore:
    """Open an echoclr store read-only (a local path or an fsspec URL such as ``s3://bucket/store.zarr``)."""
    return EchoStore.open(location, mode="r")


def dumps_summary(store: EchoStore) -> str:
    return json.dumps(store.summary(), indent=2, sort_keys=True)
