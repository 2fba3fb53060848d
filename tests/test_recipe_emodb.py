"""recipes/emodb/run.sh end to end on a tiny synthetic corpus: every system (neural model, openSMILE
SVMs, their fusion) under both protocols, scores recomputed independently, one report, re-entry."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from emotk.data.datadir import read_table
from emotk.data.predictions import read_predictions

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "emodb" / "run.sh"
SYSTEMS = ("cnn_lstm2d_small", "egemapsv02_svm", "compare_2016_svm", "fusion/cnn_lstm2d_small+egemapsv02_svm")


def run_recipe(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    args = ["bash", str(RECIPE), "--synthetic-size", "56", "--synthetic-dir", str(tmp / "corpus"),
            "--data", str(tmp / "data"), "--exp", str(tmp / "exp"), "--results", str(tmp / "RESULTS.md"),
            "--train-opts", "--set train.epochs=2", "--seeds", "1", "--valid-speakers", "1", "--nj", "2", *extra]
    env = dict(os.environ, PATH=f"{Path(os.sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=1200)


def test_emodb_recipe_end_to_end(tmp_path):
    r = run_recipe(tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SYNTHETIC" in r.stderr
    results = (tmp_path / "RESULTS.md").read_text()
    assert "SYNTHETIC" in results
    for system in SYSTEMS:
        scores = sorted((tmp_path / "exp" / system).glob("*/*/seed1/scores/test.json"))
        assert len(scores) == 4 + 1, system  # 4 speakers in the tiny corpus -> 4 LOSO folds, + 1 random split
        for path in scores:
            s = json.loads(path.read_text())
            fold = path.parents[2].name
            protocol = path.parents[3].name
            ref = read_table(tmp_path / "data" / "folds" / protocol / fold / "test" / "utt2emo")
            classes, preds = read_predictions(path.parent.parent / "predictions" / "test" / "emotion.txt")
            utts = sorted(ref)
            assert sorted(preds) == utts
            # The UA the recipe reports equals scikit-learn's on the predictions it wrote.
            ua = balanced_accuracy_score([ref[u] for u in utts], [preds[u][0] for u in utts])
            assert abs(s["heads"]["emotion"]["metrics"]["ua"] - ua) < 1e-9, path
            assert s["disjointness"]["checked"] and s["disjointness"]["utterances_disjoint"], path
            if protocol == "loso":
                assert s["disjointness"]["speaker_independent"] and not s["disjointness"]["shared_speakers"]
                assert len(s["speakers"]) == 1
    # The fusion is the mean of its members' posteriors.
    fold = tmp_path / "exp" / "{}" / "loso" / "loso-03" / "seed1" / "predictions" / "test" / "emotion.txt"
    members = [read_predictions(str(fold).format(m))[1] for m in SYSTEMS[:2]]
    fused = read_predictions(str(fold).format(SYSTEMS[3]))[1]
    for utt, (label, post) in fused.items():
        assert np.allclose(post, np.mean([m[utt][1] for m in members], axis=0), atol=2e-6)
    for name in ("cnn_lstm2d_small", "egemapsv02_svm", "compare_2016_svm", "fusion"):
        assert name in results
    assert "chance" in results and "speaker-dependent" in results and "paired comparison" in results.lower()

    # Re-entering at the training stage skips finished runs and reproduces the report.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "exp").glob("*/*/*/seed1/done")}
    r2 = run_recipe(tmp_path, "--stage", "6")
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert (tmp_path / "RESULTS.md").read_text() == results
