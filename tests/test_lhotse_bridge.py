"""Data dir <-> lhotse manifests, labels in supervision.custom."""

from __future__ import annotations

import pytest

from emotk.data.lhotse_bridge import (
    data_dir_to_manifests,
    load_manifests,
    manifests_to_data_dir,
    save_manifests,
)
from tests.test_datadir import make_data_dir


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
