"""Smoke tests of the benchmark code paths on tiny inputs (no timing assertions: benchmarks measure, tests check)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from echoclr.bench import QUICK_SPEC, Stats, check_result, measure_rate, prepare_dataset, results_markdown
from echoclr.bench.environment import machine_info, machine_tag
from echoclr.bench.flops import training_flops_per_clip
from echoclr.bench.ingest import IngestBenchConfig, choose_layout, run_ingest_bench
from echoclr.bench.loader import LoaderBenchConfig
from echoclr.bench.reference_loader import export_store_as_avis, reference_loader
from echoclr.bench.results import make_result, row, write_result
from echoclr.bench.timing import measure_rates_interleaved
from echoclr.bench.train import TrainBenchConfig, run_train_bench
from echoclr.store import open_store


@pytest.fixture(scope="module")
def bench_work(tmp_path_factory) -> Path:
    """A work folder holding the quick synthetic dataset and its store (made once, reused by every bench)."""
    work = tmp_path_factory.mktemp("bench-work")
    prepare_dataset(work, QUICK_SPEC)
    return work


def _ok_rows(result: dict) -> list[dict]:
    return [r for r in result["rows"] if r["status"] == "ok"]


# ------------------------------------------------------------------ timing and result documents
def test_measure_rate_discards_warmup_and_summarises() -> None:
    calls = []
    seconds = iter([9.0, 1.0, 2.0, 4.0])  # the first call is the warm-up and must not count

    def run() -> tuple[float, float]:
        calls.append("run")
        return 8.0, next(seconds)

    stats = measure_rate(run, warmup=1, repeats=3, unit="clips/s")
    assert len(calls) == 4
    assert stats.values == (8.0, 4.0, 2.0)
    assert stats.median == 4.0 and stats.q1 == 3.0 and stats.q3 == 6.0
    assert stats.to_json()["iqr"] == 3.0 and stats.to_json()["warmup"] == 1 and stats.repeats == 3
    assert stats.iqr_fraction == 0.75

    cheap = []
    measure_rate(lambda: (1.0, 1.0), warmup=2, repeats=1, unit="x/s", warmup_run=lambda: cheap.append(1))
    assert cheap == [1, 1]
    with pytest.raises(ValueError, match="repeats"):
        measure_rate(run, warmup=0, repeats=0, unit="clips/s")
    with pytest.raises(ValueError, match="cannot form a rate"):
        measure_rate(lambda: (1.0, 0.0), warmup=0, repeats=1, unit="clips/s")


def test_interleaved_measurements_run_in_rounds() -> None:
    calls = []

    def run(name: str, seconds: float):
        def once() -> tuple[float, float]:
            calls.append(name)
            return 10.0, seconds
        return once

    stats = measure_rates_interleaved({"a": run("a", 1.0), "b": run("b", 2.0)}, warmup=1, repeats=2, unit="x/s",
                                      warmup_runs={"a": lambda: calls.append("a-warm")})
    assert calls == ["a-warm", "b", "a", "b", "a", "b"]  # every round runs every configuration once
    assert stats["a"].values == (10.0, 10.0) and stats["b"].median == 5.0 and stats["b"].warmup == 1


def test_result_document_file_name_and_markdown(tmp_path: Path) -> None:
    machine = machine_info()
    rows = [
        row("fast thing", Stats((10.0, 12.0, 11.0), 1, "clips/s"), precision="float32", memory_format="contiguous",
            device="cpu", batch=4),
        row("gpu thing", None, precision="bf16 autocast", memory_format="channels_last_3d", device="cuda",
            skipped="no GPU"),
    ]
    result = make_result("loader", machine=machine, settings={"k": 1}, rows=rows, summary={}, quick=False)
    for key in ("cpu", "cores", "ram_gib", "gpu", "load_avg_start", "load_avg_end"):
        assert key in result["machine"]
    assert "hostname" not in json.dumps(result["machine"]).lower()
    for key in ("python", "torch", "dali", "zarr", "numcodecs", "numpy", "echoclr", "git"):
        assert key in result["versions"]

    path = write_result(result, tmp_path)
    assert path.name == f"loader-{machine_tag(machine)}-{result['created'][:10]}.json"
    assert json.loads(path.read_text())["rows"][0]["median"] == 11.0
    second = write_result(result, tmp_path)  # the same day again: kept beside the first, nothing lost
    assert second.name == path.name.replace(".json", "-2.json") and path.exists()
    assert write_result(result, tmp_path, overwrite=True) == path

    text = results_markdown([result])
    assert "| loader | fast thing | 11 |" in text and "skipped: no GPU" in text and "batch 4" in text
    assert "load average" in text and machine["cpu"] in text

    broken = {**result, "rows": [{k: v for k, v in rows[0].items() if k != "memory_format"}]}
    with pytest.raises(ValueError, match="memory_format"):
        check_result(broken)
    with pytest.raises(ValueError, match="either stats or a skipped reason"):
        row("bad", None, precision="x", memory_format="y", device="cpu")


def test_choose_layout_scores_both_clip_lengths() -> None:
    def entry(c, codec, size, ms4, ms16):
        return {"chunk_frames": c, "codec": codec, "bytes_per_frame": size, "compression": 12544 / size,
                "read4_cpu_ms_per_clip": ms4, "read16_cpu_ms_per_clip": ms16}

    table = [entry(4, "lz4-5", 6000, 0.10, 0.40), entry(8, "lz4-5", 6000, 0.11, 0.32),
             entry(8, "zstd-5", 4400, 0.20, 0.64), entry(16, "lz4-5", 6000, 0.16, 0.30)]
    choice = choose_layout(table)
    # c8: sqrt(0.10/0.11 * 0.30/0.32) = 0.92 beats c4: sqrt(1.0 * 0.75) = 0.87 and c16: sqrt(0.625 * 1.0) = 0.79
    assert choice["choice"] == {"chunk_frames": 8, "codec": "lz4-5"} and choice["default_is_choice"]
    assert choice["scores"]["c8 zstd-5"] == pytest.approx((0.10 / 0.20 * 0.30 / 0.64) ** 0.5)
    assert "smallest layout, c8 zstd-5" in choice["why"] and "Equally cheap" not in choice["why"]
    table[0]["read16_cpu_ms_per_clip"] = 0.36  # c4 now scores 0.91 against 0.92: a tie within 5%
    assert "Equally cheap within 5%: c4 lz4-5" in choose_layout(table)["why"]


@pytest.mark.parametrize("config_class", [IngestBenchConfig, LoaderBenchConfig, TrainBenchConfig])
def test_bench_configs_serialise_and_validate(config_class) -> None:
    for config in (config_class(), config_class.smoke()):
        settings = json.loads(json.dumps(config.to_json()))  # plain JSON, as written into every result
        assert isinstance(settings["quick"], bool) and settings["quick"] == config.quick
    assert config_class().quick is False and config_class.smoke().quick is True
    with pytest.raises(ValueError, match=config_class.__name__):
        config_class(repeats=0)


# ------------------------------------------------------------------ measured quantities
def test_flops_per_clip_matches_design_numbers() -> None:
    flops = training_flops_per_clip("pretrain", clip_len=4, size=112)
    assert 20e9 < flops["forward"] < 23e9  # DESIGN.md: 21.6 GFLOP forward
    assert 60e9 < flops["training"] < 66e9  # about 64 GFLOP per training step
    half = training_flops_per_clip("pretrain", clip_len=4, size=56)
    assert half["training"] == pytest.approx(flops["training"] / 4, rel=0.05)  # ~ H * W (edge rounding)
    long = training_flops_per_clip("finetune", clip_len=16, size=112)
    assert 230e9 < long["training"] < 250e9  # about 241 GFLOP at 16 frames
    with pytest.raises(ValueError, match="task"):
        training_flops_per_clip("distill", clip_len=4, size=112)


# ------------------------------------------------------------------ reference loader
def test_reference_loader_yields_shaped_batches_with_order_labels(bench_work: Path, tmp_path: Path) -> None:
    data = prepare_dataset(bench_work, QUICK_SPEC)
    store = open_store(data.store)
    paths = export_store_as_avis(store, tmp_path / "avi")
    assert len(paths) == len(store.records) and all(Path(p).stat().st_size > 0 for p in paths)
    pairs = [(paths[0], paths[1]), (paths[1], paths[0]), (paths[2], paths[2]), (paths[0], paths[2]),
             (paths[1], paths[1])]
    batches = list(reference_loader(pairs, batch_size=2, workers=0, clip_len=4))
    assert len(batches) == 2  # drop_last: 5 pairs -> 2 batches of 2
    for x_i, x_j, order_i, order_j in batches:
        for x in (x_i, x_j):
            assert x.shape == (2, 1, 4, QUICK_SPEC.size, QUICK_SPEC.size) and x.dtype == torch.float32
            assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        for order in (order_i, order_j):
            assert order.shape == (2,) and int(order.min()) >= 0 and int(order.max()) < 24


# ------------------------------------------------------------------ whole benches, tiny
def test_ingest_bench_quick(bench_work: Path) -> None:
    result = run_ingest_bench(IngestBenchConfig.smoke(chunk_frames=(4,), codecs=("lz4",)), bench_work)
    check_result(result)
    assert result["quick"] and _ok_rows(result) == result["rows"]
    assert all(r["median"] > 0 and r["precision"] and r["memory_format"] for r in result["rows"])
    layout = result["summary"]["layouts"][0]
    assert layout["raw_bytes_per_frame"] == QUICK_SPEC.size**2 and 0 < layout["bytes_per_frame"]
    assert layout["read4_cpu_ms_per_clip"] > 0 and layout["read16_cpu_ms_per_clip"] > 0
    assert result["summary"]["recommendation"]["choice"] == {"chunk_frames": 4, "codec": "lz4-5"}
    assert not (bench_work / QUICK_SPEC.name / "scratch").exists()  # scratch stores are removed


def test_train_bench_quick_model_and_end_to_end(bench_work: Path) -> None:
    config = TrainBenchConfig.smoke(device="cpu", tasks=("pretrain",), size=16, matmul_size=128)
    result = run_train_bench(config, bench_work)
    check_result(result)
    names = [(r["name"], r["status"], r["precision"]) for r in result["rows"]]
    assert names[1:] == [("pretrain, model only", "ok", "fp32"), ("pretrain, end to end", "ok", "fp32")]
    assert names[0][1] == "skipped" and "CUDA-only" in result["rows"][0]["reason"]  # bf16 autocast on a CPU
    for r in _ok_rows(result):
        assert r["median"] > 0 and r["flops_per_clip"] > 0 and 0 < r["mfu"]
        assert r["memory_format"] == "channels_last_3d" and r["size"] == 16 and r["batch"] == 2
    (overhead,) = result["summary"]["loader_overhead"].values()
    assert set(result["summary"]["loader_overhead"]) == {"pretrain, fp32, channels_last_3d"}
    assert overhead["within_noise"] == (abs(overhead["overhead"]) <= overhead["relative_iqr"])
    assert "cpu_preset" in result["settings"]


def test_finetune_step_updates_the_classifier() -> None:
    from echoclr.bench.train import build_step, synthetic_batches
    from echoclr.train import RuntimeConfig
    from echoclr.train.runtime import setup_runtime

    runtime = setup_runtime(RuntimeConfig(device="cpu", amp=False, channels_last=False))
    model, step = build_step("finetune", runtime, seed=0)
    before = model.head.weight.detach().clone()
    x, y = next(synthetic_batches("finetune", 2, 16, runtime, seed=0))
    assert x.shape == (2, 1, 16, 16, 16) and y.shape == (2,)
    step((x, y))
    assert not torch.equal(before, model.head.weight.detach())


def test_cli_bench_loader_quick(bench_work: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from echoclr.cli.app import app

    out = tmp_path / "results"
    invoked = CliRunner().invoke(app, ["bench", "loader", "--quick", "--work", str(bench_work), "--out", str(out)])
    assert invoked.exit_code == 0, invoked.output
    (path,) = out.glob("loader-quick-*.json")
    result = json.loads(path.read_text())
    check_result(result)
    by_name = {r["name"].split(" (")[0].strip(): r for r in result["rows"]}
    for name in ("reference loader", "echoclr CPU pipeline", "breakdown: ClipReader.read_clips alone"):
        assert by_name[name]["status"] == "ok" and by_name[name]["median"] > 0
        assert by_name[name]["cpu_ms_per_clip"] > 0
    gpu = by_name["echoclr GPU pipeline"]
    assert gpu["status"] == ("ok" if torch.cuda.is_available() else "skipped")
    summary = result["summary"]
    assert summary["ratio"] == pytest.approx(by_name["echoclr CPU pipeline"]["median"]
                                             / by_name["reference loader"]["median"])
    if not summary["target_met"]:  # a missed target must come with a profile and the next step
        assert summary["profile"]["findings"] and summary["profile"]["next_step"]
        variants = [r for r in result["rows"] if r["name"].strip().startswith("profile:")]
        assert len(variants) == 5 and all(r["median"] > 0 for r in variants)
    assert "echoclr CPU / reference" in invoked.output
