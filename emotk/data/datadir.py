"""Kaldi-style data directories: read, write, validate, fix, subset, combine.

A data dir is a folder of small text tables, one record a line, ``<id> <value...>``,
UTF-8, sorted as ``LC_ALL=C sort`` sorts (byte order, which for UTF-8 equals
Python's code-point order of ``str``). See CONVENTIONS.md section 2.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from emotk.errors import EmotkError, where
from emotk.fileio import atomic_dir, atomic_write

# Tables keyed by utterance id.  Their id sets must equal utt2spk's.
UTT_TABLES = (
    "utt2spk",
    "utt2dur",
    "utt2emo",
    "utt2num_frames",
    "feats.scp",
    "segments",
    "labels.scp",
    "text",
    "utt2aug",  # noise augmentation record (emotk.augment.offline)
)
# Utterance-level continuous dimensions: utt2arousal, utt2valence, utt2dominance ...
DIM_PREFIX = "utt2"
KNOWN_DIMS = ("arousal", "valence", "dominance")
# Tables keyed by speaker id.
SPK_TABLES = ("spk2utt", "spk2gender", "cmvn.scp")
# Single-value or list files copied verbatim by subset/combine.
SCALAR_FILES = ("frame_shift", "label_names", "label_frame_shift", "emo_names")
# Tables whose value is a path (or ``path:offset``) that is made absolute when copied.
PATH_TABLES = ("wav.scp", "feats.scp", "cmvn.scp", "labels.scp")


def class_names_file(label_table: str) -> str:
    """The file listing every class of a categorical label table: ``emo_names`` for ``utt2emo``,
    ``valence5_names`` for ``utt2valence5``. The class set belongs to the label set, not to one fold's
    training side: a class absent from a fold's training speakers is still a class."""
    return label_table.removeprefix("utt2") + "_names"


def is_path_table(name: str) -> bool:
    """Kaldi scp tables (``path`` or ``path:offset`` values) are made absolute when copied."""
    return name in PATH_TABLES or name.endswith(".scp")


def _parse_float(value: str) -> float:
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"not a finite number: {value!r}")
    return x


def _parse_positive_float(value: str) -> float:
    x = _parse_float(value)
    if x <= 0:
        raise ValueError(f"must be > 0: {value!r}")
    return x


def _parse_positive_int(value: str) -> int:
    x = int(value)
    if x <= 0:
        raise ValueError(f"must be a positive integer: {value!r}")
    return x


def _parse_gender(value: str) -> str:
    if value not in ("m", "f"):
        raise ValueError(f"gender must be m or f, got {value!r}")
    return value


def _parse_segment(value: str) -> tuple[str, float, float]:
    parts = value.split()
    if len(parts) != 3:
        raise ValueError("expected '<rec-id> <start> <end>'")
    rec, start, end = parts[0], _parse_float(parts[1]), _parse_float(parts[2])
    if start < 0 or end <= start:
        raise ValueError(f"bad segment times {start} {end}")
    return rec, start, end


def _parse_label(value: str) -> str:
    if len(value.split()) != 1:
        raise ValueError(f"label must be one token, got {value!r}")
    return value


def _parse_path(value: str) -> str:
    if value.endswith("|"):
        raise ValueError("piped commands in wav.scp are not supported; give a file path")
    return value


PARSERS: dict[str, Callable[[str], object]] = {
    "utt2spk": _parse_label,
    "utt2dur": _parse_positive_float,
    "utt2emo": _parse_label,
    "utt2num_frames": _parse_positive_int,
    "segments": _parse_segment,
    "spk2gender": _parse_gender,
    "wav.scp": _parse_path,
    "spk2utt": str.split,
}


def parser_for(name: str) -> Callable[[str], object]:
    if name in PARSERS:
        return PARSERS[name]
    if name.startswith(DIM_PREFIX) and name[len(DIM_PREFIX):] in KNOWN_DIMS:
        return _parse_float
    return str


def read_table(path: str | Path, parse: Callable[[str], object] | None = None, check_sorted: bool = True) -> dict:
    """Read ``<id> <value>`` lines into an insertion-ordered dict.

    Errors name the file and line: empty lines, missing values, duplicate ids,
    unsorted ids, values the parser rejects, invalid UTF-8.
    """
    path = Path(path)
    parse = parse or parser_for(path.name)
    out: dict = {}
    prev = None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EmotkError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise EmotkError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise EmotkError(f"{where(path, n)}: expected '<id> <value>', got {line!r}")
        key, raw = parts
        if key in out:
            raise EmotkError(f"{where(path, n)}: duplicate id {key!r}")
        if check_sorted and prev is not None and key < prev:
            raise EmotkError(
                f"{where(path, n)}: not sorted: {key!r} after {prev!r} (run 'emotk fix-data-dir')"
            )
        try:
            out[key] = parse(raw)
        except ValueError as e:
            raise EmotkError(f"{where(path, n)}: bad value for {key!r}: {e}") from None
        prev = key
    return out


def format_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) >= 1e-3 or value == 0 else repr(value)
    return str(value)


def write_table(path: str | Path, table: Mapping) -> None:
    """Write a table sorted in C byte order, atomically."""
    with atomic_write(path) as f:
        for key in sorted(table):
            f.write(f"{key} {format_value(table[key])}\n")


def spk2utt_from(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return out


def _resolve(base: Path, value: str) -> str:
    """Make a path (or ``path:offset`` rxspecifier) absolute relative to ``base``."""
    path, sep, offset = value.rpartition(":") if _has_offset(value) else (value, "", "")
    p = Path(path)
    if not p.is_absolute():
        p = (base / p).resolve()
    return f"{p}{sep}{offset}"


def _has_offset(value: str) -> bool:
    head, sep, tail = value.rpartition(":")
    return bool(sep) and tail.isdigit() and bool(head)


@dataclass
class DataDir:
    """Lazy, cached view of a data directory."""

    path: Path
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.path = Path(self.path)

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def table(self, name: str) -> dict:
        if name not in self._cache:
            self._cache[name] = read_table(self.path / name)
        return self._cache[name]

    def scalar(self, name: str) -> str:
        p = self.path / name
        if not p.is_file():
            raise EmotkError(f"{p}: file not found")
        return p.read_text(encoding="utf-8").strip()

    # Convenience accessors -------------------------------------------------
    @property
    def utt2spk(self) -> dict[str, str]:
        return self.table("utt2spk")

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        return spk2utt_from(self.utt2spk)

    @property
    def utts(self) -> list[str]:
        return list(self.utt2spk)

    @property
    def speakers(self) -> list[str]:
        return sorted(set(self.utt2spk.values()))

    @property
    def frame_shift(self) -> float:
        return float(self.scalar("frame_shift"))

    @property
    def label_names(self) -> list[str]:
        return self.scalar("label_names").split()

    def dims(self) -> list[str]:
        """Names of the utterance-level dimension tables present (arousal, valence ...)."""
        return [d for d in KNOWN_DIMS if self.has(f"{DIM_PREFIX}{d}")]

    def resolve(self, value: str) -> str:
        return _resolve(self.path, value)

    def wav_path(self, rec: str) -> Path:
        return Path(self.resolve(self.table("wav.scp")[rec]))

    def utt_tables(self) -> list[str]:
        """Every table keyed by utterance: the standard ones, every other ``utt2*`` (corpus-specific
        labels such as utt2session) and every other ``*.scp`` (feature tables such as egemapsv02.scp)
        except wav.scp and the per-speaker statistics."""
        names = [n for n in UTT_TABLES if self.has(n)]
        names += [f"{DIM_PREFIX}{d}" for d in self.dims()]
        speaker_keyed = set(self.spk_tables()) | {"wav.scp"}
        extra = sorted(p.name for p in self.path.glob("*") if p.is_file() and p.name not in names
                       and p.name not in speaker_keyed and (p.name.startswith(DIM_PREFIX) or p.suffix == ".scp"))
        return names + extra

    def spk_tables(self) -> list[str]:
        """Tables keyed by speaker other than spk2utt: spk2gender, cmvn.scp and ``*_cmvn.scp`` statistics."""
        names = [n for n in SPK_TABLES[1:] if self.has(n)]
        return names + sorted(p.name for p in self.path.glob("*_cmvn.scp") if p.is_file())

    def scalar_files(self) -> list[str]:
        """One-value files: frame shifts (``frame_shift``, ``<table>.frame_shift``), label names and the
        class names of categorical label tables (``<x>_names`` for ``utt2<x>``)."""
        names = [n for n in SCALAR_FILES if self.has(n)]
        names += sorted(p.name for p in self.path.glob("*_names") if p.is_file() and p.name not in names)
        return names + sorted(p.name for p in self.path.glob("*.frame_shift") if p.is_file())

    def require(self, *names: str, hint: str = "") -> None:
        for name in names:
            if not self.has(name):
                msg = f"{self.path}: missing {name}"
                raise EmotkError(msg + (f" ({hint})" if hint else ""))


def validate_data_dir(path: str | Path, require: Iterable[str] = (), check_files: bool = True) -> DataDir:
    """Check a data dir as CONVENTIONS section 2 describes; raise EmotkError at the first problem."""
    d = DataDir(path)
    if not d.path.is_dir():
        raise EmotkError(f"{d.path}: not a directory")
    if d.has("kind") and d.scalar("kind") == "noise":
        raise EmotkError(f"{d.path}: a noise data dir (kind: noise), not an utterance data dir; "
                         "check it with 'emotk validate-noise-dir'")
    d.require("utt2spk")
    for name in require:
        d.require(name, hint=_HINTS.get(name, ""))
    utt2spk = d.utt2spk
    if not utt2spk:
        raise EmotkError(f"{d.path / 'utt2spk'}: empty data dir")
    for n, (utt, spk) in enumerate(utt2spk.items(), start=1):
        if not utt.startswith(spk):
            raise EmotkError(
                f"{where(d.path / 'utt2spk', n)}: utterance id {utt!r} must start with its speaker id {spk!r}"
            )
    ids = set(utt2spk)
    for name in d.utt_tables():
        _check_same_ids(d.path / name, d.table(name), ids, "utt2spk")
    if d.has("spk2utt"):
        if d.table("spk2utt") != d.spk2utt:
            raise EmotkError(f"{d.path / 'spk2utt'}: does not match utt2spk (run 'emotk fix-data-dir')")
    spks = set(d.speakers)
    if d.has("spk2gender"):
        _check_same_ids(d.path / "spk2gender", d.table("spk2gender"), spks, "the speakers of utt2spk")
    if d.has("cmvn.scp"):
        _check_same_ids(d.path / "cmvn.scp", d.table("cmvn.scp"), spks, "the speakers of utt2spk")
    _validate_wav(d, ids, check_files)
    _validate_feats(d, check_files)
    _validate_labels(d)
    return d


_HINTS = {
    "feats.scp": "run 'emotk extract-fbank' or 'emotk extract-mfcc' first",
    "cmvn.scp": "run 'emotk compute-cmvn' first",
    "utt2emo": "this data dir has no categorical labels",
    "labels.scp": "this data dir has no frame-level labels",
    "wav.scp": "this data dir has no audio",
}


def _check_same_ids(path: Path, table: Mapping, ids: set, ref: str) -> None:
    keys = set(table)
    extra = sorted(keys - ids)
    if extra:
        raise EmotkError(f"{path}: id {extra[0]!r} is not in {ref} ({len(extra)} such ids)")
    missing = sorted(ids - keys)
    if missing:
        raise EmotkError(f"{path}: id {missing[0]!r} of {ref} is missing ({len(missing)} such ids)")


def _validate_wav(d: DataDir, utt_ids: set, check_files: bool) -> None:
    if not d.has("wav.scp"):
        return
    wav = d.table("wav.scp")
    if d.has("segments"):
        recs = {seg[0] for seg in d.table("segments").values()}
        unknown = sorted(recs - set(wav))
        if unknown:
            raise EmotkError(f"{d.path / 'segments'}: recording {unknown[0]!r} is not in wav.scp")
    else:
        _check_same_ids(d.path / "wav.scp", wav, utt_ids, "utt2spk (no segments file)")
    if check_files:
        for n, rec in enumerate(wav, start=1):
            p = d.wav_path(rec)
            if not p.is_file():
                raise EmotkError(f"{where(d.path / 'wav.scp', n)}: audio file of {rec!r} not found: {p}")


def _validate_feats(d: DataDir, check_files: bool) -> None:
    if not d.has("feats.scp"):
        return
    if d.has("utt2num_frames") is False:
        raise EmotkError(f"{d.path}: feats.scp without utt2num_frames")
    if not d.has("frame_shift"):
        raise EmotkError(f"{d.path}: feats.scp without frame_shift")
    try:
        _parse_positive_float(d.scalar("frame_shift"))
    except ValueError as e:
        raise EmotkError(f"{d.path / 'frame_shift'}: {e}") from None
    if check_files:
        arks = {d.resolve(v).rpartition(":")[0] for v in d.table("feats.scp").values()}
        for ark in sorted(arks):
            if not Path(ark).is_file():
                raise EmotkError(f"{d.path / 'feats.scp'}: archive not found: {ark}")


def _validate_labels(d: DataDir) -> None:
    if not d.has("labels.scp"):
        return
    for name in ("label_names", "label_frame_shift"):
        d.require(name, hint="frame-level labels need both")
    if not d.label_names:
        raise EmotkError(f"{d.path / 'label_names'}: empty")
    try:
        _parse_positive_float(d.scalar("label_frame_shift"))
    except ValueError as e:
        raise EmotkError(f"{d.path / 'label_frame_shift'}: {e}") from None


def fix_data_dir(path: str | Path) -> dict:
    """Sort every table, derive spk2utt, keep only utterances present in every utt table.

    Returns counts: ``{"kept": n, "dropped": m, "dropped_by": {table: k}}``.
    """
    d = DataDir(path)
    d.require("utt2spk")
    tables = {name: read_table(d.path / name, check_sorted=False) for name in d.utt_tables()}
    keep = set(tables["utt2spk"])
    dropped_by = {}
    for name, table in tables.items():
        missing = keep - set(table)
        if missing:
            dropped_by[name] = len(missing)
        keep &= set(table)
    n_all = len(set().union(*(set(t) for t in tables.values())))
    for name, table in tables.items():
        write_table(d.path / name, {k: v for k, v in table.items() if k in keep})
    utt2spk = {k: v for k, v in tables["utt2spk"].items() if k in keep}
    write_table(d.path / "spk2utt", spk2utt_from(utt2spk))
    spks = set(utt2spk.values())
    for name in ("spk2gender", "cmvn.scp"):
        if d.has(name):
            t = read_table(d.path / name, check_sorted=False)
            write_table(d.path / name, {k: v for k, v in t.items() if k in spks})
    if d.has("wav.scp"):
        wav = read_table(d.path / "wav.scp", check_sorted=False)
        if d.has("segments"):
            used = {seg[0] for seg in read_table(d.path / "segments", check_sorted=False).values()}
        else:
            used = keep
        write_table(d.path / "wav.scp", {k: v for k, v in wav.items() if k in used})
    return {"kept": len(keep), "dropped": n_all - len(keep), "dropped_by": dropped_by}


def _copy_filtered(src: DataDir, dst: Path, utts: set[str]) -> None:
    """Write ``src`` restricted to ``utts`` into the (temporary) folder ``dst``."""
    for name in src.utt_tables():
        table = src.table(name)
        if is_path_table(name):
            table = {k: src.resolve(v) for k, v in table.items()}
        write_table(dst / name, {k: v for k, v in table.items() if k in utts})
    utt2spk = {u: s for u, s in src.utt2spk.items() if u in utts}
    write_table(dst / "spk2utt", spk2utt_from(utt2spk))
    spks = set(utt2spk.values())
    for name in src.spk_tables():
        table = src.table(name)
        if is_path_table(name):
            table = {k: src.resolve(v) for k, v in table.items()}
        write_table(dst / name, {k: v for k, v in table.items() if k in spks})
    if src.has("wav.scp"):
        recs = {s[0] for u, s in src.table("segments").items() if u in utts} if src.has("segments") else utts
        wav = {k: src.resolve(v) for k, v in src.table("wav.scp").items() if k in recs}
        write_table(dst / "wav.scp", wav)
    for name in src.scalar_files():
        shutil.copyfile(src.path / name, dst / name)
    if (src.path / "conf").is_dir():
        shutil.copytree(src.path / "conf", dst / "conf")


def subset_data_dir(src: str | Path, dst: str | Path, utts: Iterable[str] | None = None,
                    spks: Iterable[str] | None = None) -> DataDir:
    """Copy the utterances ``utts`` (or all utterances of speakers ``spks``) of ``src`` to ``dst``.

    Paths in wav.scp / feats.scp / cmvn.scp are made absolute, so the subset shares the
    parent's audio and feature archives.
    """
    s = validate_data_dir(src, check_files=False)
    chosen: set[str] = set()
    if utts is not None:
        chosen |= set(utts)
        unknown = sorted(chosen - set(s.utt2spk))
        if unknown:
            raise EmotkError(f"{s.path}: utterance {unknown[0]!r} not in this data dir ({len(unknown)} unknown)")
    if spks is not None:
        spks = set(spks)
        unknown = sorted(spks - set(s.speakers))
        if unknown:
            raise EmotkError(f"{s.path}: speaker {unknown[0]!r} not in this data dir ({len(unknown)} unknown)")
        chosen |= {u for u, spk in s.utt2spk.items() if spk in spks}
    if not chosen:
        raise EmotkError(f"subset of {s.path} would be empty")
    with atomic_dir(dst) as tmp:
        _copy_filtered(s, tmp, chosen)
    return DataDir(dst)


def combine_data_dirs(dst: str | Path, srcs: Iterable[str | Path]) -> DataDir:
    """Union of several data dirs; refuses duplicate utterance ids and disagreeing scalar files."""
    dirs = [validate_data_dir(s, check_files=False) for s in srcs]
    if not dirs:
        raise EmotkError("combine-data-dir: no source data dirs given")
    tables: dict[str, dict] = {}
    owner: dict[str, Path] = {}
    common = set.intersection(*(set(d.utt_tables()) for d in dirs))
    for d in dirs:
        for utt in d.utts:
            if utt in owner:
                raise EmotkError(f"{d.path}: utterance {utt!r} is also in {owner[utt]}")
            owner[utt] = d.path
        for name in sorted(common) + ["wav.scp"] * d.has("wav.scp") + d.spk_tables():
            t = d.table(name)
            if is_path_table(name):
                t = {k: d.resolve(v) for k, v in t.items()}
            merged = tables.setdefault(name, {})
            for k, v in t.items():
                if k in merged and merged[k] != v:
                    raise EmotkError(f"{d.path / name}: {k!r} disagrees with an earlier data dir")
                merged[k] = v
    with atomic_dir(dst) as tmp:
        for name, t in tables.items():
            write_table(tmp / name, t)
        write_table(tmp / "spk2utt", spk2utt_from(tables["utt2spk"]))
        for name in sorted({n for d in dirs for n in d.scalar_files()}):
            values = {d.scalar(name) for d in dirs if d.has(name)}
            if len(values) > 1:
                raise EmotkError(f"combine-data-dir: the source dirs disagree on {name}: {sorted(values)}")
            if values:
                (tmp / name).write_text(values.pop() + "\n", encoding="utf-8")
    return DataDir(dst)


def write_data_dir(path: str | Path, tables: Mapping[str, Mapping], scalars: Mapping[str, str] | None = None) -> DataDir:
    """Write a complete data dir atomically from in-memory tables (spk2utt is derived)."""
    with atomic_dir(path) as tmp:
        for name, t in tables.items():
            write_table(tmp / name, t)
        write_table(tmp / "spk2utt", spk2utt_from(tables["utt2spk"]))
        for name, value in (scalars or {}).items():
            (tmp / name).write_text(f"{value}\n", encoding="utf-8")
    return validate_data_dir(path)
