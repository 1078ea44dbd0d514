"""Checkpoints: plain tensors and JSON-able values only, written atomically, loaded with ``weights_only=True``.

A checkpoint holds the model's ``state_dict``, the optimiser's, the training progress (epoch, the next item of the
epoch, the global step), the RNG states, the resolved config as JSON and the code version. ``config.json`` beside it
is the same config for people and other tools.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from echoclr._version import __version__

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the code version) to ``path`` atomically: a temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            torch.save({**payload, "code_version": __version__}, handle)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU with ``weights_only=True``.

    Raises:
        FileNotFoundError: no file at ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder or a checkpoint file → the checkpoint file.

    Raises:
        FileNotFoundError: neither a checkpoint file nor a run folder holding one.
    """
    path = Path(path)
    if path.is_dir():
        candidate = path / CHECKPOINT_NAME
        if candidate.is_file():
            return candidate
        raise FileNotFoundError(f"{path} is a folder without {CHECKPOINT_NAME}: is it a finished pretraining run?")
    if path.is_file():
        return path
    raise FileNotFoundError(f"no run folder or checkpoint at {path}")


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
