"""Evaluation protocols as fold dirs: ``<out>/<fold>/{train,valid,test}`` subset data dirs.

Speaker-independent protocols (leave-one-speaker-out, k-fold over speakers, explicit
speaker lists) are checked for speaker overlap and refuse it.  The speaker-dependent
random split is named as such (``sd-random-*``) and marked in ``fold.yaml``, so a
report can never pass it off as speaker-independent.

Each fold dir holds ``fold.yaml``: protocol, whether it is speaker-independent, the
seed and the speakers of every part.  ``<out>/folds.txt`` lists the folds and is written
last: a split interrupted half-way has no folds.txt and is redone, never reused.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Sequence

import yaml

from emotk.data.datadir import DataDir, _copy_filtered, validate_data_dir
from emotk.errors import EmotkError
from emotk.fileio import atomic_dir, write_text

PROTOCOLS = ("loso", "kfold", "lists", "random")


def check_speaker_disjoint(parts: dict[str, set[str]], utt2spk: dict[str, str]) -> None:
    """Raise if any speaker has utterances in two parts."""
    seen: dict[str, str] = {}
    for part, utts in parts.items():
        for spk in sorted({utt2spk[u] for u in utts}):
            if spk in seen and seen[spk] != part:
                raise EmotkError(f"speaker {spk!r} is in both {seen[spk]} and {part}: speaker overlap refused")
            seen[spk] = part


def _utts_of(d: DataDir, spks: set[str]) -> set[str]:
    return {u for u, s in d.utt2spk.items() if s in spks}


def _valid_speakers(train_spks: Sequence[str], test_spks: set[str], all_spks: Sequence[str], n: int) -> list[str]:
    """The ``n`` speakers following the test speakers in sorted (cyclic) order: deterministic and rotating."""
    if n >= len(train_spks):
        raise EmotkError(f"cannot hold out {n} valid speakers from {len(train_spks)} training speakers")
    start = (max(all_spks.index(s) for s in test_spks) + 1) % len(all_spks)
    order = all_spks[start:] + all_spks[:start]
    return [s for s in order if s in train_spks][:n]


def _speaker_folds(spks: list[str], k: int, spk_counts: Counter, seed: int) -> list[list[str]]:
    """Partition speakers into ``k`` groups with balanced utterance counts (greedy, seeded)."""
    if not 2 <= k <= len(spks):
        raise EmotkError(f"k-fold needs 2 <= k <= number of speakers ({len(spks)}), got {k}")
    rng = random.Random(seed)
    order = spks[:]
    rng.shuffle(order)
    order.sort(key=lambda s: -spk_counts[s])
    groups: list[list[str]] = [[] for _ in range(k)]
    for s in order:
        min(groups, key=lambda g: (sum(spk_counts[x] for x in g), len(g))).append(s)
    return [sorted(g) for g in groups]


def _stratified_split(utts: list[str], labels: dict[str, str] | None, fractions: Sequence[float],
                      rng: random.Random) -> list[set[str]]:
    """Split utterances into len(fractions)+1 parts, stratified by label when labels are given."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for u in utts:
        by_label[labels[u] if labels else ""].append(u)
    parts: list[set[str]] = [set() for _ in range(len(fractions) + 1)]
    for label in sorted(by_label):
        group = sorted(by_label[label])
        rng.shuffle(group)
        start = 0
        for i, frac in enumerate(fractions):
            n = round(frac * len(group))
            parts[i + 1].update(group[start:start + n])
            start += n
        parts[0].update(group[start:])
    return parts


def plan_folds(d: DataDir, protocol: str, *, k: int = 5, n_valid_speakers: int = 1,
               test_fraction: float = 0.2, valid_fraction: float = 0.1, repeats: int = 1, seed: int = 0,
               train_speakers: Sequence[str] = (), valid_speakers: Sequence[str] = (),
               test_speakers: Sequence[str] = ()) -> dict[str, dict]:
    """Return ``{fold_name: {"train": utts, "valid": utts, "test": utts, "meta": {...}}}``."""
    spks = d.speakers
    spk_counts = Counter(d.utt2spk.values())
    folds: dict[str, dict] = {}

    def add(name: str, test_spks: set[str], valid_spks: set[str], train_spks: set[str]):
        parts = {"train": _utts_of(d, train_spks), "valid": _utts_of(d, valid_spks), "test": _utts_of(d, test_spks)}
        check_speaker_disjoint(parts, d.utt2spk)
        folds[name] = {**parts, "meta": {
            "protocol": protocol, "speaker_independent": True, "seed": seed,
            "train_speakers": sorted(train_spks), "valid_speakers": sorted(valid_spks),
            "test_speakers": sorted(test_spks)}}

    if protocol == "loso":
        if len(spks) < 3:
            raise EmotkError(f"leave-one-speaker-out needs at least 3 speakers, {d.path} has {len(spks)}")
        for s in spks:
            rest = [x for x in spks if x != s]
            valid = set(_valid_speakers(rest, {s}, spks, n_valid_speakers))
            add(f"loso-{s}", {s}, valid, set(rest) - valid)
    elif protocol == "kfold":
        groups = _speaker_folds(spks, k, spk_counts, seed)
        for i, group in enumerate(groups, start=1):
            rest = [x for x in spks if x not in group]
            valid = set(_valid_speakers(rest, set(group), spks, n_valid_speakers))
            add(f"kfold{k}-{i}", set(group), valid, set(rest) - valid)
    elif protocol == "lists":
        named = {"train": set(train_speakers), "valid": set(valid_speakers), "test": set(test_speakers)}
        for part, group in named.items():
            unknown = sorted(group - set(spks))
            if unknown:
                raise EmotkError(f"{part} speaker {unknown[0]!r} is not in {d.path}")
            if part != "valid" and not group:
                raise EmotkError(f"explicit split needs at least one {part} speaker")
        add("lists", named["test"], named["valid"], named["train"])
    elif protocol == "random":
        labels = d.table("utt2emo") if d.has("utt2emo") else None
        for r in range(1, repeats + 1):
            rng = random.Random(seed * 1000 + r)
            train, test, valid = _stratified_split(d.utts, labels, [test_fraction, valid_fraction], rng)
            folds[f"sd-random-{r}"] = {"train": train, "valid": valid, "test": test, "meta": {
                "protocol": "random", "speaker_independent": False, "seed": seed * 1000 + r,
                "test_fraction": test_fraction, "valid_fraction": valid_fraction,
                "note": "speaker-dependent: the same speakers appear in train, valid and test"}}
    else:
        raise EmotkError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    for name, f in folds.items():
        for part in ("train", "test"):
            if not f[part]:
                raise EmotkError(f"fold {name}: {part} part is empty")
    return folds


def split_data_dir(src: str | Path, out: str | Path, protocol: str, **kwargs) -> list[str]:
    """Write the folds of ``protocol`` under ``out``; returns the fold names.

    ``out`` is replaced as a whole, so a changed protocol or seed never leaves stale folds behind.
    """
    d = validate_data_dir(src, check_files=False)
    folds = plan_folds(d, protocol, **kwargs)
    with atomic_dir(out) as tmp:
        for name, f in folds.items():
            for part in ("train", "valid", "test"):
                if f[part]:
                    (tmp / name / part).mkdir(parents=True)
                    _copy_filtered(d, tmp / name / part, f[part])
            meta = dict(f["meta"], counts={p: len(f[p]) for p in ("train", "valid", "test")})
            write_text(tmp / name / "fold.yaml", yaml.safe_dump(meta, sort_keys=False))
        write_text(tmp / "folds.txt", "".join(f"{n}\n" for n in folds))
    return list(folds)


def read_folds(out: str | Path) -> list[str]:
    p = Path(out) / "folds.txt"
    if not p.is_file():
        raise EmotkError(f"{out}: no folds.txt (split incomplete or not run)")
    return p.read_text(encoding="utf-8").split()
