"""Named protocols, metric functions and evaluators shared by every model."""

from __future__ import annotations

from mtrec.evaluation.evaluator import evaluate_ranking
from mtrec.evaluation.protocols import PROTOCOLS, Split, split_dataset

__all__ = ["PROTOCOLS", "Split", "evaluate_ranking", "split_dataset"]
