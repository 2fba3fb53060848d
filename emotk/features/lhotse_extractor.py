"""emotk's Kaldi-exact fbank and MFCC as lhotse feature extractors, registered as "emotk-fbank" and "emotk-mfcc".

    from emotk.features.lhotse_extractor import EmotkFbank, EmotkFbankConfig  # the import registers the names
    cuts = cuts.compute_and_store_features(extractor=EmotkFbank(EmotkFbankConfig(num_filters=80)),
                                           storage_path="feats", num_jobs=4)

A matrix equals what ``emotk extract-fbank`` writes for the same audio and options (samples on the
16-bit scale, Kaldi's arithmetic: ``emotk.features.extract``). One default differs from
conf/features/fbank40.yaml and mfcc13.yaml: ``snip_edges`` is False, because lhotse's storage
checks that a cut of ``d`` seconds has ``round(d / frame_shift)`` frames, and Kaldi's default
framing (snip_edges true) gives two frames fewer at 25 ms / 10 ms. ``from_emotk_config`` builds
an extractor from any emotk feature config as it is. lhotse has no plugin entry point: the
names exist once this module is imported (then ``FeatureExtractor.from_dict`` / ``from_yaml`` and
``create_default_feature_extractor`` find them). Importing lhotse imports torch; emotk's own
extraction does not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import numpy as np
from lhotse.features.base import FeatureExtractor, register_extractor

from emotk.errors import EmotkError
from emotk.features.extract import compute_features, computer_for, normalize_config


@dataclass
class EmotkFbankConfig:
    """The options of an emotk fbank config (conf/features/fbank40.yaml's values, snip_edges False)."""

    type: ClassVar[str] = "fbank"
    sample_rate: int = 16000
    frame_length: float = 0.025  # seconds
    frame_shift: float = 0.01  # seconds
    round_to_power_of_two: bool = True
    snip_edges: bool = False
    dither: float = 0.0
    remove_dc_offset: bool = True
    preemph_coeff: float = 0.97
    window_type: str = "povey"
    num_filters: int = 40
    low_freq: float = 20.0
    high_freq: float = 0.0  # <= 0: offset from Nyquist
    use_energy: bool = False
    raw_energy: bool = True
    energy_floor: float = 0.0

    def __post_init__(self):
        self.emotk_config()  # a bad value fails here, naming the option

    def emotk_config(self) -> dict:
        """The checked emotk config dict (``emotk.features.extract.normalize_config``)."""
        return normalize_config({"type": self.type, **asdict(self)}, type(self).__name__)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise EmotkError(f"{cls.__name__}: unknown option {unknown[0]!r}")
        return cls(**data)


@dataclass
class EmotkMfccConfig(EmotkFbankConfig):
    """The options of an emotk MFCC config (conf/features/mfcc13.yaml's values, snip_edges False)."""

    type: ClassVar[str] = "mfcc"
    num_ceps: int = 13
    cepstral_lifter: float = 22.0


class _EmotkExtractor(FeatureExtractor):
    @property
    def frame_shift(self) -> float:
        return self.config.frame_shift

    def feature_dim(self, sampling_rate: int) -> int:
        return computer_for(self.config.emotk_config()).dim

    def extract(self, samples, sampling_rate: int) -> np.ndarray:
        """Features ``[T, D]`` float32 of ``[samples]`` or lhotse's ``[channels, samples]`` in [-1, 1]
        (channels are averaged, as ``emotk extract-fbank`` does)."""
        if sampling_rate != self.config.sample_rate:
            raise EmotkError(f"{self.name}: audio at {sampling_rate} Hz, but the config's sample_rate is "
                             f"{self.config.sample_rate}: resample the cuts first (cuts.resample({self.config.sample_rate}))")
        samples = np.asarray(samples)
        return compute_features(samples.T if samples.ndim == 2 else samples, sampling_rate, self.config.emotk_config())


@register_extractor
class EmotkFbank(_EmotkExtractor):
    name = "emotk-fbank"
    config_type = EmotkFbankConfig


@register_extractor
class EmotkMfcc(_EmotkExtractor):
    name = "emotk-mfcc"
    config_type = EmotkMfccConfig


def from_emotk_config(config: dict) -> EmotkFbank | EmotkMfcc:
    """The extractor for an emotk feature config dict (``load_feature_config``), options kept as they are."""
    c = dict(normalize_config(config))
    kind = c.pop("type")
    return EmotkFbank(EmotkFbankConfig(**c)) if kind == "fbank" else EmotkMfcc(EmotkMfccConfig(**c))


def lhotse_native(config: dict):
    """lhotse's own ``Fbank`` / ``Mfcc`` (torch) with an emotk config's options: the reference emotk's
    extractor is compared with. lhotse works on the scale it is given: feed it samples times 32768
    to get emotk's (Kaldi's) values."""
    from lhotse import Fbank, FbankConfig, Mfcc, MfccConfig

    c = normalize_config(config)
    kwargs = dict(
        sampling_rate=c["sample_rate"], frame_length=c["frame_length"], frame_shift=c["frame_shift"],
        round_to_power_of_two=c["round_to_power_of_two"], remove_dc_offset=c["remove_dc_offset"],
        preemph_coeff=c["preemph_coeff"], window_type=c["window_type"], dither=0.0, snip_edges=c["snip_edges"],
        energy_floor=c["energy_floor"], raw_energy=c["raw_energy"], use_energy=c["use_energy"],
        low_freq=c["low_freq"], high_freq=c["high_freq"], num_filters=c["num_filters"],
    )
    if c["type"] == "fbank":
        return Fbank(FbankConfig(**kwargs))
    return Mfcc(MfccConfig(**kwargs, num_ceps=c["num_ceps"], cepstral_lifter=c["cepstral_lifter"]))
