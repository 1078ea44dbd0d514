"""Orchestration: what runs trainings and evaluations end to end (the titration grid, checkpoint evaluation,
frozen-encoder embeddings of a store, Grad-CAM of stored videos, the demo).

The layer on top: it may import ``train``, ``eval``, ``store`` and ``models``; nothing below imports it. Importing
this package imports torch only when a name is used.
"""

_LAZY = {
    "ExperimentConfig": "echoclr.run.experiment",
    "ExperimentResult": "echoclr.run.experiment",
    "PAPER_RATIOS": "echoclr.run.experiment",
    "run_experiment": "echoclr.run.experiment",
    "evaluate_checkpoint": "echoclr.run.evaluate",
    "load_finetuned": "echoclr.run.evaluate",
    "gradcam_overlays": "echoclr.run.saliency",
    "embed_store": "echoclr.run.embed",
    "DemoConfig": "echoclr.run.demo",
    "run_demo": "echoclr.run.demo",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'echoclr.run' has no attribute {name!r}")


__all__ = sorted(_LAZY)
