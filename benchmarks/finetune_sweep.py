"""Fine-tuning stability at the demo's CPU preset: test AUROC of random and EchoCLR init at 10% labels for a few
fine-tuning settings (lr, batch-norm mode), over the first 3 stratified subset draws (subset and seed k), on the demo
store and its pretrained EchoCLR run.

Usage: python benchmarks/finetune_sweep.py DEMO_OUT OUT_DIR  (the 2026-12-02 sweep: a 600-step demo folder)
"""
import csv, dataclasses, json, sys, time
from pathlib import Path

import numpy as np

from echoclr.eval import auroc
from echoclr.run.demo import DemoConfig, experiment_config
from echoclr.train.finetune import finetune

demo, root = Path(sys.argv[1]), Path(sys.argv[2])
settings = {"lr1e-3_bn-train": dict(lr=1e-3, batchnorm="train"), "lr1e-4_bn-train": dict(lr=1e-4, batchnorm="train"),
            "lr1e-3_bn-frozen": dict(lr=1e-3, batchnorm="frozen")}
inits = {"random": "random", "echoclr": str(demo / "experiment" / "pretrain" / "echoclr")}
base = experiment_config(DemoConfig(out=demo), gpu=False).finetune  # the CPU preset's fine-tuning
for name, science in settings.items():
    for k in range(3):
        for init, spec in inits.items():
            out = root / name / f"{init}_{k}"
            t0 = time.time()
            finetune(demo / "store.zarr", out, dataclasses.replace(base, ratio=0.1, init=spec, seed=k, subset_seed=k,
                                                                   **science), overwrite=True)
            rows = list(csv.DictReader((out / "predictions_test.csv").open()))
            labels, scores = (np.array([float(r[c]) for r in rows]) for c in ("label", "score"))
            history = [json.loads(l) for l in next(out.glob("lr_*/metrics.jsonl")).read_text().splitlines()]
            print(json.dumps({"setting": name, "init": init, "draw": k, "test_auroc": auroc(labels, scores),
                              "score_range": [scores.min(), scores.max()],
                              "best_epoch": json.loads((out / "summary.json").read_text())["best_epoch"],
                              "val_auroc_per_epoch": [round(h["val_auroc"], 2) for h in history],
                              "seconds": round(time.time() - t0)}), flush=True)
