"""Smoke test of recipes/emodb/run.sh end to end on a tiny synthetic corpus."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "emodb" / "run.sh"


def run_recipe(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    args = ["bash", str(RECIPE), "--synthetic-size", "56", "--synthetic-dir", str(tmp / "corpus"),
            "--data", str(tmp / "data"), "--exp", str(tmp / "exp"), "--results", str(tmp / "RESULTS.md"),
            "--train-opts", "--set train.epochs=2", "--nj", "2", *extra]
    env = dict(os.environ, PATH=f"{Path(os.sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)


def test_emodb_recipe_end_to_end(tmp_path):
    r = run_recipe(tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SYNTHETIC" in r.stderr
    results = (tmp_path / "RESULTS.md").read_text()
    assert "SYNTHETIC" in results
    assert "Protocol `loso`: speaker-independent" in results
    assert "speaker-dependent" in results and "chance UA" in results
    scores = sorted((tmp_path / "exp").glob("cnn_lstm2d_small/*/*/seed1/scores/test.json"))
    assert len(scores) == 4 + 1  # 4 speakers in the tiny corpus -> 4 LOSO folds, + 1 random split
    for path in scores:
        s = json.loads(path.read_text())
        assert 0.0 <= s["metrics"]["ua"] <= 1.0
        if s["fold"]["protocol"] == "loso":
            assert s["fold"]["speaker_independent"] is True and len(s["speakers"]) == 1

    # Re-entering at the training stage skips finished runs and reproduces the report.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "exp").glob("*/*/*/seed1/checkpoints/best.pt")}
    r2 = run_recipe(tmp_path, "--stage", "5")
    assert r2.returncode == 0, r2.stderr[-3000:]
    after = {p: p.stat().st_mtime_ns for p in before}
    assert before == after
    assert (tmp_path / "RESULTS.md").read_text() == results
