"""Utterance-level outputs of a torch model on a data set: the one forward path of validation and
inference.

Per head: class posteriors ``[K]`` (softmax), regression values ``[1]``, or frame outputs ``[T, K]``.
When the data set holds several pieces per utterance (``segments``), utterance-level heads get the
mean of their pieces' posteriors or values (``emotk.training.segments.aggregate``).
"""

from __future__ import annotations

import numpy as np
import torch

from emotk.training.dataset import SerDataset, eval_batches, loader
from emotk.training.segments import aggregate


def autocast(device: torch.device, enabled: bool):
    """Mixed precision: float16 on CUDA (with a GradScaler), bfloat16 on CPU."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


def resolve_device(name: str) -> torch.device:
    from emotk.errors import EmotkError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EmotkError("device 'cuda' requested but CUDA is not available (use 'auto' or 'cpu')")
    return torch.device(name)


def piece_outputs(model, ds: SerDataset, head_kinds: dict[str, str], batch_size: int, device: torch.device,
                  amp: bool = False, num_workers: int = 0, losses: dict | None = None):
    """``({head: [output of piece i]}, mean valid loss per head)`` in eval mode."""
    model.eval()
    outs: dict[str, list] = {h: [None] * len(ds) for h in head_kinds}
    totals = {h: 0.0 for h in (losses or {})}
    clock = ds.clock.name if ds.clock is not None else None
    with torch.no_grad():
        for batch in loader(ds, eval_batches(ds, batch_size), num_workers, device.type == "cuda"):
            b = batch.to(device)
            with autocast(device, amp):
                out, _ = model(b.inputs, b.lengths)
            frames = b.lengths[clock] if clock else None
            for h, kind in head_kinds.items():
                y = out[h].float()
                if losses:
                    totals[h] += float(losses[h](y, b.targets[h], frames)) * len(b.index)
                y = y.cpu()
                for j, i in enumerate(b.index):
                    if kind == "class":
                        outs[h][i] = torch.softmax(y[j], -1).numpy()
                    elif kind == "regression":
                        outs[h][i] = y[j].reshape(1).numpy()
                    else:
                        outs[h][i] = y[j, : int(frames[j])].numpy()
    return outs, {h: t / max(len(ds), 1) for h, t in totals.items()}


def utterance_outputs(ds: SerDataset, outs: dict[str, list], head_kinds: dict[str, str]) -> dict[str, dict[str, np.ndarray]]:
    """``{head: {utt: output}}``; pieces aggregated for utterance-level heads."""
    result = {}
    for h, kind in head_kinds.items():
        if kind == "frame_regression":  # one piece per utterance (segments are refused for frame heads)
            result[h] = {ds.utts[ds.owner[i]]: o for i, o in enumerate(outs[h])}
        else:
            agg = aggregate(ds.owner, outs[h], len(ds.utts))
            result[h] = dict(zip(ds.utts, agg))
    return result
