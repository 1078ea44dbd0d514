"""The clip augmentation graph: one DALI processing function for CPU and GPU pipelines.

The graph is independent of where its data comes from (``external_source`` inputs fed
by the sampler and reader) and of the device: the same function builds the CPU pipeline
(``device_id=None``) and the GPU pipeline (clips moved to the GPU right after the
source). It draws nothing: every random parameter (frame order, shift, flip, rotation
angle) is an input, drawn by the sampler as a pure function of (seed, epoch, item)
(:mod:`echoclr.data.sampling`), so the CPU kernel, DALI's operators and the CUDA kernel
apply the same parameters to the same plan, and a resumed run needs no random state.

Per clip, in order (the paper's augmentation, DESIGN.md "method" table):

1. frame order: ``out[t] = clip[order[t]]`` (the sampler's permutation);
2. shift: zero-pad and crop back to the input size, i.e. ``out[y, x] = in[y + dy, x + dx]``
   (0 outside);
3. horizontal flip when ``flip`` is 1;
4. rotation by ``angle`` degrees (0: none; counter-clockwise on screen) about the frame
   centre, bilinear, zero fill, same size, rounded back to uint8;
5. per-clip min-max to ``[0, 1]`` (a constant clip gives zeros);
6. optionally the gray channel replicated to 3 channels and Kinetics-400
   standardisation per channel.

With augmentation off only steps 5-6 run, as DALI operators. With augmentation on,
GPU clips (and CPU clips with ``cpu_rotate="dali"``) run every step as a DALI operator;
CPU clips by default run steps 1-6 as ONE ``fn.python_function`` per batch that calls a
native C++ kernel over the whole batch (see :mod:`echoclr.pipeline.cpu_ops` for why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from echoclr.data.sampling import ANGLE_UNITS_PER_DEG

KINETICS_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
"""Per-channel mean of the Kinetics-400 pretrained r3d_18 (RGB order)."""
KINETICS_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)
"""Per-channel standard deviation of the Kinetics-400 pretrained r3d_18 (RGB order)."""
MIN_RANGE: float = 1e-6
"""Guard of the min-max division: a clip whose max - min is below this maps to zeros."""
SOURCE_LAYOUT = "FHW"
"""Per-sample layout of the clips fed to the graph: frames, height, width (gray)."""
LAYOUT = "FHWC"
"""Per-sample layout of the graph's output and of its flip/rotate steps (C = 1, or 3 at the end)."""


@dataclass(frozen=True)
class AugmentConfig:
    """What the graph does with a clip (the random parameters come with the data; their
    distributions are :class:`echoclr.data.sampling.AugmentDraws` of the sampler).

    Attributes:
        enabled: apply frame order, shift, flip and rotation; False for evaluation
            (only normalisation runs; no parameters are needed).
        channels: output channels, 1 (gray) or 3 (gray replicated, as Kinetics weights need).
        kinetics_norm: standardise with the Kinetics-400 mean/std after min-max;
            needs ``channels=3``.
    """

    enabled: bool = True
    channels: int = 1
    kinetics_norm: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"AugmentConfig.enabled must be a bool, got {self.enabled!r}")
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise ValueError(f"AugmentConfig.channels must be 1 or 3, got {self.channels!r}")
        if self.kinetics_norm and self.channels != 3:
            raise ValueError(
                "AugmentConfig.kinetics_norm=True needs channels=3 (the Kinetics mean/std are per "
                f"RGB channel), got channels={self.channels}"
            )


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


def minmax_normalize(clip: np.ndarray) -> np.ndarray:
    """Per-clip min-max to [0, 1] in float32 (the graph's normalisation, for callers outside a pipeline); a
    constant clip gives zeros.

    Args:
        clip: ``(T, H, W)`` array.

    Returns:
        float32 ``(T, H, W)``.
    """
    x = clip.astype(np.float32)
    lo, hi = x.min(), x.max()
    return (x - lo) / np.maximum(hi - lo, np.float32(MIN_RANGE))


class GraphInputs(NamedTuple):
    """The per-clip parameters the graph applies, as DALI data nodes on the CPU.

    Attributes:
        orders: int32 ``(T,)`` per sample: output frame ``t`` is input frame ``orders[t]``.
        shift: int32 ``(2,)`` per sample, ``(dy, dx)``.
        flip: int32 scalar per sample, 1 = flipped.
        angle: float32 scalar per sample, degrees (0 = not rotated).
    """

    orders: Any
    shift: Any
    flip: Any
    angle: Any


ROTATE_IMPLS = ("fused", "dali")
"""Kernels for augmented CPU clips: ``"fused"``, the whole augmentation fused into one
``fn.python_function`` per batch (:mod:`echoclr.pipeline.cpu_ops`, fast), or ``"dali"``,
DALI's own operators as on the GPU."""


def augment_graph(clips: Any, params: GraphInputs | None, cfg: AugmentConfig, *, cpu_rotate: str = "fused") -> Any:
    """Build the augmentation graph on DALI data nodes (call inside a pipeline definition).

    Args:
        clips: uint8 data node, per sample ``(T, H, W)`` layout "FHW", on CPU or GPU.
        params: the per-clip parameters (CPU data nodes); ignored (may be None) when
            ``cfg.enabled`` is False.
        cfg: what to apply.
        cpu_rotate: kernel for augmented clips on the CPU, one of :data:`ROTATE_IMPLS`:
            ``"fused"`` runs frame order, shift, flip, rotation and normalisation as one
            fused native kernel per batch; ``"dali"`` runs DALI's operators, as GPU clips
            always do. Their outputs are equal without rotation and equal up to rounding
            with it (see ``tests/test_pipeline.py``).

    Returns:
        The processed clips: float32 data node, per sample ``(T, H, W, C)`` ("FHWC").

    Raises:
        DaliNotAvailableError: DALI cannot be imported.
        ValueError: augmentation is on and ``params`` is None, or an unknown ``cpu_rotate``.
    """
    from echoclr.pipeline.dali import require_dali

    if cpu_rotate not in ROTATE_IMPLS:
        raise ValueError(f"cpu_rotate must be one of {ROTATE_IMPLS}, got {cpu_rotate!r}")

    dali = require_dali()
    fn, types = dali.fn, dali.types

    if not cfg.enabled:
        return _normalize(dali, clips, cfg)
    if params is None:
        raise ValueError("augment_graph needs the per-clip parameters when augmentation is enabled")

    if clips.device == "cpu" and cpu_rotate == "fused":
        from echoclr.pipeline.cpu_ops import FusedAugment

        pipe = dali.Pipeline.current()
        kernel = FusedAugment(
            channels=cfg.channels,
            mean=KINETICS_MEAN if cfg.kinetics_norm else None,
            std=KINETICS_STD if cfg.kinetics_norm else None,
            min_range=MIN_RANGE,
            threads=pipe.num_threads if pipe is not None else 1,
        )
        return fn.python_function(
            clips, params.orders, params.shift, params.flip, params.angle,
            function=kernel, batch_processing=True, output_layouts=LAYOUT,
        )

    clips = fn.sequence_rearrange(clips, new_order=params.orders)
    # sliced before the channel axis is added: rows of W bytes copy several times faster
    # than W single-byte pixels on DALI's CPU backend; a zero shift is a plain copy
    clips = fn.slice(
        clips,
        start=params.shift,
        rel_shape=(1.0, 1.0),
        axis_names="HW",
        out_of_bounds_policy="pad",
        fill_values=0,
    )
    clips = fn.expand_dims(clips, axes=[3], new_axis_names="C")  # (T, H, W) -> (T, H, W, 1)
    clips = fn.flip(clips, horizontal=params.flip, vertical=0)
    # angle 0 is an exact copy (checked in tests/test_pipeline.py)
    clips = fn.rotate(clips, angle=params.angle, keep_size=True, fill_value=0, interp_type=types.INTERP_LINEAR)
    return _normalize(dali, clips, cfg, expanded=True)


def _normalize(dali: Any, clips: Any, cfg: AugmentConfig, *, expanded: bool = False) -> Any:
    """Min-max, channels and standardisation with DALI operators: uint8 "FHW" (or "FHWC"
    with C = 1 when ``expanded``) in, float32 "FHWC" out."""
    fn, types = dali.fn, dali.types
    if not expanded:
        clips = fn.expand_dims(clips, axes=[3], new_axis_names="C")  # (T, H, W) -> (T, H, W, 1)
    # reduce the uint8 clip; the one arithmetic pass below promotes it to float32
    lo = fn.cast(fn.reductions.min(clips), dtype=types.FLOAT)
    hi = fn.cast(fn.reductions.max(clips), dtype=types.FLOAT)
    if cfg.channels == 3:
        # gray replicated, (T, H, W, 1) -> (T, H, W, 3); ~10x faster than fn.cat on DALI's CPU backend
        clips = fn.color_space_conversion(clips, image_type=types.GRAY, output_type=types.RGB)
    x = (clips - lo) / dali.math.max(hi - lo, MIN_RANGE)
    if cfg.kinetics_norm:
        mean = types.Constant(np.asarray(KINETICS_MEAN, dtype=np.float32))  # broadcast along C
        std = types.Constant(np.asarray(KINETICS_STD, dtype=np.float32))
        x = (x - mean) / std
    return x
