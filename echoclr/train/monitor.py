"""Online monitoring of a training run: metrics.jsonl + TensorBoard, and pretraining's collapse alarm and val probe.

``RunLog`` appends every record to ``metrics.jsonl`` and its numbers to TensorBoard event files
(``<run>/tensorboard/``). ``PretrainMonitor.evaluate`` is called by the pretraining loop once per ``eval_every``
steps and at the end, on every rank (the collapse reference is a collective); it measures, on the step's batch:

* ``embedding_std``: the std over the batch of the L2-normalised projector outputs, averaged over dimensions and
  multiplied by sqrt(D): about 1 for embeddings spread over the sphere, 0 when every clip maps to one point.
* ``effective_rank``: exp of the entropy of the normalised singular values of the centred batch (1 .. min(n, D)).
* ``collapse_loss``: the contrastive loss that identical embeddings would give on this batch (log(2n-1) without the
  study mask); ``collapsed`` is set, with a warning, when ``embedding_std < std_threshold`` or the contrastive loss
  has stayed within ``loss_tolerance`` of ``collapse_loss`` for ``loss_window`` evaluations in a row.
* ``knn_auroc/<label>`` on the main rank: the train and val videos (at most ``max_videos`` of each, whole studies,
  one centre clip each) are embedded with the encoder (512-d features, eval mode) and averaged per study; each val
  study is scored by the fraction of positives among its ``k`` nearest (cosine) train studies; AUROC per label with
  both classes in val and train. (Leave-one-out within val was rejected: on a small val split it is biased against
  the true label, e.g. AUROC 0 when ``k`` spans all other studies.) An evaluation costs one forward pass over at
  most ``2 * max_videos`` clips.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from echoclr.train.config import DEFAULT_PRETRAIN_LR, PAPER_PRETRAIN_LR

METRICS_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class CollapseWarning(UserWarning):
    """The embeddings of a pretraining run have collapsed (see ``PretrainMonitor``)."""


class RunLog:
    """Append-only metrics of a run: ``metrics.jsonl`` lines and TensorBoard scalars.

    Args:
        run_dir: the run folder.
        tensorboard: also write TensorBoard event files to ``run_dir/tensorboard``.
        enabled: False on non-main ranks (nothing is written).
    """

    def __init__(self, run_dir: Path, *, tensorboard: bool, enabled: bool = True) -> None:
        self._file = None
        self._writer = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self._file = (run_dir / METRICS_NAME).open("a")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR))

    def write(self, record: dict[str, Any], *, step: int, group: str) -> None:
        """Append ``record`` as one JSON line; its finite numbers (and booleans) go to TensorBoard as
        ``<group>/<key>`` at ``step`` (a nested dict ``{"knn_auroc": {"lvh": x}}`` becomes ``knn_auroc/lvh``)."""
        if self._file is None:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in _scalars(record):
                self._writer.add_scalar(f"{group}/{key}", value, global_step=step)
            self._writer.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._writer is not None:
            self._writer.close()


def _scalars(record: dict[str, Any], prefix: str = ""):
    for key, value in record.items():
        if isinstance(value, dict):
            yield from _scalars(value, f"{prefix}{key}/")
        elif isinstance(value, (bool, int, float)) and math.isfinite(float(value)):
            yield f"{prefix}{key}", float(value)


@dataclass(frozen=True)
class MonitorConfig:
    """Thresholds and costs of the pretraining monitor (see the module doc).

    Attributes:
        std_threshold: ``embedding_std`` (sqrt(D)-scaled, ~1 when spread) below which the run counts as collapsed.
        loss_tolerance: relative distance of the contrastive loss to the collapse value that counts as "at it".
        loss_window: consecutive evaluations at the collapse loss that raise the alarm.
        knn_k: neighbours of the val kNN probe (capped at the number of train studies).
        max_videos: train and val videos embedded per evaluation, each (whole studies by study number; bounds the
            cost).
        clips: eval clips per video.
    """

    std_threshold: float = 0.1
    loss_tolerance: float = 1e-3
    loss_window: int = 3
    knn_k: int = 5
    max_videos: int = 256
    clips: int = 1


def embedding_stats(z: torch.Tensor) -> tuple[float, float]:
    """``(embedding_std, effective_rank)`` of a batch of embeddings ``(n, D)`` (see the module doc)."""
    z = torch.nn.functional.normalize(z.detach().double(), dim=1)
    std = float(z.std(dim=0, unbiased=False).mean() * math.sqrt(z.shape[1]))
    singular = torch.linalg.svdvals(z - z.mean(dim=0))
    p = singular / singular.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum()
    return std, float(torch.exp(entropy)) if singular.sum() > 1e-12 else 1.0


def knn_auroc(reference: np.ndarray, reference_labels: np.ndarray, query: np.ndarray, query_labels: np.ndarray,
              k: int) -> float:
    """Cosine kNN AUROC: each query scored by the fraction of positives among its ``k`` nearest references.

    Args:
        reference: ``(R, D)`` embeddings with 0/1 ``reference_labels (R,)``.
        query: ``(Q, D)`` embeddings with 0/1 ``query_labels (Q,)`` holding both classes.
        k: neighbours (capped at ``R``).
    """
    from echoclr.eval.metrics import auroc

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    sims = unit(query) @ unit(reference).T  # (Q, R)
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, : max(1, min(k, len(reference_labels)))]  # (Q, k)
    return float(auroc(query_labels, reference_labels[nearest].mean(axis=1)))


class LossAtCollapse:
    """The loss half of the collapse alarm: the contrastive loss sits at the value of identical embeddings.

    Random initial embeddings also score close to that value (log(2n - 1) without the study mask), so only
    ``window`` consecutive observations all within ``tolerance`` (relative) of it count: a training loss moves, a
    collapsed one does not.

    Args:
        tolerance: relative distance to the collapse value that counts as "at it".
        window: consecutive observations at it that raise the alarm.
    """

    def __init__(self, *, tolerance: float, window: int) -> None:
        self.tolerance = tolerance
        self._recent: deque[bool] = deque(maxlen=window)

    def observe(self, contrastive: float, collapse_loss: float) -> bool:
        """Record one contrastive loss and the collapse value of its batch; True while the alarm holds."""
        self._recent.append(abs(contrastive - collapse_loss) <= self.tolerance * collapse_loss)
        return len(self._recent) == self._recent.maxlen and all(self._recent)

    @property
    def window(self) -> int:
        return self._recent.maxlen or 0


def collapse_advice(lr: float | None) -> str:
    """What to change when a pretraining run collapses (the run's ``lr`` named when known)."""
    now = "" if lr is None else f" (now {lr:g}; {DEFAULT_PRETRAIN_LR:g} is the default that trains, the paper's " \
        f"{PAPER_PRETRAIN_LR:g} diverges in short runs)"
    return f"lower --lr{now} or raise the temperature"


class PretrainMonitor:
    """Collapse alarm and val kNN probe of a pretraining run; one :meth:`evaluate` call per eval interval.

    Args:
        reader: the store's clip reader.
        label_names: the store's labels.
        criterion: the run's NT-Xent module (gives the collapse reference on the same batch, across ranks).
        runtime: device and ranks.
        clip_len, size, threads: as the run's clips.
        config: thresholds and costs.
        lr: the run's learning rate, named in the alarm's advice.
    """

    def __init__(self, reader, label_names: list[str], criterion, runtime, *, clip_len: int, size: int | None,
                 threads: int, config: MonitorConfig = MonitorConfig(), lr: float | None = None) -> None:
        self.reader, self.criterion, self.runtime, self.config = reader, criterion, runtime, config
        self.clip_len, self.size, self.threads, self.lr = clip_len, size, threads, lr
        self._at_collapse = LossAtCollapse(tolerance=config.loss_tolerance, window=config.loss_window)
        from echoclr.train.batches import EVAL_BATCH_MIN, EvalBatches

        # one eval loader for every probe of the run
        self._eval = EvalBatches(reader, clip_len=clip_len, batch_size=EVAL_BATCH_MIN, runtime=runtime, threads=threads,
                                 kinetics=False, size=size)
        self.videos = {split: self._first_videos(split) for split in ("train", "val")}
        self.labels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        for name in label_names:
            per_split = {}
            for split, videos in self.videos.items():
                _, first = np.unique(reader.study_of_video[videos], return_index=True)
                values = reader.labels(name)[videos][first]  # (S,) one per study
                known = ~np.isnan(values)
                per_split[split] = (known, values[known].astype(np.int64))
            if all(len(np.unique(v)) == 2 for _, v in per_split.values()):
                self.labels[name] = per_split

    def _first_videos(self, split: str) -> np.ndarray:
        videos = np.flatnonzero(self.reader.splits == split)
        return videos[np.argsort(self.reader.study_of_video[videos], kind="stable")][: self.config.max_videos]

    def evaluate(self, model, z_i: torch.Tensor, z_j: torch.Tensor, contrastive: float,
                 study: torch.Tensor | None) -> dict[str, Any]:
        """Measure the run now (every rank calls it at the same step; the kNN probe runs on the main rank).

        Args:
            model: the (unwrapped) pretraining model; its ``encoder`` embeds the val clips.
            z_i, z_j: this step's projector outputs ``(n, D)`` of the two views.
            contrastive: this step's contrastive loss.
            study: the studies the step's NT-Xent masked with, or None.

        Returns:
            ``embedding_std``, ``effective_rank``, ``contrastive``, ``collapse_loss``, ``collapsed``,
            ``collapse_reason`` and ``knn_auroc`` ({label: AUROC}, empty off the main rank).
        """
        with torch.no_grad():
            std, rank = embedding_stats(torch.cat([z_i, z_j]))
            same = torch.ones_like(z_i[:, :1])  # identical embeddings: every logit equal
            collapse_loss = float(self.criterion(same, same.clone(), study))
        reasons = []
        if std < self.config.std_threshold:
            reasons.append(f"embedding std {std:.3g} < {self.config.std_threshold:g}")
        if self._at_collapse.observe(contrastive, collapse_loss):
            reasons.append(f"contrastive loss {contrastive:.4f} at the collapse value {collapse_loss:.4f} "
                           f"for {self._at_collapse.window} evaluations")
        record = {"embedding_std": std, "effective_rank": rank, "contrastive": contrastive,
                  "collapse_loss": collapse_loss, "collapsed": bool(reasons), "collapse_reason": "; ".join(reasons),
                  "knn_auroc": self._knn(model) if self.runtime.is_main else {}}
        if reasons and self.runtime.is_main:
            warnings.warn(f"embedding collapse: {'; '.join(reasons)}: the encoder learns nothing; "
                          f"{collapse_advice(self.lr)}", CollapseWarning, stacklevel=2)
        return record

    def _knn(self, model) -> dict[str, float]:
        if not self.labels:
            return {}
        from echoclr.eval.embed import study_means

        encoder = model.encoder
        was_training = encoder.training
        encoder.eval()
        studies = {}
        try:
            for split, videos in self.videos.items():
                features = self._eval.mean_outputs(encoder, videos, n_clips=self.config.clips)  # (V, 512)
                studies[split] = study_means(features, self.reader.study_of_video[videos])[1]  # (S, 512)
        finally:
            encoder.train(was_training)
        result = {}
        for name, per_split in self.labels.items():
            (train_known, train_y), (val_known, val_y) = per_split["train"], per_split["val"]
            result[name] = knn_auroc(studies["train"][train_known], train_y, studies["val"][val_known], val_y,
                                     self.config.knn_k)
        return result
