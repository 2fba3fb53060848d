"""Training data: features through the configured pipeline, labels, padded length-bucketed batches.

Feature pipeline (the same in training and inference):
    feats.scp -> z-norm (speaker: cmvn.scp stats of the utterance's speaker, as Kaldi's
    ``apply-cmvn --norm-vars=true --utt2spk``; utterance: the utterance's own mean and std;
    none) -> stack n frames -> splice [left, right].
A data set is held in memory as float32 matrices (EmoDB, eNTERFACE, RECOLA fit easily).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from emotk.data.ark import read_matrix
from emotk.data.datadir import DataDir, validate_data_dir
from emotk.errors import EmotkError

# Frame-level labels and features (after stacking) may differ by this many frames at the end.
MAX_FRAME_MISMATCH = 2


def stack_splice(mat: np.ndarray, stack: int, splice: list[int]) -> np.ndarray:
    """The frame-context part of the pipeline (after z-norm): stack ``stack`` frames, then splice."""
    if stack > 1 or splice[0] or splice[1]:
        from emotk.features.transforms import splice_frames, stack_frames

        if stack > 1:
            mat = stack_frames(mat, stack)
        if splice[0] or splice[1]:
            mat = splice_frames(mat, splice[0], splice[1])
    return np.ascontiguousarray(mat, dtype=np.float32)


def load_features(d: DataDir, features: dict, utts: list[str] | None = None) -> dict[str, np.ndarray]:
    """``{utt: [T, D]}`` for ``utts`` (default all) of a data dir, through the pipeline."""
    from emotk.features.cmvn import load_normalized

    d.require("feats.scp", hint="run 'emotk extract-fbank' or 'emotk extract-mfcc' first")
    out = {}
    for utt, mat in load_normalized(d.path, utts, norm=features["cmvn"]):
        if mat.ndim != 2 or mat.shape[0] == 0:
            raise EmotkError(f"{d.path / 'feats.scp'}: utterance {utt!r}: expected a non-empty T x D matrix, got {mat.shape}")
        out[utt] = stack_splice(mat, features["stack"], features["splice"])
    return out


@dataclass
class Dataset:
    """Features and targets of one data dir; ``targets`` are class indices or ``[T, K]`` label matrices
    (None for inference)."""

    path: Path
    utts: list[str]
    feats: list[np.ndarray]
    targets: list | None
    kind: str
    names: list[str]  # class names or label dimension names
    label_frame_shift: float | None = None
    counts: list[int] = field(default_factory=list)  # class task: training examples per class

    @property
    def input_dim(self) -> int:
        return int(self.feats[0].shape[1])

    @property
    def lengths(self) -> np.ndarray:
        return np.array([f.shape[0] for f in self.feats])


def read_class_names(d: DataDir, label_file: str) -> list[str]:
    """The data dir's ``emo_names`` if present, else the sorted labels seen in ``label_file``."""
    if d.has("emo_names"):
        names = d.scalar("emo_names").split()
        if len(set(names)) != len(names) or not names:
            raise EmotkError(f"{d.path / 'emo_names'}: class names must be non-empty and distinct")
        return names
    return sorted(set(d.table(label_file).values()))


def load_dataset(path: str | Path, features: dict, task: dict, names: list[str] | None = None,
                 feature_frame_shift: float | None = None) -> Dataset:
    """Validate ``path`` and load it for ``task``.

    ``names`` (classes or label dims) come from the training set; give them for valid/test sets,
    whose labels must then be among them.
    """
    kind, label_file = task["kind"], task["label_file"]
    d = validate_data_dir(path, require=["feats.scp", label_file])
    if kind == "class":
        labels = d.table(label_file)
        if names is None:
            names = read_class_names(d, label_file)
        index = {n: i for i, n in enumerate(names)}
        for utt in d.utts:
            if labels[utt] not in index:
                raise EmotkError(f"{d.path / label_file}: utterance {utt!r} has label {labels[utt]!r}, "
                                 f"not one of the training classes ({' '.join(names)})")
        if len(names) < 2:
            raise EmotkError(f"{d.path / label_file}: a classifier needs at least 2 classes, found {names}")
        feats = load_features(d, features)
        targets = [index[labels[u]] for u in d.utts]
        counts = np.bincount(targets, minlength=len(names)).tolist()
        return Dataset(d.path, d.utts, list(feats.values()), targets, kind, list(names), counts=counts)
    return _load_frame_regression(d, features, task, names, feature_frame_shift)


def _load_frame_regression(d: DataDir, features: dict, task: dict, names: list[str] | None,
                           feature_frame_shift: float | None) -> Dataset:
    all_names = d.label_names
    wanted = names or task["label_dims"] or all_names
    for n in wanted:
        if n not in all_names:
            raise EmotkError(f"{d.path / 'label_names'}: label dimension {n!r} not found ({' '.join(all_names)})")
    cols = [all_names.index(n) for n in wanted]
    label_shift = float(d.scalar("label_frame_shift"))
    feat_shift = d.frame_shift * features["stack"]
    if not math.isclose(feat_shift, label_shift, rel_tol=1e-3):
        raise EmotkError(f"{d.path}: features are {feat_shift:g} s per frame after stacking {features['stack']}, "
                         f"labels {label_shift:g} s (label_frame_shift); set features.stack so they match")
    if feature_frame_shift is not None and not math.isclose(feat_shift, feature_frame_shift, rel_tol=1e-3):
        raise EmotkError(f"{d.path}: frame shift {feat_shift:g} s differs from the training set's {feature_frame_shift:g} s")
    feats = load_features(d, features)
    label_scp = d.table("labels.scp")
    out_feats, targets = [], []
    for utt in d.utts:
        lab = read_matrix(d.resolve(label_scp[utt]))
        if lab.ndim != 2 or lab.shape[1] != len(all_names):
            raise EmotkError(f"{d.path / 'labels.scp'}: utterance {utt!r}: expected T x {len(all_names)} labels, got {lab.shape}")
        f = feats[utt]
        if abs(f.shape[0] - lab.shape[0]) > MAX_FRAME_MISMATCH:
            raise EmotkError(f"{d.path / 'labels.scp'}: utterance {utt!r} has {lab.shape[0]} label frames but "
                             f"{f.shape[0]} feature frames (more than {MAX_FRAME_MISMATCH} apart)")
        n = min(f.shape[0], lab.shape[0])
        out_feats.append(f[:n])
        targets.append(np.ascontiguousarray(lab[:n, cols], dtype=np.float32))
    return Dataset(d.path, d.utts, out_feats, targets, "frame_regression", list(wanted), label_frame_shift=label_shift)


@dataclass
class Batch:
    index: list[int]  # positions in the dataset
    x: torch.Tensor  # [B, T, D], zero-padded
    lengths: torch.Tensor  # [B] long
    y: torch.Tensor  # [B] long (class) or [B, T, K] float (frame regression, zero-padded)

    def to(self, device: torch.device) -> "Batch":
        """Lengths stay on the CPU: packing sequences needs them there."""
        return Batch(self.index, self.x.to(device, non_blocking=True), self.lengths, self.y.to(device, non_blocking=True))


def _pad(mats: list[np.ndarray]) -> torch.Tensor:
    out = np.zeros((len(mats), max(m.shape[0] for m in mats)) + mats[0].shape[1:], dtype=np.float32)
    for i, m in enumerate(mats):
        out[i, : m.shape[0]] = m
    return torch.from_numpy(out)


def collate(ds: Dataset, index: list[int], crops: dict[int, int] | None = None, max_frames: int | None = None) -> Batch:
    """Pad the examples ``index``; ``crops[i]`` is the first frame of a ``max_frames`` window of example i."""
    xs, ys = [], []
    for i in index:
        x = ds.feats[i]
        y = ds.targets[i] if ds.targets is not None else None
        if crops and i in crops:
            s = slice(crops[i], crops[i] + max_frames)
            x = x[s]
            if ds.kind == "frame_regression":
                y = y[s]
        xs.append(x)
        ys.append(y)
    lengths = torch.tensor([x.shape[0] for x in xs], dtype=torch.long)
    if ds.targets is None:
        y = torch.zeros(0)
    else:
        y = torch.tensor(ys, dtype=torch.long) if ds.kind == "class" else _pad(ys)
    return Batch(list(index), _pad(xs), lengths, y)


def num_batches(ds: Dataset, batch_size: int) -> int:
    return -(-len(ds.utts) // batch_size)


def train_batches(ds: Dataset, batch_size: int, rng: np.random.Generator, max_frames: int | None = None) -> Iterator[Batch]:
    """One epoch of batches of similar lengths, in random order.

    Utterances are sorted by length jittered by up to +-10 %, so batches differ between epochs
    while padding stays small; utterances longer than ``max_frames`` get a random crop.
    """
    lengths = ds.lengths
    crops = {}
    if max_frames is not None:
        for i in np.flatnonzero(lengths > max_frames):
            crops[int(i)] = int(rng.integers(0, lengths[i] - max_frames + 1))
        lengths = np.minimum(lengths, max_frames)
    order = np.argsort(lengths * rng.uniform(0.9, 1.1, size=len(lengths)), kind="stable")
    groups = [order[i: i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    rng.shuffle(groups)
    for g in groups:
        yield collate(ds, g, crops, max_frames)


def eval_batches(ds: Dataset, batch_size: int) -> Iterator[Batch]:
    """Full-length utterances sorted by length, no randomness."""
    order = np.argsort(ds.lengths, kind="stable")
    for i in range(0, len(order), batch_size):
        yield collate(ds, order[i: i + batch_size].tolist())
