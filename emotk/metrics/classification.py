"""Categorical metrics. UA = unweighted average recall (mean of per-class recalls, the
field's "UAR"); WA = weighted average recall = accuracy.  Classes absent from the
reference are left out of UA (their recall is undefined), as scikit-learn's
``balanced_accuracy_score`` does."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np


def confusion(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Counts ``C[i, j]`` of reference ``labels[i]`` predicted as ``labels[j]``."""
    index = {lab: i for i, lab in enumerate(labels)}
    c = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        c[index[t], index[p]] += 1
    return c


def ua_from_confusion(c: np.ndarray) -> float:
    """UA of a confusion matrix (rows = reference); rows with no support are left out."""
    support = c.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(c)[present] / support[present]))


def ua(y_true, y_pred, labels) -> float:
    return ua_from_confusion(confusion(y_true, y_pred, labels))


def wa(y_true, y_pred, labels=None) -> float:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(t == p))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def recall_per_class(y_true, y_pred, labels) -> np.ndarray:
    """Recall of each label (0 for a label absent from the reference)."""
    c = confusion(y_true, y_pred, labels).astype(float)
    return _ratio(np.diag(c), c.sum(axis=1))


def precision_per_class(y_true, y_pred, labels) -> np.ndarray:
    """Precision of each label (0 for a label never predicted)."""
    c = confusion(y_true, y_pred, labels).astype(float)
    return _ratio(np.diag(c), c.sum(axis=0))


def f1_per_class(y_true, y_pred, labels) -> np.ndarray:
    precision = precision_per_class(y_true, y_pred, labels)
    recall = recall_per_class(y_true, y_pred, labels)
    return _ratio(2 * precision * recall, precision + recall)


def f1_macro(y_true, y_pred, labels) -> float:
    """Macro F1 over the classes present in reference or prediction."""
    c = confusion(y_true, y_pred, labels)
    present = (c.sum(axis=0) + c.sum(axis=1)) > 0
    return float(np.mean(f1_per_class(y_true, y_pred, labels)[present]))


def majority_class(y: Sequence[str]) -> str:
    """The most frequent label; ties go to the label first in sorted order (deterministic)."""
    counts = Counter(y)
    if not counts:
        raise ValueError("majority_class of an empty label list")
    best = max(counts.values())
    return min(lab for lab, n in counts.items() if n == best)


def chance_baseline(classes: Sequence[str]) -> dict:
    """Expected scores of a uniform random guess among the model's K classes (the classes it can
    output, not the ones present in a test fold): UA = WA = 1/K."""
    k = len(classes)
    if k == 0:
        raise ValueError("chance_baseline of an empty class list")
    return {"n_classes": k, "ua": 1.0 / k, "wa": 1.0 / k}


def majority_baseline(y_true: Sequence[str], majority: str, labels: Sequence[str]) -> dict:
    """Scores of predicting ``majority`` for every utterance.

    UA is 1/K when the majority class occurs in the reference (0 if it does not);
    WA is the reference share of that class.
    """
    y_pred = [majority] * len(y_true)
    labels = list(labels) if majority in labels else [*labels, majority]
    return {
        "class": majority,
        "ua": ua(y_true, y_pred, labels),
        "wa": wa(y_true, y_pred),
        "f1": f1_macro(y_true, y_pred, labels),
    }
