"""Training commands: ``pretrain`` and ``finetune``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console(stderr=True)

Device = Annotated[str, typer.Option(help="'auto' (GPU when there is one), 'cpu' or 'cuda'.")]
MaxSteps = Annotated[Optional[int], typer.Option(help="Stop after this many optimiser steps (demos, smoke tests).")]
Size = Annotated[Optional[int], typer.Option(help="Downsample clips to SIZE px (CPU preset); default: store size.")]
Threads = Annotated[int, typer.Option(help="Reader and DALI CPU threads per process.")]


class DeviceCache(str, Enum):
    """``--device-cache`` values (the modes of :mod:`echoclr.pipeline.device_cache`)."""

    auto = "auto"
    off = "off"


def _runtime(device: str, amp: Optional[bool], compile_: bool, threads: int, max_steps: Optional[int],
             size: Optional[int], checkpoint_every: int = 500, log_every: int = 10, eval_every: int = 100,
             tensorboard: bool = True, device_cache: str = "auto"):
    from echoclr.train import RuntimeConfig

    return RuntimeConfig(device=device, amp=amp, compile=compile_, loader_threads=threads, max_steps=max_steps,
                         size=size, checkpoint_every=checkpoint_every, log_every=log_every, eval_every=eval_every,
                         tensorboard=tensorboard, device_cache=device_cache)


def parse_ratios(text: str) -> tuple[float, ...]:
    """``"0.1,0.25"`` -> ``(0.1, 0.25)``; a usage error naming the text otherwise."""
    from echoclr.errors import UsageError

    try:
        values = tuple(float(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise UsageError(f"--ratios must be comma-separated numbers such as 0.1,0.25; got {text!r}") from None
    if not values:
        raise UsageError(f"--ratios must name at least one ratio such as 0.1; got {text!r}")
    return values


def _log(record: dict) -> None:
    console.print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))


@contextmanager
def _pretrain_progress(epochs: int, max_steps: Optional[int]) -> Iterator[Callable[[dict], None]]:
    """A rich bar (steps, clips/s, loss, ETA) fed by the pretraining records; monitor records print as lines,
    a collapse as a red warning. Without a terminal (logs, CI) every record prints as a line instead."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    columns = (TextColumn("pretraining"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("pretraining", total=max_steps, status="")

        def on_log(record: dict) -> None:
            if record.get("kind") == "monitor":
                knn = " ".join(f"val kNN AUROC {k}={v:.3f}" for k, v in record["knn_auroc"].items())
                bar.console.print(f"step {record['global_step']}: embedding std {record['embedding_std']:.3f}, "
                                  f"effective rank {record['effective_rank']:.1f}, contrastive "
                                  f"{record['contrastive']:.4f} (collapse value {record['collapse_loss']:.4f}) {knn}")
                if record["collapsed"]:
                    bar.console.print(f"[bold red]WARNING: embedding collapse at step {record['global_step']}: "
                                      f"{record['collapse_reason']}[/bold red]")
                return
            if not bar.console.is_terminal:
                _log(record)
                return
            total = epochs * record["steps"] if max_steps is None else min(max_steps, epochs * record["steps"])
            bar.update(task, completed=record["global_step"], total=total,
                       status=f"{record['clips_per_s']:.1f} clips/s  loss {record['loss']:.4f}")

        yield on_log


def pretrain(
    store: Annotated[str, typer.Argument(help="The echoclr store (path or fsspec URL).")],
    out: Annotated[Path, typer.Option("--out", help="Run folder for checkpoints, config and metrics.")],
    method: Annotated[str, typer.Option(help="simclr, mi-simclr or echoclr.")] = "echoclr",
    clip_len: Annotated[int, typer.Option(help="Frames per clip K (order head has K! classes).")] = 4,
    temperature: Annotated[float, typer.Option(help="NT-Xent temperature (paper 0.5; authors' scripts 0.05).")] = 0.5,
    lr: Annotated[float, typer.Option(help="Adam learning rate. The paper's is 0.1 (batch 392); it diverged in this "
                                           "project's short runs, so the default is one measured to train.")] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="Global batch in pairs (videos for SimCLR).")] = 392,
    epochs: Annotated[Optional[int], typer.Option(help="Default: 300 (pairs) or 520 (SimCLR), as the paper.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampler, augmentations and initial weights.")] = 0,
    study_mask: Annotated[bool, typer.Option(help="Leave same-study negatives out of NT-Xent (the authors' code "
                                                  "did not: --no-study-mask).")] = True,
    device: Device = "auto",
    amp: Annotated[Optional[bool], typer.Option(help="bf16 autocast (default: on for CUDA).")] = None,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    threads: Threads = 4,
    max_steps: MaxSteps = None,
    size: Size = None,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 500,
    log_every: Annotated[int, typer.Option(help="Steps between metric lines.")] = 10,
    eval_every: Annotated[int, typer.Option(help="Steps between monitor evaluations (embedding std, collapse "
                                                 "alarm, val kNN AUROC); one more at the end.")] = 100,
    tensorboard: Annotated[bool, typer.Option(help="TensorBoard event files in OUT/tensorboard.")] = True,
    device_cache: Annotated[DeviceCache, typer.Option(
        help="GPU pair loader: 'auto' keeps the split's frames in GPU memory when they fit in half of the free "
             "memory (pinned staging buffers otherwise) and augments them with the CUDA kernel, without DALI "
             "(needs cupy: pip install 'echoclr[gpu]'; EchoCLR and MI-SimCLR); 'off' uses the DALI loader. On a "
             "CPU device, and for SimCLR, 'auto' is 'off'. A runtime setting: a resumed run may change it.",
        case_sensitive=False)] = "auto",
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Discard an existing run in --out.")] = False,
) -> None:
    """Self-supervised pretraining (SimCLR, MI-SimCLR or EchoCLR). Run under torchrun for several GPUs/nodes."""
    from echoclr.train import PretrainConfig
    from echoclr.train.pretrain import pretrain as run

    config = PretrainConfig(method=method, clip_len=clip_len, temperature=temperature, lr=lr,
                            batch_size=batch_size, epochs=epochs, seed=seed, study_mask=study_mask,
                            runtime=_runtime(device, amp, compile_, threads, max_steps, size, checkpoint_every,
                                             log_every, eval_every=eval_every, tensorboard=tensorboard,
                                             device_cache=device_cache.value))
    with _pretrain_progress(config.num_epochs, max_steps) as on_log:
        result = run(store, out, config, resume=resume, overwrite=overwrite, on_log=on_log)
    console.print(f"pretraining stopped at step {result.global_step} (epoch {result.epochs_done}); run in {out}")


def finetune(
    store: Annotated[str, typer.Argument(help="The echoclr store (path or fsspec URL).")],
    label: Annotated[str, typer.Option(help="Label column to learn, e.g. lvh or severe_as.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the runs (one per ratio) and predictions.")],
    init: Annotated[str, typer.Option(help="random, kinetics:WEIGHTS.pth, or an SSL run folder/checkpoint.")] = "random",
    ratios: Annotated[str, typer.Option(help="Comma-separated training ratios, e.g. 0.01,0.05,0.1.")] = "1.0",
    lr: Annotated[Optional[float], typer.Option(help="Fixed learning rate (default: the paper's rule/grid).")] = None,
    clip_len: Annotated[int, typer.Option(help="Frames per clip.")] = 16,
    batch_size: Annotated[int, typer.Option(help="Global batch in clips.")] = 88,
    max_epochs: Annotated[int, typer.Option(help="Epoch limit.")] = 30,
    patience: Annotated[int, typer.Option(help="Early-stopping patience in epochs.")] = 5,
    class_weights: Annotated[bool, typer.Option(help="Weight positives by negatives/positives.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of sampler, augmentations and head init.")] = 0,
    subset_seed: Annotated[int, typer.Option(help="Seed of the nested titration subsets.")] = 0,
    batchnorm: Annotated[str, typer.Option(
        help="train: batch statistics while training (the paper; synchronised over GPUs under torchrun). frozen: "
             "batch-norm keeps the initialisation's running statistics (scale/shift still learn), for small "
             "per-GPU batches; under torchrun it is then the single-process computation on CPU too.")] = "train",
    device: Device = "auto",
    threads: Threads = 4,
    size: Size = None,
    tensorboard: Annotated[bool, typer.Option(help="TensorBoard event files in each learning rate's folder.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Discard existing runs in --out.")] = False,
) -> None:
    """Fine-tune a classifier at each training ratio (label titration); a rerun resumes."""
    from echoclr.train import FinetuneConfig
    from echoclr.train.finetune import finetune as run

    for ratio in parse_ratios(ratios):
        config = FinetuneConfig(label=label, init=init, ratio=ratio, lr=lr, clip_len=clip_len,
                                batch_size=batch_size, max_epochs=max_epochs, patience=patience,
                                class_weights=class_weights, seed=seed, subset_seed=subset_seed, batchnorm=batchnorm,
                                runtime=_runtime(device, None, False, threads, None, size, tensorboard=tensorboard))
        result = run(store, out / f"ratio_{ratio:g}", config, overwrite=overwrite, on_log=_log)
        console.print(f"ratio {ratio:g}: lr {result.lr:g}, best epoch {result.best_epoch}, val loss "
                      f"{result.val_loss:.4f}; predictions in {result.out_dir}")


def register(app: typer.Typer) -> None:
    app.command()(pretrain)
    app.command()(finetune)
