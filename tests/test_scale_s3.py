"""Stores on S3 over the wire: a real S3-protocol HTTP server (moto in server mode) on 127.0.0.1, reached through
s3fs with credentials and endpoint from the standard environment variables or ``--storage-option``."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from botocore.exceptions import EndpointConnectionError
from typer.testing import CliRunner

from echoclr.cli.app import app
from echoclr.ingest import ingest_rows, read_manifest
from echoclr.store import EchoStore, PreprocessConfig, StoreError, open_store
from echoclr.synth import SynthConfig, generate_dataset

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")
SMALL = PreprocessConfig(size=16, chunk_frames=4)
BUCKET = "echo"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """A moto S3 server on 127.0.0.1 that can be stopped and started again on the same port (its objects live in
    this process, so they survive a restart, as they would on a real object store)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = None

    def start(self) -> None:
        self._server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        self._server.stop()
        self._server._server.server_close()  # release the port (moto's stop() only ends serve_forever)

    def filesystem(self) -> "s3fs.S3FileSystem":
        return s3fs.S3FileSystem(endpoint_url=self.endpoint, key="testing", secret="testing", skip_instance_cache=True)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    server = S3Server()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": server.endpoint}.items():
        mp.setenv(name, value)
    server.start()
    server.filesystem().mkdir(BUCKET)
    yield server
    server.stop()
    mp.undo()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    config = SynthConfig(n_studies=6, seed=11, min_videos=1, max_videos=3, min_frames=20, max_frames=28, max_width=192)
    return generate_dataset(tmp_path_factory.mktemp("s3-data") / "data", config)


def test_create_never_replaces_a_prefix_that_is_not_a_store(s3):
    fs = s3.filesystem()
    fs.pipe_file(f"{BUCKET}/precious/notes.txt", b"keep me")
    for overwrite in (False, True):
        with pytest.raises(StoreError, match="not an echoclr store"):
            EchoStore.create(f"s3://{BUCKET}/precious", SMALL, overwrite=overwrite)
    assert fs.cat_file(f"{BUCKET}/precious/notes.txt") == b"keep me"


def test_ingest_info_pretrain_finetune_from_s3(s3, manifest, tmp_path):
    url = f"s3://{BUCKET}/store.zarr"
    done = CliRunner().invoke(app, ["ingest", str(manifest), "--out", url, "--size", "16",
                                    "--storage-option", f"endpoint_url={s3.endpoint}"])
    assert done.exit_code == 0, done.output
    rows = read_manifest(manifest)
    info = CliRunner().invoke(app, ["info", url, "--json"])  # endpoint and credentials from the environment only
    assert info.exit_code == 0, info.output
    summary = json.loads(info.stdout)
    assert summary["n_videos"] == len(rows) and summary["n_studies"] == len({r.study_id for r in rows})
    assert s3.filesystem().exists(f"{BUCKET}/store.zarr/videos/{rows[0].key}/c/0/0/0")

    # the same frames as a local ingest of the same files
    local = ingest_rows(rows, tmp_path / "local.zarr", preprocess=SMALL)
    remote = open_store(url)
    assert list(remote.records) == list(local.store.records)
    np.testing.assert_array_equal(remote.read_frames(rows[-1].video_id), local.store.read_frames(rows[-1].video_id))

    from echoclr.train import FinetuneConfig, PretrainConfig, RuntimeConfig
    from echoclr.train.finetune import finetune
    from echoclr.train.pretrain import pretrain

    runtime = RuntimeConfig(device="cpu", loader_threads=2, max_steps=2, log_every=1)
    logs = []
    result = pretrain(url, tmp_path / "run", PretrainConfig(batch_size=4, epochs=1, runtime=runtime),
                      on_log=logs.append)
    train_logs = [r for r in logs if r.get("kind") != "monitor"]  # on_log also gets the monitor's records
    assert result.global_step == 2 and train_logs and all(np.isfinite(r["loss"]) for r in train_logs)
    config = FinetuneConfig(label="lvh", ratio=1.0, lr=1e-3, clip_len=8, batch_size=4, max_epochs=1, patience=1,
                            eval_clips=1, runtime=RuntimeConfig(device="cpu", loader_threads=2))
    tuned = finetune(url, tmp_path / "ft", config)
    assert tuned.best_epoch == 0
    scores = (tmp_path / "ft" / "predictions_test_videos.csv").read_text().splitlines()
    assert len(scores) - 1 == len(remote.select(["test"]))


def test_server_restarted_mid_ingest_then_rerun_completes(s3, manifest):
    url = f"s3://{BUCKET}/restart.zarr"
    rows = read_manifest(manifest)
    stopped = []

    def stop_after_two(done: int, total: int) -> None:
        if done >= 2 and not stopped:
            s3.stop()
            stopped.append(done)

    options = {"endpoint_url": s3.endpoint}
    try:
        # the client's connection error, once its retries are spent
        with pytest.raises((OSError, EndpointConnectionError), match="(?i)connect"):
            ingest_rows(rows, url, preprocess=SMALL, progress=stop_after_two, storage_options=options)
    finally:
        if stopped:
            s3.start()
    assert stopped and len(open_store(url, storage_options=options)) < len(rows)
    rerun = ingest_rows(rows, url, preprocess=SMALL, storage_options=options)
    assert not rerun.failures and rerun.n_skipped >= 1 and rerun.n_written + rerun.n_skipped == len(rows)
    store = open_store(url, storage_options=options)
    assert [r.video_id for r in store.records] == [r.video_id for r in rows]
    assert all(store.read_frames(i).shape[0] == r.n_frames for i, r in enumerate(store.records))
