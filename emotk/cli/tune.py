"""Model search and analysis commands: ``emotk tune``, ``emotk interpret``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from emotk.cli.app import app, log


@app.command("tune")
def tune_cmd(
    config: Path = typer.Option(..., "--config", help="Model/training YAML the trials start from."),
    train: Path = typer.Option(..., "--train", help="Training data dir (never a test part)."),
    valid: Path = typer.Option(..., "--valid", help="Valid data dir: every trial's score (never a test part)."),
    space: Path = typer.Option(..., "--space", help="Search space YAML: params (config key -> float/int/categorical "
                               "range), sampler, pruner."),
    trials: int = typer.Option(..., "--trials", help="Finished trials (complete or pruned) the study should reach."),
    exp: Path = typer.Option(..., "--exp", help="Study dir: tune.yaml, study.db, trial-NNN/, trials.tsv, best.yaml, "
                             "best_config.yaml."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Stop starting trials after this many seconds."),
    overrides: List[str] = typer.Option([], "--set", help="Override a config value for every trial (repeatable)."),
):
    """Hyper-parameter search with optuna (TPE sampler, median pruning on the per-epoch valid metric);
    each trial is an 'emotk train' run under --exp/trial-NNN. Train and valid sets only: a test part of a
    fold (fold.yaml) is refused. A re-run resumes the study (and an interrupted trial).

    Example: emotk tune --config conf/model/elor.yaml --space conf/tune/elor.yaml --train data/folds/loso-1F/train
    --valid data/folds/loso-1F/valid --trials 70 --exp exp/iemocap/tune/elor
    """
    from emotk.tuning import tune

    tune(config, train, valid, space, exp, trials, timeout=timeout, overrides=list(overrides), log=log)
