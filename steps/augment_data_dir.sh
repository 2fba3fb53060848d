#!/usr/bin/env bash
# A noise-augmented copy of a data dir (emotk augment-data-dir): per utterance --noises-per-utt
# noises x --snrs-per-noise SNRs drawn in --snr-range, plus the clean copy unless --keep-clean false.
# Only tables are written (utt2aug records noise, offset and SNR); the noise is mixed in when the
# audio is read, by make_fbank.sh's jobs or a wav-input model. Augment training sets only.
#   steps/augment_data_dir.sh [options] IN_DATA NOISE_DATA OUT_DATA
#   steps/augment_data_dir.sh --seed 1 data/fold1/train data/noise_train data/fold1/train_aug
# Log: OUT_DATA's parent/log/augment_NAME.log. OUT_DATA is rewritten only when its inputs changed.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/path.sh"

# begin options
cmd=run_local.sh           # job launcher (a recipe's $train_cmd)
nj=1                       # accepted for a uniform call; the mixing runs in the feature extraction's jobs
noises_per_utt=20          # noises per utterance, drawn without replacement (paper 002: 20)
snrs_per_noise=3           # SNRs per noise, each a copy (paper 002: 3)
snr_range=-10:15           # LOW:HIGH in dB, SNRs drawn uniformly (paper 002: -10:15)
seed=0                     # random seed: with the utterance id it fixes every draw
keep_clean=true            # keep the clean copy under the original id (paper 002: x61 = 1 + 20 x 3)
# end options
. "$EMOTK_ROOT/local/parse_options.sh"

if [ $# -ne 3 ]; then echo "Usage: augment_data_dir.sh [options] IN_DATA NOISE_DATA OUT_DATA (--help lists the options)" >&2; exit 1; fi
in_data=$1 noise=$2 out_data=$3
opts=(--noise "$noise" --noises-per-utt "$noises_per_utt" --snrs-per-noise "$snrs_per_noise"
      --snr-range "$snr_range" --seed "$seed")
$keep_clean && opts+=(--keep-clean)

$cmd "$(dirname "$out_data")/log/augment_$(basename "$out_data").log" emotk augment-data-dir "$in_data" "$out_data" "${opts[@]}"
emotk validate-data-dir "$out_data"
