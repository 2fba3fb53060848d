"""``emotk report``: RESULTS.md tables from the ``scores/test.json`` files of many runs.

Rows group runs by (protocol, model tag[, ensemble]) using the metadata each scores file
carries, so the exp tree's depth and naming do not matter.  Only test scores are read.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from emotk.errors import EmotkError
from emotk.evaluation.bootstrap import N_DRAWS, speaker_bootstrap_ua
from emotk.evaluation.score import read_config, run_meta
from emotk.fileio import write_text
from emotk.metrics.classification import ua_from_confusion

PERCENT_METRICS = ("ua", "wa", "f1")
METRIC_LABELS = {"ua": "UA", "wa": "WA", "f1": "macro-F1", "ccc": "CCC", "rmse": "RMSE", "pcc": "PCC"}


@dataclass
class Run:
    path: Path
    data: dict
    protocol: str
    speaker_independent: bool | None
    tag: str
    model_name: str | None
    fold: str
    seed: object
    ensemble: bool
    kind: str
    metrics: dict[tuple[str, ...], float] = field(default_factory=dict)


def find_scores(exp_dirs: Sequence[Path], set_name: str = "test") -> list[Path]:
    found: set[Path] = set()
    for d in exp_dirs:
        d = Path(d)
        if not d.is_dir():
            raise EmotkError(f"{d}: not a directory")
        found.update(p.resolve() for p in d.rglob(f"scores/{set_name}.json"))
    if not found:
        raise EmotkError(f"no scores/{set_name}.json under {' '.join(map(str, exp_dirs))} (run 'emotk score' first)")
    return sorted(found)


def _flatten(metrics: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + (k,)))
        elif isinstance(v, (int, float)):
            out[prefix + (k,)] = float(v)
    return out


def load_run(path: Path) -> Run:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EmotkError(f"{path}: not a valid scores JSON ({e})") from None
    if not isinstance(data, dict) or "metrics" not in data or data.get("kind") not in ("categorical", "continuous"):
        raise EmotkError(f"{path}: not an emotk scores file (needs 'kind' and 'metrics')")
    fold = data.get("fold") or {}
    model = data.get("model") or {}
    exp_dir = path.parent.parent
    tag = model.get("tag") or run_meta(exp_dir, fold or None)["model"]["tag"]
    name = model.get("name")
    if name is None:
        cfg_model = read_config(exp_dir).get("model")
        name = cfg_model.get("name") if isinstance(cfg_model, dict) else None
    return Run(path=path, data=data, protocol=fold.get("protocol") or "unspecified",
               speaker_independent=fold.get("speaker_independent"), tag=str(tag), model_name=name,
               fold=fold.get("name") or "(no fold.yaml)", seed=data.get("seed"), ensemble=bool(data.get("ensemble")),
               kind=data["kind"], metrics=_flatten(data["metrics"]))


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1); std is None for a single value."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def _fmt(key: tuple[str, ...], values: Sequence[float], n_runs: int) -> str:
    scale, digits = (100.0, 1) if key[-1] in PERCENT_METRICS else (1.0, 3)
    m, s = mean_std(values)
    text = f"{scale * m:.{digits}f}" + (f" ± {scale * s:.{digits}f}" if s is not None else "")
    return text + (f" (n={len(values)})" if len(values) != n_runs else "")


def _label(key: tuple[str, ...]) -> str:
    return " ".join(key[:-1] + (METRIC_LABELS.get(key[-1], key[-1]),))


def pooled_speaker_confusions(runs: Sequence[Run]) -> tuple[list[str], dict[str, np.ndarray]] | None:
    """Sum each speaker's confusion matrix over all runs (labels aligned by name); None when a
    run has no per-speaker confusions."""
    labels = sorted({lab for r in runs for lab in r.data.get("confusion", {}).get("labels", [])})
    index = {lab: i for i, lab in enumerate(labels)}
    pooled: dict[str, np.ndarray] = {}
    for r in runs:
        per_speaker = r.data.get("per_speaker")
        if not per_speaker:
            return None
        idx = [index[lab] for lab in r.data["confusion"]["labels"]]
        for spk, s in per_speaker.items():
            c = pooled.setdefault(spk, np.zeros((len(labels), len(labels)), dtype=np.int64))
            c[np.ix_(idx, idx)] += np.asarray(s["confusion"], dtype=np.int64)
    return labels, pooled


def _baseline(runs: Sequence[Run], name: str, metric: str) -> str:
    """Mean over runs, in %; "-" when a scores file has no such baseline."""
    values = [r.data.get("baselines", {}).get(name, {}).get(metric) for r in runs]
    return "-" if None in values else f"{100 * np.mean(values):.1f}"


def _row_label(tag: str, ensemble: bool) -> str:
    return f"{tag} (ensemble)" if ensemble else tag


def _table(runs_by_row: dict[tuple[str, bool], list[Run]], kind: str, n_draws: int, seed: int) -> list[str]:
    keys = list(dict.fromkeys(k for runs in runs_by_row.values() for r in runs for k in r.metrics))
    head = ["model", "config model", "folds", "seeds", "runs", *map(_label, keys)]
    if kind == "categorical":
        head += ["pooled UA [95% CI, speaker bootstrap]", "chance UA", "majority UA / WA"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (tag, ensemble), runs in sorted(runs_by_row.items()):
        names = sorted({r.model_name for r in runs if r.model_name})
        cells = [_row_label(tag, ensemble), ", ".join(names) or "-", str(len({r.fold for r in runs})),
                 str(len({str(r.seed) for r in runs})), str(len(runs))]
        for k in keys:
            values = [r.metrics[k] for r in runs if k in r.metrics]
            cells.append(_fmt(k, values, len(runs)) if values else "-")
        if kind == "categorical":
            pooled = pooled_speaker_confusions(runs)
            if pooled is None:
                cells.append("n/a (no per-speaker confusions)")
            elif len(pooled[1]) < 2:
                cells.append("n/a (1 speaker)")
            else:
                _, per_spk = pooled
                point = ua_from_confusion(sum(per_spk.values()))
                lo, hi = speaker_bootstrap_ua(per_spk, n_draws=n_draws, seed=seed)
                cells.append(f"{100 * point:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] ({len(per_spk)} spk)")
            cells.append(_baseline(runs, "chance", "ua"))
            cells.append(f"{_baseline(runs, 'majority', 'ua')} / {_baseline(runs, 'majority', 'wa')}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _protocol_heading(protocol: str, runs: Sequence[Run]) -> str:
    flags = {r.speaker_independent for r in runs}
    if False in flags:
        return f"## Protocol `{protocol}`: **speaker-dependent: same speakers in train and test**"
    if flags == {True}:
        return f"## Protocol `{protocol}`: speaker-independent (no test speaker in train or valid)"
    return f"## Protocol `{protocol}`: speaker independence not recorded (no fold.yaml beside the reference data dir)"


def _test_speakers(runs: Sequence[Run]) -> str:
    folds: dict[str, list[str]] = {}
    for r in sorted(runs, key=lambda r: r.fold):
        fold = r.data.get("fold") or {}
        folds.setdefault(r.fold, fold.get("test_speakers") or r.data.get("speakers") or [])
    return "Test speakers per fold: " + "; ".join(f"`{f}`: {' '.join(map(str, s)) or '?'}" for f, s in folds.items())


def _majority_sources(runs: Sequence[Run]) -> str:
    sources = sorted({r.data.get("baselines", {}).get("majority", {}).get("source", "unknown")
                      for r in runs if r.kind == "categorical"})
    if sources == ["train"]:
        return "the training set of each fold"
    return " and ".join(sources) + " (reference = the test set itself: no training set was found beside it)"


def build_report(runs: Sequence[Run], roots: Sequence[Path], title: str, note: str | None,
                 n_draws: int = N_DRAWS, seed: int = 0) -> str:
    by_protocol: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_protocol[r.protocol].append(r)
    out = [f"# {title}", ""]
    if note:
        out += [f"**{note}**", ""]
    out += [
        f"Generated by `emotk report` from {len(runs)} test-score files (`scores/test.json`) under "
        + ", ".join(f"`{p}`" for p in roots) + ".",
        "",
        "- Only **test** scores are read. Model selection (early stopping, checkpoint and hyper-parameter choice) "
        "used the valid sets, never test.",
        "- Rows group runs by (protocol, model tag). Mean ± std is over all runs of a row (folds × seeds); "
        "std is the sample standard deviation (ddof=1), omitted for a single run. "
        "UA = unweighted average recall, WA = accuracy, macro-F1, all in %.",
        f"- Pooled UA [95% CI]: UA of all test predictions of the row pooled, with a percentile interval from "
        f"{n_draws} bootstrap draws (seed {seed}) that resample **speakers** with replacement, all utterances of a "
        "drawn speaker coming along: utterances of one speaker are not independent, and resampling single "
        "utterances would understate the spread. With few speakers the interval is itself rough.",
        "- Baselines (mean over runs): chance = uniform guess among the K classes present in test (UA = WA = 1/K); "
        "majority = always predicting the most frequent class (UA = 1/K; WA = that class's share of test).",
        "- Continuous scores: each metric over the concatenation of all test recordings of a run (AVEC convention), "
        "then mean ± std over runs.",
        "",
    ]
    for protocol in sorted(by_protocol):
        p_runs = by_protocol[protocol]
        out += [_protocol_heading(protocol, p_runs), ""]
        for kind in ("categorical", "continuous"):
            rows: dict[tuple[str, bool], list[Run]] = defaultdict(list)
            for r in p_runs:
                if r.kind == kind:
                    rows[(r.tag, r.ensemble)].append(r)
            if not rows:
                continue
            out += _table(rows, kind, n_draws, seed) + [""]
            if kind == "categorical":
                out += [f"Majority class taken from {_majority_sources(p_runs)}.", ""]
        out += [_test_speakers(p_runs), ""]
    return "\n".join(out)


def report(exp_dirs: Sequence[Path], out: Path, title: str = "Results", note: str | None = None,
           n_draws: int = N_DRAWS, seed: int = 0) -> list[Run]:
    runs = [load_run(p) for p in find_scores(exp_dirs)]
    write_text(out, build_report(runs, exp_dirs, title, note, n_draws, seed))
    return runs
