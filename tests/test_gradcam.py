"""Grad-CAM saliency: correctness on the real classifier, localisation on a trained model, pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from torch import nn

from echoclr.eval.gradcam import (
    animate,
    block_cells,
    explainable_block,
    first_clip,
    gradcam,
    overlay_png,
    saliency_2d,
)
from echoclr.models import Classifier, Encoder


def no_forward_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks for m in model.modules())


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    """The real r3d_18 classifier, random init (tests must leave it as they found it)."""
    torch.manual_seed(0)
    return Classifier(Encoder(), dropout=0.5).eval()


# --------------------------------------------------------------------------- the real classifier


def test_gradcam_equals_cam_by_hand_for_the_r3d_classifier(classifier: Classifier) -> None:
    # With global average pooling + a linear head, d logit / dA_c = w_c / (T'H'W') everywhere, so
    # Grad-CAM is ReLU(sum_c w_c A_c) up to scale (Selvaraju et al.: Grad-CAM generalises CAM).
    # The reference computes layer4 by hand and upsamples with scipy's zoom(order=1).
    torch.manual_seed(1)
    clip = torch.rand(3, 16, 48, 48)  # (C, T, H, W) -> layer4 (512, 2, 3, 3)
    cam = gradcam(classifier, clip)

    enc = classifier.encoder
    with torch.no_grad():
        act = enc.layer4(enc.layer3(enc.layer2(enc.layer1(enc.stem(clip[None])))))[0]  # (512, 2, 3, 3)
        weights = classifier.head.weight[0]  # (512,)
        ref = torch.relu(torch.einsum("c,cthw->thw", weights, act)).numpy().astype(np.float64)
    assert act.shape == (512, 2, 3, 3)
    assert ref.max() > 0, "pick another seed: this head has no positive evidence to compare"
    ref = ndimage.zoom(ref, (8, 16, 16), order=1)  # (2, 3, 3) -> (16, 48, 48), corners aligned
    ref /= ref.max()
    assert cam.shape == ref.shape == (16, 48, 48)
    np.testing.assert_allclose(cam, ref, atol=1e-4)


def test_gradcam_shape_range_and_model_left_as_found(classifier: Classifier) -> None:
    classifier.train()
    classifier.encoder.stem.requires_grad_(False)  # a partly frozen model, as in fine-tuning
    flags = [(m, m.training) for m in classifier.modules()]
    requires = [(p, p.requires_grad) for p in classifier.parameters()]
    try:
        torch.manual_seed(2)
        cam = gradcam(classifier, torch.rand(1, 8, 32, 32))  # grayscale (C, T, H, W)
        assert cam.shape == (8, 32, 32) and cam.dtype == np.float32
        assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
        assert all(m.training == was for m, was in flags)
        assert all(p.requires_grad == was for p, was in requires)
        assert all(p.grad is None for p in classifier.parameters())
        assert no_forward_hooks(classifier)
    finally:
        classifier.encoder.stem.requires_grad_(True)
        classifier.eval()


def test_gradcam_constant_clip_is_finite(classifier: Classifier) -> None:
    cam = gradcam(classifier, torch.zeros(1, 8, 32, 32))  # a constant clip min-max normalises to 0
    assert cam.shape == (8, 32, 32)
    assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1


def test_gradcam_without_positive_evidence_is_all_zeros() -> None:
    torch.manual_seed(3)
    model = Classifier(Encoder())
    with torch.no_grad():
        model.head.weight.zero_()  # logit independent of layer4: zero gradients, zero map
    cam = gradcam(model, torch.rand(1, 8, 32, 32))
    assert np.isfinite(cam).all() and not cam.any()


def test_gradcam_works_inside_no_grad_and_inference_mode(classifier: Classifier) -> None:
    torch.manual_seed(4)
    clip = torch.rand(1, 8, 32, 32)
    expected = gradcam(classifier, clip)
    with torch.no_grad():
        np.testing.assert_allclose(gradcam(classifier, clip), expected, atol=1e-6)
    with torch.inference_mode():
        np.testing.assert_allclose(gradcam(classifier, clip.clone()), expected, atol=1e-6)


def test_gradcam_removes_hook_and_restores_mode_on_error(classifier: Classifier) -> None:
    classifier.train()
    try:
        with pytest.raises(ValueError, match="C = 1"):
            gradcam(classifier, torch.rand(2, 8, 32, 32))  # 2 channels: the encoder refuses
        assert no_forward_hooks(classifier)
        assert all(m.training for m in classifier.modules())
    finally:
        classifier.eval()


def test_gradcam_rejects_bad_input(classifier: Classifier) -> None:
    with pytest.raises(ValueError, match=r"\(C, T, H, W\)"):
        gradcam(classifier, torch.rand(8, 32, 32))
    with pytest.raises(ValueError, match="float"):
        gradcam(classifier, np.zeros((1, 8, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        gradcam(classifier, torch.full((1, 8, 32, 32), float("nan")))
    with pytest.raises(ValueError, match="target_layer"):
        gradcam(nn.Sequential(nn.Conv3d(1, 2, 3), nn.Flatten(), nn.LazyLinear(1)), torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match="ran 0 times"):
        gradcam(classifier, torch.rand(1, 8, 32, 32), target_layer=nn.Conv3d(1, 1, 1))
    assert no_forward_hooks(classifier)


def test_gradcam_rejects_a_target_layer_the_logit_ignores() -> None:
    class SideBranch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.side, self.main = nn.Conv3d(1, 2, 3), nn.Conv3d(1, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.side(x)  # computed, never used
            return self.main(x).mean()

    model = SideBranch()
    with pytest.raises(ValueError, match="does not depend"):
        gradcam(model, torch.rand(1, 4, 8, 8), target_layer=model.side)
    assert no_forward_hooks(model)


# --------------------------------------------------------------------------- localisation


class TinyVideoNet(nn.Module):
    """A small stand-in for Classifier(Encoder()) with the same attribute path
    (``encoder.layer4`` -> global average pool -> linear logit); trains in a second on a CPU,
    where the r3d_18 does not learn a localised decision within the tests' time budget."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.stem = nn.Sequential(nn.Conv3d(1, 8, 3, stride=(1, 2, 2), padding=1), nn.ReLU())
        self.encoder.layer4 = nn.Sequential(nn.Conv3d(8, 16, 3, stride=2, padding=1), nn.ReLU(inplace))
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.encoder.layer4(self.encoder.stem(x))  # (N, 16, T/2, H/4, W/4)
        return self.head(a.mean(dim=(2, 3, 4))).squeeze(1)  # (N, 16) -> (N,)


SIZE, FRAMES, BLOB = 32, 8, 8


def blob_clips(n: int, quadrant: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise clips; odd-indexed ones (positives) hold a bright 8x8 square in ``quadrant``
    (row, col of the 2x2 grid, jittered by up to 3 px). Every clip has a thin bright bar in the
    opposite quadrant, which says nothing about the label."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.5, size=(n, 1, FRAMES, SIZE, SIZE)).astype(np.float32)
    y = np.arange(n) % 2
    half = SIZE // 2
    bar_r, bar_c = (1 - quadrant[0]) * half + 6, (1 - quadrant[1]) * half + 2
    x[:, :, :, bar_r : bar_r + 2, bar_c : bar_c + 12] = 1.0
    for i in np.flatnonzero(y):
        r, c = np.array(quadrant) * half + 4 + rng.integers(-3, 4, size=2)
        x[i, :, :, r : r + BLOB, c : c + BLOB] = 1.0
    return torch.from_numpy(x), torch.from_numpy(y).float()


def quadrant_masses(heatmap: np.ndarray) -> np.ndarray:
    half = heatmap.shape[0] // 2
    return np.array(
        [[heatmap[:half, :half].sum(), heatmap[:half, half:].sum()],
         [heatmap[half:, :half].sum(), heatmap[half:, half:].sum()]]
    )  # (2, 2): mass per quadrant, [row][col]


@pytest.mark.parametrize("quadrant", [(0, 0), (1, 1)], ids=["top-left", "bottom-right"])
def test_saliency_peaks_on_the_blob_that_drives_the_trained_classifier(quadrant: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = TinyVideoNet()
    x, y = blob_clips(32, quadrant, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)  # forward, loss
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0], f"training did not converge: {losses[0]:.3f} -> {losses[-1]:.3f}"

    model.eval()
    x_test, y_test = blob_clips(16, quadrant, seed=1)  # held-out clips
    with torch.no_grad():
        correct = (model(x_test) > 0).float() == y_test
    assert correct.all(), "the classifier does not separate held-out clips"
    for clip in x_test[y_test == 1]:
        heat = saliency_2d(gradcam(model, clip))  # default target: model.encoder.layer4
        masses = quadrant_masses(heat)
        peak = tuple(int(v) for v in np.unravel_index(heat.argmax(), heat.shape))
        assert (peak[0] // (SIZE // 2), peak[1] // (SIZE // 2)) == quadrant
        assert masses[quadrant] / masses.sum() > 0.5  # chance: 0.25
    assert no_forward_hooks(model)


def test_r3d18_at_the_cpu_preset_size_explains_a_4x4_block_and_finds_a_trained_feature() -> None:
    # The demo's CPU preset feeds 16 px clips: the paper's layer4 map is then 1x1, whose overlay is one colour.
    torch.manual_seed(0)
    model = Classifier(Encoder())
    size, frames = 16, 4
    cells = block_cells(model, (1, frames, size, size))
    assert cells["layer4"][1:] == (1, 1) and cells["layer2"][1:] == (4, 4) and cells["layer3"][1:] == (2, 2)
    assert explainable_block(model, (1, frames, size, size)) == "layer2"
    assert explainable_block(model, (1, 16, 112, 112)) == "layer4"  # 7x7 at the paper's size
    with pytest.raises(ValueError, match="uniform"):
        explainable_block(model, (1, frames, size, size), min_cells=16)

    # positives: a bright 5x5 square in the top-left quadrant; every clip: a label-free bar bottom-right
    rng = np.random.default_rng(0)
    n = 16
    x = rng.uniform(0.0, 0.4, size=(n, 1, frames, size, size)).astype(np.float32)
    x[:, :, :, 11:13, 9:15] = 1.0
    y = np.arange(n) % 2
    for i in np.flatnonzero(y):
        r, c = 1 + rng.integers(0, 3, size=2)
        x[i, :, :, r : r + 5, c : c + 5] = 1.0
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(25):
        loss = nn.functional.binary_cross_entropy_with_logits(model(x_t), y_t)  # forward, loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert ((model(x_t) > 0).float() == y_t).float().mean() >= 0.9, "the classifier did not learn the square"
    shares = []
    for clip in x_t[y_t == 1][:4]:
        flat = saliency_2d(gradcam(model, clip))  # layer4: one cell
        assert float(flat.max() - flat.min()) < 1e-6
        heat = saliency_2d(gradcam(model, clip, target_layer=model.encoder.layer2))  # (16, 16)
        assert float(heat.max() - heat.min()) > 0.5
        masses = quadrant_masses(heat)
        assert masses[0, 0] == masses.max()  # the square's quadrant holds the most saliency in every clip
        shares.append(float(masses[0, 0] / masses.sum()))
    assert np.mean(shares) > 0.25, shares  # above an even spread (16 clips: 0.34-0.39, accuracy 1.0, seen 2026-12-02)
    assert no_forward_hooks(model)


def test_inplace_op_after_the_target_layer_does_not_change_the_map() -> None:
    # layer4 = conv -> ReLU(inplace): the ReLU overwrites the conv's output tensor; Grad-CAM of the
    # conv must still see the pre-ReLU activations, as with an out-of-place ReLU.
    torch.manual_seed(5)
    inplace, plain = TinyVideoNet(inplace=True), TinyVideoNet(inplace=False)
    plain.load_state_dict(inplace.state_dict())
    clip = torch.rand(1, 8, 32, 32)
    got = gradcam(inplace, clip, target_layer=inplace.encoder.layer4[0])
    want = gradcam(plain, clip, target_layer=plain.encoder.layer4[0])
    assert want.max() == pytest.approx(1.0)
    np.testing.assert_allclose(got, want, atol=1e-6)


# --------------------------------------------------------------------------- clips and maps


def test_first_clip_pads_short_videos_and_truncates_long_ones() -> None:
    video = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)  # (T, H, W)
    short = first_clip(video, length=8)
    assert short.shape == (8, 4, 3) and short.dtype == np.uint8
    np.testing.assert_array_equal(short[:5], video)
    assert not short[5:].any()
    long = first_clip(video, length=3)
    np.testing.assert_array_equal(long, video[:3])
    assert first_clip(video).shape == (32, 4, 3)
    with pytest.raises(ValueError, match="uint8"):
        first_clip(video.astype(np.float32))
    with pytest.raises(ValueError, match="T >= 1"):
        first_clip(video[:0])
    with pytest.raises(ValueError, match="length"):
        first_clip(video, length=0)


def test_saliency_2d_is_the_max_over_time() -> None:
    cam = np.zeros((3, 2, 2), dtype=np.float32)
    cam[0, 0, 0], cam[2, 0, 0], cam[1, 1, 1] = 0.2, 0.7, 1.0
    np.testing.assert_array_equal(saliency_2d(cam), np.array([[0.7, 0.0], [0.0, 1.0]], dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        saliency_2d(cam[0])


# --------------------------------------------------------------------------- pictures


def gradient_frame() -> np.ndarray:
    return np.tile(np.linspace(0, 255, 32).astype(np.uint8), (32, 1))  # (32, 32) left-to-right ramp


def test_overlay_png_is_a_visible_colour_image(tmp_path: Path) -> None:
    heat = np.zeros((32, 32), dtype=np.float32)
    heat[4:12, 4:12] = 1.0  # 8 x 8 hot square
    out = overlay_png(gradient_frame(), heat, tmp_path / "sub" / "cam.png")
    cold = overlay_png(gradient_frame(), np.zeros_like(heat), tmp_path / "cold.png")
    with Image.open(out) as im, Image.open(cold) as im_cold:
        assert im.format == "PNG" and im.size == im_cold.size
        rgb = np.asarray(im.convert("RGB")).astype(np.int16)  # (H', W', 3)
        rgb_cold = np.asarray(im_cold.convert("RGB")).astype(np.int16)
    assert rgb.shape[0] >= 96 and rgb.shape[1] > 96  # the image drawn 3x, the colour bar beside it
    assert rgb.std() > 20, "the image is blank"
    # Exactly the square, magnified 3x without smoothing (24 x 24 px), turns red against blue.
    redder = (rgb[..., 0] - rgb_cold[..., 0] > 40) & (rgb_cold[..., 2] - rgb[..., 2] > 40)
    rows, cols = np.nonzero(redder)
    assert redder.sum() == 24 * 24
    assert rows.max() - rows.min() == cols.max() - cols.min() == 23

    titled = overlay_png(gradient_frame(), heat, tmp_path / "titled.png", title="positive, p=0.97")
    with Image.open(titled) as im_titled:
        assert im_titled.height > rgb.shape[0]


def test_overlay_png_rejects_bad_input(tmp_path: Path) -> None:
    frame = gradient_frame()
    with pytest.raises(ValueError, match="must match"):
        overlay_png(frame, np.zeros((16, 16)), tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        overlay_png(frame, np.full((32, 32), 2.0), tmp_path / "a.png")
    with pytest.raises(ValueError, match="uint8"):
        overlay_png(frame.astype(np.float32), np.zeros((32, 32)), tmp_path / "a.png")
    with pytest.raises(ValueError, match="alpha"):
        overlay_png(frame, np.zeros((32, 32)), tmp_path / "a.png", alpha=1.5)
    assert not (tmp_path / "a.png").exists()


def test_animate_writes_one_gif_frame_per_clip_frame(tmp_path: Path) -> None:
    frames = np.stack([np.roll(gradient_frame(), 4 * t, axis=1) for t in range(6)])  # (6, 32, 32)
    cam = np.zeros((6, 32, 32), dtype=np.float32)
    for t in range(6):
        cam[t, 10:20, 4 * t : 4 * t + 8] = 1.0  # a hot spot moving right
    out = animate(frames, cam, tmp_path / "cam.gif", scale=2)
    with Image.open(out) as im:
        assert im.format == "GIF" and im.n_frames == 6 and im.size == (64, 64)
        im.seek(3)
        rgb = np.asarray(im.convert("RGB")).astype(np.int16)  # (64, 64, 3)
    redness = rgb[..., 0] - rgb[..., 2]  # jet: hot is red, cold is blue
    assert redness[20:40, 24:40].min() > 30, "frame 3's hot spot (rows 10-20, cols 12-20) is not red"
    assert redness[:, :20].max() < -30 and redness[:, 44:].max() < -30, "cold pixels are not blue"
    with pytest.raises(ValueError, match="must match"):
        animate(frames, cam[:3], tmp_path / "bad.gif")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gradcam_on_cuda_matches_cpu() -> None:
    torch.manual_seed(6)
    model = TinyVideoNet().eval()
    clip = torch.rand(1, 8, 32, 32)
    on_cpu = gradcam(model, clip)
    on_gpu = gradcam(model.cuda(), clip)  # the clip follows the model to its device
    assert next(model.parameters()).is_cuda and no_forward_hooks(model)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-3)
