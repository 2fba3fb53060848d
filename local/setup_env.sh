#!/usr/bin/env bash
# Create or reuse the project's virtual environment (.venv) and install emotk into it.
# torch is installed first as the CPU build (torch==2.13.0), so no later step can pull a
# multi-GB CUDA build; everything else follows. Re-running is cheap: a stamp file records
# the pyproject.toml it was installed from.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.emotk-installed"
python="${PYTHON:-python3}"
torch_version="${EMOTK_TORCH_VERSION:-2.13.0}"

if [ ! -x "$venv/bin/python" ]; then
  echo "setup_env: creating $venv" >&2
  "$python" -m venv "$venv"
fi
want="$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1) torch==$torch_version"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
echo "setup_env: installing torch==$torch_version (CPU build) and emotk[dev] into $venv" >&2
pip install "torch==$torch_version"
pip install -e "$root[dev]"
# Fail now, not in the middle of a recipe, if pip swapped torch for another build.
"$venv/bin/python" - "$torch_version" <<'PY'
import sys, torch
want = sys.argv[1]
if not torch.__version__.startswith(want):
    sys.exit(f"setup_env: expected torch {want}, got {torch.__version__}")
PY
echo "$want" > "$stamp"
echo "setup_env: done" >&2
