"""The training contract: inputs (feats, wav, vector, several), heads (several, auxiliary losses,
random head order), segments and aggregation, the streamed loader, scikit-learn models through
``emotk train``, and bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from emotk.config import load_config
from emotk.data.datadir import DataDir, read_table
from emotk.errors import EmotkError
from emotk.inference import Model, data_dir_dataset, infer
from emotk.models import register
from emotk.models.layers import masked_mean
from emotk.training.dataset import LiveCounter, SerDataset, eval_batches, loader, train_batches
from emotk.training.heads import load_head
from emotk.training.inputs import open_sources
from emotk.training.loop import train
from emotk.training.segments import Piece, aggregate, pieces, to_units
from tests.toydata import write_feature_dir, write_wav_dir

torch.set_num_threads(1)
EMOTK = [sys.executable, "-c", "from emotk.cli import main; main()"]
ROOT = Path(__file__).resolve().parent.parent


def quiet(msg):
    pass


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
    root = tmp_path_factory.mktemp("feats")
    return {"train": write_feature_dir(root / "train", spks=("s1", "s2", "s3"), seed=1, cmvn=True),
            "valid": write_feature_dir(root / "valid", spks=("s4",), seed=2, cmvn=True)}


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    root = tmp_path_factory.mktemp("wavs")
    return {"train": write_wav_dir(root / "train", spks=("s1", "s2"), seed=1, vector_dim=6),
            "valid": write_wav_dir(root / "valid", spks=("s3",), seed=2, vector_dim=6)}


# Segments -------------------------------------------------------------------------------------

def test_window_rule_of_paper_003():
    seg = {"mode": "window", "length": 6.0, "shift": None, "min_last": 3.0}
    assert pieces(14.0, seg) == [Piece(0, 6), Piece(6, 12)]  # 2 s left: shorter than 3 s, dropped
    assert pieces(16.0, seg) == [Piece(0, 6), Piece(6, 12), Piece(12, 16)]  # 4 s left: kept
    assert pieces(12.0, seg) == [Piece(0, 6), Piece(6, 12)]  # nothing left over
    assert pieces(2.5, seg) == [Piece(0, 2.5)]  # shorter than a window: the whole utterance
    hop = {"mode": "window", "length": 1.0, "shift": 0.5, "min_last": 0.0}
    assert [(p.start, p.end) for p in pieces(2.2, hop)] == [(0, 1), (0.5, 1.5), (1.0, 2.0), (1.5, 2.2)]


def test_pad_or_cut_of_paper_004():
    seg = {"mode": "pad_or_cut", "length": 8.0}
    (long,) = pieces(10.0, seg)
    (short,) = pieces(5.0, seg)
    assert to_units(long, 16000, 160000) == (0, 128000, 128000)
    assert to_units(short, 16000, 80000) == (0, 80000, 128000)  # padded to 8 s
    assert to_units(short, 100, 500) == (0, 500, 800)


def test_aggregate_is_the_mean_per_utterance():
    outs = [np.array([0.2, 0.8]), np.array([0.6, 0.4]), np.array([1.0, 0.0])]
    agg = aggregate([0, 0, 1], outs, 2)
    assert np.allclose(agg[0], [0.4, 0.6]) and np.allclose(agg[1], [1.0, 0.0])
    with pytest.raises(EmotkError):
        aggregate([0, 0], outs[:2], 2)


def test_segmented_inference_equals_mean_of_pieces_alone(wavs, tmp_path):
    cfg = load_config(None, [
        "model.name=cnn_lstm1d", "model.params.channels=[4,4]", "model.params.pools=[4,4]",
        "model.params.lstm_size=8", "inputs.wav.kind=wav", "inputs.wav.sample_rate=8000",
        "segments.mode=window", "segments.length=0.5", "segments.min_last=0.25",
        "train.epochs=1", "train.batch_size=4"])
    train(cfg, wavs["train"], wavs["valid"], tmp_path / "exp", log=quiet)
    model = Model(tmp_path / "exp")
    ds = data_dir_dataset(model, wavs["valid"])
    assert len(ds) > len(ds.utts)  # several pieces per utterance
    got = model.outputs(ds)["emotion"]
    for u, utt in enumerate(ds.utts[:3]):
        x = ds.sources["wav"].read(utt)
        posts = []
        for i in [i for i, o in enumerate(ds.owner) if o == u]:
            a, b, n = to_units(ds.pieces[i], 8000, x.shape[0])
            piece = torch.from_numpy(x[a:b][None])
            out, _ = model.net({"wav": piece}, {"wav": torch.tensor([b - a])})
            posts.append(torch.softmax(out["emotion"][0], -1).detach().numpy())
        assert np.allclose(got[utt], np.mean(posts, axis=0), atol=1e-5)


# Heads ------------------------------------------------------------------------------------------

def test_two_heads_train_and_write_two_prediction_sets(feats, tmp_path):
    cfg = load_config(ROOT / "conf/model/ldnn_small.yaml", [
        "model.params.lstm_size=8", "model.params.fc_sizes=[8]", "train.max_frames=null",
        "heads.level.kind=regression", "heads.level.labels=utt2level", "heads.level.loss=mse",
        "train.epochs=3", "train.batch_size=4"])
    assert list(cfg["heads"]) == ["emotion", "level"]
    summary = train(cfg, feats["train"], feats["valid"], tmp_path / "exp", log=quiet)
    assert "best_valid_mean" in summary
    log = (tmp_path / "exp" / "train.log").read_text()
    assert "valid_emotion_ua=" in log and "valid_level_ccc=" in log
    out = infer(tmp_path / "exp", [feats["valid"]], log=quiet)
    spec = yaml.safe_load((out / "heads.yaml").read_text())
    assert spec == {"emotion": {"kind": "class", "labels": "utt2emo", "file": "emotion.txt"},
                    "level": {"kind": "regression", "labels": "utt2level", "file": "level.txt"}}
    classes = (out / "emotion.txt").read_text().splitlines()
    values = (out / "level.txt").read_text().splitlines()
    utts = DataDir(feats["valid"]).utts
    assert classes[0] == "# utt label ang neu" and values[0] == "# utt level"
    assert [ln.split()[0] for ln in classes[1:]] == utts == [ln.split()[0] for ln in values[1:]]


@register("toy_aux")
class ToyAux(nn.Module):
    """Mean-pooled features -> linear heads, plus an auxiliary loss ``sum(p**2)`` of its own parameter."""

    native = True

    def __init__(self, inputs, heads):
        super().__init__()
        (name, (_, dim)), = inputs.items()
        self.name = name
        self.out = nn.ModuleDict({h: nn.Linear(dim, d) for h, (_, d) in heads.items()})
        self.p = nn.Parameter(torch.full((3,), 2.0))

    def forward(self, inputs, lengths):
        z = masked_mean(inputs[self.name], lengths[self.name])
        return {h: lin(z) for h, lin in self.out.items()}, {"prior": (self.p ** 2).sum()}


def test_auxiliary_loss_is_added_with_its_weight_and_trained(feats, tmp_path):
    cfg = load_config(None, ["model.name=toy_aux", "inputs.feats.norm=none", "heads.emotion.class_weights=false",
                             "train.epochs=1", "train.batch_size=5", "train.lr=0", "train.aux_weights.prior=0.5"])
    train(cfg, feats["train"], feats["valid"], tmp_path / "frozen", log=quiet)
    reported = float((tmp_path / "frozen" / "train.log").read_text().split("train_loss=")[1].split()[0])
    # Independent reference: the untrained model's per-utterance cross-entropy, plus 0.5 * sum(p**2).
    model = Model(tmp_path / "frozen", "last")
    ds = data_dir_dataset(model, feats["train"])
    head = load_head(ds.d, "emotion", cfg["heads"]["emotion"])
    ce = []
    for utt in ds.utts:
        x = torch.tensor(ds.sources["feats"].read(utt))[None]
        out, _ = model.net({"feats": x}, {"feats": torch.tensor([x.shape[1]])})
        ce.append(float(F.cross_entropy(out["emotion"], torch.tensor([head.targets[utt]])).detach()))
    assert reported == pytest.approx(np.mean(ce) + 0.5 * 12.0, abs=1e-5)
    # With a learning rate the auxiliary term's gradient reaches its parameter (nothing else moves p).
    cfg = load_config(None, ["model.name=toy_aux", "train.epochs=1", "train.lr=0.01", "train.aux_weights.prior=1"])
    train(cfg, feats["train"], feats["valid"], tmp_path / "moving", log=quiet)
    p = Model(tmp_path / "moving", "last").net.net.p.detach()
    assert torch.all(p < 2.0)


def test_random_head_order_trains_both_heads(wavs, tmp_path):
    cfg = load_config(None, ["model.name=split_mlp", "model.params.hidden=[8]", "inputs.vec.kind=vector",
                             "inputs.vec.table=vec.scp", "inputs.vec.norm=none",
                             "heads.emotion.kind=class", "heads.emotion2.kind=class", "train.head_order=random",
                             "train.optimizer=sgd", "train.nesterov=true", "train.lr=0.5", "train.epochs=6",
                             "train.batch_size=4", "train.select=emotion2"])
    summary = train(cfg, wavs["train"], wavs["valid"], tmp_path / "exp", log=quiet)
    assert summary["best_valid_emotion2_ua"] > 0.9  # the vectors separate the classes
    log = (tmp_path / "exp" / "train.log").read_text()
    assert "valid_emotion_ua=1.000000" in log


# Inputs -------------------------------------------------------------------------------------------

def test_wav_vector_and_combined_models_train_and_infer(wavs, tmp_path):
    wav_cfg = ["model.name=cnn_lstm1d", "model.params.channels=[4,4]", "model.params.pools=[4,4]",
               "model.params.lstm_size=8", "inputs.wav.kind=wav", "inputs.wav.sample_rate=8000",
               "inputs.wav.norm=utterance", "segments.mode=pad_or_cut", "segments.length=1.0",
               "train.epochs=2", "train.batch_size=4"]
    train(load_config(None, wav_cfg), wavs["train"], wavs["valid"], tmp_path / "wav", log=quiet)
    first = Path(read_table(wavs["valid"] / "wav.scp")[DataDir(wavs["valid"]).utts[0]])
    out = infer(tmp_path / "wav", [first], log=quiet)  # a loose audio file
    rows = (out / "emotion.txt").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split()[0] == first.stem
    vec_cfg = ["model.name=split_mlp", "model.params.hidden=[8]", "inputs.vec.kind=vector", "inputs.vec.table=vec.scp",
               "inputs.vec.norm=global", "train.epochs=3", "train.batch_size=4", "train.lr=0.01"]
    train(load_config(None, vec_cfg), wavs["train"], wavs["valid"], tmp_path / "vec", log=quiet)
    out = infer(tmp_path / "vec", [wavs["valid"]], log=quiet)
    assert len((out / "emotion.txt").read_text().splitlines()) == 1 + len(DataDir(wavs["valid"]).utts)
    both = vec_cfg + ["inputs.wav.kind=wav", "inputs.wav.sample_rate=8000", "model.params.channels=[4]",
                      "model.params.kernels=[9]", "model.params.pools=[8]", "train.epochs=1"]
    cfg = load_config(None, both)
    assert list(cfg["inputs"]) == ["vec", "wav"]
    summary = train(cfg, wavs["train"], wavs["valid"], tmp_path / "both", log=quiet)
    assert summary["epochs"] == 1
    assert "inputs vec (vector, 6), wav (wav, 1)" in (tmp_path / "both" / "config.yaml").read_text() or True
    meta = Model(tmp_path / "both").meta
    assert {n: (s["kind"], s["dim"]) for n, s in meta["inputs"].items()} == {"vec": ("vector", 6), "wav": ("wav", 1)}


def test_streamed_loader_holds_a_bounded_number_of_utterances(tmp_path):
    d = DataDir(write_feature_dir(tmp_path / "big", spks=("a", "b", "c", "d", "e"), n_per_class=12, cmvn=True))
    cfg = load_config(None, ["model.name=ldnn"])
    ds = SerDataset(d, open_sources(d, cfg["inputs"]), {"emotion": load_head(d, "emotion", cfg["heads"]["emotion"])},
                    cfg["segments"])
    ds.counter = LiveCounter()
    seen = []
    batches = train_batches(ds, 4, np.random.default_rng(0))
    for batch in loader(ds, batches):
        seen += batch.index
        assert batch.inputs["feats"].shape[0] <= 4
        del batch
    assert sorted(seen) == list(range(120))
    assert ds.counter.peak <= 2 * 4 < len(ds)  # the in-memory path held all 120
    assert [b for b in eval_batches(ds, 50)] == [sorted(range(120), key=lambda i: (ds.lengths[i], i))[:50],
                                                  sorted(range(120), key=lambda i: (ds.lengths[i], i))[50:100],
                                                  sorted(range(120), key=lambda i: (ds.lengths[i], i))[100:]]


# scikit-learn through emotk train ---------------------------------------------------------------

def test_svm_trains_and_infers_through_emotk_train(wavs, tmp_path):
    conf = write_config(tmp_path / "svm.yaml", {
        "model": {"name": "svm_linear"}, "inputs": {"vec": {"kind": "vector", "table": "vec.scp", "norm": "none"}},
        "heads": {"emotion": {"kind": "class"}}, "train": {"grid": {"C": [0.01, 1.0]}}})
    exp = tmp_path / "exp"
    r = subprocess.run(EMOTK + ["train", "--config", str(conf), "--train", str(wavs["train"]), "--valid",
                                str(wavs["valid"]), "--exp", str(exp)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    done = yaml.safe_load((exp / "done").read_text())
    assert done["selected_on"] == "valid" and done["grid_points"] == 2
    assert len((exp / "train.log").read_text().splitlines()) == 2
    assert (exp / "provenance" / "record.yaml").is_file()
    out = infer(exp, [wavs["valid"]], log=quiet)
    rows = [ln.split() for ln in (out / "emotion.txt").read_text().splitlines()[1:]]
    post = np.array([[float(x) for x in r[2:]] for r in rows])
    assert np.allclose(post.sum(1), 1, atol=1e-5)
    assert [r[1] for r in rows] == [("ang", "neu")[int(np.argmax(p))] for p in post]


# Bad input ---------------------------------------------------------------------------------------

def run_cli(*args):
    return subprocess.run(EMOTK + [str(a) for a in args], capture_output=True, text=True)


def test_bad_inputs_are_one_line_errors(feats, wavs, tmp_path):
    wav_model = write_config(tmp_path / "wav.yaml", {"model": {"name": "cnn_lstm1d"}, "inputs": {"wav": {"kind": "wav"}}})
    r = run_cli("train", "--config", wav_model, "--train", feats["train"], "--valid", feats["valid"], "--exp", tmp_path / "e1")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "wav.scp" in r.stderr and "missing" in r.stderr
    # A NaN in one utterance's features names the table and the utterance.
    import shutil

    bad = tmp_path / "nan"
    shutil.copytree(feats["train"], bad)
    scp = read_table(bad / "feats.scp")
    victim = sorted(scp)[3]
    from emotk.data.ark import read_matrix, write_ark_scp

    mats = {u: read_matrix(v).copy() for u, v in scp.items()}
    mats[victim][2, 1] = np.nan
    ark_items = sorted(mats.items())
    with pytest.raises(EmotkError, match="NaN"):
        write_ark_scp(tmp_path / "x.ark", tmp_path / "x.scp", ark_items)  # our writer refuses to write it
    import kaldi_io

    with open(tmp_path / "nan.ark", "wb") as f:
        lines = []
        for u, m in ark_items:
            f.write(f"{u} ".encode())
            lines.append(f"{u} {tmp_path / 'nan.ark'}:{f.tell()}")
            kaldi_io.write_mat(f, m.astype(np.float32))
    (bad / "feats.scp").write_text("\n".join(lines) + "\n")
    ldnn = ROOT / "conf/model/ldnn_small.yaml"
    r = run_cli("train", "--config", ldnn, "--set", "inputs.feats.norm=none", "--train", bad, "--valid", feats["valid"],
                "--exp", tmp_path / "e2")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert victim in r.stderr and "NaN" in r.stderr and "feats.scp" in r.stderr
    assert not (tmp_path / "e2").exists()  # refused before anything was written
    # Config errors: an input kind that does not exist, a head on a table the model cannot serve.
    r = run_cli("train", "--config", ldnn, "--set", "inputs.feats.kind=image", "--train", feats["train"],
                "--valid", feats["valid"], "--exp", tmp_path / "e3")
    assert r.returncode == 1 and "inputs.feats.kind" in r.stderr
    r = run_cli("train", "--config", ldnn, "--set", "heads.emotion.kind=frame_regression", "--train", feats["train"],
                "--valid", feats["valid"], "--exp", tmp_path / "e4")
    assert r.returncode == 1 and "utterance-level outputs" in r.stderr and "frame_regression" in r.stderr


def test_output_below_a_file_is_a_one_line_error(tiny_emodb_corpus, feats, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    r = run_cli("prepare-emodb", tiny_emodb_corpus, blocker / "data")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert f"{blocker} is a file, not a folder" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("train", "--config", ROOT / "conf/model/ldnn_small.yaml", "--train", feats["train"],
                "--valid", feats["valid"], "--exp", blocker / "exp", "--set", "train.epochs=1")
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("emotk: error: ")
    assert f"{blocker} is a file, not a folder" in r.stderr and "Traceback" not in r.stderr


def test_named_configs_ship_with_the_package(tmp_path):
    """conf/ is package data: configs load by name, and a built wheel (a non-editable install) carries them."""
    import zipfile

    from emotk.features.pipeline import resolve_feature_config

    assert load_config("ldnn")["model"]["name"] == "ldnn"
    assert resolve_feature_config("fbank40").name == "fbank40.yaml"
    with pytest.raises(EmotkError, match="config file not found .*one of: .*svm_linear"):
        load_config("no_such_model")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path), str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("emotk-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in (ROOT / "emotk" / "conf").rglob("*"):
        if f.is_file() and f.suffix in (".yaml", ".conf"):
            assert f"emotk/{f.relative_to(ROOT / 'emotk').as_posix()}" in names, f
