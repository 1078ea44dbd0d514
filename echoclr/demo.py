"""The demo: the whole EchoCLR study on built-in synthetic echoes, resumable, with a report.

synthesise → ingest → pretrain EchoCLR → fine-tune EchoCLR and random init at low label ratios → evaluate on the
test split (AUROC/AUPR with 95% bootstrap CIs, one-sided paired bootstrap p-values) → Grad-CAM → report.

On a CPU the budget shrinks (the CPU preset: clips downsampled to 16 px, 600 pretraining steps, 8-frame fine-tuning
clips, fixed learning rates) so that it finishes in under 20 minutes on 2 cores; the methods, inference and statistics stay
the paper's. With a GPU the same command uses the paper's clip sizes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEMO_MARKER = "echoclr_demo.json"
DEMO_SPLITS = (0.6, 0.1, 0.3)
PRETRAIN_LR = 1e-4
"""Adam lr of the demo's short pretraining. The paper's 0.1 diverges in short runs; at 1e-3 the projector collapsed on
the synthetic echoes (NT-Xent stuck at exactly log(2n - 1) from step 10, all embeddings equal); 1e-4 learns
(measured: 16 pairs, 32 px, 40 steps; NT-Xent 3.43 -> 3.0-3.2). Not measured on a GPU."""


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs.

    Attributes:
        out: output folder (data, store, experiment, report).
        n_studies: synthetic studies (1-6 videos each).
        label: the label to learn: ``lvh`` or ``severe_as``.
        ratios: training ratios fine-tuned. With 160 studies (96 for training) the default lowest ratio, 10%, is
            10 labelled studies; 5% would be 5, where no initialisation learns anything (measured: frozen
            features of any encoder probe at AUROC 0.53-0.57 with 5 studies).
        pretrain_steps: EchoCLR pretraining steps (None: the preset's).
        finetune_epochs: fine-tuning epoch limit (None: the preset's).
        seed: seeds the data, splits, sampling and weights.
        workers: ingest processes.
        device: ``auto`` (GPU preset when CUDA is available) or ``cpu``.
    """

    out: Path
    n_studies: int = 160
    label: str = "lvh"
    ratios: tuple[float, ...] = (0.1, 0.25)
    pretrain_steps: int | None = None
    finetune_epochs: int | None = None
    seed: int = 0
    workers: int = 2
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.n_studies < 20:
            raise ValueError(f"n_studies must be >= 20 (train/val/test need studies of both classes), got {self.n_studies}")
        if self.label not in ("lvh", "severe_as"):
            raise ValueError(f"label must be 'lvh' or 'severe_as', got {self.label!r}")
        if not self.ratios or not all(0 < r <= 1 for r in self.ratios):
            raise ValueError(f"ratios must be in (0, 1], got {self.ratios}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.device not in ("auto", "cpu"):
            raise ValueError(f"device must be 'auto' or 'cpu', got {self.device!r}")


@dataclass
class DemoResult:
    manifest: Path
    store: Path
    store_summary: dict[str, Any]
    report: Path | None = None
    results_md: Path | None = None
    headline: dict[str, Any] | None = None


def experiment_config(config: DemoConfig, *, gpu: bool):
    """The experiment the demo runs: the CPU preset, or paper-size clips on a GPU."""
    from echoclr.eval.experiment import ExperimentConfig

    if gpu:
        preset = ExperimentConfig.cpu_preset(
            config.label, methods=("echoclr",), inits=("random",), ratios=config.ratios,
            pretrain_steps=config.pretrain_steps or 2000, pretrain_batch_size=64, pretrain_lr=PRETRAIN_LR,
            finetune_lr=1e-3, size=None, finetune_clip_len=16, finetune_batch_size=88, max_epochs=30, n_boot=10_000,
            threads=8,
        )
        runtime = dataclasses.replace(preset.pretrain.runtime, device="cuda")
    else:
        preset = ExperimentConfig.cpu_preset(
            config.label, methods=("echoclr",), inits=("random",), ratios=config.ratios,
            pretrain_steps=config.pretrain_steps or 600, pretrain_batch_size=16, pretrain_lr=PRETRAIN_LR, finetune_lr=1e-3,
            size=16, finetune_clip_len=8, finetune_batch_size=4, max_epochs=10, n_boot=10_000, threads=2,
        )
        runtime = preset.pretrain.runtime
    pretrain = dataclasses.replace(preset.pretrain, seed=config.seed, runtime=runtime)
    finetune = dataclasses.replace(
        preset.finetune, patience=3 if not gpu else 5, seed=config.seed, subset_seed=config.seed,
        runtime=dataclasses.replace(preset.finetune.runtime, device=runtime.device),
    )
    return dataclasses.replace(preset, pretrain=pretrain, finetune=finetune)


def run_demo(
    config: DemoConfig,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo into ``config.out``; finished stages are kept and skipped on a rerun.

    Raises:
        FileExistsError: ``config.out`` holds something that is not this demo and ``overwrite`` is False, or
            ``overwrite`` is True but ``config.out`` is not a demo folder (no marker) or holds the working directory.
    """
    import torch

    from echoclr.eval.experiment import run_experiment
    from echoclr.eval.saliency import gradcam_overlays
    from echoclr.ingest import read_manifest
    from echoclr.ingest.runner import ingest_rows
    from echoclr.overwrite import remove_owned_folder
    from echoclr.synth import SynthConfig, generate_dataset

    out = Path(config.out)
    marker = out / DEMO_MARKER
    settings = {"n_studies": config.n_studies, "label": config.label, "ratios": list(config.ratios),
                "pretrain_steps": config.pretrain_steps, "finetune_epochs": config.finetune_epochs,
                "seed": config.seed, "device": config.device}
    if overwrite:
        # only a folder this demo made (it holds the marker) is deleted; never the user's other files
        remove_owned_folder(out, owned=marker.is_file(), what="a demo folder", sign=DEMO_MARKER)
    if out.exists() and any(out.iterdir()):
        if not marker.exists():
            raise FileExistsError(f"{out} is not empty and is not a demo folder: pass --overwrite or choose another --out")
        if json.loads(marker.read_text()) != settings:
            raise FileExistsError(f"{out} holds a demo with other settings: pass --overwrite or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(settings, indent=2) + "\n")
    gpu = config.device == "auto" and torch.cuda.is_available()
    started = time.perf_counter()

    def stage(n: int, text: str) -> None:
        log(f"[{n}/5 {time.perf_counter() - started:6.0f}s] {text}")

    data_dir, store_path = out / "data", out / "store.zarr"
    manifest = data_dir / "manifest.csv"
    if manifest.exists():
        stage(1, f"synthetic data: reusing {manifest}")
    else:
        stage(1, f"synthetic data: {config.n_studies} PLAX studies -> {data_dir}")
        # short videos (<= 64 frames): clips need 4, 8 and 32 (Grad-CAM) frames; longer ones only cost time
        generate_dataset(data_dir, SynthConfig(n_studies=config.n_studies, seed=config.seed, max_frames=64),
                         overwrite=True, progress=progress)

    stage(2, f"ingest -> {store_path} ({config.workers} workers; finished videos are skipped)")
    # a larger test split than the paper's 15% (the demo's data are few): 60/10/30 by study
    rows = read_manifest(manifest, split_seed=config.seed, split_fractions=DEMO_SPLITS)
    ingested = ingest_rows(rows, store_path, workers=config.workers, progress=progress)
    for failure in ingested.failures:
        log(f"  failed line {failure.row}: {failure.reason}")

    experiment = experiment_config(config, gpu=gpu)
    preset = "GPU preset: paper clip sizes" if gpu else (
        f"CPU preset: clips downsampled 112 -> {experiment.pretrain.runtime.size} px, 8-frame fine-tuning clips in "
        f"batches of {experiment.finetune.batch_size}, "
        f"{experiment.pretrain.runtime.max_steps} EchoCLR pretraining steps of {experiment.pretrain.batch_size} pairs "
        f"at lr {experiment.pretrain.lr:g}, "
        f"fine-tuning lr {experiment.finetune.lr:g}, <= {experiment.finetune.max_epochs} epochs"
    )
    stage(3, f"EchoCLR pretraining and fine-tuning at {', '.join(f'{r:.0%}' for r in config.ratios)} labels "
             f"(EchoCLR vs random init) [{preset}]")

    def on_log(record: dict[str, Any]) -> None:
        event = record.get("event")
        if event in ("pretrain", "finetune"):
            log("  " + " ".join(f"{k}={v}" for k, v in record.items() if k != "event"))
        elif event == "train" and record.get("global_step", 0) % 40 == 0 and "loss" in record:
            log(f"  pretrain step {record['global_step']}: loss {record['loss']:.3f}")

    result = run_experiment(store_path, out / "experiment", experiment, on_log=on_log)

    stage(4, "Grad-CAM overlays of the EchoCLR-initialised model (most confident test positives)")
    best_cell = out / "experiment" / "finetune" / "echoclr" / f"ratio_{max(config.ratios):g}"
    cams = gradcam_overlays(best_cell, store_path, out / "gradcam", n=4, split="test",
                            device="cuda" if gpu else "cpu", overwrite=True)  # the demo's own folder

    stage(5, "report")
    headline = _headline(result.rows, min(config.ratios))
    report = _write_report(out, config, preset, result, cams, headline, time.perf_counter() - started)
    summary = ingested.store.summary()
    return DemoResult(manifest, store_path, summary, report, result.results_md, headline)


def _headline(rows, ratio: float) -> dict[str, Any] | None:
    """EchoCLR vs random at the lowest ratio on the test split."""
    wanted = {r.init: r for r in rows if r.split == "test" and abs(r.ratio - ratio) < 1e-12}
    if "echoclr" not in wanted or "random" not in wanted:
        return None
    echo, rand = wanted["echoclr"], wanted["random"]
    return {
        "ratio": ratio,
        "echoclr_auroc": echo.auroc, "echoclr_ci": list(echo.auroc_ci),
        "random_auroc": rand.auroc, "random_ci": list(rand.auroc_ci),
        "p_value": rand.p_value, "n_test_studies": echo.n_studies,
    }


def _write_report(out: Path, config: DemoConfig, preset: str, result, cams, headline, seconds: float) -> Path:
    lines = [
        "# echoclr demo: EchoCLR on synthetic PLAX echoes",
        "",
        f"Label: `{config.label}`; {config.n_studies} synthetic studies; ratios "
        f"{', '.join(f'{r:.0%}' for r in config.ratios)} of the training studies; {preset}.",
        f"Time of this run: {seconds / 60:.1f} min (a rerun reuses the stages and runs that had finished).",
        "",
    ]
    if headline:
        p = headline["p_value"]
        lines += [
            f"**Lowest label ratio ({headline['ratio']:.0%}), test split, {headline['n_test_studies']} studies:** "
            f"EchoCLR AUROC {headline['echoclr_auroc']:.3f} "
            f"[{headline['echoclr_ci'][0]:.3f}, {headline['echoclr_ci'][1]:.3f}] vs random init "
            f"{headline['random_auroc']:.3f} [{headline['random_ci'][0]:.3f}, {headline['random_ci'][1]:.3f}]; "
            f"one-sided paired bootstrap p = {p:.3g}." if p is not None else "",
            "",
        ]
    below = [r for r in result.rows if r.split == "test" and r.auroc_ci[1] < 0.5]
    if below:
        cells = ", ".join(f"{r.init} at {r.ratio:.0%}" for r in below)
        lines += [
            f"Note: the AUROC CI of {cells} lies below 0.5: that model ranks the test studies worse than chance, i.e. "
            "it learned a pattern of its few training studies that is reversed in the test studies. Each cell is one "
            "fine-tuning run; the CIs and p-values cover the test studies' sampling, not the spread over training "
            "subsets and seeds, which dominates with this few labelled studies.",
            "",
        ]
    lines += [f"Full results: [experiment report]({result.report_md.relative_to(out)}), "
              f"[table]({result.results_md.relative_to(out)}).", "", result.results_md.read_text(), ""]
    for plot in result.plots:
        lines += [f"![{plot.caption}]({plot.path.relative_to(out)})", ""]
    lines += ["## Grad-CAM (EchoCLR init, most confident test positives)", ""]
    lines += [f"![{p.stem}]({p.relative_to(out)})" for p in cams if p.suffix == ".png"]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
