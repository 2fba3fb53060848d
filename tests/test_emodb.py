"""EmoDB: the synthetic look-alike, prepare_emodb on it and on broken copies, the CLI, the synthesizer."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotk.corpora.emodb import EMO_NAMES, TEXTS, _counts, make_synthetic, prepare_emodb
from emotk.data.datadir import read_table, validate_data_dir
from emotk.errors import EmotkError


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from emotk.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def broken_copy(tiny_emodb_corpus, tmp_path):
    """A writable copy of the tiny corpus with only three good wavs; tests add bad files to ``wav/``."""
    root = tmp_path / "emodb"
    (root / "wav").mkdir(parents=True)
    for p in sorted((tiny_emodb_corpus / "wav").glob("*.wav"))[:3]:
        shutil.copy(p, root / "wav" / p.name)
    return root


# --- synthetic corpus and prepare ----------------------------------------------------------------

def test_synthetic_layout_and_format(tiny_emodb_corpus):
    for name in ("wav", "lablaut", "labsilb", "silb"):
        assert (tiny_emodb_corpus / name).is_dir()
    assert (tiny_emodb_corpus / "erkennung.txt").is_file() and (tiny_emodb_corpus / "erklaerung.txt").is_file()
    wavs = sorted((tiny_emodb_corpus / "wav").iterdir())
    assert len(wavs) == 56
    info = sf.info(str(wavs[0]))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
    x, _ = sf.read(str(wavs[0]))
    assert 0.01 < np.abs(x).max() < 1.0


def test_prepare_synthetic(tiny_emodb_corpus, tmp_path):
    d = prepare_emodb(tiny_emodb_corpus, tmp_path / "data")
    validate_data_dir(d.path, require=("wav.scp", "utt2emo", "utt2dur", "spk2gender"))
    assert len(d.utts) == 56
    assert d.speakers == ["03", "08", "09", "10"]
    assert d.table("spk2gender") == {"03": "m", "08": "f", "09": "f", "10": "m"}
    names = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness",
             "N": "neutral"}
    utt2emo = d.table("utt2emo")
    assert all(utt2emo[u] == names[u[5]] for u in d.utts)
    utt2text = read_table(d.path / "utt2text")  # 03a01Fa: speaker 03, text a01, emotion F, version a
    assert list(utt2text) == d.utts and all(utt2text[u] == u[2:5] and utt2text[u] in TEXTS for u in d.utts)
    spk_text = Counter((d.utt2spk[u], utt2text[u]) for u in d.utts)
    assert len({t for _, t in spk_text}) == 10  # the synthetic corpus speaks EmoDB's ten sentences too
    assert Counter(utt2emo.values()) == {names[k]: v for k, v in _counts(56).items()}
    assert d.scalar("emo_names").split() == EMO_NAMES == sorted(names.values())
    spk_emo = Counter((d.utt2spk[u], utt2emo[u]) for u in d.utts)
    assert len(spk_emo) == 28 and min(spk_emo.values()) >= 1  # every speaker has every emotion
    wav = d.table("wav.scp")
    u = d.utts[0]
    assert Path(wav[u]).is_absolute() and Path(wav[u]) == (tiny_emodb_corpus / "wav" / f"{u}.wav").resolve()
    assert d.table("utt2dur")[u] == pytest.approx(sf.info(wav[u]).duration, abs=1e-3)
    assert all(1.0 < v < 10.0 for v in d.table("utt2dur").values())


def test_counts_follow_emodb_proportions():
    assert _counts(535) == {"W": 127, "L": 81, "N": 79, "F": 71, "A": 69, "T": 62, "E": 46}
    for n in (7, 20, 56, 300):
        c = _counts(n)
        assert sum(c.values()) == n and min(c.values()) >= 1


def test_accepts_root_wav_folder_and_renamed_folder(tiny_emodb_corpus, tmp_path):
    ref = prepare_emodb(tiny_emodb_corpus, tmp_path / "a")
    from_wav = prepare_emodb(tiny_emodb_corpus / "wav", tmp_path / "b")
    assert from_wav.table("wav.scp") == ref.table("wav.scp")
    assert from_wav.table("utt2emo") == ref.table("utt2emo")
    renamed = tmp_path / "copy" / "wav_corpus"
    shutil.copytree(tiny_emodb_corpus / "wav", renamed)
    d = prepare_emodb(renamed, tmp_path / "c")
    assert d.table("utt2emo") == ref.table("utt2emo")
    assert Path(next(iter(d.table("wav.scp").values()))).parent == renamed.resolve()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = tree_digest(make_synthetic(tmp_path / "a", seed=3, size=7, duration=1.0))
    b = tree_digest(make_synthetic(tmp_path / "b", seed=3, size=7, duration=1.0))
    c = tree_digest(make_synthetic(tmp_path / "c", seed=4, size=7, duration=1.0))
    assert len([k for k in a if k.startswith("wav/")]) == 7
    assert a == b
    assert a != c
    assert all(a[k] != c[k] for k in a if k.startswith("wav/") and k in c)


def test_utterance_depends_only_on_seed_and_name(tiny_emodb_corpus, tmp_path):
    """A small corpus holds the same audio for a name as a bigger one (no hidden synthesizer state)."""
    small = make_synthetic(tmp_path / "small", seed=0, size=7)
    names = [{p.name for p in (root / "wav").iterdir()} for root in (small, tiny_emodb_corpus)]
    common = sorted(names[0] & names[1])
    assert common
    for name in common:
        assert (small / "wav" / name).read_bytes() == (tiny_emodb_corpus / "wav" / name).read_bytes()


def test_duration_caps_utterances(tmp_path):
    d = make_synthetic(tmp_path / "short", seed=0, size=7, duration=0.8)
    durs = [sf.info(str(p)).duration for p in (d / "wav").iterdir()]
    assert max(durs) <= 0.8 + 1e-3 and min(durs) > 0.5


@pytest.mark.parametrize("size", [0, 6, -1])
def test_bad_size(tmp_path, size):
    with pytest.raises(EmotkError, match="size must be"):
        make_synthetic(tmp_path / "x", size=size)
    assert not (tmp_path / "x").exists()


def test_bad_seed_and_duration(tmp_path):
    with pytest.raises(EmotkError, match="seed must be >= 0"):
        make_synthetic(tmp_path / "x", seed=-1, size=7)
    with pytest.raises(EmotkError, match="duration must be > 0"):
        make_synthetic(tmp_path / "x", size=7, duration=0)
    assert not (tmp_path / "x").exists()


# --- broken corpora ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content, reason", [
    ("03a01Xa.wav", "copy", "unknown emotion letter 'X'"),
    ("07a01Wa.wav", "copy", "unknown speaker '07'"),
    ("03a03Wa.wav", "copy", "unknown text id 'a03'"),
    ("03a01W.wav", "copy", "name is not"),
    ("hello.wav", "copy", "name is not"),
    ("notes.txt", "copy", "not a .wav file"),
    ("03a02Wb.wav", b"this is not audio at all" * 10, "unreadable audio"),
    ("03a04Wb.wav", b"", "empty file (0 bytes)"),
])
def test_bad_file_is_named(broken_copy, tmp_path, name, content, reason):
    good = next((broken_copy / "wav").iterdir())
    target = broken_copy / "wav" / name
    if content == "copy":
        shutil.copy(good, target)
    else:
        target.write_bytes(content)
    with pytest.raises(EmotkError) as e:
        prepare_emodb(broken_copy, tmp_path / "data")
    msg = str(e.value)
    assert f"{target}: {reason}" in msg
    assert msg.splitlines()[0].endswith("1 file(s) do not fit the EmoDB layout:")
    assert not (tmp_path / "data").exists()


def test_header_only_wav_has_no_samples(broken_copy, tmp_path):
    target = broken_copy / "wav" / "03a05Wb.wav"
    sf.write(str(target), np.zeros(0, np.float32), 16000, subtype="PCM_16")
    with pytest.raises(EmotkError, match=f"{target}: audio has no samples"):
        prepare_emodb(broken_copy, tmp_path / "data")


def test_every_bad_file_is_listed(broken_copy, tmp_path):
    good = next((broken_copy / "wav").iterdir())
    for name in ("03a01Xa.wav", "xyz.wav", "16b10Qa.wav"):
        shutil.copy(good, broken_copy / "wav" / name)
    (broken_copy / "wav" / "03a02Wb.wav").write_bytes(b"RIFF garbage")
    with pytest.raises(EmotkError) as e:
        prepare_emodb(broken_copy, tmp_path / "data")
    lines = str(e.value).splitlines()
    assert "4 file(s) do not fit" in lines[0]
    assert len(lines) == 5
    for name in ("03a01Xa.wav", "xyz.wav", "16b10Qa.wav", "03a02Wb.wav"):
        assert any(name in line for line in lines[1:])


def test_missing_or_empty_corpus(tmp_path):
    with pytest.raises(EmotkError, match="not found"):
        prepare_emodb(tmp_path / "nope", tmp_path / "data")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmotkError, match="neither a wav/ folder nor"):
        prepare_emodb(tmp_path / "empty", tmp_path / "data")
    (tmp_path / "empty" / "wav").mkdir()
    with pytest.raises(EmotkError, match="no EmoDB wav files"):
        prepare_emodb(tmp_path / "empty", tmp_path / "data")


# --- CLI -----------------------------------------------------------------------------------------------

def test_cli_prepare_ok(tiny_emodb_corpus, tmp_path):
    r = run_cli("prepare-emodb", str(tiny_emodb_corpus), str(tmp_path / "data"))
    assert r.returncode == 0, r.stderr
    assert "56 utterances of the SYNTHETIC EmoDB look-alike" in r.stderr
    assert "anger 13/127" in r.stderr and "per speaker: 03 14, 08 14, 09 14, 10 14" in r.stderr
    validate_data_dir(tmp_path / "data")


def test_cli_prepare_bad_corpus(broken_copy, tmp_path):
    (broken_copy / "wav" / "03a01Wz.wav").write_bytes(b"")
    r = run_cli("prepare-emodb", str(broken_copy), str(tmp_path / "data"))
    assert r.returncode == 1
    first = r.stderr.splitlines()[0]
    assert first.startswith("emotk: error: ") and "1 file(s) do not fit the EmoDB layout" in first
    assert "03a01Wz.wav" in r.stderr and "Traceback" not in r.stderr


def test_cli_make_synthetic(tmp_path):
    r = run_cli("make-synthetic-corpus", "emodb", str(tmp_path / "c"), "--size", "7", "--seed", "2",
                "--duration", "1")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "c" / "wav").glob("*.wav"))) == 7
    r = run_cli("make-synthetic-corpus", "nosuchcorpus", str(tmp_path / "d"))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]  # one line
    assert "no synthetic corpus 'nosuchcorpus'" in r.stderr and "emodb" in r.stderr
    r = run_cli("make-synthetic-corpus", "emodb", str(tmp_path / "e"), "--size", "3")
    assert r.returncode == 1 and "size must be" in r.stderr and "Traceback" not in r.stderr


# --- synthesizer -------------------------------------------------------------------------------------

def _median_f0(wav, sr):
    import parselmouth

    f0 = parselmouth.Sound(wav.astype(np.float64), sr).to_pitch().selected_array["frequency"]
    return np.median(f0[f0 > 0])


def test_synthesize_is_reproducible_and_validates_voice():
    from emotk.corpora.tts import synthesize

    a, sr = synthesize("Der Lappen liegt auf dem Eisschrank.", variant="m3")
    synthesize("Etwas ganz anderes, mit einer anderen Stimme.", variant="f2", pitch=80)
    b, _ = synthesize("Der Lappen liegt auf dem Eisschrank.", variant="m3")
    assert sr == 22050 and a.dtype == np.float32 and np.array_equal(a, b)
    assert 0.05 < np.abs(a).max() <= 1.0 and 1.0 < a.size / sr < 4.0
    with pytest.raises(EmotkError, match="no voice 'xx'"):
        synthesize("Hallo", voice="xx")
    with pytest.raises(EmotkError, match="no voice 'de\\+nope'"):
        synthesize("Hallo", variant="nope")


def test_modify_prosody_does_what_it_says():
    from emotk.corpora.tts import modify_prosody, resample, synthesize

    wav, sr = synthesize("Das will sie am Mittwoch abgeben.", variant="m1")
    f0 = _median_f0(wav, sr)
    higher = modify_prosody(wav, sr, f0_shift=1.5)
    assert _median_f0(higher, sr) / f0 == pytest.approx(1.5, rel=0.08)
    faster = modify_prosody(wav, sr, tempo=1.25)
    assert faster.size / wav.size == pytest.approx(0.8, rel=0.03)
    assert np.array_equal(modify_prosody(wav, sr, jitter=0.05, breathiness=0.3, seed=1),
                          modify_prosody(wav, sr, jitter=0.05, breathiness=0.3, seed=1))
    assert resample(wav, sr, 16000).size == pytest.approx(wav.size * 16000 / sr, abs=1)
