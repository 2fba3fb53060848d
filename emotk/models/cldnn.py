"""X-CLDNNs of Huang & Narayanan (paper 002, sections 3.1-3.3, Tables 1-2): two convolution layers of
type X in {S, T, ST, FST}, then the LDNN sub-network (``emotk.models.ldnn.LdnnNet``).

The convolutions do not run along the utterance: as in the paper (Fig. 1, section 6.2), each frame
``x_t`` is spliced with 10 frames before and 5 after and reshaped to a spectral x temporal image
``X_t`` of M x 16 (M = 40 log-mels or 13 MFCCs); the two Conv layers process each ``X_t`` on its
own, their flattened output is one step of the sequence the BLSTM models over the utterance. The
splicing is done here (``context``, Kaldi ``splice-feats`` order, edge frames repeated), so the
input is the plain M-dim feature (``splice: [0, 0]`` in the config).

Filter shapes (section 3.1, h: spectral, w: temporal; stride 1, no padding, ReLU) and max-pooling
of 3 with stride 2 along the convolution's own direction(s) (Table 1), both layers:

- S (``heights``: h1, h2):            h x 1 filters, pool 3 x 1 / stride 2 x 1;
- T (``widths``: w1, w2 >= 2):        1 x w filters, pool 1 x 3 / stride 1 x 2;
- ST (``heights`` >= 2, ``widths`` >= 2, h1 < M): h x w filters, pool 3 x 3 / stride 2 x 2;
- FST (``widths`` >= 2):              M x w1 then 1 x w2 filters (the first covers all M bands, so the
  map is one band high), pool 1 x 3 / stride 1 x 2.

Biases are one per feature map (as Keras' Conv2D, which the paper used; its Eq. 1 writes a bias per
position). Pooling has no padding (floor mode), as the paper's arithmetic requires: its S-Conv search of
section 7.4 stops at h1 = 30 for M = 40 with h2 = 3 "to allow pooling and convolution in the
second layer", i.e. h1 + 2 h2 + 4 <= M (the same rule holds for widths and the 16-frame context).

The paper reports Table 2's search ranges (T: w1 3-8, w2 2-3; S: h1 4-9, h2 3-4; ST: both; FST:
w1 3-8, w2 2-3), not the values it chose. The defaults here are the largest filters of those ranges
that fit a 40 x 16 input (section 7.4 found larger spectral filters better; h2 = 3 as there), and
the ST filters combine the S and T choices as its search did.

Padding: only the valid frames are convolved (their windows repeat the last valid frame, never
padding), the BLSTM runs on packed sequences and the mean is over valid steps, so in eval mode a
padded sequence gives exactly the output of the sequence alone; any length >= 1 works.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from emotk.errors import EmotkError
from emotk.models import register
from emotk.models.layers import context_windows, length_mask
from emotk.models.ldnn import LdnnNet

POOL, POOL_STRIDE = 3, 2  # Table 1: fixed pooling size and stride in the convolution's direction(s)


def _ints(who: str, name: str, values, n: int, minimum: int) -> list[int]:
    values = [values] if isinstance(values, int) else list(values) if isinstance(values, (list, tuple)) else [values]
    if len(values) != n or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values):
        raise EmotkError(f"{who}: {name} must be {n} integers >= {minimum}, got {values!r}")
    return values


def _out(size: int, kernel: int, stride: int = 1) -> int:
    """Length after a convolution or pooling without padding (floor mode); < 1 when it does not fit."""
    return (size - kernel) // stride + 1 if size >= kernel else 0


class ConvLayers(nn.Module):
    """Splice each valid frame into a bands x context image and apply Conv -> ReLU -> max-pool per layer.

    ``layers``: per layer ``(kernel (h, w), pool (m, n), stride (s, t))``. ``forward(x [B, T, M],
    lengths) -> [B, T, output_size]``, zero at padded steps.
    """

    def __init__(self, bands: int, context: tuple[int, int], layers: list, maps: int, who: str):
        super().__init__()
        self.context = tuple(context)
        h, w = bands, sum(context) + 1
        convs, c_in = [], 1
        for i, (kernel, pool, stride) in enumerate(layers, 1):
            conv_h, conv_w = _out(h, kernel[0]), _out(w, kernel[1])
            pool_h, pool_w = _out(conv_h, pool[0], stride[0]), _out(conv_w, pool[1], stride[1])
            if min(conv_h, conv_w, pool_h, pool_w) < 1:
                raise EmotkError(
                    f"{who}: layer {i}'s {kernel[0]} x {kernel[1]} filters and {pool[0]} x {pool[1]} pooling do not "
                    f"fit its {h} x {w} map (input: {bands} bands x {sum(context) + 1} context frames); use smaller "
                    "filters or a wider context (per axis: filter1 + 2 filter2 + 4 <= input size)")
            convs += [nn.Conv2d(c_in, maps, kernel), nn.ReLU(), nn.MaxPool2d(pool, stride)]
            h, w, c_in = pool_h, pool_w, maps
        self.net = nn.Sequential(*convs)
        self.output_size = maps * h * w
        self.map_shape = (maps, h, w)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(x.device)
        valid = length_mask(lengths, x.shape[1])
        images = context_windows(x, lengths, *self.context).transpose(1, 2).unsqueeze(1)  # [N, 1, bands, W]
        out = x.new_zeros(x.shape[0], x.shape[1], self.output_size)
        out[valid] = self.net(images).flatten(1).to(out.dtype)
        return out


class Cldnn(nn.Module):
    """Two Conv layers (``convs``) on each frame's context image, then the LDNN sub-network (``ldnn``)."""

    input_kinds = ("feats",)
    output_kind = "utterance"
    # Module outputs probed by ``emotk probe-modules`` (paper 002, section 7.5: CNN, BLSTM, MLP).
    probe_modules = {"cnn": "convs", "blstm": "ldnn.lstm", "mlp": "ldnn.fc"}

    def __init__(self, input_dim: int, output_dim: int, kernels: list, pool: tuple, stride: tuple, maps, context,
                 lstm_size, bidirectional, fc_sizes, dropout):
        super().__init__()
        who = self.registry_name
        (maps,) = _ints(who, "maps", maps, 1, 1)
        context = _ints(who, "context", context, 2, 0)
        self.convs = ConvLayers(input_dim, context, [(k, pool, stride) for k in kernels], maps, who)
        self.ldnn = LdnnNet(self.convs.output_size, output_dim, lstm_size, bidirectional, fc_sizes, dropout, who=who)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x [B, T, M]`` -> logits ``[B, K]``."""
        return self.ldnn(self.convs(x, lengths), lengths)


@register("cldnn_s")
class CldnnS(Cldnn):
    """S-CLDNN: spectral-only h x 1 filters, pooling along frequency."""

    def __init__(self, input_dim: int, output_dim: int, heights: Sequence[int] = (9, 3), maps: int = 32,
                 context: Sequence[int] = (10, 5), lstm_size: int = 128, bidirectional: bool = True,
                 fc_sizes: Sequence[int] = (128, 32, 32), dropout: float = 0.2):
        h1, h2 = _ints("cldnn_s", "heights", heights, 2, 1)
        super().__init__(input_dim, output_dim, [(h1, 1), (h2, 1)], (POOL, 1), (POOL_STRIDE, 1), maps, context,
                         lstm_size, bidirectional, fc_sizes, dropout)


@register("cldnn_t")
class CldnnT(Cldnn):
    """T-CLDNN: temporal-only 1 x w filters (each band on its own), pooling along time."""

    def __init__(self, input_dim: int, output_dim: int, widths: Sequence[int] = (8, 2), maps: int = 32,
                 context: Sequence[int] = (10, 5), lstm_size: int = 128, bidirectional: bool = True,
                 fc_sizes: Sequence[int] = (128, 32, 32), dropout: float = 0.2):
        w1, w2 = _ints("cldnn_t", "widths", widths, 2, 2)
        super().__init__(input_dim, output_dim, [(1, w1), (1, w2)], (1, POOL), (1, POOL_STRIDE), maps, context,
                         lstm_size, bidirectional, fc_sizes, dropout)


@register("cldnn_st")
class CldnnSt(Cldnn):
    """ST-CLDNN: local spectro-temporal h x w filters (h1 < bands), 2-D pooling."""

    def __init__(self, input_dim: int, output_dim: int, heights: Sequence[int] = (9, 3),
                 widths: Sequence[int] = (8, 2), maps: int = 32, context: Sequence[int] = (10, 5),
                 lstm_size: int = 128, bidirectional: bool = True, fc_sizes: Sequence[int] = (128, 32, 32),
                 dropout: float = 0.2):
        h1, h2 = _ints("cldnn_st", "heights", heights, 2, 2)
        w1, w2 = _ints("cldnn_st", "widths", widths, 2, 2)
        if h1 >= input_dim:
            raise EmotkError(f"cldnn_st: heights[0] must be below the {input_dim} bands (filters spanning every "
                             f"band are FST-Conv: use cldnn_fst), got {h1}")
        super().__init__(input_dim, output_dim, [(h1, w1), (h2, w2)], (POOL, POOL), (POOL_STRIDE, POOL_STRIDE),
                         maps, context, lstm_size, bidirectional, fc_sizes, dropout)


@register("cldnn_fst")
class CldnnFst(Cldnn):
    """FST-CLDNN: full-spectrum temporal filters (all M bands x w1 frames), convolving and pooling in time only."""

    def __init__(self, input_dim: int, output_dim: int, widths: Sequence[int] = (8, 2), maps: int = 32,
                 context: Sequence[int] = (10, 5), lstm_size: int = 128, bidirectional: bool = True,
                 fc_sizes: Sequence[int] = (128, 32, 32), dropout: float = 0.2):
        w1, w2 = _ints("cldnn_fst", "widths", widths, 2, 2)
        super().__init__(input_dim, output_dim, [(input_dim, w1), (1, w2)], (1, POOL), (1, POOL_STRIDE), maps,
                         context, lstm_size, bidirectional, fc_sizes, dropout)
