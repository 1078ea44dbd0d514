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
from echoclr.data.sampling import EpochPlan  # noqa: E402
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

NO_SPATIAL = AugmentConfig(pad=0, flip_p=0.0, rotate_p=0.0)  # frame order + min-max only


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


def one_batch_pipeline(clips, orders, augment, **kwargs) -> tuple[torch.Tensor, object]:
    batches = iter([(clips, orders)])
    pipe = ClipPipeline(lambda: next(batches), batch_size=len(clips), augment=augment, **kwargs)
    return next(pipe)


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


# ---------------------------------------------------------------- graph vs reference


@pytest.mark.parametrize(
    "cfg",
    [
        AugmentConfig(rotate_p=0.0),
        AugmentConfig(rotate_p=0.0, channels=3),
        AugmentConfig(rotate_p=0.0, channels=3, kinetics_norm=True),
        AugmentConfig(enabled=False),
    ],
    ids=["gray", "rgb", "kinetics", "eval"],
)
@pytest.mark.parametrize("cpu_rotate", ["fused", "dali"])
def test_pipeline_equals_reference_exactly_without_rotation(cfg, cpu_rotate):
    # "fused" is the fused kernel (cpu_ops), "dali" the operators the GPU graph uses
    clips, orders = random_batch(16, 4, 20, 24)
    x, params = one_batch_pipeline(clips, orders, cfg, seed=3, cpu_rotate=cpu_rotate)
    ref = reference_augment(clips, orders, params, cfg)
    np.testing.assert_array_equal(x.numpy(), ref)
    if cfg.enabled:
        # the batch exercised the parameters: both flip states, shifts of both signs, no rotation
        assert params.flip.any() and not params.flip.all()
        assert params.shift.min() < 0 < params.shift.max() and np.abs(params.shift).max() <= 8
        assert np.all(params.angle == 0)
    else:
        assert params is None


@pytest.mark.parametrize("cpu_rotate", ["fused", "dali"])
def test_rotation_matches_reference_within_rounding(cpu_rotate):
    # Both sides interpolate bilinearly with zero fill about the same centre; DALI computes
    # sample positions in float32, the fused kernel and the reference in float64 (in a
    # different order of operations), so a rotated uint8
    # pixel may round the other way when its exact value lies within ~0.005 of a
    # half-integer: |du| <= 1 gray level on a few pixels. Through min-max with
    # |dlo|, |dhi| <= 1 that bounds the normalised difference by 4 / (range - 2).
    cfg = AugmentConfig(rotate_p=1.0)
    clips, orders = random_batch(12, 4, 28, 32, seed=1)
    x, params = one_batch_pipeline(clips, orders, cfg, seed=5, cpu_rotate=cpu_rotate)
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
    cfg = AugmentConfig(pad=0, flip_p=0.0, rotate_p=1.0, max_angle_deg=180.0)
    x, params = one_batch_pipeline(clip, np.zeros((1, 1), np.int64), cfg, seed=0, cpu_rotate="dali")
    y, _ = one_batch_pipeline(clip, np.zeros((1, 1), np.int64), cfg, seed=0, cpu_rotate="fused")
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
    cfg = AugmentConfig(rotate_p=1.0, channels=3, kinetics_norm=True)
    clips, orders = random_batch(4, clip_len, 22, 26, seed=clip_len)
    x, params = one_batch_pipeline(clips, orders, cfg, seed=9)
    assert np.all(params.angle != 0)
    out, ref = x.numpy(), reference_augment(clips, orders, params, cfg)
    for i, clip in enumerate(clips):
        moved = shift_clip(clip[orders[i]], *params.shift[i])
        moved = rotate_clip(moved[:, :, ::-1] if params.flip[i] else moved, float(params.angle[i]))
        # the bound of test_rotation_matches_reference_within_rounding, divided by the std
        tol = 4.0 / (float(moved.max()) - float(moved.min()) - 2.0) / min(KINETICS_STD)
        assert np.abs(out[i] - ref[i]).max() <= tol, i
    assert np.mean(np.abs(out - ref) > 1e-5) < 0.01


def test_cpu_kernels_draw_the_same_parameters_from_one_seed():
    clips, orders = random_batch(16, 2, 12, 12)
    _, fused = one_batch_pipeline(clips, orders, AugmentConfig(), seed=21, cpu_rotate="fused")
    _, dali_ops = one_batch_pipeline(clips, orders, AugmentConfig(), seed=21, cpu_rotate="dali")
    _, other = one_batch_pipeline(clips, orders, AugmentConfig(), seed=22, cpu_rotate="fused")
    for name in ("shift", "flip", "angle"):
        np.testing.assert_array_equal(getattr(fused, name), getattr(dali_ops, name))
    assert not np.array_equal(fused.angle, other.angle)


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
    plan = np.column_stack([videos_ij[:, 0], zeros, perms[:, 0], videos_ij[:, 1], zeros, perms[:, 1]])
    loader = PairLoader(reader, plan, batch_size=6, config=LoaderConfig(clip_len=k, seed=1))
    seen = 0
    for x_i, x_j, order_i, order_j in loader:
        for x, order in ((x_i, order_i), (x_j, order_j)):
            centre = x[:, 0, :, size // 2, size // 2].numpy()  # (n, T)
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
    x, _ = one_batch_pipeline(clips, np.tile(np.arange(4), (4, 1)), augment, seed=0)
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
    x, _ = one_batch_pipeline(clips, orders, cfg, seed=2, dtype=dtype)
    n, t, h, w = clips.shape
    assert x.shape == (n, channels, t, h, w)
    assert x.dtype == {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    assert x.device.type == "cpu"
    assert x.stride() == (t * h * w * channels, 1, h * w * channels, w * channels, channels)
    assert x.is_contiguous(memory_format=torch.channels_last_3d)
    if dtype == "bfloat16":
        ref, _ = one_batch_pipeline(clips, orders, cfg, seed=2, dtype="float32")
        assert torch.equal(x, ref.to(torch.bfloat16))


def test_partial_batches_and_outputs_outliving_later_batches():
    # the tensors are zero-copy views of DALI buffers: they must stay intact while the
    # pipeline produces the next batches
    cfg = AugmentConfig(rotate_p=0.0)
    clips, orders = random_batch(20, 2, 12, 12)
    batches = iter([(clips[:8], orders[:8]), (clips[8:16], orders[8:16]), (clips[16:], orders[16:])])
    outputs = list(ClipPipeline(lambda: next(batches), batch_size=8, augment=cfg, seed=4))
    assert [len(x) for x, _ in outputs] == [8, 8, 4]
    for i, (x, params) in enumerate(outputs):
        part = slice(8 * i, 8 * i + len(x))
        np.testing.assert_array_equal(x.numpy(), reference_augment(clips[part], orders[part], params, cfg))


def test_parameter_draws_follow_the_configured_distributions():
    # DALI's draws (seeded) and the numpy twin used by benchmarks: every shift in
    # [-pad, pad] with equal weight, flips and rotations at their rates, angles in range
    cfg = AugmentConfig(pad=3, flip_p=0.5, rotate_p=0.25, max_angle_deg=7.0)
    n = 1024
    clips = np.zeros((n, 1, 4, 4), np.uint8)
    _, dali_params = one_batch_pipeline(clips, np.zeros((n, 1), np.int64), cfg, seed=11)
    for params in (dali_params, draw_params(np.random.default_rng(0), n, cfg)):
        counts = np.bincount(params.shift.ravel() + 3, minlength=7)
        assert len(counts) == 7 and counts.min() > 0.6 * (2 * n / 7), counts  # ends not under-drawn
        assert abs(params.flip.mean() - 0.5) < 0.08
        rotated = params.angle != 0
        assert abs(rotated.mean() - 0.25) < 0.08
        assert np.all(np.abs(params.angle) <= 7.0) and np.abs(params.angle[rotated]).max() > 5.0


# ---------------------------------------------------------------- loaders


def pairs_plan(n: int, seed: int = 0, n_videos: int = 6, n_frames: int = 10, k: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vi = rng.integers(0, n_videos, n)
    vj = rng.integers(0, n_videos, n)
    si = rng.integers(0, n_frames, n)  # some starts run past the end: end padding
    sj = rng.integers(0, n_frames, n)
    return np.column_stack([vi, si, rng.integers(0, 24, n), vj, sj, rng.integers(0, 24, n)])


def test_pair_loader_holds_the_two_videos_of_each_item():
    reader = make_reader()
    plan = pairs_plan(11)
    loader = PairLoader(reader, plan, batch_size=4, config=LoaderConfig(augment=NO_SPATIAL), drop_last=True)
    assert len(loader) == 2
    batches = list(loader)
    assert len(batches) == 2  # 11 items, batch 4, last 3 dropped
    for b, (x_i, x_j, order_i, order_j) in enumerate(batches):
        rows = plan[4 * b : 4 * b + 4]
        np.testing.assert_array_equal(x_i.numpy(), ref_clips(reader, rows[:, 0], rows[:, 1], rows[:, 2], 4))
        np.testing.assert_array_equal(x_j.numpy(), ref_clips(reader, rows[:, 3], rows[:, 4], rows[:, 5], 4))
        np.testing.assert_array_equal(order_i.numpy(), rows[:, 2])
        np.testing.assert_array_equal(order_j.numpy(), rows[:, 5])
        assert order_i.dtype == torch.int64
        assert x_i.is_contiguous(memory_format=torch.channels_last_3d)
    kept = list(PairLoader(reader, plan, batch_size=4, config=LoaderConfig(augment=NO_SPATIAL), drop_last=False))
    assert [len(b[0]) for b in kept] == [4, 4, 3]


def test_pair_loader_accepts_an_epoch_plan_and_single_plans_give_two_views_of_one_clip():
    reader = make_reader()
    rng = np.random.default_rng(3)
    fields = {
        "video": rng.integers(0, 6, 5),
        "start": rng.integers(0, 7, 5),
        "perm_a": rng.integers(0, 24, 5),
        "perm_b": rng.integers(0, 24, 5),
    }
    plan = EpochPlan("single", {k: v.astype(np.int64) for k, v in fields.items()})
    (x_a, x_b, order_a, order_b), = list(PairLoader(reader, plan, 5, LoaderConfig(augment=NO_SPATIAL)))
    assert len(reader.calls) == 1  # the clip was read once for both views
    np.testing.assert_array_equal(x_a.numpy(), ref_clips(reader, fields["video"], fields["start"], fields["perm_a"], 4))
    np.testing.assert_array_equal(x_b.numpy(), ref_clips(reader, fields["video"], fields["start"], fields["perm_b"], 4))
    np.testing.assert_array_equal(order_b.numpy(), fields["perm_b"])


def test_same_seed_same_batches_other_seed_or_epoch_differs():
    reader = make_reader()
    plan = pairs_plan(8, seed=1)

    def run(seed: int, epoch: int) -> list[torch.Tensor]:
        loader = PairLoader(reader, plan, 4, LoaderConfig(seed=seed), epoch=epoch)
        return [t for batch in loader for t in batch[:2]]

    first = run(seed=1, epoch=0)
    assert all(torch.equal(a, b) for a, b in zip(first, run(seed=1, epoch=0)))
    assert not all(torch.equal(a, b) for a, b in zip(first, run(seed=2, epoch=0)))
    assert not all(torch.equal(a, b) for a, b in zip(first, run(seed=1, epoch=1)))


def test_resumed_epoch_draws_what_the_uninterrupted_epoch_drew():
    reader = make_reader()
    plan = pairs_plan(10, seed=2)
    cfg = LoaderConfig(seed=5)
    full = list(PairLoader(reader, plan, 2, cfg, epoch=3))
    resumed = list(PairLoader(reader, plan[6:], 2, cfg, epoch=3, first_item=6))
    assert len(resumed) == 2
    for got, want in zip(resumed, full[3:]):
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    fresh = list(PairLoader(reader, plan[6:], 2, cfg, epoch=3))  # without the offset the draws differ
    assert not torch.equal(fresh[0][0], full[3][0])
    with pytest.raises(ValueError, match="first_item 5 must be a multiple of batch_size 2"):
        PairLoader(reader, plan[5:], 2, cfg, first_item=5)


def test_single_loader_labels():
    reader = make_reader()
    plan = np.array([[0, 0, 0, 0], [1, 2, 0, 0], [2, 9, 0, 0], [3, 1, 0, 0], [4, 3, 0, 0]])
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
        SingleLoader(reader, np.array([[5, 0, 0, 0]]), 1, label="lvh")


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
        assert torch.equal(xa, xb) and torch.equal(va, vb) and torch.equal(sa, sb)
    np.testing.assert_array_equal(torch.cat([b[1] for b in first]).numpy(), plan[:, 0])
    np.testing.assert_array_equal(torch.cat([b[2] for b in first]).numpy(), reader.study_of_video[plan[:, 0]])


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
    loader = PairLoader(reader, pairs_plan(2 * n), 2, LoaderConfig(augment=NO_SPATIAL, read_workers=2, read_ahead=2))
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
        PairLoader(reader, np.array([[0, 0, 0, 1, -1, 0]]), 1)
    with pytest.raises(ValueError, match=r"'perm_j' row 0 holds frame order 24, outside \[0, 24\)"):
        PairLoader(reader, np.array([[0, 0, 0, 1, 0, 24]]), 1)
    with pytest.raises(ValueError, match="clip_len 6 > 5 has no frame-order classes"):
        SingleLoader(reader, np.array([[0, 0, 3, 0]]), 1, LoaderConfig(clip_len=6))
    with pytest.raises(ValueError, match="batch_size 4 is larger than the plan's 3 items"):
        PairLoader(reader, pairs_plan(3), 4)
    with pytest.raises(ValueError, match="kinetics_norm=True needs channels=3"):
        AugmentConfig(kinetics_norm=True)
    with pytest.raises(ValueError, match="flip_p must be a probability"):
        AugmentConfig(flip_p=1.5)
    with pytest.raises(ValueError, match="LoaderConfig.dtype"):
        LoaderConfig(dtype="float16")
    with pytest.raises(ValueError, match="uint8 arrays of shape"):
        one_batch_pipeline(np.zeros((2, 4, 8, 8), np.float32), np.zeros((2, 4), np.int64), AugmentConfig())


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
