"""The benchmarks' data: a synthetic dataset, its store, and stores of the same frames in other chunk layouts.

Everything lives in one work folder (``benchmarks/work/`` in the repository, git-ignored) and is reused by later
runs: a dataset folder is complete once its ``manifest.csv`` exists (the generator writes it last), and a store
is complete once its index lists every manifest row (ingest publishes the index last).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from echoclr.store import EchoStore, PreprocessConfig, VideoRecord, open_store
from echoclr.synth import SynthConfig  # the config only: rendering (OpenCV) is imported where videos are made


@dataclass(frozen=True)
class DatasetSpec:
    """Which synthetic dataset a benchmark runs on (a subset of :class:`echoclr.synth.SynthConfig`).

    Attributes:
        n_studies: patient studies.
        seed: generator seed.
        max_videos: most videos per study (at least 1).
        min_frames, max_frames: frames per video (inclusive).
        size: stored frame size in px (the paper: 112).
    """

    n_studies: int = 60
    seed: int = 0
    max_videos: int = 6
    min_frames: int = 30
    max_frames: int = 120
    size: int = 112

    def __post_init__(self) -> None:
        # SynthConfig and PreprocessConfig validate the rest with messages that name the field
        self.synth_config()
        PreprocessConfig(size=self.size)

    def synth_config(self) -> SynthConfig:
        """The generator's config for this dataset."""
        return SynthConfig(
            n_studies=self.n_studies, seed=self.seed, max_videos=self.max_videos,
            min_frames=self.min_frames, max_frames=self.max_frames,
        )

    @property
    def name(self) -> str:
        """Folder name: the main fields, and a digest of the whole generator config (its defaults included), so
        that a dataset made by another generator config is never reused."""
        digest = hashlib.sha256(json.dumps(asdict(self.synth_config()), sort_keys=True).encode()).hexdigest()[:8]
        return (f"synth-s{self.n_studies}-seed{self.seed}-v{self.max_videos}-f{self.min_frames}-{self.max_frames}"
                f"-px{self.size}-{digest}")


DEFAULT_SPEC = DatasetSpec()
"""The default synthetic dataset (``SynthConfig()``: 60 studies, about 140 videos of 30-120 frames)."""
QUICK_SPEC = DatasetSpec(n_studies=8, max_videos=3, min_frames=24, max_frames=40)
"""A tiny dataset for ``--quick`` smoke runs and tests."""


@dataclass(frozen=True)
class BenchData:
    """A prepared dataset.

    Attributes:
        root: its folder in the work folder.
        manifest: ``root/data/manifest.csv`` (the generated videos are beside it).
        store: the store ingested with the default preprocessing (chunk_frames 8, lz4 level 5).
        spec: what was generated.
    """

    root: Path
    manifest: Path
    store: Path
    spec: DatasetSpec


def layout_name(preprocess: PreprocessConfig) -> str:
    """A store folder name for a chunk layout, e.g. ``store-c8-lz4-5-px112.zarr``."""
    return f"store-c{preprocess.chunk_frames}-{preprocess.cname}-{preprocess.clevel}-px{preprocess.size}.zarr"


def prepare_dataset(work_dir: str | Path, spec: DatasetSpec = DEFAULT_SPEC) -> BenchData:
    """Make (or reuse) the synthetic dataset of ``spec`` and its default store under ``work_dir``.

    Args:
        work_dir: the benchmarks' work folder (created if missing).
        spec: which dataset.

    Returns:
        The prepared :class:`BenchData`.

    Raises:
        RuntimeError: ingest failed for some generated video (a bug: generated videos are valid).
    """
    # imported here: both need OpenCV, which the GPU device check's machine does not have
    from echoclr.ingest import ingest_rows, read_manifest
    from echoclr.synth import generate_dataset

    root = Path(work_dir) / spec.name
    data_dir = root / "data"
    manifest = data_dir / "manifest.csv"
    if not manifest.exists():
        # a missing manifest means an interrupted generation: its partial files are this cache's own
        generate_dataset(data_dir, spec.synth_config(), overwrite=data_dir.exists())
        (root / "spec.json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
    preprocess = PreprocessConfig(size=spec.size)
    store = root / layout_name(preprocess)
    rows = read_manifest(manifest)
    if not _complete(store, len(rows)):
        result = ingest_rows(rows, store, preprocess=preprocess, workers=1)
        if result.failures:
            raise RuntimeError(f"ingest of the benchmark dataset {manifest} failed: {result.failures[:3]}")
    return BenchData(root=root, manifest=manifest, store=store, spec=spec)


def _complete(store: Path, n_rows: int) -> bool:
    if not (store / "zarr.json").exists():
        return False
    return len(open_store(store).records) == n_rows


def write_store(
    destination: str | Path, preprocess: PreprocessConfig, records: Sequence[VideoRecord], frames: Sequence[np.ndarray]
) -> Path:
    """Write already preprocessed frames as a new store (replacing whatever is at ``destination``).

    The same store that ingest with ``preprocess`` would write, without decoding and masking the source videos
    again: used to compare chunk layouts and codecs on identical frames.

    Args:
        destination: the new store's folder.
        preprocess: its preprocessing record (``chunk_frames``, ``cname``, ``clevel`` decide the layout).
        records: one index entry per video.
        frames: ``uint8 (T, size, size)`` per video, in ``records`` order.

    Returns:
        ``destination``.

    Raises:
        ValueError: ``records`` and ``frames`` differ in length (or a video's frames do not match its record).
    """
    if len(records) != len(frames):
        raise ValueError(f"write_store got {len(records)} records but {len(frames)} frame arrays")
    store = EchoStore.create(destination, preprocess, overwrite=True)
    for record, video in zip(records, frames):
        store.write_video(record, video)
    store.write_index(records)
    return Path(destination)


def read_all_frames(store: str | Path) -> tuple[list[VideoRecord], list[np.ndarray]]:
    """Every video of a store: its records and ``uint8 (T, H, W)`` frames (in memory)."""
    src = open_store(store)
    return list(src.records), [src.read_frames(i) for i in range(len(src.records))]


def store_chunk_bytes(store: str | Path) -> int:
    """Bytes on disk of a local store's frame chunks (``videos/*/c/...``), without metadata files."""
    return sum(p.stat().st_size for p in (Path(store) / "videos").glob("*/c/**/*") if p.is_file())


def remove_tree(path: str | Path) -> None:
    """Delete a benchmark's scratch folder (ignores a missing one)."""
    shutil.rmtree(path, ignore_errors=True)
