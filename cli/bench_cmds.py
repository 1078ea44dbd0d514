"""Benchmark commands: ``echoclr bench ingest|loader|train|table``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from echoclr.errors import EchoclrError

console = Console()
bench_app = typer.Typer(help="Throughput benchmarks (JSON results with machine, versions and settings).",
                        no_args_is_help=True)

Quick = Annotated[bool, typer.Option("--quick", help="Tiny data and few repeats: a smoke run, not a measurement.")]
Out = Annotated[Path, typer.Option("--out", help="Folder for the result JSON.")]
Work = Annotated[Path, typer.Option("--work", help="Work folder for the synthetic dataset and stores (reused).")]
Overwrite = Annotated[bool, typer.Option(help="Replace a result file of the same bench, machine and day.")]
Repeats = Annotated[Optional[int], typer.Option(help="Timed repeats per row (default: the bench's own).")]

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
           repeats: Repeats = None,
           workers: Annotated[int, typer.Option(help="CPU workers for every row (processes / threads).")] = 2,
           profile: Annotated[Optional[bool], typer.Option(
               "--profile/--no-profile", help="Add the profile section (default: only when the target is missed).")
           ] = None) -> None:
    """Clips/s in EchoCLR pairs mode: the reference-style loader against echoclr's CPU and GPU pipelines."""
    from echoclr.bench.loader import LoaderBenchConfig, run_loader_bench

    config = LoaderBenchConfig.smoke(workers=workers, profile=profile) if quick else LoaderBenchConfig(
        workers=workers, profile=profile)
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
          repeats: Repeats = None,
          device: Annotated[str, typer.Option(help="'auto' (GPU when there is one), 'cpu' or 'cuda'.")] = "auto",
          end_to_end: Annotated[bool, typer.Option(help="Also time the steps fed by the loader.")] = True,
          steps: Annotated[Optional[int], typer.Option(help="Timed steps per window (default: per device).")] = None,
          size: Annotated[Optional[int], typer.Option(help="Frame size in px (default: 112 CUDA, 56 CPU).")] = None,
          ) -> None:
    """Training clips/s (pretraining and fine-tuning), model only and end to end, with FLOPs and MFU."""
    from dataclasses import replace

    from echoclr.bench.train import TrainBenchConfig, run_train_bench

    config = (TrainBenchConfig.smoke(device=device, end_to_end=end_to_end) if quick
              else TrainBenchConfig(device=device, end_to_end=end_to_end))
    config = replace(config, **{k: v for k, v in (("steps", steps), ("size", size)) if v is not None})
    try:
        result = run_train_bench(_with_repeats(config, "repeats", repeats), work)
    except RuntimeError as exc:  # e.g. CUDA asked for without a GPU: the run failed, exit 1 (echoclr.errors)
        raise EchoclrError(str(exc)) from exc
    _write(result, out, overwrite)


@bench_app.command("table")
def table(results: Annotated[Path, typer.Argument(help="Results folder.")] = DEFAULT_OUT,
          include_quick: Annotated[bool, typer.Option(help="Also use --quick results.")] = False) -> None:
    """Print the newest result of each bench and machine as a Markdown table (for the README)."""
    from echoclr.bench import latest_results, results_markdown

    text = results_markdown(latest_results(results, include_quick=include_quick))
    if not text:
        raise EchoclrError(f"no benchmark results in {results}: run `echoclr bench ingest|loader|train` first")
    typer.echo(text)


def register(app: typer.Typer) -> None:
    """Attach the ``bench`` command group to the top-level app."""
    app.add_typer(bench_app, name="bench")
