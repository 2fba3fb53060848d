"""Data dir <-> lhotse manifests. Labels travel in ``supervision.custom``:
``{"emotion": "anger", "arousal": 0.3, ...}``.
"""

from __future__ import annotations

from pathlib import Path

from emotk.data.datadir import DIM_PREFIX, DataDir, validate_data_dir, write_data_dir
from emotk.errors import EmotkError

RECORDINGS = "recordings.jsonl.gz"
SUPERVISIONS = "supervisions.jsonl.gz"


def data_dir_to_manifests(data_dir: str | Path):
    """Return ``(RecordingSet, SupervisionSet)`` for a data dir with wav.scp."""
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    d = validate_data_dir(data_dir, require=["wav.scp"])
    recs = {}
    for rec in d.table("wav.scp"):
        try:
            recs[rec] = Recording.from_file(d.wav_path(rec), recording_id=rec)
        except Exception as e:
            raise EmotkError(f"{d.wav_path(rec)}: cannot read audio of {rec!r}: {e}") from None
    segments = d.table("segments") if d.has("segments") else {}
    gender = d.table("spk2gender") if d.has("spk2gender") else {}
    emo = d.table("utt2emo") if d.has("utt2emo") else {}
    dims = {dim: d.table(f"{DIM_PREFIX}{dim}") for dim in d.dims()}
    sups = []
    for utt, spk in d.utt2spk.items():
        rec, start, end = segments[utt] if utt in segments else (utt, 0.0, recs[utt].duration)
        custom = {"emotion": emo[utt]} if utt in emo else {}
        custom.update({dim: table[utt] for dim, table in dims.items()})
        sups.append(SupervisionSegment(
            id=utt, recording_id=rec, start=start, duration=round(end - start, 6), channel=0,
            speaker=spk, gender=gender.get(spk), custom=custom or None))
    return RecordingSet.from_recordings(recs.values()), SupervisionSet.from_segments(sups)


def manifests_to_data_dir(recordings, supervisions, data_dir: str | Path) -> DataDir:
    """Write a data dir from lhotse manifests; ``segments`` only where a supervision is not a whole recording."""
    recordings = {r.id: r for r in recordings}
    tables: dict[str, dict] = {"utt2spk": {}, "utt2dur": {}, "wav.scp": {}}
    segments, gender, emo, dims = {}, {}, {}, {}
    all_whole = True
    for sup in supervisions:
        if sup.speaker is None:
            raise EmotkError(f"supervision {sup.id!r} has no speaker")
        if sup.recording_id not in recordings:
            raise EmotkError(f"supervision {sup.id!r}: recording {sup.recording_id!r} not in the recordings manifest")
        if not sup.id.startswith(sup.speaker):
            raise EmotkError(f"supervision {sup.id!r} must start with its speaker id {sup.speaker!r}")
        rec = recordings[sup.recording_id]
        sources = [s for s in rec.sources if s.type == "file"]
        if not sources:
            raise EmotkError(f"recording {rec.id!r}: only file sources can go into wav.scp")
        tables["wav.scp"][rec.id] = str(Path(sources[0].source).resolve())
        tables["utt2spk"][sup.id] = sup.speaker
        tables["utt2dur"][sup.id] = round(sup.duration, 4)
        whole = sup.id == rec.id and abs(sup.start) < 1e-6 and abs(sup.duration - rec.duration) < 1e-3
        segments[sup.id] = (rec.id, round(sup.start, 4), round(sup.end, 4))
        all_whole = all_whole and whole
        if sup.gender:
            gender[sup.speaker] = sup.gender.lower()[0]
        for key, value in (sup.custom or {}).items():
            if key == "emotion":
                emo[sup.id] = value
            elif key in ("arousal", "valence", "dominance"):
                dims.setdefault(key, {})[sup.id] = float(value)
    if not all_whole:
        tables["segments"] = segments
    if gender:
        tables["spk2gender"] = gender
    if emo:
        tables["utt2emo"] = emo
    for dim, t in dims.items():
        tables[f"{DIM_PREFIX}{dim}"] = t
    return write_data_dir(data_dir, tables)


def save_manifests(recordings, supervisions, out_dir: str | Path) -> None:
    from emotk.fileio import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for manifest, name in ((recordings, RECORDINGS), (supervisions, SUPERVISIONS)):
        with atomic_path(out / name) as tmp:
            tmp.unlink()
            manifest.to_file(str(tmp) + ".jsonl.gz")
            Path(str(tmp) + ".jsonl.gz").replace(tmp)


def load_manifests(manifest_dir: str | Path):
    from lhotse import RecordingSet, SupervisionSet

    d = Path(manifest_dir)
    for name in (RECORDINGS, SUPERVISIONS):
        if not (d / name).is_file():
            raise EmotkError(f"{d / name}: not found")
    return RecordingSet.from_file(d / RECORDINGS), SupervisionSet.from_file(d / SUPERVISIONS)
