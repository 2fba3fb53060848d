"""scikit-learn models: valid-only selection, posteriors, pickle-free save/load, config errors.

References: scikit-learn pipelines built here directly, ``balanced_accuracy_score`` for UA.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import skops.io
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC

from emotk.errors import EmotkError
from emotk.models import get_model_class, list_models
from emotk.models import sklearn_models as sm

MODELS = {
    "svm_linear": {"C": [0.01, 1.0]},
    "svm_rbf": {"C": [0.1, 10.0], "gamma": ["scale", 0.01]},
    "svm_poly": {"C": [0.1, 1.0], "degree": [2, 3], "coef0": [1.0]},
    "logreg": {"C": [0.01, 1.0]},
}


def blobs(n: int, k: int = 4, d: int = 6, seed: int = 0, spread: float = 1.5):
    """Gaussian classes around fixed means (the means depend on k and d only)."""
    means = np.random.default_rng(1000 + k * d).normal(size=(k, d)) * 2
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return means[y] + rng.normal(scale=spread, size=(n, d)), y


def reference(settings: dict, kernel: str | None, X, y, class_weight="balanced", folds=5):
    """The same model built with scikit-learn directly."""
    if kernel is None:
        est = LogisticRegression(class_weight=class_weight, random_state=0, **settings)
    else:
        est = CalibratedClassifierCV(SVC(kernel=kernel, class_weight=class_weight, **settings),
                                     method="sigmoid", cv=folds, ensemble=False)
    return Pipeline([("s", StandardScaler()), ("c", est)]).fit(X, y)


def two_feature_toy(n: int, a_sign: int, b_sign: int, rng):
    """Feature a separates the classes with a small margin, b with a large one; ``*_sign = -1``
    makes that feature point to the wrong class."""
    y = np.repeat([0, 1], n)
    s = 2 * y - 1
    a = a_sign * s * rng.uniform(0.05, 3.0, 2 * n)
    b = b_sign * s + rng.normal(scale=0.05, size=2 * n)
    return np.c_[a, b], y


def test_registered():
    for name in MODELS:
        assert name in list_models()
        cls = get_model_class(name)
        assert cls.framework == "sklearn" and cls.input_kinds == ("vector",) and cls.head_kinds == ("class",)


def test_selection_uses_valid_only(monkeypatch):
    # Train: a always right, b right except 8 of 80 points.  A small C prefers b's large margin,
    # a large C separates the training set with a.  Valid rewards b, test rewards a.
    rng = np.random.default_rng(0)
    X, y = two_feature_toy(40, 1, 1, rng)
    X[rng.choice(len(y), 8, replace=False), 1] *= -1
    Xv, yv = two_feature_toy(20, -1, 1, rng)
    Xt, yt = two_feature_toy(20, 1, -1, rng)
    grid = [0.01, 1000.0]

    def ref_ua(C, Xe, ye):
        return balanced_accuracy_score(ye, reference({"C": C}, "linear", X, y).predict_proba(Xe).argmax(1))

    valid_best = max(grid, key=lambda C: ref_ua(C, Xv, yv))
    test_best = max(grid, key=lambda C: ref_ua(C, Xt, yt))
    assert valid_best != test_best  # the data make test-set selection pick the other C

    seen = []
    for method in ("fit", "predict_proba"):
        orig = getattr(Pipeline, method)

        def spy(self, X_, *a, _orig=orig, **kw):
            seen.append(np.asarray(X_))
            return _orig(self, X_, *a, **kw)

        monkeypatch.setattr(Pipeline, method, spy)
    model, sel = sm.fit_select("svm_linear", {}, {"C": grid}, X, y, Xv, yv, 2, True, 0)
    monkeypatch.undo()

    assert sel["best"] == {"C": valid_best} and model.settings["C"] == valid_best
    assert [r["valid_ua"] for r in sel["grid"]] == pytest.approx([ref_ua(C, Xv, yv) for C in grid])
    test_rows = {tuple(r) for r in Xt}
    assert seen and not any(tuple(r) in test_rows for arr in seen for r in arr)


@pytest.mark.parametrize("name", MODELS)
def test_posteriors_sum_to_one_and_label_is_argmax(name):
    X, y = blobs(120)
    Xv, yv = blobs(40, seed=1)
    model, sel = sm.fit_select(name, {}, MODELS[name], X, y, Xv, yv, 4, True, 0)
    p = sm.predict_proba(model, Xv)
    assert p.shape == (40, 4) and (p >= 0).all()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)
    assert np.array_equal(sm.predict(model, Xv), p.argmax(1))
    assert sel["best_valid_ua"] == pytest.approx(balanced_accuracy_score(yv, p.argmax(1)))
    assert sel["best_valid_ua"] == max(r["valid_ua"] for r in sel["grid"])
    assert len(sel["grid"]) == int(np.prod([len(v) for v in MODELS[name].values()]))
    assert sel["best_valid_ua"] > 0.5  # chance is 0.25


def test_class_absent_from_train_gets_a_zero_column():
    X, y = blobs(120)
    keep = y != 2
    model = sm.fit("svm_rbf", {"C": 1.0}, X[keep], y[keep], 4, True, 0)
    p = sm.predict_proba(model, blobs(20, seed=3)[0])
    assert (p[:, 2] == 0).all()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip(name, tmp_path):
    X, y = blobs(80)
    Xv, yv = blobs(30, seed=1)
    model, _ = sm.fit_select(name, {}, MODELS[name], X, y, Xv, yv, 4, True, 0)
    sm.save_model(model, tmp_path / "model")
    assert sorted(os.listdir(tmp_path)) == ["model"]  # built under a temporary name, renamed
    back = sm.load_model(tmp_path / "model")
    assert (back.name, back.settings, back.n_classes) == (model.name, model.settings, model.n_classes)
    assert np.array_equal(sm.predict_proba(back, Xv), sm.predict_proba(model, Xv))


@pytest.mark.parametrize("foreign", [
    Pipeline([("s", StandardScaler()), ("f", FunctionTransformer(func=os.system))]),
    # trusted by skops' defaults, but not one of emotk's pipelines
    Pipeline([("s", StandardScaler()), ("f", FunctionTransformer())]),
])
def test_foreign_type_refused(foreign, tmp_path):
    X, y = blobs(40)
    sm.save_model(sm.fit("logreg", {}, X, y, 4, True, 0), tmp_path / "model")
    path = tmp_path / "model" / sm.MODEL_FILE
    skops.io.dump(foreign.fit(X), path)  # planted: same name, other content
    with pytest.raises(EmotkError) as e:
        sm.load_model(tmp_path / "model")
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    assert ("FunctionTransformer" in msg) or (f"{os.system.__module__}.system" in msg)


@pytest.mark.parametrize("name,kernel", [("svm_rbf", "rbf"), ("svm_poly", "poly"), ("logreg", None)])
def test_equals_direct_sklearn_fit(name, kernel):
    X, y = blobs(100, k=3)
    Xv, yv = blobs(40, k=3, seed=1)
    model, sel = sm.fit_select(name, {}, MODELS[name], X, y, Xv, yv, 3, True, 0)
    settings = dict(model.settings)
    ref = reference(settings, kernel, X, y)
    np.testing.assert_allclose(sm.predict_proba(model, Xv), ref.predict_proba(Xv), rtol=1e-10, atol=1e-12)


def test_class_weighting_changes_predictions():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(90, int), np.ones(10, int)]
    X = rng.normal(size=(100, 2)) + y[:, None] * 1.0
    Xe = rng.normal(size=(200, 2)) + (np.arange(200) % 2)[:, None] * 1.0
    ye = np.arange(200) % 2
    for name in ("logreg", "svm_linear"):
        plain = sm.predict(sm.fit(name, {"C": 1.0}, X, y, 2, False, 0), Xe)
        weighted = sm.predict(sm.fit(name, {"C": 1.0}, X, y, 2, True, 0), Xe)
        assert (weighted != plain).any()
        assert (weighted[ye == 1] == 1).mean() > (plain[ye == 1] == 1).mean()  # minority recall rises


@pytest.mark.parametrize("name,params,grid,needle", [
    ("svm_linear", {}, {"gamma": [0.1]}, "train.grid.gamma"),
    ("svm_rbf", {}, {"C": []}, "train.grid.C"),
    ("svm_rbf", {}, {"C": 1.0}, "train.grid.C"),
    ("svm_rbf", {}, {"C": ["abc"]}, "train.grid.C"),
    ("logreg", {"C": "abc"}, {}, "model.params.C"),
    ("logreg", {"C": True}, {}, "model.params.C"),
    ("svm_poly", {"degree": 2.5}, {}, "model.params.degree"),
    ("svm_rbf", {"gamma": "often"}, {}, "model.params.gamma"),
    ("svm_linear", {"kernel": "rbf"}, {}, "model.params.kernel"),
    ("svm_linear", {"C": 1.0}, {"C": [1.0]}, "C is set in both"),
])
def test_config_errors(name, params, grid, needle):
    with pytest.raises(EmotkError) as e:
        sm.check_config(name, params, grid)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_grid_order_and_ties():
    points = sm.check_config("svm_poly", {"tol": 0.01}, {"degree": [3, 2], "C": [1, 0.1]})
    assert [(p["degree"], p["C"]) for p in points] == [(3, 1.0), (3, 0.1), (2, 1.0), (2, 0.1)]
    assert all(p["tol"] == 0.01 for p in points)
    # Separable data: every C scores UA 1 on valid, so the first grid point wins.
    X, y = blobs(60, spread=0.1)
    _, sel = sm.fit_select("logreg", {}, {"C": [1.0, 10.0, 100.0]}, X, y, *blobs(20, spread=0.1, seed=1), 4, True, 0)
    assert [r["valid_ua"] for r in sel["grid"]] == [1.0, 1.0, 1.0] and sel["best"] == {"C": 1.0}


def test_bad_training_data():
    X, y = blobs(40)
    y1 = y.copy()
    y1[y1 == 3] = 0
    y1[0] = 3  # class 3: one utterance, too few for calibration folds
    with pytest.raises(EmotkError, match="angry has 1 training utterance"):
        sm.fit("svm_rbf", {}, X, y1, 4, True, 0, class_names=["a", "b", "c", "angry"])
    X2 = X.copy()
    X2[5, 1] = np.nan
    with pytest.raises(EmotkError, match="row 5"):
        sm.fit("logreg", {}, X2, y, 4, True, 0)
    with pytest.raises(EmotkError, match="one class only"):
        sm.fit("logreg", {}, X, np.zeros(40, int), 4, True, 0)
    with pytest.raises(EmotkError, match="class index 4 outside 0..3"):
        sm.fit("logreg", {}, X, np.r_[y[:-1], 4], 4, True, 0)
    with pytest.raises(EmotkError, match="takes 6-dimensional vectors"):
        sm.predict_proba(sm.fit("logreg", {}, X, y, 4, True, 0), X[:, :5])


@pytest.mark.parametrize("name", ["svm_linear", "svm_rbf", "svm_poly", "logreg"])
def test_shipped_configs(name):
    from pathlib import Path

    import yaml

    conf = yaml.safe_load((Path(__file__).parents[1] / "conf" / "model" / f"{name}.yaml").read_text())
    assert conf["model"]["name"] == name
    points = sm.check_config(name, conf["model"]["params"], conf["train"]["grid"])
    assert len(points) == int(np.prod([len(v) for v in conf["train"]["grid"].values()]))
    assert [i["kind"] for i in conf["inputs"].values()] == ["vector"]
    assert [h["kind"] for h in conf["heads"].values()] == ["class"]
