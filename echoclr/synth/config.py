"""Configuration of the synthetic echo dataset (one frozen, validated dataclass)."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class SynthConfig:
    """What :func:`echoclr.synth.generate_dataset` writes. Defaults: a 2-core CPU demo set.

    The defaults give 60 studies and about 150 videos of 30–120 frames, 160–320 px wide,
    which ingest in well under a minute on a laptop CPU.

    Attributes:
        n_studies: number of studies (patients); each has 1 anatomy and 2 labels.
        seed: master seed; the same config gives byte-identical manifests and identical frames.
        min_videos, max_videos: videos per study (inclusive range).
        video_count_decay: weight ratio P(n + 1 videos) / P(n videos); 1.0 = uniform,
            0.7 (default) gives about 2.5 videos per study.
        min_frames, max_frames: frames per video (inclusive range).
        min_fps, max_fps: frame rate per video in frames/s (integers, inclusive range).
        min_width, max_width: frame width in pixels; drawn among the multiples of 16 in range
            (whole JPEG macroblocks, as most scanner exports).
        min_aspect, max_aspect: frame height / width; the height is rounded down to a
            multiple of 16.
        n_machines: scanner models in the dataset, each with one export size (drawn once per
            dataset from the width and aspect ranges); every video of a study comes from its
            study's machine. With few machines the export size says which machine, not which
            patient, as in a hospital's archive.
        dicom_fraction: fraction of all videos written as uncompressed DICOM cine, not MJPG AVI.
        label_noise: probability of flipping each study's label in the manifest (anatomy keeps
            the true class).
        lvh_prevalence: probability that a study has left-ventricular hypertrophy.
        severe_as_prevalence: probability that a study has severe aortic stenosis.
        workers: processes that render and write videos; the output does not depend on it.
            Above 1 the processes are spawned, so a calling script needs the usual
            ``if __name__ == "__main__":`` guard.
    """

    n_studies: int = 60
    seed: int = 0
    min_videos: int = 1
    max_videos: int = 6
    video_count_decay: float = 0.7
    min_frames: int = 30
    max_frames: int = 120
    min_fps: int = 30
    max_fps: int = 60
    min_width: int = 160
    max_width: int = 320
    min_aspect: float = 0.75
    max_aspect: float = 1.0
    n_machines: int = 3
    dicom_fraction: float = 0.0
    label_noise: float = 0.0
    lvh_prevalence: float = 0.4
    severe_as_prevalence: float = 0.35
    workers: int = 1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            want = int if f.type in ("int", int) else float
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"SynthConfig.{f.name} must be a number, got {value!r}")
            if want is int and not isinstance(value, int):
                raise ValueError(f"SynthConfig.{f.name} must be an integer, got {value!r}")
        _require(self.n_studies >= 1, "n_studies", self.n_studies, "must be >= 1")
        _require(self.seed >= 0, "seed", self.seed, "must be >= 0")
        _require(self.min_videos >= 1, "min_videos", self.min_videos, "must be >= 1")
        _require(self.max_videos >= self.min_videos, "max_videos", self.max_videos,
                 f"must be >= min_videos ({self.min_videos})")
        _require(0.0 < self.video_count_decay <= 1.0, "video_count_decay",
                 self.video_count_decay, "must be in (0, 1]")
        _require(self.min_frames >= 4, "min_frames", self.min_frames, "must be >= 4")
        _require(self.max_frames >= self.min_frames, "max_frames", self.max_frames,
                 f"must be >= min_frames ({self.min_frames})")
        _require(self.min_fps >= 1, "min_fps", self.min_fps, "must be >= 1")
        _require(self.max_fps >= self.min_fps, "max_fps", self.max_fps,
                 f"must be >= min_fps ({self.min_fps})")
        # Below 160 x 112 px the corner text and the ECG strip no longer fit beside the sector.
        _require(self.n_machines >= 1, "n_machines", self.n_machines, "must be >= 1")
        _require(self.min_width >= 160, "min_width", self.min_width, "must be >= 160 px")
        _require(self.max_width <= 1024, "max_width", self.max_width, "must be <= 1024 px")
        _require(self.max_width // 16 * 16 >= self.min_width, "max_width", self.max_width,
                 f"must leave a multiple of 16 between min_width ({self.min_width}) and it")
        _require(0.7 <= self.min_aspect <= self.max_aspect <= 1.25, "min_aspect/max_aspect",
                 (self.min_aspect, self.max_aspect), "must satisfy 0.7 <= min <= max <= 1.25")
        _require(0.0 <= self.dicom_fraction <= 1.0, "dicom_fraction", self.dicom_fraction,
                 "must be in [0, 1]")
        _require(0.0 <= self.label_noise < 0.5, "label_noise", self.label_noise,
                 "must be in [0, 0.5) (0.5 would make labels pure noise)")
        _require(1 <= self.workers <= 256, "workers", self.workers, "must be in [1, 256]")
        for name in ("lvh_prevalence", "severe_as_prevalence"):
            value = getattr(self, name)
            _require(0.0 < value < 1.0, name, value, "must be in (0, 1)")


def _require(ok: bool, name: str, value: object, rule: str) -> None:
    if not ok:
        raise ValueError(f"SynthConfig.{name} {rule}, got {value!r}")
