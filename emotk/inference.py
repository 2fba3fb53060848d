"""Inference with a trained exp dir: the training feature pipeline, then predictions files.

Inputs:
- a data dir with feats.scp: its features go through the model's pipeline (speaker z-norm
  with the dir's cmvn.scp when the model was trained with ``features.cmvn: speaker``);
- audio files (any sample rate, mono or multi-channel): features are computed with the feature
  config stored in the checkpoint (a copy of the training dir's conf/feats.yaml), downmixed and
  resampled by ``emotk.features.extract.compute_features``.  The speaker of a loose file is
  unknown, so a model trained with speaker z-norm gets per-utterance z-norm instead (the closest
  estimate from one file; expect some loss when utterances are short).

Outputs (read by ``emotk score``):
- class models: a text file, header ``# utt label <class1> ... <classK>``, then
  ``<utt> <predicted-label> <p1> ... <pK>`` (softmax posteriors, 6 decimals), sorted by utt;
- frame-regression models: a dir with labels.ark + labels.scp (T x K per utt), label_names
  and label_frame_shift, the format of reference labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from emotk.data.predictions import write_class_predictions, write_frame_predictions
from emotk.data.datadir import validate_data_dir
from emotk.errors import EmotkError
from emotk.models import build_model
from emotk.training.checkpoint import load_checkpoint
from emotk.training.data import Dataset, eval_batches, load_features, stack_splice
from emotk.training.loop import forward_batches, resolve_device


def load_model(exp_dir: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu"):
    """``(model in eval mode, meta)`` from ``exp_dir/checkpoints/<checkpoint>.pt``."""
    ck = load_checkpoint(Path(exp_dir) / "checkpoints" / f"{checkpoint}.pt")
    meta = ck["meta"]
    m = meta["model"]
    model = build_model(m["name"], m["input_dim"], m["output_dim"], **m["params"])
    model.load_state_dict(ck["model"])
    return model.to(device).eval(), meta


def data_dir_features(meta: dict, data_dir: str | Path) -> tuple[list[str], list[np.ndarray]]:
    d = validate_data_dir(data_dir, require=["feats.scp"])
    shift = d.frame_shift * meta["features"]["stack"]
    if not np.isclose(shift, meta["frame_shift"], rtol=1e-3):
        raise EmotkError(f"{d.path / 'frame_shift'}: {shift:g} s per frame after stacking, the model was trained "
                         f"on {meta['frame_shift']:g} s")
    feats = load_features(d, meta["features"])
    return list(feats), list(feats.values())


def audio_features(meta: dict, files: Sequence[str | Path], log: Callable[[str], None] = print) -> tuple[list[str], list[np.ndarray]]:
    """Features of loose audio files; utterance ids are the file names without extension."""
    import soundfile as sf

    from emotk.features.cmvn import utterance_cmvn
    from emotk.features.extract import compute_features

    config = meta["feature_config"]
    if config is None:
        raise EmotkError("this model's training data dir had no conf/feats.yaml: cannot compute features "
                         "for audio files; extract features into a data dir and infer on that")
    fc = dict(meta["features"])
    if fc["cmvn"] == "speaker":
        log("audio files have no speaker: using per-utterance z-norm in place of the training's speaker z-norm")
        fc["cmvn"] = "utterance"
    utts, feats, seen = [], [], {}
    for f in files:
        f = Path(f)
        utt = f.stem
        if utt in seen:
            raise EmotkError(f"{f}: same utterance id {utt!r} as {seen[utt]}; rename one of them")
        seen[utt] = f
        try:
            wav, sr = sf.read(str(f), dtype="float32", always_2d=False)
        except RuntimeError as e:  # soundfile's errors for unreadable or unknown formats
            raise EmotkError(f"{f}: cannot read audio: {e}") from None
        try:
            mat = compute_features(wav, sr, config)
        except EmotkError as e:
            raise EmotkError(f"{f}: {e}") from None
        if fc["cmvn"] == "utterance":
            mat = utterance_cmvn(mat)
        utts.append(utt)
        feats.append(stack_splice(mat, fc["stack"], fc["splice"]))
    order = np.argsort(utts, kind="stable")
    return [utts[i] for i in order], [feats[i] for i in order]


def predict(model: torch.nn.Module, meta: dict, utts: list[str], feats: list[np.ndarray], batch_size: int = 16,
            device: str | torch.device = "cpu") -> list[np.ndarray]:
    """Per utterance: posteriors ``[K]`` (class) or outputs ``[T, K]`` (frame regression)."""
    want = meta["model"]["input_dim"]
    for utt, f in zip(utts, feats):
        if f.shape[1] != want:
            raise EmotkError(f"utterance {utt!r}: features have {f.shape[1]} dims after the pipeline, "
                             f"the model expects {want}")
    kind = meta["task"]["kind"]
    ds = Dataset(Path("."), utts, feats, None, kind, meta["task"]["names"])
    out: list = [None] * len(utts)
    for b, y in forward_batches(model, eval_batches(ds, batch_size), torch.device(device)):
        y = y.cpu()
        for j, i in enumerate(b.index):
            out[i] = torch.softmax(y[j], -1).numpy() if kind == "class" else y[j, : b.lengths[j]].numpy()
    return out


def infer(exp_dir: str | Path, inputs: Sequence[str | Path], out: str | Path | None = None, checkpoint: str = "best",
          name: str | None = None, batch_size: int = 16, device: str = "cpu",
          log: Callable[[str], None] = print) -> Path:
    """Predict for one data dir or for audio files; returns the predictions path."""
    exp_dir = Path(exp_dir)
    if not inputs:
        raise EmotkError("infer: give a data dir or audio files")
    device = resolve_device(device)
    model, meta = load_model(exp_dir, checkpoint, device)
    first = Path(inputs[0])
    if first.is_dir():
        if len(inputs) > 1:
            raise EmotkError(f"infer: give one data dir, or audio files (got {len(inputs)} inputs, the first a dir)")
        utts, feats = data_dir_features(meta, first)
        default_name = first.resolve().name
    else:
        for p in inputs:
            if not Path(p).is_file():
                raise EmotkError(f"{p}: no such audio file or data dir")
        utts, feats = audio_features(meta, inputs, log)
        default_name = "audio"
    outputs = predict(model, meta, utts, feats, batch_size, device)
    kind, names = meta["task"]["kind"], meta["task"]["names"]
    set_name = name or default_name
    if kind == "class":
        path = Path(out) if out else exp_dir / "predictions" / f"{set_name}.txt"
        write_class_predictions(path, utts, outputs, names)
    else:
        path = Path(out) if out else exp_dir / "predictions" / set_name
        write_frame_predictions(path, utts, outputs, names, meta["label_frame_shift"])
    log(f"{path}: {len(utts)} predictions ({kind}) with {exp_dir / 'checkpoints' / (checkpoint + '.pt')}")
    return path
