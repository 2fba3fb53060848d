"""Fully convolutional frame-regression models of Khorram, Aldeneh et al. (Interspeech 2017, paper 000).

All three map stacked features ``x [B, T, D]`` (40 ms frames) to per-frame outputs ``[B, T, K]``
of the same length, for any ``T >= 1``.  Padded frames are zeroed after every layer, so a padded
sequence gives exactly the result of the sequence alone: zero padding at the true end is what the
convolution's own zero padding would have supplied.

Receptive fields (in 40 ms frames, at the defaults; ``receptive_field()`` computes them):

- :class:`DilatedCNN`: 10 layers, width 32, dilation ``2**n`` (n = 0..9), kernel 3 (centred, the
  paper does not give the kernel size), ReLU, 1x1 output convolution.  Receptive field
  ``1 + (k-1) * (2**10 - 1) = 2047`` frames = 81.9 s, centred on the output frame; 43k parameters.
- :class:`DownUpCNN`: 4 x [conv k=5, ReLU, max-pool 3], one intermediate conv, 4 transposed
  convolutions (stride 3, kernel 7) with ReLU, 1x1 output convolution; width 32 (arousal) or
  128 (valence).  The input is zero-padded to a multiple of ``3**4 = 81`` and the output cropped
  back to ``T``.  Receptive field 727 frames = 29.1 s at most (the span depends on the output's
  position modulo 81): 565 frames from the down path and intermediate conv, the rest from the
  transposed convolutions.  Parameters: 75k at width 32, 890k at width 128 (160-dim input).
- :class:`SingleFilter`: the receptive-field sweep of Figure 1: one convolution filter of length
  ``L`` (2..2048) over all input dims, tanh, then a linear layer.  Receptive field ``L`` frames.
"""

from __future__ import annotations

import torch
from torch import nn

from emotk.models import register
from emotk.models.layers import length_mask


def _fast_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (a fast FFT size)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def _masked(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the padded time steps of ``h [B, C, T]`` given ``mask [B, T]``."""
    return h * mask[:, None, :].to(h.dtype)


class _FrameRegressor(nn.Module):
    """Declares the model contract; every subclass has ``receptive_field()`` (frames, analytic)."""

    input_kinds = ("feats",)
    output_kind = "frame"


@register("dilated_cnn")
class DilatedCNN(_FrameRegressor):
    """Stacked dilated 1-D convolutions (paper 000 section 5.1, Figure 2; sizes of section 6.1)."""

    def __init__(self, input_dim: int, output_dim: int, num_layers: int = 10, width: int = 32,
                 kernel_size: int = 3, dropout: float = 0.0):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (centred filters), got {kernel_size}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.kernel_size, self.num_layers = kernel_size, num_layers
        self.convs = nn.ModuleList()
        for n in range(num_layers):
            d = 2 ** n
            self.convs.append(nn.Conv1d(input_dim if n == 0 else width, width, kernel_size,
                                        dilation=d, padding=d * (kernel_size - 1) // 2))
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.out = nn.Conv1d(width, output_dim, 1)

    def receptive_field(self) -> int:
        return 1 + (self.kernel_size - 1) * (2 ** self.num_layers - 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = length_mask(lengths.to(x.device), x.shape[1])
        h = _masked(x.transpose(1, 2), mask)
        for conv in self.convs:
            h = _masked(self.drop(self.act(conv(h))), mask)
        return self.out(h).transpose(1, 2)


@register("downup_cnn")
class DownUpCNN(_FrameRegressor):
    """Down-sampling / up-sampling network (paper 000 section 5.2, Figure 3; sizes of section 6.1).

    Down path: ``levels`` x [conv(kernel_size) -> ReLU -> max-pool(factor)], then one intermediate
    conv at ``1 / factor**levels`` of the frame rate.  Up path: ``levels`` transposed convolutions
    (stride ``factor``, kernel ``up_kernel``, each output exactly ``factor`` times longer) with ReLU,
    then a 1x1 output convolution.  The output is as long as the input for any length.
    """

    def __init__(self, input_dim: int, output_dim: int, width: int = 32, levels: int = 4, factor: int = 3,
                 kernel_size: int = 5, up_kernel: int = 7, dropout: float = 0.0):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (centred filters), got {kernel_size}")
        if (up_kernel - factor) % 2 != 0 or up_kernel < factor:
            raise ValueError(f"up_kernel - factor must be even and >= 0 (got up_kernel={up_kernel}, factor={factor})")
        self.width, self.levels, self.factor = width, levels, factor
        self.kernel_size, self.up_kernel = kernel_size, up_kernel
        pad = kernel_size // 2
        self.down = nn.ModuleList(
            nn.Conv1d(input_dim if i == 0 else width, width, kernel_size, padding=pad) for i in range(levels))
        self.pool = nn.MaxPool1d(factor)
        self.mid = nn.Conv1d(width, width, kernel_size, padding=pad)
        # L_out = (L_in - 1) * s - 2p + k = s * L_in  when  k - 2p = s
        self.up = nn.ModuleList(
            nn.ConvTranspose1d(width, width, up_kernel, stride=factor, padding=(up_kernel - factor) // 2)
            for _ in range(levels))
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.out = nn.Conv1d(width, output_dim, 1)

    def receptive_field(self) -> int:
        """Exact: trace the input interval each output position depends on, back through every layer.

        The span depends on the output's position modulo ``factor**levels``; the maximum is returned.
        """
        s, pad, p_up, k_up = self.factor, self.kernel_size // 2, (self.up_kernel - self.factor) // 2, self.up_kernel
        best = 0
        for n in range(s ** self.levels):
            a = b = n
            for _ in range(self.levels):  # fine index i = m*s - p_up + t, t in [0, k_up)
                a, b = -(-(a + p_up - k_up + 1) // s), (b + p_up) // s
            a, b = a - pad, b + pad  # intermediate conv
            for _ in range(self.levels):  # un-pool, then the conv before it
                a, b = a * s - pad, b * s + s - 1 + pad
            best = max(best, b - a + 1)
        return best

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(x.device)
        T = x.shape[1]
        unit = self.factor ** self.levels
        padded = -(-T // unit) * unit
        h = nn.functional.pad(x.transpose(1, 2), (0, padded - T))
        lens = [lengths]  # valid length at each resolution
        h = _masked(h, length_mask(lengths, padded))
        for conv in self.down:
            h = self.pool(_masked(self.drop(self.act(conv(h))), length_mask(lens[-1], h.shape[-1])))
            lens.append(torch.div(lens[-1] + self.factor - 1, self.factor, rounding_mode="floor"))
        h = _masked(self.drop(self.act(self.mid(h))), length_mask(lens[-1], h.shape[-1]))
        for up, n in zip(self.up, reversed(lens[:-1])):
            h = self.drop(self.act(up(h)))
            h = _masked(h, length_mask(n, h.shape[-1]))
        h = h[:, :, :T]
        return self.out(h).transpose(1, 2)


@register("single_filter")
class SingleFilter(_FrameRegressor):
    """One convolution filter of length ``filter_length`` -> tanh -> linear (paper 000 section 4, Figure 1).

    The filter is centred on the output frame: ``(L-1)//2`` frames of past, the rest future.  The
    convolution is computed through the FFT (identical to ``self.conv`` on the zero-padded input up
    to rounding): a direct convolution with one output channel and a 2048-frame kernel over 160
    channels is minutes per epoch on a CPU, the FFT a few milliseconds.
    """

    def __init__(self, input_dim: int, output_dim: int, filter_length: int = 512):
        super().__init__()
        if filter_length < 1:
            raise ValueError(f"filter_length must be >= 1, got {filter_length}")
        self.filter_length = filter_length
        self.conv = nn.Conv1d(input_dim, 1, filter_length)  # holds the filter and its bias
        self.linear = nn.Linear(1, output_dim)

    def receptive_field(self) -> int:
        return self.filter_length

    def filter_response(self, x: torch.Tensor) -> torch.Tensor:
        """``self.conv`` over ``x [B, D, T]`` zero-padded to keep length T: ``[B, T]``, via the FFT."""
        T, L = x.shape[-1], self.filter_length
        left = (L - 1) // 2
        n = _fast_length(T + L - 1)  # >= T + L - 1: no circular wrap-around
        spec = torch.fft.rfft(x, n=n) * torch.fft.rfft(self.conv.weight[0], n=n).conj()
        r = torch.fft.irfft(spec.sum(dim=1), n=n)  # r[m] = sum_k w[k] x[m + k], m < 0 wrapped to the end
        return torch.roll(r, shifts=left, dims=-1)[:, :T] + self.conv.bias

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = length_mask(lengths.to(x.device), x.shape[1])
        h = torch.tanh(self.filter_response(_masked(x.transpose(1, 2), mask)))
        return self.linear(h.unsqueeze(-1))
