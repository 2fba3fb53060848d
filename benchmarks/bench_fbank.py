"""Fbank extraction: emotk vs lhotse vs kaldi-native-fbank, side by side in one run, as whole processes and compute only.

    python benchmarks/bench_fbank.py [--minutes 30,240] [--repeats 2] [--ref e98889e] [--no-write]

For each corpus size (3 s utterances at 16 kHz, chirps + noise, 16-bit wav, generated in a temporary dir):
  whole processes, imports counted (wall, CPU of the process, its peak memory VmHWM):
  (a) ``emotk extract-fbank DATA`` (the command line: wav.scp -> ark/scp, fbank40);
  (b) a ``python -c`` script that imports lhotse, reads the cuts manifest (made beforehand, not timed)
      and runs ``CutSet.compute_and_store_features`` with lhotse's ``Fbank`` (fbank40's options,
      snip_edges false as lhotse's storage needs), writing with LilcomChunkyWriter and with KaldiWriter;
      and the same with emotk's extractor registered in lhotse (``EmotkFbank``), LilcomChunkyWriter;
  (c) a ``python -c`` script with kaldi-native-fbank (read wav, compute, write ark/scp with kaldi-native-io);
  compute only (audio already in memory, CPU seconds of the feature calls): emotk's ``FeatureComputer``
  in 60 s batches as extract-fbank uses it, lhotse ``Fbank.extract`` per utterance, kaldi-native-fbank
  per utterance. With ``--ref COMMIT`` the emotk rows are repeated for the emotk of that commit
  (``git archive`` into the temporary dir; e98889e is the last one with the torch.fft path).
Everything runs single threaded (lhotse's torch with one thread; emotk's parallelism is --nj, lhotse's
num_jobs). The fastest of ``--repeats`` interleaved runs counts. Results replace the
"## Feature extraction (fbank)" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench_common import EMOTK, publish, run_python, section_head  # noqa: E402

SECONDS = 3.0
SR = 16000
HEADING = "## Feature extraction (fbank)"
FBANK40 = ROOT / "conf" / "features" / "fbank40.yaml"
CLI = EMOTK[2]  # "from emotk.cli import main; main()"

LHOTSE_SCRIPT = """
import sys
import torch
from lhotse import CutSet
from lhotse.features.base import FeatureExtractor
from lhotse.features.io import KaldiWriter, LilcomChunkyWriter
cuts, extractor_yaml, out, writer = sys.argv[1:5]
if extractor_yaml.endswith("emotk.yaml"):
    import emotk.features.lhotse_extractor  # registers emotk-fbank
torch.set_num_threads(1)
CutSet.from_file(cuts).compute_and_store_features(
    extractor=FeatureExtractor.from_yaml(extractor_yaml), storage_path=out, num_jobs=1, progress_bar=False,
    storage_type={"lilcom": LilcomChunkyWriter, "kaldi": KaldiWriter}[writer])
"""

KNF_OPTIONS = """
import kaldi_native_fbank as knf
opts = knf.FbankOptions()  # fbank40: Kaldi's defaults with 40 bins, no dither, high_freq at Nyquist
opts.frame_opts.dither = 0.0
opts.mel_opts.num_bins = 40
opts.mel_opts.high_freq = 0.0

def knf_fbank(samples, sr):
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(sr, samples.tolist())
    fb.input_finished()
    return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])
"""

KNF_SCRIPT = """
import sys
import kaldi_native_io as kio
import numpy as np
import soundfile as sf
""" + KNF_OPTIONS + """
wav_scp, out = sys.argv[1:3]
writer = kio.FloatMatrixWriter(f"ark,scp:{out}.ark,{out}.scp")
for line in open(wav_scp):
    utt, path = line.split(maxsplit=1)
    samples, sr = sf.read(path.strip(), dtype="int16")  # Kaldi's scale
    writer.write(utt, knf_fbank(samples.astype(np.float32), sr))
writer.close()
"""

# Compute only: audio is read in chunks of 600 utterances, outside the timed calls.
COMPUTE_SCRIPT = """
import sys, time
import numpy as np
import soundfile as sf
method, wav_scp, fbank40 = sys.argv[1:4]
paths = [line.split(maxsplit=1)[1].strip() for line in open(wav_scp)]
if method == "emotk":
    from emotk.features.extract import computer_for, load_feature_config
    comp = computer_for(load_feature_config(fbank40))
    if "torch" in sys.modules:  # the torch.fft path of an older commit
        sys.modules["torch"].set_num_threads(1)
    def run(wavs):
        for b in range(0, len(wavs), 20):  # 60 s of audio per call, as extract-fbank batches
            comp.compute(wavs[b:b + 20])
elif method == "lhotse":
    import torch
    from emotk.features.extract import load_feature_config
    from emotk.features.lhotse_extractor import lhotse_native
    torch.set_num_threads(1)
    ex = lhotse_native(load_feature_config(fbank40))
    def run(wavs):
        for w in wavs:
            ex.extract(w, 16000)
else:
""" + "\n".join("    " + line for line in KNF_OPTIONS.splitlines()) + """
    def run(wavs):
        for w in wavs:
            knf_fbank(w * 32768, 16000)
cpu = 0.0
for b in range(0, len(paths), 600):
    wavs = [sf.read(p, dtype="float32")[0] for p in paths[b:b + 600]]
    start = time.process_time()
    run(wavs)
    cpu += time.process_time() - start
print(cpu)
"""


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
        utt = f"{spk}-utt{i:05d}"
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


def lhotse_inputs(data: Path, tmp: Path) -> dict[str, Path]:
    """The cuts manifest of a data dir and the two extractor configs, written before any timing."""
    from lhotse import CutSet

    from emotk.data.lhotse_bridge import data_dir_to_manifests
    from emotk.features.extract import load_feature_config
    from emotk.features.lhotse_extractor import EmotkFbank, lhotse_native

    recs, sups = data_dir_to_manifests(data)
    CutSet.from_manifests(recordings=recs).to_file(tmp / "cuts.jsonl.gz")
    lhotse_native(dict(load_feature_config(FBANK40), snip_edges=False)).to_yaml(tmp / "lhotse.yaml")
    EmotkFbank().to_yaml(tmp / "emotk.yaml")  # fbank40 with snip_edges false
    return {"cuts": tmp / "cuts.jsonl.gz", "lhotse": tmp / "lhotse.yaml", "emotk": tmp / "emotk.yaml"}


def ref_tree(commit: str, dst: Path) -> Path:
    """The emotk package of ``commit``, for PYTHONPATH."""
    dst.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "emotk"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dst)], input=archive.stdout, check=True)
    return dst


def measure_size(data: Path, tmp: Path, runs: dict, ref_env: dict | None) -> None:
    """One interleaved round of every measurement on one corpus; keeps the best figures in ``runs``."""
    lh = lhotse_inputs(data, tmp) if not (tmp / "cuts.jsonl.gz").exists() else \
        {"cuts": tmp / "cuts.jsonl.gz", "lhotse": tmp / "lhotse.yaml", "emotk": tmp / "emotk.yaml"}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    whole = {
        "emotk": lambda out: run_python(CLI, "extract-fbank", fresh_copy(data, out), "--config", FBANK40, env=env),
        "lhotse_lilcom": lambda out: run_python(LHOTSE_SCRIPT, lh["cuts"], lh["lhotse"], out, "lilcom", env=env),
        "lhotse_kaldi": lambda out: run_python(LHOTSE_SCRIPT, lh["cuts"], lh["lhotse"], out, "kaldi", env=env),
        "lhotse_emotk": lambda out: run_python(LHOTSE_SCRIPT, lh["cuts"], lh["emotk"], out, "lilcom", env=env),
        "knf": lambda out: (out.mkdir(), run_python(KNF_SCRIPT, data / "wav.scp", out / "feats", env=env))[1],
    }
    if ref_env is not None:
        whole["emotk_ref"] = lambda out: run_python(CLI, "extract-fbank", fresh_copy(data, out), "--config", FBANK40,
                                                    env=ref_env)
    for name, run in whole.items():
        out = tmp / f"out_{name}"
        r = run(out)
        shutil.rmtree(out, ignore_errors=True)
        Path(f"{out}.lca").unlink(missing_ok=True)  # LilcomChunkyWriter's file
        best = runs.setdefault(name, {})
        for key in ("wall", "cpu", "peak_mb"):
            best[key] = min(best.get(key, float("inf")), r[key])
    compute = {m: env for m in ("emotk", "lhotse", "knf")}
    for method, e in [*compute.items(), *([("emotk_ref", ref_env)] if ref_env is not None else [])]:
        r = run_python(COMPUTE_SCRIPT, method.removesuffix("_ref"), data / "wav.scp", FBANK40, env=e)
        key = f"compute_{method}"
        runs[key] = min(runs.get(key, float("inf")), float(r["stdout"].split()[-1]))


WHOLE_ROWS = [
    ("emotk", "(a) `emotk extract-fbank` (wav -> ark/scp)"),
    ("emotk_ref", "(a) `emotk extract-fbank` at {ref} (torch.fft path)"),
    ("lhotse_lilcom", "(b) lhotse compute_and_store_features, Fbank, LilcomChunkyWriter"),
    ("lhotse_kaldi", "(b) lhotse compute_and_store_features, Fbank, KaldiWriter"),
    ("lhotse_emotk", "(b) lhotse compute_and_store_features, EmotkFbank, LilcomChunkyWriter"),
    ("knf", "(c) kaldi-native-fbank + kaldi-native-io (wav -> ark/scp)"),
]
COMPUTE_ROWS = [
    ("compute_emotk", "emotk FeatureComputer (numpy + scipy.fft)"),
    ("compute_emotk_ref", "emotk FeatureComputer at {ref} (torch.fft)"),
    ("compute_lhotse", "lhotse Fbank.extract"),
    ("compute_knf", "kaldi-native-fbank OnlineFbank"),
]


def table(results: dict, sizes: list[float], ref: str | None) -> list[str]:
    names = [f"{m:g} min" if m < 60 else f"{m / 60:g} h" for m in sizes]
    lines = ["Whole processes (imports counted): wall and CPU seconds, x real time = audio seconds / CPU seconds, "
             "speed against lhotse's Fbank with LilcomChunkyWriter by CPU time, peak memory (VmHWM of the process):", "",
             "| method | " + " | ".join(f"{n}: wall s | CPU s | x real time | vs lhotse | peak MB" for n in names) + " |",
             "|---|" + "---:|" * (5 * len(names))]
    for key, label in WHOLE_ROWS:
        if key not in results[sizes[0]]:
            continue
        cells = []
        for m in sizes:
            r, base = results[m][key], results[m]["lhotse_lilcom"]
            cells += [f"{r['wall']:.1f}", f"{r['cpu']:.1f}", f"{m * 60 / r['cpu']:.0f}", f"{base['cpu'] / r['cpu']:.2f}x",
                      f"{r['peak_mb']:.0f}"]
        lines.append(f"| {label.format(ref=ref)} | " + " | ".join(cells) + " |")
    lines += ["", "Compute only (audio in memory; CPU seconds of the feature calls, x real time):", "",
              "| method | " + " | ".join(f"{n}: CPU s | x real time" for n in names) + " |",
              "|---|" + "---:|" * (2 * len(names))]
    for key, label in COMPUTE_ROWS:
        if key not in results[sizes[0]]:
            continue
        cells = []
        for m in sizes:
            cells += [f"{results[m][key]:.2f}", f"{m * 60 / results[m][key]:.0f}"]
        lines.append(f"| {label.format(ref=ref)} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", default="30,240", help="corpus sizes in minutes of audio")
    p.add_argument("--repeats", type=int, default=2, help="interleaved runs per corpus; the fastest counts")
    p.add_argument("--ref", help="also measure the emotk of this git commit (e.g. e98889e, the torch.fft path)")
    p.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    args = p.parse_args()
    sizes = [float(m) for m in args.minutes.split(",")]
    load_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench_fbank."))
    results: dict[float, dict] = {}
    try:
        ref_env = None
        if args.ref:
            ref_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ref_tree(args.ref, tmp / "ref")))
        os.chdir(tmp)  # python -c puts the working directory first on sys.path: not the checkout
        for m in sizes:
            n = round(m * 60 / SECONDS)
            data = make_corpus(tmp / f"c{n}", n, seed=n)
            results[m] = {}
            for _ in range(args.repeats):
                measure_size(data, tmp / f"c{n}", results[m], ref_env)
            shutil.rmtree(tmp / f"c{n}")
    finally:
        os.chdir(ROOT)
        shutil.rmtree(tmp, ignore_errors=True)
    load_end = os.getloadavg()

    import lhotse
    import scipy

    cmd = "python benchmarks/bench_fbank.py" + (f" --minutes {args.minutes}" if args.minutes != "30,240" else "") + \
        (f" --repeats {args.repeats}" if args.repeats != 2 else "") + (f" --ref {args.ref}" if args.ref else "")
    lines = [
        *section_head(HEADING, load_start[0], load_end[0],
                      f"numpy {np.__version__}, scipy {scipy.__version__}, lhotse {lhotse.__version__}; single thread",
                      cmd),
        f"3 s utterances at 16 kHz, fbank40 config (lhotse: snip_edges false, 2 frames more per utterance); "
        f"fastest of {args.repeats} interleaved runs.", "",
        *table(results, sizes, args.ref),
    ]
    publish(HEADING, lines, not args.no_write)


if __name__ == "__main__":
    main()
