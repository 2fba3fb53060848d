"""Models: output shapes for any length, padding invariance, paper parameter counts, parameter errors."""

import pytest
import torch

from emotk.errors import EmotkError
from emotk.models import build_model, list_models
from emotk.models.layers import length_mask, masked_mean, pooled_lengths, pooled_size

torch.set_num_threads(1)

SMALL_CNN = dict(channels=[4, 4, 8, 8], lstm_size=8)
SMALL_LDNN = dict(lstm_size=8, fc_sizes=[8, 4, 4])


def test_registered():
    assert {"cnn_lstm2d", "ldnn"} <= set(list_models())


@pytest.mark.parametrize("name,params,dim", [
    ("cnn_lstm2d", SMALL_CNN, 40), ("cnn_lstm2d", SMALL_CNN, 23), ("cnn_lstm2d", SMALL_CNN, 1),
    ("ldnn", SMALL_LDNN, 40), ("ldnn", SMALL_LDNN, 13),
])
def test_output_shapes_any_length(name, params, dim):
    torch.manual_seed(0)
    model = build_model(name, dim, 5, **params)
    lengths = torch.tensor([1, 2, 3, 7, 63, 129, 130])
    x = torch.randn(len(lengths), int(lengths.max()), dim)
    for mode in (model.train, model.eval):
        mode()
        y = model(x, lengths)
        assert y.shape == (len(lengths), 5)
        assert torch.isfinite(y).all()
    model.train()
    model(x, lengths).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name,params", [("cnn_lstm2d", SMALL_CNN), ("ldnn", SMALL_LDNN)])
def test_padding_does_not_change_the_output(name, params):
    """Eval mode: each sequence alone gives the output it gets in a padded batch (padding is garbage)."""
    torch.manual_seed(1)
    model = build_model(name, 24, 4, **params).eval()
    lengths = torch.tensor([1, 5, 33, 64, 97])
    x = torch.randn(len(lengths), 100, 24) * 3 + 5  # padding frames hold large non-zero values
    with torch.no_grad():
        batched = model(x, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = model(x[i: i + 1, :n], lengths[i: i + 1])
            torch.testing.assert_close(batched[i], alone[0], rtol=1e-4, atol=1e-5)


def test_cnn_lstm2d_parameter_count_matches_table2():
    """Paper config on a 128-bin log-mel: count every layer of Table 2 by hand."""
    k = 7  # EmoDB classes
    conv = lambda c_in, c_out: 3 * 3 * c_in * c_out + c_out  # noqa: E731  weights + bias
    bn = lambda c: 2 * c  # noqa: E731  trainable scale and shift (running stats are buffers)
    lflbs = conv(1, 64) + bn(64) + conv(64, 64) + bn(64) + conv(64, 128) + bn(128) + conv(128, 128) + bn(128)
    # 2P4 leaves M/128 = 1 frequency row of 128 channels per time step -> LSTM input 128.
    lstm_in, hidden = 128 * 1, 256
    lstm = 4 * (hidden * lstm_in + hidden * hidden + 2 * hidden)  # PyTorch keeps two bias vectors
    fc = hidden * k + k
    expected = lflbs + lstm + fc
    assert expected == 656839
    model = build_model("cnn_lstm2d", 128, k)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert [b.conv.out_channels for b in model.blocks] == [64, 64, 128, 128]
    assert [b.pool_size for b in model.blocks] == [2, 4, 4, 4]


def test_ldnn_paper_sizes():
    model = build_model("ldnn", 40 * 16, 6)  # 40 log-mels spliced 10 + 1 + 5 frames
    lstm = 2 * 4 * (128 * 640 + 128 * 128 + 2 * 128)
    fc = (256 * 128 + 128) + (128 * 32 + 32) + (32 * 32 + 32) + (32 * 6 + 6)
    assert sum(p.numel() for p in model.parameters()) == lstm + fc
    assert model.dropout.p == 0.2


def test_unknown_and_bad_parameters():
    with pytest.raises(EmotkError, match="lstm_sise"):
        build_model("cnn_lstm2d", 40, 4, lstm_sise=3)
    with pytest.raises(EmotkError, match="same length"):
        build_model("cnn_lstm2d", 40, 4, channels=[4, 4], pools=[2, 4, 4])
    with pytest.raises(EmotkError, match="odd"):
        build_model("cnn_lstm2d", 40, 4, kernel_size=4)
    with pytest.raises(EmotkError, match="dropout"):
        build_model("ldnn", 40, 4, dropout=1.5)


def test_layers():
    lengths = torch.tensor([3, 1, 4])
    assert length_mask(lengths, 4).tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    x = torch.arange(24, dtype=torch.float32).reshape(3, 4, 2)
    torch.testing.assert_close(masked_mean(x, lengths), torch.stack([x[0, :3].mean(0), x[1, :1].mean(0), x[2].mean(0)]))
    for n in range(1, 40):
        for k in (2, 3, 4):
            out = torch.nn.functional.max_pool1d(torch.zeros(1, 1, n), k, ceil_mode=True).shape[-1]
            assert pooled_lengths(torch.tensor([n]), k).item() == out == pooled_size(n, k)
