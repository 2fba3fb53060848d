"""LDNN of Huang & Narayanan, paper 002, section 3.3 (the LDNN baselines of section 4.2-4.3).

One BLSTM layer with 128 cells per direction, mean pooling of its outputs over the valid time
steps (not the last step), dropout 0.2 on that utterance vector, then fully connected layers of
128, 32, 32 units with ReLU and a final layer with N outputs (the softmax is in the loss).
The paper feeds 40-d log-mels (or 13 MFCCs) spliced 10 frames left and 5 right.

``LdnnNet`` is that sub-network on any frame sequence; the X-CLDNNs (``emotk.models.cldnn``) put
it on top of their convolution layers.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from emotk.errors import EmotkError
from emotk.models import register
from emotk.models.layers import MaskedLSTM, masked_mean


class LdnnNet(nn.Module):
    """BLSTM -> mean over valid steps -> dropout -> FC layers (ReLU) -> ``output_dim`` logits.

    Submodules ``lstm`` (the BLSTM) and ``fc`` (the MLP: every FC layer) are the paper's
    section 7.5 modules; ``who`` names the model in parameter errors.
    """

    def __init__(self, input_dim: int, output_dim: int, lstm_size: int, bidirectional: bool,
                 fc_sizes: Sequence[int], dropout: float, who: str = "ldnn"):
        super().__init__()
        fc_sizes = [fc_sizes] if isinstance(fc_sizes, int) else list(fc_sizes)
        if not isinstance(lstm_size, int) or isinstance(lstm_size, bool) or lstm_size < 1:
            raise EmotkError(f"{who}: lstm_size must be a positive integer, got {lstm_size!r}")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in fc_sizes):
            raise EmotkError(f"{who}: fc_sizes must be positive integers, got {fc_sizes!r}")
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
            raise EmotkError(f"{who}: dropout must be in [0, 1), got {dropout!r}")
        self.lstm = MaskedLSTM(input_dim, lstm_size, bidirectional=bool(bidirectional))
        self.dropout = nn.Dropout(dropout)
        layers, size = [], self.lstm.output_size
        for n in fc_sizes:
            layers += [nn.Linear(size, n), nn.ReLU()]
            size = n
        layers.append(nn.Linear(size, output_dim))
        self.fc = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x [B, T, D]`` -> logits ``[B, K]``."""
        out, _ = self.lstm(x, lengths)
        return self.fc(self.dropout(masked_mean(out, lengths)))


@register("ldnn")
class Ldnn(LdnnNet):
    input_kinds = ("feats",)
    output_kind = "utterance"
    # Module outputs probed by ``emotk probe-modules`` (paper 002, section 7.5).
    probe_modules = {"blstm": "lstm", "mlp": "fc"}

    def __init__(self, input_dim: int, output_dim: int, lstm_size: int = 128, bidirectional: bool = True,
                 fc_sizes: Sequence[int] = (128, 32, 32), dropout: float = 0.2):
        super().__init__(input_dim, output_dim, lstm_size, bidirectional, fc_sizes, dropout, who="ldnn")
