"""recipes/iemocap/run.sh end to end on a tiny synthetic IEMOCAP: one system of each paper's table
(paper 001 Tables 1-2, paper 003 Table 5, paper 004 under both protocols), folds checked speaker-
disjoint from fold.yaml and the data, scores recomputed with scikit-learn, the TPE search (two
trials) on train/valid only, the interpretation of the ELoR run, and the report."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from emotk.data.datadir import read_table
from emotk.data.predictions import read_predictions

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "iemocap" / "run.sh"
FOLD_LIMIT = 2
# system tag -> (data dir, protocols, heads and their label tables)
SYSTEMS = {
    "vae_lstm_improvised": ("4class_improvised", ("logo",), {"emotion": "utt2emo"}),
    "vae_lstm_apv3_arousal": ("apv3", ("loso",), {"emotion": "utt2arousal3"}),
    "elor": ("va5", ("loso",), {"valence": "utt2valence5", "arousal": "utt2arousal5"}),
    "ftr": ("va5", ("loso",), {"valence": "utt2valence5", "arousal": "utt2arousal5"}),
    "cnn_lstm2d": ("6class", ("sd", "logo"), {"emotion": "utt2emo"}),
}
FOLDS = {"4class_improvised": ("logo",), "apv3": ("loso",), "va5": ("loso",), "6class": ("sd", "logo")}


SPACE = "params:\n  train.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\npruner: none\n"


def run_recipe(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    (tmp / "space.yaml").write_text(SPACE)  # the shipped space also searches epochs (up to 15): too slow here
    args = ["bash", str(RECIPE), "--synthetic-size", "60", "--synthetic-dir", str(tmp / "corpus"),
            "--data", str(tmp / "data"), "--exp", str(tmp / "exp"), "--results", str(tmp / "RESULTS.md"),
            "--seeds", "1", "--nj", "2", "--fold-limit", str(FOLD_LIMIT),
            "--vae-models", "vae_lstm", "--subsets", "improvised", "--apv-dims", "arousal",
            "--va-models", "elor ftr", "--cnn-models", "cnn_lstm2d", "--cnn-subset", "complete",
            "--train-opts", "--set train.epochs=1", "--tune-trials", "2", "--tune-space", str(tmp / "space.yaml"), "--tune-opts", "--set train.epochs=1",
            "--interpret-pieces", "2", "--interpret-steps", "3", *extra]
    env = dict(os.environ, PATH=f"{Path(os.sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=1200)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("iemocap")
    r = run_recipe(tmp)
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp, r


def speakers(part: Path) -> set[str]:
    return set(read_table(part / "utt2spk").values())


def test_folds_are_speaker_disjoint_where_the_protocol_says(recipe):
    tmp, _ = recipe
    for data, protocols in FOLDS.items():
        for p in protocols:
            root = tmp / "data" / data / "folds" / p
            folds = root.joinpath("folds.txt").read_text().split()
            assert len(folds) == {"logo": 5, "loso": 10, "sd": 1}[p], (data, p)
            for f in folds:
                fold = yaml.safe_load((root / f / "fold.yaml").read_text())
                parts = {name: speakers(root / f / name) for name in ("train", "valid", "test")}
                utts = {name: set(read_table(root / f / name / "utt2spk")) for name in parts}
                assert not (utts["train"] & utts["test"]) and not (utts["valid"] & utts["test"])
                if p == "sd":
                    assert fold["speaker_independent"] is False
                    continue
                assert fold["speaker_independent"] is True
                assert not (parts["test"] & (parts["train"] | parts["valid"])), (data, f)
                assert not (parts["train"] & parts["valid"]), (data, f)
                assert parts["test"] == set(fold["test_speakers"])
                if p == "logo":  # one session's two speakers: 8 speakers train/valid, 2 test (paper 004)
                    sessions = set(read_table(root / f / "test" / "utt2session").values())
                    assert len(sessions) == 1 and len(parts["test"]) == 2
                else:
                    assert len(parts["test"]) == 1


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_scores_equal_scikit_learn_on_the_written_predictions(recipe):
    tmp, r = recipe
    assert "SYNTHETIC" in r.stderr
    for system, (data, protocols, heads) in SYSTEMS.items():
        for p in protocols:
            scores = sorted((tmp / "exp" / system / p).glob("*/seed1/scores/test.json"))
            assert len(scores) == (1 if p == "sd" else FOLD_LIMIT), (system, p)
            for path in scores:
                s = json.loads(path.read_text())
                fold = path.parents[2].name
                test = tmp / "data" / data / "folds" / p / fold / "test"
                assert s["disjointness"]["checked"] and s["disjointness"]["utterances_disjoint"], path
                assert s["disjointness"]["speaker_independent"] is (p != "sd"), path
                assert set(s["heads"]) == set(heads), path
                for head, table in heads.items():
                    ref = read_table(test / table)
                    _, preds = read_predictions(path.parent.parent / "predictions" / "test" / f"{head}.txt")
                    utts = sorted(ref)
                    assert sorted(preds) == utts
                    y, h = [ref[u] for u in utts], [preds[u][0] for u in utts]
                    m = s["heads"][head]["metrics"]
                    assert m["ua"] == pytest.approx(balanced_accuracy_score(y, h), abs=1e-9)
                    assert m["wa"] == pytest.approx(accuracy_score(y, h), abs=1e-9)
                    assert m["f1"] == pytest.approx(f1_score(y, h, average="macro", zero_division=0), abs=1e-9)


def test_tune_saves_its_trials_and_never_reads_a_test_fold(recipe):
    tmp, _ = recipe
    study = tmp / "exp" / "tune" / "elor"
    trials = sorted(study.glob("trial-*/trial.yaml"))
    assert len(trials) == 2
    assert (study / "best_config.yaml").is_file() and len((study / "trials.tsv").read_text().splitlines()) == 3
    root = tmp / "data" / "va5" / "folds" / "loso"
    fold = root / root.joinpath("folds.txt").read_text().split()[0]
    sets = yaml.safe_load((study / "tune.yaml").read_text())["sets"]
    assert (sets["train"]["path"], sets["valid"]["path"]) == (str(fold / "train"), str(fold / "valid"))
    assert sets["fold"]["test_part"] == str(fold / "test") and sets["fold"]["test_part_read"] is False
    test_utts, test_spks = set(read_table(fold / "test" / "utt2spk")), speakers(fold / "test")
    for trial in trials:  # what each trial trained and selected on: no test utterance, no test speaker
        prov = trial.parent / "provenance"
        for name in ("train", "valid"):
            seen = read_table(prov / f"{name}.utt2spk")
            assert seen and not (set(seen) & test_utts) and not (set(seen.values()) & test_spks), (trial, name)


def test_interpretation_and_report_tables(recipe):
    tmp, _ = recipe
    out = tmp / "exp" / "interpret" / "elor"
    assert (out / "table6.md").is_file() and (out / "summary.yaml").is_file()
    results = (tmp / "RESULTS.md").read_text()
    assert "SYNTHETIC" in results
    for system in SYSTEMS:
        assert system in results
    assert "chance" in results.lower() and "majority" in results.lower() and "speaker-dependent" in results


def test_online_augmentation_mixes_training_noise_except_for_vector_inputs(tmp_path):
    """--augment online (the EmoDB recipe's option): noise dirs split disjoint, the neural systems on frame or
    waveform inputs train with train.augment on the training noises, FTR (a vector input) trains clean."""
    r = run_recipe(tmp_path, "--augment", "online", "--vae-models", "", "--va-models", "ftr", "--cnn-protocols", "sd",
                   "--tune-trials", "0", "--interpret-model", "", "--snr-range", "0:10", "--stop-stage", "4")
    assert r.returncode == 0, r.stderr[-3000:]
    noise = tmp_path / "data" / "noise"
    train_noises, test_noises = (set(read_table(noise / part / "wav.scp").values()) for part in ("train", "test"))
    assert train_noises and test_noises and not train_noises & test_noises
    cnn = yaml.safe_load(next((tmp_path / "exp" / "cnn_lstm2d_aug_online").glob("sd/*/seed1/config.yaml")).read_text())
    aug = cnn["train"]["augment"]
    assert Path(aug["noise"]).resolve() == (noise / "train").resolve() and list(aug["snr_range"]) == [0, 10]
    assert aug["prob"] == pytest.approx(0.984)
    ftr = yaml.safe_load(next((tmp_path / "exp" / "ftr").glob("loso/*/seed1/config.yaml")).read_text())
    assert not ftr["train"]["augment"]["noise"]
    assert not (tmp_path / "exp" / "ftr_aug_online").exists()
