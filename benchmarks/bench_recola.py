"""RECOLA models on CPU: epoch time of the down/up CNN, the dilated CNN and the BLSTM at comparable
parameter counts, side by side in one run, and inference real-time factor on a 300 s recording.

    python benchmarks/bench_recola.py [--recordings 9] [--seconds 300] [--epochs 2] [--threads 1,2] [--out BENCHMARKS.md]

The data has the size of the AVEC 2016 training partition: 9 recordings of 300 s, i.e. 7500
frames of 160-d stacked fbank (4 x 40) at 40 ms.  Random features and labels: the time of an
epoch does not depend on the values.  An epoch is what ``emotk train`` does per recording with
the paper's set-up (full length, batch size 1): forward, 1 - CCC loss, backward, Adam step.
Per model and thread count the median epoch of ``--epochs`` (after one warm-up recording) is reported.

Inference: one 300 s recording of 16 kHz audio, single thread (per core); "model" is the forward pass on
ready features, "end to end" adds fbank (emotk.features.extract.compute_features), speaker
z-norm and stacking.  Real-time factor = seconds of compute / seconds of audio (lower is faster);
"x real time" is its inverse.

Writes the "## RECOLA models" section of --out (replacing it, keeping the other sections).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench_common import cpu_name, replace_section  # noqa: E402
HEADING = "## RECOLA models"

# name, registry model, params; sized to about 75k parameters each (the paper compares the CNNs
# with "a BLSTM network with approximately equal number of learnable parameters")
MODELS = [
    ("down/up CNN (arousal, width 32)", "downup_cnn", {"width": 32}),
    ("dilated CNN (width 32 -> 44 to match)", "dilated_cnn", {"width": 44}),
    ("BLSTM 2 x 32 per direction", "blstm_regressor", {"hidden_size": 32, "num_layers": 2}),
]
# the configs' own sizes, for reference
EXTRA = [
    ("down/up CNN (valence, width 128)", "downup_cnn", {"width": 128}),
    ("dilated CNN (paper: width 32)", "dilated_cnn", {"width": 32}),
    ("BLSTM 2 x 64 (conf/model/blstm_regressor.yaml)", "blstm_regressor", {"hidden_size": 64, "num_layers": 2}),
]


def epoch_seconds(model, data, epochs: int) -> list[float]:
    from emotk.training.losses import ccc_loss

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step(x, y):
        lengths = torch.tensor([x.shape[1]])
        loss = ccc_loss(model(x, lengths), y, lengths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(*data[0])  # warm-up
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for x, y in data:
            step(x, y)
        times.append(time.perf_counter() - t0)
    return times


def inference(model, seconds: float, feat_config: dict) -> tuple[float, float]:
    """(model-only, end-to-end) compute seconds for one recording of ``seconds`` s."""
    from emotk.features.cmvn import utterance_cmvn
    from emotk.features.extract import compute_features
    from emotk.features.transforms import stack_frames

    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
    model.eval()
    with torch.no_grad():
        t0 = time.perf_counter()
        feats = stack_frames(utterance_cmvn(compute_features(wav, 16000, feat_config)), 4)
        t1 = time.perf_counter()
        x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))[None]
        model(x, torch.tensor([x.shape[1]]))
        t2 = time.perf_counter()
        model(x, torch.tensor([x.shape[1]]))
        t3 = time.perf_counter()
    model_s = min(t2 - t1, t3 - t2)
    return model_s, (t1 - t0) + model_s


def run(recordings: int, seconds: float, epochs: int, threads: list[int]) -> list[dict]:
    from emotk.features.extract import load_feature_config
    from emotk.features.pipeline import resolve_feature_config
    from emotk.models import build_model

    frames = int(seconds / 0.04)
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(1, frames, 160, generator=g), torch.randn(1, frames, 1, generator=g) * 0.1)
            for _ in range(recordings)]
    feat_config = load_feature_config(resolve_feature_config("fbank40"))
    rows = []
    for group, models in (("matched", MODELS), ("configs", EXTRA)):
        for label, name, params in models:
            row = {"group": group, "label": label, "name": name, "epoch": {}}
            for n in threads:
                torch.set_num_threads(n)
                torch.manual_seed(0)
                model = build_model(name, 160, 1, **params)
                row["epoch"][n] = statistics.median(epoch_seconds(model, data, epochs))
            torch.set_num_threads(1)
            row["infer_model"], row["infer_e2e"] = inference(model, seconds, feat_config)
            row["params"] = sum(p.numel() for p in model.parameters())
            row["rf"] = model.receptive_field()
            rows.append(row)
            print(f"{label}: {row['params']} params, epoch " + ", ".join(f"{t:.2f} s ({n} thr)" for n, t in row["epoch"].items())
                  + f", inference {row['infer_model']:.3f} s model / {row['infer_e2e']:.3f} s end to end", flush=True)
    return rows


def markdown(rows: list[dict], args, threads: list[int], load_before: float, load_after: float) -> str:
    blstm = next(r for r in rows if r["group"] == "matched" and r["name"] == "blstm_regressor")
    thr = ",".join(map(str, threads))
    lines = [
        HEADING, "",
        f"Date: {datetime.date.today()}. Machine: {cpu_name()}, {os.cpu_count()} logical CPUs; torch {torch.__version__}, "
        f"Python {platform.python_version()}. Load average {load_before:.1f} before, {load_after:.1f} after "
        "(other jobs may share the machine: compare rows of one run, not runs).",
        "",
        f"Command: `python benchmarks/bench_recola.py --recordings {args.recordings} --seconds {args.seconds:g} "
        f"--epochs {args.epochs} --threads {thr}`",
        "",
        f"Training epoch = {args.recordings} recordings of {args.seconds:g} s ({int(args.seconds / 0.04)} frames of "
        "160-d stacked fbank each, the size of the AVEC 2016 training partition), full length, batch size 1, "
        f"forward + (1 - CCC) + backward + Adam step; median of {args.epochs} epochs. Inference: one "
        f"{args.seconds:g} s recording on one core; real-time factor (RTF) = compute seconds / audio seconds; "
        "end to end = fbank + z-norm + stacking + model.",
        "",
        "| model | params | receptive field | " + " | ".join(f"epoch s ({n} thr) | BLSTM / this ({n} thr)" for n in threads)
        + " | RTF model | RTF end to end | x real time (end to end) |",
        "|---|---:|---|" + "---:|---:|" * len(threads) + "---:|---:|---:|",
    ]
    for group, title in (("matched", "comparable parameter counts"), ("configs", "the configs' own sizes")):
        lines.append(f"| *{title}* |" + " |" * (5 + 2 * len(threads)))
        for r in (r for r in rows if r["group"] == group):
            rf = "whole recording" if r["rf"] is None else f"{r['rf']} frames ({r['rf'] * 0.04:.1f} s)"
            cells = " | ".join(f"{r['epoch'][n]:.2f} | {blstm['epoch'][n] / r['epoch'][n]:.1f}x" for n in threads)
            lines.append(f"| {r['label']} | {r['params'] / 1000:.0f}k | {rf} | {cells} | {r['infer_model'] / args.seconds:.1e} | "
                         f"{r['infer_e2e'] / args.seconds:.1e} | {args.seconds / r['infer_e2e']:.0f} |")
    cnns = [r for r in rows if r["group"] == "matched" and r["name"] != "blstm_regressor"]
    n = threads[0]
    speedups = ", ".join(f"{r['label'].split(' (')[0]} {blstm['epoch'][n] / r['epoch'][n]:.1f}x" for r in cnns)
    met = all(blstm["epoch"][n] / r["epoch"][n] >= 20 for r in cnns)
    lines += [
        "",
        f"At comparable parameter counts on {n} thread(s) the CNNs train {speedups} faster per epoch than the BLSTM: "
        f"the issue's goal of at least 20x on CPU is {'met' if met else 'NOT met'}. "
        "At equal parameter counts the three models do about the same arithmetic per 40 ms frame (multiply-adds, "
        "forward: BLSTM 2 x 32 about 74k, dilated CNN width 44 about 73k, down/up CNN width 32 about 32k because "
        "its deeper layers run at 1/3 to 1/81 of the frame rate), and one CPU core runs the LSTM's thousands of "
        "small sequential matrix products nearly as efficiently as the convolutions; the ratio is bounded by the "
        "arithmetic ratio times the efficiency ratio. Paper 000's 13 s against 10 minutes (about 46x) is a GPU "
        "figure, where the convolutions process all frames of a recording in parallel and the LSTM cannot.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recordings", type=int, default=9)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", default="1,2", help="thread counts for the epoch times, e.g. 1,2")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    load_before = os.getloadavg()[0]
    rows = run(args.recordings, args.seconds, args.epochs, threads)
    text = markdown(rows, args, threads, load_before, os.getloadavg()[0])
    replace_section(args.out, HEADING, text)
    print(text)


if __name__ == "__main__":
    main()
