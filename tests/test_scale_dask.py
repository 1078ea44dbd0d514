"""Ingest on Dask: a real LocalCluster of 2 worker processes writes the same store, byte for byte, as the local
engine; a worker killed with SIGKILL mid-ingest costs nothing (its task is rescheduled, or a rerun completes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from echoclr.ingest import ingest_rows, read_manifest
from echoclr.store import PreprocessConfig, open_store
from echoclr.synth import SynthConfig, generate_dataset

pytest.importorskip("dask.distributed")
SMALL = PreprocessConfig(size=16, chunk_frames=4)
ECHOCLR = Path(sys.executable).parent / "echoclr"


def _fingerprint(path: Path) -> dict[str, bytes]:
    """Every file of a store except the run report (its counts say what that particular run did)."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != "ingest_report.json"}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scale-data")
    config = SynthConfig(n_studies=8, seed=5, min_videos=1, max_videos=3, min_frames=16, max_frames=24,
                         max_width=192)
    return generate_dataset(root / "data", config)


@pytest.mark.slow
def test_local_cluster_of_two_workers_writes_the_local_engines_store(manifest, tmp_path):
    rows = read_manifest(manifest)
    local = ingest_rows(rows, tmp_path / "local.zarr", preprocess=SMALL, workers=1)
    seen: list[tuple[int, int]] = []
    dask = ingest_rows(rows, tmp_path / "dask.zarr", preprocess=SMALL, workers=2, engine="dask",
                       progress=lambda done, total: seen.append((done, total)))
    assert not dask.failures and dask.n_written == len(rows) == local.n_written
    assert _fingerprint(tmp_path / "dask.zarr") == _fingerprint(tmp_path / "local.zarr")
    n_studies = len({r.study_id for r in rows})
    assert len(seen) == n_studies and seen[-1] == (len(rows), len(rows))  # one progress step per study task
    assert [r.video_id for r in open_store(tmp_path / "dask.zarr").records] == [r.video_id for r in rows]
    rerun = ingest_rows(rows, tmp_path / "dask.zarr", preprocess=SMALL, workers=2, engine="dask")
    assert rerun.n_written == 0 and rerun.n_skipped == len(rows)


def _worker_processes(pid: int) -> list[psutil.Process]:
    """The Dask worker processes started by the ingest command (spawned children running distributed)."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "multiprocessing" in cmdline and "resource_tracker" not in cmdline and "semaphore" not in cmdline:
            found.append(child)
    return found


@pytest.mark.slow
def test_worker_killed_mid_ingest_leaves_the_uninterrupted_store(manifest, tmp_path):
    command = [str(ECHOCLR), "ingest", str(manifest), "--size", "16"]
    subprocess.run([*command, "--out", str(tmp_path / "clean.zarr")], check=True, capture_output=True)

    killed = tmp_path / "killed.zarr"
    process = subprocess.Popen([*command, "--out", str(killed), "--engine", "dask", "--workers", "2"],
                               start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, victim = time.time() + 120, None
    while time.time() < deadline and victim is None and process.poll() is None:
        if len(list((killed / "videos").glob("*/zarr.json"))) >= 2:
            workers = _worker_processes(process.pid)
            victim = workers[0] if len(workers) >= 2 else None
        time.sleep(0.02)
    assert victim is not None, "two worker processes must be running once videos are being written"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    try:
        _, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    if process.returncode != 0:  # the scheduler gave up on the task: a rerun must complete the store
        rerun = subprocess.run([*command, "--out", str(killed), "--engine", "dask", "--workers", "2"],
                               capture_output=True, text=True)
        assert rerun.returncode == 0, f"first run:\n{stderr}\nrerun:\n{rerun.stderr}"
    assert _fingerprint(killed) == _fingerprint(tmp_path / "clean.zarr")
