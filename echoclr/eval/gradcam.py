"""Grad-CAM saliency for the fine-tuned video classifier, and overlays a person can look at.

The paper's recipe (Methods, "Model interpretability"): Grad-CAM on the last conv block of the
3D-ResNet18 (``layer4``) for a clip of the first 32 frames of a video (zero-padded at the end when
shorter), giving a ``4 x 7 x 7`` (T x H x W) map for a ``32 x 112 x 112`` input; the map is
upsampled to the input size, the pixel-wise max over time gives one 2-D heatmap, overlaid on the
first frame::

    clip = first_clip(frames)                               # uint8 (32, H, W)
    x = torch.from_numpy(minmax_normalize(clip))[None]      # (1, 32, H, W), as the model expects
    cam = gradcam(model, x)                                 # float32 (32, H, W) in [0, 1]
    overlay_png(clip[0], saliency_2d(cam), "cam.png")

Upsampling: the authors used ``scipy.ndimage.zoom`` (default spline order 3). We use trilinear
interpolation with ``align_corners=True``, which equals ``zoom(..., order=1)`` (both map the first
and last sample of each axis onto each other) and, unlike a cubic spline, never overshoots below
zero or above the maximum.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

PAPER_CLIP_LEN = 32
"""Frames of the clip the paper explains (the first 32 of a video)."""


# --------------------------------------------------------------------------- Grad-CAM


def _default_target_layer(model: nn.Module) -> nn.Module:
    encoder = getattr(model, "encoder", None)
    layer = getattr(encoder, "layer4", None)
    if not isinstance(layer, nn.Module):
        raise ValueError(
            f"{type(model).__name__} has no 'encoder.layer4' (the r3d_18's last conv block); "
            "pass target_layer=<the module whose activations to explain>"
        )
    return layer


def _model_device_dtype(model: nn.Module, clip: Tensor) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters(), None)
    if param is None or not param.is_floating_point():
        return clip.device, torch.float32
    return param.device, param.dtype


def _as_batch(clip: Tensor | np.ndarray, model: nn.Module) -> Tensor:
    """Validate a ``(C, T, H, W)`` clip; return it as ``(1, C, T, H, W)`` on the model's device."""
    if isinstance(clip, np.ndarray):
        clip = torch.from_numpy(clip)
    if not isinstance(clip, Tensor):
        raise TypeError(f"clip must be a torch.Tensor or numpy array, got {type(clip).__name__}")
    if clip.ndim != 4:
        raise ValueError(f"clip must have shape (C, T, H, W), got {tuple(clip.shape)}")
    if not clip.is_floating_point():
        raise ValueError(
            f"clip must be float (normalised as the model expects, e.g. per-clip min-max to [0, 1]), "
            f"got dtype {clip.dtype}"
        )
    if not torch.isfinite(clip).all():
        raise ValueError("clip contains NaN or infinite values; normalise it before Grad-CAM")
    device, dtype = _model_device_dtype(model, clip)
    return clip.detach().to(device=device, dtype=dtype)[None]  # (C, T, H, W) -> (1, C, T, H, W)


def gradcam(
    model: nn.Module,
    clip: Tensor | np.ndarray,
    *,
    target_layer: nn.Module | None = None,
) -> np.ndarray:
    """Grad-CAM of a clip's logit, upsampled to the clip's (T, H, W) and scaled to [0, 1].

    The target layer's activations ``A`` (``(C', T', H', W')``) and the gradient of the logit
    with respect to them give channel weights ``w_c = mean_{t,h,w} dlogit/dA_c``; the map is
    ``ReLU(sum_c w_c A_c)``, upsampled trilinearly (``align_corners=True``, as scipy's
    ``zoom(order=1)``) and divided by its maximum. A map with no positive evidence stays all
    zeros. The model runs in eval mode (dropout off, BatchNorm running statistics) in its
    parameters' dtype without autocast; afterwards every module's train/eval flag is restored,
    the hook is removed (also on error), and no parameter's ``.grad`` or ``requires_grad`` is
    touched.

    Args:
        model: a module mapping ``(1, C, T, H, W)`` to one logit (e.g.
            :class:`echoclr.models.Classifier`), on CPU or CUDA.
        clip: ``(C, T, H, W)`` float clip, normalised as the model expects; moved to the
            model's device and dtype.
        target_layer: the module whose 5-D output to explain; default ``model.encoder.layer4``.

    Returns:
        float32 ``(T, H, W)`` numpy array in [0, 1].

    Raises:
        TypeError: ``clip`` is neither a tensor nor an array.
        ValueError: ``clip`` is not 4-D float and finite; the model has no ``encoder.layer4``
            and no ``target_layer`` is given; the target layer is not run exactly once, does
            not give a 5-D tensor, or its output does not reach the logit; the model gives
            more than one logit; the map is not finite.
    """
    layer = _default_target_layer(model) if target_layer is None else target_layer
    x = _as_batch(clip, model)  # (1, C, T, H, W)
    captured: list[Tensor] = []

    def keep_activation(module: nn.Module, inputs: object, output: object) -> Tensor:
        if not isinstance(output, Tensor):
            raise ValueError(
                f"target layer {type(module).__name__} returned {type(output).__name__}, not a tensor"
            )
        captured.append(output)
        # Later in-place ops (e.g. a residual `out += identity`) would overwrite the tensor we
        # differentiate against; the rest of the forward runs on a copy instead.
        return output.clone()

    training = [(module, module.training) for module in model.modules()]
    handle = layer.register_forward_hook(keep_activation)
    try:
        model.eval()
        no_autocast = torch.autocast(x.device.type, enabled=False)
        with torch.inference_mode(False), torch.enable_grad(), no_autocast:
            # A graph from the input keeps the activations differentiable even when the
            # parameters are frozen; only d logit / d A is computed, parameters get no .grad.
            x = x.clone().requires_grad_(True)
            logit = model(x)
            if not isinstance(logit, Tensor) or logit.numel() != 1:
                shape = tuple(logit.shape) if isinstance(logit, Tensor) else type(logit).__name__
                raise ValueError(f"Grad-CAM explains one logit per clip; the model returned {shape}")
            if len(captured) != 1:
                raise ValueError(
                    f"the target layer ran {len(captured)} times in the forward pass (expected "
                    "once); pass a target_layer that is part of the model and not shared"
                )
            act = captured[0]
            if act.ndim != 5 or not act.requires_grad:
                raise ValueError(
                    "the target layer must give a 5-D (1, C, T, H, W) tensor that the logit "
                    f"depends on; got shape {tuple(act.shape)}, requires_grad={act.requires_grad}"
                )
            (grad,) = torch.autograd.grad(logit.sum(), act, allow_unused=True)
            if grad is None:
                raise ValueError("the logit does not depend on the target layer's output")
        act, grad = act.detach().float(), grad.float()  # (1, C', T', H', W')
        weights = grad.mean(dim=(2, 3, 4), keepdim=True)  # (1, C', 1, 1, 1)
        cam = F.relu((weights * act).sum(dim=1, keepdim=True))  # (1, 1, T', H', W')
        cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode="trilinear", align_corners=True)
        cam = cam[0, 0]  # (1, 1, T, H, W) -> (T, H, W)
        if not torch.isfinite(cam).all():
            raise ValueError(
                f"the Grad-CAM map is not finite (logit {logit.item():.4g}); the model's "
                "activations or gradients overflowed"
            )
        peak = cam.max()
        cam = (cam / peak).clamp_(0.0, 1.0) if peak > 0 else torch.zeros_like(cam)
        return cam.cpu().numpy().astype(np.float32, copy=False)
    finally:
        handle.remove()
        for module, was_training in training:
            module.train(was_training)


ENCODER_BLOCKS = ("layer4", "layer3", "layer2", "layer1")
"""The r3d_18 encoder's residual blocks, deepest first (each halves the map; layer1 keeps the stem's size)."""


def block_cells(model: nn.Module, clip_shape: tuple[int, int, int, int]) -> dict[str, tuple[int, int, int]]:
    """The ``(T', H', W')`` map size of each encoder block for a ``(C, T, H, W)`` input.

    Grad-CAM's map has the target layer's resolution: at 112 px ``layer4`` gives 7 x 7 cells, at 16 px one cell,
    whose upsampled map is a uniform picture.

    Args:
        model: a module with ``encoder.layer1`` ... ``encoder.layer4`` (e.g. :class:`echoclr.models.Classifier`).
        clip_shape: ``(C, T, H, W)`` of the clips it explains.

    Returns:
        ``{block name: (T', H', W')}`` for the blocks the model has.
    """
    encoder = getattr(model, "encoder", None)
    blocks = {name: getattr(encoder, name) for name in ENCODER_BLOCKS if isinstance(getattr(encoder, name, None),
                                                                                     nn.Module)}
    shapes: dict[str, tuple[int, int, int]] = {}
    handles = [block.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[2:])))
               for name, block in blocks.items()]
    training = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        param = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros((1, *clip_shape), device=param.device, dtype=param.dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, was_training in training:
            module.train(was_training)
    return shapes


def explainable_block(model: nn.Module, clip_shape: tuple[int, int, int, int], *, min_cells: int = 4) -> str:
    """The deepest encoder block whose map has at least ``min_cells`` x ``min_cells`` spatial cells.

    ``layer4`` (the paper's choice) at 112 px; ``layer2`` (4 x 4) at the CPU preset's 16 px.

    Raises:
        ValueError: no block reaches ``min_cells`` (the input is too small to localise anything).
    """
    cells = block_cells(model, clip_shape)
    for name in ENCODER_BLOCKS:
        if name in cells and min(cells[name][1:]) >= min_cells:
            return name
    raise ValueError(f"no encoder block has >= {min_cells}x{min_cells} spatial cells for clips of shape "
                     f"{tuple(clip_shape)} (block maps: {cells}); Grad-CAM would be a uniform picture")


def saliency_2d(cam3d: np.ndarray) -> np.ndarray:
    """Pixel-wise maximum over time: one 2-D heatmap for a clip (the paper's figure).

    Args:
        cam3d: ``(T, H, W)`` map, e.g. from :func:`gradcam`.

    Returns:
        float32 ``(H, W)``; in [0, 1] when ``cam3d`` is.

    Raises:
        ValueError: ``cam3d`` is not a non-empty 3-D array.
    """
    cam3d = np.asarray(cam3d)
    if cam3d.ndim != 3 or cam3d.shape[0] == 0:
        raise ValueError(f"cam3d must have shape (T, H, W) with T >= 1, got {cam3d.shape}")
    return cam3d.max(axis=0).astype(np.float32, copy=False)  # (T, H, W) -> (H, W)


def first_clip(frames: np.ndarray, length: int = PAPER_CLIP_LEN) -> np.ndarray:
    """The first ``length`` frames of a video, zero-padded at the end when it is shorter.

    Args:
        frames: uint8 ``(T, H, W)`` video, ``T >= 1``.
        length: frames in the clip (the paper: 32).

    Returns:
        uint8 ``(length, H, W)`` new array.

    Raises:
        ValueError: ``frames`` is not a uint8 ``(T, H, W)`` array with ``T >= 1``, or
            ``length`` is not an integer >= 1.
    """
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"length must be an integer >= 1, got {length!r}")
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 3:
        shape = getattr(frames, "shape", None)
        dtype = getattr(frames, "dtype", type(frames).__name__)
        raise ValueError(f"frames must be a uint8 (T, H, W) array, got shape {shape} and {dtype}")
    if frames.shape[0] == 0:
        raise ValueError(f"frames has no frames (shape {frames.shape}); a video needs T >= 1")
    out = np.zeros((int(length), *frames.shape[1:]), dtype=np.uint8)  # (length, H, W)
    n = min(int(length), frames.shape[0])
    out[:n] = frames[:n]
    return out


# --------------------------------------------------------------------------- pictures


def _check_heatmap(heatmap: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != shape:
        raise ValueError(f"{name} has shape {heatmap.shape}; it must match the frames' {shape}")
    if not np.isfinite(heatmap).all() or heatmap.min() < 0 or heatmap.max() > 1:
        raise ValueError(
            f"{name} must be finite and in [0, 1] (as gradcam returns), got range "
            f"[{np.nanmin(heatmap):.4g}, {np.nanmax(heatmap):.4g}]"
        )
    return heatmap


def _check_picture_args(alpha: float, scale: int, cmap: str) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 16:
        raise ValueError(f"scale must be an integer in [1, 16], got {scale!r}")
    import matplotlib

    if cmap not in matplotlib.colormaps:
        raise ValueError(f"unknown matplotlib colormap {cmap!r} (e.g. 'jet', 'inferno', 'turbo')")


def _blend(frames: np.ndarray, heat: np.ndarray, alpha: float, cmap: str) -> np.ndarray:
    """Gray frames with the heatmap in colour: ``(..., H, W)`` -> uint8 ``(..., H, W, 3)``."""
    import matplotlib

    gray = frames.astype(np.float32)[..., None] / 255.0  # (..., H, W) -> (..., H, W, 1)
    color = matplotlib.colormaps[cmap](heat)[..., :3].astype(np.float32)  # (..., H, W, 3)
    rgb = (1.0 - alpha) * gray + alpha * color  # broadcast gray over RGB
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def _output_path(path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def overlay_png(
    frame: np.ndarray,
    heatmap: np.ndarray,
    path: str | os.PathLike[str],
    *,
    alpha: float = 0.4,
    title: str | None = None,
    cmap: str = "jet",
    scale: int = 3,
) -> Path:
    """Write a PNG of a gray frame with a heatmap blended on top, a colour bar and a title.

    Rendered with matplotlib's Agg canvas (no display needed). Each pixel is
    ``(1 - alpha) * frame + alpha * cmap(heatmap)``; the image is drawn exactly ``scale``
    times larger (112 px -> 336 px by default) without smoothing, so pixels stay honest; the
    colour bar sits to its right and the title above.

    Args:
        frame: uint8 ``(H, W)`` frame (the paper: the clip's first frame).
        heatmap: ``(H, W)`` values in [0, 1] (e.g. :func:`saliency_2d` of :func:`gradcam`).
        path: output file (PNG, whatever the suffix); parent folders are created.
        alpha: heatmap opacity in [0, 1].
        title: text above the image, or None.
        cmap: a matplotlib colormap name.
        scale: integer magnification of the image, 1-16.

    Returns:
        The path written.

    Raises:
        ValueError: ``frame`` is not uint8 ``(H, W)``; ``heatmap`` has another shape, is not
            finite or leaves [0, 1]; bad ``alpha``, ``scale`` or ``cmap``.
    """
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 2:
        shape = getattr(frame, "shape", None)
        dtype = getattr(frame, "dtype", type(frame).__name__)
        raise ValueError(f"frame must be a uint8 (H, W) array, got shape {shape} and {dtype}")
    heat = _check_heatmap(heatmap, frame.shape, "heatmap")
    _check_picture_args(alpha, scale, cmap)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    # Lay the figure out in pixels so the image is drawn at exactly `scale` x its size.
    dpi, gap, bar_w, bar_room = 100, 8, 12, 48  # px: image-bar gap, bar width, ticks and label
    img_h, img_w = frame.shape[0] * scale, frame.shape[1] * scale
    title_h = 22 if title else 0
    fig_w, fig_h = img_w + gap + bar_w + bar_room, img_h + title_h
    fig = Figure(figsize=(fig_w / dpi, fig_h / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, img_w / fig_w, img_h / fig_h))
    ax.imshow(_blend(frame, heat, float(alpha), cmap), interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    if title:
        fig.text(0.5, 1.0 - 3 / fig_h, title, ha="center", va="top", fontsize=9)
    bar_ax = fig.add_axes(((img_w + gap) / fig_w, 0.0, bar_w / fig_w, img_h / fig_h))
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap=cmap), cax=bar_ax)
    bar.set_label("Grad-CAM", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    out = _output_path(path)
    # A tight box grows the canvas for tick labels or a long title without rescaling the image.
    fig.savefig(out, format="png", dpi=dpi, facecolor="white", bbox_inches="tight", pad_inches=0.04)
    return out


def animate(
    frames: np.ndarray,
    cam3d: np.ndarray,
    path: str | os.PathLike[str],
    *,
    alpha: float = 0.4,
    fps: float = 10.0,
    cmap: str = "jet",
    scale: int = 3,
) -> Path:
    """Write an animated GIF of the clip with its Grad-CAM map blended on each frame.

    Written with Pillow (no ffmpeg needed); frames are magnified ``scale`` times without
    smoothing and loop forever.

    Args:
        frames: uint8 ``(T, H, W)`` clip (e.g. :func:`first_clip`).
        cam3d: ``(T, H, W)`` map in [0, 1] (from :func:`gradcam`).
        path: output file (GIF, whatever the suffix); parent folders are created.
        alpha: heatmap opacity in [0, 1].
        fps: frames per second, in (0, 100] (GIF timing has 10 ms steps).
        cmap: a matplotlib colormap name.
        scale: integer magnification, 1-16.

    Returns:
        The path written.

    Raises:
        ValueError: ``frames`` is not uint8 ``(T, H, W)`` with ``T >= 1``; ``cam3d`` has
            another shape, is not finite or leaves [0, 1]; bad ``alpha``, ``fps``, ``scale``
            or ``cmap``.
    """
    from PIL import Image

    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 3 or not len(frames):
        shape = getattr(frames, "shape", None)
        dtype = getattr(frames, "dtype", type(frames).__name__)
        raise ValueError(f"frames must be a uint8 (T, H, W) array with T >= 1, got shape {shape} and {dtype}")
    cam = _check_heatmap(cam3d, frames.shape, "cam3d")
    _check_picture_args(alpha, scale, cmap)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 100:
        raise ValueError(f"fps must be in (0, 100], got {fps!r}")
    rgb = _blend(frames, cam, float(alpha), cmap)  # (T, H, W, 3)
    size = (frames.shape[2] * scale, frames.shape[1] * scale)  # PIL wants (width, height)
    images = [Image.fromarray(f).resize(size, Image.Resampling.NEAREST) for f in rgb]
    out = _output_path(path)
    images[0].save(
        out, format="GIF", save_all=True, append_images=images[1:],
        duration=max(10, round(1000 / fps)), loop=0,
    )
    return out
