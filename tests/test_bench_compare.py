"""The benchmark gate: ``compare_results`` on hand-made result files, and its exit codes through the installed
``echoclr`` console script; ``bench history`` on a folder of runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from echoclr.bench.compare import FASTER, SAME_NOISE, SLOWER, compare_results, load_results, report_markdown
from echoclr.bench.figures import figures
from echoclr.bench.history import load_history, plot_history
from echoclr.bench.results import check_result, row
from echoclr.bench.timing import Stats

REPO = Path(__file__).resolve().parents[1]
ECHOCLR = Path(sys.executable).with_name("echoclr")  # the console script installed beside this interpreter
MACHINE = {"cpu": "Test CPU", "cores": 2, "ram_gib": 8.0, "gpu": None, "os": "Linux",
           "load_avg_start": [1.0, 1.0, 1.0], "load_avg_end": [1.0, 1.0, 1.0]}
REF = "reference loader (DataLoader, decode whole AVI, scipy cubic rotate)"
OURS = "echoclr CPU pipeline (ClipReader + PairLoader, DALI CPU)"


def _row(name: str, values: list[float], *, cpu_ms: list[float] | None = None, **settings) -> dict:
    extra = {"cpu_ms_per_clip": sorted(cpu_ms)[len(cpu_ms) // 2], "cpu_ms_per_clip_values": cpu_ms} if cpu_ms else {}
    return row(name, Stats(tuple(values), 1, "clips/s"), precision="float32", memory_format="channels_last_3d",
               device="cpu", batch=64, **settings, **extra)


def loader_result(ref: list[float], ours: list[float], *, created: str = "2026-12-01T10:00:00+00:00",
                  extra_rows: list[dict] | None = None, batch: int = 32) -> dict:
    """A loader result as ``echoclr bench loader`` writes it, with the given per-round clips/s."""
    result = {
        "bench": "loader", "schema_version": 1, "created": created, "quick": False, "machine": dict(MACHINE),
        "versions": {"echoclr": "0.1.0", "git": {"commit": "0" * 40, "dirty": False}},
        "settings": {"workers": 2, "batch_size": batch, "clip_len": 4, "repeats": len(ref)},
        "rows": [_row(REF, ref, workers=2), _row(OURS, ours, threads=2)] + (extra_rows or []),
        "summary": {"ratio": sorted(ours)[len(ours) // 2] / sorted(ref)[len(ref) // 2],
                    "ratio_per_round": [o / r for o, r in zip(ours, ref)]},
    }
    check_result(result)
    return result


def write(tmp: Path, name: str, result: dict) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / name
    path.write_text(json.dumps(result))
    return path


def compare(base: dict, new: dict, tmp: Path, **kw):
    return compare_results(load_results(write(tmp / "b", "base.json", base)),
                           load_results(write(tmp / "n", "new.json", new)), **kw)


def by_name(report) -> dict:
    return {c.name: c for c in report.comparisons}


BASE_REF = [200.0, 210.0, 190.0, 205.0, 195.0]
BASE_OURS = [4000.0, 4300.0, 3900.0, 4100.0, 3950.0]  # ratio per round 20.0, 20.48, 20.53, 20.0, 20.26


def test_clear_regression_is_slower_and_fails_the_gate(tmp_path: Path) -> None:
    new = loader_result(BASE_REF, [2000.0, 2100.0, 1900.0, 2050.0, 2000.0])  # echoclr at half speed
    report = compare(loader_result(BASE_REF, BASE_OURS), new, tmp_path)
    c = by_name(report)
    ratio = c["ratio: echoclr CPU pipeline / reference loader, clips/s"]
    assert ratio.gated and ratio.verdict == SLOWER
    assert ratio.baseline["median"] == pytest.approx(3950 / 195, abs=1e-9)
    assert ratio.new["median"] == pytest.approx(10.0)
    assert ratio.change == pytest.approx(10.0 / ratio.baseline["median"] - 1)
    assert c[OURS].verdict == SLOWER and not c[OURS].gated  # absolute rows are shown, not gated by default
    assert c[REF].verdict == SAME_NOISE  # identical rounds
    assert report.verdict == SLOWER and report.exit_code == 1
    assert [r.name for r in report.regressions] == ["ratio: echoclr CPU pipeline / reference loader, clips/s"]
    assert "## Benchmark gate: slower" in report_markdown(report)


def test_change_within_noise_passes(tmp_path: Path) -> None:
    # echoclr 12% lower at the median, but its rounds spread ~25%: the change stays inside the noise
    base = loader_result(BASE_REF, [4000.0, 5000.0, 3600.0, 4400.0, 3200.0])
    new = loader_result(BASE_REF, [3520.0, 4500.0, 3000.0, 3900.0, 2900.0])
    report = compare(base, new, tmp_path, tolerance=0.05)
    ratio = by_name(report)["ratio: echoclr CPU pipeline / reference loader, clips/s"]
    assert ratio.change < -0.05  # beyond the tolerance alone...
    assert ratio.noise > abs(ratio.change)  # ...but inside the larger IQR of the two runs
    assert ratio.verdict == SAME_NOISE and report.exit_code == 0 and report.verdict == SAME_NOISE
    # the same change with steady rounds is a regression
    steady_base = loader_result(BASE_REF, BASE_OURS)
    steady_new = loader_result(BASE_REF, [o * 0.88 for o in BASE_OURS])
    assert compare(steady_base, steady_new, tmp_path / "steady", tolerance=0.05).exit_code == 1


def test_unmatched_rows_are_listed_not_dropped(tmp_path: Path) -> None:
    extra = _row("  breakdown: ClipReader.read_clips alone", [9000.0, 9100.0, 8900.0], threads=2)
    moved = _row("  breakdown: DALI CPU pipeline alone (clips in memory)", [5000.0, 5100.0, 4900.0], threads=2)
    base = loader_result(BASE_REF, BASE_OURS, extra_rows=[moved])
    new = loader_result(BASE_REF, BASE_OURS, extra_rows=[extra, {**moved, "threads": 4}])  # other settings
    report = compare(base, new, tmp_path)
    listed = {(u["name"].strip(), u["reason"].split(" (")[0]) for u in report.unmatched}
    assert listed == {
        ("breakdown: ClipReader.read_clips alone", "only in NEW"),
        ("breakdown: DALI CPU pipeline alone (clips in memory)", "only in NEW"),
        ("breakdown: DALI CPU pipeline alone (clips in memory)", "only in BASELINE"),
    }
    compared = {c.name.strip() for c in report.comparisons}
    assert not any(name.startswith("breakdown") for name in compared)
    assert {REF, OURS} <= compared
    assert "Unmatched (not compared)" in report_markdown(report) and report.exit_code == 0


def test_ratio_regression_with_equal_absolute_numbers(tmp_path: Path) -> None:
    # echoclr's clips/s are the same in both runs, but the reference got 1.5x faster on the NEW run's machine
    # state: in the same rounds echoclr lost its lead, which only the in-run ratio shows
    new = loader_result([r * 1.5 for r in BASE_REF], BASE_OURS)
    report = compare(loader_result(BASE_REF, BASE_OURS), new, tmp_path)
    c = by_name(report)
    assert c[OURS].baseline["median"] == c[OURS].new["median"] and c[OURS].verdict == SAME_NOISE
    assert c[REF].verdict == FASTER
    ratio = c["ratio: echoclr CPU pipeline / reference loader, clips/s"]
    assert ratio.verdict == SLOWER and ratio.change == pytest.approx(1 / 1.5 - 1, abs=1e-6)
    assert report.exit_code == 1


def test_gate_absolute_gates_rows_too(tmp_path: Path) -> None:
    # everything 30% slower, ratio unchanged: only --gate-absolute fails
    slow = loader_result([r * 0.7 for r in BASE_REF], [o * 0.7 for o in BASE_OURS])
    base = loader_result(BASE_REF, BASE_OURS)
    assert compare(base, slow, tmp_path / "a").exit_code == 0
    strict = compare(base, slow, tmp_path / "b", gate_absolute=True)
    assert strict.exit_code == 1 and {c.name for c in strict.regressions} == {REF, OURS}


def test_cpu_cost_ratio_per_round_and_train_overhead(tmp_path: Path) -> None:
    base = loader_result(BASE_REF, BASE_OURS)
    base["rows"][0].update(cpu_ms_per_clip=10.0, cpu_ms_per_clip_values=[10.0, 10.0, 10.0, 10.0, 10.0])
    base["rows"][1].update(cpu_ms_per_clip=0.4, cpu_ms_per_clip_values=[0.4, 0.5, 0.4, 0.4, 0.5])
    cost = {f.name: f for f in figures(base)}["ratio: reference CPU ms per clip / echoclr's"]
    assert cost.values == (25.0, 20.0, 25.0, 25.0, 20.0) and cost.kind == "ratio"

    def train(overheads: list[float]) -> dict:
        return {"bench": "train", "schema_version": 1, "created": "2026-12-01T10:00:00+00:00", "quick": False,
                "machine": dict(MACHINE), "versions": {}, "settings": {}, "rows": [],
                "summary": {"loader_overhead": {"pretrain, fp32, channels_last_3d": {
                    "overhead": sorted(overheads)[2], "overhead_per_round": overheads}}}}

    report = compare(train([0.01, 0.02, 0.0, 0.03, 0.01]), train([0.31, 0.30, 0.33, 0.29, 0.32]), tmp_path)
    (c,) = report.comparisons
    # compared by difference (overhead is near zero), lower is better: +0.30 overhead is -0.30 "change"
    assert c.difference and c.change == pytest.approx(-0.30) and c.verdict == SLOWER and report.exit_code == 1


def test_committed_results_compare_and_old_files_stay_readable() -> None:
    """The committed loader results (OpenCV kernel, then the native kernel): the gate calls the change faster."""
    results = REPO / "benchmarks" / "results"
    base = load_results(results / "loader-cpu-amd-epyc-2c-2026-11-22.json")
    report = compare_results(base, load_results(results))  # the folder: newest loader is the -2 file
    assert Path(report.runs[0]["new"]["file"]).name == "loader-cpu-amd-epyc-2c-2026-11-22-2.json"
    ratio = by_name(report)["ratio: echoclr CPU pipeline / reference loader, clips/s"]
    assert ratio.verdict == FASTER and ratio.baseline["rounds"][:2] == pytest.approx([16.58, 15.41], abs=0.01)
    assert report.exit_code == 0
    assert any(u["reason"].startswith("baseline run without") or u["reason"].startswith("no baseline run")
               for u in report.unmatched)  # ingest and train are in the folder only
    assert {"repeats: 9 -> 5"} <= set(report.runs[0]["settings_differ"])


def test_bad_input_raises_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_results(tmp_path / "nope")
    broken = write(tmp_path, "broken.json", {})
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not readable JSON"):
        load_results(broken)
    with pytest.raises(ValueError, match="no benchmark result"):
        load_results(write(tmp_path / "empty", "other.json", {"a": 1}).parent)
    train = loader_result(BASE_REF, BASE_OURS)
    train["bench"] = "train"
    with pytest.raises(ValueError, match="no run in NEW has a baseline"):
        compare(loader_result(BASE_REF, BASE_OURS), train, tmp_path / "mismatch")


def _gate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ECHOCLR), "bench", "compare", *args], capture_output=True, text=True, timeout=300)


def test_gate_exit_codes_through_the_console_script(tmp_path: Path) -> None:
    base = write(tmp_path / "base", "loader.json", loader_result(BASE_REF, BASE_OURS))
    same = write(tmp_path / "same", "loader.json", loader_result(BASE_REF, [o * 0.98 for o in BASE_OURS]))
    slow = write(tmp_path / "slow", "loader.json", loader_result(BASE_REF, [o * 0.5 for o in BASE_OURS]))

    ok = _gate(str(base.parent), str(same.parent))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verdict: same within noise" in ok.stdout

    md = tmp_path / "report" / "gate.md"
    bad = _gate(str(base), str(slow), "--tolerance", "5", "--markdown", str(md))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "verdict: slower" in bad.stdout and "-50.0%" in bad.stdout
    assert md.read_text().startswith("## Benchmark gate: slower (1 gated figure(s) beyond tolerance)")

    as_json = _gate(str(base), str(slow), "--json")
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc["verdict"] == "slower" and doc["exit_code"] == 1 and doc["tolerance"] == 0.1

    missing = _gate(str(base), str(tmp_path / "missing"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")
    assert "missing does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr + missing.stdout
    tol = _gate(str(base), str(slow), "--tolerance", "-3")
    assert tol.returncode == 2 and "--tolerance" in tol.stderr


def test_history_series_drift_and_plot(tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    for day, factor in ((1, 1.0), (2, 0.95), (3, 0.9)):  # a slow drift, 5% per run
        write(folder / "sub", f"loader-{day}.json",
              loader_result(BASE_REF, [o * factor for o in BASE_OURS], created=f"2026-12-0{day}T10:00:00+00:00"))
    history = load_history(folder)
    (machine,) = history
    assert machine == "cpu-test-cpu-2c"
    series = {s.figure.name: s for s in history[machine]}
    ratio = series["ratio: echoclr CPU pipeline / reference loader, clips/s"]
    assert [p.created[:10] for p in ratio.points] == ["2026-12-01", "2026-12-02", "2026-12-03"]
    assert ratio.drift == pytest.approx(-0.10, abs=1e-6)
    assert series[REF].drift == pytest.approx(0.0)

    import matplotlib.image

    png = plot_history({machine: [ratio, series[OURS]]}, tmp_path / "h.png")
    assert matplotlib.image.imread(png).shape[:2] == (288, 1080)  # two panels side by side at 90 dpi

    out = subprocess.run([str(ECHOCLR), "bench", "history", str(folder), "--figure", "ratio: echoclr",
                          "--plot", str(tmp_path / "cli.png")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "-10.0%" in out.stdout and "12-03 10:00" in out.stdout
    assert matplotlib.image.imread(tmp_path / "cli.png").shape[:2] == (288, 540)


def test_native_augment_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    from echoclr.bench.loader import LoaderBenchConfig, _loader_config, cpu_augment_kernel

    monkeypatch.delenv("ECHOCLR_DISABLE_NATIVE_AUGMENT", raising=False)
    assert cpu_augment_kernel() == "fused" and _loader_config(LoaderBenchConfig(), None).cpu_rotate == "fused"
    monkeypatch.setenv("ECHOCLR_DISABLE_NATIVE_AUGMENT", "1")
    assert cpu_augment_kernel() == "dali" and _loader_config(LoaderBenchConfig(), None).cpu_rotate == "dali"
    monkeypatch.setenv("ECHOCLR_DISABLE_NATIVE_AUGMENT", "0")
    assert cpu_augment_kernel() == "fused"


def test_gate_presets_are_real_measurements() -> None:
    from echoclr.bench.loader import LoaderBenchConfig
    from echoclr.bench.train import TrainBenchConfig

    loader = LoaderBenchConfig.gate()
    assert not loader.quick and loader.dataset == LoaderBenchConfig().dataset and loader.repeats == 5
    assert loader.profile is False and loader.batch_size == LoaderBenchConfig().batch_size
    train = TrainBenchConfig.gate(device="cpu").resolved(cuda=False)
    assert not train.quick and train.repeats == 5 and train.size == 32 and train.tasks == ("pretrain",)
    assert train.end_to_end and train.pretrain_batch == TrainBenchConfig().resolved(cuda=False).pretrain_batch
