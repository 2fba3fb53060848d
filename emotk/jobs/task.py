"""Run one task of a launcher call: the log with its header and footer, and the status file.

Both backends run tasks through :func:`run_task`: the local one in threads, the Slurm one in each
array task's batch script (``python -m emotk.jobs.task SPEC.json TASK``), so a log looks the
same wherever the task ran::

    # emotk extract-fbank data/all --nj 2 --job 1
    # Running on node07
    # Started at 2024-05-01T10:00:00
    # Slurm job 1234, array task 1
    ...the command's stdout and stderr...
    # Accounting: time=3.21 s
    # Ended (code 0) at 2024-05-01T10:00:03

A task runs with ``--num-threads`` threads (default 1, Kaldi's rule) under both backends: the
thread variables of OpenMP, MKL and OpenBLAS are set to it, so torch and numpy use as many cores
as Slurm allocated (``--cpus-per-task``), not every core of the node, and a task computes with the
same thread count, hence the same floating-point results, wherever it runs.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from emotk.fileio import write_text
from emotk.jobs.spec import JobSpec


@dataclass
class TaskResult:
    """How a task ended: its exit code, or None when it never reported one (killed, cancelled)."""

    task: int
    code: int | None
    note: str = ""              # what the backend knows besides the log (e.g. Slurm's state)
    other_log: Path | None = None   # the backend's own output for the task (Slurm's --output file)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def task_env(spec: JobSpec) -> dict[str, str]:
    """The caller's environment with the task's thread count (``--num-threads``, default 1)."""
    threads = spec.options.get("num_threads", "1")
    return {**os.environ, **{v: threads for v in THREAD_VARIABLES}}


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def read_status(spec: JobSpec, task: int) -> dict | None:
    """The task's status record from this command line, or None (never ran, killed, or another command)."""
    try:
        st = json.loads(spec.status_path(task).read_text())
    except (OSError, ValueError):
        return None
    return st if st.get("key") == spec.key(task) else None


def is_done(spec: JobSpec, task: int) -> bool:
    st = read_status(spec, task)
    return st is not None and st.get("code") == 0


def run_task(spec: JobSpec, task: int, on_start: Callable[[subprocess.Popen], None] | None = None) -> int:
    """Run task ``task`` with its output in its log; write its status; return its exit code.

    ``on_start`` receives the process (the local backend keeps it to kill it on Ctrl-C).  The
    command runs in its own session so that it and its children can be signalled together.
    """
    argv, log = spec.command(task), spec.log_path(task)
    spec.status_path(task).unlink(missing_ok=True)
    started, t0 = _now(), time.monotonic()
    with open(log, "w", encoding="utf-8") as f:
        f.write(f"# {shlex.join(argv)}\n# Running on {socket.gethostname()}\n# Started at {started}\n")
        if os.environ.get("SLURM_JOB_ID"):
            f.write(f"# Slurm job {os.environ.get('SLURM_ARRAY_JOB_ID') or os.environ['SLURM_JOB_ID']}"
                    + (f", array task {os.environ['SLURM_ARRAY_TASK_ID']}" if "SLURM_ARRAY_TASK_ID" in os.environ else "")
                    + "\n")
        f.flush()
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 cwd=spec.cwd, env=task_env(spec), start_new_session=True)
        except OSError as e:
            f.write(f"cannot run {argv[0]}: {e.strerror}\n")
            code = 127
        else:
            if on_start is not None:
                on_start(p)
            code = p.wait()
            if code < 0:  # killed by a signal: the shell's convention
                code = 128 - code
        ended = _now()
        f.write(f"# Accounting: time={time.monotonic() - t0:.2f} s\n# Ended (code {code}) at {ended}\n")
    write_text(spec.status_path(task), json.dumps({"key": spec.key(task), "code": code, "host": socket.gethostname(),
                                                  "started": started, "ended": ended}) + "\n")
    return code


def main(argv: list[str] | None = None) -> int:
    """``python -m emotk.jobs.task SPEC.json TASK``: what each Slurm array task runs.

    SIGTERM (scancel, a time limit) is passed on to the command's process group, so that the task
    still ends with a log footer and a status (code 143) unless Slurm has to SIGKILL it.
    """
    spec_file, task = argv if argv is not None else sys.argv[1:]
    spec = JobSpec.from_json(Path(spec_file).read_text())
    child: list[subprocess.Popen] = []

    def forward(signum, frame):
        for p in child:
            try:
                os.killpg(p.pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    return 0 if run_task(spec, int(task), on_start=child.append) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
