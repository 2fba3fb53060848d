"""The uniform interface the trainer drives: ``forward(inputs, lengths) -> ({head: out}, {aux: loss})``."""

from __future__ import annotations

from torch import nn


class HeadsAdapter(nn.Module):
    """A simple model (one input, one output tensor) whose outputs are split into the heads' outputs,
    in the config's order."""

    def __init__(self, net: nn.Module, input_name: str, head_dims: dict[str, int]):
        super().__init__()
        self.net, self.input_name, self.head_dims = net, input_name, dict(head_dims)

    def forward(self, inputs, lengths, targets=None):
        out = self.net(inputs[self.input_name], lengths[self.input_name])
        parts, start = {}, 0
        for head, dim in self.head_dims.items():
            parts[head] = out[..., start: start + dim]
            start += dim
        return parts, {}


class NativeAdapter(nn.Module):
    """A native model, its optional auxiliary losses always returned as a dict. A model with
    ``needs_targets = True`` (a CVAE conditioned on the label) gets the batch's targets in training
    mode only, so no evaluation or inference output can depend on a label."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, inputs, lengths, targets=None):
        if getattr(self.net, "needs_targets", False) and self.training:
            out = self.net(inputs, lengths, targets=targets)
        else:
            out = self.net(inputs, lengths)
        return out if isinstance(out, tuple) else (out, {})
