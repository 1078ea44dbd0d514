"""Label-titration reports: the results table (CSV and Markdown), AUROC/AUPR-vs-labels plots like the paper's
Figs. 2 and 3 (one line per initialisation, a shaded bootstrap CI band), and a Markdown/HTML report linking them.

With repeated titration (several subset draws per ratio) every repeat is a row; :func:`summarize_repeats` gives the
mean, spread and win fraction per init x ratio, and the plots draw each repeat's point and the mean +- SD.

Torch-free; matplotlib is imported when a plot is drawn, on its Agg canvas (no display, no pyplot state).
"""

from __future__ import annotations

import csv
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

INIT_ORDER = ("random", "kinetics", "simclr", "mi-simclr", "echoclr")
DISPLAY_NAMES = {
    "random": "Random init",
    "kinetics": "Kinetics-400",
    "simclr": "SimCLR",
    "mi-simclr": "MI-SimCLR",
    "echoclr": "EchoCLR",
}
COLORS = {"random": "#7f7f7f", "kinetics": "#ff7f0e", "simclr": "#1f77b4", "mi-simclr": "#2ca02c",
          "echoclr": "#d62728"}
SPLIT_TITLES = {"val": "validation set", "test": "internal test set", "ext_test": "external test set"}
FIGURE_GROUPS = {
    # the paper's Fig. 2: EchoCLR against the usual initialisations; Fig. 3: against the other SSL methods
    "fig2": ("random", "kinetics", "echoclr"),
    "fig3": ("simclr", "mi-simclr", "echoclr"),
}
METRIC_NAMES = {"auroc": "AUROC", "aupr": "AUPR"}
CSV_COLUMNS = (
    "split", "init", "ratio", "repeat", "percent_labels", "n_train_studies", "lr", "auroc", "auroc_ci_low", "auroc_ci_high",
    "aupr", "aupr_ci_low", "aupr_ci_high", "ci_level", "n_studies", "n_positive", "reference", "p_value",
)


@dataclass(frozen=True)
class ResultRow:
    """One cell of the titration grid evaluated on one split.

    Attributes:
        split: ``test``, ``ext_test`` (or ``val``).
        init: ``random``, ``kinetics``, ``simclr``, ``mi-simclr`` or ``echoclr``.
        ratio: fraction of the labelled training studies used for fine-tuning, in (0, 1].
        n_train_studies: studies fine-tuned on (None when unknown).
        lr: the learning rate chosen by validation loss (None when unknown).
        auroc, aupr: study-level metrics; auroc_ci, aupr_ci: (low, high) bootstrap intervals.
        ci_level: nominal level of the intervals (0.95 for the paper's rule).
        n_studies, n_positive: evaluated studies and positives among them.
        reference: the init tested against this one (EchoCLR), None when the grid lacks it.
        p_value: one-sided paired bootstrap p of H1 AUROC(reference) > AUROC(init) (against the reference's run on
            the same subset draw); None on the reference's own row or without a reference.
        repeat: which subset draw of this ratio (0 for a single titration).
        reference_auroc: the reference's AUROC on the same split, ratio and repeat (None without one).
    """

    split: str
    init: str
    ratio: float
    n_train_studies: int | None
    lr: float | None
    auroc: float
    auroc_ci: tuple[float, float]
    aupr: float
    aupr_ci: tuple[float, float]
    ci_level: float
    n_studies: int
    n_positive: int
    reference: str | None = None
    p_value: float | None = None
    repeat: int = 0
    reference_auroc: float | None = None

    def __post_init__(self) -> None:
        if self.init not in INIT_ORDER:
            raise ValueError(f"init must be one of {', '.join(INIT_ORDER)}, got {self.init!r}")
        if not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")

    def csv_row(self) -> list[str]:
        """The row's values in ``CSV_COLUMNS`` order; floats at full precision, empty for None."""
        def text(value) -> str:
            return "" if value is None else repr(value) if isinstance(value, float) else str(value)

        values = (
            self.split, self.init, self.ratio, self.repeat, round(self.ratio * 100, 6), self.n_train_studies, self.lr,
            self.auroc, *self.auroc_ci, self.aupr, *self.aupr_ci, self.ci_level, self.n_studies, self.n_positive,
            self.reference, self.p_value,
        )
        return [text(float(v) if isinstance(v, float) else v) for v in values]


def sort_rows(rows: Sequence[ResultRow]) -> list[ResultRow]:
    """Rows ordered by split (test before ext_test), ratio, then init in the paper's order."""
    split_order = {s: i for i, s in enumerate(SPLIT_TITLES)}
    return sorted(rows, key=lambda r: (split_order.get(r.split, 99), r.split, r.ratio, r.repeat,
                                       INIT_ORDER.index(r.init)))


def write_results_csv(rows: Sequence[ResultRow], path: str | Path) -> Path:
    """Write the results table as CSV (columns ``CSV_COLUMNS``, one row per init x ratio x split).

    Args:
        rows: the evaluated cells.
        path: the CSV to write.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in sort_rows(rows):
            writer.writerow(row.csv_row())
    return path


def format_p(p: float | None) -> str:
    """A p-value as the paper prints it: ``<0.001`` or three decimals; an em dash for none."""
    if p is None:
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _ci_text(value: float, ci: tuple[float, float]) -> str:
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _level(rows: Sequence[ResultRow]) -> str:
    levels = {round(r.ci_level * 100) for r in rows}
    return "/".join(f"{lv}%" for lv in sorted(levels)) or "95%"


def _table_cells(rows: Sequence[ResultRow]) -> tuple[list[str], list[list[str]]]:
    level = _level(rows)
    references = {r.reference for r in rows if r.reference}
    ref = DISPLAY_NAMES.get(next(iter(references)), "reference") if len(references) == 1 else "reference"
    repeated = any(r.repeat for r in rows)
    header = ["Split", "Labels", *(["Repeat"] if repeated else []), "Train studies", "Initialisation",
              f"AUROC [{level} CI]", f"AUPR [{level} CI]", "Studies (pos.)", f"p ({ref} > init)"]
    body = []
    for r in sort_rows(rows):
        body.append([
            SPLIT_TITLES.get(r.split, r.split), f"{r.ratio * 100:g}%", *([str(r.repeat)] if repeated else []),
            "" if r.n_train_studies is None else str(r.n_train_studies), DISPLAY_NAMES[r.init],
            _ci_text(r.auroc, r.auroc_ci), _ci_text(r.aupr, r.aupr_ci), f"{r.n_studies} ({r.n_positive})",
            format_p(r.p_value),
        ])
    return header, body


def results_markdown(rows: Sequence[ResultRow]) -> str:
    """The results table as a Markdown table (one row per init x ratio x split)."""
    header, body = _table_cells(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SummaryRow:
    """One init x ratio x split over its repeats (subset draws).

    Attributes:
        split, init, ratio: the cell.
        n_repeats: repeats evaluated.
        auroc_mean, auroc_sd: mean and sample SD (ddof 1; 0 for one repeat) of the repeats' AUROCs.
        auroc_min, auroc_max: the lowest and highest repeat.
        aupr_mean, aupr_sd: the same for AUPR.
        reference: the init compared against (None without one, and on the reference's own row).
        win_fraction: fraction of repeats where the reference's AUROC exceeds this init's on the same subset draw.
        n_significant: repeats whose one-sided paired test gives p < 0.05.
    """

    split: str
    init: str
    ratio: float
    n_repeats: int
    auroc_mean: float
    auroc_sd: float
    auroc_min: float
    auroc_max: float
    aupr_mean: float
    aupr_sd: float
    reference: str | None = None
    win_fraction: float | None = None
    n_significant: int | None = None


SUMMARY_COLUMNS = ("split", "init", "ratio", "n_repeats", "auroc_mean", "auroc_sd", "auroc_min", "auroc_max",
                   "aupr_mean", "aupr_sd", "reference", "win_fraction", "n_significant")


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarize_repeats(rows: Sequence[ResultRow]) -> list[SummaryRow]:
    """Mean, spread and the reference's win fraction over the repeats of every init x ratio x split.

    Args:
        rows: evaluated cells, one per repeat.

    Returns:
        One :class:`SummaryRow` per init x ratio x split, in :func:`sort_rows` order.
    """
    groups: dict[tuple[str, str, float], list[ResultRow]] = {}
    for r in sort_rows(rows):
        groups.setdefault((r.split, r.init, r.ratio), []).append(r)
    summary = []
    for (split, init, ratio), rs in groups.items():
        auroc_mean, auroc_sd = _mean_sd([r.auroc for r in rs])
        aupr_mean, aupr_sd = _mean_sd([r.aupr for r in rs])
        paired = [r for r in rs if r.reference_auroc is not None and r.reference != init]
        summary.append(SummaryRow(
            split=split, init=init, ratio=ratio, n_repeats=len(rs), auroc_mean=auroc_mean, auroc_sd=auroc_sd,
            auroc_min=min(r.auroc for r in rs), auroc_max=max(r.auroc for r in rs), aupr_mean=aupr_mean,
            aupr_sd=aupr_sd, reference=paired[0].reference if paired else None,
            win_fraction=sum(r.reference_auroc > r.auroc for r in paired) / len(paired) if paired else None,
            n_significant=sum(r.p_value is not None and r.p_value < 0.05 for r in paired) if paired else None,
        ))
    return summary


def write_summary_csv(summary: Sequence[SummaryRow], path: str | Path) -> Path:
    """Write the over-repeats summary as CSV (columns ``SUMMARY_COLUMNS``); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUMMARY_COLUMNS)
        for s in summary:
            writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else str(v)
                             for v in (getattr(s, c) for c in SUMMARY_COLUMNS)])
    return path


def summary_markdown(summary: Sequence[SummaryRow]) -> str:
    """The over-repeats summary as a Markdown table: mean +- SD [min, max], and the reference's wins."""
    refs = {s.reference for s in summary if s.reference}
    ref = DISPLAY_NAMES.get(next(iter(refs)), "reference") if len(refs) == 1 else "reference"
    header = ["Split", "Labels", "Initialisation", "Repeats", "AUROC mean ± SD [min, max]", "AUPR mean ± SD",
              f"{ref} > init (repeats)", "p < 0.05 (repeats)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for s in summary:
        wins = "—" if s.win_fraction is None else f"{round(s.win_fraction * s.n_repeats)}/{s.n_repeats}"
        significant = "—" if s.n_significant is None else f"{s.n_significant}/{s.n_repeats}"
        lines.append("| " + " | ".join([
            SPLIT_TITLES.get(s.split, s.split), f"{s.ratio * 100:g}%", DISPLAY_NAMES[s.init], str(s.n_repeats),
            f"{s.auroc_mean:.3f} ± {s.auroc_sd:.3f} [{s.auroc_min:.3f}, {s.auroc_max:.3f}]",
            f"{s.aupr_mean:.3f} ± {s.aupr_sd:.3f}", wins, significant,
        ]) + " |")
    return "\n".join(lines) + "\n"


def _by_init(rows: Sequence[ResultRow], split: str, inits: Sequence[str]) -> dict[str, list[ResultRow]]:
    chosen = {i: sorted((r for r in rows if r.split == split and r.init == i), key=lambda r: r.ratio) for i in inits}
    return {i: rs for i, rs in chosen.items() if rs}


def titration_plot(
    rows: Sequence[ResultRow],
    path: str | Path,
    *,
    split: str,
    inits: Sequence[str] = INIT_ORDER,
    metric: str = "auroc",
    label: str = "",
) -> Path:
    """Plot a metric against the % of labelled training studies, one line per init with its CI band.

    The x axis is logarithmic with a tick at every ratio (``1%`` ... ``100%``, with the number of training
    studies when known), as in the paper's Figs. 2 and 3.

    Args:
        rows: evaluated cells (rows of other splits and inits are ignored).
        path: the PNG to write.
        split: which split to plot.
        inits: the initialisations to draw, in legend order.
        metric: ``auroc`` or ``aupr``.
        label: the diagnosis (e.g. ``lvh``), for the title.

    Returns:
        The path written.

    Raises:
        ValueError: unknown metric, or no row of ``split`` for any of ``inits``.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    if metric not in METRIC_NAMES:
        raise ValueError(f"metric must be one of {', '.join(METRIC_NAMES)}, got {metric!r}")
    lines = _by_init(rows, split, inits)
    if not lines:
        raise ValueError(f"no result rows for split {split!r} and inits {list(inits)} to plot")
    name = METRIC_NAMES[metric]
    level = _level([r for rs in lines.values() for r in rs])

    fig = Figure(figsize=(7.0, 4.8), dpi=150)
    ax = fig.add_subplot()
    lows, highs = [], []
    repeated = any(r.repeat for rs in lines.values() for r in rs)
    for offset, (init, rs) in enumerate(lines.items()):
        color = COLORS[init]
        if repeated:
            # each repeat's point (nudged sideways per init so they do not hide each other), mean +- SD over repeats
            nudge = 1.0 + 0.03 * (offset - (len(lines) - 1) / 2)
            ax.scatter([r.ratio * 100 * nudge for r in rs], [getattr(r, metric) for r in rs], s=14, color=color,
                       alpha=0.55, linewidths=0)
            ratios_here = sorted({r.ratio for r in rs})
            stats = [_mean_sd([getattr(r, metric) for r in rs if r.ratio == q]) for q in ratios_here]
            x = [q * 100 * nudge for q in ratios_here]
            y, sd = [m for m, _ in stats], [d for _, d in stats]
            lows += [getattr(r, metric) for r in rs]
            highs += [getattr(r, metric) for r in rs]
            ax.errorbar(x, y, yerr=sd, marker="o", markersize=6, linewidth=2, capsize=4, color=color,
                        label=f"{DISPLAY_NAMES[init]} (mean ± SD, dots: repeats)")
            continue
        x = [r.ratio * 100 for r in rs]
        y = [getattr(r, metric) for r in rs]
        lo = [getattr(r, f"{metric}_ci")[0] for r in rs]
        hi = [getattr(r, f"{metric}_ci")[1] for r in rs]
        lows += lo
        highs += hi
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, linewidth=0)
        ax.plot(x, y, marker="o", markersize=5, linewidth=2, color=color, label=DISPLAY_NAMES[init])

    any_rows = next(iter(lines.values()))
    if metric == "auroc":
        chance, chance_label = 0.5, "chance (0.5)"
    else:
        prevalence = any_rows[0].n_positive / any_rows[0].n_studies
        chance, chance_label = prevalence, f"prevalence ({prevalence:.2f})"
    ax.axhline(chance, color="black", linestyle=":", linewidth=1, label=chance_label)

    ratios = sorted({r.ratio for rs in lines.values() for r in rs})
    counts = {r.ratio: r.n_train_studies for rs in lines.values() for r in rs}
    ax.set_xscale("log")
    ax.set_xticks([r * 100 for r in ratios])
    with_counts = all(counts[r] is not None for r in ratios)
    ax.set_xticklabels([f"{r * 100:g}%" + (f"\n({counts[r]})" if with_counts else "") for r in ratios])
    ax.xaxis.set_minor_locator(NullLocator())
    if len(ratios) == 1:
        ax.set_xlim(ratios[0] * 100 / 2, ratios[0] * 100 * 2)
    ax.set_xlabel("Labelled training data, % of training studies" + (" (n studies)" if with_counts else "")
                  + ", log scale")
    ax.set_ylabel(f"{name} (error bars: SD over subset draws)" if repeated else
                  f"{name} (shaded: {level} bootstrap CI)")
    # a little room beyond [0, 1] so markers at a perfect or zero score are not cut in half
    bottom = max(-0.02, min(lows + [chance]) - 0.05)
    top = min(1.02, max(highs + [chance]) + 0.05)
    ax.set_ylim(bottom, max(top, bottom + 0.1))
    ax.grid(True, alpha=0.3)
    where = SPLIT_TITLES.get(split, split)
    ax.set_title(f"{label + ': ' if label else ''}{name} vs. labelled training data, {where}")
    ax.legend(title="Initialisation", loc="best", fontsize=9, framealpha=0.9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


@dataclass(frozen=True)
class PlotFile:
    """A written plot and the caption a report shows under it."""

    path: Path
    caption: str


def titration_plots(rows: Sequence[ResultRow], plot_dir: str | Path, *, label: str = "") -> list[PlotFile]:
    """All report plots: per split, the paper's Fig. 2 and Fig. 3 groups (AUROC; drawn when at least two of a
    group's inits are in ``rows``) and every init together for AUROC and AUPR.

    Args:
        rows: evaluated cells.
        plot_dir: folder for the PNGs (``auroc_<split>_fig2.png``, ``auroc_<split>_fig3.png``,
            ``auroc_<split>_all.png``, ``aupr_<split>_all.png``).
        label: the diagnosis, for titles.

    Returns:
        The PNGs written, with captions.
    """
    plot_dir = Path(plot_dir)
    group_captions = {"fig2": "random / Kinetics-400 / EchoCLR (as the paper's Fig. 2)",
                      "fig3": "SimCLR / MI-SimCLR / EchoCLR (as the paper's Fig. 3)"}
    split_order = list(SPLIT_TITLES)
    written = []
    for split in sorted({r.split for r in rows}, key=lambda s: (split_order.index(s) if s in split_order else 99, s)):
        where = SPLIT_TITLES.get(split, split)
        present = {r.init for r in rows if r.split == split}
        for group, inits in FIGURE_GROUPS.items():
            if len(present & set(inits)) >= 2:
                path = titration_plot(rows, plot_dir / f"auroc_{split}_{group}.png", split=split, inits=inits,
                                      label=label)
                written.append(PlotFile(path, f"AUROC, {where}: {group_captions[group]}"))
        for metric, name in METRIC_NAMES.items():
            path = titration_plot(rows, plot_dir / f"{metric}_{split}_all.png", split=split, metric=metric,
                                  label=label)
            written.append(PlotFile(path, f"{name}, {where}: all initialisations"))
    return written


def write_report(
    rows: Sequence[ResultRow],
    out_dir: str | Path,
    *,
    title: str,
    settings: Sequence[str],
    plots: Sequence[PlotFile],
    results_csv: Path,
    results_md: Path,
    summary: Sequence[SummaryRow] = (),
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` in ``out_dir``: settings, plots and the results table.

    Args:
        rows: evaluated cells (the table).
        out_dir: the report's folder; links to plots and tables are relative to it.
        title: the report's heading.
        settings: bullet lines describing how the results were made.
        plots: PNGs to show (inside ``out_dir``) with their captions.
        results_csv, results_md: the table files to link.
        summary: the over-repeats summary, shown above the per-run table when a ratio has several repeats.

    Returns:
        ``(report.md, report.html)``.
    """
    out = Path(out_dir)

    def rel(p: Path) -> str:
        return Path(p).resolve().relative_to(out.resolve()).as_posix()

    md = [f"# {title}", "", *[f"- {s}" for s in settings], "",
          f"Tables: [{rel(results_csv)}]({rel(results_csv)}), [{rel(results_md)}]({rel(results_md)}).", "",
          "## Plots", ""]
    for p in plots:
        md += [f"**{p.caption}**", "", f"![{p.caption}]({rel(p.path)})", ""]
    if any(s.n_repeats > 1 for s in summary):
        md += ["## Over subset draws", "", summary_markdown(summary), ""]
    md += ["## Results", "", results_markdown(rows)]
    report_md = out / "report.md"
    report_md.write_text("\n".join(md))

    header, body = _table_cells(rows)
    esc = html.escape
    parts = [
        "<!doctype html>", "<html><head><meta charset='utf-8'>", f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}img{max-width:100%}</style>",
        "</head><body>", f"<h1>{esc(title)}</h1>", "<ul>", *[f"<li>{esc(s)}</li>" for s in settings], "</ul>",
        f"<p>Tables: <a href='{esc(rel(results_csv))}'>{esc(rel(results_csv))}</a>, "
        f"<a href='{esc(rel(results_md))}'>{esc(rel(results_md))}</a></p>", "<h2>Plots</h2>",
    ]
    for p in plots:
        parts.append(f"<figure><img src='{esc(rel(p.path))}' alt='{esc(p.caption)}'>"
                     f"<figcaption>{esc(p.caption)}</figcaption></figure>")
    if any(s.n_repeats > 1 for s in summary):
        table = [line.strip("|").split(" | ") for line in summary_markdown(summary).splitlines()]
        table = [[cell.strip() for cell in row] for row in table]
        parts += ["<h2>Over subset draws</h2>", "<table>",
                  "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in table[0]) + "</tr>"]
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table[2:]]
        parts.append("</table>")
    parts += ["<h2>Results</h2>", "<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>" for cells in body]
    parts += ["</table>", "</body></html>", ""]
    report_html = out / "report.html"
    report_html.write_text("\n".join(parts))
    return report_md, report_html

