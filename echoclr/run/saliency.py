"""Grad-CAM overlays for stored videos from a fine-tuned checkpoint (the paper's Fig. 4 recipe)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from echoclr.eval.gradcam import (
    PAPER_CLIP_LEN,
    animate,
    block_cells,
    explainable_block,
    first_clip,
    gradcam,
    overlay_png,
    saliency_2d,
)
from echoclr.models import kinetics_standardize
from echoclr.overwrite import refuse_existing
from echoclr.pipeline.graph import minmax_normalize
from echoclr.run.evaluate import load_finetuned
from echoclr.store import open_store
from echoclr.train.checkpoint import resolve_checkpoint


def most_confident_videos(checkpoint_dir: Path, split: str, n: int) -> list[str]:
    """Video ids of the ``n`` highest-scoring positive predictions in ``predictions_<split>_videos.csv``."""
    path = checkpoint_dir / f"predictions_{split}_videos.csv"
    if not path.exists():
        return []
    with path.open() as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["label"]) == 1]
    rows.sort(key=lambda r: -float(r["score"]))
    return [r["video_id"] for r in rows[:n]]


def gradcam_overlays(
    checkpoint: str | Path,
    store_location: str | Path,
    out_dir: str | Path,
    *,
    video_ids: list[str] | None = None,
    n: int = 4,
    split: str = "test",
    device: str = "cpu",
    gif: bool = False,
    overwrite: bool = False,
    layer: str = "auto",
    log=None,
) -> list[Path]:
    """Write one Grad-CAM overlay PNG (and optionally a GIF) per video.

    Videos: ``video_ids``, or the ``n`` most confident true positives of ``split`` from the checkpoint folder's
    predictions, or else the first ``n`` videos of ``split``. A map whose 2-D heatmap is uniform (no spatial
    evidence: e.g. a 1 x 1 cell map) is not drawn; ``log`` says so.

    Args:
        layer: the encoder block to explain (``layer1`` ... ``layer4``), or ``auto``: the deepest block with at
            least 4 x 4 spatial cells at the model's clip size (``layer4`` at 112 px, ``layer2`` at 16 px).
        log: called with one line per skipped video and the block used.

    Raises:
        KeyError: a video id is not in the store.
        ValueError: the checkpoint is not a fine-tuned classifier; ``layer`` names no encoder block or no block
            has 4 x 4 cells at this size.
        FileExistsError: an overlay of these videos is already in ``out_dir`` and ``overwrite`` is False.
    """
    log = log or (lambda line: None)
    out_dir = Path(out_dir)
    torch_device = torch.device(device)
    model, finetune, _ = load_finetuned(checkpoint)
    model = model.to(torch_device)
    size = finetune.runtime.size
    kinetics = finetune.init_kind == "kinetics"
    store = open_store(store_location)
    folder = resolve_checkpoint(checkpoint).parent
    chosen = video_ids or most_confident_videos(folder, split, n)
    if not chosen:
        chosen = [store.records[i].video_id for i in store.select([split])[:n]]
    extensions = ("png", "gif") if gif else ("png",)
    outputs = [out_dir / f"gradcam_{v.replace('/', '_')}.{ext}" for v in chosen for ext in extensions]
    refuse_existing(outputs, overwrite=overwrite)
    written = []
    block = None
    for video_id in chosen:
        index = store.index_of(video_id)
        n_frames = store.records[index].n_frames
        clip = first_clip(store.read_frames(index, 0, min(PAPER_CLIP_LEN, n_frames)))  # uint8 (32, H, W)
        x = torch.from_numpy(minmax_normalize(clip))[None, None]  # (T, H, W) -> (1, 1, T, H, W)
        if size is not None and size != clip.shape[-1]:
            x = F.adaptive_avg_pool3d(x, (clip.shape[0], size, size))  # the model saw clips at this size
        if kinetics:
            x = kinetics_standardize(x)  # (1, 1, T, H, W) -> (1, 3, T, H, W)
        if block is None:
            block = explainable_block(model, tuple(x.shape[1:])) if layer == "auto" else layer
            cells = block_cells(model, tuple(x.shape[1:]))
            if block not in cells:
                raise ValueError(f"layer must be 'auto' or one of {sorted(cells)}, got {layer!r}")
            log(f"Grad-CAM of encoder.{block}: {cells[block][1]}x{cells[block][2]} cells for "
                f"{x.shape[-1]} px clips")
        cam = gradcam(model, x[0], target_layer=getattr(model.encoder, block))  # (T, h, w) in [0, 1]
        heat = saliency_2d(cam)
        if float(heat.max() - heat.min()) < 1e-3:
            log(f"  {video_id}: uniform Grad-CAM map (no spatial evidence); not drawn")
            continue
        if heat.shape != clip.shape[1:]:
            heat = cv2.resize(heat, clip.shape[1:][::-1], interpolation=cv2.INTER_LINEAR)
        with torch.no_grad():
            score = float(torch.sigmoid(model(x.to(torch_device))).item())
        safe = video_id.replace("/", "_")
        title = f"{video_id}  label={finetune.label}  score={score:.2f}  ({block})"
        written.append(overlay_png(clip[0], heat, out_dir / f"gradcam_{safe}.png", title=title))
        if gif:
            cams = np.stack([cv2.resize(c, clip.shape[1:][::-1]) for c in cam]) if cam.shape[1:] != clip.shape[1:] else cam
            written.append(animate(clip, cams, out_dir / f"gradcam_{safe}.gif"))
    return written
