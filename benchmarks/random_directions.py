"""How far from 0.5 an untrained ranking lands on the demo's test split: the test AUROC of random directions through
frozen study embeddings (``echoclr embed``/the demo's probes/<init>.npz), against a pure-noise score. A model that
barely leaves its initialisation ranks studies along such a direction.

Usage: python benchmarks/random_directions.py EMB.npz [LABEL]  (2026-12-02: demo-out/probes/{random,echoclr}.npz, lvh)
"""
import sys

import numpy as np

from echoclr.eval import auroc

data = np.load(sys.argv[1])
label = sys.argv[2] if len(sys.argv) > 2 else "lvh"
test = data["study_split"] == "test"
x, y = data["study_embedding"][test], data[f"study_label_{label}"][test]
keep = ~np.isnan(y)
x, y = x[keep] - x[keep].mean(0), y[keep]
rng = np.random.default_rng(0)
directions = np.array([auroc(y, x @ rng.standard_normal(x.shape[1])) for _ in range(2000)])
noise = np.array([auroc(y, rng.standard_normal(len(y))) for _ in range(2000)])
low, high = np.percentile(directions, [2.5, 97.5])
print(f"{len(y)} test studies ({int(y.sum())} positive): random directions AUROC mean {directions.mean():.3f} "
      f"SD {directions.std():.3f} [2.5-97.5%: {low:.3f}, {high:.3f}], below 0.35: {(directions < 0.35).mean():.0%}; "
      f"pure-noise score SD {noise.std():.3f}")
