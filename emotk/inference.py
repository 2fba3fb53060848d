"""Inference with a trained exp dir (torch or scikit-learn): the training input pipeline, then a
predictions dir with one file per head (``emotk.data.predictions``).

Inputs:
- a data dir: each input is read as in training (speaker z-norm with the dir's statistics tables
  when the model was trained with ``norm: speaker``; ``global`` with the training set's statistics);
- audio files (any sample rate, mono or multi-channel): ``feats`` inputs are computed with the
  feature config stored with the model (a copy of the training dir's conf/feats.yaml), downmixed
  and resampled by ``emotk.features.extract.compute_features``; ``wav`` inputs are resampled. The
  speaker of a loose file is unknown, so an input trained with speaker z-norm gets per-utterance
  z-norm instead (the closest estimate from one file; expect some loss when utterances are short).
  Utterance-level vectors need the openSMILE configuration and are computed from a data dir with
  ``emotk extract-opensmile`` instead.

Utterance-level heads of a model trained on segments get the mean of their pieces' outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from emotk.data.datadir import DataDir, validate_data_dir
from emotk.data.predictions import write_class_predictions, write_frame_predictions, write_heads_spec, write_value_predictions
from emotk.errors import EmotkError
from emotk.training.dataset import SerDataset


class Model:
    """A trained model of an exp dir: ``meta`` (inputs, heads, statistics) and ``outputs(ds)``."""

    def __init__(self, exp_dir: str | Path, checkpoint: str = "best", device: str = "cpu"):
        self.exp = Path(exp_dir)
        sk = self.exp / "model" / "meta.yaml"
        if sk.is_file():
            from emotk.models.sklearn_models import load_model
            from emotk.training.sklearn_fit import read_meta

            self.meta, self.kind = read_meta(self.exp / "model"), "sklearn"
            self.estimator = load_model(self.exp / "model" / "estimator")
            self.source = sk
            return
        import torch

        from emotk.models import build_for_config
        from emotk.training.checkpoint import load_checkpoint
        from emotk.training.predict import resolve_device

        self.source = self.exp / "checkpoints" / f"{checkpoint}.pt"
        ck = load_checkpoint(self.source)
        meta = ck["meta"]
        meta["global_stats"] = {n: t.numpy() for n, t in meta.get("global_stats", {}).items()}
        self.meta, self.kind = meta, "torch"
        self.device = resolve_device(device)
        inputs = {n: (s["kind"], s["dim"]) for n, s in meta["inputs"].items()}
        heads = {h: (s["kind"], 1 if s["kind"] == "regression" else len(s["names"])) for h, s in meta["heads"].items()}
        self.net = build_for_config(meta["model"], inputs, heads)
        self.net.load_state_dict(ck["model"])
        self.net.to(self.device).eval()

    @property
    def head_kinds(self) -> dict[str, str]:
        return {h: s["kind"] for h, s in self.meta["heads"].items()}

    def outputs(self, ds: SerDataset, batch_size: int = 16) -> dict[str, dict[str, np.ndarray]]:
        """``{head: {utt: output}}`` (posteriors, values or frame outputs)."""
        if self.kind == "sklearn":
            from emotk.models.sklearn_models import predict_proba
            from emotk.training.sklearn_fit import vectors

            (head,) = self.meta["heads"]
            post = predict_proba(self.estimator, vectors(ds.sources, ds.utts))
            return {head: dict(zip(ds.utts, post.astype(np.float32)))}
        from emotk.training.predict import piece_outputs, utterance_outputs

        outs, _ = piece_outputs(self.net, ds, self.head_kinds, batch_size, self.device)
        return utterance_outputs(ds, outs, self.head_kinds)


def data_dir_dataset(model: Model, data_dir: str | Path) -> SerDataset:
    from emotk.training.inputs import open_sources

    inputs = model.meta["inputs"]
    d = validate_data_dir(data_dir, require=[s["table"] for s in inputs.values()])
    sources = open_sources(d, {n: _spec(s) for n, s in inputs.items()}, model.meta["global_stats"])
    for n, src in sources.items():
        want = inputs[n]["rate"]
        if src.temporal and not np.isclose(src.rate, want, rtol=1e-3):
            raise EmotkError(f"{d.path}: input {n!r} has {src.rate:g} frames per second after the pipeline, the "
                             f"model was trained on {want:g}")
    return SerDataset(d, sources, None, model.meta["segments"])


def _spec(s: dict) -> dict:
    return {k: v for k, v in s.items() if k not in ("dim", "rate")}


class ArraySource:
    """Inputs computed in memory (audio files): the ``Source`` interface over a dict of arrays."""

    def __init__(self, name: str, kind: str, rate: float | None, arrays: dict[str, np.ndarray]):
        self.name, self.kind, self.arrays = name, kind, arrays
        self.rate = rate if rate is not None else float("inf")

    @property
    def temporal(self) -> bool:
        return self.kind != "vector"

    def length(self, utt: str) -> int:
        return self.arrays[utt].shape[0]

    def read(self, utt: str) -> np.ndarray:
        return self.arrays[utt]

    def dim(self, utt: str) -> int:
        return self.arrays[utt].shape[1]


def audio_dataset(model: Model, files: Sequence[str | Path], log: Callable[[str], None] = print) -> SerDataset:
    """Inputs of loose audio files; utterance ids are the file names without extension."""
    import soundfile as sf

    from emotk.features.cmvn import apply_cmvn, utterance_cmvn
    from emotk.features.extract import compute_features, prepare_audio
    from emotk.features.transforms import splice_frames, stack_frames

    seen: dict[str, Path] = {}
    wavs = {}
    for f in map(Path, files):
        if f.stem in seen:
            raise EmotkError(f"{f}: same utterance id {f.stem!r} as {seen[f.stem]}; rename one of them")
        seen[f.stem] = f
        try:
            wavs[f.stem] = sf.read(str(f), dtype="float32", always_2d=False)
        except (RuntimeError, sf.LibsndfileError) as e:  # unreadable or unknown formats
            raise EmotkError(f"{f}: cannot read audio: {e}") from None
    sources = {}
    for name, spec in model.meta["inputs"].items():
        arrays = {}
        for utt, (wav, sr) in wavs.items():
            try:
                if spec["kind"] == "wav":
                    x = prepare_audio(wav, sr, {"sample_rate": spec["sample_rate"]}, str(seen[utt])).reshape(-1, 1)
                    if spec["norm"] == "utterance":
                        x = (x - x.mean()) / max(float(x.std()), 1e-8)
                elif spec["kind"] == "feats":
                    config = model.meta["data_conf"].get("feats")
                    if spec["table"] != "feats.scp" or config is None:
                        raise EmotkError(f"input {name!r} ({spec['table']}) cannot be computed from audio here: "
                                         f"make a data dir and run the extraction, then infer on it")
                    x = compute_features(wav, sr, config)
                    if spec["norm"] in ("speaker", "utterance"):
                        x = utterance_cmvn(x)
                    elif spec["norm"] == "global":
                        x = apply_cmvn(x, model.meta["global_stats"][name])
                    if spec["stack"] > 1:
                        x = stack_frames(x, spec["stack"])
                    if spec["splice"][0] or spec["splice"][1]:
                        x = splice_frames(x, *spec["splice"])
                else:
                    raise EmotkError(f"input {name!r} is an utterance-level vector table ({spec['table']}): extract "
                                     f"it into a data dir (emotk extract-opensmile) and infer on the data dir")
            except EmotkError as e:
                raise EmotkError(f"{seen[utt]}: {e}") from None
            arrays[utt] = np.ascontiguousarray(x, dtype=np.float32)
        sources[name] = ArraySource(name, spec["kind"], spec.get("rate"), arrays)
        if spec.get("norm") == "speaker":
            log(f"input {name!r}: audio files have no speaker: per-utterance z-norm replaces the training's speaker z-norm")
    return SerDataset(_FileSet(sorted(wavs)), sources, None, model.meta["segments"])


class _FileSet:
    """The stand-in for a data dir of loose files (utterance ids only)."""

    def __init__(self, utts: list[str]):
        self.utts = utts
        self.path = Path(".")


def write_predictions(model: Model, outputs: dict[str, dict[str, np.ndarray]], out_dir: Path) -> None:
    """``out_dir/heads.yaml`` and one predictions file (or dir) per head."""
    spec = {}
    for h, hs in model.meta["heads"].items():
        out = outputs[h]
        utts = sorted(out)
        if hs["kind"] == "class":
            write_class_predictions(out_dir / f"{h}.txt", utts, [out[u] for u in utts], hs["names"])
            spec[h] = {"kind": "class", "labels": hs["labels"], "file": f"{h}.txt"}
        elif hs["kind"] == "regression":
            write_value_predictions(out_dir / f"{h}.txt", utts, [float(out[u][0]) for u in utts], h)
            spec[h] = {"kind": "regression", "labels": hs["labels"], "file": f"{h}.txt"}
        else:
            write_frame_predictions(out_dir / h, utts, [out[u] for u in utts], hs["names"], hs["label_frame_shift"])
            spec[h] = {"kind": "frame_regression", "labels": hs["labels"], "file": h}
    write_heads_spec(out_dir / "heads.yaml", spec)


def infer(exp_dir: str | Path, inputs: Sequence[str | Path], out: str | Path | None = None, checkpoint: str = "best",
          name: str | None = None, batch_size: int = 16, device: str = "cpu",
          log: Callable[[str], None] = print) -> Path:
    """Predict for one data dir or for audio files; returns the predictions dir."""
    exp_dir = Path(exp_dir)
    if not inputs:
        raise EmotkError("infer: give a data dir or audio files")
    model = Model(exp_dir, checkpoint, device)
    first = Path(inputs[0])
    if first.is_dir():
        if len(inputs) > 1:
            raise EmotkError(f"infer: give one data dir, or audio files (got {len(inputs)} inputs, the first a dir)")
        ds = data_dir_dataset(model, first)
        default_name = first.resolve().name
    else:
        for p in inputs:
            if not Path(p).is_file():
                raise EmotkError(f"{p}: no such audio file or data dir")
        ds = audio_dataset(model, inputs, log)
        default_name = "audio"
    outputs = model.outputs(ds, batch_size)
    path = Path(out) if out else exp_dir / "predictions" / (name or default_name)
    write_predictions(model, outputs, path)
    log(f"{path}: predictions of {len(ds.utts)} utterances for head(s) {', '.join(model.meta['heads'])} "
        f"with {model.source}")
    return path
