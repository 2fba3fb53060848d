"""Training configs: plain YAML, defaults deep-merged with the file, then ``--set key.sub=value``.

A config names the model, its **inputs** (which data-dir table feeds which input of the model),
its **heads** (what it predicts, from which label table, with which loss), how utterances are cut
into **segments**, and the training settings::

    model:    {name: cnn_lstm2d, params: {...}}
    inputs:   {feats: {kind: feats, table: feats.scp, norm: speaker, stack: 1, splice: [0, 0]}}
    heads:    {emotion: {kind: class, labels: utt2emo, loss: ce}}
    segments: {mode: none}
    train:    {epochs: 60, batch_size: 16, lr: 0.001, patience: 10, select: mean, ...}

Every key must exist in ``DEFAULTS`` (or, for ``model.params``, is checked by the model's
constructor; inputs and heads are checked against ``INPUT_DEFAULTS`` / ``HEAD_DEFAULTS``), so a
typo is an error naming the key instead of a silently ignored setting.

Input kinds: ``feats`` (a matrix table, T x D per utterance), ``wav`` (raw samples from wav.scp),
``vector`` (an utterance-level table, 1 x D). Normalization (``norm``) of feats and vectors:
``speaker`` (per-speaker Kaldi CMVN stats from ``norm_table``, computed over all of the speaker's
utterances in the data dir they came from: transductive, features only), ``utterance`` (the
utterance's own statistics; feats and wav only), ``global`` (mean and variance of the training set
only, stored with the model: what an unseen speaker gets) or ``none``.

Head kinds (one vocabulary everywhere: configs, predictions, scores, reports): ``class``
(utterance-level classes, CE, metric UA), ``regression`` (utterance-level values, CCC or MSE,
metric CCC), ``frame_regression`` (frame-level values from labels.scp, CCC or MSE, metric CCC).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Iterable

import yaml

from emotk.errors import EmotkError
from emotk.fileio import write_text

HEAD_KINDS = ("class", "regression", "frame_regression")
INPUT_KINDS = ("feats", "wav", "vector")
# Loss choices per head kind (the first is the default) and the metric early stopping watches.
LOSSES = {"class": ("ce",), "regression": ("ccc", "mse"), "frame_regression": ("ccc", "mse")}
METRIC = {"class": "ua", "regression": "ccc", "frame_regression": "ccc"}

DEFAULTS: dict = {
    "model": {
        "name": None,  # a registered model (emotk.models.list_models())
        "params": {},  # constructor keywords; their defaults are the paper's sizes
    },
    "inputs": {},  # name -> INPUT_DEFAULTS[kind] merged with the entry
    "heads": {},  # name -> HEAD_DEFAULTS merged with the entry
    "segments": {
        "mode": "none",  # none | window | pad_or_cut
        "length": None,  # seconds
        "shift": None,  # window hop in seconds (default: length)
        "min_last": 0.0,  # window: the last piece is kept only if at least this long (seconds)
        "aggregate": "mean",  # utterance-level output = mean of the pieces' posteriors / outputs
    },
    "train": {
        "epochs": 30,
        "batch_size": 16,
        "lr": 0.001,
        "optimizer": "adam",  # adam | sgd (momentum, optionally nesterov)
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 0.0,
        "scheduler": "none",  # none | plateau (ReduceLROnPlateau on the valid metric) | exponential (decay per epoch)
        "scheduler_factor": 0.5,  # plateau: lr factor on a plateau; exponential: lr factor each epoch
        "scheduler_patience": 2,
        "patience": 5,  # early stopping: epochs without a better valid metric
        "select": "mean",  # the valid metric early stopping watches: a head's name, or the mean over heads
        "head_order": "joint",  # joint: weighted sum of head losses | random: one head per step, random order (paper 003)
        "aux_weights": {},  # weights of auxiliary losses returned by the model (default 1.0 each)
        "max_frames": None,  # random crop of longer training utterances (frames of the first time input)
        "seed": 0,
        "num_threads": 1,  # torch CPU threads
        "num_workers": 0,  # DataLoader worker processes
        "grad_clip": None,  # max gradient norm
        "device": "cpu",  # cpu | cuda | auto (cuda when available)
        "amp": False,  # mixed precision (torch.autocast) on cuda
        "grid": {},  # scikit-learn models: hyper-parameter lists, chosen on the valid set
        "augment": {  # noise mixed into the training audio on the fly (emotk.augment.online); off while noise is null
            "noise": None,  # a noise data dir (emotk prepare-musan)
            "prob": 1.0,  # probability that a training example is mixed, drawn per (epoch, utterance)
            "snr_range": [-10, 15],  # dB, uniform (paper 002)
        },
    },
}

INPUT_DEFAULTS: dict = {
    "feats": {"kind": "feats", "table": "feats.scp", "norm": "speaker", "norm_table": "cmvn.scp",
              "stack": 1, "splice": [0, 0]},
    "wav": {"kind": "wav", "table": "wav.scp", "sample_rate": 16000, "norm": "none", "norm_table": None},
    "vector": {"kind": "vector", "table": None, "norm": "speaker", "norm_table": None},
}
NORMS = {"feats": ("speaker", "utterance", "global", "none"), "wav": ("utterance", "none"),
         "vector": ("speaker", "global", "none")}

HEAD_DEFAULTS: dict = {
    "kind": "class",
    "labels": None,  # default: utt2emo (class), labels.scp (frame_regression); required for regression
    "dims": None,  # frame_regression: subset of label_names (default all)
    "loss": None,  # default: LOSSES[kind][0]
    "weight": 1.0,
    "class_weights": True,  # class: inverse class frequency in the CE loss
}

CHOICES = {
    "segments.mode": ("none", "window", "pad_or_cut"),
    "segments.aggregate": ("mean",),
    "train.optimizer": ("adam", "sgd"),
    "train.scheduler": ("none", "plateau", "exponential"),
    "train.head_order": ("joint", "random"),
    "train.device": ("cpu", "cuda", "auto"),
}


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
_OPEN = {"model.params", "inputs", "heads", "train.aux_weights", "train.grid"}


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
        elif isinstance(out.get(key), dict) and not open_ and value is not None:
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


def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise EmotkError(f"{path}: config file not found")
    try:
        data = yaml_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise EmotkError(f"{path}: invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise EmotkError(f"{path}: top level must be a mapping")
    return data


MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "conf" / "model"  # package data (also ./conf in a checkout)


def resolve_model_config(name_or_path: str | Path) -> Path:
    """A config file: an existing path, else a config shipped with emotk by name (``ldnn``, ``svm_linear``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (MODEL_CONFIG_DIR / p.name, MODEL_CONFIG_DIR / f"{p.name}.yaml"):
        if cand.is_file() and p.parent == Path("."):
            return cand
    known = ", ".join(sorted(f.stem for f in MODEL_CONFIG_DIR.glob("*.yaml")))
    raise EmotkError(f"{name_or_path}: config file not found (a path, or one of: {known})")


def load_config(path: str | Path | None, overrides: Iterable[str] = ()) -> dict:
    """``DEFAULTS`` deep-merged with the YAML file ``path`` (or a config shipped with emotk, by name),
    then with the ``key.sub=value`` overrides; inputs and heads completed with their kind's defaults and checked."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = resolve_model_config(path)
    source = str(path) if path is not None else "config"
    if path is not None:
        cfg = _merge(cfg, read_config_file(path), source)
    for item in overrides:
        keys, value = parse_override(item)
        cfg = _merge(cfg, _nest(keys, value), f"--set {item}")
    return resolve_config(cfg, source)


def resolve_config(cfg: dict, source: str = "config") -> dict:
    """Complete and check a merged config (idempotent: a resolved config resolves to itself)."""
    cfg = copy.deepcopy(cfg)
    if not cfg["inputs"]:
        cfg["inputs"] = {"feats": {}}
    if not cfg["heads"]:
        cfg["heads"] = {"emotion": {}}
    cfg["inputs"] = {name: _resolve_input(name, spec, source) for name, spec in cfg["inputs"].items()}
    cfg["heads"] = {name: _resolve_head(name, spec, source) for name, spec in cfg["heads"].items()}
    cfg["train"]["augment"] = _resolve_augment(cfg["train"].get("augment"), cfg["inputs"], source)
    check_config(cfg, source)
    return cfg


def augment_on(cfg) -> bool:
    """Whether training mixes noise on the fly (a noise dir and a probability above 0)."""
    aug = cfg.get("train", {}).get("augment") or {}
    return aug.get("noise") is not None and aug.get("prob", 0) > 0


def _resolve_augment(aug, inputs: dict, source: str) -> dict:
    """``train.augment`` checked: a noise data dir or null, prob in [0, 1], an SNR range; when on, every
    input must be one that can be computed again from the mixed audio."""
    from emotk.augment.mix import check_snr_range

    where_ = f"{source}: train.augment"
    if aug is None:
        aug = {}
    if not isinstance(aug, dict):
        raise EmotkError(f"{where_} must be a mapping, got {aug!r}")
    out = _merge(DEFAULTS["train"]["augment"], aug, source, "train.augment.")
    prob = out["prob"]
    if not _is_number(prob) or not 0 <= prob <= 1:
        raise EmotkError(f"{where_}.prob must be a number in [0, 1], got {prob!r}")
    out["prob"] = float(prob)
    out["snr_range"] = list(check_snr_range(out["snr_range"], f"{where_}.snr_range"))
    noise = out["noise"]
    if noise is None:
        return out
    if not isinstance(noise, str) or not noise:
        raise EmotkError(f"{where_}.noise must be the path of a noise data dir or null, got {noise!r}")
    from emotk.augment.noise import validate_noise_dir

    try:
        validate_noise_dir(noise)
    except EmotkError as e:
        raise EmotkError(f"{where_}.noise: {e}") from None
    if out["prob"] > 0:
        for name, spec in inputs.items():
            if spec["kind"] == "vector" or (spec["kind"] == "feats" and spec["table"] != "feats.scp"):
                raise EmotkError(f"{where_}: input {name!r} ({spec['kind']}, {spec['table']}) cannot be computed again "
                                 "from noisy audio; on-the-fly noise needs wav inputs or feats.scp made by "
                                 "extract-fbank / extract-mfcc (augment-data-dir covers the other tables)")
    return out


def _entry(section: str, name: str, spec, source: str) -> dict:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(name)):
        raise EmotkError(f"{source}: {section} name {name!r} must be a word (letters, digits, _)")
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise EmotkError(f"{source}: {section}.{name} must be a mapping, got {spec!r}")
    return spec


def _resolve_input(name: str, spec, source: str) -> dict:
    spec = _entry("inputs", name, spec, source)
    kind = spec.get("kind", name if name in INPUT_KINDS else None)
    if kind not in INPUT_KINDS:
        raise EmotkError(f"{source}: inputs.{name}.kind must be one of {', '.join(INPUT_KINDS)}, got {kind!r}")
    out = _merge(INPUT_DEFAULTS[kind], spec, source, f"inputs.{name}.")
    where_ = f"{source}: inputs.{name}"
    if not isinstance(out["table"], str) or not out["table"] or "/" in out["table"]:
        raise EmotkError(f"{where_}.table must be a file name in the data dir, got {out['table']!r}")
    if out["norm"] not in NORMS[kind]:
        raise EmotkError(f"{where_}.norm must be one of {', '.join(NORMS[kind])} for a {kind} input, got {out['norm']!r}")
    if kind == "vector" and out["norm_table"] is None:
        out["norm_table"] = out["table"].removesuffix(".scp") + "_cmvn.scp"
    if out.get("norm") != "speaker":
        out["norm_table"] = None  # only speaker z-norm reads a statistics table
    if kind != "wav" and out["norm"] == "speaker" and not isinstance(out["norm_table"], str):
        raise EmotkError(f"{where_}.norm_table must name the per-speaker stats table, got {out['norm_table']!r}")
    if kind == "feats":
        _positive_int(out["stack"], f"{where_}.stack")
        splice = out["splice"]
        if not (isinstance(splice, list) and len(splice) == 2 and all(_is_int(x) and x >= 0 for x in splice)):
            raise EmotkError(f"{where_}.splice must be [left, right] with integers >= 0, got {splice!r}")
    if kind == "wav":
        _positive_int(out["sample_rate"], f"{where_}.sample_rate")
    return out


def _resolve_head(name: str, spec, source: str) -> dict:
    spec = _entry("heads", name, spec, source)
    out = _merge(HEAD_DEFAULTS, spec, source, f"heads.{name}.")
    kind, where_ = out["kind"], f"{source}: heads.{name}"
    if kind not in HEAD_KINDS:
        raise EmotkError(f"{where_}.kind must be one of {', '.join(HEAD_KINDS)}, got {kind!r}")
    if out["labels"] is None:
        if kind == "regression":
            raise EmotkError(f"{where_}.labels must name the utterance-level table (e.g. utt2arousal)")
        out["labels"] = "utt2emo" if kind == "class" else "labels.scp"
    if not isinstance(out["labels"], str) or "/" in out["labels"]:
        raise EmotkError(f"{where_}.labels must be a file name in the data dir, got {out['labels']!r}")
    if out["loss"] is None:
        out["loss"] = LOSSES[kind][0]
    if out["loss"] not in LOSSES[kind]:
        raise EmotkError(f"{where_}.loss {out['loss']!r} does not fit kind {kind!r} (use {', '.join(LOSSES[kind])})")
    dims = out["dims"]
    if dims is not None and (kind != "frame_regression" or not isinstance(dims, list) or not dims
                             or not all(isinstance(d, str) for d in dims)):
        raise EmotkError(f"{where_}.dims must be a non-empty list of label names (frame_regression only), got {dims!r}")
    if not _is_number(out["weight"]) or out["weight"] < 0:
        raise EmotkError(f"{where_}.weight must be a number >= 0, got {out['weight']!r}")
    if not isinstance(out["class_weights"], bool):
        raise EmotkError(f"{where_}.class_weights must be true or false, got {out['class_weights']!r}")
    return out


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _positive_int(v, name: str) -> None:
    if not _is_int(v) or v < 1:
        raise EmotkError(f"{name} must be a positive integer, got {v!r}")


def _get(cfg: dict, dotted: str):
    out = cfg
    for part in dotted.split("."):
        out = out[part]
    return out


def check_config(cfg: dict, source: str) -> None:
    """Check values that are not model parameters: choices, types, ranges, references between sections."""
    if not cfg["model"]["name"]:
        raise EmotkError(f"{source}: model.name is not set")
    if not isinstance(cfg["model"]["params"], dict):
        raise EmotkError(f"{source}: model.params must be a mapping")
    for key, choices in CHOICES.items():
        if _get(cfg, key) not in choices:
            raise EmotkError(f"{source}: {key} must be one of {', '.join(choices)}, got {_get(cfg, key)!r}")
    for key in ("train.epochs", "train.batch_size", "train.patience", "train.num_threads"):
        _positive_int(_get(cfg, key), f"{source}: {key}")
    if not _is_int(cfg["train"]["num_workers"]) or cfg["train"]["num_workers"] < 0:
        raise EmotkError(f"{source}: train.num_workers must be an integer >= 0, got {cfg['train']['num_workers']!r}")
    mf = cfg["train"]["max_frames"]
    if mf is not None:
        _positive_int(mf, f"{source}: train.max_frames")
    for key in ("train.lr", "train.weight_decay", "train.scheduler_factor", "train.momentum"):
        v = _get(cfg, key)
        if not _is_number(v) or v < 0:
            raise EmotkError(f"{source}: {key} must be a number >= 0, got {v!r}")
    if not _is_int(cfg["train"]["seed"]):
        raise EmotkError(f"{source}: train.seed must be an integer, got {cfg['train']['seed']!r}")
    gc = cfg["train"]["grad_clip"]
    if gc is not None and (not _is_number(gc) or gc <= 0):
        raise EmotkError(f"{source}: train.grad_clip must be a positive number or null, got {gc!r}")
    for key in ("train.amp", "train.nesterov"):
        if not isinstance(_get(cfg, key), bool):
            raise EmotkError(f"{source}: {key} must be true or false, got {_get(cfg, key)!r}")
    for name, w in cfg["train"]["aux_weights"].items():
        if not _is_number(w) or w < 0:
            raise EmotkError(f"{source}: train.aux_weights.{name} must be a number >= 0, got {w!r}")
    select = cfg["train"]["select"]
    if select != "mean" and select not in cfg["heads"]:
        raise EmotkError(f"{source}: train.select must be 'mean' or a head ({', '.join(cfg['heads'])}), got {select!r}")
    _check_segments(cfg["segments"], source)
    frame_heads = [h for h, spec in cfg["heads"].items() if spec["kind"] == "frame_regression"]
    if frame_heads and cfg["segments"]["mode"] != "none":
        raise EmotkError(f"{source}: segments.mode {cfg['segments']['mode']!r} cannot be used with the frame_regression "
                         f"head {frame_heads[0]!r} (frame outputs are not aggregated over pieces)")


def _check_segments(seg: dict, source: str) -> None:
    if seg["mode"] == "none":
        return
    for key in ("length",) + (("shift",) if seg["shift"] is not None else ()):
        if not _is_number(seg[key]) or seg[key] <= 0:
            raise EmotkError(f"{source}: segments.{key} must be a positive number of seconds, got {seg[key]!r}")
    if not _is_number(seg["min_last"]) or seg["min_last"] < 0:
        raise EmotkError(f"{source}: segments.min_last must be a number of seconds >= 0, got {seg['min_last']!r}")


def head_metric(cfg: dict, head: str) -> str:
    return METRIC[cfg["heads"][head]["kind"]]


class _Dumper(yaml.SafeDumper):
    """Block style for sections, flow style for lists (``splice: [10, 5]``)."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def dump_config(cfg: dict) -> str:
    return yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def save_config(cfg: dict, path: str | Path) -> None:
    """Write the resolved config atomically."""
    write_text(path, dump_config(cfg))
