"""A job launcher call in Kaldi's convention, parsed:

    LAUNCHER [--opt VALUE ...] [JOB=1:N] LOGFILE COMMAND ARG...

``JOB`` (any identifier) is replaced by the task index in LOGFILE and in every argument, as
Kaldi's ``run.pl`` / ``slurm.pl`` do.  Arguments are passed to the command as they are: no
shell evaluates them, so a pipe needs an explicit ``bash -c '...'``.

Book-keeping lives in a ``q/`` directory beside the logs (Kaldi's rule: ``.../log/q`` becomes
``.../q``): per task a status file ``q/<log name>.status`` holding the exit code and a key of the
exact command line and working directory.  A task whose status says exit code 0 under the same
key is done, and a re-run of the same call skips it; a call that succeeds as a whole removes its
status files, so the next call runs every task again (emotk commands skip up-to-date work
themselves, and a launcher must not vouch for outputs made from other inputs).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from emotk.errors import EmotkError

USAGE = "[--opt VALUE ...] [JOB=1:N] LOGFILE COMMAND ARG..."
_RANGE = re.compile(r"^([A-Za-z_]\w*)=(\d+)(?::(\d+))?$")


@dataclass
class JobSpec:
    """One launcher call: the command template, its tasks and the launcher options."""

    argv: list[str]                  # command template, JOB not yet replaced
    logfile: str                     # log template, as given
    cwd: str                         # the caller's directory: relative paths are resolved there
    name: str | None = None          # the JOB placeholder; None without JOB=
    start: int = 1
    end: int = 1
    options: dict[str, str] = field(default_factory=dict)   # --mem 4G -> {"mem": "4G"}

    @property
    def tasks(self) -> list[int]:
        return list(range(self.start, self.end + 1))

    def _sub(self, s: str, task: int) -> str:
        return s.replace(self.name, str(task)) if self.name else s

    def command(self, task: int) -> list[str]:
        return [self._sub(a, task) for a in self.argv]

    def log_name(self, task: int) -> str:
        """The task's log as the caller named it (relative to ``cwd`` unless absolute)."""
        return self._sub(self.logfile, task)

    def log_path(self, task: int) -> Path:
        return Path(self.cwd, self.log_name(task))

    def status_path(self, task: int) -> Path:
        log = self.log_path(task)
        return queue_dir(log.parent) / f"{log.name}.status"

    def key(self, task: int) -> str:
        """What a done marker must match: the exact command line in the exact directory."""
        return hashlib.sha256(json.dumps([self.cwd, self.command(task)]).encode()).hexdigest()

    @property
    def base(self) -> str:
        """The log name without the JOB part and extension: names the job and its files in ``q/``."""
        name = Path(self.logfile).name
        if self.name:
            name = re.sub(r"\.?" + re.escape(self.name), "", name)
        return re.sub(r"(?<=.)\.[A-Za-z]{1,5}$", "", name)

    @property
    def qdir(self) -> Path:
        return queue_dir(self.log_path(self.start).parent)

    def to_json(self) -> str:
        return json.dumps({"argv": self.argv, "logfile": self.logfile, "cwd": self.cwd, "name": self.name,
                           "start": self.start, "end": self.end, "options": self.options}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "JobSpec":
        return cls(**json.loads(text))

    def describe(self) -> str:
        rng = f"{self.name}={self.start}:{self.end} " if self.name else ""
        return f"{rng}{self.logfile} {shlex.join(self.argv)}"


def queue_dir(log_dir: Path) -> Path:
    return log_dir.parent / "q" if log_dir.name in ("log", "LOG") else log_dir / "q"


def parse_args(args: list[str], cwd: str | None = None) -> JobSpec:
    """Parse a launcher command line; options and ``JOB=`` may come in any order before LOGFILE."""
    options: dict[str, str] = {}
    name, start, end = None, 1, 1
    i = 0
    while i < len(args):
        a = args[i]
        m = _RANGE.match(a)
        if m:
            name, start = m.group(1), int(m.group(2))
            end = int(m.group(3)) if m.group(3) is not None else start
            if start < 1 or end < start:
                raise EmotkError(f"invalid job range {a}: need {name}=FIRST:LAST with 1 <= FIRST <= LAST")
            i += 1
        elif a.startswith("--") and len(a) > 2:
            opt, eq, value = a[2:].partition("=")
            if not eq:
                if i + 1 >= len(args):
                    raise EmotkError(f"option {a} needs a value")
                value = args[i + 1]
                i += 1
            options[opt.replace("-", "_")] = value
            i += 1
        elif a.startswith("-") and len(a) > 1:
            raise EmotkError(f"unknown option {a}: options are --name VALUE (usage: {USAGE})")
        else:
            break
    rest = args[i:]
    if len(rest) < 2:
        raise EmotkError(f"need a log file and a command (usage: {USAGE})")
    logfile, argv = rest[0], rest[1:]
    if name and end > start and name not in logfile:
        raise EmotkError(f"{end - start + 1} tasks would share the log file {logfile}: put {name} in its name")
    for opt in ("max_jobs_run", "num_threads"):
        v = options.get(opt)
        if v is not None and (not v.isdigit() or int(v) < 1):
            raise EmotkError(f"--{opt.replace('_', '-')} must be a positive integer, got {v!r}")
    return JobSpec(argv=argv, logfile=logfile, cwd=cwd or os.getcwd(), name=name, start=start, end=end,
                   options=options)
