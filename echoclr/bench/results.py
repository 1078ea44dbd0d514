"""Benchmark results: one JSON document per run (machine, versions, settings, rows), its file name, and Markdown.

A row is one measured configuration::

    {"name": "echoclr CPU pipeline", "status": "ok", "unit": "clips/s", "median": ..., "q1": ..., "q3": ...,
     "iqr": ..., "values": [...], "warmup": 2, "repeats": 5, "precision": "float32",
     "memory_format": "channels_last_3d", "device": "cpu", ...extra settings of the row}

A row that could not run on this machine has ``"status": "skipped"``, a ``"reason"`` and no numbers.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from echoclr.bench.environment import load_average, machine_tag, versions
from echoclr.bench.timing import Stats

SCHEMA_VERSION = 1
RESULT_KEYS = ("bench", "schema_version", "created", "quick", "machine", "versions", "settings", "rows", "summary")
ROW_KEYS = ("name", "status", "precision", "memory_format", "device")
STAT_KEYS = ("unit", "median", "q1", "q3", "iqr", "values", "warmup", "repeats")


def row(
    name: str,
    stats: Stats | None,
    *,
    precision: str,
    memory_format: str,
    device: str,
    skipped: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One result row.

    Args:
        name: what was measured, e.g. ``"reference loader (DataLoader)"``.
        stats: the measurement; None only for a skipped row.
        precision: the numeric format of the measured data, e.g. ``"float32"``, ``"bf16 autocast"``, ``"uint8"``.
        memory_format: e.g. ``"channels_last_3d"``, ``"contiguous"``, or the store's chunk layout.
        device: ``"cpu"`` or ``"cuda"``.
        skipped: why the row could not run here (then ``stats`` must be None).
        extra: further settings of this row (batch size, workers...), stored as they are.

    Returns:
        The row as a JSON-ready dict.

    Raises:
        ValueError: neither or both of ``stats`` and ``skipped``.
    """
    if (stats is None) == (skipped is None):
        raise ValueError(f"row {name!r} needs either stats or a skipped reason, not {'both' if stats else 'neither'}")
    out: dict[str, Any] = {
        "name": name,
        "status": "skipped" if skipped else "ok",
        "precision": precision,
        "memory_format": memory_format,
        "device": device,
    }
    if skipped:
        out["reason"] = skipped
    else:
        out.update(stats.to_json())
    out.update(extra)
    return out


def make_result(
    bench: str,
    *,
    machine: dict[str, Any],
    settings: dict[str, Any],
    rows: list[dict[str, Any]],
    summary: dict[str, Any],
    quick: bool,
) -> dict[str, Any]:
    """Assemble a result document; records the load average at the end of the run.

    Args:
        bench: ``"ingest"``, ``"loader"`` or ``"train"``.
        machine: :func:`echoclr.bench.environment.machine_info` taken when the run started.
        settings: the run's settings (JSON-ready).
        rows: from :func:`row`.
        summary: headline numbers and conclusions of the run.
        quick: whether this was a shrunken smoke run (its numbers are not comparable).

    Returns:
        The document; :func:`check_result` passes on it.
    """
    machine = {**machine, "load_avg_end": load_average()}
    result = {
        "bench": bench,
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": bool(quick),
        "machine": machine,
        "versions": versions(),
        "settings": settings,
        "rows": rows,
        "summary": summary,
    }
    check_result(result)
    return result


def check_result(result: dict[str, Any]) -> None:
    """Check that a result document has every required key (top level and per row).

    Raises:
        ValueError: names the missing key (and the row).
    """
    missing = [k for k in RESULT_KEYS if k not in result]
    if missing:
        raise ValueError(f"benchmark result lacks keys {missing}")
    for k in ("load_avg_start", "load_avg_end", "cpu", "cores", "gpu"):
        if k not in result["machine"]:
            raise ValueError(f"benchmark result machine lacks {k!r}")
    for i, r in enumerate(result["rows"]):
        need = ROW_KEYS + (STAT_KEYS if r.get("status") == "ok" else ("reason",))
        missing = [k for k in need if k not in r]
        if missing:
            raise ValueError(f"benchmark result row {i} ({r.get('name')!r}) lacks keys {missing}")


def result_path(result: dict[str, Any], out_dir: str | Path) -> Path:
    """``out_dir/<bench>[-quick]-<machine-tag>-<YYYY-MM-DD>.json`` (the date of ``result["created"]``, UTC)."""
    bench = result["bench"] + ("-quick" if result["quick"] else "")
    date = result["created"][:10]
    return Path(out_dir) / f"{bench}-{machine_tag(result['machine'])}-{date}.json"


def write_result(result: dict[str, Any], out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write a result as JSON into ``out_dir`` (created if missing); a measurement is never lost.

    Args:
        result: from :func:`make_result`.
        out_dir: the results folder.
        overwrite: replace the file of the same name (same bench, machine and day); without it a second result of
            the day goes to the first free ``<name>-2.json``, ``<name>-3.json``, ...

    Returns:
        The path written.
    """
    check_result(result)
    path = result_path(result, out_dir)
    if not overwrite:
        n = 2
        base = path
        while path.exists():
            path = base.with_name(f"{base.stem}-{n}.json")
            n += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    return path


def latest_results(folder: str | Path, *, include_quick: bool = False) -> list[dict[str, Any]]:
    """The newest result per (bench, machine) in a folder, in bench order (ingest, loader, train).

    Args:
        folder: a results folder.
        include_quick: also consider ``--quick`` smoke runs.

    Returns:
        Result documents (possibly none).
    """
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(Path(folder).glob("*.json")):
        result = json.loads(path.read_text())
        if "bench" not in result or (result.get("quick") and not include_quick):
            continue
        key = (result["bench"], machine_tag(result["machine"]))
        if key not in newest or result["created"] > newest[key]["created"]:
            newest[key] = result
    order = {"ingest": 0, "loader": 1, "train": 2}
    return sorted(newest.values(), key=lambda r: (order.get(r["bench"], 9), machine_tag(r["machine"])))


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


ROW_DETAIL_KEYS = ("batch", "workers", "threads", "size", "clip_len", "steps")
ROW_MEASURE_FORMATS = {
    "cpu_ms_per_clip": "{:.3g} CPU ms/clip",
    "bytes_per_frame": "{:,.0f} B/frame",
    "mfu": "MFU {:.1%}",
}


def _settings_text(r: dict[str, Any]) -> str:
    parts = [f"{k} {r[k]}" for k in ROW_DETAIL_KEYS if r.get(k) is not None]
    parts += [fmt.format(r[k]) for k, fmt in ROW_MEASURE_FORMATS.items() if r.get(k) is not None]
    return ", ".join(parts)


def results_markdown(results: list[dict[str, Any]]) -> str:
    """A Markdown table of results, one line per row, with each run's machine and load underneath.

    Args:
        results: result documents (e.g. from :func:`latest_results`).

    Returns:
        Markdown text (a table and a machine list); empty string for no results.
    """
    if not results:
        return ""
    lines = [
        "| bench | row | median | IQR | unit | precision | memory format | settings and per-row measures |",
        "|---|---|---:|---:|---|---|---|---|",
    ]
    machines = []
    for result in results:
        tag = machine_tag(result["machine"])
        for r in result["rows"]:
            detail = _settings_text(r)
            if r["status"] != "ok":
                lines.append(f"| {result['bench']} | {r['name']} | — | — | skipped: {r['reason']} | "
                             f"{r['precision']} | {r['memory_format']} | {detail} |")
                continue
            lines.append(
                f"| {result['bench']} | {r['name']} | {_number(r['median'])} | {_number(r['iqr'])} | {r['unit']} | "
                f"{r['precision']} | {r['memory_format']} | {detail} |"
            )
        m = result["machine"]
        gpu = m["gpu"]["name"] if m.get("gpu") else "no GPU"
        machines.append(
            f"- `{result['bench']}` ({result['created'][:10]}, {tag}): {m['cpu']}, {m['cores']} cores, "
            f"{m.get('ram_gib')} GiB RAM, {gpu}; load average {m['load_avg_start']} at start, "
            f"{m['load_avg_end']} at end; echoclr {result['versions']['echoclr']}"
            + (f" @ {result['versions']['git']['commit'][:10]}" if result["versions"].get("git") else "")
        )
    return "\n".join(lines) + "\n\n" + "\n".join(machines) + "\n"
