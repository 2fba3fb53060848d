#!/usr/bin/env bash
# One training run (emotk train) through the launcher, its output in EXP/train.out. A finished run
# made from the same data, config and seed is skipped; one made from other inputs is redone (or
# refused with --opts "--on-mismatch refuse"); --opts "--resume" continues an interrupted run.
#   steps/train.sh [options] CONFIG TRAIN VALID EXP
#   steps/train.sh --cmd "$train_cmd" --seed 1 --opts "--set train.epochs=5" cnn_lstm2d_small \
#     data/folds/loso/loso-03/train data/folds/loso/loso-03/valid exp/cnn_lstm2d_small/loso/loso-03/seed1
# CONFIG: a name in conf/model/ or a YAML path. VALID chooses the checkpoint (early stopping).
# --augment-noise mixes noise into the training audio on the fly (train.augment of the config).
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/path.sh"

# begin options
cmd=run_local.sh           # job launcher (a recipe's $train_cmd, or $cuda_cmd)
seed=""                    # training seed (default: the config's train.seed)
opts=""                    # further options of emotk train, split on spaces, e.g. "--set train.epochs=5 --resume"
augment_noise=""           # on-the-fly noise: a noise data dir (steps/make_noise_dirs.sh OUT/train); "" for none
augment_prob=1.0           # on-the-fly noise: probability that a training example is mixed
snr_range=-10:15           # on-the-fly noise: LOW:HIGH in dB, drawn uniformly
# end options
. "$EMOTK_ROOT/local/parse_options.sh"

if [ $# -ne 4 ]; then echo "Usage: train.sh [options] CONFIG TRAIN VALID EXP (--help lists the options)" >&2; exit 1; fi
config=$1 train=$2 valid=$3 exp=$4
read -r -a extra <<< "$opts"
[ -z "$seed" ] || extra=(--seed "$seed" "${extra[@]}")
if [ -n "$augment_noise" ]; then   # the YAML list form: "-10:15" would read as a base-60 number
  extra+=(--set "train.augment.noise=$augment_noise" --set "train.augment.prob=$augment_prob"
          --set "train.augment.snr_range=[${snr_range/:/,}]")
fi

$cmd "$exp/train.out" emotk train --config "$config" --train "$train" --valid "$valid" --exp "$exp" "${extra[@]}"
