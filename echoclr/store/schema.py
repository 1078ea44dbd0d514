"""What an echoclr store promises: its schema name/version, preprocessing parameters and per-video records."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SCHEMA_NAME = "echoclr.store"
SCHEMA_VERSION = 2  # 2: columnar index segments (1: JSON index in the root attributes)
SPLITS = ("train", "val", "test", "ext_test")
# Videos shorter than this (the fine-tuning clip length) are kept and flagged: they are zero-padded at the end.
SHORT_VIDEO_FRAMES = 16


@dataclass(frozen=True)
class PreprocessConfig:
    """How source videos become stored frames (the paper's preprocessing; DESIGN.md).

    Args:
        size: output height and width in pixels (frames are ``uint8 (T, size, size)``).
        threshold: binarisation threshold for the sector mask, applied after non-zero pixels are set to 255.
        mask_source: ``"max"`` builds the mask from the per-pixel max over all frames (robust to a dark first
            frame); ``"first"`` reproduces the authors' first-frame rule.
        chunk_frames: frames per zarr chunk along time (clip reads touch only the chunks that hold the clip).
        cname, clevel: Blosc compressor and level for the frame chunks.
    """

    size: int = 112
    threshold: int = 200
    mask_source: Literal["max", "first"] = "max"
    chunk_frames: int = 8
    cname: Literal["lz4", "lz4hc", "zstd", "zlib", "blosclz"] = "lz4"
    clevel: int = 5

    def __post_init__(self) -> None:
        if not 8 <= self.size <= 1024:
            raise ValueError(f"size must be in [8, 1024] pixels, got {self.size}")
        if not 0 <= self.threshold <= 255:
            raise ValueError(f"threshold must be in [0, 255], got {self.threshold}")
        if self.mask_source not in ("max", "first"):
            raise ValueError(f"mask_source must be 'max' or 'first', got {self.mask_source!r}")
        if not 1 <= self.chunk_frames <= 1024:
            raise ValueError(f"chunk_frames must be in [1, 1024], got {self.chunk_frames}")
        if not 0 <= self.clevel <= 9:
            raise ValueError(f"clevel must be in [0, 9], got {self.clevel}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PreprocessConfig":
        return cls(**data)


@dataclass(frozen=True)
class VideoRecord:
    """One stored video's index entry.

    ``labels`` maps a label name to 0.0/1.0, or ``None`` when unknown. ``key`` is the video's array name under
    ``videos/`` in the store. ``source_sha256`` identifies the source file's content (for resuming ingest).
    ``view`` and ``view_prob`` are the view classifier's prediction and its mean probability when ingest ran one
    (``--view-model``), else None.
    """

    video_id: str
    study_id: str
    split: str
    n_frames: int
    fps: float
    key: str
    source_sha256: str
    labels: dict[str, float | None] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    view: str | None = None
    view_prob: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["flags"] = list(self.flags)
        data["fps"] = None if math.isnan(self.fps) else self.fps
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "VideoRecord":
        fields = dict(data)
        fields["flags"] = tuple(fields.get("flags", ()))
        fields["fps"] = float("nan") if fields.get("fps") is None else float(fields["fps"])
        return cls(**fields)
