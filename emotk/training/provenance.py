"""What a training run was trained on: a record compared before a finished run is reused.

``build_record(cfg, train_dir, valid_dir)`` describes the request: the train and valid
utterances (ids, speakers) with digests and counts of every head's labels, a digest of the
input values the run reads (the scp entries of its utterances, resolved, and their
normalization tables), the feature config, the normalization scope of each input, the model
and training config (less the settings a resume may change), the seed, the emotk version, the
protocol (``fold.yaml`` beside the train dir) and the selection set (the valid speakers). With
on-the-fly noise (``train.augment``) the noises are part of it by content (ids, durations, audio
bytes), not by path; with it off the record is the one an emotk without it wrote.

``EXP/provenance/`` holds ``record.yaml`` and the run's ``train.utt2spk`` / ``valid.utt2spk``.
The ``info`` section of a record (absolute paths, the split seed) is for the reader only and is
left out of comparisons: the same data moved to another directory, or a split seed that made the
same folds, matches.
"""

from __future__ import annotations

import copy
import hashlib
import struct
from pathlib import Path
from typing import Mapping

import numpy as np
import yaml

import emotk
from emotk.config import augment_on
from emotk.data.datadir import DataDir, read_table, validate_data_dir, write_table
from emotk.errors import EmotkError
from emotk.fileio import atomic_dir

FORMAT = 1
# Settings a resumed run may change (to train longer, or on another machine): not part of the record.
RESUME_MAY_CHANGE = ("epochs", "patience", "num_threads", "device")
# Record sections left out of comparisons.
INFO = "info"
DIGEST_CHARS = 20  # hex characters kept of a sha256 (80 bits)
_HINTS = {
    "feats.scp": "run 'emotk extract-fbank' or 'emotk extract-mfcc' first",
    "cmvn.scp": "run 'emotk compute-cmvn' first",
}


# Requested inputs and heads, from the v2 config (inputs/heads) or today's (features/task) ---------

def input_specs(cfg: Mapping) -> dict[str, dict]:
    """``{name: {kind, table, norm, norm_table}}`` of the inputs the run reads."""
    if "inputs" in cfg:
        out = {}
        for name, spec in cfg["inputs"].items():
            kind = spec.get("kind", "feats")
            norm = spec.get("norm", "none")
            table = spec.get("table") or {"feats": "feats.scp", "wav": "wav.scp"}.get(kind, f"{name}.scp")
            norm_table = spec.get("norm_table") or ("cmvn.scp" if norm == "speaker" else None)
            out[name] = {"kind": kind, "table": table, "norm": norm, "norm_table": norm_table}
        return out
    norm = cfg["features"]["cmvn"]
    return {"feats": {"kind": "feats", "table": "feats.scp", "norm": norm,
                      "norm_table": "cmvn.scp" if norm == "speaker" else None}}


def head_specs(cfg: Mapping) -> dict[str, dict]:
    """``{name: {kind, labels}}`` of the label tables the run trains on."""
    if "heads" in cfg:
        return {name: {"kind": h["kind"], "labels": h["labels"]} for name, h in cfg["heads"].items()}
    task = cfg["task"]
    table = task.get("label_file") or ("utt2emo" if task["kind"] == "class" else "labels.scp")
    return {task["kind"]: {"kind": task["kind"], "labels": table}}


# Digests ------------------------------------------------------------------------------------------

def _short(h) -> str:
    return h.hexdigest()[:DIGEST_CHARS]


def _hash_matrices(d: DataDir, table: str, keys: list[str], h) -> None:
    """Feed ``key, shape, dtype, values`` of each scp entry into ``h``.

    Uncompressed binary Kaldi matrices (``FM``/``DM``) are read as raw bytes, one open file per
    archive; anything else goes through the ark reader and hashes the same fields.
    """
    from emotk.data.ark import read_entry

    scp = d.table(table)
    handles: dict[str, object] = {}
    try:
        for key in keys:
            if key not in scp:
                raise EmotkError(f"{d.path / table}: id {key!r} not found")
            spec = d.resolve(scp[key])
            path, _, offset = spec.rpartition(":")
            data = None
            if offset.isdigit() and path:
                f = handles.get(path)
                if f is None:
                    try:
                        f = handles[path] = open(path, "rb")
                    except OSError as e:
                        raise EmotkError(f"{d.path / table}: {key!r}: cannot open {path}: {e.strerror}") from None
                data = _raw_matrix(f, int(offset))
            if data is None:
                mat = np.ascontiguousarray(read_entry(spec))
                data = ("FM" if mat.dtype == np.float32 else str(mat.dtype), mat.shape, mat.tobytes())
            kind, shape, raw = data
            if kind in ("FM", "DM") and not np.isfinite(np.frombuffer(raw, np.float32 if kind == "FM" else np.float64)).all():
                raise EmotkError(f"{d.path / table}: {key!r} has NaN or infinite values")
            h.update(f"{key} {kind} {' '.join(map(str, shape))}\n".encode())
            h.update(raw)
    finally:
        for f in handles.values():
            f.close()


def _raw_matrix(f, offset: int):
    """``(kind, shape, bytes)`` of an uncompressed binary matrix at ``offset``, or None for other formats."""
    f.seek(offset)
    head = f.read(15)
    if len(head) < 15 or head[:2] != b"\0B" or head[2:5] not in (b"FM ", b"DM ") \
            or head[5:6] != b"\4" or head[10:11] != b"\4":
        return None
    kind = head[2:4].decode()
    rows, cols = struct.unpack("<i", head[6:10])[0], struct.unpack("<i", head[11:15])[0]
    size = rows * cols * (4 if kind == "FM" else 8)
    raw = f.read(size)
    if len(raw) != size:
        raise EmotkError(f"{f.name}: truncated matrix at byte {offset}")
    return kind, (rows, cols), raw


def _text_digest(d: DataDir, table: str, keys: list[str]) -> tuple[str, dict]:
    values = read_table(d.path / table, parse=str)
    h = hashlib.sha256()
    for k in keys:
        if k not in values:
            raise EmotkError(f"{d.path / table}: utterance {k!r} has no label")
        h.update(f"{k} {values[k]}\n".encode())
    return _short(h), {k: values[k] for k in keys}


def _input_digest(d: DataDir, spec: dict) -> dict:
    utts = d.utts
    out = {"kind": spec["kind"], "table": spec["table"], "norm": spec["norm"]}
    h = hashlib.sha256()
    if spec["kind"] == "wav":
        segments = d.table("segments") if d.has("segments") else {u: (u, None, None) for u in utts}
        for rec in sorted({segments[u][0] for u in utts}):
            h.update(f"{rec}\n".encode())
            h.update(d.wav_path(rec).read_bytes())
        for u in utts:
            h.update(f"{u} {' '.join(map(str, segments[u]))}\n".encode())
    else:
        _hash_matrices(d, spec["table"], utts, h)
    out["digest"] = _short(h)
    if spec["norm_table"]:
        hn = hashlib.sha256()
        _hash_matrices(d, spec["norm_table"], d.speakers, hn)
        out["norm_table"], out["norm_digest"] = spec["norm_table"], _short(hn)
    return out


def _labels(d: DataDir, head: dict) -> dict:
    table, utts = head["labels"], d.utts
    if head["kind"] == "frame_regression":
        h = hashlib.sha256()
        h.update(f"{d.scalar('label_names')}\n{d.scalar('label_frame_shift')}\n".encode())
        _hash_matrices(d, table, utts, h)
        return {"table": table, "digest": _short(h), "count": len(utts)}
    digest, values = _text_digest(d, table, utts)
    out = {"table": table, "digest": digest, "count": len(values)}
    if head["kind"] == "class":
        counts: dict[str, int] = {}
        for v in values.values():
            counts[v] = counts.get(v, 0) + 1
        out["classes"] = dict(sorted(counts.items()))
    return out


def _ids_digest(utt2spk: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for u in sorted(utt2spk):
        h.update(f"{u} {utt2spk[u]}\n".encode())
    return _short(h)


# Protocol and selection -----------------------------------------------------------------------------

def read_fold(data_dir: str | Path) -> tuple[Path, dict] | None:
    """``(fold dir, its fold.yaml)`` of a data dir inside a fold (``fold.yaml`` in it or beside it), or None."""
    data_dir = Path(data_dir)
    for p in (data_dir / "fold.yaml", data_dir.parent / "fold.yaml"):
        if p.is_file():
            try:
                meta = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as e:
                raise EmotkError(f"{p}: invalid YAML: {e}") from None
            if not isinstance(meta, dict):
                raise EmotkError(f"{p}: not a fold record")
            return p.parent, meta
    return None


def read_protocol(train_dir: str | Path) -> dict | None:
    """The train dir's fold protocol, or None outside a fold."""
    fold = read_fold(train_dir)
    if fold is None:
        return None
    path, meta = fold
    return {"name": meta.get("protocol"), "speaker_independent": bool(meta.get("speaker_independent", True)),
            "fold": path.name, "split_seed": meta.get("seed")}


def check_disjoint(train: DataDir, valid: DataDir, protocol: dict | None) -> dict:
    """Refuse shared utterances, and shared speakers unless the protocol is declared speaker-dependent."""
    shared_utts = sorted(set(train.utt2spk) & set(valid.utt2spk))
    if shared_utts:
        raise EmotkError(f"{valid.path}: utterance {shared_utts[0]!r} is also in the training set {train.path} "
                         f"({len(shared_utts)} shared)")
    shared = sorted(set(train.speakers) & set(valid.speakers))
    dependent = protocol is not None and not protocol["speaker_independent"]
    if shared and not dependent:
        raise EmotkError(f"{valid.path}: speaker {shared[0]!r} is also in the training set {train.path} "
                         f"({len(shared)} shared); declare a speaker-dependent protocol in fold.yaml to allow it")
    return {"shared_utterances": 0, "shared_speakers": len(shared), "speaker_dependent": dependent}


# The record ---------------------------------------------------------------------------------------

def _set_summary(d: DataDir, heads: dict) -> dict:
    return {"utterances": len(d.utts), "speakers": len(d.speakers), "ids": _ids_digest(d.utt2spk),
            "labels": {name: _labels(d, h) for name, h in heads.items()}}


def compared_config(cfg: Mapping) -> dict:
    """The config less the settings a resume may change; ``train.augment`` less its noise path (the
    record's ``augment`` section has the noises' digest), or none of it when it is off."""
    out = copy.deepcopy(dict(cfg))
    out["train"] = {k: v for k, v in out.get("train", {}).items() if k not in RESUME_MAY_CHANGE}
    aug = out["train"].pop("augment", None)
    if augment_on(cfg):
        out["train"]["augment"] = {k: v for k, v in aug.items() if k != "noise"}
    return out


def _augment_record(cfg: Mapping) -> dict | None:
    """The noises of on-the-fly augmentation, by content; None when it is off."""
    if not augment_on(cfg):
        return None
    from emotk.augment.noise import noise_digest, validate_noise_dir

    nd = validate_noise_dir(cfg["train"]["augment"]["noise"])
    return {"noises": len(nd), "noise_digest": noise_digest(nd)[:DIGEST_CHARS]}


def build_record(cfg: Mapping, train_dir: str | Path, valid_dir: str | Path) -> dict:
    """The provenance record of training ``cfg`` on ``train_dir`` with ``valid_dir`` as the selection set.

    Validates both dirs (the tables the config reads must exist) and refuses train/valid overlap
    (:func:`check_disjoint`).
    """
    inputs, heads = input_specs(cfg), head_specs(cfg)
    need = [t for s in inputs.values() for t in (s["table"], s["norm_table"]) if t]
    need += [h["labels"] for h in heads.values()]
    dirs = {}
    for part, path in (("train", train_dir), ("valid", valid_dir)):
        d = validate_data_dir(path, check_files=False)
        for name in need:
            d.require(name, hint=_HINTS.get(name, ""))
        dirs[part] = d
    protocol = read_protocol(train_dir)
    checks = check_disjoint(dirs["train"], dirs["valid"], protocol)
    fconf = dirs["train"].path / "conf" / "feats.yaml"
    try:
        feature_config = yaml.safe_load(fconf.read_text(encoding="utf-8")) if fconf.is_file() else None
    except yaml.YAMLError as e:
        raise EmotkError(f"{fconf}: invalid YAML: {e}") from None
    augment = _augment_record(cfg)
    record = {
        "format": FORMAT,
        "emotk_version": emotk.__version__,
        "protocol": None if protocol is None else {k: protocol[k] for k in ("name", "speaker_independent", "fold")},
        "train": _set_summary(dirs["train"], heads),
        "valid": _set_summary(dirs["valid"], heads),
        "selection": {"set": "valid", "speakers": dirs["valid"].speakers, "utterances": len(dirs["valid"].utts)},
        "normalization": {name: spec["norm"] for name, spec in inputs.items()},
        "inputs": {name: {part: _input_digest(dirs[part], spec) for part in ("train", "valid")}
                   for name, spec in inputs.items()},
        "feature_config": feature_config,
        **({"augment": augment} if augment else {}),
        "seed": cfg["train"]["seed"],
        "config": compared_config(cfg),
        "checks": checks,
        INFO: {"train_dir": str(dirs["train"].path.resolve()), "valid_dir": str(dirs["valid"].path.resolve()),
               "split_seed": None if protocol is None else protocol["split_seed"]},
    }
    if augment:
        record[INFO]["noise_dir"] = str(Path(cfg["train"]["augment"]["noise"]).resolve())
    return record


def first_difference(old, new, prefix: str = "") -> str | None:
    """The first differing field of two records (``info`` left out), as ``a.b (old vs new)``, or None."""
    if not prefix and isinstance(old, dict) and isinstance(new, dict):
        old = {k: v for k, v in old.items() if k != INFO}
        new = {k: v for k, v in new.items() if k != INFO}
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(new) + [k for k in old if k not in new]:  # the record's order: the most telling field first
            d = first_difference(old.get(k), new.get(k), f"{prefix}{k}.")
            if d:
                return d
        return None
    return None if old == new else f"{prefix.rstrip('.')} ({old!r} vs {new!r})"


def write_record(exp: str | Path, record: dict, train_utt2spk: Mapping[str, str],
                 valid_utt2spk: Mapping[str, str]) -> None:
    """Write ``EXP/provenance/`` (record.yaml, train.utt2spk, valid.utt2spk) as a whole, atomically."""
    with atomic_dir(Path(exp) / "provenance") as tmp:
        (tmp / "record.yaml").write_text(yaml.safe_dump(record, sort_keys=False, allow_unicode=True), encoding="utf-8")
        write_table(tmp / "train.utt2spk", train_utt2spk)
        write_table(tmp / "valid.utt2spk", valid_utt2spk)


def read_record(exp: str | Path) -> dict | None:
    """The run's record, or None for a run made without one (an older emotk)."""
    p = Path(exp) / "provenance" / "record.yaml"
    if not p.is_file():
        return None
    try:
        record = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise EmotkError(f"{p}: invalid YAML: {e}") from None
    if not isinstance(record, dict):
        raise EmotkError(f"{p}: not a provenance record")
    return record


def read_trained(exp: str | Path) -> dict[str, dict[str, str]]:
    """``{"train": {utt: spk}, "valid": {utt: spk}}`` of the utterances the run was trained and selected on."""
    base = Path(exp) / "provenance"
    if not (base / "record.yaml").is_file():
        raise EmotkError(f"{exp}: no provenance record (trained by an older emotk); train it again to score it")
    return {part: read_table(base / f"{part}.utt2spk") for part in ("train", "valid")}


NORM_SCOPES = {
    "speaker": "per-speaker statistics over all of the speaker's utterances in its data dir "
               "(transductive, features only)",
    "utterance": "each utterance's own statistics",
    "global": "statistics of the training set only, stored with the model",
    "none": "none",
}


def describe_runs(exp_root: str | Path) -> list[str]:
    """Sentences on the selection sets and normalization of every run under ``exp_root``, from their records."""
    exp_root = Path(exp_root)
    selection: dict[tuple, list[str]] = {}
    norms: dict[tuple, int] = {}
    for p in sorted(exp_root.glob("**/provenance/record.yaml")):
        run = p.parent.parent
        r = read_record(run)
        valid = Path(r.get(INFO, {}).get("valid_dir", "valid")).name
        key = (valid, tuple(r["selection"]["speakers"]), r["selection"]["utterances"])
        selection.setdefault(key, []).append(run.relative_to(exp_root).parts[0])
        for name, scope in r["normalization"].items():
            norms[(name, scope)] = norms.get((name, scope), 0) + 1
    out = []
    for (valid, spks, n), where in selection.items():
        groups = ", ".join(sorted(set(where)))
        out.append(f"Checkpoints (early stopping, learning-rate schedule) of {len(where)} run(s) under {groups} were "
                   f"chosen on `{valid}` ({n} utterances of {len(spks)} speaker(s): {' '.join(spks)}).")
    for (name, scope), n in sorted(norms.items()):
        out.append(f"Normalization of input `{name}` in {n} run(s): {scope} ({NORM_SCOPES.get(scope, scope)}).")
    return out
