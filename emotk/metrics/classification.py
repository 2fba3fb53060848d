"""Categorical metrics. UA = unweighted average recall (mean of per-class recalls, the
field's "UAR"); WA = weighted average recall = accuracy.  Classes absent from the
reference are left out of UA (their recall is undefined), as scikit-learn's
``balanced_accuracy_score`` does."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Counts ``C[i, j]`` of reference ``labels[i]`` predicted as ``labels[j]``."""
    index = {lab: i for i, lab in enumerate(labels)}
    c = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        c[index[t], index[p]] += 1
    return c


def ua(y_true, y_pred, labels) -> float:
    c = confusion(y_true, y_pred, labels)
    support = c.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(c)[present] / support[present]))


def wa(y_true, y_pred, labels=None) -> float:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(t == p))


def f1_per_class(y_true, y_pred, labels) -> np.ndarray:
    c = confusion(y_true, y_pred, labels).astype(float)
    tp = np.diag(c)
    precision = np.divide(tp, c.sum(axis=0), out=np.zeros_like(tp), where=c.sum(axis=0) > 0)
    recall = np.divide(tp, c.sum(axis=1), out=np.zeros_like(tp), where=c.sum(axis=1) > 0)
    denom = precision + recall
    return np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)


def f1_macro(y_true, y_pred, labels) -> float:
    """Macro F1 over the classes present in reference or prediction."""
    c = confusion(y_true, y_pred, labels)
    present = (c.sum(axis=0) + c.sum(axis=1)) > 0
    return float(np.mean(f1_per_class(y_true, y_pred, labels)[present]))
