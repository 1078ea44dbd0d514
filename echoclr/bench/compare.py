"""Compare benchmark results against a baseline: per figure, the change of the median against the noise of both
runs, a verdict, and a gate (any gated figure slower beyond tolerance fails).

Rule, per matched figure (see :mod:`echoclr.bench.figures`):

- ``change`` = new median / baseline median − 1, or new − baseline for figures compared by difference (the
  loader overhead); signed so that a negative number is worse;
- ``noise`` = the larger spread over rounds of the two runs (IQR / |median|, or the IQR for differences);
- ``threshold`` = max(tolerance, noise): a change must leave both the tolerance and either run's own spread
  before it counts;
- verdict ``slower`` (worse by more than the threshold), ``faster`` (better by more), otherwise ``same within
  noise`` (|change| ≤ noise) or ``same within tolerance``.

Only ``"ratio"`` figures are gated by default: on a shared machine absolute clips/s move by tens of percent
between runs, while ratios formed inside one round largely cancel the load. ``gate_absolute`` gates every figure
(for dedicated machines).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from echoclr.bench.environment import machine_tag
from echoclr.bench.figures import Figure, figures
from echoclr.bench.results import check_result

SLOWER, FASTER, SAME_NOISE, SAME_TOLERANCE = "slower", "faster", "same within noise", "same within tolerance"
DEFAULT_TOLERANCE = 0.10
RUN_SETTINGS_IGNORED = ("profile",)
"""Run settings that do not change what a matched row measures (the profile only adds rows)."""


def load_results(path: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """The result documents of a file, or the newest per (bench, machine) of a folder and its subfolders.

    Args:
        path: a result JSON file or a folder of them (searched recursively; other JSON files are skipped).

    Returns:
        ``(file, document)`` pairs.

    Raises:
        ValueError: the path does not exist, a file is not valid JSON or not a complete result, or a folder holds
            no result; the message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist; pass a result JSON file or a folder of them")
    if path.is_file():
        return [(path, _read(path, strict=True))]
    newest: dict[tuple[str, str], tuple[Path, dict[str, Any]]] = {}
    for file in sorted(path.rglob("*.json")):
        result = _read(file, strict=False)
        if result is None:
            continue
        key = (result["bench"], machine_tag(result["machine"]))
        if key not in newest or result["created"] > newest[key][1]["created"]:
            newest[key] = (file, result)
    if not newest:
        raise ValueError(f"{path} holds no benchmark result (*.json with a 'bench' key); run `echoclr bench ...` "
                         "first or pass another folder")
    return sorted(newest.values(), key=lambda pr: (pr[1]["bench"], machine_tag(pr[1]["machine"])))


def _read(file: Path, *, strict: bool) -> dict[str, Any] | None:
    try:
        result = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{file} is not readable JSON ({exc}); fix or remove it") from None
    if not isinstance(result, dict) or "bench" not in result:
        if strict:
            raise ValueError(f"{file} is not a benchmark result (no 'bench' key); pass a file written by "
                             "`echoclr bench ...`")
        return None
    try:
        check_result(result)
    except ValueError as exc:
        raise ValueError(f"{file}: {exc}; it was not written by `echoclr bench` or is truncated") from None
    return result


@dataclass(frozen=True)
class Comparison:
    """One figure of NEW against its baseline.

    Attributes:
        bench, name, settings, kind, unit: of the figure.
        gated: whether it decides the exit status.
        baseline, new: median and [q1, q3] and rounds of each run.
        change: signed so that negative is worse: relative change of the median, or the difference.
        noise: the larger spread over rounds of the two runs (same scale as ``change``).
        threshold: max(tolerance, noise).
        verdict: one of ``slower``, ``faster``, ``same within noise``, ``same within tolerance``.
    """

    bench: str
    name: str
    settings: str
    kind: str
    unit: str
    difference: bool
    gated: bool
    baseline: dict[str, Any]
    new: dict[str, Any]
    change: float
    noise: float
    threshold: float
    verdict: str


@dataclass
class Report:
    """The comparison of NEW against BASELINE.

    Attributes:
        tolerance: as given.
        gate_absolute: whether absolute figures were gated too.
        runs: per compared run pair: bench, machine, both files, their load averages and differing settings.
        comparisons: the matched figures.
        unmatched: figures or runs present on one side only (or skipped on one side), with the reason.
    """

    tolerance: float
    gate_absolute: bool
    runs: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    unmatched: list[dict[str, Any]] = field(default_factory=list)

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.gated and c.verdict == SLOWER]

    @property
    def verdict(self) -> str:
        """``slower`` if a gated figure regressed, else ``faster`` if one improved, else ``same within noise``."""
        gated = [c.verdict for c in self.comparisons if c.gated]
        if SLOWER in gated:
            return SLOWER
        if FASTER in gated:
            return FASTER
        return SAME_NOISE

    @property
    def exit_code(self) -> int:
        """1 when a gated figure is slower beyond tolerance, else 0."""
        return 1 if self.regressions else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "tolerance": self.tolerance,
            "gate_absolute": self.gate_absolute,
            "runs": self.runs,
            "comparisons": [asdict(c) for c in self.comparisons],
            "unmatched": self.unmatched,
        }


def _summary(f: Figure) -> dict[str, Any]:
    return {"median": f.median, "q1": f.q1, "q3": f.q3, "rounds": list(f.values)}


def compare_figures(base: Figure, new: Figure, *, tolerance: float, gated: bool) -> Comparison:
    """The verdict for one figure of NEW against the same figure of BASELINE (see the module docstring).

    Raises:
        ValueError: the two figures do not share a key, or either has no values.
    """
    if base.key != new.key or not base.values or not new.values:
        raise ValueError(f"cannot compare {base.key} with {new.key}")
    if new.difference:
        change = new.median - base.median
    else:
        change = new.median / base.median - 1 if base.median else float("inf")
    if not new.higher_is_better:
        change = -change
    noise = max(base.noise, new.noise)
    threshold = max(tolerance, noise)
    if change < -threshold:
        verdict = SLOWER
    elif change > threshold:
        verdict = FASTER
    else:
        verdict = SAME_NOISE if abs(change) <= noise else SAME_TOLERANCE
    return Comparison(new.bench, new.name, new.settings_text(), new.kind, new.unit, new.difference, gated,
                      _summary(base), _summary(new), change, noise, threshold, verdict)


def _settings_diff(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = sorted(set(base) | set(new))
    return [f"{k}: {base.get(k)!r} -> {new.get(k)!r}" for k in keys
            if k not in RUN_SETTINGS_IGNORED and base.get(k) != new.get(k)]


def compare_results(
    baseline: list[tuple[Path, dict[str, Any]]],
    new: list[tuple[Path, dict[str, Any]]],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    gate_absolute: bool = False,
) -> Report:
    """Compare every run of NEW with the baseline run of the same bench and machine class.

    Args:
        baseline, new: from :func:`load_results`.
        tolerance: the smallest relative change (or difference, for overheads) that counts, e.g. 0.10.
        gate_absolute: gate absolute figures (clips/s, CPU ms per clip) too, not only in-run ratios.

    Returns:
        The report; ``report.exit_code`` is the gate.

    Raises:
        ValueError: a negative tolerance, or no run of NEW has a baseline of the same bench and machine class.
    """
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0 (a fraction, e.g. 0.1), got {tolerance}")
    report = Report(tolerance=tolerance, gate_absolute=gate_absolute)
    base_runs = {(r["bench"], machine_tag(r["machine"])): (p, r) for p, r in baseline}
    paired = set()
    for path, result in new:
        key = (result["bench"], machine_tag(result["machine"]))
        if key not in base_runs:
            report.unmatched.append({"bench": key[0], "machine": key[1], "name": "(whole run)", "file": str(path),
                                     "reason": f"no baseline run of bench {key[0]!r} on machine class {key[1]!r}"})
            continue
        paired.add(key)
        base_path, base_result = base_runs[key]
        _compare_run(report, base_path, base_result, path, result)
    for key, (path, _) in base_runs.items():
        if key not in paired:
            report.unmatched.append({"bench": key[0], "machine": key[1], "name": "(whole run)", "file": str(path),
                                     "reason": "baseline run without a new run of the same bench and machine class"})
    if not paired:
        new_runs = sorted((r["bench"], machine_tag(r["machine"])) for _, r in new)
        raise ValueError("no run in NEW has a baseline of the same bench and machine class "
                         f"(baseline: {sorted(base_runs)}; new: {new_runs})")
    return report


def _compare_run(report: Report, base_path: Path, base: dict[str, Any], new_path: Path, new: dict[str, Any]) -> None:
    tag = machine_tag(new["machine"])
    report.runs.append({
        "bench": new["bench"], "machine": tag,
        "baseline": {"file": str(base_path), "created": base["created"], "quick": base["quick"],
                     "load_avg": [base["machine"].get("load_avg_start"), base["machine"].get("load_avg_end")],
                     "git": (base["versions"].get("git") or {}).get("commit")},
        "new": {"file": str(new_path), "created": new["created"], "quick": new["quick"],
                "load_avg": [new["machine"].get("load_avg_start"), new["machine"].get("load_avg_end")],
                "git": (new["versions"].get("git") or {}).get("commit")},
        "settings_differ": _settings_diff(base["settings"], new["settings"])
                           + ([f"quick: {base['quick']} -> {new['quick']}"] if base["quick"] != new["quick"] else []),
    })
    base_figs = {f.key: f for f in figures(base)}
    new_figs = {f.key: f for f in figures(new)}
    unmatched_rows: set[str] = set()  # a row's own figures ("<row>: MFU") are not listed again

    def listed(f: Figure) -> bool:
        return any(f.name.startswith(f"{name}: ") for name in unmatched_rows)

    for key, f in new_figs.items():
        b = base_figs.get(key)
        where = {"bench": f.bench, "machine": tag, "name": f.name, "settings": f.settings_text()}
        if b is None:
            if not listed(f):
                unmatched_rows.add(f.name)
                report.unmatched.append({**where, "reason": "only in NEW (no baseline row with this name and "
                                                            "settings)"})
        elif f.skipped or b.skipped:
            if not (f.skipped and b.skipped):
                side = "NEW" if f.skipped else "BASELINE"
                report.unmatched.append({**where, "reason": f"skipped in {side}: {f.skipped or b.skipped}"})
        else:
            gated = f.kind == "ratio" or report.gate_absolute
            report.comparisons.append(compare_figures(b, f, tolerance=report.tolerance, gated=gated))
    unmatched_rows.clear()
    for key, b in base_figs.items():
        if key not in new_figs and not listed(b):
            unmatched_rows.add(b.name)
            report.unmatched.append({"bench": b.bench, "machine": tag, "name": b.name, "settings": b.settings_text(),
                                     "reason": "only in BASELINE (no new row with this name and settings)"})


def _value(x: float) -> str:
    a = abs(x)
    return f"{x:,.0f}" if a >= 100 else f"{x:.3g}"


def format_change(c: Comparison) -> str:
    """``+12.3%`` (relative) or ``+0.031`` (difference), signed so that negative is worse."""
    return f"{c.change:+.3f}" if c.difference else f"{c.change:+.1%}"


def format_noise(c: Comparison) -> str:
    return f"±{c.noise:.3f}" if c.difference else f"±{c.noise:.1%}"


def format_run(c_side: dict[str, Any]) -> str:
    return f"{_value(c_side['median'])} [{_value(c_side['q1'])}–{_value(c_side['q3'])}]"


def report_markdown(report: Report) -> str:
    """The report as Markdown for a pull request: the verdict, the runs compared, a table, the unmatched rows.

    Returns:
        Markdown text.
    """
    mark = {SLOWER: "**slower**", FASTER: "faster", SAME_NOISE: "same within noise",
            SAME_TOLERANCE: "same within tolerance"}
    lines = [f"## Benchmark gate: {report.verdict}"
             + (f" ({len(report.regressions)} gated figure(s) beyond tolerance)" if report.regressions else ""),
             "",
             f"Tolerance {report.tolerance:.0%}; a change counts only beyond max(tolerance, the larger IQR over "
             f"rounds of the two runs). Gated: {'every figure' if report.gate_absolute else 'in-run ratios'}.",
             ""]
    for run in report.runs:
        b, n = run["baseline"], run["new"]
        lines.append(f"- `{run['bench']}` on `{run['machine']}`: baseline {b['created']} (load {b['load_avg'][0]} → "
                     f"{b['load_avg'][1]}, `{Path(b['file']).name}`) vs new {n['created']} (load {n['load_avg'][0]} "
                     f"→ {n['load_avg'][1]}, `{Path(n['file']).name}`)"
                     + (f"; settings differ: {'; '.join(run['settings_differ'])}"
                        if run["settings_differ"] else ""))
    lines += ["", "| bench | figure | settings | baseline median [q1–q3] | new median [q1–q3] | unit | change | noise "
              "| verdict | gated |", "|---|---|---|---:|---:|---|---:|---:|---|---|"]
    for c in report.comparisons:
        lines.append(f"| {c.bench} | {c.name.strip()} | {c.settings} | {format_run(c.baseline)} | {format_run(c.new)} "
                     f"| {c.unit} | {format_change(c)} | {format_noise(c)} | {mark[c.verdict]} | "
                     f"{'yes' if c.gated else 'no'} |")
    if report.unmatched:
        lines += ["", "Unmatched (not compared):", ""]
        lines += [f"- {u['bench']} / {u['name'].strip()}" + (f" ({u['settings']})" if u.get("settings") else "")
                  + f": {u['reason']}" for u in report.unmatched]
    return "\n".join(lines) + "\n"
