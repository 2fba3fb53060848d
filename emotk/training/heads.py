"""Heads: what a model predicts, from which label table, with which loss and metric.

A head of kind

- ``class`` reads ``<utt> <label>`` (utt2emo, or any such table) and is trained with weighted
  cross-entropy; its metric is UA over utterances;
- ``regression`` reads ``<utt> <float>`` (utt2arousal, ...) and is trained with 1 - CCC or MSE
  over the batch's utterances; its metric is CCC over utterances;
- ``frame_regression`` reads labels.scp (T x K per utterance, with label_names and
  label_frame_shift) and is trained with 1 - CCC or MSE over the valid frames; its metric is the
  CCC per label dimension over all frames, averaged.

The class names (or label dims) come from the training set and are stored with the model; a
valid or test label outside them is an error naming the utterance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from emotk.config import METRIC
from emotk.data.datadir import DataDir, class_names_file, read_table
from emotk.data.predictions import common_length, read_frame_label
from emotk.errors import EmotkError
from emotk.metrics.classification import ua
from emotk.metrics.regression import ccc
from emotk.training.losses import ccc_loss, inverse_frequency_weights, mse_loss


@dataclass
class HeadData:
    """One head's labels on one data dir: class indices, floats, or the labels.scp index (lazy)."""

    name: str
    spec: dict
    names: list[str]  # classes, the head's own name (regression) or label dims (frame regression)
    targets: dict = field(default_factory=dict)  # utt -> int | float (class, regression)
    label_frame_shift: float | None = None
    columns: list[int] | None = None  # frame regression: columns of labels.scp

    @property
    def kind(self) -> str:
        return self.spec["kind"]

    @property
    def dim(self) -> int:
        return 1 if self.kind == "regression" else len(self.names)

    @property
    def metric(self) -> str:
        return METRIC[self.kind]

    def counts(self, utts: list[str]) -> list[int]:
        return np.bincount([self.targets[u] for u in utts], minlength=len(self.names)).tolist()

    def frames(self, d: DataDir, utt: str) -> np.ndarray:
        """Frame-level labels ``[T, K]`` of one utterance (read when an example is built)."""
        lab = read_frame_label(d, self.spec["labels"], utt, len(d.label_names))
        return np.ascontiguousarray(lab[:, self.columns], dtype=np.float32)


def read_class_names(d: DataDir, label_file: str) -> list[str]:
    """The data dir's class names file of ``label_file`` if present (``emo_names`` for utt2emo, ``<x>_names``
    for ``utt2<x>``: see ``class_names_file``), else the sorted labels seen in ``label_file``."""
    names_file = class_names_file(label_file)
    if d.has(names_file):
        names = d.scalar(names_file).split()
        if len(set(names)) != len(names) or not names:
            raise EmotkError(f"{d.path / names_file}: class names must be non-empty and distinct")
        return names
    return sorted(set(_string_table(d, label_file).values()))


def _string_table(d: DataDir, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in read_table(d.path / name, parse=str).items()}


def load_head(d: DataDir, name: str, spec: dict, names: list[str] | None = None) -> HeadData:
    """The labels of head ``name`` for every utterance of ``d``; ``names`` from the training set."""
    kind, table = spec["kind"], spec["labels"]
    d.require(table, hint=f"head {name!r} reads it (heads.{name}.labels)")
    path = d.path / table
    if kind == "class":
        labels = _string_table(d, table)
        names = list(names) if names is not None else read_class_names(d, table)
        if len(names) < 2:
            raise EmotkError(f"{path}: a classifier needs at least 2 classes, found {names}")
        index = {n: i for i, n in enumerate(names)}
        targets = {}
        for utt in d.utts:
            if utt not in labels:
                raise EmotkError(f"{path}: utterance {utt!r} has no label")
            if labels[utt] not in index:
                raise EmotkError(f"{path}: utterance {utt!r} has label {labels[utt]!r}, not one of the training "
                                 f"classes ({' '.join(names)})")
            targets[utt] = index[labels[utt]]
        return HeadData(name, spec, names, targets)
    if kind == "regression":
        raw = _string_table(d, table)
        targets = {}
        for utt in d.utts:
            try:
                targets[utt] = float(raw[utt])
            except KeyError:
                raise EmotkError(f"{path}: utterance {utt!r} has no value") from None
            except ValueError:
                raise EmotkError(f"{path}: utterance {utt!r}: {raw[utt]!r} is not a number") from None
            if not math.isfinite(targets[utt]):
                raise EmotkError(f"{path}: utterance {utt!r} has a NaN or infinite value")
        return HeadData(name, spec, [name], targets)
    all_names = d.label_names
    wanted = list(names or spec["dims"] or all_names)
    for n in wanted:
        if n not in all_names:
            raise EmotkError(f"{d.path / 'label_names'}: label dimension {n!r} not found ({' '.join(all_names)})")
    scp = d.table(table)
    for utt in d.utts:
        if utt not in scp:
            raise EmotkError(f"{path}: utterance {utt!r} has no labels")
    return HeadData(name, spec, wanted, label_frame_shift=float(d.scalar("label_frame_shift")),
                    columns=[all_names.index(n) for n in wanted])


# Losses ------------------------------------------------------------------------------------

def head_loss(head: HeadData, class_weights: torch.Tensor | None):
    """``loss(output, target, lengths)`` of a head (``lengths``: the frames of a frame-regression batch)."""
    kind, loss = head.kind, head.spec["loss"]
    if kind == "class":
        def ce(logits, target, lengths):
            w = class_weights.to(logits.device) if class_weights is not None else None
            return F.cross_entropy(logits.float(), target, weight=w)
        return ce
    fn = {"ccc": ccc_loss, "mse": mse_loss}[loss]
    if kind == "frame_regression":
        return fn

    def utterance_level(pred, target, lengths):  # [B, 1] vs [B]: one "sequence" of B frames
        return fn(pred.reshape(1, -1, 1), target.reshape(1, -1, 1), torch.tensor([target.numel()]))
    return utterance_level


def class_weights_of(head: HeadData, utts: list[str]) -> torch.Tensor | None:
    if head.kind == "class" and head.spec["class_weights"]:
        return inverse_frequency_weights(head.counts(utts))
    return None


# Metrics -----------------------------------------------------------------------------------

def head_metric(head: HeadData, utts: list[str], outputs: dict[str, np.ndarray], refs: dict[str, np.ndarray] | None = None) -> float:
    """The head's valid metric from utterance-level outputs (posteriors, values, or [T, K] frames)."""
    if head.kind == "class":
        ref = [head.names[head.targets[u]] for u in utts]
        hyp = [head.names[int(np.argmax(outputs[u]))] for u in utts]
        return ua(ref, hyp, head.names)
    if head.kind == "regression":
        return ccc(np.array([float(outputs[u][0]) for u in utts]), np.array([head.targets[u] for u in utts]))
    pred = np.concatenate([outputs[u] for u in utts])
    ref = np.concatenate([refs[u] for u in utts])
    return float(np.mean([ccc(pred[:, k], ref[:, k]) for k in range(ref.shape[1])]))


def align_frames(feats_len: int, labels: np.ndarray, table, utt: str) -> int:
    """The common length of features and frame labels; an error naming the utterance when they differ
    by more than ``MAX_FRAME_MISMATCH`` frames."""
    return common_length(feats_len, labels.shape[0],
                         f"{table}: utterance {utt!r} has {labels.shape[0]} label frames but {feats_len} feature frames")
