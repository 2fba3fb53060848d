"""Blocks shared by the models: length masks, masked pooling, length bookkeeping through pooling.

Convention: a batch is ``x [B, T, D]`` padded at the end, with ``lengths [B]`` (long) giving the
valid frames of each sequence.  Every block here makes the output at valid positions independent
of what the padding holds, so a padded sequence gives the same result as the sequence alone.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``[B, max_len]`` bool, True at valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over the valid time steps: ``[B, T, D] -> [B, D]``."""
    mask = length_mask(lengths.to(x.device), x.shape[1]).unsqueeze(-1).to(x.dtype)
    return (x * mask).sum(dim=1) / lengths.to(x.device).clamp(min=1).unsqueeze(-1).to(x.dtype)


def pooled_lengths(lengths: torch.Tensor, kernel: int) -> torch.Tensor:
    """Valid length after max-pooling with kernel = stride, ``ceil_mode=True`` and no padding: ceil(L / k).

    With ceil mode every window that starts inside the valid part produces an output, so a
    sequence of any length >= 1 keeps at least one step and no step is made of padding alone.
    """
    return torch.div(lengths + kernel - 1, kernel, rounding_mode="floor")


def pooled_size(size: int, kernel: int) -> int:
    """``pooled_lengths`` for one integer (e.g. the frequency axis)."""
    return -(-size // kernel)


class MaskedLSTM(nn.Module):
    """(B)LSTM over padded sequences via packing, so padding never enters the recurrence.

    ``forward`` returns the per-step outputs ``[B, T, H * directions]`` (zero at padding) and the
    last hidden state ``[B, H * directions]`` (the forward direction at each sequence's last valid
    step, the backward direction at its first).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                            bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, _) = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        n_dir = 2 if self.lstm.bidirectional else 1
        last = h[-n_dir:].transpose(0, 1).reshape(x.shape[0], -1)
        return out, last


def context_windows(x: torch.Tensor, lengths: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Each valid frame with ``left`` frames before and ``right`` after (Kaldi ``splice-feats``
    order, first / last *valid* frame repeated at the edges): ``[B, T, D] -> [N, left + 1 + right, D]``
    for the N valid frames, in ``length_mask`` order. Padding never enters a window."""
    lengths = lengths.to(x.device)
    b, t = length_mask(lengths, x.shape[1]).nonzero(as_tuple=True)
    offsets = torch.arange(-left, right + 1, device=x.device)
    idx = torch.minimum((t[:, None] + offsets[None, :]).clamp(min=0), (lengths[b] - 1)[:, None])
    return x[b[:, None], idx]
