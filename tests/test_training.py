"""Config, training loop, exp dir, kill + resume, inference and its predictions formats."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from emotk.config import load_config
from emotk.data.ark import read_matrix, write_ark_scp
from emotk.data.datadir import DataDir, write_data_dir
from emotk.errors import EmotkError
from emotk.inference import infer
from emotk.training.losses import ccc_loss, inverse_frequency_weights
from emotk.training.expdir import TEST_EXIT_CODE, TEST_EXIT_ENV
from emotk.training.loop import train
from emotk.metrics.regression import ccc
from tests.toydata import CLASSES, read_scp_table, write_feature_dir

torch.set_num_threads(1)
EMOTK = [sys.executable, "-c", "from emotk.cli import main; main()"]
LDNN_TINY = ["model.params.lstm_size=8", "model.params.fc_sizes=[8,8,8]", "train.num_threads=1"]


def quiet(msg):
    pass


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {
        "train": write_feature_dir(root / "train", spks=("s1", "s2", "s3"), seed=1),
        "valid": write_feature_dir(root / "valid", spks=("s4",), seed=2),
    }


def cfg_for(model, *extra):
    conf = Path(__file__).resolve().parent.parent / "conf" / "model" / f"{model}_small.yaml"
    return load_config(conf, ["inputs.feats.norm=none", "inputs.feats.splice=[0,0]", "train.max_frames=null",
                              "train.batch_size=4", *extra])


# Config -------------------------------------------------------------------------------------

def test_config_merge_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: {name: ldnn, params: {lstm_size: 16, dropout: 0.1}}\ntrain: {epochs: 3}\n")
    cfg = load_config(p, ["model.params.lstm_size=32", "train.lr=5e-4", "inputs.feats.splice=[1, 2]"])
    assert cfg["model"]["params"] == {"lstm_size": 32, "dropout": 0.1}  # merged, not replaced
    assert cfg["train"]["epochs"] == 3 and cfg["train"]["lr"] == 5e-4 and cfg["train"]["batch_size"] == 16
    assert cfg["inputs"]["feats"]["splice"] == [1, 2] and cfg["inputs"]["feats"]["norm"] == "speaker"  # defaults filled
    assert cfg["heads"] == {"emotion": {"kind": "class", "labels": "utt2emo", "dims": None, "loss": "ce", "weight": 1.0,
                                        "class_weights": True}}
    with pytest.raises(EmotkError, match=r"c\.yaml.*'train\.epoch'"):
        p.write_text("model: {name: ldnn}\ntrain: {epoch: 3}\n")
        load_config(p)
    p.write_text("model: {name: ldnn}\n")
    with pytest.raises(EmotkError, match="'inputs.feats.cmvm'"):
        load_config(p, ["inputs.feats.cmvm=none"])
    with pytest.raises(EmotkError, match="inputs.feats.norm must be one of"):
        load_config(p, ["inputs.feats.norm=gobal"])
    with pytest.raises(EmotkError, match="heads.emotion.loss 'ccc' does not fit"):
        load_config(p, ["heads.emotion.loss=ccc"])
    with pytest.raises(EmotkError, match="train.select must be 'mean' or a head"):
        load_config(p, ["train.select=arousal"])
    with pytest.raises(EmotkError, match="expected key.sub=value"):
        load_config(p, ["train.lr"])


# Pieces ---------------------------------------------------------------------------------------

def test_losses_and_weights():
    torch.manual_seed(0)
    pred, target = torch.randn(3, 10, 2), torch.randn(3, 10, 2)
    lengths = torch.tensor([10, 4, 7])
    p = torch.cat([pred[i, :n] for i, n in enumerate(lengths.tolist())]).numpy()
    t = torch.cat([target[i, :n] for i, n in enumerate(lengths.tolist())]).numpy()
    want = 1 - np.mean([ccc(p[:, k], t[:, k]) for k in range(2)])
    assert ccc_loss(pred, target, lengths).item() == pytest.approx(want, abs=1e-5)
    assert inverse_frequency_weights([10, 30, 0]).tolist() == pytest.approx([2.0, 2 / 3, 0.0])


# Training ----------------------------------------------------------------------------------------

def test_cnn_lstm2d_learns_toy_task_and_fills_exp_dir(dirs, tmp_path):
    test_dir = write_feature_dir(tmp_path / "test", spks=("s5",), seed=5)  # never seen in training or selection
    cfg = cfg_for("cnn_lstm2d", "model.params.channels=[4,4,8,8]", "model.params.lstm_size=16",
                  "train.epochs=8", "train.patience=8", "train.lr=0.01")
    exp = tmp_path / "exp"
    summary = train(cfg, dirs["train"], dirs["valid"], exp, command="test", log=quiet)
    assert summary["best_valid_ua"] >= 0.9
    assert (exp / "done").is_file() and yaml.safe_load((exp / "done").read_text())["best_epoch"] >= 1
    assert yaml.safe_load((exp / "config.yaml").read_text()) == cfg
    env = (exp / "env.txt").read_text()
    assert "torch: " + torch.__version__ in env and "command: test" in env
    lines = (exp / "train.log").read_text().splitlines()
    assert len(lines) == summary["epochs"] and lines[0].startswith("epoch=1 train_loss=")
    for name in ("best", "last"):
        ck = torch.load(exp / "checkpoints" / f"{name}.pt", weights_only=True)
        assert ck["meta"]["heads"]["emotion"]["names"] == list(CLASSES)
    # predictions on an unseen speaker: header, sorted ids, posteriors, argmax label, high accuracy
    out = infer(exp, [test_dir], log=quiet)
    assert out == exp / "predictions" / "test"
    rows = (out / "emotion.txt").read_text().splitlines()
    assert rows[0] == "# utt label ang neu"
    utts = [r.split()[0] for r in rows[1:]]
    assert utts == sorted(DataDir(test_dir).utts)
    correct = 0
    for r in rows[1:]:
        utt, label, *p = r.split()
        p = np.array(p, dtype=float)
        assert p.sum() == pytest.approx(1, abs=1e-5) and label == CLASSES[int(p.argmax())]
        correct += label == utt.split("-")[1][:3]
    assert correct / len(utts) >= 0.9
    from emotk.evaluation.score import score_class

    scores = score_class(DataDir(test_dir), out / "emotion.txt", "utt2emo", ["ua"])
    assert scores["metrics"]["ua"] == pytest.approx(correct / len(utts))  # balanced test set: UA = accuracy
    # a finished exp dir is skipped; --overwrite trains again
    mtime = (exp / "checkpoints" / "last.pt").stat().st_mtime_ns
    assert train(cfg, dirs["train"], dirs["valid"], exp, log=quiet) is None
    assert (exp / "checkpoints" / "last.pt").stat().st_mtime_ns == mtime
    one = cfg_for("cnn_lstm2d", "model.params.channels=[4,4,8,8]", "model.params.lstm_size=16", "train.epochs=1")
    assert train(one, dirs["train"], dirs["valid"], exp, overwrite=True, log=quiet)["epochs"] == 1
    assert not (exp / "predictions").exists() and len((exp / "train.log").read_text().splitlines()) == 1


def test_speaker_cmvn(tmp_path):
    train_dir = write_feature_dir(tmp_path / "train", spks=("s1", "s2"), seed=3, cmvn=True)
    valid_dir = write_feature_dir(tmp_path / "valid", spks=("s3",), seed=4, cmvn=True)
    from emotk.training.inputs import open_sources

    cfg = cfg_for("ldnn", "inputs.feats.norm=speaker")
    d = DataDir(train_dir)
    feats = open_sources(d, cfg["inputs"])["feats"]
    x = np.concatenate([feats.read(u) for u in d.utts if d.utt2spk[u] == "s1"])
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(0), 1, atol=1e-3)
    no_cmvn = write_feature_dir(tmp_path / "nocmvn", spks=("s5",), seed=5)
    with pytest.raises(EmotkError, match="compute-cmvn"):
        train(cfg, train_dir, no_cmvn, tmp_path / "exp", log=quiet)
    assert (tmp_path / "exp").exists() is False or not (tmp_path / "exp" / "done").exists()
    assert train(cfg_for("ldnn", "inputs.feats.norm=speaker", "train.epochs=1", *LDNN_TINY), train_dir, valid_dir,
                 tmp_path / "exp2", log=quiet)["epochs"] == 1


def test_label_errors(dirs, tmp_path):
    cfg = cfg_for("ldnn", *LDNN_TINY)
    odd = write_feature_dir(tmp_path / "odd", spks=("s9",), seed=6, extra_label="sad")
    with pytest.raises(EmotkError, match=r"utt2emo: utterance 's9-ang00' has label 'sad', not one of the training classes"):
        train(cfg, dirs["train"], odd, tmp_path / "exp", log=quiet)
    nofeats = tmp_path / "nofeats"
    write_data_dir(nofeats, {"utt2spk": {"s1-a": "s1"}, "utt2emo": {"s1-a": "ang"}})
    with pytest.raises(EmotkError, match="missing feats.scp"):
        train(cfg, nofeats, dirs["valid"], tmp_path / "exp3", log=quiet)
    with pytest.raises(EmotkError, match=r"model 'ldnn': unknown parameter 'lstm_sise' in model.params \(known: lstm_size"):
        train(cfg_for("ldnn", "model.params.lstm_sise=3"), nofeats, dirs["valid"], tmp_path / "exp5", log=quiet)
    with pytest.raises(EmotkError, match="produces utterance-level outputs, but head 'emotion' is 'frame_regression'"):
        train(cfg_for("ldnn", "heads.emotion.kind=frame_regression"), nofeats, dirs["valid"], tmp_path / "exp6", log=quiet)
    with pytest.raises(EmotkError, match="not a directory"):
        train(cfg, tmp_path / "missing", dirs["valid"], tmp_path / "exp4", log=quiet)


# CLI, kill and resume -----------------------------------------------------------------------------

def run_cli(*args, **kw):
    return subprocess.run([*EMOTK, *map(str, args)], capture_output=True, text=True, **kw)


def test_cli_errors_are_one_line(dirs, tmp_path):
    conf = Path(__file__).resolve().parent.parent / "conf" / "model" / "ldnn_small.yaml"
    r = run_cli("train", "--config", conf, "--train", dirs["train"], "--valid", dirs["valid"],
                "--exp", tmp_path / "exp", "--set", "train.epoks=3")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "unknown config key 'train.epoks'" in r.stderr and "Traceback" not in r.stderr


KILL_SETS = ["inputs.feats.norm=none", "inputs.feats.splice=[0,0]", "train.max_frames=40", "train.batch_size=2",
             "model.params.lstm_size=48", "train.num_threads=1", "train.seed=7"]


def _train_args(train_dir, valid_dir, exp, epochs):
    conf = Path(__file__).resolve().parent.parent / "conf" / "model" / "ldnn_small.yaml"
    sets = KILL_SETS + [f"train.epochs={epochs}", f"train.patience={epochs}"]
    return ["train", "--config", conf, "--train", train_dir, "--valid", valid_dir, "--exp", exp,
            *[a for s in sets for a in ("--set", s)]]


def test_killed_run_resumes_to_the_same_weights(dirs, tmp_path):
    """`emotk train` stopped right after epoch 1's checkpoint (the trainer's test hook, as a kill there);
    --resume ends with the uninterrupted run's weights."""
    big = write_feature_dir(tmp_path / "big", spks=("s1", "s2", "s3"), n_per_class=16, min_len=60, seed=8)
    epochs = 3
    ref, exp = tmp_path / "ref", tmp_path / "killed"
    cfg = load_config(Path(__file__).resolve().parent.parent / "conf" / "model" / "ldnn_small.yaml",
                      KILL_SETS + [f"train.epochs={epochs}", f"train.patience={epochs}"])
    train(cfg, big, dirs["valid"], ref, log=quiet)  # in-process: same seed, same single thread
    r = run_cli(*_train_args(big, dirs["valid"], exp, epochs), env={**os.environ, TEST_EXIT_ENV: "1"})
    assert r.returncode == TEST_EXIT_CODE, r.stderr
    last = exp / "checkpoints" / "last.pt"
    assert torch.load(last, weights_only=True)["epoch"] == 1 and not (exp / "done").exists()
    assert len((exp / "train.log").read_text().splitlines()) == 1
    # a kill during a checkpoint write leaves a temporary file: resume removes it
    (exp / "checkpoints" / ".last.pt.killed.tmp").write_bytes(b"partial")
    with pytest.raises(EmotkError, match="--resume"):
        train(cfg, big, dirs["valid"], exp, log=quiet)
    other = {**cfg, "train": {**cfg["train"], "lr": 0.1}}
    with pytest.raises(EmotkError, match=r"killed: unfinished run differs from the request in config\.train\.lr"):
        train(other, big, dirs["valid"], exp, resume=True, on_mismatch="refuse", log=quiet)
    r = run_cli(*_train_args(big, dirs["valid"], exp, epochs), "--resume")
    assert r.returncode == 0, r.stderr
    assert "resuming after epoch 1" in r.stderr
    for name in ("last", "best"):
        a = torch.load(ref / "checkpoints" / f"{name}.pt", weights_only=True)
        b = torch.load(exp / "checkpoints" / f"{name}.pt", weights_only=True)
        assert a["epoch"] == b["epoch"]
        for k in a["model"]:
            assert torch.equal(a["model"][k], b["model"][k]), k
    assert (exp / "done").read_text() == (ref / "done").read_text()
    strip = lambda p: [" ".join(w for w in line.split() if not w.startswith("seconds=")) for line in p.read_text().splitlines()]  # noqa: E731
    assert strip(exp / "train.log") == strip(ref / "train.log") and len(strip(ref / "train.log")) == epochs
    assert sorted(p.name for p in exp.rglob("*")) == sorted(p.name for p in ref.rglob("*"))  # no temp files left
    assert "resumed: emotk train" in (exp / "env.txt").read_text()


# Frame regression ------------------------------------------------------------------------------------

def write_frame_dir(path: Path, recs=("s1_a", "s2_b"), seed=0, extra_frames=1):
    """10 ms features (6 dims) and 40 ms labels (arousal, valence) = means of feature dims 0 and 1 over 4 frames."""
    rng = np.random.default_rng(seed)
    feats, labels = {}, {}
    for rec in recs:
        n = int(rng.integers(40, 60))
        x = rng.normal(0, 1, (4 * n + extra_frames, 6)).astype(np.float32)
        groups = x[: 4 * n].reshape(n, 4, 6).mean(1)
        feats[rec], labels[rec] = x, np.stack([groups[:, 0], groups[:, 1]], 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent / path.name
    rows = write_ark_scp(f"{base}.feats.ark", f"{base}.feats.scp", sorted(feats.items()))
    write_ark_scp(f"{base}.labels.ark", f"{base}.labels.scp", sorted(labels.items()))
    tables = {"utt2spk": {r: r.split("_")[0] for r in recs}, "utt2num_frames": rows,
              "feats.scp": read_scp_table(f"{base}.feats.scp"), "labels.scp": read_scp_table(f"{base}.labels.scp")}
    write_data_dir(path, tables, {"frame_shift": "0.01", "label_frame_shift": "0.04", "label_names": "arousal valence"})
    return path


def test_frame_regression_train_infer_score(tmp_path):
    from emotk.evaluation.score import score_frames
    from emotk.training.dataset import SerDataset
    from emotk.training.heads import load_head
    from emotk.training.inputs import open_sources

    train_dir = write_frame_dir(tmp_path / "train", recs=("s1_a", "s2_a", "s3_a", "s4_a"), seed=1)
    valid_dir = write_frame_dir(tmp_path / "valid", recs=("s5_a", "s6_a"), seed=2, extra_frames=6)  # 2 label frames more
    conf = tmp_path / "blstm.yaml"
    conf.write_text("model: {name: blstm_regressor, params: {hidden_size: 8, num_layers: 1}}\n"
                    "inputs: {feats: {norm: none, stack: 4}}\nheads: {labels: {kind: frame_regression, loss: ccc}}\n"
                    "train: {epochs: 12, patience: 12, batch_size: 1, lr: 0.02}\n")
    cfg = load_config(conf)
    summary = train(cfg, train_dir, valid_dir, tmp_path / "exp", log=quiet)
    assert summary["best_valid_ccc"] > 0.5
    out = infer(tmp_path / "exp", [valid_dir], log=quiet)
    assert out == tmp_path / "exp" / "predictions" / "valid"
    d = DataDir(out / "labels")
    assert d.label_names == ["arousal", "valence"] and float(d.scalar("label_frame_shift")) == 0.04
    for utt in DataDir(valid_dir).utts:
        pred = read_matrix(d.resolve(d.table("labels.scp")[utt]))
        ref = read_matrix(DataDir(valid_dir).resolve(DataDir(valid_dir).table("labels.scp")[utt]))
        assert pred.shape == (ref.shape[0] + 2, 2)  # ceil((4n + 6) / 4) stacked frames
    scores = score_frames(DataDir(valid_dir), out / "labels", "labels.scp", ["ccc"])  # the trainer's valid CCC, recomputed
    assert np.mean([scores["metrics"][k]["ccc"] for k in ("arousal", "valence")]) == pytest.approx(
        summary["best_valid_ccc"], abs=1e-3)
    # one dimension only; labels and features too far apart
    spec = {**cfg["heads"]["labels"], "dims": ["valence"]}
    d = DataDir(train_dir)
    head = load_head(d, "labels", spec)
    assert head.names == ["valence"] and head.frames(d, d.utts[0]).shape[1] == 1
    far = DataDir(write_frame_dir(tmp_path / "far", recs=("s7_a",), extra_frames=13))
    ds = SerDataset(far, open_sources(far, cfg["inputs"]), {"labels": load_head(far, "labels", spec)}, cfg["segments"])
    with pytest.raises(EmotkError, match="utterance 's7_a' has .* label frames but .* feature frames"):
        ds[0]


# Inference on audio files ------------------------------------------------------------------------

def test_infer_on_stereo_44k_wav(tmp_path):
    """Train on features of 16 kHz tones; predict a 44.1 kHz stereo file with the stored feature config."""
    import soundfile as sf

    from emotk.features.cmvn import compute_cmvn_stats
    from emotk.features.extract import compute_features

    fconf = {"type": "fbank", "sample_rate": 16000, "num_filters": 23}
    rng = np.random.default_rng(0)

    def tone(freq, sr, seconds):
        t = np.arange(int(sr * seconds)) / sr
        return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.normal(size=t.size)).astype(np.float32)

    def make(path, spks):
        feats, utt2spk, utt2emo = {}, {}, {}
        for spk in spks:
            for c, (emo, freq) in enumerate(zip(CLASSES, (300, 3000))):
                for i in range(4):
                    utt = f"{spk}-{emo}{i}"
                    feats[utt] = compute_features(tone(freq * rng.uniform(0.9, 1.1), 16000, rng.uniform(0.3, 0.6)), 16000, fconf)
                    utt2spk[utt], utt2emo[utt] = spk, emo
        stats = {s: compute_cmvn_stats(m for u, m in feats.items() if utt2spk[u] == s) for s in spks}
        base = path.parent / path.name
        rows = write_ark_scp(f"{base}.ark", f"{base}.scp", sorted(feats.items()))
        write_ark_scp(f"{base}.cmvn.ark", f"{base}.cmvn.scp", sorted(stats.items()))
        write_data_dir(path, {"utt2spk": utt2spk, "utt2emo": utt2emo, "utt2num_frames": rows,
                              "feats.scp": read_scp_table(f"{base}.scp"), "cmvn.scp": read_scp_table(f"{base}.cmvn.scp")},
                       {"frame_shift": "0.01"})
        (path / "conf").mkdir()
        (path / "conf" / "feats.yaml").write_text(yaml.safe_dump(fconf))
        return path

    train_dir, valid_dir = make(tmp_path / "train", ("s1", "s2")), make(tmp_path / "valid", ("s3",))
    cfg = cfg_for("ldnn", "inputs.feats.norm=speaker", "train.epochs=6", "train.lr=0.01", *LDNN_TINY)
    assert train(cfg, train_dir, valid_dir, tmp_path / "exp", log=quiet)["best_valid_ua"] == 1.0
    x = tone(3000, 44100, 0.5)
    sf.write(tmp_path / "b_stereo.wav", np.stack([x, 0.5 * x], 1), 44100)
    from scipy.signal import resample_poly
    sf.write(tmp_path / "a_mono16k.wav", resample_poly(0.75 * x, 160, 441).astype(np.float32), 16000)
    messages = []
    out = infer(tmp_path / "exp", [tmp_path / "b_stereo.wav", tmp_path / "a_mono16k.wav"], log=messages.append)
    assert out == tmp_path / "exp" / "predictions" / "audio"
    assert any("per-utterance z-norm" in m for m in messages)
    rows = [r.split() for r in (out / "emotion.txt").read_text().splitlines()]
    assert rows[0] == ["#", "utt", "label", "ang", "neu"]
    assert [r[:2] for r in rows[1:]] == [["a_mono16k", "neu"], ["b_stereo", "neu"]]
    p_mono, p_stereo = (np.array(r[2:], dtype=float) for r in rows[1:])
    np.testing.assert_allclose(p_mono, p_stereo, atol=0.05)  # same signal, different rate and channels


def test_a_class_missing_from_a_folds_training_side_is_still_a_class(tmp_path):
    """Class names come from the label set's ``<x>_names`` file (carried into folds), not from the labels a
    fold's training speakers happen to have: a valid utterance of a class no training speaker shows is
    scored, not refused (IEMOCAP's 5-level ratings of one evaluator under leave-one-speaker-out)."""
    from emotk.data.datadir import subset_data_dir
    from emotk.training.heads import load_head

    src = tmp_path / "all"
    write_feature_dir(src, spks=("s1", "s2"))
    d = DataDir(src)
    utts = d.utts
    levels = {u: str(1 + i % 4) for i, u in enumerate(utts)}
    rare = [u for u in utts if d.utt2spk[u] == "s2"][0]
    levels[rare] = "5"  # only one s2 utterance has level 5
    (src / "utt2valence5").write_text("".join(f"{u} {levels[u]}\n" for u in utts))
    (src / "valence5_names").write_text("1 2 3 4 5\n")
    train = subset_data_dir(src, tmp_path / "train", spks=["s1"])
    valid = subset_data_dir(src, tmp_path / "valid", spks=["s2"])
    assert (valid.path / "valence5_names").read_text() == "1 2 3 4 5\n"  # carried into folds
    spec = {"kind": "class", "labels": "utt2valence5", "class_weights": True}
    head = load_head(DataDir(train.path), "valence", spec)
    assert head.names == ["1", "2", "3", "4", "5"]
    vhead = load_head(DataDir(valid.path), "valence", spec, head.names)
    assert vhead.names[vhead.targets[rare]] == "5"
    (src / "valence5_names").unlink()  # without the names file: the training side's labels, and a clear refusal
    train2 = subset_data_dir(src, tmp_path / "train2", spks=["s1"])
    valid2 = subset_data_dir(src, tmp_path / "valid2", spks=["s2"])
    names = load_head(DataDir(train2.path), "valence", spec).names
    with pytest.raises(EmotkError, match="not one of the training classes"):
        load_head(DataDir(valid2.path), "valence", spec, names)
