#!/usr/bin/env bash
# Predict a data dir with a trained model (emotk infer) into EXP/predictions/NAME, then score it
# against the data dir's labels (emotk score) into EXP/scores/NAME.json. Scoring refuses utterances
# the model was trained or selected on (EXP/provenance).
#   steps/decode.sh [options] EXP TEST_DATA
#   steps/decode.sh --cmd "$decode_cmd" exp/cnn_lstm2d_small/loso/loso-03/seed1 data/folds/loso/loso-03/test
#   steps/decode.sh --stage 1 --score-opts "--tag fusion:a+b" exp/fusion/a+b/sd/sd-random-1/seed1 data/x/test
# Logs: EXP/log/infer_NAME.log, EXP/log/score_NAME.log.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/path.sh"

# begin options
cmd=run_local.sh           # job launcher (a recipe's $decode_cmd)
set=test                   # set name: EXP/predictions/NAME and EXP/scores/NAME.json
stage=0                    # 0: infer and score; 1: score only (predictions already there, e.g. an ensemble's)
skip_scoring=false         # infer only (e.g. a set whose labels are withheld)
infer_opts=""              # further options of emotk infer, e.g. "--batch-size 1"
score_opts=""              # further options of emotk score, e.g. "--metric ccc,rmse --selection-set"
# end options
. "$EMOTK_ROOT/local/parse_options.sh"

if [ $# -ne 2 ]; then echo "Usage: decode.sh [options] EXP TEST_DATA (--help lists the options)" >&2; exit 1; fi
exp=$1 data=$2
read -r -a infer_extra <<< "$infer_opts"
read -r -a score_extra <<< "$score_opts"

if [ "$stage" -le 0 ]; then
  $cmd "$exp/log/infer_$set.log" emotk infer --model "$exp" "$data" --out "$exp/predictions/$set" "${infer_extra[@]}"
fi
if ! $skip_scoring; then
  $cmd "$exp/log/score_$set.log" emotk score --ref "$data" --hyp "$exp/predictions/$set" \
    --out "$exp/scores/$set.json" "${score_extra[@]}"
fi
