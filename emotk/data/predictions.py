"""Writers of the prediction formats (torch-free, so ensembling and scoring start fast).

A predictions dir ``<exp>/predictions/<set>/`` holds ``heads.yaml`` and one file or dir per head:

- class: a text file, header ``# utt label <class1> ... <classK>``, then
  ``<utt> <predicted-label> <p1> ... <pK>`` (posteriors, 6 decimals), sorted by utt;
- regression: a text file, header ``# utt <head>``, then ``<utt> <value>``;
- frame_regression: a dir with labels.ark + labels.scp (T x K per utt), label_names and
  label_frame_shift: the format of reference labels, so scoring reads both alike.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from emotk.data.ark import write_ark_scp
from emotk.fileio import atomic_dir, atomic_write


def write_class_predictions(path: str | Path, utts: list[str], posteriors: list[np.ndarray], classes: list[str]) -> None:
    with atomic_write(path) as f:
        f.write("# utt label " + " ".join(classes) + "\n")
        for utt, p in sorted(zip(utts, posteriors), key=lambda x: x[0]):
            f.write(f"{utt} {classes[int(np.argmax(p))]} " + " ".join(f"{x:.6f}" for x in p) + "\n")


def write_frame_predictions(out_dir: str | Path, utts: list[str], outputs: list[np.ndarray], names: list[str],
                            label_frame_shift: float) -> None:
    """A labels dir, built under a temporary name and renamed when complete."""
    final = Path(out_dir).resolve()
    with atomic_dir(final) as tmp:
        tmp = tmp.resolve()
        write_ark_scp(tmp / "labels.ark", tmp / "labels.scp", sorted(zip(utts, outputs), key=lambda x: x[0]))
        # The scp names the ark by its absolute path: point it at the final location.
        scp = (tmp / "labels.scp").read_text(encoding="utf-8")
        scp = scp.replace(f"{tmp}{os.sep}labels.ark:", f"{final}{os.sep}labels.ark:")
        (tmp / "labels.scp").write_text(scp, encoding="utf-8")
        (tmp / "label_names").write_text(" ".join(names) + "\n", encoding="utf-8")
        (tmp / "label_frame_shift").write_text(f"{label_frame_shift:g}\n", encoding="utf-8")


def write_value_predictions(path: str | Path, utts: list[str], values: list[float], head: str) -> None:
    """An utterance-level regression head: header ``# utt <head>``, rows ``<utt> <value>``, sorted by utt."""
    with atomic_write(path) as f:
        f.write(f"# utt {head}\n")
        for utt, v in sorted(zip(utts, values), key=lambda x: x[0]):
            f.write(f"{utt} {float(v):.6f}\n")


def write_heads_spec(path: str | Path, heads: dict[str, dict]) -> None:
    """``heads.yaml`` of a predictions dir: ``{head: {kind, labels, file}}`` (what ``emotk score`` reads)."""
    import yaml

    with atomic_write(path) as f:
        f.write(yaml.safe_dump(heads, sort_keys=False))
