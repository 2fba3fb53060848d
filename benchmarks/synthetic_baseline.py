"""How separable are the emotions of the synthetic EmoDB? A speaker-independent sanity baseline.

Utterance-level features (mean + s.d. of 40 log-mel bands via lhotse; openSMILE eGeMAPSv02
functionals), per-speaker z-normalisation, logistic regression, leave-one-speaker-out.
The look-alike should be learnable (well above chance, 1/7) but not trivially (well below 100%).

    python benchmarks/synthetic_baseline.py [--corpus DIR] [--size 535] [--seed 0]

Without --corpus a synthetic corpus is generated in a temporary folder. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def logmel_stats(paths: list[str]) -> np.ndarray:
    import soundfile as sf
    from lhotse.features import Fbank, FbankConfig

    fbank = Fbank(FbankConfig(num_filters=40))
    feats = []
    for p in paths:
        x, sr = sf.read(p, dtype="float32")
        f = fbank.extract(x, sr)
        feats.append(np.concatenate([f.mean(0), f.std(0)]))
    return np.stack(feats)


def egemaps(paths: list[str]) -> np.ndarray:
    import opensmile

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    return np.stack([smile.process_file(p).to_numpy()[0] for p in paths])


def speaker_znorm(x: np.ndarray, spk: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for s in np.unique(spk):
        m = spk == s
        out[m] = (x[m] - x[m].mean(0)) / (x[m].std(0) + 1e-8)
    return out


def loso(x: np.ndarray, y: np.ndarray, spk: np.ndarray) -> tuple[float, float, float, float]:
    """Mean and s.d. over held-out speakers of UA (balanced accuracy) and WA."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    ua, wa = [], []
    for s in np.unique(spk):
        test = spk == s
        clf = LogisticRegression(C=0.1, max_iter=2000).fit(x[~test], y[~test])
        pred = clf.predict(x[test])
        ua.append(balanced_accuracy_score(y[test], pred))
        wa.append(accuracy_score(y[test], pred))
    return float(np.mean(ua)), float(np.std(ua, ddof=1)), float(np.mean(wa)), float(np.std(wa, ddof=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, help="an EmoDB-layout corpus (default: generate a synthetic one)")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from emotk.corpora.emodb import make_synthetic, prepare_emodb

    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus
        if corpus is None:
            corpus = Path(tmp) / "emodb"
            t = time.time()
            make_synthetic(corpus, seed=args.seed, size=args.size)
            print(f"generated {corpus} in {time.time() - t:.1f} s")
        d = prepare_emodb(corpus, Path(tmp) / "data")
        utts = d.utts
        wav = d.table("wav.scp")
        paths = [wav[u] for u in utts]
        y = np.array([d.table("utt2emo")[u] for u in utts])
        spk = np.array([d.utt2spk[u] for u in utts])
        rows = []
        for name, fn in (("log-mel 40 mean+sd", logmel_stats), ("eGeMAPSv02 functionals", egemaps)):
            t = time.time()
            x = speaker_znorm(fn(paths), spk)
            ua, ua_sd, wa, wa_sd = loso(x, y, spk)
            rows.append(f"| {name} | {x.shape[1]} | {100 * ua:.1f} ± {100 * ua_sd:.1f} | "
                        f"{100 * wa:.1f} ± {100 * wa_sd:.1f} | {time.time() - t:.0f} s |")
    print(f"\n{len(utts)} utterances, {len(set(spk))} speakers, {len(set(y))} emotions; "
          f"speaker z-norm + logistic regression, leave-one-speaker-out; chance UA = {100 / len(set(y)):.1f}%\n")
    print("| features | dim | UA % (mean ± sample sd over speakers) | WA % | time |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
