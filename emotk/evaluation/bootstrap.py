"""Bootstrap confidence intervals for UA that resample speakers, not utterances.

Utterances of one speaker are not independent: a speaker's voice, recording session and
way of acting emotions make a model right or wrong on many of that speaker's utterances
together. Resampling single utterances treats a test set of 10 speakers x 50 utterances
as 500 independent trials and so understates how much UA would move with another set of
speakers, which is what a speaker-independent result claims to generalize over.
Resampling speakers with replacement (every utterance of a drawn speaker comes along)
keeps that dependence, so the interval reflects speaker-to-speaker variation.

Each unit (a speaker, or an utterance for the comparison) is summarized by its confusion
matrix; a draw sums the drawn units' matrices and takes UA of the sum.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from emotk.metrics.classification import confusion

N_DRAWS = 1000


def bootstrap_ua(unit_confusions: np.ndarray, n_draws: int = N_DRAWS, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of UA over ``n_draws`` resamplings (with replacement) of the units.

    ``unit_confusions`` is ``[U, K, K]``: one confusion matrix per unit. Classes with no
    reference utterance in a draw are left out of that draw's UA, as in ``ua``.
    """
    c = np.asarray(unit_confusions, dtype=np.float64)
    n_units, k, _ = c.shape
    if n_units == 0:
        raise ValueError("bootstrap_ua needs at least one unit")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_draws)
    summed = (counts @ c.reshape(n_units, k * k)).reshape(n_draws, k, k)
    support = summed.sum(axis=2)
    correct = np.diagonal(summed, axis1=1, axis2=2)
    recall = np.divide(correct, support, out=np.zeros_like(correct), where=support > 0)
    uas = recall.sum(axis=1) / (support > 0).sum(axis=1)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(uas, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def speaker_bootstrap_ua(per_speaker: Mapping[str, np.ndarray], **kwargs) -> tuple[float, float]:
    """UA interval resampling speakers; ``per_speaker`` maps speaker -> K x K confusion
    (pooled over every run in which the speaker was tested)."""
    spks = sorted(per_speaker)
    return bootstrap_ua(np.stack([np.asarray(per_speaker[s]) for s in spks]), **kwargs)


def speaker_confusions(y_true: Sequence[str], y_pred: Sequence[str], speakers: Sequence[str],
                       labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-speaker confusion matrices of utterance-level predictions."""
    out: dict[str, np.ndarray] = {}
    for spk in sorted(set(speakers)):
        idx = [i for i, s in enumerate(speakers) if s == spk]
        out[spk] = confusion([y_true[i] for i in idx], [y_pred[i] for i in idx], labels)
    return out


def utterance_bootstrap_ua(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str],
                           **kwargs) -> tuple[float, float]:
    """UA interval resampling single utterances: too narrow when speakers differ (see module doc).
    Kept to show the difference, in tests and in analysis."""
    units = np.stack([confusion([t], [p], labels) for t, p in zip(y_true, y_pred, strict=True)])
    return bootstrap_ua(units, **kwargs)
