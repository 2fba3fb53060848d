#!/usr/bin/env bash
# IEMOCAP (IEMOCAP_full_release): the systems of three papers, each under its own protocol.
#
#   bash run.sh                                   # synthetic look-alike corpus (no real corpus given)
#   bash run.sh --corpus-dir /data/IEMOCAP_full_release
#   bash run.sh --stage 4 --stop-stage 5 --seeds "1 2 3"
#
# Paper 001 (Latif, Rana et al. 2018): AE-, VAE- and CVAE-LSTM on 100 ms segments of 80-bin log-mel.
#   Table 1: 4 classes (neutral, happy+excited, sad, angry) per subset (improvised, scripted,
#   complete), leave-one-session-out (5 folds). Table 2: arousal, power (dominance) and valence as
#   three levels (below 3, exactly 3, above 3), one classifier per dimension; the paper's "10-fold
#   cross-validation" is run as leave-one-speaker-out (10 speakers).
# Paper 003 (Wieser, Barros et al. 2018): ELoR (raw waveform, 6 s windows), LoM (26 MFCC), FTR (IS10
#   functionals) and ELoR+FTR, two heads (valence, arousal: 5 levels of one evaluator, E2), leave-one-
#   speaker-out (10 folds); a TPE search of ELoR's hyper-parameters on one fold's train/valid
#   (stage 6) and the interpretation of a trained ELoR (stage 7).
# Paper 004 (Zhao, Mao & Chen 2019): 1D CNN-LSTM on raw 8 s audio and 2D CNN-LSTM on 128-bin log-mel
#   (FFT 2048, hop 512), 6 classes; speaker-dependent random 80/20 (labelled so) and speaker-
#   independent 8 train / 2 test speakers, i.e. leave-one-session-out (section 4.2).
# In every speaker-independent fold some training speakers are held out as the valid set (model
# selection, early stopping): --valid-speakers.
# Augmentation (--augment online, as in the EmoDB recipe): MUSAN noise (--musan-dir; without it the
# synthetic look-alike) mixed into the training examples on the fly, training noises disjoint from the
# held-out test noises; systems with an utterance-level vector input (FTR, ELoR+FTR) train clean. Augmented
# systems are tagged <model>..._aug_online. Valid and test stay clean.
#
# Stages: 0 corpus, 1 data prep, 2 features + CMVN, 3 folds, 4 train, 5 decode + score, 6 tune,
#         7 interpret, 8 report.
set -euo pipefail
cd "$(dirname "$0")"
. ../../path.sh
. ./cmd.sh

# begin options
stage=0                    # first stage to run
stop_stage=100             # last stage to run
nj=2                       # parallel jobs (feature extraction, training and decoding runs)
corpus_dir=""              # the real IEMOCAP_full_release (Session1 ... Session5)
synthetic_size=""          # utterances of the synthetic corpus (default: the look-alike's own)
synthetic_dir=corpus/synthetic_iemocap   # where the synthetic corpus is written
seed=0                     # corpus synthesis and split seed
seeds="1 2 3"              # training seeds; tables are mean and std over folds x seeds
valid_speakers=1           # speaker-independent folds: training speakers held out for model selection
fold_limit=0               # train and score only the first N folds of each protocol (0: all; CI-sized runs)
use_gpu=false              # train through $cuda_cmd with train.device=cuda
augment=none               # none | online: noise mixed into the training examples on the fly
musan_dir=""               # a real MUSAN copy (default: the synthetic look-alike, when augmenting)
augment_prob=0.984         # online: share of noisy training examples (60/61: paper 002's x61 set)
snr_range=-10:15           # online: LOW:HIGH dB, drawn uniformly
train_opts=""              # extra 'emotk train' options for every run, e.g. "--set train.epochs=2"
# Paper 001
vae_models="ae_lstm vae_lstm cvae_lstm"   # feature learners + LSTM ("" skips paper 001)
subsets="improvised scripted complete"    # Table 1 subsets of the 4-class data
apv_dims="arousal dominance valence"      # Table 2 dimensions, three levels each ("" skips Table 2)
apv_protocol=loso          # Table 2 protocol: loso (10 speakers) | logo (5 sessions)
# Paper 003
va_models="elor lom ftr elor_ftr"         # two-head networks on 5-level valence/arousal ("" skips)
evaluator=E2               # whose 5-level ratings (paper 003: E2)
# Paper 004
cnn_models="cnn_lstm1d cnn_lstm2d"        # CNN-LSTMs on 6 classes ("" skips)
cnn_subset=improvised      # 6-class data: improvised (the paper's) | scripted | complete
cnn_protocols="sd logo"    # sd: speaker-dependent random 80/20 | logo: leave-one-session-out | loso
# Stage 6: hyper-parameter search (TPE) on the first fold's train/valid of the model's protocol
tune_model=elor            # a model of --va-models
tune_space=conf/tune_elor.yaml   # search space (paper 003 Table 1's parameters)
tune_trials=20             # finished trials (0 skips the stage)
tune_opts=""               # extra options of 'emotk tune', e.g. "--set train.epochs=2"
# Stage 7: interpretation of one trained raw-waveform run (first fold, first seed)
interpret_model=elor       # a raw-waveform model of --va-models ("" skips the stage)
interpret_pieces=50        # pieces of the test fold given saliency maps
interpret_steps=200        # optimization steps per generalized input signal
# Outputs
data=data                  # data dirs
exp=exp                    # experiment dirs
results=RESULTS.md         # the report written by the last stage
tables=conf/tables.yaml    # paper-layout tables of the report ("" for the per-protocol tables only)
# end options

. "$EMOTK_ROOT/local/parse_options.sh"

steps=$EMOTK_ROOT/steps
model_conf=$EMOTK_ROOT/conf/model
if [ -z "$corpus_dir" ]; then
  synthetic=true
  corpus_dir=$synthetic_dir
  warn_synthetic
else
  synthetic=false
fi
has() { case " $2 " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }  # has WORD "LIST"
first_seed=${seeds%% *}
case $augment in none|online) ;; *) log "--augment must be none or online, got $augment"; exit 1 ;; esac
noise=$data/noise          # noise data dirs: all, train, test
# aug_tag MODEL: the tag suffix of an augmented system; none for a model with an utterance-level vector input
# (openSMILE functionals cannot be computed again from noisy audio), which trains clean
aug_tag() { [ $augment = none ] || grep -Eq 'kind: *vector' "$model_conf/$1.yaml" || echo _aug_online; }
train_launcher=$train_cmd
gpu_opts=""
if $use_gpu; then train_launcher=$cuda_cmd; gpu_opts="--set train.device=cuda"; fi

# The data dirs the chosen systems need, with the folds each is split into.
datasets() {  # lines "DATA PROTOCOL"
  if [ -n "$vae_models" ]; then
    for sub in $subsets; do echo "4class_$sub logo"; done
    [ -z "$apv_dims" ] || echo "apv3 $apv_protocol"
  fi
  [ -z "$va_models" ] || echo "va5 loso"
  if [ -n "$cnn_models" ]; then for p in $cnn_protocols; do echo "6class $p"; done; fi
}
folds_of() {  # folds_of DATA PROTOCOL: the folds trained and scored
  if [ "$fold_limit" -gt 0 ]; then head -n "$fold_limit" "$data/$1/folds/$2/folds.txt"; else cat "$data/$1/folds/$2/folds.txt"; fi
}

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  if $synthetic; then
    log "Stage 0: synthesizing the IEMOCAP look-alike corpus in $corpus_dir (SYNTHETIC)"
    emotk make-synthetic-corpus iemocap "$corpus_dir" --seed "$seed" ${synthetic_size:+--size "$synthetic_size"}
  else
    log "Stage 0: using the real corpus at $corpus_dir"
  fi
fi

prepare() {  # prepare DATA LABELS [prepare-iemocap options]
  local dir=$data/$1 labels=$2
  shift 2
  emotk prepare-iemocap "$corpus_dir" "$dir" --labels "$labels" "$@"
  emotk validate-data-dir "$dir"
}

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: data preparation (label sets of the chosen systems)"
  if [ $augment != none ]; then
    log "Stage 1: noise dirs for $augment augmentation (training noises disjoint from test noises)"
    "$steps/make_noise_dirs.sh" --musan-dir "$musan_dir" --seed "$seed" \
      --synthetic-dir "$(dirname "$synthetic_dir")/synthetic_musan" $noise
  fi
  if [ -n "$vae_models" ]; then
    prepare 4class_complete 4class          # improvised and scripted are cut from it in stage 2
    [ -z "$apv_dims" ] || prepare apv3 apv3
  fi
  [ -z "$va_models" ] || prepare va5 va5 --evaluator "$evaluator"
  [ -z "$cnn_models" ] || prepare 6class 6class --subset "$cnn_subset"
fi

fbank() {  # fbank DATA CONFIG [KIND]: features into feats.scp, then per-speaker CMVN statistics
  "$steps/make_fbank.sh" --cmd "$train_cmd" --nj $nj --config "$2" --kind "${3:-fbank}" $data/$1 $exp/log/$1
  emotk compute-cmvn $data/$1
}

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "Stage 2: features"
  if [ -n "$vae_models" ]; then
    fbank 4class_complete fbank80
    for sub in $subsets; do
      [ "$sub" = complete ] && continue
      awk -v t="$sub" '$2 == t {print $1}' $data/4class_complete/utt2type > $data/4class_complete/$sub.list
      emotk subset-data-dir $data/4class_complete $data/4class_$sub --utts @$data/4class_complete/$sub.list
      emotk compute-cmvn $data/4class_$sub          # the subset's own speaker statistics
    done
    [ -z "$apv_dims" ] || fbank apv3 fbank80
  fi
  if has lom "$va_models"; then fbank va5 mfcc26 mfcc; fi
  if has ftr "$va_models" || has elor_ftr "$va_models"; then
    "$steps/make_opensmile.sh" --cmd "$train_cmd" --nj $nj --level functionals $data/va5 IS10 $exp/log/va5
  fi
  if has cnn_lstm2d "$cnn_models"; then fbank 6class fbank128_2048; fi
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: evaluation folds (each checked by code; fold.yaml records the checks)"
  while read -r set p; do
    out=$data/$set/folds/$p
    case $p in
      logo) emotk split-data-dir $data/$set $out --protocol logo --groups utt2session \
              --num-valid-speakers $valid_speakers --seed "$seed" ;;
      loso) emotk split-data-dir $data/$set $out --protocol loso --num-valid-speakers $valid_speakers \
              --seed "$seed" ;;
      sd)   emotk split-data-dir $data/$set $out --protocol random --test-fraction 0.2 --valid-fraction 0.1 \
              --seed "$seed" ;;
      *) log "unknown protocol $p (logo, loso or sd)"; exit 1 ;;
    esac
  done < <(datasets)
fi

# Every training run as "TAG MODEL DATA PROTOCOL FOLD SEED LABELS" (LABELS: the class table of the
# model's one head when it is not the config's, else -). Exp dir: $exp/TAG/PROTOCOL/FOLD/seedSEED.
runs() {
  local m sub dim p f s
  for m in $vae_models; do
    for sub in $subsets; do
      for f in $(folds_of 4class_$sub logo); do for s in $seeds; do echo "${m}_$sub$(aug_tag $m) $m 4class_$sub logo $f $s -"; done; done
    done
    for dim in $apv_dims; do
      for f in $(folds_of apv3 $apv_protocol); do
        for s in $seeds; do echo "${m}_apv3_$dim$(aug_tag $m) $m apv3 $apv_protocol $f $s utt2${dim}3"; done
      done
    done
  done
  for m in $va_models; do
    for f in $(folds_of va5 loso); do for s in $seeds; do echo "$m$(aug_tag $m) $m va5 loso $f $s -"; done; done
  done
  for m in $cnn_models; do
    for p in $cnn_protocols; do
      for f in $(folds_of 6class $p); do for s in $seeds; do echo "$m$(aug_tag $m) $m 6class $p $f $s -"; done; done
    done
  done
}
systems() { runs | cut -d' ' -f1 | uniq | sort -u; }

train_one() {  # train_one TAG MODEL DATA PROTOCOL FOLD SEED LABELS
  local fold=$data/$3/folds/$4/$5 opts="--set train.num_threads=1 $gpu_opts $train_opts"
  local aug=()
  [ "$7" = - ] || opts="--set heads.emotion.labels=$7 $opts"
  [ -z "$(aug_tag $2)" ] || aug=(--augment-noise $noise/train --augment-prob "$augment_prob" --snr-range "$snr_range")
  "$steps/train.sh" --cmd "$train_launcher" --seed "$6" --opts "$opts" "${aug[@]}" "$model_conf/$2.yaml" \
    $fold/train $fold/valid $exp/$1/$4/$5/seed$6
}

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: training $(systems | tr '\n' ' ')($(runs | wc -l) runs, $nj at a time; runs done on the same data and config are skipped)"
  run_in_parallel $nj train_one < <(runs)
fi

decode_one() {  # decode_one TAG MODEL DATA PROTOCOL FOLD SEED LABELS
  "$steps/decode.sh" --cmd "$decode_cmd" $exp/$1/$4/$5/seed$6 $data/$3/folds/$4/$5/test
}

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: inference and scoring on each fold's test set ($nj at a time)"
  run_in_parallel $nj decode_one < <(runs)
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ] && [ "$tune_trials" -gt 0 ] && has "$tune_model" "$va_models"; then
  f=$(folds_of va5 loso | head -n 1)
  log "Stage 6: TPE search of $tune_model ($tune_trials trials) on $f's train and valid sets (never its test set)"
  read -r -a topts <<< "--set train.num_threads=1 $gpu_opts $tune_opts"
  $train_launcher $exp/tune/$tune_model/tune.log emotk tune --config "$model_conf/$tune_model.yaml" \
    --space "$tune_space" --train $data/va5/folds/loso/$f/train --valid $data/va5/folds/loso/$f/valid \
    --trials "$tune_trials" --exp $exp/tune/$tune_model "${topts[@]}"
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ] && [ -n "$interpret_model" ] && has "$interpret_model" "$va_models"; then
  f=$(folds_of va5 loso | head -n 1)
  run=$exp/$interpret_model$(aug_tag $interpret_model)/loso/$f/seed$first_seed
  log "Stage 7: saliency maps and generalized input signals of $run"
  $train_cmd $exp/interpret/$interpret_model/interpret.log emotk interpret --model $run \
    --data $data/va5/folds/loso/$f/test --out $exp/interpret/$interpret_model \
    --max-pieces "$interpret_pieces" --steps "$interpret_steps"
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  log "Stage 8: report"
  note="Real IEMOCAP corpus at $corpus_dir."
  $synthetic && note="SYNTHETIC look-alike corpus (espeak-ng speech, simulated emotion and ratings): these numbers are NOT comparable to published IEMOCAP results."
  table6=$exp/interpret/$interpret_model/table6.md
  [ ! -f "$table6" ] || note="$note Paper 003 Table 6 (what $interpret_model learned, stage 7): $table6."
  dirs=()
  for m in $(systems); do dirs+=($exp/$m); done
  if [ $augment != none ] && [ -n "$tables" ]; then
    log "Stage 8: the paper-layout tables name the clean systems; the augmented ones are in the per-protocol tables"
    tables=""
  fi
  emotk report "${dirs[@]}" --out "$results" --title "IEMOCAP" --note "$note" ${tables:+--tables "$tables"}
  log "Wrote $results"
fi
