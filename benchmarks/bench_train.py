"""Training benchmark: pretraining and fine-tuning clips/s, model only and end to end, AMP and
channels_last_3d, with FLOPs per clip and MFU.

    python benchmarks/bench_train.py [--quick] [--device auto] [--steps N] [--size PX] [--out benchmarks/results]

The same as ``echoclr bench train`` (its ``--help`` lists every option); the measurement code is
:mod:`echoclr.bench.train`.
"""

import sys

from echoclr.cli.app import app

if __name__ == "__main__":
    app(["bench", "train", *sys.argv[1:]], prog_name="echoclr")
