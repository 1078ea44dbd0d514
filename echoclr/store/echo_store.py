"""The zarr v3 echo store: one uint8 (T, H, W) array per video, a columnar index in immutable segments.

Layout (any zarr v3 store: a local folder or an fsspec URL)::

    zarr.json                 root group; attributes: schema, schema_version, software_version, preprocess,
                              index = {"segments": [{"name", "n"}, ...], "n_videos"}
    videos/<key>/zarr.json    per-video array, attributes: complete (bool), record (the VideoRecord)
    videos/<key>/c/<t>/0/0    chunk t: frames [t*chunk, (t+1)*chunk)
    index/<segment>/          the records of a contiguous run of index positions, one zarr array per column
                              (:mod:`echoclr.store.index`); segments are immutable and named by their content
    ingest_report.json        failures of the last ingest run (plain JSON, not a zarr node)

A video becomes visible in steps: its array is written with ``complete: false``, its attributes are updated to
``complete: true`` with the record, then a segment listing it is written, and finally the root's ``index``
attribute (one small write) starts referencing that segment. Opening reads the root and the listed segments only:
no video array is read or listed. A crash at any point leaves a valid store (the previous index); unreferenced
segments left by a crash are deleted by the next writer.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from echoclr._version import __version__
from echoclr.errors import UsageError
from echoclr.store.index import StoreIndex, layout, plan_append, read_segments, segment_name, write_segment
from echoclr.store.schema import SCHEMA_NAME, SCHEMA_VERSION, PreprocessConfig, VideoRecord

# Ingest publishes the index in runs of this many records (at absolute positions, so an interrupted and resumed
# ingest writes the same segments as an uninterrupted one).
INDEX_FLUSH = 1024


class StoreError(UsageError, RuntimeError):
    """A store that is missing, of another schema, or used in a way that would lose data."""


def _is_url(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def _local_path(location: str) -> Path:
    return Path(location.removeprefix("file://"))


def url_filesystem(location: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """The fsspec filesystem and path of a URL store (options: e.g. ``endpoint_url``, ``key``, ``secret``)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(location, **dict(storage_options or {}))
    return fs, path.rstrip("/")


def _zarr_store(location: str, *, read_only: bool, storage_options: Mapping[str, Any] | None = None) -> Any:
    if _is_url(location):
        return zarr.storage.FsspecStore.from_url(location, read_only=read_only,
                                                 storage_options=dict(storage_options or {}) or None)
    return zarr.storage.LocalStore(_local_path(location), read_only=read_only)


def _has_root(location: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    if _is_url(location):
        fs, path = url_filesystem(location, storage_options)
        return fs.exists(f"{path}/zarr.json")
    return (_local_path(location) / "zarr.json").exists()


def _is_empty(location: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Nothing at ``location``: a missing or empty folder, or an object-store prefix with no objects under it."""
    if _is_url(location):
        fs, path = url_filesystem(location, storage_options)
        try:
            return not fs.ls(path, detail=False)
        except FileNotFoundError:
            return True
    path = _local_path(location)
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def _root_attrs(location: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    root = zarr.open_group(_zarr_store(location, read_only=True, storage_options=storage_options), mode="r")
    return dict(root.attrs)


def _check_schema(location: str, attrs: Mapping[str, Any], *, version: int = SCHEMA_VERSION) -> None:
    if attrs.get("schema") != SCHEMA_NAME:
        raise StoreError(f"{location} is not an echoclr store (schema {attrs.get('schema')!r})")
    found = attrs.get("schema_version")
    if found == version:
        return
    if isinstance(found, int) and found < version:
        raise StoreError(
            f"{location} has store schema version {found}, this echoclr reads version {version}: run "
            f"`echoclr store upgrade {location}` (rewrites only the index; every video is kept)"
        )
    raise StoreError(
        f"{location} has store schema version {found}, this echoclr reads version {version}: "
        "upgrade echoclr to read it"
    )


class EchoStore:
    """A preprocessed echo video store.

    Open an existing store with :meth:`open`; make one with :meth:`create` (ingest does this). Reading is safe from
    many processes; each video array has a single writer; only one process publishes the index.

    Attributes:
        records: the index (a :class:`~echoclr.store.index.StoreIndex`: a read-only list of
            :class:`VideoRecord` with columnar access).
    """

    def __init__(
        self, location: str | os.PathLike[str], root: zarr.Group, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        self.location = str(location)
        self.storage_options = dict(storage_options or {})
        self._root = root
        attrs = dict(root.attrs)
        _check_schema(self.location, attrs)
        self.preprocess = PreprocessConfig.from_json(attrs["preprocess"])
        self.software_version: str = attrs.get("software_version", "unknown")
        self._segments: list[dict[str, Any]] = list(attrs.get("index", {}).get("segments", []))
        self._parts: list[StoreIndex] | None = None
        self._index: StoreIndex | None = None
        self._by_id: dict[str, int] | None = None
        self._arrays: dict[str, zarr.Array] = {}

    # ------------------------------------------------------------------ opening and creating
    @classmethod
    def open(
        cls, location: str | os.PathLike[str], *, mode: str = "r", storage_options: Mapping[str, Any] | None = None
    ) -> "EchoStore":
        """Open an existing store (``mode="r"`` read-only, ``"r+"`` to write videos into it).

        Args:
            location: a local path, ``file://`` URL or fsspec URL (``s3://bucket/store.zarr``).
            storage_options: fsspec options for a URL (credentials, ``endpoint_url``...); the standard environment
                variables (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``FSSPEC_S3_ENDPOINT_URL``...) also work.

        Raises:
            FileNotFoundError: no store at ``location``.
            StoreError: the location holds something that is not an echoclr store of this schema version.
        """
        location = str(location)
        if not _has_root(location, storage_options):
            raise FileNotFoundError(f"no echoclr store at {location}: create one with `echoclr ingest`")
        store = _zarr_store(location, read_only=mode == "r", storage_options=storage_options)
        root = zarr.open_group(store, mode="r" if mode == "r" else "r+")
        return cls(location, root, storage_options)

    @classmethod
    def create(
        cls,
        location: str | os.PathLike[str],
        preprocess: PreprocessConfig,
        *,
        overwrite: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> "EchoStore":
        """Create a store, or reopen an existing one made with the same preprocessing (to resume an ingest).

        ``overwrite`` replaces an echoclr store (of any version) or an empty location; it never deletes anything
        else, on a local disk or under an object-store prefix.

        Raises:
            StoreError: another schema or other preprocessing at ``location`` (without ``overwrite``), or a
                non-empty location that is not an echoclr store (always).
        """
        location = str(location)
        has_root = _has_root(location, storage_options)
        if has_root:
            try:
                attrs = _root_attrs(location, storage_options)
            except Exception:  # an unreadable zarr.json: not recognisably ours
                attrs = {}
            if attrs.get("schema") != SCHEMA_NAME:
                raise StoreError(f"{location} exists and is not an echoclr store: refusing to replace it "
                                 "(even with --overwrite); choose another --out")
            if not overwrite:
                store = cls.open(location, mode="r+", storage_options=storage_options)
                if store.preprocess != preprocess:
                    raise StoreError(
                        f"{location} was made with preprocessing {store.preprocess.to_json()}, not "
                        f"{preprocess.to_json()}: pass --overwrite to rebuild it or choose another --out"
                    )
                store.collect_garbage()
                return store
        elif not _is_empty(location, storage_options):
            raise StoreError(f"{location} exists and is not an echoclr store: refusing to replace it "
                             "(even with --overwrite); choose another --out")
        root = zarr.open_group(_zarr_store(location, read_only=False, storage_options=storage_options), mode="w")
        root.update_attributes(
            {
                "schema": SCHEMA_NAME,
                "schema_version": SCHEMA_VERSION,
                "software_version": __version__,
                "preprocess": preprocess.to_json(),
                "index": {"segments": [], "n_videos": 0},
            }
        )
        root.create_group("videos")
        root.create_group("index")
        return cls(location, root, storage_options)

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
        # One metadata write: `attrs.update` would write once per key, and a kill between the writes would leave
        # `complete` without its record.
        array.update_attributes({"record": record.to_json(), "complete": True})

    def complete_record(self, key: str) -> VideoRecord | None:
        """The record of the complete video array ``key``, or None if it is absent or was never finished."""
        try:
            array = self._root["videos"][key]
        except KeyError:
            return None
        attrs = dict(array.attrs)
        if not attrs.get("complete") or "record" not in attrs:
            return None
        return VideoRecord.from_json(attrs["record"])

    def scan_complete(self) -> dict[str, VideoRecord]:
        """Records of every complete video array, by key (reads each array's metadata)."""
        found: dict[str, VideoRecord] = {}
        for key, array in self._root["videos"].arrays():
            attrs = dict(array.attrs)
            if attrs.get("complete") and "record" in attrs:
                found[key] = VideoRecord.from_json(attrs["record"])
        return found

    # ------------------------------------------------------------------ the index
    @property
    def records(self) -> StoreIndex:
        """The index (loaded on first use: the listed segments, a few reads each, no video array)."""
        if self._index is None:
            self._index = StoreIndex.concat(self._segment_parts())
        return self._index

    def _segment_parts(self) -> list[StoreIndex]:
        if self._parts is None:
            if not self._segments:
                self._parts = []
            else:
                group = self._root["index"]
                self._parts = [read_segments(group, [entry]) for entry in self._segments]
        return self._parts

    @property
    def n_videos(self) -> int:
        return sum(int(e["n"]) for e in self._segments)

    def append_index(self, records: Sequence[VideoRecord] | StoreIndex) -> None:
        """Append records to the index: writes one new segment (merging tail segments as a binary counter does),
        then one root write publishes it. Costs O(new records) amortised; reads nothing it has not cached.

        Every record must name a complete video array (write the videos first).
        """
        new = records if isinstance(records, StoreIndex) else StoreIndex.from_records(records)
        if new.n == 0:
            return
        parts = list(self._segment_parts())
        k = plan_append([int(e["n"]) for e in self._segments], new.n)
        tail = StoreIndex.concat([*parts[len(parts) - k:], new]) if k else new
        kept_entries, kept_parts = self._segments[: len(self._segments) - k], parts[: len(parts) - k]
        entry = write_segment(self._index_group(), tail)
        self._publish([*kept_entries, entry], [*kept_parts, tail])

    def write_index(self, records: Sequence[VideoRecord] | StoreIndex, extra_attrs: dict[str, Any] | None = None) -> None:
        """Replace the index with ``records`` (every record must name a complete array).

        The segments are the ones :meth:`append_index` would make by appending ``records`` from an empty index in
        runs of ``INDEX_FLUSH``, so the same records always give the same files.
        """
        index = records if isinstance(records, StoreIndex) else StoreIndex.from_records(records)
        group = self._index_group()
        entries, parts = [], layout(index, INDEX_FLUSH)
        live = {e["name"]: e for e in self._segments}
        for part in parts:
            name = segment_name(part)  # a live segment with this name holds exactly these records: never rewrite it
            entries.append(live[name] if name in live else write_segment(group, part))
        self._publish(entries, parts, extra_attrs)

    def _index_group(self) -> zarr.Group:
        if "index" not in self._root:
            return self._root.create_group("index")
        return self._root["index"]

    def _publish(self, entries: list[dict[str, Any]], parts: list[StoreIndex],
                 extra_attrs: dict[str, Any] | None = None) -> None:
        old = {e["name"] for e in self._segments}
        n = sum(int(e["n"]) for e in entries)
        self._root.update_attributes({"index": {"segments": entries, "n_videos": n}, **(extra_attrs or {})})
        self._segments, self._parts, self._index, self._by_id = entries, parts, None, None
        group = self._index_group()
        for name in old - {e["name"] for e in entries}:
            _delete_member(group, name)

    def collect_garbage(self) -> list[str]:
        """Delete index segments that the root does not list (left by a crash between writing and publishing)."""
        if "index" not in self._root:
            return []
        group = self._root["index"]
        live = {e["name"] for e in self._segments}
        dead = [name for name in group.array_keys() if name not in live]
        for name in dead:
            _delete_member(group, name)
        return dead

    def write_text(self, name: str, text: str) -> None:
        """Write a small text file (a report) at the store's root, atomically on local disk."""
        if _is_url(self.location):
            fs, root = self.filesystem()
            fs.pipe_file(f"{root}/{name}", text.encode())
            return
        path = _local_path(self.location) / name
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
            handle.write(text)
        os.replace(handle.name, path)

    def read_text(self, name: str) -> str | None:
        if _is_url(self.location):
            fs, root = self.filesystem()
            path = f"{root}/{name}"
            return fs.cat_file(path).decode() if fs.exists(path) else None
        path = _local_path(self.location) / name
        return path.read_text() if path.exists() else None

    @property
    def attrs(self) -> dict[str, Any]:
        return {k: v for k, v in self._root.attrs.items() if k != "index"}

    def filesystem(self) -> tuple[Any, str]:
        """``(fsspec filesystem, root path)`` of a URL store, ``(None, local root path)`` of a local one."""
        if _is_url(self.location):
            return url_filesystem(self.location, self.storage_options)
        return None, str(_local_path(self.location))

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self.records)

    def index_of(self, video_id: str) -> int:
        if self._by_id is None:
            ids = self.records.text("video_id") if len(self.records) else []
            self._by_id = {v.decode(): i for i, v in enumerate(ids)}
        try:
            return self._by_id[video_id]
        except KeyError:
            raise KeyError(f"no video {video_id!r} in {self.location}") from None

    def key_of(self, video: int | str) -> str:
        """The array name (under ``videos/``) of a video, by position in the index or by video_id."""
        position = video if isinstance(video, (int, np.integer)) else self.index_of(video)
        if not 0 <= position < len(self.records):
            raise IndexError(f"video position {position} out of range for {len(self.records)} videos")
        return self.records.text("key")[position].decode()

    def array(self, video: int | str) -> zarr.Array:
        """The zarr array of a video, by position in the index or by video_id."""
        key = self.key_of(video)
        array = self._arrays.get(key)
        if array is None:
            array = self._arrays[key] = self._root["videos"][key]
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

    # ------------------------------------------------------------------ summaries (vectorised over the columns)
    def _column(self, name: str) -> np.ndarray:
        return self.records.column(name) if len(self.records) else np.array([], dtype=np.bytes_)

    @property
    def study_ids(self) -> list[str]:
        return [s.decode() for s in np.unique(self._column("study_id"))]

    @property
    def label_names(self) -> list[str]:
        return self.records.label_names

    def select(self, splits: Iterable[str] | None = None) -> list[int]:
        """Positions of the videos in the given splits (all videos when None)."""
        if splits is None:
            return list(range(len(self.records)))
        wanted = np.array([s.encode() for s in splits], dtype=np.bytes_)
        return np.flatnonzero(np.isin(self._column("split"), wanted)).tolist()

    def summary(self) -> dict[str, Any]:
        """Counts of videos, studies and frames, per split and per label value (JSON-ready)."""
        n = len(self.records)
        study = self._column("study_id")
        split = self._column("split")
        n_frames = self._column("n_frames") if n else np.zeros(0, np.int64)
        # One sort of the study ids; per split, the studies are counted on their integer codes (no string sorts).
        studies, first, study_code = np.unique(study, return_index=True, return_inverse=True)
        split_names, split_code = np.unique(split, return_inverse=True)
        splits: dict[str, dict[str, int]] = {}
        for k, name in enumerate(split_names):
            inside = split_code == k
            seen = np.zeros(len(studies), bool)
            seen[study_code[inside]] = True
            splits[name.decode()] = {"n_videos": int(inside.sum()), "n_studies": int(seen.sum()),
                                     "n_frames": int(n_frames[inside].sum())}
        # labels are constant within a study: one value each (its first video's)
        labels: dict[str, dict[str, int]] = {}
        for name in self.label_names:
            values = self.records.label(name)[first]
            known = ~np.isnan(values)
            labels[name] = {"positive_studies": int((values[known] >= 0.5).sum()),
                            "negative_studies": int((values[known] < 0.5).sum()),
                            "unknown_studies": int((~known).sum())}
        flagged: dict[str, int] = {}
        if n and "flags" in self.records.columns:
            for combination, count in zip(*np.unique(self._column("flags"), return_counts=True)):
                for flag in filter(None, combination.decode().split("\n")):
                    flagged[flag] = flagged.get(flag, 0) + int(count)
        return {
            "location": self.location,
            "schema_version": SCHEMA_VERSION,
            "software_version": self.software_version,
            "preprocess": self.preprocess.to_json(),
            "n_videos": n,
            "n_studies": len(first),
            "n_frames": int(n_frames.sum()),
            "n_flagged": dict(sorted(flagged.items())),
            "splits": dict(sorted(splits.items())),
            "labels": labels,
        }


def _delete_member(group: zarr.Group, name: str) -> None:
    try:
        del group[name]
    except KeyError:
        pass


def open_store(location: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> EchoStore:
    """Open an echoclr store read-only (a local path or an fsspec URL such as ``s3://bucket/store.zarr``)."""
    return EchoStore.open(location, mode="r", storage_options=storage_options)


def dumps_summary(store: EchoStore) -> str:
    return json.dumps(store.summary(), indent=2, sort_keys=True)
