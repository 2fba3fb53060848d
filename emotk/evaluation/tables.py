"""Tables in a paper's layout for ``emotk report --tables TABLES.yaml``.

A tables file is a YAML list; each table names a metric, its rows (a label and a system, the
report's system name or a glob over them) and its columns (a label, a protocol and a test set)::

    - title: "Table 4: convolution types, UA %"
      metric: ua          # ua wa f1 (class heads), ccc rmse pcc; f1:<class> recall:<class>
      head: emotion       # precision:<class> per class; ccc:<dim> etc. for frame-level dimensions
      rows: [{label: S-CLDNN, system: cldnn_s}, {label: T-CLDNN, system: cldnn_t}]
      cols: [{label: clean, protocol: tvt, set: test}, {label: noisy, protocol: tvt, set: test_noisy}]

``head`` may be left out when the runs have one head, a column's ``protocol`` when its runs have
one, its ``set`` when it is ``test``. A cell is the mean ± std of the metric over the runs (folds ×
seeds) matching its row and column, ``-`` when there is none.
Class tables get chance and majority rows; every table states its runs' protocols, selection sets,
normalization and disjointness with the sentences of the report's own sections.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from emotk.errors import EmotkError
from emotk.evaluation.report import (PERCENT_METRICS, Run, baseline_text, check_test_set, format_mean_std,
                                     majority_sources, protocol_status, statements)

PLAIN_METRICS = ("ua", "wa", "f1", "ccc", "rmse", "pcc")
PER_CLASS_METRICS = ("f1", "recall", "precision")
PER_DIM_METRICS = ("ccc", "rmse", "pcc")
PERCENT = (*PERCENT_METRICS, "recall", "precision")


@dataclass(frozen=True)
class Row:
    label: str
    system: str


@dataclass(frozen=True)
class Col:
    label: str
    protocol: str | None
    set: str


@dataclass(frozen=True)
class TableSpec:
    where: str  # "<file>: [i]", the prefix of every error about this table
    title: str
    metric: str
    head: str | None
    rows: tuple[Row, ...]
    cols: tuple[Col, ...]


# Reading and checking the file --------------------------------------------------------------------

def _mapping(value, where: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict:
    if not isinstance(value, dict):
        raise EmotkError(f"{where}: a mapping with keys {', '.join(required)} expected, got {value!r}")
    for key in value:
        if key not in required and key not in optional:
            raise EmotkError(f"{where}.{key}: unknown key (known: {', '.join([*required, *optional])})")
    for key in required:
        if key not in value:
            raise EmotkError(f"{where}.{key}: missing")
    return value


def _text(value, where: str) -> str:
    """A label, name or title: a non-empty scalar (YAML may read ``2016`` as a number)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise EmotkError(f"{where}: a non-empty text expected, got {value!r}")
    return str(value)


def _list(value, where: str) -> list:
    if not isinstance(value, list) or not value:
        raise EmotkError(f"{where}: a non-empty list expected, got {value!r}")
    return value


def check_metric(metric: str, where: str) -> str:
    """``ua`` ... ``pcc``, or ``<name>:<target>``: a per-class figure (f1, recall, precision) of a class
    head or a metric (ccc, rmse, pcc) of one dimension of a frame-level head."""
    name, sep, target = metric.partition(":")
    if not sep and name in PLAIN_METRICS:
        return metric
    if sep and target and (name in PER_CLASS_METRICS or name in PER_DIM_METRICS):
        return metric
    raise EmotkError(f"{where}: unknown metric {metric!r} (known: {', '.join(PLAIN_METRICS)}; "
                     f"{', '.join(n + ':<class>' for n in PER_CLASS_METRICS)}; "
                     f"{', '.join(n + ':<dimension>' for n in PER_DIM_METRICS)})")


def _table_spec(value, where: str) -> TableSpec:
    t = _mapping(value, where, ("title", "metric", "rows", "cols"), ("head",))
    rows = []
    for i, r in enumerate(_list(t["rows"], f"{where}.rows")):
        key = f"{where}.rows[{i}]"
        _mapping(r, key, ("label", "system"))
        rows.append(Row(_text(r["label"], f"{key}.label"), _text(r["system"], f"{key}.system")))
    cols = []
    for i, c in enumerate(_list(t["cols"], f"{where}.cols")):
        key = f"{where}.cols[{i}]"
        _mapping(c, key, ("label",), ("protocol", "set"))
        protocol = _text(c["protocol"], f"{key}.protocol") if "protocol" in c else None
        set_name = check_test_set(_text(c.get("set", "test"), f"{key}.set"), f"{key}.set")
        cols.append(Col(_text(c["label"], f"{key}.label"), protocol, set_name))
    head = _text(t["head"], f"{where}.head") if "head" in t else None
    metric = check_metric(_text(t["metric"], f"{where}.metric"), f"{where}.metric")
    return TableSpec(where, _text(t["title"], f"{where}.title"), metric, head, tuple(rows), tuple(cols))


def load_tables(path: Path) -> list[TableSpec]:
    """Read and check a tables file; errors name the file and the key (``<file>: [0].rows[1].system``)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmotkError(f"{path}: tables file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise EmotkError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, list) or not data:
        raise EmotkError(f"{path}: a non-empty YAML list of tables expected (title, metric, head, rows, cols each)")
    return [_table_spec(t, f"{path}: [{i}]") for i, t in enumerate(data)]


# Values of the runs ------------------------------------------------------------------------------

def run_metrics(run: Run) -> dict[str, float]:
    """Every figure of a run's head by its table name: ``ua``, ``f1:ang``, ``ccc:arousal`` ..."""
    out = {":".join(reversed(key)): v for key, v in run.metrics.items()}
    for cls, figures in (run.scores.get("per_class") or {}).items():
        out.update({f"{name}:{cls}": float(figures[name]) for name in PER_CLASS_METRICS if name in figures})
    return out


def _per_class_baseline(run: Run, name: str, measure: str, cls: str) -> float | None:
    """Recall or F1 of one class for the baselines, from the scores' counts; None where not derived.

    A uniform guess among K classes has expected recall 1/K for every class. Always answering the
    training majority class gives that class recall 1 and precision its share of the test set (F1
    2n/(N+n)), any other class 0."""
    baseline = run.scores["baselines"].get(name)
    if not baseline:
        return None
    if name == "chance":
        return baseline["ua"] if measure == "recall" else None
    counts = run.scores["counts"]
    n, total = counts["per_class"].get(cls, 0), counts["utterances"]
    if cls != baseline["class"] or not n:
        return 0.0 if measure in ("recall", "f1") else None
    return {"recall": 1.0, "f1": 2 * n / (total + n)}.get(measure)


def _baseline_cell(runs: Sequence[Run], name: str, metric: str) -> str:
    if not runs:
        return "-"
    measure, _, target = metric.partition(":")
    if not target:
        return baseline_text(runs, name, measure)
    values = [_per_class_baseline(r, name, measure, target) for r in runs]
    return "-" if None in values else f"{100 * np.mean(values):.1f}"


# Rendering -----------------------------------------------------------------------------------------

def _in_row(run: Run, row: Row) -> bool:
    return run.system == row.system or fnmatchcase(run.system, row.system)


def _matches(run: Run, row: Row, col: Col) -> bool:
    return _in_row(run, row) and run.set == col.set and (col.protocol is None or run.protocol == col.protocol)


def _table_runs(spec: TableSpec, runs: Sequence[Run]) -> list[Run]:
    """The runs of the table's cells for its head; refuses what would mix heads or protocols."""
    found = [r for r in runs if any(_matches(r, row, col) for row in spec.rows for col in spec.cols)]
    heads = sorted({r.head for r in found})
    if spec.head is not None:
        if found and spec.head not in heads:
            raise EmotkError(f"{spec.where}.head: {spec.head!r} is not a head of the table's runs ({', '.join(heads)})")
        found = [r for r in found if r.head == spec.head]
    elif len(heads) > 1:
        raise EmotkError(f"{spec.where}.head: needed, the table's runs have heads {', '.join(heads)}")
    for i, col in enumerate(spec.cols):
        protocols = sorted({r.protocol for r in found if any(_matches(r, row, col) for row in spec.rows)})
        if col.protocol is None and len(protocols) > 1:
            raise EmotkError(f"{spec.where}.cols[{i}].protocol: needed, the column's runs have protocols "
                             f"{', '.join(protocols)}")
    if found and not any(spec.metric in run_metrics(r) for r in found):
        have = sorted({m for r in found for m in run_metrics(r)})
        raise EmotkError(f"{spec.where}.metric: {spec.metric!r} is in none of the table's scores (they have "
                         f"{', '.join(have)})")
    return found


def _col_protocol(col: Col, spec: TableSpec, runs: Sequence[Run]) -> str:
    """The column's protocol as given, else the one its runs have (checked to be one)."""
    found = {r.protocol for r in runs if any(_matches(r, row, col) for row in spec.rows)}
    return col.protocol or (found.pop() if found else "any")


def _notes(spec: TableSpec, runs: Sequence[Run], per_cell: str) -> list[str]:
    head = spec.head or (runs[0].head if runs else "-")
    matched = [(row.label, sorted({r.system for r in runs if _in_row(r, row)})) for row in spec.rows]
    systems = "; ".join(f"{label}: " + (", ".join(f"`{s}`" for s in names) or "no run") for label, names in matched)
    cols = "; ".join(f"{c.label}: protocol `{_col_protocol(c, spec, runs)}`, set `{c.set}`" for c in spec.cols)
    out = [f"`{spec.metric}` of head `{head}`: mean ± std (ddof=1) over the runs (folds × seeds) of a cell; "
           f"{per_cell}; `-`: no run. Rows (systems): {systems}. Columns: {cols}.", ""]
    if not runs:
        return out + ["No run matches this table.", ""]
    if any(r.kind == "class" for r in runs):
        out += ["Chance and majority: mean over the column's runs (`-` where the scores record no such figure); "
                f"majority class taken from: {majority_sources(runs)}.", ""]
    protocols = sorted({r.protocol for r in runs})
    out.append("- Protocols: " + "; ".join(f"`{p}`: {protocol_status([r for r in runs if r.protocol == p])}"
                                          for p in protocols) + ".")
    return out + statements(runs) + [""]


def render_table(spec: TableSpec, runs: Sequence[Run]) -> list[str]:
    found = _table_runs(spec, runs)
    percent = spec.metric.partition(":")[0] in PERCENT
    lines = ["### " + spec.title, "", "| system | " + " | ".join(c.label for c in spec.cols) + " |",
             "|" + "---|" * (len(spec.cols) + 1)]
    cells = [[[v for r in found if _matches(r, row, col) and (v := run_metrics(r).get(spec.metric)) is not None]
              for col in spec.cols] for row in spec.rows]
    counts = {len(v) for row in cells for v in row if v}
    for row, values in zip(spec.rows, cells):
        texts = [format_mean_std(v, percent) + (f" (n={len(v)})" if len(counts) > 1 else "") if v else "-"
                 for v in values]
        lines.append(f"| {row.label} | " + " | ".join(texts) + " |")
    if any(r.kind == "class" for r in found):
        col_runs = [[r for r in found if any(_matches(r, row, col) for row in spec.rows)] for col in spec.cols]
        for name in ("chance", "majority"):
            lines.append(f"| *{name}* | " + " | ".join(_baseline_cell(c, name, spec.metric) for c in col_runs) + " |")
    per_cell = f"{min(counts)} runs per cell" if len(counts) == 1 else "`(n=...)`: the cell's number of runs"
    return lines + [""] + _notes(spec, found, per_cell)


def render_tables(specs: Sequence[TableSpec], runs: Sequence[Run]) -> list[str]:
    if not specs:
        return []
    out = ["## Tables in the papers' layout", ""]
    for spec in specs:
        out += render_table(spec, runs)
    return out
