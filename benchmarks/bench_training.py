"""Training throughput on CPU: utterances per second of forward + backward + Adam step.

Models are built from the configs in conf/model/ on random tensors of realistic sizes:
the paper-faithful 2D CNN-LSTM on 128 x 251 log-mel images (paper 004: 8 s at hop 512), the
small CNN-LSTM and the LDNNs on 3 s utterances (300 frames of 40 log-mels, spliced as their
configs say: 10 + 1 + 5 frames = 640 dims for the paper LDNN, 2 + 1 + 2 = 200 for the small one).
Inference throughput (forward only, no grad) is measured alongside as the reference.

    python benchmarks/bench_training.py [--threads 1,2] [--batch 16] [--seconds 3] [--out BENCHMARKS.md]

Writes the table into the "## Training throughput (CPU)" section of --out (replacing it, keeping
the other sections) and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench_common import cpu_name, replace_section  # noqa: E402

from emotk.config import load_config  # noqa: E402
from emotk.models import build_model  # noqa: E402

SECTION = "## Training throughput (CPU)"
# (config, frames, input dim, classes, what the input is)
CASES = [
    ("cnn_lstm2d", 251, 128, 7, "128-bin log-mel, 251 frames (paper 004)"),
    ("cnn_lstm2d_small", 300, 40, 7, "40-bin log-mel, 300 frames (3 s)"),
    ("ldnn", 300, 640, 6, "40 log-mel x 16 spliced, 300 frames (paper 002)"),
    ("ldnn_small", 300, 200, 7, "40 log-mel x 5 spliced, 300 frames"),
]


def throughput(model, x, lengths, y, train: bool, seconds: float) -> float:
    """Utterances per second, timed over at least ``seconds`` after one warm-up step."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        if train:
            model.train()
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x, lengths), y).backward()
            opt.step()
        else:
            model.eval()
            with torch.no_grad():
                model(x, lengths)

    step()
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds and n >= 2:
            return n * len(x) / dt


def run(threads: list[int], batch: int, seconds: float) -> list[dict]:
    rows = []
    for conf, frames, dim, classes, what in CASES:
        cfg = load_config(ROOT / "conf" / "model" / f"{conf}.yaml")
        torch.manual_seed(0)
        model = build_model(cfg["model"]["name"], dim, classes, **cfg["model"]["params"])
        x = torch.randn(batch, frames, dim)
        lengths = torch.full((batch,), frames, dtype=torch.long)
        y = torch.randint(0, classes, (batch,))
        row = {"config": conf, "input": what, "params": sum(p.numel() for p in model.parameters())}
        for t in threads:
            torch.set_num_threads(t)
            row[f"train{t}"] = throughput(model, x, lengths, y, True, seconds)
            row[f"infer{t}"] = throughput(model, x, lengths, y, False, seconds)
            print(f"{conf}: {t} thread(s): train {row[f'train{t}']:.1f} utt/s, infer {row[f'infer{t}']:.1f} utt/s",
                  file=sys.stderr)
        rows.append(row)
    return rows


def markdown(rows: list[dict], threads: list[int], batch: int, seconds: float, load_before: float) -> str:
    load_after = os.getloadavg()[0]
    busy = max(load_before, load_after) > (os.cpu_count() or 1) * 0.75
    lines = [
        SECTION,
        "",
        f"Date: {datetime.date.today().isoformat()}. Machine: {cpu_name()}, {os.cpu_count()} logical CPUs; "
        f"torch {torch.__version__}, Python {platform.python_version()}. 1-minute load average {load_before:.1f} "
        f"before, {load_after:.1f} after"
        + (": the machine was busy with other jobs, so the figures are low and noisy, the multi-thread ones "
           "most of all (threads wait for cores)." if busy else "."),
        "",
        f"Utterances per second, batch {batch}, all utterances full length, random inputs; train = forward + "
        f"backward + Adam step, infer = forward only (reference); each figure timed over >= {seconds:g} s after a "
        "warm-up step.",
        "",
        "Command: `python benchmarks/bench_training.py --threads " + ",".join(map(str, threads))
        + f" --batch {batch} --seconds {seconds:g}`",
        "",
    ]
    head = ["config", "input", "params"]
    for t in threads:
        head += [f"train utt/s ({t} thr)", f"infer utt/s ({t} thr)"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
    for r in rows:
        cells = [f"`{r['config']}`", r["input"], f"{r['params'] / 1e3:.0f}k"]
        for t in threads:
            cells += [f"{r[f'train{t}']:.1f}", f"{r[f'infer{t}']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum timing per figure")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    load_before = os.getloadavg()[0]
    rows = run(threads, args.batch, args.seconds)
    text = markdown(rows, threads, args.batch, args.seconds, load_before)
    replace_section(args.out, SECTION, text)
    print(text)


if __name__ == "__main__":
    main()
