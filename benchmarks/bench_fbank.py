"""Fbank extraction speed and memory: emotk vs lhotse vs kaldi-native-fbank, side by side in one run.

    python benchmarks/bench_fbank.py [--utts 200] [--sizes 50,200,800] [--repeats 3] [--no-write]

Generates 3 s utterances at 16 kHz (chirps + noise) in a temporary dir, then measures, single
threaded (torch.set_num_threads(1)), CPU time of the process:
  (a) emotk extract-fbank end to end (read wav, compute, write ark/scp) in-process;
  (b) lhotse CutSet.compute_and_store_features (manifest building not counted,
      snip_edges false as lhotse's storage requires) with LilcomChunkyWriter and with KaldiWriter;
  (c) kaldi-native-fbank compute only (audio already in memory);
  (d) emotk compute only; (e) lhotse Fbank.extract compute only.
Real-time factor = audio seconds / CPU seconds. Peak RSS is measured in a fresh subprocess per
corpus size. All methods use the fbank40 config. Results replace the "## Feature extraction
(fbank)" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench_common import publish, section_head  # noqa: E402
SECONDS = 3.0
SR = 16000
HEADING = "## Feature extraction (fbank)"


def make_corpus(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` utterances of 3 s in ``root/wav`` and a data dir ``root/data`` (10 speakers)."""
    import soundfile as sf

    from emotk.data.datadir import write_data_dir

    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    t = np.arange(int(SECONDS * SR)) / SR
    wav, utt2spk = {}, {}
    for i in range(n):
        spk = f"spk{i % 10:02d}"
        utt = f"{spk}-utt{i:04d}"
        f0 = rng.uniform(100, 300)
        x = 0.3 * np.sin(2 * np.pi * (f0 * t + rng.uniform(100, 800) * t**2)) + 0.05 * rng.standard_normal(len(t))
        path = root / "wav" / f"{utt}.wav"
        sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
        wav[utt], utt2spk[utt] = str(path), spk
    write_data_dir(root / "data", {"utt2spk": utt2spk, "wav.scp": wav})
    return root / "data"


def fresh_copy(data: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in ("utt2spk", "spk2utt", "wav.scp"):
        shutil.copyfile(data / name, dst / name)
    return dst


def cpu_time(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def run_emotk(data: Path) -> None:
    from emotk.features.extract import load_feature_config
    from emotk.features.pipeline import extract_data_dir

    extract_data_dir(data, load_feature_config(ROOT / "conf/features/fbank40.yaml"), log=lambda m: None)


def run_lhotse(data: Path, out: Path, writer: str) -> None:
    from lhotse import CutSet
    from lhotse.features.io import KaldiWriter, LilcomChunkyWriter

    from emotk.data.lhotse_bridge import data_dir_to_manifests
    from emotk.features.extract import lhotse_extractor, load_feature_config

    recs, sups = data_dir_to_manifests(data)
    cuts = CutSet.from_manifests(recordings=recs, supervisions=sups)
    # lhotse's storage checks num_frames against duration / frame_shift, which needs snip_edges false
    # (same work per frame, 2 frames more per utterance).
    ext = lhotse_extractor(dict(load_feature_config(ROOT / "conf/features/fbank40.yaml"), snip_edges=False))
    storage = {"lilcom": LilcomChunkyWriter, "kaldi": KaldiWriter}[writer]
    start = time.process_time()
    cuts.compute_and_store_features(extractor=ext, storage_path=out, storage_type=storage, num_jobs=1,
                                    progress_bar=False)
    return time.process_time() - start


def load_wavs(data: Path) -> list[np.ndarray]:
    import soundfile as sf

    from emotk.data.datadir import DataDir

    d = DataDir(data)
    return [sf.read(d.wav_path(u), dtype="float32")[0] for u in d.utts]


def compute_only(wavs: list[np.ndarray]) -> dict[str, float]:
    import kaldi_native_fbank as knf

    from emotk.features.extract import FeatureComputer, lhotse_extractor, load_feature_config

    c = load_feature_config(ROOT / "conf/features/fbank40.yaml")
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 40
    opts.mel_opts.high_freq = 0.0

    def knf_all():
        for w in wavs:
            fb = knf.OnlineFbank(opts)
            fb.accept_waveform(SR, (w * 32768).tolist())
            fb.input_finished()
            np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])

    comp = FeatureComputer(c)

    def emotk_all():
        for b in range(0, len(wavs), 20):
            comp.compute(wavs[b:b + 20])

    lh = lhotse_extractor(c)
    return {"knf": cpu_time(knf_all), "emotk": cpu_time(emotk_all),
            "lhotse": cpu_time(lambda: [lh.extract(w, SR) for w in wavs])}


def child(args) -> None:
    """Run one extraction in this (fresh) process; print CPU seconds and peak RSS as JSON."""
    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    data, out = Path(args.data), Path(args.out)
    if args.child == "emotk":
        secs = cpu_time(lambda: run_emotk(data))
    else:
        secs = run_lhotse(data, out, "lilcom")
    print(json.dumps({"cpu": secs, "maxrss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak RSS. On Linux ru_maxrss also counts the parent's RSS at fork/exec time
    (the kernel carries the old image's high-water mark over exec), so read VmHWM instead."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_run(method: str, data: Path, out: Path) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", method, "--data", str(data), "--out", str(out)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utts", type=int, default=200, help="corpus size for the speed comparison")
    p.add_argument("--sizes", default="50,200,800", help="corpus sizes for the memory runs")
    p.add_argument("--repeats", type=int, default=3, help="runs per method; the fastest counts")
    p.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    p.add_argument("--child", choices=["emotk", "lhotse"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    load_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench_fbank."))
    try:
        data = make_corpus(tmp / "c", args.utts)
        audio = args.utts * SECONDS
        best: dict[str, float] = {}

        def keep(name, secs):
            best[name] = min(best.get(name, float("inf")), secs)

        run_emotk(fresh_copy(data, tmp / "warm"))  # imports and first-call set-up are not counted
        for r in range(args.repeats):  # interleaved, so load changes hit every method alike
            keep("emotk_e2e", cpu_time(lambda: run_emotk(fresh_copy(data, tmp / f"e{r}"))))
            for writer in ("lilcom", "kaldi"):
                keep(f"lhotse_e2e_{writer}", run_lhotse(data, tmp / f"l{writer}{r}", writer))
            wavs = load_wavs(data)
            for k, v in compute_only(wavs).items():
                keep(f"{k}_compute", v)
        mem = []
        for n in [int(x) for x in args.sizes.split(",")]:
            d = make_corpus(tmp / f"m{n}", n, seed=n)
            e = memory_run("emotk", d, tmp / f"me{n}")
            lh = memory_run("lhotse", d, tmp / f"ml{n}")
            mem.append((n, e, lh))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_end = os.getloadavg()

    rows = [
        ("(a) emotk extract-fbank, end to end (wav -> ark/scp)", "emotk_e2e"),
        ("(b) lhotse compute_and_store_features, LilcomChunkyWriter", "lhotse_e2e_lilcom"),
        ("(b) lhotse compute_and_store_features, KaldiWriter", "lhotse_e2e_kaldi"),
        ("(c) kaldi-native-fbank, compute only", "knf_compute"),
        ("(d) emotk, compute only", "emotk_compute"),
        ("(e) lhotse Fbank.extract, compute only", "lhotse_compute"),
    ]
    cmd = "python benchmarks/bench_fbank.py" + (f" --utts {args.utts}" if args.utts != 200 else "")
    lines = [
        *section_head(HEADING, load_start[0], load_end[0], f"torch {torch.__version__}; single thread", cmd),
        f"{args.utts} utterances x {SECONDS:g} s at 16 kHz ({audio / 60:.0f} min of audio), fbank40 config; "
        f"fastest of {args.repeats} interleaved runs; real-time factor = audio seconds / CPU seconds.", "",
        "| method | CPU s | x real time | vs lhotse (lilcom) |", "|---|---:|---:|---:|",
    ]
    for label, key in rows:
        lines.append(f"| {label} | {best[key]:.2f} | {audio / best[key]:.0f} | {best['lhotse_e2e_lilcom'] / best[key]:.2f}x |")
    lines += ["", "Peak memory (VmHWM of a fresh process that imports torch and extracts; the parent's RSS is not counted) as the corpus grows:", "",
              "| utterances | emotk MB | emotk x real time | lhotse (lilcom) MB | lhotse x real time |",
              "|---:|---:|---:|---:|---:|"]
    for n, e, lh in mem:
        lines.append(f"| {n} | {e['maxrss_mb']:.0f} | {n * SECONDS / e['cpu']:.0f} | {lh['maxrss_mb']:.0f} | "
                     f"{n * SECONDS / lh['cpu']:.0f} |")
    publish(HEADING, lines, not args.no_write)


if __name__ == "__main__":
    main()
