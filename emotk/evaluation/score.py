"""Score predictions against a reference data dir and write ``scores/<set>.json``, one section per head.

A predictions dir ``<exp>/predictions/<set>/`` written by ``emotk infer`` holds ``heads.yaml`` and one
file or dir per head, in the formats of :mod:`emotk.data.predictions` (which also reads older
single-head predictions as one head).  Each head is scored against the reference table it names:

- ``class``: a ``<utt> <label>`` table (utt2emo); UA, WA, macro-F1 and the rest of :func:`score_class`;
- ``regression``: a ``utt2<dim>`` table; CCC, RMSE and PCC over the utterances;
- ``frame_regression``: labels.scp; metrics over the concatenation of all recordings (AVEC).

Before scoring, the test utterances are checked against the model's provenance record
(``<exp>/provenance/``, :mod:`emotk.training.provenance`): a test utterance the model was
trained or selected on is refused, and so is a test speaker it saw when the protocol is
speaker-independent.  The check's result, the record's protocol, selection set and
normalization go into the scores JSON, so ``emotk report`` states them from the records.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

from emotk import __version__
from emotk.data.datadir import DataDir, read_table, validate_data_dir
from emotk.data.predictions import (FRAME_TABLE, common_length, read_frame_label, read_heads, read_predictions,
                                    read_values)
from emotk.errors import EmotkError
from emotk.fileio import write_text
from emotk.metrics import classification as cls
from emotk.metrics import regression as reg

METRICS = {"class": ("ua", "wa", "f1"), "regression": tuple(reg.METRICS), "frame_regression": tuple(reg.METRICS)}
ALL_METRICS = tuple(dict.fromkeys(m for ms in METRICS.values() for m in ms))


def parse_metrics(spec: str | None, kinds: list[str]) -> dict[str, list[str]]:
    """Metrics per head kind: ``"ua,ccc"`` -> ``{"class": ["ua"], "regression": ["ccc"], ...}``.

    A named metric must apply to at least one of ``kinds``; a kind none of whose metrics is
    named keeps all of its metrics (so ``--metric ua`` on a two-head model still scores the other head).
    """
    if not spec:
        return {k: list(METRICS[k]) for k in kinds}
    names = list(dict.fromkeys(m.strip().lower() for m in spec.split(",") if m.strip()))
    for m in names:
        if m not in ALL_METRICS:
            raise EmotkError(f"unknown metric {m!r}; choose from {', '.join(ALL_METRICS)}")
        if not any(m in METRICS[k] for k in kinds):
            raise EmotkError(f"metric {m!r} does not apply to these predictions (head kinds: {', '.join(sorted(set(kinds)))})")
    out = {}
    for k in kinds:
        chosen = [m for m in names if m in METRICS[k]]
        out[k] = chosen or list(METRICS[k])
    return out


def _check_same_utts(ref_path: Path, ref_ids, hyp_path: Path, hyp_ids) -> None:
    extra = sorted(set(hyp_ids) - set(ref_ids))
    if extra:
        raise EmotkError(f"{hyp_path}: utterance {extra[0]!r} is not in the reference {ref_path} ({len(extra)} such)")
    missing = sorted(set(ref_ids) - set(hyp_ids))
    if missing:
        raise EmotkError(f"{hyp_path}: no prediction for utterance {missing[0]!r} of {ref_path} ({len(missing)} such)")


# Class heads ------------------------------------------------------------------------------

def _majority(table: str, record: dict | None, train: Path | None) -> tuple[str, dict] | None:
    """The training set's majority class: from the provenance record's label counts, else a train dir."""
    head_counts = None
    for head in ((record or {}).get("train") or {}).get("labels", {}).values():
        if head.get("table") == table and head.get("classes"):
            head_counts = head["classes"]
    if head_counts:
        return cls.majority_class(list(Counter(head_counts).elements())), {"source": "provenance record (train)"}
    if train is not None and (Path(train) / table).is_file():
        labels = list(read_table(Path(train) / table, parse=str).values())
        return cls.majority_class(labels), {"source": "train dir", "source_path": str(Path(train).resolve())}
    return None


def score_class(ref: DataDir, path: Path, table: str, metrics: list[str], record: dict | None = None,
                train: Path | None = None) -> dict:
    """UA, WA, macro-F1 with per-class recall/precision/F1, confusion, per-speaker confusions and baselines."""
    ref.require(table, hint="reference labels of a class head")
    classes, preds = read_predictions(path)
    ref_labels = read_table(ref.path / table, parse=str)
    _check_same_utts(ref.path / table, ref_labels, path, preds)
    known = set(classes)
    for utt, lab in ref_labels.items():
        if lab not in known:
            raise EmotkError(f"{ref.path / table}: label {lab!r} of utterance {utt!r} is not in the class list of {path} ({' '.join(classes)})")
    utts = list(ref_labels)
    y_true = [ref_labels[u] for u in utts]
    y_pred = [preds[u][0] for u in utts]
    fns = {"ua": cls.ua, "wa": cls.wa, "f1": cls.f1_macro}
    c = cls.confusion(y_true, y_pred, classes)
    recall = cls.recall_per_class(y_true, y_pred, classes)
    precision = cls.precision_per_class(y_true, y_pred, classes)
    f1 = cls.f1_per_class(y_true, y_pred, classes)
    majority = _majority(table, record, train)
    per_speaker = {}
    for spk, spk_utts in ref.spk2utt.items():
        t = [ref_labels[u] for u in spk_utts]
        p = [preds[u][0] for u in spk_utts]
        per_speaker[spk] = {"n": len(spk_utts), "ua": cls.ua(t, p, classes), "wa": cls.wa(t, p),
                            "confusion": cls.confusion(t, p, classes).tolist()}
    return {
        "metrics": {m: fns[m](y_true, y_pred, classes) for m in metrics},
        "per_class": {lab: {"n": int(c[i].sum()), "recall": float(recall[i]), "precision": float(precision[i]),
                            "f1": float(f1[i])} for i, lab in enumerate(classes)},
        "counts": {"utterances": len(utts), "speakers": len(ref.speakers),
                   "per_class": {lab: int(c[i].sum()) for i, lab in enumerate(classes)}},
        "confusion": {"labels": classes, "rows": "reference", "columns": "prediction", "matrix": c.tolist()},
        "baselines": {"chance": {**cls.chance_baseline(classes), "source": "the model's classes"},
                      "majority": None if majority is None else {
                          **cls.majority_baseline(y_true, majority[0], classes), **majority[1]}},
        "per_speaker": per_speaker,
    }


def confusion_text(labels: list[str], matrix) -> str:
    """Aligned table: counts with row-normalized % (recall on the diagonal)."""
    c = np.asarray(matrix)
    rows = c.sum(axis=1)
    cells = [[f"{c[i, j]} ({100.0 * c[i, j] / rows[i]:.1f}%)" if rows[i] else "0" for j in range(len(labels))]
             for i in range(len(labels))]
    head = ["ref \\ hyp", *labels, "total"]
    body = [[lab, *cells[i], str(rows[i])] for i, lab in enumerate(labels)]
    body.append(["total", *[str(x) for x in c.sum(axis=0)], str(c.sum())])
    widths = [max(len(r[j]) for r in [head, *body]) for j in range(len(head))]

    def fmt(row: list[str]) -> str:
        return "  ".join(x.ljust(widths[0]) if j == 0 else x.rjust(widths[j]) for j, x in enumerate(row))

    out = ["# rows: reference, columns: prediction; counts (row-normalized %)", fmt(head), *map(fmt, body)]
    return "\n".join(out) + "\n"


# Regression heads -------------------------------------------------------------------------

def score_regression(ref: DataDir, path: Path, table: str, metrics: list[str]) -> dict:
    """CCC, RMSE, PCC over the utterances (one value each) of an utterance-level dimension."""
    ref.require(table, hint="reference values of a regression head")
    _, preds = read_values(path)
    try:
        values = read_table(ref.path / table, parse=float)
    except ValueError:
        raise EmotkError(f"{ref.path / table}: values must be numbers") from None
    _check_same_utts(ref.path / table, values, path, preds)
    utts = list(values)
    y, p = np.array([values[u] for u in utts]), np.array([preds[u] for u in utts])
    return {"metrics": {m: reg.METRICS[m](p, y) for m in metrics},
            "counts": {"utterances": len(utts), "speakers": len(ref.speakers)}}


# Frame-regression heads -------------------------------------------------------------------

def frame_pairs(d: DataDir, hyp: Path, table: str = FRAME_TABLE) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]], dict[str, int]]:
    """``(dims, {utt: (reference [T, D], prediction [T, D])}, truncated)``: the prediction's dims,
    the reference's columns in that order, cut to the shorter of the two."""
    ref = d.path
    d.require(table, "label_names", "label_frame_shift", hint="frame-level reference labels")
    h = DataDir(hyp)
    h.require(FRAME_TABLE, "label_names", "label_frame_shift", hint="frame-level predictions dir")
    ref_names, hyp_names = d.label_names, h.label_names
    for name in hyp_names:
        if name not in ref_names:
            raise EmotkError(f"{hyp / 'label_names'}: dimension {name!r} is not in {ref / 'label_names'} ({' '.join(ref_names)})")
    ref_shift, hyp_shift = float(d.scalar("label_frame_shift")), float(h.scalar("label_frame_shift"))
    if not math.isclose(ref_shift, hyp_shift, rel_tol=1e-6):
        raise EmotkError(f"{hyp / 'label_frame_shift'}: {hyp_shift} differs from the reference's {ref_shift}")
    ref_scp, hyp_scp = d.table(table), h.table(FRAME_TABLE)
    _check_same_utts(ref / table, ref_scp, hyp / FRAME_TABLE, hyp_scp)
    cols = [ref_names.index(n) for n in hyp_names]
    truncated: dict[str, int] = {}
    pairs = {}
    for utt in ref_scp:
        r = read_frame_label(d, table, utt, len(ref_names))
        p = read_frame_label(h, FRAME_TABLE, utt, len(hyp_names))
        n = common_length(p.shape[0], r.shape[0], f"{hyp / FRAME_TABLE}: utterance {utt!r} has {p.shape[0]} frames, "
                                                  f"the reference {r.shape[0]}")
        if r.shape[0] != p.shape[0]:
            truncated[utt] = abs(r.shape[0] - p.shape[0])
        pairs[utt] = (r[:n, cols].astype(np.float64), p[:n].astype(np.float64))
    return hyp_names, pairs, truncated


def score_frames(ref: DataDir, hyp: Path, table: str, metrics: list[str]) -> dict:
    """Per dimension: metrics over the concatenation of all recordings (AVEC), and per recording."""
    dims, pairs, truncated = frame_pairs(ref, hyp, table)
    utts = list(pairs)
    all_r = np.concatenate([pairs[u][0] for u in utts])
    all_p = np.concatenate([pairs[u][1] for u in utts])
    concat, per_rec = {}, {}
    for j, name in enumerate(dims):
        concat[name] = {m: reg.METRICS[m](all_p[:, j], all_r[:, j]) for m in metrics}
        per_rec[name] = {}
        for m in metrics:
            values = {u: reg.METRICS[m](pairs[u][1][:, j], pairs[u][0][:, j]) for u in utts}
            per_rec[name][m] = {"mean": float(np.mean(list(values.values()))), "values": values}
    return {
        "dims": dims,
        "label_frame_shift": float(ref.scalar("label_frame_shift")),
        "metrics": concat,
        "metrics_convention": "computed over the concatenation of all recordings (AVEC); per_recording has each recording's value and their mean",
        "per_recording": per_rec,
        "counts": {"recordings": len(utts), "speakers": len({ref.utt2spk[u] for u in utts}),
                   "frames": int(all_r.shape[0]), "truncated": truncated},
    }


# Disjointness from what the model was trained on ----------------------------------------------

def check_disjoint(exp_dir: Path, ref: DataDir, fold: dict | None, selection_set_ok: bool = False) -> tuple[dict, dict | None]:
    """Refuse test utterances the model was trained or selected on (and test speakers it saw,
    under a speaker-independent protocol); returns ``(result, record)``.

    The protocol is speaker-independent when the run's record or the ``fold.yaml`` beside the
    reference says so.  ``selection_set_ok`` allows scoring the valid set that chose the
    checkpoint (the result says so); training utterances are always refused.
    """
    from emotk.training.provenance import read_record, read_trained

    record = read_record(exp_dir)
    if record is None:
        return {"checked": False, "reason": f"no provenance record in {exp_dir}"}, None
    trained = read_trained(exp_dir)
    test = ref.utt2spk
    shared_valid = sorted(set(test) & set(trained["valid"]))
    for part in ("train", "valid"):
        shared = sorted(set(test) & set(trained[part]))
        if shared and not (part == "valid" and selection_set_ok):
            raise EmotkError(f"{ref.path}: test utterance {shared[0]!r} is in the {part} set of the model in "
                             f"{exp_dir} ({len(shared)} such): refusing to score")
    si_record = (record.get("protocol") or {}).get("speaker_independent")
    si_fold = (fold or {}).get("speaker_independent")
    independent = bool(si_record) or bool(si_fold)
    seen = {s: part for part in ("valid", "train") for s in trained[part].values()}
    shared_spk = sorted(s for s in set(test.values()) if s in seen and not (selection_set_ok and seen[s] == "valid"))
    if independent and shared_spk:
        spk = shared_spk[0]
        utt = next(u for u, s in test.items() if s == spk)
        raise EmotkError(f"{ref.path}: test speaker {spk!r} (utterance {utt!r}) is in the {seen[spk]} set of the model "
                         f"in {exp_dir}, and the protocol is speaker-independent: refusing to score")
    return {
        "checked": True,
        "record": str((exp_dir / "provenance" / "record.yaml").resolve()),
        "train_utterances": len(trained["train"]), "valid_utterances": len(trained["valid"]),
        "utterances_disjoint": not shared_valid,
        "scored_on_selection_set": len(shared_valid),
        "speaker_independent": independent,
        "speakers_checked": independent,
        "shared_speakers": len(shared_spk),
    }, record


def provenance_summary(record: dict | None) -> dict | None:
    """What ``emotk report`` states about a run: protocol, selection set, normalization, seed."""
    if record is None:
        return None
    return {k: record.get(k) for k in ("protocol", "selection", "normalization", "seed")}


# Metadata and output --------------------------------------------------------------------

def fold_meta(ref: Path) -> dict | None:
    """``<ref>/../fold.yaml`` (written by ``emotk split-data-dir``), plus the fold name."""
    import yaml

    p = ref.resolve().parent / "fold.yaml"
    if not p.is_file():
        return None
    try:
        meta = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise EmotkError(f"{p}: not valid YAML ({e})") from None
    keep = ("protocol", "speaker_independent", "text_independent", "test_speakers", "valid_speakers", "note", "checks")
    out = {"name": p.parent.name, "path": str(p), "root": p.parent.parent.name, **{k: meta[k] for k in keep if k in meta}}
    if "seed" in meta:
        out["split_seed"] = meta["seed"]
    return out


def read_config(exp_dir: Path) -> dict:
    import yaml

    p = exp_dir / "config.yaml"
    if not p.is_file():
        return {}
    try:
        cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise EmotkError(f"{p}: not valid YAML ({e})") from None
    return cfg if isinstance(cfg, dict) else {}


def run_meta(exp_dir: Path, fold: dict | None, tag: str | None = None) -> dict:
    """Model tag, model name and seed of the run in ``exp_dir``.

    The seed comes from config.yaml (``train.seed``), else a ``seed<N>`` dir name.  Without
    ``tag`` the model tag is the first component of the exp path above the seed, fold and
    protocol dirs: ``exp/<corpus>/<tag>/<protocol>/<fold>/seed<N>`` and
    ``exp/<corpus>/<tag>/<fold>`` both give ``<tag>``.
    """
    cfg = read_config(exp_dir)
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    train = cfg.get("train") if isinstance(cfg.get("train"), dict) else {}
    seed = train.get("seed")
    parts = list(exp_dir.resolve().parts)
    m = re.fullmatch(r"seed(\d+)", parts[-1]) if parts else None
    if m:
        parts.pop()
        seed = int(m.group(1)) if seed is None else seed
    if fold:
        for name in (fold["name"], fold.get("protocol"), fold.get("root")):
            if parts and parts[-1] == name:
                parts.pop()
    return {"exp_dir": str(exp_dir.resolve()),
            "model": {"tag": tag or (parts[-1] if parts else None), "name": model.get("name")},
            "seed": seed}


def exp_dir_of(hyp: Path, out: Path) -> Path:
    """``<exp>`` of ``<exp>/predictions/<set>[.txt]``, else of ``<exp>/scores/<set>.json``, else out's dir."""
    if hyp.resolve().parent.name == "predictions":
        return hyp.resolve().parent.parent
    out = out.resolve()
    return out.parent.parent if out.parent.name == "scores" else out.parent


def default_out(hyp: Path) -> Path:
    hyp = hyp.resolve()
    if hyp.parent.name != "predictions":
        raise EmotkError(f"{hyp}: not under <exp>/predictions/, cannot derive the scores path; give --out")
    name = hyp.name[:-4] if hyp.name.endswith(".txt") else hyp.name
    return hyp.parent.parent / "scores" / f"{name}.json"


def _train_dir(ref: Path, train: Path | None) -> Path | None:
    """The training set of a fold (``<ref>/../train``) when not given."""
    if train is not None:
        return train
    cand = ref.parent / "train"
    return cand if cand.is_dir() and cand.resolve() != ref.resolve() else None


def score(ref: Path, hyp: Path, metric_spec: str | None = None, out: Path | None = None, *,
          tag: str | None = None, train: Path | None = None, ensemble: bool = False,
          selection_set_ok: bool = False) -> tuple[dict, Path]:
    """Check disjointness, score every head, write ``out`` (JSON) and, per class head,
    ``<set>.<head>.confusion.txt`` beside it and ``<exp>/plots/confusion_<set>_<head>.png``.
    Returns ``(scores, out)``."""
    ref, hyp = Path(ref), Path(hyp)
    if not hyp.exists():
        raise EmotkError(f"{hyp}: predictions not found")
    base, heads = read_heads(hyp)
    metrics = parse_metrics(metric_spec, [h["kind"] for h in heads.values()])
    out = Path(out) if out is not None else default_out(hyp)
    set_name = out.stem
    d = validate_data_dir(ref, check_files=False)
    fold = fold_meta(ref)
    exp_dir = exp_dir_of(hyp, out)
    disjoint, record = check_disjoint(exp_dir, d, fold, selection_set_ok)
    results = {}
    for name, h in heads.items():
        path = base / h["file"]
        if h["kind"] == "class":
            r = score_class(d, path, h["labels"], metrics["class"], record, _train_dir(ref, train))
        elif h["kind"] == "regression":
            r = score_regression(d, path, h["labels"], metrics["regression"])
        else:
            r = score_frames(d, path, h["labels"], metrics["frame_regression"])
        results[name] = {"kind": h["kind"], "labels": h["labels"], "predictions": str(path.resolve()), **r}
    scores = {"emotk_version": __version__, "set": set_name, "ref": str(ref.resolve()), "hyp": str(hyp.resolve()),
              **run_meta(exp_dir, fold, tag), "fold": fold, "ensemble": ensemble,
              "speakers": d.speakers, "provenance": provenance_summary(record), "disjointness": disjoint,
              "heads": results}
    for name, r in results.items():
        if r["kind"] != "class":
            continue
        c = r["confusion"]
        write_text(out.with_name(f"{set_name}.{name}.confusion.txt"), confusion_text(c["labels"], c["matrix"]))
        from emotk.analysis.plots import plot_confusion

        plot_confusion(c["labels"], c["matrix"], exp_dir / "plots" / f"confusion_{set_name}_{name}.png",
                       title=f"{set_name} {name}: UA {100 * cls.ua_from_confusion(np.asarray(c['matrix'])):.1f}%")
    write_text(out, json.dumps(scores, indent=1) + "\n")
    return scores, out
