"""Score predictions against a reference data dir and write ``scores/<set>.json``.

Categorical predictions are a text file: a header ``# utt label <class1> ... <classK>``,
then ``<utt> <predicted-label> <p1> ... <pK>``.  Frame-level (continuous) predictions are
a dir with ``labels.scp`` (+ ark), ``label_names`` and ``label_frame_shift``, like the
reference data dir.  The scores JSON carries the counts every number was computed on and
the metadata ``emotk report`` groups by (protocol, fold, model tag, seed), so the report
never has to guess from paths.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from emotk import __version__
from emotk.data.datadir import DataDir, read_table, validate_data_dir
from emotk.errors import EmotkError, where
from emotk.fileio import write_text
from emotk.metrics import classification as cls
from emotk.metrics import regression as reg

CATEGORICAL_METRICS = ("ua", "wa", "f1")
CONTINUOUS_METRICS = tuple(reg.METRICS)
# Reference and prediction of a recording may differ by this many frames (edge effects of
# framing); the longer one is truncated. A larger difference means misaligned data.
MAX_FRAME_MISMATCH = 2


def parse_metrics(spec: str | None, kind: str) -> list[str]:
    """``"ua,wa"`` -> ``["ua", "wa"]``; all metrics of ``kind`` when ``spec`` is empty."""
    valid = CATEGORICAL_METRICS if kind == "categorical" else CONTINUOUS_METRICS
    if not spec:
        return list(valid)
    names = [m.strip().lower() for m in spec.split(",") if m.strip()]
    for m in names:
        if m not in CATEGORICAL_METRICS + CONTINUOUS_METRICS:
            raise EmotkError(f"unknown metric {m!r}; choose from {', '.join(CATEGORICAL_METRICS + CONTINUOUS_METRICS)}")
        if m not in valid:
            other = "a predictions dir (frame-level labels.scp)" if kind == "categorical" else "a predictions file (categorical)"
            raise EmotkError(f"metric {m!r} does not apply to {kind} predictions; it needs {other}")
    return list(dict.fromkeys(names))


# Categorical ----------------------------------------------------------------------------

def read_predictions(path: str | Path) -> tuple[list[str], dict[str, tuple[str, list[float]]]]:
    """Read a categorical predictions file: ``(classes, {utt: (label, probabilities)})``."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise EmotkError(f"{path}: predictions file not found") from None
    except UnicodeDecodeError as e:
        raise EmotkError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    header = lines[0].lstrip("#").split() if lines and lines[0].startswith("#") else []
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


def _check_same_utts(ref_path: Path, ref_ids, hyp_path: Path, hyp_ids) -> None:
    extra = sorted(set(hyp_ids) - set(ref_ids))
    if extra:
        raise EmotkError(f"{hyp_path}: utterance {extra[0]!r} is not in the reference {ref_path} ({len(extra)} such)")
    missing = sorted(set(ref_ids) - set(hyp_ids))
    if missing:
        raise EmotkError(f"{hyp_path}: no prediction for utterance {missing[0]!r} of {ref_path} ({len(missing)} such)")


def _train_dir(ref: Path, train: Path | None) -> Path | None:
    """The training set of a fold (``<ref>/../train``), whose majority class a real system could know."""
    if train is not None:
        return train
    cand = ref.parent / "train"
    if (cand / "utt2emo").is_file() and cand.resolve() != ref.resolve():
        return cand
    return None


def score_categorical(ref: Path, hyp: Path, metrics: list[str], train: Path | None = None) -> dict:
    d = validate_data_dir(ref, require=["utt2emo"], check_files=False)
    classes, preds = read_predictions(hyp)
    utt2emo = d.table("utt2emo")
    _check_same_utts(ref / "utt2emo", utt2emo, hyp, preds)
    known = set(classes)
    for utt, lab in utt2emo.items():
        if lab not in known:
            raise EmotkError(
                f"{ref / 'utt2emo'}: label {lab!r} of utterance {utt!r} is not in the class list of {hyp} ({' '.join(classes)})")
    utts = list(utt2emo)
    y_true = [utt2emo[u] for u in utts]
    y_pred = [preds[u][0] for u in utts]
    fns = {"ua": cls.ua, "wa": cls.wa, "f1": cls.f1_macro}
    c = cls.confusion(y_true, y_pred, classes)
    recall = cls.recall_per_class(y_true, y_pred, classes)
    precision = cls.precision_per_class(y_true, y_pred, classes)
    f1 = cls.f1_per_class(y_true, y_pred, classes)

    train_dir = _train_dir(ref, train)
    if train_dir is not None:
        majority = cls.majority_class(list(read_table(Path(train_dir) / "utt2emo").values()))
        source = {"source": "train", "source_path": str(Path(train_dir).resolve())}
    else:
        majority = cls.majority_class(y_true)
        source = {"source": "reference", "source_path": str(ref.resolve())}

    spk_of = d.utt2spk
    per_speaker = {}
    for spk, spk_utts in d.spk2utt.items():
        t = [utt2emo[u] for u in spk_utts]
        p = [preds[u][0] for u in spk_utts]
        per_speaker[spk] = {"n": len(spk_utts), "ua": cls.ua(t, p, classes), "wa": cls.wa(t, p),
                            "confusion": cls.confusion(t, p, classes).tolist()}
    return {
        "kind": "categorical",
        "metrics": {m: fns[m](y_true, y_pred, classes) for m in metrics},
        "per_class": {lab: {"n": int(c[i].sum()), "recall": float(recall[i]), "precision": float(precision[i]),
                            "f1": float(f1[i])} for i, lab in enumerate(classes)},
        "counts": {"utterances": len(utts), "speakers": len(set(spk_of.values())),
                   "per_class": {lab: int(c[i].sum()) for i, lab in enumerate(classes)}},
        "speakers": sorted(set(spk_of.values())),
        "confusion": {"labels": classes, "rows": "reference", "columns": "prediction", "matrix": c.tolist()},
        "baselines": {"chance": cls.chance_baseline(y_true),
                      "majority": {**cls.majority_baseline(y_true, majority, classes), **source}},
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


# Continuous -----------------------------------------------------------------------------

def _read_frames(d: DataDir, table: str, utt: str) -> np.ndarray:
    from emotk.data.ark import read_matrix

    m = read_matrix(d.resolve(d.table(table)[utt]))
    if m.ndim != 2:
        raise EmotkError(f"{d.path / table}: utterance {utt!r}: expected a T x K matrix, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise EmotkError(f"{d.path / table}: utterance {utt!r}: NaN or infinite value")
    return m


def score_continuous(ref: Path, hyp: Path, metrics: list[str]) -> dict:
    d = validate_data_dir(ref, require=["labels.scp"], check_files=False)
    h = DataDir(hyp)
    h.require("labels.scp", "label_names", "label_frame_shift", hint="frame-level predictions dir")
    ref_names, hyp_names = d.label_names, h.label_names
    for name in hyp_names:
        if name not in ref_names:
            raise EmotkError(f"{hyp / 'label_names'}: dimension {name!r} is not in {ref / 'label_names'} ({' '.join(ref_names)})")
    ref_shift, hyp_shift = float(d.scalar("label_frame_shift")), float(h.scalar("label_frame_shift"))
    if not math.isclose(ref_shift, hyp_shift, rel_tol=1e-6):
        raise EmotkError(f"{hyp / 'label_frame_shift'}: {hyp_shift} differs from the reference's {ref_shift}")
    ref_scp, hyp_scp = d.table("labels.scp"), h.table("labels.scp")
    _check_same_utts(ref / "labels.scp", ref_scp, hyp / "labels.scp", hyp_scp)

    cols = [ref_names.index(n) for n in hyp_names]
    truncated: dict[str, int] = {}
    refs, hyps = [], []
    for utt in ref_scp:
        r, p = _read_frames(d, "labels.scp", utt), _read_frames(h, "labels.scp", utt)
        if r.shape[1] != len(ref_names):
            raise EmotkError(f"{ref / 'labels.scp'}: utterance {utt!r} has {r.shape[1]} columns, label_names has {len(ref_names)}")
        if p.shape[1] != len(hyp_names):
            raise EmotkError(f"{hyp / 'labels.scp'}: utterance {utt!r} has {p.shape[1]} columns, label_names has {len(hyp_names)}")
        diff = abs(r.shape[0] - p.shape[0])
        if diff > MAX_FRAME_MISMATCH:
            raise EmotkError(f"{hyp / 'labels.scp'}: utterance {utt!r} has {p.shape[0]} frames, the reference "
                             f"{r.shape[0]} (more than {MAX_FRAME_MISMATCH} apart)")
        if diff:
            truncated[utt] = diff
        n = min(r.shape[0], p.shape[0])
        refs.append(r[:n, cols])
        hyps.append(p[:n])
    all_r, all_p = np.concatenate(refs), np.concatenate(hyps)
    fns = {m: reg.METRICS[m] for m in metrics}
    concat, per_rec = {}, {}
    utts = list(ref_scp)
    for j, name in enumerate(hyp_names):
        concat[name] = {m: f(all_p[:, j], all_r[:, j]) for m, f in fns.items()}
        per_rec[name] = {}
        for m, f in fns.items():
            values = {u: f(p[:, j], r[:, j]) for u, r, p in zip(utts, refs, hyps)}
            per_rec[name][m] = {"mean": float(np.mean(list(values.values()))), "values": values}
    speakers = sorted({d.utt2spk[u] for u in utts})
    return {
        "kind": "continuous",
        "dims": hyp_names,
        "label_frame_shift": ref_shift,
        "metrics": concat,
        "metrics_convention": "computed over the concatenation of all recordings (AVEC); per_recording has each recording's value and their mean",
        "per_recording": per_rec,
        "counts": {"recordings": len(utts), "speakers": len(speakers), "frames": int(all_r.shape[0]),
                   "truncated": truncated},
        "speakers": speakers,
    }


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
    keep = ("protocol", "speaker_independent", "test_speakers", "valid_speakers", "note")
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


def score(ref: Path, hyp: Path, metric_spec: str | None = None, out: Path | None = None, *,
          tag: str | None = None, train: Path | None = None, ensemble: bool = False) -> tuple[dict, Path]:
    """Score, write ``out`` (JSON), and for categorical predictions ``<set>.confusion.txt``
    beside it and ``<exp>/plots/confusion_<set>.png``. Returns ``(scores, out)``."""
    ref, hyp = Path(ref), Path(hyp)
    if not hyp.exists():
        raise EmotkError(f"{hyp}: predictions not found")
    kind = "continuous" if hyp.is_dir() else "categorical"
    metrics = parse_metrics(metric_spec, kind)
    out = Path(out) if out is not None else default_out(hyp)
    set_name = out.stem
    if kind == "categorical":
        result = score_categorical(ref, hyp, metrics, train)
    else:
        result = score_continuous(ref, hyp, metrics)
    fold = fold_meta(ref)
    exp_dir = exp_dir_of(hyp, out)
    scores = {"emotk_version": __version__, "set": set_name, "ref": str(ref.resolve()), "hyp": str(hyp.resolve()),
              **run_meta(exp_dir, fold, tag), "fold": fold, "ensemble": ensemble, **result}
    if kind == "categorical":
        c = scores["confusion"]
        write_text(out.with_name(f"{set_name}.confusion.txt"), confusion_text(c["labels"], c["matrix"]))
        from emotk.analysis.plots import plot_confusion

        plot_confusion(c["labels"], c["matrix"], exp_dir / "plots" / f"confusion_{set_name}.png",
                       title=f"{set_name}: UA {100 * cls.ua_from_confusion(np.asarray(c['matrix'])):.1f}%")
    write_text(out, json.dumps(scores, indent=1) + "\n")
    return scores, out
