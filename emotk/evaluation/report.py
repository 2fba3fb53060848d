"""``emotk report``: RESULTS.md tables from the ``scores/<set>.json`` files of many runs.

One section per (protocol, test set), one row per (system, head): a system is a model tag (an
ensemble of a tag is its own system), and runs are grouped using the metadata each scores file
carries, so the exp tree's depth and naming do not matter.  Only test sets are read: a set name
must begin with ``test`` (``test``, ``test_noisy``), so a valid set is never reported.

Every sentence about protocol, selection set, normalization and disjointness is derived from
the runs' records (the fold metadata, the provenance summary and the disjointness check that
``emotk score`` copied into each scores file); where a record is missing the report says
"not recorded" instead of asserting.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from emotk.config import HEAD_KINDS
from emotk.errors import EmotkError
from emotk.evaluation.bootstrap import N_DRAWS, speaker_bootstrap_ua
from emotk.evaluation.score import read_config, run_meta
from emotk.fileio import write_text
from emotk.metrics.classification import ua_from_confusion

PERCENT_METRICS = ("ua", "wa", "f1")
METRIC_LABELS = {"ua": "UA", "wa": "WA", "f1": "macro-F1", "ccc": "CCC", "rmse": "RMSE", "pcc": "PCC"}
KIND_TITLES = {"class": "Class heads", "regression": "Regression heads (utterance level)",
               "frame_regression": "Frame-level regression heads"}
NORM_TEXT = {
    "speaker": "per-speaker statistics over all of the speaker's utterances in the data dir (transductive: "
               "a test speaker is normalized with its own test utterances' features, no labels)",
    "utterance": "each utterance's own mean and standard deviation",
    "global": "mean and standard deviation of the training set only, stored with the model",
    "none": "no normalization",
}


@dataclass
class Run:
    """One head of one scored run."""
    path: Path
    data: dict
    head: str
    protocol: str
    speaker_independent: bool | None
    tag: str
    model_name: str | None
    fold: str
    seed: object
    ensemble: bool
    kind: str
    metrics: dict[tuple[str, ...], float] = field(default_factory=dict)
    set: str = "test"

    @property
    def scores(self) -> dict:
        return self.data["heads"][self.head]

    @property
    def system(self) -> str:
        return f"{self.tag} (ensemble)" if self.ensemble else self.tag


# Said in every RESULTS.md: what "reproducible" means for these tables.
REPRODUCIBILITY = ("Reproducibility: the same command on the same machine, with the same thread counts, gives "
                   "byte-identical predictions and this file. Bit-identity does not hold across CPUs or on a GPU: "
                   "their floating-point differences move single runs, which is why rows are means over folds and "
                   "seeds with their spread.")


def check_test_set(name: str, where: str) -> str:
    """A set name the report may read: begins with ``test``, a plain file name."""
    if not isinstance(name, str) or not re.fullmatch(r"test[\w.-]*", name):
        raise EmotkError(f"{where}: {name!r} is not a test set (a set name must begin with 'test' and be a plain "
                         "file name: valid sets are never reported)")
    return name


def parse_sets(spec: str) -> list[str]:
    """``"test,test_noisy"`` -> ``["test", "test_noisy"]``, each checked, duplicates dropped."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise EmotkError("--sets: no set named (e.g. --sets test,test_noisy)")
    return list(dict.fromkeys(check_test_set(n, "--sets") for n in names))


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


def read_scores(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmotkError(f"{path}: scores file not found (run 'emotk score' first)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EmotkError(f"{path}: not a valid scores JSON ({e})") from None
    heads = data.get("heads") if isinstance(data, dict) else None
    if not isinstance(heads, dict) or not heads or any(h.get("kind") not in HEAD_KINDS for h in heads.values()):
        raise EmotkError(f"{path}: not an emotk scores file (needs 'heads' with a kind each; re-run 'emotk score')")
    return data


def load_runs(path: Path) -> list[Run]:
    """One :class:`Run` per head of a scores file."""
    data = read_scores(path)
    fold = data.get("fold") or {}
    model = data.get("model") or {}
    exp_dir = path.parent.parent
    tag = model.get("tag") or run_meta(exp_dir, fold or None)["model"]["tag"]
    name = model.get("name")
    if name is None:
        cfg_model = read_config(exp_dir).get("model")
        name = cfg_model.get("name") if isinstance(cfg_model, dict) else None
    return [Run(path=path, data=data, head=head, protocol=fold.get("protocol") or "unspecified",
                speaker_independent=fold.get("speaker_independent"), tag=str(tag), model_name=name,
                fold=fold.get("name") or "(no fold.yaml)", seed=data.get("seed"), ensemble=bool(data.get("ensemble")),
                kind=h["kind"], metrics=_flatten(h["metrics"]), set=path.stem)
            for head, h in data["heads"].items()]


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1); std is None for a single value."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def format_mean_std(values: Sequence[float], percent: bool) -> str:
    """``"62.3 ± 1.4"`` (in % when ``percent``, else 3 decimals); no ± for a single value."""
    scale, digits = (100.0, 1) if percent else (1.0, 3)
    m, s = mean_std(values)
    return f"{scale * m:.{digits}f}" + (f" ± {scale * s:.{digits}f}" if s is not None else "")


def _fmt(key: tuple[str, ...], values: Sequence[float], n_runs: int) -> str:
    text = format_mean_std(values, key[-1] in PERCENT_METRICS)
    return text + (f" (n={len(values)})" if len(values) != n_runs else "")


def _label(key: tuple[str, ...]) -> str:
    return " ".join(key[:-1] + (METRIC_LABELS.get(key[-1], key[-1]),))


def pooled_speaker_confusions(runs: Sequence[Run]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Sum each speaker's confusion matrix over all runs (labels aligned by name)."""
    labels = sorted({lab for r in runs for lab in r.scores["confusion"]["labels"]})
    index = {lab: i for i, lab in enumerate(labels)}
    pooled: dict[str, np.ndarray] = {}
    for r in runs:
        idx = [index[lab] for lab in r.scores["confusion"]["labels"]]
        for spk, s in r.scores["per_speaker"].items():
            c = pooled.setdefault(spk, np.zeros((len(labels), len(labels)), dtype=np.int64))
            c[np.ix_(idx, idx)] += np.asarray(s["confusion"], dtype=np.int64)
    return labels, pooled


def baseline_text(runs: Sequence[Run], name: str, metric: str) -> str:
    """Mean over runs, in %; "-" when a run has no such baseline."""
    values = [(r.scores["baselines"].get(name) or {}).get(metric) for r in runs]
    return "-" if None in values else f"{100 * np.mean(values):.1f}"


def _table(rows: dict[tuple[str, str], list[Run]], kind: str, n_draws: int, seed: int) -> list[str]:
    keys = list(dict.fromkeys(k for runs in rows.values() for r in runs for k in r.metrics))
    head = ["system", "head", "config model", "folds", "seeds", "runs", *map(_label, keys)]
    if kind == "class":
        head += ["pooled UA [95% CI, speaker bootstrap]", "chance UA", "majority UA / WA"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (system, head_name), runs in sorted(rows.items()):
        names = sorted({r.model_name for r in runs if r.model_name})
        cells = [system, head_name, ", ".join(names) or "-", str(len({r.fold for r in runs})),
                 str(len({str(r.seed) for r in runs})), str(len(runs))]
        for k in keys:
            values = [r.metrics[k] for r in runs if k in r.metrics]
            cells.append(_fmt(k, values, len(runs)) if values else "-")
        if kind == "class":
            _, per_spk = pooled_speaker_confusions(runs)
            if len(per_spk) < 2:
                cells.append("n/a (1 speaker)")
            else:
                point = ua_from_confusion(sum(per_spk.values()))
                lo, hi = speaker_bootstrap_ua(per_spk, n_draws=n_draws, seed=seed)
                cells.append(f"{100 * point:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] ({len(per_spk)} spk)")
            cells.append(baseline_text(runs, "chance", "ua"))
            cells.append(f"{baseline_text(runs, 'majority', 'ua')} / {baseline_text(runs, 'majority', 'wa')}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# Statements derived from the records -------------------------------------------------------------

def protocol_status(runs: Sequence[Run]) -> str:
    """Speaker independence of a protocol's runs, from their fold.yaml records."""
    flags = {r.speaker_independent for r in runs}
    if False in flags:
        return "**speaker-dependent: same speakers in train and test**"
    if flags == {True}:
        return "speaker-independent (fold.yaml of every test set)"
    return "speaker independence not recorded (no fold.yaml beside the reference data dir)"


def _section_heading(protocol: str, set_name: str | None, runs: Sequence[Run]) -> str:
    where = f"Protocol `{protocol}`" + (f", set `{set_name}`" if set_name else "")
    return f"## {where}: {protocol_status(runs)}"


def _count_text(counter: Counter, n: int, describe=str) -> str:
    """``"<a> in 3 runs, <b> in 1 run"``."""
    return ", ".join(f"{describe(k)} in {v} of {n} runs" for k, v in sorted(counter.items(), key=lambda kv: str(kv[0])))


def statements(runs: Sequence[Run]) -> list[str]:
    """Bullets on protocol, selection, normalization and disjointness, one scored run counted once."""
    data = list({str(r.path): r.data for r in runs}.values())
    n = len(data)
    out = []
    folds = [d.get("fold") or {} for d in data]
    text_ind = Counter({True: "text-independent", False: "not text-independent"}.get(
        f.get("text_independent"), "text independence not recorded") for f in folds if f)
    fold_missing = sum(1 for f in folds if not f)
    checks = Counter(f"`{name}` {c.get('result', '?')}" for f in folds for name, c in (f.get("checks") or {}).items())
    line = "- Split (fold.yaml beside each test set): " + (_count_text(text_ind, n) if text_ind else "not recorded")
    if checks:
        line += "; disjointness checked when splitting: " + _count_text(checks, n)
    if fold_missing and text_ind:
        line += f"; no fold.yaml for {fold_missing} of {n} runs"
    out.append(line + ".")

    recorded = [d["provenance"] for d in data if d.get("provenance") is not None]
    missing = n - len(recorded)
    if not recorded:
        out.append(f"- Protocol the models were trained under, model selection set and normalization: not recorded "
                   f"(no provenance record in {n} of {n} runs).")
    else:
        proto = Counter(("speaker-independent" if (p.get("protocol") or {}).get("speaker_independent") else
                         "speaker-dependent" if p.get("protocol") else "no protocol (trained outside a fold)")
                        for p in recorded)
        sel = Counter(f"the {(p.get('selection') or {}).get('set', '?')} set of "
                      f"{len((p.get('selection') or {}).get('speakers') or [])} speaker(s)" for p in recorded)
        norm = Counter(f"input `{name}`: {NORM_TEXT.get(scope, scope)}" for p in recorded
                       for name, scope in sorted((p.get("normalization") or {}).items()))
        tail = f"; not recorded for {missing} of {n} runs (no provenance record)" if missing else ""
        out.append("- Protocol the models were trained under (provenance records): " + _count_text(proto, n) + tail + ".")
        out.append("- Model selection (early stopping, checkpoint choice) used " + _count_text(sel, n) + tail + ".")
        out.append("- Normalization: " + (_count_text(norm, n) if norm else "not recorded") + tail + ".")

    dis = [d.get("disjointness") or {"checked": False} for d in data]
    checked = [x for x in dis if x.get("checked")]
    if not checked:
        out.append(f"- Disjointness of the test utterances from each model's train and valid utterances: not recorded "
                   f"(not checked when scoring: no provenance record in {n} of {n} runs).")
        return out
    on_valid = sum(1 for x in checked if x.get("scored_on_selection_set"))
    spk = sum(1 for x in checked if x.get("speakers_checked"))
    line = (f"- Disjointness, checked when scoring against each model's provenance record: no test utterance among "
            f"the model's train or valid utterances in {len(checked) - on_valid} of {n} runs; no test speaker among "
            f"its train or valid speakers in {spk} of {n} runs (checked under speaker-independent protocols)")
    if len(checked) < n:
        line += f"; not recorded for {n - len(checked)} of {n} runs"
    out.append(line + ".")
    if on_valid:
        out.append(f"- **{on_valid} of {n} runs were scored on the valid set that chose their checkpoint** "
                   "(`emotk score --selection-set`): those figures are not held-out results.")
    return out


def majority_sources(runs: Sequence[Run]) -> str:
    sources = Counter((r.scores["baselines"].get("majority") or {}).get("source", "not available (no training labels found)")
                      for r in runs if r.kind == "class")
    return _count_text(sources, sum(sources.values()))


def _test_speakers(runs: Sequence[Run]) -> str:
    folds: dict[str, list[str]] = {}
    for r in sorted(runs, key=lambda r: r.fold):
        fold = r.data.get("fold") or {}
        folds.setdefault(r.fold, fold.get("test_speakers") or r.data.get("speakers") or [])
    return "Test speakers per fold: " + "; ".join(f"`{f}`: {' '.join(map(str, s)) or '?'}" for f, s in folds.items())


def _intro(title: str, note: str | None, n_files: int, roots: Sequence[Path], sets: Sequence[str],
           n_draws: int, seed: int) -> list[str]:
    out = [f"# {title}", ""]
    if note:
        out += [f"**{note}**", ""]
    files = ", ".join(f"`scores/{s}.json`" for s in sets)
    only = ("Only **test** scores are read." if list(sets) == ["test"] else
            f"Only **test** sets are read ({', '.join(f'`{s}`' for s in sets)}: a set name must begin with `test`), "
            "one section per protocol and set.")
    return out + [
        f"Generated by `emotk report` from {n_files} test-score files ({files}) under "
        + ", ".join(f"`{p}`" for p in roots) + f". {only}",
        "",
        "- One row per (system, head). Mean ± std is over all runs of a row (folds × seeds; the runs column "
        "gives their number, `(n=...)` where a metric has fewer); std is the sample standard deviation "
        "(ddof=1), omitted for a single run. UA = unweighted average recall, WA = accuracy, macro-F1, all in %.",
        f"- Pooled UA [95% CI]: UA of all test predictions of the row pooled, with a percentile interval from "
        f"{n_draws} bootstrap draws (seed {seed}) that resample **speakers** with replacement, all utterances of a "
        "drawn speaker coming along: utterances of one speaker are not independent, and resampling single "
        "utterances would understate the spread. With few speakers the interval is itself rough.",
        "- Baselines (mean over runs): chance = a uniform guess among the model's K classes (UA = WA = 1/K); "
        "majority = always predicting the training set's most frequent class.",
        "- Regression heads: CCC, RMSE and PCC over a run's test utterances; frame-level heads: over the "
        "concatenation of all test recordings of a run (AVEC convention); then mean ± std over runs.",
        f"- {REPRODUCIBILITY}",
        "",
    ]


def _section(heading: str, runs: Sequence[Run], n_draws: int, seed: int, compare: bool) -> list[str]:
    """Statements, one table per head kind and paired comparisons for the runs of one protocol and set."""
    from emotk.evaluation.compare import comparison_table

    out = [heading, "", *statements(runs), ""]
    for kind in HEAD_KINDS:
        rows: dict[tuple[str, str], list[Run]] = defaultdict(list)
        for r in runs:
            if r.kind == kind:
                rows[(r.system, r.head)].append(r)
        if not rows:
            continue
        out += [f"### {KIND_TITLES[kind]}", ""] + _table(rows, kind, n_draws, seed) + [""]
        if kind == "class":
            out += [f"Majority class taken from: {majority_sources(runs)}.", ""]
        if compare:
            for head in sorted({h for _, h in rows}):
                systems = {s: sorted({r.path for r in rs}) for (s, h), rs in rows.items() if h == head}
                if len(systems) > 1:
                    out += comparison_table(systems, head, n_draws=n_draws, seed=seed) + [""]
    return out + [_test_speakers(runs), ""]


def build_report(runs: Sequence[Run], roots: Sequence[Path], title: str, note: str | None,
                 n_draws: int = N_DRAWS, seed: int = 0, compare: bool = True,
                 sets: Sequence[str] = ("test",), tables: Sequence = ()) -> str:
    """The intro, the paper-layout ``tables`` (:mod:`emotk.evaluation.tables`) if any, then one
    section per (protocol, set) in the order of ``sets``."""
    from emotk.evaluation.tables import render_tables

    sections: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for r in runs:
        sections[(r.protocol, r.set)].append(r)
    out = _intro(title, note, len({r.path for r in runs}), roots, sets, n_draws, seed)
    out += render_tables(tables, runs)
    named = list(sets) != ["test"]
    for protocol, set_name in sorted(sections, key=lambda k: (k[0], list(sets).index(k[1]))):
        p_runs = sections[(protocol, set_name)]
        heading = _section_heading(protocol, set_name if named else None, p_runs)
        out += _section(heading, p_runs, n_draws, seed, compare)
    return "\n".join(out)


def report(exp_dirs: Sequence[Path], out: Path, title: str = "Results", note: str | None = None,
           n_draws: int = N_DRAWS, seed: int = 0, compare: bool = True, sets: Sequence[str] = ("test",),
           tables_file: Path | None = None) -> list[Run]:
    """Write RESULTS.md for the scores of ``sets`` (plus the sets the tables file names) under ``exp_dirs``."""
    from emotk.evaluation.tables import load_tables

    tables = load_tables(tables_file) if tables_file is not None else []
    sets = list(dict.fromkeys([*(check_test_set(s, "sets") for s in sets), *(c.set for t in tables for c in t.cols)]))
    runs = [r for s in sets for p in find_scores(exp_dirs, s) for r in load_runs(p)]
    write_text(out, build_report(runs, exp_dirs, title, note, n_draws, seed, compare, sets, tables))
    return runs
