"""On a GPU, a pretraining step and the device batch path run without a host synchronisation (marked ``cuda``)."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.cuda


def test_pretraining_step_is_free_of_host_syncs():
    from echoclr.losses import EchoCLRLoss
    from echoclr.models import Encoder, PretrainModel

    device = torch.device("cuda")
    model = PretrainModel(Encoder(), clip_len=4, reorder=True).to(device, memory_format=torch.channels_last_3d)
    criterion = EchoCLRLoss(temperature=0.5, reorder=True, gather=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    x = torch.rand(8, 1, 4, 32, 32, device=device).contiguous(memory_format=torch.channels_last_3d)
    order = torch.randint(0, 24, (8,), device=device)
    for sync_mode in ("default", "error"):  # the first step warms up (cuDNN autotuning may sync)
        torch.cuda.set_sync_debug_mode(sync_mode)
        try:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                z, logits = model(x)
                z_i, z_j = z.float().chunk(2)
                parts = criterion(z_i, z_j, logits.float(), order)
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            optimizer.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(parts.total).item()
