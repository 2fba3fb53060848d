"""Shared by the benchmark scripts: machine description, whole-process timing and BENCHMARKS.md
section replacement."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
# The emotk command line, run as a whole process with this interpreter.
EMOTK = [sys.executable, "-c", "from emotk.cli import main; main()"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def replace_section(path: Path, heading: str, text: str) -> None:
    """Replace the section starting at ``heading`` (up to the next ``## `` heading) or append it;
    other sections are kept. ``text`` starts with the heading line."""
    old = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + text.rstrip("\n") + "\n" + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    path.write_text(new.rstrip("\n") + "\n", encoding="utf-8")


def section_head(heading: str, load_start: float, load_end: float, libraries: str, command: str) -> list[str]:
    """A section's first lines: the heading; date, CPUs, Python and ``libraries`` (e.g. ``"torch 2.3"``)
    and the load averages around the runs; the command that reproduces it."""
    return [heading, "",
            f"{datetime.date.today().isoformat()}; {os.cpu_count()} CPUs ({cpu_name()}); Python "
            f"{platform.python_version()}, {libraries}; load average {load_start:.1f} at start, {load_end:.1f} at end "
            "(other jobs shared the machine: compare rows of one run, not runs).", "",
            f"Reproduce: `{command}`", ""]


def run_process(cmd: list) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, the process and every worker it waited for) of one command;
    a failing command ends the benchmark with its stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    r = subprocess.run([str(a) for a in cmd], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# Prepended to a ``python -c`` script: at exit it prints the process's own peak RSS. Not ru_maxrss from
# wait4: on Linux that also counts the parent's RSS at fork time (exec carries the old image's high-water
# mark over), and a benchmark parent that imported torch is 250 MB.
_PEAK_HOOK = ("import atexit as _atexit, sys as _sys\n"
              "_atexit.register(lambda: print('VmHWM_kB', open('/proc/self/status').read().split('VmHWM:')[1].split()[0], "
              "file=_sys.stderr))\n")


def run_python(code: str, *args, env: dict | None = None) -> dict:
    """Run ``python -c code args`` as a whole process (imports counted): ``{"wall", "cpu", "peak_mb"}``,
    seconds and MB; CPU counts the process and the workers it waited for, peak memory the process alone."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _PEAK_HOOK + code, *map(str, args)], capture_output=True, text=True,
                       env=env)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"python -c ... {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = [line.split()[1] for line in r.stderr.splitlines() if line.startswith("VmHWM_kB ")]
    return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "peak_mb": int(peak[-1]) / 1024, "stdout": r.stdout}


def publish(heading: str, lines: list[str], write: bool, path: Path = BENCHMARKS_MD) -> None:
    """Print the section (``lines``, the heading first) and, with ``write``, put it into ``path``."""
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        replace_section(path, heading, text)
