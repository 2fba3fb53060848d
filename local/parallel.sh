#!/usr/bin/env bash
# run_in_parallel NJ FUNCTION < lines
# Calls FUNCTION with the words of each input line, at most NJ at a time, and fails
# (with the first failing call's exit code) if any call fails. Use it with process
# substitution, not a pipe, so a failure stops the recipe:
#   run_in_parallel $nj train_one < <(runs)
run_in_parallel() {
  local nj=$1 fn=$2 running=0 args
  while read -r -a args; do
    "$fn" "${args[@]}" &
    running=$((running + 1))
    if [ $running -ge "$nj" ]; then wait -n; running=$((running - 1)); fi
  done
  while [ $running -gt 0 ]; do wait -n; running=$((running - 1)); done
}
