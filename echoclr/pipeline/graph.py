"""The clip augmentation graph: one DALI processing function for CPU and GPU pipelines.

The graph is independent of where its data comes from (an ``external_source`` fed by
the sampler and reader) and of the device: the same function builds the CPU pipeline
(``device_id=None``) and the GPU pipeline (clips moved to the GPU right after the
source). Every random parameter is drawn per clip by DALI's random operators from the
pipeline seed, applied identically to all frames of the clip, and returned as an extra
output (:class:`AugmentParams`) so that the test oracle :mod:`echoclr.pipeline.reference` can replay it.

Per clip, in order (the paper's augmentation, DESIGN.md "method" table):

1. frame order: ``out[t] = clip[order[t]]`` (the sampler's permutation);
2. shift: zero-pad ``pad`` px and crop back to the input size, i.e.
   ``out[y, x] = in[y + dy, x + dx]`` (0 outside), ``dy, dx`` uniform integers in
   ``[-pad, pad]``;
3. horizontal flip with probability ``flip_p``;
4. rotation with probability ``rotate_p`` by an angle uniform in
   ``[-max_angle_deg, max_angle_deg)`` degrees (counter-clockwise on screen) about the
   frame centre, bilinear, zero fill, same size, rounded back to uint8;
5. per-clip min-max to ``[0, 1]`` (a constant clip gives zeros);
6. optionally the gray channel replicated to 3 channels and Kinetics-400
   standardisation per channel.

With augmentation off only steps 5-6 run, as DALI operators. With augmentation on,
GPU clips (and CPU clips with ``cpu_rotate="dali"``) run every step as a DALI operator;
CPU clips by default run steps 1-6 as ONE ``fn.python_function`` per batch that calls a
native C++ kernel over the whole batch (see :mod:`echoclr.pipeline.cpu_ops` for why). The parameters always come from DALI's random
operators, seeded explicitly from the pipeline seed, so one seed draws the same values
whichever CPU kernel runs. (Whether a GPU pipeline draws them too is untested here.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

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
    """Parameters of the clip augmentation (defaults: the paper's pretraining/fine-tuning).

    Attributes:
        enabled: apply frame order, shift, flip and rotation; False for evaluation
            (only normalisation runs, the frame order input is ignored).
        pad: zero padding in px before the random crop back to the input size; the
            shift per axis is uniform in ``[-pad, pad]``.
        flip_p: probability of a horizontal flip, in [0, 1].
        rotate_p: probability of a rotation, in [0, 1].
        max_angle_deg: rotation angle bound in degrees, > 0; angles are uniform in
            ``[-max_angle_deg, max_angle_deg)``.
        channels: output channels, 1 (gray) or 3 (gray replicated, as Kinetics weights need).
        kinetics_norm: standardise with the Kinetics-400 mean/std after min-max;
            needs ``channels=3``.
    """

    enabled: bool = True
    pad: int = 8
    flip_p: float = 0.5
    rotate_p: float = 0.5
    max_angle_deg: float = 10.0
    channels: int = 1
    kinetics_norm: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.pad, bool) or not isinstance(self.pad, int) or self.pad < 0:
            raise ValueError(f"AugmentConfig.pad must be an int >= 0 (pixels), got {self.pad!r}")
        for name in ("flip_p", "rotate_p"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be a probability in [0, 1], got {value!r}")
        if not isinstance(self.max_angle_deg, (int, float)) or not (
            0.0 < self.max_angle_deg <= 180.0 and math.isfinite(self.max_angle_deg)
        ):
            raise ValueError(
                f"AugmentConfig.max_angle_deg must be in (0, 180] degrees, got {self.max_angle_deg!r}"
            )
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


def minmax_normalize(clip: np.ndarray) -> np.ndarray:
    """Per-clip min-max to [0, 1] in float32 (the graph's step 5 for callers outside a pipeline); a constant clip
    gives zeros.

    Args:
        clip: ``(T, H, W)`` array.

    Returns:
        float32 ``(T, H, W)``.
    """
    x = clip.astype(np.float32)
    lo, hi = x.min(), x.max()
    return (x - lo) / np.maximum(hi - lo, np.float32(MIN_RANGE))


class GraphOutputs(NamedTuple):
    """DALI data nodes returned by :func:`augment_graph`.

    Attributes:
        clips: float32, per sample ``(T, H, W, C)`` ("FHWC").
        shift: int32 ``(2,)`` per sample, ``(dy, dx)``; None when augmentation is off.
        flip: int32 scalar per sample, 1 = flipped; None when augmentation is off.
        angle: float32 scalar per sample, degrees (0 = not rotated); None when off.
    """

    clips: Any
    shift: Any
    flip: Any
    angle: Any


ROTATE_IMPLS = ("fused", "dali")
"""Kernels for augmented CPU clips: ``"fused"``, the whole augmentation fused into one
``fn.python_function`` per batch (:mod:`echoclr.pipeline.cpu_ops`, fast), or ``"dali"``,
DALI's own operators as on the GPU."""


def augment_graph(clips: Any, orders: Any, cfg: AugmentConfig, *, cpu_rotate: str = "fused") -> GraphOutputs:
    """Build the augmentation graph on DALI data nodes (call inside a pipeline definition).

    Args:
        clips: uint8 data node, per sample ``(T, H, W)`` layout "FHW", on CPU or GPU.
        orders: int32 data node on CPU, per sample ``(T,)``: output frame ``t`` is input
            frame ``orders[t]``; ignored (may be None) when ``cfg.enabled`` is False.
        cfg: augmentation parameters.
        cpu_rotate: kernel for augmented clips on the CPU, one of :data:`ROTATE_IMPLS`:
            ``"fused"`` runs frame order, shift, flip, rotation and normalisation as one
            fused native kernel per batch; ``"dali"`` runs DALI's operators, as
            GPU clips always do. Both draw the same parameters with DALI's random
            operators; their outputs are equal without rotation and equal up to rounding
            with it (see ``tests/test_pipeline.py``).

    Returns:
        :class:`GraphOutputs` with the processed clips and the drawn parameters.

    Raises:
        DaliNotAvailableError: DALI cannot be imported.
        ValueError: augmentation is on and ``orders`` is None, or an unknown ``cpu_rotate``.
    """
    from echoclr.pipeline.dali import require_dali

    if cpu_rotate not in ROTATE_IMPLS:
        raise ValueError(f"cpu_rotate must be one of {ROTATE_IMPLS}, got {cpu_rotate!r}")

    dali = require_dali()
    fn, types = dali.fn, dali.types

    if not cfg.enabled:
        return GraphOutputs(clips=_normalize(dali, clips, cfg), shift=None, flip=None, angle=None)
    if orders is None:
        raise ValueError("augment_graph needs the frame orders input when augmentation is enabled")
    pipe = dali.Pipeline.current()
    seeds = _random_op_seeds(pipe.seed if pipe is not None else None, 4)
    # values= gives a discrete uniform; an integer range= would round a continuous draw
    # and halve the probability of the two end values
    shift = fn.random.uniform(
        values=list(range(-cfg.pad, cfg.pad + 1)), dtype=types.INT32, shape=(2,), **seeds[0]
    )
    flip = fn.random.coin_flip(probability=float(cfg.flip_p), dtype=types.INT32, **seeds[1])
    rotate = fn.random.coin_flip(probability=float(cfg.rotate_p), dtype=types.INT32, **seeds[2])
    angle = fn.random.uniform(range=(-float(cfg.max_angle_deg), float(cfg.max_angle_deg)), **seeds[3])
    angle = angle * fn.cast(rotate, dtype=types.FLOAT)

    if clips.device == "cpu" and cpu_rotate == "fused":
        from echoclr.pipeline.cpu_ops import FusedAugment

        kernel = FusedAugment(
            channels=cfg.channels,
            mean=KINETICS_MEAN if cfg.kinetics_norm else None,
            std=KINETICS_STD if cfg.kinetics_norm else None,
            min_range=MIN_RANGE,
            threads=pipe.num_threads if pipe is not None else 1,
        )
        x = fn.python_function(
            clips, orders, shift, flip, angle, function=kernel, batch_processing=True, output_layouts=LAYOUT
        )
        return GraphOutputs(clips=x, shift=shift, flip=flip, angle=angle)

    clips = fn.sequence_rearrange(clips, new_order=orders)
    if cfg.pad > 0:
        # sliced before the channel axis is added: rows of W bytes copy several times
        # faster than W single-byte pixels on DALI's CPU backend
        clips = fn.slice(
            clips,
            start=shift,
            rel_shape=(1.0, 1.0),
            axis_names="HW",
            out_of_bounds_policy="pad",
            fill_values=0,
        )
    clips = fn.expand_dims(clips, axes=[3], new_axis_names="C")  # (T, H, W) -> (T, H, W, 1)
    if cfg.flip_p > 0:
        clips = fn.flip(clips, horizontal=flip, vertical=0)
    if cfg.rotate_p > 0:
        clips = fn.rotate(clips, angle=angle, keep_size=True, fill_value=0, interp_type=types.INTERP_LINEAR)
    return GraphOutputs(clips=_normalize(dali, clips, cfg, expanded=True), shift=shift, flip=flip, angle=angle)


def _random_op_seeds(pipeline_seed: int | None, n: int) -> list[dict[str, int]]:
    """Explicit seeds of the graph's random operators, derived from the pipeline seed.

    DALI seeds an operator without one by its position in the built graph, so the
    "fused" and "dali" graphs (different operators after the draws) would draw different
    parameters from one pipeline seed; explicit seeds make the draws depend only on the
    pipeline seed. No pipeline seed: DALI's own (random) seeding.
    """
    if pipeline_seed is None or pipeline_seed < 0:
        return [{} for _ in range(n)]
    states = np.random.SeedSequence(int(pipeline_seed)).generate_state(n)  # uint32 (n,)
    return [{"seed": int(state) & 0x7FFFFFFF} for state in states]


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
