"""Plain numpy/scipy reference of the clip augmentation, driven by explicit parameters.

It computes what :func:`echoclr.pipeline.graph.augment_graph` computes, given the
parameters of a plan (or parameters drawn here with numpy), one clip at a time. Tests
compare the kernels with it; the loader benchmark uses it as the reference-style
(per-item, CPU) implementation.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from echoclr.data.sampling import ANGLE_UNITS_PER_DEG, AugmentDraws
from echoclr.pipeline.graph import KINETICS_MEAN, KINETICS_STD, AugmentConfig, AugmentParams, minmax_normalize


def draw_params(rng: np.random.Generator, n: int, draws: AugmentDraws) -> AugmentParams:
    """Draw augmentation parameters with numpy, from the sampler's distributions.

    For benchmarks and tests that feed a pipeline without a plan; training takes its
    parameters from the plan (:meth:`AugmentParams.from_plan`).

    Args:
        rng: numpy generator.
        n: number of clips.
        draws: the distributions (pad, probabilities, angle bound).

    Returns:
        :class:`AugmentParams` for ``n`` clips, angles on the plan's 0.001-degree grid.
    """
    shift = rng.integers(-draws.pad, draws.pad + 1, size=(n, 2))
    flip = rng.random(n) < draws.flip_p
    rotate = rng.random(n) < draws.rotate_p
    steps = round(draws.max_angle_deg * ANGLE_UNITS_PER_DEG)
    mdeg = rng.integers(-steps, steps, size=n) * rotate
    return AugmentParams.from_plan(shift[:, 0], shift[:, 1], flip, mdeg)


def shift_clip(clip: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Zero-pad-and-crop shift: ``out[t, y, x] = clip[t, y + dy, x + dx]``, 0 outside.

    Args:
        clip: ``(T, H, W)`` array.
        dy: vertical offset of the crop window, px.
        dx: horizontal offset of the crop window, px.

    Returns:
        ``(T, H, W)`` array, same dtype.
    """
    _, h, w = clip.shape
    out = np.zeros_like(clip)
    ys, yd = max(dy, 0), max(-dy, 0)  # source / destination first row
    xs, xd = max(dx, 0), max(-dx, 0)
    hh, ww = h - abs(dy), w - abs(dx)
    if hh > 0 and ww > 0:
        out[:, yd : yd + hh, xd : xd + ww] = clip[:, ys : ys + hh, xs : xs + ww]
    return out


def rotate_clip(clip: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate every frame about its centre, bilinear, zero fill, same size, rounded to uint8.

    Positive angles turn the picture counter-clockwise on screen (rows grow downwards),
    as DALI's ``fn.rotate`` and OpenCV's ``getRotationMatrix2D`` do. The centre is
    ``((H - 1) / 2, (W - 1) / 2)`` in pixel-index coordinates; samples that fall partly
    outside the frame blend with the zero fill.

    Args:
        clip: uint8 ``(T, H, W)``.
        angle_deg: angle in degrees.

    Returns:
        uint8 ``(T, H, W)``.
    """
    if angle_deg == 0:
        return clip.copy()
    _, h, w = clip.shape
    theta = np.deg2rad(float(angle_deg))
    c, s = np.cos(theta), np.sin(theta)
    # output (t, r, q) samples input (t, r', q') with [r', q'] = R [r - cy, q - cx] + centre
    matrix = np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])
    centre = np.array([0.0, (h - 1) / 2.0, (w - 1) / 2.0])
    offset = centre - matrix @ centre
    out = ndimage.affine_transform(
        clip.astype(np.float64), matrix, offset=offset, order=1, mode="grid-constant", cval=0.0
    )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def reference_augment(
    clips: np.ndarray,
    orders: np.ndarray | None,
    params: AugmentParams | None,
    cfg: AugmentConfig,
) -> np.ndarray:
    """The pipeline's output for explicit parameters, computed clip by clip.

    Args:
        clips: uint8 ``(N, T, H, W)``.
        orders: int ``(N, T)`` frame orders (output frame ``t`` = input frame
            ``orders[i, t]``); None or ignored when ``cfg.enabled`` is False.
        params: the parameters to apply; None (ignored) when ``cfg.enabled`` is False.
        cfg: augmentation config (``enabled``, ``channels``, ``kinetics_norm`` are used;
            the probabilities are not, the explicit ``params`` decide).

    Returns:
        float32 ``(N, C, T, H, W)``, C = ``cfg.channels``.

    Raises:
        ValueError: augmentation is enabled and ``orders`` or ``params`` is missing.
    """
    if cfg.enabled and (orders is None or params is None):
        raise ValueError("reference_augment needs orders and params when cfg.enabled is True")
    out = []
    for i, clip in enumerate(clips):
        if cfg.enabled:
            clip = clip[np.asarray(orders[i])]
            clip = shift_clip(clip, int(params.shift[i, 0]), int(params.shift[i, 1]))
            if params.flip[i]:
                clip = clip[:, :, ::-1]
            clip = rotate_clip(clip, float(params.angle[i]))
        x = minmax_normalize(clip)  # (T, H, W)
        if cfg.channels == 3:
            if cfg.kinetics_norm:
                planes = [(x - np.float32(m)) / np.float32(s) for m, s in zip(KINETICS_MEAN, KINETICS_STD)]
            else:
                planes = [x, x, x]
            x = np.stack(planes)  # 3 x (T, H, W) -> (3, T, H, W)
        else:
            x = x[None]  # (T, H, W) -> (1, T, H, W)
        out.append(x)
    return np.stack(out).astype(np.float32, copy=False)  # (N, C, T, H, W)
