"""Model registry: ``name -> class``, built from the config's ``model`` section, inputs and heads.

Two kinds of torch model are registered:

- **simple** models read one input and return one tensor: ``cls(input_dim, output_dim, **params)``
  and ``forward(x [B, T, D], lengths [B]) -> [B, K]`` (``output_kind = "utterance"``) or
  ``[B, T, K]`` (``output_kind = "frame"``), padded frames masked out; ``input_kinds`` lists the
  input kinds they accept. The trainer wraps them (``emotk.models.adapters``): their K outputs are the
  concatenation of the heads' outputs, in the config's order.
- **native** models (``native = True``) read several inputs and/or have heads of their own:
  ``cls(inputs: {name: (kind, dim)}, heads: {name: (kind, dim)}, **params)`` and
  ``forward(inputs: {name: Tensor}, lengths: {name: Tensor}) -> {head: Tensor}`` or
  ``({head: Tensor}, {aux_loss_name: scalar Tensor})`` (auxiliary losses such as a VAE's KL term,
  which the trainer adds with ``train.aux_weights``). A native model with ``needs_targets = True``
  (a CVAE) also gets ``targets={head: Tensor}``, in training mode only.

scikit-learn models (``framework = "sklearn"``) are registered alike and trained by the same
``emotk train`` (``emotk.training.sklearn_fit``).

Layer sizes default to the paper the model comes from. Model modules are imported lazily (torch
is heavy): list each in ``MODEL_MODULES``.
"""

from __future__ import annotations

import importlib
import inspect

from emotk.errors import EmotkError

# module path -> imported on first use; each module calls ``register``.
MODEL_MODULES = [
    "emotk.models.cnn_lstm",
    "emotk.models.ldnn",
    "emotk.models.cldnn",
    "emotk.models.temporal_cnn",
    "emotk.models.blstm_regressor",
    "emotk.models.sklearn_models",
    "emotk.models.split_mlp",
    "emotk.models.vae",
]

_REGISTRY: dict[str, type] = {}
# Output granularity a head kind needs from a model.
GRANULARITY = {"class": "utterance", "regression": "utterance", "frame_regression": "frame"}


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


def framework(name: str) -> str:
    return getattr(get_model_class(name), "framework", "torch")


def _construct(name: str, *args, **params):
    cls = get_model_class(name)
    try:
        return cls(*args, **params)
    except TypeError as e:
        raise EmotkError(f"model {name!r}: bad parameter: {e}") from None
    except ValueError as e:  # a model's own parameter checks
        raise EmotkError(f"model {name!r}: {e}".splitlines()[0]) from None


def build_model(name: str, input_dim: int, output_dim: int, **params):
    """A simple model's network (one input, one output tensor)."""
    return _construct(name, input_dim=input_dim, output_dim=output_dim, **params)


def build_for_config(model: dict, inputs: dict[str, tuple[str, int]], heads: dict[str, tuple[str, int]]):
    """The torch module the trainer drives: ``forward(inputs, lengths) -> ({head: out}, {aux: loss})``."""
    from emotk.models.adapters import HeadsAdapter, NativeAdapter

    cls = get_model_class(model["name"])
    if getattr(cls, "native", False):
        return NativeAdapter(_construct(model["name"], inputs=inputs, heads=heads, **model["params"]))
    (name, (kind, dim)), = inputs.items()
    net = build_model(model["name"], dim, sum(d for _, d in heads.values()), **model["params"])
    return HeadsAdapter(net, name, {h: d for h, (_, d) in heads.items()})


def check_model(model: dict, inputs: dict[str, str], heads: dict[str, str]) -> None:
    """Fail before loading any data: unknown model or parameter, inputs or heads the model cannot serve.

    ``inputs``: input name -> kind; ``heads``: head name -> kind.
    """
    name, params = model["name"], model["params"]
    cls = get_model_class(name)
    if getattr(cls, "framework", "torch") == "sklearn":
        if len(inputs) != 1 or next(iter(inputs.values())) != "vector" or list(heads.values()) != ["class"]:
            raise EmotkError(f"model {name!r} (scikit-learn) needs one vector input and one class head; the config "
                             f"has inputs {inputs} and heads {heads}")
    elif not getattr(cls, "native", False):
        if len(inputs) != 1:
            raise EmotkError(f"model {name!r} reads one input; the config has {len(inputs)} ({', '.join(inputs)})")
        kind = next(iter(inputs.values()))
        if kind not in getattr(cls, "input_kinds", ("feats",)):
            raise EmotkError(f"model {name!r} reads {' or '.join(cls.input_kinds)} inputs, the config gives {kind!r}")
        for head, hkind in heads.items():
            if GRANULARITY[hkind] != cls.output_kind:
                raise EmotkError(f"model {name!r} produces {cls.output_kind}-level outputs, but head {head!r} is "
                                 f"{hkind!r}")
    sig = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in sig.values()):
        reserved = {"self", "input_dim", "output_dim", "inputs", "heads"}
        unknown = sorted((set(params) - set(sig)) | (set(params) & reserved))
        if unknown:
            known = ", ".join(k for k in sig if k not in reserved)
            raise EmotkError(f"model {name!r}: unknown parameter {unknown[0]!r} in model.params (known: {known})")


def list_models() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)

