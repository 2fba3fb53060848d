"""Streamed training and evaluation data: a torch ``Dataset`` of examples read lazily from a data
dir, length-bucketed batches, and padding.

An example is one piece of one utterance (the whole utterance unless ``segments`` says otherwise,
see ``emotk.training.segments``). Its inputs are read from disk when its batch is built, in the
DataLoader's worker processes when ``train.num_workers`` > 0, so the memory a run holds is a few
batches whatever the corpus size. Batches group examples of similar length: utterances are sorted by
their length jittered by up to +-10 % (from utt2num_frames / utt2dur, known without reading), cut
into batches, and the batches are shuffled, so batches differ between epochs while padding stays small.

Training batches hold ``Example`` items that carry their epoch: with on-the-fly noise
(``emotk.augment.online``) the noise of an example is drawn from ``(epoch, utterance id)``, so it
does not depend on the worker or the order in which examples are built.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np
import torch

from emotk.augment.online import OnlineAugment
from emotk.data.datadir import DataDir
from emotk.errors import EmotkError
from emotk.training.heads import HeadData, align_frames
from emotk.training.inputs import Source
from emotk.training.segments import Piece, cut, pieces, to_units


@dataclass
class Batch:
    index: list[int]  # example indices
    inputs: dict[str, torch.Tensor]  # name -> [B, T, D] (feats, wav as D=1) or [B, D] (vector), zero-padded
    lengths: dict[str, torch.Tensor]  # name -> [B] long (vectors: ones)
    targets: dict[str, torch.Tensor]  # head -> [B] long (class), [B] float (regression), [B, T, K] (frames)

    def to(self, device: torch.device) -> "Batch":
        """Lengths stay on the CPU: packing sequences needs them there."""
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return Batch(self.index, {k: move(v) for k, v in self.inputs.items()}, self.lengths,
                     {k: move(v) for k, v in self.targets.items()})

    def pin_memory(self) -> "Batch":
        return Batch(self.index, {k: v.pin_memory() for k, v in self.inputs.items()}, self.lengths,
                     {k: v.pin_memory() for k, v in self.targets.items()})


class Example(NamedTuple):
    """A training example: its index, its epoch (the key of its noise draw) and an optional random crop."""

    index: int
    epoch: int | None = None
    crop: tuple[int, int] | None = None  # (first frame, frames) of the clock input


class LiveCounter:
    """Counts the utterance arrays alive at once (the bounded-memory guarantee, checked in tests)."""

    def __init__(self):
        self.live = 0
        self.peak = 0

    def track(self, x: np.ndarray) -> np.ndarray:
        self.live += 1
        self.peak = max(self.peak, self.live)
        weakref.finalize(x, self._release)
        return x

    def _release(self) -> None:
        self.live -= 1


class SerDataset(torch.utils.data.Dataset):
    """Examples of one data dir: ``(utterance, piece)`` pairs with their inputs and head targets."""

    def __init__(self, d: DataDir, sources: dict[str, Source], heads: dict[str, HeadData] | None,
                 segments: dict, utts: list[str] | None = None, augment: OnlineAugment | None = None):
        self.d, self.sources, self.heads, self.segments = d, sources, heads or {}, segments
        self.augment = augment  # noise for examples that carry an epoch (training batches only)
        self.utts = list(utts if utts is not None else d.utts)
        timed = [s for s in sources.values() if s.temporal]
        self.clock = timed[0] if timed else None  # the input whose length defines the pieces
        self.owner: list[int] = []
        self.pieces: list[Piece] = []
        self.lengths: list[int] = []
        for u, utt in enumerate(self.utts):
            n = self.clock.length(utt) if self.clock else 1
            duration = n / self.clock.rate if self.clock else 0.0
            for p in (pieces(duration, segments) if self.clock else [Piece(0.0, 0.0)]):
                self.owner.append(u)
                self.pieces.append(p)
                self.lengths.append(to_units(p, self.clock.rate, n)[2] if self.clock else 1)
        self.counter: LiveCounter | None = None

    def __len__(self) -> int:
        return len(self.pieces)

    def __getitem__(self, item) -> tuple[int, dict[str, np.ndarray], dict[str, object]]:
        """``item``: an example index (evaluation), or an ``Example`` (training)."""
        i, epoch, crop = item if isinstance(item, Example) else (item, None, None)
        utt, piece = self.utts[self.owner[i]], self.pieces[i]
        mix = self.augment.mix_for(epoch, utt) if self.augment is not None and epoch is not None else None
        inputs = {}
        for name, src in self.sources.items():
            x = src.read(utt) if mix is None else src.read_mixed(utt, mix)
            if self.counter is not None:
                self.counter.track(x)
            if src.temporal:
                x = cut(x, *to_units(piece, src.rate, x.shape[0]))
                if crop is not None and src is self.clock:
                    x = x[crop[0]: crop[0] + crop[1]]
            inputs[name] = x
        targets = {}
        for name, head in self.heads.items():
            if head.kind != "frame_regression":
                targets[name] = head.targets[utt]
                continue
            lab = head.frames(self.d, utt)
            lab = cut(lab, *to_units(piece, self.clock.rate, lab.shape[0]))
            if crop is not None:
                lab = lab[crop[0]: crop[0] + crop[1]]
            n = align_frames(inputs[self.clock.name].shape[0], lab, self.d.path / head.spec["labels"], utt)
            inputs[self.clock.name] = inputs[self.clock.name][:n]
            targets[name] = lab[:n]
        return i, inputs, targets


def _pad(mats: list[np.ndarray]) -> torch.Tensor:
    out = np.zeros((len(mats), max(m.shape[0] for m in mats)) + mats[0].shape[1:], dtype=np.float32)
    for i, m in enumerate(mats):
        out[i, : m.shape[0]] = m
    return torch.from_numpy(out)


def collate(examples: list[tuple[int, dict, dict]], kinds: dict[str, str], head_kinds: dict[str, str]) -> Batch:
    index = [e[0] for e in examples]
    inputs, lengths = {}, {}
    for name, kind in kinds.items():
        xs = [e[1][name] for e in examples]
        dims = {x.shape[1] for x in xs}
        if len(dims) > 1:
            raise EmotkError(f"input {name!r}: dimensions differ between utterances ({sorted(dims)})")
        if kind == "vector":
            inputs[name] = torch.from_numpy(np.stack([x[0] for x in xs]))
            lengths[name] = torch.ones(len(xs), dtype=torch.long)
        else:
            inputs[name] = _pad(xs)
            lengths[name] = torch.tensor([x.shape[0] for x in xs], dtype=torch.long)
    targets = {}
    for name, kind in head_kinds.items():
        ys = [e[2][name] for e in examples]
        if kind == "class":
            targets[name] = torch.tensor(ys, dtype=torch.long)
        elif kind == "regression":
            targets[name] = torch.tensor(ys, dtype=torch.float32)
        else:
            targets[name] = _pad(ys)
    return Batch(index, inputs, lengths, targets)


class Collate:
    """Picklable collate function for DataLoader workers."""

    def __init__(self, ds: SerDataset):
        self.kinds = {n: s.kind for n, s in ds.sources.items()}
        self.head_kinds = {n: h.kind for n, h in ds.heads.items()}

    def __call__(self, examples):
        return collate(examples, self.kinds, self.head_kinds)


def train_batches(ds: SerDataset, batch_size: int, rng: np.random.Generator, max_frames: int | None = None,
                  epoch: int | None = None) -> list[list[Example]]:
    """One epoch's batches of examples (each with the epoch, and a crop when longer than ``max_frames``)."""
    lengths = np.asarray(ds.lengths)
    crops = {}
    if max_frames is not None and ds.clock is not None:
        for i in np.flatnonzero(lengths > max_frames):
            crops[int(i)] = int(rng.integers(0, lengths[i] - max_frames + 1))
        lengths = np.minimum(lengths, max_frames)
    order = np.argsort(lengths * rng.uniform(0.9, 1.1, size=len(lengths)), kind="stable")
    groups = [order[i: i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    rng.shuffle(groups)
    return [[Example(i, epoch, (crops[i], max_frames) if i in crops else None) for i in g] for g in groups]


def eval_batches(ds: SerDataset, batch_size: int) -> list[list[int]]:
    """Whole pieces sorted by length, no randomness."""
    order = np.argsort(np.asarray(ds.lengths), kind="stable").tolist()
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


def loader(ds: SerDataset, batches: list[list], num_workers: int = 0, pin_memory: bool = False) -> Iterator[Batch]:
    """Batches through a torch DataLoader (worker processes read and pad while the model trains)."""
    dl = torch.utils.data.DataLoader(ds, batch_sampler=batches, collate_fn=Collate(ds), num_workers=num_workers,
                                     pin_memory=pin_memory, persistent_workers=False)
    it = iter(dl)
    while True:
        try:
            yield next(it)
        except StopIteration:
            return
        except EmotkError:
            raise
        except Exception as e:  # a worker's EmotkError arrives wrapped with its traceback: keep its one line
            text = str(e).strip().splitlines()
            if text and "EmotkError: " in text[-1]:
                raise EmotkError(text[-1].split("EmotkError: ", 1)[1]) from None
            raise
