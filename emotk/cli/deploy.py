"""Deployment commands: ``emotk export-model``, ``emotk export-onnx``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emotk.cli.app import app, log


@app.command("export-model")
def export_model_cmd(
    exp: Path = typer.Argument(..., help="Experiment dir of a trained model (torch or scikit-learn)."),
    out: Path = typer.Argument(..., help="Model dir to write (self-contained: weights, configs, statistics, card)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last (torch models)."),
    train_dir: Optional[Path] = typer.Option(None, "--train-dir", help="Training data dir for the global statistics "
                                             "(default: the one in the exp dir's provenance record)."),
    data_note: Optional[str] = typer.Option(None, "--data-note", help="What the training speech is, for the card, "
                                            "e.g. 'acted German speech (EmoDB)' (default: guessed from known corpora)."),
):
    """Package a trained model as a self-contained dir: weights (state dict or skops files), model and
    feature configs, normalization with the training set's statistics and the rule for unseen speakers,
    label maps, protocol and scores with confidence intervals, versions, and a MODEL.md card.

    Example: emotk export-model exp/emodb/cnn_lstm2d_small/loso-03 models/emodb_cnn_lstm2d
    """
    from emotk.deploy.export import export_model
    from emotk.errors import EmotkError

    if checkpoint not in ("best", "last"):
        raise EmotkError(f"--checkpoint must be best or last, got {checkpoint!r}")
    export_model(exp, out, checkpoint, train_dir, data_note, log=log)


@app.command("export-onnx")
def export_onnx_cmd(
    model: Path = typer.Argument(..., help="Model dir (emotk export-model) or exp dir of a torch model."),
    out: Path = typer.Argument(..., help="ONNX file to write (e.g. MODEL_DIR/model.onnx, what --backend onnx reads)."),
):
    """Export a torch model to ONNX with dynamic batch and time axes; the graph is checked against
    PyTorch on a random batch of varying lengths and refused if any output differs by 1e-4 or more.

    Example: emotk export-onnx models/emodb_cnn_lstm2d models/emodb_cnn_lstm2d/model.onnx
    """
    from emotk.deploy.onnx import export_onnx
    from emotk.inference import Model

    export_onnx(Model(model), out, log=log)
