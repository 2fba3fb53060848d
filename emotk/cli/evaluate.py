"""Evaluation commands: score predictions against a data dir, build RESULTS.md tables."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from emotk.cli.app import app, log


@app.command("score")
def score_cmd(
    ref: Path = typer.Option(..., "--ref", help="Reference data dir (the tables the heads name: utt2emo, utt2<dim>, labels.scp)."),
    hyp: Path = typer.Option(..., "--hyp", help="Predictions: <exp>/predictions/<set>/ (heads.yaml), or a single head: a class file <set>.txt, a regression file, a frame-level dir."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Comma-separated: ua,wa,f1 (class heads), ccc,rmse,pcc (regression, frame_regression). Default: all of each head's kind."),
    out: Optional[Path] = typer.Option(None, "--out", help="Scores JSON. Default: <exp>/scores/<set>.json."),
    tag: Optional[str] = typer.Option(None, "--tag", help="Model tag recorded for 'emotk report'. Default: from the exp path."),
    train: Optional[Path] = typer.Option(None, "--train", help="Training data dir for the majority-class baseline when the run has no provenance record. Default: <ref>/../train when it exists."),
    ensemble: bool = typer.Option(False, "--ensemble", help="Mark the predictions as an ensemble's (separate rows in 'emotk report')."),
    selection_set: bool = typer.Option(False, "--selection-set", help="Allow scoring the valid set that chose the model's checkpoint (recorded in the JSON and stated by 'emotk report'); training utterances are always refused."),
):
    """Score every head of a predictions dir: class heads UA/WA/macro-F1 with per-class F1, confusion, chance (uniform over the model's classes) and majority (training set) baselines; regression heads CCC/RMSE/PCC over utterances; frame_regression heads per dimension over the concatenated recordings and per recording.

    Refuses (one line naming an utterance) test utterances the model was trained or selected on, and test speakers it saw under a speaker-independent protocol, from <exp>/provenance/. The check's result goes into the JSON.

    Writes the JSON, and per class head <set>.<head>.confusion.txt beside it and <exp>/plots/confusion_<set>_<head>.png.

    Example: emotk score --ref data/emodb/folds/loso/loso-03/test --hyp exp/emodb/cnn/loso/loso-03/seed1/predictions/test
    """
    from emotk.evaluation.score import score

    s, path = score(ref, hyp, metric, out, tag=tag, train=train, ensemble=ensemble, selection_set_ok=selection_set)
    parts = []
    for name, h in s["heads"].items():
        if h["kind"] == "class":
            parts.append(f"{name}: " + ", ".join(f"{m} {100 * v:.2f}%" for m, v in h["metrics"].items())
                         + f" ({h['counts']['utterances']} utterances)")
        elif h["kind"] == "regression":
            parts.append(f"{name}: " + ", ".join(f"{m} {v:.4f}" for m, v in h["metrics"].items())
                         + f" ({h['counts']['utterances']} utterances)")
        else:
            parts.append(f"{name}: " + "; ".join(f"{dim} " + ", ".join(f"{m} {v:.4f}" for m, v in ms.items())
                                                 for dim, ms in h["metrics"].items())
                         + f" ({h['counts']['recordings']} recordings, {h['counts']['frames']} frames)")
    check = s["disjointness"]
    checked = "disjoint from the model's train/valid (provenance checked)" if check["checked"] else "disjointness not checked (no provenance record)"
    log(f"{path}: {'; '.join(parts)}; {len(s['speakers'])} speakers; {checked}")


@app.command("report")
def report_cmd(
    exp_dirs: List[Path] = typer.Argument(..., help="Exp dirs searched (recursively) for scores/<set>.json."),
    out: Path = typer.Option(..., "--out", help="Markdown file to write, e.g. recipes/emodb/RESULTS.md."),
    title: str = typer.Option("Results", "--title", help="Heading of the report."),
    note: Optional[str] = typer.Option(None, "--note", help="Text shown in bold at the top, e.g. 'SYNTHETIC CORPUS - not comparable to published numbers'."),
    draws: int = typer.Option(1000, "--bootstrap-draws", help="Draws of the speaker bootstrap for the UA confidence interval and the paired comparisons."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="Add, per head, a paired comparison of every system against the best (as 'emotk compare')."),
    sets: str = typer.Option("test", "--sets", help="Comma-separated test conditions, each read from scores/<set>.json; names must begin with 'test' (test,test_noisy)."),
    tables: Optional[Path] = typer.Option(None, "--tables", help="YAML list of tables in a paper's layout (title, metric, head, rows of systems, cols of protocol and set), put before the standard sections; the sets they name are read too."),
):
    """Tables of test scores, one per protocol, test set and head kind, a row per (system, head): mean ± std over folds x seeds, a speaker-bootstrap 95% CI for UA, chance and majority baselines; statements on protocol, selection set, normalization and disjointness derived from the runs' records; paired comparisons against the best system. With --tables, also tables in a paper's layout (a cell: mean ± std over the runs of a system, protocol and set), each with its baselines and statements.

    Example: emotk report exp/emodb --out recipes/emodb/RESULTS.md --note "SYNTHETIC CORPUS" --sets test,test_noisy --tables tables.yaml
    """
    from emotk.evaluation.report import parse_sets, report

    runs = report(exp_dirs, out, title=title, note=note, n_draws=draws, seed=seed, compare=compare,
                  sets=parse_sets(sets), tables_file=tables)
    groups = {(r.protocol, r.set, r.system, r.head) for r in runs}
    log(f"{out}: {len(runs)} runs in {len(groups)} rows, {len({r.protocol for r in runs})} protocols, "
        f"sets {' '.join(dict.fromkeys(r.set for r in runs))}")


@app.command("compare")
def compare_cmd(
    exp_a: Path = typer.Argument(..., help="System A: an exp dir (every scores/<set>.json below it: folds, seeds)."),
    exp_b: Path = typer.Argument(..., help="System B, scored on the same utterances."),
    set_name: str = typer.Option("test", "--set", help="Scores set: scores/<set>.json."),
    head: Optional[str] = typer.Option(None, "--head", help="Compare this head only. Default: every head both systems have."),
    draws: int = typer.Option(1000, "--bootstrap-draws", help="Draws of the speaker bootstrap."),
    permutations: int = typer.Option(10000, "--permutations", help="Speaker-swap patterns; all 2^S are enumerated (exact test) when 2^S <= this."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and of random swaps."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the comparison as JSON here."),
):
    """Paired comparison of two systems on the same test utterances: difference A - B of pooled UA (class heads) or CCC (regression heads, each dimension of frame-level heads), a speaker-level paired bootstrap 95% CI and a permutation p-value that swaps the systems' predictions per speaker.

    Refuses systems scored on different utterances.

    Example: emotk compare exp/emodb/egemaps_svm/loso exp/emodb/cnn_lstm2d/loso
    """
    import json

    from emotk.evaluation.compare import compare, format_comparison
    from emotk.fileio import write_text

    result = compare(exp_a, exp_b, set_name, head, n_draws=draws, n_permutations=permutations, seed=seed)
    for c in result["comparisons"]:
        print(format_comparison(c))
    if out is not None:
        write_text(out, json.dumps(result, indent=1) + "\n")
        log(f"{out}: {len(result['comparisons'])} comparisons")
