"""Kinetics-400 initialisation: torchvision's r3d_18 weights from a local file, and the
input standardisation that goes with them."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor
from torchvision.models.video import R3D_18_Weights

from echoclr.models.encoder import Encoder, load_encoder_state
from echoclr.pipeline.graph import KINETICS_MEAN, KINETICS_STD  # one definition, where clips are normalised

KINETICS400_URL = R3D_18_Weights.KINETICS400_V1.url
"""Download address of torchvision's ``R3D_18_Weights.KINETICS400_V1`` (r3d_18, Kinetics-400)."""



def kinetics_standardize(x: Tensor) -> Tensor:
    """Standardise [0, 1] clips with the Kinetics-400 channel statistics.

    A grayscale clip is first repeated to 3 channels (each channel gets its own
    mean/std, so the result has 3 distinct channels).

    Args:
        x: ``(N, C, T, H, W)`` float clips in [0, 1], ``C`` in {1, 3}.

    Returns:
        ``(N, 3, T, H, W)`` standardised clips, same dtype and device.

    Raises:
        ValueError: ``x`` is not 5-D with ``C`` in {1, 3}.
    """
    if x.ndim != 5 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected clips (N, C, T, H, W) with C = 1 or 3, got {tuple(x.shape)}")
    mean = torch.tensor(KINETICS_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1, 1)
    return (x - mean) / std  # (N, 1 or 3, T, H, W) -> (N, 3, T, H, W) by broadcasting


def kinetics_init(path: str | os.PathLike[str]) -> Encoder:
    """An encoder initialised with torchvision's r3d_18 Kinetics-400 weights.

    The file is read locally (never downloaded) with ``torch.load(weights_only=True)``
    and its keys are matched strictly (the action classifier ``fc.*`` is dropped).

    Args:
        path: the weights file, as published at :data:`KINETICS400_URL`.

    Returns:
        A new :class:`Encoder` holding the weights (on the CPU).

    Raises:
        FileNotFoundError: no file at ``path``; the message says where to get it.
        ValueError: the file cannot be read as a weights file, or is not a state dict.
        StateDictMismatchError: its keys or shapes do not match r3d_18.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(
            f"Kinetics-400 weights not found at {file}. Download torchvision's "
            f"R3D_18_Weights.KINETICS400_V1 from {KINETICS400_URL} on a machine with internet "
            "access (e.g. `curl -L -O <url>`), copy it here and pass its path."
        )
    try:
        state_dict = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types for corrupt or unsafe files
        raise ValueError(
            f"{file}: cannot be read as a PyTorch weights file ({type(err).__name__}: {err}). "
            f"Re-download it from {KINETICS400_URL}."
        ) from err
    if not isinstance(state_dict, dict):
        raise ValueError(
            f"{file}: expected a state dict (name -> tensor), got {type(state_dict).__name__}"
        )
    encoder = Encoder()
    load_encoder_state(encoder, state_dict, source=str(file))
    return encoder
