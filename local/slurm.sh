#!/usr/bin/env bash
# Slurm job launcher, Kaldi's slurm.pl convention (the logic is in emotk/jobs/):
#   local/slurm.sh [--mem 4G] [--gpu 1] [--num-threads N] [--max-jobs-run K] [--time T] [--config FILE] \
#                  [JOB=1:N] LOGFILE command args...
# Submits one array job (sbatch --array=1-N%K), waits for it by polling squeue, and fails like
# local/run_local.sh when a task fails; Ctrl-C or a kill cancels the job. Resource options map to
# sbatch options through conf/slurm.conf (see the comments there); each task runs with --num-threads
# threads (default 1), the CPUs it asked for. Needs Slurm's client commands on PATH (and
# SLURM_CONF exported when the cluster's config is not in /etc/slurm).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${EMOTK_PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py=python3
exec "$py" -m emotk.jobs slurm "$@"
