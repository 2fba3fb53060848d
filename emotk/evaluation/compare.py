"""Paired comparison of two systems scored on the same test utterances (``emotk compare``).

The statistic is the difference A - B of a pooled metric: UA for class heads, CCC for
regression heads and for each dimension of a frame-level head.  Pooled means over every
test utterance of every run a system has under the exp dir (all folds, all seeds); where a
system has several runs (seeds) on an utterance, each run's prediction weighs 1/runs, so
every utterance counts once (with the same number of runs everywhere this equals pooling the
runs).  Units are keyed by (fold, utterance): the same utterance tested in two folds counts twice.

Uncertainty is speaker-level, like the report's CI (see :mod:`emotk.evaluation.bootstrap`):

- confidence interval: percentile interval of the difference over bootstrap draws that resample
  speakers with replacement, both systems' predictions on a drawn speaker coming along (paired);
- p-value (two-sided): a permutation test that swaps the two systems' predictions *per speaker*
  (all of a speaker's utterances at once). Under the null hypothesis that the two systems are
  exchangeable, every swap pattern is equally likely; p is the share of patterns whose |difference|
  is at least the observed one.  With S speakers there are 2^S patterns: all are enumerated when
  2^S <= ``n_permutations`` (exact test; the smallest possible p is then 2 / 2^S), otherwise
  ``n_permutations`` random patterns give p = (1 + count) / (1 + n).  Swapping per speaker
  rather than per utterance matches the speaker-level claim of a speaker-independent result: a
  difference carried by one speaker is not significant.

Both statistics are computed from per-speaker sufficient statistics (a K x K confusion matrix
for UA; weighted sums of x, y, x², y², xy for CCC), so a draw or a swap is a matrix product.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from emotk.data.datadir import DataDir, read_table
from emotk.data.predictions import read_predictions, read_values
from emotk.errors import EmotkError
from emotk.evaluation.bootstrap import N_DRAWS
from emotk.evaluation.score import frame_pairs

N_PERMUTATIONS = 10000
LEVEL = 0.95


@dataclass
class Target:
    """One system's predictions for one head (or one dimension of a frame-level head)."""
    metric: str                                            # "ua" | "ccc"
    spk: dict = field(default_factory=dict)                # (fold, utt) -> speaker
    ref: dict = field(default_factory=dict)                # (fold, utt) -> reference label / value (class, regression)
    runs: dict = field(default_factory=dict)               # (fold, utt) -> [(ref, pred)] one per run


def _add(t: Target, key, spk: str, ref, pred, check_ref=None) -> None:
    t.spk[key] = spk
    if check_ref is not None:
        t.ref[key] = check_ref
    t.runs.setdefault(key, []).append((ref, pred))


def load_system(score_paths: Sequence[Path], head: str | None = None) -> dict[str, Target]:
    """``{target: Target}`` from the scores files of one system; targets are head names, and
    ``<head> <dim>`` for the dimensions of a frame-level head."""
    from emotk.evaluation.report import read_scores

    targets: dict[str, Target] = {}
    for path in score_paths:
        data = read_scores(path)
        heads = data["heads"]
        if head is not None and head not in heads:
            raise EmotkError(f"{path}: no head {head!r} (heads: {', '.join(heads)})")
        fold = (data.get("fold") or {}).get("name") or ""
        ref = DataDir(data["ref"])
        utt2spk = ref.utt2spk
        for name, h in heads.items():
            if head is not None and name != head:
                continue
            if h["kind"] == "class":
                t = targets.setdefault(name, Target("ua"))
                labels = read_table(ref.path / h["labels"], parse=str)
                _, preds = read_predictions(h["predictions"])
                for u, lab in labels.items():
                    _add(t, (fold, u), utt2spk[u], lab, preds[u][0], lab)
            elif h["kind"] == "regression":
                t = targets.setdefault(name, Target("ccc"))
                values = read_table(ref.path / h["labels"], parse=float)
                _, preds = read_values(h["predictions"])
                for u, v in values.items():
                    _add(t, (fold, u), utt2spk[u], np.array([v]), np.array([preds[u]]), v)
            else:
                dims, pairs, _ = frame_pairs(ref, Path(h["predictions"]), h["labels"])
                for j, dim in enumerate(dims):
                    t = targets.setdefault(f"{name} {dim}", Target("ccc"))
                    for u, (r, p) in pairs.items():
                        _add(t, (fold, u), utt2spk[u], r[:, j], p[:, j])
    if not targets:
        raise EmotkError("no scores to compare")
    return targets


def _check_paired(a: Target, b: Target, name: str) -> None:
    only = sorted(set(a.spk) ^ set(b.spk))
    if only:
        fold, utt = only[0]
        side = "A" if only[0] in a.spk else "B"
        raise EmotkError(f"{name}: the systems were scored on different utterances: {utt!r}"
                         f"{f' (fold {fold})' if fold else ''} only in system {side} ({len(only)} such)")
    for key, r in a.ref.items():
        if b.ref.get(key) != r:
            raise EmotkError(f"{name}: utterance {key[1]!r} has reference {r!r} for system A, {b.ref.get(key)!r} for B")


# Sufficient statistics per speaker -------------------------------------------------------------

def _class_stats(t: Target, speakers: list[str], labels: list[str]) -> np.ndarray:
    index = {lab: i for i, lab in enumerate(labels)}
    s_index = {s: i for i, s in enumerate(speakers)}
    k = len(labels)
    out = np.zeros((len(speakers), k * k))
    for key, runs in t.runs.items():
        for ref, pred in runs:
            out[s_index[t.spk[key]], index[ref] * k + index[pred]] += 1.0 / len(runs)
    return out


def _ccc_stats(t: Target, speakers: list[str]) -> np.ndarray:
    s_index = {s: i for i, s in enumerate(speakers)}
    out = np.zeros((len(speakers), 6))
    for key, runs in t.runs.items():
        w = 1.0 / len(runs)
        for y, x in runs:
            out[s_index[t.spk[key]]] += w * np.array([x.size, x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()])
    return out


def ua_of(stats: np.ndarray) -> np.ndarray:
    """UA of flattened confusion matrices ``[..., K*K]`` (classes without reference left out)."""
    k = int(round(np.sqrt(stats.shape[-1])))
    c = stats.reshape(*stats.shape[:-1], k, k)
    support = c.sum(axis=-1)
    correct = np.diagonal(c, axis1=-2, axis2=-1)
    recall = np.divide(correct, support, out=np.zeros_like(correct), where=support > 0)
    return recall.sum(axis=-1) / (support > 0).sum(axis=-1)


def ccc_of(stats: np.ndarray) -> np.ndarray:
    """Lin's CCC (population moments) from weighted sums ``[..., (w, x, y, xx, yy, xy)]``."""
    w, sx, sy, sxx, syy, sxy = np.moveaxis(stats, -1, 0)
    mx, my = sx / w, sy / w
    vx, vy = sxx / w - mx * mx, syy / w - my * my
    cov = sxy / w - mx * my
    denom = vx + vy + (mx - my) ** 2
    return np.where(denom > 0, 2 * cov / np.where(denom > 0, denom, 1.0), 1.0)


def paired_test(a: np.ndarray, b: np.ndarray, metric: str, n_draws: int = N_DRAWS,
                n_permutations: int = N_PERMUTATIONS, seed: int = 0, level: float = LEVEL) -> dict:
    """Difference, speaker-bootstrap CI and speaker-swap permutation p of per-speaker statistics ``[S, F]``."""
    f = ua_of if metric == "ua" else ccc_of
    n_spk = a.shape[0]
    va, vb = float(f(a.sum(axis=0))), float(f(b.sum(axis=0)))
    diff = va - vb
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_spk, np.full(n_spk, 1.0 / n_spk), size=n_draws).astype(np.float64)
    draws = f(counts @ a) - f(counts @ b)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha])
    exact = 2 ** n_spk <= n_permutations
    if exact:
        masks = np.array(list(itertools.product((0.0, 1.0), repeat=n_spk)))
    else:
        masks = rng.integers(0, 2, size=(n_permutations, n_spk)).astype(np.float64)
    perm = f((1 - masks) @ a + masks @ b) - f(masks @ a + (1 - masks) @ b)
    extreme = int(np.sum(np.abs(perm) >= abs(diff) - 1e-12))
    p = extreme / len(masks) if exact else (1 + extreme) / (1 + len(masks))
    return {"metric": metric, "a": va, "b": vb, "difference": diff, "ci": [float(lo), float(hi)], "level": level,
            "draws": n_draws, "p_value": float(p), "permutations": int(len(masks)), "exact": exact,
            "seed": seed, "speakers": n_spk}


def compare_targets(a: Target, b: Target, name: str, **kwargs) -> dict:
    _check_paired(a, b, name)
    speakers = sorted(set(a.spk.values()))
    if a.metric == "ua":
        labels = sorted({x for t in (a, b) for runs in t.runs.values() for pair in runs for x in pair})
        sa, sb = _class_stats(a, speakers, labels), _class_stats(b, speakers, labels)
    else:
        sa, sb = _ccc_stats(a, speakers), _ccc_stats(b, speakers)
    runs = {s: max(len(r) for r in t.runs.values()) for s, t in (("a", a), ("b", b))}
    return {"target": name, **paired_test(sa, sb, a.metric, **kwargs), "utterances": len(a.spk),
            "max_runs_per_utterance": runs}


def _scores_of(exp: Path, set_name: str) -> list[Path]:
    from emotk.evaluation.report import find_scores

    return find_scores([exp], set_name)


def compare(exp_a: Path, exp_b: Path, set_name: str = "test", head: str | None = None, **kwargs) -> dict:
    """Compare the systems under two exp dirs (every ``scores/<set>.json`` below each) head by head."""
    pa, pb = _scores_of(Path(exp_a), set_name), _scores_of(Path(exp_b), set_name)
    ta, tb = load_system(pa, head), load_system(pb, head)
    common = [t for t in ta if t in tb]
    if not common:
        raise EmotkError(f"{exp_a} and {exp_b} have no head in common ({', '.join(ta)} vs {', '.join(tb)})")
    return {"set": set_name,
            "a": {"exp": str(Path(exp_a).resolve()), "scores": [str(p) for p in pa]},
            "b": {"exp": str(Path(exp_b).resolve()), "scores": [str(p) for p in pb]},
            "method": "difference A - B of the pooled metric; speaker bootstrap CI; permutation p swapping "
                      "the systems' predictions per speaker (two-sided)",
            "comparisons": [compare_targets(ta[t], tb[t], t, **kwargs) for t in common]}


def format_comparison(c: dict) -> str:
    """One line: ``emotion UA: A 62.3, B 58.1, A-B +4.2 [95% CI +1.0, +7.5], p = 0.031 (...)``."""
    scale, unit, digits = (100.0, " %", 1) if c["metric"] == "ua" else (1.0, "", 3)
    kind = f"exact, {c['permutations']} swaps" if c["exact"] else f"{c['permutations']} random swaps"
    return (f"{c['target']} {c['metric'].upper()}: A {scale * c['a']:.{digits}f}{unit}, B {scale * c['b']:.{digits}f}{unit}, "
            f"A-B {scale * c['difference']:+.{digits}f} [{100 * c['level']:.0f}% CI {scale * c['ci'][0]:+.{digits}f}, "
            f"{scale * c['ci'][1]:+.{digits}f}], p = {c['p_value']:.4g} ({kind}; {c['speakers']} speakers, "
            f"{c['utterances']} utterances)")


def comparison_table(systems: Mapping[str, Sequence[Path]], head: str, n_draws: int = N_DRAWS,
                     n_permutations: int = N_PERMUTATIONS, seed: int = 0) -> list[str]:
    """Markdown: every system of ``head`` against the best one (highest pooled UA / CCC), per target."""
    loaded = {s: load_system(paths, head) for s, paths in systems.items()}
    out = []
    for target in sorted({t for ts in loaded.values() for t in ts}):
        have = {s: ts[target] for s, ts in loaded.items() if target in ts}
        if len(have) < 2:
            continue
        metric = next(iter(have.values())).metric
        label = "UA" if metric == "ua" else "CCC"
        scale, digits = (100.0, 1) if metric == "ua" else (1.0, 3)
        out += [f"Paired comparison against the best system, `{target}` (pooled {label}; 95% CI from a speaker "
                f"bootstrap of {n_draws} draws; p from swapping the two systems' predictions per speaker):", "",
                f"| system | pooled {label} | difference to best [95% CI] | p |", "|---|---|---|---|"]
        f = ua_of if metric == "ua" else ccc_of
        try:
            for s, t in have.items():
                _check_paired(next(iter(have.values())), t, f"{target} ({s})")
        except EmotkError as e:
            out[-4:] = [f"Paired comparison of `{target}`: not possible, {e}"]
            continue
        speakers = sorted(set(next(iter(have.values())).spk.values()))
        if metric == "ua":
            labels = sorted({x for t in have.values() for runs in t.runs.values() for pair in runs for x in pair})
            stats = {s: _class_stats(t, speakers, labels) for s, t in have.items()}
        else:
            stats = {s: _ccc_stats(t, speakers) for s, t in have.items()}
        values = {s: float(f(st.sum(axis=0))) for s, st in stats.items()}
        best = max(sorted(values), key=lambda s: values[s])
        for s in sorted(values, key=lambda s: -values[s]):
            if s == best:
                out.append(f"| {s} (best) | {scale * values[s]:.{digits}f} | — | — |")
                continue
            r = paired_test(stats[s], stats[best], metric, n_draws, n_permutations, seed)
            out.append(f"| {s} | {scale * values[s]:.{digits}f} | {scale * r['difference']:+.{digits}f} "
                       f"[{scale * r['ci'][0]:+.{digits}f}, {scale * r['ci'][1]:+.{digits}f}] | {r['p_value']:.3g} |")
        out.append("")
    return out
