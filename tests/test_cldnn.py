"""X-CLDNNs of paper 002: output shapes for odd lengths, padding invariance, the context windows against
Kaldi splicing, hand-counted parameters, filter shapes per type, one-line parameter errors, training."""

from pathlib import Path

import numpy as np
import pytest
import torch

from emotk.config import load_config
from emotk.errors import EmotkError
from emotk.features.transforms import splice_frames
from emotk.models import build_model, check_model, list_models
from emotk.models.layers import context_windows

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
TYPES = ("cldnn_s", "cldnn_t", "cldnn_st", "cldnn_fst")
SMALL = dict(maps=3, lstm_size=6, fc_sizes=[6, 4, 4])


def test_registered():
    assert set(TYPES) <= set(list_models())


@pytest.mark.parametrize("name", TYPES)
def test_output_shape_for_odd_lengths(name):
    torch.manual_seed(0)
    model = build_model(name, 40, 5, **SMALL)
    lengths = torch.tensor([1, 2, 7, 63, 130])
    x = torch.randn(len(lengths), int(lengths.max()), 40)
    for mode in (model.train, model.eval):
        mode()
        y = model(x, lengths)
        assert y.shape == (len(lengths), 5) and torch.isfinite(y).all()
    model.train()
    model(x, lengths).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", TYPES)
def test_padding_does_not_change_the_output(name):
    """Eval mode: each sequence alone gives its output in a padded batch whose padding is garbage."""
    torch.manual_seed(1)
    model = build_model(name, 40, 4, **SMALL).eval()
    lengths = torch.tensor([1, 2, 7, 63, 130])
    x = torch.randn(len(lengths), 131, 40) * 3 + 5
    with torch.no_grad():
        batched = model(x, lengths)
        cnn = model.convs(x, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = model(x[i: i + 1, :n], lengths[i: i + 1])
            torch.testing.assert_close(batched[i], alone[0], rtol=1e-4, atol=1e-5)
            assert (cnn[i, n:] == 0).all()  # padded steps carry nothing into the BLSTM


def test_context_windows_are_kaldi_splicing_within_each_length():
    rng = np.random.default_rng(0)
    lengths = [1, 4, 9]
    mats = [rng.normal(size=(n, 3)).astype(np.float32) for n in lengths]
    x = torch.full((3, 9, 3), 99.0)
    for i, m in enumerate(mats):
        x[i, : len(m)] = torch.from_numpy(m)
    got = context_windows(x, torch.tensor(lengths), 10, 5)
    want = np.concatenate([splice_frames(m, 10, 5) for m in mats]).reshape(-1, 16, 3)
    np.testing.assert_array_equal(got.numpy(), want)


def test_filter_and_pool_shapes_follow_table1():
    def layers(name, **p):
        net = build_model(name, 40, 6, **p).convs.net
        return [(c.kernel_size, p.kernel_size, p.stride) for c, p in zip(net[0::3], net[2::3])]

    assert layers("cldnn_s", heights=[5, 4]) == [((5, 1), (3, 1), (2, 1)), ((4, 1), (3, 1), (2, 1))]
    assert layers("cldnn_t", widths=[3, 3]) == [((1, 3), (1, 3), (1, 2)), ((1, 3), (1, 3), (1, 2))]
    assert layers("cldnn_st", heights=[6, 3], widths=[4, 2]) == [((6, 4), (3, 3), (2, 2)), ((3, 2), (3, 3), (2, 2))]
    assert layers("cldnn_fst", widths=[5, 2]) == [((40, 5), (1, 3), (1, 2)), ((1, 2), (1, 3), (1, 2))]
    assert build_model("cldnn_fst", 13, 6).convs.net[0].kernel_size == (13, 8)  # M x w1 on 13 MFCCs


def test_parameter_count_by_hand():
    """ST-CLDNN, paper sizes, 40 log-mels x 16 frames, filters 9x8 then 3x2, 6 classes."""
    # Map sizes, no padding: bands 40 -> conv 9: 32 -> pool 3/2: 15 -> conv 3: 13 -> pool: 6;
    # frames 16 -> conv 8: 9 -> pool: 4 -> conv 2: 3 -> pool: 1.  32 maps x 6 x 1 = 192 per frame.
    conv = (32 * 1 * 9 * 8 + 32) + (32 * 32 * 3 * 2 + 32)
    lstm = 2 * 4 * (128 * 192 + 128 * 128 + 2 * 128)  # PyTorch keeps two bias vectors per direction
    fc = (256 * 128 + 128) + (128 * 32 + 32) + (32 * 32 + 32) + (32 * 6 + 6)
    model = build_model("cldnn_st", 40, 6, heights=[9, 3], widths=[8, 2])
    assert model.convs.output_size == 192
    assert sum(p.numel() for p in model.parameters()) == conv + lstm + fc == 376518
    assert model.ldnn.dropout.p == 0.2


def test_section_7_4_limit_h1_30_for_40_bands():
    build_model("cldnn_s", 40, 6, heights=[30, 3], **SMALL)
    with pytest.raises(EmotkError, match="do not fit"):
        build_model("cldnn_s", 40, 6, heights=[31, 3], **SMALL)


@pytest.mark.parametrize("name,params,match,dim", [
    ("cldnn_t", dict(widths=[8, 3]), r"layer 2's 1 x 3 filters .* do not fit its 40 x 4 map", 40),
    ("cldnn_s", dict(heights=[9, 3]), "layer 2.*13 bands", 13),  # 13 MFCCs: too few bands
    ("cldnn_t", dict(widths=[1, 2]), "widths must be 2 integers >= 2", 40),
    ("cldnn_st", dict(heights=[13, 3]), "FST-Conv", 13),
    ("cldnn_fst", dict(widths=[4]), "widths must be 2 integers", 40),
    ("cldnn_s", dict(maps=0), "maps", 40),
    ("cldnn_t", dict(context=[10]), "context", 40),
    ("cldnn_st", dict(dropout=1.0), "cldnn_st: dropout", 40),
    ("cldnn_fst", dict(fc_sizes=[8, -1]), "fc_sizes", 40),
    ("cldnn_s", dict(kernel=3), "unknown parameter 'kernel'", 40),
])
def test_bad_parameters_are_one_line_errors(name, params, match, dim):
    with pytest.raises(EmotkError, match=match) as e:
        check_model({"name": name, "params": params}, {"feats": "feats"}, {"emotion": "class"})
        build_model(name, dim, 6, **params)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("variant", ["", "_small"])
def test_configs_build(variant):
    for t in ("s", "t", "st", "fst"):
        cfg = load_config(ROOT / f"conf/model/cldnn_{t}{variant}.yaml")
        assert cfg["inputs"]["feats"]["splice"] == [0, 0]
        if not variant:
            assert (cfg["train"]["batch_size"], cfg["train"]["lr"], cfg["train"]["patience"]) == (10, 0.001, 3)
        check_model(cfg["model"], {"feats": "feats"}, {"emotion": "class"})
        build_model(cfg["model"]["name"], 40, 6, **cfg["model"]["params"])


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from tests.toydata import write_feature_dir

    root = tmp_path_factory.mktemp("cldnn")
    return write_feature_dir(root / "train", spks=("s1", "s2"), n_per_class=3, seed=1, cmvn=True), \
        write_feature_dir(root / "valid", spks=("s3",), n_per_class=3, seed=2, cmvn=True)


@pytest.mark.parametrize("t,filters", [("s", ["model.params.heights=[4,2]"]), ("t", []),
                                       ("st", ["model.params.heights=[4,2]", "model.params.widths=[3,2]"]),
                                       ("fst", [])])
def test_trains_through_the_trainer(toy, tmp_path, t, filters):
    """Each config trains on 12-band toy features and infers posteriors for every valid utterance."""
    from emotk.inference import Model, data_dir_dataset
    from emotk.training.loop import train

    cfg = load_config(ROOT / f"conf/model/cldnn_{t}_small.yaml", filters + [
        "model.params.maps=2", "model.params.lstm_size=4", "model.params.fc_sizes=[4]", "train.epochs=1"])
    summary = train(cfg, *toy, tmp_path / "exp", log=lambda m: None)
    assert summary["best_epoch"] == 1
    model = Model(tmp_path / "exp")
    posts = model.outputs(data_dir_dataset(model, toy[1]))["emotion"]
    assert len(posts) == 6 and all(np.isclose(p.sum(), 1.0) for p in posts.values())
