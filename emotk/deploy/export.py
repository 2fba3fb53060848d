"""``emotk export-model``: a trained exp dir as a self-contained model dir.

``OUT/``
  ``model.yaml``    format version, framework, model config, inputs (with the feature configs of
                    the training dir: ``data_conf``), heads and label maps, segments, normalization
                    (what was trained and what an unseen speaker gets) with the training set's
                    statistics for every feats/vector input, protocol and scores with 95 % CIs,
                    emotk and library versions, where it came from (a digest of its sources)
  ``weights.pt``    torch: the state dict only (tensors; read with ``weights_only=True``)
  ``estimator/``    scikit-learn: the skops files of the exp dir (no pickle)
  ``provenance.yaml``  the exp dir's provenance record, when it has one
  ``MODEL.md``      the model card (``emotk.deploy.card``)

Normalization of an unseen speaker (a recording given to ``emotk infer``): an input trained with
``speaker`` statistics gets the recording's own statistics when the recording is at least
``SPEAKER_NORM_MIN_SECONDS`` long, else the training set's global statistics (a few seconds give
a poor estimate of a speaker's mean and variance); ``utterance`` stays per recording (as trained);
``global`` uses the training statistics; utterance-level vectors trained with ``speaker`` get the
training statistics (one vector has no variance of its own).

A model dir records ``format``; a dir of another format is refused with the reason.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

import emotk
from emotk.errors import EmotkError
from emotk.fileio import atomic_dir

FORMAT = 1
MODEL_FILE = "model.yaml"
WEIGHTS = "weights.pt"
ESTIMATOR = "estimator"
SPEAKER_NORM_MIN_SECONDS = 3.0
LIBRARIES = ("torch", "numpy", "scipy", "soundfile", "scikit-learn", "skops", "opensmile", "pyyaml", "onnxruntime")


def is_model_dir(path: Path) -> bool:
    return (Path(path) / MODEL_FILE).is_file()


def read_model_yaml(path: str | Path) -> dict:
    """The model dir's ``model.yaml``, checked for a format this emotk reads."""
    p = Path(path) / MODEL_FILE
    try:
        meta = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise EmotkError(f"{p}: cannot read the model description: {str(e).splitlines()[0]}") from None
    if not isinstance(meta, dict) or "format" not in meta:
        raise EmotkError(f"{p}: not an emotk model description (no 'format' field)")
    if meta["format"] != FORMAT:
        raise EmotkError(f"{p}: model dir format {meta['format']!r} (written by emotk {meta.get('emotk_version', '?')}); "
                         f"this emotk ({emotk.__version__}) reads format {FORMAT}: export the model again with this "
                         f"emotk, or use the emotk version that wrote it")
    meta["global_stats"] = {n: np.asarray(v, dtype=np.float64) for n, v in (meta.get("global_stats") or {}).items()}
    return meta


def versions() -> dict[str, str]:
    import platform
    from importlib import metadata

    out = {"emotk": emotk.__version__, "python": platform.python_version()}
    for pkg in LIBRARIES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# Normalization ---------------------------------------------------------------------------------

def unseen_speaker_rule(spec: dict, have_global: bool) -> str:
    """What a recording of an unknown speaker gets for one input (stated in model.yaml and the card)."""
    norm, kind = spec["norm"], spec["kind"]
    if norm == "none":
        return "none"
    if norm == "global":
        return "the training set's global statistics (as in training)"
    if norm == "utterance":
        return "the recording's own statistics (as in training)"
    if kind == "vector":
        return ("the training set's global statistics (one vector per recording has no variance of its own)"
                if have_global else "unavailable: no training statistics were stored at export")
    own = "the recording's own statistics"
    if not have_global:
        return f"{own} (no training statistics were stored at export, so also for short recordings)"
    return f"{own} when it is at least {SPEAKER_NORM_MIN_SECONDS:g} s long, else the training set's global statistics"


def training_statistics(meta: dict, train_dir: Path | None, utts: list[str] | None,
                        log: Callable[[str], None]) -> tuple[dict[str, np.ndarray], str]:
    """Global statistics of every feats/vector input over the training utterances, and where they came from."""
    from emotk.data.datadir import DataDir
    from emotk.training.inputs import SOURCES

    stats = {n: np.asarray(s, dtype=np.float64) for n, s in meta.get("global_stats", {}).items()}
    wanted = [n for n, s in meta["inputs"].items() if s["kind"] in ("feats", "vector") and n not in stats]
    if not wanted:
        return stats, "the training set (stored in the checkpoint)"
    if train_dir is None or not Path(train_dir).is_dir():
        where = f"training dir {train_dir} not found" if train_dir else "no training dir recorded"
        log(f"export: {where}: no global statistics for input(s) {', '.join(wanted)}")
        return stats, f"missing for {', '.join(wanted)} ({where} at export)"
    d = DataDir(train_dir)
    use = [u for u in d.utts if utts is None or u in utts]
    if not use:
        raise EmotkError(f"{train_dir}: none of the run's training utterances are in this data dir")
    for n in wanted:
        spec = {k: v for k, v in meta["inputs"][n].items() if k not in ("dim", "rate")}
        stats[n] = SOURCES[spec["kind"]](d, n, spec).accumulate_stats(use)
    return stats, f"{len(use)} training utterances of {Path(train_dir).resolve()}"


# Protocol and scores ----------------------------------------------------------------------------

def _ci(head: dict) -> list[float] | None:
    """95 % speaker-bootstrap interval of UA from a class head's per-speaker confusions."""
    from emotk.evaluation.bootstrap import speaker_bootstrap_ua

    per = head.get("per_speaker") or {}
    if head.get("kind") != "class" or not per:
        return None
    lo, hi = speaker_bootstrap_ua({s: np.asarray(v["confusion"]) for s, v in per.items()})
    return [round(lo, 4), round(hi, 4)]


def read_scores(exp: Path) -> dict:
    """``{set: {head: {kind, metrics, ua_ci95, counts}}}`` from the exp dir's scores/*.json."""
    out = {}
    for p in sorted((exp / "scores").glob("*.json")):
        try:
            s = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise EmotkError(f"{p}: cannot read scores: {e}") from None
        heads = {}
        for name, h in (s.get("heads") or {}).items():
            heads[name] = {"kind": h.get("kind"), "metrics": h.get("metrics", {}), "ua_ci95": _ci(h),
                           "counts": h.get("counts", {})}
        out[p.stem] = {"speakers": s.get("speakers"), "heads": heads}
    return out


def _synthetic_audio(train: Path | None) -> bool:
    """Whether the training audio is one of emotk's synthetic look-alikes (their corpus dirs are named
    ``synthetic_*`` by the recipes), so the card never calls a synthetic corpus the real one."""
    if train is None or not (train / "wav.scp").is_file():
        return False
    from emotk.data.datadir import read_table

    return any("synthetic" in v.lower() for v in read_table(train / "wav.scp", parse=str).values())


def protocol_of(record: dict | None) -> dict | None:
    if record is None:
        return None
    return {"protocol": record.get("protocol"), "train": {k: record["train"][k] for k in ("utterances", "speakers")},
            "valid": {k: record["valid"][k] for k in ("utterances", "speakers")},
            "selection": record.get("selection"), "normalization": record.get("normalization"),
            "seed": record.get("seed"), "train_dir": (record.get("info") or {}).get("train_dir")}


# Export -----------------------------------------------------------------------------------------

def _digest(paths: list[Path], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_file():
                h.update(f"{f.name}\0".encode() + f.read_bytes())
    return h.hexdigest()[:20]


def export_model(exp_dir: str | Path, out_dir: str | Path, checkpoint: str = "best", train_dir: str | Path | None = None,
                 data_note: str | None = None, log: Callable[[str], None] = print) -> Path:
    """Write the model dir ``out_dir`` for ``exp_dir`` (see the module doc); a re-run with the same
    sources skips."""
    from emotk.inference import Model
    from emotk.training.provenance import read_record

    exp, out = Path(exp_dir), Path(out_dir)
    if is_model_dir(exp):
        raise EmotkError(f"{exp}: already a model dir (export takes an exp dir)")
    model = Model(exp, checkpoint)
    record = read_record(exp)
    train = Path(train_dir) if train_dir else (Path(record["info"]["train_dir"]) if record and record.get("info") else None)
    sources = [model.source if model.kind == "torch" else exp / "model", exp / "scores", exp / "provenance"]
    digest = _digest(sources, yaml.safe_dump({"train": str(train), "note": data_note, "format": FORMAT}))
    if is_model_dir(out):
        try:
            old = read_model_yaml(out)
        except EmotkError:
            old = {}
        if (old.get("source") or {}).get("digest") == digest:
            log(f"{out}: up to date with {exp} ({checkpoint}), nothing to do")
            return out
    trained = None
    if (exp / "provenance" / "train.utt2spk").is_file():
        from emotk.data.datadir import read_table

        trained = set(read_table(exp / "provenance" / "train.utt2spk"))
    meta = model.meta
    stats, stats_source = training_statistics(meta, train, trained, log)
    inputs = {n: dict(s) for n, s in meta["inputs"].items()}
    normalization = {n: {"trained": s["norm"], "unseen_speaker": unseen_speaker_rule(s, n in stats),
                         "speaker_min_seconds": SPEAKER_NORM_MIN_SECONDS} for n, s in inputs.items()}
    desc = {
        "format": FORMAT,
        "emotk_version": emotk.__version__,
        "framework": model.kind,
        "model": meta["model"],
        "inputs": inputs,
        "heads": meta["heads"],
        "labels": {h: s["names"] for h, s in meta["heads"].items()},
        "segments": meta["segments"],
        "data_conf": meta.get("data_conf", {}),
        "normalization": normalization,
        "global_stats_source": stats_source,
        "global_stats": {n: np.asarray(s).tolist() for n, s in stats.items()},
        "protocol": protocol_of(record),
        "scores": read_scores(exp),
        "data_note": data_note,
        "synthetic": _synthetic_audio(train),
        "versions": versions(),
        "source": {"exp_dir": str(exp.resolve()), "checkpoint": checkpoint if model.kind == "torch" else None,
                   "digest": digest},
    }
    from emotk.deploy.card import model_card

    with atomic_dir(out) as tmp:
        if model.kind == "torch":
            import torch

            torch.save({k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}, tmp / WEIGHTS)
        else:
            shutil.copytree(exp / "model" / "estimator", tmp / ESTIMATOR)
        if record is not None:
            shutil.copyfile(exp / "provenance" / "record.yaml", tmp / "provenance.yaml")
        (tmp / MODEL_FILE).write_text(yaml.safe_dump(desc, sort_keys=False, allow_unicode=True), encoding="utf-8")
        (tmp / "MODEL.md").write_text(model_card(desc), encoding="utf-8")
    heads = ", ".join(f"{h} ({s['kind']})" for h, s in meta["heads"].items())
    log(f"{out}: {meta['model']['name']} ({model.kind}) from {exp}, heads {heads}; global statistics: {stats_source}")
    return out
