"""The Slurm backend (Kaldi's ``slurm.pl``): the tasks as one array job, waited for by polling.

``sbatch --array=IDS%K`` submits the tasks still to run (K from ``--max-jobs-run``); each array
task runs ``python -m emotk.jobs.task SPEC TASK`` (:mod:`emotk.jobs.task`), which writes the task's
log and status file.  The launcher polls the status files and ``squeue`` (``sbatch --wait``
polls slowly, and ``sacct`` needs accounting, which many clusters and CI nodes lack); when the
job has left the queue, a task without a status never finished (cancelled, out of time or
memory, node failure) and is reported with the state ``squeue`` still knows.  Ctrl-C or a kill
of the launcher cancels the job (``scancel``).

Resource options map to sbatch options through a Kaldi ``slurm.conf`` (``--config FILE``, else
``$EMOTK_SLURM_CONF``, ``conf/slurm.conf`` in the current directory, the project's
``conf/slurm.conf``)::

    command sbatch --export=ALL        # the submit command and its fixed options
    option mem=* --mem-per-cpu $0      # --mem 4G  ->  --mem-per-cpu 4G
    option gpu=0                       # --gpu 0   ->  nothing
    default gpu=0                      # as if --gpu 0 were given
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import emotk
from emotk.errors import EmotkError, where
from emotk.fileio import write_text
from emotk.jobs.spec import JobSpec
from emotk.jobs.task import TaskResult, read_status

PROJECT_CONFIG = Path(emotk.__file__).resolve().parent / "conf" / "slurm.conf"
ACTIVE_STATES = "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED,REQUEUED,RESIZING,STOPPED,SIGNALING"


def find_config(spec: JobSpec) -> Path:
    if "config" in spec.options:
        return Path(spec.cwd, spec.options["config"])
    for c in (os.environ.get("EMOTK_SLURM_CONF"), Path(spec.cwd, "conf", "slurm.conf"), PROJECT_CONFIG):
        if c and Path(c).is_file():
            return Path(c)
    raise EmotkError(f"no Slurm config: give --config FILE (none at conf/slurm.conf or {PROJECT_CONFIG})")


def sbatch_command(config: Path, options: dict[str, str]) -> list[str]:
    """The submit command for ``options`` (``--mem 4G`` as {"mem": "4G"}) under a Kaldi slurm.conf."""
    try:
        lines = config.read_text().splitlines()
    except OSError as e:
        raise EmotkError(f"cannot read the Slurm config {config}: {e.strerror}") from None
    command, star, exact, defaults = None, {}, {}, {}
    for no, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split(None, 2)
        if not words:
            continue
        if words[0] == "command" and len(words) > 1:
            command = shlex.split(line.split("#", 1)[0])[1:]
        elif words[0] in ("option", "default") and len(words) > 1 and "=" in words[1]:
            opt, value = words[1].split("=", 1)
            args = shlex.split(words[2]) if len(words) > 2 else []
            if words[0] == "default":
                defaults[opt] = value
            elif value == "*":
                star[opt] = args
            else:
                exact[opt, value] = args
        else:
            raise EmotkError(f"{where(config, no)}: cannot parse {line.strip()!r} (command ..., option NAME=VALUE ..., default NAME=VALUE)")
    if command is None:
        raise EmotkError(f"{config}: no 'command sbatch ...' line")
    args = list(command)
    for opt, value in {**options, **{k: v for k, v in defaults.items() if k not in options}}.items():
        if opt in ("max_jobs_run", "config"):
            continue
        if (opt, value) in exact:
            args += exact[opt, value]
        elif opt in star:
            args += [a.replace("$0", value) for a in star[opt]]
        else:
            raise EmotkError(f"option --{opt.replace('_', '-')} {value} is not described in {config}")
    return args


def array_ids(tasks: list[int]) -> str:
    """1,2,3,5 -> '1-3,5'."""
    runs, start = [], tasks[0]
    for prev, cur in zip(tasks, tasks[1:] + [None]):
        if cur != prev + 1:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ",".join(runs)


def _slurm(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def submit(spec: JobSpec, tasks: list[int]) -> str:
    """Write the spec and batch script into q/, submit, return the job id."""
    if shutil.which("sbatch") is None:
        raise EmotkError("sbatch not found on PATH: install Slurm's client commands here, or use the local backend (EMOTK_BACKEND=local)")
    cmd = sbatch_command(find_config(spec), spec.options)
    q = spec.qdir
    spec_file, script = q / f"{spec.base}.json", q / f"{spec.base}.sh"
    write_text(spec_file, spec.to_json() + "\n")
    task_arg = '"${SLURM_ARRAY_TASK_ID:-%d}"' % spec.start
    write_text(script, "#!/bin/bash\n"
               f"# {spec.describe()}\n"
               f"cd {shlex.quote(spec.cwd)} || exit 1\n"
               f"exec {shlex.quote(sys.executable)} -m emotk.jobs.task {shlex.quote(str(spec_file))} {task_arg}\n")
    cmd += ["--parsable", "--job-name", spec.base]
    if spec.name:
        k = spec.options.get("max_jobs_run")
        cmd += ["--array", array_ids(tasks) + (f"%{k}" if k else ""), "--output", str(q / f"{spec.base}.%a.out")]
    else:
        cmd += ["--output", str(q / f"{spec.base}.out")]
    r = _slurm(cmd + [str(script)])
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
        raise EmotkError(f"sbatch failed: {msg} (command: {shlex.join(cmd)})")
    return r.stdout.strip().split(";")[0]


def in_queue(job_id: str) -> bool:
    """Whether any task of the job is still pending or running; an unknown job has left."""
    r = _slurm(["squeue", "--noheader", "--jobs", job_id, "--states", ACTIVE_STATES, "--format", "%i"])
    if r.returncode != 0:
        if "Invalid job id" in r.stderr:
            return False
        print(f"local/slurm.sh: warning: squeue failed ({r.stderr.strip()}); still waiting for job {job_id}",
              file=sys.stderr)
        return True
    return bool(r.stdout.strip())


def final_state(job_id: str, task: int | None) -> str:
    """Slurm's last word on a task (CANCELLED, TIMEOUT, OUT_OF_MEMORY, ...), while squeue still has it."""
    jid = f"{job_id}_{task}" if task is not None else job_id
    r = _slurm(["squeue", "--noheader", "--jobs", jid, "--states", "all", "--format", "%T %r"])
    return r.stdout.strip() if r.returncode == 0 else ""


def wait_for(spec: JobSpec, job_id: str, tasks: list[int], grace_s: float = 5.0) -> list[TaskResult]:
    """Wait until every task has a status file, or the job has left the queue without one.

    Status files are checked often (cheap); ``squeue`` is asked after 1 s, then less and less
    often up to every 5 s, as a busy controller would want.
    """
    delay, gone_since = 0.1, None
    squeue_every, next_squeue = 1.0, time.monotonic() + 1.0
    while True:
        status = {t: read_status(spec, t) for t in tasks}
        if all(status.values()):
            break
        now = time.monotonic()
        if gone_since is None and now >= next_squeue:
            squeue_every = min(squeue_every * 1.5, 5.0)
            next_squeue = now + squeue_every
            if not in_queue(job_id):
                gone_since = now
        if gone_since is not None and now - gone_since > grace_s:  # a shared file system may lag
            break
        time.sleep(delay)
        delay = min(delay * 1.3, 1.0)
    results = []
    for t in tasks:
        code = status[t]["code"] if status[t] is not None else None
        if code == 0:
            results.append(TaskResult(t, 0))
            continue
        state = final_state(job_id, t if spec.name else None)
        out = spec.qdir / (f"{spec.base}.{t}.out" if spec.name else f"{spec.base}.out")
        results.append(TaskResult(t, code, f"Slurm job {job_id}: {state or 'state unknown'}", other_log=out))
    return results


def cancel(job_id: str) -> None:
    _slurm(["scancel", job_id])


def run(spec: JobSpec, tasks: list[int]) -> list[TaskResult]:
    job_id = submit(spec, tasks)
    try:
        return wait_for(spec, job_id, tasks)
    except BaseException:
        cancel(job_id)
        print(f"local/slurm.sh: cancelled Slurm job {job_id}", file=sys.stderr)
        raise
