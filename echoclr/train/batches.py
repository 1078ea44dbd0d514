"""The one data path of every training and inference loop: store subset → sampler plan → DALI loader → tensors.

Pretraining and fine-tuning differ only in the arguments they pass here.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from echoclr.pipeline import AugmentConfig, EvalLoader, LoaderConfig, PairLoader, SingleLoader
from echoclr.store.reader import ClipReader, SubsetReader
from echoclr.train.runtime import Runtime


def loader_config(
    *, clip_len: int, runtime: Runtime, threads: int, augment: bool = True, kinetics: bool = False
) -> LoaderConfig:
    channels = 3 if kinetics else 1
    return LoaderConfig(
        clip_len=clip_len,
        augment=AugmentConfig(enabled=augment, channels=channels, kinetics_norm=kinetics),
        device_id=runtime.dali_device_id,
        dtype="float32",
        num_threads=threads,
        read_workers=max(1, threads // 2),
    )


def _resize(x: torch.Tensor, size: int | None, runtime: Runtime) -> torch.Tensor:
    """Area-downsample clips in space to ``size`` px (the CPU preset); keep the memory format."""
    if size is not None and x.shape[-1] != size:
        t = x.shape[2]
        x = F.adaptive_avg_pool3d(x, (t, size, size))  # (N, C, T, H, W) -> (N, C, T, size, size)
    return x.contiguous(memory_format=runtime.memory_format)


def pretrain_batches(
    reader: ClipReader,
    plan,
    videos: np.ndarray,
    *,
    method: str,
    clip_len: int,
    batch_size: int,
    runtime: Runtime,
    threads: int,
    size: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs (MI-SimCLR, EchoCLR) or two views of one clip (SimCLR): ``(x, order)``, ``x`` ``(2n, C, T, H, W)``
    with the views ``i`` of the batch's items first, then their views ``j`` (see :class:`PairLoader`).

    ``plan`` indexes ``videos`` (the split's store positions); a resumed epoch passes the rest of its plan.
    """
    if len(plan) == 0:
        return
    subset = SubsetReader(reader, videos)
    config = loader_config(clip_len=clip_len, runtime=runtime, threads=threads)
    # drop_last=False: every pair of the epoch is used, the last batch may be partial (NT-Xent takes any size)
    for x, order in PairLoader(subset, plan, batch_size, config, drop_last=False):
        yield _resize(x, size, runtime), order


def labelled_batches(
    reader: ClipReader,
    plan,
    videos: np.ndarray,
    *,
    label: str,
    clip_len: int,
    batch_size: int,
    runtime: Runtime,
    threads: int,
    kinetics: bool,
    size: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Augmented labelled clips for fine-tuning: ``(x, y)`` (the plan carries every augmentation parameter)."""
    subset = SubsetReader(reader, videos)
    config = loader_config(clip_len=clip_len, runtime=runtime, threads=threads, kinetics=kinetics)
    loader = SingleLoader(subset, plan, batch_size, config, label=label, drop_last=False)
    for x, y in loader:
        yield _resize(x, size, runtime), y


def eval_batches(
    reader: ClipReader,
    plan,
    videos: np.ndarray,
    *,
    clip_len: int,
    batch_size: int,
    runtime: Runtime,
    threads: int,
    kinetics: bool,
    size: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Un-augmented clips and their store positions: ``(x, video)``."""
    subset = SubsetReader(reader, videos)
    config = loader_config(clip_len=clip_len, runtime=runtime, threads=threads, augment=False, kinetics=kinetics)
    for x, video, _study in EvalLoader(subset, plan, batch_size, config):
        yield _resize(x, size, runtime), torch.from_numpy(videos[video])  # host indices: no GPU round trip
