"""RECOLA / AVEC 2016: ARFF parsing, data prep and its checks, label/feature alignment, CCC, the
synthetic corpus, ensembles, the continuous analyses and the recipe end to end (killed and resumed)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import audmetric
import numpy as np
import pytest
import soundfile as sf

from emotk.analysis.continuous import (
    downsample_restore,
    label_spectrum,
    resampling_ccc,
    trajectory_table,
    write_label_spectrum,
    write_resampling,
)
from emotk.corpora.arff import read_arff
from emotk.corpora.recola import (
    LABEL_FRAME_SHIFT,
    audio_frames,
    make_synthetic,
    prepare_recola,
    read_gold_standard,
    synthetic_trajectories,
)
from emotk.data.ark import read_matrix
from emotk.data.datadir import DataDir
from emotk.data.predictions import read_frame_labels, write_class_predictions, write_frame_predictions
from emotk.errors import EmotkError
from emotk.training.expdir import TEST_EXIT_ENV
from emotk.training.provenance import read_record, read_trained
from emotk.metrics.regression import ccc
from emotk.evaluation.ensemble import ensemble_predictions

ROOT = Path(__file__).resolve().parent.parent
EMOTK = [sys.executable, "-c", "from emotk.cli import main; main()"]
SR = 16000


def run_cli(*args, **kw):
    return subprocess.run([*EMOTK, *map(str, args)], capture_output=True, text=True, **kw)


def gold_text(rec, values, times=None, name_quote="", header=None, data_prefix=""):
    times = np.arange(len(values)) * LABEL_FRAME_SHIFT if times is None else times
    head = header or ["@relation GOLDSTANDARD_AROUSAL", "", "@attribute Instance_name string",
                      "@attribute frameTime numeric", "@attribute GoldStandard numeric", "", "@data"]
    rows = [f"{name_quote}{rec}{name_quote},{t:.6f},{v:.6f}" for t, v in zip(times, values)]
    return "\n".join(head) + "\n" + data_prefix + "\n".join(rows) + "\n"


def tiny_corpus(root: Path, recs=("train_1", "train_2", "dev_1", "test_1"), seconds=2.0, label_rows=None,
                unlabelled=("test_1",)):
    """AVEC 2016 layout: noise wavs of ``seconds`` and ARFF gold standards (sines) for the labelled ones."""
    rng = np.random.default_rng(0)
    (root / "recordings_audio").mkdir(parents=True)
    n_rows = label_rows or audio_frames(seconds) + 1
    for k, rec in enumerate(recs):
        sf.write(root / "recordings_audio" / f"{rec}.wav", 0.1 * rng.standard_normal(int(seconds * SR)), SR)
        if rec in unlabelled:
            continue
        t = np.arange(n_rows) * LABEL_FRAME_SHIFT
        for d, dim in enumerate(("arousal", "valence")):
            p = root / "ratings_gold_standard" / dim / f"{rec}.arff"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(gold_text(rec, 0.2 * np.sin(0.3 * t + k + d)))
    return root


# ARFF ---------------------------------------------------------------------------------------------

def test_arff_quoted_names_blank_lines_comments(tmp_path):
    p = tmp_path / "x.arff"
    p.write_text("% a comment line\n\n@RELATION 'GOLD STANDARD'\n\n"
                 "@attribute Instance_name string   % trailing comment\n"
                 "@Attribute \"frame Time\" NUMERIC\n\n"
                 "@attribute GoldStandard real\n@attribute cls {a, 'b c'}\n\n@DATA\n\n"
                 "'train_1',0.000000,0.125,a\n% comment in the data\n\n"
                 "\"train_1\" , 0.04 ,?,'b c'\n"
                 "'it\\'s',0.08,-1e-2,a\n")
    a = read_arff(p)
    assert a.relation == "GOLD STANDARD"
    assert [(x.name, x.type) for x in a.attributes] == [
        ("Instance_name", "string"), ("frame Time", "numeric"), ("GoldStandard", "numeric"), ("cls", "nominal")]
    assert a.attributes[3].values == ("a", "b c")
    assert a.rows == [["train_1", 0.0, 0.125, "a"], ["train_1", 0.04, None, "b c"], ["it's", 0.08, -0.01, "a"]]
    assert a.line_numbers == [13, 16, 17]
    assert a.column("frame Time") == [0.0, 0.04, 0.08]


@pytest.mark.parametrize("body, error", [
    ("@relation r\n@attribute a numeric\n@data\n1,2\n", r"x\.arff:4: expected 1 values, got 2"),
    ("@relation r\n@attribute a string\n@data\n'abc\n", r"x\.arff:4: unterminated quote"),
    ("@relation r\n@attribute a numeric\n@data\n{0 1}\n", r"x\.arff:4: sparse ARFF rows"),
    ("@relation r\n@attribute a relational\n@data\n", r"x\.arff:2: attribute 'a' has an unsupported type"),
    ("@relation r\n@attribute a numeric\n", r"x\.arff: no @data section"),
    ("@relation r\n@attribute a numeric\n@data\nabc\n", r"x\.arff:4: attribute 'a': not a number: 'abc'"),
    ("@relation r\n@attribute a {x, y}\n@data\nz\n", r"x\.arff:4: attribute 'a': 'z' is not one of"),
    ("@relation r\n@attribute a numeric\n@attribute a numeric\n", r"x\.arff:3: attribute 'a' declared twice"),
    ("@relation r\n@attribute a numeric\n@data\nnan\n", r"x\.arff:4: attribute 'a' is NaN"),
])
def test_arff_errors_name_file_and_line(tmp_path, body, error):
    p = tmp_path / "x.arff"
    p.write_text(body)
    with pytest.raises(EmotkError, match=error):
        read_arff(p)


def test_gold_standard_reader(tmp_path):
    p = tmp_path / "dev_3.arff"
    values = np.linspace(-0.2, 0.3, 26)
    p.write_text("% AVEC\n" + gold_text("dev_3", values, name_quote="'", data_prefix="\n"))
    np.testing.assert_allclose(read_gold_standard(p, "dev_3"), values, atol=1e-6)


@pytest.mark.parametrize("case, error", [
    ("missing_rows", r"dev_3\.arff:15: 2 missing row\(s\) between frameTime 0\.24 and 0\.36"),
    ("wrong_attribute", r"dev_3\.arff: attributes must be Instance_name \(string\), frameTime \(numeric\), "
                        r"GoldStandard \(numeric\); found Instance_name \(string\), frameTime \(numeric\), Rating \(numeric\)"),
    ("nan", r"dev_3\.arff:12: attribute 'GoldStandard' is NaN"),
    ("missing_value", r"dev_3\.arff:12: missing value \(\?\) for GoldStandard"),
    ("other_recording", r"dev_3\.arff:8: Instance_name 'dev_4' does not match the file's recording 'dev_3'"),
    ("not_increasing", r"dev_3\.arff:9: frameTime 0 does not increase"),
    ("late_start", r"dev_3\.arff:8: frameTime must start at 0, got 0\.04"),
])
def test_gold_standard_errors(tmp_path, case, error):
    values = np.linspace(-0.2, 0.3, 20)
    times = np.arange(20) * LABEL_FRAME_SHIFT
    text = gold_text("dev_3", values)
    if case == "missing_rows":
        text = gold_text("dev_3", np.delete(values, [7, 8]), np.delete(times, [7, 8]))
    elif case == "wrong_attribute":
        text = text.replace("GoldStandard", "Rating")
    elif case == "nan":
        text = text.replace(f",{values[4]:.6f}", ",NaN")
    elif case == "missing_value":
        text = text.replace(f",{values[4]:.6f}", ",?")
    elif case == "other_recording":
        text = text.replace("dev_3,0.000000", "dev_4,0.000000")
    elif case == "not_increasing":
        text = text.replace("dev_3,0.040000", "dev_3,0.000000")
    elif case == "late_start":
        text = gold_text("dev_3", values, times + LABEL_FRAME_SHIFT)
    p = tmp_path / "dev_3.arff"
    p.write_text(text)
    with pytest.raises(EmotkError, match=error):
        read_gold_standard(p, "dev_3")


# Data prep ----------------------------------------------------------------------------------------

def test_prepare_recola_layout(tmp_path):
    corpus = tiny_corpus(tmp_path / "c")
    counts = prepare_recola(corpus, tmp_path / "data")
    assert counts == {"train": 2, "dev": 1, "test": 1}
    tr = DataDir(tmp_path / "data" / "train")
    assert tr.utts == ["train_1", "train_2"] and tr.utt2spk == {"train_1": "train_1", "train_2": "train_2"}
    assert tr.label_names == ["arousal", "valence"] and float(tr.scalar("label_frame_shift")) == 0.04
    assert float(tr.table("utt2dur")["train_1"]) == pytest.approx(2.0)
    lab = read_matrix(tr.resolve(tr.table("labels.scp")["train_2"]))
    assert lab.shape == (51, 2)  # frameTime 0 .. 2.00, as AVEC's 7501 rows for 300 s
    t = np.arange(51) * 0.04
    np.testing.assert_allclose(lab[:, 1], 0.2 * np.sin(0.3 * t + 2), atol=1e-6)
    test = DataDir(tmp_path / "data" / "test")
    assert test.utts == ["test_1"] and not test.has("labels.scp") and not test.has("label_names")


@pytest.mark.parametrize("case, error", [
    ("wrong_attribute", r"error: .*train_2\.arff: attributes must be Instance_name \(string\)"),
    ("nan", r"error: .*train_2\.arff:9: attribute 'GoldStandard' is NaN"),
    ("no_labels", r"error: train_2: partition 'train' has gold standards but this recording has none: "
                  r".*valence/train_2\.arff not found"),
    ("short_labels", r"error: train_1: labels much shorter than audio: 26 label frames \(1\.04 s\) for 2\.00 s "
                     r"of audio \(50 frames"),
    ("long_labels", r"error: train_1: labels much longer than audio: 80 label frames"),
    ("no_audio", r"error: .*arousal/train_3\.arff: gold standard of a recording with no audio"),
])
def test_prepare_bad_input_one_clear_error(tmp_path, case, error):
    rows = {"short_labels": 26, "long_labels": 80}.get(case)
    corpus = tiny_corpus(tmp_path / "c", recs=("train_1", "train_2"), label_rows=rows, unlabelled=())
    arff = corpus / "ratings_gold_standard" / "valence" / "train_2.arff"
    if case == "wrong_attribute":
        arff.write_text(arff.read_text().replace("GoldStandard numeric", "GoldStandard string"))
    elif case == "nan":
        lines = arff.read_text().splitlines()
        lines[8] = lines[8].rsplit(",", 1)[0] + ",nan"
        arff.write_text("\n".join(lines) + "\n")
    elif case == "no_labels":
        arff.unlink()
    elif case == "no_audio":
        (corpus / "recordings_audio" / "train_2.wav").rename(corpus / "recordings_audio" / "dev_1.wav")
        (arff.parent.parent / "arousal" / "train_2.arff").rename(arff.parent.parent / "arousal" / "train_3.arff")
    r = run_cli("prepare-recola", corpus, tmp_path / "data")
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("emotk: error: ")
    assert re.search(error, r.stderr), r.stderr
    assert not (tmp_path / "data").exists()  # nothing written: every partition is checked first


def test_prepare_tolerates_two_frames_and_reports(tmp_path):
    corpus = tiny_corpus(tmp_path / "c", recs=("train_1",), label_rows=audio_frames(2.0) - 2, unlabelled=())
    msgs = []
    prepare_recola(corpus, tmp_path / "data", log=msgs.append)
    assert any("1 recording(s) with 2 label frame(s) fewer than audio frames" in m for m in msgs)


@pytest.mark.parametrize("seconds", [2.0, 2.01, 2.02, 2.03, 2.045])
def test_stacking_aligns_features_with_labels(tmp_path, seconds):
    """Kaldi framing (25/10 ms, snip_edges) + stacking by 4 (any remainder) ends within 2 frames of the labels."""
    from emotk.config import load_config
    from emotk.features.cmvn import compute_cmvn_data_dir
    from emotk.features.extract import load_feature_config
    from emotk.features.pipeline import extract_data_dir, resolve_feature_config
    from emotk.training.dataset import SerDataset
    from emotk.training.heads import load_head
    from emotk.training.inputs import open_sources

    corpus = tiny_corpus(tmp_path / "c", recs=("train_1",), seconds=seconds, unlabelled=())
    prepare_recola(corpus, tmp_path / "data")
    d = tmp_path / "data" / "train"
    extract_data_dir(d, load_feature_config(resolve_feature_config("fbank40")), log=lambda m: None)
    compute_cmvn_data_dir(d)
    n10 = int(DataDir(d).table("utt2num_frames")["train_1"])
    n_labels = audio_frames(seconds) + 1
    assert n10 == 1 + (int(seconds * SR) - 400) // 160
    cfg = load_config(ROOT / "conf" / "model" / "dilated_cnn.yaml")
    dd = DataDir(d)
    ds = SerDataset(dd, open_sources(dd, cfg["inputs"]), {"labels": load_head(dd, "labels", cfg["heads"]["labels"])},
                    cfg["segments"])
    _, inputs, targets = ds[0]
    stacked = -(-n10 // 4)  # a last partial group is completed by repeating the last frame
    assert inputs["feats"].shape == (min(stacked, n_labels), 160)
    assert targets["labels"].shape == (min(stacked, n_labels), 2)
    assert abs(stacked - n_labels) <= 2
    # frame t of the stacked features holds 10 ms frames 4t .. 4t+3, i.e. it starts at 0.04 t like label t
    raw = read_matrix(DataDir(d).resolve(DataDir(d).table("feats.scp")["train_1"]))
    z = (raw - raw.mean(0)) / raw.std(0)
    np.testing.assert_allclose(inputs["feats"][3], z[12:16].reshape(-1), atol=1e-4)


# CCC ----------------------------------------------------------------------------------------------

def test_ccc_identical_shifted_scaled_constant():
    rng = np.random.default_rng(0)
    y = np.cumsum(rng.standard_normal(2000)) * 0.01 + 0.1
    m, v = y.mean(), y.var()
    cases = {
        "identical": (y, 1.0),
        "offset": (y + 0.3, 2 * v / (2 * v + 0.09)),
        "scaled": (2 * y, 2 * 2 * v / (v + 4 * v + m ** 2)),
        "time_shift": (np.roll(y, 50), None),
        "constant_prediction": (np.full_like(y, m), 0.0),
    }
    for name, (pred, want) in cases.items():
        got = ccc(pred, y)
        assert got == pytest.approx(audmetric.concordance_cc(y, pred), abs=1e-9), name
        if want is not None:
            assert got == pytest.approx(want, abs=1e-9), name
    assert ccc(np.roll(y, 50), y) < ccc(np.roll(y, 5), y) < 1.0
    assert ccc(np.full(10, 0.3), np.full(10, 0.3)) == 1.0
    assert ccc(np.full(10, 0.3), np.full(10, 0.5)) == 0.0


# Synthetic corpus ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("recola")
    return make_synthetic(root / "corpus", seed=5, size=1, duration=12.0)


def test_synthetic_corpus_layout_and_labels(synthetic, tmp_path):
    files = sorted(str(p.relative_to(synthetic)) for p in synthetic.rglob("*") if p.is_file())
    assert files == ["README.txt", "ratings_gold_standard/arousal/dev_1.arff", "ratings_gold_standard/arousal/train_1.arff",
                     "ratings_gold_standard/valence/dev_1.arff", "ratings_gold_standard/valence/train_1.arff",
                     "recordings_audio/dev_1.wav", "recordings_audio/test_1.wav", "recordings_audio/train_1.wav",
                     "synthetic.json"]
    wav, sr = sf.read(synthetic / "recordings_audio" / "train_1.wav")
    assert sr == SR and len(wav) == 12 * SR and np.abs(wav).max() > 0.05
    voiced = np.mean(np.abs(wav.reshape(-1, 400)).max(1) > 0.02)
    assert 0.3 < voiced < 0.98  # speech with pauses
    prepare_recola(synthetic, tmp_path / "data")
    names, shift, mats = read_frame_labels(tmp_path / "data" / "dev")
    assert mats["dev_1"].shape == (301, 2)
    # recordings are numbered train, dev, test in turn: dev_1 is the second
    np.testing.assert_allclose(mats["dev_1"], synthetic_trajectories(5, 1, 301)[1], atol=1e-6)
    # an unchanged corpus is kept: same parameters do not rewrite it
    mtime = (synthetic / "recordings_audio" / "train_1.wav").stat().st_mtime_ns
    make_synthetic(synthetic, seed=5, size=1, duration=12.0)
    assert (synthetic / "recordings_audio" / "train_1.wav").stat().st_mtime_ns == mtime


def test_synthetic_labelled_test_partition(synthetic, tmp_path):
    """--test-labels writes test gold standards (the same audio and trajectories); prepare then labels test."""
    labelled = make_synthetic(tmp_path / "corpus", seed=5, size=1, duration=12.0, test_labels=True)
    assert (labelled / "recordings_audio" / "test_1.wav").read_bytes() == \
        (synthetic / "recordings_audio" / "test_1.wav").read_bytes()
    prepare_recola(labelled, tmp_path / "data")
    prepare_recola(synthetic, tmp_path / "unlabelled")
    assert not (tmp_path / "unlabelled" / "test" / "labels.scp").exists()
    names, shift, mats = read_frame_labels(tmp_path / "data" / "test")
    assert names == ["arousal", "valence"] and shift == pytest.approx(0.04)
    np.testing.assert_allclose(mats["test_1"], synthetic_trajectories(5, 2, 301)[1], atol=1e-6)


def test_synthetic_labels_are_slow_like_recola():
    """Real size (9 recordings of 300 s): over 95 % of the power below 1 Hz and under 5 % CCC loss
    when downsampled by 64, as paper 000 measured on the real labels; the gold standard lags the latent."""
    n = audio_frames(300.0) + 1
    traj = {f"train_{k}": synthetic_trajectories(0, k, n) for k in range(9)}
    gold = {u: g for u, (_, g) in traj.items()}
    r = label_spectrum(gold, ["arousal", "valence"], LABEL_FRAME_SHIFT)
    assert min(r["share_below"].values()) > 0.95
    res = resampling_ccc(gold, ["arousal", "valence"], (64,))
    assert min(res["arousal"][64], res["valence"][64]) > 0.95
    latent, g = traj["train_0"]
    lags = [max(range(0, 150, 5), key=lambda s: ccc(latent[: n - s, d], g[s:, d])) for d in range(2)]
    assert all(45 <= s <= 105 for s in lags)  # 2-4 s


def test_synthetic_corpus_is_deterministic_and_seeded(synthetic, tmp_path):
    again = make_synthetic(tmp_path / "again", seed=5, size=1, duration=12.0)
    other = make_synthetic(tmp_path / "other", seed=6, size=1, duration=12.0)
    for rel in ("recordings_audio/dev_1.wav", "ratings_gold_standard/valence/train_1.arff"):
        assert (again / rel).read_bytes() == (synthetic / rel).read_bytes()
        assert (other / rel).read_bytes() != (synthetic / rel).read_bytes()


# Ensembles ----------------------------------------------------------------------------------------

def test_ensemble_of_frame_predictions(tmp_path):
    rng = np.random.default_rng(1)
    runs = []
    for k in range(3):
        utts = ["dev_1", "dev_2"]
        mats = [rng.standard_normal((20 + k, 1)).astype(np.float32), rng.standard_normal((15, 1)).astype(np.float32)]
        write_frame_predictions(tmp_path / f"run{k}", utts, mats, ["arousal"], 0.04)
        runs.append(dict(zip(utts, mats)))
    r = ensemble_predictions([tmp_path / f"run{k}" for k in range(3)], tmp_path / "ens")
    assert r == {"kind": "frame_regression", "runs": 3, "utterances": 2}
    names, shift, out = read_frame_labels(tmp_path / "ens")
    assert names == ["arousal"] and shift == 0.04
    np.testing.assert_allclose(out["dev_1"], np.mean([m["dev_1"][:20] for m in runs], 0), atol=1e-6)  # cut to 20
    np.testing.assert_allclose(out["dev_2"], np.mean([m["dev_2"] for m in runs], 0), atol=1e-6)
    write_frame_predictions(tmp_path / "val", ["dev_1", "dev_2"], [np.zeros((20, 1))] * 2, ["valence"], 0.04)
    with pytest.raises(EmotkError, match="label_names: valence differs from .*arousal"):
        ensemble_predictions([tmp_path / "run0", tmp_path / "val"], tmp_path / "bad")
    write_frame_predictions(tmp_path / "far", ["dev_1", "dev_2"], [np.zeros((30, 1))] * 2, ["arousal"], 0.04)
    with pytest.raises(EmotkError, match="'dev_1' has 30 frames"):
        ensemble_predictions([tmp_path / "run0", tmp_path / "far"], tmp_path / "bad")
    write_frame_predictions(tmp_path / "one", ["dev_1"], [np.zeros((20, 1))], ["arousal"], 0.04)
    with pytest.raises(EmotkError, match="recordings differ"):
        ensemble_predictions([tmp_path / "run0", tmp_path / "one"], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_ensemble_of_categorical_posteriors_via_cli(tmp_path):
    classes = ["ang", "hap", "neu"]
    p1 = [np.array([0.6, 0.3, 0.1]), np.array([0.2, 0.2, 0.6])]
    p2 = [np.array([0.1, 0.8, 0.1]), np.array([0.3, 0.3, 0.4])]
    write_class_predictions(tmp_path / "a.txt", ["s1_u1", "s1_u2"], p1, classes)
    write_class_predictions(tmp_path / "b.txt", ["s1_u1", "s1_u2"], p2, classes)
    r = run_cli("ensemble-predictions", tmp_path / "a.txt", tmp_path / "b.txt", "--out", tmp_path / "ens.txt")
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "ens.txt").read_text().splitlines()
    assert lines[0] == "# utt label ang hap neu"
    assert lines[1] == "s1_u1 hap 0.350000 0.550000 0.100000"  # neither run alone: ang, hap -> mean favours hap
    assert lines[2] == "s1_u2 neu 0.250000 0.250000 0.500000"
    r = run_cli("ensemble-predictions", tmp_path / "a.txt", tmp_path, "--out", tmp_path / "x")
    assert r.returncode == 1 and "cannot mix" in r.stderr


# Analyses -----------------------------------------------------------------------------------------

def test_label_spectrum_and_resampling(tmp_path):
    t = np.arange(3000) * 0.04
    slow = np.stack([np.sin(2 * np.pi * 0.05 * t), np.sin(2 * np.pi * 3.0 * t)], 1)
    r = label_spectrum({"a": slow}, ["slow", "fast"], 0.04, cutoff=1.0)
    assert r["share_below"]["slow"] > 0.99 and r["share_below"]["fast"] < 0.01
    png, tsv = write_label_spectrum(r, tmp_path)
    assert png.stat().st_size > 1000 and tsv.read_text().splitlines()[1].startswith("all\t")
    # a cubic spline restores a cubic polynomial exactly, whatever the factor
    cubic = 1e-9 * (t * 25 - 700) ** 3
    np.testing.assert_allclose(downsample_restore(cubic, 64), cubic, atol=1e-9)
    rng = np.random.default_rng(0)
    from scipy.signal import butter, sosfiltfilt
    smooth = sosfiltfilt(butter(4, 0.2, fs=25, output="sos"), rng.standard_normal((3000, 1)), axis=0)
    res = resampling_ccc({"a": smooth[:1700], "b": smooth[1700:]}, ["x"], (2, 8, 32, 128))
    c = [res["x"][f] for f in (2, 8, 32, 128)]
    assert c[0] > 0.999 and c == sorted(c, reverse=True) and c[-1] < 0.9
    png, tsv = write_resampling(res, 0.04, tmp_path)
    assert tsv.read_text().splitlines()[0] == "factor\tseconds_per_sample\tccc_x"


def test_trajectory_table_merges_per_dimension_runs(tmp_path):
    corpus = tiny_corpus(tmp_path / "c", recs=("dev_1",), seconds=4.0, unlabelled=())
    prepare_recola(corpus, tmp_path / "data")
    _, _, ref = read_frame_labels(tmp_path / "data" / "dev")
    r = ref["dev_1"]
    write_frame_predictions(tmp_path / "a", ["dev_1"], [r[:, :1] + 0.05], ["arousal"], 0.04)
    write_frame_predictions(tmp_path / "v", ["dev_1"], [r[:-1, 1:] * 0.5], ["valence"], 0.04)
    curves, rows = trajectory_table(tmp_path / "data" / "dev", {"m": [tmp_path / "a", tmp_path / "v"]}, "dev_1",
                                    start=1.0, end=3.0)
    assert curves["m"].shape == (50, 2) and curves["time"][0] == pytest.approx(1.0)
    got = {(row[0], row[1]): row for row in rows}
    seg = slice(25, 75)
    assert got[("m", "arousal")][2] == pytest.approx(ccc(r[seg, 0] + 0.05, r[seg, 0]))
    assert got[("m", "valence")][3] == pytest.approx(np.sqrt(np.mean((0.5 * r[seg, 1] - r[seg, 1]) ** 2)))
    with pytest.raises(EmotkError, match="dimension 'arousal' twice"):
        trajectory_table(tmp_path / "data" / "dev", {"m": [tmp_path / "a", tmp_path / "a"]}, "dev_1")


# The recipe ---------------------------------------------------------------------------------------

def test_recipe_end_to_end_killed_and_resumed_from_stage_3(tmp_path):
    """run.sh on a tiny synthetic corpus: every training run stops after its first epoch's checkpoint (the
    trainer's test hook, as a kill there), the recipe fails; re-entered with --stage 3 the runs resume."""
    opts = ["--synthetic-size", "2", "--synthetic-duration", "16", "--seeds", "1 2", "--epochs", "4", "--patience", "4",
            "--models", "downup_cnn blstm_regressor", "--sweep-lengths", "4 64", "--sweep-runs", "1",
            "--sweep-epochs", "2", "--traj-end", "10",
            "--synthetic-dir", tmp_path / "corpus", "--data", tmp_path / "data", "--exp", tmp_path / "exp",
            "--results", tmp_path / "RESULTS.md"]
    opts = [str(o) for o in opts]
    cmd = ["bash", str(ROOT / "recipes" / "recola" / "run.sh"), *opts]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(cmd, capture_output=True, text=True, env={**env, TEST_EXIT_ENV: "1"}, timeout=600)
    assert r.returncode != 0 and "Stage 4" in r.stderr and "Stage 5" not in r.stderr, r.stderr[-3000:]
    killed = [p.parent.parent for p in (tmp_path / "exp").glob("*/*/seed*/checkpoints/last.pt")]
    assert killed and not any((run / "done").exists() for run in killed)
    r = subprocess.run(cmd + ["--stage", "3"], capture_output=True, text=True, env=env, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "SYNTHETIC" in r.stderr
    for run in killed:
        assert "resuming after epoch" in (run / "train.out").read_text()
    text = (tmp_path / "RESULTS.md").read_text()
    assert "SYNTHETIC look-alike corpus" in text
    assert "run(s) under analysis, blstm_regressor, downup_cnn were chosen on `dev` (2 utterances of 2 speaker(s): dev_1 dev_2)" in text
    assert "Normalization of input `feats` in" in text and ": speaker (per-speaker statistics" in text
    assert "### Table 1: Arousal results" in text and "### Table 2: Valence results" in text
    for row in ("| downup_cnn | 2 |", "| downup_cnn ensemble | average of 2 |", "| blstm_regressor | 2 |"):
        assert row in text
    assert "receptive field 727 frames (29.1 s)" in text and "receptive field whole recording" in text
    for section in ("## Label spectrum", "## Label resampling", "## Receptive field sweep", "## Trajectories"):
        assert section in text
    for png in ("label_spectrum", "label_resampling", "rf_sweep/receptive_field_sweep", "trajectories"):
        assert (tmp_path / "exp" / "analysis" / f"{png}.png").stat().st_size > 1000
    # the AVEC scores: CCC over the concatenated dev recordings, checked against audmetric
    run = tmp_path / "exp" / "downup_cnn" / "arousal" / "ensemble"
    s = json.loads((run / "scores" / "dev.json").read_text())
    _, _, ref = read_frame_labels(tmp_path / "data" / "dev")
    _, _, hyp = read_frame_labels(run / "predictions" / "dev" / "labels")
    n = {u: min(len(ref[u]), len(hyp[u])) for u in ref}
    y = np.concatenate([ref[u][: n[u], 0] for u in sorted(ref)])
    p = np.concatenate([hyp[u][: n[u], 0] for u in sorted(ref)])
    m = s["heads"]["labels"]["metrics"]["arousal"]
    assert m["ccc"] == pytest.approx(audmetric.concordance_cc(y, p), abs=1e-6)
    assert m["rmse"] == pytest.approx(np.sqrt(audmetric.mean_squared_error(y, p)), abs=1e-6)
    # test labels are withheld: predictions exist, no scores
    assert (run / "predictions" / "test" / "labels" / "labels.scp").is_file() and not (run / "scores" / "test.json").exists()


def test_recipe_selects_on_held_out_train_and_scores_labelled_test(tmp_path):
    """--selection train-holdout: a whole train recording chooses the checkpoints, dev is then an honest
    held-out score; with a labelled synthetic test partition, test is scored too; global normalization."""
    opts = ["--synthetic-size", "3", "--synthetic-duration", "12", "--synthetic-test-labels", "true",
            "--selection", "train-holdout", "--holdout", "1", "--norm", "global", "--seeds", "1", "--epochs", "2",
            "--patience", "2", "--models", "downup_cnn", "--dims", "arousal", "--stop-stage", "6",
            "--synthetic-dir", tmp_path / "corpus", "--data", tmp_path / "data", "--exp", tmp_path / "exp"]
    cmd = ["bash", str(ROOT / "recipes" / "recola" / "run.sh"), *map(str, opts)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "exp" / "downup_cnn" / "arousal" / "seed1"
    trained = read_trained(run)
    assert sorted(set(trained["valid"])) == ["train_3"]  # the held-out whole recording chose the checkpoints
    assert "train_3" not in trained["train"] and not any(u.startswith("dev") for u in {**trained["train"], **trained["valid"]})
    assert read_record(run)["normalization"] == {"feats": "global"}
    for part in ("dev", "test"):
        s = json.loads((run / "scores" / f"{part}.json").read_text())
        assert s["disjointness"]["checked"] and not s["disjointness"]["scored_on_selection_set"], part
        _, _, ref = read_frame_labels(tmp_path / "data" / part)
        _, _, hyp = read_frame_labels(run / "predictions" / part / "labels")
        y = np.concatenate([ref[u][: min(len(ref[u]), len(hyp[u])), 0] for u in sorted(ref)])
        p = np.concatenate([hyp[u][: min(len(ref[u]), len(hyp[u])), 0] for u in sorted(ref)])
        assert s["heads"]["labels"]["metrics"]["arousal"]["ccc"] == pytest.approx(audmetric.concordance_cc(y, p), abs=1e-6)
