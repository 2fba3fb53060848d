"""SVM / logistic-regression training time per leave-one-speaker-out fold (``fit_select`` over the recipe grid).

One EmoDB LOSO fold: about 480 training and 55 validation utterances, 7 classes.  Synthetic
Gaussian class clusters (real openSMILE features are not needed for timing) at the eGeMAPSv02 size
(88 dims) and the ComParE_2016 size (6373 dims).  Beside each, the reference: plain scikit-learn
fits of the same grid points without calibration or selection (``Pipeline(StandardScaler, SVC)``),
which Platt calibration on 5 folds multiplies by about 5 x 4/5 + 1 = 5.

    python benchmarks/bench_svm.py [--repeats 3] [--write]

``--write`` replaces the section in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_name, replace_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## scikit-learn models: training time per LOSO fold"
MODELS = ("svm_linear", "svm_rbf", "svm_poly", "logreg")
SIZES = {"eGeMAPSv02": 88, "ComParE_2016": 6373}


def fold_data(dim: int, n_train: int = 480, n_valid: int = 55, k: int = 7, seed: int = 0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=0.3, size=(k, dim))

    def draw(n):
        y = np.arange(n) % k
        return means[y] + rng.normal(size=(n, dim)), y

    return (*draw(n_train), *draw(n_valid))


def plain_fits(name: str, points: list[dict], X, y, seed: int) -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from emotk.models import sklearn_models as sm

    cls = sm.model_class(name)
    for settings in points:
        if issubclass(cls, sm._SVM):
            est = SVC(kernel=cls.kernel, class_weight="balanced", random_state=seed, **settings)
        else:
            est = cls.estimator(settings, "balanced", seed, 0)
        Pipeline([("s", StandardScaler()), ("c", est)]).fit(X, y)


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds (CPU time is steadier on a shared machine)."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="median of this many runs (ComParE size: 1)")
    ap.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = ap.parse_args()

    from emotk.config import yaml_load
    from emotk.models import sklearn_models as sm

    rows = []
    for feat, dim in SIZES.items():
        Xt, yt, Xv, yv = fold_data(dim)
        repeats = args.repeats if dim < 1000 else 1
        for name in MODELS:
            conf = yaml_load((ROOT / "conf" / "model" / f"{name}.yaml").read_text(encoding="utf-8"))
            params, grid = conf["model"]["params"], conf["train"]["grid"]
            points = sm.check_config(name, params, grid)
            wall, cpu = timed(lambda: sm.fit_select(name, params, grid, Xt, yt, Xv, yv, 7, True, 0), repeats)
            ref_wall, ref_cpu = timed(lambda: plain_fits(name, points, Xt, yt, 0), repeats)
            rows.append(f"| {feat} | {dim} | {name} | {len(points)} | {wall:.2f} | {cpu:.2f} | {ref_wall:.2f} | "
                        f"{ref_cpu:.2f} | {cpu / ref_cpu:.1f} |")
            print(rows[-1], flush=True)

    text = (f"{HEADING}\n\n"
            "`emotk.models.sklearn_models.fit_select` over the grid of `conf/model/<model>.yaml` (every point "
            "fitted on train, Platt-calibrated SVM posteriors by 5-fold CV on train, UA on valid), on one "
            "EmoDB-sized LOSO fold: 480 training and 55 validation utterances, 7 classes, **synthetic Gaussian "
            "vectors** of the eGeMAPSv02 and ComParE_2016 sizes (timing only; no real features were used). "
            "Reference, in the same run: plain scikit-learn fits of the same grid points, "
            "`Pipeline(StandardScaler, SVC)` without calibration or selection (logistic regression: the same "
            "estimator). fit_select fits with one BLAS thread, the reference with the library defaults: a logistic "
            "regression ratio below 1 is that setting on a loaded machine, not selection. "
            f"Median of {args.repeats} runs (ComParE size: 1 run); {cpu_name()}, {os.cpu_count()} cores, shared "
            "with other jobs: CPU seconds are the steadier figure (scikit-learn's SVC is single-threaded). "
            "`python benchmarks/bench_svm.py --write`.\n\n"
            "| features | dim | model | grid points | fit_select wall s / fold | CPU s | "
            "plain fits of the grid wall s | CPU s | CPU ratio |\n"
            "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    print()
    print(text)
    if args.write:
        replace_section(ROOT / "BENCHMARKS.md", HEADING, text)


if __name__ == "__main__":
    main()
