"""Plain numpy/scipy reference of the clip augmentation, driven by explicit parameters.

It computes what :func:`echoclr.pipeline.graph.augment_graph` computes, given the
parameters of a plan (or parameters drawn here with numpy), one clip at a time. Tests
compare the kernels with it; the loader benchmark uses it as the reference-style
(per-item, CPU) implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from echoclr.data.sampling import ANGLE_UNITS_PER_DEG, AugmentDraws
from echoclr.pipeline.graph import KINETICS_MEAN, KINETICS_STD, MIN_RANGE, AugmentConfig


@dataclass(frozen=True)
class AugmentParams:
    """Per-clip augmentation parameters of one batch of ``n`` clips.

    Attributes:
        shift: int64 ``(n, 2)``, ``(dy, dx)``: ``out[y, x] = in[y + dy, x + dx]`` (0 outside).
        flip: bool ``(n,)``, horizontal flip.
        angle: float32 ``(n,)``, rotation in degrees, counter-clockwise on screen; 0 = none.
    """

    shift: np.ndarray
    flip: np.ndarray
    angle: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.flip)
        if np.shape(self.shift) != (n, 2) or np.shape(self.angle) != (n,) or np.ndim(self.flip) != 1:
            raise ValueError(
                f"AugmentParams needs shift (n, 2), flip (n,), angle (n,); got shift {np.shape(self.shift)}, "
                f"flip {np.shape(self.flip)}, angle {np.shape(self.angle)}"
            )

    @classmethod
    def from_plan(cls, dy: np.ndarray, dx: np.ndarray, flip: np.ndarray, angle_mdeg: np.ndarray) -> AugmentParams:
        """The parameters of ``n`` plan rows (one view's ``dy, dx, flip, angle_mdeg`` columns).

        Args:
            dy, dx, flip, angle_mdeg: int ``(n,)`` plan columns (see :mod:`echoclr.data.sampling`).

        Returns:
            :class:`AugmentParams` with ``angle = angle_mdeg / 1000`` degrees as float32.
        """
        shift = np.stack([np.asarray(dy), np.asarray(dx)], axis=1).astype(np.int64)  # 2 x (n,) -> (n, 2)
        angle = (np.asarray(angle_mdeg, np.float64) / ANGLE_UNITS_PER_DEG).astype(np.float32)
        return cls(shift=shift, flip=np.asarray(flip) != 0, angle=angle)

    def __len__(self) -> int:
        return len(self.flip)


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


def minmax_normalize(clip: np.ndarray) -> np.ndarray:
    """Per-clip min-max to [0, 1] in float32; a constant clip gives zeros.

    Args:
        clip: ``(T, H, W)`` array.

    Returns:
        float32 ``(T, H, W)``.
    """
    x = clip.astype(np.float32)
    lo, hi = x.min(), x.max()
    return (x - lo) / np.maximum(hi - lo, np.float32(MIN_RANGE))


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
