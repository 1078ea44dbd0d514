"""Frozen-encoder embeddings of a store's videos and studies, in one ``.npz`` that numpy/pandas read without echoclr.

The fine-tuning inference rule, applied to the encoder's 512-d features instead of a classifier's score: a video's
embedding is the mean over ``n_clips`` evenly spaced, un-augmented clips (the sampler's eval mode, the same loader
as ``echoclr eval``), and a study's embedding is the mean of its videos' embeddings.

File layout (``np.load(path)``; every array is numeric or fixed-width unicode, so ``allow_pickle`` stays off)::

    video_embedding     float32 (V, D)  per-video embedding (D = 512, the r3d_18 feature)
    video_id            str     (V,)    the store's video ids
    video_study_id      str     (V,)    the study of each video
    video_split         str     (V,)    train / val / test / ext_test
    study_embedding     float32 (S, D)  mean of the study's video embeddings
    study_id            str     (S,)    sorted study ids
    study_split         str     (S,)
    label_names         str     (L,)    the store's label columns
    video_label_<name>  float32 (V,)    label of the video's study, NaN where unknown (one key per label)
    study_label_<name>  float32 (S,)    the same per study
    meta                str     ()      JSON: init, store, clip_len, n_clips, size, seed, splits, echoclr version

With pandas: ``pd.DataFrame({"study_id": f["study_id"], "lvh": f["study_label_lvh"]})`` and
``pd.DataFrame(f["study_embedding"], index=f["study_id"])``.

Making the file (loading an encoder and running it) is :func:`echoclr.run.embed.embed_store`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test", "ext_test")
EMBED_KEYS = ("video_embedding", "video_id", "video_study_id", "video_split", "study_embedding", "study_id",
              "study_split", "label_names", "meta")


@dataclass(frozen=True)
class EmbedConfig:
    """How to embed a store with a frozen encoder.

    Attributes:
        init: ``random`` (seeded r3d_18), ``kinetics:WEIGHTS.pth`` or a pretraining/fine-tuning run folder or
            checkpoint (its encoder part).
        splits: store splits to embed.
        clip_len: frames per clip (the fine-tuning inference rule: 16).
        n_clips: evenly spaced clips per video (the paper's inference: 4); the video embedding is their mean.
        size: resize clips to ``size`` px (the CPU preset); None = the store's size.
        batch_size: clips per forward pass.
        seed: seeds the weights of a ``random`` encoder.
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: reader/loader CPU threads.
    """

    init: str = "random"
    splits: tuple[str, ...] = SPLITS
    clip_len: int = 16
    n_clips: int = 4
    size: int | None = None
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    threads: int = 4

    def __post_init__(self) -> None:
        if not self.init:
            raise ValueError("init must be 'random', 'kinetics:WEIGHTS' or a run folder/checkpoint")
        if not self.splits or any(s not in SPLITS for s in self.splits):
            raise ValueError(f"splits must be a non-empty subset of {', '.join(SPLITS)}, got {self.splits}")
        for name in ("clip_len", "n_clips", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.size is not None and not 16 <= self.size <= 1024:
            raise ValueError(f"size must be in [16, 1024] px or None, got {self.size}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")


@dataclass(frozen=True)
class Embeddings:
    """Video and study embeddings with their ids, splits and labels (the arrays of the ``.npz``, see module doc).

    Attributes:
        video_embedding: ``float32 (V, D)``.
        video_id, video_study_id, video_split: ``str (V,)``.
        study_embedding: ``float32 (S, D)``.
        study_id, study_split: ``str (S,)``.
        video_labels, study_labels: label name -> ``float32 (V,)`` / ``(S,)``, NaN where unknown.
        meta: how they were made (init, store, clip_len, n_clips, size, seed, splits, version).
    """

    video_embedding: np.ndarray
    video_id: np.ndarray
    video_study_id: np.ndarray
    video_split: np.ndarray
    study_embedding: np.ndarray
    study_id: np.ndarray
    study_split: np.ndarray
    video_labels: dict[str, np.ndarray] = field(default_factory=dict)
    study_labels: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def label_names(self) -> list[str]:
        return list(self.study_labels)

    def save(self, path: str | Path) -> Path:
        """Write the ``.npz`` (uncompressed) atomically; returns its path."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "video_embedding": self.video_embedding.astype(np.float32),
            "video_id": _strings(self.video_id),
            "video_study_id": _strings(self.video_study_id),
            "video_split": _strings(self.video_split),
            "study_embedding": self.study_embedding.astype(np.float32),
            "study_id": _strings(self.study_id),
            "study_split": _strings(self.study_split),
            "label_names": _strings(self.label_names),
            "meta": np.array(json.dumps(self.meta)),
        }
        for name in self.label_names:
            arrays[f"video_label_{name}"] = self.video_labels[name].astype(np.float32)
            arrays[f"study_label_{name}"] = self.study_labels[name].astype(np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as handle:
            np.savez(handle, **arrays)
        tmp.replace(path)
        return path


def _strings(values: Sequence[str] | np.ndarray) -> np.ndarray:
    values = [str(v) for v in values]
    width = max((len(v) for v in values), default=1) or 1
    return np.array(values, dtype=f"<U{width}")


def load_embeddings(path: str | Path) -> Embeddings:
    """Read an ``echoclr embed`` file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an echoclr embeddings file (a key is missing; the message names it).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: make it with `echoclr embed STORE --out {path}`")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable .npz file ({exc}); make it with `echoclr embed`") from None
    with data:
        missing = [k for k in EMBED_KEYS if k not in data.files]
        if missing:
            raise ValueError(f"{path} is not an echoclr embeddings file: it lacks {missing}")
        names = [str(n) for n in data["label_names"]]
        return Embeddings(
            video_embedding=data["video_embedding"],
            video_id=data["video_id"],
            video_study_id=data["video_study_id"],
            video_split=data["video_split"],
            study_embedding=data["study_embedding"],
            study_id=data["study_id"],
            study_split=data["study_split"],
            video_labels={n: data[f"video_label_{n}"] for n in names},
            study_labels={n: data[f"study_label_{n}"] for n in names},
            meta=json.loads(str(data["meta"])),
        )


def study_means(video_embedding: np.ndarray, video_study_id: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean embedding of each study's videos.

    Args:
        video_embedding: ``(V, D)``.
        video_study_id: ``(V,)`` study of each row.

    Returns:
        ``(study_ids, embeddings)``: sorted unique study ids ``(S,)`` and ``float64 (S, D)`` means.
    """
    studies, inverse = np.unique(np.asarray(video_study_id), return_inverse=True)
    sums = np.zeros((len(studies), video_embedding.shape[1]), np.float64)
    np.add.at(sums, inverse, video_embedding)
    counts = np.bincount(inverse, minlength=len(studies)).astype(np.float64)
    return studies, sums / counts[:, None]
