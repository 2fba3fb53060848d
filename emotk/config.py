"""Training configs: plain YAML, defaults deep-merged with the file, then ``--set key.sub=value``.

Every key must exist in ``DEFAULTS`` (or, for ``model.params``, is checked by the model's
constructor), so a typo is an error naming the key instead of a silently ignored setting.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Iterable

import yaml

from emotk.errors import EmotkError
from emotk.fileio import write_text

DEFAULTS: dict = {
    "model": {
        "name": None,  # a registered model (emotk.models.list_models())
        "params": {},  # constructor keywords; their defaults are the paper's sizes
    },
    "features": {
        "cmvn": "speaker",  # speaker (cmvn.scp z-norm) | utterance | none
        "stack": 1,  # concatenate n consecutive frames, keeping every n-th (frame rate / n)
        "splice": [0, 0],  # [left, right] context frames appended to each frame
        "max_frames": None,  # training only: random crop of longer utterances (after stacking)
    },
    "task": {
        "kind": "class",  # class | frame_regression
        "label_file": None,  # default: utt2emo (class) or labels.scp (frame_regression)
        "label_dims": None,  # frame_regression: subset of label_names to train on (default all)
        "loss": None,  # default: ce (class) or ccc (frame_regression); also mse
        "class_weights": True,  # inverse class frequency in the CE loss
    },
    "train": {
        "epochs": 30,
        "batch_size": 16,
        "lr": 0.001,
        "optimizer": "adam",  # adam | sgd (momentum 0.9)
        "weight_decay": 0.0,
        "scheduler": "none",  # none | plateau (ReduceLROnPlateau on the valid metric)
        "scheduler_factor": 0.5,
        "scheduler_patience": 2,
        "patience": 5,  # early stopping: epochs without a better valid metric
        "seed": 0,
        "num_threads": 1,  # torch CPU threads
        "grad_clip": None,  # max gradient norm
        "device": "cpu",  # cpu | cuda | auto (cuda when available)
        "amp": False,  # mixed precision (torch.autocast) on cuda
    },
}

CHOICES = {
    "features.cmvn": ("speaker", "utterance", "none"),
    "task.kind": ("class", "frame_regression"),
    "task.loss": (None, "ce", "ccc", "mse"),
    "train.optimizer": ("adam", "sgd"),
    "train.scheduler": ("none", "plateau"),
    "train.device": ("cpu", "cuda", "auto"),
}
LOSSES = {"class": ("ce",), "frame_regression": ("ccc", "mse")}


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def yaml_load(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


# Sections whose keys are not fixed here (checked elsewhere).
_OPEN = {"model.params"}


def _merge(base: dict, update: dict, source: str, prefix: str = "", open_: bool = False) -> dict:
    """Deep-merge ``update`` into ``base``; keys unknown to ``base`` are errors outside open sections."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        name = f"{prefix}{key}"
        if key not in out and not open_:
            known = ", ".join(sorted(out)) or "none"
            raise EmotkError(f"{source}: unknown config key {name!r} (known here: {known})")
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = _merge(out[key], value, source, f"{name}.", open_ or name in _OPEN)
        elif isinstance(out.get(key), dict) and not open_:
            raise EmotkError(f"{source}: config key {name!r} must be a mapping, got {value!r}")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(item: str) -> tuple[list[str], object]:
    """``a.b.c=value`` -> ``(["a", "b", "c"], yaml-parsed value)``."""
    key, sep, raw = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise EmotkError(f"--set {item!r}: expected key.sub=value")
    try:
        value = yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise EmotkError(f"--set {item!r}: value is not valid YAML: {e}") from None
    return key.split("."), value


def _nest(path: list[str], value) -> dict:
    out = value
    for part in reversed(path):
        out = {part: out}
    return out


def load_config(path: str | Path | None, overrides: Iterable[str] = ()) -> dict:
    """``DEFAULTS`` deep-merged with the YAML file ``path``, then with the ``key.sub=value`` overrides."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise EmotkError(f"{path}: config file not found")
        try:
            data = yaml_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise EmotkError(f"{path}: invalid YAML: {e}") from None
        if data is not None:
            if not isinstance(data, dict):
                raise EmotkError(f"{path}: top level must be a mapping")
            cfg = _merge(cfg, data, str(path))
    for item in overrides:
        keys, value = parse_override(item)
        cfg = _merge(cfg, _nest(keys, value), f"--set {item}")
    check_config(cfg, str(path) if path is not None else "config")
    cfg["task"] = resolve_task(cfg)
    return cfg


def _get(cfg: dict, dotted: str):
    out = cfg
    for part in dotted.split("."):
        out = out[part]
    return out


def check_config(cfg: dict, source: str) -> None:
    """Check values that are not model parameters: choices, types, ranges."""
    if not cfg["model"]["name"]:
        raise EmotkError(f"{source}: model.name is not set")
    if not isinstance(cfg["model"]["params"], dict):
        raise EmotkError(f"{source}: model.params must be a mapping")
    for key, choices in CHOICES.items():
        if _get(cfg, key) not in choices:
            shown = ", ".join(str(c) for c in choices if c is not None)
            raise EmotkError(f"{source}: {key} must be one of {shown}, got {_get(cfg, key)!r}")
    kind, loss = cfg["task"]["kind"], cfg["task"]["loss"]
    if loss is not None and loss not in LOSSES[kind]:
        raise EmotkError(f"{source}: task.loss {loss!r} does not fit task.kind {kind!r} (use {', '.join(LOSSES[kind])})")
    positive_ints = ("features.stack", "train.epochs", "train.batch_size", "train.patience", "train.num_threads")
    for key in positive_ints:
        v = _get(cfg, key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise EmotkError(f"{source}: {key} must be a positive integer, got {v!r}")
    splice = cfg["features"]["splice"]
    if not (isinstance(splice, list) and len(splice) == 2 and all(isinstance(x, int) and x >= 0 for x in splice)):
        raise EmotkError(f"{source}: features.splice must be [left, right] with integers >= 0, got {splice!r}")
    mf = cfg["features"]["max_frames"]
    if mf is not None and (not isinstance(mf, int) or mf < 1):
        raise EmotkError(f"{source}: features.max_frames must be a positive integer or null, got {mf!r}")
    for key in ("train.lr", "train.weight_decay", "train.scheduler_factor"):
        v = _get(cfg, key)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise EmotkError(f"{source}: {key} must be a number >= 0, got {v!r}")
    if not isinstance(cfg["train"]["seed"], int):
        raise EmotkError(f"{source}: train.seed must be an integer, got {cfg['train']['seed']!r}")
    gc = cfg["train"]["grad_clip"]
    if gc is not None and (not isinstance(gc, (int, float)) or gc <= 0):
        raise EmotkError(f"{source}: train.grad_clip must be a positive number or null, got {gc!r}")
    for key in ("task.class_weights", "train.amp"):
        if not isinstance(_get(cfg, key), bool):
            raise EmotkError(f"{source}: {key} must be true or false, got {_get(cfg, key)!r}")
    lf = cfg["task"]["label_file"]
    if lf is not None and (not isinstance(lf, str) or "/" in lf):
        raise EmotkError(f"{source}: task.label_file must be a file name in the data dir, got {lf!r}")
    dims = cfg["task"]["label_dims"]
    if dims is not None and (not isinstance(dims, list) or not dims or not all(isinstance(d, str) for d in dims)):
        raise EmotkError(f"{source}: task.label_dims must be a non-empty list of label names or null, got {dims!r}")


def resolve_task(cfg: dict) -> dict:
    """The task section with the defaults that depend on ``task.kind`` filled in (label file, loss)."""
    task = dict(cfg["task"])
    kind = task["kind"]
    if task["label_file"] is None:
        task["label_file"] = "utt2emo" if kind == "class" else "labels.scp"
    if task["loss"] is None:
        task["loss"] = LOSSES[kind][0]
    return task


class _Dumper(yaml.SafeDumper):
    """Block style for sections, flow style for lists (``splice: [10, 5]``)."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def dump_config(cfg: dict) -> str:
    return yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def save_config(cfg: dict, path: str | Path) -> None:
    """Write the resolved config atomically."""
    write_text(path, dump_config(cfg))
