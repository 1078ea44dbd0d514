"""The store's video index as columns: typed numpy arrays held in memory, written as immutable zarr segments.

Every field of :meth:`VideoRecord.to_json` becomes a column (``labels`` one float column per label name, so a new
label or a new record field needs no schema change). Columns are encoded so that opening a million-video index is a
handful of array reads and no per-record Python work:

=========  ========================================  ===========================================
kind       in memory                                 on disk (one zarr array per column)
=========  ========================================  ===========================================
``str``    ``bytes_ (N,)`` UTF-8, ``b"\\xff"`` = None  ``uint8 (N, width)``, viewed back as ``S{width}``
``hex``    ``uint8 (N, n_bytes)``                     the same (hex digests: half the bytes of text)
``int``    ``int64 (N,)``                             the same
``float``  ``float64 (N,)``, NaN = None               the same
``list``   ``bytes_ (N,)``, items joined by ``\\n``     as ``str``
``json``   ``bytes_ (N,)`` of ``json.dumps(value)``   as ``str``
=========  ========================================  ===========================================

A *segment* is one zarr ``uint8`` array ``index/<name>`` holding a contiguous run of records: the columns' bytes
one after the other, and in its attributes where each column lies (one metadata read and a few chunks). Its name
is a hash of its content, so the same records always give the same bytes and the same name. Segments are never
modified: appending writes a new one (and merges tail segments like a binary counter, so an index of N records has
at most ~log2(N / flush size) segments); the root's ``index`` attribute lists the live ones and is the only thing
that changes. A crash before that one write leaves the previous index intact.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from echoclr.store.schema import VideoRecord

NULL = b"\xff"  # never valid UTF-8: the None of a text column
LABEL_PREFIX = "labels:"
_HEX = re.compile(r"^(?:[0-9a-f]{2})+$")
_TEXT_KINDS = ("str", "list", "json")
SEGMENT_CHUNK = 1 << 24  # bytes per compressed chunk of a segment (a 10⁶-video index is ~100 MB: a few chunks)


class StoreIndex(Sequence[VideoRecord]):
    """The index of a store: ``n`` records as named typed columns. Behaves as a read-only list of
    :class:`VideoRecord` (built on access); use :meth:`column` and :meth:`text` for vectorised work.
    """

    def __init__(self, n: int, columns: dict[str, tuple[str, np.ndarray]]) -> None:
        self.n = n
        self.columns = columns  # name -> (kind, array of length n)

    # ------------------------------------------------------------------ building
    @classmethod
    def empty(cls) -> "StoreIndex":
        return cls(0, {})

    @classmethod
    def from_records(cls, records: Iterable[VideoRecord]) -> "StoreIndex":
        """Encode records as columns (every field of ``to_json``; one float column per label)."""
        rows = [r.to_json() for r in records]
        names: dict[str, None] = {}
        for row in rows:
            for key, value in row.items():
                if key == "labels":
                    names.update({LABEL_PREFIX + label: None for label in value})
                else:
                    names[key] = None
        columns = {}
        for name in names:
            if name.startswith(LABEL_PREFIX):
                label = name[len(LABEL_PREFIX):]
                values = [row["labels"].get(label) for row in rows]
            else:
                values = [row.get(name) for row in rows]
            columns[name] = _encode(name, values)
        return cls(len(rows), columns)

    @classmethod
    def concat(cls, parts: Sequence["StoreIndex"]) -> "StoreIndex":
        parts = [p for p in parts if p.n]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        names = list(dict.fromkeys(name for p in parts for name in p.columns))
        columns = {}
        for name in names:
            kinds = {p.columns[name][0] for p in parts if name in p.columns}
            present = [p.columns[name] for p in parts if name in p.columns]
            if len(kinds) == 1 and (kind := kinds.pop()) != "hex":
                arrays = [p.columns[name][1] if name in p.columns else _nulls(kind, p.n) for p in parts]
                columns[name] = (kind, np.concatenate(arrays))
            elif kind == "hex" and len(present) == len(parts) and len({a.shape[1] for _, a in present}) == 1:
                columns[name] = (kind, np.concatenate([a for _, a in present]))  # digests of one length: (N, n_bytes)
            else:  # kinds differ between segments, or hex digests missing somewhere (hex has no null): re-encode
                values = [v for p in parts for v in (p.values(name) if name in p.columns else [None] * p.n)]
                columns[name] = _encode(name, values)
        return cls(sum(p.n for p in parts), columns)

    def slice(self, start: int, stop: int) -> "StoreIndex":
        return StoreIndex(stop - start, {name: (kind, a[start:stop]) for name, (kind, a) in self.columns.items()})

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self.records(np.arange(*i.indices(self.n)))
        if not -self.n <= i < self.n:
            raise IndexError(f"record {i} out of range for an index of {self.n}")
        return self.record(int(i) % self.n)

    def __iter__(self) -> Iterator[VideoRecord]:
        for start in range(0, self.n, 65_536):  # bulk-decoded in blocks (bounded memory)
            yield from self.records(np.arange(start, min(start + 65_536, self.n)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (StoreIndex, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"StoreIndex({self.n} records, columns {list(self.columns)})"

    def record(self, i: int) -> VideoRecord:
        data: dict[str, Any] = {"labels": {}}
        for name, (kind, array) in self.columns.items():
            value = _decode(kind, array[i])
            if name.startswith(LABEL_PREFIX):
                data["labels"][name[len(LABEL_PREFIX):]] = value
            else:
                data[name] = value
        return VideoRecord.from_json(data)

    def values(self, name: str) -> list[Any]:
        kind, array = self.columns[name]
        return _decode_all(kind, array)

    def _decoded(self, positions: Sequence[int] | np.ndarray | None) -> tuple[int, dict[str, list], dict[str, list]]:
        selection = slice(None) if positions is None else np.asarray(positions, dtype=np.int64)
        n = self.n if positions is None else len(selection)
        fields: dict[str, list[Any]] = {}
        labels: dict[str, list[Any]] = {}
        for name, (kind, array) in self.columns.items():
            if name.startswith(LABEL_PREFIX):
                labels[name[len(LABEL_PREFIX):]] = _decode_all(kind, array[selection])
            else:
                fields[name] = _decode_all(kind, array[selection])
        return n, fields, labels

    def rows(self, positions: Sequence[int] | np.ndarray | None = None) -> list[dict[str, Any]]:
        """The records at ``positions`` (all when None) as :meth:`VideoRecord.to_json` dicts, decoded a column at a
        time: cheaper than building :class:`VideoRecord` objects (for plans that need a few fields of most rows)."""
        n, fields, labels = self._decoded(positions)
        names, label_names = list(fields), list(labels)
        label_rows = zip(*labels.values()) if labels else ((),) * n
        return [{**dict(zip(names, row)), "labels": dict(zip(label_names, label_row))}
                for row, label_row in zip(zip(*fields.values()) if fields else ((),) * n, label_rows)]

    def records(self, positions: Sequence[int] | np.ndarray | None = None) -> list[VideoRecord]:
        """The records at ``positions`` (all when None), decoded a column at a time (numpy ``tolist`` and one pass
        per column instead of :meth:`record`'s per-value work)."""
        n, fields, labels = self._decoded(positions)
        # what VideoRecord.from_json does per record, done per column
        fields["flags"] = [tuple(v) for v in fields["flags"]] if "flags" in fields else [()] * n
        fields["fps"] = [math.nan if v is None else float(v) for v in fields.get("fps", [None] * n)]
        names, label_names = list(fields), list(labels)
        rows = zip(*fields.values())
        label_rows = zip(*labels.values()) if labels else ((),) * n
        return [VideoRecord(**dict(zip(names, row)), labels=dict(zip(label_names, label_row)))
                for row, label_row in zip(rows, label_rows)]

    def positions(self, name: str, values: Sequence[str]) -> np.ndarray:
        """``int64 (len(values),)``: where each value first occurs in text column ``name``, -1 where it does not
        (vectorised: one sort of the column and a binary search)."""
        wanted = _encode_texts(values)
        if not self.n or name not in self.columns or not len(wanted):
            return np.full(len(wanted), -1, np.int64)
        column = self.text(name)
        order = np.argsort(column, kind="stable")  # stable: the first of equal values comes first
        ordered = column[order]
        at = np.minimum(np.searchsorted(ordered, wanted), self.n - 1)
        return np.where(ordered[at] == wanted, order[at], -1).astype(np.int64)

    def column(self, name: str) -> np.ndarray:
        """The raw column ``name`` (``int64``/``float64``, or ``bytes_`` for text). Raises KeyError if absent."""
        return self.columns[name][1]

    def text(self, name: str) -> np.ndarray:
        """A text column as ``bytes_ (N,)`` (decode an element with ``.decode()``)."""
        kind, array = self.columns[name]
        if kind not in _TEXT_KINDS:
            raise TypeError(f"index column {name!r} is {kind}, not text")
        return array

    @property
    def label_names(self) -> list[str]:
        return sorted(name[len(LABEL_PREFIX):] for name in self.columns if name.startswith(LABEL_PREFIX))

    def label(self, name: str) -> np.ndarray:
        """``float64 (N,)`` values of label ``name`` (NaN = unknown). Raises KeyError if no record has it."""
        return self.columns[LABEL_PREFIX + name][1]


# ---------------------------------------------------------------------- column codecs
def _encode(name: str, values: list[Any]) -> tuple[str, np.ndarray]:
    present = [v for v in values if v is not None]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if name.startswith(LABEL_PREFIX) or (present and numbers and any(isinstance(v, float) for v in present)):
        return "float", np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if present and len(present) == len(values) and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int", np.array(values, dtype=np.int64)
    if (present and len(present) == len(values) and all(isinstance(v, str) for v in values)
            and len({len(v) for v in values}) == 1 and len(values[0]) % 2 == 0
            and _HEX.fullmatch(joined := "".join(values))):  # equal even lengths: all hex <=> the joined text is hex
        return "hex", np.frombuffer(bytes.fromhex(joined), np.uint8).reshape(len(values), -1)
    if all(v is None or isinstance(v, str) for v in values):
        return "str", np.array([NULL if v is None else v.encode() for v in values], dtype=np.bytes_)
    if all(isinstance(v, list) and all(isinstance(x, str) and "\n" not in x for x in v) for v in values):
        return "list", np.array(["\n".join(v).encode() for v in values], dtype=np.bytes_)
    return "json", np.array([json.dumps(v, sort_keys=True).encode() for v in values], dtype=np.bytes_)


def _decode(kind: str, value: Any) -> Any:
    if kind == "int":
        return int(value)
    if kind == "float":
        return None if np.isnan(value) else float(value)
    if kind == "hex":
        return bytes(value).hex()
    if kind == "str":
        return None if value == NULL else value.decode()
    if kind == "list":
        return value.decode().split("\n") if value else []
    return json.loads(value.decode())


def _encode_texts(values: Sequence[str]) -> np.ndarray:
    """``bytes_ (N,)`` UTF-8 of ``values``: one join, encode and split when no value holds a newline."""
    if not len(values):
        return np.zeros(0, "S1")
    joined = "\n".join(values)
    if joined.count("\n") == len(values) - 1:
        return np.array(joined.encode().split(b"\n"), dtype=np.bytes_)
    return np.array([v.encode() for v in values], dtype=np.bytes_)


def _decode_all(kind: str, array: np.ndarray) -> list[Any]:
    """``[_decode(kind, v) for v in array]``, a column at a time."""
    if kind == "int":
        return array.tolist()
    if kind == "float":
        return [None if v != v else v for v in array.tolist()]  # NaN != NaN
    if kind == "hex":
        width = 2 * array.shape[1]
        digits = np.ascontiguousarray(array).tobytes().hex()
        return [digits[i: i + width] for i in range(0, len(digits), width)]
    values = array.tolist()
    if kind == "str":
        return [None if v == NULL else v.decode() for v in values]
    if kind == "list":
        return [v.decode().split("\n") if v else [] for v in values]
    return [json.loads(v.decode()) for v in values]


def _nulls(kind: str, n: int) -> np.ndarray:
    if kind == "float":
        return np.full(n, np.nan)
    if kind == "str":
        return np.full(n, NULL, dtype=np.bytes_)
    if kind == "list":
        return np.full(n, b"", dtype=np.bytes_)
    if kind == "json":
        return np.full(n, b"null", dtype=np.bytes_)
    return np.full(n, np.nan)  # an int column missing from a segment: caught by concat's re-encoding


def _to_disk(kind: str, array: np.ndarray) -> np.ndarray:
    if kind in _TEXT_KINDS:
        width = max(1, array.dtype.itemsize)
        # bytes_ (N,) -> uint8 (N, width); numpy pads shorter strings with NUL bytes, stripped again on the way back
        return np.ascontiguousarray(array.astype(f"S{width}")).view(np.uint8).reshape(len(array), width)
    return np.ascontiguousarray(array)


def _from_disk(kind: str, array: np.ndarray) -> np.ndarray:
    if kind in _TEXT_KINDS:
        return np.ascontiguousarray(array).view(f"S{array.shape[1]}").reshape(-1)  # uint8 (N, width) -> bytes_ (N,)
    return array


# ---------------------------------------------------------------------- segments on disk
def segment_name(index: StoreIndex) -> str:
    """A content hash: the same records always give the same segment name."""
    digest = hashlib.sha256(str(index.n).encode())
    for name, (kind, array) in sorted(index.columns.items()):
        digest.update(f"\0{name}\0{kind}\0{array.dtype.str}\0".encode())
        digest.update(np.ascontiguousarray(_to_disk(kind, array)).tobytes())
    return digest.hexdigest()[:24]


def write_segment(group: zarr.Group, index: StoreIndex) -> dict[str, Any]:
    """Write ``index`` as a new segment under ``group`` (``<root>/index``); returns its entry for the root list.

    A segment is one zarr ``uint8`` array holding every column's bytes one after the other (Zstd-compressed in
    chunks of ``SEGMENT_CHUNK`` bytes); its attributes say where each column starts, its kind, dtype and shape. So
    writing or opening a segment is one metadata object and a few chunks, on a local disk or an object store.
    """
    name = segment_name(index)
    columns, blobs, offset = [], [], 0
    for column, (kind, array) in sorted(index.columns.items()):
        data = _to_disk(kind, array)
        columns.append({"name": column, "kind": kind, "dtype": data.dtype.str, "shape": list(data.shape),
                        "offset": offset, "nbytes": data.nbytes})
        padding = -data.nbytes % 8  # every column starts 8-byte aligned, so it is viewed in place when read
        blobs.append(data.tobytes() + bytes(padding))
        offset += data.nbytes + padding
    payload = np.frombuffer(b"".join(blobs), np.uint8)
    chunk = max(1, min(len(payload), SEGMENT_CHUNK))
    array = group.create_array(name, shape=payload.shape, dtype="uint8", chunks=(chunk,), compressors=ZstdCodec(level=3),
                               fill_value=0, overwrite=True, attributes={"n": index.n, "columns": columns})
    if len(payload):
        array[...] = payload
    return {"name": name, "n": index.n}


def read_segments(group: zarr.Group, entries: Sequence[dict[str, Any]]) -> StoreIndex:
    """Read the listed segments (each: its metadata and its chunks, fetched concurrently by zarr) into one index."""

    def read_segment(entry: dict[str, Any]) -> StoreIndex:
        array = zarr.open_array(group.store, path=f"{group.path}/{entry['name']}", mode="r")
        if int(array.attrs["n"]) != entry["n"]:
            raise ValueError(f"index segment {entry['name']} holds {array.attrs['n']} records, the root says {entry['n']}")
        payload = array[...] if array.shape[0] else np.zeros(0, np.uint8)
        columns = {}
        for spec in array.attrs["columns"]:
            raw = payload[spec["offset"]: spec["offset"] + spec["nbytes"]]
            data = raw.view(np.dtype(spec["dtype"])).reshape(spec["shape"])
            columns[spec["name"]] = (spec["kind"], _from_disk(spec["kind"], data))
        return StoreIndex(entry["n"], columns)

    if len(entries) <= 1:
        return StoreIndex.concat([read_segment(e) for e in entries])
    with ThreadPoolExecutor(max_workers=min(len(entries), 4)) as pool:
        return StoreIndex.concat(list(pool.map(read_segment, entries)))


def plan_append(sizes: Sequence[int], new: int) -> int:
    """How many tail segments to merge with a new segment of ``new`` records (a binary counter: merge while the
    previous segment is not larger than the merged tail)."""
    merged, k = new, 0
    while k < len(sizes) and sizes[len(sizes) - 1 - k] <= merged:
        merged += sizes[len(sizes) - 1 - k]
        k += 1
    return k


def layout(index: StoreIndex, flush: int) -> list[StoreIndex]:
    """The segments that appending ``index`` to an empty index in runs of ``flush`` records leaves: the binary
    counter's state (sizes ``flush * 2**k`` for the set bits of ``n // flush``, largest first), then the rest."""
    parts, start = [], 0
    full = index.n // flush
    for bit in reversed(range(full.bit_length())):
        if full >> bit & 1:
            size = flush << bit
            parts.append(index.slice(start, start + size))
            start += size
    if start < index.n:
        parts.append(index.slice(start, index.n))
    return parts
