"""Built-in synthetic parasternal-long-axis echo videos with LVH and severe-AS labels.

``generate_dataset(out_dir, SynthConfig())`` writes MJPG AVIs (and optionally DICOM cine loops)
plus ``manifest.csv`` for ``echoclr ingest``. The rendering helpers give tests the ground truth:
``render_example()`` returns frames with the sector mask and the burned-in overlay mask.

Names are imported on first use: the configuration (``SynthConfig``) does not need OpenCV, only rendering does, so
a machine without ``cv2`` (the GPU device check) can import ``echoclr.bench`` and build a ``SynthConfig``.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Acquisition": "anatomy",
    "StudyAnatomy": "anatomy",
    "sample_study": "anatomy",
    "SynthConfig": "config",
    "MANIFEST_COLUMNS": "dataset",
    "generate_dataset": "dataset",
    "OVERLAY_MARGIN_PX": "geometry",
    "sector_mask": "geometry",
    "SyntheticVideo": "render",
    "overlay_mask": "render",
    "render_example": "render",
    "render_video": "render",
}

__all__ = [
    "MANIFEST_COLUMNS",
    "OVERLAY_MARGIN_PX",
    "Acquisition",
    "StudyAnatomy",
    "SynthConfig",
    "SyntheticVideo",
    "generate_dataset",
    "overlay_mask",
    "render_example",
    "render_video",
    "sample_study",
    "sector_mask",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'echoclr.synth' has no attribute {name!r}")
    return getattr(importlib.import_module(f"echoclr.synth.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return __all__
