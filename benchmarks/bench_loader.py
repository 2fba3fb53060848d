"""Streamed training data (``emotk.training.dataset``) against the in-memory trainer it replaced.

The reference is the trainer at commit ``--old-rev`` (default 54648ce), which held every utterance of
a data set in memory after the feature pipeline (z-norm, splice). The script checks that revision out
in a git worktree (removed at the end) and runs both trainers as whole processes, one after the
other, on the same data dirs, with the same venv python: ``python -c 'from emotk.cli import main;
main()' train ...``, the old one with ``PYTHONPATH=<worktree>`` (which ``emotk`` each imports is
checked before any run). Each trainer reads its own revision's config (``conf/model/<name>.yaml``:
``features:``/``task:`` sections then, ``inputs:``/``heads:`` now) with the same ``--set`` overrides.

Data (random but valid 40-dim fbank: finite, per-speaker offsets, ``cmvn.scp`` per speaker, 10 ms
frames, ``utt2num_frames``):

- ``<H>h``: H hours of 3-s utterances (1200 per hour, 10 speakers, 4 classes) and a 40-utterance
  valid set (the same for every size);
- ``emodb``: 535 utterances of 1.5 to 3.9 s (mean about 2.7 s), 10 speakers, 7 classes; speaker 9
  is the valid set, the other 9 train.

Figures per process: peak RSS (``ru_maxrss`` from ``wait4``: the trainer's own high-water mark; no
DataLoader workers, ``train.num_workers`` 0, the default), wall and CPU time, and the epoch seconds the
trainer records in ``checkpoints/last.pt`` (training + validation pass, unrounded; the old trainer
loads and splices everything before its first epoch, outside that timer, the new one reads inside
it, so both figures are shown). Each measurement is repeated ``--repeats`` times, old and new
interleaved; the minimum is reported.

    python benchmarks/bench_loader.py [--hours 1,10] [--repeats 2] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_common import cpu_name, replace_section  # noqa: E402

HEADING = "## Streamed training data against the in-memory trainer"
EMOS = ("ang", "bor", "dis", "fea", "hap", "neu", "sad")
RUN = "from emotk.cli import main; main()"
DATA_EPOCHS = 3
SWEEP = ("model.params.lstm_size=8", "train.batch_size=50")  # memory against corpus size: an epoch of 10 h in minutes

# The data path alone, in one process per trainer: argv config, train dir, batch size, epochs.
# Prints {"setup": CPU s, "epochs": [CPU s per epoch of padded batches]}.
DATA_OLD = """
import json, sys, time, numpy as np
from emotk.config import load_config
from emotk.training.data import load_dataset, train_batches
cfg = load_config(sys.argv[1], [])
t = time.process_time(); ds = load_dataset(sys.argv[2], cfg["features"], cfg["task"]); setup = time.process_time() - t
epochs = []
for e in range(int(sys.argv[4])):
    t = time.process_time()
    for b in train_batches(ds, int(sys.argv[3]), np.random.default_rng(e), cfg["features"]["max_frames"]):
        pass
    epochs.append(time.process_time() - t)
print(json.dumps({"setup": setup, "epochs": epochs}))
"""
DATA_NEW = """
import json, sys, time, numpy as np
from emotk.config import load_config, resolve_config
from emotk.training.dataset import SerDataset, loader, train_batches
from emotk.training.loop import open_data
cfg = resolve_config(load_config(sys.argv[1], []))
t = time.process_time(); ds = SerDataset(*open_data(cfg, sys.argv[2]), cfg["segments"]); setup = time.process_time() - t
epochs = []
for e in range(int(sys.argv[4])):
    t = time.process_time()
    for b in loader(ds, train_batches(ds, int(sys.argv[3]), np.random.default_rng(e), cfg["train"]["max_frames"])):
        pass
    epochs.append(time.process_time() - t)
print(json.dumps({"setup": setup, "epochs": epochs}))
"""


# Data ------------------------------------------------------------------------------------------

def write_set(path: Path, utts: list[tuple[str, int]], classes: int, seed: int) -> Path:
    """A data dir of ``(utt, frames)`` with random fbank-like features and per-speaker CMVN stats.
    Utterance ids start with the speaker id (``spkNN-``)."""
    from emotk.data.ark import write_ark_scp
    from emotk.data.datadir import read_table, write_data_dir
    from emotk.features.cmvn import compute_cmvn_data_dir

    rng = np.random.default_rng(seed)
    arks = path.parent / f"{path.name}_arks"
    arks.mkdir(parents=True, exist_ok=True)

    def mats():
        for utt, n in utts:
            offset = int(utt[3:5])  # the speaker's mean, so speaker z-norm has work to do
            yield utt, offset + 2.0 * rng.standard_normal((n, 40), dtype=np.float32)

    rows = write_ark_scp(arks / "feats.ark", arks / "feats.scp", mats())
    write_data_dir(path, {"utt2spk": {u: u.split("-")[0] for u, _ in utts},
                          "utt2emo": {u: EMOS[i % classes] for i, (u, _) in enumerate(utts)},
                          "utt2num_frames": rows, "feats.scp": read_table(arks / "feats.scp")},
                   {"frame_shift": "0.01"})
    compute_cmvn_data_dir(path, arks / "cmvn.ark")
    return path


def make_data(work: Path, hours: list[float]) -> dict[str, tuple[Path, Path, float]]:
    """``{name: (train dir, valid dir, hours of training audio)}``."""
    out = {}
    valid = write_set(work / "valid3s", [(f"spk{10 + i % 2:02d}-v{i:05d}", 300) for i in range(40)], 4, 1)
    for h in hours:
        n = int(round(h * 1200))
        out[f"{h:g}h"] = (write_set(work / f"train{h:g}h", [(f"spk{i % 10:02d}-u{i:06d}", 300) for i in range(n)],
                                    4, 2), valid, n * 3 / 3600)
    rng = np.random.default_rng(3)
    emodb = [(f"spk{i % 10:02d}-e{i:04d}", int(rng.integers(150, 391))) for i in range(535)]
    train = write_set(work / "emodb_train", [u for u in emodb if not u[0].startswith("spk09")], 7, 4)
    dev = write_set(work / "emodb_valid", [u for u in emodb if u[0].startswith("spk09")], 7, 5)
    out["emodb"] = (train, dev, sum(n for u, n in emodb if not u.startswith("spk09")) / 100 / 3600)
    return out


# Runs ------------------------------------------------------------------------------------------

@dataclass
class Result:
    wall: float  # seconds, whole process
    cpu: float  # user + system CPU seconds of the process (steadier than wall time on a shared machine)
    rss_mb: float  # peak RSS of the trainer process
    epoch_s: list[float]  # per epoch, as the trainer recorded it
    load: tuple[float, float]  # 1-minute load average before, after


def env_for(tree: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    env["OMP_NUM_THREADS"] = "1"
    return env


def check_import(tree: Path, cwd: Path, env: dict) -> None:
    """The interpreter, run as the trainer is, imports ``emotk`` from ``tree``."""
    got = subprocess.run([sys.executable, "-c", "import emotk; print(emotk.__file__)"], cwd=cwd, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    if Path(got).resolve() != (tree / "emotk" / "__init__.py").resolve():
        sys.exit(f"bench_loader: expected emotk from {tree}, the interpreter imports {got}")


def train_once(tree: Path, env: dict, config: str, train: Path, valid: Path, exp: Path, sets: list[str],
               cwd: Path) -> Result:
    import torch

    shutil.rmtree(exp, ignore_errors=True)
    argv = [sys.executable, "-c", RUN, "train", "--config", str(tree / "conf" / "model" / f"{config}.yaml"),
            "--train", str(train), "--valid", str(valid), "--exp", str(exp)]
    for s in sets:
        argv += ["--set", s]
    load0 = os.getloadavg()[0]
    with open(exp.with_suffix(".log"), "w") as log:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(p.pid, 0)
        except BaseException:
            p.kill()
            p.wait()
            raise
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        tail = exp.with_suffix(".log").read_text().strip().splitlines()[-5:]
        sys.exit(f"bench_loader: {' '.join(argv)} failed ({p.returncode}):\n" + "\n".join(tail))
    history = torch.load(exp / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["history"]
    return Result(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, [h["seconds"] for h in history], (load0, os.getloadavg()[0]))


def data_path_once(tree: Path, env: dict, snippet: str, config: str, train: Path, batch: int, epochs: int,
                   cwd: Path) -> dict:
    argv = [sys.executable, "-c", snippet, str(tree / "conf" / "model" / f"{config}.yaml"), str(train), str(batch),
            str(epochs)]
    p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bench_loader: data path of {tree} failed:\n" + "\n".join(p.stderr.strip().splitlines()[-5:]))
    return json.loads(p.stdout.strip().splitlines()[-1])


def mem_available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("inf")


# Report ----------------------------------------------------------------------------------------

def best(results: list[Result]) -> dict:
    return {"wall": min(r.wall for r in results), "cpu": min(r.cpu for r in results),
            "rss": min(r.rss_mb for r in results),
            "epoch": min(float(np.median(r.epoch_s)) for r in results),
            "load": [x for r in results for x in r.load]}


def section(rows: list[dict], data_rows: list[dict], args, loads: list[float], old_rev: str) -> str:
    import torch

    cmd = (f"python benchmarks/bench_loader.py --hours {args.hours} --repeats {args.repeats} "
           f"--emodb-repeats {args.emodb_repeats} --emodb-epochs {args.emodb_epochs} --write")
    lines = [
        HEADING, "",
        f"Date: {datetime.date.today()}. Machine: {cpu_name()}, {os.cpu_count()} logical CPUs shared with other "
        f"jobs; torch {torch.__version__}, Python {platform.python_version()}; 1-minute load average "
        f"{min(loads):.1f} to {max(loads):.1f} during the runs (compare rows of one run, not runs).", "",
        f"Command: `{cmd}`", "",
        f"`emotk train` as a whole process, today's streamed loader (`new`: `SerDataset` + `DataLoader`, features "
        f"read from the ark, z-normalized and spliced per batch, `train.num_workers` 0) against the trainer of "
        f"commit {old_rev} (`old`: the whole set z-normalized and spliced into memory before the first epoch), "
        f"run from a git worktree of that commit with the same python (`PYTHONPATH=<worktree>`), each with its "
        f"own revision's `conf/model/<config>.yaml` and the same `--set` overrides; one thread "
        f"(`train.num_threads` 1, the default). Data: random but valid 40-dim fbank at 10 ms with per-speaker "
        f"CMVN stats; `Nh`: N hours of 3-s utterances, 10 speakers, 4 classes, valid 40 utterances; `emodb`: "
        f"535 utterances of 1.5 to 3.9 s (mean 2.7 s), 10 speakers, 7 classes, one speaker (53) as valid, "
        f"the rest trains. Peak RSS: `ru_maxrss` of the trainer process (`wait4`); CPU s: its user + system time "
        f"(one thread, so the figure least disturbed by other jobs). Epoch s: the epoch time the "
        f"trainer records (training + validation pass; median over epochs); the old trainer's loading and "
        f"splicing happen before its first epoch and count only in the process wall time. utt/s: training "
        f"utterances x epochs / seconds. Minimum of {args.repeats} runs per row ({args.emodb_repeats} for `emodb`), "
        f"old and new interleaved.", "",
        "| data | train utts (audio) | config, overrides | trainer | peak RSS MB | epoch s | train utt/s (epoch) "
        "| process wall s | train utt/s (process) | process CPU s | train utt per CPU s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b = r["best"]
        lines.append(f"| {r['data']} | {r['n']} ({r['hours']:.2f} h) | `{r['config']}` {', '.join(r['sets'])} "
                     f"| {r['trainer']} | {b['rss']:.0f} | {b['epoch']:.2f} | {r['n'] / b['epoch']:.1f} "
                     f"| {b['wall']:.1f} | {r['n'] * r['epochs'] / b['wall']:.1f} | {b['cpu']:.1f} "
                     f"| {r['n'] * r['epochs'] / b['cpu']:.1f} |")
    lines += ["", *conclusions(rows), "",
              f"The data path alone (no model; same command, one process per trainer and data set): CPU seconds of "
              f"the setup (old: read, z-normalize and splice the whole set into memory; new: open the tables) and of "
              f"one epoch of padded training batches (new: read, z-normalize, splice and pad each batch; old: pad "
              f"from memory); minimum over {DATA_EPOCHS} epochs x {args.repeats} runs.", "",
              "| data | config | batch | trainer | setup CPU s | CPU s per epoch | ms per utterance per epoch |",
              "|---|---|---:|---|---:|---:|---:|"]
    for r in data_rows:
        lines.append(f"| {r['data']} | `{r['config']}` | {r['batch']} | {r['trainer']} | {r['setup']:.3f} "
                     f"| {r['epoch']:.3f} | {1000 * r['epoch'] / r['n']:.3f} |")
    return "\n".join(lines) + "\n"


def conclusions(rows: list[dict]) -> list[str]:
    out = []
    by = {(r["data"], r["config"], tuple(r["sets"]), r["trainer"]): r for r in rows}
    sweep = [(r["data"], tuple(r["sets"])) for r in rows
             if r["trainer"] == "new" and r["config"] == "ldnn" and SWEEP[0] in r["sets"]]
    if len(sweep) >= 2:
        (lo, sets), (hi, _) = sweep[0], sweep[-1]
        for t in ("new", "old"):
            a, b = by.get((lo, "ldnn", sets, t)), by.get((hi, "ldnn", sets, t))
            if a and b:
                out.append(f"- Peak RSS, {t}, LDNN splice 10/5 ({', '.join(sets)}): {a['best']['rss']:.0f} MB at "
                           f"{lo}, {b['best']['rss']:.0f} MB at {hi} (x{b['best']['rss'] / a['best']['rss']:.2f}).")
    e_new, e_old = ([r for r in rows if r["data"] == "emodb" and r["trainer"] == t] or [None] for t in ("new", "old"))
    e_new, e_old = e_new[0], e_old[0]
    if e_new and e_old:
        ep = e_new["best"]["epoch"] / e_old["best"]["epoch"]
        wall = e_new["best"]["wall"] / e_old["best"]["wall"]
        cpu = e_new["best"]["cpu"] / e_old["best"]["cpu"]
        out.append(f"- EmoDB-sized, cnn_lstm2d_small: new/old epoch time {ep:.2f}, process wall time {wall:.2f}, "
                   f"process CPU time {cpu:.2f} (the issue's goal: utterances/s no more than 10 % below the old "
                   f"path, i.e. a ratio <= 1.11: {'met' if max(ep, wall, cpu) <= 1 / 0.9 else 'NOT met'}).")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", default="1,10", help="training set sizes for the LDNN runs, comma-separated")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--emodb-epochs", type=int, default=5)
    ap.add_argument("--emodb-repeats", type=int, default=3)
    ap.add_argument("--paper-ldnn", action=argparse.BooleanOptionalAction, default=True,
                    help="also train the LDNN at paper sizes (LSTM 128) for one epoch on the smallest size")
    ap.add_argument("--old-rev", default="54648ce")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir, removed at the end")
    ap.add_argument("--write", action="store_true", help="replace this section of BENCHMARKS.md")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench_loader: terminated"))  # run the clean-up below
    hours = [float(h) for h in args.hours.split(",")]

    work = Path(tempfile.mkdtemp(prefix="bench_loader.", dir=args.workdir))
    old_tree = work / "old_tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old_tree), args.old_rev],
                   check=True, capture_output=True)
    try:
        trees = {"old": (old_tree, env_for(old_tree)), "new": (ROOT, env_for(None))}
        for tree, env in trees.values():
            check_import(tree, work, env)
        print("writing data ...", file=sys.stderr)
        data = make_data(work, hours)
        small = f"{hours[0]:g}h"
        plan = [(f"{h:g}h", "ldnn", [*SWEEP, "train.epochs=1"], 1) for h in hours]
        if args.paper_ldnn:
            plan.append((small, "ldnn", ["train.epochs=1"], 1))
        plan.append(("emodb", "cnn_lstm2d_small", [f"train.epochs={args.emodb_epochs}", "train.patience=100"],
                     args.emodb_epochs))
        rows, loads = [], []
        for name, config, sets, epochs in plan:
            train, valid, h = data[name]
            n = sum(1 for _ in open(train / "utt2spk"))
            results = {"old": [], "new": []}
            for rep in range(args.emodb_repeats if name == "emodb" else args.repeats):
                for trainer in ("old", "new"):
                    if trainer == "old" and name != "emodb":
                        need = n * 300 * 40 * 16 * 4 / 2**30 * 1.3 + 2  # spliced float32, with slack
                        if mem_available_gb() < need:
                            print(f"skipping old on {name}: {mem_available_gb():.1f} GB available, about {need:.0f} "
                                  f"needed", file=sys.stderr)
                            continue
                    tree, env = trees[trainer]
                    r = train_once(tree, env, config, train, valid, work / f"exp_{trainer}", sets, work)
                    print(f"{name} {config} {' '.join(sets)} {trainer} rep {rep}: wall {r.wall:.1f} s, "
                          f"cpu {r.cpu:.1f} s, rss {r.rss_mb:.0f} MB, epochs {[round(s, 2) for s in r.epoch_s]}, load {r.load}",
                          file=sys.stderr)
                    results[trainer].append(r)
                    loads += r.load
            for trainer in ("new", "old"):
                if results[trainer]:
                    rows.append({"data": name, "n": n, "hours": h, "config": config, "sets": sets, "epochs": epochs,
                                 "trainer": trainer, "best": best(results[trainer])})
        data_rows = []
        for name, config, batch in ((small, "ldnn", 10), ("emodb", "cnn_lstm2d_small", 16)):
            train, n = data[name][0], sum(1 for _ in open(data[name][0] / "utt2spk"))
            results = {"old": [], "new": []}
            for rep in range(args.repeats):
                for trainer, snippet in (("old", DATA_OLD), ("new", DATA_NEW)):
                    tree, env = trees[trainer]
                    results[trainer].append(data_path_once(tree, env, snippet, config, train, batch, DATA_EPOCHS, work))
                    print(f"data path {name} {trainer}: {results[trainer][-1]}", file=sys.stderr)
            for trainer in ("new", "old"):
                data_rows.append({"data": name, "config": config, "batch": batch, "trainer": trainer, "n": n,
                                  "setup": min(r["setup"] for r in results[trainer]),
                                  "epoch": min(e for r in results[trainer] for e in r["epochs"])})
        text = section(rows, data_rows, args, loads, args.old_rev)
        print(text)
        if args.write:
            replace_section(ROOT / "BENCHMARKS.md", HEADING, text)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
