"""Benchmarks: ingest, loader and training throughput, measured honestly (warm-up, medians, machine and versions).

Each ``run_*_bench(config, work_dir)`` returns one result document; :func:`write_result` stores it as JSON and
:func:`results_markdown` renders results as a Markdown table. :mod:`echoclr.bench.compare` compares results with a
baseline (the gate of ``make bench``) and :mod:`echoclr.bench.history` follows them over time. The
``benchmarks/`` scripts and ``echoclr bench`` call these functions.

Names are imported on first use: comparing JSON files must not pay for importing torch and DALI.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DEFAULT_SPEC": "data",
    "QUICK_SPEC": "data",
    "BenchData": "data",
    "DatasetSpec": "data",
    "prepare_dataset": "data",
    "IngestBenchConfig": "ingest",
    "run_ingest_bench": "ingest",
    "LoaderBenchConfig": "loader",
    "run_loader_bench": "loader",
    "check_result": "results",
    "latest_results": "results",
    "result_path": "results",
    "results_markdown": "results",
    "write_result": "results",
    "Stats": "timing",
    "measure_rate": "timing",
    "TrainBenchConfig": "train",
    "run_train_bench": "train",
    "compare_results": "compare",
    "load_results": "compare",
    "report_markdown": "compare",
    "load_history": "history",
    "plot_history": "history",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'echoclr.bench' has no attribute {name!r}")
    return getattr(importlib.import_module(f"echoclr.bench.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return __all__
