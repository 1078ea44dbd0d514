"""NT-Xent, frame-order and EchoCLR losses: naive reference, analytic values, symmetry, DDP."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from echoclr import distributed
from echoclr.losses import EchoCLRLoss, FrameOrderLoss, NTXentLoss

REPO = Path(__file__).resolve().parents[1]


def naive_ntxent(z_i: torch.Tensor, z_j: torch.Tensor, temperature: float, study: list[int] | None = None) -> float:
    """SimCLR's loss written as loops in float64: mean over the 2n anchors; with ``study``, a row's denominator
    skips the other entries of its own study."""
    z = [v.double() / v.double().norm() for v in torch.cat((z_i, z_j))]
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for a in range(n2):
        positive = (a + n) % n2
        sims = {k: float(z[a] @ z[k]) / temperature for k in range(n2)
                if k != a and (k == positive or study is None or study[k % n] != study[a % n])}
        denominator = sum(math.exp(s) for s in sims.values())
        total += -math.log(math.exp(sims[positive]) / denominator)
    return total / n2


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("gather", [True, False])
def test_ntxent_matches_naive_loop(n: int, temperature: float, gather: bool) -> None:
    gen = torch.Generator().manual_seed(1000 * n + int(100 * temperature))
    z_i = torch.randn(n, 7, generator=gen) * 3
    z_j = torch.randn(n, 7, generator=gen)
    loss = NTXentLoss(temperature=temperature, gather=gather)(z_i, z_j)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert loss.item() == pytest.approx(naive_ntxent(z_i, z_j, temperature), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("n_studies", [1, 2, 3, 7])
@pytest.mark.parametrize("n", [1, 4, 9])
def test_ntxent_study_mask_matches_naive_loop(n: int, n_studies: int) -> None:
    gen = torch.Generator().manual_seed(31 * n + n_studies)
    z_i = torch.randn(n, 6, generator=gen)
    z_j = torch.randn(n, 6, generator=gen)
    study = torch.randint(0, n_studies, (n,), generator=gen)
    loss = NTXentLoss(temperature=0.3)(z_i, z_j, study)
    assert loss.item() == pytest.approx(naive_ntxent(z_i, z_j, 0.3, study.tolist()), rel=1e-5, abs=1e-6)
    # distinct studies: masking changes nothing
    unique = NTXentLoss(temperature=0.3)(z_i, z_j, torch.arange(n) * 5)
    assert unique.item() == pytest.approx(NTXentLoss(temperature=0.3)(z_i, z_j).item(), rel=1e-6)


@pytest.mark.parametrize("pairs_per_study", [1, 2, 4])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_ntxent_study_mask_analytic(pairs_per_study: int, temperature: float) -> None:
    # 8 orthogonal, aligned pairs in studies of m pairs. Unmasked, each anchor has 2n - 2 zero-cosine negatives:
    # log(1 + (2n - 2) e^{-1/t}). Masked, the 2(m - 1) entries of its own study leave: log(1 + (2n - 2m) e^{-1/t}).
    n, m = 8, pairs_per_study
    z = torch.eye(n, n + 2)
    study = torch.arange(n) // m
    masked = NTXentLoss(temperature=temperature)(z, z.clone(), study)
    unmasked = NTXentLoss(temperature=temperature)(z, z.clone())
    assert masked.item() == pytest.approx(math.log1p((2 * n - 2 * m) * math.exp(-1 / temperature)), rel=1e-5, abs=1e-6)
    assert unmasked.item() == pytest.approx(math.log1p((2 * n - 2) * math.exp(-1 / temperature)), rel=1e-5, abs=1e-6)
    # one study: only the positive is left, the loss is 0
    assert NTXentLoss(temperature=temperature)(z, z.clone(), torch.zeros(n, dtype=torch.long)).item() == \
        pytest.approx(0.0, abs=1e-6)


def test_ntxent_study_mask_rejects_bad_study_shapes() -> None:
    with pytest.raises(ValueError, match="study"):
        NTXentLoss()(torch.randn(3, 4), torch.randn(3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="study"):
        NTXentLoss()(torch.randn(3, 4), torch.randn(3, 4), torch.zeros(3))


@pytest.mark.parametrize("n", [1, 2, 5, 16])
@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_ntxent_aligned_orthogonal_analytic(n: int, temperature: float) -> None:
    # Pair k: z_i[k] = z_j[k] = c * e_k (one-hot, arbitrary positive scale c).
    # Each anchor: positive cosine 1, the other 2n - 2 cosines 0, so
    #   loss = -log(e^{1/t} / (e^{1/t} + 2n - 2)) = log(1 + (2n - 2) e^{-1/t}).
    scales = torch.linspace(0.5, 4.0, n)[:, None]
    z_i = torch.eye(n, n + 3) * scales
    z_j = torch.eye(n, n + 3) * scales.flip(0)
    expected = math.log1p((2 * n - 2) * math.exp(-1.0 / temperature))
    loss = NTXentLoss(temperature=temperature)(z_i, z_j)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("n", [1, 3, 8])
def test_ntxent_all_identical_gives_log_2n_minus_1(n: int) -> None:
    # Every cosine is 1: loss = -log(e^{1/t} / ((2n - 1) e^{1/t})) = log(2n - 1), any t.
    z = torch.ones(n, 4)
    loss = NTXentLoss(temperature=0.3)(z, 2 * z)
    assert loss.item() == pytest.approx(math.log(2 * n - 1), abs=1e-5)


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_ntxent_symmetric_in_views_and_permutation_invariant(n: int) -> None:
    gen = torch.Generator().manual_seed(n)
    z_i, z_j = torch.randn(n, 5, generator=gen), torch.randn(n, 5, generator=gen)
    loss = NTXentLoss(temperature=0.5)
    base = loss(z_i, z_j)
    torch.testing.assert_close(loss(z_j, z_i), base)
    order = torch.randperm(n, generator=gen)
    torch.testing.assert_close(loss(z_i[order], z_j[order]), base)


def test_ntxent_gradients_finite_for_single_pair_and_nonzero_otherwise() -> None:
    for n in (1, 3):
        z_i = torch.randn(n, 6, requires_grad=True)
        z_j = torch.randn(n, 6, requires_grad=True)
        NTXentLoss(temperature=0.05)(z_i, z_j).backward()
        assert torch.isfinite(z_i.grad).all() and torch.isfinite(z_j.grad).all()
        if n > 1:
            assert z_i.grad.abs().sum() > 0 and z_j.grad.abs().sum() > 0


def test_ntxent_under_bf16_autocast_is_float32_and_matches() -> None:
    gen = torch.Generator().manual_seed(3)
    z_i, z_j = torch.randn(4, 8, generator=gen), torch.randn(4, 8, generator=gen)
    reference = NTXentLoss(temperature=0.1)(z_i, z_j)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = NTXentLoss(temperature=0.1)(z_i, z_j)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference)


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, float("nan"), float("inf"), True, "0.5"])
def test_ntxent_rejects_bad_temperature(bad: object) -> None:
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("shape_i", "shape_j"), [((3, 4), (2, 4)), ((3, 4), (3, 5)), ((0, 4), (0, 4)), ((3,), (3,))]
)
def test_ntxent_rejects_bad_shapes(shape_i: tuple, shape_j: tuple) -> None:
    with pytest.raises(ValueError, match=r"\(n, D\)"):
        NTXentLoss()(torch.randn(shape_i), torch.randn(shape_j))


def test_frame_order_loss_matches_manual_cross_entropy() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 24, generator=gen)
    targets = torch.tensor([0, 23, 5, 5, 11, 7])
    manual = -torch.stack([logits[m].log_softmax(0)[t] for m, t in enumerate(targets)]).mean()
    torch.testing.assert_close(FrameOrderLoss()(logits, targets), manual)


@pytest.mark.parametrize("bad_target", [24, -1])
def test_frame_order_loss_rejects_out_of_range_target(bad_target: int) -> None:
    targets = torch.tensor([0, bad_target, 3])
    with pytest.raises(ValueError, match=rf"\[0, 24\).*\[{bad_target}\]"):
        FrameOrderLoss()(torch.randn(3, 24), targets)


def test_frame_order_loss_rejects_bad_shapes_and_dtypes() -> None:
    with pytest.raises(ValueError, match="logits"):
        FrameOrderLoss()(torch.randn(3, 24), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        FrameOrderLoss()(torch.randn(3, 24), torch.zeros(3))


def test_echoclr_loss_sums_parts() -> None:
    gen = torch.Generator().manual_seed(1)
    z_i, z_j = torch.randn(3, 8, generator=gen), torch.randn(3, 8, generator=gen)
    logits = torch.randn(6, 24, generator=gen, requires_grad=True)
    targets = torch.tensor([1, 2, 3, 4, 5, 6])
    parts = EchoCLRLoss(temperature=0.5)(z_i, z_j, logits, targets)
    torch.testing.assert_close(parts.contrastive, NTXentLoss(0.5)(z_i, z_j))
    torch.testing.assert_close(parts.order, FrameOrderLoss()(logits, targets))
    torch.testing.assert_close(parts.total, parts.contrastive + parts.order)
    parts.total.backward()
    assert logits.grad.abs().sum() > 0  # the order term reaches the head's logits


def test_echoclr_loss_without_reorder_is_ntxent_and_refuses_order_inputs() -> None:
    z_i, z_j = torch.randn(2, 8), torch.randn(2, 8)
    loss = EchoCLRLoss(temperature=0.5, reorder=False)
    parts = loss(z_i, z_j)
    assert parts.order is None
    torch.testing.assert_close(parts.total, NTXentLoss(0.5)(z_i, z_j))
    with pytest.raises(ValueError, match="reorder=False"):
        loss(z_i, z_j, torch.randn(4, 24), torch.zeros(4, dtype=torch.long))


def test_echoclr_loss_with_reorder_requires_order_inputs() -> None:
    with pytest.raises(ValueError, match="reorder=True"):
        EchoCLRLoss(reorder=True)(torch.randn(2, 8), torch.randn(2, 8), torch.randn(4, 24))


def test_distributed_helpers_outside_a_process_group() -> None:
    assert not distributed.is_dist()
    assert (distributed.rank(), distributed.world_size()) == (0, 1)
    x = torch.randn(3, 2, requires_grad=True)
    (gathered,) = distributed.all_gather(x)
    assert gathered is x


def _single_process_reference(inputs: dict, study: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    weight = inputs["weight"].clone().requires_grad_(True)
    x_i = inputs["x_i"].clone().requires_grad_(True)
    x_j = inputs["x_j"].clone().requires_grad_(True)
    loss = NTXentLoss(temperature=inputs["temperature"])(x_i @ weight.T, x_j @ weight.T, study)
    loss.backward()
    return {
        "loss": loss.detach(),
        "weight_grad": weight.grad,
        "x_i_grad": x_i.grad,
        "x_j_grad": x_j.grad,
    }


def test_ntxent_two_process_gloo_matches_single_process(tmp_path: Path) -> None:
    world = 2
    gen = torch.Generator().manual_seed(7)
    n_pairs = 6
    inputs = {
        "x_i": torch.randn(n_pairs, 10, generator=gen),
        "x_j": torch.randn(n_pairs, 10, generator=gen),
        "weight": torch.randn(16, 10, generator=gen) / 3,
        "temperature": 0.2,
        "splits": [[3, 3], [4, 2], [1, 5]],  # even, uneven, one rank with a single pair
        "study": torch.tensor([0, 1, 0, 2, 1, 0]),  # same-study pairs on one rank and across ranks
    }
    torch.save(inputs, tmp_path / "inputs.pt")
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = REPO / "tests" / "_dist_ntxent.py"
    command = [
        str(torchrun), "--standalone", f"--nproc-per-node={world}",
        str(script), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt"),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"

    results = torch.load(tmp_path / "out.pt", weights_only=True)
    assert len(results) == 2 * len(inputs["splits"])  # each split without, then with, the study mask
    plain, masked = _single_process_reference(inputs), _single_process_reference(inputs, inputs["study"])
    assert masked["loss"].item() != pytest.approx(plain["loss"].item(), rel=1e-3)  # the mask matters here
    cases = [(sizes, ref) for ref in (plain, masked) for sizes in inputs["splits"]]
    for (sizes, ref), got in zip(cases, results):
        msg = f"split {sizes}"
        torch.testing.assert_close(got["loss_mean"], ref["loss"], msg=msg)
        # DDP averages parameter gradients over ranks: equal to the full-batch gradient.
        torch.testing.assert_close(got["weight_grad"], ref["weight_grad"], msg=msg)
        # Inputs are not averaged: each rank's input gradient is d(sum of rank losses)/dx
        # = world * d(mean of rank losses)/dx = world * full-batch gradient.
        torch.testing.assert_close(got["x_i_grad"] / world, ref["x_i_grad"], msg=msg)
        torch.testing.assert_close(got["x_j_grad"] / world, ref["x_j_grad"], msg=msg)
