"""Extraction scaling with --nj: wall time of ``emotk extract-fbank`` split into N jobs, per job backend.

    python benchmarks/bench_scaling.py [--minutes 30] [--nj 1,2,4] [--repeats 2] [--no-slurm] [--no-write]

On one corpus (3 s utterances at 16 kHz, bench_fbank's generator), fbank40, each run on a fresh copy
of the data dir, the wall time of the whole call until feats.scp is merged, for N jobs:
  - ``emotk extract-fbank --nj N DATA``: N worker processes inside one emotk process;
  - ``local/run_local.sh JOB=1:N LOG emotk extract-fbank --nj N --job JOB DATA``: the local backend;
  - ``local/slurm.sh JOB=1:N ...``: the Slurm backend, one array job on a one-node cluster brought up
    for the run with local/slurm_up.sh (free ports, a temporary SLURM_DIR, as tests/test_slurm.py's
    fixture does) and stopped by its PIDs with local/slurm_down.sh. Skipped, and said so, where
    Slurm cannot be installed (slurm_up.sh exit code 3) or with --no-slurm.
Speed-up is against N = 1 of the same backend; the ideal is min(N, CPUs). The fastest of
``--repeats`` interleaved runs counts. Results replace the "## Extraction scaling (--nj)" section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench_common import EMOTK, publish, section_head  # noqa: E402
from bench_fbank import FBANK40, SECONDS, fresh_copy, make_corpus  # noqa: E402
from tests.launchers import slurm_cluster  # noqa: E402

HEADING = "## Extraction scaling (--nj)"


def timed(cmd: list, env: dict, cwd: Path) -> float:
    start = time.perf_counter()
    r = subprocess.run([str(a) for a in cmd], env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return wall


def command(backend: str, nj: int, data: Path) -> list:
    extract = ["extract-fbank", "--config", FBANK40, "--nj", nj]
    if backend == "emotk":
        return [*EMOTK, *extract, data]
    launcher = ROOT / "local" / ("run_local.sh" if backend == "local" else "slurm.sh")
    return ["bash", launcher, f"JOB=1:{nj}", data / "log" / "fbank.JOB.log", "emotk", *extract, "--job", "JOB", data]


LABELS = {"emotk": "`emotk extract-fbank --nj N` (worker processes)",
          "local": "local/run_local.sh JOB=1:N (local backend)",
          "slurm": "local/slurm.sh JOB=1:N (Slurm array job, one node)"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30, help="corpus size in minutes of audio")
    p.add_argument("--nj", default="1,2,4", help="job counts")
    p.add_argument("--repeats", type=int, default=2, help="interleaved runs; the fastest counts")
    p.add_argument("--no-slurm", action="store_true", help="skip the Slurm backend")
    p.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    args = p.parse_args()
    njs = [int(n) for n in args.nj.split(",")]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", EMOTK_PYTHON=sys.executable)
    load_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench_scaling."))
    best: dict[tuple[str, int], float] = {}
    slurm_note = "skipped (--no-slurm)" if args.no_slurm else ""
    try:
        n = round(args.minutes * 60 / SECONDS)
        data = make_corpus(tmp / "c", n, seed=n)
        with contextlib.ExitStack() as stack:
            backends = {"emotk": env, "local": env}
            if not args.no_slurm:
                slurm_env, why = stack.enter_context(slurm_cluster(tmp / "slurm"))
                if slurm_env is None:
                    slurm_note = f"skipped: {why}"
                else:
                    backends["slurm"] = dict(slurm_env, PATH=env["PATH"], EMOTK_PYTHON=sys.executable)
            for r in range(args.repeats):
                for backend, e in backends.items():
                    for nj in njs:
                        copy = fresh_copy(data, tmp / f"run_{backend}_{nj}_{r}")
                        wall = timed(command(backend, nj, copy), e, tmp)
                        if not (copy / "feats.scp").is_file():
                            raise SystemExit(f"{backend} --nj {nj}: no feats.scp after the call")
                        shutil.rmtree(copy)
                        best[backend, nj] = min(best.get((backend, nj), float("inf")), wall)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_end = os.getloadavg()

    cpus = os.cpu_count() or 1
    cmd = "python benchmarks/bench_scaling.py" + (f" --minutes {args.minutes:g}" if args.minutes != 30 else "") + \
        (f" --nj {args.nj}" if args.nj != "1,2,4" else "") + (f" --repeats {args.repeats}" if args.repeats != 2 else "")
    lines = [*section_head(HEADING, load_start[0], load_end[0], "fbank40", cmd),
             f"{args.minutes:g} min of audio ({n} utterances x {SECONDS:g} s, 16 kHz); wall seconds of the whole call "
             f"until feats.scp is merged, fastest of {args.repeats} interleaved runs; speed-up against N = 1 of the "
             f"same backend (ideal: min(N, {cpus} CPUs)). Each job is single threaded.", "",
             "| backend | " + " | ".join(f"N={nj}: wall s | speed-up" for nj in njs) + " |",
             "|---|" + "---:|" * (2 * len(njs))]
    for backend in ("emotk", "local", "slurm"):
        if (backend, njs[0]) not in best:
            continue
        cells = []
        for nj in njs:
            wall = best[backend, nj]
            cells += [f"{wall:.1f}", f"{best[backend, njs[0]] / wall:.2f}x"]
        lines.append(f"| {LABELS[backend]} | " + " | ".join(cells) + " |")
    if slurm_note:
        lines += ["", f"Slurm backend: {slurm_note}."]
    publish(HEADING, lines, not args.no_write)


if __name__ == "__main__":
    main()
