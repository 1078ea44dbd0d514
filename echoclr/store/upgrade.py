"""Upgrade an older store in place: only the index is rewritten; every video array is kept as it is.

Version 1 kept the index as JSON lists in the root group's attributes (rebuilt by listing every video array at the
end of each ingest). Version 2 keeps it in columnar segments (:mod:`echoclr.store.index`). The upgrade writes the
segments first and then replaces the root attributes in one write, so an interrupted upgrade leaves a readable
version-1 store and can simply be run again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import zarr

from echoclr.store.echo_store import INDEX_FLUSH, StoreError, _has_root, _zarr_store
from echoclr.store.index import StoreIndex, layout, write_segment
from echoclr.store.schema import SCHEMA_NAME, SCHEMA_VERSION, VideoRecord

_V1_FIELDS = ("video_id", "study_id", "split", "n_frames", "fps", "key", "source_sha256", "labels", "flags")


def upgrade_store(location: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Bring the store at ``location`` to the current schema version.

    Returns:
        ``{"location", "from_version", "to_version", "n_videos", "upgraded"}`` (``upgraded`` False when it was
        already current).

    Raises:
        FileNotFoundError: no store there.
        StoreError: not an echoclr store, or a version this echoclr does not know (newer, or unknown).
    """
    location = str(location)
    if not _has_root(location, storage_options):
        raise FileNotFoundError(f"no echoclr store at {location}")
    root = zarr.open_group(_zarr_store(location, read_only=False, storage_options=storage_options), mode="r+")
    attrs = dict(root.attrs)
    if attrs.get("schema") != SCHEMA_NAME:
        raise StoreError(f"{location} is not an echoclr store (schema {attrs.get('schema')!r}): nothing to upgrade")
    version = attrs.get("schema_version")
    if version == SCHEMA_VERSION:
        n = int(attrs.get("index", {}).get("n_videos", 0))
        return {"location": location, "from_version": version, "to_version": SCHEMA_VERSION, "n_videos": n,
                "upgraded": False}
    if version != 1:
        raise StoreError(f"{location} has store schema version {version}; this echoclr upgrades version 1 to "
                         f"{SCHEMA_VERSION} only")
    columns = attrs.get("index") or {}
    n = len(columns.get("video_id", []))
    records = [VideoRecord.from_json({name: columns[name][i] for name in _V1_FIELDS}) for i in range(n)]
    group = root.create_group("index", overwrite=True)  # a previous interrupted upgrade's segments are garbage
    entries = [write_segment(group, part) for part in layout(StoreIndex.from_records(records), INDEX_FLUSH)]
    attrs.update({"schema_version": SCHEMA_VERSION, "index": {"segments": entries, "n_videos": n}})
    root.attrs.put(attrs)
    return {"location": location, "from_version": 1, "to_version": SCHEMA_VERSION, "n_videos": n, "upgraded": True}
