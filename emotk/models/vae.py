"""AE, VAE and CVAE feature learners, each followed by an LSTM classifier (Latif, Rana et al. 2018,
paper 001, sections 3-4).

Input: 80-bin log-mel with 10 frames stacked (``inputs.feats.stack: 10``), so each step is one
100 ms segment of 800 values (section 4.3). Per segment, an encoder of 512 and 256 units (ReLU)
gives the latent: a point (AE, "the Gaussian layer replaced with a fully connected layer") or
a diagonal Gaussian ``N(mu, sigma^2)`` sampled by the reparameterization trick
``z = mu + eps * sigma``, ``eps ~ N(0, I)`` (VAE). A mirrored decoder reconstructs the segment
from ``z``. A 2-layer LSTM (tanh) reads the sequence of latent means of the utterance; its last
valid state goes through a dense layer to each head ("hidden states of the second LSTM layer
were connected to the dense layer ... fed into the softmax layer").

``forward`` returns ``({head: logits}, {"recon": ..., "kl": ...})``: the squared reconstruction
error summed over the 800 values and KL[q(z|x) || N(0, I)] summed over the latent dimensions,
both averaged over the valid segments of the batch (the negative ELBO of eq. 2, split so that
``train.aux_weights`` can weigh the two). The AE has no KL term.

The paper learns the features first and trains the LSTM on them afterwards. Here both are trained
together; with ``detach: true`` (default) the classifier's loss does not reach the encoder, which
is the paper's two-stage setup run in one pass (the features are learned by reconstruction only).
``detach: false`` fine-tunes the encoder for the task as well.

Sizes not given by the paper (LSTM cells, dense units, activations) are marked in the defaults.

CVAE. The paper "concatenate[s] the speech frame representation ... with its emotion class label
(c) and pass[es] this into the encoder" and says nothing about test time, where the label is
unknown (features computed with the test labels would leak them into the classifier). Here:

- the encoder reads ``[x, c]``; ``c`` is the one-hot label of the ``condition`` head during
  training, replaced by the zero vector ("label unknown") for a random ``label_dropout`` fraction of
  the utterances, so the encoder learns q(z | x, c) and q(z | x, unknown);
- the reconstruction and KL losses use the conditioned posterior (the label shapes the features);
- the classifier always reads the latent means computed with ``c = 0``, in training as at test
  time, so it never sees the label and is trained on the features it gets at inference;
- the model sets ``needs_targets = True``: the trainer passes the batch's targets to ``forward``
  in training mode only; in eval mode ``targets`` is ignored (outputs do not depend on it).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from emotk.errors import EmotkError
from emotk.models import register
from emotk.models.layers import MaskedLSTM, length_mask


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL[N(mu, exp(logvar)) || N(0, I)] summed over the last dimension (closed form)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``z = mu + eps * sigma`` with ``eps ~ N(0, I)``: differentiable in ``mu`` and ``logvar``."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def _positive_ints(name: str, values) -> list[int]:
    values = [values] if isinstance(values, int) else list(values)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise EmotkError(f"{name} must be positive integers, got {values!r}")
    return values


class _AutoencoderLstm(nn.Module):
    native = True
    variational = False
    conditional = False

    def __init__(self, inputs: dict[str, tuple[str, int]], heads: dict[str, tuple[str, int]],
                 hidden: Sequence[int] = (512, 256), latent: int = 128,
                 lstm_size: int = 128,  # not given by the paper
                 lstm_layers: int = 2, dense: int = 64,  # dense units: not given by the paper
                 features: str = "mean", detach: bool = True, condition: str | None = None,
                 label_dropout: float = 0.5):
        super().__init__()
        name = self.registry_name
        feats = [n for n, (kind, _) in inputs.items() if kind == "feats"]
        if len(inputs) != 1 or len(feats) != 1:
            raise EmotkError(f"{name}: reads one feats input (stacked log-mel segments), the config has "
                             f"{', '.join(f'{n} ({k})' for n, (k, _) in inputs.items())}")
        for h, (kind, _) in heads.items():
            if kind == "frame_regression":
                raise EmotkError(f"{name}: head {h!r} is frame_regression; this model gives utterance-level outputs")
        hidden = _positive_ints(f"{name}: hidden", hidden)
        latent, lstm_size, lstm_layers, dense = (_positive_ints(f"{name}: {k}", v)[0] for k, v in
                                                 (("latent", latent), ("lstm_size", lstm_size),
                                                  ("lstm_layers", lstm_layers), ("dense", dense)))
        if features not in ("mean", "mean_var"):
            raise EmotkError(f"{name}: features must be mean or mean_var, got {features!r}")
        if features == "mean_var" and not self.variational:
            raise EmotkError(f"{name}: features: mean_var needs a variational model (vae_lstm, cvae_lstm)")
        if not isinstance(detach, bool):
            raise EmotkError(f"{name}: detach must be true or false, got {detach!r}")
        self.input_name = feats[0]
        dim = inputs[self.input_name][1]
        self.n_cond = 0
        if self.conditional:
            class_heads = [h for h, (kind, _) in heads.items() if kind == "class"]
            condition = condition if condition is not None else (class_heads[0] if class_heads else None)
            if condition not in class_heads:
                raise EmotkError(f"{name}: condition must name a class head ({', '.join(class_heads) or 'none'}), "
                                 f"got {condition!r}")
            if not isinstance(label_dropout, (int, float)) or not 0 < label_dropout < 1:
                raise EmotkError(f"{name}: label_dropout must be in (0, 1), got {label_dropout!r}")
            self.n_cond = heads[condition][1]
        elif condition is not None:
            raise EmotkError(f"{name}: condition is for cvae_lstm only")
        self.condition, self.label_dropout = condition, float(label_dropout)
        self.features, self.detach = features, detach
        self.encoder = nn.Sequential(_mlp([dim + self.n_cond, *hidden]), nn.ReLU())
        self.to_latent = nn.Linear(hidden[-1], latent * (2 if self.variational else 1))
        self.decoder = _mlp([latent, *reversed(hidden), dim])
        self.lstm = MaskedLSTM(latent * (2 if features == "mean_var" else 1), lstm_size, num_layers=lstm_layers)
        self.dense = nn.Sequential(nn.Linear(lstm_size, dense), nn.ReLU())
        self.out = nn.ModuleDict({h: nn.Linear(dense, d) for h, (_, d) in heads.items()})

    def encode(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[..., D]`` (and the condition ``[..., K]``) -> latent means and log-variances (None for the AE)."""
        if self.n_cond:
            x = torch.cat([x, cond], dim=-1)
        h = self.to_latent(self.encoder(x))
        return h.chunk(2, dim=-1) if self.variational else (h, None)

    def forward(self, inputs: dict[str, torch.Tensor], lengths: dict[str, torch.Tensor],
                targets: dict[str, torch.Tensor] | None = None):
        x, n = inputs[self.input_name], lengths[self.input_name].to(inputs[self.input_name].device)
        valid = length_mask(n, x.shape[1])
        unknown = x.new_zeros(x.shape[:-1] + (self.n_cond,)) if self.n_cond else None
        mu, logvar = self.encode(x, unknown)
        if self.n_cond and self.training:
            mu_c, logvar_c = self.encode(x, self._condition(targets, x))
        else:
            mu_c, logvar_c = mu, logvar
        z = reparameterize(mu_c, logvar_c) if self.variational and self.training else mu_c
        recon = (self.decoder(z) - x).pow(2).sum(-1)
        count = valid.sum().clamp(min=1)
        aux = {"recon": recon.masked_select(valid).sum() / count}
        if self.variational:
            aux["kl"] = gaussian_kl(mu_c, logvar_c).masked_select(valid).sum() / count
        feats = mu if self.features == "mean" else torch.cat([mu, logvar.exp()], dim=-1)
        if self.detach:
            feats = feats.detach()
        _, last = self.lstm(feats, n)
        h = self.dense(last)
        return {name: lin(h) for name, lin in self.out.items()}, aux

    def _condition(self, targets: dict[str, torch.Tensor] | None, x: torch.Tensor) -> torch.Tensor:
        """One-hot labels per segment ``[B, T, K]``, zero for a random ``label_dropout`` share of utterances."""
        if targets is None or self.condition not in targets:
            raise EmotkError(f"{self.registry_name}: training needs the labels of head {self.condition!r}; the trainer "
                             f"must pass targets to models with needs_targets = True")
        y = targets[self.condition].to(x.device)
        c = nn.functional.one_hot(y, self.n_cond).to(x.dtype)
        keep = (torch.rand(y.shape[0], 1, device=x.device) >= self.label_dropout).to(x.dtype)
        return (c * keep)[:, None, :].expand(-1, x.shape[1], -1)


@register("ae_lstm")
class AeLstm(_AutoencoderLstm):
    """Autoencoder features (a fully connected latent layer) + 2-layer LSTM; auxiliary loss ``recon``."""


@register("vae_lstm")
class VaeLstm(_AutoencoderLstm):
    """VAE features (latent means) + 2-layer LSTM; auxiliary losses ``recon`` and ``kl``."""

    variational = True


@register("cvae_lstm")
class CvaeLstm(_AutoencoderLstm):
    """Conditional VAE (the encoder reads the label in training only, see the module docstring) + LSTM."""

    variational = True
    conditional = True
    needs_targets = True
