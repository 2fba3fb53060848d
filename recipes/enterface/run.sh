#!/usr/bin/env bash
# eNTERFACE'05 (audio of the .avi files), 6 emotions, 42 subjects: noise robustness of paper 002
# (Huang & Narayanan), its Tables 3, 4 and 5.
#
#   bash run.sh                                     # synthetic eNTERFACE and MUSAN look-alikes
#   bash run.sh --corpus-dir "/corpora/enterface database" --musan-dir /corpora/musan
#   bash run.sh --stage 5 --stop-stage 8 --seeds "1 2 3"
#
# Systems:
#   - SVMs (linear, polynomial, RBF) on the INTERSPEECH 2009-2013 openSMILE functionals with per-speaker
#     standardization, trained on the CLEAN training speakers (paper 002 section 6.1: "all of SVM
#     experiments are conducted under the clean condition"), under LOSO and TVT (Table 3);
#   - LDNN on 40 log-mels and on 13 MFCCs, X-CLDNN for X in S, T, ST, FST on log-mels and T, FST on
#     MFCCs (Table 4), trained on the noise-augmented training speakers (paper 002 section 6.2: "under
#     the noisy condition"), TVT only as in the paper, early stopping on the clean valid speakers;
#   - every system scored on the clean test speakers (`test`) and, under TVT, on the same speakers mixed
#     with noises never used in training (`test_noisy`); module-wise probing of each CLDNN (Table 5).
# Protocols: tvt (paper 002: a seeded 70:10:20 split of the SPEAKERS into train/valid/test) and loso
# (leave one subject out; --loso-valid-speakers further speakers held out per fold for the SVM's grid).
# Augmentation (paper 002 section 5.2): each training utterance mixed with --noises-per-utt MUSAN noises
# at --snrs-per-noise SNRs uniform in --snr-range, plus the clean copy (x61 by default); the noises are
# split into training and test noises first, and the disjointness of what each set used is checked.
#
# Stages: 0 corpora (real or synthetic), 1 data prep + noise dirs, 2 clean features (log-mel, MFCC,
# openSMILE, per-speaker statistics), 3 folds, 4 augmentation (noisy training sets, noisy test sets, their
# features), 5 training, 6 decoding (test, test_noisy), 7 probing, 8 report. Clean features come before
# the folds so that the folds share the corpus's feature archives; the augmented sets live inside their
# folds and get their own features.
set -euo pipefail
cd "$(dirname "$0")"
. ../../path.sh
. ./cmd.sh

# begin options
stage=0                    # first stage to run
stop_stage=100             # last stage to run
nj=4                       # parallel jobs (decoding, feature extraction, training runs)
corpus_dir=""              # a real eNTERFACE'05 copy (the folder with 'subject 1' ... 'subject 44')
musan_dir=""               # a real MUSAN copy (root with noise/, or the folder holding musan/)
synthetic_dir=corpus/synthetic_enterface   # where the synthetic eNTERFACE goes without --corpus-dir
synthetic_subjects=""      # segmented subjects of the synthetic eNTERFACE (default: 42, as the real one)
synthetic_musan_dir=corpus/synthetic_musan # where the synthetic MUSAN goes without --musan-dir
synthetic_noises=""        # noise files of the synthetic MUSAN (default: the look-alike's 40)
seed=0                     # corpus synthesis, speaker split, noise split and noise draws
# Protocols
protocols="tvt loso"       # tvt: speakers split by --speaker-fractions; loso: leave one subject out
nn_protocols="tvt"         # protocols the neural models are trained under (paper 002: tvt only)
speaker_fractions=0.7:0.1:0.2   # tvt: train:valid:test shares of the speakers (paper 002)
loso_valid_speakers=4      # loso: speakers held out of each training side as the valid set (~10 %)
# Noise augmentation (paper 002 section 5.2)
noise_test_fraction=0.2    # share of the noise files kept for the noisy test sets only
noises_per_utt=20          # noises per training utterance, drawn without replacement
snrs_per_noise=3           # SNRs per noise, each a copy (x(noises x SNRs + 1) with the clean copy)
snr_range=-10:15           # LOW:HIGH dB, SNRs drawn uniformly (training and noisy test sets alike)
# Systems
opensmile_sets="IS09 IS10 IS11 IS12 IS13"   # functional sets of the SVMs ("" for none)
svm_kernels="linear poly rbf"               # conf/model/svm_KERNEL.yaml
neural_systems="ldnn:mfcc ldnn:fbank cldnn_t:mfcc cldnn_fst:mfcc cldnn_t:fbank cldnn_s:fbank cldnn_st:fbank cldnn_fst:fbank"   # MODEL:FEATURES
model_size=""              # "" the paper's sizes; _small: conf/model/MODEL_small.yaml (CPU-sized)
fbank_config=fbank40       # 40 log-mels, 25 ms / 10 ms (paper 002 section 6.2)
mfcc_config=mfcc13         # 13 MFCCs of 40 mel bands
seeds="1 2 3"              # training seeds of the neural models (the SVMs are deterministic: first seed)
train_opts=""              # extra options of the neural models' 'emotk train', e.g. "--set train.epochs=5"
probe_seeds=""             # seeds whose CLDNNs are probed (default: every seed)
tables=conf/tables.yaml    # paper-layout tables of the report (Tables 3 and 4)
data=data                  # data dirs
exp=exp                    # experiment dirs
results=RESULTS.md         # the report written by the last stage
# end options

. "$EMOTK_ROOT/local/parse_options.sh"

synthetic=false
if [ -z "$corpus_dir" ]; then synthetic=true; corpus_dir=$synthetic_dir; fi
synthetic_musan=false
if [ -z "$musan_dir" ]; then synthetic_musan=true; musan_dir=$synthetic_musan_dir; fi
$synthetic && warn_synthetic
if $synthetic_musan; then
  log "##################################################################"
  log "# NO MUSAN GIVEN: augmenting with the SYNTHETIC noise look-alike. #"
  log "##################################################################"
fi

lower() { echo "$1" | tr '[:upper:]' '[:lower:]'; }
kinds() { for s in $neural_systems; do echo "${s#*:}"; done | sort -u; }   # feature kinds the neural models use
kind_config() { if [ "$1" = fbank ]; then echo "$fbank_config"; else echo "$mfcc_config"; fi; }
folds_of() { cat "$1/folds.txt"; }
label_of() {  # the paper's name of a neural system: cldnn_fst_fbank -> FST-CLDNN (log-Mels)
  local m=${1%_*} name
  case $m in cldnn_*) name="$(echo "${m#cldnn_}" | tr '[:lower:]' '[:upper:]')-CLDNN" ;; *) name=$(echo "$m" | tr '[:lower:]' '[:upper:]') ;; esac
  if [ "${1##*_}" = fbank ]; then echo "$name (log-Mels)"; else echo "$name (MFCCs)"; fi
}
first_seed=${seeds%% *}
[ -n "$probe_seeds" ] || probe_seeds=$seeds

# copy_if_changed SRC DST: DST becomes a copy of the data dir SRC (sharing its audio) unless it already
# holds the same utterances, labels and audio, so that the features extracted in DST are kept.
copy_if_changed() {
  local f
  for f in utt2spk utt2emo wav.scp; do
    cmp -s "$1/$f" "$2/$f" || { emotk subset-data-dir "$1" "$2" --spks "@$1/spk2utt"; return; }
  done
}

split_opts() {  # the split-data-dir options of a protocol
  case $1 in
    tvt)  echo "--protocol tvt --speaker-fractions $speaker_fractions --seed $seed" ;;
    loso) echo "--protocol loso --num-valid-speakers $loso_valid_speakers --seed $seed" ;;
    *) echo "unknown protocol '$1' (tvt or loso)" >&2; return 1 ;;
  esac
}

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  if $synthetic; then
    log "Stage 0: synthesizing the eNTERFACE'05 look-alike in $corpus_dir"
    emotk make-synthetic-corpus enterface "$corpus_dir" --seed "$seed" ${synthetic_subjects:+--size "$synthetic_subjects"}
  else
    log "Stage 0: using the real eNTERFACE'05 at $corpus_dir"
  fi
  if $synthetic_musan; then
    log "Stage 0: synthesizing the MUSAN look-alike in $musan_dir"
    emotk make-synthetic-corpus musan "$musan_dir" --seed "$seed" ${synthetic_noises:+--size "$synthetic_noises"}
  else
    log "Stage 0: using the real MUSAN at $musan_dir"
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: data preparation (audio from the .avi files) and the training/test noise dirs"
  emotk prepare-enterface "$corpus_dir" $data/all --nj $nj
  emotk validate-data-dir $data/all
  log "Every irregular file of the corpus is listed in $data/all/prepare_report.txt"
  "$EMOTK_ROOT/steps/make_noise_dirs.sh" --musan-dir "$musan_dir" --test-fraction $noise_test_fraction \
    --seed $seed $data/noise
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  for kind in $(kinds); do
    log "Stage 2: $kind features ($(kind_config $kind)) and per-speaker statistics of the clean corpus"
    copy_if_changed $data/all $data/$kind/all
    "$EMOTK_ROOT/steps/make_fbank.sh" --cmd "$train_cmd" --nj $nj --kind $kind --config "$(kind_config $kind)" \
      $data/$kind/all $exp/log/features/$kind
    emotk compute-cmvn $data/$kind/all
  done
  for set in $opensmile_sets; do
    log "Stage 2: openSMILE $set functionals and per-speaker statistics of the clean corpus"
    "$EMOTK_ROOT/steps/make_opensmile.sh" --cmd "$train_cmd" --nj $nj $data/all $set $exp/log/features/all
    emotk compute-cmvn $data/all --table "$(lower $set).scp"
  done
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  for p in $protocols; do
    log "Stage 3: $p folds"
    emotk split-data-dir $data/all $data/folds/$p $(split_opts $p)
  done
  for p in $nn_protocols; do
    for kind in $(kinds); do  # the same folds (same speakers, utterances and seed) over the feature dirs
      emotk split-data-dir $data/$kind/all $data/$kind/folds/$p $(split_opts $p)
      for f in $(folds_of $data/folds/$p); do
        cmp -s $data/folds/$p/$f/fold.yaml $data/$kind/folds/$p/$f/fold.yaml ||
          { log "$data/$kind/folds/$p/$f: other speakers than $data/folds/$p/$f"; exit 1; }
      done
    done
  done
fi

# noisy_test DIR: DIR/test_noisy, the test set mixed with the TEST noises (one per utterance, fixed
# seed), checked to share no noise with the training noises.
noisy_test() {
  "$EMOTK_ROOT/steps/augment_data_dir.sh" --cmd "$train_cmd" --noises-per-utt 1 --snrs-per-noise 1 \
    --snr-range "$snr_range" --seed $seed --keep-clean false $1/test $data/noise/test $1/test_noisy
  emotk check-noise-disjoint $data/noise/train $1/test_noisy
}

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  for p in $nn_protocols; do
    for f in $(folds_of $data/folds/$p); do
      for kind in $(kinds); do
        dir=$data/$kind/folds/$p/$f
        log "Stage 4: $p/$f: noise-augmented training set and noisy test set, $kind features"
        "$EMOTK_ROOT/steps/augment_data_dir.sh" --cmd "$train_cmd" --noises-per-utt $noises_per_utt \
          --snrs-per-noise $snrs_per_noise --snr-range "$snr_range" --seed $seed \
          $dir/train $data/noise/train $dir/train_aug
        noisy_test $dir
        emotk check-noise-disjoint $dir/train_aug $dir/test_noisy   # the noises each set actually used
        log "Stage 4: $dir/train_aug: $(wc -l < $dir/train_aug/utt2spk) utterances from $(wc -l < $dir/train/utt2spk)"
        for set in train_aug test_noisy; do
          "$EMOTK_ROOT/steps/make_fbank.sh" --cmd "$train_cmd" --nj $nj --kind $kind --config "$(kind_config $kind)" \
            $dir/$set $exp/log/features/$kind/$p/$f/$set
          emotk compute-cmvn $dir/$set
        done
      done
      if [ -n "$opensmile_sets" ]; then  # the SVMs' noisy test set: the very mixing the neural models get
        dir=$data/folds/$p/$f
        noisy_test $dir
        for kind in $(kinds); do
          cmp $dir/test_noisy/utt2aug $data/$kind/folds/$p/$f/test_noisy/utt2aug
        done
        for set in $opensmile_sets; do
          log "Stage 4: $p/$f: openSMILE $set of the noisy test set"
          "$EMOTK_ROOT/steps/make_opensmile.sh" --cmd "$train_cmd" --nj $nj $dir/test_noisy $set \
            $exp/log/features/all/$p/$f
          emotk compute-cmvn $dir/test_noisy --table "$(lower $set).scp"
        done
      fi
    done
  done
fi

# Every training run as "TAG PROTOCOL FOLD SEED CONFIG FEATURE-KIND" lines (kind "-" for the SVMs).
runs() {
  local s m kind p f set k seed_
  for s in $neural_systems; do
    m=${s%%:*} kind=${s#*:}
    for p in $nn_protocols; do
      for f in $(folds_of $data/folds/$p); do
        for seed_ in $seeds; do echo "${m}_$kind $p $f $seed_ $m$model_size $kind"; done
      done
    done
  done
  for set in $opensmile_sets; do
    for k in $svm_kernels; do
      for p in $protocols; do
        for f in $(folds_of $data/folds/$p); do echo "svm_${k}_$(lower $set) $p $f $first_seed svm_$k -"; done
      done
    done
  done
}

train_one() {  # train_one TAG PROTOCOL FOLD SEED CONFIG KIND
  local tag=$1 p=$2 f=$3 s=$4 config=$5 kind=$6 dir=$exp/$1/$2/$3/seed$4
  if [ "$kind" = - ]; then
    local table=${tag##*_}.scp
    local opts="--set inputs.functionals.table=$table --set inputs.functionals.norm_table=${table%.scp}_cmvn.scp"
    "$EMOTK_ROOT/steps/train.sh" --cmd "$train_cmd" --seed $s --opts "$opts" \
      $config $data/folds/$p/$f/train $data/folds/$p/$f/valid $dir
  else
    # --resume: a run interrupted with the recipe continues from its last checkpoint when re-run
    "$EMOTK_ROOT/steps/train.sh" --cmd "$cuda_cmd" --seed $s --opts "$train_opts --set train.num_threads=1 --resume" \
      $config $data/$kind/folds/$p/$f/train_aug $data/$kind/folds/$p/$f/valid $dir
  fi
}

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: training ($(runs | wc -l) runs, $nj at a time; runs done on the same data and config are skipped)"
  run_in_parallel $nj train_one < <(runs)
fi

decode_one() {  # decode_one TAG PROTOCOL FOLD SEED CONFIG KIND: the clean test set, and the noisy one if any
  local p=$2 f=$3 kind=$6 dir=$exp/$1/$2/$3/seed$4 root=$data/folds set
  [ "$kind" = - ] || root=$data/$kind/folds
  for set in test test_noisy; do
    [ -d $root/$p/$f/$set ] || continue
    "$EMOTK_ROOT/steps/decode.sh" --cmd "$decode_cmd" --set $set $dir $root/$p/$f/$set
  done
}

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: inference and scoring on the clean and noisy test sets ($nj at a time)"
  run_in_parallel $nj decode_one < <(runs)
fi

# The CLDNN runs that are probed: the first fold of the first neural protocol, seeds --probe-seeds.
probe_runs() {
  local p=${nn_protocols%% *} s m kind f seed_
  f=$(folds_of $data/folds/$p | head -n 1)
  for s in $neural_systems; do
    m=${s%%:*} kind=${s#*:}
    case $m in cldnn_*) for seed_ in $probe_seeds; do echo "${m}_$kind $p $f $seed_ $kind"; done ;; esac
  done
}

probe_one() {  # probe_one TAG PROTOCOL FOLD SEED KIND (paper 002 section 7.5: the clean training and test sets)
  local dir=$exp/$1/$2/$3/seed$4 fold=$data/$5/folds/$2/$3
  $decode_cmd $dir/log/probe.log emotk probe-modules --model $dir --train $fold/train --test $fold/test --out $dir/probe
}

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  log "Stage 7: module-wise probing of the CLDNNs ($(probe_runs | wc -l) models)"
  run_in_parallel $nj probe_one < <(probe_runs)
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  log "Stage 8: report"
  note="Real eNTERFACE'05 corpus at $corpus_dir"
  $synthetic && note="SYNTHETIC eNTERFACE'05 look-alike (espeak-ng speech, simulated emotion)"
  if $synthetic_musan; then note+=", SYNTHETIC MUSAN noise look-alike"; else note+=", real MUSAN noise at $musan_dir"; fi
  { $synthetic || $synthetic_musan; } && note+=": these numbers are NOT comparable to published results"
  dirs=()
  for tag in $(runs | cut -d' ' -f1 | sort -u); do dirs+=($exp/$tag); done
  emotk report "${dirs[@]}" --out "$results" --title "eNTERFACE'05 (paper 002: noise robustness)" \
    --note "$note." --sets test,test_noisy --tables "$tables"
  rows=()
  while read -r tag p f _ kind; do
    rows+=(--row "$(label_of $tag)=$exp/$tag/$p/$f/seed*/probe")
  done < <(probe_runs | sort -u -k1,1)
  [ ${#rows[@]} -eq 0 ] || emotk report-probes --results "$results" "${rows[@]}"
  log "Wrote $results"
fi
