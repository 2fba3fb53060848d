"""Data dir <-> lhotse manifests, labels in supervision.custom; emotk's extractor as a lhotse FeatureExtractor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emotk.data.lhotse_bridge import (
    data_dir_to_manifests,
    load_manifests,
    manifests_to_data_dir,
    save_manifests,
)
from emotk.errors import EmotkError
from tests.test_datadir import make_data_dir

CONF = Path(__file__).resolve().parents[1] / "conf" / "features"


def test_roundtrip_keeps_labels_speakers_genders(tmp_path):
    d = make_data_dir(tmp_path)
    recs, sups = data_dir_to_manifests(d.path)
    assert len(recs) == 9 and len(sups) == 9
    sup = sups["s2_u1"]
    assert sup.speaker == "s2" and sup.gender == "f" and sup.custom["emotion"] == "neutral"
    assert sup.duration == pytest.approx(0.6, abs=1e-6) and recs["s2_u1"].sampling_rate == 16000
    save_manifests(recs, sups, tmp_path / "manifests")
    recs2, sups2 = load_manifests(tmp_path / "manifests")
    back = manifests_to_data_dir(recs2, sups2, tmp_path / "back")
    assert back.table("utt2emo") == d.table("utt2emo")
    assert back.table("spk2gender") == d.table("spk2gender")
    assert not back.has("segments")
    assert {u: round(v, 3) for u, v in back.table("utt2dur").items()} == d.table("utt2dur")


def test_segments_survive(tmp_path):
    d = make_data_dir(tmp_path)
    from lhotse import SupervisionSegment, SupervisionSet

    recs, _ = data_dir_to_manifests(d.path)
    sups = SupervisionSet.from_segments([
        SupervisionSegment(id="s1_u2-a", recording_id="s1_u2", start=0.0, duration=0.3, speaker="s1",
                           custom={"emotion": "anger", "arousal": 0.5}),
        SupervisionSegment(id="s1_u2-b", recording_id="s1_u2", start=0.3, duration=0.4, speaker="s1",
                           custom={"emotion": "sadness", "arousal": -0.5}),
    ])
    out = manifests_to_data_dir(recs, sups, tmp_path / "seg")
    assert out.table("segments")["s1_u2-b"] == ("s1_u2", 0.3, 0.7)
    assert out.table("utt2arousal") == {"s1_u2-a": 0.5, "s1_u2-b": -0.5}
    assert list(out.table("wav.scp")) == ["s1_u2"]


# emotk's extractor inside lhotse --------------------------------------------------------------

def test_extractor_names_round_trip_through_lhotse_serialization(tmp_path):
    import pickle

    from lhotse.features.base import FeatureExtractor, create_default_feature_extractor

    from emotk.features.extract import _OPTIONS, load_feature_config
    from emotk.features.lhotse_extractor import EmotkFbank, EmotkFbankConfig, EmotkMfcc, from_emotk_config

    for name, cls, yaml_name in (("emotk-fbank", EmotkFbank, "fbank40"), ("emotk-mfcc", EmotkMfcc, "mfcc13")):
        ex = create_default_feature_extractor(name)
        assert type(ex) is cls
        shipped = load_feature_config(CONF / f"{yaml_name}.yaml")
        assert set(ex.config.to_dict()) | {"type"} == set(_OPTIONS[shipped["type"]])
        assert ex.config.emotk_config() == dict(shipped, snip_edges=False)  # the one documented difference
        assert from_emotk_config(shipped).config.emotk_config() == shipped
    ex = EmotkFbank(EmotkFbankConfig(num_filters=80, use_energy=True, window_type="hamming"))
    back = FeatureExtractor.from_dict(ex.to_dict())
    assert type(back) is EmotkFbank and back.config == ex.config and back.feature_dim(16000) == 81
    ex.to_yaml(tmp_path / "fbank.yaml")
    assert FeatureExtractor.from_yaml(tmp_path / "fbank.yaml").config == ex.config
    assert pickle.loads(pickle.dumps(ex)).config == ex.config  # num_jobs > 1 sends it to worker processes
    with pytest.raises(EmotkError, match="unknown option 'num_bins'"):
        FeatureExtractor.from_dict({"feature_type": "emotk-fbank", "num_bins": 40})
    with pytest.raises(EmotkError, match="EmotkFbankConfig: key 'dither' must be 0"):
        EmotkFbankConfig(dither=0.1)


def test_compute_and_store_features_equals_emotk_extract_fbank(tmp_path):
    from lhotse import CutSet, NumpyFilesWriter

    from emotk.data.ark import read_matrix
    from emotk.features.extract import load_feature_config
    from emotk.features.lhotse_extractor import EmotkFbank, EmotkFbankConfig
    from emotk.features.pipeline import extract_data_dir

    d = make_data_dir(tmp_path)
    recs, sups = data_dir_to_manifests(d.path)
    cuts = CutSet.from_manifests(recordings=recs, supervisions=sups)
    cuts = cuts.compute_and_store_features(extractor=EmotkFbank(), storage_path=tmp_path / "feats", num_jobs=1,
                                           storage_type=NumpyFilesWriter, progress_bar=False)
    # emotk's data-dir extraction with the same options: fbank40 with snip_edges false
    extract_data_dir(d.path, dict(load_feature_config(CONF / "fbank40.yaml"), snip_edges=False), log=lambda m: None)
    ours = {u: read_matrix(d.resolve(v)) for u, v in d.table("feats.scp").items()}
    assert sorted(c.recording_id for c in cuts) == sorted(ours)
    for cut in cuts:
        feats = cut.load_features()
        assert cut.features.type == "emotk-fbank" and cut.num_frames == round(cut.duration / 0.01)
        np.testing.assert_array_equal(feats, ours[cut.recording_id])
    with pytest.raises(EmotkError, match=r"audio at 8000 Hz.*cuts\.resample\(16000\)"):
        EmotkFbank(EmotkFbankConfig()).extract(np.zeros((1, 8000), np.float32), 8000)
