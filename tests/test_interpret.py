"""Interpretation of raw-waveform models (paper 003, section 2.3): guided backpropagation against
hand-built gradients, activation maximization, Table 6 statistics of constructed signals, and the
``emotk interpret`` command."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.stats import pearsonr
from torch import nn

from emotk.analysis.interpret import generalized_input, guided_relu, input_gradient, interpret, pearson, signal_stats
from emotk.config import load_config
from emotk.models import build_for_config
from emotk.training.loop import train
from tests.toydata import write_wav_dir

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent


class Mlp(nn.Module):
    """Three ReLUs, called the three ways a model can: nn.ReLU, torch.relu, Tensor.relu."""

    def __init__(self, w: list[torch.Tensor]):
        super().__init__()
        self.lin = nn.ModuleList()
        for m in w:
            lin = nn.Linear(m.shape[1], m.shape[0])
            lin.weight.data, lin.bias.data = m.clone(), torch.zeros(m.shape[0])
            self.lin.append(lin)
        self.act = nn.ReLU()

    def forward(self, inputs, lengths):
        h = self.act(self.lin[0](inputs["x"]))
        h = torch.relu(self.lin[1](h))
        h = self.lin[2](h).relu()
        return {"y": self.lin[3](h)}, {}


def hand_gradient(w, x, unit, guided):
    """Backpropagation written out: at each ReLU, mask by the forward sign (and by the gradient's sign when guided)."""
    pre, a = [], x
    for m in w[:-1]:
        pre.append(m @ a)
        a = np.maximum(pre[-1], 0)
    g = w[-1][unit]
    masked = 0
    for m, h in zip(reversed(w[:-1]), reversed(pre)):
        if guided:
            masked += int(((g < 0) & (h > 0)).sum())
            g = np.maximum(g, 0)
        g = m.T @ (g * (h > 0))
    return g, masked


def weights(seed, positive=False):
    rng = np.random.default_rng(seed)
    w = [rng.normal(size=s) for s in ((7, 6), (5, 7), (4, 5), (3, 4))]
    return [np.abs(m) for m in w] if positive else w


def gradients(w, x, unit, guided):
    net = Mlp([torch.tensor(m, dtype=torch.float64) for m in w]).double()
    g, calls = input_gradient(net, {"x": torch.tensor(x)[None]}, {}, "y", torch.tensor([unit]), "x", guided=guided)
    return g[0], calls


@pytest.mark.parametrize("seed", range(5))
def test_guided_backprop_differs_from_the_gradient_only_where_relu_masks_apply(seed):
    w = weights(seed)
    x = np.random.default_rng(100 + seed).normal(size=6)
    for unit in range(3):
        plain, _ = gradients(w, x, unit, guided=False)
        guided, calls = gradients(w, x, unit, guided=True)
        ref_plain, _ = hand_gradient(w, x, unit, guided=False)
        ref_guided, masked = hand_gradient(w, x, unit, guided=True)
        np.testing.assert_allclose(plain, ref_plain, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(guided, ref_guided, rtol=1e-10, atol=1e-12)
        assert calls == 3  # nn.ReLU, torch.relu and Tensor.relu were all replaced
        if masked == 0:  # no active unit received a negative gradient: guided = plain
            np.testing.assert_array_equal(guided, plain)
    # Positive weights and input: every gradient is positive, no guided mask applies: identical.
    w = weights(seed, positive=True)
    x = np.abs(x)
    np.testing.assert_array_equal(gradients(w, x, 0, True)[0], gradients(w, x, 0, False)[0])
    assert hand_gradient(w, x, 0, guided=True)[1] == 0


def test_some_masks_apply_in_a_random_network():
    """The comparison above is not vacuous: random networks do hit negative gradients at active units."""
    hits = 0
    for seed in range(5):
        w, x = weights(seed), np.random.default_rng(100 + seed).normal(size=6)
        _, masked = hand_gradient(w, x, 0, guided=True)
        if masked:
            hits += 1
            assert not np.allclose(gradients(w, x, 0, True)[0], gradients(w, x, 0, False)[0])
    assert hits > 0


def elor(n_classes=3):
    torch.manual_seed(0)
    net = build_for_config({"name": "split_mlp", "params": {"channels": [4, 4], "kernels": [9, 5], "pools": [4, 4],
                                                            "hidden": [8], "dropout": 0.0}},
                           {"wav": ("wav", 1)}, {"a": ("class", n_classes), "v": ("class", 2)})
    return net.eval()


def test_saliency_of_a_split_mlp_goes_through_its_relus():
    net = elor()
    x = torch.randn(1, 800, 1)
    lengths = {"wav": torch.tensor([800])}
    plain, _ = input_gradient(net, {"wav": x}, lengths, "a", torch.tensor([1]), "wav", guided=False)
    guided, calls = input_gradient(net, {"wav": x}, lengths, "a", torch.tensor([1]), "wav")
    assert calls == 2 and plain.shape == guided.shape == (1, 800, 1)
    assert not np.allclose(plain, guided)
    with guided_relu() as mode:  # the forward pass is unchanged
        out = net({"wav": x}, lengths)[0]["a"]
    assert mode.calls == 2 and torch.allclose(out, net({"wav": x}, lengths)[0]["a"])


def test_activation_maximization_raises_the_target_output():
    net = elor()
    for unit in range(3):
        x, before, after = generalized_input(net, "a", unit, 1600, "wav", {}, steps=25, lr=0.01, l2=1e-3, seed=unit)
        assert after > before and x.shape == (1600,)
    # A strong L2 penalty keeps the signal small.
    weak, _, _ = generalized_input(net, "a", 0, 1600, "wav", {}, steps=25, lr=0.01, l2=0.0)
    strong, _, _ = generalized_input(net, "a", 0, 1600, "wav", {}, steps=25, lr=0.01, l2=10.0)
    assert np.sum(strong ** 2) < np.sum(weak ** 2)


def test_table_6_statistics_of_a_constructed_signal():
    sr = 8000
    tone = 0.2 * np.sin(2 * np.pi * 1000 * np.arange(int(0.5 * sr)) / sr)
    x = np.concatenate([tone, np.zeros(int(0.3 * sr)), tone, np.zeros(int(0.2 * sr))])
    s = signal_stats(x, sr)
    assert s["loudness_dbfs"] == pytest.approx(10 * np.log10(0.2 ** 2 / 2 * 1.0 / 1.5), abs=0.05)
    assert s["max_amplitude"] == pytest.approx(x.max()) and s["min_amplitude"] == pytest.approx(x.min())
    lo, hi = s["dominant_band_khz"]
    assert lo <= 1.0 <= hi and hi - lo < 0.2
    assert s["pauses"] == 1 and s["pause_ms"] == pytest.approx(300 - 25 + 10, abs=10)  # frames wholly in silence
    assert s["voiced_s"] == pytest.approx(1.3, abs=0.02)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=500), rng.normal(size=500)
    b += a
    assert pearson(a, b) == pytest.approx(pearsonr(a, b)[0], abs=1e-12)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("interpret")
    tr = write_wav_dir(root / "train", spks=("s1", "s2"), seed=1, vector_dim=6)
    va = write_wav_dir(root / "valid", spks=("s3",), seed=2, vector_dim=6)
    quiet = lambda m: None  # noqa: E731
    wav = ["model.name=split_mlp", "model.params.channels=[4,4]", "model.params.kernels=[9,5]",
           "model.params.pools=[4,4]", "model.params.hidden=[8]", "inputs.wav.kind=wav", "inputs.wav.sample_rate=8000",
           "heads.emotion.kind=class", "heads.emotion2.kind=class", "segments.mode=window", "segments.length=1.0",
           "segments.min_last=0.5", "train.epochs=1", "train.batch_size=4"]
    train(load_config(None, wav), tr, va, root / "elor", log=quiet)
    vec = ["model.name=split_mlp", "model.params.hidden=[8]", "inputs.vec.kind=vector", "inputs.vec.table=vec.scp",
           "inputs.vec.norm=none", "train.epochs=1"]
    train(load_config(None, vec), tr, va, root / "ftr", log=quiet)
    return {"elor": root / "elor", "ftr": root / "ftr", "valid": va}


def test_interpret_writes_saliency_generalized_signals_and_table_6(models, tmp_path):
    out = tmp_path / "interp"
    lines = []
    summary = interpret(models["elor"], models["valid"], out, max_pieces=3, steps=5, log=lines.append)
    rows = [r.split("\t") for r in (out / "saliency.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 6 and {r[2] for r in rows} == {"emotion", "emotion2"}
    assert set(summary["saliency_signal_pearson"]) == {"emotion", "emotion2"}
    assert summary["saliency_between_heads_pearson"] is not None and summary["guided_relu_calls"] == 12
    assert sorted(p.name for p in out.glob("*.png")) == sorted(
        [f"saliency_{rows[0][0]}_emotion.png", f"saliency_{rows[0][0]}_emotion2.png", "generalized_emotion.png",
         "generalized_emotion2.png"])
    assert len(list((out / "generalized").glob("*.wav"))) == 4  # 2 heads x 2 classes
    table = (out / "table6.md").read_text()
    assert "Loudness (dBFS)" in table and "emotion2 neu" in table
    for act in summary["activation"].values():
        assert act["after"] > act["before"]
    lines.clear()
    interpret(models["elor"], models["valid"], out, max_pieces=3, steps=5, log=lines.append)
    assert any("skipping" in m for m in lines)
    interpret(models["elor"], models["valid"], out, max_pieces=2, steps=5, log=lines.append)  # other options: redone
    assert len((out / "saliency.tsv").read_text().splitlines()) == 1 + 4
    assert yaml.safe_load((out / "interpret.yaml").read_text())["options"]["max_pieces"] == 2


def test_interpret_refuses_a_model_without_a_waveform_input(models, tmp_path):
    r = subprocess.run([sys.executable, "-c", "from emotk.cli import main; main()", "interpret", "--model",
                        str(models["ftr"]), "--data", str(models["valid"]), "--out", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["emotk: error: interpret needs a raw-waveform model (one wav input, "
                                             "no feats input); this model reads vec (vector)"]
    assert not (tmp_path / "o").exists()
