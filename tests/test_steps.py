"""steps/*.sh, the stage scripts the recipes share: each against the emotk command it wraps run directly
(or an independent reference), on a tiny synthetic EmoDB; options, usage and errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import balanced_accuracy_score

from emotk.data.ark import read_vector_table
from emotk.data.datadir import read_table
from emotk.data.predictions import read_predictions
from emotk.training.provenance import read_trained

ROOT = Path(__file__).resolve().parents[1]
STEPS = ROOT / "steps"
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
OPTIONS = {  # the options each step declares
    "make_fbank.sh": ["--cmd", "--nj", "--config", "--kind"],
    "make_opensmile.sh": ["--cmd", "--nj", "--level"],
    "make_noise_dirs.sh": ["--musan-dir", "--synthetic-dir", "--test-fraction", "--seed"],
    "augment_data_dir.sh": ["--cmd", "--nj", "--noises-per-utt", "--snrs-per-noise", "--snr-range", "--seed",
                            "--keep-clean"],
    "train.sh": ["--cmd", "--seed", "--opts", "--augment-noise", "--augment-prob", "--snr-range"],
    "decode.sh": ["--cmd", "--set", "--stage", "--skip-scoring", "--infer-opts", "--score-opts"],
}


def step(cwd: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(STEPS / name), *map(str, args)], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=600)


def emotk(cwd: Path, *args: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / "emotk"), *map(str, args)], cwd=cwd, env=ENV, check=True,
                   capture_output=True)


def _feats(data: Path) -> dict[str, np.ndarray]:
    import kaldi_native_io

    with kaldi_native_io.SequentialFloatMatrixReader(f"scp:{data / 'feats.scp'}") as reader:
        return {utt: np.array(mat) for utt, mat in reader}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A prepared 14-utterance synthetic EmoDB (data/all) to copy from."""
    base = tmp_path_factory.mktemp("steps")
    emotk(base, "make-synthetic-corpus", "emodb", "corpus", "--size", "14", "--seed", "1")
    emotk(base, "prepare-emodb", "corpus", "data/all")
    return base


@pytest.fixture
def work(corpus, tmp_path) -> Path:
    shutil.copytree(corpus / "data", tmp_path / "data")
    return tmp_path


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_help_usage_and_unknown_options(name, tmp_path):
    r = step(tmp_path, name, "--help")
    assert r.returncode == 0 and r.stdout.startswith(f"Usage: {name} [options]\n")
    listed = [ln.split()[0] for ln in r.stdout.split("Options (--name VALUE or --name=VALUE) [default]:\n")[1].splitlines()]
    assert listed == OPTIONS[name]
    r = step(tmp_path, name)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and r.stderr.startswith(f"Usage: {name} [options] ")
    r = step(tmp_path, name, "--no-such", "1", "x")
    assert r.returncode == 1 and r.stderr.splitlines() == [
        f"{name}: unknown option --no-such ({name} --help lists the options)"]


def test_make_fbank_jobs_give_the_single_process_features(work):
    shutil.copytree(work / "data" / "all", work / "ref" / "all")
    r = step(work, "make_fbank.sh", "--nj", "3", "--config", "fbank40", "data/all", "exp/log")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (work / "exp" / "log").iterdir()) == [f"make_fbank_all.{j}.log" for j in (1, 2, 3)]
    emotk(work, "extract-fbank", "ref/all", "--config", "fbank40")
    got, ref = _feats(work / "data" / "all"), _feats(work / "ref" / "all")
    assert list(got) == list(ref) and len(got) == 14
    for utt in ref:
        assert got[utt].shape[1] == 40 and got[utt].tobytes() == ref[utt].tobytes(), utt
    for name in ("utt2num_frames", "frame_shift"):
        assert (work / "data" / "all" / name).read_bytes() == (work / "ref" / "all" / name).read_bytes()

    r = step(work, "make_fbank.sh", "--nj", "2", "--kind", "mfcc", "data/all", "exp/log")   # mfcc13 by default
    assert r.returncode == 0, r.stderr
    assert {m.shape[1] for m in _feats(work / "data" / "all").values()} == {13}
    r = step(work, "make_fbank.sh", "--kind", "plp", "data/all", "exp/log")
    assert r.returncode == 1 and r.stderr.splitlines() == ["make_fbank.sh: --kind must be fbank or mfcc, not 'plp'"]


def test_make_opensmile_writes_the_official_set_sizes(work):
    for level, table, dim in (("functionals", "egemapsv02.scp", 88), ("lld", "egemapsv02_lld.scp", 25)):
        r = step(work, "make_opensmile.sh", "--nj", "2", "--level", level, "data/all", "eGeMAPSv02", "exp/log")
        assert r.returncode == 0, r.stderr
        assert (work / "exp" / "log" / f"make_opensmile_eGeMAPSv02_{level}_all.2.log").is_file()
        scp = read_table(work / "data" / "all" / table)
        assert sorted(scp) == sorted(read_table(work / "data" / "all" / "utt2spk"))
    assert {v.shape for _, v in read_vector_table(work / "data" / "all" / "egemapsv02.scp")} == {(88,)}


def test_noise_dirs_are_disjoint_and_augmentation_follows_its_options(work):
    r = step(work, "make_noise_dirs.sh", "--synthetic-dir", "musan", "--test-fraction", "0.25", "data/noise")
    assert r.returncode == 0, r.stderr
    assert "SYNTHETIC noise look-alike" in r.stderr
    noise = {p: read_table(work / "data" / "noise" / p / "wav.scp") for p in ("all", "train", "test")}
    assert len(noise["test"]) == len(noise["all"]) // 4 and not set(noise["train"].values()) & set(noise["test"].values())
    assert {**noise["train"], **noise["test"]} == noise["all"]

    clean = read_table(work / "data" / "all" / "utt2spk")
    for keep, copies in (("false", 3 * 2), ("true", 3 * 2 + 1)):
        r = step(work, "augment_data_dir.sh", "--nj", "2", "--noises-per-utt", "3", "--snrs-per-noise", "2",
                 "--snr-range", "-5:5", "--seed", "4", "--keep-clean", keep, "data/all", "data/noise/train",
                 f"data/aug_{keep}")
        assert r.returncode == 0, r.stderr
        aug = read_table(work / "data" / f"aug_{keep}" / "utt2aug")
        assert len(aug) == copies * len(clean) and (set(clean) <= set(aug)) == (keep == "true")
        for utt, record in aug.items():
            if record != "-":
                _, _, snr, path = record.split(maxsplit=3)
                assert -5 <= float(snr) <= 5 and path in noise["train"].values(), utt
        assert (work / "data" / "log" / f"augment_aug_{keep}.log").is_file()


def test_train_and_decode_a_classifier_and_score_it(work):
    emotk(work, "extract-opensmile", "data/all", "--set", "eGeMAPSv02")
    emotk(work, "split-data-dir", "data/all", "data/folds", "--protocol", "random", "--test-fraction", "0.3",
          "--valid-fraction", "0.2", "--seed", "1")
    fold = work / "data" / "folds" / "sd-random-1"
    exp = work / "exp" / "logreg"
    train = ["--seed", "3", "--opts", "--set inputs.functionals.norm=none --set inputs.functionals.norm_table=null",
             "logreg", fold / "train", fold / "valid", exp]
    r = step(work, "train.sh", *train)
    assert r.returncode == 0, r.stderr
    assert (exp / "done").is_file() and yaml.safe_load((exp / "config.yaml").read_text())["train"]["seed"] == 3
    assert read_trained(exp)["train"] == read_table(fold / "train" / "utt2spk")
    r = step(work, "train.sh", *train)   # the same run again: skipped
    assert r.returncode == 0 and "skipping" in (exp / "train.out").read_text()

    r = step(work, "decode.sh", exp, fold / "test")
    assert r.returncode == 0, r.stderr
    scores = json.loads((exp / "scores" / "test.json").read_text())
    ref = read_table(fold / "test" / "utt2emo")
    _, preds = read_predictions(exp / "predictions" / "test" / "emotion.txt")
    assert sorted(preds) == sorted(ref)
    ua = balanced_accuracy_score([ref[u] for u in sorted(ref)], [preds[u][0] for u in sorted(ref)])
    assert abs(scores["heads"]["emotion"]["metrics"]["ua"] - ua) < 1e-9
    assert sorted(p.name for p in (exp / "log").iterdir()) == ["infer_test.log", "score_test.log"]

    # --stage 1 scores the predictions there; --skip-scoring only predicts; --set names the outputs.
    predicted = (exp / "predictions" / "test" / "emotion.txt").stat().st_mtime_ns
    (exp / "scores" / "test.json").unlink()
    r = step(work, "decode.sh", "--stage", "1", "--score-opts", "--tag mine", exp, fold / "test")
    assert r.returncode == 0, r.stderr
    assert (exp / "predictions" / "test" / "emotion.txt").stat().st_mtime_ns == predicted
    assert json.loads((exp / "scores" / "test.json").read_text())["model"]["tag"] == "mine"
    r = step(work, "decode.sh", "--set", "heldout", "--skip-scoring", "true", exp, fold / "test")
    assert r.returncode == 0, r.stderr
    assert (exp / "predictions" / "heldout" / "emotion.txt").is_file() and not (exp / "scores" / "heldout.json").exists()
    # a test set the model was trained on is refused when scoring, naming an utterance
    r = step(work, "decode.sh", "--set", "train", exp, fold / "train")
    assert r.returncode != 0 and not (exp / "scores" / "train.json").exists()


def test_train_passes_on_the_fly_augmentation_as_config(work):
    step(work, "make_noise_dirs.sh", "--synthetic-dir", "musan", "data/noise")
    emotk(work, "split-data-dir", "data/all", "data/folds", "--protocol", "random", "--valid-fraction", "0.2",
          "--seed", "1")
    fold = work / "data" / "folds" / "sd-random-1"
    exp = work / "exp" / "raw"
    tiny = ("--set train.epochs=1 --set model.params.channels=[4,4,4,4] --set model.params.lstm_size=4 "
            "--set segments.length=1.0")
    r = step(work, "train.sh", "--opts", tiny, "--augment-noise", "data/noise/train", "--augment-prob", "0.5",
             "--snr-range", "-5:5", "cnn_lstm1d", fold / "train", fold / "valid", exp)
    assert r.returncode == 0, r.stderr
    # "-5:5" reaches the config as the range, not as YAML's base-60 number -305
    assert yaml.safe_load((exp / "config.yaml").read_text())["train"]["augment"] == {
        "noise": "data/noise/train", "prob": 0.5, "snr_range": [-5.0, 5.0]}
