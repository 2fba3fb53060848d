"""Ensembles: the average of the predictions of N runs (paper 000: five runs, test prediction =
their average).

Works on the prediction formats ``emotk infer`` writes: predictions dirs with ``heads.yaml`` (each
head averaged as below, regression heads value by value; runs must agree on the heads), and the
single-head formats:

- frame-level dirs (``labels.scp`` + ark, ``label_names``, ``label_frame_shift``): the frame-wise
  mean per recording; runs must agree on the recordings, dimensions and frame shift.  Lengths may
  differ by up to :data:`~emotk.data.predictions.MAX_FRAME_MISMATCH` frames (framing edge effects),
  and are then cut to the shortest.
- categorical files (header ``# utt label c1 .. cK``, rows ``<utt> <label> p1 .. pK``): the mean
  posterior per utterance, label = its argmax; runs must agree on the classes and utterances.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from emotk.data.predictions import (common_length, read_frame_labels, read_heads, read_predictions, read_values,
                                    write_class_predictions, write_frame_predictions, write_heads_spec,
                                    write_value_predictions)
from emotk.errors import EmotkError


def _ensemble_frames(inputs: Sequence[Path], out: Path) -> dict:
    first = None
    sums: dict[str, np.ndarray] = {}
    for path in inputs:
        names, shift, mats = read_frame_labels(path)
        if first is None:
            first = (path, names, shift, set(mats))
            sums = {u: m.copy() for u, m in mats.items()}
            continue
        p0, names0, shift0, utts0 = first
        if names != names0:
            raise EmotkError(f"{path / 'label_names'}: {' '.join(names)} differs from {p0 / 'label_names'}: {' '.join(names0)}")
        if not math.isclose(shift, shift0, rel_tol=1e-6):
            raise EmotkError(f"{path / 'label_frame_shift'}: {shift:g} differs from {p0}'s {shift0:g}")
        if set(mats) != utts0:
            diff = sorted(set(mats) ^ utts0)
            raise EmotkError(f"{path / 'labels.scp'}: recordings differ from {p0 / 'labels.scp'} (e.g. {diff[0]!r})")
        for u, m in mats.items():
            n = common_length(m.shape[0], sums[u].shape[0],
                              f"{path / 'labels.scp'}: {u!r} has {m.shape[0]} frames, {p0} has {sums[u].shape[0]}")
            sums[u] = sums[u][:n] + m[:n]
    utts = sorted(sums)
    _, names, shift, _ = first
    write_frame_predictions(out, utts, [(sums[u] / len(inputs)).astype(np.float32) for u in utts], names, shift)
    return {"kind": "frame_regression", "runs": len(inputs), "utterances": len(utts)}


def _ensemble_classes(inputs: Sequence[Path], out: Path) -> dict:
    classes0, preds0 = read_predictions(inputs[0])
    sums = {u: np.asarray(p, dtype=np.float64) for u, (_, p) in preds0.items()}
    for path in inputs[1:]:
        classes, preds = read_predictions(path)
        if classes != classes0:
            raise EmotkError(f"{path}: classes {' '.join(classes)} differ from {inputs[0]}: {' '.join(classes0)}")
        if set(preds) != set(sums):
            diff = sorted(set(preds) ^ set(sums))
            raise EmotkError(f"{path}: utterances differ from {inputs[0]} (e.g. {diff[0]!r})")
        for u, (_, p) in preds.items():
            sums[u] += np.asarray(p, dtype=np.float64)
    utts = sorted(sums)
    write_class_predictions(out, utts, [sums[u] / len(inputs) for u in utts], classes0)
    return {"kind": "class", "runs": len(inputs), "utterances": len(utts)}


def _ensemble_values(inputs: Sequence[Path], out: Path) -> dict:
    name0, values0 = read_values(inputs[0])
    sums = dict(values0)
    for path in inputs[1:]:
        name, values = read_values(path)
        if name != name0 or set(values) != set(sums):
            diff = sorted(set(values) ^ set(sums))
            raise EmotkError(f"{path}: head {name!r} or utterances differ from {inputs[0]} ({name0!r}"
                             + (f", e.g. {diff[0]!r})" if diff else ")"))
        for u, v in values.items():
            sums[u] += v
    utts = sorted(sums)
    write_value_predictions(out, utts, [sums[u] / len(inputs) for u in utts], name0)
    return {"kind": "regression", "runs": len(inputs), "utterances": len(utts)}


def _ensemble_heads(inputs: Sequence[Path], out: Path) -> dict:
    """Each head of predictions dirs with heads.yaml, into ``out`` with the same heads.yaml.

    As ``emotk infer``: each head is written atomically and heads.yaml last (removed first), so
    an interrupted ensemble leaves no heads.yaml and is never scored.
    """
    _, spec0 = read_heads(inputs[0])
    for path in inputs[1:]:
        _, spec = read_heads(path)
        if spec != spec0:
            raise EmotkError(f"{path / 'heads.yaml'}: heads differ from {inputs[0] / 'heads.yaml'}")
    fns = {"class": _ensemble_classes, "regression": _ensemble_values, "frame_regression": _ensemble_frames}
    result = {}
    (out / "heads.yaml").unlink(missing_ok=True)
    for name, h in spec0.items():
        result[name] = fns[h["kind"]]([p / h["file"] for p in inputs], out / h["file"])
    write_heads_spec(out / "heads.yaml", spec0)
    return {"kind": "heads", "runs": len(inputs), "heads": result}


def ensemble_predictions(inputs: Sequence[str | Path], out: str | Path) -> dict:
    """Average the predictions ``inputs`` (all dirs or all files) into ``out``, atomically."""
    inputs = [Path(p) for p in inputs]
    if len(inputs) < 2:
        raise EmotkError(f"an ensemble needs at least 2 predictions, got {len(inputs)}")
    for p in inputs:
        if not p.exists():
            raise EmotkError(f"{p}: predictions not found")
    kinds = {p.is_dir() for p in inputs}
    if len(kinds) > 1:
        raise EmotkError("cannot mix frame-level prediction dirs and categorical prediction files in one ensemble")
    out = Path(out)
    if kinds.pop():
        if all((p / "heads.yaml").is_file() for p in inputs):
            summary = _ensemble_heads(inputs, out)
            _merge_provenance(inputs, out)
            return summary
        return _ensemble_frames(inputs, out)
    return _ensemble_classes(inputs, out)


def _merged_normalization(records: list[dict]) -> dict[str, str]:
    """Each input's normalization scope over the members: the scope they share, or the scopes joined by ' + '."""
    scopes: dict[str, list[str]] = {}
    for r in records:
        for name, scope in (r.get("normalization") or {}).items():
            if scope not in scopes.setdefault(name, []):
                scopes[name].append(scope)
    return {name: " + ".join(v) for name, v in scopes.items()}


def _merge_provenance(inputs: Sequence[Path], out: Path) -> None:
    """Give an ensemble of runs' predictions (``<exp>/predictions/<set>``) the union of its members'
    provenance (``<out exp>/provenance``), so that scoring checks the test set against every utterance
    and speaker any member was trained or selected on. Members must share one protocol."""
    from emotk.training.provenance import read_record, read_trained, write_record

    exps = [p.parent.parent for p in inputs]
    if out.parent.name != "predictions" or not all(p.parent.name == "predictions" for p in inputs):
        return
    records = [read_record(e) for e in exps]
    if any(r is None for r in records):
        return
    protocols = {str(r.get("protocol")) for r in records}
    if len(protocols) > 1:
        raise EmotkError(f"ensemble members were trained under different protocols: {' vs '.join(sorted(protocols))}")
    train, valid = {}, {}
    for e in exps:
        trained = read_trained(e)
        train.update(trained["train"])
        valid.update(trained["valid"])
    first = records[0]
    record = {**first, "ensemble_of": [str(e) for e in exps],
              "selection": {"set": "valid", "speakers": sorted(set(valid.values())), "utterances": len(valid)},
              "normalization": _merged_normalization(records)}
    write_record(out.parent.parent, record, train, valid)
