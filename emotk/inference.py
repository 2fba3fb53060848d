"""Inference with a trained model: an exp dir or an exported model dir (``emotk export-model``),
torch (PyTorch or an exported ONNX graph in onnxruntime) or scikit-learn.

Inputs:
- a data dir: each input is read as in training (speaker z-norm with the dir's statistics tables
  when the model was trained with ``norm: speaker``; ``global`` with the training set's
  statistics); predictions dir with one file per head (``emotk.data.predictions``);
- audio (files, folders, wav.scp, ``-``): ``emotk.deploy.audio`` computes every input from the
  audio with the configs stored with the model (fbank/MFCC, raw samples, openSMILE functionals),
  chunk by chunk with bounded memory; the speaker of a recording is unknown, so speaker z-norm
  becomes the recording's own statistics (or, in an exported model dir, the training statistics
  for short recordings: ``emotk.deploy.export``).

Utterance-level heads of a model trained on segments get the mean of their pieces' outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from emotk.data.datadir import validate_data_dir
from emotk.data.predictions import write_class_predictions, write_frame_predictions, write_heads_spec, write_value_predictions
from emotk.errors import EmotkError
from emotk.training.dataset import SerDataset


class Model:
    """A trained model: an exp dir or an exported model dir (``emotk.deploy.export``); ``meta`` (inputs,
    heads, statistics), ``outputs(ds)`` on a data set and ``run(xs, lens)`` on arrays.

    ``backend``: ``torch``, or ``onnx`` (an exported graph run by onnxruntime; ``onnx`` names the
    file, default ``<model dir>/model.onnx``).
    """

    def __init__(self, path: str | Path, checkpoint: str = "best", device: str = "cpu", backend: str = "torch",
                 onnx: str | Path | None = None, threads: int | None = None):
        from emotk.deploy.export import ESTIMATOR, WEIGHTS, is_model_dir, read_model_yaml

        self.exp = Path(path)
        if not self.exp.is_dir():
            raise EmotkError(f"{self.exp}: no such model dir or exp dir")
        if backend not in ("torch", "onnx"):
            raise EmotkError(f"--backend must be torch or onnx, got {backend!r}")
        self.backend, self.onnx = backend, None
        packaged = is_model_dir(self.exp)
        if packaged:
            meta = read_model_yaml(self.exp)
            self.kind = meta["framework"]
        elif (self.exp / "model" / "meta.yaml").is_file():
            self.kind = "sklearn"
        elif (self.exp / "checkpoints").is_dir():
            self.kind = "torch"
        else:
            raise EmotkError(f"{self.exp}: not an emotk model (no model.yaml, checkpoints/ or model/meta.yaml)")
        if self.kind == "sklearn":
            from emotk.models.sklearn_models import load_model
            from emotk.training.sklearn_fit import read_meta

            if backend != "torch":
                raise EmotkError(f"{self.exp}: --backend onnx is for torch models; scikit-learn models run as they are")
            self.meta = meta if packaged else read_meta(self.exp / "model")
            self.source = self.exp / (ESTIMATOR if packaged else "model/estimator")
            self.estimator = load_model(self.source)
            return
        import torch

        from emotk.models import build_for_config
        from emotk.training.checkpoint import load_checkpoint
        from emotk.training.predict import resolve_device

        if packaged:
            self.source = self.exp / WEIGHTS
            state = load_checkpoint(self.source)
        else:
            self.source = self.exp / "checkpoints" / f"{checkpoint}.pt"
            ck = load_checkpoint(self.source)
            state, meta = ck["model"], ck["meta"]
            meta["global_stats"] = {n: t.numpy() for n, t in meta.get("global_stats", {}).items()}
        self.meta = meta
        self.device = resolve_device(device)
        inputs = {n: (s["kind"], s["dim"]) for n, s in meta["inputs"].items()}
        heads = {h: (s["kind"], 1 if s["kind"] == "regression" else len(s["names"])) for h, s in meta["heads"].items()}
        self.net = build_for_config(meta["model"], inputs, heads)
        self.net.load_state_dict(state)
        self.net.to(self.device).eval()
        if threads:
            torch.set_num_threads(threads)
        if backend == "onnx":
            from emotk.deploy.onnx import OnnxBackend

            self.onnx = OnnxBackend(Path(onnx) if onnx else self.exp / "model.onnx", meta["inputs"], list(heads),
                                    threads or 1)

    @property
    def packaged(self) -> bool:
        from emotk.deploy.export import is_model_dir

        return is_model_dir(self.exp)

    def run(self, xs: dict[str, np.ndarray], lens: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Raw outputs ``{head: [B, ...]}`` (logits, values, frame outputs) of a padded batch; scikit-learn
        models give posteriors."""
        if self.kind == "sklearn":
            from emotk.models.sklearn_models import predict_proba

            (head,) = self.meta["heads"]
            (x,) = xs.values()
            return {head: predict_proba(self.estimator, x.reshape(len(x), -1)).astype(np.float32)}
        if self.onnx is not None:
            return self.onnx.run(xs, lens)
        import torch

        t_x = {n: torch.from_numpy(x).to(self.device) for n, x in xs.items()}
        t_l = {n: torch.from_numpy(np.asarray(lens[n] if n in lens else np.ones(len(x), np.int64)))
               for n, x in xs.items()}
        with torch.no_grad():
            out, _ = self.net(t_x, t_l)
        return {h: o.float().cpu().numpy() for h, o in out.items()}

    @property
    def head_kinds(self) -> dict[str, str]:
        return {h: s["kind"] for h, s in self.meta["heads"].items()}

    def outputs(self, ds: SerDataset, batch_size: int = 16) -> dict[str, dict[str, np.ndarray]]:
        """``{head: {utt: output}}`` (posteriors, values or frame outputs)."""
        if self.onnx is not None:
            return self._onnx_outputs(ds, batch_size)
        if self.kind == "sklearn":
            from emotk.models.sklearn_models import predict_proba
            from emotk.training.sklearn_fit import vectors

            (head,) = self.meta["heads"]
            post = predict_proba(self.estimator, vectors(ds.sources, ds.utts))
            return {head: dict(zip(ds.utts, post.astype(np.float32)))}
        from emotk.training.predict import piece_outputs, utterance_outputs

        outs, _ = piece_outputs(self.net, ds, self.head_kinds, batch_size, self.device)
        return utterance_outputs(ds, outs, self.head_kinds)

    def _onnx_outputs(self, ds: SerDataset, batch_size: int) -> dict[str, dict[str, np.ndarray]]:
        """``piece_outputs`` + ``utterance_outputs`` with the ONNX graph."""
        from emotk.training.dataset import eval_batches, loader
        from emotk.training.predict import utterance_outputs

        outs: dict[str, list] = {h: [None] * len(ds) for h in self.head_kinds}
        clock = ds.clock.name if ds.clock is not None else None
        for batch in loader(ds, eval_batches(ds, batch_size)):
            raw = self.run({n: t.numpy() for n, t in batch.inputs.items()},
                           {n: t.numpy() for n, t in batch.lengths.items()})
            for h, kind in self.head_kinds.items():
                for j, i in enumerate(batch.index):
                    y = raw[h][j]
                    if kind == "class":
                        e = np.exp(y - y.max())
                        outs[h][i] = (e / e.sum()).astype(np.float32)
                    elif kind == "regression":
                        outs[h][i] = y.reshape(1)
                    else:
                        outs[h][i] = y[: int(batch.lengths[clock][j])]
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


def is_data_dir(path: Path, model: Model) -> bool:
    """A dir holding the model's input tables (or an utt2spk) is a data dir; any other dir is a folder of audio."""
    return (path / "utt2spk").is_file() or all((path / s["table"]).is_file() for s in model.meta["inputs"].values())


def audio_ids(items) -> dict[str, object]:
    """Utterance ids of recordings in a predictions dir: file names without extension (wav.scp: its ids)."""
    out: dict[str, object] = {}
    for it in items:
        utt = it.id if str(it.id) != str(it.path) else it.path.stem
        if utt in out:
            raise EmotkError(f"{it.path}: same utterance id {utt!r} as {out[utt].path}; rename one of them")
        out[utt] = it
    return out


def infer_audio(model: Model, paths, *, writer=None, out: Path | None = None, chunk: float | None = None,
                batch_size: int = 8, csv_dir: Path | None = None, plot: bool = False, stdin=None,
                log: Callable[[str], None] = print) -> tuple[int, list[tuple[str, str]]]:
    """Recordings (files, folders, wav.scp, ``-``) through ``emotk.deploy.audio``: rows to ``writer``
    and, with ``out``, a predictions dir of the recordings' aggregate outputs. Returns
    ``(recordings done, [(name, reason) of failures])``."""
    from emotk.deploy.audio import AudioInference, list_audio, run_audio

    items, failures = list_audio(paths, stdin)
    for name, why in failures:
        log(f"error: {name}: {why}")
    ids = audio_ids(items) if out is not None else {}
    by_item = {id(it): utt for utt, it in ids.items()}
    engine = AudioInference(model, chunk, batch_size, csv_dir or (Path(out) / "frames" if out else Path("frames")),
                            plot, keep_frames=out is not None, log=log)
    collected: dict[str, dict] = {h: {} for h in model.meta["heads"]}

    def keep(res) -> None:
        if out is None:
            return
        if any(v is None for v in res.heads.values()):
            log(f"{res.item.path}: no prediction (see the warning); left out of {out}")
            return
        for h, v in res.heads.items():
            collected[h][by_item[id(res.item)]] = v

    class _Null:
        def write(self, res):
            pass

    done = run_audio(engine, items, writer or _Null(), failures, keep, log)
    if out is not None and done:
        write_predictions(model, collected, Path(out))
    return done, failures


def infer(exp_dir: str | Path | Model, inputs: Sequence[str | Path], out: str | Path | None = None,
          checkpoint: str = "best", name: str | None = None, batch_size: int = 16, device: str = "cpu",
          log: Callable[[str], None] = print, backend: str = "torch", onnx: str | Path | None = None) -> Path:
    """Predict for one data dir, or for audio (files, folders, wav.scp), into a predictions dir; returns it.

    ``exp_dir``: an exp dir or an exported model dir (or a loaded ``Model``). Any audio that cannot be
    read is an error here (``emotk infer`` reports it and goes on with the other files instead).
    """
    if not inputs:
        raise EmotkError("infer: give a data dir or audio files")
    model = exp_dir if isinstance(exp_dir, Model) else Model(exp_dir, checkpoint, device, backend, onnx)
    exp_dir = model.exp
    first = Path(inputs[0])
    if len(inputs) == 1 and first.is_dir() and is_data_dir(first, model):
        ds = data_dir_dataset(model, first)
        path = Path(out) if out else exp_dir / "predictions" / (name or first.resolve().name)
        write_predictions(model, model.outputs(ds, batch_size), path)
        log(f"{path}: predictions of {len(ds.utts)} utterances for head(s) {', '.join(model.meta['heads'])} "
            f"with {model.source}")
        return path
    path = Path(out) if out else exp_dir / "predictions" / (name or "audio")
    done, failures = infer_audio(model, inputs, out=path, batch_size=batch_size, log=log)
    if failures:
        raise EmotkError(f"{failures[0][0]}: {failures[0][1]}" + (f" ({len(failures)} inputs failed)" if len(failures) > 1 else ""))
    log(f"{path}: predictions of {done} recordings for head(s) {', '.join(model.meta['heads'])} with {model.source}")
    return path
