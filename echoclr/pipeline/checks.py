"""The one validation of the arguments that the loaders' config and the DALI pipeline share.

``LoaderConfig`` checks them when it is made (so a bad config fails before any data is read) and ``ClipPipeline``
when it is built directly; both call :func:`check_pipeline_args`, so the rules and messages are the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from echoclr.pipeline.graph import ROTATE_IMPLS

OUTPUT_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""Output dtypes the pipeline offers, by config name."""


def check_positive_int(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an int >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def check_pipeline_args(*, num_threads: Any, prefetch_queue_depth: Any, device_id: Any, dtype: Any,
                        cpu_rotate: Any, owner: str = "") -> None:
    """Check the arguments a :class:`~echoclr.pipeline.ClipPipeline` is built with.

    Args:
        num_threads, prefetch_queue_depth: ints >= 1.
        device_id: None (CPU) or a GPU index >= 0.
        dtype: a key of :data:`OUTPUT_DTYPES`.
        cpu_rotate: one of :data:`ROTATE_IMPLS`.
        owner: prefix of the names in the messages, e.g. ``"LoaderConfig."``.

    Raises:
        ValueError: the first bad argument, named in the message.
    """
    check_positive_int(f"{owner}num_threads", num_threads)
    check_positive_int(f"{owner}prefetch_queue_depth", prefetch_queue_depth)
    if device_id is not None and (isinstance(device_id, bool) or not isinstance(device_id, int) or device_id < 0):
        raise ValueError(f"{owner}device_id must be None (CPU) or a GPU index >= 0, got {device_id!r}")
    if dtype not in OUTPUT_DTYPES:
        raise ValueError(f"{owner}dtype must be one of {sorted(OUTPUT_DTYPES)}, got {dtype!r}")
    if cpu_rotate not in ROTATE_IMPLS:
        raise ValueError(f"{owner}cpu_rotate must be one of {ROTATE_IMPLS}, got {cpu_rotate!r}")
