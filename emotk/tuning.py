"""``emotk tune``: hyper-parameter search on a train and a valid set (optuna: TPE sampler, as
paper 003 used through hyperopt, and median pruning on the per-epoch valid metric).

The search space is a YAML file of config keys (any key ``emotk train --set`` takes)::

    params:
      train.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
      train.batch_size: {type: int, low: 4, high: 32, step: 4}
      model.params.hidden: {type: categorical, choices: [[128, 64], [256, 128]]}
    sampler: {seed: 0, n_startup_trials: 10}       # optuna TPESampler (defaults shown)
    pruner: {n_startup_trials: 5, n_warmup_steps: 1}  # optuna MedianPruner; 'pruner: none' disables

``DIR/`` holds ``tune.yaml`` (what the study searches on: config, space, the train and valid
sets' provenance, and the fold's test part recorded as never read), ``study.db`` (optuna's
SQLite storage: a re-run resumes the study), ``trial-NNN/`` (an ``emotk train`` exp dir per trial
plus ``trial.yaml``: parameters, state, score), ``trials.tsv``, ``best.yaml`` and
``best_config.yaml`` (the config to train the final model with). A re-run with the same inputs
continues up to ``--trials`` finished trials; a trial interrupted by a kill is run again with the
same parameters, resuming its checkpoint; with other inputs (config, space, data) the study is
started again. One process per study (a lock file refuses a second).

The search never reads a test set: a train or valid dir named ``test``, the test part of a fold
(``fold.yaml`` beside it), or a dir holding a speaker of the fold's test part is refused before
anything is read from it.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import re
import shutil
from pathlib import Path
from typing import Callable, Iterator

import yaml

import emotk
from emotk.config import dump_config, load_config, read_config_file, yaml_load
from emotk.data.datadir import DataDir
from emotk.errors import EmotkError
from emotk.fileio import write_text
from emotk.training.provenance import read_fold

STUDY = "emotk-tune"
_EPOCH_LINE = re.compile(r"^epoch=(\d+) train_loss=\S+ valid_loss=\S+ valid_\w+?=(\S+)")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


# Search space --------------------------------------------------------------------------------------

def _yaml_value(v) -> str:
    """A value as a one-line YAML scalar or flow collection (what ``--set key=value`` parses back)."""
    text = yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()
    return text.removesuffix("...").strip()


def read_space(path: str | Path) -> dict:
    """The search space file, checked: ``{"params": {key: spec}, "sampler": {...}, "pruner": {...} | None}``."""
    path = Path(path)
    raw = read_config_file(path)
    unknown = sorted(set(raw) - {"params", "sampler", "pruner"})
    if unknown:
        raise EmotkError(f"{path}: unknown key {unknown[0]!r} (known: params, sampler, pruner)")
    params = raw.get("params")
    if not isinstance(params, dict) or not params:
        raise EmotkError(f"{path}: 'params' must map config keys to their ranges")
    out = {}
    for key, spec in params.items():
        where_ = f"{path}: params.{key}"
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise EmotkError(f"{where_}: a dotted config key is needed (e.g. train.lr)")
        if not isinstance(spec, dict) or spec.get("type") not in ("float", "int", "categorical"):
            raise EmotkError(f"{where_}: needs type float, int or categorical")
        kind = spec["type"]
        allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "log", "step"}
        extra = sorted(set(spec) - allowed)
        if extra:
            raise EmotkError(f"{where_}: unknown field {extra[0]!r} for type {kind} (known: {', '.join(sorted(allowed))})")
        if kind == "categorical":
            if not isinstance(spec.get("choices"), list) or not spec["choices"]:
                raise EmotkError(f"{where_}: categorical needs a non-empty list of choices")
        else:
            num = float if kind == "float" else int
            low, high = spec.get("low"), spec.get("high")
            ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
            if not ok or (kind == "int" and not all(isinstance(v, int) for v in (low, high))) or low > high:
                raise EmotkError(f"{where_}: needs numbers low <= high{' (integers)' if kind == 'int' else ''}")
            if spec.get("log") and low <= 0:
                raise EmotkError(f"{where_}: a log range needs low > 0")
            if spec.get("log") and spec.get("step") is not None:
                raise EmotkError(f"{where_}: step and log cannot be combined")
            spec = {**spec, "low": num(low), "high": num(high), "log": bool(spec.get("log", False))}
        out[key] = spec
    sampler = raw.get("sampler") or {}
    pruner = raw.get("pruner", {})
    if not isinstance(sampler, dict) or not set(sampler) <= {"seed", "n_startup_trials"}:
        raise EmotkError(f"{path}: sampler takes seed and n_startup_trials, got {sampler!r}")
    if pruner == "none":
        pruner = None
    elif not isinstance(pruner, dict) or not set(pruner) <= {"n_startup_trials", "n_warmup_steps"}:
        raise EmotkError(f"{path}: pruner takes n_startup_trials and n_warmup_steps, or is 'none'; got {pruner!r}")
    return {"params": out, "sampler": {"seed": 0, "n_startup_trials": 10, **sampler},
            "pruner": None if pruner is None else {"n_startup_trials": 5, "n_warmup_steps": 1, **pruner}}


def _corners(spec: dict) -> list:
    return spec["choices"] if spec["type"] == "categorical" else [spec["low"], spec["high"]]


def suggest(trial, params: dict) -> dict[str, object]:
    """One trial's values, ``{config key: value}``."""
    out = {}
    for key, s in params.items():
        if s["type"] == "categorical":  # choices stored as YAML text: lists and mappings are allowed
            text = trial.suggest_categorical(key, [_yaml_value(c) for c in s["choices"]])
            out[key] = yaml_load(text)
        elif s["type"] == "float":
            out[key] = trial.suggest_float(key, s["low"], s["high"], log=s["log"], step=s.get("step"))
        else:
            out[key] = trial.suggest_int(key, s["low"], s["high"], log=s["log"], step=s.get("step") or 1)
    return out


def set_items(values: dict[str, object]) -> list[str]:
    return [f"{k}={_yaml_value(v)}" for k, v in values.items()]


# Never a test set ----------------------------------------------------------------------------------

def check_search_sets(train_dir: str | Path, valid_dir: str | Path) -> dict:
    """Refuse a test part as train or valid set (before reading anything in it); the sets' record.

    A dir is refused when it is named ``test``, when it is the ``test`` part of its fold, or when
    it holds a speaker of its fold's test part (``test_speakers`` of fold.yaml).
    """
    dirs, folds, record = {}, {}, {}
    for role, given in (("train", train_dir), ("valid", valid_dir)):
        d = Path(given).resolve()
        if d.name == "test":
            raise EmotkError(f"--{role} {given}: a test set (named 'test'); tuning uses train and valid sets only")
        fold = read_fold(d)
        if fold is not None and fold[0] == d.parent and d.name not in ("train", "valid"):
            raise EmotkError(f"--{role} {given}: not a train or valid part of the fold {fold[0]} ({d.name!r})")
        dirs[role], folds[role] = d, fold
    if dirs["train"] == dirs["valid"]:
        raise EmotkError(f"--train and --valid are the same dir ({dirs['train']}); tuning needs a separate valid set")
    fold_dirs = {role: f[0] if f else None for role, f in folds.items()}
    if fold_dirs["train"] != fold_dirs["valid"]:
        raise EmotkError(f"--train {train_dir} and --valid {valid_dir} belong to different folds "
                         f"({fold_dirs['train']} vs {fold_dirs['valid']})")
    fold = folds["train"]
    test_spks = set((fold[1].get("test_speakers") or []) if fold else [])
    for role, d in dirs.items():
        spks = set(DataDir(d).speakers)
        shared = sorted(spks & test_spks)
        if shared:
            raise EmotkError(f"--{role} {d}: speaker {shared[0]!r} belongs to the test part of {fold[0]} "
                             f"(fold.yaml test_speakers); tuning must not see the test speakers")
        record[role] = {"path": str(d), "speakers": len(spks), "utterances": len(DataDir(d).utts)}
    if fold is not None:
        record["fold"] = {"path": str(fold[0]), "protocol": fold[1].get("protocol"),
                          "test_part": str(fold[0] / "test"), "test_speakers": sorted(test_spks),
                          "test_part_read": False}
    return record


# The study -----------------------------------------------------------------------------------------

@contextlib.contextmanager
def _lock(exp: Path) -> Iterator[None]:
    exp.mkdir(parents=True, exist_ok=True)
    with open(exp / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EmotkError(f"{exp}: another 'emotk tune' is running on this study") from None
        yield


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _tune_record(cfg: dict, space: dict, train_dir, valid_dir, sets: dict) -> dict:
    from emotk.training.provenance import INFO, build_record

    data = build_record(cfg, train_dir, valid_dir)  # validates both sets; refuses train/valid overlap
    return {"emotk_version": emotk.__version__, "config_digest": _digest(dump_config(cfg)), "space": space,
            "data": {k: v for k, v in data.items() if k not in (INFO, "config", "seed", "emotk_version")},
            "sets": sets}


def _epoch_values(lines) -> list[tuple[int, float]]:
    out = []
    for line in lines:
        m = _EPOCH_LINE.match(line)
        if m:
            out.append((int(m.group(1)), float(m.group(2))))
    return out


def _write_summary(study, exp: Path, cfg_path: Path, base_items: list[str], space: dict) -> None:
    import optuna

    keys = list(space["params"])
    rows = ["number\tstate\tvalue\tdir\t" + "\t".join(keys)]
    for t in study.get_trials(deepcopy=False):
        vals = [str(t.params.get(k, "")) for k in keys]
        rows.append(f"{t.number}\t{t.state.name.lower()}\t{'' if t.value is None else f'{t.value:.6f}'}\t"
                    f"{t.user_attrs.get('dir', '')}\t" + "\t".join(vals))
    write_text(exp / "trials.tsv", "\n".join(rows) + "\n")
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not done:
        return
    best = max(done, key=lambda t: (t.value, -t.number))
    values = {k: yaml_load(v) if space["params"][k]["type"] == "categorical" else v for k, v in best.params.items()}
    write_text(exp / "best.yaml", yaml.safe_dump({"number": best.number, "value": best.value, "dir": best.user_attrs["dir"],
                                                  "params": values, "set": set_items(values)}, sort_keys=False))
    write_text(exp / "best_config.yaml", dump_config(load_config(cfg_path, base_items + set_items(values))))


def _retry_interrupted(study, exp: Path, log: Callable[[str], None]) -> None:
    """Trials cut short by a kill (still 'running') or an interrupt (failed while training, not by an
    error): their parameters are queued again, to resume in the same dir; each at most once."""
    from optuna.trial import TrialState

    last: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        if "dir" in t.user_attrs:
            last[t.user_attrs["dir"]] = max(last.get(t.user_attrs["dir"], -1), t.number)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.FAIL)):
        name = t.user_attrs.get("dir")
        if name is None or last[name] != t.number:
            continue
        state = (yaml.safe_load((exp / name / "trial.yaml").read_text(encoding="utf-8")) or {}).get("state") \
            if (exp / name / "trial.yaml").is_file() else "running"
        if state != "running":
            continue  # failed with an error: not retried
        study.enqueue_trial(t.params, user_attrs={"dir": name})
        if t.state == TrialState.RUNNING:
            study.tell(t.number, state=TrialState.FAIL)
        log(f"{exp}: trial {t.number} was interrupted; it runs again with the same parameters, resuming {name}")


def tune(config: str | Path, train_dir: str | Path, valid_dir: str | Path, space_file: str | Path, exp_dir: str | Path,
         trials: int, timeout: float | None = None, overrides: list[str] = (), log: Callable[[str], None] = print) -> dict:
    """Run (or continue) the study; returns ``best.yaml``'s content (empty when no trial finished)."""
    import optuna

    from emotk.training.loop import train

    if trials < 1:
        raise EmotkError(f"--trials must be >= 1, got {trials}")
    exp, config = Path(exp_dir), Path(config)
    sets = check_search_sets(train_dir, valid_dir)  # before anything reads the data
    base_items = list(overrides)
    cfg = load_config(config, base_items)
    space = read_space(space_file)
    for key, spec in space["params"].items():  # every value a trial can take must make a valid config
        for v in _corners(spec):
            try:
                load_config(config, base_items + set_items({key: v}))
            except EmotkError as e:
                raise EmotkError(f"{space_file}: params.{key} = {_yaml_value(v)}: {e}") from None
    record = _tune_record(cfg, space, train_dir, valid_dir, sets)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with _lock(exp):
        old = exp / "tune.yaml"
        if old.is_file() and yaml.safe_load(old.read_text(encoding="utf-8")) != yaml.safe_load(yaml.safe_dump(record)):
            log(f"{exp}: the study was made from other inputs (config, space or data); starting it again")
            for p in [exp / "study.db", exp / "trials.tsv", exp / "best.yaml", exp / "best_config.yaml",
                      *exp.glob("trial-*")]:
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        write_text(old, yaml.safe_dump(record, sort_keys=False))
        s, p = space["sampler"], space["pruner"]
        study = optuna.create_study(
            study_name=STUDY, storage=f"sqlite:///{(exp / 'study.db').resolve()}", load_if_exists=True,
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=s["seed"], n_startup_trials=s["n_startup_trials"]),
            pruner=optuna.pruners.NopPruner() if p is None else optuna.pruners.MedianPruner(
                n_startup_trials=p["n_startup_trials"], n_warmup_steps=p["n_warmup_steps"]))
        _retry_interrupted(study, exp, log)
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        left = trials - len(study.get_trials(deepcopy=False, states=finished))

        def objective(trial):
            values = suggest(trial, space["params"])
            name = trial.user_attrs.get("dir") or f"trial-{trial.number:03d}"
            trial.set_user_attr("dir", name)
            run = exp / name
            info = {"number": trial.number, "params": values, "set": set_items(values), "state": "running"}
            write_text(run / "trial.yaml", yaml.safe_dump(info, sort_keys=False))
            trial_cfg = load_config(config, base_items + set_items(values))
            reported = set()

            def report(epoch: int, value: float) -> None:
                if epoch not in reported:
                    reported.add(epoch)
                    trial.report(value, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"epoch {epoch}: valid {value:.4f} below the median of earlier trials")

            def on_line(msg: str) -> None:
                log(f"{name}: {msg}")

            log(f"{name}: {' '.join(info['set'])}")
            try:
                if (run / "train.log").is_file():  # a resumed trial: its epochs so far count for pruning
                    for epoch, value in _epoch_values((run / "train.log").read_text(encoding="utf-8").splitlines()):
                        report(epoch, value)
                summary = train(trial_cfg, train_dir, valid_dir, run, resume=True, command="emotk tune", log=on_line,
                                on_epoch=lambda h: report(h["epoch"], h["valid_metric"]))
                if summary is None:
                    summary = yaml.safe_load((run / "done").read_text(encoding="utf-8"))
            except optuna.TrialPruned as e:
                write_text(run / "trial.yaml", yaml.safe_dump({**info, "state": "pruned", "why": str(e)}, sort_keys=False))
                raise
            except EmotkError as e:
                write_text(run / "trial.yaml", yaml.safe_dump({**info, "state": "failed", "why": str(e)}, sort_keys=False))
                raise
            (key,) = [k for k in summary if k.startswith("best_valid_")]
            value = float(summary[key])
            write_text(run / "trial.yaml", yaml.safe_dump({**info, "state": "complete", "metric": key, "value": value,
                                                           "best_epoch": summary["best_epoch"]}, sort_keys=False))
            log(f"{name}: {key} {value:.4f}")
            return value

        if left > 0:
            study.optimize(objective, n_trials=left, timeout=timeout, catch=(EmotkError,),
                           callbacks=[lambda st, _t: _write_summary(st, exp, config, base_items, space)])
        else:
            log(f"{exp}: {trials} trials already finished")
        _write_summary(study, exp, config, base_items, space)
    best = exp / "best.yaml"
    result = yaml.safe_load(best.read_text(encoding="utf-8")) if best.is_file() else {}
    if result:
        log(f"{exp}: best trial {result['number']} ({result['dir']}): {result['value']:.4f} with {' '.join(result['set'])}")
    return copy.deepcopy(result)
