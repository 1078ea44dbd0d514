"""Online monitoring: embedding statistics, the collapse alarm, the val kNN probe, metrics.jsonl and TensorBoard."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from echoclr.cli.app import app
from echoclr.train import PretrainConfig, RuntimeConfig
from echoclr.train.monitor import CollapseWarning, embedding_stats, knn_auroc
from echoclr.train.pretrain import pretrain


def test_embedding_stats_of_collapsed_and_spread_batches():
    collapsed = torch.ones(8, 16) * torch.linspace(1, 3, 8)[:, None]  # one direction, any scale
    std, rank = embedding_stats(collapsed)
    assert std == pytest.approx(0.0, abs=1e-9) and rank == pytest.approx(1.0)
    eye = torch.eye(16)
    axes = torch.cat([eye[:3], -eye[:3]])  # ±e1, ±e2, ±e3: centred, three equal singular values
    std, rank = embedding_stats(axes)
    assert rank == pytest.approx(3.0)
    # per-dimension std: e1..e3 columns hold one +1 and one -1 of 6 rows -> sqrt(1/3); 13 columns are 0
    assert std == pytest.approx(3 * np.sqrt(1 / 3) / 16 * 4)


def test_knn_auroc_matches_a_naive_neighbour_count():
    rng = np.random.default_rng(0)
    ref, ref_y = rng.normal(size=(15, 6)), rng.integers(0, 2, 15)
    query, query_y = rng.normal(size=(9, 6)), np.array([0, 1] * 4 + [1])
    got = knn_auroc(ref, ref_y, query, query_y, k=4)
    unit = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    scores = []
    for q in query / np.linalg.norm(query, axis=1, keepdims=True):
        nearest = sorted(range(15), key=lambda i: -float(unit[i] @ q))[:4]
        scores.append(np.mean(ref_y[nearest]))
    from sklearn.metrics import roc_auc_score

    assert got == pytest.approx(roc_auc_score(query_y, scores))


def _run(store, out, lr: float, steps: int):
    config = PretrainConfig(batch_size=4, epochs=3, lr=lr, runtime=RuntimeConfig(
        device="cpu", loader_threads=1, max_steps=steps, log_every=1, eval_every=2 if steps > 4 else 1, size=16))
    records = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pretrain(store, out, config, on_log=records.append)
    return records, [w for w in caught if issubclass(w.category, CollapseWarning)]


def test_healthy_run_logs_monitor_and_tensorboard_without_alarm(labelled_store, tmp_path):
    records, alarms = _run(labelled_store, tmp_path / "run", lr=1e-4, steps=4)
    assert not alarms
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    monitor = [r for r in lines if r.get("kind") == "monitor"]
    assert [r["global_step"] for r in monitor] == [1, 2, 3, 4]  # every eval_every (1) steps, the last included
    for r in monitor:
        assert not r["collapsed"] and r["embedding_std"] > 0.3 and 1.5 < r["effective_rank"] <= 8
        assert set(r["knn_auroc"]) == {"lvh", "severe_as"}  # every label with both classes in train and val
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/contrastive", "train/clips_per_s", "monitor/embedding_std",
            "monitor/effective_rank", "monitor/collapsed", "monitor/knn_auroc/lvh"} <= tags
    train = [r for r in lines if "loss" in r]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx([r["loss"] for r in train], rel=1e-6)
    assert [e.step for e in events.Scalars("monitor/knn_auroc/lvh")] == [1, 2, 3, 4]
    assert [e.value for e in events.Scalars("monitor/embedding_std")] == \
        pytest.approx([r["embedding_std"] for r in monitor], rel=1e-6)


def test_huge_learning_rate_raises_the_collapse_alarm(labelled_store, tmp_path):
    records, alarms = _run(labelled_store, tmp_path / "run", lr=1e6, steps=4)
    monitor = [r for r in records if r.get("kind") == "monitor"]
    assert alarms and any(r["collapsed"] for r in monitor)
    assert "--lr (now 1e+06;" in str(alarms[-1].message)  # the advice names the run's lr
    last = monitor[-1]
    # the loss sat at log(2n - 1) (n = 4 pairs, no two pairs of one study) for the whole window
    assert last["collapse_loss"] == pytest.approx(np.log(7), rel=1e-6)
    assert last["collapsed"] and "collapse value" in last["collapse_reason"]


def test_cli_pretrain_no_tensorboard_prints_monitor_lines(labelled_store, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["pretrain", str(labelled_store), "--out", str(out), "--device", "cpu",
                                      "--batch-size", "4", "--epochs", "1", "--max-steps", "2", "--threads", "1",
                                      "--size", "16", "--eval-every", "2", "--no-tensorboard"])
    assert result.exit_code == 0, result.output
    assert not (out / "tensorboard").exists()
    assert "step 2: embedding std" in result.output and "val kNN AUROC lvh=" in result.output
    assert "clips_per_s=" in result.output  # no terminal: a line per record instead of the bar
