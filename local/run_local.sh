#!/usr/bin/env bash
# Local job launcher, Kaldi's run.pl convention:
#   local/run_local.sh [JOB=1:N] LOGFILE command args...
# With JOB=1:N it runs N copies in parallel, replacing JOB in LOGFILE and the arguments
# by the job index; it waits for all and fails (naming the logs) if any failed.
set -u
range=""
case "${1-}" in JOB=*:*) range="${1#JOB=}"; shift ;; esac
[ $# -ge 2 ] || { echo "usage: $0 [JOB=1:N] LOGFILE command..." >&2; exit 1; }
logfile="$1"; shift
run_one() {  # run_one JOB_INDEX_OR_EMPTY command...
  local j="$1" log="$logfile" args=()
  shift
  if [ -n "$j" ]; then
    log="${logfile//JOB/$j}"
    for a in "$@"; do args+=("${a//JOB/$j}"); done
  else
    args=("$@")
  fi
  mkdir -p "$(dirname "$log")"
  { echo "# ${args[*]}"; echo "# started $(date)"; } > "$log"
  "${args[@]}" >> "$log" 2>&1
  local rc=$?
  echo "# ended $(date), exit code $rc" >> "$log"
  return $rc
}
if [ -z "$range" ]; then
  run_one "" "$@" || { echo "$0: command failed, see $logfile" >&2; exit 1; }
  exit 0
fi
first="${range%%:*}"; last="${range##*:}"
pids=(); failed=()
for ((j=first; j<=last; j++)); do run_one "$j" "$@" & pids+=("$!:$j"); done
for p in "${pids[@]}"; do wait "${p%%:*}" || failed+=("${logfile//JOB/${p##*:}}"); done
if [ ${#failed[@]} -gt 0 ]; then echo "$0: ${#failed[@]} job(s) failed, see ${failed[*]}" >&2; exit 1; fi
