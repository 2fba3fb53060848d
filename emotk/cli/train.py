"""Training and inference commands: ``emotk train``, ``emotk infer``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from emotk.cli.app import app, log


@app.command("train")
def train_cmd(
    config: Path = typer.Option(..., "--config", help="Model/training YAML, e.g. conf/model/cnn_lstm2d_small.yaml."),
    train: Path = typer.Option(..., "--train", help="Training data dir (feats.scp, labels; cmvn.scp for speaker z-norm)."),
    valid: Path = typer.Option(..., "--valid", help="Validation data dir: early stopping and best-model selection."),
    exp: Path = typer.Option(..., "--exp", help="Experiment dir to write (config.yaml, env.txt, train.log, checkpoints/)."),
    overrides: List[str] = typer.Option([], "--set", help="Override a config value: --set train.lr=0.0005 (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from checkpoints/last.pt."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard an existing run in --exp and train again."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Same as --set train.seed=N."),
    on_mismatch: str = typer.Option("redo", "--on-mismatch", help="A finished or started run in --exp trained on "
                                    "other data or config: redo (train again) | refuse (exit with an error)."),
):
    """Train a model (torch or scikit-learn) on the inputs and heads its config names; model selection on the
    valid set only (UA for class heads, CCC for regression heads; train.select picks the head or the mean).

    A finished exp dir is skipped only when its provenance record (data, labels, features, config, seed)
    matches the request; otherwise it is trained again (--on-mismatch refuse: an error instead).

    Example: emotk train --config conf/model/cnn_lstm2d_small.yaml --train data/fold1/train
    --valid data/fold1/valid --exp exp/emodb/cnn_lstm2d_small/fold1 --set train.epochs=20
    """
    from emotk.config import load_config

    items = list(overrides) + ([f"train.seed={seed}"] if seed is not None else [])
    cfg = load_config(config, items)
    from emotk.training.loop import train as run_training  # torch: only once the config is known good

    run_training(cfg, train, valid, exp, resume=resume, overwrite=overwrite, on_mismatch=on_mismatch,
                 command=shlex.join(["emotk", *sys.argv[1:]]), log=log)


@app.command("infer")
def infer_cmd(
    inputs: List[Path] = typer.Argument(..., help="One data dir with the model's input tables, or audio files "
                                        "(any rate, mono or stereo)."),
    model: Path = typer.Option(..., "--model", help="Experiment dir of a trained model."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last."),
    out: Optional[Path] = typer.Option(None, "--out", help="Predictions dir (heads.yaml and one file or dir per "
                                       "head); default <model>/predictions/<name>."),
    name: Optional[str] = typer.Option(None, "--name", help="Set name for the default output (default: the data dir's "
                                       "name, or 'audio')."),
    batch_size: int = typer.Option(16, "--batch-size"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda."),
):
    """Predict with a trained model (torch or scikit-learn), using the input pipeline it was trained with;
    writes one predictions file per head (class posteriors, values, or frame-level labels).

    Example: emotk infer --model exp/emodb/cnn_lstm2d_small/fold1 data/fold1/test
    """
    from emotk.errors import EmotkError
    from emotk.inference import infer

    if checkpoint not in ("best", "last"):
        raise EmotkError(f"--checkpoint must be best or last, got {checkpoint!r}")
    infer(model, inputs, out=out, checkpoint=checkpoint, name=name, batch_size=batch_size, device=device, log=log)
