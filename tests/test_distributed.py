"""Data-parallel training: ``emotk train`` under torchrun with 2 CPU processes (gloo) against one process.

The model is an LDNN without dropout or BatchNorm and the classes are balanced (equal class
weights), so the 2-process run computes the same gradient as the 1-process run at every step,
up to the order of float32 sums (emotk.training.distributed says what is exact). The batch size
(5 for 36 training utterances) makes parts of 3 and 2 examples and a last batch of one, where
rank 1 runs a weightless stand-in.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from emotk.errors import EmotkError
from emotk.training import distributed
from emotk.training.distributed import TEST_DUMP_ENV, split_batch
from emotk.training.expdir import TEST_EXIT_CODE, TEST_EXIT_ENV
from tests.toydata import write_feature_dir

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EPOCHS = 4
# How far the 2-process loss curve may be from the 1-process one (relative), derived: a step's
# gradient differs only by float32 rounding in the order of its sums (the all-reduce adds two
# partial gradients where one process adds all terms at once), a relative error of a few
# eps32 = 1.2e-7 per sum of up to 5 examples. Adam's update divides the gradient by its running
# RMS, so a parameter moves by up to lr per step whatever the gradient's size: a relative
# gradient error d changes a step by at most d * lr, and these add up over the 8 steps of an
# epoch and the 4 epochs, 32 steps, to about 32 * 4 * 1.2e-7 = 1.5e-5 of the weights' change. The
# losses depend smoothly on the weights (no BatchNorm, no dropout, no argmax), so they move by the
# same relative amount: 3e-5 allows twice that.
RTOL = 3e-5
TRAIN_ARGS = ["--config", str(ROOT / "conf" / "model" / "ldnn_small.yaml"),
              "--set", "model.params.lstm_size=8", "--set", "model.params.fc_sizes=[8,8]",
              "--set", "model.params.dropout=0.0", "--set", "inputs.feats.norm=none",
              "--set", "inputs.feats.splice=[0,0]", "--set", "train.max_frames=40", "--set", "train.batch_size=5",
              "--set", f"train.epochs={EPOCHS}", "--set", f"train.patience={EPOCHS}", "--set", "train.num_threads=1"]
LOG_LINE = re.compile(r"epoch=(\d+) train_loss=(\S+) valid_loss=(\S+) valid_\w+?=(\S+)")


def env(**extra) -> dict:
    return dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", OMP_NUM_THREADS="1", **extra)


def emotk_train(data: dict, exp: Path, *extra: str, nproc: int = 0, config: list[str] = TRAIN_ARGS,
                **env_extra) -> subprocess.CompletedProcess:
    """``emotk train`` alone (nproc 0) or under ``torchrun --standalone --nproc_per_node nproc``."""
    args = ["train", "--train", str(data["train"]), "--valid", str(data["valid"]), "--exp", str(exp), *config, *extra]
    launcher = [str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={nproc}", "--no-python"] if nproc else []
    return subprocess.run([*launcher, str(BIN / "emotk"), *args], capture_output=True, text=True, env=env(**env_extra),
                          cwd=exp.parent, timeout=600)


def curve(exp: Path) -> np.ndarray:
    """``[epoch, train_loss, valid_loss, valid_ua]`` per epoch, at full precision (train.log rounds to 6 decimals)."""
    history = torch.load(exp / "checkpoints" / "last.pt", weights_only=True)["history"]
    rows = np.array([[h["epoch"], h["train_loss"], h["valid_loss"], h["valid_metric"]] for h in history])
    logged = np.array([[float(v) for v in LOG_LINE.match(line).groups()]
                       for line in (exp / "train.log").read_text().splitlines()])
    np.testing.assert_allclose(logged, rows, rtol=0, atol=5e-7)   # train.log is the checkpoint's history
    return rows


def files(exp: Path) -> list[str]:
    return sorted(str(p.relative_to(exp)) for p in exp.rglob("*"))


def model_state(path: Path) -> dict:
    ck = torch.load(path, weights_only=True)
    return ck["model"] if "model" in ck else ck


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {"train": write_feature_dir(root / "train", spks=("s1", "s2", "s3"), seed=1),   # 36 utterances, balanced
            "valid": write_feature_dir(root / "valid", spks=("s4",), seed=2)}


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """One run in one process and one under torchrun with 2 processes, each rank saving its final weights."""
    root = tmp_path_factory.mktemp("runs")
    (root / "one").mkdir()
    (root / "two").mkdir()
    one = emotk_train(data, root / "one" / "exp")
    assert one.returncode == 0, one.stderr
    two = emotk_train(data, root / "two" / "exp", nproc=2, **{TEST_DUMP_ENV: str(root / "dump")})
    assert two.returncode == 0, two.stderr
    return {"root": root, "one": root / "one" / "exp", "two": root / "two" / "exp", "two_stderr": two.stderr}


# Splitting a batch -------------------------------------------------------------------------------

@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_parts_cover_the_batch_and_their_weights_give_its_mean(world_size):
    rng = np.random.default_rng(0)
    for size in range(1, 9):
        batch = list(range(10, 10 + size))
        shares = [split_batch(batch, r, world_size) for r in range(world_size)]
        assert [i for s in shares if s.count for i in s.examples] == batch   # contiguous, in order, no overlap
        assert max(s.count for s in shares) - min(s.count for s in shares) <= 1
        assert all(len(s.examples) == max(s.count, 1) for s in shares)      # an empty part runs one example
        # DDP averages the ranks' gradients: sum_r scale_r * mean(part_r) / N must be the batch mean
        values = dict(zip(batch, rng.normal(size=size)))
        averaged = sum(s.scale * np.mean([values[i] for i in s.examples]) for s in shares) / world_size
        assert averaged == pytest.approx(np.mean(list(values.values())), rel=1e-12)
        assert all(s.scale == 0 for s in shares if s.count == 0)


def test_one_process_context_and_torchrun_variables(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = distributed.context("cpu")
    assert (ctx.world_size, ctx.rank, ctx.is_main, ctx.distributed) == (1, 0, True, False)
    assert ctx.shares([[4, 5, 6]]) == [(([4, 5, 6]), 3, 1.0)] and ctx.sum(2.5) == 2.5 and ctx.on_main(lambda: 7) == 7
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(EmotkError, match="WORLD_SIZE=2 but MASTER_ADDR is not set: start distributed training with torchrun"):
        distributed.context("cpu")
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(EmotkError, match="RANK='one'"):
        distributed.context("cpu")


# Two processes against one ----------------------------------------------------------------------

def test_ranks_end_with_identical_weights_the_saved_ones(runs):
    dump = runs["root"] / "dump"
    assert sorted(p.name for p in dump.iterdir()) == ["rank0.pt", "rank1.pt"]
    rank0, rank1 = model_state(dump / "rank0.pt"), model_state(dump / "rank1.pt")
    assert same_weights(rank0, rank1)
    assert same_weights(rank0, model_state(runs["two"] / "checkpoints" / "last.pt"))


def test_loss_curve_matches_one_process(runs):
    one, two = curve(runs["one"]), curve(runs["two"])
    assert one.shape == two.shape == (EPOCHS, 4)
    assert np.array_equal(one[:, 0], two[:, 0])
    np.testing.assert_allclose(two[:, 1:3], one[:, 1:3], rtol=RTOL, atol=0)   # train and valid loss
    assert np.array_equal(one[:, 3], two[:, 3])                              # valid UA: the same decisions
    a, b = model_state(runs["one"] / "checkpoints" / "last.pt"), model_state(runs["two"] / "checkpoints" / "last.pt")
    for k in a:
        np.testing.assert_allclose(b[k].numpy(), a[k].numpy(), rtol=0, atol=RTOL * max(1.0, float(a[k].abs().max())))
    assert yaml.safe_load((runs["one"] / "done").read_text()) == yaml.safe_load((runs["two"] / "done").read_text())


def test_only_rank_zero_writes_and_logs(runs):
    assert files(runs["two"]) == files(runs["one"])
    assert sorted(p.name for p in runs["two"].parent.iterdir()) == ["exp"]   # nothing beside the exp dir
    for name in ("config.yaml", "provenance/record.yaml"):
        assert (runs["two"] / name).read_text() == (runs["one"] / name).read_text()
    err = runs["two_stderr"]
    for epoch in range(1, EPOCHS + 1):
        assert len(re.findall(rf"^emotk: epoch={epoch} ", err, re.M)) == 1, err
    assert len(re.findall(r"^emotk: train: 36 utterances", err, re.M)) == 1


def test_killed_and_resumed_under_torchrun_ends_with_the_same_weights(runs, data, tmp_path):
    exp = tmp_path / "exp"
    killed = emotk_train(data, exp, nproc=2, **{TEST_EXIT_ENV: "2"})
    assert killed.returncode != 0 and f"exitcode  : {TEST_EXIT_CODE}" in killed.stderr, killed.stderr
    assert torch.load(exp / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2
    assert not (exp / "done").exists()
    refused = emotk_train(data, exp, nproc=2)   # an error on rank 0 ends every rank and is said once
    assert refused.returncode != 0
    assert len(re.findall(r"^emotk: error: .*holds an unfinished training run; use --resume", refused.stderr, re.M)) == 1
    resumed = emotk_train(data, exp, "--resume", nproc=2)
    assert resumed.returncode == 0, resumed.stderr
    assert len(re.findall(r"resuming after epoch 2 ", resumed.stderr)) == 1
    assert same_weights(model_state(exp / "checkpoints" / "last.pt"), model_state(runs["two"] / "checkpoints" / "last.pt"))
    assert np.array_equal(curve(exp)[:, 1:], curve(runs["two"])[:, 1:])


def test_heads_trained_one_at_a_time_under_torchrun(data, tmp_path):
    """train.head_order random: a step's loss uses one head, so the other head's layers get no gradient
    in it (DDP must look for unused parameters); both ranks still end with the same weights."""
    cfg = tmp_path / "split_mlp.yaml"
    cfg.write_text("model: {name: split_mlp, params: {channels: [4], kernels: [3], pools: [2], hidden: [8], dropout: 0.0}}\n"
                   "inputs: {feats: {kind: feats, norm: none}}\n"
                   "heads: {emotion: {kind: class, labels: utt2emo}, level: {kind: regression, labels: utt2level, loss: mse}}\n"
                   "train: {head_order: random, epochs: 2, patience: 2, batch_size: 5, num_threads: 1}\n")
    exp = tmp_path / "exp"
    r = emotk_train(data, exp, nproc=2, config=["--config", str(cfg)], **{TEST_DUMP_ENV: str(tmp_path / "dump")})
    assert r.returncode == 0, r.stderr
    rank0, rank1 = model_state(tmp_path / "dump" / "rank0.pt"), model_state(tmp_path / "dump" / "rank1.pt")
    assert same_weights(rank0, rank1) and same_weights(rank0, model_state(exp / "checkpoints" / "last.pt"))
    assert len(curve(exp)) == 2


# Device and mixed precision on this machine ------------------------------------------------------

def test_device_and_amp_options(data, tmp_path):
    fast = ["--set", "train.epochs=1"]
    r = emotk_train(data, tmp_path / "amp", *fast, "--amp", "--device", "auto")
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load((tmp_path / "amp" / "config.yaml").read_text())
    assert cfg["train"]["amp"] is True and cfg["train"]["device"] == "auto"
    ignored = "train.amp ignored: mixed precision is used on CUDA only" in r.stderr
    assert ignored == (not torch.cuda.is_available())
    r = emotk_train(data, tmp_path / "cuda", *fast, "--device", "cuda")
    if torch.cuda.is_available():
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 1 and r.stderr.splitlines() == [
            "emotk: error: device 'cuda' requested but CUDA is not available (use 'auto' or 'cpu')"]
        assert not (tmp_path / "cuda").exists()
    r = emotk_train(data, tmp_path / "bad", *fast, "--device", "tpu")
    assert r.returncode == 1 and "train.device" in r.stderr and len(r.stderr.splitlines()) == 1
