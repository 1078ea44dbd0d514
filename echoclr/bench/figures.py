"""The comparable figures of a result document: row medians and in-run ratios, each with its rounds.

A *figure* is one number a run measured several times (once per round) — a row's clips/s, its CPU ms per clip,
its MFU, or a ratio the run formed inside each round (the loader ratio, the loader overhead, bf16 over fp32).
:func:`figures` lists them for :mod:`echoclr.bench.compare` and :mod:`echoclr.bench.history`.

Two kinds, because a shared machine moves them differently:

- ``"absolute"``: a row's median (clips/s, CPU ms per clip). It moves with the machine's load by tens of percent
  between runs, so the gate does not fail on it by default (``gate_absolute``).
- ``"ratio"``: formed inside one round from measurements that ran side by side (interleaved), so the load they
  shared largely cancels. These are gated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from echoclr.bench.timing import RoundQuartiles

ROW_MATCH_KEYS = ("precision", "memory_format", "device", "batch", "workers", "threads", "size", "clip_len",
                  "steps", "chunk_frames", "codec", "cpu_rotate")
"""Row fields that are settings, not measurements: rows match only when all of these agree (with the name)."""


@dataclass(frozen=True)
class Figure(RoundQuartiles):
    """One measured figure of a run.

    Attributes:
        bench: ``"ingest"``, ``"loader"`` or ``"train"``.
        name: the row name, or the name of a summary figure, e.g. ``"ratio: echoclr CPU / reference clips/s"``.
        settings: the settings it was measured with, as sorted ``(key, value)`` pairs (part of the match key).
        kind: ``"absolute"`` or ``"ratio"`` (see the module docstring).
        unit: e.g. ``"clips/s"``, ``"x"``, ``"CPU ms/clip"``, ``"MFU"``, ``"overhead"``.
        higher_is_better: True for rates and speed-ups; False for costs and overheads.
        values: one value per round (empty for a skipped row).
        difference: compare by difference (in points of the value) instead of by relative change: for figures
            near zero, such as the loader overhead.
        skipped: why the row did not run, or None.
    """

    bench: str
    name: str
    settings: tuple[tuple[str, Any], ...]
    kind: str
    unit: str
    higher_is_better: bool
    values: tuple[float, ...]
    difference: bool = False
    skipped: str | None = None

    @property
    def key(self) -> tuple[str, str, tuple[tuple[str, Any], ...]]:
        """What a figure of another run must share to be compared with this one."""
        return (self.bench, self.name, self.settings)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def noise(self) -> float:
        """The spread over rounds in the unit of comparison: IQR / |median| (relative), or the IQR (difference)."""
        if self.difference:
            return self.iqr
        return self.iqr / abs(self.median) if self.median else float("inf")

    def settings_text(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.settings)


def _row_settings(r: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple((k, r[k]) for k in ROW_MATCH_KEYS if r.get(k) is not None)


def _values(r: dict[str, Any], key: str = "values", median_key: str = "median") -> tuple[float, ...]:
    """The rounds of a measurement; a result without them (older writers) gives its median as one round."""
    values = r.get(key)
    if values:
        return tuple(float(v) for v in values)
    return (float(r[median_key]),) if r.get(median_key) is not None else ()


def _row_figures(bench: str, r: dict[str, Any]) -> list[Figure]:
    settings = _row_settings(r)
    if r.get("status") != "ok":
        return [Figure(bench, r["name"], settings, "absolute", "", True, (), skipped=r.get("reason", "skipped"))]
    unit = r["unit"]
    out = [Figure(bench, r["name"], settings, "absolute", unit, unit.endswith("/s"), _values(r))]
    if r.get("cpu_ms_per_clip") is not None:
        out.append(Figure(bench, f"{r['name']}: CPU ms per clip", settings, "absolute", "CPU ms/clip", False,
                          _values(r, "cpu_ms_per_clip_values", "cpu_ms_per_clip")))
    if r.get("mfu") is not None:
        # achieved FLOP/s over the matmul rate measured in the same round: an in-run ratio
        out.append(Figure(bench, f"{r['name']}: MFU", settings, "ratio", "MFU", True, _values(r, "mfu_values", "mfu")))
    return out


def _per_round_ratio(top: dict[str, Any], bottom: dict[str, Any], key: str) -> tuple[float, ...]:
    a, b = top.get(key) or (), bottom.get(key) or ()
    if not a or len(a) != len(b):
        return ()
    return tuple(float(x) / float(y) for x, y in zip(a, b) if y)


def _loader_ratios(result: dict[str, Any]) -> list[Figure]:
    summary, settings = result["summary"], result["settings"]
    ok = [r for r in result["rows"] if r.get("status") == "ok"]
    # the row names of echoclr.bench.loader (not imported here: it pulls in torch and DALI)
    reference = next((r for r in ok if r["name"].startswith("reference loader")), None)
    ours = next((r for r in ok if r["name"].startswith("echoclr CPU pipeline")), None)
    match = tuple((k, settings[k]) for k in ("workers", "batch_size", "clip_len") if k in settings)
    out = []
    if "ratio" in summary:
        values = tuple(summary.get("ratio_per_round") or (summary["ratio"],))
        out.append(Figure("loader", "ratio: echoclr CPU pipeline / reference loader, clips/s", match, "ratio", "x",
                          True, values))
    if reference is not None and ours is not None:
        # reference CPU ms per clip / ours, round by round (the two windows of a round run back to back)
        values = _per_round_ratio(reference, ours, "cpu_ms_per_clip_values")
        if not values and "cpu_cost_ratio" in summary:
            values = (float(summary["cpu_cost_ratio"]),)
        if values:
            out.append(Figure("loader", "ratio: reference CPU ms per clip / echoclr's", match, "ratio", "x", True,
                              values))
    return out


def _train_ratios(result: dict[str, Any]) -> list[Figure]:
    out = []
    for setting, o in sorted((result["summary"].get("loader_overhead") or {}).items()):
        values = tuple(o.get("overhead_per_round") or (o["overhead"],))
        out.append(Figure("train", f"loader overhead: {setting}", (), "ratio", "overhead", False, values,
                          difference=True))
    # bf16 autocast over fp32, per task, layout and path, round by round (rows of a round run back to back)
    ok = [r for r in result["rows"] if r.get("status") == "ok"]
    for r in ok:
        if r["precision"] != "fp32":
            continue
        for amp in ok:
            if amp["precision"] != "fp32" and amp["name"] == r["name"] and amp["memory_format"] == r["memory_format"]:
                values = _per_round_ratio(amp, r, "values")
                if values:
                    out.append(Figure("train", f"ratio: {r['name']}, {amp['precision']} / fp32",
                                      (("memory_format", r["memory_format"]),), "ratio", "x", True, values))
    return out


def figures(result: dict[str, Any]) -> list[Figure]:
    """Every comparable figure of a result document, rows first, then the run's in-run ratios.

    Args:
        result: a result document (:func:`echoclr.bench.results.make_result`; older files without per-round
            values give one-round figures).

    Returns:
        The figures, in the order of the document.
    """
    bench = result["bench"]
    out = [f for r in result["rows"] for f in _row_figures(bench, r)]
    if bench == "loader":
        out += _loader_ratios(result)
    elif bench == "train":
        out += _train_ratios(result)
    return out
