"""Weights out: the encoder of a run as a state dict for stock torchvision ``r3d_18``, and loading it back.

The exported state dict has exactly the keys of ``torchvision.models.video.r3d_18()`` whose ``fc`` is replaced by
``nn.Identity()`` (``stem.*``, ``layer1.*`` .. ``layer4.*``; ``avgpool`` and ``Identity`` hold no weights), so it
loads with ``strict=True``. The stem keeps torchvision's three input channels: echoclr's encoder feeds a grayscale
clip through the stem weights summed over channels, which is the same as replicating the gray clip to RGB, so a
gray clip repeated to 3 channels gives stock torchvision the same 512-d features as echoclr.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from echoclr._version import __version__
from echoclr.models.encoder import Encoder, load_encoder_state

SAFETENSORS_NAME = "encoder.safetensors"
PTH_NAME = "encoder.pth"
CARD_NAME = "model_card.json"
EXPORT_FILES = (SAFETENSORS_NAME, PTH_NAME, CARD_NAME)
NORMALISATION = (
    "per clip: x = (x - min) / (max - min) over all frames and pixels of the clip (a constant clip becomes 0), "
    "uint8 frames as float; feed (N, 1, T, H, W) to echoclr.models.Encoder or the gray clip repeated to "
    "(N, 3, T, H, W) to torchvision's r3d_18"
)
KINETICS_NOTE = (
    "this fine-tuned model started from Kinetics-400 weights: after the min-max scaling, clips were also "
    "standardised per channel with mean (0.43216, 0.394666, 0.37645) and std (0.22803, 0.22145, 0.216989)"
)
HOW_TO_LOAD = [
    "import torch, torchvision; from safetensors.torch import load_file",
    "net = torchvision.models.video.r3d_18(); net.fc = torch.nn.Identity()",
    f"net.load_state_dict(load_file('{SAFETENSORS_NAME}'), strict=True)  # or torch.load('{PTH_NAME}', "
    "weights_only=True)",
    "features = net.eval()(clip.repeat(1, 3, 1, 1, 1))  # clip: (N, 1, T, 112, 112), min-max scaled -> (N, 512)",
    f"# or: from echoclr.models import load_encoder; encoder = load_encoder('{SAFETENSORS_NAME}')",
]


class ExportExistsError(FileExistsError):
    """The output folder already holds an export; pass ``overwrite=True`` (``--overwrite``) to replace it."""


@dataclass(frozen=True)
class ExportResult:
    """The written files and the model card's content."""

    safetensors: Path
    pth: Path
    card: Path
    card_data: dict[str, Any]


def _encoder_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The model weights of a checkpoint: a fine-tune's restored best, else the latest; or a bare state dict."""
    if isinstance(state.get("best_model"), dict):
        return state["best_model"]
    if isinstance(state.get("model"), dict):
        return state["model"]
    return state


def _encoder_from_weights(weights: dict[str, Any], source: str) -> Encoder:
    encoder = Encoder()
    load_encoder_state(encoder, weights, source=source)
    return encoder.eval()


def load_encoder(path: str | os.PathLike[str]) -> Encoder:
    """Load an echoclr encoder (eval mode, CPU) from any of the files this project writes.

    Args:
        path: an exported ``encoder.safetensors`` / ``encoder.pth``, an export folder, a pretraining or
            fine-tuning run folder / ``checkpoint.pt``, or torchvision's r3d_18 weights.

    Returns:
        The :class:`~echoclr.models.Encoder` (``(N, C, T, H, W)`` with C in {1, 3} -> ``(N, 512)``).

    Raises:
        FileNotFoundError: nothing loadable at ``path``.
        StateDictMismatchError: the weights do not fit r3d_18 (the keys are named).
    """
    path = Path(path)
    if path.is_dir():
        for name in (SAFETENSORS_NAME, PTH_NAME, "checkpoint.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise FileNotFoundError(f"{path} holds none of {SAFETENSORS_NAME}, {PTH_NAME}, checkpoint.pt")
    if not path.is_file():
        raise FileNotFoundError(f"no encoder weights at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        weights: dict[str, Any] = load_file(str(path))
    else:
        weights = _encoder_weights(torch.load(path, map_location="cpu", weights_only=True))
    return _encoder_from_weights(weights, str(path))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _atomic(path: Path, write) -> None:
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    handle.close()
    try:
        write(Path(handle.name))
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _card(state: dict[str, Any], source: Path, store_summary: dict[str, Any] | None) -> dict[str, Any]:
    config = json.loads(state["config"]) if isinstance(state.get("config"), str) else None
    kind = (config or {}).get("kind")
    progress = state.get("progress") or {}
    runtime = (config or {}).get("runtime") or {}
    if kind == "pretrain":
        method = config["method"]
        training = {"epochs_done": progress.get("epoch"), "global_step": progress.get("global_step"),
                    "epochs_planned": config.get("epochs"), "max_steps": runtime.get("max_steps")}
    elif kind == "finetune":
        method = f"finetune ({config['label']}, init {config['init']})"
        training = {"epochs_done": progress.get("epoch"), "max_epochs": config.get("max_epochs"),
                    "ratio": config.get("ratio"), "weights": "the fine-tuned encoder at its best epoch by "
                    "validation loss (the linear head is not exported)"}
    else:
        method, training = "unknown (a bare state dict)", {}
    preprocess = (store_summary or {}).get("preprocess")
    store_size = preprocess["size"] if preprocess else None
    normalisation = NORMALISATION
    if kind == "finetune" and str(config.get("init", "")).startswith("kinetics:"):
        normalisation += "; " + KINETICS_NOTE
    return {
        "format": "torchvision r3d_18 state_dict with fc = Identity (512-d features), strict=True",
        "method": method,
        "source": str(source),
        "training": training,
        "config": config,
        "store": store_summary if store_summary is not None else "not given (pass --store STORE to record it)",
        "preprocessing": {
            "frames": preprocess or "the training store's (echoclr info STORE); default 112 px, sector mask from "
                      "the max over frames, threshold 200, grayscale, area resize",
            "clip_len": (config or {}).get("clip_len"),
            "input_size": runtime.get("size") or store_size,
            "normalisation": normalisation,
            "channels": "1 (gray) for echoclr's encoder; the gray frame repeated to 3 (RGB) for torchvision",
        },
        "code_version": state.get("code_version", "unknown"),
        "exported_by": f"echoclr {__version__}",
        "how_to_load": HOW_TO_LOAD,
    }


def export_encoder(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    store_summary: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write a run's encoder as ``encoder.safetensors``, ``encoder.pth`` and ``model_card.json`` in ``out_dir``.

    Args:
        source: a pretraining or fine-tuning run folder, or its ``checkpoint.pt`` (a bare encoder state dict works
            too, with a card that says so).
        out_dir: created if absent.
        store_summary: ``EchoStore.summary()`` of the training store, recorded in the card.
        overwrite: replace an earlier export in ``out_dir`` (only the three files above are touched).

    Returns:
        The paths and the card.

    Raises:
        FileNotFoundError: no run folder or checkpoint at ``source``.
        ExportExistsError: ``out_dir`` already holds export files and ``overwrite`` is False.
        StateDictMismatchError: the checkpoint's weights do not fit r3d_18.
    """
    from safetensors.torch import save_file

    from echoclr.train.checkpoint import load_checkpoint, resolve_checkpoint

    checkpoint = resolve_checkpoint(source)
    out_dir = Path(out_dir)
    existing = [name for name in EXPORT_FILES if (out_dir / name).exists()]
    if existing and not overwrite:
        raise ExportExistsError(f"{out_dir} already holds {', '.join(existing)}: pass --overwrite to replace them "
                                "or choose another --out")
    state = load_checkpoint(checkpoint)
    encoder = _encoder_from_weights(_encoder_weights(state), str(checkpoint))
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous() for k, v in encoder.state_dict().items()}
    card = _card(state, checkpoint, store_summary)
    paths = {name: out_dir / name for name in EXPORT_FILES}
    _atomic(paths[SAFETENSORS_NAME], lambda p: save_file(weights, str(p), metadata={"format": "pt"}))
    _atomic(paths[PTH_NAME], lambda p: torch.save(weights, p))
    card["files"] = {name: {"sha256": _sha256(paths[name])} for name in (SAFETENSORS_NAME, PTH_NAME)}
    _atomic(paths[CARD_NAME], lambda p: p.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n"))
    return ExportResult(paths[SAFETENSORS_NAME], paths[PTH_NAME], paths[CARD_NAME], card)
