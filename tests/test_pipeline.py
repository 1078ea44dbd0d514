"""The DALI clip pipeline against the numpy/scipy reference, and the loaders around it (CPU)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("nvidia.dali")

from echoclr.data.permutations import all_permutations, index_from_permutation  # noqa: E402
from echoclr.data.sampling import PLAN_FIELDS, AugmentDraws, EpochPlan, SamplerConfig, plan_epoch  # noqa: E402
from echoclr.pipeline.cpu_ops import FusedAugment, warp_clip  # noqa: E402
from echoclr.pipeline.dali import ClipPipeline  # noqa: E402
from echoclr.pipeline.graph import KINETICS_MEAN, KINETICS_STD, AugmentConfig  # noqa: E402
from echoclr.pipeline.loaders import EvalLoader, LoaderConfig, PairLoader, SingleLoader  # noqa: E402
from echoclr.pipeline.reference import (  # noqa: E402
    AugmentParams,
    draw_params,
    reference_augment,
    rotate_clip,
    shift_clip,
)

PAPER = AugmentDraws()
NO_ROTATION = AugmentDraws(rotate_p=0.0)
NO_SPATIAL = AugmentDraws(pad=0, flip_p=0.0, rotate_p=0.0)  # frame order + min-max only


class FakeReader:
    """In-memory reader with the store reader's interface (end padding with zeros)."""

    def __init__(self, videos: list[np.ndarray], study_of_video: list[int], labels: dict[str, list[float]]):
        self.videos = videos
        self.study_of_video = np.asarray(study_of_video, dtype=np.int64)
        self._labels = labels
        self.calls: list[tuple[float, str]] = []

    def read_clips(self, videos: np.ndarray, starts: np.ndarray, clip_len: int) -> np.ndarray:
        self.calls.append((time.perf_counter(), threading.current_thread().name))
        h, w = self.videos[0].shape[1:]
        out = np.zeros((len(videos), clip_len, h, w), np.uint8)
        for i, (v, s) in enumerate(zip(videos, starts)):
            frames = self.videos[v][s : s + clip_len]
            out[i, : len(frames)] = frames
        return out

    def labels(self, name: str) -> np.ndarray:
        return np.asarray(self._labels[name], dtype=np.float32)


def make_reader(n_videos: int = 6, n_frames: int = 10, size: int = 24, seed: int = 0) -> FakeReader:
    rng = np.random.default_rng(seed)
    videos = [rng.integers(0, 256, (n_frames, size, size), dtype=np.uint8) for _ in range(n_videos)]
    study = [v // 2 for v in range(n_videos)]
    lvh = [float(v % 2) for v in range(n_videos)]
    lvh[-1] = float("nan")
    return FakeReader(videos, study, {"lvh": lvh})


def params_of(n: int, draws: AugmentDraws = PAPER, seed: int = 0) -> AugmentParams:
    return draw_params(np.random.default_rng(seed), n, draws)


def one_batch_pipeline(clips, orders, params, augment, **kwargs) -> torch.Tensor:
    batches = iter([(clips, orders, params)])
    pipe = ClipPipeline(lambda: next(batches), batch_size=len(clips), augment=augment, **kwargs)
    x, fed = next(pipe)
    assert fed is (params if augment.enabled else None)
    return x


def random_batch(n: int, t: int, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    clips = rng.integers(0, 256, (n, t, h, w), dtype=np.uint8)
    orders = np.stack([rng.permutation(t) for _ in range(n)])  # (n, t)
    return clips, orders


def ref_clips(reader: FakeReader, videos, starts, perms, clip_len, cfg=NO_SPATIAL) -> np.ndarray:
    """Reference output of un-shifted clips read from ``reader`` with frame orders ``perms``."""
    clips = reader.read_clips(np.asarray(videos), np.asarray(starts), clip_len)
    n = len(clips)
    orders = all_permutations(clip_len)[np.asarray(perms)]  # (n,) -> (n, clip_len)
    params = AugmentParams(shift=np.zeros((n, 2), int), flip=np.zeros(n, bool), angle=np.zeros(n, np.float32))
    return reference_augment(clips, orders, params, cfg)


def ref_rows(reader: FakeReader, rows: np.ndarray, mode: str, view: str, clip_len: int = 4,
             cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """Reference output of one view of plan rows, with the plan's own parameters."""
    col = PLAN_FIELDS[mode].index
    video, start = ("video_" + view, "start_" + view) if mode == "pairs" else ("video", "start")
    clips = reader.read_clips(rows[:, col(video)], rows[:, col(start)], clip_len)
    orders = all_permutations(clip_len)[rows[:, col("perm_" + view)]]  # (n,) -> (n, clip_len)
    params = AugmentParams.from_plan(*(rows[:, col(f"{name}_{view}")] for name in ("dy", "dx", "flip", "angle_mdeg")))
    return reference_augment(clips, orders, params, cfg)


# ---------------------------------------------------------------- graph vs reference


@pytest.mark.parametrize(
    "cfg",
    [
        AugmentConfig(),
        AugmentConfig(channels=3),
        AugmentConfig(channels=3, kinetics_norm=True),
        AugmentConfig(enabled=False),
    ],
    ids=["gray", "rgb", "kinetics", "eval"],
)
@pytest.mark.parametrize("cpu_rotate", ["fused", "dali"])
def test_pipeline_equals_reference_exactly_without_rotation(cfg, cpu_rotate):
    # "fused" is the fused kernel (cpu_ops), "dali" the operators the GPU graph uses
    clips, orders = random_batch(16, 4, 20, 24)
    params = params_of(16, NO_ROTATION, seed=3)
    # the batch exercises the parameters: both flip states, shifts of both signs, no rotation
    assert params.flip.any() and not params.flip.all()
    assert params.shift.min() < 0 < params.shift.max() and np.abs(params.shift).max() <= 8
    x = one_batch_pipeline(clips, orders, params, cfg, cpu_rotate=cpu_rotate)
    np.testing.assert_array_equal(x.numpy(), reference_augment(clips, orders, params, cfg))


@pytest.mark.parametrize("cpu_rotate", ["fused", "dali"])
def test_rotation_matches_reference_within_rounding(cpu_rotate):
    # Both sides interpolate bilinearly with zero fill about the same centre; DALI computes
    # sample positions in float32, the fused kernel and the reference in float64 (in a
    # different order of operations), so a rotated uint8
    # pixel may round the other way when its exact value lies within ~0.005 of a
    # half-integer: |du| <= 1 gray level on a few pixels. Through min-max with
    # |dlo|, |dhi| <= 1 that bounds the normalised difference by 4 / (range - 2).
    cfg = AugmentConfig()
    clips, orders = random_batch(12, 4, 28, 32, seed=1)
    params = params_of(12, AugmentDraws(rotate_p=1.0), seed=5)
    x = one_batch_pipeline(clips, orders, params, cfg, cpu_rotate=cpu_rotate)
    assert np.all(params.angle != 0) and np.all(np.abs(params.angle) <= 10)
    ref = reference_augment(clips, orders, params, cfg)
    out = x.numpy()
    for i, clip in enumerate(clips):
        moved = shift_clip(clip[orders[i]], *params.shift[i])
        moved = rotate_clip(moved[:, :, ::-1] if params.flip[i] else moved, float(params.angle[i]))
        tol = 4.0 / (float(moved.max()) - float(moved.min()) - 2.0)
        assert np.abs(out[i] - ref[i]).max() <= tol, (i, cpu_rotate)
    mismatched = np.mean(np.abs(out - ref) > 1e-6)
    assert mismatched < 0.01, mismatched


def test_rotation_direction_and_centre_are_dalis():
    # a single bright pixel right of the centre goes up on screen for a positive angle
    clip = np.zeros((1, 1, 21, 21), np.uint8)
    clip[0, 0, 10, 16] = 255
    cfg = AugmentConfig()
    params = params_of(1, AugmentDraws(pad=0, flip_p=0.0, rotate_p=1.0, max_angle_deg=180.0), seed=2)
    assert abs(params.angle[0]) > 20
    x = one_batch_pipeline(clip, np.zeros((1, 1), np.int64), params, cfg, cpu_rotate="dali")
    y = one_batch_pipeline(clip, np.zeros((1, 1), np.int64), params, cfg, cpu_rotate="fused")
    angle = np.deg2rad(float(params.angle[0]))
    row, col = np.unravel_index(np.argmax(x.numpy()[0, 0, 0]), (21, 21))
    assert abs(row - (10 - 6 * np.sin(angle))) <= 1 and abs(col - (10 + 6 * np.cos(angle))) <= 1
    assert np.unravel_index(np.argmax(y.numpy()[0, 0, 0]), (21, 21)) == (row, col)
    # the bilinear peak keeps >= 1/4 of the pixel (>= 63 gray levels), so one level of
    # rounding in the peak, the pixel or the minimum moves a normalised value by <= 4 / 61
    np.testing.assert_allclose(y.numpy(), x.numpy(), atol=4 / 61)


@pytest.mark.parametrize("clip_len", [1, 2, 5, 6])
def test_fused_rotation_matches_reference_for_any_clip_length(clip_len):
    # one sample position per pixel serves every frame of the clip, whatever its length
    cfg = AugmentConfig(channels=3, kinetics_norm=True)
    clips, orders = random_batch(4, clip_len, 22, 26, seed=clip_len)
    params = params_of(4, AugmentDraws(rotate_p=1.0), seed=9)
    x = one_batch_pipeline(clips, orders, params, cfg)
    assert np.all(params.angle != 0)
    out, ref = x.numpy(), reference_augment(clips, orders, params, cfg)
    for i, clip in enumerate(clips):
        moved = shift_clip(clip[orders[i]], *params.shift[i])
        moved = rotate_clip(moved[:, :, ::-1] if params.flip[i] else moved, float(params.angle[i]))
        # the bound of test_rotation_matches_reference_within_rounding, divided by the std
        tol = 4.0 / (float(moved.max()) - float(moved.min()) - 2.0) / min(KINETICS_STD)
        assert np.abs(out[i] - ref[i]).max() <= tol, i
    assert np.mean(np.abs(out - ref) > 1e-5) < 0.01


def test_the_graph_draws_nothing_its_output_depends_only_on_its_inputs():
    # two pipelines with different seeds give the same batch for the same clips and parameters
    clips, orders = random_batch(16, 2, 12, 12)
    params = params_of(16, seed=21)
    for kernel in ("fused", "dali"):
        a = one_batch_pipeline(clips, orders, params, AugmentConfig(), seed=1, cpu_rotate=kernel)
        b = one_batch_pipeline(clips, orders, params, AugmentConfig(), seed=2, cpu_rotate=kernel)
        assert torch.equal(a, b), kernel


def test_warp_clip_equals_shift_flip_rotate_of_the_reference():
    # kernel level, many random cases: exact without rotation (also for shifts that keep
    # nothing), within one gray level on a few pixels with it
    rng = np.random.default_rng(4)
    differing = total = 0
    for case in range(120):
        t, h, w = int(rng.integers(1, 8)), int(rng.integers(3, 30)), int(rng.integers(3, 30))
        clip = rng.integers(0, 256, (t, h, w), dtype=np.uint8)
        order = rng.permutation(t)
        dy, dx = (int(v) for v in rng.integers(-12, 13, 2))
        flip = bool(case % 2)
        angle = 0.0 if case % 3 == 0 else float(np.float32(rng.uniform(-20, 20)))
        want = shift_clip(clip[order], dy, dx)
        want = rotate_clip(np.ascontiguousarray(want[:, :, ::-1] if flip else want), angle)
        got = warp_clip(clip, order, dy, dx, flip, angle)
        diff = np.abs(got.astype(int) - want.astype(int))
        if angle == 0.0:
            np.testing.assert_array_equal(got, want, err_msg=str((t, h, w, dy, dx, flip)))
        else:
            assert diff.max() <= 1, (t, h, w, dy, dx, flip, angle)
            differing += int((diff > 0).sum())
            total += diff.size
    assert differing / total < 0.005, differing / total


def test_warp_clip_keeps_the_pixels_the_shift_cropped_away_at_zero():
    # a constant clip shifted by 8 rows: the rotation turns the source rows the crop
    # discarded back into the frame, and they must stay zero as in the reference (a
    # warp of the whole source would show 200 there)
    clip = np.full((4, 32, 32), 200, np.uint8)
    for dy, dx in [(8, 0), (-8, 0), (0, 8), (5, -7)]:
        want = rotate_clip(shift_clip(clip, dy, dx), 10.0)
        got = warp_clip(clip, np.arange(4), dy, dx, False, 10.0)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, (dy, dx)
        # the check can fail: some output pixels sample well inside the source frame
        # (where a whole-source warp gives 200), yet are zero because the crop removed them
        ys, xs = np.mgrid[0:32, 0:32]
        sx, sy = np.tensordot(source_map(32, 32, dy, dx, False, 10.0), [xs, ys, np.ones_like(xs)], axes=1)
        inside = (sx >= 1) & (sx <= 30) & (sy >= 1) & (sy <= 30)
        assert np.sum(inside & (want[0] == 0)) >= 10, (dy, dx)


def source_map(h: int, w: int, dy: int, dx: int, flip: bool, angle_deg: float) -> np.ndarray:
    # output (x, y) of rotate(flip(shift(source))) samples the source at A @ (x, y, 1)
    c, s = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    f = -1.0 if flip else 1.0
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    return np.array([[f * c, -f * s, cx + dx - f * (c * cx - s * cy)], [s, c, cy + dy - s * cx - c * cy]])


def test_source_map_composes_shift_flip_and_rotation():
    h, w, dy, dx, angle = 20, 30, 3, -5, 17.0
    cy, cx = (h - 1) / 2, (w - 1) / 2
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    for flip in (False, True):
        matrix = source_map(h, w, dy, dx, flip, angle)
        for x, y in [(0.0, 0.0), (7.0, 12.0), (29.0, 19.0)]:
            xr, yr = c * (x - cx) - s * (y - cy) + cx, s * (x - cx) + c * (y - cy) + cy  # rotation
            xf = w - 1 - xr if flip else xr  # flip
            np.testing.assert_allclose(matrix @ [x, y, 1.0], [xf + dx, yr + dy], atol=1e-12)  # shift


def test_fused_augment_handles_ragged_batches_and_rejects_bad_settings():
    rng = np.random.default_rng(0)
    kernel = FusedAugment(channels=3, mean=None, std=None, min_range=1e-6, threads=2)
    clips = [rng.integers(0, 256, (3, 10, 12), dtype=np.uint8), rng.integers(0, 256, (2, 8, 9), dtype=np.uint8)]
    orders = [np.array([2, 0, 1]), np.array([1, 0])]
    zeros = [np.zeros(2, np.int32)] * 2
    outs = kernel(clips, orders, zeros, [np.int32(0)] * 2, [np.float32(0)] * 2)
    cfg = AugmentConfig(channels=3)
    for clip, order, out in zip(clips, orders, outs):
        params = AugmentParams(shift=np.zeros((1, 2), int), flip=np.zeros(1, bool), angle=np.zeros(1, np.float32))
        want = reference_augment(clip[None], order[None], params, cfg)[0]  # (C, T, H, W)
        np.testing.assert_array_equal(out, want.transpose(1, 2, 3, 0))
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        FusedAugment(channels=2, mean=None, std=None, min_range=1e-6, threads=1)
    with pytest.raises(ValueError, match="mean and std together"):
        FusedAugment(channels=1, mean=KINETICS_MEAN, std=KINETICS_STD, min_range=1e-6, threads=1)
    with pytest.raises(ValueError, match="threads must be an int >= 1"):
        FusedAugment(channels=1, mean=None, std=None, min_range=1e-6, threads=0)


def test_native_kernel_rejects_what_it_cannot_read_or_write():
    clip = np.zeros((2, 6, 6), np.uint8)
    with pytest.raises(ValueError, match="frame order out of range"):
        warp_clip(clip, np.array([0, 2]), 0, 0, False, 0.0)
    kernel = FusedAugment(channels=1, mean=None, std=None, min_range=1e-6, threads=1)
    args = ([clip], [np.array([1, 0])], [np.zeros(2, np.int32)], [np.int32(0)], [np.float32(0)])
    with pytest.raises(ValueError, match="outs must be writable C-contiguous float32"):
        kernel._kernel(*args, [np.zeros((2, 6, 6, 1), np.float64)], channels=1, min_range=1e-6, mean=None,
                       std=None, threads=1)
    with pytest.raises(ValueError, match="equal lengths"):
        kernel._kernel(*args, [], channels=1, min_range=1e-6, mean=None, std=None, threads=1)
    out = kernel(*args)[0]  # the same arguments, well formed: frames swapped, min-max of a constant clip
    assert out.shape == (2, 6, 6, 1) and not out.any()


# ---------------------------------------------------------------- properties of the output


def test_frame_order_labels_decode_to_the_applied_permutation():
    # frames of constant, distinct values keep their value at the frame centre through
    # shift (<= 8 px), flip and rotation, so the centre pixels reveal the applied order
    k, size = 4, 32
    videos = [np.stack([np.full((size, size), 40 * (t + 1) + v, np.uint8) for t in range(k)]) for v in range(4)]
    reader = FakeReader(videos, [0, 0, 1, 1], {})
    rng = np.random.default_rng(7)
    n = 12
    videos_ij, perms, zeros = rng.integers(0, 4, (n, 2)), rng.integers(0, 24, (n, 2)), np.zeros(n, int)
    head = np.column_stack([videos_ij[:, 0], zeros, perms[:, 0], videos_ij[:, 1], zeros, perms[:, 1]])
    plan = np.column_stack([head, view_columns(n, PAPER, 1), view_columns(n, PAPER, 2)])
    loader = PairLoader(reader, plan, batch_size=6, config=LoaderConfig(clip_len=k))
    seen = 0
    for x, order in loader:
        centre = x[:, 0, :, size // 2, size // 2].numpy()  # (2n, T)
        applied = np.argsort(np.argsort(centre, axis=1), axis=1)  # rank of each output frame
        decoded = [index_from_permutation(p) for p in applied]
        np.testing.assert_array_equal(decoded, order.numpy())
        seen += len(order)
    assert seen == 2 * n


@pytest.mark.parametrize("augment", [AugmentConfig(), AugmentConfig(enabled=False)], ids=["train", "eval"])
def test_constant_zero_and_end_padded_clips_give_no_nan(augment):
    reader = FakeReader([np.full((6, 24, 24), 77, np.uint8), np.zeros((6, 24, 24), np.uint8)], [0, 1], {})
    reader.videos.append(np.random.default_rng(0).integers(1, 256, (3, 24, 24), dtype=np.uint8))
    clips = reader.read_clips(np.array([0, 1, 2, 2]), np.array([0, 0, 1, 2]), 4)  # video 2: 2 and 3 zero frames
    assert not clips[2, 2:].any() and not clips[3, 1:].any()
    x = one_batch_pipeline(clips, np.tile(np.arange(4), (4, 1)), params_of(4), augment)
    out = x.numpy()
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out[1], 0)  # all-zero clip
    if not augment.enabled:
        np.testing.assert_array_equal(out[0], 0)  # constant clip, no zero border added
        np.testing.assert_array_equal(out[2:, :, -1], 0)  # padded end frames stay at the minimum


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("channels", [1, 3])
def test_output_is_channels_last_3d_with_the_asked_dtype(dtype, channels):
    clips, orders = random_batch(4, 4, 16, 20)
    cfg = AugmentConfig(channels=channels)
    params = params_of(4, seed=2)
    x = one_batch_pipeline(clips, orders, params, cfg, dtype=dtype)
    n, t, h, w = clips.shape
    assert x.shape == (n, channels, t, h, w)
    assert x.dtype == {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    assert x.device.type == "cpu"
    assert x.stride() == (t * h * w * channels, 1, h * w * channels, w * channels, channels)
    assert x.is_contiguous(memory_format=torch.channels_last_3d)
    if dtype == "bfloat16":
        ref = one_batch_pipeline(clips, orders, params, cfg, dtype="float32")
        assert torch.equal(x, ref.to(torch.bfloat16))


def test_partial_batches_and_outputs_outliving_later_batches():
    # the tensors are zero-copy views of DALI buffers: they must stay intact while the
    # pipeline produces the next batches
    cfg = AugmentConfig()
    clips, orders = random_batch(20, 2, 12, 12)
    p = params_of(20, NO_ROTATION, seed=4)

    def part(a: int, b: int) -> tuple:
        return clips[a:b], orders[a:b], AugmentParams(shift=p.shift[a:b], flip=p.flip[a:b], angle=p.angle[a:b])

    batches = iter([part(0, 8), part(8, 16), part(16, 20)])
    outputs = list(ClipPipeline(lambda: next(batches), batch_size=8, augment=cfg, seed=4))
    assert [len(x) for x, _ in outputs] == [8, 8, 4]
    for i, (x, params) in enumerate(outputs):
        part = slice(8 * i, 8 * i + len(x))
        np.testing.assert_array_equal(x.numpy(), reference_augment(clips[part], orders[part], params, cfg))


def test_parameter_draws_follow_the_configured_distributions():
    # the sampler's draws (from a plan) and the numpy twin used by benchmarks: every shift in
    # [-pad, pad] with equal weight, flips and rotations at their rates, angles in range
    draws = AugmentDraws(pad=3, flip_p=0.5, rotate_p=0.25, max_angle_deg=7.0)
    n = 1024
    plan = plan_epoch(SamplerConfig("single", augment=draws), np.arange(n), np.full(n, 4), epoch=0)
    planned = AugmentParams.from_plan(*(plan.fields[f"{name}_a"] for name in ("dy", "dx", "flip", "angle_mdeg")))
    for params in (planned, draw_params(np.random.default_rng(0), n, draws)):
        counts = np.bincount(params.shift.ravel() + 3, minlength=7)
        assert len(counts) == 7 and counts.min() > 0.6 * (2 * n / 7), counts  # ends not under-drawn
        assert abs(params.flip.mean() - 0.5) < 0.08
        rotated = params.angle != 0
        assert abs(rotated.mean() - 0.25) < 0.08
        assert np.all(np.abs(params.angle) <= 7.0) and np.abs(params.angle[rotated]).max() > 5.0


# ---------------------------------------------------------------- loaders


def view_columns(n: int, draws: AugmentDraws, seed: int) -> np.ndarray:
    """(n, 4) plan columns dy, dx, flip, angle_mdeg of one view."""
    p = params_of(n, draws, seed)
    return np.column_stack([p.shift, p.flip, np.round(p.angle.astype(np.float64) * 1000)]).astype(np.int64)


def pairs_plan(n: int, seed: int = 0, n_videos: int = 6, n_frames: int = 10, draws: AugmentDraws = PAPER) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vi = rng.integers(0, n_videos, n)
    vj = rng.integers(0, n_videos, n)
    si = rng.integers(0, n_frames, n)  # some starts run past the end: end padding
    sj = rng.integers(0, n_frames, n)
    head = np.column_stack([vi, si, rng.integers(0, 24, n), vj, sj, rng.integers(0, 24, n)])
    return np.column_stack([head, view_columns(n, draws, seed + 1), view_columns(n, draws, seed + 2)])


def single_plan(rows: list[tuple[int, int, int, int]], draws: AugmentDraws = NO_SPATIAL, seed: int = 0) -> np.ndarray:
    n = len(rows)
    return np.column_stack([np.array(rows, np.int64).reshape(n, 4), view_columns(n, draws, seed),
                            view_columns(n, draws, seed + 1)])


def test_pair_loader_applies_the_plans_parameters_to_the_two_videos_of_each_item():
    reader = make_reader()
    plan = pairs_plan(11, draws=NO_ROTATION)
    loader = PairLoader(reader, plan, batch_size=4, drop_last=True)
    assert len(loader) == 2
    batches = list(loader)
    assert len(batches) == 2  # 11 items, batch 4, last 3 dropped
    for b, (x, order) in enumerate(batches):
        rows = plan[4 * b : 4 * b + 4]
        assert x.shape == (8, 1, 4, 24, 24)  # views i then views j: the layout the model consumes
        np.testing.assert_array_equal(x[:4].numpy(), ref_rows(reader, rows, "pairs", "i"))
        np.testing.assert_array_equal(x[4:].numpy(), ref_rows(reader, rows, "pairs", "j"))
        np.testing.assert_array_equal(order.numpy(), np.r_[rows[:, 2], rows[:, 5]])
        assert order.dtype == torch.int64
        assert x.is_contiguous(memory_format=torch.channels_last_3d)
    kept = list(PairLoader(reader, plan, batch_size=4, drop_last=False))
    assert [len(b[0]) for b in kept] == [8, 8, 6]


def test_pair_loader_on_a_sampler_plan_matches_the_reference_and_resumes_without_state():
    reader = make_reader()
    plan = plan_epoch(SamplerConfig("pairs", seed=4, augment=NO_ROTATION), reader.study_of_video, np.full(6, 10),
                      epoch=2)
    assert len(plan) == 3 and plan.fields["flip_i"].any() and plan.fields["dy_j"].any()
    full = list(PairLoader(reader, plan, 1))
    for b, (x, _) in enumerate(full):
        rows = plan_array_of(plan)[b : b + 1]
        np.testing.assert_array_equal(x[:1].numpy(), ref_rows(reader, rows, "pairs", "i"))
        np.testing.assert_array_equal(x[1:].numpy(), ref_rows(reader, rows, "pairs", "j"))
    resumed = list(PairLoader(reader, plan[1:], 1))  # the rest of the epoch: nothing to fast-forward
    for got, want in zip(resumed, full[1:]):
        assert all(torch.equal(a, b) for a, b in zip(got, want))


def plan_array_of(plan: EpochPlan) -> np.ndarray:
    return np.stack([plan.fields[name] for name in PLAN_FIELDS[plan.mode]], axis=1)  # (M, n_fields)


def test_pair_loader_accepts_an_epoch_plan_and_single_plans_give_two_views_of_one_clip():
    reader = make_reader()
    rng = np.random.default_rng(3)
    rows = np.column_stack([rng.integers(0, 6, 5), rng.integers(0, 7, 5), rng.integers(0, 24, (5, 2))])
    table = single_plan([tuple(r) for r in rows], draws=PAPER, seed=4)
    plan = EpochPlan("single", {name: table[:, c].copy() for c, name in enumerate(PLAN_FIELDS["single"])})
    (x, order), = list(PairLoader(reader, plan, 5))
    assert len(reader.calls) == 1  # the clip was read once for both views
    np.testing.assert_array_equal(x[:5].numpy(), ref_rows(reader, table, "single", "a"))
    np.testing.assert_array_equal(x[5:].numpy(), ref_rows(reader, table, "single", "b"))
    np.testing.assert_array_equal(order.numpy(), np.r_[table[:, 2], table[:, 3]])


def test_one_pipeline_serves_every_epoch_and_pass():
    reader = make_reader()
    sampler = SamplerConfig("pairs", seed=9)
    n_frames = np.full(6, 10)
    loader = PairLoader(reader, plan_epoch(sampler, reader.study_of_video, n_frames, epoch=0), 1)
    for epoch in range(3):
        plan = plan_epoch(sampler, reader.study_of_video, n_frames, epoch=epoch)
        loader.set_plan(plan)
        batches = list(loader)
        assert len(batches) == 3
        for b, (x, _) in enumerate(batches):  # each pass gives exactly its own plan's batches
            rows = plan_array_of(plan)[b : b + 1]
            want = np.concatenate([ref_rows(reader, rows, "pairs", "i"), ref_rows(reader, rows, "pairs", "j")])
            np.testing.assert_allclose(x.numpy(), want, atol=4 / 60)  # rotation: within rounding
    assert loader.pipeline_builds == 1
    evals = EvalLoader(reader, np.array([[0, 0, 0], [1, 2, 1], [2, 4, 0]]), 2)
    passes = [list(evals) for _ in range(3)]  # validation passes reuse the pipeline too
    assert evals.pipeline_builds == 1
    assert all(torch.equal(a[0], b[0]) for a, b in zip(passes[0], passes[2]))
    abandoned = iter(loader)
    next(abandoned)
    abandoned.close()  # a pass left half-way: its queued batches are dropped with its pipeline
    assert len(list(loader)) == 3 and loader.pipeline_builds == 2


def test_single_loader_labels():
    reader = make_reader()
    plan = single_plan([(0, 0, 0, 0), (1, 2, 0, 0), (2, 9, 0, 0), (3, 1, 0, 0), (4, 3, 0, 0)])
    cfg = LoaderConfig(clip_len=6, augment=AugmentConfig(channels=3, kinetics_norm=True))
    batches = list(SingleLoader(reader, plan, 2, cfg, label="lvh", drop_last=False))
    assert [len(x) for x, _ in batches] == [2, 2, 1]
    labels = torch.cat([y for _, y in batches])
    assert labels.dtype == torch.float32
    np.testing.assert_array_equal(labels.numpy(), reader.labels("lvh")[plan[:, 0]])
    assert batches[0][0].shape == (2, 3, 6, 24, 24)
    (x, none), = list(SingleLoader(reader, plan[:2], 2, LoaderConfig(clip_len=6)))
    assert none is None and x.shape == (2, 1, 6, 24, 24)
    with pytest.raises(ValueError, match="no 'lvh' label .*video 5"):
        SingleLoader(reader, single_plan([(5, 0, 0, 0)]), 1, label="lvh")


def test_eval_loader_is_deterministic_and_unaugmented():
    reader = make_reader()
    plan = np.array([[v, s, c] for v, s, c in [(0, 0, 0), (0, 6, 1), (3, 2, 0), (5, 8, 0), (4, 1, 2)]])
    cfg = LoaderConfig(augment=AugmentConfig(channels=3))  # augmentation "on" in the config is ignored
    loader = EvalLoader(reader, plan, batch_size=2, config=cfg)
    first, second = list(loader), list(loader)
    assert [len(b[0]) for b in first] == [2, 2, 1]  # drop_last defaults to False
    x = torch.cat([b[0] for b in first]).numpy()
    clips = reader.read_clips(plan[:, 0], plan[:, 1], 4)
    np.testing.assert_array_equal(x, reference_augment(clips, None, None, AugmentConfig(enabled=False, channels=3)))
    for (xa, va, sa), (xb, vb, sb) in zip(first, second):
        assert torch.equal(xa, xb) and np.array_equal(va, vb) and np.array_equal(sa, sb)
    assert isinstance(first[0][1], np.ndarray)  # indices stay on the host
    np.testing.assert_array_equal(np.concatenate([b[1] for b in first]), plan[:, 0])
    np.testing.assert_array_equal(np.concatenate([b[2] for b in first]), reader.study_of_video[plan[:, 0]])


def test_reading_overlaps_processing_and_consumption():
    # reads and the consumer both sleep `delay` per batch; after the first batch, serial
    # work would take 2 * delay per batch, overlapped work about delay
    reader = make_reader(size=16)
    delay, n = 0.06, 10
    original = reader.read_clips

    def slow_read(videos, starts, clip_len):
        time.sleep(delay)
        return original(videos, starts, clip_len)

    reader.read_clips = slow_read
    loader = PairLoader(reader, pairs_plan(2 * n, draws=NO_SPATIAL), 2, LoaderConfig(read_workers=2, read_ahead=2))
    batches = iter(loader)
    next(batches)
    start = time.perf_counter()
    for _ in batches:
        time.sleep(delay)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.75 * 2 * delay * (n - 1), elapsed
    assert all(name.startswith("echoclr-readahead") for _, name in reader.calls)


def test_reader_errors_reach_the_consumer():
    reader = make_reader()

    def broken(videos, starts, clip_len):
        raise OSError("chunk 3 of video 'a17' is truncated")

    reader.read_clips = broken
    with pytest.raises(OSError, match="a17"):
        list(EvalLoader(reader, np.array([[0, 0, 0]]), 1))


def test_plan_and_config_errors_name_the_problem():
    reader = make_reader()
    with pytest.raises(ValueError, match="columns"):
        PairLoader(reader, np.zeros((3, 5), np.int64), 1)
    with pytest.raises(ValueError, match="takes a single plan, got a pairs plan"):
        SingleLoader(reader, pairs_plan(3), 1)
    with pytest.raises(ValueError, match="'start_j' must be >= 0, got -1"):
        PairLoader(reader, np.c_[[[0, 0, 0, 1, -1, 0]], np.zeros((1, 8), int)], 1)
    with pytest.raises(ValueError, match=r"'perm_j' row 0 holds frame order 24, outside \[0, 24\)"):
        PairLoader(reader, np.c_[[[0, 0, 0, 1, 0, 24]], np.zeros((1, 8), int)], 1)
    with pytest.raises(ValueError, match="clip_len 6 > 5 has no frame-order classes"):
        SingleLoader(reader, single_plan([(0, 0, 3, 0)]), 1, LoaderConfig(clip_len=6))
    with pytest.raises(ValueError, match="batch_size 4 is larger than the plan's 3 items"):
        PairLoader(reader, pairs_plan(3), 4)
    with pytest.raises(ValueError, match="kinetics_norm=True needs channels=3"):
        AugmentConfig(kinetics_norm=True)
    with pytest.raises(ValueError, match="flip_p must be a probability"):
        AugmentDraws(flip_p=1.5)
    with pytest.raises(ValueError, match="LoaderConfig.dtype"):
        LoaderConfig(dtype="float16")
    with pytest.raises(ValueError, match="uint8 arrays of shape"):
        one_batch_pipeline(np.zeros((2, 4, 8, 8), np.float32), np.zeros((2, 4), np.int64), params_of(2), AugmentConfig())
    with pytest.raises(ValueError, match="must return AugmentParams of 2 clips"):
        one_batch_pipeline(np.zeros((2, 4, 8, 8), np.uint8), np.zeros((2, 4), np.int64), None, AugmentConfig())


def test_import_without_dali_and_the_install_hint():
    code = (
        "import sys; sys.modules['nvidia.dali'] = None\n"
        "import echoclr.pipeline, echoclr.pipeline.loaders as L\n"
        "from echoclr.pipeline.dali import ClipPipeline, DaliNotAvailableError, dali_available\n"
        "from echoclr.pipeline.graph import AugmentConfig\n"
        "assert not dali_available()\n"
        "try:\n"
        "    ClipPipeline(lambda: None, batch_size=1, augment=AugmentConfig())\n"
        "except DaliNotAvailableError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install nvidia-dali-cuda130" in out.stdout and "echoclr[dali]" in out.stdout
