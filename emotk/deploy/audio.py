"""Inference on audio of any format soundfile reads, any sample rate, channel count and length.

Inputs (``list_audio``): files, folders (searched recursively for the extensions soundfile
knows), Kaldi ``wav.scp`` tables (``<id> <path>``, paths relative to the table's dir; piped
commands are not run) and ``-`` (one path a line on stdin).

Each recording is read twice, block by block, so memory does not grow with its length: a scan
(peak level, length, and the recording's normalization statistics when the model needs them), then
the chunks. Channels are averaged; each input is resampled to its own rate per block (polyphase,
with 50 ms of margin that is cut off again).

- Utterance-level heads (class, regression): the recording is cut into chunks of ``chunk`` seconds
  (default: the model's training piece length, else ``DEFAULT_CHUNK``; a last chunk shorter than
  half a chunk joins the one before). Each chunk is an utterance for the model (the training
  ``segments`` rule applies within it); a recording's output is the duration-weighted mean of its
  chunks' posteriors or values. A recording shorter than one chunk is one chunk: the same as
  inference on that file as a whole.
- Frame heads (continuous models): chunks of ``FRAME_CHUNK`` seconds of output, each computed
  with context on both sides (half the model's receptive field, or ``BLSTM_CONTEXT`` seconds for
  models whose outputs see the whole sequence) that is cut off again, so CNN outputs equal those
  of the whole recording (features with ``snip_edges: true``). One CSV per recording at the label
  rate: ``time`` (start of the frame, s) and one column per label dimension.

Normalization follows ``emotk.deploy.export`` (the recording's own statistics, the training
statistics for short recordings of speaker-normalized inputs). A recording whose peak is below
``SILENCE_PEAK`` (-80 dBFS) is silent: no prediction (NA) and a warning. One shorter than
``MIN_SECONDS`` gets a warning; if the model's features cannot be computed on it at all, NA.
An unreadable file is a failure, reported by name; the others are still processed.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence, TextIO

import numpy as np

from emotk.errors import EmotkError

SILENCE_PEAK = 1e-4
MIN_SECONDS = 0.5
DEFAULT_CHUNK = 10.0
FRAME_CHUNK = 60.0
BLSTM_CONTEXT = 20.0
SCAN_SECONDS = 30.0
_MARGIN = 0.05


# Inputs -----------------------------------------------------------------------------------------

@dataclass
class Item:
    id: str
    path: Path


def audio_extensions() -> set[str]:
    import soundfile as sf

    return {f".{k.lower()}" for k in sf.available_formats()} | {".aif", ".oga", ".opus"}


def _scp(path: Path, failures: list) -> list[Item]:
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            failures.append((f"{path}:{n}", "expected '<id> <path>'"))
        elif parts[1].rstrip().endswith("|"):
            failures.append((f"{path}:{n}", f"{parts[0]}: piped commands are not run; give a file path"))
        else:
            p = Path(parts[1].strip())
            items.append(Item(parts[0], p if p.is_absolute() else path.parent / p))
    return items


def list_audio(args: Sequence[str | Path], stdin: TextIO | None = None) -> tuple[list[Item], list[tuple[str, str]]]:
    """The recordings named by ``args`` and the ``(name, reason)`` of those that cannot be used."""
    items, failures = [], []
    exts = None
    for a in args:
        a = str(a)
        if a == "-":
            lines = (stdin or sys.stdin).read().splitlines()
            items += [Item(ln.strip(), Path(ln.strip())) for ln in lines if ln.strip()]
            continue
        p = Path(a)
        if p.is_dir():
            exts = exts or audio_extensions()
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                failures.append((a, "no audio files in this folder"))
            items += [Item(str(f), f) for f in found]
        elif p.is_file() and (p.name == "wav.scp" or p.suffix == ".scp"):
            items += _scp(p, failures)
        elif p.is_file():
            items.append(Item(a, p))
        else:
            failures.append((a, "no such file or folder"))
    return items, failures


# Reading ----------------------------------------------------------------------------------------

class Recording:
    """An open audio file: mono float32 blocks at any rate (``read``)."""

    def __init__(self, path: Path):
        import soundfile as sf

        try:
            self.f = sf.SoundFile(str(path))
        except (RuntimeError, sf.LibsndfileError) as e:
            raise EmotkError(f"cannot read audio: {e}") from None
        self.path, self.sr, self.frames, self.channels = path, self.f.samplerate, self.f.frames, self.f.channels
        if self.frames <= 0:
            raise EmotkError("empty audio (0 samples)")

    @property
    def duration(self) -> float:
        return self.frames / self.sr

    def close(self) -> None:
        self.f.close()

    def source(self, start: int, stop: int) -> np.ndarray:
        """Mono samples ``[start, stop)`` at the file's rate."""
        import soundfile as sf

        start, stop = max(0, start), min(self.frames, stop)
        try:
            self.f.seek(start)
            x = self.f.read(max(0, stop - start), dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as e:
            raise EmotkError(f"cannot decode audio at {start / self.sr:.2f} s: {e}") from None
        if x.shape[0] != stop - start:
            raise EmotkError(f"truncated audio: {x.shape[0]} samples at {start / self.sr:.2f} s, expected "
                             f"{stop - start}")
        return x[:, 0] if x.shape[1] == 1 else x.mean(axis=1)

    def length_at(self, rate: int) -> int:
        return -(-self.frames * rate // self.sr)

    def read(self, rate: int, start: int, stop: int) -> np.ndarray:
        """Mono samples ``[start, stop)`` at ``rate`` (clipped to the recording)."""
        if rate == self.sr:
            return self.source(start, stop)
        from scipy.signal import resample_poly

        g = math.gcd(self.sr, rate)
        up, down = rate // g, self.sr // g
        margin = math.ceil(_MARGIN * self.sr / down)
        u0 = max(0, start // up - margin)
        u1 = -(-stop // up) + margin
        x = self.source(u0 * down, u1 * down)
        y = resample_poly(x, up, down).astype(np.float32) if len(x) else x
        first = start - u0 * up
        return y[first: first + max(0, min(stop, self.length_at(rate)) - start)]


# Input pipeline -----------------------------------------------------------------------------------

class InputPipeline:
    """One model input computed from a recording: rate, units per chunk, normalization, arrays."""

    def __init__(self, name: str, spec: dict, meta: dict):
        self.name, self.spec, self.kind = name, spec, spec["kind"]
        self.global_stats = meta["global_stats"].get(name)
        self.comp = self.extractor = None
        if self.kind == "feats":
            from emotk.features.extract import computer_for

            conf = (meta.get("data_conf") or {}).get("feats")
            if spec["table"] != "feats.scp" or conf is None:
                raise EmotkError(f"input {name!r} ({spec['table']}) cannot be computed from audio: the model has no "
                                 f"feature config for it; make a data dir, run the extraction and infer on it")
            self.comp = computer_for(conf)
            self.rate = self.comp.config["sample_rate"]
        elif self.kind == "wav":
            self.rate = int(spec["sample_rate"])
        else:
            conf = (meta.get("data_conf") or {}).get(spec["table"].removesuffix(".scp"))
            if not conf or conf.get("type") != "opensmile" or conf.get("level") != "functionals":
                raise EmotkError(f"input {name!r} ({spec['table']}): no openSMILE functionals config recorded with "
                                 f"the model (conf/{spec['table'].removesuffix('.scp')}.yaml of the training dir)")
            from emotk.features.opensmile import extractor_for

            self.extractor = extractor_for(conf["feature_set"], conf["level"], int(conf["sample_rate"]))
            self.rate = int(conf["sample_rate"])
            if spec["norm"] in ("speaker", "global") and self.global_stats is None:
                raise EmotkError(f"input {name!r} was trained with {spec['norm']} normalization and the model holds "
                                 f"no training statistics for it: export the model with its training dir")

    def needs_scan(self) -> bool:
        return self.kind != "vector" and self.spec["norm"] in ("speaker", "utterance")

    def stats_for(self, rec: Recording, scanned: np.ndarray | None) -> np.ndarray | None:
        """The statistics this recording is normalized with (None: no normalization)."""
        from emotk.deploy.export import SPEAKER_NORM_MIN_SECONDS

        norm = self.spec["norm"]
        if norm == "none" or (self.kind == "wav" and norm != "utterance"):
            return None
        if norm == "global" or (norm == "speaker" and self.kind == "vector"):
            return self.global_stats
        if norm == "speaker" and rec.duration < SPEAKER_NORM_MIN_SECONDS and self.global_stats is not None:
            return self.global_stats
        return scanned

    def raw(self, rec: Recording, start: int, stop: int, allow_empty: bool = False) -> np.ndarray:
        """Un-normalized ``[T, D]`` of units ``[start, stop)`` (feature frames by their first sample)."""
        if self.kind == "wav":
            return rec.read(self.rate, start, stop).reshape(-1, 1)
        c = self.comp
        x = rec.read(self.rate, start, stop + c.length - c.shift)
        if c.num_frames(len(x)) == 0:
            if allow_empty:
                return np.zeros((0, c.dim), np.float32)
            raise EmotkError(f"{len(x) / self.rate:.3f} s of audio is shorter than one feature frame "
                             f"({c.length / self.rate:.3f} s)")
        return c.compute([x])[0]

    def scan(self, rec: Recording) -> np.ndarray:
        """Statistics of the whole recording, block by block."""
        from emotk.features.cmvn import compute_cmvn_stats

        block = int(SCAN_SECONDS * self.rate)
        if self.comp is not None:
            block -= block % self.comp.shift
        total = rec.length_at(self.rate)
        blocks = (self.raw(rec, s, min(s + block, total), allow_empty=True) for s in range(0, total, block))
        return compute_cmvn_stats(b for b in blocks if len(b))

    def array(self, rec: Recording, start: int, stop: int, stats: np.ndarray | None) -> np.ndarray:
        from emotk.features.cmvn import apply_cmvn
        from emotk.features.transforms import splice_frames, stack_frames

        if self.kind == "vector":
            wav = rec.read(self.rate, start, stop)
            x = self.extractor.compute(wav, str(rec.path))[None, :]
            return (apply_cmvn(x, stats) if stats is not None else x).astype(np.float32)
        x = self.raw(rec, start, stop)
        if stats is not None:
            x = apply_cmvn(x, stats)
        if self.kind == "feats":
            if self.spec["stack"] > 1:
                x = stack_frames(x, self.spec["stack"])
            if any(self.spec["splice"]):
                x = splice_frames(x, *self.spec["splice"])
        return np.ascontiguousarray(x, dtype=np.float32)

    def units(self, seconds: float) -> int:
        """Samples of this input's rate at a time, aligned to the feature frame shift."""
        n = int(round(seconds * self.rate))
        if self.comp is not None:
            n -= n % self.comp.shift
        return n


# Chunks and outputs -----------------------------------------------------------------------------------

def chunk_bounds(duration: float, chunk: float) -> list[tuple[float, float]]:
    """``[start, end)`` seconds; a remainder shorter than half a chunk joins the last chunk."""
    n = max(1, int(duration // chunk))
    if duration - n * chunk >= chunk / 2:
        n += 1
    return [(k * chunk, duration if k == n - 1 else (k + 1) * chunk) for k in range(n)]


@dataclass
class Result:
    """One recording's outputs: ``heads[h]`` is the aggregate (posteriors, value or frames) or None (NA)."""

    item: Item
    duration: float = 0.0
    heads: dict = field(default_factory=dict)
    chunks: list = field(default_factory=list)  # [(start, end, {head: output})]
    csv: dict = field(default_factory=dict)  # frame head -> CSV path
    frames: int = 0  # frame heads: output frames written
    warnings: list = field(default_factory=list)


class AudioInference:
    """A loaded ``emotk.inference.Model`` applied to recordings (see the module doc)."""

    def __init__(self, model, chunk: float | None = None, batch_size: int = 8, csv_dir: Path | None = None,
                 plot: bool = False, keep_frames: bool = False, log: Callable[[str], None] = print):
        self.model, self.meta = model, model.meta
        self.heads = self.meta["heads"]
        self.inputs = {n: InputPipeline(n, s, self.meta) for n, s in self.meta["inputs"].items()}
        self.frame_heads = [h for h, s in self.heads.items() if s["kind"] == "frame_regression"]
        seg = self.meta["segments"]
        self.chunk = chunk or (FRAME_CHUNK if self.frame_heads else
                               float(seg["length"]) if seg["mode"] != "none" else DEFAULT_CHUNK)
        if self.chunk <= 0:
            raise EmotkError(f"--chunk must be > 0 seconds, got {self.chunk:g}")
        self.batch_size, self.csv_dir, self.plot, self.keep_frames = batch_size, csv_dir, plot, keep_frames
        self.clock = next((n for n, s in self.meta["inputs"].items() if s["kind"] != "vector"), None)
        if self.frame_heads:
            self.label_shift = float(self.heads[self.frame_heads[0]]["label_frame_shift"])
            rf = getattr(getattr(model, "net", None), "net", None)
            rf = rf.receptive_field() if hasattr(rf, "receptive_field") else None
            self.context = (math.ceil(rf / 2) + 1) * self.label_shift if rf else BLSTM_CONTEXT
        self._csv_names: set[str] = set()
        for n, p in self.inputs.items():
            if p.spec["norm"] == "speaker":
                log(f"input {n!r}: audio files have no speaker: per-utterance z-norm (the recording's own statistics) "
                    f"replaces the training's speaker z-norm"
                    + (f", the training statistics below {_min_seconds():g} s" if p.global_stats is not None else ""))

    # One recording -----------------------------------------------------------------------------------

    def process(self, item: Item) -> Result:
        rec = Recording(item.path)
        try:
            return self._process(rec, item)
        finally:
            rec.close()

    def _process(self, rec: Recording, item: Item) -> Result:
        res = Result(item, rec.duration)
        peak = 0.0
        block = int(SCAN_SECONDS * rec.sr)
        for s in range(0, rec.frames, block):
            x = rec.source(s, s + block)
            m = float(np.abs(x).max()) if len(x) else 0.0
            if not math.isfinite(m):
                raise EmotkError(f"NaN or infinite samples near {s / rec.sr:.2f} s")
            peak = max(peak, m)
        if peak < SILENCE_PEAK:
            res.warnings.append(f"silent (peak {20 * math.log10(max(peak, 1e-12)):.0f} dBFS < -80 dBFS): no prediction")
            return self._na(res)
        short = rec.duration < MIN_SECONDS
        if short:
            res.warnings.append(f"short ({rec.duration:.2f} s < {MIN_SECONDS:g} s): prediction unreliable")
        try:
            stats = {n: p.stats_for(rec, p.scan(rec) if p.needs_scan() else None) for n, p in self.inputs.items()}
            if self.frame_heads:
                self._frames(rec, res, stats)
            else:
                self._chunks(rec, res, stats)
        except EmotkError as e:
            if not short:
                raise
            res.warnings.append(f"too short for the model's features ({e}): no prediction")
            return self._na(res)
        return res

    def _na(self, res: Result) -> Result:
        res.heads = {h: None for h in self.heads}
        return res

    def _chunks(self, rec: Recording, res: Result, stats: dict) -> None:
        bounds = chunk_bounds(rec.duration, self.chunk)
        outs: list[dict] = []
        for b in range(0, len(bounds), self.batch_size):
            part = bounds[b: b + self.batch_size]
            arrays = {n: [p.array(rec, p.units(s), p.units(e) if b + k < len(bounds) - 1 else rec.length_at(p.rate),
                                  stats[n])
                          for k, (s, e) in enumerate(part)] for n, p in self.inputs.items()}
            outs += self._utterance_outputs(arrays, len(part))
        weights = np.array([e - s for s, e in bounds])
        res.chunks = [(s, e, o) for (s, e), o in zip(bounds, outs)]
        res.heads = {h: (np.average(np.stack([o[h] for o in outs]), axis=0, weights=weights)).astype(np.float32)
                     for h in self.heads}

    def _utterance_outputs(self, arrays: dict[str, list], n: int) -> list[dict]:
        """Outputs of ``n`` chunks (the training segments rule within each), as posteriors / values."""
        from emotk.training.segments import aggregate, cut, pieces, to_units

        owner, examples = [], []
        for k in range(n):
            clock = arrays[self.clock][k] if self.clock else None
            duration = clock.shape[0] / self.meta["inputs"][self.clock]["rate"] if clock is not None else 0.0
            for piece in (pieces(duration, self.meta["segments"]) if clock is not None else [None]):
                ex = {}
                for name, xs in arrays.items():
                    x = xs[k]
                    if piece is not None and self.meta["inputs"][name]["kind"] != "vector":
                        r = self.meta["inputs"][name]["rate"]
                        x = cut(x, *to_units(piece, r, x.shape[0]))
                    ex[name] = x
                owner.append(k)
                examples.append(ex)
        post: dict[str, list] = {h: [] for h in self.heads}
        for b in range(0, len(examples), self.batch_size):
            batch = examples[b: b + self.batch_size]
            xs, lens = _pad_batch(batch, self.meta["inputs"])
            raw = self.model.run(xs, lens)
            for h, s in self.heads.items():
                y = raw[h]
                if s["kind"] == "class" and self.model.kind != "sklearn":
                    y = np.exp(y - y.max(-1, keepdims=True))
                    y = y / y.sum(-1, keepdims=True)
                post[h] += [row.reshape(-1) for row in y]
        agg = {h: aggregate(owner, post[h], n) for h in self.heads}
        return [{h: agg[h][k] for h in self.heads} for k in range(n)]

    def _frames(self, rec: Recording, res: Result, stats: dict) -> None:
        """Frame heads, chunk by chunk with context; rows streamed to one CSV per head and recording."""
        from emotk.fileio import atomic_write

        period = self.label_shift
        per_chunk = max(1, int(round(self.chunk / period)))
        ctx = int(math.ceil(self.context / period))
        total = int(math.ceil(rec.duration / period)) + 1
        name = self._csv_name(res.item)
        sums = {h: None for h in self.frame_heads}
        count = 0
        kept = {h: [] for h in self.frame_heads}
        writers = {}
        try:
            for h in self.frame_heads:
                path = self.csv_dir / (f"{name}.csv" if len(self.frame_heads) == 1 else f"{name}.{h}.csv")
                writers[h] = (path, atomic_write(path))
                f = writers[h][1].__enter__()
                f.write(",".join(["time"] + self.heads[h]["names"]) + "\n")
                writers[h] = (path, writers[h][1], f)
            for first in range(0, total, per_chunk):
                lo = max(0, first - ctx)
                hi = first + per_chunk + ctx
                arrays = {}
                for n, p in self.inputs.items():
                    unit = p.comp.shift * self.meta["inputs"][n].get("stack", 1) if p.comp is not None else \
                        int(round(period * p.rate))
                    stop = min(hi * unit, rec.length_at(p.rate))
                    arrays[n] = [p.array(rec, lo * unit, stop, stats[n])]
                n_frames = arrays[self.clock][0].shape[0]
                if n_frames <= first - lo:
                    break
                xs, lens = _pad_batch([{n: a[0] for n, a in arrays.items()}], self.meta["inputs"])
                raw = self.model.run(xs, lens)
                keep_to = min(n_frames, first + per_chunk - lo)
                for h in self.frame_heads:
                    y = raw[h][0, first - lo: keep_to]
                    path, _, f = writers[h]
                    for i, row in enumerate(y):
                        f.write(f"{(first + i) * period:.3f}," + ",".join(f"{v:.6f}" for v in row) + "\n")
                    sums[h] = y.sum(0) if sums[h] is None else sums[h] + y.sum(0)
                    if self.keep_frames:
                        kept[h].append(y)
                count += keep_to - (first - lo)
                if keep_to < first + per_chunk - lo:
                    break
        except BaseException as e:
            for path, ctx_mgr, _ in writers.values():
                ctx_mgr.__exit__(type(e), e, e.__traceback__)
            raise
        for h, (path, ctx_mgr, _) in writers.items():
            ctx_mgr.__exit__(None, None, None)
            res.csv[h] = path
            if self.plot:
                _plot_csv(path, path.with_suffix(".png"), str(res.item.id))
        res.heads = {h: (np.concatenate(kept[h]) if self.keep_frames else sums[h] / max(count, 1))
                     for h in self.frame_heads}
        res.frames = count

    def _csv_name(self, item: Item) -> str:
        base = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(str(item.id)).stem) or "audio"
        name, k = base, 1
        while name in self._csv_names:
            k += 1
            name = f"{base}_{k}"
        self._csv_names.add(name)
        return name


def _min_seconds() -> float:
    from emotk.deploy.export import SPEAKER_NORM_MIN_SECONDS

    return SPEAKER_NORM_MIN_SECONDS


def _pad_batch(examples: list[dict], inputs: dict) -> tuple[dict, dict]:
    xs, lens = {}, {}
    for n, s in inputs.items():
        arrs = [e[n] for e in examples]
        if s["kind"] == "vector":
            xs[n] = np.stack([a.reshape(-1) for a in arrs]).astype(np.float32)
            continue
        out = np.zeros((len(arrs), max(a.shape[0] for a in arrs), arrs[0].shape[1]), np.float32)
        for i, a in enumerate(arrs):
            out[i, : a.shape[0]] = a
        xs[n], lens[n] = out, np.array([a.shape[0] for a in arrs], dtype=np.int64)
    return xs, lens


def _plot_csv(csv: Path, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.loadtxt(csv, delimiter=",", skiprows=1, ndmin=2)
    names = csv.read_text(encoding="utf-8").split("\n", 1)[0].split(",")[1:]
    fig, ax = plt.subplots(figsize=(10, 3))
    for i, n in enumerate(names):
        ax.plot(data[:, 0], data[:, i + 1], label=n, linewidth=0.8)
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    from emotk.fileio import atomic_path

    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# Writers -------------------------------------------------------------------------------------------

def _fmt(v) -> str:
    return "nan" if v is None or not math.isfinite(float(v)) else f"{float(v):.6f}"


class TsvWriter:
    """One row per recording (``segment`` = ``all``) and, for recordings of several chunks, one per chunk."""

    def __init__(self, f: TextIO, heads: dict):
        self.f, self.heads = f, heads
        cols = ["id", "segment", "start", "end"]
        for h, s in heads.items():
            if s["kind"] == "class":
                cols += [h] + [f"{h}:{c}" for c in s["names"]]
            elif s["kind"] == "regression":
                cols.append(h)
            else:
                cols += [f"{h}:{d}_mean" for d in s["names"]] + [f"{h}:csv"]
        f.write("\t".join(cols + ["warning"]) + "\n")

    def _cells(self, outs: dict, res: Result) -> list[str]:
        cells = []
        for h, s in self.heads.items():
            y = outs.get(h)
            if s["kind"] == "class":
                cells += ["NA" if y is None else s["names"][int(np.argmax(y))]]
                cells += [_fmt(None if y is None else v) for v in (y if y is not None else s["names"])]
            elif s["kind"] == "regression":
                cells.append(_fmt(None if y is None else y[0]))
            else:
                mean = None if y is None else (y.mean(0) if y.ndim == 2 else y)
                cells += [_fmt(None if mean is None else v) for v in (mean if mean is not None else s["names"])]
                cells.append(str(res.csv.get(h, "NA")))
        return cells

    def write(self, res: Result) -> None:
        rows = []
        if len(res.chunks) > 1:
            rows += [[str(k), f"{s:.3f}", f"{e:.3f}"] + self._cells(o, res) + [""] for k, (s, e, o) in enumerate(res.chunks)]
        rows.append(["all", "0.000", f"{res.duration:.3f}"] + self._cells(res.heads, res) + ["; ".join(res.warnings)])
        self.f.write("".join("\t".join([str(res.item.id)] + r) + "\n" for r in rows))


class JsonlWriter:
    """One JSON object per recording: the aggregate per head, the chunks, warnings."""

    def __init__(self, f: TextIO, heads: dict):
        self.f, self.heads = f, heads

    def _heads(self, outs: dict, res: Result) -> dict:
        d = {}
        for h, s in self.heads.items():
            y = outs.get(h)
            if s["kind"] == "class":
                d[h] = {"label": None if y is None else s["names"][int(np.argmax(y))],
                        "posteriors": None if y is None else {c: round(float(v), 6) for c, v in zip(s["names"], y)}}
            elif s["kind"] == "regression":
                d[h] = {"value": None if y is None else round(float(y[0]), 6)}
            else:
                mean = None if y is None else (y.mean(0) if y.ndim == 2 else y)
                d[h] = {"csv": str(res.csv[h]) if h in res.csv else None, "frames": res.frames,
                        "mean": None if mean is None else {n: round(float(v), 6) for n, v in zip(s["names"], mean)}}
        return d

    def write(self, res: Result) -> None:
        obj = {"id": str(res.item.id), "path": str(res.item.path), "duration": round(res.duration, 3),
               "heads": self._heads(res.heads, res), "warnings": res.warnings}
        if len(res.chunks) > 1:
            obj["chunks"] = [{"start": round(s, 3), "end": round(e, 3), "heads": self._heads(o, res)}
                             for s, e, o in res.chunks]
        self.f.write(json.dumps(obj) + "\n")


WRITERS = {"tsv": TsvWriter, "jsonl": JsonlWriter}


def run_audio(engine: AudioInference, items: Iterable[Item], writer, failures: list,
              on_result: Callable[[Result], None] | None = None, log: Callable[[str], None] = print) -> int:
    """Process every item; failures are logged by name and appended to ``failures``. Returns the number done."""
    items = list(items)
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(items), unit="file", desc="infer", file=sys.stderr)
    done = 0
    try:
        for item in items:
            try:
                res = engine.process(item)
            except EmotkError as e:
                failures.append((str(item.id), str(e)))
                log(f"error: {item.path}: {e}")
            else:
                writer.write(res)
                for w in res.warnings:
                    log(f"warning: {item.path}: {w}")
                if on_result is not None:
                    on_result(res)
                done += 1
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return done
