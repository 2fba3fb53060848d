"""Fixed-length pieces of utterances, and utterance-level outputs from the pieces' outputs.

Rules (``segments.mode`` of the config; lengths in seconds, converted to each input's units):

- ``window``: pieces of ``length`` every ``shift`` (default ``length``); the last, shorter piece is
  kept only if it is at least ``min_last`` long (paper 003: 6 s windows, last kept if > 3 s).
  An utterance shorter than one window still gives one piece (the whole utterance), whatever
  ``min_last`` says, so that every utterance is trained on and gets an utterance-level output.
- ``pad_or_cut``: one piece per utterance, the first ``length`` seconds, zero-padded to exactly
  ``length`` when the utterance is shorter (paper 004: 8 s); the model sees the padding as signal,
  as in the paper.
- ``none``: the whole utterance.

Utterance-level outputs (evaluation and inference) aggregate the pieces: the mean of their class
posteriors (softmax outputs), or the mean of their regression outputs (``segments.aggregate: mean``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emotk.errors import EmotkError


@dataclass(frozen=True)
class Piece:
    """Seconds ``[start, end)`` of an utterance, zero-padded to ``pad_to`` seconds when that is longer."""

    start: float
    end: float
    pad_to: float | None = None

    @property
    def duration(self) -> float:
        return max(self.end - self.start, self.pad_to or 0.0)


def pieces(duration: float, seg: dict) -> list[Piece]:
    """The pieces of an utterance of ``duration`` seconds under the rule ``seg`` (the config's section)."""
    mode = seg["mode"]
    if mode == "none":
        return [Piece(0.0, duration)]
    length = float(seg["length"])
    if mode == "pad_or_cut":
        return [Piece(0.0, min(duration, length), pad_to=length)]
    if mode != "window":
        raise EmotkError(f"segments.mode {mode!r}: expected none, window or pad_or_cut")
    shift = float(seg["shift"] or length)
    out, start, eps = [], 0.0, 1e-9
    while start + length <= duration + eps:
        out.append(Piece(start, start + length))
        start += shift
    rest = duration - start
    # The remainder is new material only when the windows so far did not reach the end.
    if rest > eps and (not out or out[-1].end < duration - eps) and (rest >= seg["min_last"] - eps or not out):
        out.append(Piece(start, duration))
    return out


def to_units(p: Piece, rate: float, total: int) -> tuple[int, int, int]:
    """``(first, last, padded_length)`` in the units of an input with ``rate`` units per second
    and ``total`` units; the padded length is at least ``last - first``."""
    first = min(int(round(p.start * rate)), max(total - 1, 0))
    last = min(max(int(round(p.end * rate)), first + 1), total)
    pad = int(round(p.pad_to * rate)) if p.pad_to else 0
    return first, last, max(pad, last - first)


def cut(x: np.ndarray, first: int, last: int, padded: int) -> np.ndarray:
    """``x[first:last]`` along axis 0, zero-padded to ``padded`` rows."""
    piece = x[first:last]
    if padded > piece.shape[0]:
        pad = np.zeros((padded - piece.shape[0],) + x.shape[1:], dtype=x.dtype)
        piece = np.concatenate([piece, pad])
    return piece


def aggregate(owner: list[int], outputs: list[np.ndarray], n_utts: int) -> list[np.ndarray]:
    """Mean of the outputs (posteriors or values) of each utterance's pieces; ``owner[i]`` is the
    utterance of piece ``i``."""
    sums: list = [None] * n_utts
    counts = np.zeros(n_utts, dtype=int)
    for u, out in zip(owner, outputs):
        sums[u] = out.astype(np.float64) if sums[u] is None else sums[u] + out
        counts[u] += 1
    missing = [u for u in range(n_utts) if counts[u] == 0]
    if missing:
        raise EmotkError(f"segments: utterance index {missing[0]} has no piece to aggregate")
    return [(s / c).astype(np.float32) for s, c in zip(sums, counts)]

