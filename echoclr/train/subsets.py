"""Label-titration subsets; the rule lives in :mod:`echoclr.data.subsets` so evaluation (probes) uses it too."""

from echoclr.data.subsets import titration_studies

__all__ = ["titration_studies"]
