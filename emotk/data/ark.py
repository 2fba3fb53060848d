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
    kio = _kaldi_io()
    ark = Path(ark).resolve()
    rows: dict[str, int] = {}
    lines = []
    with atomic_path(ark) as tmp, open(tmp, "wb") as f:
        for key, mat in items:
            mat = np.ascontiguousarray(mat, dtype=dtype)
            if mat.ndim != 2:
                raise EmotkError(f"{key}: expected a 2-D matrix, got shape {mat.shape}")
            if not np.all(np.isfinite(mat)):
                raise EmotkError(f"{key}: matrix has NaN or infinite values")
            f.write(f"{key} ".encode())
            offset = f.tell()
            kio.write_mat(f, mat)
            lines.append(f"{key} {ark}:{offset}\n")
            rows[key] = mat.shape[0]
    with atomic_write(scp) as f:
        f.writelines(sorted(lines))
    return rows


def read_matrix(rxspec: str) -> np.ndarray:
    """Read one matrix from ``path:offset`` (an scp value)."""
    kio = _kaldi_io()
    try:
        return np.asarray(kio.read_mat(rxspec))
    except Exception as e:  # kaldi_io raises bare Exceptions with unhelpful text
        raise EmotkError(f"cannot read matrix {rxspec}: {e}") from None


def read_scp(scp_table: dict[str, str], keys: Iterable[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(key, matrix)`` for ``keys`` (default: all) of an already-read scp table."""
    for key in keys if keys is not None else scp_table:
        if key not in scp_table:
            raise EmotkError(f"{key}: not in feats/labels scp")
        yield key, read_matrix(scp_table[key])


def ark_paths(scp_table: dict[str, str]) -> set[str]:
    return {v.rpartition(":")[0] for v in scp_table.values()}

