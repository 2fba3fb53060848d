"""Module-wise probing (paper 002, section 7.5): inertia ratio by hand, LDA against the closed-form
two-class discriminant, SVM probes, activations of a trained toy CLDNN against its own forward pass and
the inference path, and ``emotk probe-modules`` end to end."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emotk.analysis.probing import (RAW, inertia_ratio, lda_projection, module_activations, module_paths,
                                    probe_modules, svm_probe, utterance_labels)
from emotk.config import load_config
from emotk.errors import EmotkError
from emotk.inference import Model, data_dir_dataset
from emotk.models import build_model
from emotk.models.layers import masked_mean
from emotk.training.loop import train
from tests.toydata import write_feature_dir

torch.set_num_threads(1)
EMOTK = [sys.executable, "-c", "from emotk.cli import main; main()"]
ROOT = Path(__file__).resolve().parent.parent


def test_inertia_ratio_by_hand():
    # Class a: (0,0), (2,0): centre (1,0), squared distances 1, 1 -> 1.
    # Class b: (0,4), (0,6), (0,8): centre (0,6), squared distances 4, 0, 4 -> 8/3.
    # omega_i = (1 + 8/3) / 2 = 11/6; centres' squared distance 1 + 36 = 37 for both ordered pairs -> omega_o = 37.
    x = np.array([[0, 0], [2, 0], [0, 4], [0, 6], [0, 8]], dtype=float)
    assert inertia_ratio(x, ["a", "a", "b", "b", "b"]) == pytest.approx((11 / 6) / 37)
    # Three classes: centres (0,0), (3,0), (0,4): squared distances 9, 16, 25 -> omega_o = 2 * 50 / 6.
    x3 = np.array([[-1, 0], [1, 0], [3, 1], [3, -1], [0, 4]], dtype=float)
    assert inertia_ratio(x3, list("aabbc")) == pytest.approx(((1 + 1 + 0) / 3) / (100 / 6))


def test_inertia_ratio_is_zero_for_collapsed_clusters():
    x = np.repeat(np.array([[1.0, 2.0, 3.0], [-4.0, 0.0, 1.0], [0.0, 5.0, 5.0]]), 4, axis=0)
    assert inertia_ratio(x, np.repeat(["x", "y", "z"], 4)) == 0.0
    assert np.isnan(inertia_ratio(x, ["x"] * 12))  # one class: no inter-cluster inertia


def test_lda_two_classes_is_fishers_discriminant():
    rng = np.random.default_rng(0)
    cov = np.array([[2.0, 1.2, 0.0], [1.2, 1.5, 0.3], [0.0, 0.3, 0.7]])
    x = np.concatenate([rng.multivariate_normal([0, 0, 0], cov, 60), rng.multivariate_normal([1, 2, 0], cov, 40)])
    y = ["a"] * 60 + ["b"] * 40
    z = lda_projection(x, y)
    assert z.shape == (100, 1)
    xa, xb = x[:60], x[60:]
    sw = np.cov(xa.T, bias=True) * 60 + np.cov(xb.T, bias=True) * 40
    w = np.linalg.solve(sw, xb.mean(0) - xa.mean(0))
    assert abs(np.corrcoef(z[:, 0], x @ w)[0, 1]) == pytest.approx(1.0, abs=1e-9)
    many = np.concatenate([rng.normal(i, 1, (10, 4)) for i in range(5)])
    assert lda_projection(many, np.repeat(list("abcde"), 10)).shape == (50, 2)  # min(K - 1, 2)


def test_svm_probe_on_separable_activations_reaches_ua_1():
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 10, (3, 16))
    y_train, y_test = np.repeat(["ang", "hap", "sad"], [20, 5, 9]), np.repeat(["ang", "hap", "sad"], [4, 7, 3])
    x_train = centres[np.searchsorted(["ang", "hap", "sad"], y_train)] + rng.normal(0, 0.5, (len(y_train), 16))
    x_test = centres[np.searchsorted(["ang", "hap", "sad"], y_test)] + rng.normal(0, 0.5, (len(y_test), 16))
    assert svm_probe(x_train, list(y_train), x_test, list(y_test)) == 1.0
    shuffled = rng.permutation(y_train)  # no information: far from perfect
    assert svm_probe(rng.normal(size=x_train.shape), list(shuffled), x_test, list(y_test)) < 0.9


def test_module_boundaries():
    cldnn = build_model("cldnn_st", 40, 6)
    assert module_paths(cldnn) == {"cnn": "convs", "blstm": "ldnn.lstm", "mlp": "ldnn.fc"}
    ldnn = build_model("ldnn", 40, 6)
    for net in (cldnn, ldnn):
        for path in module_paths(net).values():
            net.get_submodule(path)
    with pytest.raises(EmotkError, match="cnn_lstm2d.*probe_modules"):
        module_paths(build_model("cnn_lstm2d", 40, 6))


# A trained toy model -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    dirs = {"train": write_feature_dir(root / "train", spks=("s1", "s2", "s3", "s4"), seed=1, cmvn=True),
            "test": write_feature_dir(root / "test", spks=("s5", "s6"), seed=2, cmvn=True)}
    (dirs["train"] / "spk2gender").write_text("s1 f\ns2 m\ns3 f\ns4 m\n")
    (dirs["test"] / "spk2gender").write_text("s5 f\ns6 m\n")
    cfg = load_config(ROOT / "conf/model/cldnn_fst_small.yaml", [
        "model.params.maps=4", "model.params.widths=[3,2]", "model.params.lstm_size=6",
        "model.params.fc_sizes=[6,4,4]", "train.epochs=2", "train.batch_size=8"])
    train(cfg, dirs["train"], dirs["test"], root / "exp", log=lambda m: None)
    return root, dirs


def test_activations_are_the_modules_outputs(trained):
    root, dirs = trained
    model = Model(root / "exp")
    utts, acts = module_activations(model, dirs["test"], batch_size=5)
    net = model.net.net
    assert list(acts) == [RAW, "cnn", "blstm", "mlp"]
    assert {m: a.shape for m, a in acts.items()} == {RAW: (24, 12), "cnn": (24, net.convs.output_size),
                                                     "blstm": (24, 12), "mlp": (24, 2)}
    # The MLP's logits give the posteriors of the inference path.
    posts = model.outputs(data_dir_dataset(model, dirs["test"]))["emotion"]
    logits = torch.from_numpy(acts["mlp"])
    np.testing.assert_allclose(torch.softmax(logits, -1).numpy(), np.stack([posts[u] for u in utts]), atol=1e-5)
    # One utterance alone through the network's own submodules.
    ds = data_dir_dataset(model, dirs["test"])
    for i in (0, 17):
        x = torch.from_numpy(ds.sources["feats"].read(utts[i]))[None]
        n = torch.tensor([x.shape[1]])
        with torch.no_grad():
            cnn = net.convs(x, n)
            seq, _ = net.ldnn.lstm(cnn, n)
        np.testing.assert_allclose(acts[RAW][i], x[0].mean(0).numpy(), atol=1e-5)
        np.testing.assert_allclose(acts["cnn"][i], cnn[0].mean(0).numpy(), atol=1e-5)
        np.testing.assert_allclose(acts["blstm"][i], masked_mean(seq, n)[0].numpy(), atol=1e-5)
    labels = utterance_labels(model, dirs["test"], utts)
    assert set(labels) == {"emotion", "speaker", "gender"}
    assert labels["gender"][utts.index("s5-ang00")] == "f"


def test_probe_modules_command(trained, tmp_path):
    root, dirs = trained
    out = tmp_path / "probe"
    args = EMOTK + ["probe-modules", "--model", str(root / "exp"), "--train", str(dirs["train"]), "--test",
                    str(dirs["test"]), "--out", str(out)]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "speaker: no SVM probe: 2 test classes are not in the training set" in r.stderr
    lines = [ln.split("\t") for ln in (out / "probe.tsv").read_text().splitlines()]
    assert lines[0] == ["module", "label", "classes", "probe_ua", "inertia_ratio"]
    rows = {(m, lab): (int(k), float(p), float(rho)) for m, lab, k, p, rho in lines[1:]}
    assert set(rows) == {(m, lab) for m in (RAW, "cnn", "blstm", "mlp") for lab in ("emotion", "speaker", "gender")}
    for (m, lab), (k, p, rho) in rows.items():
        assert k == {"emotion": 2, "speaker": 4, "gender": 2}[lab] and rho > 0
        assert np.isnan(p) if lab == "speaker" else 0 <= p <= 1
    assert rows[(RAW, "emotion")][1] == 1.0  # the toy classes differ in their mean: the raw probe separates them
    import matplotlib.image

    assert matplotlib.image.imread(out / "lda.png").shape[2] in (3, 4)
    said = []
    probe_modules(root / "exp", dirs["train"], dirs["test"], out, log=said.append)
    assert any("up to date" in m for m in said)
    said.clear()
    probe_modules(root / "exp", dirs["train"], dirs["train"], out, log=said.append)  # other test data: redone
    assert not any("up to date" in m for m in said)
    assert not np.isnan(float((out / "probe.tsv").read_text().splitlines()[5].split("\t")[3]))  # speakers seen now


def test_probe_modules_bad_input(trained, tmp_path):
    root, dirs = trained
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(EmotkError, match="not an output of probe-modules"):
        probe_modules(root / "exp", dirs["train"], dirs["test"], busy)
    assert (busy / "keep.txt").exists()
    r = subprocess.run(EMOTK + ["probe-modules", "--model", str(root / "exp"), "--train", str(dirs["train"]),
                                "--test", str(tmp_path / "no-such"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no-such" in r.stderr and r.stderr.count("\n") == 1, r.stderr
