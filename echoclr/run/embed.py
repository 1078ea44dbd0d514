"""Embed a store with a frozen encoder: load the encoder, run the shared inference path, average per study.

The orchestration half of ``echoclr embed``: it loads weights and runs the model (``train``'s inference path), so
it lives in the ``run`` layer; the file format, :class:`~echoclr.eval.embed.Embeddings` and the probes stay in
:mod:`echoclr.eval`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from echoclr.eval.embed import EmbedConfig, Embeddings, study_means


def embed_videos(encoder, reader, videos: np.ndarray, *, clip_len: int, n_clips: int, batch_size: int, runtime,
                 threads: int, kinetics: bool, size: int | None,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Frozen-encoder embeddings of some videos: ``float64 (len(videos), D)``, the mean over evenly spaced clips.

    The shared inference path (``echoclr.train.batches.mean_clip_outputs``) with the encoder as the forward.
    """
    from echoclr.train.batches import mean_clip_outputs

    was_training = encoder.training
    encoder.eval()
    try:
        return mean_clip_outputs(encoder, reader, videos, clip_len=clip_len, n_clips=n_clips, batch_size=batch_size,
                                 runtime=runtime, threads=threads, kinetics=kinetics, size=size, progress=progress)
    finally:
        encoder.train(was_training)


def embed_store(
    store_location: str | Path,
    config: EmbedConfig = EmbedConfig(),
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Embeddings:
    """Embed every video of the chosen splits with a frozen encoder, and average them per study.

    Args:
        store_location: the echoclr store (path or URL).
        config: encoder init, splits, clips per video, clip length, size, device.
        progress: called with ``(clips done, clips total)``.

    Returns:
        :class:`Embeddings` (``.save(path)`` writes the ``.npz``).

    Raises:
        FileNotFoundError: no store, or the init's weights/run folder does not exist.
        ValueError: the store has no video in the chosen splits.
        StateDictMismatchError: the init's weights do not match the encoder (keys named).
    """
    import torch

    from echoclr import __version__
    from echoclr.store import ClipReader, open_store
    from echoclr.train import RuntimeConfig
    from echoclr.train.finetune import build_encoder
    from echoclr.train.runtime import setup_runtime, teardown_runtime

    store = open_store(store_location)
    torch.manual_seed(config.seed)
    encoder = build_encoder(config.init)
    runtime = setup_runtime(RuntimeConfig(device=config.device, loader_threads=config.threads, size=config.size))
    reader = ClipReader(store, threads=config.threads)
    try:
        videos = np.flatnonzero(np.isin(reader.splits, config.splits)).astype(np.int64)
        if len(videos) == 0:
            raise ValueError(
                f"{store.location} has no video in splits {list(config.splits)}; it has "
                f"{sorted(set(reader.splits.tolist()))}"
            )
        encoder = encoder.to(runtime.device, memory_format=runtime.memory_format)
        video_embedding = embed_videos(
            encoder, reader, videos, clip_len=config.clip_len, n_clips=config.n_clips,
            batch_size=config.batch_size, runtime=runtime, threads=config.threads,
            kinetics=config.init.startswith("kinetics:"), size=config.size, progress=progress,
        )  # (V, D)
        labels = {name: reader.labels(name)[videos] for name in store.label_names}
        video_id = np.array([reader.video_ids[v] for v in videos])
        video_study = np.array([reader.study_ids[reader.study_of_video[v]] for v in videos])
        video_split = reader.splits[videos]
    finally:
        reader.close()
        teardown_runtime(runtime)

    study_id, study_embedding = study_means(video_embedding, video_study)
    first = np.searchsorted(video_study[np.argsort(video_study, kind="stable")], study_id)
    first_video = np.argsort(video_study, kind="stable")[first]  # one video of each study (labels are per study)
    meta = {"init": config.init, "store": str(store.location), "echoclr_version": __version__,
            **{k: v for k, v in asdict(config).items() if k in ("clip_len", "n_clips", "size", "seed")},
            "splits": list(config.splits), "embedding": "r3d_18 encoder output (512-d), before the projector"}
    return Embeddings(
        video_embedding=video_embedding.astype(np.float32),
        video_id=video_id,
        video_study_id=video_study,
        video_split=video_split,
        study_embedding=study_embedding.astype(np.float32),
        study_id=study_id,
        study_split=video_split[first_video],
        video_labels=labels,
        study_labels={name: values[first_video] for name, values in labels.items()},
        meta=meta,
    )
