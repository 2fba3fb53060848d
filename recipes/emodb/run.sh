#!/usr/bin/env bash
# EmoDB (Berlin Database of Emotional Speech), 7 classes, 10 speakers.
#
#   bash run.sh                         # synthetic look-alike corpus (no real corpus given)
#   bash run.sh --corpus-dir /data/emodb --model-config conf/model/cnn_lstm2d.yaml \
#               --feat-config conf/features/fbank128_2048.yaml     # paper 004 set-up
#   bash run.sh --stage 5 --stop-stage 6 --seeds "1 2 3"
#
# Protocols: leave-one-speaker-out over the 10 speakers (speaker-independent; per fold
# one further speaker is held out as the valid set for early stopping), and paper 004's
# speaker-dependent random 80/20 split (labelled speaker-dependent everywhere).
set -euo pipefail
cd "$(dirname "$0")"
. ../../path.sh
. ./cmd.sh

stage=0
stop_stage=100
nj=2                       # parallel jobs (feature extraction, training runs)
corpus_dir=""              # a real EmoDB copy (root with wav/, or the folder of wavs)
synthetic_size=""          # utterances of the synthetic corpus (default: EmoDB's 535)
synthetic_dir=corpus/synthetic_emodb
seed=0                     # corpus synthesis and split seed
seeds="1"                  # training seeds; mean and std are taken over folds x seeds
protocols="loso sd"        # loso: leave-one-speaker-out; sd: speaker-dependent random 80/20
feat_config="$EMOTK_ROOT/conf/features/fbank40.yaml"
model_config="$EMOTK_ROOT/conf/model/cnn_lstm2d_small.yaml"
model_tag=""               # exp/ subdir name (default: the model config's file name)
train_opts=""              # extra options for 'emotk train', e.g. "--set train.epochs=5"
data=data
exp=exp
results=RESULTS.md

. "$EMOTK_ROOT/local/parse_options.sh"

[ -n "$model_tag" ] || model_tag=$(basename "$model_config" .yaml)
if [ -z "$corpus_dir" ]; then
  synthetic=true
  corpus_dir=$synthetic_dir
  warn_synthetic
else
  synthetic=false
fi

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  if $synthetic; then
    log "Stage 0: synthesizing the EmoDB look-alike corpus in $corpus_dir"
    emotk make-synthetic-corpus emodb "$corpus_dir" --seed "$seed" ${synthetic_size:+--size "$synthetic_size"}
  else
    log "Stage 0: using the real corpus at $corpus_dir"
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: data preparation"
  emotk prepare-emodb "$corpus_dir" $data/all
  emotk validate-data-dir $data/all
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "Stage 2: features ($(basename "$feat_config"))"
  $train_cmd JOB=1:$nj $exp/log/extract.JOB.log \
    emotk extract-fbank $data/all --config "$feat_config" --nj $nj --job JOB
  emotk extract-fbank $data/all --config "$feat_config" --nj $nj --merge
  emotk validate-data-dir $data/all --require feats.scp
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: per-speaker CMVN statistics (speaker z-normalization)"
  emotk compute-cmvn $data/all
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: evaluation folds"
  for p in $protocols; do
    case $p in
      loso) emotk split-data-dir $data/all $data/folds/loso --protocol loso --seed "$seed" ;;
      sd)   emotk split-data-dir $data/all $data/folds/sd --protocol random \
              --test-fraction 0.2 --valid-fraction 0.1 --seed "$seed" ;;
      *) log "unknown protocol $p"; exit 1 ;;
    esac
  done
fi

# Every (protocol, fold, seed) combination as "protocol fold seed" lines.
runs() {
  for p in $protocols; do
    for f in $(cat $data/folds/$p/folds.txt); do
      for s in $seeds; do echo "$p $f $s"; done
    done
  done
}

train_one() {  # train_one PROTOCOL FOLD SEED
  local dir=$exp/$model_tag/$1/$2/seed$3
  $train_cmd $dir/train.out emotk train --config "$model_config" \
    --train $data/folds/$1/$2/train --valid $data/folds/$1/$2/valid --exp $dir --seed $3 \
    --set train.num_threads=1 $train_opts
}

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: training $model_tag ($(runs | wc -l) runs, $nj at a time; finished runs are skipped)"
  run_in_parallel $nj train_one < <(runs)
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: inference and scoring on each fold's test speakers"
  runs | while read -r p f s; do
    dir=$exp/$model_tag/$p/$f/seed$s
    emotk infer --model $dir $data/folds/$p/$f/test --out $dir/predictions/test.txt
    emotk score --metric ua,wa,f1 --ref $data/folds/$p/$f/test --hyp $dir/predictions/test.txt \
      --out $dir/scores/test.json
  done
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  log "Stage 7: report"
  note="Real EmoDB corpus at $corpus_dir."
  $synthetic && note="SYNTHETIC look-alike corpus (espeak-ng speech, simulated emotion): these numbers are NOT comparable to published EmoDB results."
  emotk report $exp/$model_tag --out "$results" --title "EmoDB: $model_tag" --note "$note"
  log "Wrote $results"
fi
