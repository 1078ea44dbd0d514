"""Ingest benchmark: ingest_rows videos/s and frames/s (1 and 2 workers), store chunk layouts and codecs.

    python benchmarks/bench_ingest.py [--quick] [--workers 1 --workers 2] [--out benchmarks/results]

The same as ``echoclr bench ingest`` (its ``--help`` lists every option); the measurement code is
:mod:`echoclr.bench.ingest`.
"""

import sys

from echoclr.cli.app import app

if __name__ == "__main__":
    app(["bench", "ingest", *sys.argv[1:]], prog_name="echoclr")
