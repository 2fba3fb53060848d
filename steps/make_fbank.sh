#!/usr/bin/env bash
# Kaldi-compatible fbank or MFCC features of a data dir: --nj jobs through the launcher, then the
# merge into feats.scp (explicit, so a job that did not finish is named), then validation.
#   steps/make_fbank.sh [options] DATA LOGDIR
#   steps/make_fbank.sh --cmd "$train_cmd" --nj 4 --config fbank40 data/all exp/log
# Logs: LOGDIR/make_KIND_NAME.JOB.log (NAME: the data dir's name). A re-run with the same config
# skips finished jobs; another config redoes them (emotk extract-fbank --help).
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/path.sh"

# begin options
cmd=run_local.sh           # job launcher (a recipe's $train_cmd)
nj=4                       # parallel jobs
config=""                  # feature config: a name in conf/features/ or a YAML path (default: fbank40 / mfcc13)
kind=fbank                 # fbank | mfcc
# end options
. "$EMOTK_ROOT/local/parse_options.sh"

if [ $# -ne 2 ]; then echo "Usage: make_fbank.sh [options] DATA LOGDIR (--help lists the options)" >&2; exit 1; fi
data=$1 logdir=$2
case $kind in fbank|mfcc) ;; *) echo "make_fbank.sh: --kind must be fbank or mfcc, not '$kind'" >&2; exit 1 ;; esac
opts=(--nj "$nj")
[ -z "$config" ] || opts+=(--config "$config")

$cmd JOB=1:$nj "$logdir/make_${kind}_$(basename "$data").JOB.log" emotk extract-$kind "$data" "${opts[@]}" --job JOB
emotk extract-$kind "$data" "${opts[@]}" --merge
emotk validate-data-dir "$data" --require feats.scp
