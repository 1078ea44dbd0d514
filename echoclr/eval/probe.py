"""Linear and kNN probes on frozen study embeddings, over repeated nested label-titration subsets.

For each ratio and each repeat ``r`` (subset seed ``seed + r``) the training studies are
``titration_studies(train studies, ratio, seed + r, labels=...)`` (stratified by the label) — the rule ``echoclr finetune`` uses, so a probe at
(ratio, seed) sees exactly the studies a fine-tuning run with ``--subset-seed`` seed would, and smaller ratios nest in
larger ones within a repeat. Each probe is fit on those studies, its hyperparameter picked by val AUROC, and scored on
the test studies:

* ``linear``: scikit-learn ``LogisticRegression`` (L2, lbfgs) on features standardised with the subset's mean and
  std; ``C`` from ``C_GRID`` by val AUROC (ties: the smaller C, i.e. stronger regularisation).
* ``knn``: cosine k-nearest neighbours on the L2-normalised embeddings; the score is the distance-unweighted
  fraction of positive neighbours; ``k`` from ``K_GRID`` (capped at the subset size) by val AUROC (ties: smaller k).

Degenerate subsets: a subset whose studies hold one class cannot train a classifier; such a repeat scores every test
study with that class's constant (AUROC 0.5, AUPR = test prevalence: what a model trained on it can do) and is
counted in ``n_degenerate``. It is kept in the mean and the spread, so small ratios are not flattered by dropping
their unlucky draws.

Per ratio and probe (``ProbeSummary``): the mean AUROC/AUPR over repeats, the 2.5-97.5 percentile interval over
repeats (subset-to-subset spread), and the test-set bootstrap CI of the median repeat (sampling spread of the test
set; ``echoclr.eval.bootstrap``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from echoclr.data.subsets import titration_studies
from echoclr.eval.bootstrap import BootstrapConfig, bootstrap_ci
from echoclr.eval.embed import Embeddings
from echoclr.eval.metrics import SortedScores

PROBES = ("linear", "knn")
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
K_GRID = (1, 3, 5, 10, 20)


@dataclass(frozen=True)
class ProbeConfig:
    """Probe settings.

    Attributes:
        label: the label to predict (a study-level label of the embeddings file).
        ratios: training ratios in (0, 1].
        repeats: subset draws per ratio (subset seeds ``seed .. seed + repeats - 1``).
        seed: first subset seed (``seed`` alone = the subsets of ``finetune --subset-seed seed``).
        probes: which probes to run (``linear``, ``knn``).
        bootstrap: CI settings of the median repeat's test-set interval.
    """

    label: str
    ratios: tuple[float, ...] = (0.01, 0.1, 1.0)
    repeats: int = 20
    seed: int = 0
    probes: tuple[str, ...] = PROBES
    bootstrap: BootstrapConfig = field(default_factory=lambda: BootstrapConfig(n_boot=2000))

    def __post_init__(self) -> None:
        if not self.label:
            raise ValueError("label must name a label of the embeddings file")
        if not self.ratios or any(not 0 < r <= 1 for r in self.ratios):
            raise ValueError(f"ratios must be in (0, 1], got {self.ratios}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if not self.probes or any(p not in PROBES for p in self.probes):
            raise ValueError(f"probes must be among {PROBES}, got {self.probes}")


@dataclass(frozen=True)
class RepeatResult:
    """One probe fit on one subset: ``subset_seed``, studies used, chosen hyperparameter, test metrics."""

    probe: str
    ratio: float
    subset_seed: int
    n_train_studies: int
    n_train_positive: int
    degenerate: bool
    hyperparameter: float | None
    auroc: float
    aupr: float


@dataclass(frozen=True)
class ProbeSummary:
    """One (probe, ratio) cell over its repeats.

    Attributes:
        auroc_mean, aupr_mean: mean over repeats.
        auroc_spread, aupr_spread: 2.5-97.5 percentiles over repeats.
        median_repeat: subset seed of the repeat with the median AUROC (the lower middle one for an even count).
        median_auroc_ci, median_aupr_ci: that repeat's test-set bootstrap CI (None when it is degenerate: a
            constant score has no sampling spread worth reporting).
        n_repeats, n_degenerate: repeats, and those whose subset held one class.
        n_train_studies: studies in the subset (equal for every repeat of a ratio).
    """

    probe: str
    ratio: float
    auroc_mean: float
    auroc_spread: tuple[float, float]
    aupr_mean: float
    aupr_spread: tuple[float, float]
    median_repeat: int
    median_auroc: float
    median_auroc_ci: tuple[float, float] | None
    median_aupr_ci: tuple[float, float] | None
    n_repeats: int
    n_degenerate: int
    n_train_studies: int


@dataclass(frozen=True)
class ProbeResult:
    """Everything a probe run measured; ``to_json()`` is the ``--json`` object."""

    label: str
    n_train_studies: int
    n_val_studies: int
    n_test_studies: int
    n_test_positive: int
    summaries: list[ProbeSummary]
    repeats: list[RepeatResult]
    config: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The ``echoclr probe --json`` object.

        Keys: ``label``; ``n_train_studies``, ``n_val_studies``, ``n_test_studies``, ``n_test_positive`` (labelled
        studies per split); ``summaries``: one object per (probe, ratio) with the fields of :class:`ProbeSummary`
        (intervals as ``[low, high]``); ``repeats``: one object per fit with the fields of :class:`RepeatResult`;
        ``config``: ratios, repeats, seed, probes, the C/k grids, the bootstrap settings and the degenerate rule.
        """
        return {
            "label": self.label,
            "n_train_studies": self.n_train_studies,
            "n_val_studies": self.n_val_studies,
            "n_test_studies": self.n_test_studies,
            "n_test_positive": self.n_test_positive,
            "summaries": [_listify(asdict(s)) for s in self.summaries],
            "repeats": [asdict(r) for r in self.repeats],
            "config": self.config,
        }


def _listify(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _split_data(emb: Embeddings, label: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = emb.study_labels[label]
    keep = (emb.study_split == split) & ~np.isnan(values)
    return emb.study_id[keep], emb.study_embedding[keep].astype(np.float64), values[keep].astype(np.int64)


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std < 1e-8] = 1.0  # a constant feature (e.g. a dead unit) stays 0 instead of dividing by zero
    return [(x - mean) / std for x in (train, *others)]


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _metrics(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """``(AUROC, AUPR)``, equal to scikit-learn's (``SortedScores``), without its per-call validation cost."""
    auc, ap = SortedScores(labels, scores).metrics(np.ones((1, len(labels))))
    return float(auc[0]), float(ap[0])


def _safe_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    return _metrics(labels, scores)[0]


def fit_linear(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
               x_test: np.ndarray) -> tuple[float, np.ndarray]:
    """Standardised logistic regression, C picked by val AUROC; returns ``(C, test scores)``. Needs both classes.

    With fewer studies than features the fit runs in the span of the training rows (an exact reduction: the
    L2-penalised optimum lies in that span, and the penalty is rotation invariant), so a 1% subset of thousands
    of studies fits in milliseconds. The C path is walked from strong to weak regularisation with warm starts.
    """
    x, x_val, x_test = _standardise(x, x_val, x_test)
    if len(x) < x.shape[1]:
        _, _, vt = np.linalg.svd(x, full_matrices=False)  # vt: (n, D), orthonormal rows spanning the training rows
        x, x_val, x_test = x @ vt.T, x_val @ vt.T, x_test @ vt.T  # (., D) -> (., n)
    model = LogisticRegression(max_iter=1000, tol=1e-6, warm_start=True)
    best: tuple[float, float, np.ndarray] | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for c in C_GRID:
            model.set_params(C=c).fit(x, y)
            score = _safe_auroc(y_val, model.decision_function(x_val))
            if best is None or score > best[0]:
                best = (score, c, model.decision_function(x_test))
    assert best is not None
    return best[1], best[2]


def fit_knn(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
            x_test: np.ndarray) -> tuple[int, np.ndarray]:
    """Cosine kNN (fraction of positive neighbours), k picked by val AUROC; returns ``(k, test scores)``."""
    x, x_val, x_test = _l2(x), _l2(x_val), _l2(x_test)
    ks = sorted({min(k, len(x)) for k in K_GRID})

    def scores(queries: np.ndarray, k: int) -> np.ndarray:
        sims = queries @ x.T  # (Q, N) cosine similarities
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (Q, k), unordered
        return y[nearest].mean(axis=1)

    best_k = max(ks, key=lambda k: (_safe_auroc(y_val, scores(x_val, k)), -k))
    return best_k, scores(x_test, best_k)


_FITS = {"linear": fit_linear, "knn": fit_knn}


def run_probes(emb: Embeddings, config: ProbeConfig) -> ProbeResult:
    """Fit the probes on every (ratio, repeat) subset and score them on test.

    Args:
        emb: embeddings with train, val and test studies (``echoclr.run.embed.embed_store`` or ``load_embeddings``).
        config: label, ratios, repeats, probes.

    Returns:
        :class:`ProbeResult`.

    Raises:
        ValueError: unknown label; no labelled train studies; val or test studies missing or of one class.
    """
    if config.label not in emb.study_labels:
        raise ValueError(f"label {config.label!r} is not in the embeddings; they have {emb.label_names}")
    train_ids, train_x, train_y = _split_data(emb, config.label, "train")
    _, val_x, val_y = _split_data(emb, config.label, "val")
    _, test_x, test_y = _split_data(emb, config.label, "test")
    if len(train_ids) == 0:
        raise ValueError(f"no train study has label {config.label!r}: embed the train split (--splits)")
    for name, y in (("val", val_y), ("test", test_y)):
        if len(np.unique(y)) < 2:
            raise ValueError(
                f"the {name} studies need both classes of {config.label!r} (found {len(y)} studies, "
                f"{int(y.sum())} positive): embed the {name} split, or use a store whose {name} split has both"
            )
    row_of = {s: i for i, s in enumerate(train_ids.tolist())}
    label_of = dict(zip(train_ids.tolist(), train_y.astype(int).tolist()))
    repeats: list[RepeatResult] = []
    cache: dict[tuple[str, tuple[int, ...]], tuple[bool, float | None, np.ndarray]] = {}
    for ratio in config.ratios:
        for r in range(config.repeats):
            subset_seed = config.seed + r
            studies = titration_studies(train_ids.tolist(), ratio, subset_seed, labels=label_of)
            rows = tuple(sorted(row_of[s] for s in studies))
            y = train_y[list(rows)]
            for probe in config.probes:
                key = (probe, rows)
                if key not in cache:  # at ratio 1.0 every repeat holds the same studies: fit once
                    if len(np.unique(y)) < 2:
                        cache[key] = (True, None, np.full(len(test_y), float(y[0])))
                    else:
                        hyper, scores = _FITS[probe](train_x[list(rows)], y, val_x, val_y, test_x)
                        cache[key] = (False, float(hyper), scores)
                degenerate, hyper, scores = cache[key]
                test_auroc, test_aupr = _metrics(test_y, scores)
                repeats.append(RepeatResult(
                    probe=probe, ratio=ratio, subset_seed=subset_seed, n_train_studies=len(rows),
                    n_train_positive=int(y.sum()), degenerate=degenerate, hyperparameter=hyper,
                    auroc=test_auroc, aupr=test_aupr,
                ))
    summaries = [_summarise(probe, ratio, [r for r in repeats if r.probe == probe and r.ratio == ratio],
                            cache, label_of, row_of, train_ids, test_y, config)
                 for ratio in config.ratios for probe in config.probes]
    return ProbeResult(
        label=config.label, n_train_studies=len(train_ids), n_val_studies=len(val_y), n_test_studies=len(test_y),
        n_test_positive=int(test_y.sum()), summaries=summaries, repeats=repeats,
        config={"ratios": list(config.ratios), "repeats": config.repeats, "seed": config.seed,
                "probes": list(config.probes), "C_grid": list(C_GRID), "k_grid": list(K_GRID),
                "bootstrap": asdict(config.bootstrap), "spread": "2.5-97.5 percentiles over repeats",
                "degenerate_rule": "one-class subset: constant score (AUROC 0.5, AUPR = test prevalence), kept"},
    )


def _summarise(probe: str, ratio: float, rows: Sequence[RepeatResult], cache, label_of, row_of, train_ids,
               test_y: np.ndarray, config: ProbeConfig) -> ProbeSummary:
    aurocs = np.array([r.auroc for r in rows])
    auprs = np.array([r.aupr for r in rows])
    median = rows[int(np.argsort(aurocs, kind="stable")[(len(rows) - 1) // 2])]
    auroc_ci = aupr_ci = None
    if not median.degenerate:
        studies = titration_studies(train_ids.tolist(), ratio, median.subset_seed, labels=label_of)
        _, _, scores = cache[(probe, tuple(sorted(row_of[s] for s in studies)))]
        ci = bootstrap_ci(test_y, scores, config.bootstrap)
        auroc_ci, aupr_ci = ci.auroc_ci, ci.aupr_ci
    return ProbeSummary(
        probe=probe, ratio=ratio, auroc_mean=float(aurocs.mean()),
        auroc_spread=tuple(float(v) for v in np.percentile(aurocs, [2.5, 97.5])),
        aupr_mean=float(auprs.mean()), aupr_spread=tuple(float(v) for v in np.percentile(auprs, [2.5, 97.5])),
        median_repeat=median.subset_seed, median_auroc=median.auroc, median_auroc_ci=auroc_ci,
        median_aupr_ci=aupr_ci, n_repeats=len(rows), n_degenerate=sum(r.degenerate for r in rows),
        n_train_studies=rows[0].n_train_studies,
    )
