"""Deployable models: exported model dirs, inference on mixed audio (rates, channels, a long file, short,
silent and corrupt files), continuous models' CSVs, eGeMAPS + SVM, ONNX parity per family, bad input.

The "long" recording is 60 s here (the issue's 10 minutes and the benchmark's hour exercise the same
chunking; memory flatness is measured in benchmarks/bench_infer.py, not asserted here)."""

import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from emotk.config import load_config
from emotk.data.ark import read_entry, read_matrix, write_ark_scp
from emotk.data.datadir import DataDir, read_table
from emotk.deploy.audio import chunk_bounds
from emotk.deploy.onnx import OnnxBackend, example_batch, export_onnx, max_difference, torch_outputs
from emotk.errors import EmotkError
from emotk.features.cmvn import apply_cmvn, compute_cmvn_data_dir, utterance_cmvn
from emotk.features.extract import compute_features, load_feature_config
from emotk.features.pipeline import extract_data_dir
from emotk.features.transforms import stack_frames
from emotk.inference import Model, infer_audio
from emotk.models import build_for_config
from emotk.training.loop import train
from tests.toydata import read_scp_table, write_wav_dir

torch.set_num_threads(1)
EMOTK = [sys.executable, "-c", "from emotk.cli import main; main()"]
ROOT = Path(__file__).resolve().parent.parent
SR = 8000


def quiet(msg):
    pass


def run_cli(*args, **kw):
    return subprocess.run(EMOTK + [str(a) for a in args], capture_output=True, text=True, **kw)


def tone(freq, sr, seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(sr * seconds))) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.normal(size=t.size)).astype(np.float32)


FBANK = dict(load_feature_config(ROOT / "conf/features/fbank40.yaml"), sample_rate=SR, num_filters=23)


def fbank_dirs(root: Path) -> dict:
    dirs = {}
    for part, spks, seed in (("train", ("s1", "s2"), 1), ("valid", ("s3",), 2)):
        d = write_wav_dir(root / part, spks=spks, seed=seed, sr=SR)
        extract_data_dir(d, FBANK, log=quiet)
        compute_cmvn_data_dir(d)
        dirs[part] = d
    return dirs


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """The mixed folder of the issue: 44.1 kHz stereo, 8 kHz mono FLAC, a long file, 0.2 s, silence, a corrupt file."""
    d = tmp_path_factory.mktemp("mixed")
    x = tone(600, 44100, 1.5)
    sf.write(d / "stereo44k.wav", np.stack([x, 0.5 * x], 1), 44100)
    sf.write(d / "mono8k.flac", tone(200, 8000, 1.2, seed=1), 8000)
    sf.write(d / "long.wav", np.concatenate([tone(600, SR, 30.0, 2), tone(200, SR, 30.0, 3)]), SR)
    sf.write(d / "short.wav", tone(600, 16000, 0.2, seed=4), 16000)
    sf.write(d / "silent.wav", np.zeros(16000, np.float32), 16000)
    (d / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00garbage")
    return d


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """A cnn_lstm2d trained on fbank with speaker z-norm, scored on a test speaker, exported."""
    root = tmp_path_factory.mktemp("cnn")
    dirs = fbank_dirs(root)
    test = write_wav_dir(root / "test", spks=("s4",), seed=3, sr=SR)
    extract_data_dir(test, FBANK, log=quiet)
    compute_cmvn_data_dir(test)
    cfg = load_config(ROOT / "conf/model/cnn_lstm2d_small.yaml", [
        "model.params.channels=[4,4]", "model.params.pools=[2,4]", "model.params.lstm_size=8",
        "train.epochs=4", "train.batch_size=4", "train.lr=0.01", "train.max_frames=null"])
    exp = root / "exp"
    train(cfg, dirs["train"], dirs["valid"], exp, log=quiet)
    from emotk.evaluation.score import score
    from emotk.inference import infer

    score(test, infer(exp, [test], out=exp / "predictions" / "test", log=quiet))
    from emotk.deploy.export import export_model

    export_model(exp, root / "model", log=quiet)
    return {"root": root, "exp": exp, "model": root / "model", **dirs}


# Export -------------------------------------------------------------------------------------------

def test_exported_dir_is_self_contained_with_statistics_scores_and_card(cnn, tmp_path):
    model_dir = cnn["model"]
    desc = yaml.safe_load((model_dir / "model.yaml").read_text())
    assert desc["format"] == 1 and desc["framework"] == "torch" and desc["labels"] == {"emotion": ["ang", "neu"]}
    assert desc["data_conf"]["feats"]["num_filters"] == 23
    # Training-set statistics of the speaker-normalized input, against numpy over the training features.
    d = DataDir(cnn["train"])
    feats = np.concatenate([read_matrix(d.resolve(v)) for v in d.table("feats.scp").values()]).astype(np.float64)
    stats = np.asarray(desc["global_stats"]["feats"])
    assert stats[0, -1] == len(feats)
    np.testing.assert_allclose(stats[0, :-1] / len(feats), feats.mean(0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats[1, :-1] / len(feats) - feats.mean(0) ** 2, feats.var(0), rtol=1e-6, atol=1e-9)
    assert "at least 3 s" in desc["normalization"]["feats"]["unseen_speaker"]
    # Scores of the test set with a speaker-bootstrap interval around the UA.
    head = desc["scores"]["test"]["heads"]["emotion"]
    lo, hi = head["ua_ci95"]
    assert lo <= head["metrics"]["ua"] <= hi
    card = (model_dir / "MODEL.md").read_text()
    for part in ("## Metrics", "## Intended use", "## Limits", "95% CI", f"{100 * head['metrics']['ua']:.1f}"):
        assert part in card
    # Weights are a plain state dict, loadable with weights_only=True.
    state = torch.load(model_dir / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    # Self-contained: it works with the exp dir and training data gone (moved away).
    moved = tmp_path / "elsewhere"
    shutil.copytree(model_dir, moved)
    hidden = cnn["root"] / "hidden"
    cnn["root"].joinpath("exp").rename(hidden)
    try:
        m = Model(moved)
        assert m.packaged and m.meta["heads"]["emotion"]["names"] == ["ang", "neu"]
    finally:
        hidden.rename(cnn["root"] / "exp")
    # A re-run with the same sources skips.
    from emotk.deploy.export import export_model

    logs = []
    export_model(cnn["exp"], model_dir, log=logs.append)
    assert "nothing to do" in logs[0]


# Inference on audio ---------------------------------------------------------------------------------

def reference_posterior(model: Model, wav: np.ndarray, sr: int, stats: np.ndarray) -> np.ndarray:
    """The model on a whole file, from the library's feature code and a plain forward pass."""
    x = apply_cmvn(compute_features(wav, sr, model.meta["data_conf"]["feats"]), stats)
    with torch.no_grad():
        out, _ = model.net({"feats": torch.from_numpy(x)[None]}, {"feats": torch.tensor([len(x)])})
    return torch.softmax(out["emotion"][0], -1).numpy()


def test_mixed_folder_one_prediction_per_good_file(cnn, audio, tmp_path):
    out = tmp_path / "rows.jsonl"
    r = run_cli("infer", "--model", cnn["model"], audio, "--format", "jsonl", "-o", out)
    assert r.returncode == 2, r.stderr
    assert "corrupt.wav" in r.stderr and "5 recording(s) done, 1 failed" in r.stderr
    rows = {Path(o["id"]).name: o for o in map(json.loads, out.read_text().splitlines())}
    assert sorted(rows) == ["long.wav", "mono8k.flac", "short.wav", "silent.wav", "stereo44k.wav"]
    assert rows["silent.wav"]["heads"]["emotion"] == {"label": None, "posteriors": None}
    assert "silent" in rows["silent.wav"]["warnings"][0] and "silent" in r.stderr
    assert "short" in rows["short.wav"]["warnings"][0]
    for name in ("long.wav", "mono8k.flac", "short.wav", "stereo44k.wav"):
        post = rows[name]["heads"]["emotion"]["posteriors"]
        assert sum(post.values()) == pytest.approx(1, abs=1e-5)
        assert rows[name]["heads"]["emotion"]["label"] == max(post, key=post.get)
    # Recordings shorter than 3 s get the training statistics (speaker z-norm, unknown speaker).
    model = Model(cnn["model"])
    for name in ("mono8k.flac", "stereo44k.wav"):
        wav, sr = sf.read(audio / name, dtype="float32")
        want = reference_posterior(model, wav, sr, model.meta["global_stats"]["feats"])
        got = rows[name]["heads"]["emotion"]["posteriors"]
        np.testing.assert_allclose([got["ang"], got["neu"]], want, atol=2e-6)
    # The long file: 10 s chunks normalized with the whole recording's statistics; the aggregate is
    # the duration-weighted mean of the chunks.
    chunks = rows["long.wav"]["chunks"]
    assert [(c["start"], c["end"]) for c in chunks] == [(10.0 * k, 10.0 * (k + 1)) for k in range(6)]
    wav, _ = sf.read(audio / "long.wav", dtype="float32")
    conf = model.meta["data_conf"]["feats"]
    whole = compute_features(wav, SR, conf)
    from emotk.features.cmvn import compute_cmvn_stats

    stats = compute_cmvn_stats([whole])
    for k in (0, 5):
        piece = wav[k * 10 * SR: (k + 1) * 10 * SR + (200 - 80 if k < 5 else 0)]
        want = reference_posterior(model, piece, SR, stats)
        got = chunks[k]["heads"]["emotion"]["posteriors"]
        np.testing.assert_allclose([got["ang"], got["neu"]], want, atol=2e-6)
    mean = np.mean([[c["heads"]["emotion"]["posteriors"][k] for k in ("ang", "neu")] for c in chunks], axis=0)
    agg = rows["long.wav"]["heads"]["emotion"]["posteriors"]
    np.testing.assert_allclose([agg["ang"], agg["neu"]], mean, atol=2e-6)


def test_tsv_wav_scp_and_stdin(cnn, audio, tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text(f"a {audio / 'mono8k.flac'}\nb {audio / 'stereo44k.wav'}\n")
    r = run_cli("infer", "--model", cnn["model"], scp, "-", input=f"{audio / 'short.wav'}\n")
    assert r.returncode == 0, r.stderr
    lines = [ln.split("\t") for ln in r.stdout.splitlines()]
    assert lines[0] == ["id", "segment", "start", "end", "emotion", "emotion:ang", "emotion:neu", "warning"]
    assert [ln[0] for ln in lines[1:]] == ["a", "b", str(audio / "short.wav")]
    assert all(ln[1] == "all" for ln in lines[1:]) and lines[3][-1].startswith("short")


def test_onnx_backend_matches_torch_on_audio(cnn, audio, tmp_path):
    onnx_file = tmp_path / "model.onnx"
    r = run_cli("export-onnx", cnn["model"], onnx_file)
    assert r.returncode == 0, r.stderr
    files = [audio / "long.wav", audio / "stereo44k.wav"]
    results = {}
    for backend in ("torch", "onnx"):
        m = Model(cnn["model"], backend=backend, onnx=onnx_file)
        rows = []
        writer = types.SimpleNamespace(write=lambda res: rows.append(res))
        done, failures = infer_audio(m, files, writer=writer, log=quiet)
        assert done == 2 and not failures
        results[backend] = rows
    for a, b in zip(results["torch"], results["onnx"]):
        assert np.abs(a.heads["emotion"] - b.heads["emotion"]).max() < 1e-4
        for (_, _, x), (_, _, y) in zip(a.chunks, b.chunks):
            assert np.abs(x["emotion"] - y["emotion"]).max() < 1e-4


# Continuous models ----------------------------------------------------------------------------------

def test_frame_model_writes_csv_equal_to_whole_recording(tmp_path, audio):
    dirs = fbank_dirs(tmp_path)
    rng = np.random.default_rng(0)
    for d in dirs.values():  # frame labels every 40 ms (4 stacked 10 ms frames)
        frames = read_table(d / "utt2num_frames", parse=int)
        labels = {u: rng.normal(size=(-(-n // 4), 2)).astype(np.float32) for u, n in frames.items()}
        base = d.parent / f"{d.name}.labels"
        write_ark_scp(f"{base}.ark", f"{base}.scp", sorted(labels.items()))
        shutil.copyfile(f"{base}.scp", d / "labels.scp")
        (d / "label_names").write_text("arousal valence\n")
        (d / "label_frame_shift").write_text("0.04\n")
    cfg = load_config(ROOT / "conf/model/dilated_cnn.yaml", ["model.params.num_layers=4", "model.params.width=4",
                                                            "inputs.feats.norm=utterance", "train.epochs=1"])
    train(cfg, dirs["train"], dirs["valid"], tmp_path / "exp", log=quiet)
    from emotk.deploy.export import export_model

    export_model(tmp_path / "exp", tmp_path / "model", log=quiet)
    out = tmp_path / "rows.tsv"
    r = run_cli("infer", "--model", tmp_path / "model", audio / "long.wav", audio / "short.wav", "-o", out,
                "--chunk", "7", "--plot")
    assert r.returncode == 0, r.stderr
    rows = [ln.split("\t") for ln in out.read_text().splitlines()]
    assert rows[0][:4] == ["id", "segment", "start", "end"] and "labels:arousal_mean" in rows[0]
    csv = Path(rows[1][rows[0].index("labels:csv")])
    assert csv == tmp_path / "rows.tsv.frames" / "long.csv" and csv.with_suffix(".png").is_file()
    got = np.loadtxt(csv, delimiter=",", skiprows=1)
    assert csv.read_text().splitlines()[0] == "time,arousal,valence"
    # Reference: the whole recording at once (features, its own statistics, 4 frames stacked, forward).
    model = Model(tmp_path / "model")
    wav, _ = sf.read(audio / "long.wav", dtype="float32")
    x = stack_frames(utterance_cmvn(compute_features(wav, SR, model.meta["data_conf"]["feats"])), 4)
    with torch.no_grad():
        out_t, _ = model.net({"feats": torch.from_numpy(x)[None]}, {"feats": torch.tensor([len(x)])})
    want = out_t["labels"][0].numpy()
    assert got.shape == (len(want), 3)
    np.testing.assert_allclose(got[:, 0], np.arange(len(want)) * 0.04, atol=1e-6)
    np.testing.assert_allclose(got[:, 1:], want, atol=2e-5)  # 7 s chunks with context = the whole recording
    means = [float(v) for v in rows[1][rows[0].index("labels:arousal_mean"):][:2]]
    np.testing.assert_allclose(means, want.mean(0), atol=1e-5)


# scikit-learn on openSMILE functionals ----------------------------------------------------------------

def test_exported_svm_on_egemaps_runs_on_audio(tmp_path, audio):
    from emotk.features.opensmile import OpenSmileExtractor, extract_opensmile_data_dir
    from emotk.models.sklearn_models import load_model, predict_proba

    dirs = {}
    for part, spks, seed in (("train", ("s1", "s2"), 1), ("valid", ("s3",), 2)):
        d = write_wav_dir(tmp_path / part, spks=spks, seed=seed, sr=SR, n_per_class=3)
        extract_opensmile_data_dir(d, "eGeMAPSv02", sample_rate=16000, log=quiet)
        compute_cmvn_data_dir(d, table="egemapsv02.scp")
        dirs[part] = d
    conf = tmp_path / "svm.yaml"
    conf.write_text(yaml.safe_dump({
        "model": {"name": "svm_linear"}, "heads": {"emotion": {"kind": "class"}},
        "inputs": {"egemaps": {"kind": "vector", "table": "egemapsv02.scp", "norm": "speaker",
                               "norm_table": "egemapsv02_cmvn.scp"}}}))
    train(load_config(conf), dirs["train"], dirs["valid"], tmp_path / "exp", log=quiet)
    r = run_cli("export-model", tmp_path / "exp", tmp_path / "model")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "model" / "estimator" / "model.skops").is_file()
    r = run_cli("infer", "--model", tmp_path / "model", audio, "--format", "jsonl")
    assert r.returncode == 2 and "corrupt.wav" in r.stderr
    rows = {Path(o["id"]).name: o for o in map(json.loads, r.stdout.splitlines())}
    assert len(rows) == 5 and rows["silent.wav"]["heads"]["emotion"]["label"] is None
    assert rows["short.wav"]["warnings"]
    # Reference: the package's functionals of the whole file, training statistics, the skops model.
    vecs = np.stack([np.asarray(read_entry(v)).reshape(-1) for v in read_scp_table(dirs["train"] / "egemapsv02.scp").values()])
    est = load_model(tmp_path / "model" / "estimator")
    ex = OpenSmileExtractor("eGeMAPSv02", "functionals", 16000)
    from scipy.signal import resample_poly

    x = tone(600, 44100, 1.5)
    wav = resample_poly(np.stack([x, 0.5 * x], 1).mean(1), 160, 441).astype(np.float32)
    v = (ex.compute(wav) - vecs.mean(0)) / np.sqrt(np.maximum(vecs.var(0), 1e-10))
    want = predict_proba(est, v[None])[0]
    got = rows["stereo44k.wav"]["heads"]["emotion"]["posteriors"]
    np.testing.assert_allclose([got["ang"], got["neu"]], want, atol=1e-4)


# ONNX per family ----------------------------------------------------------------------------------------

FAMILIES = {
    "cnn_lstm2d": ({"channels": [4, 4], "pools": [2, 4], "lstm_size": 8}, {"feats": ("feats", 40)}, {"e": ("class", 3)}),
    "cnn_lstm1d": ({"channels": [4, 4], "pools": [4, 4], "lstm_size": 8}, {"wav": ("wav", 1)}, {"e": ("class", 3)}),
    "ldnn": ({"lstm_size": 8, "fc_sizes": [8]}, {"feats": ("feats", 12)}, {"e": ("class", 3), "v": ("regression", 1)}),
    "blstm_regressor": ({"hidden_size": 8}, {"feats": ("feats", 12)}, {"f": ("frame_regression", 2)}),
    "dilated_cnn": ({"num_layers": 3, "width": 8}, {"feats": ("feats", 12)}, {"f": ("frame_regression", 2)}),
    "downup_cnn": ({"width": 8}, {"feats": ("feats", 12)}, {"f": ("frame_regression", 2)}),
    "single_filter": ({"filter_length": 16}, {"feats": ("feats", 12)}, {"f": ("frame_regression", 2)}),
    "split_mlp": ({"channels": [4], "kernels": [9], "pools": [8], "hidden": [8]},
                  {"vec": ("vector", 6), "wav": ("wav", 1)}, {"e": ("class", 2), "e2": ("class", 3)}),
}


def fake_model(name, params, inputs, heads, seed=0):
    torch.manual_seed(seed)
    net = build_for_config({"name": name, "params": params}, inputs, heads).eval()
    meta = {"model": {"name": name, "params": params}, "inputs": {n: {"kind": k, "dim": d} for n, (k, d) in inputs.items()},
            "heads": {h: {"kind": k} for h, (k, _) in heads.items()}}
    return types.SimpleNamespace(kind="torch", meta=meta, net=net, source=name)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_onnx_parity_per_family(family, tmp_path):
    m = fake_model(family, *FAMILIES[family])
    export_onnx(m, tmp_path / "m.onnx", log=quiet)
    inputs, heads = m.meta["inputs"], list(m.meta["heads"])
    backend = OnnxBackend(tmp_path / "m.onnx", inputs, heads)
    for seed in (7, 8):  # batches of other sizes and lengths than the traced one
        xs, lens = example_batch(inputs, seed, batch=2 + seed % 3)
        clock = next((n for n, s in inputs.items() if s["kind"] != "vector"), None)
        want = torch_outputs(m.net, inputs, heads, xs, lens)
        got = backend.run(xs, lens)
        assert {h: v.shape for h, v in got.items()} == {h: v.shape for h, v in want.items()}
        assert max_difference(want, got, lens, inputs, clock) < 1e-4


def test_onnx_refuses_a_graph_that_does_not_generalize(tmp_path):
    from emotk.models import register
    from torch import nn

    @register("toy_frozen_length")
    class Frozen(nn.Module):
        """Weights time steps with a numpy ramp: tracing freezes its length, so other lengths fail."""

        input_kinds, output_kind = ("feats",), "utterance"

        def __init__(self, input_dim, output_dim):
            super().__init__()
            self.fc = nn.Linear(input_dim, output_dim)

        def forward(self, x, lengths):
            ramp = torch.from_numpy(np.linspace(0, 1, x.shape[1], dtype=np.float32))
            return self.fc((x * ramp[None, :, None]).mean(1))

    m = fake_model("toy_frozen_length", {}, {"feats": ("feats", 4)}, {"e": ("class", 2)})
    with pytest.raises(EmotkError, match="toy_frozen_length"):
        export_onnx(m, tmp_path / "m.onnx", log=quiet)
    assert not (tmp_path / "m.onnx").exists()


# Bad input ----------------------------------------------------------------------------------------------

def test_incompatible_format_and_missing_model_dir_are_one_line_errors(cnn, audio, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(cnn["model"], old)
    desc = yaml.safe_load((old / "model.yaml").read_text())
    desc.update(format=99, emotk_version="9.0.0")
    (old / "model.yaml").write_text(yaml.safe_dump(desc))
    r = run_cli("infer", "--model", old, audio / "short.wav")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "format 99" in r.stderr and "emotk 9.0.0" in r.stderr and "reads format 1" in r.stderr
    r = run_cli("infer", "--model", tmp_path / "nowhere", audio / "short.wav")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "nowhere" in r.stderr


def test_chunk_rule():
    assert chunk_bounds(3.0, 10.0) == [(0.0, 3.0)]
    assert chunk_bounds(24.0, 10.0) == [(0.0, 10.0), (10.0, 24.0)]  # 4 s left: joins the last chunk
    assert chunk_bounds(26.0, 10.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 26.0)]
