"""Small data dirs built in tests: features, waveforms and vectors whose classes are separable."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emotk.data.ark import write_ark_scp, write_vector_ark_scp
from emotk.data.datadir import write_data_dir

CLASSES = ("ang", "neu")


def read_scp_table(path) -> dict[str, str]:
    return dict(line.split() for line in Path(path).read_text().splitlines())


def _speaker_stats(mats_by_spk: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """Kaldi CMVN stats per speaker: row 0 = sums and count, row 1 = sums of squares."""
    out = {}
    for spk, mats in mats_by_spk.items():
        x = np.concatenate(mats).astype(np.float64)
        s = np.zeros((2, x.shape[1] + 1))
        s[0, :-1], s[0, -1], s[1, :-1] = x.sum(0), len(x), (x ** 2).sum(0)
        out[spk] = s
    return out


def write_feature_dir(path: Path, spks=("s1", "s2"), n_per_class=6, dim=12, min_len=20, max_len=60, seed=0,
                      label_shift=0.0, cmvn=False, extra_label=None) -> Path:
    """A feature data dir of two classes told apart by their mean in the first half of the dims;
    utt2level holds a second (utterance-level) target: the mean of the last dim."""
    rng = np.random.default_rng(seed)
    feats, utt2spk, utt2emo, utt2level = {}, {}, {}, {}
    for spk in spks:
        offset = rng.normal(0, 1, dim)  # a speaker's own bias
        for c, emo in enumerate(CLASSES):
            for i in range(n_per_class):
                utt = f"{spk}-{emo}{i:02d}"
                m = rng.normal(0, 1, (int(rng.integers(min_len, max_len + 1)), dim)) + offset
                m[:, : dim // 2] += (1.5 if c else -1.5) + label_shift
                feats[utt], utt2spk[utt], utt2emo[utt] = m.astype(np.float32), spk, emo
                utt2level[utt] = f"{float(m[:, -1].mean()):.6f}"
    if extra_label:
        utt2emo[sorted(utt2emo)[0]] = extra_label
    # Archives live beside the data dir: write_data_dir replaces the dir as a whole.
    path.parent.mkdir(parents=True, exist_ok=True)
    ark = path.parent / f"{path.name}.feats"
    rows = write_ark_scp(f"{ark}.ark", f"{ark}.scp", sorted(feats.items()))
    tables = {"utt2spk": utt2spk, "utt2emo": utt2emo, "utt2num_frames": rows, "feats.scp": read_scp_table(f"{ark}.scp"),
              "utt2level": utt2level}
    if cmvn:
        by_spk: dict[str, list] = {}
        for u, m in feats.items():
            by_spk.setdefault(utt2spk[u], []).append(m)
        write_ark_scp(f"{ark}.cmvn.ark", f"{ark}.cmvn.scp", sorted(_speaker_stats(by_spk).items()))
        tables["cmvn.scp"] = read_scp_table(f"{ark}.cmvn.scp")
    write_data_dir(path, tables, {"frame_shift": "0.01"})
    return path


def write_wav_dir(path: Path, spks=("s1", "s2"), n_per_class=4, sr=8000, min_dur=0.6, max_dur=2.4, seed=0,
                  vector_dim: int | None = None) -> Path:
    """Tones: class 'ang' at 600 Hz, 'neu' at 200 Hz, with noise; optionally a vector table
    ``vec.scp`` (Kaldi vectors) whose first dims carry the class too."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    wav_dir = path.parent / f"{path.name}.wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    wavs, utt2spk, utt2emo, utt2dur, vecs = {}, {}, {}, {}, {}
    for spk in spks:
        for c, emo in enumerate(CLASSES):
            for i in range(n_per_class):
                utt = f"{spk}-{emo}{i:02d}"
                n = int(rng.uniform(min_dur, max_dur) * sr)
                t = np.arange(n) / sr
                x = 0.3 * np.sin(2 * np.pi * (600 if c == 0 else 200) * t) + 0.05 * rng.normal(size=n)
                f = wav_dir / f"{utt}.wav"
                sf.write(f, x.astype(np.float32), sr, subtype="PCM_16")
                wavs[utt], utt2spk[utt], utt2emo[utt], utt2dur[utt] = str(f), spk, emo, f"{n / sr:.4f}"
                if vector_dim:
                    v = rng.normal(0, 1, vector_dim)
                    v[: vector_dim // 2] += 2.0 if c else -2.0
                    vecs[utt] = v.astype(np.float32)
    tables = {"wav.scp": wavs, "utt2spk": utt2spk, "utt2emo": utt2emo, "utt2dur": utt2dur}
    if vector_dim:
        scp = path.parent / f"{path.name}.vec.scp"
        write_vector_ark_scp(path.parent / f"{path.name}.vec.ark", scp, sorted(vecs.items()))
        tables["vec.scp"] = read_scp_table(scp)
    write_data_dir(path, tables)
    return path
