#!/usr/bin/env bash
# Local job launcher, Kaldi's run.pl convention (the logic is in emotk/jobs/):
#   local/run_local.sh [--max-jobs-run K] [--mem 4G --gpu 1 --num-threads N --time T] [JOB=1:N] LOGFILE command args...
# Runs the command on this machine with its output in LOGFILE; with JOB=1:N, N tasks at most K
# at a time (default: the number of cores), JOB replaced by the task index in LOGFILE and in the
# arguments. Fails, showing the end of the first failed task's log, when any task fails; a re-run
# of the same call runs only the tasks that did not finish. Each task runs with --num-threads
# threads (default 1: OMP/MKL/OpenBLAS_NUM_THREADS), as under local/slurm.sh; --mem and --time are
# ignored here.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${EMOTK_PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py=python3
exec "$py" -m emotk.jobs local "$@"
