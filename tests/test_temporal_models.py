"""The frame-regression models of paper 000: output length, padding invariance, receptive fields, sizes."""

import pytest
import torch

from emotk.models import build_model, list_models
from emotk.models.blstm_regressor import BLSTMRegressor
from emotk.models.temporal_cnn import DilatedCNN, DownUpCNN, SingleFilter


def small_models(d=6, k=2):
    return [
        DilatedCNN(d, k, num_layers=4, width=8),
        DownUpCNN(d, k, width=8),
        DownUpCNN(d, k, width=8, levels=2, factor=2, kernel_size=3, up_kernel=4),
        SingleFilter(d, k, filter_length=6),
        SingleFilter(d, k, filter_length=7),
        BLSTMRegressor(d, k, hidden_size=8, num_layers=1),
    ]


def test_registered():
    names = list_models()
    for name in ("dilated_cnn", "downup_cnn", "single_filter", "blstm_regressor"):
        assert name in names
        assert build_model(name, 160, 2).output_kind == "frame"


@pytest.mark.parametrize("T", [1, 2, 3, 80, 81, 82, 161, 243, 500])
def test_output_length_equals_input_length(T):
    torch.manual_seed(0)
    for m in small_models():
        y = m(torch.randn(1, T, 6), torch.tensor([T]))
        assert y.shape == (1, T, 2), (type(m).__name__, T)


def test_downup_default_odd_lengths():
    m = DownUpCNN(160, 1)
    for T in (7, 81 * 3 + 1, 1001, 7501):
        assert m(torch.randn(1, T, 160), torch.tensor([T])).shape == (1, T, 1)


@pytest.mark.parametrize("lengths", [(81, 200), (162, 163), (7, 300), (1, 5)])
def test_padding_does_not_change_outputs(lengths):
    """A short sequence padded with garbage in a batch gives exactly its output alone."""
    torch.manual_seed(1)
    L1, L2 = lengths
    for m in small_models():
        m.eval()
        x = torch.randn(2, L2, 6)
        x[0, L1:] = 100 * torch.randn(L2 - L1, 6)
        y = m(x, torch.tensor([L1, L2]))
        alone = m(x[:1, :L1], torch.tensor([L1]))
        assert torch.allclose(y[0, :L1], alone[0], atol=1e-5), type(m).__name__
        assert torch.allclose(y[1], m(x[1:], torch.tensor([L2]))[0], atol=1e-5), type(m).__name__


def connectivity_span(model, T, D=3):
    """Largest number of input frames any output frame (away from the edges) depends on.

    With all weights positive and biases zero, a delta input at frame j makes output i positive
    exactly when j is connected to i (ReLU, max-pool and tanh keep positive values positive).
    """
    model.eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(0.0 if name.endswith("bias") else 0.01)
        x = torch.zeros(T, T, D)
        idx = torch.arange(T)
        x[idx, idx, :] = 1.0
        y = model(x, torch.full((T,), T))[..., 0]  # y[j, i]: output i for a delta at input j
    spans = []
    for i in range(T // 3, 2 * T // 3):
        js = torch.nonzero(y[:, i] > 0).flatten()
        spans.append(int(js.max() - js.min() + 1))
        assert len(js) == spans[-1]  # contiguous
    return max(spans)


@pytest.mark.parametrize("model, T", [
    (DilatedCNN(3, 1, num_layers=5), 200),
    (DilatedCNN(3, 1, num_layers=4, kernel_size=5), 200),
    (DownUpCNN(3, 1, width=4), 81 * 14),
    (DownUpCNN(3, 1, width=4, levels=2, kernel_size=3, up_kernel=5), 81 * 3),
])
def test_receptive_field_matches_connectivity(model, T):
    assert connectivity_span(model, T) == model.receptive_field()


@pytest.mark.parametrize("L", [1, 2, 7, 8, 64, 300])
def test_single_filter_fft_equals_direct_convolution(L):
    """The FFT path computes the centred convolution (L-1)//2 frames back, the rest ahead."""
    torch.manual_seed(L)
    m = SingleFilter(5, 2, filter_length=L)
    x = torch.randn(2, 120, 5)
    left = (L - 1) // 2
    direct = m.conv(torch.nn.functional.pad(x.transpose(1, 2), (left, L - 1 - left)))[:, 0]
    assert torch.allclose(m.filter_response(x.transpose(1, 2)), direct, atol=1e-5)
    assert m.receptive_field() == L
    # an impulse at frame j reaches exactly the outputs within the filter's span
    with torch.no_grad():
        m.conv.weight.fill_(1.0)
        m.conv.bias.zero_()
    T, j = 2 * L + 60, L + 30
    x = torch.zeros(1, 5, T)
    x[0, :, j] = 1.0
    hit = torch.nonzero(m.filter_response(x)[0].abs() > 1e-3).flatten()
    assert hit.min().item() == j - (L - 1 - left) and hit.max().item() == j + left


def test_paper_sizes_and_receptive_fields():
    assert DilatedCNN(160, 1).receptive_field() == 2047
    assert len(DilatedCNN(160, 1).convs) == 10
    assert DownUpCNN(160, 1).receptive_field() == 727
    n32 = sum(p.numel() for p in DownUpCNN(160, 1, width=32).parameters())
    n128 = sum(p.numel() for p in DownUpCNN(160, 1, width=128).parameters())
    assert 60_000 < n32 < 90_000 and 800_000 < n128 < 1_000_000
    assert BLSTMRegressor(160, 1).receptive_field() is None


def test_bad_parameters():
    with pytest.raises(ValueError):
        DilatedCNN(3, 1, kernel_size=2)
    with pytest.raises(ValueError):
        DownUpCNN(3, 1, factor=3, up_kernel=4)
    with pytest.raises(ValueError):
        SingleFilter(3, 1, filter_length=0)
