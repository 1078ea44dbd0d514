"""The view-filter hook: a tiny TorchScript view classifier built here decides which ingested videos are kept."""

# no `from __future__ import annotations`: TorchScript must see the real annotations

import json
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch

from test_adapters import assert_one_error_line, fan_frames, invoke, squeeze, write_csv

from echoclr.store import open_store
from echoclr.synth.writers import write_avi


class BrightIsPlax(torch.nn.Module):
    """P(PLAX) = sigmoid(40 * (mean intensity - 0.1)) per frame; the rest is A4C."""

    classes: List[str]  # noqa: UP006 (TorchScript wants typing.List)

    def __init__(self) -> None:
        super().__init__()
        self.classes = ["A4C", "PLAX"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plax = torch.sigmoid(40.0 * (x.mean(dim=(1, 2, 3)) - 0.1))  # (N, 1, S, S) -> (N,)
        return torch.stack([1.0 - plax, plax], dim=1)  # (N, 2)


class Logits(torch.nn.Module):
    classes: List[str]  # noqa: UP006

    def __init__(self) -> None:
        super().__init__()
        self.classes = ["A4C", "PLAX"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.mean(dim=(1, 2, 3)) * 5, x.mean(dim=(1, 2, 3)) * 9], dim=1)


def expected_plax_prob(frames: np.ndarray, n: int) -> float:
    """The documented input contract, written out: n evenly spaced stored frames / 255, per-frame probs averaged."""
    picks = np.unique(np.linspace(0, len(frames) - 1, n).round().astype(int))
    means = frames[picks].astype(np.float64).mean(axis=(1, 2)) / 255.0
    return float(np.mean(1.0 / (1.0 + np.exp(-40.0 * (means - 0.1)))))


@pytest.fixture()
def videos(tmp_path):
    """A manifest of three AVIs: bright (PLAX), dim (borderline PLAX) and dark (A4C)."""
    data = tmp_path / "data"
    data.mkdir()
    for name, brightness in (("bright", 170), ("dim", 70), ("dark", 12)):
        write_avi(data / f"{name}.avi", fan_frames(15, brightness=brightness, seed=len(name)), fps=30)
    return write_csv(data / "manifest.csv", ["path", "study_id"],
                     [["bright.avi", "s1"], ["dim.avi", "s2"], ["dark.avi", "s3"]])


def script(module: torch.nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def test_view_filter_keeps_confident_views_and_stores_them(videos, tmp_path):
    model = script(BrightIsPlax(), tmp_path / "view.pt")
    store_path = tmp_path / "store.zarr"
    args = ("ingest", videos, "--out", store_path, "--size", "32", "--view-model", model, "--keep-view", "PLAX",
            "--view-frames", "4")
    done = invoke(*args, "--min-prob", "0.5")
    assert done.exit_code == 0, done.output
    store = open_store(store_path)
    kept = {r.video_id: r for r in store.records}
    assert set(kept) >= {"bright"} and "dark" not in kept
    for video_id, record in kept.items():
        assert record.view == "PLAX"
        assert record.view_prob == pytest.approx(expected_plax_prob(store.read_frames(video_id), 4), abs=1e-5)
    report = json.loads((store_path / "ingest_report.json").read_text())
    assert [e["video_id"] for e in report["excluded"]] == ["dark"] and report["failures"] == []
    assert "view A4C" in report["excluded"][0]["reason"] and "not PLAX" in report["excluded"][0]["reason"]

    # A stricter threshold on the same store: the dim video now falls below it; the rerun re-decides from the
    # stored frames and drops it from the index, the bright one stays with the same probability.
    dim_prob = kept["dim"].view_prob
    assert 0.5 <= dim_prob < 0.99, dim_prob  # the fixture's borderline video
    bright_prob = kept["bright"].view_prob
    done = invoke(*args, "--min-prob", str(round((dim_prob + 1) / 2, 4)))
    assert done.exit_code == 0, done.output
    assert squeeze("dim.avi: skipped (view PLAX p=") in squeeze(done.output)
    again = {r.video_id: r for r in open_store(store_path).records}
    assert set(again) == {"bright"} and again["bright"].view_prob == pytest.approx(bright_prob)


def test_view_classes_from_a_json_sidecar(videos, tmp_path):
    script(_NoClasses(), tmp_path / "plain.pt")
    (tmp_path / "plain.json").write_text(json.dumps({"classes": ["A4C", "PLAX"]}))
    done = invoke("ingest", videos, "--out", tmp_path / "s.zarr", "--size", "32", "--view-model",
                  tmp_path / "plain.pt", "--keep-view", "PLAX", "--min-prob", "0.9")
    assert done.exit_code == 0, done.output
    assert [r.video_id for r in open_store(tmp_path / "s.zarr").records] == ["bright"]


class _NoClasses(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plax = torch.sigmoid(40.0 * (x.mean(dim=(1, 2, 3)) - 0.1))
        return torch.stack([1.0 - plax, plax], dim=1)


@pytest.mark.parametrize(
    "make, extra, message",
    [
        (lambda p: script(BrightIsPlax(), p), ["--keep-view", "PSAX"], "--keep-view 'PSAX' is not one of"),
        (lambda p: script(_NoClasses(), p), ["--keep-view", "PLAX"], "has no `classes` attribute"),
        (lambda p: script(Logits(), p), ["--keep-view", "PLAX"], "not probabilities"),
        (lambda p: p.write_bytes(b"not a model") and p, ["--keep-view", "PLAX"], "not a TorchScript model"),
        (lambda p: script(BrightIsPlax(), p), [], "--view-model and --keep-view go together"),
    ],
)
def test_unusable_view_models_are_one_error(videos, tmp_path, make, extra, message):
    model = make(tmp_path / "view.pt")
    done = invoke("ingest", videos, "--out", tmp_path / "s.zarr", "--size", "32", "--view-model", model, *extra)
    assert_one_error_line(done, message)


def test_view_fields_round_trip_through_the_index(tmp_path):
    # Stores of schema v1 never had view columns; `echoclr store upgrade` reads them with view None
    # (tests/test_store_index.py::test_old_store_gets_a_clear_error_and_upgrades_in_place).
    from echoclr.store import EchoStore, PreprocessConfig, VideoRecord

    store = EchoStore.create(tmp_path / "s.zarr", PreprocessConfig(size=16))
    record = VideoRecord("v0", "s0", "train", 2, 30.0, "v0", "0" * 64, {"lvh": 1.0}, (), view="PLAX", view_prob=0.9)
    plain = VideoRecord("v1", "s1", "train", 2, 30.0, "v1", "1" * 64, {"lvh": 0.0}, ())
    for r in (record, plain):
        store.write_video(r, np.zeros((2, 16, 16), np.uint8))
    store.write_index([record, plain])
    reopened = list(open_store(tmp_path / "s.zarr").records)
    assert reopened == [record, plain]
    assert (reopened[1].view, reopened[1].view_prob) == (None, None)
