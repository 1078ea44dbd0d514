"""Repeated measurements and their summary: warm-up runs are discarded, the rest give a median and an IQR."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class RoundQuartiles:
    """Median and quartiles of ``self.values`` (one value per round): shared by :class:`Stats` and the
    comparison figures of :mod:`echoclr.bench.figures`."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(np.median(self.values))

    @property
    def q1(self) -> float:
        return float(np.percentile(self.values, 25))

    @property
    def q3(self) -> float:
        return float(np.percentile(self.values, 75))


@dataclass(frozen=True)
class Stats(RoundQuartiles):
    """A rate measured ``repeats`` times after ``warmup`` discarded runs.

    Attributes:
        values: the measured rates, one per repeat (in ``unit``).
        warmup: runs made and discarded before the first measured one.
        unit: what the values count, e.g. ``"clips/s"``.
    """

    values: tuple[float, ...]
    warmup: int
    unit: str

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("Stats.values must hold at least one measurement")
        if self.warmup < 0:
            raise ValueError(f"Stats.warmup must be >= 0, got {self.warmup}")

    @property
    def repeats(self) -> int:
        return len(self.values)

    @property
    def iqr_fraction(self) -> float:
        """The IQR relative to the median: the run-to-run spread of this measurement."""
        return (self.q3 - self.q1) / self.median if self.median else float("inf")

    def to_json(self) -> dict[str, object]:
        """The row fields every result carries: median, q1, q3, iqr, the raw values, warm-up and repeats."""
        return {
            "unit": self.unit,
            "median": self.median,
            "q1": self.q1,
            "q3": self.q3,
            "iqr": self.q3 - self.q1,
            "values": [float(v) for v in self.values],
            "warmup": self.warmup,
            "repeats": self.repeats,
        }


def measure_rate(
    run: Callable[[], tuple[float, float]],
    *,
    warmup: int,
    repeats: int,
    unit: str,
    warmup_run: Callable[[], object] | None = None,
) -> Stats:
    """Call ``run`` ``warmup + repeats`` times; each call returns ``(work_done, seconds)``.

    ``run`` times itself, so that set-up it must do per call (a fresh store, a new loader)
    stays outside the timed window.

    Args:
        run: one measurement; returns the amount of work (clips, videos, bytes...) and the seconds it took.
        warmup: calls made first and discarded (>= 0).
        repeats: calls measured (>= 1).
        unit: the unit of ``work_done / seconds``.
        warmup_run: a cheaper call to warm up with instead of ``run`` (e.g. the same work on fewer items).

    Returns:
        :class:`Stats` of the ``repeats`` rates.

    Raises:
        ValueError: ``warmup < 0``, ``repeats < 1``, or a run that reports no time.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    for _ in range(warmup):
        (warmup_run or run)()
    values = []
    for _ in range(repeats):
        work, seconds = run()
        if not seconds > 0:
            raise ValueError(f"a measurement reported {seconds} s for {work} {unit.split('/')[0]}; cannot form a rate")
        values.append(work / seconds)
    return Stats(tuple(values), warmup, unit)


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """``(fn(), seconds)`` by ``time.perf_counter``."""
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def measure_rates_interleaved(
    runs: dict[str, Callable[[], tuple[float, float]]],
    *,
    warmup: int,
    repeats: int,
    unit: str,
    warmup_runs: dict[str, Callable[[], object]] | None = None,
) -> dict[str, Stats]:
    """Measure several configurations in rounds: each round runs every configuration once, in the same order.

    On a machine shared with other work the load drifts during a run; interleaving exposes every configuration
    to the same drift, so their ratios stay meaningful where back-to-back blocks of repeats would not.

    Args:
        runs: configuration name -> one measurement returning ``(work_done, seconds)`` (see :func:`measure_rate`).
        warmup: rounds made first and discarded (>= 0).
        repeats: rounds measured (>= 1).
        unit: the unit of ``work_done / seconds``.
        warmup_runs: cheaper warm-up calls per configuration (default: the measurement itself).

    Returns:
        configuration name -> :class:`Stats`.

    Raises:
        ValueError: as :func:`measure_rate`.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    for _ in range(warmup):
        for name, run in runs.items():
            ((warmup_runs or {}).get(name) or run)()
    values: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            work, seconds = run()
            if not seconds > 0:
                raise ValueError(f"{name}: a measurement reported {seconds} s; cannot form a rate")
            values[name].append(work / seconds)
    return {name: Stats(tuple(v), warmup, unit) for name, v in values.items()}
