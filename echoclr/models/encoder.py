"""The r3d_18 video encoder (512-d features) and strict loading of its weights."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.video import r3d_18

from echoclr.errors import UsageError

FEATURE_DIM = 512
"""Width of the encoder's features (r3d_18's pooled ``layer4`` output)."""

_HEAD_PREFIXES = ("projector.", "order_head.", "head.")  # our models' modules beside `encoder.`
_TORCHVISION_FC_KEYS = ("fc.weight", "fc.bias")  # the Kinetics-400 action classifier
_LIST_AT_MOST = 10


class StateDictMismatchError(UsageError):
    """A weights file does not match the encoder; the message names the keys."""


class Encoder(nn.Module):
    """torchvision ``r3d_18`` without its classifier: clip -> 512-d feature.

    Submodule names (``stem``, ``layer1`` .. ``layer4``) and therefore state-dict
    keys are torchvision's, so its Kinetics-400 weights load without renaming.
    ``layer4`` is the last conv block (Grad-CAM target).

    Grayscale clips (``C == 1``) are treated exactly as the clip repeated to 3
    channels, but cheaply: ``conv(repeat(x, 3), W) == conv(x, W.sum(dim=1))``, so
    the stem convolves the single channel with its weights summed over channels.
    """

    def __init__(self) -> None:
        super().__init__()
        net = r3d_18(weights=None)
        self.stem = net.stem
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4
        self.avgpool = net.avgpool

    def forward(self, x: Tensor) -> Tensor:
        """Encode clips.

        Args:
            x: ``(N, C, T, H, W)`` float clips, ``C`` in {1, 3}, any ``T >= 1`` and
                ``H, W >= 1`` (contiguous or ``channels_last_3d``).

        Returns:
            ``(N, 512)`` features.

        Raises:
            ValueError: ``x`` is not 5-D or ``C`` is not 1 or 3.
        """
        if x.ndim != 5 or x.shape[1] not in (1, 3):
            raise ValueError(
                "the encoder expects clips of shape (N, C, T, H, W) with C = 1 (grayscale) "
                f"or 3, got {tuple(x.shape)}"
            )
        if x.shape[1] == 1:
            conv = self.stem[0]
            x = F.conv3d(x, conv.weight.sum(dim=1, keepdim=True), None, conv.stride, conv.padding)
            x = self.stem[2](self.stem[1](x))  # BatchNorm3d, ReLU
        else:
            x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, 512, T', H', W')
        x = self.avgpool(x)  # (N, 512, 1, 1, 1)
        return x.flatten(1)  # (N, 512)


def _strip(keys_to_values: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in keys_to_values.items()}


def _encoder_part(state_dict: Mapping[str, object]) -> tuple[dict[str, object], list[str]]:
    """Map a state dict's keys to the encoder's; return (mapped, unexpected keys)."""
    items = dict(state_dict)
    if items and all(k.startswith("module.") for k in items):  # saved from a DDP wrapper
        items = _strip(items, "module.")  # type: ignore[arg-type]
    if any(k.startswith("encoder.") for k in items):  # PretrainModel / Classifier checkpoint
        mapped, unexpected = {}, []
        for key, value in items.items():
            if key.startswith("encoder."):
                mapped[key[len("encoder.") :]] = value
            elif not key.startswith(_HEAD_PREFIXES):
                unexpected.append(key)
        return mapped, unexpected
    # torchvision's r3d_18 (Kinetics-400): drop the action classifier only.
    return {k: v for k, v in items.items() if k not in _TORCHVISION_FC_KEYS}, []


def _listing(label: str, names: list[str]) -> str:
    shown = ", ".join(names[:_LIST_AT_MOST])
    more = f", ... and {len(names) - _LIST_AT_MOST} more" if len(names) > _LIST_AT_MOST else ""
    return f"{label} ({len(names)}): {shown}{more}"


def load_encoder_state(encoder: Encoder, state_dict: Mapping[str, object], source: str) -> None:
    """Load weights into ``encoder``, matching keys strictly.

    Accepted layouts:

    * the encoder's own keys (``stem.0.weight``, ``layer1.0.conv1.0.weight``, ...);
    * a checkpoint of :class:`PretrainModel` / :class:`Classifier`: keys under
      ``encoder.`` are loaded and those of their heads (``projector.``,
      ``order_head.``, ``head.``) are left out on purpose;
    * torchvision's ``r3d_18`` state dict (e.g. Kinetics-400), whose ``fc.weight`` /
      ``fc.bias`` are dropped;
    * any of these with every key under ``module.`` (saved from a DDP wrapper).

    BatchNorm ``num_batches_tracked`` counters absent from old files are set to 0.

    Args:
        encoder: the module to fill, in place.
        state_dict: name -> tensor mapping (from ``torch.load(..., weights_only=True)``).
        source: where the weights came from (a path), used in error messages.

    Raises:
        StateDictMismatchError: any missing key, unexpected key, non-tensor value or
            shape mismatch; the message names them.
    """
    mapped, unexpected = _encoder_part(state_dict)
    expected = encoder.state_dict()
    missing = [k for k in expected if k not in mapped and not k.endswith("num_batches_tracked")]
    unexpected += [k for k in mapped if k not in expected]
    not_tensors = [k for k, v in mapped.items() if k in expected and not isinstance(v, Tensor)]
    wrong_shape = [
        f"{k} (file {tuple(v.shape)}, model {tuple(expected[k].shape)})"
        for k, v in mapped.items()
        if k in expected and isinstance(v, Tensor) and v.shape != expected[k].shape
    ]
    problems = [
        _listing(label, names)
        for label, names in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("values that are not tensors", not_tensors),
            ("shape mismatches", wrong_shape),
        )
        if names
    ]
    if problems:
        raise StateDictMismatchError(
            f"{source}: weights do not match the r3d_18 encoder; " + "; ".join(problems) + ". "
            "Expected an echoclr encoder state dict, a pretraining/fine-tuning checkpoint "
            "(keys 'encoder.*'), or torchvision's r3d_18 weights."
        )
    full = dict(mapped)
    for key, value in expected.items():
        if key not in full:  # only num_batches_tracked can be absent here
            full[key] = torch.zeros_like(value)
    encoder.load_state_dict(full, strict=True)
