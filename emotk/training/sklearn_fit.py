"""``emotk train`` for scikit-learn models: the same config, data, provenance and exp dir as torch
models, with the fit and the valid-set grid search of ``emotk.models.sklearn_models``.

``exp_dir/model/`` holds the pickle-free model (``model.skops``, ``model.yaml``) and ``meta.yaml``
(what inference needs: inputs, heads, normalization statistics); ``train.log`` lists every grid
point with its valid UA; ``done`` names the chosen point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from emotk.errors import EmotkError
from emotk.fileio import write_text


def vectors(sources: dict, utts: list[str]) -> np.ndarray:
    """``[N, D]``: the single vector input of each utterance, normalized."""
    (src,) = sources.values()
    return np.stack([src.read(u)[0] for u in utts]).astype(np.float64)


def meta_to_yaml(meta: dict) -> str:
    """The model meta with tensors as lists (plain YAML, read back with safe_load)."""
    plain = {**meta, "global_stats": {n: t.tolist() for n, t in meta["global_stats"].items()}}
    return yaml.safe_dump(plain, sort_keys=False)


def read_meta(model_dir: Path) -> dict:
    p = model_dir / "meta.yaml"
    if not p.is_file():
        raise EmotkError(f"{p}: missing (not an emotk scikit-learn model dir)")
    meta = yaml.safe_load(p.read_text(encoding="utf-8"))
    meta["global_stats"] = {n: np.asarray(v, dtype=np.float64) for n, v in (meta.get("global_stats") or {}).items()}
    return meta


def fit_sklearn(cfg: dict, train_set, valid_set, exp: Path, meta: dict, record: dict, command: str,
                log: Callable[[str], None]) -> dict:
    from emotk.models.sklearn_models import fit_select, save_model
    from emotk.training.loop import _start_exp_dir

    (d_train, s_train, h_train), (d_valid, s_valid, h_valid) = train_set, valid_set
    (head_name, head), = h_train.items()
    valid_head = h_valid[head_name]
    _start_exp_dir(exp, cfg, record, train_set, valid_set, command)
    X_train, X_valid = vectors(s_train, d_train.utts), vectors(s_valid, d_valid.utts)
    y_train = np.array([head.targets[u] for u in d_train.utts])
    y_valid = np.array([valid_head.targets[u] for u in d_valid.utts])
    mc = cfg["model"]
    fitted, selection = fit_select(mc["name"], mc["params"], cfg["train"]["grid"], X_train, y_train, X_valid, y_valid,
                                   len(head.names), head.spec["class_weights"], cfg["train"]["seed"], head.names)
    lines = [f"grid_point={i + 1} {' '.join(f'{k}={v}' for k, v in p['params'].items())} valid_ua={p['valid_ua']:.6f}"
             + (" best" if p["params"] == selection["best"] else "") for i, p in enumerate(selection["grid"])]
    write_text(exp / "train.log", "\n".join(lines) + "\n")
    for line in lines:
        log(line)
    save_model(fitted, exp / "model" / "estimator")
    write_text(exp / "model" / "meta.yaml", meta_to_yaml(meta))
    summary = {"best_valid_ua": float(selection["best_valid_ua"]), "best": selection["best"],
               "grid_points": len(selection["grid"]), "selected_on": "valid"}
    write_text(exp / "done", yaml.safe_dump(summary, sort_keys=False))
    log(f"{exp}: done; best valid ua {selection['best_valid_ua']:.4f} with {selection['best'] or 'the fixed settings'}")
    return summary
