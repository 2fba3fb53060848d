"""Seconds per ``emotk tune`` trial, beside one plain ``emotk train`` of the same config.

Whole processes (imports counted), one after the other, on one small synthetic data dir: random
26-dim MFCC-like features at 10 ms frames (the input of paper 003's LoM, ``conf/model/lom.yaml``),
speakers with their own offsets, 5-level valence and arousal labels. Runs:

- ``emotk train`` of the config as shipped (its own batch size and epochs): the reference;
- ``emotk tune`` of the config over the search space (default: the IEMOCAP recipe's, paper 003's
  parameters), ``--trials N``, TPE sampler and median pruning as the space file says;
- the same study with ``pruner: none`` (a copy of the space file).

Every run gets ``--set train.num_threads=1`` (as the recipes run them). Per run: wall and CPU
seconds (user + system of the process), trials complete / pruned, epochs trained over all trials
(each trial's train.log), seconds per trial and per epoch trained.

    python benchmarks/bench_tune.py [--config lom] [--space recipes/iemocap/conf/tune_elor.yaml] [--trials 16]
                                    [--utts 16] [--seconds 4] [--no-write]

Writes the "## Hyper-parameter search: seconds per tune trial" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_common import EMOTK, publish, run_process, section_head  # noqa: E402

SECTION = "## Hyper-parameter search: seconds per tune trial"
SPEAKERS = 4
LEVELS = ("1", "2", "3", "4", "5")


def write_set(path: Path, utts: list[str], frames: int, dim: int, seed: int) -> Path:
    """A data dir of ``utts`` (``spkNN-...``) with 5-level valence and arousal labels and random features that
    carry them (a shift of their first and second half by the level), so trials differ in what they learn."""
    from emotk.data.ark import write_ark_scp
    from emotk.data.datadir import read_table, write_data_dir

    rng = np.random.default_rng(seed)
    arks = path.parent / f"{path.name}_arks"
    arks.mkdir(parents=True, exist_ok=True)
    valence, arousal = rng.integers(5, size=len(utts)), rng.integers(5, size=len(utts))

    def mats():
        for u, v, a in zip(utts, valence, arousal):
            x = int(u[3:5]) + rng.standard_normal((frames, dim), dtype=np.float32)
            x[:, : dim // 2] += 0.5 * v
            x[:, dim // 2:] += 0.5 * a
            yield u, x

    rows = write_ark_scp(arks / "feats.ark", arks / "feats.scp", mats())
    write_data_dir(path, {"utt2spk": {u: u.split("-")[0] for u in utts},
                          "utt2valence5": {u: LEVELS[v] for u, v in zip(utts, valence)},
                          "utt2arousal5": {u: LEVELS[a] for u, a in zip(utts, arousal)},
                          "utt2num_frames": rows, "feats.scp": read_table(arks / "feats.scp")},
                   {"frame_shift": "0.01"})
    return path


def epochs_trained(train_log: Path) -> int:
    if not train_log.is_file():
        return 0
    return sum(1 for line in train_log.read_text(encoding="utf-8").splitlines() if line.startswith("epoch="))


def study_counts(exp: Path) -> dict:
    """Trials by state and epochs trained, from the study dir (trials.tsv and each trial's train.log)."""
    rows = [line.split("\t") for line in (exp / "trials.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    states = [r[1] for r in rows]
    return {"trials": len(rows), "complete": states.count("complete"), "pruned": states.count("pruned"),
            "epochs": sum(epochs_trained(exp / r[3] / "train.log") for r in rows)}


def timed(label: str, cmd: list) -> dict:
    load = os.getloadavg()[0]
    wall, cpu = run_process(cmd)
    print(f"{label}: {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr)
    return {"label": label, "wall": wall, "cpu": cpu, "load": (load, os.getloadavg()[0])}


def run(args, work: Path) -> list[dict]:
    frames, dim = int(round(args.seconds * 100)), 26
    train = write_set(work / "train", [f"spk{i % SPEAKERS:02d}-u{i:04d}" for i in range(args.utts)], frames, dim, 1)
    valid = write_set(work / "valid", [f"spk{10 + i % 2:02d}-v{i:04d}" for i in range(args.utts // 2)], frames, dim, 2)
    common = ["--train", train, "--valid", valid, "--set", "train.num_threads=1"]
    space = yaml.safe_load(Path(args.space).read_text(encoding="utf-8"))
    no_pruning = work / "space_no_pruning.yaml"
    no_pruning.write_text(yaml.safe_dump({**space, "pruner": "none"}, sort_keys=False), encoding="utf-8")

    startup = timed("start-up", [sys.executable, "-c", "import emotk.cli, emotk.training.loop, emotk.tuning, optuna"])
    ref = timed("emotk train", EMOTK + ["train", "--config", args.config, "--exp", work / "train_exp", *common])
    ref.update(trials=1, complete=1, pruned=0, epochs=epochs_trained(work / "train_exp" / "train.log"),
               startup_cpu=startup["cpu"])
    rows = [ref]
    for label, space_file, exp in ((f"emotk tune, TPE, {_pruner(space)}", args.space, work / "tune"),
                                   ("emotk tune, TPE, no pruning", no_pruning, work / "tune_no_pruning")):
        row = timed(label, EMOTK + ["tune", "--config", args.config, "--space", space_file, "--trials",
                                    str(args.trials), "--exp", exp, *common])
        row.update(study_counts(exp), startup_cpu=startup["cpu"])
        rows.append(row)
    return rows


def _pruner(space: dict) -> str:
    p = space.get("pruner", {})
    if p == "none":
        return "no pruning"
    p = {"n_startup_trials": 5, "n_warmup_steps": 1, **(p or {})}
    return f"median pruning (after {p['n_startup_trials']} trials, {p['n_warmup_steps']} warm-up epoch(s))"


def markdown(rows: list[dict], args, command: str) -> list[str]:
    import optuna
    import torch

    loads = [x for r in rows for x in r["load"]]
    lines = section_head(SECTION, loads[0], loads[-1], f"torch {torch.__version__}, optuna {optuna.__version__}",
                         command)
    space = yaml.safe_load(Path(args.space).read_text(encoding="utf-8"))
    sampler = {"seed": 0, "n_startup_trials": 10, **(space.get("sampler") or {})}
    lines += [
        f"Config `{args.config}`, search space `{args.space}` (parameters: {', '.join(space['params'])}); TPE "
        f"sampler, seed {sampler['seed']}, its first {sampler['n_startup_trials']} trials drawn at random. Data: "
        f"{args.utts} training utterances of {args.seconds:g} s ({SPEAKERS} speakers) and {args.utts // 2} valid "
        "ones, random 26-dim features at 10 ms shifted by their 5-level valence and arousal labels. Whole "
        "processes, one thread "
        "(`--set train.num_threads=1`); the plain train uses the config's own hyper-parameters, each trial those "
        "it drew (epochs and batch size among them), so seconds per epoch trained are the fairer comparison.",
        "",
        "Load: the wall-clock figures stretch when other processes take the cores; CPU seconds (user + system of "
        "the whole process) count only the time the process ran and are the steadier figure to compare.",
        "",
        f"Start-up (imports of the CLI, trainer, tuner and optuna, one process): {rows[0]['startup_cpu']:.1f} CPU s, "
        "counted once per process; the last column takes it off.",
        "",
        "| run | trials (complete / pruned) | epochs trained | wall s | CPU s | wall s per trial | CPU s per trial "
        "| CPU s per epoch, net of start-up | load before / after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['label']} | {r['trials']} ({r['complete']} / {r['pruned']}) | {r['epochs']} | "
                     f"{r['wall']:.1f} | {r['cpu']:.1f} | {r['wall'] / r['trials']:.1f} | {r['cpu'] / r['trials']:.1f} | "
                     f"{per_epoch(r):.2f} | {r['load'][0]:.1f} / {r['load'][1]:.1f} |")
    ref, pruned, full = rows
    lines += ["", f"Net of start-up, an epoch trained inside a study costs {per_epoch(pruned) / per_epoch(ref):.2f}x "
              f"(with pruning) and {per_epoch(full) / per_epoch(ref):.2f}x (without) the CPU time of an epoch of the "
              f"plain train (trials draw other batch sizes; optuna's bookkeeping is in it); pruning stopped "
              f"{pruned['pruned']} of {pruned['trials']} trials and saved {full['epochs'] - pruned['epochs']} of "
              f"{full['epochs']} epochs ({100 * (1 - pruned['cpu'] / full['cpu']):.0f} % of the CPU time) in this run. The "
              f"two studies draw the same first {sampler['n_startup_trials']} trials (TPE's random start-up, one seed); "
              "later ones differ, since TPE learns from the pruned trials too, and epochs differ in cost with the batch "
              "size drawn, so epochs saved and CPU time saved need not agree."]
    return lines


def per_epoch(r: dict) -> float:
    """CPU seconds per epoch trained, the process's start-up taken off."""
    return (r["cpu"] - r["startup_cpu"]) / max(r["epochs"], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="lom", help="model config (a name in conf/model/ or a path)")
    ap.add_argument("--space", default="recipes/iemocap/conf/tune_elor.yaml", help="search space YAML")
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--utts", type=int, default=16, help="training utterances (the valid set has half as many)")
    ap.add_argument("--seconds", type=float, default=4.0, help="utterance duration")
    ap.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    args = ap.parse_args()
    if not Path(args.space).is_file():
        ap.error(f"no search space file {args.space}")
    command = (f"python benchmarks/bench_tune.py --config {args.config} --space {args.space} --trials {args.trials} "
               f"--utts {args.utts} --seconds {args.seconds:g}")
    work = Path(tempfile.mkdtemp(prefix="bench_tune."))
    try:
        rows = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    publish(SECTION, markdown(rows, args, command), not args.no_write)


if __name__ == "__main__":
    main()
