"""Evaluation commands: score predictions against a data dir, build RESULTS.md tables."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from emotk.cli.app import app, log


@app.command("score")
def score_cmd(
    ref: Path = typer.Option(..., "--ref", help="Reference data dir (utt2emo for categorical, labels.scp for continuous)."),
    hyp: Path = typer.Option(..., "--hyp", help="Predictions: <exp>/predictions/<set>.txt (categorical) or <exp>/predictions/<set>/ (frame-level dir)."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Comma-separated: ua,wa,f1 (categorical) or ccc,rmse,pcc (continuous). Default: all of the kind."),
    out: Optional[Path] = typer.Option(None, "--out", help="Scores JSON. Default: <exp>/scores/<set>.json."),
    tag: Optional[str] = typer.Option(None, "--tag", help="Model tag recorded for 'emotk report'. Default: from the exp path."),
    train: Optional[Path] = typer.Option(None, "--train", help="Training data dir for the majority-class baseline. Default: <ref>/../train when it exists."),
    ensemble: bool = typer.Option(False, "--ensemble", help="Mark the predictions as an ensemble's (separate rows in 'emotk report')."),
):
    """Score predictions: metrics with their counts, per-class recall/F1, confusion matrix, chance and majority baselines (categorical); per-dimension CCC/RMSE/PCC over the concatenated recordings and per recording (continuous).

    Writes the JSON, and for categorical predictions <set>.confusion.txt beside it and <exp>/plots/confusion_<set>.png.

    Example: emotk score --metric ua,wa,f1 --ref data/emodb/folds/loso/loso-03/test --hyp exp/emodb/cnn/loso/loso-03/seed1/predictions/test.txt
    """
    from emotk.evaluation.score import score

    s, path = score(ref, hyp, metric, out, tag=tag, train=train, ensemble=ensemble)
    if s["kind"] == "categorical":
        summary = ", ".join(f"{m} {100 * v:.2f}%" for m, v in s["metrics"].items())
        n = f"{s['counts']['utterances']} utterances"
    else:
        summary = "; ".join(f"{dim} " + ", ".join(f"{m} {v:.4f}" for m, v in ms.items()) for dim, ms in s["metrics"].items())
        n = f"{s['counts']['recordings']} recordings, {s['counts']['frames']} frames"
    log(f"{path}: {summary} ({n}, {s['counts']['speakers']} speakers)")


@app.command("report")
def report_cmd(
    exp_dirs: List[Path] = typer.Argument(..., help="Exp dirs searched (recursively) for scores/test.json."),
    out: Path = typer.Option(..., "--out", help="Markdown file to write, e.g. recipes/emodb/RESULTS.md."),
    title: str = typer.Option("Results", "--title", help="Heading of the report."),
    note: Optional[str] = typer.Option(None, "--note", help="Text shown in bold at the top, e.g. 'SYNTHETIC CORPUS - not comparable to published numbers'."),
    draws: int = typer.Option(1000, "--bootstrap-draws", help="Draws of the speaker bootstrap for the UA confidence interval."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
):
    """Tables of test scores, one per protocol, rows grouped by model tag: mean ± std over folds x seeds, a speaker-bootstrap 95% CI for UA, chance and majority baselines.

    Example: emotk report exp/emodb --out recipes/emodb/RESULTS.md --note "SYNTHETIC CORPUS"
    """
    from emotk.evaluation.report import report

    runs = report(exp_dirs, out, title=title, note=note, n_draws=draws, seed=seed)
    groups = {(r.protocol, r.tag, r.ensemble) for r in runs}
    log(f"{out}: {len(runs)} runs in {len(groups)} rows, {len({r.protocol for r in runs})} protocols")
