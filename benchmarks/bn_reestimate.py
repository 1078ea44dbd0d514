"""Causal check of the batch-norm explanation for the CPU preset's fine-tuning results: re-estimate the batch-norm
statistics of fine-tuned runs on un-augmented clips of the training split (no labels; cumulative average over 4
evenly spaced clips per video), then score the test split again (study-level AUROC before and after).

Usage: python benchmarks/bn_reestimate.py STORE LABEL RUN [RUN ...]  (2026-12-02: the ablation demo's store, lvh,
eight of its finetune/<init>/ratio_0.1* runs)
"""
import sys

import numpy as np
import torch

from echoclr.eval import auroc
from echoclr.run.evaluate import load_finetuned
from echoclr.store import ClipReader, open_store
from echoclr.train import RuntimeConfig
from echoclr.train.batches import mean_clip_outputs
from echoclr.train.finetune import predict_videos
from echoclr.train.runtime import setup_runtime

store_path, label, runs = sys.argv[1], sys.argv[2], sys.argv[3:]
reader = ClipReader(open_store(store_path), threads=2)
labels = reader.labels(label)
train = np.flatnonzero(reader.splits == "train").astype(np.int64)
test = np.flatnonzero((reader.splits == "test") & ~np.isnan(labels)).astype(np.int64)
studies, inverse = np.unique(reader.study_of_video[test], return_inverse=True)
study_labels = np.zeros(len(studies))
study_labels[inverse] = labels[test]


def study_auroc(scores: np.ndarray) -> float:
    return auroc(study_labels, np.bincount(inverse, weights=scores) / np.bincount(inverse))


for run in runs:
    model, config, _ = load_finetuned(run)
    size = config.runtime.size
    runtime = setup_runtime(RuntimeConfig(device="cpu", loader_threads=2, size=size))
    clips = dict(clip_len=config.clip_len, n_clips=4, batch_size=32, runtime=runtime, threads=2, kinetics=False,
                 size=size)
    before = predict_videos(model, reader, test, **clips)
    for layer in model.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.reset_running_stats()
            layer.momentum = None  # cumulative average over every batch
            layer.train()
    mean_clip_outputs(model, reader, train, **clips)  # forward passes only: the statistics are the point
    model.eval()
    after = predict_videos(model, reader, test, **clips)
    print(f"{run}: AUROC {study_auroc(before):.3f} (scores [{before.min():.3g}, {before.max():.3g}]) -> "
          f"{study_auroc(after):.3f} (scores [{after.min():.3g}, {after.max():.3g}]) after re-estimation", flush=True)
