"""Every on-disk format of predictions and of frame-level labels: readers and writers in one place
(torch-free, so ensembling and scoring start fast).

A predictions dir ``<exp>/predictions/<set>/`` holds ``heads.yaml`` (``{head: {kind, labels, file}}``,
:func:`write_heads_spec` / :func:`read_heads`) and one file or dir per head:

- class: a text file, header ``# utt label <class1> ... <classK>``, then
  ``<utt> <predicted-label> <p1> ... <pK>`` (posteriors, 6 decimals), sorted by utt
  (:func:`write_class_predictions` / :func:`read_predictions`);
- regression: a text file, header ``# utt <head>``, then ``<utt> <value>``
  (:func:`write_value_predictions` / :func:`read_values`);
- frame_regression: a labels dir, labels.ark + labels.scp (T x K per utt), label_names and
  label_frame_shift (:func:`write_frame_predictions` / :func:`read_frame_labels`): the format of
  reference labels in a data dir, so both are read alike (one utterance: :func:`read_frame_label`).

Older single-head predictions are still accepted as one head, named after the reference table
they are scored against (:func:`plain_heads`): a class file is the head ``emotion`` (utt2emo), a
regression file ``# utt <dim>`` the head ``<dim>`` (utt2<dim>), a frame-level dir the head
``labels`` (labels.scp).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from emotk.config import HEAD_KINDS
from emotk.data.ark import read_matrix, write_ark_scp
from emotk.data.datadir import DataDir
from emotk.errors import EmotkError, where
from emotk.fileio import atomic_dir, atomic_write

# Frame sequences of one recording (labels, predictions, features after stacking) may differ by
# this many frames at the end (framing edge effects); the longer is cut. A larger difference means
# misaligned data. The one definition every reader uses.
MAX_FRAME_MISMATCH = 2
# Name of the one head of a plain predictions file or dir, after its reference table.
CLASS_HEAD, CLASS_TABLE = "emotion", "utt2emo"
FRAME_HEAD, FRAME_TABLE = "labels", "labels.scp"


def common_length(n: int, n_other: int, what: str) -> int:
    """The shorter of two lengths at most :data:`MAX_FRAME_MISMATCH` frames apart; else an error
    ``"<what> (more than N apart)"``."""
    if abs(n - n_other) > MAX_FRAME_MISMATCH:
        raise EmotkError(f"{what} (more than {MAX_FRAME_MISMATCH} apart)")
    return min(n, n_other)


# Frame-level labels dirs (reference labels and frame-level predictions) -------------------

def read_frame_label(d: DataDir, table: str, utt: str, dims: int | None = None) -> np.ndarray:
    """One utterance's ``[T, K]`` matrix of a frame-level table (labels.scp), checked: 2-D, at least
    one frame, ``dims`` columns when given, finite."""
    m = read_matrix(d.resolve(d.table(table)[utt]))
    if m.ndim != 2 or m.shape[0] == 0 or (dims is not None and m.shape[1] != dims):
        raise EmotkError(f"{d.path / table}: utterance {utt!r}: expected T x {dims or 'K'} labels, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise EmotkError(f"{d.path / table}: utterance {utt!r}: NaN or infinite value")
    return m


def read_frame_labels(path: str | Path) -> tuple[list[str], float, dict[str, np.ndarray]]:
    """``(label_names, label_frame_shift, {utt: [T, K]})`` of a data dir or predictions dir with labels.scp."""
    d = DataDir(path)
    d.require(FRAME_TABLE, "label_names", "label_frame_shift", hint="frame-level labels needed")
    names = d.label_names
    shift = float(d.scalar("label_frame_shift"))
    mats = {utt: read_frame_label(d, FRAME_TABLE, utt, len(names)).astype(np.float64) for utt in d.table(FRAME_TABLE)}
    return names, shift, mats


def write_frame_predictions(out_dir: str | Path, utts: list[str], outputs: list[np.ndarray], names: list[str],
                            label_frame_shift: float) -> None:
    """A labels dir, built under a temporary name and renamed when complete."""
    final = Path(out_dir).resolve()
    with atomic_dir(final) as tmp:
        tmp = tmp.resolve()
        write_ark_scp(tmp / "labels.ark", tmp / FRAME_TABLE, sorted(zip(utts, outputs), key=lambda x: x[0]))
        # The scp names the ark by its absolute path: point it at the final location.
        scp = (tmp / FRAME_TABLE).read_text(encoding="utf-8")
        scp = scp.replace(f"{tmp}{os.sep}labels.ark:", f"{final}{os.sep}labels.ark:")
        (tmp / FRAME_TABLE).write_text(scp, encoding="utf-8")
        (tmp / "label_names").write_text(" ".join(names) + "\n", encoding="utf-8")
        (tmp / "label_frame_shift").write_text(f"{label_frame_shift:g}\n", encoding="utf-8")


# Utterance-level text files ---------------------------------------------------------------

def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise EmotkError(f"{path}: predictions file not found") from None
    except UnicodeDecodeError as e:
        raise EmotkError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


def _header(lines: list[str]) -> list[str]:
    return lines[0].lstrip("#").split() if lines and lines[0].startswith("#") else []


def write_class_predictions(path: str | Path, utts: list[str], posteriors: list[np.ndarray], classes: list[str]) -> None:
    with atomic_write(path) as f:
        f.write("# utt label " + " ".join(classes) + "\n")
        for utt, p in sorted(zip(utts, posteriors), key=lambda x: x[0]):
            f.write(f"{utt} {classes[int(np.argmax(p))]} " + " ".join(f"{x:.6f}" for x in p) + "\n")


def read_predictions(path: str | Path) -> tuple[list[str], dict[str, tuple[str, list[float]]]]:
    """Read a class predictions file: ``(classes, {utt: (label, probabilities)})``."""
    path = Path(path)
    lines = _lines(path)
    header = _header(lines)
    if len(header) < 4 or header[:2] != ["utt", "label"]:
        raise EmotkError(f"{where(path, 1)}: expected the header '# utt label <class1> ... <classK>' (K >= 2)")
    classes = header[2:]
    if len(set(classes)) != len(classes):
        raise EmotkError(f"{where(path, 1)}: duplicate class name in header")
    known = set(classes)
    preds: dict[str, tuple[str, list[float]]] = {}
    for n, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if len(parts) != 2 + len(classes):
            raise EmotkError(
                f"{where(path, n)}: expected '<utt> <label> <p1> ... <p{len(classes)}>' "
                f"({2 + len(classes)} fields), got {len(parts)} fields")
        utt, label, raw = parts[0], parts[1], parts[2:]
        if utt in preds:
            raise EmotkError(f"{where(path, n)}: duplicate utterance {utt!r}")
        if label not in known:
            raise EmotkError(f"{where(path, n)}: utterance {utt!r}: label {label!r} is not in the class list ({' '.join(classes)})")
        try:
            probs = [float(x) for x in raw]
        except ValueError:
            raise EmotkError(f"{where(path, n)}: utterance {utt!r}: probabilities must be numbers") from None
        if not all(math.isfinite(p) for p in probs):
            raise EmotkError(f"{where(path, n)}: utterance {utt!r}: NaN or infinite probability")
        preds[utt] = (label, probs)
    if not preds:
        raise EmotkError(f"{path}: no predictions after the header")
    return classes, preds


def write_value_predictions(path: str | Path, utts: list[str], values: list[float], head: str) -> None:
    """An utterance-level regression head: header ``# utt <head>``, rows ``<utt> <value>``, sorted by utt."""
    with atomic_write(path) as f:
        f.write(f"# utt {head}\n")
        for utt, v in sorted(zip(utts, values), key=lambda x: x[0]):
            f.write(f"{utt} {float(v):.6f}\n")


def read_values(path: str | Path) -> tuple[str, dict[str, float]]:
    """Read a regression predictions file ``# utt <name>`` / ``<utt> <value>``: ``(name, {utt: value})``."""
    path = Path(path)
    lines = _lines(path)
    header = _header(lines)
    if len(header) != 2 or header[0] != "utt":
        raise EmotkError(f"{where(path, 1)}: expected the header '# utt <name>'")
    values: dict[str, float] = {}
    for n, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if len(parts) != 2:
            raise EmotkError(f"{where(path, n)}: expected '<utt> <value>', got {len(parts)} fields")
        try:
            v = float(parts[1])
        except ValueError:
            raise EmotkError(f"{where(path, n)}: utterance {parts[0]!r}: value must be a number") from None
        if not math.isfinite(v):
            raise EmotkError(f"{where(path, n)}: utterance {parts[0]!r}: NaN or infinite value")
        if parts[0] in values:
            raise EmotkError(f"{where(path, n)}: duplicate utterance {parts[0]!r}")
        values[parts[0]] = v
    if not values:
        raise EmotkError(f"{path}: no predictions after the header")
    return header[1], values


# heads.yaml ------------------------------------------------------------------------------

def write_heads_spec(path: str | Path, heads: dict[str, dict]) -> None:
    """``heads.yaml`` of a predictions dir: ``{head: {kind, labels, file}}`` (what ``emotk score`` reads)."""
    import yaml

    with atomic_write(path) as f:
        f.write(yaml.safe_dump(heads, sort_keys=False))


def plain_heads(hyp: Path) -> dict[str, dict]:
    """The one head of a predictions file or frame dir without heads.yaml (see module doc)."""
    if hyp.is_dir():
        return {FRAME_HEAD: {"kind": "frame_regression", "labels": FRAME_TABLE, "file": "."}}
    header = _header(_lines(hyp)[:1])
    if len(header) == 2 and header[0] == "utt":
        return {header[1]: {"kind": "regression", "labels": f"utt2{header[1]}", "file": hyp.name}}
    return {CLASS_HEAD: {"kind": "class", "labels": CLASS_TABLE, "file": hyp.name}}


def read_heads(hyp: Path) -> tuple[Path, dict[str, dict]]:
    """``(base dir, {head: {kind, labels, file}})`` of a predictions dir (heads.yaml) or a plain file/dir."""
    import yaml

    spec_path = hyp / "heads.yaml"
    if not (hyp.is_dir() and spec_path.is_file()):
        return hyp.parent if hyp.is_file() else hyp, plain_heads(hyp)
    try:
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise EmotkError(f"{spec_path}: not valid YAML ({e})") from None
    if not isinstance(spec, dict) or not spec:
        raise EmotkError(f"{spec_path}: expected '<head>: {{kind, labels, file}}' entries")
    for name, h in spec.items():
        if not isinstance(h, dict) or h.get("kind") not in HEAD_KINDS or not h.get("labels") or not h.get("file"):
            raise EmotkError(f"{spec_path}: head {name!r}: needs kind ({' | '.join(HEAD_KINDS)}), labels and file")
        if not (hyp / h["file"]).exists():
            raise EmotkError(f"{spec_path}: head {name!r}: {hyp / h['file']} not found")
    return hyp, spec
