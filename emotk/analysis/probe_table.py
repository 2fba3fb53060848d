"""Paper 002's Table 5 from ``emotk probe-modules`` outputs: a row per model, a column per module.

Each row is a label and the probe dirs of that model's runs (``<exp>/probe/probe.tsv``, e.g. one per
seed); a cell is the mean ± std (ddof=1) over those runs of the probe UA of one module for one label
(``emotion``: the paper's table). The inertia ratios (Fig. 3's titles) follow in a table of the same
shape per label.  Appended to a RESULTS.md written by ``emotk report``::

    emotk report-probes --results RESULTS.md \\
        --row "FST-CLDNN (log-Mels)=exp/cldnn_fst_fbank/tvt/*/seed*/probe" ...
"""

from __future__ import annotations

import csv
import glob
import math
from pathlib import Path
from typing import Sequence

from emotk.errors import EmotkError
from emotk.evaluation.report import format_mean_std
from emotk.fileio import write_text

PROBE_TSV = "probe.tsv"


def read_probe_tsv(path: Path) -> list[dict]:
    """Rows of a probe.tsv: module, label, classes, probe_ua, inertia_ratio (floats; NaN kept)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except FileNotFoundError:
        raise EmotkError(f"{path}: not found (run emotk probe-modules first)") from None
    need = {"module", "label", "probe_ua", "inertia_ratio"}
    if not rows or not need <= set(rows[0]):
        raise EmotkError(f"{path}: not a probe-modules table (columns {', '.join(sorted(need))} expected)")
    for i, r in enumerate(rows, start=2):
        try:
            r["probe_ua"], r["inertia_ratio"] = float(r["probe_ua"]), float(r["inertia_ratio"])
        except ValueError:
            raise EmotkError(f"{path}: line {i}: probe_ua and inertia_ratio must be numbers") from None
    return rows


def parse_row(spec: str) -> tuple[str, list[Path]]:
    """``"LABEL=GLOB"`` -> the label and the probe dirs the glob matches (sorted)."""
    label, sep, pattern = spec.partition("=")
    if not sep or not label.strip() or not pattern:
        raise EmotkError(f"--row {spec!r}: expected LABEL=GLOB of probe dirs")
    return label.strip(), sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / PROBE_TSV).is_file())


def _cell(values: list[float], percent: bool) -> str:
    values = [v for v in values if not math.isnan(v)]
    return format_mean_std(values, percent) if values else "-"


def _table(rows: Sequence[tuple[str, list[dict]]], modules: list[str], label: str, key: str,
           percent: bool) -> list[str]:
    lines = ["| model | runs | " + " | ".join(modules) + " |", "|" + "---|" * (len(modules) + 2)]
    for name, runs in rows:
        cells = [_cell([r[key] for run in runs for r in run if r["module"] == m and r["label"] == label], percent)
                 for m in modules]
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return lines


def render(rows: Sequence[tuple[str, list[Path]]], labels: Sequence[str] = ("emotion", "speaker")) -> list[str]:
    """Markdown: Table 5 (probe UA % for ``labels[0]``) and the inertia ratios for every label."""
    loaded = [(name, [read_probe_tsv(d / PROBE_TSV) for d in dirs]) for name, dirs in rows]
    modules = list(dict.fromkeys(r["module"] for _, runs in loaded for run in runs for r in run))
    dirs = "; ".join(f"{name}: " + (", ".join(f"`{d}`" for d in ds) or "no run") for name, ds in rows)
    out = ["## Module-wise probing (paper 002, Table 5 and Fig. 3)", "",
           "`emotk probe-modules` on the clean training and test sets of each model's runs: a linear SVM on each "
           "module's mean-pooled output (raw: the model's input). Mean ± std (ddof=1) over the runs (seeds); "
           f"`-`: no run or no probe. Runs: {dirs}.", ""]
    if not modules:
        return out + ["No probe-modules output found.", ""]
    out += [f"### Table 5: probe UA (%), label `{labels[0]}`", ""]
    out += _table(loaded, modules, labels[0], "probe_ua", percent=True) + [""]
    for label in labels:
        out += [f"### Inertia ratio (intra / inter class, smaller = tighter classes), label `{label}`", ""]
        out += _table(loaded, modules, label, "inertia_ratio", percent=False) + [""]
    return out


def append_to(results: Path, rows: Sequence[tuple[str, list[Path]]], labels: Sequence[str]) -> None:
    """Append the section to ``results``, replacing the one an earlier call appended (re-runs do not stack)."""
    if not results.is_file():
        raise EmotkError(f"{results}: not found (write it with emotk report first)")
    section = render(rows, labels)
    text = results.read_text(encoding="utf-8")
    start = text.find("\n" + section[0] + "\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + (text[end:] if end >= 0 else "")
    write_text(results, text.rstrip("\n") + "\n\n" + "\n".join(section))
