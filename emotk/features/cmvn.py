"""Cepstral mean and variance normalization with Kaldi's stats layout.

Stats of a speaker are a ``2 x (D+1)`` float64 matrix, as ``compute-cmvn-stats --spk2utt`` writes:
row 0 = ``[sum x_1 ... sum x_D, frame count]``, row 1 = ``[sum x_1^2 ... sum x_D^2, 0]``.
``apply_cmvn`` is ``apply-cmvn --norm-vars=true|false``: subtract the mean, divide by the
standard deviation. Kaldi floors the variance at 1e-20; emotk floors it at ``VAR_FLOOR`` = 1e-10,
well above the rounding noise of the float64 sums (about 1e-13 for log-energy-sized values), so a
constant dimension or a one-frame speaker gives 0 rather than amplified rounding noise; the output
is always finite.

Utterance-level vectors (openSMILE functionals, ``<name>.scp``) are standardized the same way: each
vector counts as a one-frame matrix, so a speaker's stats are the same ``2 x (D+1)`` layout with the
number of utterances as the count (``compute-cmvn --table egemapsv02.scp`` writes them to
``egemapsv02_cmvn.scp``), and ``load_normalized_vectors`` applies them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from emotk.errors import EmotkError

VAR_FLOOR = 1e-10


def compute_cmvn_stats(mats: Iterable[np.ndarray]) -> np.ndarray:
    """Accumulate the ``2 x (D+1)`` stats of the frames of all ``mats`` (e.g. one speaker's utterances)."""
    stats = None
    for mat in mats:
        m = np.asarray(mat, dtype=np.float64)
        if m.ndim != 2:
            raise EmotkError(f"cmvn: expected a T x D matrix, got shape {m.shape}")
        if stats is None:
            stats = np.zeros((2, m.shape[1] + 1))
        elif m.shape[1] != stats.shape[1] - 1:
            raise EmotkError(f"cmvn: feature dims differ: {m.shape[1]} vs {stats.shape[1] - 1}")
        stats[0, :-1] += m.sum(0)
        stats[1, :-1] += np.square(m).sum(0)
        stats[0, -1] += m.shape[0]
    if stats is None:
        raise EmotkError("cmvn: no matrices to accumulate stats from")
    return stats


def apply_cmvn(mat: np.ndarray, stats: np.ndarray, norm_vars: bool = True) -> np.ndarray:
    """Normalize ``mat [T, D]`` with ``stats [2, D+1]``; returns float32."""
    stats = np.asarray(stats, dtype=np.float64)
    mat = np.asarray(mat)
    if stats.ndim != 2 or stats.shape[0] != 2 or stats.shape[1] != mat.shape[-1] + 1:
        raise EmotkError(f"cmvn: stats of shape {stats.shape} do not fit features of dim {mat.shape[-1]}")
    count = stats[0, -1]
    if count < 1:
        raise EmotkError(f"cmvn: stats have a frame count of {count:g}")
    mean = stats[0, :-1] / count
    out = mat.astype(np.float64) - mean
    if norm_vars:
        var = np.maximum(stats[1, :-1] / count - mean**2, VAR_FLOOR)
        out /= np.sqrt(var)
    return out.astype(np.float32)


def utterance_cmvn(mat: np.ndarray, norm_vars: bool = True) -> np.ndarray:
    """Z-normalize one utterance with its own mean and variance (speaker unknown)."""
    return apply_cmvn(mat, compute_cmvn_stats([mat]), norm_vars)


def vector_stats(vectors: Iterable[np.ndarray]) -> np.ndarray:
    """The ``2 x (D+1)`` stats of utterance-level vectors, each counted as one frame."""
    return compute_cmvn_stats(np.asarray(v)[None, :] for v in vectors)


def speaker_stats(data_dir, table: str = "feats.scp") -> Iterator[tuple[str, np.ndarray]]:
    """``(speaker, stats)`` for every speaker of a data dir, in sorted order.

    ``table``: a matrix table (feats.scp, an LLD table) or a vector table (``egemapsv02.scp``), whose
    vectors count as one frame each.
    """
    from emotk.data.ark import is_vector_table, read_scp, read_vector_table
    from emotk.data.datadir import validate_data_dir

    d = validate_data_dir(data_dir, require=[table])
    path = d.path / table
    if is_vector_table(path):  # one pass over the table, so every vector is checked against the first
        stats: dict[str, np.ndarray] = {}
        for utt, v in read_vector_table(path, [u for utts in d.spk2utt.values() for u in utts]):
            spk, s = d.utt2spk[utt], vector_stats([v])
            stats[spk] = stats[spk] + s if spk in stats else s
        yield from stats.items()
        return
    scp = {u: d.resolve(v) for u, v in d.table(table).items()}
    for spk, utts in d.spk2utt.items():
        missing = [u for u in utts if u not in scp]
        if missing:
            raise EmotkError(f"{path}: utterance {missing[0]!r} not found")
        yield spk, compute_cmvn_stats(m for _, m in read_scp(scp, utts))


def stats_table_name(table: str) -> str:
    """The default stats table of a features table: cmvn.scp for feats.scp, else ``<stem>_cmvn.scp``."""
    return "cmvn.scp" if table == "feats.scp" else f"{Path(table).name.removesuffix('.scp')}_cmvn.scp"


def compute_cmvn_data_dir(data_dir, ark: str | Path | None = None, table: str = "feats.scp",
                          out: str | None = None) -> int:
    """Write per-speaker stats of ``table`` to ``out`` (default ``stats_table_name(table)``), keyed by speaker.

    The archive defaults to ``<data>/data/<out stem>.ark`` (``data/cmvn.ark`` for feats.scp). Returns #speakers.
    """
    from emotk.data.ark import write_ark_scp

    data_dir = Path(data_dir)
    out = out or stats_table_name(table)
    if "/" in out or not out.endswith(".scp"):
        raise EmotkError(f"--out must be a file name ending in .scp (in the data dir), got {out!r}")
    ark = Path(ark) if ark is not None else data_dir / "data" / f"{out.removesuffix('.scp')}.ark"
    # float64: Kaldi's stats are double, and float32 sums of squares would lose the
    # variance to cancellation on long recordings.
    return len(write_ark_scp(ark, data_dir / out, speaker_stats(data_dir, table), dtype=np.float64))


def load_normalized(data_dir, utts: Iterable[str] | None = None, norm: str = "speaker",
                    norm_vars: bool = True) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(utt, normalized features)``.

    ``norm``: ``speaker`` (the speaker's stats from cmvn.scp, as ``apply-cmvn --utt2spk``),
    ``utterance`` (each utterance's own stats) or ``none``.
    """
    from emotk.data.ark import read_matrix
    from emotk.data.datadir import validate_data_dir

    if norm not in ("speaker", "utterance", "none"):
        raise EmotkError(f"cmvn: norm must be speaker, utterance or none, got {norm!r}")
    d = validate_data_dir(data_dir, require=["feats.scp"] + (["cmvn.scp"] if norm == "speaker" else []))
    scp = d.table("feats.scp")
    cmvn = d.table("cmvn.scp") if norm == "speaker" else {}
    cache: dict[str, np.ndarray] = {}
    for utt in utts if utts is not None else d.utts:
        if utt not in scp:
            raise EmotkError(f"{d.path / 'feats.scp'}: utterance {utt!r} not found")
        mat = read_matrix(d.resolve(scp[utt]))
        if norm == "speaker":
            spk = d.utt2spk[utt]
            if spk not in cache:
                cache[spk] = read_matrix(d.resolve(cmvn[spk]))
            mat = apply_cmvn(mat, cache[spk], norm_vars)
        elif norm == "utterance":
            mat = utterance_cmvn(mat, norm_vars)
        yield utt, mat


def apply_cmvn_data_dir(src, dst, norm: str = "speaker", norm_vars: bool = True) -> int:
    """Write ``dst``: a copy of data dir ``src`` whose feats.scp holds normalized features.

    Tables are copied (paths made absolute); the new archive is ``<dst>/data/feats.ark``; cmvn.scp
    is dropped (it described the raw features) and ``conf/cmvn.yaml`` records what was applied.
    Returns the number of utterances.
    """
    import shutil

    from emotk.data.ark import write_ark_scp
    from emotk.data.datadir import PATH_TABLES, read_table, validate_data_dir, write_table
    from emotk.fileio import atomic_dir, write_text

    s = validate_data_dir(src, require=["feats.scp"] + (["cmvn.scp"] if norm == "speaker" else []))
    dst = Path(dst).resolve()
    if dst == s.path.resolve():
        raise EmotkError(f"{dst}: the output data dir must differ from the input")
    final_ark = dst / "data" / "feats.ark"
    with atomic_dir(dst) as tmp:
        for f in sorted(s.path.iterdir()):
            if not f.is_file() or f.name in ("feats.scp", "cmvn.scp") or f.name.startswith("."):
                continue
            if f.name in PATH_TABLES:
                write_table(tmp / f.name, {k: s.resolve(v) for k, v in read_table(f).items()})
            else:
                shutil.copyfile(f, tmp / f.name)
        if (s.path / "conf").is_dir():
            shutil.copytree(s.path / "conf", tmp / "conf")
        write_text(tmp / "conf" / "cmvn.yaml", f"norm: {norm}\nnorm_vars: {str(norm_vars).lower()}\nsource: {s.path.resolve()}\n")
        rows = write_ark_scp(tmp / "data" / "feats.ark", tmp / "data" / "feats.scp",
                             load_normalized(s.path, norm=norm, norm_vars=norm_vars))
        # The index must point at the archive's final place, not at the temporary dir.
        index = read_table(tmp / "data" / "feats.scp")
        write_table(tmp / "feats.scp", {k: f"{final_ark}:{v.rpartition(':')[2]}" for k, v in index.items()})
        (tmp / "data" / "feats.scp").unlink()
    return len(rows)


def load_normalized_vectors(data_dir, table: str, utts: Iterable[str] | None = None, norm: str = "speaker",
                            norm_table: str | None = None, stats: np.ndarray | None = None,
                            norm_vars: bool = True) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(utt, normalized vector)`` (float32) of the vector table ``table`` of a data dir.

    ``norm``: ``speaker`` (the speaker's stats from ``norm_table``, default ``<table stem>_cmvn.scp``,
    as written by ``compute-cmvn --table``), ``global`` (the given ``stats``, e.g. ``vector_stats`` of
    the training set's vectors) or ``none``. ``utts`` default: every utterance of the data dir.
    """
    from emotk.data.ark import read_matrix, read_vector_table
    from emotk.data.datadir import validate_data_dir

    if norm not in ("speaker", "global", "none"):
        raise EmotkError(f"cmvn: norm of vectors must be speaker, global or none, got {norm!r}")
    if norm == "global" and stats is None:
        raise EmotkError("cmvn: norm global needs the stats (mean and variance of the training set)")
    norm_table = norm_table or stats_table_name(table)
    d = validate_data_dir(data_dir, require=[table] + ([norm_table] if norm == "speaker" else []))
    spk_stats = d.table(norm_table) if norm == "speaker" else {}
    cache: dict[str, np.ndarray] = {}
    for utt, vec in read_vector_table(d.path / table, utts if utts is not None else d.utts):
        if norm == "speaker":
            spk = d.utt2spk.get(utt)
            if spk not in spk_stats:
                raise EmotkError(f"{d.path / norm_table}: no stats for speaker {spk!r} of utterance {utt!r}")
            if spk not in cache:
                cache[spk] = read_matrix(d.resolve(spk_stats[spk]))
            vec = apply_cmvn(vec[None, :], cache[spk], norm_vars)[0]
        elif norm == "global":
            vec = apply_cmvn(vec[None, :], stats, norm_vars)[0]
        yield utt, vec.astype(np.float32, copy=False)
