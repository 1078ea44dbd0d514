"""Shared fixtures: a tiny synthetic dataset ingested into a real zarr store (built once per test session)."""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a CUDA GPU: skipped (and said so) without one."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marked cuda)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """12 synthetic studies (1-3 videos, 20-40 frames) stored at 32×32 px: a real store small enough for CPU tests."""
    # imported here: the GPU device check runs `pytest -m cuda` on a machine without zarr, av or pydicom
    from echoclr.ingest import ingest_rows, read_manifest
    from echoclr.store import PreprocessConfig
    from echoclr.synth import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("tiny")
    config = SynthConfig(n_studies=12, seed=3, min_videos=1, max_videos=3, min_frames=20, max_frames=40)
    manifest = generate_dataset(root / "data", config)
    result = ingest_rows(read_manifest(manifest, split_seed=1), root / "store.zarr",
                         preprocess=PreprocessConfig(size=32, chunk_frames=4), workers=1)
    assert not result.failures
    return root / "store.zarr"


@pytest.fixture(scope="session")
def labelled_store(tmp_path_factory):
    """24 one-video studies at 32×32 px whose val and test splits each hold both classes of ``lvh`` (assigned per
    class round-robin), for probes and the pretraining monitor's val kNN AUROC."""
    import csv

    from echoclr.ingest import ingest_rows, read_manifest
    from echoclr.store import PreprocessConfig
    from echoclr.synth import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("labelled")
    config = SynthConfig(n_studies=24, seed=5, min_videos=1, max_videos=1, min_frames=16, max_frames=20,
                         min_width=160, max_width=160, lvh_prevalence=0.5)
    manifest = generate_dataset(root / "data", config)
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    seen = {"0": 0, "1": 0}
    for row in rows:  # per class: 1 of every 4 studies to val, 1 to test, 2 to train
        position = seen[row["lvh"]] % 4
        seen[row["lvh"]] += 1
        row["split"] = "val" if position == 1 else "test" if position == 3 else "train"
    assert min(seen.values()) >= 4, seen
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = ingest_rows(read_manifest(manifest), root / "store.zarr",
                         preprocess=PreprocessConfig(size=32, chunk_frames=4), workers=1)
    assert not result.failures
    return root / "store.zarr"
