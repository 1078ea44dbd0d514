"""The demo end to end on a small synthetic dataset (the full CPU preset took 10.8 min on 2 cores, see the README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from echoclr.eval import auroc, read_predictions
from echoclr.run.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_demo_runs_end_to_end_with_repeats_and_probes_and_resumes(tmp_path, monkeypatch):
    # a relative --out, as `make demo` passes it (the experiment reports absolute paths; the report links them)
    monkeypatch.chdir(tmp_path)
    config = DemoConfig(out=Path("demo"), n_studies=20, ratios=(1.0,), repeats=2, probe_repeats=3,
                        pretrain_steps=2, finetune_epochs=1, device="cpu", workers=1)
    lines: list[str] = []
    result = run_demo(config, log=lines.append)
    out = tmp_path / "demo"
    report = result.report.read_text()
    h = result.headline
    assert h["n_repeats"] == 2 and set(h["inits"]) == {"echoclr", "random"}
    # every repeat's AUROC in the headline is that run's test predictions, re-scored here
    for init, values in h["inits"].items():
        for repeat, value in enumerate(values["aurocs"]):
            cell = out / "experiment" / "finetune" / init / ("ratio_1" + (f"_repeat{repeat}" if repeat else ""))
            predictions = read_predictions(cell / "predictions_test.csv")
            assert value == auroc(predictions.labels, predictions.scores)
            saved = json.loads((cell / "config.json").read_text())
            assert saved["subset_seed"] == repeat and saved["max_epochs"] == 1
    assert "Ordering by mean AUROC" in report and "EchoCLR higher in" in report
    # probes: one embeddings file and one summary per encoder (random weights and the pretrained EchoCLR)
    assert set(result.probes) == {"random", "echoclr"}
    for init, probed in result.probes.items():
        assert {(s["probe"], s["ratio"]) for s in probed["summaries"]} == {
            (p, r) for p in ("linear", "knn") for r in (0.1, 1.0)}
        assert all(s["n_repeats"] == 3 for s in probed["summaries"])
        assert (out / "probes" / f"{init}.npz").exists()
    assert "Linear and kNN probes" in report
    # Grad-CAM of the CPU preset's 16 px clips explains layer2 (4x4 cells), not the 1x1 layer4
    assert any("Grad-CAM of encoder.layer2: 4x4 cells" in line for line in lines)
    assert "Deterministic for a given machine" in report
    assert "](experiment/" in report and str(tmp_path) not in report  # links relative to the report's folder

    # a rerun trains nothing; a third repeat adds only its two runs; other data are refused
    again: list[str] = []
    run_demo(config, log=again.append)
    assert any("reusing" in line for line in again) and any("skipped" in line for line in again)
    more: list[str] = []
    bigger = run_demo(DemoConfig(**{**config.__dict__, "repeats": 3}), log=more.append)
    assert bigger.headline["n_repeats"] == 3
    assert sum("status=start" in line and "init=" in line for line in more) == 2
    with pytest.raises(FileExistsError, match="other data"):
        run_demo(DemoConfig(out=out, n_studies=21, device="cpu"), log=again.append)
