"""Cost of a training run's provenance record, beside the cost of reading its data.

An EmoDB-sized fold (535 utterances, 1.5 to 8.5 s, 40-bin fbank at 10 ms, 10 speakers with
CMVN stats; 428 train, 107 valid) is written to a temporary dir; ``build_record`` (which digests
every feature matrix and CMVN entry the run reads) is timed against reading and z-normalizing the
same features with ``emotk.features.cmvn.load_normalized``, the reference (what the trainer does
anyway).  Best of ``--repeats`` runs each, warm page cache.

    python benchmarks/bench_provenance.py [--repeats 3] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench_common import cpu_name, replace_section  # noqa: E402

from emotk.data.ark import write_ark_scp  # noqa: E402
from emotk.data.datadir import read_table, write_data_dir  # noqa: E402
from emotk.features.cmvn import compute_cmvn_data_dir, load_normalized  # noqa: E402
from emotk.training.provenance import build_record  # noqa: E402

SECTION = "## Provenance record"
EMOS = ("ang", "bor", "dis", "fea", "hap", "neu", "sad")


def write_dir(path: Path, utts: dict[str, np.ndarray]) -> Path:
    arks = path.parent / "arks"
    arks.mkdir(parents=True, exist_ok=True)
    rows = write_ark_scp(arks / f"{path.name}.ark", arks / f"{path.name}.scp", sorted(utts.items()))
    utt2spk = {u: u.split("-")[0] for u in utts}
    write_data_dir(path, {"utt2spk": utt2spk, "utt2emo": {u: EMOS[i % 7] for i, u in enumerate(sorted(utts))},
                          "utt2num_frames": rows, "feats.scp": read_table(arks / f"{path.name}.scp")},
                   {"frame_shift": "0.01"})
    compute_cmvn_data_dir(path, arks / f"{path.name}.cmvn.ark")
    return path


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    spks = [f"spk{i:02d}" for i in range(10)]
    utts = {f"{spks[i % 10]}-{i:04d}": rng.normal(size=(int(rng.uniform(150, 850)), 40)).astype(np.float32)
            for i in range(535)}
    cfg = {"model": {"name": "cnn_lstm2d_small", "params": {}},
           "features": {"cmvn": "speaker", "stack": 1, "splice": [0, 0], "max_frames": None},
           "task": {"kind": "class", "label_file": "utt2emo", "label_dims": None, "loss": "ce", "class_weights": True},
           "train": {"seed": 1, "epochs": 1, "patience": 1, "num_threads": 1, "device": "cpu"}}
    with tempfile.TemporaryDirectory() as tmp:
        train = write_dir(Path(tmp) / "train", {u: m for u, m in utts.items() if u.split("-")[0] not in ("spk08", "spk09")})
        valid = write_dir(Path(tmp) / "valid", {u: m for u, m in utts.items() if u.split("-")[0] in ("spk08", "spk09")})
        frames = sum(m.shape[0] for m in utts.values())
        mb = sum(m.nbytes for m in utts.values()) / 2**20
        t_record = best_of(args.repeats, lambda: build_record(cfg, train, valid))
        t_read = best_of(args.repeats, lambda: [sum(1 for _ in load_normalized(d)) for d in (train, valid)])
    text = (f"{SECTION}\n\n"
            f"`build_record` (digests of every feature matrix and CMVN entry a run reads, labels, ids) on an "
            f"EmoDB-sized fold: 535 utterances, {frames} frames x 40 dims ({mb:.0f} MiB float32), 10 speakers; "
            f"reference: reading and z-normalizing the same features (`load_normalized`, what the trainer does "
            f"anyway). Best of {args.repeats}, warm page cache.\n\n"
            "| step | seconds |\n|---|---:|\n"
            f"| provenance record (`build_record`) | {t_record:.3f} |\n"
            f"| reference: read + z-normalize features | {t_read:.3f} |\n\n"
            f"Machine: {cpu_name()}; {datetime.date.today().isoformat()}. "
            f"Command: `python benchmarks/bench_provenance.py --repeats {args.repeats}`.\n")
    replace_section(args.out, SECTION, text)
    print(text)


if __name__ == "__main__":
    main()
