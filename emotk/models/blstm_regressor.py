"""BLSTM frame-regression baseline of paper 000 (Tables 1-2, "BLSTM [24]").

Paper 000 compares against "an optimized BLSTM regression model" (Le, Aldeneh & Mower Provost,
Interspeech 2017) without giving its sizes.  The defaults here, 2 bidirectional layers of 64
units per direction and a linear output per frame, are our choice (213k parameters on 160-dim
stacked fbank); the benchmark sizes the BLSTM to the CNNs' parameter counts.  The receptive
field is the whole recording: every output frame sees every input frame.
"""

from __future__ import annotations

import torch
from torch import nn

from emotk.models import register
from emotk.models.layers import MaskedLSTM


@register("blstm_regressor")
class BLSTMRegressor(nn.Module):
    input_kinds = ("feats",)
    output_kind = "frame"

    def __init__(self, input_dim: int, output_dim: int, hidden_size: int = 64, num_layers: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        self.lstm = MaskedLSTM(input_dim, hidden_size, num_layers=num_layers, bidirectional=True, dropout=dropout)
        self.out = nn.Linear(self.lstm.output_size, output_dim)

    def receptive_field(self) -> None:
        """Unbounded: a BLSTM output depends on the whole sequence."""
        return None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x, lengths)
        return self.out(h)
