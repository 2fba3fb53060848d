"""Training throughput on CPU of every registered torch model family, with its shipped config.

Each config in ``CASES`` is loaded as ``emotk train`` loads it (conf/model/NAME.yaml, defaults
filled in) and trained the way the trainer trains it: ``build_for_config`` builds the network from
the config's inputs and heads, ``emotk.training.loop.Step`` takes the optimization steps (the
config's optimizer and batch size, weighted head losses, auxiliary losses such as a VAE's KL term,
heads one at a time in random order where ``train.head_order: random``). The inputs are random
arrays of the shapes the config really sees: the base table (log-mel, MFCC, samples, functionals)
at the corpus's frame rate, through the config's stack and splice, cut to its segment length. So
the figures leave out data loading (bench_loader.py measures that) and measure the model alone.

Per thread count: train = utterances (segments, for segmenting configs) per wall second of forward
+ backward + optimizer step; the same per CPU second (user + system time of this process, every
thread counted); infer = utterances per wall second of the forward pass in eval mode, no grad.

    python benchmarks/bench_training.py [--threads 1,2] [--seconds 3] [--configs cnn_lstm1d,ldnn] [--no-write]

Writes the "## Training throughput (CPU)" section of BENCHMARKS.md (with --configs, only those rows).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import publish, section_head  # noqa: E402

from emotk.config import load_config  # noqa: E402
from emotk.features.transforms import splice_frames, stack_frames  # noqa: E402
from emotk.models import build_for_config  # noqa: E402
from emotk.training.dataset import collate  # noqa: E402
from emotk.training.heads import HeadData, class_weights_of, head_loss  # noqa: E402
from emotk.training.loop import Step, make_optimizer  # noqa: E402

SECTION = "## Training throughput (CPU)"


@dataclass
class Case:
    config: str
    shapes: dict[str, tuple[int, int]]    # input -> rows x columns of its table, before stack / splice
    what: str                             # what one utterance is
    classes: int = 7                      # classes of each class head
    label_dims: int = 2                   # frame-regression heads without `dims`: arousal, valence
    seconds: float = 0.0                  # audio seconds in one utterance (the real-time column)


# 100 frames per second (fbank / MFCC at 10 ms), 16 kHz samples; fbank128_2048 hops 512 samples (31.25/s).
CASES = [
    Case("cnn_lstm1d", {"wav": (128000, 1)}, "raw 16 kHz, 8 s (pad or cut, paper 004)", 6, seconds=8),
    Case("cnn_lstm2d", {"feats": (251, 128)}, "128 log-mel, FFT 2048 / hop 512, 8 s (paper 004)", 6, seconds=8),
    Case("cnn_lstm2d_small", {"feats": (300, 40)}, "40 log-mel, 3 s", seconds=3),
    Case("ldnn", {"feats": (300, 40)}, "40 log-mel spliced 10+1+5, 3 s (paper 002)", 6, seconds=3),
    Case("ldnn_small", {"feats": (300, 40)}, "40 log-mel spliced 2+1+2, 3 s", seconds=3),
    Case("cldnn_s", {"feats": (300, 40)}, "40 log-mel, 40 x 16 image per frame, 3 s (paper 002)", 6, seconds=3),
    Case("cldnn_t", {"feats": (300, 40)}, "as cldnn_s", 6, seconds=3),
    Case("cldnn_st", {"feats": (300, 40)}, "as cldnn_s", 6, seconds=3),
    Case("cldnn_fst", {"feats": (300, 40)}, "as cldnn_s", 6, seconds=3),
    Case("ae_lstm", {"feats": (450, 80)}, "80 log-mel in 100 ms segments (stack 10), 4.5 s (paper 001)", 4,
         seconds=4.5),
    Case("vae_lstm", {"feats": (450, 80)}, "as ae_lstm", 4, seconds=4.5),
    Case("cvae_lstm", {"feats": (450, 80)}, "as ae_lstm", 4, seconds=4.5),
    Case("elor", {"wav": (96000, 1)}, "raw 16 kHz, 6 s window (paper 003)", 5, seconds=6),
    Case("lom", {"mfcc": (600, 26)}, "26 MFCC, 6 s window (paper 003)", 5, seconds=6),
    Case("ftr", {"is10": (1, 1582)}, "IS10 functionals, 1582 (paper 003)", 5),
    Case("elor_ftr", {"wav": (96000, 1), "is10": (1, 1582)}, "raw 6 s + IS10 functionals (paper 003)", 5, seconds=6),
    Case("blstm_regressor", {"feats": (30000, 40)}, "RECOLA recording: 40 fbank stacked by 4, 300 s", seconds=300),
    Case("dilated_cnn", {"feats": (30000, 40)}, "as blstm_regressor", seconds=300),
    Case("downup_cnn_arousal", {"feats": (30000, 40)}, "as blstm_regressor", seconds=300),
    Case("downup_cnn_valence", {"feats": (30000, 40)}, "as blstm_regressor", seconds=300),
    Case("single_filter", {"feats": (30000, 40)}, "as blstm_regressor", seconds=300),
]


def segment_rows(cfg: dict, name: str, rows: int, rate: float) -> int:
    """Rows of the clock input in one training example: the config's segment length, if any."""
    seg = cfg["segments"]
    if seg["mode"] == "none" or cfg["inputs"][name]["kind"] == "vector":
        return rows
    return min(rows, int(round(seg["length"] * rate)))


def example(cfg: dict, case: Case, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], int]:
    """One utterance's inputs as the config's pipeline gives them, and the clock input's rows."""
    xs, clock = {}, None
    for name, (rows, cols) in case.shapes.items():
        spec = cfg["inputs"][name]
        rate = 16000.0 if spec["kind"] == "wav" else 100.0
        x = rng.standard_normal((segment_rows(cfg, name, rows, rate), cols)).astype(np.float32)
        if spec["kind"] == "feats":
            if spec["stack"] > 1:
                x = stack_frames(x, spec["stack"])
            if spec["splice"][0] or spec["splice"][1]:
                x = splice_frames(x, *spec["splice"])
        xs[name] = np.ascontiguousarray(x, dtype=np.float32)
        if clock is None and spec["kind"] != "vector":
            clock = x.shape[0]
    return xs, clock or 1


def head_dims(cfg: dict, case: Case) -> dict[str, int]:
    dims = {}
    for h, spec in cfg["heads"].items():
        kind = spec["kind"]
        dims[h] = case.classes if kind == "class" else 1 if kind == "regression" else \
            len(spec.get("dims") or []) or case.label_dims
    return dims


def batch_of(cfg: dict, case: Case, dims: dict[str, int], rng: np.random.Generator):
    """A training batch of ``train.batch_size`` utterances, collated as the trainer collates them."""
    kinds = {n: s["kind"] for n, s in cfg["inputs"].items()}
    head_kinds = {h: s["kind"] for h, s in cfg["heads"].items()}
    examples = []
    for i in range(cfg["train"]["batch_size"]):
        xs, frames = example(cfg, case, rng)
        ys = {h: (int(rng.integers(dims[h])) if k == "class" else float(rng.standard_normal()) if k == "regression"
                  else rng.standard_normal((frames, dims[h])).astype(np.float32)) for h, k in head_kinds.items()}
        examples.append((i, xs, ys))
    return collate(examples, kinds, head_kinds)


class Trainer:
    """The trainer's model, optimizer and step for one config, on one batch."""

    def __init__(self, cfg: dict, case: Case, seed: int = 0):
        rng = np.random.default_rng(seed)
        dims = head_dims(cfg, case)
        self.batch = batch_of(cfg, case, dims, rng)
        torch.manual_seed(seed)
        inputs = {n: (s["kind"], self.batch.inputs[n].shape[-1]) for n, s in cfg["inputs"].items()}
        self.model = build_for_config(cfg["model"], inputs, {h: (s["kind"], dims[h]) for h, s in cfg["heads"].items()})
        tc = cfg["train"]
        heads = {}
        for h, spec in cfg["heads"].items():
            y = self.batch.targets[h]
            targets = dict(enumerate(y.tolist())) if spec["kind"] == "class" else {}
            heads[h] = HeadData(h, spec, [str(k) for k in range(dims[h])], targets)
        losses = {h: head_loss(hd, class_weights_of(hd, list(range(len(self.batch.index))))) for h, hd in heads.items()}
        clock = next((n for n, s in cfg["inputs"].items() if s["kind"] != "vector"), None)
        self.step = Step(self.model, make_optimizer(self.model, tc), torch.amp.GradScaler("cpu", enabled=False), losses,
                         {h: float(s["weight"]) for h, s in cfg["heads"].items()}, tc["aux_weights"], tc,
                         torch.device("cpu"), False, clock, Path("."), cfg["model"]["name"])
        self.heads = list(cfg["heads"])
        self.one_at_a_time = tc["head_order"] == "random" and len(self.heads) > 1
        self.order = np.random.default_rng(seed)
        self.params = sum(p.numel() for p in self.model.parameters())

    def train_step(self) -> None:
        self.model.train()
        if self.one_at_a_time:
            for k in self.order.permutation(len(self.heads)):
                self.step(self.batch, [self.heads[k]], 1)
        else:
            self.step(self.batch, self.heads, 1)

    def infer_step(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self.model(self.batch.inputs, self.batch.lengths)


def throughput(step, batch: int, seconds: float) -> tuple[float, float]:
    """(utterances per wall second, per CPU second), timed over >= ``seconds`` and >= 2 steps after a warm-up."""
    step()
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        step()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds and n >= 2:
            return n * batch / dt, n * batch / (time.process_time() - c0)


def measure(case: Case, threads: list[int], seconds: float) -> dict:
    cfg = load_config(case.config)
    t = Trainer(cfg, case)
    b = len(t.batch.index)
    row = {"case": case, "family": cfg["model"]["name"], "batch": b, "params": t.params}
    for n in threads:
        torch.set_num_threads(n)
        row[f"train{n}"], row[f"train_cpu{n}"] = throughput(t.train_step, b, seconds)
        row[f"infer{n}"], _ = throughput(t.infer_step, b, seconds)
        print(f"{case.config}: {n} thread(s): train {row[f'train{n}']:.2f} utt/s ({row[f'train_cpu{n}']:.2f} per CPU s), "
              f"infer {row[f'infer{n}']:.2f} utt/s", file=sys.stderr)
    return row


def _fmt(v: float) -> str:
    return f"{v:.3g}" if v < 10 else f"{v:.0f}"


def markdown(rows: list[dict], threads: list[int], seconds: float, load: tuple[float, float], command: str) -> list[str]:
    lines = section_head(SECTION, *load, f"torch {torch.__version__}", command)
    lines += [
        "Every registered torch model family with its shipped config (conf/model/), trained as `emotk train` trains "
        "it (its optimizer, batch size, head losses and auxiliary losses; paper 003's configs update their two heads "
        "one after the other) on random inputs of the config's real shapes: the table the model reads, through "
        "the config's stack / splice, cut to its segment length; data loading left out. utt/s = utterances "
        "(segments, for the segmenting configs) per wall second; per CPU s = per second of this process's user + "
        "system time, every thread counted; infer = forward in eval mode, no grad. Each figure is timed over "
        f">= {seconds:g} s and >= 2 steps after a warm-up step. x real time = audio seconds trained per wall second "
        f"on {threads[0]} thread(s).",
        "",
        "Load: other processes share the cores. Wall-clock figures drop when the load average exceeds the core "
        "count, the multi-thread ones most: a step waits for its slowest thread at every synchronization, and a "
        "thread waiting for a core stalls the others. On 1 thread the per-CPU-second figures count only the time "
        "the process ran and are the steady measure of the work a step needs (their ratio to utt/s is the share "
        "of a core the run got). On more threads they are not: OpenMP threads spin while they wait for each "
        "other, the spinning is CPU time, and under load it grows with the waiting. Compare thread counts only "
        "in a run on an idle machine.",
        "",
    ]
    head = ["config", "family", "one utterance", "batch", "params"]
    for n in threads:
        head += [f"train utt/s ({n} thr)", f"per CPU s ({n} thr)", f"infer utt/s ({n} thr)"]
    head.append(f"x real time (train, {threads[0]} thr)")
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    for r in rows:
        c = r["case"]
        p = r["params"]
        cells = [f"`{c.config}`", r["family"], c.what, str(r["batch"]), f"{p / 1e6:.2f}M" if p >= 1e6 else f"{p / 1e3:.0f}k"]
        for n in threads:
            cells += [_fmt(r[f"train{n}"]), _fmt(r[f"train_cpu{n}"]), _fmt(r[f"infer{n}"])]
        cells.append(_fmt(r[f"train{threads[0]}"] * c.seconds) if c.seconds else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum timing per figure")
    ap.add_argument("--configs", default="", help="comma-separated configs (default: all of CASES)")
    ap.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    wanted = [c for c in args.configs.split(",") if c]
    unknown = set(wanted) - {c.config for c in CASES}
    if unknown:
        ap.error(f"unknown configs {sorted(unknown)}; known: {', '.join(c.config for c in CASES)}")
    cases = [c for c in CASES if not wanted or c.config in wanted]
    command = "python benchmarks/bench_training.py --threads " + args.threads + f" --seconds {args.seconds:g}" + \
        (f" --configs {args.configs}" if wanted else "")
    load_start = os.getloadavg()[0]
    rows = [measure(c, threads, args.seconds) for c in cases]
    lines = markdown(rows, threads, args.seconds, (load_start, os.getloadavg()[0]), command)
    publish(SECTION, lines, not args.no_write)


if __name__ == "__main__":
    main()
