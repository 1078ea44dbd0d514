"""Study-level metrics, bootstrap CIs and the paired bootstrap test (echoclr.eval)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from echoclr.cli.app import app
from echoclr.eval import (
    BootstrapConfig,
    aggregate_to_studies,
    align_studies,
    aupr,
    auroc,
    bootstrap_ci,
    bootstrap_weights,
    compare_predictions,
    paired_bootstrap_test,
    read_predictions,
    weighted_auroc_aupr,
)


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _expand(labels, scores, counts):
    idx = np.repeat(np.arange(labels.size), counts)  # (sum(counts),) resampled study indices
    return labels[idx], scores[idx]


# ---- point metrics -------------------------------------------------------------------------

TIED_LABELS = np.array([0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1, 0, 0])
TIED_SCORES = np.array([0.1, 0.5, 0.5, 0.9, 0.5, 0.1, 0.3, 0.3, 0.9, 0.9, 0.3, 0.7, 0.0, 0.5])


def test_point_metrics_equal_sklearn_with_ties():
    auc_w, ap_w = weighted_auroc_aupr(TIED_LABELS, TIED_SCORES, np.ones(TIED_LABELS.size))
    ref_auc = roc_auc_score(TIED_LABELS, TIED_SCORES)
    ref_ap = average_precision_score(TIED_LABELS, TIED_SCORES)
    assert abs(auc_w - ref_auc) < 1e-12
    assert abs(ap_w - ref_ap) < 1e-12
    assert auroc(TIED_LABELS, TIED_SCORES) == ref_auc
    assert aupr(TIED_LABELS, TIED_SCORES) == ref_ap
    # larger data: many ties and many distinct values
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.2).astype(int)
    s = np.round(rng.normal(size=2000) + y, 1)
    a, p = weighted_auroc_aupr(y, s, np.ones(2000))
    assert abs(a - roc_auc_score(y, s)) < 1e-12
    assert abs(p - average_precision_score(y, s)) < 1e-12


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 4), st.integers(0, 3)), min_size=2, max_size=25
    )
)
def test_weighted_metrics_equal_sklearn_on_expanded_data(data):
    labels = np.array([d[0] for d in data])
    scores = np.array([d[1] for d in data], dtype=float) / 4  # few values -> many ties
    counts = np.array([d[2] for d in data])
    if labels.min() == labels.max():
        labels[0] = 1 - labels[0]
    auc_w, ap_w = weighted_auroc_aupr(labels, scores, counts[None, :])
    y, s = _expand(labels, scores, counts)
    if y.size == 0 or y.min() == y.max():
        assert np.isnan(auc_w[0]) and np.isnan(ap_w[0])
    else:
        assert abs(auc_w[0] - roc_auc_score(y, s)) < 1e-12
        assert abs(ap_w[0] - average_precision_score(y, s)) < 1e-12


def test_video_rows_aggregate_to_study_mean(tmp_path):
    rows = [
        ("s1", "v1", 1, 0.9), ("s1", "v2", 1, 0.5), ("s1", "v3", 1, 0.4),
        ("s2", "v4", 0, 0.2), ("s2", "v5", 0, 0.8),
        ("s3", "v6", 0, 0.6),
        ("s4", "v7", 1, 0.3), ("s4", "v8", 1, 0.7),
        ("s5", "v9", 0, 0.5),
    ]
    path = _write_csv(tmp_path / "pred.csv", ["study_id", "video_id", "label", "score"], rows)
    p = read_predictions(path)
    assert p.study_ids == ("s1", "s2", "s3", "s4", "s5")
    expected = np.array([(0.9 + 0.5 + 0.4) / 3, 0.5, 0.6, 0.5, 0.5])
    np.testing.assert_allclose(p.scores, expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(p.labels, [1, 0, 0, 1, 0])
    np.testing.assert_array_equal(p.n_videos, [3, 2, 1, 2, 1])
    # study-level metrics (with the ties the means create) equal sklearn on the means
    assert abs(auroc(p.labels, p.scores) - roc_auc_score([1, 0, 0, 1, 0], expected)) < 1e-12
    a, ap = weighted_auroc_aupr(p.labels, p.scores, np.ones(5))
    assert abs(a - roc_auc_score([1, 0, 0, 1, 0], expected)) < 1e-12
    assert abs(ap - average_precision_score([1, 0, 0, 1, 0], expected)) < 1e-12


# ---- input errors --------------------------------------------------------------------------


def test_missing_column_names_file_and_column(tmp_path):
    path = _write_csv(tmp_path / "nolabel.csv", ["study_id", "score"], [("s1", 0.3)])
    with pytest.raises(ValueError, match=r"nolabel\.csv.*missing column 'label'"):
        read_predictions(path)


def test_inconsistent_label_names_study(tmp_path):
    rows = [("s1", "v1", 1, 0.9), ("s1", "v2", 0, 0.5), ("s2", "v3", 0, 0.1)]
    path = _write_csv(tmp_path / "p.csv", ["study_id", "video_id", "label", "score"], rows)
    with pytest.raises(ValueError, match=r"p\.csv.*label is not constant within study 's1'"):
        read_predictions(path)
    with pytest.raises(ValueError, match="'s1'"):
        aggregate_to_studies(["s1", "s1", "s2"], [1, 0, 0], [0.9, 0.5, 0.1])


def test_bad_cells_and_duplicates_are_named(tmp_path):
    p = _write_csv(tmp_path / "a.csv", ["study_id", "label", "score"], [("s1", 1, "high")])
    with pytest.raises(ValueError, match=r"a\.csv, line 2: column 'score' has 'high'"):
        read_predictions(p)
    p = _write_csv(tmp_path / "b.csv", ["study_id", "label", "score"], [("s1", 2, 0.1)])
    with pytest.raises(ValueError, match=r"b\.csv.*study 's1' is 2\.0; labels must be 0 or 1"):
        read_predictions(p)
    p = _write_csv(tmp_path / "c.csv", ["study_id", "label", "score"], [("s1", 1, 0.1), ("s1", 1, 0.2)])
    with pytest.raises(ValueError, match=r"c\.csv, line 3: study_id 's1' repeats line 2.*video_id"):
        read_predictions(p)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_predictions(tmp_path / "missing.csv")


def test_align_requires_same_studies_and_labels():
    a = aggregate_to_studies(["s1", "s2", "s3"], [1, 0, 0], [0.9, 0.2, 0.4], source="a.csv")
    b = aggregate_to_studies(["s2", "s3", "s4"], [0, 0, 1], [0.1, 0.5, 0.7], source="b.csv")
    with pytest.raises(ValueError, match=r"1 only in a\.csv \(e\.g\. \['s1'\]\), 1 only in b\.csv"):
        align_studies(a, b)
    a2, b2 = align_studies(a, b, intersect=True)
    assert a2.study_ids == b2.study_ids == ("s2", "s3")
    np.testing.assert_array_equal(b2.scores, [0.1, 0.5])
    c = aggregate_to_studies(["s1", "s2", "s3"], [1, 1, 0], [0.9, 0.2, 0.4], source="c.csv")
    with pytest.raises(ValueError, match=r"disagree on the label of 1 studies \(e\.g\. \['s2'\]\)"):
        align_studies(a, c)


def test_single_class_and_bad_config_rejected():
    with pytest.raises(ValueError, match="both classes"):
        bootstrap_ci(np.zeros(5, int), np.arange(5.0), BootstrapConfig(n_boot=10))
    with pytest.raises(ValueError, match="n_boot"):
        BootstrapConfig(n_boot=1)
    with pytest.raises(ValueError, match="ci_rule"):
        BootstrapConfig(ci_rule="90")
    with pytest.raises(ValueError, match="seed"):
        BootstrapConfig(seed=-1)


# ---- bootstrap CIs -------------------------------------------------------------------------


def _binormal(rng, n_pos, n_neg, d):
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    return y, rng.normal(size=y.size) + d * y


@pytest.mark.parametrize("stratified", [False, True])
def test_bootstrap_ci_equals_naive_sklearn_loop(stratified):
    rng = np.random.default_rng(7)
    y, s = _binormal(rng, 12, 30, 1.0)
    s = np.round(s, 1)  # ties
    cfg = BootstrapConfig(n_boot=150, seed=11, stratified=stratified, ci_rule="authors")
    res = bootstrap_ci(y, s, cfg)
    aucs, aps = [], []
    for counts in bootstrap_weights(y, 150, 11, stratified=stratified):
        for c in counts:
            assert c.sum() == y.size
            if stratified:
                assert c[y == 1].sum() == 12
            yy, ss = _expand(y, s, c)
            if yy.min() != yy.max():
                aucs.append(roc_auc_score(yy, ss))
                aps.append(average_precision_score(yy, ss))
    assert res.n_degenerate == 150 - len(aucs)
    np.testing.assert_allclose(res.auroc_ci, np.percentile(aucs, [5, 95]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.aupr_ci, np.percentile(aps, [5, 95]), rtol=0, atol=1e-12)
    assert res.ci_level == 0.90 and res.auroc == roc_auc_score(y, s)


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(0)
    y, s = _binormal(rng, 20, 40, 0.8)
    r1 = bootstrap_ci(y, s, BootstrapConfig(n_boot=600, seed=5))
    r2 = bootstrap_ci(y, s, BootstrapConfig(n_boot=600, seed=5))
    r3 = bootstrap_ci(y, s, BootstrapConfig(n_boot=600, seed=6))
    assert r1 == r2
    assert r1.auroc_ci != r3.auroc_ci


def test_ci_coverage_binormal():
    # neg ~ N(0,1), pos ~ N(d,1): true AUROC = Phi(d / sqrt 2). 200 data sets, 500 resamples each.
    # Coverage over 200 repeats has binomial SE sqrt(.95*.05/200) = 0.0154; we allow 0.05 (3.2 SE),
    # which also absorbs the percentile bootstrap's small known undercoverage at n = 160 and the
    # Monte Carlo error of 500 resamples. (The 5-95 rule's percentiles are checked exactly above.)
    d, n_rep = 1.0, 200
    truth = stats.norm.cdf(d / math.sqrt(2))
    rng = np.random.default_rng(2024)
    hits = 0
    for rep in range(n_rep):
        y, s = _binormal(rng, 60, 100, d)
        r = bootstrap_ci(y, s, BootstrapConfig(n_boot=500, seed=rep))
        hits += r.auroc_ci[0] <= truth <= r.auroc_ci[1]
    assert abs(hits / n_rep - 0.95) <= 0.05, hits


def test_degenerate_resamples_are_counted_not_fatal():
    # 1 positive among 10 studies: a plain resample misses it with probability 0.9**10 = 0.349
    y = np.array([1] + [0] * 9)
    s = np.linspace(0, 1, 10)
    res = bootstrap_ci(y, s, BootstrapConfig(n_boot=2000, seed=1))
    naive = sum(
        int(c[0] == 0 or c[1:].sum() == 0)
        for blk in bootstrap_weights(y, 2000, 1, stratified=False)
        for c in blk
    )
    assert res.n_degenerate == naive
    p = 0.9**10
    assert abs(naive - 2000 * p) < 4 * math.sqrt(2000 * p * (1 - p))
    assert all(math.isfinite(v) for v in (*res.auroc_ci, *res.aupr_ci))
    assert bootstrap_ci(y, s, BootstrapConfig(n_boot=500, seed=1, stratified=True)).n_degenerate == 0
    t = paired_bootstrap_test(y, s, s[::-1], n_boot=2000, seed=1, stratified=False)
    assert t.n_degenerate == naive


# ---- paired test ---------------------------------------------------------------------------


@pytest.mark.parametrize("stratified", [False, True])
def test_paired_test_equals_naive_proc_formula(stratified):
    rng = np.random.default_rng(9)
    y, x = _binormal(rng, 15, 25, 1.0)
    sa = np.round(x + 0.5 * rng.normal(size=y.size), 1)
    sb = x + 1.5 * rng.normal(size=y.size)
    res = paired_bootstrap_test(y, sa, sb, n_boot=150, seed=3, stratified=stratified)
    diffs = []
    for counts in bootstrap_weights(y, 150, 3, stratified=stratified):
        for c in counts:
            idx = np.repeat(np.arange(y.size), c)  # same resampled studies for both models
            if y[idx].min() != y[idx].max():
                diffs.append(roc_auc_score(y[idx], sa[idx]) - roc_auc_score(y[idx], sb[idx]))
    d = roc_auc_score(y, sa) - roc_auc_score(y, sb)
    z = d / np.std(diffs, ddof=1)
    assert abs(res.z - z) < 1e-9
    assert abs(res.p_value - stats.norm.sf(z)) < 1e-12
    assert res.n_degenerate == 150 - len(diffs)


def test_paired_test_detects_a_better_model():
    rng = np.random.default_rng(1)
    y, x = _binormal(rng, 80, 120, 1.5)
    good = x + 0.3 * rng.normal(size=y.size)
    bad = x + 3.0 * rng.normal(size=y.size)
    assert paired_bootstrap_test(y, good, bad, n_boot=1000, seed=0).p_value < 1e-3
    assert paired_bootstrap_test(y, bad, good, n_boot=1000, seed=0).p_value > 0.999
    same = paired_bootstrap_test(y, good, good, n_boot=200, seed=0)
    assert same.auroc_diff == 0 and same.p_value == 0.5


def test_paired_test_p_uniform_under_null():
    # A and B: equally good, correlated scores. 200 repeats: KS test against U(0,1), and the
    # fraction below 0.05 within 0.05 +- 3 binomial SE (sqrt(.05*.95/200) = 0.0154).
    rng = np.random.default_rng(77)
    ps = []
    for rep in range(200):
        y, x = _binormal(rng, 60, 90, 1.0)
        sa = x + rng.normal(size=y.size)
        sb = x + rng.normal(size=y.size)
        ps.append(paired_bootstrap_test(y, sa, sb, n_boot=300, seed=rep).p_value)
    ps = np.array(ps)
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert abs((ps < 0.05).mean() - 0.05) <= 3 * math.sqrt(0.05 * 0.95 / 200)


# ---- compare + CLI -------------------------------------------------------------------------


def _two_models(tmp_path):
    rng = np.random.default_rng(4)
    n = 40
    y = (np.arange(n) % 3 == 0).astype(int)
    x = y + rng.normal(size=n)
    files, means = [], []
    for name, noise in (("a", 0.3), ("b", 2.0)):
        s = x + noise * rng.normal(size=n)
        rows, study_means = [], []
        for i in range(n):
            v = s[i] + np.array([-0.1, 0.1]) * (i % 4)
            rows += [(f"S{i:03d}", f"S{i:03d}_{k}", y[i], v[k]) for k in range(2)]
            study_means.append(v.mean())
        files.append(_write_csv(tmp_path / f"{name}.csv", ["study_id", "video_id", "label", "score"], rows))
        means.append(np.array(study_means))
    return files, y, means


def test_cli_compare_json(tmp_path):
    (fa, fb), y, (ma, mb) = _two_models(tmp_path)
    r = CliRunner().invoke(app, ["eval", "compare", str(fa), str(fb), "--json", "--n-boot", "300", "--seed", "2"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)  # exactly one JSON object on stdout
    for side, m in (("a", ma), ("b", mb)):
        got = out[side]
        assert {"auroc", "auroc_ci", "aupr", "aupr_ci", "n_studies"} <= got.keys()
        assert abs(got["auroc"] - roc_auc_score(y, m)) < 1e-12
        assert abs(got["aupr"] - average_precision_score(y, m)) < 1e-12
        assert got["n_studies"] == 40 and got["auroc_ci"][0] < got["auroc_ci"][1]
    assert out["ci_level"] == 0.95 and out["n_boot"] == 300
    assert out["ci_stratified"] is False and out["test_stratified"] is True
    ref = compare_predictions(read_predictions(fa), read_predictions(fb), BootstrapConfig(n_boot=300, seed=2))
    assert out["p_value"] == ref.test.p_value and 0 <= out["p_value"] < 0.05

    r = CliRunner().invoke(
        app,
        ["eval", "compare", str(fa), str(fb), "--json", "--n-boot", "300", "--ci-rule", "authors", "--stratified"],
    )
    out = json.loads(r.stdout)
    assert out["ci_level"] == 0.9 and out["ci_rule"] == "authors" and out["ci_stratified"] is True


def test_cli_compare_table_and_errors(tmp_path):
    (fa, fb), _, _ = _two_models(tmp_path)
    r = CliRunner().invoke(app, ["eval", "compare", str(fa), str(fb), "--n-boot", "200"])
    assert r.exit_code == 0, r.output
    assert "AUROC [95% CI]" in r.stdout and "p =" in r.stdout
    bad = _write_csv(tmp_path / "bad.csv", ["study_id", "label"], [("S000", 1)])
    r = CliRunner().invoke(app, ["eval", "compare", str(fa), str(bad), "--json"])
    assert r.exit_code == 2  # bad input: the same exit code in every command (echoclr.errors)
    assert "bad.csv" in r.stderr and "missing column 'score'" in r.stderr and r.stdout == ""
