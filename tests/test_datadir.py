"""Data-dir layer: read/write/validate/fix/subset/combine, and the CLI's one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotk.data.datadir import (
    DataDir,
    combine_data_dirs,
    fix_data_dir,
    read_table,
    subset_data_dir,
    validate_data_dir,
    write_data_dir,
)
from emotk.errors import EmotkError

SPEAKERS = {"s1": "m", "s2": "f", "s3": "m"}
EMOS = ["anger", "neutral", "sadness"]


def make_data_dir(root: Path, name: str = "all", n_per_spk: int = 3) -> DataDir:
    """A small real data dir: real 16 kHz wavs, every table consistent."""
    wav_dir = root / f"{name}_wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tables = {"utt2spk": {}, "utt2emo": {}, "utt2dur": {}, "wav.scp": {}}
    for spk in SPEAKERS:
        for i in range(n_per_spk):
            utt = f"{spk}_u{i}"
            dur = 0.5 + 0.1 * i
            path = wav_dir / f"{utt}.wav"
            sf.write(path, (0.1 * rng.standard_normal(int(16000 * dur))).astype(np.float32), 16000)
            tables["utt2spk"][utt] = spk
            tables["utt2emo"][utt] = EMOS[i % len(EMOS)]
            tables["utt2dur"][utt] = dur
            tables["wav.scp"][utt] = str(path)
    tables["spk2gender"] = dict(SPEAKERS)
    return write_data_dir(root / name, tables, scalars={"emo_names": " ".join(EMOS)})


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from emotk.cli import main; main()", *args],
                          capture_output=True, text=True)


def test_write_and_validate_roundtrip(tmp_path):
    d = make_data_dir(tmp_path)
    assert d.utts == sorted(d.utts)
    assert read_table(d.path / "spk2utt")["s2"] == ["s2_u0", "s2_u1", "s2_u2"]
    assert d.table("utt2dur")["s1_u2"] == pytest.approx(0.7)
    assert d.speakers == ["s1", "s2", "s3"]


@pytest.mark.parametrize("corrupt, message", [
    (lambda p: (p / "utt2spk").write_text("s1_u1 s1\ns1_u0 s1\n"), "utt2spk:2: not sorted"),
    (lambda p: (p / "utt2emo").write_text((p / "utt2emo").read_text() + "s3_u2 anger\n"), "duplicate id"),
    (lambda p: (p / "utt2dur").write_text("\n".join((p / "utt2dur").read_text().splitlines()[:-1]) + "\n"),
     "is missing"),
    (lambda p: (p / "utt2dur").write_text((p / "utt2dur").read_text().replace("0.5", "-1", 1)), "must be > 0"),
    (lambda p: (p / "utt2dur").write_text((p / "utt2dur").read_text().replace("0.5", "nan", 1)), "finite"),
    (lambda p: (p / "spk2gender").write_text("s1 x\ns2 f\ns3 m\n"), "gender must be m or f"),
    (lambda p: (p / "utt2emo").write_text((p / "utt2emo").read_text().replace("s1_u0 anger", "s1_u0")),
     "utt2emo:1: expected '<id> <value>'"),
    (lambda p: (p / "utt2spk").write_bytes(b"s1_u0 \xff\xfe\n"), "not valid UTF-8"),
    (lambda p: (p / "wav.scp").write_text((p / "wav.scp").read_text().replace("s1_u0.wav", "gone.wav")),
     "audio file of 's1_u0' not found"),
    (lambda p: (p / "spk2utt").write_text("s1 s1_u0\ns2 s2_u0 s2_u1 s2_u2\ns3 s3_u0 s3_u1 s3_u2\n"),
     "does not match utt2spk"),
])
def test_validate_rejects_malformed(tmp_path, corrupt, message):
    d = make_data_dir(tmp_path)
    corrupt(d.path)
    with pytest.raises(EmotkError, match=message):
        validate_data_dir(d.path)


def test_validate_utt_prefix_and_required(tmp_path):
    d = make_data_dir(tmp_path)
    with pytest.raises(EmotkError, match="missing feats.scp.*extract-fbank"):
        validate_data_dir(d.path, require=["feats.scp"])
    (d.path / "utt2spk").write_text("".join(f"{u} s9\n" for u in d.utts))
    with pytest.raises(EmotkError, match="must start with its speaker id 's9'"):
        validate_data_dir(d.path)


def test_fix_data_dir_sorts_and_drops(tmp_path):
    d = make_data_dir(tmp_path)
    lines = (d.path / "utt2emo").read_text().splitlines()
    # unsorted, and two utterances missing from utt2emo
    (d.path / "utt2emo").write_text("\n".join(reversed(lines[2:])) + "\n")
    (d.path / "spk2utt").unlink()
    report = fix_data_dir(d.path)
    assert report == {"kept": 7, "dropped": 2, "dropped_by": {"utt2emo": 2}}
    fixed = validate_data_dir(d.path)
    assert len(fixed.utts) == 7 and "s1_u0" not in fixed.utts
    assert set(fixed.table("wav.scp")) == set(fixed.utts)


def test_subset_and_combine(tmp_path):
    d = make_data_dir(tmp_path)
    a = subset_data_dir(d.path, tmp_path / "a", spks=["s1", "s2"])
    b = subset_data_dir(d.path, tmp_path / "b", utts=["s3_u0", "s3_u2"])
    assert a.speakers == ["s1", "s2"] and b.utts == ["s3_u0", "s3_u2"]
    assert (a.path / "emo_names").read_text().split() == EMOS
    assert set(a.table("spk2gender")) == {"s1", "s2"}
    # wav paths were made absolute, so the subset validates from anywhere
    assert all(Path(p).is_absolute() for p in b.table("wav.scp").values())
    c = combine_data_dirs(tmp_path / "c", [a.path, b.path])
    validate_data_dir(c.path)
    assert len(c.utts) == 8
    with pytest.raises(EmotkError, match="also in"):
        combine_data_dirs(tmp_path / "dup", [a.path, a.path])
    with pytest.raises(EmotkError, match="speaker 'nobody' not in"):
        subset_data_dir(d.path, tmp_path / "x", spks=["nobody"])
    assert not (tmp_path / "x").exists()


def test_relative_wav_paths_resolve_against_data_dir(tmp_path):
    d = make_data_dir(tmp_path)
    rel = {u: f"../all_wav/{u}.wav" for u in d.utts}
    (d.path / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in sorted(rel.items())))
    validate_data_dir(d.path)
    sub = subset_data_dir(d.path, tmp_path / "deeper" / "sub", spks=["s1"])
    assert validate_data_dir(sub.path).wav_path("s1_u0") == (tmp_path / "all_wav" / "s1_u0.wav").resolve()


def test_cli_validate_ok_and_one_line_error(tmp_path):
    d = make_data_dir(tmp_path)
    ok = run_cli("validate-data-dir", str(d.path))
    assert ok.returncode == 0, ok.stderr
    assert "9 utterances, 3 speakers" in ok.stderr
    (d.path / "utt2spk").write_text("s1_u1 s1\ns1_u0 s1\n")
    bad = run_cli("validate-data-dir", str(d.path))
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "utt2spk:2: not sorted" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_fix_reports_counts(tmp_path):
    d = make_data_dir(tmp_path)
    (d.path / "utt2dur").write_text("".join(f"{u} 1.0\n" for u in d.utts[1:]))
    r = run_cli("fix-data-dir", str(d.path))
    assert r.returncode == 0 and "kept 8 utterances, dropped 1 (1 missing from utt2dur)" in r.stderr


def test_help_has_examples():
    for cmd in ("validate-data-dir", "fix-data-dir", "subset-data-dir", "combine-data-dir", "split-data-dir"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0 and "Example:" in r.stdout, cmd
