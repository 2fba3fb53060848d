#!/usr/bin/env bash
# EmoDB (Berlin Database of Emotional Speech), 7 classes, 10 speakers.
#
#   bash run.sh                         # synthetic look-alike corpus (no real corpus given)
#   bash run.sh --corpus-dir /data/emodb
#   bash run.sh --stage 6 --stop-stage 9 --seeds "1 2 3"
#
# Systems, all under the same protocols and folds:
#   - a neural model on 40-bin log-mel with speaker z-norm (--model-config; default the 2D CNN-LSTM
#     of paper 004 at CPU size, trained until its valid UA stops improving);
#   - an SVM on each openSMILE functional set of --opensmile-sets (eGeMAPSv02, ComParE_2016) with
#     per-speaker standardization, hyper-parameters chosen on the valid speakers;
#   - the late fusion (mean posterior) of the systems in --fusion.
# Protocols: leave-one-speaker-out over the 10 speakers (speaker-independent; per fold two further
# speakers are held out as the valid set for early stopping and grid search), and paper 004's
# speaker-dependent random 80/20 split (labelled speaker-dependent everywhere).
# Normalization (--norm): speaker (default; statistics of all of a speaker's utterances, features only:
# transductive), utterance, or global (training-set statistics, what an unseen speaker gets).
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
seed=0                     # corpus synthesis and split seed
seeds="1 2 3"              # training seeds of the neural model; mean and std are taken over folds x seeds
protocols="loso sd"        # loso: leave-one-speaker-out; sd: speaker-dependent random 80/20
valid_speakers=2           # loso: speakers held out of each training side for model selection
norm=speaker               # feature normalization scope: speaker | utterance | global
feat_config="$EMOTK_ROOT/conf/features/fbank40.yaml"       # fbank features of the neural model
model_config="$EMOTK_ROOT/conf/model/cnn_lstm2d_small.yaml"  # the neural model
model_tag=""               # exp/ subdir of the neural model (default: the model config's file name)
train_opts=""              # extra options for the neural model's 'emotk train', e.g. "--set train.epochs=5"
opensmile_sets="eGeMAPSv02 ComParE_2016"   # functional sets, each with an SVM ("" for none)
svm_config="$EMOTK_ROOT/conf/model/svm_linear.yaml"   # linear SVM: the best kernel on the synthetic LOSO folds
fusion="neural eGeMAPSv02"   # late fusion of these systems ("neural" = the neural model; "" for none)
data=data                  # data dirs
exp=exp                    # experiment dirs
results=RESULTS.md         # the report written by the last stage
# end options

. "$EMOTK_ROOT/local/parse_options.sh"

[ -n "$model_tag" ] || model_tag=$(basename "$model_config" .yaml)
if [ -z "$corpus_dir" ]; then
  synthetic=true
  corpus_dir=$synthetic_dir
  warn_synthetic
else
  synthetic=false
fi
lower() { echo "$1" | tr '[:upper:]' '[:lower:]'; }
svm_tag() { echo "$(lower "$1")_svm"; }
tag_of() { if [ "$1" = neural ]; then echo "$model_tag"; else svm_tag "$1"; fi; }
systems() { echo "$model_tag"; for s in $opensmile_sets; do svm_tag "$s"; done; }
fusion_tag=""
for s in $fusion; do fusion_tag="${fusion_tag:+${fusion_tag}+}$(tag_of "$s")"; done

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
  for set in $opensmile_sets; do
    log "Stage 3: openSMILE $set functionals"
    $train_cmd JOB=1:$nj $exp/log/opensmile_$set.JOB.log \
      emotk extract-opensmile $data/all --set "$set" --level functionals --nj $nj --job JOB
    emotk extract-opensmile $data/all --set "$set" --level functionals --nj $nj --merge
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

# Every (system, protocol, fold, seed) training run as "system protocol fold seed" lines. The SVMs
# are deterministic (their seed changes nothing), so they are trained once, with the first seed.
runs() {
  local first=${seeds%% *}
  for p in $protocols; do
    for f in $(cat $data/folds/$p/folds.txt); do
      for s in $seeds; do echo "$model_tag $p $f $s"; done
      for set in $opensmile_sets; do echo "$(svm_tag "$set") $p $f $first"; done
    done
  done
}

train_one() {  # train_one SYSTEM PROTOCOL FOLD SEED
  local dir=$exp/$1/$2/$3/seed$4 config opts=()
  if [ "$1" = "$model_tag" ]; then
    config=$model_config
    read -r -a opts <<< "$train_opts"
    opts+=(--set train.num_threads=1 --set inputs.feats.norm=$norm)
  else
    local table=${1%_svm}.scp
    config=$svm_config
    opts=(--set inputs.functionals.table=$table --set inputs.functionals.norm=$norm)
    [ "$norm" = speaker ] && opts+=(--set inputs.functionals.norm_table=${table%.scp}_cmvn.scp)
  fi
  $train_cmd $dir/train.out emotk train --config "$config" \
    --train $data/folds/$2/$3/train --valid $data/folds/$2/$3/valid --exp $dir --seed $4 "${opts[@]}"
}

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: training $(systems | tr '\n' ' ')($(runs | wc -l) runs, $nj at a time; runs done on the same data and config are skipped)"
  run_in_parallel $nj train_one < <(runs)
fi

score_one() {  # score_one SYSTEM PROTOCOL FOLD SEED
  local dir=$exp/$1/$2/$3/seed$4
  $decode_cmd $dir/log/infer_test.log emotk infer --model $dir $data/folds/$2/$3/test --out $dir/predictions/test
  $decode_cmd $dir/log/score_test.log emotk score --ref $data/folds/$2/$3/test --hyp $dir/predictions/test \
    --out $dir/scores/test.json
}

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  log "Stage 7: inference and scoring on each fold's test speakers ($nj at a time)"
  run_in_parallel $nj score_one < <(runs)
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ] && [ -n "$fusion_tag" ]; then
  log "Stage 8: late fusion $fusion_tag (mean posterior)"
  first=${seeds%% *}
  for p in $protocols; do
    for f in $(cat $data/folds/$p/folds.txt); do
      for s in $seeds; do
        members=()
        for m in $fusion; do
          t=$(tag_of "$m")
          [ "$m" = neural ] && members+=($exp/$t/$p/$f/seed$s/predictions/test) || members+=($exp/$t/$p/$f/seed$first/predictions/test)
        done
        dir=$exp/fusion/$fusion_tag/$p/$f/seed$s
        emotk ensemble-predictions "${members[@]}" --out $dir/predictions/test
        emotk score --ref $data/folds/$p/$f/test --hyp $dir/predictions/test --out $dir/scores/test.json \
          --tag "fusion:$fusion_tag"
      done
    done
  done
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  log "Stage 9: report"
  note="Real EmoDB corpus at $corpus_dir."
  $synthetic && note="SYNTHETIC look-alike corpus (espeak-ng speech, simulated emotion): these numbers are NOT comparable to published EmoDB results."
  dirs=()
  for m in $(systems); do dirs+=($exp/$m); done
  [ -n "$fusion_tag" ] && dirs+=($exp/fusion/$fusion_tag)
  emotk report "${dirs[@]}" --out "$results" --title "EmoDB" --note "$note" --compare
  log "Wrote $results"
fi
