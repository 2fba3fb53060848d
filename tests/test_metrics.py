"""Metric primitives against scikit-learn and audmetric; CCC edge cases; the speaker bootstrap."""

import audmetric
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from emotk.errors import EmotkError
from emotk.evaluation.bootstrap import speaker_bootstrap_ua, speaker_confusions, utterance_bootstrap_ua
from emotk.metrics import classification as cls
from emotk.metrics.regression import ccc, pcc, rmse

LABELS = ["ang", "bor", "hap", "neu", "sad"]


def _random_labels(seed, n=200):
    rng = np.random.default_rng(seed)
    y_true = list(rng.choice(LABELS, n))
    # predictions never use "bor" or "sad": classes missing from predictions
    y_pred = [t if rng.random() < 0.5 else rng.choice(["ang", "hap", "neu"]) for t in y_true]
    y_pred = [p if p not in ("bor", "sad") else "neu" for p in y_pred]
    return y_true, y_pred


@pytest.mark.parametrize("seed", range(5))
def test_classification_matches_sklearn_and_audmetric(seed):
    y_true, y_pred = _random_labels(seed)
    assert "sad" not in y_pred and "bor" in y_true
    assert cls.ua(y_true, y_pred, LABELS) == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert cls.ua(y_true, y_pred, LABELS) == pytest.approx(audmetric.unweighted_average_recall(y_true, y_pred))
    assert cls.wa(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred))
    assert cls.wa(y_true, y_pred) == pytest.approx(audmetric.accuracy(y_true, y_pred))
    assert cls.f1_macro(y_true, y_pred, LABELS) == pytest.approx(
        f1_score(y_true, y_pred, average="macro", labels=sorted(set(y_true) | set(y_pred)), zero_division=0))
    np.testing.assert_array_equal(cls.confusion(y_true, y_pred, LABELS), confusion_matrix(y_true, y_pred, labels=LABELS))
    np.testing.assert_allclose(cls.f1_per_class(y_true, y_pred, LABELS),
                               f1_score(y_true, y_pred, average=None, labels=LABELS, zero_division=0))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_ua_leaves_out_classes_absent_from_reference():
    y_true, y_pred = ["a", "a", "b", "b"], ["a", "c", "b", "b"]
    assert cls.ua(y_true, y_pred, ["a", "b", "c"]) == pytest.approx((0.5 + 1.0) / 2)
    assert cls.ua(y_true, y_pred, ["a", "b", "c"]) == pytest.approx(balanced_accuracy_score(y_true, y_pred))


def test_baselines():
    y_test = ["a"] * 6 + ["b"] * 3 + ["c"] * 1
    # chance: uniform over the model's classes, whatever a test fold happens to contain
    assert cls.chance_baseline(["a", "b", "c", "d"]) == {"n_classes": 4, "ua": 0.25, "wa": 0.25}
    rng = np.random.default_rng(0)
    guesses = [list(rng.choice(["a", "b", "c", "d"], len(y_test))) for _ in range(4000)]
    assert np.mean([cls.ua(y_test, g, ["a", "b", "c", "d"]) for g in guesses]) == pytest.approx(0.25, abs=0.01)
    assert cls.majority_class(["b", "a", "b", "a", "c"]) == "a"  # tie: first in sorted order
    m = cls.majority_baseline(y_test, "b", ["a", "b", "c"])  # majority of train may differ from test's
    assert m["class"] == "b" and m["ua"] == pytest.approx(1 / 3) and m["wa"] == pytest.approx(0.3)
    absent = cls.majority_baseline(y_test, "d", ["a", "b", "c"])
    assert absent["ua"] == 0.0 and absent["wa"] == 0.0


def test_ccc_edge_cases():
    x = np.sin(np.linspace(0, 10, 500))
    x = x - x.mean()
    assert ccc(x, x) == pytest.approx(1.0)
    shifted = ccc(x, x + 0.5)
    assert shifted < 1.0 and shifted == pytest.approx(audmetric.concordance_cc(x, x + 0.5))
    # a shift costs CCC but not PCC
    assert pcc(x, x + 0.5) == pytest.approx(1.0)
    scaled = ccc(x, 2 * x)
    assert scaled < 1.0 and scaled == pytest.approx(audmetric.concordance_cc(x, 2 * x))
    assert ccc(x, -x) == pytest.approx(-1.0)
    assert ccc(x, np.full_like(x, 0.3)) == 0.0
    assert ccc(np.full(10, 2.0), np.full(10, 2.0)) == 1.0
    assert ccc(np.full(10, 2.0), np.full(10, 3.0)) == 0.0


def test_regression_matches_audmetric():
    rng = np.random.default_rng(0)
    t = rng.normal(size=300)
    p = 0.6 * t + rng.normal(scale=0.5, size=300) + 0.2
    assert ccc(p, t) == pytest.approx(audmetric.concordance_cc(t, p))
    assert pcc(p, t) == pytest.approx(audmetric.pearson_cc(t, p))
    assert rmse(p, t) == pytest.approx(np.sqrt(audmetric.mean_squared_error(t, p)))


@pytest.mark.parametrize("fn", [ccc, rmse, pcc])
def test_nan_is_an_error(fn):
    with pytest.raises(EmotkError, match="index 2"):
        fn([0.1, 0.2, np.nan, 0.4], [0.1, 0.2, 0.3, 0.4])


def _speaker_effect_data(n_spk=12, n_utt=40, seed=0):
    """Half the speakers are recognized almost perfectly, half almost never: strong speaker effects."""
    rng = np.random.default_rng(seed)
    y_true, y_pred, spks = [], [], []
    for s in range(n_spk):
        p_correct = 0.95 if s % 2 == 0 else 0.15
        for _ in range(n_utt):
            t = rng.choice(["a", "b", "c", "d"])
            y_true.append(t)
            y_pred.append(t if rng.random() < p_correct else rng.choice([x for x in "abcd" if x != t]))
            spks.append(f"spk{s:02d}")
    return y_true, y_pred, spks


def test_speaker_bootstrap_matches_scipy():
    """The speaker bootstrap against scipy's percentile bootstrap over speaker indices, with
    scikit-learn's balanced accuracy as the statistic (independent draws: agreement within
    Monte-Carlo error)."""
    from scipy.stats import bootstrap

    y_true, y_pred, spks = _speaker_effect_data(n_spk=10, n_utt=12, seed=3)
    labels = ["a", "b", "c", "d"]
    lo, hi = speaker_bootstrap_ua(speaker_confusions(y_true, y_pred, spks, labels), n_draws=3000, seed=0)
    names = sorted(set(spks))
    rows = {s: [i for i, x in enumerate(spks) if x == s] for s in names}

    def stat(idx):
        sel = [i for k in idx for i in rows[names[int(k)]]]
        return balanced_accuracy_score([y_true[i] for i in sel], [y_pred[i] for i in sel])

    ci = bootstrap((np.arange(len(names)),), stat, vectorized=False, n_resamples=3000, method="percentile",
                   random_state=np.random.default_rng(1)).confidence_interval
    assert lo == pytest.approx(ci.low, abs=0.025) and hi == pytest.approx(ci.high, abs=0.025)
    assert hi - lo > 0.2  # strong speaker effects: a wide interval, not a degenerate one


def test_speaker_bootstrap_is_wider_than_utterance_bootstrap():
    y_true, y_pred, spks = _speaker_effect_data()
    labels = ["a", "b", "c", "d"]
    point = cls.ua(y_true, y_pred, labels)
    per_spk = speaker_confusions(y_true, y_pred, spks, labels)
    assert len(per_spk) == 12 and sum(c.sum() for c in per_spk.values()) == len(y_true)
    lo, hi = speaker_bootstrap_ua(per_spk, n_draws=1000, seed=1)
    ulo, uhi = utterance_bootstrap_ua(y_true, y_pred, labels, n_draws=1000, seed=1)
    assert lo < point < hi and ulo < point < uhi
    assert (hi - lo) > 2 * (uhi - ulo)
    # seeded: the same draws give the same interval
    assert speaker_bootstrap_ua(per_spk, n_draws=1000, seed=1) == (lo, hi)
