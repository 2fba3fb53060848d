"""recipes/emodb/run.sh end to end on a tiny synthetic corpus: every system (fbank and raw-waveform
neural models, openSMILE SVMs, their fusion) under both protocols, scores recomputed independently, one
report, re-entry; the augmentation options (offline copies of the training speakers, online mixing)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score

import yaml

from emotk.data.datadir import read_table
from emotk.data.predictions import read_predictions
from emotk.training.provenance import read_trained

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "emodb" / "run.sh"
SYSTEMS = ("cnn_lstm2d_small", "egemapsv02_svm", "compare_2016_svm", "fusion/cnn_lstm2d_small+egemapsv02_svm",
           "cnn_lstm1d")
# Paper 004's 1D CNN-LSTM with fewer filters and cells: the same inputs (8 s of 16 kHz audio), CI-sized.
RAW_SMALL = "--set model.params.channels=[8,8,16,16] --set model.params.lstm_size=16"


def run_recipe(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    args = ["bash", str(RECIPE), "--synthetic-size", "56", "--synthetic-dir", str(tmp / "corpus"),
            "--data", str(tmp / "data"), "--exp", str(tmp / "exp"), "--results", str(tmp / "RESULTS.md"),
            "--train-opts", "--set train.epochs=2",
            "--raw-model-config", str(ROOT / "conf" / "model" / "cnn_lstm1d.yaml"), "--raw-train-opts", RAW_SMALL, "--seeds", "1", "--valid-speakers", "1",
            "--nj", "2", *extra]
    env = dict(os.environ, PATH=f"{Path(os.sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=1200)


def test_emodb_recipe_end_to_end(tmp_path):
    r = run_recipe(tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SYNTHETIC" in r.stderr
    results = (tmp_path / "RESULTS.md").read_text()
    assert "SYNTHETIC" in results
    for system in SYSTEMS:
        scores = sorted((tmp_path / "exp" / system).glob("*/*/seed1/scores/test.json"))
        assert len(scores) == 4 + 1, system  # 4 speakers in the tiny corpus -> 4 LOSO folds, + 1 random split
        for path in scores:
            s = json.loads(path.read_text())
            fold = path.parents[2].name
            protocol = path.parents[3].name
            ref = read_table(tmp_path / "data" / "folds" / protocol / fold / "test" / "utt2emo")
            classes, preds = read_predictions(path.parent.parent / "predictions" / "test" / "emotion.txt")
            utts = sorted(ref)
            assert sorted(preds) == utts
            # The UA the recipe reports equals scikit-learn's on the predictions it wrote.
            ua = balanced_accuracy_score([ref[u] for u in utts], [preds[u][0] for u in utts])
            assert abs(s["heads"]["emotion"]["metrics"]["ua"] - ua) < 1e-9, path
            assert s["disjointness"]["checked"] and s["disjointness"]["utterances_disjoint"], path
            if protocol == "loso":
                assert s["disjointness"]["speaker_independent"] and not s["disjointness"]["shared_speakers"]
                assert len(s["speakers"]) == 1
    # The fusion is the mean of its members' posteriors.
    fold = tmp_path / "exp" / "{}" / "loso" / "loso-03" / "seed1" / "predictions" / "test" / "emotion.txt"
    members = [read_predictions(str(fold).format(m))[1] for m in SYSTEMS[:2]]
    fused = read_predictions(str(fold).format(SYSTEMS[3]))[1]
    for utt, (label, post) in fused.items():
        assert np.allclose(post, np.mean([m[utt][1] for m in members], axis=0), atol=2e-6)
    for name in ("cnn_lstm2d_small", "cnn_lstm1d", "egemapsv02_svm", "compare_2016_svm", "fusion"):
        assert name in results
    # The raw-waveform model sees what paper 004 feeds it: 16 kHz samples, cut or zero-padded to 8 s.
    for config in (tmp_path / "exp" / "cnn_lstm1d").glob("*/*/seed1/config.yaml"):
        cfg = yaml.safe_load(config.read_text())
        assert cfg["inputs"] == {"wav": {"kind": "wav", "table": "wav.scp", "sample_rate": 16000, "norm": "utterance",
                                         "norm_table": None}}, config
        assert cfg["segments"]["mode"] == "pad_or_cut" and cfg["segments"]["length"] == 8.0
    assert "chance" in results and "speaker-dependent" in results and "paired comparison" in results.lower()

    # Re-entering at the training stage skips finished runs and reproduces the report.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "exp").glob("*/*/*/seed1/done")}
    r2 = run_recipe(tmp_path, "--stage", "7")
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert (tmp_path / "RESULTS.md").read_text() == results


def _feats(data: Path) -> dict[str, np.ndarray]:
    import kaldi_native_io

    with kaldi_native_io.SequentialFloatMatrixReader(f"scp:{data / 'feats.scp'}") as reader:
        return {utt: np.array(mat) for utt, mat in reader}


def test_emodb_recipe_offline_augmentation_touches_only_the_training_speakers(tmp_path):
    r = run_recipe(tmp_path, "--protocols", "sd", "--opensmile-sets", "", "--fusion", "", "--augment", "offline",
                   "--noises-per-utt", "2", "--snrs-per-noise", "2", "--snr-range", "0:10")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SYNTHETIC noise look-alike" in r.stderr
    noise = tmp_path / "data" / "noise"
    train_noises, test_noises = (set(read_table(noise / part / "wav.scp").values()) for part in ("train", "test"))
    assert train_noises and test_noises and not train_noises & test_noises
    assert train_noises | test_noises == set(read_table(noise / "all" / "wav.scp").values())

    fold = tmp_path / "data" / "folds" / "sd" / "sd-random-1"
    train, aug = read_table(fold / "train" / "utt2spk"), read_table(fold / "train_aug" / "utt2spk")
    assert len(aug) == len(train) * (2 * 2 + 1) and set(train) <= set(aug)   # 2 noises x 2 SNRs + the clean copy
    for utt, record in read_table(fold / "train_aug" / "utt2aug").items():
        if record == "-":
            assert utt in train
            continue
        noise_id, _, snr, path = record.split(maxsplit=3)
        assert aug[utt] == train[utt.rsplit("-", 1)[0]] and path in train_noises and 0 <= float(snr) <= 10, utt
    clean, noisy = _feats(tmp_path / "data" / "all"), _feats(fold / "train_aug")
    copy = next(u for u in noisy if u not in train)
    assert np.array_equal(noisy[copy.rsplit("-", 1)[0]], clean[copy.rsplit("-", 1)[0]])
    assert not np.allclose(noisy[copy], clean[copy.rsplit("-", 1)[0]])

    for tag in ("cnn_lstm2d_small_aug_offline", "cnn_lstm1d_aug_offline"):
        run = tmp_path / "exp" / tag / "sd" / "sd-random-1" / "seed1"
        trained = read_trained(run)
        assert trained["train"] == aug and trained["valid"] == read_table(fold / "valid" / "utt2spk"), tag
        s = json.loads((run / "scores" / "test.json").read_text())
        ref = read_table(fold / "test" / "utt2emo")
        _, preds = read_predictions(run / "predictions" / "test" / "emotion.txt")
        assert sorted(preds) == sorted(ref)   # the test speakers' clean utterances only
        ua = balanced_accuracy_score([ref[u] for u in sorted(ref)], [preds[u][0] for u in sorted(ref)])
        assert abs(s["heads"]["emotion"]["metrics"]["ua"] - ua) < 1e-9, tag


def test_emodb_recipe_online_augmentation_mixes_training_noise_on_the_fly(tmp_path):
    r = run_recipe(tmp_path, "--protocols", "sd", "--opensmile-sets", "", "--fusion", "", "--augment", "online",
                   "--noises-per-utt", "2", "--snrs-per-noise", "2", "--snr-range", "0:10", "--stop-stage", "7")
    assert r.returncode == 0, r.stderr[-3000:]
    fold = tmp_path / "data" / "folds" / "sd" / "sd-random-1"
    assert not (fold / "train_aug").exists()
    for tag in ("cnn_lstm2d_small_aug_online", "cnn_lstm1d_aug_online"):
        run = tmp_path / "exp" / tag / "sd" / "sd-random-1" / "seed1"
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        # the offline set's share of noisy copies, 4 of 5, as the probability of mixing
        assert cfg["train"]["augment"] == {"noise": str(tmp_path / "data" / "noise" / "train"), "prob": 0.8,
                                           "snr_range": [0.0, 10.0]}, tag
        assert read_trained(run)["train"] == read_table(fold / "train" / "utt2spk"), tag
