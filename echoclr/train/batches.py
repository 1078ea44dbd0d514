"""The one data path of every training and inference loop: store subset → sampler plan → DALI loader → tensors.

Pretraining and fine-tuning differ only in the arguments they pass here. A run builds each loader (and its DALI
pipeline) once: :class:`PretrainBatches`, :class:`LabelledBatches` and :class:`EvalBatches` keep it and give it
the next plan at every epoch or inference pass; the ``*_batches`` functions are one-off passes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from echoclr.data import EpochPlan, SamplerConfig, plan_epoch
from echoclr.pipeline import (
    AugmentConfig,
    DeviceClipCache,
    DevicePairLoader,
    EvalLoader,
    LoaderConfig,
    PairLoader,
    SingleLoader,
    cupy_available,
    plan_array,
)
from echoclr.pipeline.device_cache import cache_bytes, pair_loader_kind
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


class PretrainBatches:
    """One pair loader per pretraining run over the split's ``videos``: each call walks one (rest of an) epoch plan
    through the same loader (and DALI pipeline), which takes the plan by ``set_plan``, so epochs do not rebuild it.

    The loader is chosen at the first call (:func:`~echoclr.pipeline.device_cache.pair_loader_kind`): on a GPU with
    ``device_cache="auto"``, cupy and a pairs plan, the GPU loader without DALI (:class:`DevicePairLoader`, the
    split in GPU memory when it fits, pinned staging buffers otherwise); else the DALI :class:`PairLoader`.

    Args:
        reader: the store's clip reader.
        videos: the split's store positions ``int64 (V,)``; plans index them.
        clip_len, batch_size, runtime, threads, size: as the run's clips (``batch_size`` items per batch).
        device_cache: ``"auto"`` or ``"off"`` (``--device-cache``; ``auto`` is ``off`` on a CPU device).
    """

    def __init__(self, reader: ClipReader, videos: np.ndarray, *, clip_len: int, batch_size: int, runtime: Runtime,
                 threads: int, size: int | None = None, device_cache: str = "off") -> None:
        self._subset = SubsetReader(reader, videos)
        self._config = loader_config(clip_len=clip_len, runtime=runtime, threads=threads)
        self._batch_size, self._runtime, self._size = batch_size, runtime, size
        self._device_cache = device_cache
        self.loader: PairLoader | DevicePairLoader | None = None
        self.kind: str | None = None
        """The loader chosen at the first call: ``device-cache``, ``pinned`` or ``dali``."""
        self.reason = ""

    def _choose(self, plan_mode: str) -> tuple[str, str]:
        device = self._runtime.device
        free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
        needed = cache_bytes(self._subset.n_frames, self._subset.size)
        return pair_loader_kind(self._device_cache, device_type=device.type, plan_mode=plan_mode,
                                needed_bytes=needed, free_bytes=free, cupy=cupy_available())

    def _build(self, plan) -> PairLoader | DevicePairLoader:
        mode = plan_array(plan)[0]  # an EpochPlan or a plan table (benchmarks stack several epochs' tables)
        self.kind, self.reason = self._choose(mode)
        if self.kind == "dali":
            if self._device_cache == "auto" and self._runtime.device.type == "cuda" and mode == "pairs":
                warnings.warn(f"--device-cache auto: the DALI loader is used ({self.reason})", RuntimeWarning,
                              stacklevel=3)
            # drop_last=False: every pair of the epoch is used, the last batch may be partial (NT-Xent takes any size)
            return PairLoader(self._subset, plan, self._batch_size, self._config, drop_last=False)
        source = DeviceClipCache.build(self._subset) if self.kind == "device-cache" else self._subset
        return DevicePairLoader(source, plan, self._batch_size, clip_len=self._config.clip_len,
                                device=self._runtime.device, drop_last=False)

    def __call__(self, plan) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Pairs (MI-SimCLR, EchoCLR) or two views of one clip (SimCLR): ``(x, order)``, ``x`` ``(2n, C, T, H, W)``
        with the views ``i`` of the batch's items first, then their views ``j`` (see :class:`PairLoader`).

        ``plan`` indexes ``videos``; a resumed epoch passes the rest of its plan.
        """
        if len(plan) == 0:
            return
        if self.loader is None:
            self.loader = self._build(plan)
        else:
            self.loader.set_plan(plan)
        for x, order in self.loader:
            yield _resize(x, self._size, self._runtime), order


def pretrain_batches(reader: ClipReader, plan, videos: np.ndarray, *, clip_len: int, batch_size: int,
                     runtime: Runtime, threads: int, size: int | None = None,
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass of :class:`PretrainBatches` over ``plan`` with a loader of its own (benchmarks, one-off passes)."""
    return PretrainBatches(reader, videos, clip_len=clip_len, batch_size=batch_size, runtime=runtime,
                           threads=threads, size=size)(plan)


def batch_studies(plan, study_of_item: np.ndarray, batch_size: int, runtime: Runtime) -> Iterator[torch.Tensor]:
    """The study of every pair of each :class:`PretrainBatches` batch (same plan, same ``batch_size``, the last
    batch partial): ``int64 (n,)`` on the output device, for NT-Xent's same-study mask.

    Args:
        plan: the pairs or single plan given to :class:`PretrainBatches` (it indexes ``videos``).
        study_of_item: ``int64 (len(videos),)`` study number of each of ``videos`` (one numbering on every rank).
        batch_size: items per batch.
        runtime: gives the output device.
    """
    column = plan.fields["video_i" if plan.mode == "pairs" else "video"]  # both videos of a pair share a study
    study = np.asarray(study_of_item, dtype=np.int64)[column]  # (items,)
    for b in range(-(-len(study) // batch_size)):  # the last batch may be partial, as in PretrainBatches
        yield torch.as_tensor(study[b * batch_size : (b + 1) * batch_size], device=runtime.device)


class LabelledBatches:
    """One fine-tuning loader per run over the training ``videos``: each call walks one epoch plan through the same
    loader and DALI pipeline (:meth:`SingleLoader.set_plan`).

    Args:
        reader: the store's clip reader.
        videos: the training videos' store positions ``int64 (V,)``; plans index them.
        label: the label yielded with each clip.
        clip_len, batch_size, runtime, threads, kinetics, size: as the run's clips.
    """

    def __init__(self, reader: ClipReader, videos: np.ndarray, *, label: str, clip_len: int, batch_size: int,
                 runtime: Runtime, threads: int, kinetics: bool, size: int | None = None) -> None:
        self._subset = SubsetReader(reader, videos)
        self._config = loader_config(clip_len=clip_len, runtime=runtime, threads=threads, kinetics=kinetics)
        self._label, self._batch_size, self._runtime, self._size = label, batch_size, runtime, size
        self.loader: SingleLoader | None = None

    def __call__(self, plan) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Augmented labelled clips: ``(x, y)`` (the plan carries every augmentation parameter)."""
        if self.loader is None:
            self.loader = SingleLoader(self._subset, plan, self._batch_size, self._config, label=self._label,
                                       drop_last=False)
        else:
            self.loader.set_plan(plan)
        for x, y in self.loader:
            yield _resize(x, self._size, self._runtime), y


def labelled_batches(reader: ClipReader, plan, videos: np.ndarray, *, label: str, clip_len: int, batch_size: int,
                     runtime: Runtime, threads: int, kinetics: bool, size: int | None = None,
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass of :class:`LabelledBatches` over ``plan`` with a loader of its own (benchmarks, one-off passes)."""
    return LabelledBatches(reader, videos, label=label, clip_len=clip_len, batch_size=batch_size, runtime=runtime,
                           threads=threads, kinetics=kinetics, size=size)(plan)


EVAL_BATCH_MIN = 32


def eval_batch_size(train_batch: int) -> int:
    """Clips per inference batch: at least :data:`EVAL_BATCH_MIN`. Without gradients a batch costs a fraction of a
    training one, and in eval mode a clip's score does not depend on its batch; small batches waste the CPU (measured,
    r3d_18, 8 frames at 16 px, 2 cores: 18 ms/clip in batches of 4, 8 ms in batches of 32)."""
    return max(int(train_batch), EVAL_BATCH_MIN)


class EvalBatches:
    """One eval loader per run, for every inference pass over any videos of the store (validation passes, test
    predictions, the pretraining monitor's probe): each pass sets a new plan on the same loader and DALI pipeline.

    Args:
        reader: the store's clip reader (plans are mapped to its store positions).
        clip_len, batch_size, runtime, threads, kinetics, size: as the run's clips (``batch_size`` clips per batch).
    """

    def __init__(self, reader: ClipReader, *, clip_len: int, batch_size: int, runtime: Runtime, threads: int,
                 kinetics: bool, size: int | None = None) -> None:
        self.reader, self.clip_len = reader, clip_len
        self._config = loader_config(clip_len=clip_len, runtime=runtime, threads=threads, augment=False,
                                     kinetics=kinetics)
        self._batch_size, self.runtime, self._size = batch_size, runtime, size
        self.loader: EvalLoader | None = None

    def __call__(self, plan, videos: np.ndarray) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Un-augmented clips and their store positions: ``(x, video)``; ``plan`` (eval mode) indexes ``videos``."""
        videos = np.asarray(videos, dtype=np.int64)
        # the plan in store positions, so that one loader over the whole store serves every set of videos
        plan = EpochPlan(plan.mode, {**plan.fields, "video": videos[plan.fields["video"]]})
        if len(plan) == 0:
            return
        if self.loader is None:
            self.loader = EvalLoader(self.reader, plan, self._batch_size, self._config)
        else:
            self.loader.set_plan(plan)
        for x, video, _study in self.loader:
            yield _resize(x, self._size, self.runtime), torch.from_numpy(video)  # host indices: no GPU round trip

    def mean_outputs(self, forward: Callable[[torch.Tensor], torch.Tensor], videos: np.ndarray, *, n_clips: int,
                     progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """:func:`mean_clip_outputs` through this loader (same arguments, same result)."""
        videos = np.asarray(videos, dtype=np.int64)
        if len(videos) == 0:
            return np.zeros(0)
        reader = self.reader
        sampler = SamplerConfig(mode="eval", clip_len=self.clip_len, reorder=False, n_clips=n_clips)
        plan = plan_epoch(sampler, reader.study_of_video[videos], reader.n_frames[videos], epoch=0)
        row_of = np.full(len(reader), -1, np.int64)
        row_of[videos] = np.arange(len(videos))
        sums: np.ndarray | None = None
        counts = np.zeros(len(videos), np.int64)
        done = 0
        with torch.no_grad():
            for x, video in self(plan, videos):
                with self.runtime.autocast():
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


def eval_batches(reader: ClipReader, plan, videos: np.ndarray, *, clip_len: int, batch_size: int, runtime: Runtime,
                 threads: int, kinetics: bool, size: int | None = None,
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass of :class:`EvalBatches` over ``plan`` (it indexes ``videos``) with a loader of its own."""
    return EvalBatches(reader, clip_len=clip_len, batch_size=batch_size, runtime=runtime, threads=threads,
                       kinetics=kinetics, size=size)(plan, videos)


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
    sampler's eval mode plans the clips, :class:`EvalBatches` loads them un-augmented (a run keeps one
    :class:`EvalBatches` and calls its :meth:`~EvalBatches.mean_outputs`, so passes reuse one loader).

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
    batches = EvalBatches(reader, clip_len=clip_len, batch_size=batch_size, runtime=runtime, threads=threads,
                          kinetics=kinetics, size=size)
    return batches.mean_outputs(forward, videos, n_clips=n_clips, progress=progress)
