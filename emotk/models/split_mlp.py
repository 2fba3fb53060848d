"""Split-MLP networks of Wieser, Barros et al. (paper 003, section 2): one MLP per head on a shared
representation of any combination of inputs.

- a temporal input (raw waveform ``wav`` as in ELoR, or a frame table such as 26 MFCCs as
  channels, as in LoM) goes through 1D convolution blocks (conv stride 1 -> max-pool -> ReLU, with
  batch norm, He initialization), then the mean over the valid time steps;
- a ``vector`` input (IS10 functionals, as in FTR) is used as it is;
- the representations are concatenated (ELoR + FTR), and each head has its own MLP: two hidden
  layers with sigmoid activations and dropout, Glorot initialization (section 2.1), linear output.

The paper trains the heads one after the other on each batch in random order
(``train.head_order: random``) with SGD + Nesterov momentum. Filter sizes and counts are
configurable; the defaults are small and generic, and the IEMOCAP recipe sets the paper's.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from emotk.errors import EmotkError
from emotk.models import register
from emotk.models.layers import length_mask, masked_mean, pooled_lengths


def _ints(name: str, values, allow_empty: bool = False) -> list[int]:
    values = [values] if isinstance(values, int) else list(values)
    if (not values and not allow_empty) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise EmotkError(f"split_mlp: {name} must be positive integers, got {values!r}")
    return values


class ConvEncoder(nn.Module):
    """1D conv -> max-pool -> ReLU blocks with batch norm, then the mean over valid steps: [B, T, C] -> [B, C']."""

    def __init__(self, in_channels: int, channels: Sequence[int], kernels: Sequence[int], pools: Sequence[int]):
        super().__init__()
        self.convs, self.bns, self.pools = nn.ModuleList(), nn.ModuleList(), list(pools)
        c_in = in_channels
        for c_out, k in zip(channels, kernels):
            conv = nn.Conv1d(c_in, c_out, k, padding=k // 2)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            self.convs.append(conv)
            self.bns.append(nn.BatchNorm1d(c_out))
            c_in = c_out
        self.output_size = c_in

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(x.device)
        h = x.masked_fill(~length_mask(lengths, x.shape[1])[:, :, None], 0.0).transpose(1, 2)
        for conv, bn, pool in zip(self.convs, self.bns, self.pools):
            h = bn(conv(h))
            h = h.masked_fill(~length_mask(lengths, h.shape[-1])[:, None, :], float("-inf"))
            h = torch.relu(nn.functional.max_pool1d(h, pool, pool, ceil_mode=True))
            lengths = pooled_lengths(lengths, pool)
            h = h.masked_fill(~length_mask(lengths, h.shape[-1])[:, None, :], 0.0)
        return masked_mean(h.transpose(1, 2), lengths)


def _mlp(size_in: int, hidden: Sequence[int], dropout: float, size_out: int) -> nn.Sequential:
    layers = []
    for n in hidden:
        lin = nn.Linear(size_in, n)
        nn.init.xavier_uniform_(lin.weight)
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.Sigmoid(), nn.Dropout(dropout)]
        size_in = n
    layers.append(nn.Linear(size_in, size_out))
    return nn.Sequential(*layers)


@register("split_mlp")
class SplitMlp(nn.Module):
    native = True

    def __init__(self, inputs: dict[str, tuple[str, int]], heads: dict[str, tuple[str, int]],
                 channels: Sequence[int] = (32, 64, 64), kernels: Sequence[int] = (80, 9, 9),
                 pools: Sequence[int] = (8, 4, 4), hidden: Sequence[int] = (128, 64), dropout: float = 0.3):
        super().__init__()
        channels, kernels, pools = _ints("channels", channels), _ints("kernels", kernels), _ints("pools", pools)
        hidden = _ints("hidden", hidden, allow_empty=True)
        if not len(channels) == len(kernels) == len(pools):
            raise EmotkError(f"split_mlp: channels, kernels and pools need the same length, got "
                             f"{len(channels)}, {len(kernels)}, {len(pools)}")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise EmotkError(f"split_mlp: dropout must be in [0, 1), got {dropout!r}")
        for h, (kind, _) in heads.items():
            if kind == "frame_regression":
                raise EmotkError(f"split_mlp: head {h!r} is frame_regression; this model gives utterance-level outputs")
        self.encoders = nn.ModuleDict()
        size = 0
        for name, (kind, dim) in inputs.items():
            if kind == "vector":
                size += dim
            else:
                self.encoders[name] = ConvEncoder(dim, channels, kernels, pools)
                size += self.encoders[name].output_size
        self.input_names = list(inputs)
        self.heads = nn.ModuleDict({h: _mlp(size, hidden, float(dropout), dim) for h, (_, dim) in heads.items()})

    def forward(self, inputs: dict[str, torch.Tensor], lengths: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        parts = [self.encoders[n](inputs[n], lengths[n]) if n in self.encoders else inputs[n] for n in self.input_names]
        shared = torch.cat(parts, dim=-1)
        return {h: mlp(shared) for h, mlp in self.heads.items()}
