"""scikit-learn classifiers on utterance-level vectors: linear, polynomial and RBF SVMs, logistic regression.

The SVM baselines of paper 002 (sections 4.1, 6.1, Table 3): openSMILE functionals, speaker
standardization (done by the data layer), class weighting, scikit-learn SVMs with linear, polynomial
and RBF kernels.  A numpy-in / numpy-out layer: ``X`` is ``[N, D]`` float, ``y`` holds class indices
``0 .. K-1`` in the order of the head's class list.

- Every model is ``Pipeline(StandardScaler, estimator)``; ``class_weight='balanced'`` when the
  head's ``class_weights`` is true (weights from the training classes).
- Hyper-parameters: ``fit_select`` fits every point of the grid (the cartesian product of the
  ``train.grid`` lists, in config order: the first key varies slowest) on train, scores UA on valid
  only and keeps the best; ties go to the first point in grid order.  It never sees a test set.
- Posteriors: logistic regression gives its own (multinomial softmax) probabilities.  An SVM's
  decision values are calibrated by Platt scaling: ``CalibratedClassifierCV(SVC, method='sigmoid',
  ensemble=False)`` (what scikit-learn 1.9 recommends instead of the deprecated
  ``SVC(probability=True)``): the SVC's decision values are predicted by ``min(5, smallest class
  count)``-fold cross-validation on the training set (unshuffled stratified folds in data order;
  the trainer's data are sorted by utterance id, i.e. grouped by speaker), one sigmoid per class
  (one-vs-rest) is fitted to them and the outputs are normalized to sum to 1; the SVC used for
  prediction is then fitted on the whole training set.  A class absent from train gets a zeros column.
- The predicted label is the argmax posterior everywhere (selection on valid, predictions, scores),
  never ``SVC.predict``'s one-vs-one vote, so the label written always matches the posteriors.
- Every fit is deterministic: calibration folds are unshuffled and ``seed`` is passed as
  ``random_state`` to the estimators that would use one.  Fitting runs with one BLAS thread: libsvm
  is single-threaded and the calibration fits two parameters per class, where BLAS threads only
  spin (on a shared 2-core machine they made the sigmoid fits 7x slower than the SVMs themselves).
- Saved with ``skops.io`` (no pickle): a model dir holds ``model.skops`` and ``model.yaml``; loading
  refuses any type outside ``TRUSTED_TYPES``, listed here, not skops' broader defaults.
"""

from __future__ import annotations

import itertools
import json
import numbers
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from emotk.errors import EmotkError
from emotk.fileio import atomic_dir
from emotk.metrics.classification import ua
from emotk.models import register

MODEL_FILE = "model.skops"
META_FILE = "model.yaml"
CALIBRATION_FOLDS = 5

# Every type a saved pipeline of this module contains (skops schema ``module.class``); nothing else loads.
TRUSTED_TYPES = (
    "builtins.dict",
    "builtins.list",
    "builtins.str",
    "builtins.tuple",
    "numpy.float64",
    "numpy.ndarray",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.svm._classes.SVC",
)


# ---------------------------------------------------------------------------------------------
# Settings: name -> checker returning the value or raising with what is wrong.


def _number(v, positive: bool = True):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v) or (positive and v <= 0):
        raise ValueError(f"{v!r} is not a {'positive ' if positive else ''}number")
    return float(v)


def _gamma(v):
    if v in ("scale", "auto"):
        return v
    try:
        return _number(v)
    except ValueError:
        raise ValueError(f"{v!r} is neither 'scale', 'auto' nor a positive number") from None


def _int(minimum: int):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
            raise ValueError(f"{v!r} is not an integer >= {minimum}")
        return int(v)

    return check


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError(f"{v!r} is not true or false")
    return v


_SVC_SETTINGS = {"C": _number, "tol": _number, "cache_size": _number, "shrinking": _bool, "max_iter": _int(-1)}


class SklearnModel:
    """A registered scikit-learn classifier: its settings, which of them a grid may tune, its estimator.

    The model reads exactly one input of kind ``vector`` (whatever the config names it) and
    predicts one ``class`` head.
    """

    framework = "sklearn"
    input_kinds = ("vector",)
    head_kinds = ("class",)
    output_kind = "utterance"
    settings: dict = {}  # key -> checker; the keys model.params may set
    tunable: tuple = ()  # the keys train.grid may list
    defaults: dict = {}

    @classmethod
    def estimator(cls, settings: dict, class_weight, seed: int, folds: int):
        raise NotImplementedError


class _SVM(SklearnModel):
    kernel = ""

    @classmethod
    def estimator(cls, settings, class_weight, seed, folds):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        svc = SVC(kernel=cls.kernel, class_weight=class_weight, random_state=seed, **settings)
        return CalibratedClassifierCV(svc, method="sigmoid", cv=folds, ensemble=False)


@register("svm_linear")
class SVMLinear(_SVM):
    kernel = "linear"
    settings = dict(_SVC_SETTINGS)
    tunable = ("C",)


@register("svm_rbf")
class SVMRBF(_SVM):
    kernel = "rbf"
    settings = {**_SVC_SETTINGS, "gamma": _gamma}
    tunable = ("C", "gamma")


@register("svm_poly")
class SVMPoly(_SVM):
    kernel = "poly"
    settings = {**_SVC_SETTINGS, "gamma": _gamma, "degree": _int(1), "coef0": lambda v: _number(v, positive=False)}
    tunable = ("C", "gamma", "degree", "coef0")


@register("logreg")
class LogReg(SklearnModel):
    settings = {"C": _number, "tol": _number, "max_iter": _int(1)}
    tunable = ("C",)
    defaults = {"max_iter": 1000}

    @classmethod
    def estimator(cls, settings, class_weight, seed, folds):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(class_weight=class_weight, random_state=seed, **settings)


def model_class(name: str) -> type[SklearnModel]:
    from emotk.models import get_model_class

    cls = get_model_class(name)
    if getattr(cls, "framework", None) != "sklearn":
        raise EmotkError(f"model {name!r} is not a scikit-learn model")
    return cls


def check_config(name: str, params: dict | None, grid: dict | None) -> list[dict]:
    """Check ``model.params`` and ``train.grid`` of model ``name``; return the grid points
    (each a full settings dict: defaults, params, the point), in grid order."""
    cls = model_class(name)
    params, grid = dict(params or {}), dict(grid or {})
    fixed = dict(cls.defaults)
    for key, value in params.items():
        if key not in cls.settings:
            raise EmotkError(f"model {name}: model.params.{key}: unknown setting (known: {', '.join(cls.settings)})")
        fixed[key] = _checked(cls, f"model.params.{key}", key, value)
    axes = []
    for key, values in grid.items():
        if key not in cls.tunable:
            raise EmotkError(f"model {name}: train.grid.{key}: not a grid key of {name} "
                             f"(grid keys: {', '.join(cls.tunable)})")
        if key in params:
            raise EmotkError(f"model {name}: {key} is set in both model.params and train.grid")
        if not isinstance(values, list) or not values:
            raise EmotkError(f"model {name}: train.grid.{key} must be a non-empty list, got {values!r}")
        axes.append([(key, _checked(cls, f"train.grid.{key}", key, v)) for v in values])
    return [{**fixed, **dict(point)} for point in itertools.product(*axes)]


def _checked(cls, option: str, key: str, value):
    try:
        return cls.settings[key](value)
    except ValueError as e:
        raise EmotkError(f"model {cls.registry_name}: {option}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Fitting, selection, posteriors.


@dataclass
class Fitted:
    """A trained model: registry name, the estimator settings it was fitted with, K, the pipeline."""

    name: str
    settings: dict
    n_classes: int
    pipeline: Any


def _check_xy(what: str, X, y, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) == 0:
        raise EmotkError(f"{what}: expected a non-empty [N, D] matrix, got shape {X.shape}")
    if y.shape != (len(X),) or not np.issubdtype(y.dtype, np.integer):
        raise EmotkError(f"{what}: expected {len(X)} integer class indices, got {y.dtype} of shape {y.shape}")
    out = y[(y < 0) | (y >= n_classes)]
    if len(out):
        raise EmotkError(f"{what}: class index {int(out[0])} outside 0..{n_classes - 1}")
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if len(bad):
        raise EmotkError(f"{what}: row {int(bad[0])} has a non-finite value")
    return X, y.astype(np.int64)


def fit(name: str, settings: dict, X, y, n_classes: int, class_weights: bool, seed: int,
        class_names: Sequence[str] | None = None) -> Fitted:
    """Fit ``Pipeline(StandardScaler, estimator)`` with full ``settings`` (a point of ``check_config``)."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    cls = model_class(name)
    X, y = _check_xy("train", X, y, n_classes)
    present, counts = np.unique(y, return_counts=True)
    label = (lambda i: class_names[i]) if class_names is not None else (lambda i: f"class index {i}")
    if len(present) < 2:
        raise EmotkError(f"model {name}: the training set holds one class only ({label(int(present[0]))})")
    folds = min(CALIBRATION_FOLDS, int(counts.min()))
    if issubclass(cls, _SVM) and folds < 2:
        raise EmotkError(f"model {name}: {label(int(present[counts.argmin()]))} has 1 training utterance; "
                         "SVM posterior calibration needs at least 2 per class")
    pipeline = Pipeline([
        ("scaler", StandardScaler()),
        ("clf", cls.estimator(settings, "balanced" if class_weights else None, seed, folds)),
    ])
    with threadpool_limits(limits=1, user_api="blas"):
        pipeline.fit(X, y)
    return Fitted(name, dict(settings), n_classes, pipeline)


def predict_proba(fitted: Fitted, X) -> np.ndarray:
    """Posteriors ``[N, K]`` in class-index order (zeros for classes absent from train)."""
    X = np.asarray(X, dtype=np.float64)
    dim = fitted.pipeline.n_features_in_
    if X.ndim != 2 or X.shape[1] != dim:
        raise EmotkError(f"model {fitted.name} takes {dim}-dimensional vectors, got shape {X.shape}")
    out = np.zeros((len(X), fitted.n_classes))
    out[:, fitted.pipeline.classes_] = fitted.pipeline.predict_proba(X)
    return out


def predict(fitted: Fitted, X) -> np.ndarray:
    """Class indices: the argmax posterior (the label rule everywhere, selection included)."""
    return predict_proba(fitted, X).argmax(axis=1)


def fit_select(name: str, params: dict | None, grid: dict | None, X_train, y_train, X_valid, y_valid,
               n_classes: int, class_weights: bool, seed: int,
               class_names: Sequence[str] | None = None) -> tuple[Fitted, dict]:
    """Fit every grid point on train, keep the one with the best UA on valid (first on ties).

    Returns the model fitted on train with the chosen settings and the record
    ``{"grid": [{"params": point, "valid_ua": ua}, ...], "best": point, "best_valid_ua": ua}``
    (``point`` holds the grid keys only; plain Python types, ready for YAML).
    """
    points = check_config(name, params, grid)
    keys = list((grid or {}).keys())
    X_valid, y_valid = _check_xy("valid", X_valid, y_valid, n_classes)
    best, best_ua, record = None, -1.0, []
    for settings in points:
        model = fit(name, settings, X_train, y_train, n_classes, class_weights, seed, class_names)
        score = ua(y_valid, predict(model, X_valid), range(n_classes))
        record.append({"params": {k: settings[k] for k in keys}, "valid_ua": score})
        if score > best_ua:
            best, best_ua = model, score
    return best, {"grid": record, "best": {k: best.settings[k] for k in keys}, "best_valid_ua": best_ua}


# ---------------------------------------------------------------------------------------------
# Save / load without pickle.


def save_model(fitted: Fitted, out_dir: str | Path) -> None:
    """Write ``out_dir/{model.skops,model.yaml}``, built under a temporary name and renamed."""
    import sklearn
    import skops
    import skops.io

    meta = {"model": fitted.name, "n_classes": fitted.n_classes, "settings": fitted.settings,
            "sklearn": sklearn.__version__, "skops": skops.__version__}
    with atomic_dir(out_dir) as tmp:
        skops.io.dump(fitted.pipeline, tmp / MODEL_FILE)
        (tmp / META_FILE).write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")


def file_types(path: Path) -> set[str]:
    """Every ``module.class`` named in a skops file's schema (objects, containers, functions, types)."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if "__module__" in node and "__class__" in node:
                found.add(f"{node['__module__']}.{node['__class__']}")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    try:
        with zipfile.ZipFile(path) as z:
            walk(json.loads(z.read("schema.json")))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise EmotkError(f"{path}: not a skops model file ({e})") from None
    return found


def load_model(model_dir: str | Path) -> Fitted:
    """Load a model dir written by ``save_model``; any type outside ``TRUSTED_TYPES`` is refused."""
    import skops.io

    model_dir = Path(model_dir)
    path, meta_path = model_dir / MODEL_FILE, model_dir / META_FILE
    for p in (path, meta_path):
        if not p.is_file():
            raise EmotkError(f"{p}: missing (not a scikit-learn model dir)")
    meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
    if not isinstance(meta, dict) or not {"model", "n_classes", "settings"} <= set(meta):
        raise EmotkError(f"{meta_path}: expected keys model, n_classes, settings")
    # Our own audit of the whole schema, then skops' audit: both must find only listed types.
    foreign = sorted((file_types(path) | set(skops.io.get_untrusted_types(file=path))) - set(TRUSTED_TYPES))
    if foreign:
        raise EmotkError(f"{path}: refusing to load type {foreign[0]} (not a type of emotk's scikit-learn models)")
    pipeline = skops.io.load(path, trusted=list(TRUSTED_TYPES))
    model_class(meta["model"])
    return Fitted(meta["model"], meta["settings"], int(meta["n_classes"]), pipeline)
