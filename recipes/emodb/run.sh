#!/usr/bin/env bash
# EmoDB (Berlin Database of Emotional Speech), 7 classes, 10 speakers.
#
#   bash run.sh                         # synthetic look-alike corpus (no real corpus given)
#   bash run.sh --corpus-dir /data/emodb
#   bash run.sh --stage 7 --stop-stage 10 --seeds "1 2 3"
#   bash run.sh --augment offline --musan-dir /data/musan   # paper 002's x61 noise augmentation
#
# Systems, all under the same protocols, folds and seeds:
#   - a neural model on 40-bin log-mel with speaker z-norm (--model-config; default the 2D CNN-LSTM
#     of paper 004 at CPU size, trained until its valid UA stops improving);
#   - optionally (--raw-model-config, off by default for its CPU cost) paper 004's 1D CNN-LSTM on the raw waveform (16 kHz audio, each utterance
#     cut or zero-padded to 8 s, per-utterance waveform standardization);
#   - an SVM on each openSMILE functional set of --opensmile-sets (eGeMAPSv02, ComParE_2016) with
#     per-speaker standardization, hyper-parameters chosen on the valid speakers;
#   - the late fusion (mean posterior) of the systems in --fusion.
# Protocols: leave-one-speaker-out over the 10 speakers (speaker-independent; per fold two further
# speakers are held out as the valid set for early stopping and grid search), and paper 004's
# speaker-dependent random 80/20 split (labelled speaker-dependent everywhere).
# Normalization (--norm, of the fbank and openSMILE inputs): speaker (default; statistics of all of a
# speaker's utterances, features only: transductive), utterance, or global (training-set statistics,
# what an unseen speaker gets).
# Augmentation (--augment, neural systems only; the SVMs train on clean functionals): none (default,
# the published systems are clean); offline: each fold's training speakers get --noises-per-utt x
# --snrs-per-noise noisy copies plus the clean one (paper 002: 20 x 3, x61), features extracted
# for them; online: noise mixed into each training example on the fly with probability
# --augment-prob. Noises come from MUSAN's noise part (--musan-dir; without it a synthetic
# look-alike), training noises disjoint from the held-out test noises. Valid and test stay clean.
# Stages: 0 corpus, 1 data prep (+ noise dirs), 2 fbank, 3 openSMILE, 4 speaker statistics, 5 folds,
# 6 augmented training dirs (offline), 7 training, 8 inference and scoring, 9 fusion, 10 report.
set -euo pipefail
cd "$(dirname "$0")"
. ../../path.sh
. ./cmd.sh

# begin options
stage=0                    # first stage to run
stop_stage=100             # last stage to run
nj=2                       # parallel jobs (feature extraction, training runs)
corpus_dir=""              # a real EmoDB copy (root with wav/, or the folder of wavs)
synthetic_size=""          # utterances of the synthetic corpus (default: EmoDB's 535)
synthetic_dir=corpus/synthetic_emodb   # where the synthetic corpus is written
seed=0                     # corpus synthesis, split and augmentation seed
seeds="1 2 3"              # training seeds of the neural models; mean and std are taken over folds x seeds
protocols="loso sd"        # loso: leave-one-speaker-out; sd: speaker-dependent random 80/20
valid_speakers=2           # loso: speakers held out of each training side for model selection
norm=speaker               # feature normalization scope: speaker | utterance | global
feat_config="$EMOTK_ROOT/conf/features/fbank40.yaml"       # fbank features of the neural model
model_config="$EMOTK_ROOT/conf/model/cnn_lstm2d_small.yaml"  # the neural model on fbank ("" for none)
model_tag=""               # exp/ subdir of the neural model (default: the model config's file name)
raw_model_config=""        # paper 004's raw-waveform 1D CNN-LSTM, e.g. $EMOTK_ROOT/conf/model/cnn_lstm1d.yaml
                           # (off by default: ~0.4 CPU s per utterance and epoch, hours per fold on a CPU; not the best system)
train_opts=""              # extra options for the neural models' 'emotk train', e.g. "--set train.epochs=5"
raw_train_opts=""          # further options for the raw-waveform model only
opensmile_sets="eGeMAPSv02 ComParE_2016"   # functional sets, each with an SVM ("" for none)
svm_config="$EMOTK_ROOT/conf/model/svm_linear.yaml"   # linear SVM: the best kernel on the synthetic LOSO folds
fusion="neural eGeMAPSv02"   # late fusion of these systems ("neural", "raw" = the neural models; "" for none)
# Augmentation of the neural systems' training data
augment=none               # none | offline (augmented copies of each fold's train dir) | online (on the fly)
musan_dir=""               # a real MUSAN copy (default: the synthetic look-alike, when augmenting)
noises_per_utt=20          # offline: noises per utterance (paper 002: 20)
snrs_per_noise=3           # offline: SNRs per noise (paper 002: 3)
snr_range=-10:15           # LOW:HIGH in dB (paper 002: -10:15)
augment_prob=""            # online: share of noisy training examples (default: the offline set's, n*s/(n*s+1))
data=data                  # data dirs
exp=exp                    # experiment dirs
results=RESULTS.md         # the report written by the last stage
# end options

. "$EMOTK_ROOT/local/parse_options.sh"

case $augment in none|offline|online) ;; *) log "--augment must be none, offline or online, got $augment"; exit 1 ;; esac
if [ -z "$corpus_dir" ]; then
  synthetic=true
  corpus_dir=$synthetic_dir
  warn_synthetic
else
  synthetic=false
fi
config_tag() { local t; t=$(basename "$1" .yaml); [ $augment = none ] && echo "$t" || echo "${t}_aug_$augment"; }
[ -n "$model_tag" ] || { [ -z "$model_config" ] || model_tag=$(config_tag "$model_config"); }
raw_tag=""
[ -z "$raw_model_config" ] || raw_tag=$(config_tag "$raw_model_config")
[ -n "$augment_prob" ] || augment_prob=$(awk -v n=$((noises_per_utt * snrs_per_noise)) 'BEGIN { print n / (n + 1) }')
noise=$data/noise          # noise data dirs: all, train, test
lower() { echo "$1" | tr '[:upper:]' '[:lower:]'; }
svm_tag() { echo "$(lower "$1")_svm"; }
tag_of() { case $1 in neural) echo "$model_tag" ;; raw) echo "$raw_tag" ;; *) svm_tag "$1" ;; esac; }
neural_tags() { for t in $model_tag $raw_tag; do echo "$t"; done; }
systems() { neural_tags; for s in $opensmile_sets; do svm_tag "$s"; done; }
fusion_tag=""
for s in $fusion; do
  [ -n "$(tag_of "$s")" ] || { log "--fusion names $s, whose model config is \"\""; exit 1; }
  fusion_tag="${fusion_tag:+${fusion_tag}+}$(tag_of "$s")"
done

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
  if [ $augment != none ]; then
    log "Stage 1: noise dirs for $augment augmentation (training noises disjoint from test noises)"
    "$EMOTK_ROOT/steps/make_noise_dirs.sh" --musan-dir "$musan_dir" --seed "$seed" \
      --synthetic-dir "$(dirname "$synthetic_dir")/synthetic_musan" $noise
  fi
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "Stage 2: features ($(basename "$feat_config"))"
  "$EMOTK_ROOT/steps/make_fbank.sh" --cmd "$train_cmd" --nj $nj --config "$feat_config" $data/all $exp/log
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  for set in $opensmile_sets; do
    log "Stage 3: openSMILE $set functionals"
    "$EMOTK_ROOT/steps/make_opensmile.sh" --cmd "$train_cmd" --nj $nj $data/all "$set" $exp/log
  done
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: per-speaker statistics (speaker z-normalization) of the fbank and openSMILE tables"
  emotk compute-cmvn $data/all
  for set in $opensmile_sets; do
    emotk compute-cmvn $data/all --table "$(lower "$set").scp"
  done
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: evaluation folds"
  for p in $protocols; do
    case $p in
      loso) emotk split-data-dir $data/all $data/folds/loso --protocol loso --num-valid-speakers $valid_speakers \
              --seed "$seed" ;;
      sd)   emotk split-data-dir $data/all $data/folds/sd --protocol random \
              --test-fraction 0.2 --valid-fraction 0.1 --seed "$seed" ;;
      *) log "unknown protocol $p"; exit 1 ;;
    esac
  done
fi

folds() { for p in $protocols; do for f in $(cat $data/folds/$p/folds.txt); do echo "$p $f"; done; done; }

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ] && [ $augment = offline ]; then
  log "Stage 6: augmented training dirs (x$((noises_per_utt * snrs_per_noise + 1)) with the clean copy) and their features"
  while read -r p f; do
    dir=$data/folds/$p/$f
    "$EMOTK_ROOT/steps/augment_data_dir.sh" --cmd "$train_cmd" --seed "$seed" --noises-per-utt $noises_per_utt \
      --snrs-per-noise $snrs_per_noise --snr-range "$snr_range" $dir/train $noise/train $dir/train_aug
    emotk check-noise-disjoint $dir/train_aug $noise/test
    "$EMOTK_ROOT/steps/make_fbank.sh" --cmd "$train_cmd" --nj $nj --config "$feat_config" $dir/train_aug $exp/log/$p/$f
    emotk compute-cmvn $dir/train_aug
  done < <(folds)
fi

# Every (system, protocol, fold, seed) training run as "system protocol fold seed" lines. The SVMs
# are deterministic (their seed changes nothing), so they are trained once, with the first seed.
runs() {
  local first=${seeds%% *} p f s set
  while read -r p f; do
    for t in $(neural_tags); do for s in $seeds; do echo "$t $p $f $s"; done; done
    for set in $opensmile_sets; do echo "$(svm_tag "$set") $p $f $first"; done
  done < <(folds)
}

train_one() {  # train_one SYSTEM PROTOCOL FOLD SEED
  local fold=$data/folds/$2/$3 config train opts=() aug=()
  train=$fold/train
  case $1 in
    "$model_tag"|"$raw_tag")
      opts=(--opts "$train_opts --set train.num_threads=1")
      if [ "$1" = "$model_tag" ]; then
        config=$model_config; opts[1]+=" --set inputs.feats.norm=$norm"
      else
        config=$raw_model_config; opts[1]+=" $raw_train_opts"
      fi
      [ $augment = offline ] && train=$fold/train_aug
      [ $augment = online ] && aug=(--augment-noise $noise/train --augment-prob "$augment_prob" --snr-range "$snr_range")
      ;;
    *)
      local table=${1%_svm}.scp
      config=$svm_config
      opts=(--opts "--set inputs.functionals.table=$table --set inputs.functionals.norm=$norm")
      [ "$norm" = speaker ] && opts[1]+=" --set inputs.functionals.norm_table=${table%.scp}_cmvn.scp"
      ;;
  esac
  "$EMOTK_ROOT/steps/train.sh" --cmd "$train_cmd" --seed $4 "${opts[@]}" "${aug[@]}" \
    "$config" $train $fold/valid $exp/$1/$2/$3/seed$4
}

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  log "Stage 7: training $(systems | tr '\n' ' ')($(runs | wc -l) runs, $nj at a time; runs done on the same data and config are skipped)"
  run_in_parallel $nj train_one < <(runs)
fi

score_one() {  # score_one SYSTEM PROTOCOL FOLD SEED
  "$EMOTK_ROOT/steps/decode.sh" --cmd "$decode_cmd" $exp/$1/$2/$3/seed$4 $data/folds/$2/$3/test
}

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  log "Stage 8: inference and scoring on each fold's test speakers ($nj at a time)"
  run_in_parallel $nj score_one < <(runs)
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ] && [ -n "$fusion_tag" ]; then
  log "Stage 9: late fusion $fusion_tag (mean posterior)"
  first=${seeds%% *}
  while read -r p f; do
    for s in $seeds; do
      members=()
      for m in $fusion; do
        t=$(tag_of "$m")
        case $m in neural|raw) members+=($exp/$t/$p/$f/seed$s/predictions/test) ;;
                   *) members+=($exp/$t/$p/$f/seed$first/predictions/test) ;; esac
      done
      dir=$exp/fusion/$fusion_tag/$p/$f/seed$s
      emotk ensemble-predictions "${members[@]}" --out $dir/predictions/test
      "$EMOTK_ROOT/steps/decode.sh" --cmd "$decode_cmd" --stage 1 --score-opts "--tag fusion:$fusion_tag" \
        $dir $data/folds/$p/$f/test
    done
  done < <(folds)
fi

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  log "Stage 10: report"
  note="Real EmoDB corpus at $corpus_dir."
  $synthetic && note="SYNTHETIC look-alike corpus (espeak-ng speech, simulated emotion): these numbers are NOT comparable to published EmoDB results."
  dirs=()
  for m in $(systems); do dirs+=($exp/$m); done
  [ -n "$fusion_tag" ] && dirs+=($exp/fusion/$fusion_tag)
  emotk report "${dirs[@]}" --out "$results" --title "EmoDB" --note "$note" --compare
  log "Wrote $results"
fi
