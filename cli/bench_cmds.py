"""Benchmark commands: ``echoclr bench ingest|loader|train|table|compare|history``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from echoclr.errors import EchoclrError

console = Console(width=None if Console().is_terminal else 200)  # full rows in logs and pipes
bench_app = typer.Typer(help="Throughput benchmarks (JSON results with machine, versions and settings).",
                        no_args_is_help=True)

Quick = Annotated[bool, typer.Option("--quick", help="Tiny data and few repeats: a smoke run, not a measurement.")]
Out = Annotated[Path, typer.Option("--out", help="Folder for the result JSON.")]
Work = Annotated[Path, typer.Option("--work", help="Work folder for the synthetic dataset and stores (reused).")]
Overwrite = Annotated[bool, typer.Option(help="Replace a result file of the same bench, machine and day.")]
Repeats = Annotated[Optional[int], typer.Option(help="Timed repeats per row (default: the bench's own).")]
Gate = Annotated[bool, typer.Option("--gate", help="The `make bench` preset: a short real measurement (5 rounds, "
                                                   "shorter windows), comparable with benchmarks/baselines/.")]

DEFAULT_OUT = Path("benchmarks/results")
DEFAULT_WORK = Path("benchmarks/work")


def _number(value: Any) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _print_result(result: dict[str, Any], path: Path) -> None:
    table = Table(title=f"echoclr bench {result['bench']}" + (" (quick)" if result["quick"] else ""))
    for column in ("row", "median", "IQR", "unit", "precision", "memory format", "device", "n"):
        table.add_column(column, justify="right" if column in ("median", "IQR", "n") else "left")
    for r in result["rows"]:
        if r["status"] != "ok":
            table.add_row(r["name"], "—", "—", f"skipped: {r['reason']}", r["precision"], r["memory_format"],
                          r["device"], "")
            continue
        table.add_row(r["name"], _number(r["median"]), _number(r["iqr"]), r["unit"], r["precision"],
                      r["memory_format"], r["device"], f"{r['warmup']}+{r['repeats']}")
    console.print(table)
    m = result["machine"]
    console.print(f"machine: {m['cpu']}, {m['cores']} cores, GPU {m['gpu']['name'] if m['gpu'] else 'none'}; "
                  f"load average {m['load_avg_start']} -> {m['load_avg_end']}  (n = warm-up + repeats)")
    console.print(f"wrote {path}")


def _write(result: dict[str, Any], out: Path, overwrite: bool) -> None:
    from echoclr.bench import write_result

    _print_result(result, write_result(result, out, overwrite=overwrite))


def _with_repeats(config: Any, field: str, repeats: Optional[int]) -> Any:
    from dataclasses import replace

    return config if repeats is None else replace(config, **{field: repeats})


@bench_app.command("ingest")
def ingest(quick: Quick = False, out: Out = DEFAULT_OUT, work: Work = DEFAULT_WORK, overwrite: Overwrite = False,
           repeats: Repeats = None,
           workers: Annotated[Optional[list[int]], typer.Option(
               help="Worker count to time; repeat the option for several (default: 1 and 2).")] = None) -> None:
    """ingest_rows videos/s (1 and 2 workers), and the store's chunk layouts/codecs by size and clip-read rate."""
    from dataclasses import replace

    from echoclr.bench.ingest import IngestBenchConfig, run_ingest_bench

    config = IngestBenchConfig.smoke() if quick else IngestBenchConfig()
    if workers:
        config = replace(config, workers=tuple(workers))
    result = run_ingest_bench(_with_repeats(config, "repeats", repeats), work)
    _write(result, out, overwrite)
    console.print(f"layout choice: {result['summary']['recommendation']['why']}")


@bench_app.command("loader")
def loader(quick: Quick = False, out: Out = DEFAULT_OUT, work: Work = DEFAULT_WORK, overwrite: Overwrite = False,
           repeats: Repeats = None, gate: Gate = False,
           workers: Annotated[int, typer.Option(help="CPU workers for every row (processes / threads).")] = 2,
           profile: Annotated[Optional[bool], typer.Option(
               "--profile/--no-profile", help="Add the profile section (default: only when the target is missed).")
           ] = None) -> None:
    """Clips/s in EchoCLR pairs mode: the reference-style loader against echoclr's CPU and GPU pipelines."""
    from echoclr.bench.loader import LoaderBenchConfig, run_loader_bench

    if quick and gate:
        _fail("--quick and --gate are two presets; pass one")
    if quick:
        config = LoaderBenchConfig.smoke(workers=workers, profile=profile)
    elif gate:
        config = LoaderBenchConfig.gate(workers=workers, profile=bool(profile))
    else:
        config = LoaderBenchConfig(workers=workers, profile=profile)
    result = run_loader_bench(_with_repeats(config, "repeats", repeats), work)
    _write(result, out, overwrite)
    s = result["summary"]
    verdict = "[green]met[/green]" if s["target_met"] else "[red]missed[/red]"
    console.print(f"echoclr CPU / reference: {s['ratio']:.1f}x clips/s, {s['cpu_cost_ratio']:.1f}x less CPU per "
                  f"clip; target >= {s['target_ratio']:.0f}x {verdict}")
    for line in s.get("profile", {}).get("findings", []):
        console.print(f"- {line}")


@bench_app.command("train")
def train(quick: Quick = False, out: Out = DEFAULT_OUT, work: Work = DEFAULT_WORK, overwrite: Overwrite = False,
          repeats: Repeats = None, gate: Gate = False,
          device: Annotated[str, typer.Option(help="'auto' (GPU when there is one), 'cpu' or 'cuda'.")] = "auto",
          end_to_end: Annotated[bool, typer.Option(help="Also time the steps fed by the loader.")] = True,
          steps: Annotated[Optional[int], typer.Option(help="Timed steps per window (default: per device).")] = None,
          size: Annotated[Optional[int], typer.Option(help="Frame size in px (default: 112 CUDA, 56 CPU).")] = None,
          ) -> None:
    """Training clips/s (pretraining and fine-tuning), model only and end to end, with FLOPs and MFU."""
    from dataclasses import replace

    from echoclr.bench.train import TrainBenchConfig, run_train_bench

    if quick and gate:
        _fail("--quick and --gate are two presets; pass one")
    preset = TrainBenchConfig.smoke if quick else TrainBenchConfig.gate if gate else TrainBenchConfig
    config = preset(device=device, end_to_end=end_to_end)
    config = replace(config, **{k: v for k, v in (("steps", steps), ("size", size)) if v is not None})
    try:
        result = run_train_bench(_with_repeats(config, "repeats", repeats), work)
    except RuntimeError as exc:  # e.g. CUDA asked for without a GPU: the run failed, exit 1 (echoclr.errors)
        raise EchoclrError(str(exc)) from exc
    _write(result, out, overwrite)


@bench_app.command("store")
def store(quick: Quick = False, out: Out = DEFAULT_OUT, work: Work = DEFAULT_WORK, overwrite: Overwrite = False,
          repeats: Repeats = None) -> None:
    """Store index: open time, index update for 1,000 new videos, resume scan at 10^4-10^6 videos (local and S3)."""
    from echoclr.bench.store import StoreBenchConfig, run_store_bench

    config = StoreBenchConfig.smoke() if quick else StoreBenchConfig()
    _write(run_store_bench(_with_repeats(config, "repeats", repeats), work, quick=quick), out, overwrite)


@bench_app.command("table")
def table(results: Annotated[Path, typer.Argument(help="Results folder.")] = DEFAULT_OUT,
          include_quick: Annotated[bool, typer.Option(help="Also use --quick results.")] = False) -> None:
    """Print the newest result of each bench and machine as a Markdown table (for the README)."""
    from echoclr.bench import latest_results, results_markdown

    text = results_markdown(latest_results(results, include_quick=include_quick))
    if not text:
        raise EchoclrError(f"no benchmark results in {results}: run `echoclr bench ingest|loader|train` first")
    typer.echo(text)


def _fail(message: str) -> None:
    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@bench_app.command("compare")
def compare(
    baseline: Annotated[Path, typer.Argument(help="Baseline result file, or a folder (newest per bench and "
                                                  "machine, searched recursively), e.g. benchmarks/baselines.")],
    new: Annotated[Path, typer.Argument(help="New result file or folder.")],
    tolerance: Annotated[float, typer.Option(
        help="Smallest change that counts, in percent (points for the loader overhead); a change must also "
             "exceed the larger IQR over rounds of the two runs.")] = 100 * 0.10,
    gate_absolute: Annotated[bool, typer.Option(
        help="Gate absolute figures (clips/s, CPU ms per clip) too, not only in-run ratios: for dedicated "
             "machines.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table.")] = False,
    markdown: Annotated[Optional[Path], typer.Option(help="Also write the report as Markdown (for a PR).")] = None,
) -> None:
    """Compare NEW with BASELINE per row and in-run ratio; exit 1 when a gated figure is slower beyond tolerance.

    Exit status: 0 no gated regression, 1 regression, 2 bad input.
    """
    import json

    from echoclr.bench.compare import compare_results, load_results, report_markdown

    if not 0 <= tolerance < 100:
        _fail(f"--tolerance must be a percentage in [0, 100), got {tolerance}")
    try:
        report = compare_results(load_results(baseline), load_results(new), tolerance=tolerance / 100,
                                 gate_absolute=gate_absolute)
    except ValueError as exc:
        _fail(str(exc))
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(report_markdown(report))
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        _print_report(report)
        if markdown is not None:
            console.print(f"wrote {markdown}")
    raise typer.Exit(report.exit_code)


def _print_report(report: Any) -> None:
    from echoclr.bench.compare import FASTER, SLOWER, format_change, format_noise, format_run

    style = {SLOWER: "bold red", FASTER: "green"}
    for run in report.runs:
        b, n = run["baseline"], run["new"]
        console.print(f"{run['bench']} on {run['machine']}: baseline {b['created']} (load {b['load_avg'][0]}) vs new "
                      f"{n['created']} (load {n['load_avg'][0]})", highlight=False)
        for line in run["settings_differ"]:
            console.print(f"  [yellow]settings differ[/yellow]: {line}", highlight=False)
    table = Table(title=f"echoclr bench compare (tolerance {report.tolerance:.0%}; gated: "
                        f"{'all figures' if report.gate_absolute else 'in-run ratios'})")
    for column in ("bench", "figure", "baseline [q1-q3]", "new [q1-q3]", "unit", "change", "noise", "verdict",
                   "gated"):
        table.add_column(column, justify="right" if column in ("change", "noise") else "left")
    for c in report.comparisons:
        verdict = f"[{style[c.verdict]}]{c.verdict}[/]" if c.verdict in style else c.verdict
        table.add_row(c.bench, c.name.strip(), format_run(c.baseline), format_run(c.new), c.unit, format_change(c),
                      format_noise(c), verdict, "yes" if c.gated else "no")
    console.print(table)
    for u in report.unmatched:
        console.print(f"[yellow]unmatched[/yellow]: {u['bench']} / {u['name'].strip()}: {u['reason']}",
                      highlight=False)
    regressions = report.regressions
    colour = "bold red" if regressions else "green"
    console.print(f"[{colour}]verdict: {report.verdict}[/]"
                  + (f" — {len(regressions)} gated figure(s) beyond tolerance: "
                     + "; ".join(f"{c.name.strip()} {format_change(c)}" for c in regressions) if regressions else ""),
                  highlight=False)


@bench_app.command("history")
def history(
    folder: Annotated[Path, typer.Argument(help="Folder of result files (searched recursively).")],
    plot: Annotated[Optional[Path], typer.Option(help="PNG to write (default: FOLDER/history.png).")] = None,
    no_plot: Annotated[bool, typer.Option("--no-plot", help="Print the tables only.")] = False,
    figure: Annotated[Optional[str], typer.Option(help="Only figures whose name contains this text.")] = None,
    last: Annotated[int, typer.Option(min=1, help="Runs per table (the newest).")] = 8,
    include_quick: Annotated[bool, typer.Option(help="Also use --quick results.")] = False,
) -> None:
    """Each figure over time, per machine class: a table per machine (median per run, drift newest vs oldest)
    and a PNG."""
    from echoclr.bench.history import load_history, plot_history

    try:
        hist = load_history(folder, include_quick=include_quick)
    except ValueError as exc:
        _fail(str(exc))
    if figure:
        hist = {m: [s for s in items if figure.lower() in s.figure.name.lower()] for m, items in hist.items()}
        hist = {m: items for m, items in hist.items() if items}
        if not hist:
            _fail(f"no figure name contains {figure!r}; run without --figure to see the names")
    for machine, items in hist.items():
        stamps = sorted({p.created for s in items for p in s.points})[-last:]
        table = Table(title=f"{machine}: median per run (oldest to newest)")
        table.add_column("bench")
        table.add_column("figure")
        table.add_column("unit")
        for stamp in stamps:
            table.add_column(f"{stamp[5:10]} {stamp[11:16]}", justify="right")
        table.add_column("drift", justify="right")
        for s in items:
            by_stamp = {p.created: p.figure.median for p in s.points}
            drift = s.drift
            drift_text = "" if drift is None else (f"{drift:+.3f}" if s.figure.difference else f"{drift:+.1%}")
            table.add_row(s.figure.bench, s.figure.name.strip(), s.figure.unit,
                          *[_number(by_stamp[t]) if t in by_stamp else "" for t in stamps], drift_text)
        console.print(table)
    if not no_plot:
        try:
            path = plot_history(hist, plot or folder / "history.png")
        except ValueError as exc:
            console.print(f"no plot: {exc}")
        else:
            console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Attach the ``bench`` command group to the top-level app."""
    app.add_typer(bench_app, name="bench")
