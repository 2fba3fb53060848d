#!/usr/bin/env bash
# Stop the daemons local/slurm_up.sh started, by the PIDs in its pid files only
# (slurmd, then slurmctld, then munged), and remove those pid files.
#   SLURM_DIR=/tmp/emotk-slurm bash local/slurm_down.sh
set -u
SLURM_DIR=${SLURM_DIR:-${TMPDIR:-/tmp}/emotk-slurm}
for d in slurmd slurmctld munged; do
  f="$SLURM_DIR/run/$d.pid"
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    echo "stopped $d ($pid)"
  fi
  rm -f "$f"
done
