"""The training loop and the experiment dir it fills (CONVENTIONS section 3).

``exp_dir/``: config.yaml (resolved), env.txt, train.log (regenerated from the checkpoint's
history each epoch, so it always matches last.pt), checkpoints/{last,best}.pt, and ``done``
once training has finished.  Every file is written atomically; last.pt is written after
best.pt, so a run killed at any point resumes from a consistent state and, given the seed,
ends with exactly the weights of an uninterrupted run (on the same device and thread count).
"""

from __future__ import annotations

import inspect
import math
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import yaml

import emotk
from emotk.config import resolve_task, save_config
from emotk.errors import EmotkError
from emotk.fileio import write_text
from emotk.metrics.classification import ua
from emotk.metrics.regression import ccc
from emotk.models import build_model, get_model_class
from emotk.training.checkpoint import load_checkpoint, save_checkpoint
from emotk.data.datadir import DataDir
from emotk.training.data import Batch, Dataset, eval_batches, load_dataset, num_batches, train_batches
from emotk.training.expdir import env_text, exit_if_test_epoch, prepare_exp_dir
from emotk.training.provenance import build_record, write_record
from emotk.training.losses import build_loss, inverse_frequency_weights
from emotk.training.seeding import epoch_rng, get_rng_state, seed_everything, set_rng_state

METRIC_NAME = {"class": "ua", "frame_regression": "ccc"}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EmotkError("train.device is 'cuda' but CUDA is not available (use 'auto' or 'cpu')")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool):
    """Mixed precision: float16 on CUDA (with a GradScaler), bfloat16 on CPU."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


def forward_batches(model: torch.nn.Module, batches: Iterator[Batch], device: torch.device,
                    amp: bool = False) -> Iterator[tuple[Batch, torch.Tensor]]:
    """Eval-mode outputs (float32, on the CPU) of each batch."""
    model.eval()
    with torch.no_grad():
        for batch in batches:
            b = batch.to(device)
            with autocast(device, amp):
                out = model(b.x, b.lengths)
            yield b, out.float()


def evaluate(model, ds: Dataset, loss_fn: Callable, batch_size: int, device: torch.device, amp: bool) -> tuple[float, float]:
    """Valid loss (mean over utterances) and metric: UA, or CCC per label dim over all frames, averaged."""
    total, outputs = 0.0, {}
    for b, out in forward_batches(model, eval_batches(ds, batch_size), device, amp):
        total += float(loss_fn(out, b.y, b.lengths)) * len(b.index)
        for j, i in enumerate(b.index):
            outputs[i] = out[j].argmax().item() if ds.kind == "class" else out[j, : b.lengths[j]].cpu().numpy()
    n = len(ds.utts)
    if ds.kind == "class":
        ref = [ds.names[t] for t in ds.targets]
        hyp = [ds.names[outputs[i]] for i in range(n)]
        metric = ua(ref, hyp, ds.names)
    else:
        pred = np.concatenate([outputs[i] for i in range(n)])
        ref = np.concatenate(ds.targets)
        metric = float(np.mean([ccc(pred[:, k], ref[:, k]) for k in range(ref.shape[1])]))
    return total / n, metric


def _log_line(h: dict, metric: str) -> str:
    return (f"epoch={h['epoch']} train_loss={h['train_loss']:.6f} valid_loss={h['valid_loss']:.6f} "
            f"valid_{metric}={h['valid_metric']:.6f} lr={h['lr']:.3g} seconds={h['seconds']:.1f}"
            + (" best" if h["best"] else ""))


def _feature_config(train_dir: Path) -> dict | None:
    p = train_dir / "conf" / "feats.yaml"
    if not p.is_file():
        return None
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise EmotkError(f"{p}: invalid YAML: {e}") from None


def check_model(name: str, params: dict, kind: str) -> None:
    """Fail before loading any data: unknown model, unknown parameter, output kind unfit for the task."""
    cls = get_model_class(name)
    if getattr(cls, "output_kind", None) != kind:
        raise EmotkError(f"model {name!r} produces {getattr(cls, 'output_kind', '?')!r} outputs, but task.kind is {kind!r}")
    sig = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in sig.values()):
        unknown = sorted((set(params) - set(sig)) | (set(params) & {"self", "input_dim", "output_dim"}))
        if unknown:
            known = ", ".join(k for k in sig if k not in ("self", "input_dim", "output_dim"))
            raise EmotkError(f"model {name!r}: unknown parameter {unknown[0]!r} in model.params (known: {known})")


def train(cfg: dict, train_dir: str | Path, valid_dir: str | Path, exp_dir: str | Path, *, resume: bool = False,
          overwrite: bool = False, on_mismatch: str = "redo", command: str = "",
          log: Callable[[str], None] = print) -> dict | None:
    """Train ``cfg`` (as from ``emotk.config.load_config``) and fill ``exp_dir``.

    Returns the ``done`` summary, or None when the exp dir was already done.
    """
    exp = Path(exp_dir)
    cfg = {**cfg, "task": resolve_task(cfg)}
    check_model(cfg["model"]["name"], cfg["model"]["params"], cfg["task"]["kind"])
    record = build_record(cfg, train_dir, valid_dir)
    if not prepare_exp_dir(exp, cfg, record, resume=resume, overwrite=overwrite, on_mismatch=on_mismatch, log=log):
        return None
    tc, fc, task = cfg["train"], cfg["features"], cfg["task"]
    torch.set_num_threads(tc["num_threads"])
    device = resolve_device(tc["device"])
    amp = bool(tc["amp"]) and device.type == "cuda"
    if tc["amp"] and not amp:
        log("train.amp ignored: mixed precision is used on CUDA only")

    mc = cfg["model"]
    train_ds = load_dataset(train_dir, fc, task)
    frame_shift = DataDir(train_dir).frame_shift * fc["stack"]
    valid_ds = load_dataset(valid_dir, fc, task, names=train_ds.names, feature_frame_shift=frame_shift)
    if valid_ds.input_dim != train_ds.input_dim:
        raise EmotkError(f"{valid_dir}: features have {valid_ds.input_dim} dims after the pipeline, "
                         f"{train_dir} has {train_ds.input_dim}")
    log(f"train: {len(train_ds.utts)} utterances from {train_dir}; valid: {len(valid_ds.utts)} from {valid_dir}; "
        f"{task['kind']} over {' '.join(train_ds.names)}; input dim {train_ds.input_dim}")

    seed_everything(tc["seed"])
    model = build_model(mc["name"], train_ds.input_dim, len(train_ds.names), **mc["params"])
    model.to(device)
    weights = None
    if task["kind"] == "class" and task["class_weights"]:
        weights = inverse_frequency_weights(train_ds.counts)
    loss_fn = build_loss(task["loss"], weights)
    if tc["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=tc["lr"], momentum=0.9, weight_decay=tc["weight_decay"])
    scheduler = None
    if tc["scheduler"] == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=tc["scheduler_factor"], patience=tc["scheduler_patience"])
    scaler = torch.amp.GradScaler(device.type, enabled=amp)

    meta = {
        "emotk_version": emotk.__version__,
        "model": {"name": mc["name"], "params": mc["params"], "input_dim": train_ds.input_dim,
                  "output_dim": len(train_ds.names)},
        "task": {"kind": task["kind"], "names": train_ds.names, "label_file": task["label_file"],
                 "loss": task["loss"]},
        "features": dict(fc),
        "feature_config": _feature_config(Path(train_dir)),
        "frame_shift": frame_shift,
        "label_frame_shift": train_ds.label_frame_shift,
    }
    metric_name = METRIC_NAME[task["kind"]]
    state = {"epoch": 0, "best_metric": -math.inf, "best_epoch": 0, "bad_epochs": 0, "history": []}
    last = exp / "checkpoints" / "last.pt"
    if resume and last.is_file():
        ck = load_checkpoint(last)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"])
        state = {k: ck[k] for k in state}
        log(f"{exp}: resuming after epoch {state['epoch']} (best valid {metric_name} {state['best_metric']:.4f} "
            f"at epoch {state['best_epoch']})")
        save_config(cfg, exp / "config.yaml")
        env = (exp / "env.txt").read_text(encoding="utf-8") if (exp / "env.txt").is_file() else env_text("")
        write_text(exp / "env.txt", env + f"resumed: {command}\n")
    else:
        if resume:
            log(f"{exp}: no checkpoint to resume from, starting from scratch")
        save_config(cfg, exp / "config.yaml")
        write_text(exp / "env.txt", env_text(command))
        write_record(exp, record, DataDir(train_dir).utt2spk, DataDir(valid_dir).utt2spk)
    (exp / "checkpoints").mkdir(parents=True, exist_ok=True)

    show_bar = sys.stderr.isatty()
    while state["epoch"] < tc["epochs"] and state["bad_epochs"] < tc["patience"]:
        epoch = state["epoch"] + 1
        t0 = time.time()
        model.train()
        rng = epoch_rng(tc["seed"], epoch)
        batches = train_batches(train_ds, tc["batch_size"], rng, fc["max_frames"])
        bar = None
        if show_bar:
            from tqdm import tqdm

            bar = batches = tqdm(batches, total=num_batches(train_ds, tc["batch_size"]), desc=f"epoch {epoch}",
                                 leave=False, file=sys.stderr)
        total = 0.0
        for batch in batches:
            b = batch.to(device)
            with autocast(device, amp):
                out = model(b.x, b.lengths)
            if task["kind"] == "frame_regression" and out.shape[:2] != b.y.shape[:2]:
                raise EmotkError(f"model {mc['name']!r} returned {tuple(out.shape)} for input {tuple(b.x.shape)}: "
                                 f"frame regression needs [B, T, K] with the input's T")
            loss = loss_fn(out, b.y, b.lengths)
            if not torch.isfinite(loss):
                raise EmotkError(f"{exp}: training diverged in epoch {epoch} (loss {loss.item()}); lower train.lr")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if tc["grad_clip"]:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
            scaler.step(opt)
            scaler.update()
            total += loss.item() * len(b.index)
            if bar is not None:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        if bar is not None:
            bar.close()
        valid_loss, metric = evaluate(model, valid_ds, loss_fn, tc["batch_size"], device, amp)
        improved = metric > state["best_metric"]
        lr = opt.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step(metric)
        state["epoch"] = epoch
        state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
        if improved:
            state["best_metric"], state["best_epoch"] = metric, epoch
        state["history"].append({"epoch": epoch, "train_loss": total / len(train_ds.utts), "valid_loss": valid_loss,
                                 "valid_metric": metric, "lr": lr, "seconds": time.time() - t0, "best": improved})
        if improved:
            save_checkpoint({"model": model.state_dict(), "meta": meta, "epoch": epoch, "metric": metric},
                            exp / "checkpoints" / "best.pt")
        save_checkpoint({**state, "model": model.state_dict(), "optimizer": opt.state_dict(),
                         "scheduler": scheduler.state_dict() if scheduler is not None else None,
                         "scaler": scaler.state_dict(), "rng": get_rng_state(), "meta": meta}, last)
        write_text(exp / "train.log", "".join(_log_line(h, metric_name) + "\n" for h in state["history"]))
        log(_log_line(state["history"][-1], metric_name))
        exit_if_test_epoch(epoch)

    stopped_early = state["epoch"] < tc["epochs"]
    summary = {"best_epoch": state["best_epoch"], f"best_valid_{metric_name}": float(state["best_metric"]),
               "epochs": state["epoch"], "stopped_early": stopped_early}
    if stopped_early:
        log(f"early stop after epoch {state['epoch']}: no better valid {metric_name} for {tc['patience']} epochs")
    write_text(exp / "done", yaml.safe_dump(summary, sort_keys=False))
    log(f"{exp}: done; best valid {metric_name} {state['best_metric']:.4f} at epoch {state['best_epoch']}")
    return summary
