"""Pretraining lr sweep: EchoCLR pretraining at the demo's CPU preset (16 px, 16 pairs/step) on the demo
store, one run per lr, read from the online monitor in metrics.jsonl.

Usage: python benchmarks/lr_sweep.py STORE OUT_DIR STEPS  (the 2026-12-02 sweep: the demo store, 60 steps)
"""
import json, sys, time
from pathlib import Path

from echoclr.train import PretrainConfig, RuntimeConfig
from echoclr.train.pretrain import pretrain

store = Path(sys.argv[1])
root = Path(sys.argv[2])
steps = int(sys.argv[3])
rows = []
for lr in (1e-4, 1e-3, 1e-2, 0.1):
    out = root / f"lr_{lr:g}"
    t0 = time.time()
    config = PretrainConfig(method="echoclr", lr=lr, batch_size=16, epochs=1000, seed=0,
                            runtime=RuntimeConfig(device="cpu", loader_threads=1, max_steps=steps, size=16,
                                                  log_every=10, eval_every=steps // 3, checkpoint_every=10_000,
                                                  tensorboard=False))
    pretrain(store, out, config, overwrite=True)
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    mon = [r for r in records if r.get("kind") == "monitor"]
    steps_ = [r for r in records if "loss" in r and r.get("kind") != "monitor"]
    last = mon[-1]
    row = {"lr": lr, "seconds": round(time.time() - t0), "final_loss": steps_[-1]["loss"],
           "contrastive": steps_[-1].get("contrastive"), "collapse_loss": last.get("collapse_loss"),
           "embedding_std": [round(m["embedding_std"], 4) for m in mon],
           "effective_rank": [round(m["effective_rank"], 2) for m in mon],
           "collapsed": any(m.get("collapsed") for m in mon), "knn_auroc": last.get("knn_auroc")}
    rows.append(row)
    print(json.dumps(row), flush=True)
(root / "sweep.json").write_text(json.dumps(rows, indent=1))
