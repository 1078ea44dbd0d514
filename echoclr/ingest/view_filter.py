"""The view-filter hook: run a user's TorchScript view classifier on each ingested video and keep one view.

The paper kept only videos that a pretrained view classifier called PLAX with high confidence. We do not ship a view
classifier; the user brings one, exported with ``torch.jit.script`` or ``torch.jit.trace`` and saved with
``torch.jit.save``.

Input contract (what the model receives, once per video):
    ``float32 (N, 1, S, S)``: N frames of the video *after* ingest's preprocessing (grayscale, sector-masked,
    area-resized to the store's size S, 112 by default), evenly spaced over the video (``numpy.linspace`` from the
    first to the last frame, rounded; fewer when the video is shorter), each scaled to [0, 1] by dividing by 255.
    The N frames are one batch: the model classifies each frame independently. A model trained on another size
    or normalisation should resize/normalise inside its ``forward`` (TorchScript can hold that code).

Output contract:
    ``(N, C)`` class probabilities (every row non-negative and summing to 1; end ``forward`` with a softmax). The
    class names come from a ``classes`` attribute of the scripted module (a ``List[str]``), or else from a JSON
    sidecar beside the model, ``MODEL.json`` holding ``{"classes": [...]}``.

The N rows are averaged into one probability vector per video (as the paper averaged its 10 frames). The video's
view is the class with the largest mean probability and its probability is that mean; the video is kept only when
its view is ``keep_view`` and the probability is at least ``min_prob``. Frames are evenly spaced rather than random
(the paper drew 10 at random) so that a rerun makes the same decision.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_PROB_TOLERANCE = 1e-3


class ViewModelError(ValueError):
    """The view model cannot be used as documented; the message names the file and what to change."""


@dataclass(frozen=True)
class ViewFilter:
    """Which view to keep and how confidently.

    Args:
        model_path: a TorchScript file (``torch.jit.save``).
        keep_view: the class name to keep, e.g. ``PLAX``.
        min_prob: keep videos whose mean probability of ``keep_view`` (as the predicted view) is >= this, in [0, 1].
        n_frames: frames per video given to the model (the paper: 10).
    """

    model_path: str
    keep_view: str
    min_prob: float = 0.5
    n_frames: int = 10

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_prob <= 1.0:
            raise ValueError(f"--min-prob must be in [0, 1], got {self.min_prob}")
        if self.n_frames < 1:
            raise ValueError(f"--view-frames must be >= 1, got {self.n_frames}")
        if not self.keep_view:
            raise ValueError("--keep-view must name one of the view model's classes, e.g. PLAX")


@dataclass(frozen=True)
class ViewDecision:
    """The predicted view, its mean probability, and whether the filter keeps the video."""

    view: str
    prob: float
    keep: bool
    reason: str


class ViewClassifier:
    """A loaded view model and its class names (load once per process with :func:`load_view_classifier`)."""

    def __init__(self, module, classes: list[str], view_filter: ViewFilter) -> None:
        self.module = module
        self.classes = classes
        self.filter = view_filter

    def decide(self, frames: np.ndarray) -> ViewDecision:
        """Classify a preprocessed video ``uint8 (T, S, S)`` and apply the filter.

        Raises:
            ViewModelError: the model's output is not ``(N, len(classes))`` probabilities.
        """
        import torch

        picks = np.unique(np.linspace(0, frames.shape[0] - 1, self.filter.n_frames).round().astype(np.int64))
        x = torch.from_numpy(frames[picks].astype(np.float32) / 255.0)[:, None]  # (N, S, S) -> (N, 1, S, S)
        with torch.inference_mode():
            probs = self.module(x)
        source = self.filter.model_path
        if not isinstance(probs, torch.Tensor) or probs.shape != (len(picks), len(self.classes)):
            shape = tuple(probs.shape) if isinstance(probs, torch.Tensor) else type(probs).__name__
            raise ViewModelError(
                f"{source}: view model returned {shape} for {len(picks)} frames; it must return (N, C) probabilities "
                f"with C = {len(self.classes)} classes {self.classes}"
            )
        probs = probs.detach().float().cpu().numpy()
        if probs.min() < -_PROB_TOLERANCE or np.abs(probs.sum(axis=1) - 1).max() > _PROB_TOLERANCE:
            raise ViewModelError(
                f"{source}: view model output rows are not probabilities (each row must be >= 0 and sum to 1); "
                "end its forward() with torch.softmax(logits, dim=1)"
            )
        mean = probs.mean(axis=0)  # (N, C) -> (C,)
        best = int(mean.argmax())
        view, prob = self.classes[best], float(mean[best])
        keep = view == self.filter.keep_view and prob >= self.filter.min_prob
        if keep:
            reason = ""
        elif view != self.filter.keep_view:
            reason = (f"skipped (view {view} p={prob:.3f}, not {self.filter.keep_view}; "
                      f"p({self.filter.keep_view})={float(mean[self.classes.index(self.filter.keep_view)]):.3f})")
        else:
            reason = f"skipped (view {view} p={prob:.3f} below --min-prob {self.filter.min_prob})"
        return ViewDecision(view, prob, keep, reason)


def _classes_of(module, model_path: Path) -> list[str]:
    attribute = getattr(module, "classes", None)
    sidecar = model_path.with_suffix(".json")
    if attribute is not None:
        classes = list(attribute)
    elif sidecar.is_file():
        try:
            classes = json.loads(sidecar.read_text())["classes"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ViewModelError(f"{sidecar}: expected JSON {{\"classes\": [\"PLAX\", ...]}} ({exc})") from None
    else:
        raise ViewModelError(
            f"{model_path}: the view model has no `classes` attribute and there is no sidecar {sidecar}; add "
            "`self.classes: List[str] = [...]` to the module before scripting, or write the sidecar "
            '{"classes": ["PLAX", ...]}'
        )
    if not classes or not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
        raise ViewModelError(f"{model_path}: view classes must be distinct non-empty names, got {classes!r}")
    return classes


def load_view_classifier(view_filter: ViewFilter) -> ViewClassifier:
    """Load the TorchScript model on the CPU and check ``keep_view`` is one of its classes.

    Raises:
        FileNotFoundError: no file at ``model_path``.
        ViewModelError: not a TorchScript file, no class names, or ``keep_view`` is not a class.
    """
    import torch

    path = Path(view_filter.model_path)
    if not path.is_file():
        raise FileNotFoundError(f"--view-model {path} does not exist")
    try:
        with warnings.catch_warnings():  # recent PyTorch marks TorchScript deprecated; it is still our contract
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ViewModelError(
            f"{path}: not a TorchScript model ({first}); save it with torch.jit.save(torch.jit.script(model), path)"
        ) from None
    module.eval()
    classes = _classes_of(module, path)
    if view_filter.keep_view not in classes:
        raise ViewModelError(f"--keep-view {view_filter.keep_view!r} is not one of {path}'s classes {classes}")
    return ViewClassifier(module, classes, view_filter)


_LOADED: dict[ViewFilter, ViewClassifier] = {}


def classifier_for(view_filter: ViewFilter) -> ViewClassifier:
    """The classifier for ``view_filter``, loaded once per process (ingest workers call this per video)."""
    loaded = _LOADED.get(view_filter)
    if loaded is None:
        loaded = _LOADED[view_filter] = load_view_classifier(view_filter)
    return loaded
