"""The columnar store index: round trip of every field, O(new) appends, opening without touching video arrays,
crash safety (unpublished segments are invisible and collected), deterministic segments, the v1 → v2 upgrade."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from echoclr.cli.app import app
from echoclr.store import EchoStore, PreprocessConfig, StoreError, StoreIndex, VideoRecord, open_store
from echoclr.store.echo_store import INDEX_FLUSH
from echoclr.store.index import write_segment
from echoclr.store.options import parse_storage_options

SMALL = PreprocessConfig(size=8, chunk_frames=2)


def _record(i: int, **overrides) -> VideoRecord:
    fields = dict(video_id=f"v{i:07d}", study_id=f"s{i // 3}", split=("train", "val", "test")[i % 3], n_frames=3 + i % 5,
                  fps=30.0 if i % 4 else float("nan"), key=f"v{i:07d}", source_sha256=f"{i:064x}",
                  labels={"lvh": float((i // 3) % 2), "odd label/name": None if i % 2 else 1.0}, flags=())
    fields.update(overrides)
    return VideoRecord(**fields)


def _files(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _equal(a: VideoRecord, b: VideoRecord) -> bool:
    """Equal records; a label that ``b`` lacks is unknown (None) in ``a`` (the index has one column per label)."""
    same_fps = a.fps == b.fps or (math.isnan(a.fps) and math.isnan(b.fps))
    labels = {name: b.labels.get(name) for name in a.labels}
    return same_fps and set(b.labels) <= set(a.labels) and a == VideoRecord(**{**b.__dict__, "fps": a.fps,
                                                                             "labels": labels})


def test_every_field_round_trips_through_the_columns(tmp_path):
    records = [_record(i) for i in range(7)]
    records[2] = _record(2, flags=("shorter_than_16_frames", "converted_from_color"), labels={"lvh": None})
    records[5] = _record(5, source_sha256="not-a-hex-digest", labels={"extra": 0.0})
    index = StoreIndex.from_records(records)
    assert all(_equal(a, b) for a, b in zip(index, records))
    store = EchoStore.create(tmp_path / "s.zarr", SMALL)
    store.write_index(records)
    reopened = open_store(tmp_path / "s.zarr").records
    assert len(reopened) == 7 and all(_equal(a, b) for a, b in zip(reopened, records))
    assert reopened[2].labels == {"lvh": None, "odd label/name": None, "extra": None}
    assert reopened.label_names == ["extra", "lvh", "odd label/name"]


def test_open_and_summaries_read_no_video_array(tmp_path):
    store = EchoStore.create(tmp_path / "s.zarr", SMALL)
    records = [_record(i) for i in range(30)]
    for r in records:
        store.write_video(r, np.full((r.n_frames, 8, 8), 7, np.uint8))
    store.write_index(records)
    expected = store.summary()
    shutil.rmtree(tmp_path / "s.zarr" / "videos")  # nothing below may need a video array
    reopened = open_store(tmp_path / "s.zarr")
    assert reopened.summary() == expected
    assert expected["n_videos"] == 30 and expected["n_studies"] == 10
    assert expected["splits"]["val"] == {"n_videos": 10, "n_studies": 10, "n_frames": sum(
        r.n_frames for r in records if r.split == "val")}
    assert expected["labels"]["lvh"] == {"positive_studies": 5, "negative_studies": 5, "unknown_studies": 0}
    assert reopened.select(["test"]) == [i for i in range(30) if i % 3 == 2]
    assert reopened.study_ids == sorted({r.study_id for r in records})
    assert reopened.index_of("v0000011") == 11 and reopened.records[11].study_id == "s3"


def test_append_writes_only_the_new_records_and_never_touches_old_segments(tmp_path):
    store = EchoStore.create(tmp_path / "s.zarr", SMALL)
    first = [_record(i) for i in range(3 * INDEX_FLUSH - 100)]  # layout: 2048 + 924
    store.write_index(first)
    before = _files(tmp_path / "s.zarr" / "index")
    store.append_index([_record(i) for i in range(len(first), len(first) + 10)])
    after = _files(tmp_path / "s.zarr" / "index")
    assert {k: v for k, v in after.items() if k in before} == before  # old segments byte-identical
    new_files = set(after) - set(before)
    assert len({name.split("/")[0] for name in new_files}) == 1  # one new segment, nothing else
    sizes = [e["n"] for e in zarr.open_group(str(tmp_path / "s.zarr")).attrs["index"]["segments"]]
    assert sizes == [2048, 924, 10]
    reopened = open_store(tmp_path / "s.zarr")
    assert len(reopened) == len(first) + 10 and reopened.records[len(first) + 3].video_id == f"v{len(first) + 3:07d}"


def test_appending_in_flush_runs_gives_the_same_files_as_one_write(tmp_path):
    records = [_record(i) for i in range(5 * INDEX_FLUSH + 37)]
    one = EchoStore.create(tmp_path / "one.zarr", SMALL)
    one.write_index(records)
    runs = EchoStore.create(tmp_path / "runs.zarr", SMALL)
    for start in range(0, len(records), INDEX_FLUSH):
        runs.append_index(records[start:start + INDEX_FLUSH])
    assert _files(tmp_path / "one.zarr") == _files(tmp_path / "runs.zarr")
    sizes = [e["n"] for e in zarr.open_group(str(tmp_path / "one.zarr")).attrs["index"]["segments"]]
    assert sizes == [4 * INDEX_FLUSH, INDEX_FLUSH, 37]


def test_an_unpublished_segment_is_invisible_and_collected(tmp_path):
    store = EchoStore.create(tmp_path / "s.zarr", SMALL)
    store.write_index([_record(i) for i in range(5)])
    # A writer killed after writing a segment and before the root write that publishes it:
    write_segment(zarr.open_group(str(tmp_path / "s.zarr" / "index"), mode="r+"),
                  StoreIndex.from_records([_record(i) for i in range(5, 9)]))
    assert len(open_store(tmp_path / "s.zarr")) == 5
    assert len(list((tmp_path / "s.zarr" / "index").iterdir())) == 3  # zarr.json, the live and the dead segment
    resumed = EchoStore.create(tmp_path / "s.zarr", SMALL)  # what a resuming ingest does
    assert len(resumed) == 5
    assert len(list((tmp_path / "s.zarr" / "index").iterdir())) == 2


def _as_version_1(path: Path, records: list[VideoRecord]) -> None:
    """Turn a store into the version-1 layout: the index as JSON lists in the root attributes, no index/ group."""
    root = zarr.open_group(str(path), mode="r+")
    attrs = dict(root.attrs)
    rows = [r.to_json() for r in records]
    fields = ("video_id", "study_id", "split", "n_frames", "fps", "key", "source_sha256", "labels", "flags")
    attrs.update({"schema_version": 1, "index": {name: [row[name] for row in rows] for name in fields}})
    root.attrs.put(attrs)
    shutil.rmtree(path / "index")


def test_old_store_gets_a_clear_error_and_upgrades_in_place(tmp_path):
    path = tmp_path / "old.zarr"
    store = EchoStore.create(path, SMALL)
    records = [_record(i, fps=25.0) for i in range(4)]
    frames = {r.key: np.random.default_rng(i).integers(0, 255, (r.n_frames, 8, 8), dtype=np.uint8)
              for i, r in enumerate(records)}
    for r in records:
        store.write_video(r, frames[r.key])
    _as_version_1(path, records)
    videos_before = _files(path / "videos")
    with pytest.raises(StoreError, match=r"schema version 1, .*echoclr store upgrade"):
        open_store(path)
    info = CliRunner().invoke(app, ["info", str(path)])
    assert info.exit_code == 2 and "Traceback" not in info.output
    assert f"run `echoclr store upgrade {path}`" in " ".join(info.output.split())

    done = CliRunner().invoke(app, ["store", "upgrade", str(path)])
    assert done.exit_code == 0, done.output
    assert "from schema v1 to v2 (4 videos)" in " ".join(done.output.split())
    upgraded = open_store(path)
    assert list(upgraded.records) == records
    np.testing.assert_array_equal(upgraded.read_frames("v0000002"), frames["v0000002"])
    assert _files(path / "videos") == videos_before  # the upgrade rewrote only the index
    again = CliRunner().invoke(app, ["store", "upgrade", str(path)])
    assert again.exit_code == 0 and "nothing to do" in again.output
    newer = CliRunner().invoke(app, ["store", "upgrade", str(tmp_path / "missing.zarr")])
    assert newer.exit_code == 2 and "no echoclr store" in newer.output


@pytest.mark.parametrize("overwrite", [False, True])
def test_create_never_replaces_a_file_url_that_is_not_a_store(tmp_path, overwrite):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("precious")
    with pytest.raises(StoreError, match="not an echoclr store"):
        EchoStore.create(f"file://{tmp_path}/data", SMALL, overwrite=overwrite)
    assert (tmp_path / "data" / "keep.txt").read_text() == "precious"
    # a store, by contrast, is replaced with --overwrite
    EchoStore.create(f"file://{tmp_path}/s.zarr", SMALL).write_index([_record(0)])
    replaced = EchoStore.create(f"file://{tmp_path}/s.zarr", PreprocessConfig(size=16), overwrite=True)
    assert len(replaced) == 0 and open_store(f"file://{tmp_path}/s.zarr").preprocess.size == 16


def test_storage_options_parse_and_name_bad_items():
    assert parse_storage_options(["endpoint_url=http://127.0.0.1:5000", "anon=false", "client_kwargs.region_name=x",
                                  "retries=3"]) == {"endpoint_url": "http://127.0.0.1:5000", "anon": False,
                                                    "client_kwargs": {"region_name": "x"}, "retries": 3}
    with pytest.raises(ValueError, match="'anon' is not key=value"):
        parse_storage_options(["anon"])


def test_bulk_decoding_and_the_vectorised_resume_plan_agree_with_per_record_work(tmp_path):
    from echoclr.ingest.manifest import ManifestRow, video_key, video_keys
    from echoclr.ingest.runner import indexed_positions, indexed_rows

    n = INDEX_FLUSH + 5  # two segments: their columns are concatenated at open
    records = [_record(i) for i in range(n)]
    records[3] = _record(3, flags=("shorter_than_16_frames", "converted_from_color"), labels={"lvh": None})
    records[n - 2] = _record(n - 2, video_id="odd id é", key=video_key("odd id é"), labels={"extra": 0.0})
    store = EchoStore.create(tmp_path / "s.zarr", SMALL)
    store.write_index(records)
    index = open_store(tmp_path / "s.zarr").records
    assert index.columns["source_sha256"][0] == "hex"  # digests of both segments stay 32-byte rows, not text
    one_by_one = [index.record(i) for i in range(n)]
    assert all(_equal(a, b) for a, b in zip(one_by_one, records))
    assert all(_equal(a, b) for a, b in zip(index.records(), one_by_one))
    assert all(_equal(VideoRecord.from_json(row), b) for row, b in zip(index.rows(), one_by_one))
    picked = index.records([n - 2, 3])
    assert picked[0].video_id == "odd id é" and picked[1].flags == records[3].flags

    ids = ["v0000007", "odd id é", "missing", f"v{n - 1:07d}", "v0000007"]
    assert video_keys(ids) == [video_key(v) for v in ids] and video_keys(ids[:1]) == ids[:1]
    rows = [ManifestRow(row=k + 2, path=Path(f"{v}.avi"), video_id=v, study_id="s", split="train")
            for k, v in enumerate(ids)]
    assert indexed_positions(index, rows).tolist() == [7, n - 2, -1, n - 1, 7]
    plan = indexed_rows(index, rows)
    assert plan[2] is None and plan[1]["video_id"] == "odd id é" and plan[1]["labels"]["extra"] == 0.0
    assert _equal(VideoRecord.from_json(plan[3]), records[n - 1])

    mixed = [*records[:INDEX_FLUSH], _record(n, source_sha256="not-hex")]  # a non-hex digest in the last segment
    store.write_index(mixed)
    reopened = open_store(tmp_path / "s.zarr").records
    assert reopened.columns["source_sha256"][0] == "str" and reopened[INDEX_FLUSH].source_sha256 == "not-hex"
    assert reopened[5].source_sha256 == records[5].source_sha256
