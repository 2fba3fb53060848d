"""``emotk tune``: never a test set (refused by name, fold part and speakers; never opened during a
search), trials saved with config and score, the study resumed (also after a kill mid-trial),
median pruning on the per-epoch valid metric."""

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from emotk.config import load_config
from emotk.data.split import split_data_dir
from emotk.errors import EmotkError
from emotk.tuning import check_search_sets, read_space, tune
from tests.toydata import write_wav_dir

ROOT = Path(__file__).resolve().parent.parent
# A fast model on the separable toy vectors: split-MLP heads on a vector input.
BASE = ["model.name=split_mlp", "model.params.hidden=[8]", "inputs.vec.kind=vector", "inputs.vec.table=vec.scp",
        "inputs.vec.norm=global", "train.optimizer=sgd", "train.batch_size=4", "train.num_threads=1"]
OPENED: list[str] = []
RECORD = {"on": False}  # audit hooks cannot be removed: record only inside the test


def _audit(event, args):
    if RECORD["on"] and event in ("open", "os.listdir", "os.scandir") and args \
            and isinstance(args[0], (str, bytes, os.PathLike)):
        OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def quiet(msg):
    pass


@pytest.fixture(scope="module")
def fold(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    src = write_wav_dir(root / "all", spks=("s1", "s2", "s3", "s4"), n_per_class=3, vector_dim=6)
    split_data_dir(src, root / "folds", "lists", train_speakers=["s1", "s2"], valid_speakers=["s3"],
                   test_speakers=["s4"])
    (root / "base.yaml").write_text(yaml.safe_dump({"train": {"epochs": 3, "patience": 3}}))
    return root


def space(path: Path, pruner="none", lrs=(0.5, 0.05)) -> Path:
    path.write_text(yaml.safe_dump({
        "params": {"train.lr": {"type": "categorical", "choices": list(lrs)},
                   "model.params.hidden": {"type": "categorical", "choices": [[8], [4, 4]]},
                   "model.params.dropout": {"type": "float", "low": 0.0, "high": 0.3}},
        "sampler": {"seed": 3, "n_startup_trials": 2}, "pruner": pruner}))
    return path


def run(fold, exp, trials, space_file, **kw):
    f = fold / "folds" / "lists"
    return tune(fold / "base.yaml", f / "train", f / "valid", space_file, exp, trials, overrides=BASE, log=quiet, **kw)


def test_test_parts_are_refused_before_they_are_read(fold, tmp_path):
    f = fold / "folds" / "lists"
    with pytest.raises(EmotkError, match="named 'test'"):
        check_search_sets(f / "train", f / "test")
    (tmp_path / "alias").symlink_to(f / "test")
    with pytest.raises(EmotkError, match="named 'test'"):
        check_search_sets(f / "train", tmp_path / "alias")
    (f / "heldout").symlink_to(f / "test", target_is_directory=True)  # not a link named test: resolved first
    with pytest.raises(EmotkError, match="named 'test'"):
        check_search_sets(f / "heldout", f / "valid")
    (f / "heldout").unlink()
    # A fold record whose test speakers include a valid speaker: the valid dir is refused.
    other = tmp_path / "fold2"
    split_data_dir(fold / "all", other, "lists", train_speakers=["s1", "s2"], valid_speakers=["s4"],
                   test_speakers=["s3"])
    meta = yaml.safe_load((other / "lists" / "fold.yaml").read_text())
    (other / "lists" / "fold.yaml").write_text(yaml.safe_dump({**meta, "test_speakers": ["s4"]}))
    with pytest.raises(EmotkError, match="speaker 's4' belongs to the test part"):
        check_search_sets(other / "lists" / "train", other / "lists" / "valid")
    with pytest.raises(EmotkError, match="different folds"):
        check_search_sets(f / "train", other / "lists" / "valid")
    with pytest.raises(EmotkError, match="same dir"):
        check_search_sets(f / "train", f / "train")
    with pytest.raises(EmotkError, match="named 'test'"):  # the CLI path refuses it too, before any trial
        tune(fold / "base.yaml", f / "train", f / "test", space(tmp_path / "s.yaml"), tmp_path / "exp", 1,
             overrides=BASE, log=quiet)
    assert not (tmp_path / "exp").exists()


def test_trials_are_saved_and_the_study_resumes_without_reading_the_test_fold(fold, tmp_path):
    exp = tmp_path / "exp"
    test_dir = str((fold / "folds" / "lists" / "test").resolve())
    test_wavs = {str(Path(p).resolve()) for p in
                 (fold / "folds" / "lists" / "test" / "wav.scp").read_text().split()[1::2]}
    OPENED.clear()
    RECORD["on"] = True
    try:
        best = run(fold, exp, 2, space(tmp_path / "s.yaml"))
    finally:
        RECORD["on"] = False
    opened = {str(Path(p).resolve()) for p in OPENED}
    assert any(p.startswith(str((fold / "folds" / "lists" / "valid").resolve())) for p in opened)  # the hook sees reads
    assert not [p for p in opened if p.startswith(test_dir)] and not opened & test_wavs
    assert sorted(p.name for p in exp.glob("trial-*")) == ["trial-000", "trial-001"]
    rows = (exp / "trials.tsv").read_text().splitlines()
    assert len(rows) == 3 and all("\tcomplete\t" in r for r in rows[1:])
    for t in exp.glob("trial-*"):
        info = yaml.safe_load((t / "trial.yaml").read_text())
        assert info["state"] == "complete"
        cfg = load_config(t / "config.yaml")  # the trial's config holds its parameters
        assert cfg["train"]["lr"] == info["params"]["train.lr"]
        assert cfg["model"]["params"]["hidden"] == info["params"]["model.params.hidden"]
        done = yaml.safe_load((t / "done").read_text())
        assert info["metric"] == "best_valid_ua" and info["value"] == pytest.approx(done["best_valid_ua"])
    values = {yaml.safe_load((t / "trial.yaml").read_text())["value"] for t in exp.glob("trial-*")}
    assert best["value"] == max(values)
    assert load_config(exp / "best_config.yaml")["train"]["lr"] == best["params"]["train.lr"]
    record = yaml.safe_load((exp / "tune.yaml").read_text())
    assert record["sets"]["fold"]["test_part_read"] is False and record["sets"]["fold"]["test_speakers"] == ["s4"]
    stamp = {t.name: (t / "checkpoints" / "last.pt").stat().st_mtime_ns for t in exp.glob("trial-*")}
    run(fold, exp, 3, space(tmp_path / "s.yaml"))  # one more trial; the first two are not run again
    assert sorted(p.name for p in exp.glob("trial-*")) == ["trial-000", "trial-001", "trial-002"]
    assert {t: (exp / t / "checkpoints" / "last.pt").stat().st_mtime_ns for t in stamp} == stamp
    study = optuna.load_study(study_name="emotk-tune", storage=f"sqlite:///{exp / 'study.db'}")
    assert len(study.trials) == 3
    run(fold, exp, 3, space(tmp_path / "s.yaml"))  # budget reached: nothing new
    assert len(optuna.load_study(study_name="emotk-tune", storage=f"sqlite:///{exp / 'study.db'}").trials) == 3
    run(fold, exp, 1, space(tmp_path / "s.yaml", lrs=(0.2,)))  # another space: a new study
    assert sorted(p.name for p in exp.glob("trial-*")) == ["trial-000"]


def test_a_trial_killed_mid_training_is_resumed_with_its_parameters(fold, tmp_path):
    exp, s = tmp_path / "exp", space(tmp_path / "s.yaml")
    f = fold / "folds" / "lists"
    code = ("import sys; from emotk.tuning import tune; "
            f"tune({str(fold / 'base.yaml')!r}, {str(f / 'train')!r}, {str(f / 'valid')!r}, {str(s)!r}, "
            f"{str(exp)!r}, 1, overrides={BASE!r}, log=lambda m: None)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "EMOTK_TEST_EXIT_AFTER_EPOCH": "1"},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and not (exp / "trial-000" / "done").exists()
    assert "epoch=1 " in (exp / "trial-000" / "train.log").read_text()
    params = yaml.safe_load((exp / "trial-000" / "trial.yaml").read_text())["params"]
    lines = []
    tune(fold / "base.yaml", f / "train", f / "valid", s, exp, 1, overrides=BASE, log=lines.append)
    assert any("trial 0 was interrupted" in m for m in lines)
    assert any("resuming after epoch 1" in m for m in lines)
    info = yaml.safe_load((exp / "trial-000" / "trial.yaml").read_text())
    assert info["state"] == "complete" and info["params"] == params
    assert sorted(p.name for p in exp.glob("trial-*")) == ["trial-000"]


def test_median_pruning_stops_a_trial_below_the_median(fold, tmp_path):
    exp = tmp_path / "exp"
    s = space(tmp_path / "s.yaml", pruner={"n_startup_trials": 1, "n_warmup_steps": 1}, lrs=(0.5, 0.0))
    exp.mkdir()
    study = optuna.create_study(study_name="emotk-tune", storage=f"sqlite:///{exp / 'study.db'}", direction="maximize")
    for lr in ("0.5", "0.0"):  # a learning model first, then one that cannot learn (lr 0)
        study.enqueue_trial({"train.lr": lr, "model.params.hidden": "[8]", "model.params.dropout": 0.0})
    run(fold, exp, 2, s)
    good = yaml.safe_load((exp / "trial-000" / "trial.yaml").read_text())
    bad = yaml.safe_load((exp / "trial-001" / "trial.yaml").read_text())
    assert good["state"] == "complete" and good["value"] > 0.9
    assert bad["state"] == "pruned" and "epoch 2" in bad["why"]  # after the warm-up epoch
    assert not (exp / "trial-001" / "done").exists()
    assert "epoch=3" not in (exp / "trial-001" / "train.log").read_text()


def test_bad_space_files_are_one_line_errors(fold, tmp_path):
    bad = tmp_path / "bad.yaml"
    for content, message in [({"params": {"lr": {"type": "float", "low": 0, "high": 1}}}, "dotted config key"),
                             ({"params": {"train.lr": {"type": "float", "low": 1, "high": 0}}}, "low <= high"),
                             ({"params": {"train.lr": {"type": "uniform"}}}, "type float, int or categorical"),
                             ({"params": {"train.lr": {"type": "float", "low": 0, "high": 1, "log": True}}}, "low > 0"),
                             ({"params": {"train.lr": {"type": "categorical", "choices": []}}}, "non-empty list"),
                             ({"params": {"train.lr": {"type": "float", "low": 0.1, "high": 1}}, "prune": 1},
                              "unknown key 'prune'")]:
        bad.write_text(yaml.safe_dump(content))
        with pytest.raises(EmotkError, match=message):
            read_space(bad)
    bad.write_text(yaml.safe_dump({"params": {"train.optimiser": {"type": "categorical", "choices": ["sgd"]}}}))
    with pytest.raises(EmotkError, match="params.train.optimiser = sgd: .*unknown config key"):
        run(fold, tmp_path / "exp", 1, bad)
