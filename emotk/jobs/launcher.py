"""The job launcher behind ``local/run_local.sh`` and ``local/slurm.sh`` (Kaldi's run.pl / slurm.pl):

    python -m emotk.jobs {local|slurm} [--mem 4G] [--gpu 1] [--num-threads N] [--max-jobs-run K]
                         [--time T] [--config slurm.conf] [JOB=1:N] LOGDIR/name.JOB.log COMMAND ... JOB ...

Runs the tasks not yet done (see :mod:`emotk.jobs.spec`), fails when any task fails, printing the
tail of the first failed task's log, and cancels what it started on Ctrl-C or a kill.
Imports nothing heavy: it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

from emotk.errors import EmotkError
from emotk.jobs import local, slurm
from emotk.jobs.spec import USAGE, JobSpec, parse_args
from emotk.jobs.task import TaskResult, is_done

BACKENDS = {"local": local.run, "slurm": slurm.run}
PROGS = {"local": "local/run_local.sh", "slurm": "local/slurm.sh"}
TAIL_LINES = 20


class Terminated(Exception):
    """SIGTERM or SIGHUP, raised in the main thread so the backend stops what it started."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def prepare_dirs(spec: JobSpec) -> None:
    """Create every task's log directory and q/; an unwritable one is a one-line error."""
    for d in sorted({p for t in spec.tasks for p in (spec.log_path(t).parent, spec.status_path(t).parent)}):
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=d)  # a unique name: launchers may share d
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise EmotkError(f"cannot write the log directory {d}: {e.strerror}") from None


def show_tail(prog: str, path: Path, name: str | Path) -> None:
    """The last lines of a log on stderr; nothing for a missing or empty one."""
    try:
        lines = path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
    except OSError:
        return
    if lines:
        print(f"{prog}: last lines of {name}:", file=sys.stderr)
        for line in lines:
            print(f"  | {line}", file=sys.stderr)


def report(prog: str, spec: JobSpec, failed: list[TaskResult]) -> None:
    """Name every failed task; show the last lines of the first one's log (and of Slurm's output for it)."""
    for r in failed:
        what = f"exit code {r.code}" if r.code is not None else "did not finish"
        note = f"; {r.note}" if r.note else ""
        print(f"{prog}: task {r.task} failed ({what}), log {spec.log_name(r.task)}{note}", file=sys.stderr)
    first = failed[0]
    show_tail(prog, spec.log_path(first.task), spec.log_name(first.task))
    if first.other_log is not None:
        show_tail(prog, first.other_log, first.other_log)
    n = len(spec.tasks)
    print(f"{prog}: {len(failed)} of {n} task(s) failed; re-run the same command to run only the unfinished ones",
          file=sys.stderr)


def clear(spec: JobSpec) -> None:
    """After a call that succeeded as a whole: drop the status files (and q/ when that empties it)."""
    for t in spec.tasks:
        spec.status_path(t).unlink(missing_ok=True)
    for f in spec.qdir.glob(f"{spec.base}*.out"):
        if f.stat().st_size == 0:
            f.unlink()
    (spec.qdir / f"{spec.base}.json").unlink(missing_ok=True)
    for d in {spec.status_path(t).parent for t in spec.tasks}:
        try:
            d.rmdir()
        except OSError:
            pass


def launch(backend: str, args: list[str]) -> int:
    prog = PROGS[backend]
    spec = parse_args(args)
    prepare_dirs(spec)
    todo = [t for t in spec.tasks if not is_done(spec, t)]
    if len(todo) < len(spec.tasks):
        print(f"{prog}: {len(spec.tasks) - len(todo)} of {len(spec.tasks)} task(s) already done, running "
              f"{len(todo)}: {spec.describe()}", file=sys.stderr)
    for t in todo:  # a stale failure must not pass for this run's
        spec.status_path(t).unlink(missing_ok=True)
    results = BACKENDS[backend](spec, todo) if todo else []
    failed = [r for r in results if r.code != 0]
    if failed:
        report(prog, spec, failed)
        return 1
    clear(spec)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in BACKENDS or argv[1:2] in (["--help"], ["-h"]):
        print(f"usage: python -m emotk.jobs {{{'|'.join(BACKENDS)}}} {USAGE}\n{__doc__}", file=sys.stderr)
        return 0 if argv[1:2] in (["--help"], ["-h"]) else 1
    backend, prog = argv[0], PROGS[argv[0]]
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where the caller ignored it (cmd &)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _raise_terminated)
    try:
        return launch(backend, argv[1:])
    except EmotkError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Terminated as e:
        print(f"{prog}: terminated by {e}", file=sys.stderr)
        return 128 + e.signum
