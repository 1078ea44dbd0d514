"""Random draws of a study's anatomy (shared by its videos) and of each video's acquisition.

Every draw comes from a generator seeded by ``(config.seed, study_index, ...)`` only, so adding
studies never changes the earlier ones and every study can be re-rendered on its own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from echoclr.synth.config import SynthConfig

# All names and institutions are invented.
_LAST = ("HALVORSEN", "OKONJO", "VARGAS", "TRAN", "KOWALCZYK", "ABERNATHY", "MIRZA", "LINDGREN",
         "DUCHARME", "ESPOSITO", "NAKAMURA", "OYELARAN", "FITZGERALD", "SANTORO", "BRANDT")
_FIRST = ("MARGIT", "TOBIAS", "ADAEZE", "LUIS", "HANNA", "PIOTR", "SELMA", "OWEN", "RUTH",
          "KENJI", "ISOLDE", "DMITRI", "NOOR", "CALLUM", "ELENA")
_INSTITUTIONS = ("NORTHFIELD GENERAL", "ST BRIGID MEDICAL CTR", "LAKESIDE HEART INST",
                 "RIVERBEND UNIV HOSP", "CEDAR VALLEY CLINIC")


@dataclass(frozen=True)
class StudyAnatomy:
    """One patient study: the heart every video of the study shows, and who the patient is.

    Lengths are in cm at end-diastole; the true classes are ``lvh`` / ``severe_as`` (the manifest
    may flip them with ``SynthConfig.label_noise``).
    """

    study_index: int
    lvh: bool
    severe_as: bool
    septum_cm: float            # interventricular septum thickness (the LVH signal)
    posterior_wall_cm: float    # LV posterior wall thickness (the LVH signal)
    lv_diameter_cm: float       # LV internal diameter
    lv_length_cm: float         # base-to-apex length (the apex is usually off-screen)
    fractional_shortening: float
    aorta_cm: float             # aortic root diameter
    left_atrium_cm: float
    right_ventricle_cm: float
    av_opening: float           # peak systolic leaflet separation / root diameter (the AS signal)
    av_brightness: float        # leaflet reflectivity; calcified leaflets are bright (AS signal)
    av_thickness_cm: float
    heart_period_s: float
    tilt_deg: float             # long axis vs the probe's lateral axis
    patient_name: str           # DICOM PN style, LAST^FIRST
    patient_id: str
    birth_date: str             # YYYYMMDD
    study_date: str             # YYYYMMDD
    institution: str

    @property
    def heart_rate_bpm(self) -> int:
        return int(round(60.0 / self.heart_period_s))


@dataclass(frozen=True)
class Acquisition:
    """How one video of a study was recorded (probe position, machine settings, export)."""

    video_index: int
    width: int
    height: int
    n_frames: int
    fps: int
    depth_cm: float             # imaging depth = sector radius (zoom)
    half_angle_deg: float       # half opening angle of the sector
    probe_angle_deg: float      # rotation of the scene in the sector
    heart_dx_cm: float          # offset of the heart from its typical place
    heart_dz_cm: float
    gain_db: float
    dynamic_range_db: float
    attenuation_db_cm: float    # net depth fall-off after time-gain compensation
    floor: float                # grey level of the sector's noise floor (keeps the fan non-zero)
    tint_bgr: tuple[float, float, float]
    phase0: float               # cardiac phase of frame 0, in [0, 1)
    acquisition_time: str       # HH:MM:SS, burned into the frame and written to DICOM
    noise_seed: int             # seed of the speckle


def sample_study(config: SynthConfig, study_index: int) -> tuple[StudyAnatomy, list[Acquisition]]:
    """Draw one study's anatomy and its videos' acquisitions.

    Args:
        config: dataset configuration (ranges, prevalences, seed).
        study_index: 0-based index of the study; with ``config.seed`` it seeds every draw.

    Returns:
        The study's anatomy and one :class:`Acquisition` per video (``min_videos..max_videos``).

    Raises:
        ValueError: ``study_index`` is negative.
    """
    if study_index < 0:
        raise ValueError(f"study_index must be >= 0, got {study_index}")
    rng = np.random.default_rng([config.seed, 1, study_index])
    anatomy = _sample_anatomy(rng, config, study_index)
    counts = np.arange(config.min_videos, config.max_videos + 1)
    weights = config.video_count_decay ** (counts - config.min_videos)
    n_videos = int(rng.choice(counts, p=weights / weights.sum()))
    setup = _sample_setup(rng, config)
    acquisitions = [
        _sample_acquisition(np.random.default_rng([config.seed, 2, study_index, v]), config, v, setup)
        for v in range(n_videos)
    ]
    return anatomy, acquisitions


def _sample_anatomy(rng: np.random.Generator, config: SynthConfig, index: int) -> StudyAnatomy:
    lvh = bool(rng.random() < config.lvh_prevalence)
    severe_as = bool(rng.random() < config.severe_as_prevalence)
    body = rng.uniform(0.88, 1.12)  # body size scales every length: a nuisance for thickness
    # Class-conditional distributions overlap on purpose: thickness alone misclassifies ~15%.
    wall = rng.normal(1.30, 0.17) if lvh else rng.normal(0.90, 0.12)
    septum = float(np.clip(body * wall, 0.55, 2.2))
    posterior = float(np.clip(septum * rng.uniform(0.82, 1.05), 0.5, 2.1))
    if severe_as:
        opening = rng.normal(0.40, 0.13)
        brightness = np.exp(rng.normal(np.log(0.45), 0.45))
        leaflet = rng.normal(0.20, 0.04)
    else:
        opening = rng.normal(0.76, 0.11)
        brightness = np.exp(rng.normal(np.log(0.16), 0.35))
        leaflet = rng.normal(0.12, 0.02)
    heart_rate = rng.uniform(52.0, 105.0)
    study_day = dt.date(2016, 1, 1) + dt.timedelta(days=int(rng.integers(0, 5 * 365)))
    age_days = int(rng.integers(40 * 365, 90 * 365))
    birth = study_day - dt.timedelta(days=age_days)
    return StudyAnatomy(
        study_index=index,
        lvh=lvh,
        severe_as=severe_as,
        septum_cm=septum,
        posterior_wall_cm=posterior,
        lv_diameter_cm=float(body * rng.normal(4.8, 0.4)),
        lv_length_cm=float(body * rng.uniform(7.5, 9.0)),
        fractional_shortening=float(rng.uniform(0.24, 0.42)),
        aorta_cm=float(body * rng.normal(2.9, 0.25)),
        left_atrium_cm=float(body * rng.normal(3.6, 0.4)),
        right_ventricle_cm=float(body * rng.normal(2.3, 0.3)),
        av_opening=float(np.clip(opening, 0.12, 0.95)),
        av_brightness=float(np.clip(brightness, 0.05, 1.0)),
        av_thickness_cm=float(np.clip(leaflet, 0.07, 0.35)),
        heart_period_s=float(60.0 / heart_rate),
        tilt_deg=float(rng.normal(-6.0, 5.0)),
        patient_name=f"{_LAST[rng.integers(len(_LAST))]}^{_FIRST[rng.integers(len(_FIRST))]}",
        patient_id=f"{int(rng.integers(10**7, 10**8))}",
        birth_date=birth.strftime("%Y%m%d"),
        study_date=study_day.strftime("%Y%m%d"),
        institution=_INSTITUTIONS[rng.integers(len(_INSTITUTIONS))],
    )


@dataclass(frozen=True)
class _Setup:
    """What one exam's videos share: the machine preset, the export format and the acoustic window."""

    width: int
    height: int
    depth_cm: float
    half_angle_deg: float
    probe_angle_deg: float
    heart_dx_cm: float
    heart_dz_cm: float
    gain_db: float
    dynamic_range_db: float
    attenuation_db_cm: float
    floor: float


def machine_formats(config: SynthConfig) -> list[tuple[int, int]]:
    """The export size ``(width, height)`` of each of the dataset's ``config.n_machines`` scanners."""
    rng = np.random.default_rng([config.seed, 3])
    blocks = np.arange(-(-config.min_width // 16), config.max_width // 16 + 1)
    formats = []
    for _ in range(config.n_machines):
        width = 16 * int(rng.choice(blocks))
        formats.append((width, 16 * int(width * rng.uniform(config.min_aspect, config.max_aspect) // 16)))
    return formats


def _sample_setup(rng: np.random.Generator, config: SynthConfig) -> _Setup:
    # Repeated PLAX clips of one exam are taken minutes apart on one machine, through the same acoustic window:
    # they share the machine's export format and roughly the window and settings. Between clips the sonographer
    # adjusts depth, sector width, gain and dynamic range (the per-video draws in _sample_acquisition), so the
    # settings do not fingerprint a study; what stays constant is the patient's heart.
    # History: every setting drawn independently per video made a study's videos differ more than patients do
    # (MI-SimCLR did not learn in 60 steps); every setting shared exactly within a study, with a near-unique
    # export size per study, let EchoCLR match studies by their settings alone (240 steps: the embedding predicted
    # frame width with R^2 0.84 and septum thickness with 0.10, and probed LVH worse than random weights).
    width, height = machine_formats(config)[int(rng.integers(config.n_machines))]
    return _Setup(
        width=width,
        height=height,
        depth_cm=float(rng.uniform(14.0, 18.5)),
        half_angle_deg=float(rng.uniform(36.0, 44.0)),
        probe_angle_deg=float(rng.uniform(-5.0, 5.0)),
        heart_dx_cm=float(rng.normal(0.0, 0.5)),
        heart_dz_cm=float(rng.normal(0.0, 0.4)),
        gain_db=float(rng.uniform(-4.0, 4.0)),
        dynamic_range_db=float(rng.uniform(40.0, 55.0)),
        attenuation_db_cm=float(rng.uniform(0.2, 0.9)),
        floor=float(rng.uniform(8.0, 16.0)),
    )


def _sample_acquisition(rng: np.random.Generator, config: SynthConfig, index: int, setup: _Setup) -> Acquisition:
    tint = np.clip(1.0 + (t := rng.normal(0.0, 0.04, size=3)) - t.max(), 0.8, 1.0)  # max = 1
    seconds = int(rng.integers(7 * 3600, 18 * 3600))
    return Acquisition(
        video_index=index,
        width=setup.width,
        height=setup.height,
        n_frames=int(rng.integers(config.min_frames, config.max_frames + 1)),
        fps=int(rng.integers(config.min_fps, config.max_fps + 1)),
        depth_cm=float(np.clip(setup.depth_cm + rng.normal(0.0, 1.2), 13.5, 19.0)),
        half_angle_deg=float(np.clip(setup.half_angle_deg + rng.normal(0.0, 2.5), 32.0, 45.0)),
        probe_angle_deg=float(setup.probe_angle_deg + rng.normal(0.0, 1.5)),
        heart_dx_cm=float(setup.heart_dx_cm + rng.normal(0.0, 0.2)),
        heart_dz_cm=float(setup.heart_dz_cm + rng.normal(0.0, 0.2)),
        gain_db=float(setup.gain_db + rng.normal(0.0, 2.5)),
        dynamic_range_db=float(np.clip(setup.dynamic_range_db + rng.normal(0.0, 3.0), 36.0, 60.0)),
        attenuation_db_cm=float(np.clip(setup.attenuation_db_cm + rng.normal(0.0, 0.05), 0.1, 1.0)),
        floor=float(np.clip(setup.floor + rng.normal(0.0, 1.0), 6.0, 18.0)),
        tint_bgr=(float(tint[0]), float(tint[1]), float(tint[2])),
        phase0=float(rng.random()),
        acquisition_time=f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}",
        noise_seed=int(rng.integers(2**63)),
    )
