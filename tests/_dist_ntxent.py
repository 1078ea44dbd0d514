"""Run by tests/test_losses.py under ``torchrun --nproc-per-node 2`` (gloo, CPU).

Each case splits one global batch of pairs between the ranks (possibly unevenly),
projects it with a DDP-wrapped linear layer, computes the gathered NT-Xent loss
(every split without, then with, the same-study mask of ``inputs["study"]``)
and backpropagates. Rank 0 writes, per case, the mean of the per-rank losses, the
(DDP-averaged) weight gradient and the input gradients of every pair to a file
that the test compares with a single process on the full batch.

Usage: torchrun --standalone --nproc-per-node 2 _dist_ntxent.py INPUTS.pt OUTPUT.pt
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from echoclr import distributed
from echoclr.losses import NTXentLoss


def run_case(inputs: dict, sizes: list[int], masked: bool) -> dict[str, torch.Tensor]:
    me = distributed.rank()
    start, n = sum(sizes[:me]), sizes[me]
    study = inputs["study"][start : start + n] if masked else None  # (n,)
    x_i = inputs["x_i"][start : start + n]  # (n, D_in)
    x_j = inputs["x_j"][start : start + n]  # (n, D_in)

    proj = nn.Linear(x_i.shape[1], inputs["weight"].shape[0], bias=False)
    with torch.no_grad():
        proj.weight.copy_(inputs["weight"])
    model = DistributedDataParallel(proj)

    x = torch.cat((x_i, x_j)).requires_grad_(True)  # (2n, D_in): one DDP forward per backward
    z = model(x)  # (2n, D_out)
    loss = NTXentLoss(temperature=inputs["temperature"])(z[:n], z[n:], study)
    loss.backward()

    with torch.no_grad():
        losses = distributed.all_gather(loss.detach().view(1))  # W x (1,)
        grad_i = torch.cat(distributed.all_gather(x.grad[:n]))  # (N, D_in)
        grad_j = torch.cat(distributed.all_gather(x.grad[n:]))  # (N, D_in)
    return {
        "loss_mean": torch.cat(losses).mean(),
        "weight_grad": proj.weight.grad.clone(),
        "x_i_grad": grad_i,
        "x_j_grad": grad_j,
    }


def main() -> None:
    inputs_path, output_path = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    try:
        inputs = torch.load(inputs_path, weights_only=True)
        assert distributed.world_size() == len(inputs["splits"][0]), "one split entry per rank"
        results = [run_case(inputs, list(sizes), masked) for masked in (False, True) for sizes in inputs["splits"]]
        if distributed.rank() == 0:
            torch.save(results, output_path)
        dist.barrier()  # nobody tears down before rank 0 has written the results
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # Skip interpreter finalisation: with gloo it sporadically aborts ("terminate called
    # without an active exception", ~5% of runs here) after all work is done and saved.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
