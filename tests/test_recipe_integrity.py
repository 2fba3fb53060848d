"""The EmoDB recipe end to end, for evaluation integrity: no stale model is scored after a re-split,
a refusing run names the stale run, and two runs from scratch give byte-identical results.

One test (the recipe runs are shared to keep CI short): tiny synthetic corpus, 2 epochs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from emotk.data.datadir import read_table
from emotk.training.provenance import read_record, read_trained

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "emodb" / "run.sh"
TAG = "cnn_lstm2d_small"


def recipe(tmp: Path, *extra: str, train_opts: str = "") -> subprocess.CompletedProcess:
    args = ["bash", str(RECIPE), "--synthetic-size", "56", "--synthetic-dir", str(tmp / "corpus"),
            "--data", str(tmp / "data"), "--exp", str(tmp / "exp"), "--results", str(tmp / "RESULTS.md"),
            "--train-opts", f"--set train.epochs=2 {train_opts}".strip(), "--nj", "2",
            "--seeds", "1", "--opensmile-sets", "", "--fusion", "", "--raw-model-config", "", *extra]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)


def runs(tmp: Path) -> dict[str, Path]:
    """``{protocol/fold: exp dir}`` of every training run."""
    return {f"{p.parent.parent.parent.name}/{p.parent.parent.name}": p.parent
            for p in sorted((tmp / "exp" / TAG).glob("*/*/seed1/done"))}


def outputs(tmp: Path) -> dict[str, bytes]:
    """RESULTS.md and every run's predictions and scores, by path relative to ``tmp``."""
    files = [tmp / "RESULTS.md"] + sorted(f for part in ("predictions", "scores")
                                          for f in (tmp / "exp" / TAG).glob(f"*/*/seed1/{part}/**/*") if f.is_file())
    return {str(f.relative_to(tmp)): f.read_bytes() for f in files}


def test_resplit_retrains_refuses_and_reruns_are_byte_identical(tmp_path):
    r = recipe(tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    first = outputs(tmp_path)
    before = runs(tmp_path)
    assert sorted(before) == ["loso/loso-03", "loso/loso-08", "loso/loso-09", "loso/loso-10", "sd/sd-random-1"]
    mtimes = {k: (d / "checkpoints" / "best.pt").stat().st_mtime_ns for k, d in before.items()}
    old_sd_train = read_trained(before["sd/sd-random-1"])["train"]

    # Re-split with another seed and re-run the later stages: the speaker-dependent split changed,
    # so its run is trained again; the LOSO folds do not depend on the seed, so those runs are reused.
    r = recipe(tmp_path, "--stage", "5", "--stop-stage", "10", "--seed", "7")
    assert r.returncode == 0, r.stderr[-3000:]
    sd = before["sd/sd-random-1"]
    assert "finished run differs from the request in train.ids" in (sd / "train.out").read_text()
    assert (sd / "checkpoints" / "best.pt").stat().st_mtime_ns != mtimes["sd/sd-random-1"]
    for k, d in before.items():
        if k.startswith("loso/"):
            assert "skipping" in (d / "train.out").read_text()
            assert (d / "checkpoints" / "best.pt").stat().st_mtime_ns == mtimes[k]
    # No run is scored on utterances it was trained or selected on; the records describe the new folds.
    for k, d in runs(tmp_path).items():
        fold = tmp_path / "data" / "folds" / k
        trained = read_trained(d)
        assert trained["train"] == read_table(fold / "train" / "utt2spk")
        assert trained["valid"] == read_table(fold / "valid" / "utt2spk")
        test = set(read_table(fold / "test" / "utt2spk"))
        assert not test & (set(trained["train"]) | set(trained["valid"])), k
        assert read_record(d)["protocol"]["fold"] == k.split("/")[1]
    new_sd_train = read_trained(sd)["train"]
    assert new_sd_train != old_sd_train and set(old_sd_train) & set(read_table(tmp_path / "data" / "folds" / "sd"
                                                                              / "sd-random-1" / "test" / "utt2spk"))

    # With the refusing option, another re-split stops the recipe with one line naming the run and the field.
    r = recipe(tmp_path, "--stage", "5", "--stop-stage", "7", "--seed", "8", train_opts="--on-mismatch refuse")
    assert r.returncode != 0
    assert str(sd / "train.out") in r.stderr
    errors = [line for line in (sd / "train.out").read_text().splitlines() if line.startswith("emotk: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"emotk: error: {sd}: finished run differs from the request in "
                                                     "train.ids (")
    assert errors[0].endswith("use --on-mismatch redo or --overwrite to train again")
    assert (sd / "done").is_file() and read_trained(sd)["train"] == new_sd_train  # the refused run is left alone

    # The same command from scratch again (the synthetic corpus kept): byte-identical results.
    for d in ("data", "exp"):
        shutil.rmtree(tmp_path / d)
    (tmp_path / "RESULTS.md").unlink()
    r = recipe(tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    second = outputs(tmp_path)
    assert sorted(second) == sorted(first)
    for run in before:
        assert any(f"/{run}/seed1/predictions/" in n for n in first) and any(f"/{run}/seed1/scores/" in n for n in first)
    for name in first:
        assert second[name] == first[name], name
