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

    Example: emotk tune --config conf/model/elor.yaml --space elor_space.yaml --train data/folds/loso-Ses01F/train
    --valid data/folds/loso-Ses01F/valid --trials 70 --exp exp/iemocap/tune/elor
    """
    from emotk.tuning import tune

    tune(config, train, valid, space, exp, trials, timeout=timeout, overrides=list(overrides), log=log)


@app.command("interpret")
def interpret_cmd(
    model: Path = typer.Option(..., "--model", help="Experiment dir of a trained raw-waveform model (a wav input)."),
    data: Path = typer.Option(..., "--data", help="Data dir whose pieces get saliency maps (e.g. a test fold)."),
    out: Path = typer.Option(..., "--out", help="Output dir: saliency.tsv, saliency_*.png, generalized_*.png, "
                             "generalized/*.wav, table6.md, summary.yaml."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last."),
    max_pieces: int = typer.Option(50, "--max-pieces", help="Pieces (segments) of --data given saliency maps."),
    steps: int = typer.Option(200, "--steps", help="Optimization steps per generalized input signal."),
    lr: float = typer.Option(0.01, "--lr", help="Adam learning rate of the generalized input signals."),
    l2: float = typer.Option(1e-3, "--l2", help="Weight of ||x||^2 in the generalized signals' objective (eq. 4)."),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="Length of the generalized signals (default: "
                                            "the model's segment length, else 6 s)."),
    seed: int = typer.Option(0, "--seed"),
):
    """What a raw-waveform network learned (paper 003, section 2.3): guided-backpropagation saliency maps and
    their correlation with the signal; generalized input signals maximizing each class output, plotted in time
    and frequency, with loudness, dominant band and pause statistics per class (Table 6).

    Example: emotk interpret --model exp/iemocap/elor/loso-Ses03F --data data/iemocap/folds/loso-Ses03F/test
    --out exp/iemocap/elor/loso-Ses03F/interpret
    """
    from emotk.analysis.interpret import interpret
    from emotk.errors import EmotkError

    if checkpoint not in ("best", "last"):
        raise EmotkError(f"--checkpoint must be best or last, got {checkpoint!r}")
    interpret(model, data, out, checkpoint=checkpoint, max_pieces=max_pieces, steps=steps, lr=lr, l2=l2,
              seconds=seconds, seed=seed, log=log)
