"""The local backend (Kaldi's ``run.pl``): the tasks as processes on this machine, at most K at once.

K is ``--max-jobs-run``, by default the number of cores this process may use; with ``--gpu N``
and no ``--max-jobs-run``, the number of GPUs ``nvidia-smi -L`` lists divided by N (the cores
when there is none).  ``--num-threads N`` sets each task's thread count, as under Slurm
(:func:`emotk.jobs.task.task_env`); ``--mem`` and ``--time`` mean nothing here and are ignored, so a
recipe's ``$cmd`` lines work with either backend.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from emotk.jobs.spec import JobSpec
from emotk.jobs.task import TaskResult, run_task


def _num_gpus() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def max_jobs(spec: JobSpec) -> int:
    if "max_jobs_run" in spec.options:
        return int(spec.options["max_jobs_run"])
    gpu = spec.options.get("gpu", "0")
    if gpu.isdigit() and int(gpu) > 0 and (n := _num_gpus()) > 0:
        return max(1, n // int(gpu))
    return len(os.sched_getaffinity(0))


def run(spec: JobSpec, tasks: list[int]) -> list[TaskResult]:
    """Run ``tasks``; on an exception (Ctrl-C, a kill) stop the running ones and start no more."""
    procs: dict[int, subprocess.Popen] = {}
    stopping = threading.Event()
    lock = threading.Lock()

    def one(task: int) -> TaskResult:
        if stopping.is_set():
            return TaskResult(task, None, "not started")

        def started(p: subprocess.Popen) -> None:
            with lock:
                procs[task] = p
                if stopping.is_set():
                    _kill(p)
        return TaskResult(task, run_task(spec, task, on_start=started))

    pool = ThreadPoolExecutor(max_workers=min(max_jobs(spec), len(tasks)) or 1)
    futures = [pool.submit(one, t) for t in tasks]
    try:
        pending = set(futures)
        while pending:  # short waits so that signals reach this thread
            _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
    except BaseException:
        stopping.set()
        with lock:
            for p in procs.values():
                _kill(p)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return [f.result() for f in futures]


def _kill(p: subprocess.Popen) -> None:
    """SIGTERM to the task's process group; SIGKILL if it is still there after 5 s."""
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
