"""The paper's label-titration experiment: every initialisation x every training ratio, evaluated with bootstrap
CIs and one-sided paired tests of EchoCLR against each other initialisation, with a table, plots and a report.

Layout of ``out_dir``::

    experiment.json                          the resolved config of the latest call
    pretrain/<method>/                       one SSL pretraining run per method (resumed when present)
    finetune/<init>/ratio_<r>/               one fine-tuning run per cell (finished cells are skipped)
        metrics_<split>.json                 cached study-level metrics of the cell's predictions
        paired_test_<split>.json             cached paired test against the reference (EchoCLR)
    finetune/<init>/ratio_<r>_repeat<k>/     repeat k >= 1 of the cell: another nested subset draw and seed
    results.csv, results.md                  one row per init x ratio x repeat x split
    summary.csv                              per init x ratio x split: mean, SD, range over repeats, win fraction
    plots/*.png                              metric vs. % labels (the paper's Figs. 2 and 3)
    report.md, report.html                   settings, plots and the table

Every cache is keyed by what produced it (configs, bootstrap settings, the SHA-256 of prediction files), so a rerun
recomputes exactly what changed and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from echoclr.eval.bootstrap import BootstrapConfig, paired_bootstrap_test
from echoclr.eval.inference import prediction_metrics
from echoclr.files import file_sha256
from echoclr.jsonio import write_json
from echoclr.eval.predictions import align_studies, read_predictions
from echoclr.eval.report import (
    DISPLAY_NAMES,
    INIT_ORDER,
    PlotFile,
    ResultRow,
    SummaryRow,
    results_markdown,
    summarize_repeats,
    summary_markdown,
    titration_plots,
    write_report,
    write_results_csv,
    write_summary_csv,
)
from echoclr.train.config import METHODS, FinetuneConfig, PretrainConfig, RuntimeConfig

PAPER_RATIOS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
EVAL_SPLITS = ("val", "test", "ext_test")
PRETRAIN_DONE = "experiment_done.json"  # written beside a finished pretraining run


def _init_name(spec: str) -> str:
    return "kinetics" if spec.startswith("kinetics:") else spec


@dataclass(frozen=True)
class ExperimentConfig:
    """The titration grid and the settings of every run in it.

    The per-cell configs are derived, never typed twice: ``pretrain_config(method)`` is the ``pretrain`` template
    with that method; ``finetune_config(init, ratio, out_dir)`` is the ``finetune`` template with that init and
    ratio (so the template's own ``init`` and ``ratio`` are not used). Start from ``cpu_preset`` for a laptop run.

    Attributes:
        finetune: fine-tuning template: the label, the learning-rate rule, clip length, epochs, runtime, ...
        methods: SSL methods to pretrain and fine-tune from (``simclr``, ``mi-simclr``, ``echoclr``).
        inits: the other initialisations: ``random`` and/or ``kinetics:PATH`` (torchvision's Kinetics-400 r3d_18
            weights file).
        ratios: fractions of the labelled training studies (the paper: 1, 5, 10, 25, 50, 100%); stored sorted.
        pretrain: pretraining template (its ``method`` is replaced per method; ``epochs=None`` keeps the paper's
            per-method epochs).
        bootstrap: CI settings (the paper: 10,000 unstratified study-level resamples, 2.5-97.5 percentiles); the
            paired tests use the same n_boot and seed, stratified by label as pROC's ``roc.test``.
        reference: the init whose AUROC is tested to exceed every other init's (the paper: EchoCLR); rows get no
            p-value when it is not in the grid.
        splits: evaluation splits reported when the store has labelled videos there.
        repeats: subset draws per ratio (repeated titration). Repeat ``k`` fine-tunes with ``subset_seed + k`` and
            ``seed + k`` of the template (the subsets stay nested across ratios within a repeat; every init uses
            the same draw, so the paired test and the win count compare runs on the same studies). Repeat 0 is the
            single-titration cell, so raising ``repeats`` keeps the runs already made.
    """

    finetune: FinetuneConfig
    methods: tuple[str, ...] = METHODS
    inits: tuple[str, ...] = ("random",)
    ratios: tuple[float, ...] = PAPER_RATIOS
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    reference: str = "echoclr"
    splits: tuple[str, ...] = ("test", "ext_test")
    repeats: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.finetune, FinetuneConfig):
            raise ValueError(f"finetune must be a FinetuneConfig, got {type(self.finetune).__name__}")
        if not isinstance(self.pretrain, PretrainConfig):
            raise ValueError(f"pretrain must be a PretrainConfig, got {type(self.pretrain).__name__}")
        if not isinstance(self.bootstrap, BootstrapConfig):
            raise ValueError(f"bootstrap must be a BootstrapConfig, got {type(self.bootstrap).__name__}")
        for name in ("methods", "inits", "ratios", "splits"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        bad = [m for m in self.methods if m not in METHODS]
        if bad or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must be distinct names among {', '.join(METHODS)}, got {list(self.methods)}")
        for spec in self.inits:
            if spec != "random" and not (spec.startswith("kinetics:") and len(spec) > len("kinetics:")):
                hint = " (SSL methods go in methods)" if spec in METHODS else ""
                raise ValueError(f"inits holds 'random' and/or 'kinetics:PATH', got {spec!r}{hint}")
        names = [_init_name(s) for s in self.inits]
        if len(set(names)) != len(names):
            raise ValueError(f"inits names each kind once, got {list(self.inits)}")
        if not self.inits and not self.methods:
            raise ValueError("the grid has no initialisation: give inits and/or methods")
        if not self.ratios or any(not 0 < r <= 1 for r in self.ratios) or len(set(self.ratios)) != len(self.ratios):
            raise ValueError(f"ratios must be distinct fractions in (0, 1], got {list(self.ratios)}")
        object.__setattr__(self, "ratios", tuple(sorted(float(r) for r in self.ratios)))
        if self.reference not in INIT_ORDER:
            raise ValueError(f"reference must be one of {', '.join(INIT_ORDER)}, got {self.reference!r}")
        if not self.splits or any(s not in EVAL_SPLITS for s in self.splits):
            raise ValueError(f"splits must be among {', '.join(EVAL_SPLITS)}, got {list(self.splits)}")
        if not isinstance(self.repeats, int) or self.repeats < 1:
            raise ValueError(f"repeats must be an integer >= 1, got {self.repeats!r}")

    @property
    def label(self) -> str:
        """The store label column the grid classifies."""
        return self.finetune.label

    @property
    def init_names(self) -> tuple[str, ...]:
        """Every init of the grid, in the paper's order (random, kinetics, simclr, mi-simclr, echoclr)."""
        present = {_init_name(s) for s in self.inits} | set(self.methods)
        return tuple(i for i in INIT_ORDER if i in present)

    def pretrain_config(self, method: str) -> PretrainConfig:
        """The pretraining config of one SSL method (the template with ``method`` set)."""
        if method not in self.methods:
            raise ValueError(f"method {method!r} is not in this grid's methods {list(self.methods)}")
        return replace(self.pretrain, method=method)

    def init_spec(self, init: str, out_dir: str | Path) -> str:
        """What ``FinetuneConfig.init`` gets for a grid init: ``random``, ``kinetics:<absolute path>`` or the
        absolute path of the SSL run ``<out_dir>/pretrain/<method>``."""
        if init in self.methods:
            return str(Path(out_dir).resolve() / "pretrain" / init)
        for spec in self.inits:
            if _init_name(spec) == init:
                if init == "kinetics":
                    return "kinetics:" + str(Path(spec.removeprefix("kinetics:")).expanduser().resolve())
                return spec
        raise ValueError(f"init {init!r} is not in this grid ({list(self.init_names)})")

    def finetune_config(self, init: str, ratio: float, out_dir: str | Path, repeat: int = 0) -> FinetuneConfig:
        """The fine-tuning config of one cell and repeat (the template with that init and ratio; repeat ``k``
        adds ``k`` to the template's ``subset_seed`` and ``seed``)."""
        if not 0 <= repeat < self.repeats:
            raise ValueError(f"repeat must be in [0, {self.repeats}), got {repeat}")
        return replace(self.finetune, init=self.init_spec(init, out_dir), ratio=float(ratio),
                       subset_seed=self.finetune.subset_seed + repeat, seed=self.finetune.seed + repeat)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "experiment",
            "finetune": self.finetune.to_json(),
            "methods": list(self.methods),
            "inits": list(self.inits),
            "ratios": list(self.ratios),
            "pretrain": self.pretrain.to_json(),
            "bootstrap": asdict(self.bootstrap),
            "reference": self.reference,
            "splits": list(self.splits),
            "repeats": self.repeats,
        }

    @classmethod
    def cpu_preset(
        cls,
        label: str,
        *,
        methods: tuple[str, ...] = METHODS,
        inits: tuple[str, ...] = ("random",),
        ratios: tuple[float, ...] = PAPER_RATIOS,
        pretrain_steps: int = 30,
        pretrain_batch_size: int = 16,
        pretrain_lr: float = 1e-3,
        finetune_lr: float | None = None,
        size: int | None = 56,
        finetune_clip_len: int = 8,
        finetune_batch_size: int = 16,
        max_epochs: int = 3,
        n_boot: int = 1000,
        threads: int = 2,
    ) -> ExperimentConfig:
        """A grid that finishes on a laptop CPU in minutes: few pretraining steps, small clips, short fine-tuning.

        The methods, inference and statistics are the paper's; the budget shrinks. The pretraining lr is 1e-3, not
        the paper's 0.1: after a few Adam steps at 0.1 (no time for the batch-norm running statistics to follow)
        the encoder's eval-mode features reach ~1e6 (measured: 10 steps at 16 px), which saturates every classifier
        fine-tuned from it. ``finetune_lr=None`` keeps the paper's fine-tuning rule (0.1 for SSL inits above 10%
        labels, which can also saturate in a short run); pass a fixed rate (e.g. 1e-4) to use one for every cell.
        ``dataclasses.replace`` the result for anything else.
        """
        runtime = RuntimeConfig(device="cpu", loader_threads=threads, size=size, max_steps=pretrain_steps,
                                log_every=5, checkpoint_every=max(pretrain_steps, 1))
        return cls(
            finetune=FinetuneConfig(label=label, lr=finetune_lr, clip_len=finetune_clip_len,
                                    batch_size=finetune_batch_size,
                                    max_epochs=max_epochs, patience=2,
                                    runtime=replace(runtime, max_steps=None)),
            methods=methods,
            inits=inits,
            ratios=ratios,
            pretrain=PretrainConfig(batch_size=pretrain_batch_size, lr=pretrain_lr, runtime=runtime),
            bootstrap=BootstrapConfig(n_boot=n_boot),
        )


@dataclass(frozen=True)
class ExperimentResult:
    """What ``run_experiment`` produced.

    Attributes:
        out_dir: the experiment folder.
        rows: one ``ResultRow`` per init x ratio x split.
        results_csv, results_md, report_md, report_html: the written tables and reports.
        plots: the PNGs with their captions.
        trained: the runs trained (or resumed) by this call, e.g. ``pretrain/echoclr``, ``finetune/random/ratio_1``.
        skipped: the runs found finished and not touched.
        summary: per init x ratio x split, the mean, SD, range and win fraction over the repeats.
    """

    out_dir: Path
    rows: tuple[ResultRow, ...]
    results_csv: Path
    results_md: Path
    report_md: Path
    report_html: Path
    plots: tuple[PlotFile, ...]
    trained: tuple[str, ...]
    skipped: tuple[str, ...]
    summary: tuple[SummaryRow, ...] = ()


Log = Callable[[dict[str, Any]], None]


def cell_dir(out_dir: str | Path, init: str, ratio: float, repeat: int = 0) -> Path:
    """The folder of one fine-tuning cell: ``<out_dir>/finetune/<init>/ratio_<r>`` (repeat 0) or
    ``.../ratio_<r>_repeat<k>``."""
    return Path(out_dir) / "finetune" / init / (f"ratio_{ratio:g}" + (f"_repeat{repeat}" if repeat else ""))


def _cached_json(path: Path, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> tuple[dict, bool]:
    """The JSON at ``path`` when its ``cache_key`` equals ``key``, else ``compute()`` written there with the key.

    Returns (value, was_cached).
    """
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            data = {}
        if data.get("cache_key") == key:
            return data, True
    data = {**compute(), "cache_key": key}
    write_json(path, data)
    return data, False


def _pretrain(store, out: Path, config: ExperimentConfig, method: str, log: Log) -> bool:
    """Pretrain one method unless finished; returns True when it trained."""
    from echoclr.train.pretrain import pretrain

    run_dir = out / "pretrain" / method
    pretrain_config = config.pretrain_config(method)
    marker = run_dir / PRETRAIN_DONE
    if marker.exists() and json.loads(marker.read_text()).get("config") == pretrain_config.to_json():
        log({"event": "pretrain", "method": method, "status": "skipped", "run_dir": str(run_dir)})
        return False
    log({"event": "pretrain", "method": method, "status": "start", "run_dir": str(run_dir)})
    result = pretrain(store, run_dir, pretrain_config, resume=True,
                      on_log=lambda record: log({"event": "train", "stage": f"pretrain/{method}", **record}))
    write_json(marker, {"config": pretrain_config.to_json(), "global_step": result.global_step,
                               "epochs_done": result.epochs_done})
    log({"event": "pretrain", "method": method, "status": "done", "global_step": result.global_step})
    return True


def _finetune(store, out: Path, config: ExperimentConfig, init: str, ratio: float, repeat: int, log: Log) -> bool:
    """Fine-tune one cell and repeat unless finished (an interrupted one resumes); returns True when it trained."""
    from echoclr.train.finetune import finetune

    where = cell_dir(out, init, ratio, repeat)
    cell_config = config.finetune_config(init, ratio, out, repeat)
    saved = where / "config.json"
    finished = (where / "summary.json").exists() and saved.exists()
    cell = {"init": init, "ratio": ratio, "repeat": repeat}
    if finished and json.loads(saved.read_text()) == cell_config.to_json():
        log({"event": "finetune", **cell, "status": "skipped", "run_dir": str(where)})
        return False
    log({"event": "finetune", **cell, "status": "start", "run_dir": str(where)})
    stage = f"finetune/{init}/{ratio:g}" + (f"/repeat{repeat}" if repeat else "")
    try:
        result = finetune(store, where, cell_config,
                          on_log=lambda record: log({"event": "train", "stage": stage, **record}))
    except FileExistsError as exc:
        raise FileExistsError(
            f"{exc}. The experiment folder {out} was made with other settings: use another --out, or delete "
            f"{where} to refit this cell"
        ) from None
    log({"event": "finetune", **cell, "status": "done", "lr": result.lr, "val_loss": result.val_loss})
    return True


def _evaluate_cells(out: Path, config: ExperimentConfig, log: Log) -> list[ResultRow]:
    """Metrics with CIs of every cell and split, and the paired test of the reference against each init."""
    bootstrap_key = asdict(config.bootstrap)
    rows = []
    cells = [(i, r, k) for i in config.init_names for r in config.ratios for k in range(config.repeats)]
    for split in config.splits:
        have = {c: cell_dir(out, *c) / f"predictions_{split}.csv" for c in cells}
        have = {k: p for k, p in have.items() if p.exists()}
        if not have:
            continue
        missing = sorted(c for c in cells if c not in have)
        if missing:
            raise ValueError(f"split {split!r}: cells (init, ratio, repeat) {missing} have no predictions_{split}.csv "
                             "while others do; delete those cell folders and rerun")
        for (init, ratio, repeat), predictions in have.items():
            where = predictions.parent
            metrics, cached = _cached_json(
                where / f"metrics_{split}.json",
                {"bootstrap": bootstrap_key, "predictions": predictions.name, "sha256": file_sha256(predictions)},
                lambda: {"split": split, "label": config.label, "init": init, "ratio": ratio,
                         **prediction_metrics(predictions, config.bootstrap)},
            )
            log({"event": "metrics", "init": init, "ratio": ratio, "repeat": repeat, "split": split,
                 "status": "cached" if cached else "computed", "auroc": metrics["auroc"]})
            p_value = None
            ref_file = have.get((config.reference, ratio, repeat))
            if ref_file is not None and init != config.reference:
                test, _ = _cached_json(
                    where / f"paired_test_{split}.json",
                    {"n_boot": config.bootstrap.n_boot, "seed": config.bootstrap.seed, "stratified": True,
                     "reference": config.reference, "sha256": file_sha256(predictions),
                     "reference_sha256": file_sha256(ref_file)},
                    lambda: _paired_test(ref_file, predictions, config.bootstrap),
                )
                p_value = test["p_value"]
            summary = json.loads((where / "summary.json").read_text()) if (where / "summary.json").exists() else {}
            rows.append(ResultRow(
                split=split, init=init, ratio=ratio, n_train_studies=summary.get("n_train_studies"),
                lr=summary.get("lr"), auroc=metrics["auroc"], auroc_ci=tuple(metrics["auroc_ci"]),
                aupr=metrics["aupr"], aupr_ci=tuple(metrics["aupr_ci"]), ci_level=metrics["ci_level"],
                n_studies=metrics["n_studies"], n_positive=metrics["n_positive"],
                reference=config.reference if ref_file is not None else None, p_value=p_value, repeat=repeat,
            ))
    reference_auroc = {(r.split, r.ratio, r.repeat): r.auroc for r in rows if r.init == config.reference}
    return [replace(r, reference_auroc=reference_auroc.get((r.split, r.ratio, r.repeat)) if r.reference else None)
            for r in rows]


def _paired_test(reference_csv: Path, other_csv: Path, bootstrap: BootstrapConfig) -> dict[str, Any]:
    reference, other = align_studies(read_predictions(reference_csv), read_predictions(other_csv))
    result = paired_bootstrap_test(reference.labels, reference.scores, other.scores, n_boot=bootstrap.n_boot,
                                   seed=bootstrap.seed, stratified=True)
    data = result.to_dict()
    data["z"] = None if abs(data["z"]) == float("inf") else data["z"]  # JSON has no infinity; p says it all
    return {**data, "alternative": "auroc(reference) > auroc(init)", "reference_predictions": str(reference_csv),
            "predictions": str(other_csv)}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _settings(store, config: ExperimentConfig) -> list[str]:
    ft, pt, bs = config.finetune, config.pretrain, config.bootstrap
    steps = f", at most {pt.runtime.max_steps} steps" if pt.runtime.max_steps else ""
    epochs = "the paper's epochs (300 over pairs, 520 for SimCLR)" if pt.epochs is None else _count(pt.epochs, "epoch")
    size = f"clips resized to {ft.runtime.size} px" if ft.runtime.size else "clips at the store's size"
    lr = f"lr {ft.lr:g}" if ft.lr is not None else "the paper's learning-rate rule (grid at <= 10% labels)"
    level = round(bs.ci_level * 100)
    names = ", ".join(DISPLAY_NAMES[i] for i in config.init_names)
    return [
        f"Store: `{store}`; label: `{config.label}`; initialisations: {names}.",
        f"Pretraining: {pt.clip_len}-frame clips, batch {pt.batch_size}, lr {pt.lr:g}, temperature "
        f"{pt.temperature:g}, {epochs}{steps}.",
        f"Fine-tuning: {ft.clip_len}-frame clips, batch {ft.batch_size}, at most {_count(ft.max_epochs, 'epoch')} "
        f"(patience {ft.patience}), {lr}; {size}.",
        f"Inference: mean over {_count(ft.eval_clips, 'evenly spaced clip')} per video, then over a study's videos.",
        f"CIs: {level}% percentile intervals over {bs.n_boot} study-level bootstrap resamples "
        f"({'stratified' if bs.stratified else 'unstratified'}, seed {bs.seed}).",
        f"p: one-sided paired bootstrap test (pROC roc.test, stratified, {bs.n_boot} resamples) of "
        f"H1: AUROC({DISPLAY_NAMES[config.reference]}) > AUROC(init), at the same ratio, split and subset draw.",
        f"Repeats: {config.repeats} nested subset draw(s) per ratio (subset seeds "
        f"{ft.subset_seed}..{ft.subset_seed + config.repeats - 1}, fine-tuning seeds {ft.seed}..{ft.seed + config.repeats - 1}); "
        "the CIs cover test-set sampling only, the spread over repeats covers the choice of training studies and seed.",
    ]


def run_experiment(
    store_location: str | Path,
    out_dir: str | Path,
    config: ExperimentConfig,
    *,
    on_log: Log | None = None,
) -> ExperimentResult:
    """Run (or resume) the label-titration grid and write its table, plots and report.

    Each SSL method is pretrained once into ``out_dir/pretrain/<method>`` (resumed when interrupted); each
    (init, ratio) cell is fine-tuned into ``out_dir/finetune/<init>/ratio_<r>`` (skipped when finished, resumed
    when interrupted); metrics and paired tests are cached per cell. A rerun only does what is missing.

    Args:
        store_location: the echoclr store (path or URL).
        out_dir: the experiment folder (created).
        config: the grid and its settings.
        on_log: called with progress records, each with an ``event`` key: ``pretrain`` / ``finetune`` (``status``
            ``start``, ``done`` or ``skipped``), ``train`` (a training metrics record with its ``stage``),
            ``metrics`` (``status`` ``computed`` or ``cached``) and ``report``.

    Returns:
        ``ExperimentResult``.

    Raises:
        FileNotFoundError: the store or the Kinetics-400 weights file does not exist.
        FileExistsError: a run folder in ``out_dir`` was made with other settings, or ``out_dir`` is a non-empty
            folder that is not an experiment.
        ValueError: the label or splits do not fit the store, or a config cannot work with the data.
    """
    from echoclr.overwrite import OverwriteRefusedError
    from echoclr.store import open_store
    from echoclr.train.finetune import build_encoder

    out = Path(out_dir).resolve()
    log: Log = on_log or (lambda record: None)
    store = open_store(store_location)
    if config.label not in store.label_names:
        raise ValueError(f"label {config.label!r} is not in {store.location}; it has {store.label_names}")
    for spec in config.inits:
        if spec.startswith("kinetics:"):
            build_encoder(config.init_spec("kinetics", out))  # fail now, not after hours of pretraining
    if out.exists() and any(out.iterdir()) and not (out / "experiment.json").is_file():
        # the report, tables and plots would be written over whatever the folder holds
        raise OverwriteRefusedError(
            f"{out} is not empty and is not an experiment folder (no experiment.json): choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "experiment.json", config.to_json())

    trained, skipped = [], []
    for method in config.methods:
        (trained if _pretrain(store_location, out, config, method, log) else skipped).append(f"pretrain/{method}")
    for repeat in range(config.repeats):  # repeat by repeat: an early stop leaves whole comparable repeats
        for init in config.init_names:
            for ratio in config.ratios:
                name = str(cell_dir("", init, ratio, repeat))
                (trained if _finetune(store_location, out, config, init, ratio, repeat, log) else skipped).append(name)

    rows = _evaluate_cells(out, config, log)
    if not rows:
        raise ValueError(
            f"{store.location}: no cell has predictions for splits {list(config.splits)}; label {config.label!r} "
            "needs labelled videos in at least one of them"
        )
    results_csv = write_results_csv(rows, out / "results.csv")
    summary = summarize_repeats(rows)
    write_summary_csv(summary, out / "summary.csv")
    results_md = out / "results.md"
    results_md.write_text((summary_markdown(summary) + "\n" if config.repeats > 1 else "") + results_markdown(rows))
    plots = titration_plots(rows, out / "plots", label=config.label)
    report_md, report_html = write_report(
        rows, out, title=f"Label-titration experiment: {config.label}", settings=_settings(store.location, config),
        plots=plots, results_csv=results_csv, results_md=results_md, summary=summary,
    )
    log({"event": "report", "status": "done", "report": str(report_md), "rows": len(rows)})
    return ExperimentResult(out, tuple(rows), results_csv, results_md, report_md, report_html, tuple(plots),
                            tuple(trained), tuple(skipped), tuple(summary))
