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
    config: Path = typer.Option(..., "--config", help="Model/training YAML: a path, or the name of a config "
                                "shipped in conf/model/ (ldnn, svm_linear, ...)."),
    train: Path = typer.Option(..., "--train", help="Training data dir (feats.scp, labels; cmvn.scp for speaker z-norm)."),
    valid: Path = typer.Option(..., "--valid", help="Validation data dir: early stopping and best-model selection."),
    exp: Path = typer.Option(..., "--exp", help="Experiment dir to write (config.yaml, env.txt, train.log, checkpoints/)."),
    overrides: List[str] = typer.Option([], "--set", help="Override a config value: --set train.lr=0.0005 (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from checkpoints/last.pt."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard an existing run in --exp and train again."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Same as --set train.seed=N."),
    on_mismatch: str = typer.Option("redo", "--on-mismatch", help="A finished or started run in --exp trained on "
                                    "other data or config: redo (train again) | refuse (exit with an error)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda: same as --set train.device=...; "
                                         "under torchrun each process takes cuda:LOCAL_RANK."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision on CUDA (train.amp=true); ignored on the CPU, "
                             "with a notice."),
):
    """Train a model (torch or scikit-learn) on the inputs and heads its config names; model selection on the
    valid set only (UA for class heads, CCC for regression heads; train.select picks the head or the mean).

    A finished exp dir is skipped only when its provenance record (data, labels, features, config, seed)
    matches the request; otherwise it is trained again (--on-mismatch refuse: an error instead).

    Under torchrun the run is data-parallel over its processes (gloo on CPU, nccl on CUDA); rank 0 alone
    logs and writes --exp. Each optimization step sees the same batch as in one process.

    Example: emotk train --config conf/model/cnn_lstm2d_small.yaml --train data/fold1/train
    --valid data/fold1/valid --exp exp/emodb/cnn_lstm2d_small/fold1 --set train.epochs=20

    Example: torchrun --standalone --nproc_per_node 2 --no-python emotk train --config ldnn --device cuda ...
    """
    from emotk.config import load_config

    items = (list(overrides) + ([f"train.seed={seed}"] if seed is not None else [])
             + ([f"train.device={device}"] if device is not None else []) + (["train.amp=true"] if amp else []))
    cfg = load_config(config, items)
    from emotk.training.loop import train as run_training  # torch: only once the config is known good

    run_training(cfg, train, valid, exp, resume=resume, overwrite=overwrite, on_mismatch=on_mismatch,
                 command=shlex.join(["emotk", *sys.argv[1:]]), log=log)


@app.command("infer")
def infer_cmd(
    inputs: List[str] = typer.Argument(..., help="One data dir with the model's input tables; or audio: files, "
                                       "folders (recursive), wav.scp tables, '-' (paths on stdin)."),
    model: Path = typer.Option(..., "--model", help="Model dir (emotk export-model) or experiment dir."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last (exp dirs of torch models)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Predictions dir (heads.yaml and one file or dir per "
                                       "head); data dirs: default <model>/predictions/<name>; audio: only when given."),
    name: Optional[str] = typer.Option(None, "--name", help="Set name for the default output of a data dir "
                                       "(default: the data dir's name)."),
    fmt: str = typer.Option("tsv", "--format", help="Audio: rows as tsv | jsonl."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Audio: file for the rows (default: stdout)."),
    csv_dir: Optional[Path] = typer.Option(None, "--csv-dir", help="Audio, continuous models: dir of the per-file CSVs "
                                           "(default: <output>.frames/, or frames/)."),
    plot: bool = typer.Option(False, "--plot", help="Audio, continuous models: a PNG beside each CSV."),
    chunk: Optional[float] = typer.Option(None, "--chunk", help="Audio: chunk length in seconds (default: the "
                                          "training piece length, else 10; continuous models 60)."),
    backend: str = typer.Option("torch", "--backend", help="torch | onnx (onnxruntime on --onnx)."),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="ONNX file for --backend onnx (default <model>/model.onnx)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: the library's own)."),
    batch_size: int = typer.Option(16, "--batch-size"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda."),
):
    """Predict with a trained model (torch, ONNX or scikit-learn), using the input pipeline it was trained with.

    A data dir gives a predictions dir (one file per head). Audio of any format, rate and channel count
    gives one row per recording (and per chunk of long recordings) as TSV or JSON lines; continuous
    models also write one CSV per recording at the label rate. Silent and very short recordings get a
    warning and NA; an unreadable file is reported by name, the others are processed, exit code 2.

    Example: emotk infer --model models/emodb_cnn_lstm2d recordings/ --format jsonl -o predictions.jsonl
    """
    from emotk.errors import EmotkError
    from emotk.inference import Model, infer, infer_audio, is_data_dir

    if checkpoint not in ("best", "last"):
        raise EmotkError(f"--checkpoint must be best or last, got {checkpoint!r}")
    if fmt not in ("tsv", "jsonl"):
        raise EmotkError(f"--format must be tsv or jsonl, got {fmt!r}")
    m = Model(model, checkpoint, device, backend, onnx, threads)
    if len(inputs) == 1 and Path(inputs[0]).is_dir() and is_data_dir(Path(inputs[0]), m):
        infer(m, inputs, out=out, name=name, batch_size=batch_size, log=log)
        return
    from emotk.deploy.audio import WRITERS
    from emotk.fileio import atomic_write

    frames = csv_dir or (output.with_name(output.name + ".frames") if output else Path("frames"))
    if output is None:
        writer = WRITERS[fmt](sys.stdout, m.meta["heads"])
        done, failures = infer_audio(m, inputs, writer=writer, out=out, chunk=chunk, batch_size=batch_size,
                                     csv_dir=frames, plot=plot, log=log)
    else:
        with atomic_write(output) as f:
            done, failures = infer_audio(m, inputs, writer=WRITERS[fmt](f, m.meta["heads"]), out=out, chunk=chunk,
                                         batch_size=batch_size, csv_dir=frames, plot=plot, log=log)
    log(f"{done} recording(s) done" + (f", {len(failures)} failed: " + ", ".join(n for n, _ in failures)
                                       if failures else "") + (f"; rows in {output}" if output else ""))
    if failures:
        raise typer.Exit(2)
