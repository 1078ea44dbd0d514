"""Study-level evaluation: prediction tables, AUROC/AUPR, bootstrap CIs and the paired test.

Light on purpose: importing it loads numpy and scikit-learn only (no torch), so reports run anywhere. It never
imports the training package: running checkpoints and the experiment grid live in :mod:`echoclr.run`::

    from echoclr.eval import read_predictions, compare_predictions
    result = compare_predictions(read_predictions("a.csv"), read_predictions("b.csv"))
"""

from echoclr.eval.bootstrap import (
    BootstrapConfig,
    Comparison,
    MetricsWithCI,
    PairedTestResult,
    bootstrap_ci,
    bootstrap_metrics,
    bootstrap_weights,
    compare_predictions,
    paired_bootstrap_test,
)
from echoclr.eval.metrics import SortedScores, aupr, auroc, check_binary_scores, weighted_auroc_aupr
from echoclr.eval.inference import (
    InferenceConfig,
    InferenceResult,
    prediction_metrics,
)
from echoclr.eval.predictions import StudyPredictions, aggregate_to_studies, align_studies, read_predictions
from echoclr.eval.report import (
    ResultRow,
    SummaryRow,
    summarize_repeats,
    titration_plot,
    titration_plots,
    write_results_csv,
)


__all__ = [
    "BootstrapConfig",
    "Comparison",
    "InferenceConfig",
    "InferenceResult",
    "MetricsWithCI",
    "PairedTestResult",
    "ResultRow",
    "SortedScores",
    "StudyPredictions",
    "SummaryRow",
    "aggregate_to_studies",
    "align_studies",
    "aupr",
    "auroc",
    "bootstrap_ci",
    "bootstrap_metrics",
    "bootstrap_weights",
    "check_binary_scores",
    "compare_predictions",
    "paired_bootstrap_test",
    "prediction_metrics",
    "read_predictions",
    "summarize_repeats",
    "titration_plot",
    "titration_plots",
    "weighted_auroc_aupr",
    "write_results_csv",
]
