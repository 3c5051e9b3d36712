"""Which metric each benchmark task is scored with, and the scoring itself (scikit-learn).

The rules follow the papers' tables (Caduceus Tables 1-2, GUE):
- NT: MCC for histone marks (H3*, H4*, H2AFZ, ...) and enhancer tasks, F1 for promoter* and
  splice_sites_acceptors / splice_sites_donors, accuracy for splice_sites_all. Any other NT-layout
  task (e.g. synthetic ones) gets MCC, which stays honest under class imbalance.
- GB: accuracy for every task.  GUE: MCC for every task.
F1 is the binary F1 of class 1 for two-class tasks and the macro F1 over classes otherwise.

Scores are always computed over a whole split's predictions at once, never averaged per batch:
MCC and F1 are not means of per-example terms.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

METRICS = ("mcc", "f1", "accuracy")


def metric_for(benchmark: str, task: str) -> str:
    if benchmark == "gb":
        return "accuracy"
    if benchmark == "gue":
        return "mcc"
    if task == "splice_sites_all":
        return "accuracy"
    if task.startswith(("promoter", "splice_sites")):
        return "f1"
    return "mcc"


def score(metric: str, labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> float:
    """`metric` of `predictions` against `labels` (int [n] each) over the whole split."""
    if metric == "mcc":
        return float(matthews_corrcoef(labels, predictions))
    if metric == "f1":
        average = "binary" if n_classes == 2 else "macro"
        return float(f1_score(labels, predictions, average=average, zero_division=0))
    if metric == "accuracy":
        return float(accuracy_score(labels, predictions))
    raise ValueError(f"unknown metric '{metric}' (one of {METRICS})")
