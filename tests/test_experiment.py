"""Evaluation runs and the label-titration grid: `echoclr experiment` end to end on a tiny real store, resume,
`echoclr eval run` on a fine-tuned checkpoint, and the report's numbers against the statistics computed directly."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from echoclr.cli.app import app
from echoclr.eval import (
    BootstrapConfig,
    ResultRow,
    auroc,
    paired_bootstrap_test,
    read_predictions,
    summarize_repeats,
    titration_plot,
)
from echoclr.ingest import ingest_rows, read_manifest
from echoclr.run import ExperimentConfig, run_experiment
from echoclr.store import PreprocessConfig
from echoclr.train import FinetuneConfig, PretrainConfig, RuntimeConfig

RATIOS = (0.5, 1.0)
INITS = ("random", "echoclr")
SPLITS = ("test", "ext_test")
runner = CliRunner()


@pytest.fixture(scope="module")
def grid_store(tiny_store, tmp_path_factory):
    """tiny_store's videos re-ingested with explicit splits and a study label ``y`` that alternates by study.

    tiny_store's own test split holds negatives only, where AUROC is undefined; here test has 2 positive and 2
    negative studies and ext_test 1 and 1 (5 train studies, 1 val).
    """
    source = tiny_store.parent / "data" / "manifest.csv"
    with source.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    studies = sorted({r["study_id"] for r in rows})
    assert len(studies) == 12
    split = {s: "train" if i < 5 else "val" if i == 5 else "test" if i < 10 else "ext_test"
             for i, s in enumerate(studies)}
    root = tmp_path_factory.mktemp("grid_store")
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "study_id", "video_id", "split", "y"])
        for r in rows:
            writer.writerow([str((source.parent / r["path"]).resolve()), r["study_id"], r["video_id"],
                             split[r["study_id"]], studies.index(r["study_id"]) % 2])
    result = ingest_rows(read_manifest(manifest), root / "store.zarr",
                         preprocess=PreprocessConfig(size=32, chunk_frames=4), workers=1)
    assert not result.failures
    return root / "store.zarr"


def _library_config(n_boot: int = 200) -> ExperimentConfig:
    """The config the CLI call in ``grid`` builds from its options."""
    return ExperimentConfig(
        finetune=FinetuneConfig(label="y", lr=1e-3, clip_len=4, batch_size=8, max_epochs=1, eval_clips=1,
                                runtime=RuntimeConfig(device="cpu", loader_threads=2, size=16)),
        methods=("echoclr",),
        inits=("random",),
        ratios=RATIOS,
        pretrain=PretrainConfig(batch_size=4, epochs=1,
                                runtime=RuntimeConfig(device="cpu", loader_threads=2, size=16, max_steps=2)),
        bootstrap=BootstrapConfig(n_boot=n_boot),
    )


@pytest.fixture(scope="module")
def grid(grid_store, tmp_path_factory):
    """The 2 inits x 2 ratios grid, run once through the CLI."""
    out = tmp_path_factory.mktemp("grid") / "exp"
    done = runner.invoke(app, [
        "experiment", str(grid_store), "--label", "y", "--out", str(out), "--methods", "echoclr",
        "--inits", "random", "--ratios", "0.5,1.0", "--pretrain-epochs", "1", "--max-pretrain-steps", "2",
        "--pretrain-batch-size", "4", "--lr", "0.001", "--clip-len", "4", "--batch-size", "8", "--max-epochs", "1",
        "--eval-clips", "1", "--n-boot", "200", "--device", "cpu", "--size", "16", "--threads", "2",
    ])
    assert done.exit_code == 0, done.output
    return out


def _results(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _cell(out: Path, init: str, ratio: float) -> Path:
    return out / "finetune" / init / f"ratio_{ratio:g}"


def test_grid_writes_table_plots_and_report(grid):
    rows = _results(grid)
    assert sorted((r["split"], r["init"], float(r["ratio"])) for r in rows) == sorted(
        (s, i, r) for s in SPLITS for i in INITS for r in RATIOS)
    for r in rows:
        cell = _cell(grid, r["init"], float(r["ratio"]))
        predictions = read_predictions(cell / f"predictions_{r['split']}.csv")
        assert float(r["auroc"]) == auroc(predictions.labels, predictions.scores)
        assert int(r["n_studies"]) == predictions.n_studies == (4 if r["split"] == "test" else 2)
        assert float(r["auroc_ci_low"]) <= float(r["auroc_ci_high"])
        assert int(r["n_train_studies"]) == {0.5: 3, 1.0: 5}[float(r["ratio"])]  # ceil(ratio * 5 train studies)
        assert (r["p_value"] == "") == (r["init"] == "echoclr")
        cached = json.loads((cell / f"metrics_{r['split']}.json").read_text())
        assert cached["auroc"] == float(r["auroc"]) and cached["n_boot"] == 200 and cached["ci_level"] == 0.95

    table = (grid / "results.md").read_text().splitlines()
    assert len(table) == 2 + len(rows) and "p (EchoCLR > init)" in table[0]
    plots = sorted(p.name for p in (grid / "plots").glob("*.png"))
    # Fig. 2 group (random, EchoCLR) is drawn; Fig. 3 (SimCLR, MI-SimCLR, EchoCLR) has one init here and is not
    assert plots == sorted(f"{m}_{s}_{g}.png" for s in SPLITS for m, g in (("auroc", "fig2"), ("auroc", "all"),
                                                                           ("aupr", "all")))
    import matplotlib.image

    assert matplotlib.image.imread(grid / "plots" / "auroc_test_fig2.png").shape[:2] == (720, 1050)
    report = (grid / "report.md").read_text()
    html = (grid / "report.html").read_text()
    for name in plots:
        assert f"(plots/{name})" in report and f"src='plots/{name}'" in html
    assert "(results.csv)" in report and "(results.md)" in report


def _mtimes(out: Path) -> dict[str, float]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("checkpoint.pt")}


def test_rerun_skips_finished_runs_and_reuses_cached_metrics(grid, grid_store):
    before = _mtimes(grid)
    assert len(before) == 1 + 2 * len(INITS) * len(RATIOS)  # pretrain + per cell: the model and its lr trial
    events = []
    result = run_experiment(grid_store, grid, _library_config(), on_log=events.append)
    assert result.trained == ()
    assert set(result.skipped) == {"pretrain/echoclr"} | {f"finetune/{i}/ratio_{r:g}" for i in INITS for r in RATIOS}
    assert not [e for e in events if e["event"] == "train"]
    assert {e["status"] for e in events if e["event"] == "metrics"} == {"cached"}
    assert _mtimes(grid) == before

    # other bootstrap settings: statistics are recomputed, nothing is trained again
    events.clear()
    result = run_experiment(grid_store, grid, _library_config(n_boot=300), on_log=events.append)
    assert result.trained == () and _mtimes(grid) == before
    assert {e["status"] for e in events if e["event"] == "metrics"} == {"computed"}
    assert all(r.p_value is not None for r in result.rows if r.init != "echoclr")


def test_report_p_values_equal_the_paired_test_on_the_prediction_files(grid):
    bootstrap = json.loads((grid / "experiment.json").read_text())["bootstrap"]
    checked = 0
    for row in _results(grid):
        if row["init"] == "echoclr":
            continue
        ratio = float(row["ratio"])
        ref = read_predictions(_cell(grid, "echoclr", ratio) / f"predictions_{row['split']}.csv")
        other = read_predictions(_cell(grid, row["init"], ratio) / f"predictions_{row['split']}.csv")
        assert ref.study_ids == other.study_ids
        test = paired_bootstrap_test(ref.labels, ref.scores, other.scores, n_boot=bootstrap["n_boot"],
                                     seed=bootstrap["seed"], stratified=True)
        assert float(row["p_value"]) == test.p_value
        checked += 1
    assert checked == len(SPLITS) * len(RATIOS)


def test_eval_run_reproduces_finetune_predictions_and_their_auroc(grid, grid_store, tmp_path):
    cell = _cell(grid, "random", 1.0)
    args = ["eval", "run", str(cell), str(grid_store), "--label", "y", "--split", "test", "--out", str(tmp_path),
            "--clips", "1", "--device", "cpu", "--threads", "2", "--n-boot", "200"]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    metrics = json.loads((tmp_path / "metrics_test.json").read_text())
    studies = read_predictions(tmp_path / "predictions_test.csv")
    assert metrics["auroc"] == auroc(studies.labels, studies.scores)
    assert metrics["n_studies"] == 4 and metrics["ci_level"] == 0.95 and metrics["ci_rule"] == "paper"
    assert (metrics["clip_len"], metrics["size"], metrics["clips_per_video"]) == (4, 16, 1)  # from the checkpoint
    from_videos = read_predictions(tmp_path / "predictions_test_videos.csv")  # the study mean of the video rows
    np.testing.assert_allclose(from_videos.scores, studies.scores, atol=1e-6)
    # the same model on the same clip: the fine-tuning run's own predictions, so weights, size and clips match
    np.testing.assert_allclose(studies.scores, read_predictions(cell / "predictions_test.csv").scores, atol=1e-5)

    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_eval_run_refuses_what_is_not_a_matching_finetuned_model(grid, grid_store, tmp_path):
    done = runner.invoke(app, ["eval", "run", str(grid / "pretrain" / "echoclr"), str(grid_store), "--out",
                               str(tmp_path / "a"), "--device", "cpu"])
    assert done.exit_code == 2 and "pretraining checkpoint" in done.output
    state = torch.load(_cell(grid, "random", 0.5) / "checkpoint.pt", weights_only=True)
    state["model"]["surprise"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    done = runner.invoke(app, ["eval", "run", str(tmp_path / "bad.pt"), str(grid_store), "--out", str(tmp_path / "b"),
                               "--device", "cpu"])
    assert done.exit_code == 2 and "surprise" in done.output
    done = runner.invoke(app, ["eval", "run", str(_cell(grid, "random", 0.5)), str(grid_store), "--label", "nope",
                               "--out", str(tmp_path / "c"), "--device", "cpu"])
    assert done.exit_code == 2 and "'nope' is not in" in done.output


def test_experiment_config_derives_cell_configs_and_validates(tmp_path):
    config = _library_config()
    cell = config.finetune_config("echoclr", 0.5, tmp_path)
    assert cell.init == str(tmp_path.resolve() / "pretrain" / "echoclr") and cell.ratio == 0.5
    assert cell.clip_len == 4 and cell.runtime.size == 16 and cell.label == config.label == "y"
    assert config.pretrain_config("echoclr").method == "echoclr"
    assert config.init_names == ("random", "echoclr")
    kinetics = ExperimentConfig(finetune=config.finetune, inits=("kinetics:w.pth", "random"), ratios=(1.0, 0.1))
    assert kinetics.ratios == (0.1, 1.0)
    assert kinetics.init_names == ("random", "kinetics", "simclr", "mi-simclr", "echoclr")
    assert kinetics.finetune_config("kinetics", 1.0, tmp_path).init == f"kinetics:{Path('w.pth').resolve()}"
    preset = ExperimentConfig.cpu_preset("lvh", pretrain_steps=5, size=32)
    assert preset.pretrain.runtime.max_steps == 5 and preset.finetune.runtime.size == 32
    assert preset.finetune.runtime.max_steps is None and preset.ratios == (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)

    bad = [
        ({"methods": ("byol",)}, "methods"),
        ({"inits": ("echoclr",)}, "SSL methods go in methods"),
        ({"inits": ("kinetics:",)}, "kinetics:PATH"),
        ({"inits": (), "methods": ()}, "no initialisation"),
        ({"ratios": (0.5, 0.5)}, "ratios"),
        ({"ratios": (0.0,)}, "ratios"),
        ({"reference": "moco"}, "reference"),
        ({"splits": ("train",)}, "splits"),
        ({"repeats": 0}, "repeats"),
    ]
    for overrides, match in bad:
        with pytest.raises(ValueError, match=match):
            ExperimentConfig(finetune=config.finetune, **overrides)


def test_titration_plot_needs_rows_and_a_known_metric(tmp_path):
    row = ResultRow("test", "echoclr", 0.1, 12, 0.1, 0.8, (0.7, 0.9), 0.6, (0.5, 0.7), 0.95, 40, 10, "echoclr", None)
    path = titration_plot([row], tmp_path / "one.png", split="test", label="lvh")
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="metric"):
        titration_plot([row], tmp_path / "x.png", split="test", metric="f1")
    with pytest.raises(ValueError, match="no result rows"):
        titration_plot([row], tmp_path / "x.png", split="ext_test")


def test_repeats_add_subset_draws_keep_finished_runs_and_summarise_the_spread(grid, grid_store):
    # extends the module's grid in place (cells name their SSL init by absolute path, so a copy would not match):
    # it runs after every other test of the grid, which is why it is defined after them
    out = grid
    events = []
    result = run_experiment(grid_store, out, replace(_library_config(), repeats=2), on_log=events.append)
    # repeat 0 is the single-titration cell: raising --repeats trains only the new draws
    assert sorted(result.trained) == sorted(f"finetune/{i}/ratio_{r:g}_repeat1" for i in INITS for r in RATIOS)
    assert all(f"finetune/{i}/ratio_{r:g}" in result.skipped for i in INITS for r in RATIOS)
    for init in INITS:
        saved = json.loads((out / "finetune" / init / "ratio_0.5_repeat1" / "config.json").read_text())
        assert (saved["subset_seed"], saved["seed"]) == (1, 1)

    rows = _results(out)
    assert sorted((r["split"], r["init"], float(r["ratio"]), int(r["repeat"])) for r in rows) == sorted(
        (s, i, r, k) for s in SPLITS for i in INITS for r in RATIOS for k in (0, 1))
    by_key = {(r["split"], r["init"], float(r["ratio"]), int(r["repeat"])): r for r in rows}
    for (split, init, ratio, repeat), r in by_key.items():
        folder = out / "finetune" / init / (f"ratio_{ratio:g}" + (f"_repeat{repeat}" if repeat else ""))
        predictions = read_predictions(folder / f"predictions_{split}.csv")
        assert float(r["auroc"]) == auroc(predictions.labels, predictions.scores)
        if init == "random":  # the paired test is against EchoCLR on the same subset draw
            ref = read_predictions(out / "finetune" / "echoclr" / folder.name / f"predictions_{split}.csv")
            want = paired_bootstrap_test(ref.labels, ref.scores, predictions.scores, n_boot=200, seed=0,
                                         stratified=True)
            assert float(r["p_value"]) == pytest.approx(want.p_value)

    with (out / "summary.csv").open(newline="") as handle:
        summary = list(csv.DictReader(handle))
    assert len(summary) == len(SPLITS) * len(INITS) * len(RATIOS)
    for s in summary:
        key = (s["split"], s["init"], float(s["ratio"]))
        values = [float(by_key[(*key, k)]["auroc"]) for k in (0, 1)]
        assert int(s["n_repeats"]) == 2
        assert float(s["auroc_mean"]) == pytest.approx(np.mean(values))
        assert float(s["auroc_sd"]) == pytest.approx(np.std(values, ddof=1))
        assert (float(s["auroc_min"]), float(s["auroc_max"])) == (min(values), max(values))
        if s["init"] == "random":
            wins = [float(by_key[(key[0], "echoclr", key[2], k)]["auroc"]) > values[k] for k in (0, 1)]
            assert float(s["win_fraction"]) == np.mean(wins)
        else:
            assert s["win_fraction"] == ""
    assert "AUROC mean ± SD [min, max]" in (out / "results.md").read_text()
    assert "## Over subset draws" in (out / "report.md").read_text()


def test_summarize_repeats_counts_wins_and_significant_repeats():
    def row(init, repeat, value, ref=None, p=None):
        return ResultRow("test", init, 0.1, 10, 1e-3, value, (0.0, 1.0), 0.5, (0.0, 1.0), 0.95, 48, 16,
                         "echoclr", p, repeat=repeat, reference_auroc=ref)

    rows = [row("echoclr", k, v) for k, v in enumerate((0.8, 0.6, 0.7))]
    rows += [row("random", 0, 0.5, 0.8, 0.01), row("random", 1, 0.65, 0.6, 0.7), row("random", 2, 0.4, 0.7, 0.04)]
    random, echo = summarize_repeats(rows)
    assert (random.init, echo.init) == ("random", "echoclr")
    assert random.n_repeats == 3 and random.win_fraction == pytest.approx(2 / 3) and random.n_significant == 2
    assert random.auroc_mean == pytest.approx(np.mean([0.5, 0.65, 0.4]))
    assert random.auroc_sd == pytest.approx(np.std([0.5, 0.65, 0.4], ddof=1))
    assert echo.win_fraction is None and echo.n_significant is None
    assert (echo.auroc_min, echo.auroc_max) == (0.6, 0.8)
