#!/usr/bin/env bash
# RECOLA / AVEC 2016 continuous arousal and valence (paper 000: Khorram, Aldeneh et al. 2017).
#
#   bash run.sh                                   # synthetic look-alike corpus, CI-sized (a few minutes)
#   bash run.sh --corpus-dir /data/AVEC2016 --seeds "1 2 3 4 5" --epochs 100 \
#               --sweep-runs 10 --sweep-lengths "2 4 8 16 32 64 128 256 512 1024 2048"   # paper set-up
#   bash run.sh --stage 3                         # resume from z-norm; finished runs are skipped,
#                                                 # interrupted ones resume from their last epoch
#   bash run.sh --selection train-holdout --norm global   # select on held-out train recordings;
#                                                 # training-set normalization statistics
# A finished run is reused only when its provenance record (data, labels, features, config, seed)
# matches the request; otherwise it is trained again.
#
# Selection set (--selection): dev (paper 000: dev chooses the checkpoints, the learning-rate
# schedule and the sweep, and is also the reported score, so dev scores are optimistic) or
# train-holdout (the last --holdout recordings of train, whole recordings, choose them; dev is
# then a clean held-out score). Normalization (--norm): speaker (per-recording statistics over the
# whole recording: transductive, features only), utterance (the same for RECOLA, one utterance per
# recording) or global (training-set statistics only: what an unseen recording gets).
#
# Stages: 0 corpus, 1 prepare, 2 fbank, 3 speaker z-norm stats, 4 train + infer per model,
# dimension and seed, 5 ensemble (average of the seeds' predictions), 6 score (dev; test when
# labelled), 7 analyses (label spectrum, label down/up-sampling, receptive-field sweep,
# trajectories), 8 RESULTS.md in the layout of paper 000 Tables 1-2.
set -euo pipefail
cd "$(dirname "$0")"
. ../../path.sh
. ./cmd.sh

# begin options
stage=0                       # first stage to run
stop_stage=100                # last stage to run
nj=2                          # parallel jobs (feature extraction, training runs)
corpus_dir=""                 # a real AVEC 2016 RECOLA copy (recordings_audio/, ratings_gold_standard/)
synthetic_size=4              # synthetic corpus: recordings per partition (the real corpus: 9)
synthetic_duration=90         # synthetic corpus: seconds per recording (the real corpus: 300)
synthetic_test_labels=false   # synthetic corpus: label the test partition too (exercises test scoring)
selection=dev                 # dev | train-holdout: the set that chooses checkpoints and the sweep
holdout=1                     # train-holdout: recordings of train held out for selection
norm=speaker                  # speaker | utterance | global feature normalization
seed=0                        # synthetic corpus seed
models="downup_cnn dilated_cnn blstm_regressor"   # config: conf/model/<model>_<dim>.yaml, else <model>.yaml
dims="arousal valence"        # one model per dimension (paper 000); "joint" trains both dims at once
seeds="1 2 3"                 # runs per model and dimension (paper 000: 5); the ensemble averages them
epochs=40                     # max epochs per run (early stopping on the selection set CCC); the paper set-up: 100
patience=20                   # epochs without a better selection-set CCC before stopping
loss=ccc                      # ccc (1 - CCC, paper 000) or mse
sweep_lengths="2 8 32 128 512 2048"   # receptive-field sweep: filter lengths (paper: 2, 4, ..., 2048)
sweep_runs=2                  # runs per filter length (paper: 10)
sweep_epochs=30               # max epochs per sweep run
traj_start=0                  # trajectory plot segment (s) of the first dev recording (paper Fig. 5: 40 s)
traj_end=40                   # end of the trajectory plot segment (s)
feat_config=fbank40           # feature config (a name in conf/features/ or a path)
synthetic_dir=corpus/synthetic_recola   # where the synthetic corpus goes when no --corpus-dir is given
data=data                     # data dirs
exp=exp                       # experiment dirs
results=RESULTS.md            # the report written by the last stage
# end options

. "$EMOTK_ROOT/local/parse_options.sh"

conf=$EMOTK_ROOT/conf/model
if [ -z "$corpus_dir" ]; then
  synthetic=true
  corpus_dir=$synthetic_dir
  warn_synthetic
else
  synthetic=false
fi
parts="train dev test"

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  if $synthetic; then
    log "Stage 0: synthesizing the RECOLA look-alike ($synthetic_size recordings per partition, ${synthetic_duration} s each) in $corpus_dir"
    emotk make-synthetic-corpus recola "$corpus_dir" --seed "$seed" --size "$synthetic_size" --duration "$synthetic_duration" \
      $($synthetic_test_labels && echo --test-labels)
  else
    log "Stage 0: using the real corpus at $corpus_dir"
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: data preparation (ARFF gold standards -> labels.scp at 40 ms)"
  emotk prepare-recola "$corpus_dir" $data
fi

case $selection in
  dev) fit=$data/train; select=$data/dev ;;
  train-holdout) fit=$data/train_fit; select=$data/train_holdout ;;
  *) log "--selection must be dev or train-holdout, got $selection"; exit 1 ;;
esac
case $norm in speaker|utterance|global) ;; *) log "--norm must be speaker, utterance or global, got $norm"; exit 1 ;; esac

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "Stage 2: 40-bin log-mel fbank, 25 ms / 10 ms ($feat_config)"
  for p in $parts; do
    [ -d $data/$p ] || continue
    "$EMOTK_ROOT/steps/make_fbank.sh" --cmd "$train_cmd" --nj $nj --config $feat_config $data/$p $exp/log
  done
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: per-speaker CMVN statistics (speaker z-normalization; one speaker per recording)"
  for p in $parts; do
    if [ -d $data/$p ]; then emotk compute-cmvn $data/$p; fi
  done
  if [ $selection = train-holdout ]; then
    log "Stage 3: selection set: the last $holdout recording(s) of train, whole recordings"
    recs=$(cut -d' ' -f1 $data/train/spk2utt)
    n=$(echo $recs | wc -w)
    [ $holdout -ge 1 ] && [ $holdout -lt $n ] || { log "--holdout must be 1 to $((n - 1)), got $holdout"; exit 1; }
    emotk subset-data-dir $data/train $data/train_fit --spks "$(echo $recs | tr ' ' '\n' | head -n $((n - holdout)) | paste -sd,)"
    emotk subset-data-dir $data/train $data/train_holdout --spks "$(echo $recs | tr ' ' '\n' | tail -n $holdout | paste -sd,)"
  fi
fi

config_for() {  # config_for MODEL DIM: conf/model/MODEL_DIM.yaml, else conf/model/MODEL.yaml
  local c
  for c in $conf/$1_$2.yaml $conf/$1.yaml; do
    if [ -f $c ]; then echo $c; return; fi
  done
  log "no config for model $1 and dimension $2: neither $conf/$1_$2.yaml nor $conf/$1.yaml exists"
  return 1
}

runs() {  # "model dim seed" lines
  for m in $models; do for d in $dims; do for s in $seeds; do echo "$m $d $s"; done; done; done
}

train_one() {  # train_one MODEL DIM SEED: train (resumable, skipped when done), then predict dev and test
  local m=$1 d=$2 s=$3 dir=$exp/$1/$2/seed$3 dimopt="heads.labels.dims=[$2]" config
  if [ "$d" = joint ]; then dimopt="heads.labels.dims=null"; fi
  config=$(config_for $m $d)
  "$EMOTK_ROOT/steps/train.sh" --cmd "$train_cmd" --seed $s --opts "--resume --set train.num_threads=1 \
    --set train.epochs=$epochs --set train.patience=$patience --set heads.labels.loss=$loss --set $dimopt \
    --set inputs.feats.norm=$norm" "$config" $fit $select $dir
  for p in dev test; do
    [ -d $data/$p ] || continue
    if [ ! -f $dir/predictions/$p/heads.yaml ] || [ $dir/checkpoints/best.pt -nt $dir/predictions/$p/heads.yaml ]; then
      "$EMOTK_ROOT/steps/decode.sh" --cmd "$train_cmd" --set $p --skip-scoring true --infer-opts "--batch-size 1" \
        $dir $data/$p
    fi
  done
}

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: training $(runs | wc -l) runs ($models x $dims x seeds $seeds), $nj at a time; finished runs are skipped"
  run_in_parallel $nj train_one < <(runs)
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: ensembles: average of the seeds' predictions per model and dimension"
  n_seeds=$(echo $seeds | wc -w)
  for m in $models; do for d in $dims; do for p in dev test; do
    [ -d $data/$p ] || continue
    if [ $n_seeds -lt 2 ]; then log "one seed only: no ensemble"; break 3; fi
    emotk ensemble-predictions $(for s in $seeds; do echo $exp/$m/$d/seed$s/predictions/$p; done) \
      --out $exp/$m/$d/ensemble/predictions/$p
  done; done; done
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: scoring (CCC, RMSE, PCC over the concatenated recordings and per recording)"
  for m in $models; do for d in $dims; do for r in $(for s in $seeds; do echo seed$s; done) ensemble; do
    dir=$exp/$m/$d/$r
    [ -d $dir/predictions ] || continue
    for p in dev test; do
      [ -f $data/$p/labels.scp ] || continue   # the AVEC test labels are withheld
      "$EMOTK_ROOT/steps/decode.sh" --cmd "$decode_cmd" --stage 1 --set $p --score-opts "--metric ccc,rmse,pcc \
        --tag $m $([ $r = ensemble ] && echo --ensemble) $([ $p = dev ] && [ $selection = dev ] && echo --selection-set)" \
        $dir $data/$p
    done
  done; done; done
fi

analysis=$exp/analysis
if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  log "Stage 7: analyses (label spectrum, label down/up-sampling, receptive-field sweep, trajectories)"
  emotk analyze-label-spectrum $data/train --out-dir $analysis
  emotk analyze-label-resampling $data/train --out-dir $analysis
  $train_cmd --num-threads $nj $exp/log/rf_sweep.log emotk sweep-receptive-field --config $conf/single_filter.yaml \
    --train $fit --valid $select --exp $analysis/rf_sweep \
    --lengths "$sweep_lengths" --runs $sweep_runs \
    --set train.num_threads=$nj --set train.epochs=$sweep_epochs --set train.patience=$patience \
    --set heads.labels.loss=$loss --set inputs.feats.norm=$norm
  hyps=()
  for m in $models; do for d in $dims; do
    r=ensemble; [ -d $exp/$m/$d/ensemble/predictions/dev ] || r=seed${seeds%% *}
    hyps+=(--hyp "$m=$exp/$m/$d/$r/predictions/dev/labels")   # the frame_regression head "labels"
  done; done
  emotk plot-trajectories --ref $data/dev "${hyps[@]}" --start $traj_start --end $traj_end \
    --out $analysis/trajectories.png
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  log "Stage 8: RESULTS.md"
  if $synthetic; then
    note="SYNTHETIC look-alike corpus ($synthetic_size recordings per partition of ${synthetic_duration} s, French espeak-ng speech driven by latent arousal/valence; gold standard = latent + 2-4 s annotation lag + noise): these numbers are NOT comparable to published RECOLA results."
  else
    note="Real RECOLA (AVEC 2016) at $corpus_dir."
  fi
  emotk report-continuous $exp --out $results --note "$note" \
    --title "RECOLA / AVEC 2016: continuous arousal and valence (paper 000 Tables 1-2)" \
    --append $analysis/label_spectrum.tsv --append $analysis/label_resampling.tsv \
    --append $analysis/rf_sweep/receptive_field_sweep.tsv --append $analysis/trajectories.tsv
  log "Wrote $results"
fi
