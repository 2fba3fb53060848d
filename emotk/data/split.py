"""Evaluation protocols as fold dirs: ``<out>/<fold>/{train,valid,test}`` subset data dirs.

Protocols: ``loso`` (leave one speaker out), ``kfold`` (speaker groups), ``lists`` (explicit
speakers), ``logo`` (leave one group out over a named grouping: a ``utt2<group>`` or
``spk2<group>`` table, e.g. IEMOCAP sessions), ``tvt`` (a random partition of the SPEAKERS into
train/valid/test by ``speaker_fractions``, paper 002's 70:10:20; folds ``tvt-1`` ...) and
``random`` (speaker-dependent, named ``sd-random-*``).  ``loso``, ``kfold`` and ``logo`` hold out
``n_valid_speakers`` speakers of the training side as the valid set (model selection).

Text independence (``text_folds``, for corpora with fixed sentences, from ``utt2text``): each
speaker fold is split further by sentence groups; fold ``<fold>-text<g>`` tests the test
speakers' utterances of the sentences in group ``g`` and trains/validates on the other speakers'
utterances of the other sentences.  Utterances of train and valid speakers with a test sentence
are dropped (counted in fold.yaml ``dropped``); every utterance is tested exactly once.

Every fold is checked by code before anything is written: no utterance in two parts; no
speaker in two parts unless the protocol is speaker-dependent; no test sentence in train or
valid for text-independent folds.  A failed check refuses the split; the checks and their
results are recorded in ``fold.yaml`` (``checks``), beside the protocol, the seed and the
speakers of every part.  ``<out>/folds.txt`` lists the folds; the folds dir is built under a
temporary name and renamed when complete, so a split interrupted half-way is redone, never
reused.  A re-run giving the very same folds keeps the folds dir (and what later stages wrote
inside it); any difference replaces it as a whole.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Sequence

import yaml

from emotk.data.datadir import DataDir, _copy_filtered, read_table, validate_data_dir
from emotk.errors import EmotkError
from emotk.fileio import atomic_dir, write_text

PROTOCOLS = ("loso", "kfold", "lists", "logo", "tvt", "random")
PARTS = ("train", "valid", "test")


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


def parse_speaker_fractions(value: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.7:0.1:0.2"`` (train:valid:test shares of the speakers) -> three floats, checked."""
    try:
        parts = [float(x) for x in (value.split(":") if isinstance(value, str) else value)]
    except ValueError:
        parts = []
    if len(parts) != 3 or any(not 0 <= x <= 1 for x in parts):
        raise EmotkError(f"speaker fractions {value!r}: expected TRAIN:VALID:TEST, three shares in [0, 1] (e.g. 0.7:0.1:0.2)")
    if abs(sum(parts) - 1) > 1e-6:
        raise EmotkError(f"speaker fractions {value!r}: the shares sum to {sum(parts):g}, not 1")
    return parts[0], parts[1], parts[2]


def _speaker_partition(spks: Sequence[str], fractions: tuple[float, float, float],
                       rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    """Shuffled speakers cut into train/valid/test: round(share x speakers) valid and test, the rest train."""
    n = len(spks)
    n_valid, n_test = round(fractions[1] * n), round(fractions[2] * n)
    if fractions[1] > 0:
        n_valid = max(n_valid, 1)
    n_test = max(n_test, 1)
    if n - n_valid - n_test < 1:
        raise EmotkError(f"speaker fractions {':'.join(f'{x:g}' for x in fractions)} leave no training speaker "
                         f"among {n} speakers ({n_valid} valid, {n_test} test)")
    order = sorted(spks)
    rng.shuffle(order)
    return (sorted(order[n_valid + n_test:]), sorted(order[:n_valid]), sorted(order[n_valid:n_valid + n_test]))


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


def check_fold(parts: dict[str, set[str]], utt2spk: dict[str, str], speaker_independent: bool,
               utt2text: dict[str, str] | None = None) -> dict:
    """Check a fold's parts and return what was checked with the result; raise on a violation."""
    if speaker_independent:  # first: a shared speaker is the more telling message
        check_speaker_disjoint(parts, utt2spk)
    seen: dict[str, str] = {}
    for part, utts in parts.items():
        for u in sorted(utts):
            if u in seen:
                raise EmotkError(f"utterance {u!r} is in both {seen[u]} and {part}: utterance overlap refused")
            seen[u] = part
    checks = {"utterances": {"parts": "train valid test", "result": "disjoint"}}
    if speaker_independent:
        checks["speakers"] = {"parts": "train valid test", "result": "disjoint"}
    else:
        shared = set(utt2spk[u] for u in parts["test"]) & set(utt2spk[u] for p in ("train", "valid") for u in parts[p])
        checks["speakers"] = {"parts": "train valid test", "result": f"{len(shared)} shared (speaker-dependent protocol)"}
    if utt2text is not None:
        test_texts = {utt2text[u] for u in parts["test"]}
        for part in ("train", "valid"):
            bad = sorted(u for u in parts[part] if utt2text[u] in test_texts)
            if bad:
                raise EmotkError(f"utterance {bad[0]!r} in {part} has the test sentence {utt2text[bad[0]]!r}: text overlap refused")
        checks["texts"] = {"parts": "train valid vs test", "result": "disjoint"}
    return checks


def _speaker_groups(d: DataDir, groups: str) -> dict[str, str]:
    """Speaker -> group from a ``spk2<group>`` or ``utt2<group>`` table; a speaker must be in one group."""
    if not (groups.startswith("spk2") or groups.startswith("utt2")):
        raise EmotkError(f"--groups {groups}: name a spk2<group> or utt2<group> table of {d.path}")
    d.require(groups, hint="the grouping of leave-one-group-out")
    table = read_table(d.path / groups, parse=str)
    if groups.startswith("spk2"):
        missing = sorted(set(d.speakers) - set(table))
        if missing:
            raise EmotkError(f"{d.path / groups}: speaker {missing[0]!r} has no group")
        return {s: table[s] for s in d.speakers}
    out: dict[str, str] = {}
    for u, s in d.utt2spk.items():
        if u not in table:
            raise EmotkError(f"{d.path / groups}: utterance {u!r} has no group")
        if out.setdefault(s, table[u]) != table[u]:
            raise EmotkError(f"{d.path / groups}: speaker {s!r} is in groups {out[s]!r} and {table[u]!r} "
                             f"(utterance {u!r}): leave-one-group-out needs each speaker in one group")
    return out


def _text_groups(texts: list[str], n: int, seed: int) -> list[list[str]]:
    if not 2 <= n <= len(texts):
        raise EmotkError(f"text-independent folds need 2 <= text folds <= number of sentences ({len(texts)}), got {n}")
    order = sorted(texts)
    random.Random(seed).shuffle(order)
    return [sorted(order[i::n]) for i in range(n)]


def plan_folds(d: DataDir, protocol: str, *, k: int = 5, n_valid_speakers: int = 1,
               test_fraction: float = 0.2, valid_fraction: float = 0.1, repeats: int = 1, seed: int = 0,
               train_speakers: Sequence[str] = (), valid_speakers: Sequence[str] = (),
               test_speakers: Sequence[str] = (), groups: str | None = None,
               text_folds: int | None = None,
               speaker_fractions: str | Sequence[float] = (0.7, 0.1, 0.2)) -> dict[str, dict]:
    """Return ``{fold_name: {"train": utts, "valid": utts, "test": utts, "meta": {...}}}``, checked."""
    spks = d.speakers
    spk_counts = Counter(d.utt2spk.values())
    utt2text = None
    if text_folds is not None:
        if protocol == "random":
            raise EmotkError("text-independent folds need a speaker protocol (loso, kfold, lists, logo), not random")
        d.require("utt2text", hint="text-independent folds need the sentence of each utterance")
        utt2text = read_table(d.path / "utt2text", parse=str)
        missing = sorted(set(d.utts) - set(utt2text))
        if missing:
            raise EmotkError(f"{d.path / 'utt2text'}: utterance {missing[0]!r} has no sentence")
        text_sets = _text_groups(sorted(set(utt2text.values())), text_folds, seed)
    folds: dict[str, dict] = {}

    def add(name: str, test_spks: set[str], valid_spks: set[str], train_spks: set[str], extra: dict | None = None):
        base = {"protocol": protocol, "speaker_independent": True, "text_independent": utt2text is not None,
                "seed": seed, **(extra or {}), "train_speakers": sorted(train_spks),
                "valid_speakers": sorted(valid_spks), "test_speakers": sorted(test_spks)}
        parts = {"train": _utts_of(d, train_spks), "valid": _utts_of(d, valid_spks), "test": _utts_of(d, test_spks)}
        if utt2text is None:
            folds[name] = {**parts, "meta": base}
            return
        for g, texts in enumerate(text_sets, start=1):
            texts = set(texts)
            kept = {"test": {u for u in parts["test"] if utt2text[u] in texts}}
            dropped = {}
            for part in ("train", "valid"):
                kept[part] = {u for u in parts[part] if utt2text[u] not in texts}
                dropped[part] = len(parts[part]) - len(kept[part])
            folds[f"{name}-text{g}"] = {**kept, "meta": {**base, "test_texts": sorted(texts), "dropped": {
                **dropped, "reason": "utterances of train/valid speakers with a test sentence"}}}

    if protocol == "loso":
        if len(spks) < 3:
            raise EmotkError(f"leave-one-speaker-out needs at least 3 speakers, {d.path} has {len(spks)}")
        for s in spks:
            rest = [x for x in spks if x != s]
            valid = set(_valid_speakers(rest, {s}, spks, n_valid_speakers))
            add(f"loso-{s}", {s}, valid, set(rest) - valid)
    elif protocol == "kfold":
        for i, group in enumerate(_speaker_folds(spks, k, spk_counts, seed), start=1):
            rest = [x for x in spks if x not in group]
            valid = set(_valid_speakers(rest, set(group), spks, n_valid_speakers))
            add(f"kfold{k}-{i}", set(group), valid, set(rest) - valid)
    elif protocol == "logo":
        if not groups:
            raise EmotkError("leave-one-group-out needs --groups (a spk2<group> or utt2<group> table)")
        spk2group = _speaker_groups(d, groups)
        names = sorted(set(spk2group.values()))
        if len(names) < 3:
            raise EmotkError(f"leave-one-group-out needs at least 3 groups in {d.path / groups}, found {len(names)}")
        for g in names:
            test = {s for s in spks if spk2group[s] == g}
            rest = [x for x in spks if x not in test]
            valid = set(_valid_speakers(rest, test, spks, n_valid_speakers))
            add(f"logo-{g}", test, valid, set(rest) - valid, {"groups": groups, "test_group": g})
    elif protocol == "lists":
        named = {"train": set(train_speakers), "valid": set(valid_speakers), "test": set(test_speakers)}
        for part, group in named.items():
            unknown = sorted(group - set(spks))
            if unknown:
                raise EmotkError(f"{part} speaker {unknown[0]!r} is not in {d.path}")
            if part != "valid" and not group:
                raise EmotkError(f"explicit split needs at least one {part} speaker")
        add("lists", named["test"], named["valid"], named["train"])
    elif protocol == "tvt":
        fractions = parse_speaker_fractions(speaker_fractions)
        for r in range(1, repeats + 1):
            fold_seed = seed * 1000 + r
            train, valid, test = _speaker_partition(spks, fractions, random.Random(fold_seed))
            add(f"tvt-{r}", set(test), set(valid), set(train),
                {"seed": fold_seed, "speaker_fractions": list(fractions)})
    elif protocol == "random":
        labels = d.table("utt2emo") if d.has("utt2emo") else None
        for r in range(1, repeats + 1):
            rng = random.Random(seed * 1000 + r)
            train, test, valid = _stratified_split(d.utts, labels, [test_fraction, valid_fraction], rng)
            folds[f"sd-random-{r}"] = {"train": train, "valid": valid, "test": test, "meta": {
                "protocol": "random", "speaker_independent": False, "text_independent": False, "seed": seed * 1000 + r,
                "test_fraction": test_fraction, "valid_fraction": valid_fraction,
                "note": "speaker-dependent: the same speakers appear in train, valid and test"}}
    else:
        raise EmotkError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    for name, f in folds.items():
        for part in ("train", "test"):
            if not f[part]:
                raise EmotkError(f"fold {name}: {part} part is empty")
        f["meta"]["checks"] = check_fold({p: f[p] for p in ("train", "valid", "test")}, d.utt2spk,
                                         f["meta"]["speaker_independent"], utt2text)
    return folds


def _write_folds(d: DataDir, folds: dict[str, dict], root: Path) -> None:
    for name, f in folds.items():
        for part in PARTS:
            if f[part]:
                (root / name / part).mkdir(parents=True)
                _copy_filtered(d, root / name / part, f[part])
        meta = dict(f["meta"], counts={p: len(f[p]) for p in PARTS})
        write_text(root / name / "fold.yaml", yaml.safe_dump(meta, sort_keys=False))
    write_text(root / "folds.txt", "".join(f"{n}\n" for n in folds))


def _files(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _same_folds(new: Path, old: Path) -> bool:
    """Whether ``old`` holds exactly the folds in ``new``: folds.txt, every fold.yaml and every part's
    files. Other folders inside a fold (data dirs later stages derived, e.g. an augmented train set)
    are not compared."""
    if not (old / "folds.txt").is_file() or (old / "folds.txt").read_bytes() != (new / "folds.txt").read_bytes():
        return False
    for name in (new / "folds.txt").read_text(encoding="utf-8").split():
        if _files(new / name) != {k: v for k, v in _files(old / name).items()
                                  if k.parts[0] in PARTS or k.name == "fold.yaml" and len(k.parts) == 1}:
            return False
    return True


def split_data_dir(src: str | Path, out: str | Path, protocol: str, log: Callable[[str], None] | None = None,
                   **kwargs) -> list[str]:
    """Write the folds of ``protocol`` under ``out``; returns the fold names.

    ``out`` is replaced as a whole, so a changed protocol, seed or parent never leaves stale folds
    behind; a re-run that gives exactly the same folds leaves ``out`` as it is, with the data dirs
    later stages derived inside its folds (augmented copies and their features).
    """
    d = validate_data_dir(src, check_files=False)
    folds = plan_folds(d, protocol, **kwargs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".new", dir=out.parent))
    try:
        _write_folds(d, folds, staging)
        if _same_folds(staging, out):
            if log:
                log(f"{out}: the same folds are already there; kept as they are")
            return list(folds)
        with atomic_dir(out) as tmp:
            for entry in staging.iterdir():
                os.replace(entry, tmp / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return list(folds)


def read_folds(out: str | Path) -> list[str]:
    p = Path(out) / "folds.txt"
    if not p.is_file():
        raise EmotkError(f"{out}: no folds.txt (split incomplete or not run)")
    return p.read_text(encoding="utf-8").split()
