"""The one data path of every training and inference loop: store subset → sampler plan → DALI loader → tensors.

Pretraining and fine-tuning differ only in the arguments they pass here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from echoclr.data import SamplerConfig, plan_epoch
from echoclr.pipeline import AugmentConfig, EvalLoader, LoaderConfig, PairLoader, SingleLoader
from echoclr.store.reader import ClipReader, SubsetReader
from echoclr.train.runtime import Runtime


def loader_config(
    *, clip_len: int, seed: int, runtime: Runtime, threads: int, augment: bool = True, kinetics: bool = False
) -> LoaderConfig:
    channels = 3 if kinetics else 1
    return LoaderConfig(
        clip_len=clip_len,
        augment=AugmentConfig(enabled=augment, channels=channels, kinetics_norm=kinetics),
        device_id=runtime.dali_device_id,
        dtype="float32",
        num_threads=threads,
        read_workers=max(1, threads // 2),
        seed=seed,
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
    seed: int,
    epoch: int,
    first_item: int,
    runtime: Runtime,
    threads: int,
    size: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Pairs (MI-SimCLR, EchoCLR) or two views of one clip (SimCLR): ``(x_i, x_j, order_i, order_j)``.

    ``plan`` indexes ``videos`` (the split's store positions); ``first_item`` is the plan's offset in its epoch.
    """
    if len(plan) == 0:
        return
    subset = SubsetReader(reader, videos)
    config = loader_config(clip_len=clip_len, seed=seed, runtime=runtime, threads=threads)
    loader = PairLoader(subset, plan, batch_size, config, drop_last=True, epoch=epoch, rank=runtime.rank,
                        first_item=first_item)
    for x_i, x_j, order_i, order_j in loader:
        yield _resize(x_i, size, runtime), _resize(x_j, size, runtime), order_i, order_j


def labelled_batches(
    reader: ClipReader,
    plan,
    videos: np.ndarray,
    *,
    label: str,
    clip_len: int,
    batch_size: int,
    seed: int,
    epoch: int,
    runtime: Runtime,
    threads: int,
    kinetics: bool,
    size: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Augmented labelled clips for fine-tuning: ``(x, y)``."""
    subset = SubsetReader(reader, videos)
    config = loader_config(clip_len=clip_len, seed=seed, runtime=runtime, threads=threads, kinetics=kinetics)
    loader = SingleLoader(subset, plan, batch_size, config, label=label, drop_last=False, epoch=epoch,
                          rank=runtime.rank)
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
    config = loader_config(clip_len=clip_len, seed=0, runtime=runtime, threads=threads, augment=False,
                           kinetics=kinetics)
    for x, video, _study in EvalLoader(subset, plan, batch_size, config):
        yield _resize(x, size, runtime), torch.as_tensor(videos)[video.cpu()]


def mean_clip_outputs(
    forward: Callable[[torch.Tensor], torch.Tensor],
    reader: ClipReader,
    videos: np.ndarray,
    *,
    clip_len: int,
    n_clips: int,
    batch_size: int,
    runtime: Runtime,
    threads: int,
    kinetics: bool,
    size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The paper's inference rule: the mean of ``forward`` over ``n_clips`` evenly spaced clips of each video.

    Every inference (fine-tuning scores, frozen embeddings, the pretraining monitor) goes through here: the
    sampler's eval mode plans the clips, :func:`eval_batches` loads them un-augmented.

    Args:
        forward: maps clips ``(n, C, T, H, W)`` to ``(n,)`` scores or ``(n, F)`` features; called under
            ``torch.no_grad()`` and the runtime's autocast.
        reader: the store's clip reader.
        videos: store positions of the videos, ``int64 (V,)``.
        clip_len, n_clips: frames per clip and clips per video.
        batch_size: clips per forward pass.
        runtime, threads, kinetics, size: as :func:`eval_batches`.
        progress: called with ``(clips done, clips total)`` after every batch.

    Returns:
        ``float64 (V,)`` or ``(V, F)``: row ``k`` is the mean output over the clips of ``videos[k]``.
    """
    videos = np.asarray(videos, dtype=np.int64)
    if len(videos) == 0:
        return np.zeros(0)
    sampler = SamplerConfig(mode="eval", clip_len=clip_len, reorder=False, n_clips=n_clips)
    plan = plan_epoch(sampler, reader.study_of_video[videos], reader.n_frames[videos], epoch=0)
    row_of = np.full(len(reader), -1, np.int64)
    row_of[videos] = np.arange(len(videos))
    sums: np.ndarray | None = None
    counts = np.zeros(len(videos), np.int64)
    done = 0
    with torch.no_grad():
        for x, video in eval_batches(reader, plan, videos, clip_len=clip_len, batch_size=batch_size,
                                     runtime=runtime, threads=threads, kinetics=kinetics, size=size):
            with runtime.autocast():
                out = forward(x)
            out = out.float().cpu().numpy().astype(np.float64)  # (n,) or (n, F)
            if sums is None:
                sums = np.zeros((len(videos), *out.shape[1:]), np.float64)
            rows = row_of[video.numpy()]
            np.add.at(sums, rows, out)
            np.add.at(counts, rows, 1)
            done += len(rows)
            if progress is not None:
                progress(done, len(plan))
    assert sums is not None and counts.min() >= 1, "every video gets at least one eval clip"
    return sums / counts.reshape(-1, *([1] * (sums.ndim - 1)))
