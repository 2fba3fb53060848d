"""Shared by the job-launcher tests (test_jobs.py: local/run_local.sh; test_slurm.py: local/slurm.sh) and
benchmarks/bench_scaling.py (a one-node Slurm cluster)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLURM_SKIP_EXIT = 3  # local/slurm_up.sh: Slurm cannot be installed here


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


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@contextlib.contextmanager
def slurm_cluster(slurm_dir: Path):
    """``(client env, "")`` of a one-node cluster (munged, slurmctld, slurmd) started by local/slurm_up.sh in
    ``slurm_dir`` on free ports, so it never touches a cluster already on the machine; ``(None, why)`` where
    Slurm cannot be installed. The daemons it started are stopped by their PIDs at the end."""
    ctld, slurmd = _free_ports(2)
    env = dict(os.environ, SLURM_DIR=str(slurm_dir), SLURMCTLD_PORT=str(ctld), SLURMD_PORT=str(slurmd))
    up = subprocess.run(["bash", str(ROOT / "local" / "slurm_up.sh")], env=env, capture_output=True, text=True,
                        timeout=600)
    try:
        if up.returncode == SLURM_SKIP_EXIT:
            yield None, up.stderr.strip()
            return
        if up.returncode != 0:
            raise RuntimeError(f"local/slurm_up.sh failed:\n{up.stdout}\n{up.stderr}")
        yield dict(os.environ, SLURM_CONF=str(slurm_dir / "etc" / "slurm.conf")), ""
    finally:
        subprocess.run(["bash", str(ROOT / "local" / "slurm_down.sh")], env=env, capture_output=True, timeout=60)
