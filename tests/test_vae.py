"""AE / VAE / CVAE + LSTM (paper 001): the KL term against the closed form (torch.distributions),
the reparameterization, labels reaching the CVAE in training only, the paper's sizes, and training
through ``emotk train``."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from emotk.config import load_config
from emotk.errors import EmotkError
from emotk.inference import infer
from emotk.models import build_for_config, get_model_class
from emotk.models.layers import length_mask
from emotk.models.vae import gaussian_kl, reparameterize
from emotk.training.loop import train
from tests.toydata import write_feature_dir

torch.set_num_threads(1)
SMALL = {"hidden": [16, 8], "latent": 4, "lstm_size": 6, "dense": 16}


def build(name, dim=800, n_classes=4, **params):
    return build_for_config({"name": name, "params": params}, {"feats": ("feats", dim)},
                            {"emotion": ("class", n_classes)}).net


def batch(dim=800, lengths=(7, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), dim, generator=g)
    n = torch.tensor(lengths)
    x = x * length_mask(n, x.shape[1])[:, :, None]
    return {"feats": x}, {"feats": n}


def test_kl_is_zero_at_the_prior_and_matches_the_closed_form():
    zeros = torch.zeros(3, 5)
    assert torch.equal(gaussian_kl(zeros, zeros), torch.zeros(3))
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), ref)


def test_model_kl_term_is_the_mean_over_valid_segments():
    net = build("vae_lstm", dim=20, **SMALL).train()
    x, n = batch(dim=20)
    torch.nn.init.zeros_(net.to_latent.weight)
    torch.nn.init.zeros_(net.to_latent.bias)  # posterior = prior for every segment
    assert net(x, n)[1]["kl"].item() == 0.0
    net = build("vae_lstm", dim=20, **SMALL).train()
    _, aux = net(x, n)
    mu, logvar = net.encode(x["feats"])
    valid = length_mask(n["feats"], x["feats"].shape[1])
    ref = kl_divergence(Normal(mu[valid], torch.exp(0.5 * logvar[valid])), Normal(0.0, 1.0)).sum(-1).mean()
    torch.testing.assert_close(aux["kl"], ref)  # padded segments (the second utterance's last 4) left out


def test_reparameterization_samples_and_carries_the_gradient_to_the_encoder():
    mu, logvar = torch.full((20000, 1), 2.0), torch.full((20000, 1), 2 * torch.log(torch.tensor(3.0)))
    torch.manual_seed(0)
    z = reparameterize(mu, logvar)
    assert z.mean().item() == pytest.approx(2.0, abs=0.1) and z.std().item() == pytest.approx(3.0, rel=0.03)
    net = build("vae_lstm", dim=20, **SMALL).train()
    x, n = batch(dim=20)
    _, aux = net(x, n)
    aux["recon"].backward()  # the classifier is detached: reconstruction is the encoder's only teacher
    latent = net.to_latent.weight.shape[0] // 2
    assert net.encoder[0][0].weight.grad.abs().sum() > 0
    # The log-variance rows reach the reconstruction only through the sampled z = mu + eps * sigma.
    assert net.to_latent.weight.grad[latent:].abs().sum() > 0
    net.zero_grad()
    net.eval()
    net(x, n)[1]["recon"].backward()  # eval: z = mu, no sampling, no gradient to the variance
    assert net.to_latent.weight.grad[latent:].abs().sum() == 0
    net.train().zero_grad()
    out, _ = net(x, n)
    out["emotion"].sum().backward()
    assert net.encoder[0][0].weight.grad is None or net.encoder[0][0].weight.grad.abs().sum() == 0
    assert net.lstm.lstm.weight_ih_l0.grad.abs().sum() > 0


def test_classifier_loss_reaches_the_encoder_without_detach():
    torch.manual_seed(0)
    net = build("ae_lstm", dim=20, detach=False, **SMALL).train()
    x, n = batch(dim=20)
    out, aux = net(x, n)
    assert set(aux) == {"recon"}  # an AE has no KL term
    out["emotion"].sum().backward()
    assert net.encoder[0][0].weight.grad.abs().sum() > 0


def test_cvae_uses_labels_in_training_only():
    torch.manual_seed(0)
    net = build("cvae_lstm", dim=20, label_dropout=0.01, **SMALL)
    x, n = batch(dim=20)
    y1, y2 = {"emotion": torch.tensor([0, 1])}, {"emotion": torch.tensor([2, 3])}
    net.eval()
    ref = net(x, n)[0]["emotion"]
    for targets in (y1, y2, None):
        out, aux = net(x, n, targets)
        assert torch.equal(out["emotion"], ref)
        assert torch.equal(aux["recon"], net(x, n)[1]["recon"])
    net.train()
    torch.manual_seed(1)
    out1, aux1 = net(x, n, y1)
    torch.manual_seed(1)
    out2, aux2 = net(x, n, y2)
    assert torch.equal(out1["emotion"], out2["emotion"])  # the classifier reads the unconditioned latents
    assert not torch.equal(aux1["recon"], aux2["recon"])  # the label shapes the features
    assert not torch.equal(aux1["kl"], aux2["kl"])
    with pytest.raises(EmotkError, match="needs the labels of head 'emotion'"):
        net(x, n)
    assert get_model_class("cvae_lstm").needs_targets and not hasattr(get_model_class("vae_lstm"), "needs_targets")


def _count(*modules):
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.mark.parametrize("name,latent", [("ae_lstm", 128), ("vae_lstm", 128), ("cvae_lstm", 128),
                                         ("vae_lstm", 32), ("vae_lstm", 512)])
def test_paper_sizes(name, latent):
    """Section 4.3: 100 ms segments of 80 log-mel bins (800 values), encoder 512-256, latent 128 (32..512)."""
    net = build(name, latent=latent)
    k = 4 if name == "cvae_lstm" else 0
    out = 2 * latent if name != "ae_lstm" else latent
    encoder = (800 + k) * 512 + 512 + 512 * 256 + 256 + 256 * out + out
    decoder = latent * 256 + 256 + 256 * 512 + 512 + 512 * 800 + 800
    assert _count(net.encoder, net.to_latent) == encoder
    assert _count(net.decoder) == decoder
    assert net.lstm.lstm.num_layers == 2 and net.lstm.lstm.input_size == latent
    mu, _ = net.encode(torch.zeros(1, 800), torch.zeros(1, k))
    assert mu.shape == (1, latent)


def test_bad_parameters_are_one_line_errors():
    with pytest.raises(EmotkError, match="condition must name a class head"):
        build("cvae_lstm", dim=20, condition="arousal", **SMALL)
    with pytest.raises(EmotkError, match="mean_var needs a variational model"):
        build("ae_lstm", dim=20, features="mean_var", **SMALL)
    with pytest.raises(EmotkError, match="reads one feats input"):
        build_for_config({"name": "vae_lstm", "params": {}}, {"wav": ("wav", 1)}, {"emotion": ("class", 4)})


@pytest.mark.parametrize("name", ["ae_lstm", "vae_lstm", "cvae_lstm"])
def test_trains_and_infers_through_emotk_train(name, tmp_path):
    root = tmp_path / "data"
    tr = write_feature_dir(root / "train", spks=("s1", "s2"), seed=1, cmvn=True)
    va = write_feature_dir(root / "valid", spks=("s3",), seed=2, cmvn=True)
    cfg = load_config(None, [f"model.name={name}", *[f"model.params.{k}={v}" for k, v in SMALL.items()],
                             "inputs.feats.stack=2", "train.epochs=2", "train.batch_size=4",
                             "train.aux_weights.kl=0.5", "train.aux_weights.recon=0.01"])
    summary = train(cfg, tr, va, tmp_path / "exp", log=lambda m: None)
    assert summary["epochs"] == 2
    out = infer(tmp_path / "exp", [va], log=lambda m: None)
    assert (out / "emotion.txt").read_text().count("\n") > 1


# Paper-size configs (conf/model) ------------------------------------------------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def test_cnn_lstm1d_config_has_table_1_sizes():
    """Paper 004 Table 1: conv k=3 with 64, 64, 128, 128 filters, pools of 4 (L/256 steps), LSTM 256."""
    cfg = load_config(ROOT / "conf/model/cnn_lstm1d.yaml")
    assert cfg["segments"] == {**cfg["segments"], "mode": "pad_or_cut", "length": 8.0}
    net = build_for_config(cfg["model"], {"wav": ("wav", 1)}, {"emotion": ("class", 6)}).net
    convs = [(1, 64), (64, 64), (64, 128), (128, 128)]
    expected = sum(i * o * 3 + o + 2 * o for i, o in convs)  # conv weights and biases, batch-norm scale and shift
    expected += 4 * (256 * 128 + 256 * 256 + 2 * 256) + 256 * 6 + 6  # LSTM (two bias vectors in torch), 1F
    assert _count(net) == expected
    net.eval()
    lengths = torch.tensor([128000])
    h = torch.zeros(1, 1, 128000)
    for block in net.blocks:
        h, lengths = block(h, lengths)
    assert h.shape == (1, 128, 500) and int(lengths) == 128000 // 256


@pytest.mark.parametrize("name,tables", [("elor", {"wav": "wav"}), ("lom", {"mfcc": "feats"}),
                                         ("ftr", {"is10": "vector"}), ("elor_ftr", {"wav": "wav", "is10": "vector"})])
def test_paper_003_configs(name, tables):
    cfg = load_config(ROOT / f"conf/model/{name}.yaml")
    tc = cfg["train"]
    assert (tc["optimizer"], tc["nesterov"], tc["head_order"]) == ("sgd", True, "random")
    assert {n: s["kind"] for n, s in cfg["inputs"].items()} == tables
    assert {h: s["labels"] for h, s in cfg["heads"].items()} == {"valence": "utt2valence5", "arousal": "utt2arousal5"}
    if any(k != "vector" for k in tables.values()):
        assert (cfg["segments"]["mode"], cfg["segments"]["length"], cfg["segments"]["min_last"]) == ("window", 6.0, 3.0)
    dims = {"wav": ("wav", 1), "mfcc": ("feats", 26), "is10": ("vector", 1582)}
    net = build_for_config(cfg["model"], {n: dims[n] for n in tables}, {"valence": ("class", 5), "arousal": ("class", 5)})
    x = {n: torch.zeros(2, 16000 if n == "wav" else 60, 1 if n == "wav" else 26) for n in tables if n != "is10"}
    if "is10" in tables:
        x["is10"] = torch.zeros(2, 1582)
    out, _ = net.eval()(x, {n: torch.tensor([v.shape[1]] * 2) if v.dim() == 3 else torch.ones(2, dtype=torch.long)
                            for n, v in x.items()})
    assert {h: tuple(o.shape) for h, o in out.items()} == {"valence": (2, 5), "arousal": (2, 5)}
