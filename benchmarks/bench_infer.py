"""Inference on audio (``emotk infer`` on a recording): real-time factor per core of every exportable
family with PyTorch and with onnxruntime on the same audio in one run, and peak memory on a 1-hour
recording against a 6-minute one.

The models have random weights at the sizes of their configs in conf/model/ (speed does not depend
on the weights); feats models read 40-bin fbank (conf/features/fbank40.yaml) at 16 kHz. The RTF is
the wall time of the whole pipeline (reading, resampling, features, normalization scan, model) over
the audio's duration, one thread (torch.set_num_threads(1), onnxruntime intra_op 1). Peak memory
is the VmHWM (peak resident set) of a fresh process that loads the model and runs one recording.

Run: .venv/bin/python benchmarks/bench_infer.py [--seconds 60] [--write]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FBANK = ROOT / "conf/features/fbank40.yaml"
FAMILIES = {  # name -> (params, input, heads, segments)
    "cnn_lstm2d": ("conf/model/cnn_lstm2d.yaml", {"kind": "feats"}, "class", None),
    "cnn_lstm1d": ({}, {"kind": "wav", "sample_rate": 16000, "norm": "utterance"}, "class",
                   {"mode": "pad_or_cut", "length": 8.0}),
    "ldnn": ("conf/model/ldnn.yaml", {"kind": "feats", "splice": [10, 5]}, "class", None),
    "split_mlp": ({}, {"kind": "wav", "sample_rate": 16000, "norm": "utterance"}, "class", None),
    "blstm_regressor": ("conf/model/blstm_regressor.yaml", {"kind": "feats", "stack": 4}, "frame", None),
    "dilated_cnn": ("conf/model/dilated_cnn.yaml", {"kind": "feats", "stack": 4}, "frame", None),
    "downup_cnn": ("conf/model/downup_cnn_arousal.yaml", {"kind": "feats", "stack": 4}, "frame", None),
    "single_filter": ("conf/model/single_filter.yaml", {"kind": "feats", "stack": 4}, "frame", None),
}


def write_model_dir(family: str, out: Path) -> Path:
    """A model dir (emotk.deploy.export layout) of ``family`` with random weights."""
    import torch

    from emotk.deploy.export import FORMAT
    from emotk.features.extract import load_feature_config
    from emotk.models import build_for_config

    params, inp, head_kind, seg = FAMILIES[family]
    if isinstance(params, str):
        params = yaml.safe_load((ROOT / params).read_text())["model"]["params"]
    fb = load_feature_config(FBANK)
    spec = {"kind": inp["kind"], "table": "feats.scp" if inp["kind"] == "feats" else "wav.scp",
            "norm": inp.get("norm", "speaker"), "norm_table": None, "stack": inp.get("stack", 1),
            "splice": inp.get("splice", [0, 0]), "sample_rate": inp.get("sample_rate")}
    if spec["kind"] == "feats":
        spec["dim"] = 40 * spec["stack"] * (1 + sum(spec["splice"]))
        spec["rate"] = 100.0 / spec["stack"]
    else:
        spec["dim"], spec["rate"] = 1, float(spec["sample_rate"])
    if head_kind == "class":
        head = {"kind": "class", "labels": "utt2emo", "names": ["ang", "bor", "dis", "fea", "hap", "neu", "sad"],
                "label_frame_shift": None}
    else:
        head = {"kind": "frame_regression", "labels": "labels.scp", "names": ["arousal", "valence"],
                "label_frame_shift": 0.04}
    name = "feats" if spec["kind"] == "feats" else "wav"
    head_name = "emotion" if head_kind == "class" else "labels"
    model = {"name": family, "params": params}
    torch.manual_seed(0)
    net = build_for_config(model, {name: (spec["kind"], spec["dim"])},
                           {head_name: (head["kind"], len(head["names"]))})
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / "weights.pt")
    desc = {"format": FORMAT, "framework": "torch", "model": model, "inputs": {name: spec}, "heads": {head_name: head},
            "segments": seg or {"mode": "none"}, "data_conf": {"feats": fb}, "global_stats": {}}
    (out / "model.yaml").write_text(yaml.safe_dump(desc, sort_keys=False))
    return out


def write_recording(path: Path, seconds: float, sr: int = 16000) -> Path:
    """Voiced-like audio: harmonic tones with a moving pitch and noise, written block by block."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", sr, 1, "PCM_16") as f:
        for start in range(0, int(seconds * sr), 60 * sr):
            n = min(60 * sr, int(seconds * sr) - start)
            t = (start + np.arange(n)) / sr
            f0 = 150 + 50 * np.sin(2 * np.pi * 0.2 * t)
            phase = 2 * np.pi * np.cumsum(f0) / sr
            x = sum(0.2 / k * np.sin(k * phase) for k in range(1, 6)) + 0.02 * rng.normal(size=n)
            f.write(x.astype(np.float32))
    return path


def rtf(model_dir: Path, wav: Path, backend: str, seconds: float) -> float:
    from emotk.deploy.audio import AudioInference, Item
    from emotk.inference import Model

    m = Model(model_dir, backend=backend, threads=1)
    engine = AudioInference(m, csv_dir=model_dir / f"frames_{backend}", log=lambda s: None)
    engine.process(Item("warmup", wav.with_name("warmup.wav")))
    t0 = time.perf_counter()
    engine.process(Item("bench", wav))
    return (time.perf_counter() - t0) / seconds


def peak_rss(model_dir: Path, wav: Path) -> float:
    """MiB of a fresh process running one recording: VmHWM (ru_maxrss would carry the parent's peak across
    fork + exec)."""
    code = ("import sys, torch; torch.set_num_threads(1); sys.path.insert(0, sys.argv[3]);"
            "from emotk.inference import Model; from emotk.deploy.audio import AudioInference, Item;"
            "from pathlib import Path; m = Model(sys.argv[1]);"
            "AudioInference(m, csv_dir=Path(sys.argv[1]) / 'frames_rss', log=lambda s: None).process(Item('x', Path(sys.argv[2])));"
            "print([ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0])")
    r = subprocess.run([sys.executable, "-c", code, str(model_dir), str(wav), str(ROOT)], capture_output=True,
                       text=True, check=True)
    return int(r.stdout.split()[-1]) / 1024


def main() -> None:
    import torch

    from benchmarks.bench_common import cpu_name, replace_section
    from emotk.deploy.onnx import export_onnx
    from emotk.inference import Model

    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the RTF recording")
    ap.add_argument("--families", nargs="*", default=list(FAMILIES))
    ap.add_argument("--rss-families", nargs="*", default=["cnn_lstm2d", "dilated_cnn"])
    ap.add_argument("--write", action="store_true", help="write the BENCHMARKS.md section")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench_infer."))
    wav = write_recording(tmp / "rec.wav", args.seconds)
    write_recording(tmp / "warmup.wav", 5.0)
    rows = []
    for fam in args.families:
        d = write_model_dir(fam, tmp / fam)
        export_onnx(Model(d), d / "model.onnx", log=lambda s: None)
        t, o = rtf(d, wav, "torch", args.seconds), rtf(d, wav, "onnx", args.seconds)
        rows.append(f"| {fam} | {t:.4f} | {o:.4f} | {t / o:.2f} |")
        print(rows[-1], flush=True)
    rss = []
    if args.rss_families:
        long, short = write_recording(tmp / "hour.wav", 3600.0), write_recording(tmp / "six.wav", 360.0)
    for fam in args.rss_families:
        d = tmp / fam if (tmp / fam).is_dir() else write_model_dir(fam, tmp / fam)
        a, b = peak_rss(d, short), peak_rss(d, long)
        rss.append(f"| {fam} | {a:.0f} | {b:.0f} | {b / a:.2f} |")
        print(rss[-1], flush=True)
    text = "\n".join([
        "## Inference on audio: real-time factor and memory (bench_infer.py)", "",
        f"`python benchmarks/bench_infer.py --write` on {cpu_name()} (a shared 2-core machine: expect noise), "
        f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}. Real-time factor = "
        f"wall time of the whole `emotk infer` pipeline on one {args.seconds:g} s recording at 16 kHz (reading, "
        "normalization scan, features, model) / duration, one thread, random weights at the sizes of "
        "conf/model/ (feats models on 40-bin fbank). Categorical models in 10 s chunks (cnn_lstm1d: its 8 s "
        "pieces); continuous models in 60 s chunks with context.", "",
        "| family | RTF PyTorch | RTF onnxruntime | PyTorch / onnxruntime |", "|---|---|---|---|", *rows, "",
        "Peak resident memory (MiB) of a fresh process running one recording: the audio is read, resampled and "
        "featurized block by block, so memory should not grow with the duration.", "",
        "| family | 6 min | 1 hour | ratio |", "|---|---|---|---|", *rss, ""])
    print(text)
    if args.write:
        replace_section(ROOT / "BENCHMARKS.md", text.splitlines()[0], text)


if __name__ == "__main__":
    main()
