"""On-the-fly noise augmentation of training examples (``train.augment`` of the config).

Each training example's audio gets noise (``NoiseMixer``: the offline path's noise choice, offset
rule and SNR over the whole utterance) with probability ``prob`` at an SNR uniform in
``snr_range``, and the model's inputs are computed from the mixed audio
(``emotk.training.inputs.Source.read_mixed``): wav samples are mixed before their normalization,
feats.scp is computed again with the config its extraction recorded. Valid, test and inference
data are never mixed.

Every draw is keyed by ``(epoch, utterance id)`` with the run's seed: the epoch travels with the
example (``emotk.training.dataset.Example``), so a run gets the same noises with any
``num_workers`` and batch order, a resumed run the same as an uninterrupted one, and each epoch
other noises. All pieces of one utterance (``segments``) and all inputs of one example share the
draw. Normalization statistics (per-speaker CMVN, global) stay those of the clean data.

``prob: 0`` or ``noise: null`` is off: the loader reads the tables exactly as without augmentation.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from emotk.augment.mix import NoiseMixer


class OnlineAugment:
    """The training set's mixer, checked against its inputs (each must be computable from audio)."""

    def __init__(self, mixer: NoiseMixer, sources: dict):
        for src in sources.values():
            src.check_mixable()
        self.mixer = mixer

    def mix_for(self, epoch: int, utt: str) -> Callable[[np.ndarray, int], np.ndarray] | None:
        """``mix(samples, sample_rate)`` for this epoch's copy of ``utt``, or None when it stays clean."""
        key = (int(epoch), utt)
        if not self.mixer.mixes(key):
            return None
        return lambda samples, sample_rate: self.mixer(samples, sample_rate, key)


def for_training(cfg: dict, sources: dict) -> OnlineAugment | None:
    """The training set's ``OnlineAugment`` from a resolved config, or None when augmentation is off."""
    from emotk.config import augment_on

    if not augment_on(cfg):
        return None
    aug = cfg["train"]["augment"]
    return OnlineAugment(NoiseMixer(aug["noise"], aug["prob"], aug["snr_range"], seed=cfg["train"]["seed"]), sources)
