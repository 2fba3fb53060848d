"""ONNX export of torch models and an onnxruntime backend with the same interface as the torch one.

What torch.onnx cannot express in emotk's models, and what the exported graph does instead (each
replacement computes the same function, checked by the parity test at export and in the tests):

- ``MaskedLSTM`` runs on packed sequences (``pack_padded_sequence``), which ONNX has no operator
  for. ``UnpackedLSTM`` runs plain LSTMs over the padded batch: the forward direction's outputs at
  valid steps do not depend on the padding after them, and its last state is gathered at each
  sequence's last valid step; the backward direction runs on each sequence reversed within its own
  length (a gather), so it starts at the sequence's true end, and is reversed back. Exact.
- ``DownUpCNN`` pads its input to a multiple of ``factor ** levels`` computed in Python from the
  length, which tracing freezes to the example's length; the export pads with a scripted helper
  (ONNX Shape/Mod/Pad), so the time axis stays dynamic. Exact.
- ``SingleFilter`` picks its FFT size per length with a Python search (``_fast_length``), which
  cannot be traced with a dynamic time axis; the export computes the same correlation as a direct
  ``conv1d`` on the zero-padded input (equal up to float rounding; slower for long filters).

The graph is traced by the TorchScript-based exporter (``dynamo=False``): on these models the
dynamo exporter specializes the time axis (packed LSTMs, length arithmetic) and takes 10-30 s per
model where tracing takes well under one. Inputs: ``<input>`` ``[B, T, D]`` (vectors ``[B, D]``)
and ``<input>_lengths`` ``[B]`` (int64) for each temporal input, batch and time axes dynamic;
outputs: one per head, the model's raw outputs (logits, values, frame outputs).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emotk.errors import EmotkError
from emotk.fileio import atomic_path, write_text

OPSET = 17
PARITY_TOL = 1e-4


class UnpackedLSTM(nn.Module):
    """``MaskedLSTM``'s function (same weights) without packed sequences (see the module doc)."""

    def __init__(self, masked: nn.Module):
        super().__init__()
        lstm = masked.lstm
        self.bidirectional, self.hidden = lstm.bidirectional, lstm.hidden_size
        self.output_size = masked.output_size
        self.cells = nn.ModuleList()
        for k in range(lstm.num_layers):
            for sfx in (["", "_reverse"] if lstm.bidirectional else [""]):
                w = getattr(lstm, f"weight_ih_l{k}{sfx}")
                cell = nn.LSTM(w.shape[1], lstm.hidden_size, batch_first=True, bias=lstm.bias)
                for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if lstm.bias else ()):
                    getattr(cell, f"{name}_l0").data.copy_(getattr(lstm, f"{name}_l{k}{sfx}").data)
                self.cells.append(cell)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.to(x.device)
        t = torch.arange(x.shape[1], device=x.device)[None, :]
        n = lengths[:, None]
        valid = t < n
        rev = torch.where(valid, n - 1 - t, t)[:, :, None]  # reversal within each length (an involution)
        n_dir = 2 if self.bidirectional else 1
        h, f, b = x, x, x
        for k in range(len(self.cells) // n_dir):
            f, _ = self.cells[k * n_dir](h)
            if self.bidirectional:
                br, _ = self.cells[k * n_dir + 1](h.gather(1, rev.expand(-1, -1, h.shape[2])))
                b = br.gather(1, rev.expand(-1, -1, br.shape[2]))
                h = torch.cat([f, b], -1)
            else:
                h = f
            h = h * valid[:, :, None].to(h.dtype)
        last = f.gather(1, (lengths - 1).clamp(min=0)[:, None, None].expand(-1, 1, self.hidden))[:, 0]
        if self.bidirectional:
            last = torch.cat([last, b[:, 0]], -1)
        return h, last


def _pad_time_to_multiple(x: torch.Tensor, unit: int) -> torch.Tensor:
    """``x [B, C, T]`` zero-padded at the end of T to a multiple of ``unit`` (dynamic in ONNX: scripted)."""
    pad = (unit - x.size(2) % unit) % unit
    return F.pad(x, [0, pad])


def _scripted(fn):
    import warnings

    with warnings.catch_warnings():  # torch.jit.script is deprecated; the TorchScript exporter still needs it
        warnings.simplefilter("ignore")
        return torch.jit.script(fn)


class DownUpExport(nn.Module):
    """``DownUpCNN.forward`` with the padding length computed in the graph."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.pad = _scripted(_pad_time_to_multiple)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        from emotk.models.layers import length_mask
        from emotk.models.temporal_cnn import _masked

        m = self.net
        lengths = lengths.to(x.device)
        h = self.pad(x.transpose(1, 2), m.factor ** m.levels)
        lens = [lengths]
        h = _masked(h, length_mask(lengths, h.shape[-1]))
        for conv in m.down:
            h = m.pool(_masked(m.act(conv(h)), length_mask(lens[-1], h.shape[-1])))
            lens.append(torch.div(lens[-1] + m.factor - 1, m.factor, rounding_mode="floor"))
        h = _masked(m.act(m.mid(h)), length_mask(lens[-1], h.shape[-1]))
        for up, n in zip(m.up, reversed(lens[:-1])):
            h = m.act(up(h))
            h = _masked(h, length_mask(n, h.shape[-1]))
        h = h[:, :, : x.shape[1]]
        return m.out(h).transpose(1, 2)


class SingleFilterExport(nn.Module):
    """``SingleFilter.forward`` with the correlation as a direct convolution instead of the FFT."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        from emotk.models.layers import length_mask
        from emotk.models.temporal_cnn import _masked

        m = self.net
        length = m.filter_length
        left = (length - 1) // 2
        h = _masked(x.transpose(1, 2), length_mask(lengths.to(x.device), x.shape[1]))
        r = F.conv1d(F.pad(h, [left, length - 1 - left]), m.conv.weight, m.conv.bias)[:, 0]
        return m.linear(torch.tanh(r).unsqueeze(-1))


def exportable(net: nn.Module) -> nn.Module:
    """A copy of ``net`` (eval mode) with every block ONNX cannot express replaced (module doc)."""
    from emotk.models.layers import MaskedLSTM
    from emotk.models.temporal_cnn import DownUpCNN, SingleFilter

    replace = {MaskedLSTM: UnpackedLSTM, DownUpCNN: DownUpExport, SingleFilter: SingleFilterExport}

    def swap(m: nn.Module) -> None:
        for name, child in m.named_children():
            new = replace.get(type(child))
            if new is not None:
                setattr(m, name, new(child))
            else:
                swap(child)

    net = copy.deepcopy(net).eval()
    new = replace.get(type(net))
    if new is not None:
        return new(net).eval()
    swap(net)
    return net


class FlatGraph(nn.Module):
    """The model as a function of flat tensors: ``(x_1, [len_1], x_2, ...) -> (head_1, ...)``."""

    def __init__(self, net: nn.Module, inputs: dict[str, dict], heads: list[str]):
        super().__init__()
        self.net, self.heads = net, heads
        self.inputs = [(n, s["kind"] != "vector") for n, s in inputs.items()]

    def forward(self, *flat):
        xs, lens, i = {}, {}, 0
        for name, temporal in self.inputs:
            xs[name] = flat[i]
            if temporal:
                lens[name], i = flat[i + 1], i + 2
            else:
                lens[name], i = torch.ones(flat[i].shape[0], dtype=torch.long), i + 1
        out, _ = self.net(xs, lens)
        return tuple(out[h] for h in self.heads)


def io_names(inputs: dict[str, dict], heads: list[str]) -> tuple[list[str], list[str]]:
    names = []
    for n, s in inputs.items():
        names += [n] + ([f"{n}_lengths"] if s["kind"] != "vector" else [])
    return names, list(heads)


def example_batch(inputs: dict[str, dict], seed: int, batch: int = 3) -> tuple[dict, dict]:
    """Random inputs of different lengths (the shortest a few frames) for tracing and parity checks."""
    rng = np.random.default_rng(seed)
    xs, lens = {}, {}
    for n, s in inputs.items():
        if s["kind"] == "vector":
            xs[n] = rng.standard_normal((batch, s["dim"])).astype(np.float32)
            continue
        longest = (4000 if s["kind"] == "wav" else 120) + 37 * seed  # another length per seed
        lengths = np.array([longest] + [int(x) for x in rng.integers(3, longest, batch - 1)], dtype=np.int64)
        x = rng.standard_normal((batch, longest, s["dim"])).astype(np.float32)
        for b, length in enumerate(lengths):
            x[b, length:] = 0.0
        xs[n], lens[n] = x, lengths
    return xs, lens


def flat_feed(inputs: dict[str, dict], xs: dict, lens: dict) -> list:
    out = []
    for n, s in inputs.items():
        out += [xs[n]] + ([lens[n]] if s["kind"] != "vector" else [])
    return out


class OnnxBackend:
    """An exported graph in onnxruntime: ``run(xs, lens) -> {head: raw output}`` (numpy)."""

    def __init__(self, path: str | Path, inputs: dict[str, dict], heads: list[str], threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError:
            raise EmotkError("--backend onnx needs the onnxruntime package (pip install onnxruntime)") from None
        path = Path(path)
        if not path.is_file():
            raise EmotkError(f"{path}: ONNX model not found (write it with 'emotk export-onnx MODEL_DIR {path}')")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for a corrupt file
            raise EmotkError(f"{path}: cannot load ONNX model: {e}".splitlines()[0]) from None
        self.inputs, self.heads = inputs, heads
        names, outs = io_names(inputs, heads)
        self.feed_names = [i.name for i in self.session.get_inputs()]  # an input the model ignores is pruned
        got_out = [o.name for o in self.session.get_outputs()]
        if not set(self.feed_names) <= set(names) or got_out != outs:
            raise EmotkError(f"{path}: graph inputs {self.feed_names} / outputs {got_out} do not match the model dir "
                             f"({names} / {outs}); export it again from this model dir")

    def run(self, xs: dict, lens: dict) -> dict[str, np.ndarray]:
        names, _ = io_names(self.inputs, self.heads)
        feed = {n: a for n, a in zip(names, flat_feed(self.inputs, xs, lens)) if n in self.feed_names}
        return dict(zip(self.heads, self.session.run(None, feed)))


def torch_outputs(net: nn.Module, inputs: dict[str, dict], heads: list[str], xs: dict, lens: dict) -> dict:
    flat = [torch.from_numpy(a) for a in flat_feed(inputs, xs, lens)]
    with torch.no_grad():
        out = FlatGraph(net, inputs, heads).eval()(*flat)
    return {h: o.numpy() for h, o in zip(heads, out)}


def max_difference(a: dict, b: dict, lens: dict, inputs: dict, clock: str | None) -> float:
    """Largest absolute difference over the heads' outputs (frame outputs at valid frames only)."""
    worst = 0.0
    for h in a:
        x, y = a[h], b[h]
        if x.ndim == 3 and clock is not None:
            for i, n in enumerate(lens[clock]):
                worst = max(worst, float(np.abs(x[i, :n] - y[i, :n]).max()))
        else:
            worst = max(worst, float(np.abs(x - y).max()))
    return worst


def export_onnx(model, out: str | Path, log: Callable[[str], None] = print) -> dict:
    """Write ``out`` (ONNX) for a loaded torch ``emotk.inference.Model``; checks parity with onnxruntime
    on a fresh random batch and refuses the file when outputs differ by ``PARITY_TOL`` or more."""
    import warnings

    if model.kind != "torch":
        raise EmotkError(f"{model.source}: a scikit-learn model has no ONNX export here; it runs as it is "
                         f"(skops) with 'emotk infer --model'")
    inputs, heads = model.meta["inputs"], list(model.meta["heads"])
    family = model.meta["model"]["name"]
    graph = FlatGraph(exportable(model.net.cpu()), inputs, heads).eval()
    xs, lens = example_batch(inputs, seed=0)
    names, outs = io_names(inputs, heads)
    axes = {}
    for n, s in inputs.items():
        axes[n] = {0: "batch"} if s["kind"] == "vector" else {0: "batch", 1: f"{n}_time"}
        if s["kind"] != "vector":
            axes[f"{n}_lengths"] = {0: "batch"}
    for h in heads:
        axes[h] = {0: "batch", 1: "time"} if model.meta["heads"][h]["kind"] == "frame_regression" else {0: "batch"}
    out = Path(out)
    with atomic_path(out) as tmp:
        try:
            with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer warnings
                warnings.simplefilter("ignore")
                torch.onnx.export(graph, tuple(torch.from_numpy(a) for a in flat_feed(inputs, xs, lens)), str(tmp),
                                  input_names=names, output_names=outs, dynamic_axes=axes, opset_version=OPSET,
                                  dynamo=False)
        except Exception as e:  # the exporter raises many types; its first line says what it could not express
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EmotkError(f"model family {family!r} cannot be exported to ONNX: {reason}") from None
        backend = OnnxBackend(tmp, inputs, heads)
        check_x, check_l = example_batch(inputs, seed=1, batch=4)
        clock = next((n for n, s in inputs.items() if s["kind"] != "vector"), None)
        try:
            got = backend.run(check_x, check_l)
        except Exception as e:  # onnxruntime's own types: a graph frozen to the traced shapes
            raise EmotkError(f"model family {family!r} cannot be exported to ONNX: the traced graph fails on other "
                             f"lengths ({str(e).strip().splitlines()[0]})") from None
        diff = max_difference(torch_outputs(model.net.cpu(), inputs, heads, check_x, check_l), got, check_l, inputs,
                              clock)
        if not diff < PARITY_TOL:
            raise EmotkError(f"model family {family!r}: the ONNX graph differs from PyTorch by {diff:.3g} "
                             f"(limit {PARITY_TOL:g}); not written")
    info = {"family": family, "opset": OPSET, "inputs": names, "outputs": outs, "parity_max_abs_diff": diff}
    import yaml

    write_text(out.with_name(out.name + ".yaml"), yaml.safe_dump(info, sort_keys=False))
    log(f"{out}: ONNX graph of {family} (opset {OPSET}), max |onnxruntime - PyTorch| = {diff:.2e} on a "
        f"random batch of varying lengths")
    return info
