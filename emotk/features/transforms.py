"""Frame stacking and splicing (pure numpy), used by the data loaders' ``stack`` / ``splice`` options."""

from __future__ import annotations

import numpy as np

from emotk.errors import EmotkError


def _check(mat: np.ndarray, what: str) -> np.ndarray:
    mat = np.asarray(mat)
    if mat.ndim != 2 or mat.shape[0] == 0:
        raise EmotkError(f"{what}: expected a non-empty T x D matrix, got shape {mat.shape}")
    return mat


def stack_frames(mat: np.ndarray, n: int) -> np.ndarray:
    """Stack ``n`` consecutive frames into one (non-overlapping): ``[T, D] -> [ceil(T/n), n*D]``.

    Output frame ``i`` is frames ``i*n .. i*n+n-1`` side by side; when ``T`` is not a multiple of
    ``n`` the last group is completed by repeating the last frame. Paper 000 stacks four 10 ms
    frames to match 40 ms labels.
    """
    mat = _check(mat, "stack_frames")
    if n < 1:
        raise EmotkError(f"stack_frames: n must be >= 1, got {n}")
    t, dim = mat.shape
    groups = -(-t // n)
    pad = groups * n - t
    if pad:
        mat = np.concatenate([mat, np.repeat(mat[-1:], pad, axis=0)])
    return mat.reshape(groups, n * dim)


def splice_frames(mat: np.ndarray, left: int, right: int) -> np.ndarray:
    """Kaldi ``splice-feats``: each frame with ``left`` frames before and ``right`` after, side by side.

    ``[T, D] -> [T, (left + 1 + right) * D]``, ordered from ``t-left`` to ``t+right``; frames
    outside the utterance are the first / last frame repeated. Paper 002 uses left 10, right 5.
    """
    mat = _check(mat, "splice_frames")
    if left < 0 or right < 0:
        raise EmotkError(f"splice_frames: contexts must be >= 0, got left={left} right={right}")
    t = mat.shape[0]
    idx = np.clip(np.arange(t)[:, None] + np.arange(-left, right + 1)[None, :], 0, t - 1)
    return mat[idx].reshape(t, -1)
