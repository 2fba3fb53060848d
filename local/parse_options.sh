#!/usr/bin/env bash
# Kaldi-style option parsing for recipes: turns "--stop-stage 5" into stop_stage=5 for
# every variable the script already defines. "--help" prints the variables with their values.
# Source it after the defaults:  . local/parse_options.sh
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      script="$0"; [ -f "$script" ] || script="$(basename "$0")"   # recipes cd to their own dir
      echo "Usage: $0 [options]; options (with defaults and comments):"
      grep -E '^[a-z_]+=' "$script" | while IFS='=' read -r name rest; do
        echo "  --${name//_/-} $rest"
      done
      exit 0 ;;
    --*=*) name="${1%%=*}"; value="${1#*=}"; shift ;;
    --*) name="$1"; value="${2-}"; [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }; shift 2 ;;
    *) break ;;
  esac
  var="${name#--}"; var="${var//-/_}"
  if ! declare -p "$var" >/dev/null 2>&1; then
    echo "$0: unknown option $name" >&2; exit 1
  fi
  printf -v "$var" '%s' "$value"
done
