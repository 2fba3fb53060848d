#!/usr/bin/env bash
# Noise data dirs for augmentation: MUSAN's noise part (emotk prepare-musan) in OUT/all, split into
# disjoint training and test noises in OUT/train and OUT/test (emotk split-noise-dir, then checked
# by emotk check-noise-disjoint). Without --musan-dir, the synthetic MUSAN look-alike is written to
# --synthetic-dir first, with a loud warning. Augment training sets with OUT/train only.
#   steps/make_noise_dirs.sh [options] OUT
#   steps/make_noise_dirs.sh --musan-dir /corpora/musan data/noise
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/path.sh"

# begin options
musan_dir=""                         # a real MUSAN copy (root with noise/, or the folder holding musan/)
synthetic_dir=corpus/synthetic_musan   # where the synthetic look-alike goes without --musan-dir
test_fraction=0.2                    # share of the noise files kept for testing only
seed=0                               # synthetic corpus and split seed
# end options
. "$EMOTK_ROOT/local/parse_options.sh"

if [ $# -ne 1 ]; then echo "Usage: make_noise_dirs.sh [options] OUT (--help lists the options)" >&2; exit 1; fi
out=$1

if [ -z "$musan_dir" ]; then
  log "################################################################"
  log "# NO MUSAN GIVEN: augmenting with the SYNTHETIC noise look-alike. #"
  log "################################################################"
  musan_dir=$synthetic_dir
  emotk make-synthetic-corpus musan "$musan_dir" --seed "$seed"
fi
emotk prepare-musan "$musan_dir" "$out/all"
emotk split-noise-dir "$out/all" "$out/train" "$out/test" --test-fraction "$test_fraction" --seed "$seed"
emotk check-noise-disjoint "$out/train" "$out/test"
