"""Frozen embeddings (``echoclr embed``) and linear/kNN probes (``echoclr probe``) on a real store."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from echoclr.cli.app import app
from echoclr.data import titration_studies
from echoclr.eval.embed import EmbedConfig, Embeddings, load_embeddings
from echoclr.run.embed import embed_store
from echoclr.eval.probe import ProbeConfig, fit_knn, fit_linear, run_probes

EMBED = EmbedConfig(device="cpu", clip_len=4, n_clips=2, size=16, threads=1, batch_size=8)


@pytest.fixture(scope="module")
def embeddings(labelled_store) -> Embeddings:
    return embed_store(labelled_store, EMBED)


def test_embeddings_are_clip_means_and_study_means_with_the_store_labels(labelled_store, embeddings):
    from echoclr.data import SamplerConfig, plan_epoch
    from echoclr.store import ClipReader
    from echoclr.train import RuntimeConfig
    from echoclr.train.batches import eval_batches
    from echoclr.train.finetune import build_encoder
    from echoclr.train.runtime import setup_runtime

    # oracle: run the same seeded encoder over every eval clip, one clip at a time, and average per video by hand
    torch.manual_seed(EMBED.seed)
    encoder = build_encoder("random").eval()
    reader = ClipReader(labelled_store, threads=1)
    runtime = setup_runtime(RuntimeConfig(device="cpu", loader_threads=1, size=16))
    videos = np.arange(len(reader), dtype=np.int64)
    plan = plan_epoch(SamplerConfig(mode="eval", clip_len=4, reorder=False, n_clips=2), reader.study_of_video,
                      reader.n_frames, epoch=0)
    per_video: dict[int, list[np.ndarray]] = {}
    with torch.no_grad():
        for x, video in eval_batches(reader, plan, videos, clip_len=4, batch_size=1, runtime=runtime, threads=1,
                                     kinetics=False, size=16):
            per_video.setdefault(int(video[0]), []).append(encoder(x)[0].double().numpy())
    row = {v: i for i, v in enumerate(embeddings.video_id.tolist())}
    assert len(row) == len(reader) == len(per_video)
    for v, clips in per_video.items():
        assert len(clips) == 2
        np.testing.assert_allclose(embeddings.video_embedding[row[reader.video_ids[v]]], np.mean(clips, axis=0),
                                   rtol=1e-4, atol=1e-5)
    # every video differs (no row written twice), studies are means of their videos, labels/splits are the store's
    assert len(np.unique(embeddings.video_embedding.round(4), axis=0)) == len(reader)
    lvh = reader.labels("lvh")
    for s, study in enumerate(embeddings.study_id.tolist()):
        members = [row[reader.video_ids[v]] for v in videos if reader.study_ids[reader.study_of_video[v]] == study]
        np.testing.assert_allclose(embeddings.study_embedding[s], embeddings.video_embedding[members].mean(axis=0),
                                   rtol=1e-5, atol=1e-6)
        v0 = [v for v in videos if reader.study_ids[reader.study_of_video[v]] == study][0]
        assert embeddings.study_labels["lvh"][s] == lvh[v0]
        assert embeddings.study_split[s] == reader.splits[v0]
    reader.close()


def test_cli_embed_writes_an_npz_that_plain_numpy_reads(labelled_store, embeddings, tmp_path):
    out = tmp_path / "emb.npz"
    args = ["embed", str(labelled_store), "--out", str(out), "--device", "cpu", "--clip-len", "4", "--clips", "2",
            "--size", "16", "--threads", "1", "--batch-size", "8", "--splits", "train,val,test"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # a fresh interpreter that never imports echoclr reads every documented key
    code = (
        "import sys, json, numpy as np\n"
        f"f = np.load({str(out)!r})\n"
        "assert 'echoclr' not in sys.modules\n"
        "print(json.dumps({'keys': sorted(f.files), 'shape': list(f['video_embedding'].shape),\n"
        "  'studies': f['study_id'].tolist(), 'lvh': f['study_label_lvh'].tolist(),\n"
        "  'meta': json.loads(str(f['meta']))}))\n"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    assert {"video_embedding", "video_id", "video_study_id", "video_split", "study_embedding", "study_id",
            "study_split", "label_names", "meta", "video_label_lvh", "study_label_lvh"} <= set(loaded["keys"])
    assert loaded["shape"] == [24, 512] and loaded["studies"] == embeddings.study_id.tolist()
    assert loaded["lvh"] == embeddings.study_labels["lvh"].tolist()
    assert loaded["meta"]["n_clips"] == 2 and loaded["meta"]["init"] == "random"
    np.testing.assert_allclose(load_embeddings(out).video_embedding, embeddings.video_embedding, rtol=1e-5,
                               atol=1e-6)
    # a second run refuses to replace the file; a bad init is one error line
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output and "Traceback" not in again.output
    bad = CliRunner().invoke(app, ["embed", str(labelled_store), "--out", str(tmp_path / "b.npz"), "--init",
                                   str(tmp_path / "no_run")])
    assert bad.exit_code == 2 and "no_run" in bad.output and "Traceback" not in bad.output


def _synthetic(n_train=60, n_val=20, n_test=30, d=16, signal=3.0, seed=0) -> Embeddings:
    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test
    y = np.zeros(n, np.float32)
    y[rng.permutation(n)[: n // 2]] = 1
    split = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * n_test)
    for part in ("val", "test"):  # both classes in val and test whatever the draw
        idx = np.flatnonzero(split == part)
        y[idx[:2]] = [0, 1]
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[:, 0] += signal * y
    ids = np.array([f"S{i:04d}" for i in range(n)])
    return Embeddings(x, ids, ids, split, x, ids, split, {"lvh": y}, {"lvh": y}, {})


def test_linear_probe_equals_scikit_learn_on_the_full_features_and_knn_a_naive_loop():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 30))  # fewer studies than features: the span reduction is used
    y = np.array([0, 1] * 6)
    x_val, y_val = rng.normal(size=(8, 30)), np.array([0, 1] * 4)
    x_test = rng.normal(size=(9, 30))
    c, scores = fit_linear(x, y, x_val, y_val, x_test)
    mean, std = x.mean(0), x.std(0)
    direct = LogisticRegression(C=c, max_iter=5000, tol=1e-10).fit((x - mean) / std, y)
    np.testing.assert_allclose(scores, direct.decision_function((x_test - mean) / std), rtol=1e-3, atol=1e-3)

    k, knn_scores = fit_knn(x, y, x_val, y_val, x_test)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    for q, query in enumerate(x_test / np.linalg.norm(x_test, axis=1, keepdims=True)):
        nearest = sorted(range(len(x)), key=lambda i: -float(unit[i] @ query))[:k]
        assert knn_scores[q] == pytest.approx(np.mean(y[nearest]))


def test_probes_use_finetune_subsets_learn_a_signal_and_report_spread():
    emb = _synthetic()
    result = run_probes(emb, ProbeConfig(label="lvh", ratios=(0.1, 1.0), repeats=6, seed=3))
    train_ids = emb.study_id[emb.study_split == "train"].tolist()
    label_of = {s: int(emb.study_labels["lvh"][emb.study_id.tolist().index(s)]) for s in train_ids}
    for r in result.repeats:
        subset = titration_studies(train_ids, r.ratio, r.subset_seed, labels=label_of)  # the fine-tuning rule
        assert r.n_train_studies == len(subset) and not r.degenerate  # stratified: both classes in every subset
        assert r.n_train_positive == int(sum(emb.study_labels["lvh"][emb.study_id.tolist().index(s)] for s in subset))
    assert sorted({r.subset_seed for r in result.repeats}) == [3, 4, 5, 6, 7, 8]
    by_cell = {(s.probe, s.ratio): s for s in result.summaries}
    full = by_cell[("linear", 1.0)]
    assert full.auroc_mean > 0.85 and full.auroc_spread[0] == full.auroc_spread[1]  # one subset at 100%
    assert full.median_auroc_ci[0] < full.median_auroc < full.median_auroc_ci[1]
    small = [r.auroc for r in result.repeats if r.probe == "linear" and r.ratio == 0.1]
    cell = by_cell[("linear", 0.1)]
    assert cell.auroc_mean == pytest.approx(np.mean(small))
    assert cell.auroc_spread == pytest.approx(tuple(np.percentile(small, [2.5, 97.5])))
    assert cell.auroc_spread[0] < cell.auroc_spread[1]  # different subsets give different probes


def test_subsets_keep_a_rare_class_and_one_class_training_sets_score_chance_and_are_counted():
    emb = _synthetic(n_train=40)
    labels = emb.study_labels["lvh"]
    train = np.flatnonzero(emb.study_split == "train")
    labels[train] = 0
    labels[train[:1]] = 1  # one positive train study: a blind 5% draw (2 studies) would miss it 19 times in 20
    rare = run_probes(emb, ProbeConfig(label="lvh", ratios=(0.05,), repeats=10))
    assert all(r.n_train_positive == 1 and not r.degenerate for r in rare.repeats)  # stratified draws keep it
    labels[train[:1]] = 0  # no positive train study at all: every subset is one class
    result = run_probes(emb, ProbeConfig(label="lvh", ratios=(0.05,), repeats=10))
    test_prevalence = labels[emb.study_split == "test"].mean()
    assert all(r.degenerate for r in result.repeats)
    for r in result.repeats:
        assert r.n_train_positive == 0 and r.hyperparameter is None
        assert r.auroc == 0.5 and r.aupr == pytest.approx(test_prevalence)
    for s in result.summaries:
        assert s.n_degenerate == sum(r.degenerate for r in result.repeats if r.probe == s.probe) == 10


def test_cli_probe_json_matches_the_library_and_bad_input_is_one_line(embeddings, tmp_path):
    path = embeddings.save(tmp_path / "emb.npz")
    result = CliRunner().invoke(app, ["probe", str(path), "--label", "lvh", "--ratios", "0.5,1", "--repeats", "3",
                                      "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    expected = run_probes(load_embeddings(path), ProbeConfig(label="lvh", ratios=(0.5, 1.0), repeats=3))
    assert got["n_test_studies"] == expected.n_test_studies == int((embeddings.study_split == "test").sum())
    assert [(s["probe"], s["ratio"], s["auroc_mean"]) for s in got["summaries"]] == \
        [(s.probe, s.ratio, s.auroc_mean) for s in expected.summaries]
    assert len(got["repeats"]) == 2 * 2 * 3
    for bad, needle in ((["--label", "nope"], "'nope'"), (["--label", "lvh", "--ratios", "0,1"], "ratios")):
        out = CliRunner().invoke(app, ["probe", str(path), *bad])
        assert out.exit_code == 2 and needle in out.output and "Traceback" not in out.output
    missing = CliRunner().invoke(app, ["probe", str(tmp_path / "none.npz"), "--label", "lvh"])
    assert missing.exit_code == 2 and "none.npz" in missing.output
