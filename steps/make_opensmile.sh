#!/usr/bin/env bash
# An openSMILE feature set of a data dir: --nj jobs through the launcher, then the merge into
# NAME.scp (functionals, NAME = the set lower-cased) or NAME_lld.scp (low-level descriptors).
#   steps/make_opensmile.sh [options] DATA SET LOGDIR
#   steps/make_opensmile.sh --cmd "$train_cmd" --nj 4 data/all eGeMAPSv02 exp/log
# Logs: LOGDIR/make_opensmile_SET_LEVEL_NAME.JOB.log. A re-run with the same set, level and audio
# skips finished jobs (emotk extract-opensmile --help).
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/path.sh"

# begin options
cmd=run_local.sh           # job launcher (a recipe's $train_cmd)
nj=4                       # parallel jobs
level=functionals          # functionals (a vector per utterance) | lld (frames)
# end options
. "$EMOTK_ROOT/local/parse_options.sh"

if [ $# -ne 3 ]; then echo "Usage: make_opensmile.sh [options] DATA SET LOGDIR (--help lists the options)" >&2; exit 1; fi
data=$1 set=$2 logdir=$3

$cmd JOB=1:$nj "$logdir/make_opensmile_${set}_${level}_$(basename "$data").JOB.log" \
  emotk extract-opensmile "$data" --set "$set" --level "$level" --nj "$nj" --job JOB
emotk extract-opensmile "$data" --set "$set" --level "$level" --nj "$nj" --merge
