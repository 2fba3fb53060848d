"""Kaldi ark/scp matrices through kaldi-io: readable by Kaldi's own tools (copy-feats, apply-cmvn)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from emotk.errors import EmotkError
from emotk.fileio import atomic_path, atomic_write


def _kaldi_io():
    # kaldi_io prints a harmless KALDI_ROOT warning on import; keep it off the user's terminal.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import kaldi_io
    return kaldi_io


def write_ark_scp(ark: str | Path, scp: str | Path, items: Iterable[tuple[str, np.ndarray]],
                  dtype=np.float32) -> dict[str, int]:
    """Write ``(key, matrix)`` pairs to ``ark`` and an scp indexing it; both atomically.

    ``dtype`` float32 (Kaldi's BaseFloat, features) or float64 (Kaldi's double, CMVN stats).

    The scp holds the final (absolute) ark path with byte offsets, so it stays valid after the rename.
    Returns ``{key: num_rows}``.
    """
    return _write_ark_scp(ark, scp, items, dtype, vectors=False)


def _write_ark_scp(ark: str | Path, scp: str | Path, items: Iterable[tuple[str, np.ndarray]], dtype,
                   vectors: bool) -> dict[str, int]:
    """The ark/scp writer of matrices or vectors; returns ``{key: rows or dim}``."""
    kio = _kaldi_io()
    write = kio.write_vec_flt if vectors else kio.write_mat
    ark = Path(ark).resolve()
    sizes: dict[str, int] = {}
    lines = []
    with atomic_path(ark) as tmp, open(tmp, "wb") as f:
        for key, x in items:
            x = np.ascontiguousarray(x, dtype=dtype)
            if vectors:
                _check_vector(x, key, ark, next(iter(sizes.values()), None))
            else:
                _check_matrix(x, key)
            f.write(f"{key} ".encode())
            offset = f.tell()
            write(f, x)
            lines.append(f"{key} {ark}:{offset}\n")
            sizes[key] = x.shape[0]
    with atomic_write(scp) as f:
        f.writelines(sorted(lines))
    return sizes


def _check_matrix(mat: np.ndarray, key: str) -> None:
    if mat.ndim != 2:
        raise EmotkError(f"{key}: expected a 2-D matrix, got shape {mat.shape}")
    if not np.all(np.isfinite(mat)):
        raise EmotkError(f"{key}: matrix has NaN or infinite values")


def _read(rxspec: str, what: str, read) -> np.ndarray:
    try:
        return np.asarray(read(rxspec))
    except Exception as e:  # kaldi_io raises bare Exceptions with unhelpful text
        raise EmotkError(f"cannot read {what} {rxspec}: {e if what == 'matrix' else repr(e)}") from None


def read_matrix(rxspec: str) -> np.ndarray:
    """Read one matrix from ``path:offset`` (an scp value)."""
    return _read(rxspec, "matrix", _kaldi_io().read_mat)


def read_scp(scp_table: dict[str, str], keys: Iterable[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(key, matrix)`` for ``keys`` (default: all) of an already-read scp table."""
    for key in keys if keys is not None else scp_table:
        if key not in scp_table:
            raise EmotkError(f"{key}: not in feats/labels scp")
        yield key, read_matrix(scp_table[key])


def ark_paths(scp_table: dict[str, str]) -> set[str]:
    return {v.rpartition(":")[0] for v in scp_table.values()}



# Vector tables: one Kaldi float vector per key (utterance-level features such as openSMILE
# functionals), readable by Kaldi's copy-vector. Every reader of a vector table goes through here.

def write_vector_ark_scp(ark: str | Path, scp: str | Path, items: Iterable[tuple[str, np.ndarray]],
                         dtype=np.float32) -> dict[str, int]:
    """Write ``(key, vector)`` pairs to ``ark`` and an scp indexing it; both atomically.

    Every vector must be 1-D, finite and as long as the first. Returns ``{key: dim}``.
    """
    return _write_ark_scp(ark, scp, items, dtype, vectors=True)


def _check_vector(vec: np.ndarray, key: str, source, dim: int | None) -> None:
    if vec.ndim != 1:
        raise EmotkError(f"{source}: utterance {key!r}: expected a vector, got shape {vec.shape}")
    if dim is not None and vec.shape[0] != dim:
        raise EmotkError(f"{source}: utterance {key!r} has a vector of dim {vec.shape[0]}, earlier ones have {dim}")
    if not np.isfinite(vec.sum(dtype=np.float64)):
        raise EmotkError(f"{source}: utterance {key!r} has NaN or infinite values")


def read_vector(rxspec: str) -> np.ndarray:
    """Read one vector from ``path:offset`` (an scp value)."""
    return _read(rxspec, "vector", _kaldi_io().read_vec_flt)


def read_vector_table(scp: str | Path, keys: Iterable[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(key, vector)`` for ``keys`` (default: all, in file order) of the vector table ``scp``.

    Relative ark paths are taken relative to the scp's folder. Errors name the file and the key:
    a missing key, an unreadable entry, a dimension that differs from the first vector's, NaN or inf.
    """
    from emotk.data.datadir import DataDir, read_table

    scp = Path(scp)
    table = read_table(scp, parse=str)
    base = DataDir(scp.parent)
    dim = None
    for key in keys if keys is not None else table:
        if key not in table:
            raise EmotkError(f"{scp}: utterance {key!r} not found")
        try:
            vec = read_vector(base.resolve(table[key]))
        except EmotkError as e:
            raise EmotkError(f"{scp}: utterance {key!r}: {e}") from None
        _check_vector(vec, key, scp, dim)
        dim = vec.shape[0]
        yield key, vec


def read_vectors(scp: str | Path, keys: Iterable[str] | None = None) -> tuple[list[str], np.ndarray]:
    """The keys and an ``[N, D]`` float32 array of a vector table (see ``read_vector_table``)."""
    pairs = list(read_vector_table(scp, keys))
    if not pairs:
        raise EmotkError(f"{scp}: no vectors to read")
    return [k for k, _ in pairs], np.stack([v for _, v in pairs]).astype(np.float32, copy=False)


def is_vector_table(scp: str | Path) -> bool:
    """Whether the first entry of a Kaldi table holds a vector (else a matrix)."""
    from emotk.data.datadir import DataDir, read_table

    scp = Path(scp)
    table = read_table(scp, parse=str)
    if not table:
        raise EmotkError(f"{scp}: empty table")
    value = DataDir(scp.parent).resolve(next(iter(table.values())))
    path, sep, offset = value.rpartition(":")
    if not (sep and offset.isdigit()):
        path, offset = value, "0"
    try:
        with open(path, "rb") as f:
            f.seek(int(offset))
            head = f.read(5)
    except (OSError, ValueError) as e:
        raise EmotkError(f"{scp}: cannot read its first entry: {e}") from None
    return head[2:4] in (b"FV", b"DV")


def read_entry(rxspec: str) -> np.ndarray:
    """One entry of any Kaldi table, matrix or vector (told apart by its binary header)."""
    path, sep, offset = rxspec.rpartition(":")
    if not (sep and offset.isdigit()):
        path, offset = rxspec, "0"
    try:
        with open(path, "rb") as f:
            f.seek(int(offset))
            head = f.read(5)
    except OSError as e:
        raise EmotkError(f"cannot read {rxspec}: {e}") from None
    return read_vector(rxspec) if head[2:4] in (b"FV", b"DV") else read_matrix(rxspec)
