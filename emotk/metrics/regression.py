"""Continuous metrics on 1-D sequences: CCC (Lin's concordance), RMSE, PCC.

NaN or infinite inputs raise ``EmotkError``: a silent NaN score would look like a result.
Callers that know the utterance check it themselves first, so the message can name it.
"""

from __future__ import annotations

import numpy as np

from emotk.errors import EmotkError


def _pair(name: str, x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} needs two 1-D sequences of equal length, got {x.shape} and {y.shape}")
    for arg, v in (("first", x), ("second", y)):
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise EmotkError(f"{name}: {arg} sequence has NaN or infinite value at index {bad[0]}")
    return x, y


def ccc(x, y) -> float:
    """Lin's concordance correlation coefficient with population (biased) moments, as AVEC uses.

    Two constant, equal sequences give 1; a constant prediction of a varying target gives 0.
    """
    x, y = _pair("ccc", x, y)
    mx, my = x.mean(), y.mean()
    vx, vy = x.var(), y.var()
    cov = np.mean((x - mx) * (y - my))
    denom = vx + vy + (mx - my) ** 2
    if denom == 0:
        return 1.0
    return float(2 * cov / denom)


def rmse(x, y) -> float:
    x, y = _pair("rmse", x, y)
    return float(np.sqrt(np.mean((x - y) ** 2)))


def pcc(x, y) -> float:
    """Pearson correlation; 0 when either sequence is constant (correlation undefined)."""
    x, y = _pair("pcc", x, y)
    sx, sy = x.std(), y.std()
    if sx == 0 or sy == 0:
        return 0.0
    return float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))


METRICS = {"ccc": ccc, "rmse": rmse, "pcc": pcc}
