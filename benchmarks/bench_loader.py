"""Loader benchmark: clips/s in EchoCLR pairs mode, reference-style loader vs echoclr's CPU and GPU pipelines.

    python benchmarks/bench_loader.py [--quick] [--workers 2] [--profile] [--out benchmarks/results]

The same as ``echoclr bench loader`` (its ``--help`` lists every option); the measurement code is
:mod:`echoclr.bench.loader`.
"""

import sys

from echoclr.cli.app import app

if __name__ == "__main__":
    app(["bench", "loader", *sys.argv[1:]], prog_name="echoclr")
