"""Losses: weighted cross-entropy (class), 1 - CCC and MSE over the valid frames (frame regression)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from emotk.models.layers import length_mask

def inverse_frequency_weights(counts: Sequence[int]) -> torch.Tensor:
    """``N / (K * n_c)`` per class (1 for balanced data); 0 for a class with no training example."""
    c = torch.tensor(counts, dtype=torch.float32)
    present = c > 0
    w = torch.zeros_like(c)
    w[present] = c.sum() / (present.sum() * c[present])
    return w


def _valid_frames(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor):
    mask = length_mask(lengths.to(pred.device), pred.shape[1])
    return pred[mask].float(), target[mask].float()  # [N, K] over all valid frames of the batch


def ccc_loss(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """1 - Lin's CCC per label dimension (population moments, over the batch's valid frames), averaged."""
    p, t = _valid_frames(pred, target, lengths)
    mp, mt = p.mean(0), t.mean(0)
    vp, vt = p.var(0, unbiased=False), t.var(0, unbiased=False)
    cov = ((p - mp) * (t - mt)).mean(0)
    ccc = 2 * cov / (vp + vt + (mp - mt) ** 2).clamp(min=1e-8)
    return 1 - ccc.mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    p, t = _valid_frames(pred, target, lengths)
    return F.mse_loss(p, t)

