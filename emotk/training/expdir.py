"""The experiment dir of a training run (CONVENTIONS section 3): reuse, redo or refuse, and env.txt.

A finished run (``done``) is reused only when its provenance record (``provenance/record.yaml``,
:mod:`emotk.training.provenance`) equals the requested one; otherwise it is trained again
(``on_mismatch="redo"``, the default, logging the first differing field) or refused with a
one-line error naming the run and the field (``"refuse"``).  ``--resume`` continues a run only
when the records match, under the same rule.  A run without a record (an older emotk) does not
match.

Tests stop a trainer at a checkpoint boundary with ``EMOTK_TEST_EXIT_AFTER_EPOCH=N``: the trainer
calls :func:`exit_if_test_epoch` right after writing ``last.pt`` of each epoch, and the process
exits with :data:`TEST_EXIT_CODE` after epoch N, as if killed there.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Callable

import yaml

import emotk
from emotk.errors import EmotkError
from emotk.training.provenance import RESUME_MAY_CHANGE, first_difference, read_record

__all__ = ["RUN_OUTPUTS", "RESUME_MAY_CHANGE", "ON_MISMATCH", "TEST_EXIT_ENV", "TEST_EXIT_CODE",
           "prepare_exp_dir", "env_text", "git_commit", "exit_if_test_epoch"]

# What ``--overwrite`` (or a redo) removes from an exp dir: everything a training run (and the
# commands that use its model) wrote there.  Anything else in the dir is left alone.
RUN_OUTPUTS = ("config.yaml", "env.txt", "train.log", "done", "provenance", "checkpoints", "model",
               "predictions", "scores", "plots")
ON_MISMATCH = ("redo", "refuse")
TEST_EXIT_ENV = "EMOTK_TEST_EXIT_AFTER_EPOCH"
TEST_EXIT_CODE = 86
LIBRARIES = ("torch", "numpy", "scikit-learn", "lhotse", "opensmile")


def clear_run(exp: Path) -> None:
    for name in RUN_OUTPUTS:
        p = exp / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _mismatch(exp: Path, record: dict) -> str | None:
    """The first field in which the run in ``exp`` differs from ``record``; None when it matches."""
    old = read_record(exp)
    if old is None:
        return "no provenance record (made by an older emotk)"
    return first_difference(old, record)


def prepare_exp_dir(exp: str | Path, cfg: dict, record: dict, *, resume: bool, overwrite: bool,
                    on_mismatch: str = "redo", log: Callable[[str], None] = print) -> bool:
    """Decide what to do with an existing exp dir; returns False when a matching run is already done.

    After True the caller trains: from scratch when ``checkpoints/last.pt`` is absent, else resuming.
    """
    exp = Path(exp)
    if on_mismatch not in ON_MISMATCH:
        raise EmotkError(f"--on-mismatch must be one of {', '.join(ON_MISMATCH)}, got {on_mismatch!r}")
    if overwrite:
        clear_run(exp)
        return True
    done = (exp / "done").is_file()
    started = (exp / "config.yaml").is_file() or (exp / "checkpoints").is_dir()
    if started and not done and not resume:
        raise EmotkError(f"{exp}: holds an unfinished training run; use --resume to continue it or --overwrite to start over")
    if done or started:
        diff = _mismatch(exp, record)
        if diff is None and done:
            log(f"{exp}: training already done on the requested data and config, skipping (use --overwrite to train again)")
            return False
        if diff is not None:
            what = "finished run" if done else "unfinished run"
            if on_mismatch == "refuse":
                raise EmotkError(f"{exp}: {what} differs from the request in {diff}; "
                                 f"use --on-mismatch redo or --overwrite to train again")
            log(f"{exp}: {what} differs from the request in {diff}; training again from scratch")
            clear_run(exp)
            return True
        _log_resume_changes(exp, cfg, log)
    # Temporary files of a killed run (atomic writes not yet renamed).
    for tmp in list(exp.glob(".*.tmp")) + list((exp / "checkpoints").glob(".*")):
        if tmp.is_dir():
            shutil.rmtree(tmp)
        else:
            tmp.unlink()
    return True


def _log_resume_changes(exp: Path, cfg: dict, log: Callable[[str], None]) -> None:
    if not (exp / "config.yaml").is_file():
        return
    old = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8")) or {}
    changed = [f"train.{k}: {old.get('train', {}).get(k)!r} -> {cfg['train'][k]!r}" for k in RESUME_MAY_CHANGE
               if old.get("train", {}).get(k) != cfg["train"][k]]
    if changed:
        log(f"{exp}: resuming with {', '.join(changed)}")


def exit_if_test_epoch(epoch: int) -> None:
    """Test hook: end the process after ``epoch`` when ``EMOTK_TEST_EXIT_AFTER_EPOCH`` names it.

    ``os._exit`` skips every cleanup, as a kill at that point would.
    """
    value = os.environ.get(TEST_EXIT_ENV)
    if value and value.strip() == str(epoch):
        os._exit(TEST_EXIT_CODE)


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def env_text(command: str) -> str:
    """env.txt: versions, commit, host, CPU and thread counts (bit-identity holds per machine and thread count)."""
    import torch

    lines = {
        "emotk": emotk.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        **{pkg: _version(pkg) for pkg in LIBRARIES},
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS", "unset"),
        "command": command,
    }
    return "".join(f"{k}: {v}\n" for k, v in lines.items())


def git_commit() -> str:
    """The commit of the emotk source tree, with ``+dirty`` for uncommitted changes; ``unknown`` outside git."""
    src = Path(emotk.__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")
