"""2D CNN-LSTM (paper 004, section 3.3, Table 2) and 1D CNN-LSTM (section 3.2, Table 1) of Zhao, Mao & Chen (2019).

The log-mel spectrogram is an image (frequency x time).  Four local feature learning blocks
(LFLB: conv 3x3 stride 1 'same' -> batch norm -> ELU -> max-pool) with 64, 64, 128, 128 channels
and pools 2x2, 4x4, 4x4, 4x4; the remaining (channels x frequency) map at each time step is one
element of a sequence for an LSTM of 256 cells; its last output feeds a fully connected layer
with K outputs (the softmax is in the loss).

Variable lengths: pooling uses ``ceil_mode=True``, so a sequence of L valid frames keeps
ceil(L / p) steps after a pool of p (any L >= 1 works, no minimum length; 251 frames give
126, 32, 8, 2 steps where Keras' floor mode gives 125, 31, 7, 1).  Before every convolution the
padded time steps are zeroed (what 'same' padding sees at the end of an unpadded sequence) and
before every pool they are set to -inf (so a window straddling the end takes the max of its
valid frames only).  The LSTM runs on packed sequences and its state at each sequence's last
valid step is classified, so in eval mode a padded sequence gives exactly the output of the
sequence alone.  In training mode, batch norm statistics include the padded positions.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from emotk.errors import EmotkError
from emotk.models import register
from emotk.models.layers import MaskedLSTM, length_mask, pooled_lengths, pooled_size


def _positive_ints(name: str, values) -> list[int]:
    values = [values] if isinstance(values, int) else list(values)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise EmotkError(f"cnn_lstm: {name} must be positive integers, got {values!r}")
    return values


def _lflb_params(model: str, channels, pools, kernel_size, lstm_size) -> tuple[list[int], list[int], int, int]:
    """Checked LFLB stack sizes: one channel count and one pool per block, an odd kernel."""
    channels = _positive_ints("channels", channels)
    pools = _positive_ints("pools", pools)
    (kernel_size,) = _positive_ints("kernel_size", kernel_size)
    (lstm_size,) = _positive_ints("lstm_size", lstm_size)
    if len(channels) != len(pools):
        raise EmotkError(f"{model}: channels ({len(channels)}) and pools ({len(pools)}) need the same length")
    if kernel_size % 2 == 0:
        raise EmotkError(f"{model}: kernel_size must be odd for 'same' padding, got {kernel_size}")
    return channels, pools, kernel_size, lstm_size


class LFLB(nn.Module):
    """Local feature learning block: conv (stride 1, 'same') -> BN -> ELU -> max-pool (kernel = stride)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, pool: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=kernel_size // 2)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ELU()
        self.pool = nn.MaxPool2d(pool, stride=pool, ceil_mode=True)
        self.pool_size = pool

    def forward(self, h: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``h [B, C, F, T]`` with padded time steps zeroed -> pooled map (padding zeroed) and lengths."""
        h = self.act(self.bn(self.conv(h)))
        valid = length_mask(lengths, h.shape[-1])[:, None, None, :]
        h = self.pool(h.masked_fill(~valid, float("-inf")))
        lengths = pooled_lengths(lengths, self.pool_size)
        valid = length_mask(lengths, h.shape[-1])[:, None, None, :]
        return h.masked_fill(~valid, 0.0), lengths


@register("cnn_lstm2d")
class CnnLstm2d(nn.Module):
    input_kinds = ("feats",)
    output_kind = "utterance"

    def __init__(self, input_dim: int, output_dim: int, channels: Sequence[int] = (64, 64, 128, 128),
                 pools: Sequence[int] = (2, 4, 4, 4), kernel_size: int = 3, lstm_size: int = 256):
        super().__init__()
        channels, pools, kernel_size, lstm_size = _lflb_params("cnn_lstm2d", channels, pools, kernel_size, lstm_size)
        blocks, freq, c_in = [], input_dim, 1
        for c_out, pool in zip(channels, pools):
            blocks.append(LFLB(c_in, c_out, kernel_size, pool))
            freq, c_in = pooled_size(freq, pool), c_out
        self.blocks = nn.ModuleList(blocks)
        self.lstm = MaskedLSTM(c_in * freq, lstm_size)
        self.fc = nn.Linear(lstm_size, output_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x [B, T, D]`` -> logits ``[B, K]``."""
        lengths = lengths.to(x.device)
        valid = length_mask(lengths, x.shape[1])[:, :, None]
        h = x.masked_fill(~valid, 0.0).transpose(1, 2).unsqueeze(1)  # [B, 1, F, T]
        for block in self.blocks:
            h, lengths = block(h, lengths)
        b, c, f, t = h.shape
        seq = h.permute(0, 3, 1, 2).reshape(b, t, c * f)
        _, last = self.lstm(seq, lengths)
        return self.fc(last)


class LFLB1d(nn.Module):
    """1D local feature learning block on a waveform or any [B, C, T] sequence: conv (stride 1, 'same')
    -> BN -> ELU -> max-pool (kernel = stride), with the same masking rules as the 2D block."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, pool: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=1, padding=kernel_size // 2)
        self.bn = nn.BatchNorm1d(out_channels)
        self.act = nn.ELU()
        self.pool = nn.MaxPool1d(pool, stride=pool, ceil_mode=True)
        self.pool_size = pool

    def forward(self, h: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(self.bn(self.conv(h)))
        h = self.pool(h.masked_fill(~length_mask(lengths, h.shape[-1])[:, None, :], float("-inf")))
        lengths = pooled_lengths(lengths, self.pool_size)
        return h.masked_fill(~length_mask(lengths, h.shape[-1])[:, None, :], 0.0), lengths


@register("cnn_lstm1d")
class CnnLstm1d(nn.Module):
    """1D CNN-LSTM of paper 004 (section 3.2, Table 1) on raw audio: four 1D LFLBs (kernel 3, pool 4;
    64, 64, 128, 128 channels), an LSTM of 256 cells over the pooled sequence, a fully connected layer.
    The paper feeds 8 s clips (``segments: {mode: pad_or_cut, length: 8.0}``)."""

    input_kinds = ("wav", "feats")  # a waveform [B, T, 1], or any frame sequence as channels
    output_kind = "utterance"

    def __init__(self, input_dim: int, output_dim: int, channels: Sequence[int] = (64, 64, 128, 128),
                 pools: Sequence[int] = (4, 4, 4, 4), kernel_size: int = 3, lstm_size: int = 256):
        super().__init__()
        channels, pools, kernel_size, lstm_size = _lflb_params("cnn_lstm1d", channels, pools, kernel_size, lstm_size)
        blocks, c_in = [], input_dim
        for c_out, pool in zip(channels, pools):
            blocks.append(LFLB1d(c_in, c_out, kernel_size, pool))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.lstm = MaskedLSTM(c_in, lstm_size)
        self.fc = nn.Linear(lstm_size, output_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x [B, T, C]`` -> logits ``[B, K]``."""
        lengths = lengths.to(x.device)
        h = x.masked_fill(~length_mask(lengths, x.shape[1])[:, :, None], 0.0).transpose(1, 2)  # [B, C, T]
        for block in self.blocks:
            h, lengths = block(h, lengths)
        _, last = self.lstm(h.transpose(1, 2), lengths)
        return self.fc(last)
