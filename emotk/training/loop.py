"""``emotk train``: one training contract for every model, and the experiment dir it fills
(CONVENTIONS section 3).

The config names the model's inputs and heads (``emotk.config``); the data are streamed from the
data dirs (``emotk.training.dataset``); each head has its loss, weight and metric
(``emotk.training.heads``); a model may add auxiliary losses (weighted by ``train.aux_weights``);
``train.head_order: random`` updates the heads one at a time in a random order per batch (paper
003); early stopping watches ``train.select`` (one head's metric or their mean) on the valid set
only. scikit-learn models take the same path up to the fit (``emotk.training.sklearn_fit``).

``exp_dir/``: config.yaml (resolved), provenance/ (what the run was trained on: a finished run is
reused only when it matches), env.txt, train.log (regenerated from the checkpoint's history each
epoch, so it always matches last.pt), checkpoints/{last,best}.pt, and ``done`` once training has
finished. Every file is written atomically; last.pt is written after best.pt, so a run killed at
any point resumes from a consistent state and, given the seed, ends with exactly the weights of an
uninterrupted run (on the same device and thread count).

Under ``torchrun`` the same call trains data-parallel, rank 0 alone writing the exp dir
(``emotk.training.distributed``).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml

import emotk
from emotk.augment.online import for_training as online_augment
from emotk.config import resolve_config, save_config
from emotk.data.datadir import DataDir, validate_data_dir
from emotk.errors import EmotkError
from emotk.fileio import write_text
from emotk.models import build_for_config, check_model, framework
from emotk.training import distributed
from emotk.training.checkpoint import load_checkpoint, save_checkpoint
from emotk.training.dataset import SerDataset, loader, train_batches
from emotk.training.expdir import env_text, exit_if_test_epoch, prepare_exp_dir
from emotk.training.heads import HeadData, class_weights_of, head_loss, head_metric, load_head
from emotk.training.inputs import open_sources, training_stats
from emotk.training.predict import autocast, piece_outputs, utterance_outputs
from emotk.training.provenance import build_record, write_record
from emotk.training.seeding import epoch_rng, seed_everything, set_rng_state


# Data ------------------------------------------------------------------------------------------

def required_tables(cfg: dict) -> list[str]:
    return [s["table"] for s in cfg["inputs"].values()] + [h["labels"] for h in cfg["heads"].values()]


def open_data(cfg: dict, path, heads_from: dict[str, HeadData] | None = None, global_stats: dict | None = None):
    """``(data dir, sources, heads)`` of one set; class names / label dims from ``heads_from`` (training)."""
    d = validate_data_dir(path, require=required_tables(cfg))
    heads = {h: load_head(d, h, spec, heads_from[h].names if heads_from else None) for h, spec in cfg["heads"].items()}
    return d, open_sources(d, cfg["inputs"], global_stats), heads


def input_dims(sources: dict, utt: str) -> dict[str, tuple[str, int]]:
    return {n: (s.kind, int(s.dim(utt))) for n, s in sources.items()}


def check_sets(cfg: dict, train, valid) -> dict[str, tuple[str, int]]:
    """Input dims (train and valid must agree) and frame-rate agreement of frame heads."""
    (dt, st, ht), (dv, sv, _) = train, valid
    dims = input_dims(st, dt.utts[0])
    vdims = input_dims(sv, dv.utts[0])
    for n in dims:
        if dims[n] != vdims[n]:
            raise EmotkError(f"{dv.path}: input {n!r} has {vdims[n][1]} dims after the pipeline, {dt.path} has {dims[n][1]}")
    clock = next((s for s in st.values() if s.temporal), None)
    for h, head in ht.items():
        if head.kind != "frame_regression":
            continue
        if clock is None or not math.isclose(1 / clock.rate, head.label_frame_shift, rel_tol=1e-3):
            shift = "no frame-level input" if clock is None else f"{1 / clock.rate:g} s per frame"
            raise EmotkError(f"{dt.path}: head {h!r} has labels every {head.label_frame_shift:g} s, the input has "
                             f"{shift}; set the input's stack so they match")
    return dims


def _data_conf(train_dir: Path) -> dict:
    """The feature configs recorded in the training dir's conf/ (needed to compute features for audio)."""
    out = {}
    for p in sorted((train_dir / "conf").glob("*.yaml")) if (train_dir / "conf").is_dir() else []:
        try:
            out[p.stem] = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise EmotkError(f"{p}: invalid YAML: {e}") from None
    return out


def model_meta(cfg: dict, train, dims: dict, global_stats: dict) -> dict:
    """Everything inference needs besides the weights (stored in checkpoints and sklearn model dirs)."""
    d, sources, heads = train
    return {
        "emotk_version": emotk.__version__,
        "model": cfg["model"],
        "inputs": {n: {**cfg["inputs"][n], "dim": dims[n][1], "rate": sources[n].rate if sources[n].temporal else None}
                   for n in cfg["inputs"]},
        "heads": {h: {**cfg["heads"][h], "names": head.names, "label_frame_shift": head.label_frame_shift}
                  for h, head in heads.items()},
        "segments": cfg["segments"],
        "global_stats": {n: torch.from_numpy(np.asarray(s, dtype=np.float64)) for n, s in global_stats.items()},
        "data_conf": _data_conf(d.path),
    }


# Training --------------------------------------------------------------------------------------

def _select_name(cfg: dict, heads: dict[str, HeadData]) -> str:
    """The name of the early-stopping metric: ``ua``/``ccc`` when every head shares it, else
    ``<head>_<metric>`` or ``mean``."""
    select = cfg["train"]["select"]
    if select != "mean":
        return f"{select}_{heads[select].metric}" if len(heads) > 1 else heads[select].metric
    metrics = {h.metric for h in heads.values()}
    return metrics.pop() if len(heads) == 1 else "mean"


def _log_line(h: dict, metric: str) -> str:
    per_head = "".join(f" valid_{k}={v:.6f}" for k, v in h.get("heads", {}).items())
    return (f"epoch={h['epoch']} train_loss={h['train_loss']:.6f} valid_loss={h['valid_loss']:.6f} "
            f"valid_{metric}={h['valid_metric']:.6f}{per_head} lr={h['lr']:.3g} seconds={h['seconds']:.1f}"
            + (" best" if h["best"] else ""))


def make_optimizer(model, tc: dict):
    if tc["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    return torch.optim.SGD(model.parameters(), lr=tc["lr"], momentum=tc["momentum"], nesterov=tc["nesterov"],
                           weight_decay=tc["weight_decay"])


class Step:
    """One optimization step on a batch: forward, weighted head losses + auxiliary losses, backward."""

    def __init__(self, model, opt, scaler, losses: dict, weights: dict, aux_weights: dict, tc: dict,
                 device: torch.device, amp: bool, clock: str | None, exp: Path, model_name: str):
        self.model, self.opt, self.scaler, self.losses, self.weights = model, opt, scaler, losses, weights
        self.aux_weights, self.tc, self.device, self.amp, self.clock = aux_weights, tc, device, amp, clock
        self.exp, self.model_name = exp, model_name

    def __call__(self, b, heads: list[str], epoch: int, scale: float = 1.0) -> float:
        """The batch's loss; the gradient is that of ``scale`` times it (a rank's part of a global batch)."""
        with autocast(self.device, self.amp):
            out, aux = self.model(b.inputs, b.lengths, b.targets)
        frames = b.lengths[self.clock] if self.clock else None
        loss = 0.0
        for h in heads:
            y = b.targets[h]
            if y.dim() == 3 and out[h].shape[:2] != y.shape[:2]:
                raise EmotkError(f"model {self.model_name!r} returned {tuple(out[h].shape)} for head {h!r}, "
                                 f"frame regression needs [B, T, K] with the input's T ({tuple(y.shape)})")
            loss = loss + self.weights[h] * self.losses[h](out[h], y, frames)
        for name, value in aux.items():
            loss = loss + self.aux_weights.get(name, 1.0) * value
        if not torch.isfinite(loss):
            raise EmotkError(f"{self.exp}: training diverged in epoch {epoch} (loss {loss.item()}); lower train.lr")
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss * scale).backward()
        if self.tc["grad_clip"]:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc["grad_clip"])
        self.scaler.step(self.opt)
        self.scaler.update()
        return float(loss.item())


def validate(model, valid_ds: SerDataset, losses: dict, cfg: dict, device, amp) -> tuple[float, float, dict]:
    """``(valid loss, selection metric, {<head>_<metric>: value})`` on the valid set."""
    heads = valid_ds.heads
    kinds = {h: head.kind for h, head in heads.items()}
    tc = cfg["train"]
    outs, head_losses = piece_outputs(model, valid_ds, kinds, tc["batch_size"], device, amp, tc["num_workers"], losses)
    per_utt = utterance_outputs(valid_ds, outs, kinds)
    refs = {}
    for h, head in heads.items():
        if head.kind == "frame_regression":
            refs[h] = {u: head.frames(valid_ds.d, u)[: len(per_utt[h][u])] for u in valid_ds.utts}
    metrics = {h: head_metric(head, valid_ds.utts, per_utt[h], refs.get(h)) for h, head in heads.items()}
    select = tc["select"]
    value = float(np.mean(list(metrics.values()))) if select == "mean" else metrics[select]
    loss = sum(head.spec["weight"] * head_losses[h] for h, head in heads.items())
    return loss, value, {f"{h}_{heads[h].metric}": m for h, m in metrics.items()}


def train(cfg: dict, train_dir: str | Path, valid_dir: str | Path, exp_dir: str | Path, *, resume: bool = False,
          overwrite: bool = False, on_mismatch: str = "redo", command: str = "",
          log: Callable[[str], None] = print, on_epoch: Callable[[dict], None] | None = None) -> dict | None:
    """Train ``cfg`` (as from ``emotk.config.load_config``) and fill ``exp_dir``.

    ``on_epoch(history_entry)`` is called after each epoch's checkpoint (hyper-parameter search
    prunes from there; an exception leaves a resumable run). Returns the ``done`` summary, or None
    when the exp dir already holds this run, finished.
    """
    exp = Path(exp_dir)
    cfg = resolve_config(cfg)
    check_model(cfg["model"], {n: s["kind"] for n, s in cfg["inputs"].items()},
                {h: s["kind"] for h, s in cfg["heads"].items()})
    if framework(cfg["model"]["name"]) == "sklearn":
        from emotk.models.sklearn_models import check_config

        check_config(cfg["model"]["name"], cfg["model"]["params"], cfg["train"]["grid"])
    ctx = distributed.context(cfg["train"]["device"])  # under torchrun: this process's rank and device
    if ctx.distributed and framework(cfg["model"]["name"]) == "sklearn":
        raise EmotkError(f"{cfg['model']['name']}: scikit-learn models train in one process; run emotk train without torchrun")
    log = ctx.main_only(log)
    record = build_record(cfg, train_dir, valid_dir) if ctx.is_main else None
    if not ctx.on_main(lambda: prepare_exp_dir(exp, cfg, record, resume=resume, overwrite=overwrite,
                                               on_mismatch=on_mismatch, log=log)):
        return None
    tc = cfg["train"]
    torch.set_num_threads(tc["num_threads"])
    d = DataDir(train_dir)
    global_stats = training_stats(d, cfg["inputs"], d.utts)  # the 'global' scope: training data only
    train_set = open_data(cfg, train_dir, global_stats=global_stats)
    valid_set = open_data(cfg, valid_dir, heads_from=train_set[2], global_stats=global_stats)
    dims = check_sets(cfg, train_set, valid_set)
    d_train, _, heads = train_set
    log(f"train: {len(d_train.utts)} utterances from {train_dir}; valid: {len(valid_set[0].utts)} from {valid_dir}; "
        f"inputs {', '.join(f'{n} ({k}, {dim})' for n, (k, dim) in dims.items())}; heads "
        + "; ".join(f"{h} ({head.kind} over {' '.join(head.names)})" for h, head in heads.items()))
    meta = model_meta(cfg, train_set, dims, global_stats)
    if framework(cfg["model"]["name"]) == "sklearn":
        from emotk.training.sklearn_fit import fit_sklearn

        return fit_sklearn(cfg, train_set, valid_set, exp, meta, record, command, log)
    return _train_torch(cfg, train_set, valid_set, dims, meta, record, exp, resume, command, log, on_epoch, ctx)


def _start_exp_dir(exp: Path, cfg: dict, record: dict, train_set, valid_set, command: str) -> None:
    save_config(cfg, exp / "config.yaml")
    write_text(exp / "env.txt", env_text(command))
    write_record(exp, record, train_set[0].utt2spk, valid_set[0].utt2spk)


def _train_torch(cfg, train_set, valid_set, dims, meta, record, exp: Path, resume: bool, command: str, log, on_epoch,
                 ctx: distributed.Context):
    tc = cfg["train"]
    d_train, _, heads = train_set
    device = ctx.device
    amp = bool(tc["amp"]) and device.type == "cuda"
    if tc["amp"] and not amp:
        log("train.amp ignored: mixed precision is used on CUDA only")
    train_ds = SerDataset(*train_set, cfg["segments"], augment=online_augment(cfg, train_set[1]))
    valid_ds = SerDataset(*valid_set, cfg["segments"])
    if cfg["segments"]["mode"] != "none":
        log(f"segments ({cfg['segments']['mode']}): {len(train_ds)} training pieces of {len(train_ds.utts)} "
            f"utterances, {len(valid_ds)} valid pieces")

    seed_everything(tc["seed"])
    model = build_for_config(cfg["model"], dims, {h: (head.kind, head.dim) for h, head in heads.items()}).to(device)
    ctx.seed_rank(tc["seed"])
    losses = {h: head_loss(head, class_weights_of(head, d_train.utts)) for h, head in heads.items()}
    weights = {h: float(head.spec["weight"]) for h, head in heads.items()}
    opt = make_optimizer(model, tc)
    scheduler = None
    if tc["scheduler"] == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=tc["scheduler_factor"], patience=tc["scheduler_patience"])
    elif tc["scheduler"] == "exponential":  # paper 003's "learning decay"
        scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=tc["scheduler_factor"])
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    clock = train_ds.clock.name if train_ds.clock is not None else None
    net = ctx.wrap(model, find_unused=tc["head_order"] == "random" and len(heads) > 1)  # one head per step
    step = Step(net, opt, scaler, losses, weights, tc["aux_weights"], tc, device, amp, clock, exp, cfg["model"]["name"])
    metric_name = _select_name(cfg, heads)

    state = {"epoch": 0, "best_metric": -math.inf, "best_epoch": 0, "bad_epochs": 0, "history": []}
    last = exp / "checkpoints" / "last.pt"
    if resume and last.is_file():
        ck = load_checkpoint(last)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        set_rng_state(ctx.own_rng_state(ck, log))
        state = {k: ck[k] for k in state}
        log(f"{exp}: resuming after epoch {state['epoch']} (best valid {metric_name} {state['best_metric']:.4f} "
            f"at epoch {state['best_epoch']})")
        if ctx.is_main:
            save_config(cfg, exp / "config.yaml")
            env = (exp / "env.txt").read_text(encoding="utf-8") if (exp / "env.txt").is_file() else env_text("")
            write_text(exp / "env.txt", env + f"resumed: {command}\n")
    else:
        if resume:
            log(f"{exp}: no checkpoint to resume from, starting from scratch")
        if ctx.is_main:
            _start_exp_dir(exp, cfg, record, train_set, valid_set, command)
    if ctx.is_main:
        (exp / "checkpoints").mkdir(parents=True, exist_ok=True)

    head_names = list(heads)
    pin = device.type == "cuda"
    while state["epoch"] < tc["epochs"] and state["bad_epochs"] < tc["patience"]:
        epoch = state["epoch"] + 1
        t0 = time.time()
        model.train()
        rng = epoch_rng(tc["seed"], epoch)
        batches = train_batches(train_ds, tc["batch_size"], rng, tc["max_frames"], epoch)
        shares = ctx.shares(batches)  # this process's part of each batch (all of it in one process)
        stream = loader(train_ds, [s.examples for s in shares], tc["num_workers"], pin)
        bar = None
        if sys.stderr.isatty() and ctx.is_main:
            from tqdm import tqdm

            bar = stream = tqdm(stream, total=len(batches), desc=f"epoch {epoch}", leave=False, file=sys.stderr)
        total = 0.0
        for batch, share in zip(stream, shares):
            b = batch.to(device)
            if tc["head_order"] == "random" and len(head_names) > 1:
                loss = sum(step(b, [head_names[k]], epoch, share.scale) for k in rng.permutation(len(head_names)))
            else:
                loss = step(b, head_names, epoch, share.scale)
            total += loss * share.count
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.4f}")
        if bar is not None:
            bar.close()
        ctx.sync_buffers(model)
        total = ctx.sum(total)
        valid_loss, metric, per_head = ctx.on_main(lambda: validate(model, valid_ds, losses, cfg, device, amp))
        improved = metric > state["best_metric"]
        lr = opt.param_groups[0]["lr"]
        if tc["scheduler"] == "plateau":
            scheduler.step(metric)
        elif scheduler is not None:
            scheduler.step()
        state["epoch"] = epoch
        state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
        if improved:
            state["best_metric"], state["best_epoch"] = metric, epoch
        state["history"].append({"epoch": epoch, "train_loss": total / len(train_ds), "valid_loss": valid_loss,
                                 "valid_metric": metric, "heads": per_head if len(heads) > 1 else {}, "lr": lr,
                                 "seconds": time.time() - t0, "best": improved})
        rngs = ctx.rng_states()
        if ctx.is_main:
            if improved:
                save_checkpoint({"model": model.state_dict(), "meta": meta, "epoch": epoch, "metric": metric},
                                exp / "checkpoints" / "best.pt")
            save_checkpoint({**state, "model": model.state_dict(), "optimizer": opt.state_dict(),
                             "scheduler": scheduler.state_dict() if scheduler is not None else None,
                             "scaler": scaler.state_dict(), "rng": rngs[0], "meta": meta,
                             **({"rank_rng": rngs} if ctx.distributed else {})}, last)
            write_text(exp / "train.log", "".join(_log_line(h, metric_name) + "\n" for h in state["history"]))
        log(_log_line(state["history"][-1], metric_name))
        if on_epoch is not None:
            on_epoch(state["history"][-1])
        ctx.barrier()  # last.pt is complete before any process may stop
        exit_if_test_epoch(epoch)

    stopped_early = state["epoch"] < tc["epochs"]
    summary = {"best_epoch": state["best_epoch"], f"best_valid_{metric_name}": float(state["best_metric"]),
               "epochs": state["epoch"], "stopped_early": stopped_early}
    if stopped_early:
        log(f"early stop after epoch {state['epoch']}: no better valid {metric_name} for {tc['patience']} epochs")
    else:
        log(f"stopped at the epoch cap ({tc['epochs']}) after {state['bad_epochs']} epochs without a better valid "
            f"{metric_name}: the run may not have converged")
    if ctx.is_main:
        write_text(exp / "done", yaml.safe_dump(summary, sort_keys=False))
    distributed.dump_state_for_test(ctx, model)
    log(f"{exp}: done; best valid {metric_name} {state['best_metric']:.4f} at epoch {state['best_epoch']}")
    return summary
