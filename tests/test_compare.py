"""``emotk compare``: paired difference, speaker bootstrap CI and speaker-swap permutation p,
checked against independent computations (scikit-learn / audmetric in plain loops, scipy's bootstrap)."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import audmetric
import numpy as np
import pytest
from scipy.stats import bootstrap
from sklearn.metrics import balanced_accuracy_score

from emotk.data.datadir import read_table, spk2utt_from, write_table
from emotk.errors import EmotkError
from emotk.evaluation.compare import compare
from emotk.evaluation.score import score

EMOTK = str(Path(sys.executable).parent / "emotk")
CLASSES = ["ang", "hap", "neu"]
SPEAKERS = [f"s{i}" for i in range(8)]


def make_ref(path: Path, n_per_spk=6) -> dict[str, str]:
    ref = {f"{s}_u{i}": CLASSES[i % 3] for s in SPEAKERS for i in range(n_per_spk)}
    utt2spk = {u: u.split("_")[0] for u in ref}
    write_table(path / "utt2spk", utt2spk)
    write_table(path / "spk2utt", spk2utt_from(utt2spk))
    write_table(path / "utt2emo", ref)
    return ref


def write_preds(path: Path, preds: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["# utt label " + " ".join(CLASSES)]
    rows += [f"{u} {p} " + " ".join("0.8" if c == p else "0.1" for c in CLASSES) for u, p in sorted(preds.items())]
    path.write_text("\n".join(rows) + "\n")
    return path


def system(tmp_path: Path, name: str, ref_dir: Path, preds: dict[str, str]) -> Path:
    exp = tmp_path / "exp" / name
    score(ref_dir, write_preds(exp / "predictions/test.txt", preds))
    return exp


def noisy(ref, rng, p_correct):
    """Per-speaker accuracy varies (speaker effects)."""
    out = {}
    for u, t in ref.items():
        spk_bonus = 0.3 * (int(u[1]) % 2) - 0.15
        out[u] = t if rng.random() < p_correct + spk_bonus else CLASSES[(CLASSES.index(t) + 1) % 3]
    return out


def independent_ua_test(ref, a, b):
    """Exact speaker-swap permutation p and the paired difference by enumeration, with scikit-learn."""
    utts = sorted(ref)
    y = [ref[u] for u in utts]

    def diff(pa, pb):
        return balanced_accuracy_score(y, [pa[u] for u in utts]) - balanced_accuracy_score(y, [pb[u] for u in utts])

    observed = diff(a, b)
    extreme = 0
    for swap in itertools.product((False, True), repeat=len(SPEAKERS)):
        swapped = {s for s, w in zip(SPEAKERS, swap) if w}
        pa = {u: (b if u.split("_")[0] in swapped else a)[u] for u in utts}
        pb = {u: (a if u.split("_")[0] in swapped else b)[u] for u in utts}
        extreme += abs(diff(pa, pb)) >= abs(observed) - 1e-12
    return observed, extreme / 2 ** len(SPEAKERS)


def test_identical_systems_differ_by_zero_with_p_one(tmp_path):
    ref = make_ref(tmp_path / "test")
    preds = noisy(ref, np.random.default_rng(0), 0.6)
    a, b = system(tmp_path, "a", tmp_path / "test", preds), system(tmp_path, "b", tmp_path / "test", preds)
    (c,) = compare(a, b)["comparisons"]
    assert c["target"] == "emotion" and c["metric"] == "ua"
    assert c["difference"] == 0.0 and c["ci"] == [0.0, 0.0] and c["p_value"] == 1.0
    assert c["exact"] and c["permutations"] == 2 ** 8 and c["speakers"] == 8 and c["utterances"] == 48


def test_system_right_where_the_other_is_wrong(tmp_path):
    ref = make_ref(tmp_path / "test")
    b_preds = noisy(ref, np.random.default_rng(1), 0.5)
    a_preds = dict(ref)  # right everywhere, in particular wherever B is wrong
    a = system(tmp_path, "a", tmp_path / "test", a_preds)
    b = system(tmp_path, "b", tmp_path / "test", b_preds)
    ab, ba = compare(a, b)["comparisons"][0], compare(b, a)["comparisons"][0]
    observed, p = independent_ua_test(ref, a_preds, b_preds)
    assert ab["difference"] == pytest.approx(observed) and observed > 0
    assert ba["difference"] == pytest.approx(-observed)
    assert ab["p_value"] == pytest.approx(p) == pytest.approx(2 / 2 ** 8)  # every speaker favours A
    assert ab["ci"][0] > 0


def test_difference_ci_and_p_against_independent_computations(tmp_path):
    ref = make_ref(tmp_path / "test")
    rng = np.random.default_rng(2)
    a_preds, b_preds = noisy(ref, rng, 0.65), noisy(ref, rng, 0.55)
    a = system(tmp_path, "a", tmp_path / "test", a_preds)
    b = system(tmp_path, "b", tmp_path / "test", b_preds)
    c = compare(a, b, n_draws=4000, seed=3)["comparisons"][0]
    observed, p = independent_ua_test(ref, a_preds, b_preds)
    assert c["difference"] == pytest.approx(observed)
    assert c["p_value"] == pytest.approx(p)
    assert c["ci"][0] < observed < c["ci"][1]
    # scipy's percentile bootstrap over speakers, the statistic computed with scikit-learn
    utts_of = {s: [u for u in sorted(ref) if u.startswith(s + "_")] for s in SPEAKERS}

    def uar(utts, preds):  # plain Python: mean over classes of the share recognized
        return np.mean([np.mean([preds[u] == c for u in utts if ref[u] == c]) for c in CLASSES])

    def stat(idx):
        utts = [u for i in idx for u in utts_of[SPEAKERS[int(i)]]]
        return uar(utts, a_preds) - uar(utts, b_preds)

    assert stat(range(len(SPEAKERS))) == pytest.approx(observed)

    res = bootstrap((np.arange(len(SPEAKERS)),), stat, vectorized=False, n_resamples=4000, method="percentile",
                    random_state=np.random.default_rng(4))
    assert c["ci"][0] == pytest.approx(res.confidence_interval.low, abs=0.02)
    assert c["ci"][1] == pytest.approx(res.confidence_interval.high, abs=0.02)


def test_several_seeds_weigh_each_utterance_once(tmp_path):
    ref = make_ref(tmp_path / "test")
    rng = np.random.default_rng(5)
    runs = [noisy(ref, rng, 0.6) for _ in range(2)]
    exps = [system(tmp_path, f"a/seed{k}", tmp_path / "test", p) for k, p in enumerate(runs)]
    b_preds = noisy(ref, rng, 0.6)
    b = system(tmp_path, "b", tmp_path / "test", b_preds)
    c = compare(exps[0].parent, b)["comparisons"][0]
    utts = sorted(ref)
    y = [ref[u] for u in utts]
    pooled_a = balanced_accuracy_score(y + y, [runs[0][u] for u in utts] + [runs[1][u] for u in utts])
    assert c["a"] == pytest.approx(pooled_a)  # equal runs per utterance: same as pooling the runs
    assert c["max_runs_per_utterance"] == {"a": 2, "b": 1}
    assert c["b"] == pytest.approx(balanced_accuracy_score(y, [b_preds[u] for u in utts]))


def test_refuses_systems_scored_on_different_utterances(tmp_path):
    ref = make_ref(tmp_path / "test")
    a = system(tmp_path, "a", tmp_path / "test", dict(ref))
    other = {u: v for u, v in ref.items() if not u.startswith("s7_")}
    write_table(tmp_path / "small/utt2emo", other)
    utt2spk = {u: u.split("_")[0] for u in other}
    write_table(tmp_path / "small/utt2spk", utt2spk)
    write_table(tmp_path / "small/spk2utt", spk2utt_from(utt2spk))
    b = system(tmp_path, "b", tmp_path / "small", other)
    with pytest.raises(EmotkError, match="different utterances: 's7_u0' only in system A"):
        compare(a, b)
    r = subprocess.run([EMOTK, "compare", str(a), str(b)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "different utterances" in r.stderr


def test_regression_heads_compare_ccc(tmp_path):
    ref = make_ref(tmp_path / "test")
    rng = np.random.default_rng(6)
    write_table(tmp_path / "test/utt2arousal", {u: round(float(rng.normal()), 4) for u in ref})
    y = read_table(tmp_path / "test/utt2arousal", parse=float)
    preds = {}
    for name, noise in (("a", 0.4), ("b", 0.8)):
        values = {u: round(v + float(rng.normal(scale=noise)), 4) for u, v in y.items()}
        path = tmp_path / "exp" / name / "predictions/test.txt"
        path.parent.mkdir(parents=True)
        path.write_text("# utt arousal\n" + "".join(f"{u} {v}\n" for u, v in sorted(values.items())))
        score(tmp_path / "test", path)
        preds[name] = values
    r = subprocess.run([EMOTK, "compare", str(tmp_path / "exp/a"), str(tmp_path / "exp/b"), "--out",
                        str(tmp_path / "c.json")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("arousal CCC: A ")
    (c,) = json.loads((tmp_path / "c.json").read_text())["comparisons"]
    utts = sorted(y)
    ref_v = np.array([y[u] for u in utts])

    def diff(pa, pb):
        return (audmetric.concordance_cc(ref_v, np.array([pa[u] for u in utts]))
                - audmetric.concordance_cc(ref_v, np.array([pb[u] for u in utts])))

    observed = diff(preds["a"], preds["b"])
    extreme = 0
    for swap in itertools.product((False, True), repeat=len(SPEAKERS)):
        swapped = {s for s, w in zip(SPEAKERS, swap) if w}
        pa = {u: preds["b" if u.split("_")[0] in swapped else "a"][u] for u in utts}
        pb = {u: preds["a" if u.split("_")[0] in swapped else "b"][u] for u in utts}
        extreme += abs(diff(pa, pb)) >= abs(observed) - 1e-12
    assert c["metric"] == "ccc" and c["difference"] == pytest.approx(observed, abs=1e-9) and observed > 0
    assert c["p_value"] == pytest.approx(extreme / 2 ** len(SPEAKERS))
    assert c["ci"][0] < observed < c["ci"][1]
