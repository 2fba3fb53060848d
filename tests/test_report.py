"""``emotk score`` and ``emotk report`` end to end on handmade data dirs, predictions and exp trees."""

import json
import re
import subprocess
import sys
from pathlib import Path

import audmetric
import numpy as np
import pytest
import yaml
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score

from emotk.data.ark import write_ark_scp
from emotk.data.datadir import read_table, spk2utt_from, write_table
from emotk.errors import EmotkError
from emotk.evaluation.score import score

EMOTK = str(Path(sys.executable).parent / "emotk")
CLASSES = ["ang", "hap", "neu", "sad"]


def emotk(*args):
    return subprocess.run([EMOTK, *map(str, args)], capture_output=True, text=True)


def assert_one_line_error(r, *needles):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emotk: error:"), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def make_data_dir(path: Path, utt2emo: dict[str, str]) -> Path:
    utt2spk = {u: u.split("_")[0] for u in utt2emo}
    write_table(path / "utt2spk", utt2spk)
    write_table(path / "spk2utt", spk2utt_from(utt2spk))
    write_table(path / "utt2emo", utt2emo)
    return path


def make_fold(root: Path, name: str, protocol: str, test: dict, train: dict, speaker_independent=True) -> Path:
    fold = root / name
    make_data_dir(fold / "test", test)
    make_data_dir(fold / "train", train)
    meta = {"protocol": protocol, "speaker_independent": speaker_independent}
    if speaker_independent:
        meta["test_speakers"] = sorted({u.split("_")[0] for u in test})
    (fold / "fold.yaml").write_text(yaml.safe_dump(meta))
    return fold


def write_predictions(path: Path, preds: dict[str, str], classes=CLASSES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# utt label " + " ".join(classes)]
    for utt in sorted(preds):
        probs = [0.7 if c == preds[utt] else 0.3 / (len(classes) - 1) for c in classes]
        lines.append(f"{utt} {preds[utt]} " + " ".join(f"{p:.4f}" for p in probs))
    path.write_text("\n".join(lines) + "\n")
    return path


def random_run(rng, spks, n_per_spk=8, p_correct=0.6):
    ref, hyp = {}, {}
    for s in spks:
        for i in range(n_per_spk):
            u = f"{s}_u{i:02d}"
            ref[u] = CLASSES[i % len(CLASSES)]
            hyp[u] = ref[u] if rng.random() < p_correct else CLASSES[rng.integers(len(CLASSES))]
    return ref, hyp


# Categorical scoring ----------------------------------------------------------------------

TEST_REF = {"s1_a": "ang", "s1_b": "hap", "s1_c": "neu", "s1_d": "neu", "s1_e": "sad",
            "s2_a": "ang", "s2_b": "ang", "s2_c": "neu", "s2_d": "sad", "s2_e": "sad"}
TEST_HYP = {"s1_a": "ang", "s1_b": "neu", "s1_c": "neu", "s1_d": "hap", "s1_e": "sad",
            "s2_a": "neu", "s2_b": "ang", "s2_c": "neu", "s2_d": "neu", "s2_e": "sad"}
TRAIN = {"s3_a": "hap", "s3_b": "hap", "s3_c": "hap", "s3_d": "ang", "s4_a": "neu", "s4_b": "sad"}


@pytest.fixture
def scored(tmp_path):
    fold = make_fold(tmp_path / "data/folds/loso", "loso-s1s2", "loso", TEST_REF, TRAIN)
    exp = tmp_path / "exp/emodb/cnn/loso/loso-s1s2/seed3"
    exp.mkdir(parents=True)
    (exp / "config.yaml").write_text(yaml.safe_dump({"model": {"name": "cnn_lstm"}}))
    hyp = write_predictions(exp / "predictions/test.txt", TEST_HYP)
    return fold / "test", hyp, exp


def test_score_categorical_end_to_end(scored):
    ref, hyp, exp = scored
    r = emotk("score", "--metric", "ua,wa,f1", "--ref", ref, "--hyp", hyp)
    assert r.returncode == 0, r.stderr
    s = json.loads((exp / "scores/test.json").read_text())
    assert list(s["heads"]) == ["emotion"]  # a plain class file is the head named after utt2emo
    h = s["heads"]["emotion"]
    assert h["kind"] == "class" and h["labels"] == "utt2emo"
    utts = sorted(TEST_REF)
    t, p = [TEST_REF[u] for u in utts], [TEST_HYP[u] for u in utts]
    assert h["metrics"]["ua"] == pytest.approx(balanced_accuracy_score(t, p))
    assert h["metrics"]["wa"] == pytest.approx(accuracy_score(t, p))
    assert h["metrics"]["f1"] == pytest.approx(f1_score(t, p, average="macro"))
    assert h["per_class"]["ang"] == {"n": 3, "recall": pytest.approx(2 / 3), "precision": 1.0, "f1": pytest.approx(0.8)}
    assert h["counts"] == {"utterances": 10, "speakers": 2, "per_class": {"ang": 3, "hap": 1, "neu": 3, "sad": 3}}
    assert h["confusion"]["labels"] == CLASSES
    assert h["confusion"]["matrix"] == [[2, 0, 1, 0], [0, 0, 1, 0], [0, 1, 2, 0], [0, 0, 1, 2]]
    assert h["per_speaker"]["s2"]["confusion"] == [[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]
    assert h["baselines"]["chance"]["ua"] == pytest.approx(0.25)
    # the training set's majority class (hap) is rare in test: WA of the majority predictor is 1/10
    assert h["baselines"]["majority"]["class"] == "hap" and h["baselines"]["majority"]["source"] == "train dir"
    assert h["baselines"]["majority"]["wa"] == pytest.approx(0.1) and h["baselines"]["majority"]["ua"] == pytest.approx(0.25)
    assert s["fold"]["protocol"] == "loso" and s["fold"]["name"] == "loso-s1s2" and s["fold"]["test_speakers"] == ["s1", "s2"]
    assert s["model"] == {"tag": "cnn", "name": "cnn_lstm"} and s["seed"] == 3
    assert s["ref"] == str(ref.resolve()) and s["hyp"] == str(hyp.resolve())
    table = (exp / "scores/test.emotion.confusion.txt").read_text().splitlines()
    assert table[2].split()[:3] == ["ang", "2", "(66.7%)"]
    png = exp / "plots/confusion_test_emotion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in exp.rglob(".*") if p.is_file()]  # no temporary files left


def test_no_majority_baseline_without_training_labels(tmp_path):
    ref = make_data_dir(tmp_path / "test", TEST_REF)
    hyp = write_predictions(tmp_path / "exp/predictions/test.txt", TEST_HYP)
    s, out = score(ref, hyp)
    assert out == (tmp_path / "exp/scores/test.json").resolve()
    h = s["heads"]["emotion"]
    assert h["baselines"]["majority"] is None  # never taken from the test set itself
    assert s["fold"] is None and set(h["metrics"]) == {"ua", "wa", "f1"}
    assert s["disjointness"] == {"checked": False, "reason": f"no provenance record in {(tmp_path / 'exp').resolve()}"}


def test_score_bad_inputs(scored, tmp_path):
    ref, hyp, exp = scored
    text = hyp.read_text()
    extra = tmp_path / "extra/predictions/test.txt"
    write_predictions(extra, {**TEST_HYP, "s9_zz": "ang"})
    assert_one_line_error(emotk("score", "--ref", ref, "--hyp", extra), "s9_zz")
    missing = write_predictions(tmp_path / "missing/predictions/test.txt", {k: v for k, v in TEST_HYP.items() if k != "s2_c"})
    assert_one_line_error(emotk("score", "--ref", ref, "--hyp", missing), "s2_c")
    lines = text.splitlines()
    lines[2] = lines[2].rsplit(" ", 1)[0]  # one probability short
    bad = tmp_path / "bad/predictions/test.txt"
    bad.parent.mkdir(parents=True)
    bad.write_text("\n".join(lines) + "\n")
    assert_one_line_error(emotk("score", "--ref", ref, "--hyp", bad), f"{bad}:3")
    lines = text.splitlines()
    parts = lines[4].split()
    lines[4] = " ".join([parts[0], "fear", *parts[2:]])
    bad.write_text("\n".join(lines) + "\n")
    assert_one_line_error(emotk("score", "--ref", ref, "--hyp", bad), f"{bad}:5", "'fear'")
    lines = text.splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0] + " nan"
    bad.write_text("\n".join(lines) + "\n")
    assert_one_line_error(emotk("score", "--ref", ref, "--hyp", bad), f"{bad}:4", "s1_c")
    assert_one_line_error(emotk("score", "--metric", "ua,uar", "--ref", ref, "--hyp", hyp), "unknown metric 'uar'")
    assert_one_line_error(emotk("score", "--metric", "ccc", "--ref", ref, "--hyp", hyp), "'ccc'")
    assert not (tmp_path / "bad/scores").exists()


# Continuous scoring -----------------------------------------------------------------------

def make_continuous(tmp_path, frames_off=0):
    """Two recordings whose levels differ; the prediction follows each recording's level but
    not its movement within the recording."""
    rng = np.random.default_rng(0)
    ref_mats, hyp_mats = {}, {}
    for utt, level in (("s1_rec", -0.5), ("s2_rec", 0.5)):
        t = np.arange(200)
        arousal = level + 0.2 * np.sin(t / 10)
        valence = 0.3 * np.cos(t / 15)
        ref_mats[utt] = np.stack([arousal, valence], axis=1)
        n = 200 + (frames_off if utt == "s2_rec" else 0)
        pred_a = level + 0.05 * rng.normal(size=n)
        pred_v = 0.3 * np.cos(np.arange(n) / 15) + 0.1
        hyp_mats[utt] = np.stack([pred_v, pred_a], axis=1)  # hyp columns in another order
    ref = tmp_path / "data/test"
    write_table(ref / "utt2spk", {u: u.split("_")[0] for u in ref_mats})
    write_ark_scp(ref / "labels.ark", ref / "labels.scp", ref_mats.items())
    (ref / "label_names").write_text("arousal valence\n")
    (ref / "label_frame_shift").write_text("0.04\n")
    hyp = tmp_path / "exp/recola/ldnn/seed1/predictions/test"
    hyp.mkdir(parents=True)
    write_ark_scp(hyp / "labels.ark", hyp / "labels.scp", hyp_mats.items())
    (hyp / "label_names").write_text("valence arousal\n")
    (hyp / "label_frame_shift").write_text("0.04\n")
    return ref, hyp, ref_mats, hyp_mats


def test_score_continuous(tmp_path):
    ref, hyp, ref_mats, hyp_mats = make_continuous(tmp_path, frames_off=2)
    r = emotk("score", "--metric", "ccc,rmse", "--ref", ref, "--hyp", hyp)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "exp/recola/ldnn/seed1/scores/test.json").read_text())["heads"]["labels"]
    assert s["kind"] == "frame_regression" and s["dims"] == ["valence", "arousal"] and set(s["metrics"]["arousal"]) == {"ccc", "rmse"}
    assert s["counts"] == {"recordings": 2, "speakers": 2, "frames": 400, "truncated": {"s2_rec": 2}}
    cat_ref = np.concatenate([ref_mats[u][:, 0] for u in sorted(ref_mats)])
    cat_hyp = np.concatenate([hyp_mats[u][:200, 1] for u in sorted(hyp_mats)])
    a = s["metrics"]["arousal"]["ccc"]
    assert a == pytest.approx(audmetric.concordance_cc(cat_ref, cat_hyp), abs=1e-6)
    per_rec = s["per_recording"]["arousal"]["ccc"]
    assert per_rec["values"]["s1_rec"] == pytest.approx(
        audmetric.concordance_cc(ref_mats["s1_rec"][:, 0], hyp_mats["s1_rec"][:, 1]), abs=1e-6)
    assert per_rec["mean"] == pytest.approx(np.mean(list(per_rec["values"].values())))
    # levels between recordings are right, movement within them is not
    assert a > 0.8 and abs(per_rec["mean"]) < 0.2
    # valence: movement right, offset 0.1 costs CCC but RMSE is exactly 0.1
    assert s["metrics"]["valence"]["rmse"] == pytest.approx(0.1, abs=1e-5)
    assert 0.5 < s["metrics"]["valence"]["ccc"] < 1.0


def test_score_continuous_frame_mismatch(tmp_path):
    ref, hyp, _, _ = make_continuous(tmp_path, frames_off=-3)
    assert_one_line_error(emotk("score", "--ref", ref, "--hyp", hyp), "s2_rec", "197 frames")
    assert_one_line_error(emotk("score", "--metric", "ua", "--ref", ref, "--hyp", hyp), "'ua'")


def test_score_continuous_nan_names_utterance(tmp_path):
    import kaldi_io

    ref, hyp, _, hyp_mats = make_continuous(tmp_path)
    m = hyp_mats["s2_rec"].astype(np.float32)
    m[5, 1] = np.nan
    with open(hyp / "labels.ark", "wb") as f:  # write_ark_scp refuses NaN: write the bad ark by hand
        lines = []
        for utt, mat in (("s1_rec", hyp_mats["s1_rec"].astype(np.float32)), ("s2_rec", m)):
            f.write(f"{utt} ".encode())
            lines.append(f"{utt} {hyp / 'labels.ark'}:{f.tell()}\n")
            kaldi_io.write_mat(f, mat)
    (hyp / "labels.scp").write_text("".join(lines))
    assert_one_line_error(emotk("score", "--ref", ref, "--hyp", hyp), "s2_rec", "NaN")


# Report -----------------------------------------------------------------------------------

def build_exp_tree(tmp_path):
    """loso: model cnn with 2 folds x 2 seeds, model svm with 1 fold x 1 seed;
    random (speaker-dependent): cnn with 1 run. Returns {tag: [ua of each run]}."""
    rng = np.random.default_rng(7)
    folds = {"loso-s1": (["s1"], ["s2", "s3"]), "loso-s2": (["s2"], ["s1", "s3"])}
    uas, was = {"cnn": [], "svm": []}, {"cnn": []}
    for fold, (test_spks, train_spks) in folds.items():
        test_ref, _ = random_run(rng, test_spks, n_per_spk=12)
        train_ref = {f"{s}_t{i}": "neu" if i < 5 else CLASSES[i % 4] for s in train_spks for i in range(8)}
        fdir = make_fold(tmp_path / "data/folds/loso", fold, "loso", test_ref, train_ref)
        for tag, seeds in (("cnn", [1, 2]), ("svm", [1] if fold == "loso-s1" else [])):
            for seed in seeds:
                exp = tmp_path / f"exp/emodb/{tag}/loso/{fold}/seed{seed}"
                exp.mkdir(parents=True)
                (exp / "config.yaml").write_text(yaml.safe_dump({"model": {"name": f"{tag}_model"}, "train": {"seed": seed}}))
                p = {u: (t if rng.random() < (0.3 + 0.2 * seed) else CLASSES[rng.integers(4)]) for u, t in test_ref.items()}
                score(fdir / "test", write_predictions(exp / "predictions/test.txt", p))
                utts = sorted(test_ref)
                uas[tag].append(balanced_accuracy_score([test_ref[u] for u in utts], [p[u] for u in utts]))
                if tag == "cnn":
                    was[tag].append(accuracy_score([test_ref[u] for u in utts], [p[u] for u in utts]))
    test_ref, p = random_run(rng, ["s1", "s2", "s3"], n_per_spk=4)
    fdir = make_fold(tmp_path / "data/folds/random", "sd-random-1", "random", test_ref, {"s1_x": "hap"},
                     speaker_independent=False)
    exp = tmp_path / "exp/emodb/cnn/random/sd-random-1/seed1"
    score(fdir / "test", write_predictions(exp / "predictions/test.txt", p))
    return uas, was


def _row(text, section, model):
    part = text.split(section, 1)[1]
    return next(line for line in part.splitlines() if line.startswith(f"| {model} |"))


def test_report(tmp_path):
    uas, was = build_exp_tree(tmp_path)
    out = tmp_path / "RESULTS.md"
    r = emotk("report", tmp_path / "exp", "--out", out, "--title", "EmoDB", "--note", "SYNTHETIC CORPUS")
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.startswith("# EmoDB\n\n**SYNTHETIC CORPUS**")
    assert "Only **test** scores are read" in text
    cnn = _row(text, "## Protocol `loso`", "cnn").split(" | ")
    m, s = np.mean(uas["cnn"]), np.std(uas["cnn"], ddof=1)
    assert s > 0.01
    assert cnn[1:6] == ["emotion", "cnn_model", "2", "2", "4"]
    assert cnn[6] == f"{100 * m:.1f} ± {100 * s:.1f}"
    assert cnn[7] == f"{100 * np.mean(was['cnn']):.1f} ± {100 * np.std(was['cnn'], ddof=1):.1f}"
    assert re.match(r"[\d.]+ \[[\d.]+, [\d.]+\] \(2 spk\)", cnn[9])
    assert cnn[10] == "25.0"  # chance UA: 4 classes in the model's header
    assert cnn[11].rstrip(" |").split(" / ")[0] == "25.0"  # majority UA (train majority 'neu' is in test)
    svm = _row(text, "## Protocol `loso`", "svm").split(" | ")
    assert svm[3:6] == ["1", "1", "1"] and svm[6] == f"{100 * uas['svm'][0]:.1f}"
    assert "Test speakers per fold: `loso-s1`: s1; `loso-s2`: s2" in text
    assert "## Protocol `loso`: speaker-independent" in text
    assert "## Protocol `random`: **speaker-dependent: same speakers in train and test**" in text
    assert "`sd-random-1`: s1 s2 s3" in text
    assert "Majority class taken from: train dir in 5 of 5 runs" in text
    # no record: the report says so instead of asserting a selection set or normalization
    assert "model selection set and normalization: not recorded (no provenance record in 5 of 5 runs)" in text
    assert "used the valid sets, never test" not in text
    # svm was tested on one fold only: no paired comparison with cnn on different utterances
    assert "Paired comparison of `emotion`: not possible" in text


def test_chance_is_uniform_over_the_models_classes(tmp_path):
    ref = make_data_dir(tmp_path / "test", TEST_REF)  # 4 classes present in test
    classes = CLASSES + ["bor"]  # the model knows 5
    hyp = write_predictions(tmp_path / "exp/predictions/test.txt", TEST_HYP, classes)
    s, _ = score(ref, hyp)
    assert s["heads"]["emotion"]["baselines"]["chance"]["ua"] == pytest.approx(1 / 5)


# Provenance: disjointness and statements from records ------------------------------------------

def provenance(exp: Path, train: dict, valid: dict, *, speaker_independent=True, norm="speaker", classes=None):
    """A run's provenance written by the trainer's own writer (emotk.training.provenance)."""
    from emotk.training.provenance import write_record

    to_spk = lambda utts: {u: u.split("_")[0] for u in sorted(utts)}  # noqa: E731
    record = {"protocol": {"name": "loso", "speaker_independent": speaker_independent, "fold": "f"},
              "selection": {"set": "valid", "speakers": sorted(set(to_spk(valid).values())), "utterances": len(valid)},
              "normalization": {"feats": norm}, "seed": 1,
              "train": {"labels": {"emotion": {"table": "utt2emo", "classes": classes or {}}}}}
    write_record(exp, record, to_spk(train), to_spk(valid))


def test_scoring_refuses_test_utterances_the_model_was_trained_on(scored, tmp_path):
    ref, hyp, exp = scored
    provenance(exp, {**TRAIN, "s1_c": "neu"}, {"s4_a": "neu"})  # a test utterance planted in training
    assert_one_line_error(emotk("score", "--ref", ref, "--hyp", hyp), "'s1_c'", "train set", "refusing")
    assert not (exp / "scores/test.json").exists()
    provenance(exp, TRAIN, {"s2_zz": "neu"})  # a test speaker as valid speaker, protocol speaker-independent
    assert_one_line_error(emotk("score", "--ref", ref, "--hyp", hyp), "speaker 's2'", "valid set", "speaker-independent")
    provenance(exp, TRAIN, {"s2_c": "neu"})  # scoring the selection set itself: only when asked, and recorded
    assert_one_line_error(emotk("score", "--ref", ref, "--hyp", hyp), "'s2_c'", "valid set")
    r = emotk("score", "--selection-set", "--ref", ref, "--hyp", hyp)
    assert r.returncode == 0, r.stderr
    s = json.loads((exp / "scores/test.json").read_text())
    assert s["disjointness"]["scored_on_selection_set"] == 1 and s["disjointness"]["utterances_disjoint"] is False
    provenance(exp, TRAIN, {"s4_a": "neu"}, classes={"neu": 5, "ang": 2})
    s, _ = score(ref, hyp)
    d = s["disjointness"]
    assert d["checked"] and d["utterances_disjoint"] and d["speakers_checked"] and d["shared_speakers"] == 0
    assert d["train_utterances"] == len(TRAIN) and d["valid_utterances"] == 1
    # majority from the model's recorded training labels, before any train dir
    assert s["heads"]["emotion"]["baselines"]["majority"]["class"] == "neu"
    assert s["heads"]["emotion"]["baselines"]["majority"]["source"] == "provenance record (train)"


def test_speaker_dependent_run_may_share_speakers(tmp_path):
    fold = make_fold(tmp_path / "data/folds/random", "sd-random-1", "random", TEST_REF, TRAIN, speaker_independent=False)
    exp = tmp_path / "exp/cnn/seed1"
    hyp = write_predictions(exp / "predictions/test.txt", TEST_HYP)
    provenance(exp, {**TRAIN, "s1_zz": "ang"}, {"s4_a": "neu"}, speaker_independent=False)
    s, _ = score(fold / "test", hyp)
    assert s["disjointness"]["speakers_checked"] is False and s["disjointness"]["shared_speakers"] == 1


def test_report_statements_follow_the_records(scored, tmp_path):
    ref, hyp, exp = scored
    out = tmp_path / "R.md"
    provenance(exp, TRAIN, {"s4_a": "neu"}, norm="speaker")
    score(ref, hyp)
    assert emotk("report", exp, "--out", out).returncode == 0
    text = out.read_text()
    assert "Normalization: input `feats`: per-speaker statistics over all of the speaker's utterances" in text
    assert "Model selection (early stopping, checkpoint choice) used the valid set of 1 speaker(s) in 1 of 1 runs" in text
    assert "no test utterance among the model's train or valid utterances in 1 of 1 runs" in text
    assert "no test speaker among its train or valid speakers in 1 of 1 runs" in text
    provenance(exp, TRAIN, {"s4_a": "neu", "s3_a": "hap"}, norm="global")  # the record changes ...
    score(ref, hyp)
    assert emotk("report", exp, "--out", out).returncode == 0
    text = out.read_text()  # ... and so do the sentences
    assert "Normalization: input `feats`: mean and standard deviation of the training set only" in text
    assert "per-speaker statistics" not in text
    assert "used the valid set of 2 speaker(s) in 1 of 1 runs" in text


# Several heads --------------------------------------------------------------------------------

def test_heads_yaml_scores_every_head(tmp_path):
    rng = np.random.default_rng(3)
    ref = make_data_dir(tmp_path / "test", TEST_REF)
    arousal = {u: float(rng.normal()) for u in sorted(TEST_REF)}
    write_table(ref / "utt2arousal", arousal)
    pred = tmp_path / "exp/predictions/test"
    write_predictions(pred / "emotion.txt", TEST_HYP)
    guess = {u: 0.5 * v + float(rng.normal(scale=0.5)) for u, v in arousal.items()}
    (pred / "arousal.txt").write_text("# utt arousal\n" + "".join(f"{u} {v:.6f}\n" for u, v in guess.items()))
    (pred / "heads.yaml").write_text(yaml.safe_dump({
        "emotion": {"kind": "class", "labels": "utt2emo", "file": "emotion.txt"},
        "arousal": {"kind": "regression", "labels": "utt2arousal", "file": "arousal.txt"}}))
    r = emotk("score", "--ref", ref, "--hyp", pred)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "exp/scores/test.json").read_text())
    assert {n: h["kind"] for n, h in s["heads"].items()} == {"emotion": "class", "arousal": "regression"}
    utts = sorted(TEST_REF)
    written = read_table(ref / "utt2arousal", parse=float)  # as stored (rounded) in the data dir
    y = np.array([written[u] for u in utts])
    p = np.array([float(f"{guess[u]:.6f}") for u in utts])
    a = s["heads"]["arousal"]["metrics"]
    assert a["ccc"] == pytest.approx(audmetric.concordance_cc(y, p), abs=1e-9)
    assert a["pcc"] == pytest.approx(audmetric.pearson_cc(y, p), abs=1e-9)
    assert a["rmse"] == pytest.approx(np.sqrt(audmetric.mean_squared_error(y, p)), abs=1e-9)
    assert s["heads"]["emotion"]["metrics"]["ua"] == pytest.approx(
        balanced_accuracy_score([TEST_REF[u] for u in utts], [TEST_HYP[u] for u in utts]))
    out = tmp_path / "R.md"
    assert emotk("report", tmp_path / "exp", "--out", out).returncode == 0
    text = out.read_text()
    assert "### Class heads" in text and "### Regression heads (utterance level)" in text
    assert re.search(r"^\| exp \| arousal \| - \| 1 \| 1 \| 1 \| " + f"{a['ccc']:.3f}", text, re.M)
    assert re.search(r"^\| exp \| emotion \|", text, re.M)
    # a paper table over runs with two heads must name its head, and the metric must be the head's
    tables = tmp_path / "tables.yaml"
    table = {"title": "T", "metric": "ccc", "rows": [{"label": "E", "system": "exp"}], "cols": [{"label": "c"}]}
    tables.write_text(yaml.safe_dump([table]))
    assert_one_line_error(emotk("report", tmp_path / "exp", "--out", out, "--tables", tables), "[0].head: needed", "arousal, emotion")
    tables.write_text(yaml.safe_dump([{**table, "head": "emotion"}]))
    assert_one_line_error(emotk("report", tmp_path / "exp", "--out", out, "--tables", tables), "[0].metric", "'ccc'")
    tables.write_text(yaml.safe_dump([{**table, "head": "valence"}]))
    assert_one_line_error(emotk("report", tmp_path / "exp", "--out", out, "--tables", tables), "[0].head: 'valence'")
    tables.write_text(yaml.safe_dump([{**table, "head": "arousal"}]))
    assert emotk("report", tmp_path / "exp", "--out", out, "--tables", tables).returncode == 0
    text = out.read_text().split("### T", 1)[1]
    assert f"| E | {a['ccc']:.3f} |" in text and "*chance*" not in text  # no class baselines for a regression head


def test_report_continuous_with_ensemble(tmp_path):
    """Three runs with independent errors, averaged by ensemble_predictions: the ensemble beats every run."""
    from emotk.data.predictions import read_frame_labels
    from emotk.evaluation.ensemble import ensemble_predictions

    ref, _, ref_mats, _ = make_continuous(tmp_path)
    rng = np.random.default_rng(11)
    runs = []
    for seed in (1, 2, 3):
        run = tmp_path / f"exp/recola/ldnn/seed{seed}/predictions/test"
        mats = {u: m + rng.normal(scale=0.3, size=m.shape) for u, m in ref_mats.items()}
        run.mkdir(parents=True, exist_ok=True)  # seed1 replaces make_continuous's run
        write_ark_scp(run / "labels.ark", run / "labels.scp", mats.items())
        (run / "label_names").write_text("arousal valence\n")
        (run / "label_frame_shift").write_text("0.04\n")
        runs.append(run)
    singles = [score(ref, run, "ccc,rmse")[0]["heads"]["labels"]["metrics"] for run in runs]
    ens = tmp_path / "exp/recola/ldnn/ensemble/predictions/test"
    ensemble_predictions(runs, ens)
    _, _, averaged = read_frame_labels(ens)
    mean = {u: np.mean([read_frame_labels(r)[2][u] for r in runs], axis=0) for u in ref_mats}
    for u in ref_mats:
        np.testing.assert_allclose(averaged[u], mean[u], atol=1e-6)
    s2 = score(ref, ens, "ccc,rmse", tag="ldnn", ensemble=True)[0]["heads"]["labels"]["metrics"]
    for dim in ("arousal", "valence"):
        assert s2[dim]["ccc"] > max(m[dim]["ccc"] for m in singles)
        assert s2[dim]["rmse"] < min(m[dim]["rmse"] for m in singles)
    out = tmp_path / "RESULTS.md"
    r = emotk("report", tmp_path / "exp", "--out", out)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "| arousal CCC | arousal RMSE | valence CCC | valence RMSE |" in text
    vals = [m["arousal"]["ccc"] for m in singles]
    assert f"| ldnn | labels | - | 1 | 3 | 3 | {np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f} |" in text
    assert f"| ldnn (ensemble) | labels | - | 1 | 1 | 1 | {s2['arousal']['ccc']:.3f} |" in text
    assert "speaker independence not recorded" in text
    # the report compares the systems paired on the same recordings: the ensemble is the best
    assert "| ldnn (ensemble) (best) |" in text
    # a frame-level dimension in a paper table: ccc:<dim>
    tables = tmp_path / "tables.yaml"
    tables.write_text(yaml.safe_dump([{"title": "Table 1", "metric": "ccc:valence", "cols": [{"label": "dev", "set": "test"}],
                                       "rows": [{"label": "single", "system": "ldnn"}, {"label": "fused", "system": "ldnn (ensemble)"}]}]))
    r = emotk("report", tmp_path / "exp", "--out", out, "--tables", tables)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    vals = [m["valence"]["ccc"] for m in singles]
    assert f"| single | {np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f} (n=3) |" in text
    assert f"| fused | {s2['valence']['ccc']:.3f} (n=1) |" in text


def test_ensemble_of_heads_dirs(tmp_path):
    """Two runs' predictions dirs (a class and a regression head), averaged head by head and scored."""
    from emotk.data.predictions import write_class_predictions, write_heads_spec, write_value_predictions
    from emotk.evaluation.ensemble import ensemble_predictions

    ref = make_data_dir(tmp_path / "test", TEST_REF)
    write_table(ref / "utt2arousal", {u: float(i) for i, u in enumerate(sorted(TEST_REF))})
    utts = sorted(TEST_REF)
    rng = np.random.default_rng(5)
    runs, post, vals = [], [], []
    for k in range(2):
        run = tmp_path / f"exp/m/seed{k}/predictions/test"
        post.append([rng.dirichlet(np.ones(4)) for _ in utts])
        vals.append(list(rng.normal(size=len(utts))))
        write_class_predictions(run / "emotion.txt", utts, post[-1], CLASSES)
        write_value_predictions(run / "arousal.txt", utts, vals[-1], "arousal")
        write_heads_spec(run / "heads.yaml", {"emotion": {"kind": "class", "labels": "utt2emo", "file": "emotion.txt"},
                                              "arousal": {"kind": "regression", "labels": "utt2arousal", "file": "arousal.txt"}})
        runs.append(run)
    out = tmp_path / "exp/m/ensemble/predictions/test"
    r = ensemble_predictions(runs, out)
    assert r["heads"]["emotion"]["kind"] == "class" and r["heads"]["arousal"]["kind"] == "regression"
    from emotk.data.predictions import read_predictions, read_values

    _, preds = read_predictions(out / "emotion.txt")
    _, values = read_values(out / "arousal.txt")
    read_back = [read_predictions(run / "emotion.txt")[1] for run in runs]
    for i, u in enumerate(utts):
        mean = np.mean([np.array(rb[u][1]) for rb in read_back], axis=0)
        np.testing.assert_allclose(preds[u][1], mean, atol=1e-6)
        assert preds[u][0] == CLASSES[int(np.argmax(mean))]
        assert values[u] == pytest.approx(np.mean([float(f"{v[i]:.6f}") for v in vals]), abs=1e-6)
    s, _ = score(ref, out, ensemble=True)
    assert set(s["heads"]) == {"emotion", "arousal"} and s["ensemble"] is True


def test_report_without_scores_fails(tmp_path):
    (tmp_path / "exp").mkdir()
    assert_one_line_error(emotk("report", tmp_path / "exp", "--out", tmp_path / "R.md"), "no scores/test.json")


# Test conditions and paper-layout tables --------------------------------------------------------

def build_sets_tree(tmp_path):
    """Protocol tvt, one fold: cldnn_s with 3 seeds scored on test and test_noisy, cldnn_t with 2 seeds
    on test only, cldnn_s seed 1 also scored on its valid set. Returns the references and predictions
    {(system, set): [(ref, hyp), ...]} and the fold's training labels."""
    rng = np.random.default_rng(21)
    test_ref, _ = random_run(rng, ["s1", "s2"], n_per_spk=12)
    noisy_ref = {f"{u}-n": lab for u, lab in test_ref.items()}
    train = {f"{s}_t{i}": "sad" if i < 5 else CLASSES[i % 4] for s in ("s3", "s4") for i in range(8)}
    fold = make_fold(tmp_path / "data/folds/tvt", "tvt-1", "tvt", test_ref, train)
    make_data_dir(fold / "test_noisy", noisy_ref)
    make_data_dir(fold / "valid", {"s5_v0": "ang", "s5_v1": "hap"})
    runs = {}
    for tag, seeds, sets in (("cldnn_s", [1, 2, 3], {"test": test_ref, "test_noisy": noisy_ref}),
                             ("cldnn_t", [1, 2], {"test": test_ref})):
        for seed in seeds:
            exp = tmp_path / f"exp/{tag}/tvt/tvt-1/seed{seed}"
            for set_name, ref in sets.items():
                p_ok = 0.8 - 0.1 * seed - (0.3 if set_name == "test_noisy" else 0)
                hyp = {u: lab if rng.random() < p_ok else CLASSES[rng.integers(4)] for u, lab in ref.items()}
                score(fold / set_name, write_predictions(exp / f"predictions/{set_name}.txt", hyp))
                runs.setdefault((tag, set_name), []).append((ref, hyp))
            if tag == "cldnn_s" and seed == 1:
                score(fold / "valid", write_predictions(exp / "predictions/valid.txt", {"s5_v0": "ang", "s5_v1": "ang"}))
    return runs, train


def _sk(pairs, fn, **kw):
    """A metric of every run by scikit-learn, from the references and predictions themselves."""
    out = []
    for ref, hyp in pairs:
        utts = sorted(ref)
        out.append(fn([ref[u] for u in utts], [hyp[u] for u in utts], **kw))
    return out


def _cell(values, n=None):
    text = f"{100 * np.mean(values):.1f} ± {100 * np.std(values, ddof=1):.1f}"
    return text + (f" (n={n})" if n is not None else "")


TABLES = [
    {"title": "Table 4: convolution types, UA %", "metric": "ua", "head": "emotion",
     "rows": [{"label": "S-CLDNN", "system": "cldnn_s"}, {"label": "T-CLDNN", "system": "cldnn_t"},
              {"label": "any CLDNN", "system": "cldnn_*"}],
     "cols": [{"label": "clean", "protocol": "tvt", "set": "test"},
              {"label": "noisy", "protocol": "tvt", "set": "test_noisy"}]},
    {"title": "Table 5: per-class F1 %", "metric": "f1:sad",
     "rows": [{"label": "S-CLDNN", "system": "cldnn_s"}],
     "cols": [{"label": "clean", "set": "test"}, {"label": "noisy", "set": "test_noisy"}]},
    {"title": "Recall of sad and angry %", "metric": "recall:sad",
     "rows": [{"label": "S-CLDNN", "system": "cldnn_s"}], "cols": [{"label": "clean", "set": "test"}]},
]


def _table_row(text, title, label):
    part = text.split(f"### {title}", 1)[1]
    return next(line for line in part.splitlines() if line.startswith(f"| {label} |")).strip("| ").split(" | ")


def test_report_sets_and_paper_tables(tmp_path):
    runs, train = build_sets_tree(tmp_path)
    tables = tmp_path / "tables.yaml"
    tables.write_text(yaml.safe_dump(TABLES))
    out = tmp_path / "RESULTS.md"
    r = emotk("report", tmp_path / "exp", "--out", out, "--sets", "test,test_noisy", "--tables", tables)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    ua = {k: _sk(v, balanced_accuracy_score) for k, v in runs.items()}
    assert np.std(ua[("cldnn_s", "test")], ddof=1) > 0.01
    # cells: mean ± std of the matching runs; cell sizes differ (3, 2, 5, ...), so each says its n
    t4 = "Table 4: convolution types, UA %"
    assert _table_row(text, t4, "S-CLDNN") == ["S-CLDNN", _cell(ua[("cldnn_s", "test")], 3), _cell(ua[("cldnn_s", "test_noisy")], 3)]
    assert _table_row(text, t4, "T-CLDNN") == ["T-CLDNN", _cell(ua[("cldnn_t", "test")], 2), "-"]  # never scored noisy
    pooled = ua[("cldnn_s", "test")] + ua[("cldnn_t", "test")]  # a glob pools the systems it matches
    assert _table_row(text, t4, "any CLDNN") == ["any CLDNN", _cell(pooled, 5), _cell(ua[("cldnn_s", "test_noisy")], 3)]
    assert "any CLDNN: `cldnn_s`, `cldnn_t`" in text
    majority_ua = _sk([(ref, {u: "sad" for u in ref}) for ref, _ in runs[("cldnn_s", "test")]], balanced_accuracy_score)[0]
    assert _table_row(text, t4, "*chance*")[1:] == ["25.0", "25.0"]
    assert _table_row(text, t4, "*majority*")[1:] == [f"{100 * majority_ua:.1f}"] * 2
    # per-class F1 (one head: no head key needed); the majority row is sklearn's F1 of predicting 'sad' always
    f1 = {k: _sk(runs[k], f1_score, labels=["sad"], average=None) for k in (("cldnn_s", "test"), ("cldnn_s", "test_noisy"))}
    f1 = {k: [float(v[0]) for v in vs] for k, vs in f1.items()}
    t5 = "Table 5: per-class F1 %"
    assert _table_row(text, t5, "S-CLDNN") == ["S-CLDNN", _cell(f1[("cldnn_s", "test")]), _cell(f1[("cldnn_s", "test_noisy")])]
    ref = runs[("cldnn_s", "test")][0][0]
    majority_f1 = f1_score([ref[u] for u in sorted(ref)], ["sad"] * len(ref), labels=["sad"], average=None)[0]
    assert 0 < majority_f1 < 1
    assert _table_row(text, t5, "*majority*")[1:] == [f"{100 * majority_f1:.1f}"] * 2
    assert _table_row(text, t5, "*chance*")[1:] == ["-", "-"]  # no per-class F1 of a uniform guess is recorded
    assert "3 runs per cell" in text.split(f"### {t5}", 1)[1]
    # per-class recall: a uniform guess recalls 1/K of every class, the majority predictor all of its class
    recall = [float(v[0]) for v in _sk(runs[("cldnn_s", "test")], recall_score, labels=["sad"], average=None)]
    t6 = "Recall of sad and angry %"
    assert _table_row(text, t6, "S-CLDNN")[1] == _cell(recall)
    assert _table_row(text, t6, "*chance*")[1] == "25.0" and _table_row(text, t6, "*majority*")[1] == "100.0"
    # each table states its runs' protocol and records with the report's own sentences
    part = text.split(f"### {t5}", 1)[1].split("## Protocol", 1)[0]
    assert "- Protocols: `tvt`: speaker-independent (fold.yaml of every test set)." in part
    assert "not recorded (no provenance record in 6 of 6 runs)" in part
    # the standard sections stay, one per protocol and set, after the tables; valid is never read
    assert text.index("## Tables in the papers' layout") < text.index("## Protocol `tvt`, set `test`: speaker-independent")
    assert text.index("## Protocol `tvt`, set `test`:") < text.index("## Protocol `tvt`, set `test_noisy`:")
    noisy = text.split("## Protocol `tvt`, set `test_noisy`:", 1)[1]
    assert _row(noisy, "### Class heads", "cldnn_s").split(" | ")[6] == _cell(ua[("cldnn_s", "test_noisy")])
    assert "| cldnn_t |" not in noisy
    assert "from 8 test-score files" in text and "s5" not in text  # scores/valid.json (speaker s5) is never read
    tables.write_text(yaml.safe_dump([{**TABLES[2], "metric": "recall:ang"}]))
    r = emotk("report", tmp_path / "exp", "--out", out, "--tables", tables)
    assert r.returncode == 0, r.stderr
    assert _table_row(out.read_text(), t6, "*majority*")[1] == "0.0"  # 'ang' is never the majority's answer


def test_report_tables_add_their_sets(tmp_path):
    runs, _ = build_sets_tree(tmp_path)
    tables = tmp_path / "tables.yaml"
    tables.write_text(yaml.safe_dump(TABLES[1:]))
    out = tmp_path / "R.md"
    r = emotk("report", tmp_path / "exp", "--out", out, "--tables", tables)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "## Protocol `tvt`, set `test_noisy`:" in text  # the figures of a table always have their section


def test_report_refuses_sets_other_than_test(tmp_path):
    build_sets_tree(tmp_path)
    out = tmp_path / "R.md"
    assert_one_line_error(emotk("report", tmp_path / "exp", "--out", out, "--sets", "test,valid"), "--sets", "'valid'")
    assert_one_line_error(emotk("report", tmp_path / "exp", "--out", out, "--sets", "test/../valid"), "--sets")
    tables = tmp_path / "t.yaml"
    bad = [{**TABLES[0], "cols": [{"label": "dev", "set": "valid"}]}]
    tables.write_text(yaml.safe_dump(bad))
    assert_one_line_error(emotk("report", tmp_path / "exp", "--out", out, "--tables", tables), "[0].cols[0].set", "'valid'")
    assert not out.exists()


@pytest.mark.parametrize("change, key", [
    (lambda t: t.pop("metric"), "[0].metric: missing"),
    (lambda t: t.update(metric="uar"), "[0].metric: unknown metric 'uar'"),
    (lambda t: t.update(colour="red"), "[0].colour: unknown key"),
    (lambda t: t["rows"][1].pop("system"), "[0].rows[1].system: missing"),
    (lambda t: t.update(rows=[]), "[0].rows: a non-empty list expected"),
    (lambda t: t["cols"][1].update(label=None), "[0].cols[1].label: a non-empty text expected"),
    (lambda t: t.update(cols="clean"), "[0].cols: a non-empty list expected"),
])
def test_bad_tables_file_names_the_key(tmp_path, change, key):
    (tmp_path / "exp").mkdir()
    table = json.loads(json.dumps(TABLES[0]))
    change(table)
    tables = tmp_path / "tables.yaml"
    tables.write_text(yaml.safe_dump([table]))
    assert_one_line_error(emotk("report", tmp_path / "exp", "--out", tmp_path / "R.md", "--tables", tables),
                          f"{tables}: {key}")


def test_tables_checked_against_the_runs(tmp_path):
    build_sets_tree(tmp_path)
    tables = tmp_path / "tables.yaml"
    out = tmp_path / "R.md"
    tables.write_text(yaml.safe_dump([{**TABLES[1], "metric": "f1:angry"}]))  # no such class
    assert_one_line_error(emotk("report", tmp_path / "exp", "--out", out, "--tables", tables), "[0].metric", "'f1:angry'", "f1:sad")
    tables.write_text("- title: [unclosed\n")
    assert_one_line_error(emotk("report", tmp_path / "exp", "--out", out, "--tables", tables), str(tables), "not valid YAML")
    assert not out.exists()


def test_table_head_and_protocol_needed_only_when_ambiguous(tmp_path):
    from emotk.evaluation.report import find_scores, load_runs
    from emotk.evaluation.tables import load_tables, render_tables

    build_sets_tree(tmp_path)
    fold = make_fold(tmp_path / "data/folds/random", "sd-1", "random", TEST_REF, TRAIN, speaker_independent=False)
    score(fold / "test", write_predictions(tmp_path / "exp/cldnn_s/random/sd-1/seed1/predictions/test.txt", TEST_HYP))
    runs = [r for p in find_scores([tmp_path / "exp"]) for r in load_runs(p)]
    tables = tmp_path / "tables.yaml"
    tables.write_text(yaml.safe_dump([{**TABLES[1], "cols": [{"label": "clean"}]}]))
    with pytest.raises(EmotkError, match=r"\[0\]\.cols\[0\]\.protocol: needed, .* random, tvt"):
        render_tables(load_tables(tables), runs)
    tables.write_text(yaml.safe_dump([{**TABLES[1], "cols": [{"label": "sd", "protocol": "random"}, {"label": "x", "protocol": "loso"}]}]))
    text = "\n".join(render_tables(load_tables(tables), runs))
    utts = sorted(TEST_REF)
    sd_f1 = f1_score([TEST_REF[u] for u in utts], [TEST_HYP[u] for u in utts], labels=["sad"], average=None)[0]
    assert f"| S-CLDNN | {100 * sd_f1:.1f} | - |" in text  # one run: no ±; loso: no run
    assert "`random`: **speaker-dependent: same speakers in train and test**" in text
