#!/usr/bin/env bash
# One data-parallel training run: emotk train under torchrun with NPROC processes on one node,
# started as one job of the launcher (one Slurm job with a recipe's $cuda_cmd), its output in
# EXP/train.out. Each optimization step sees the batch one process would see, split over the
# processes (emotk.training.distributed); the exp dir is the one steps/train.sh makes, written
# by rank 0 alone, and is skipped, redone or resumed under the same rules.
#   steps/train_ddp.sh [options] CONFIG TRAIN VALID EXP
#   steps/train_ddp.sh --cmd "$cuda_cmd" --nproc 4 cnn_lstm2d data/fold1/train data/fold1/valid exp/cnn_lstm2d/fold1
# --device cuda asks the launcher for --gpu NPROC (one GPU a process, nccl); --device cpu for
# --num-threads NPROC (gloo; each process uses the config's train.num_threads); auto asks for neither.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/path.sh"

# begin options
cmd=run_local.sh           # job launcher (a recipe's $cuda_cmd: every process in one job)
nproc=2                    # processes (torchrun --nproc_per_node): one a GPU with --device cuda
device=cuda                # cuda | cpu | auto (train.device of every process)
seed=""                    # training seed (default: the config's train.seed)
opts=""                    # further options of emotk train, split on spaces, e.g. "--amp --resume"
# end options
. "$EMOTK_ROOT/local/parse_options.sh"

if [ $# -ne 4 ]; then echo "Usage: train_ddp.sh [options] CONFIG TRAIN VALID EXP (--help lists the options)" >&2; exit 1; fi
config=$1 train=$2 valid=$3 exp=$4
case "$nproc" in ''|*[!0-9]*|0) echo "train_ddp.sh: --nproc must be a positive integer, got '$nproc'" >&2; exit 1 ;; esac
case "$device" in
  cuda) resources=(--gpu "$nproc") ;;
  cpu) resources=(--num-threads "$nproc") ;;
  auto) resources=() ;;
  *) echo "train_ddp.sh: --device must be cuda, cpu or auto, got '$device'" >&2; exit 1 ;;
esac
read -r -a extra <<< "$opts"
[ -z "$seed" ] || extra=(--seed "$seed" "${extra[@]}")

# torchrun --standalone: a rendezvous on a free local port, so several such jobs can share a node.
$cmd "${resources[@]}" "$exp/train.out" torchrun --standalone --nproc_per_node "$nproc" --no-python \
  emotk train --config "$config" --train "$train" --valid "$valid" --exp "$exp" --device "$device" "${extra[@]}"
