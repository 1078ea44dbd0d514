"""Benchmark history: every figure of every run in a folder, over time, per machine class; and a PNG of it.

A slow drift (a few percent per change, each within the gate's tolerance) shows here as a trend across runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from echoclr.bench.environment import machine_tag
from echoclr.bench.figures import Figure, figures
from echoclr.bench.results import check_result


@dataclass(frozen=True)
class Point:
    """One run's value of a figure.

    Attributes:
        created: the run's UTC time stamp (ISO 8601).
        file: the result file.
        load_avg_start: the machine's 1/5/15-minute load average when the run started.
        figure: the figure with its rounds.
    """

    created: str
    file: str
    load_avg_start: list[float] | None
    figure: Figure


@dataclass(frozen=True)
class Series:
    """One figure of one machine class over time (oldest first)."""

    machine: str
    figure: Figure
    points: tuple[Point, ...]

    @property
    def drift(self) -> float | None:
        """Newest median against the oldest, relative (or the difference, for figures compared by difference);
        None with fewer than two points."""
        if len(self.points) < 2:
            return None
        first, last = self.points[0].figure.median, self.points[-1].figure.median
        if self.figure.difference:
            return last - first
        return last / first - 1 if first else None


def load_history(folder: str | Path, *, include_quick: bool = False) -> dict[str, list[Series]]:
    """Every result under ``folder`` (recursively), as series per machine class and figure.

    Args:
        folder: a folder of result JSON files (other JSON files are skipped).
        include_quick: also use ``--quick`` smoke runs.

    Returns:
        machine tag -> series (in the order of first appearance), each with its points oldest first.

    Raises:
        ValueError: the folder does not exist, a result file is unreadable or incomplete (named), or there are no
            results.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; pass the folder that holds the result JSON files")
    runs = []
    for file in sorted(folder.rglob("*.json")):
        try:
            result = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{file} is not readable JSON ({exc}); fix or remove it") from None
        if not isinstance(result, dict) or "bench" not in result or (result.get("quick") and not include_quick):
            continue
        try:
            check_result(result)
        except ValueError as exc:
            raise ValueError(f"{file}: {exc}") from None
        runs.append((result["created"], file, result))
    if not runs:
        raise ValueError(f"{folder} holds no benchmark result (*.json with a 'bench' key"
                         + ("" if include_quick else "; --quick runs are left out unless asked for") + ")")
    series: dict[str, dict[tuple, list[Point]]] = {}
    for created, file, result in sorted(runs, key=lambda r: r[0]):
        tag = machine_tag(result["machine"])
        for f in figures(result):
            if f.values:
                point = Point(created, str(file), result["machine"].get("load_avg_start"), f)
                series.setdefault(tag, {}).setdefault(f.key, []).append(point)
    return {tag: [Series(tag, points[-1].figure, tuple(points)) for points in by_key.values()]
            for tag, by_key in series.items()}


def plot_history(history: dict[str, list[Series]], path: str | Path, *, min_points: int = 2) -> Path:
    """A PNG: one panel per figure with at least ``min_points`` runs, median and [q1, q3] over time, one line per
    machine class.

    Args:
        history: from :func:`load_history`.
        path: the PNG to write (its folder is created).
        min_points: leave out figures with fewer runs.

    Returns:
        The path written.

    Raises:
        ValueError: no figure has ``min_points`` runs.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    panels: dict[tuple, list[Series]] = {}
    for items in history.values():
        for s in items:
            if len(s.points) >= min_points:
                panels.setdefault((s.figure.bench, s.figure.name, s.figure.settings), []).append(s)
    if not panels:
        raise ValueError(f"no figure has {min_points} or more runs to plot")
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.2 * rows), squeeze=False)
    for ax, ((bench, name, _), items) in zip(axes.flat, panels.items()):
        for s in items:
            times = [np.datetime64(p.created[:19]) for p in s.points]
            med = np.array([p.figure.median for p in s.points])
            low = med - np.array([p.figure.q1 for p in s.points])
            high = np.array([p.figure.q3 for p in s.points]) - med
            ax.errorbar(times, med, yerr=[low, high], marker="o", capsize=3, label=s.machine)
        ax.set_title(f"{bench}: {name.strip()}", fontsize=8)
        ax.set_ylabel(items[0].figure.unit, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
