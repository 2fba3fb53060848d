"""Shared by the job-launcher tests (test_jobs.py: local/run_local.sh; test_slurm.py: local/slurm.sh)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def run_launcher(launcher: Path, env: dict, cwd: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run a launcher script (``bash launcher args...``) in ``cwd``."""
    return subprocess.run(["bash", str(launcher), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def counting_task(says: str) -> list[str]:
    """A task that counts its runs in runs.N, prints ``says``, and fails while the file fail.N exists."""
    return ["bash", "-c", f"echo run >> runs.JOB; echo {says}; [ ! -e fail.JOB ] || exit 3"]


def runs(d: Path, task: int) -> int:
    """How many times task ``task`` of a ``counting_task`` ran in ``d``."""
    p = d / f"runs.{task}"
    return len(p.read_text().splitlines()) if p.exists() else 0
