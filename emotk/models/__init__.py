"""Model registry: ``name -> nn.Module class``, built from a config section.

Every model declares

- ``input_kind``: the features it reads (``fbank``, ``mfcc``, ``raw``, ``opensmile``);
- ``output_kind``: ``class`` (utterance logits ``[B, K]``) or ``frame_regression``
  (per-frame outputs ``[B, T, K]``);

and implements ``forward(x: [B, T, D] float, lengths: [B] long) -> Tensor`` with
padded frames masked out, so the trainer needs no per-model special cases.
Constructors take ``input_dim`` and ``output_dim`` plus the model's own keyword
parameters, whose defaults are the sizes of the paper the model comes from.

Model modules are imported lazily (torch is heavy): list each in ``MODEL_MODULES``.
"""

from __future__ import annotations

import importlib

from emotk.errors import EmotkError

# module path -> imported on first use; each module calls ``register``.
MODEL_MODULES = [
    "emotk.models.cnn_lstm",
    "emotk.models.ldnn",
    "emotk.models.temporal_cnn",
    "emotk.models.blstm_regressor",
    "emotk.models.sklearn_models",
]

_REGISTRY: dict[str, type] = {}


def register(name: str):
    def deco(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RuntimeError(f"model name {name!r} registered twice")
        cls.registry_name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_all() -> None:
    for mod in MODEL_MODULES:
        importlib.import_module(mod)


def get_model_class(name: str) -> type:
    _load_all()
    if name not in _REGISTRY:
        raise EmotkError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_model(name: str, input_dim: int, output_dim: int, **params):
    cls = get_model_class(name)
    try:
        return cls(input_dim=input_dim, output_dim=output_dim, **params)
    except TypeError as e:
        raise EmotkError(f"model {name!r}: bad parameter: {e}") from None


def list_models() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)
