# Sourced by every recipe's run.sh: activates the project's venv and puts local/ on PATH.
EMOTK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export EMOTK_ROOT
if [ -f "$EMOTK_ROOT/.venv/bin/activate" ]; then
  . "$EMOTK_ROOT/.venv/bin/activate"
fi
command -v emotk >/dev/null || { echo "emotk not installed: run 'bash local/setup_env.sh' from $EMOTK_ROOT" >&2; return 1 2>/dev/null || exit 1; }
export PATH="$EMOTK_ROOT/local:$PATH"
export PYTHONUNBUFFERED=1 LC_ALL=C
. "$EMOTK_ROOT/local/log.sh"
. "$EMOTK_ROOT/local/parallel.sh"
