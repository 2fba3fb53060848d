"""eNTERFACE'05: the file-tree irregularities (synthetic look-alike and hand-built trees), labels from
folders, .avi decoding against independent decoders, the wav cache, bad input and the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotk.corpora.enterface import (EMO_NAMES, EXPECTED_PER_EMOTION, PAPER_TOTAL, REPORT, decode_avi, is_synthetic,
                                     make_synthetic, prepare_enterface, scan_corpus, summary, synthetic_audio,
                                     synthetic_tree)
from emotk.corpora.tts import write_avi
from emotk.data.datadir import validate_data_dir
from emotk.errors import EmotkError
from tests.references import swr_decode

SIZE = 4  # subjects 3, 11, 16, 23 (every irregularity) + subject 6's unsegmented files


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from emotk.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("enterface") / "corpus", seed=0, size=SIZE, duration=0.5)


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    return prepare_enterface(corpus, tmp_path_factory.mktemp("enterface_data") / "all", nj=2)


@pytest.fixture(scope="module")
def small_avi(tmp_path_factory):
    """A 0.3 s stereo 48 kHz .avi (two tones, channels differ)."""
    t = np.arange(int(0.3 * 48000)) / 48000
    audio = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)], axis=1)
    path = tmp_path_factory.mktemp("avi") / "tone.avi"
    write_avi(path, audio, 48000)
    return path


def make_tree(root: Path, avi: Path, rels: list[str]) -> Path:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(avi, root / rel)
    return root


def report(d) -> list[str]:
    return (Path(d.path) / REPORT).read_text(encoding="utf-8").splitlines()


# --- the real corpus's tree, counts ------------------------------------------------------------------

def test_full_tree_counts_match_the_corpus(tmp_path):
    """The full look-alike tree (empty files: only the layout is scanned) has the real corpus's counts:
    1263 .avi in 43 subject folders (no subject 12), 1257 utterances of 42 subjects after subject 6."""
    tree = synthetic_tree()
    for rel, *_ in tree:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).touch()
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(tree) == 1263 and len(folders) == 43 and "subject 12" not in folders
    scan = scan_corpus(tmp_path)
    assert not scan.errors and scan.n_avi == 1263
    assert len(scan.utts) == PAPER_TOTAL
    assert len({u.speaker for u in scan.utts.values()}) == 42
    assert Counter(u.emotion for u in scan.utts.values()) == EXPECTED_PER_EMOTION
    kinds = Counter(n.kind for n in scan.notes)
    assert kinds["unsegmented"] == 6 and kinds["name-subject"] == 30 and kinds["name-s_N_"] == 16
    assert kinds["name-dot"] == 1 and kinds["nested"] == 2 and kinds["missing-sentence"] == 1


# --- prepare on the synthetic look-alike ---------------------------------------------------------------

def test_prepare_synthetic(corpus, prepared):
    d = validate_data_dir(prepared.data.path, require=("wav.scp", "utt2emo", "utt2dur"))
    assert is_synthetic(corpus)
    tree = {rel: (subject, emotion, sentences) for rel, subject, emotion, sentences in synthetic_tree(SIZE)}
    assert prepared.n_avi == len(tree) == 123
    assert len(d.utts) == 117 and d.speakers == ["s03", "s11", "s16", "s23"]
    assert Counter(d.utt2spk.values()) == {"s03": 30, "s11": 30, "s16": 30, "s23": 27}
    assert d.scalar("emo_names").split() == EMO_NAMES
    assert not d.has("spk2gender")
    # every utterance's labels are its folders' (the tree says which file is which)
    by_path = {Path(rel).parts[:3]: v for rel, v in tree.items()}
    utt2emo, utt2text = d.table("utt2emo"), d.table("utt2text")
    for utt in d.utts:
        spk, code, k = utt.split("_")
        subject, emotion, sentences = by_path[(f"subject {int(spk[1:])}", utt2emo[utt], f"sentence {k}")]
        assert (subject, sentences, utt2text[utt]) == (int(spk[1:]), [int(k)], f"{emotion}_{k}")
    # nothing silently dropped: every .avi is an utterance or a listed skip
    skipped = [line for line in report(d) if line.startswith("skipped: ")]
    assert len(skipped) == 6 and all(line.startswith("skipped: subject 6/") for line in skipped)
    assert len(d.utts) + len(skipped) == prepared.n_avi
    durs = d.table("utt2dur")
    for utt in d.utts[:5]:
        info = sf.info(d.table("wav.scp")[utt])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert durs[utt] == pytest.approx(info.frames / 16000, abs=1e-4)


def test_synthetic_report_names_every_irregularity(prepared):
    lines = report(prepared.data)
    expect = [
        "kept: subject 11/anger/sentence 1/s12_an_1.avi: file name says subject 12, the folder says subject 11",
        "kept: subject 3/happiness/sentence 2/s_3_ha_2.avi: file name spells the subject 's_3_'",
        "kept: subject 16/surprise/sentence 3/s16_su_3avi.avi: file name lacks the dot before 'avi'",
        "kept: subject 16/fear/sentence 2/sentence 2/s16_fe_2.avi: nested in extra folder(s) 'sentence 2'",
        "skipped: subject 6/anger/s6_an.avi: no sentence folder: one unsegmented recording",
        "missing: subject 23/happiness: no .avi for sentence 1, 2, 3",
        "ignored: README.txt: not an .avi file",
    ]
    for e in expect:
        assert any(line.startswith(e) for line in lines), e
    text = "\n".join(summary(prepared, synthetic=True))
    for e in ("117 utterances of 4 subjects from 123 .avi files of the SYNTHETIC", "per subject: s03 30, s11 30, "
              "s16 30, s23 27", "irregular: 6 unsegmented", "irregular: 30 file names naming another subject",
              "irregular: 16 file names spelled s_N_", "irregular: 1 file names missing the dot",
              "irregular: 2 files nested", "irregular: 1 emotion folders lacking sentences",
              "123 .avi = 117 utterances + 6 left out"):
        assert e in text, e


# --- audio -------------------------------------------------------------------------------------------------

def _band_snr(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """SNR (dB) of ``a`` against gain-matched ``b`` below 6.5 kHz (resamplers differ only in their
    transition bands), and that gain."""
    from scipy.signal import butter, sosfiltfilt

    n = min(a.size, b.size)
    sos = butter(8, 6500, fs=16000, output="sos")
    a, b = (sosfiltfilt(sos, np.asarray(x[:n], np.float64))[200:-200] for x in (a, b))
    g = float(np.dot(a, b) / np.dot(b, b))
    return 10 * np.log10(np.sum(a ** 2) / np.sum((a - g * b) ** 2)), g


def test_decoded_audio_matches_independent_decoders(corpus, prepared):
    from scipy.signal import resample

    wav = prepared.data.table("wav.scp")
    for utt, rel in (("s16_su_3", "subject 16/surprise/sentence 3/s16_su_3avi.avi"),
                     ("s03_sa_4", "subject 3/sadness/sentence 4/s_3_sa_4.avi")):
        ours, sr = sf.read(wav[utt])
        assert sr == 16000 and ours.ndim == 1
        snr, gain = _band_snr(ours, swr_decode(corpus / rel))
        assert snr > 50 and gain == pytest.approx(1 / np.sqrt(2), rel=5e-3)  # a channel mean, not one channel
        # the audio the look-alike muxed, mixed down and resampled by FFT (scipy.signal.resample)
        subject, emotion, k = int(utt[1:3]), prepared.data.table("utt2emo")[utt], int(utt[-1])
        source = synthetic_audio(subject, emotion, [k], seed=0, max_duration=0.5).astype(np.float64).mean(axis=1)
        snr, gain = _band_snr(ours, resample(source, source.size // 3))
        assert snr > 50 and gain == pytest.approx(1.0, abs=2e-3)
        assert ours.size == pytest.approx(source.size / 3, abs=1)


def test_synthetic_audio_is_deterministic(corpus):
    rel = "subject 23/happiness/sentence 4/s23_ha_4.avi"
    a = synthetic_audio(23, "happiness", [4], seed=0, max_duration=0.5)
    assert np.array_equal(a, synthetic_audio(23, "happiness", [4], seed=0, max_duration=0.5))
    assert not np.array_equal(a, synthetic_audio(23, "happiness", [4], seed=1, max_duration=0.5))
    # the .avi holds exactly these samples (16-bit PCM)
    from emotk.corpora.enterface import read_avi_audio

    stored, rate = read_avi_audio(corpus / rel)
    assert rate == 48000 and stored.shape == (2, a.shape[0])
    assert np.abs(stored.T - a).max() <= 1 / 32767
    assert not np.allclose(stored[0], stored[1])  # stereo: a downmix is needed


def test_synthetic_is_reused_when_unchanged(corpus):
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*.avi")}
    assert make_synthetic(corpus, seed=0, size=SIZE, duration=0.5) == corpus
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*.avi")} == before


# --- hand-built trees: each irregularity on its own, labels from folders -------------------------------

def test_folders_win_over_a_lying_file_name(tmp_path, small_avi):
    root = make_tree(tmp_path / "c", small_avi, ["subject 7/sadness/sentence 2/s5_an_1.avi",
                                                 "subject 7/sadness/sentence 1/s7_sa_1.avi"])
    d = prepare_enterface(root, tmp_path / "data").data
    assert d.utt2spk == {"s07_sa_1": "s07", "s07_sa_2": "s07"}
    assert d.table("utt2emo") == {"s07_sa_1": "sadness", "s07_sa_2": "sadness"}
    assert d.table("utt2text") == {"s07_sa_1": "sadness_1", "s07_sa_2": "sadness_2"}
    lines = [line for line in report(d) if "s5_an_1.avi" in line]
    assert len(lines) == 3
    assert "file name says subject 5, the folder says subject 7" in lines[0] + lines[1] + lines[2]
    assert any("file name says emotion 'an', the folder says 'sa'" in line for line in lines)
    assert any("file name says sentence 1, the folder says sentence 2" in line for line in lines)
    assert any("missing: subject 7/sadness: no .avi for sentence 3, 4, 5" == line for line in report(d))
    assert any(line == "missing: subject 7: no anger folder" for line in report(d))


@pytest.mark.parametrize("rels, utts, line", [
    (["subject 6/anger/s6_an.avi", "subject 1/fear/sentence 1/s1_fe_1.avi"], ["s01_fe_1"],
     "skipped: subject 6/anger/s6_an.avi: no sentence folder"),
    (["subject 11/anger/sentence 3/s12_an_3.avi"], ["s11_an_3"],
     "kept: subject 11/anger/sentence 3/s12_an_3.avi: file name says subject 12, the folder says subject 11"),
    (["subject 3/fear/sentence 5/s_3_fe_5.avi"], ["s03_fe_5"],
     "kept: subject 3/fear/sentence 5/s_3_fe_5.avi: file name spells the subject 's_3_'"),
    (["subject 16/surprise/sentence 3/s16_su_3avi.avi"], ["s16_su_3"],
     "kept: subject 16/surprise/sentence 3/s16_su_3avi.avi: file name lacks the dot before 'avi'"),
    (["subject 23/happiness/sentence 4/s23_ha_4.avi", "subject 23/happiness/sentence 5/s23_ha_5.avi"],
     ["s23_ha_4", "s23_ha_5"], "missing: subject 23/happiness: no .avi for sentence 1, 2, 3"),
    (["subject 2/disgust/Sentence 4/copy/deeper/s2_di_4.avi"], ["s02_di_4"],
     "kept: subject 2/disgust/Sentence 4/copy/deeper/s2_di_4.avi: nested in extra folder(s) 'copy/deeper'"),
    (["enterface database/subject 9/Anger/sentence 1/s9_an_1.avi"], ["s09_an_1"], None),
    (["subject 4/fear/sentence 1/s4_fe_1.avi", "subject 4/fear/notes.txt"], ["s04_fe_1"],
     "ignored: subject 4/fear/notes.txt: not an .avi file"),
])
def test_each_irregularity_is_handled_and_reported(tmp_path, small_avi, rels, utts, line):
    root = make_tree(tmp_path / "c", small_avi, rels)
    p = prepare_enterface(root, tmp_path / "data")
    assert p.data.utts == utts
    assert p.n_avi == sum(r.endswith(".avi") for r in rels)
    if line is not None:
        assert any(x.startswith(line) for x in report(p.data)), report(p.data)


# --- bad input ------------------------------------------------------------------------------------------

def _video_only_avi(path: Path) -> None:
    import av

    with av.open(str(path), "w", format="avi") as out:
        v = out.add_stream("rawvideo", rate=25)
        v.width, v.height, v.pix_fmt = 16, 16, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
        for i in range(5):
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))


@pytest.mark.parametrize("content, reason", [
    ("video-only", "no audio stream (1 video stream(s) only)"),
    ("truncated", "truncated: "),
    (b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(range(256)) * 4, "no readable streams"),
    (b"", "cannot decode"),
])
def test_undecodable_avi_is_a_one_line_error(tmp_path, small_avi, content, reason):
    root = make_tree(tmp_path / "c", small_avi, ["subject 1/anger/sentence 1/s1_an_1.avi"])
    bad = root / "subject 1" / "anger" / "sentence 2" / "s1_an_2.avi"
    bad.parent.mkdir()
    if content == "video-only":
        _video_only_avi(bad)
    elif content == "truncated":
        whole = small_avi.read_bytes()
        bad.write_bytes(whole[: len(whole) * 6 // 10])
    else:
        bad.write_bytes(content)
    with pytest.raises(EmotkError) as e:
        prepare_enterface(root, tmp_path / "data")
    assert str(e.value).startswith(f"{bad}: {reason}") and "\n" not in str(e.value)
    assert not (tmp_path / "data" / "utt2spk").exists()
    # the good file was decoded and recorded: after the bad one is removed, nothing is decoded again
    bad.unlink()
    assert prepare_enterface(root, tmp_path / "data").decoded == 0


@pytest.mark.parametrize("rel, reason", [
    ("stray.avi", "not inside a 'subject N' folder"),
    ("subject 1/s1_an_1.avi", "directly in a subject folder, not in an emotion folder"),
    ("subject 1/neutral/sentence 1/s1_ne_1.avi", "unknown emotion folder 'neutral'"),
    ("subject 1/anger/sentence 6/s1_an_6.avi", "unexpected folder 'sentence 6'"),
    ("subject 1/anger/take 1/s1_an_1.avi", "unexpected folder 'take 1'"),
    ("subject 1/anger/sentence 1/again/s1_an_1.avi", "a second .avi for subject 1/anger/sentence 1"),
])
def test_misplaced_avi_is_an_error_naming_it(tmp_path, small_avi, rel, reason):
    root = make_tree(tmp_path / "c", small_avi, ["subject 1/anger/sentence 1/s1_an_1.avi", rel])
    with pytest.raises(EmotkError) as e:
        prepare_enterface(root, tmp_path / "data")
    msg = str(e.value)
    assert "\n" not in msg and f"{root / rel}" in msg and f": {reason}" in msg
    assert not (tmp_path / "data").exists()


def test_every_problem_is_listed_at_once(tmp_path, small_avi):
    rels = ["subject 1/anger/sentence 1/s1_an_1.avi", "x.avi", "subject 2/joy/sentence 1/a.avi",
            "subject 2/fear/sentence 9/b.avi"]
    root = make_tree(tmp_path / "c", small_avi, rels)
    with pytest.raises(EmotkError) as e:
        prepare_enterface(root, tmp_path / "data")
    lines = str(e.value).splitlines()
    assert lines[0].startswith("3 .avi files do not fit the eNTERFACE'05 layout; the first: ")
    assert len(lines) == 4 and all(any(r in line for line in lines[1:]) for r in rels[1:])


def test_missing_or_empty_corpus(tmp_path):
    with pytest.raises(EmotkError, match="corpus directory not found"):
        prepare_enterface(tmp_path / "nope", tmp_path / "data")
    (tmp_path / "empty" / "misc").mkdir(parents=True)
    with pytest.raises(EmotkError, match="no 'subject N' folders"):
        prepare_enterface(tmp_path / "empty", tmp_path / "data")
    (tmp_path / "only6" / "subject 6" / "anger").mkdir(parents=True)
    with pytest.raises(EmotkError, match="no segmented eNTERFACE'05 .avi files"):
        prepare_enterface(tmp_path / "only6", tmp_path / "data")


# --- the decoded-wav cache ---------------------------------------------------------------------------------

def test_wavs_are_decoded_once_and_redone_when_the_avi_changes(tmp_path, small_avi):
    rels = [f"subject 1/anger/sentence {k}/s1_an_{k}.avi" for k in (1, 2, 3)]
    root = make_tree(tmp_path / "c", small_avi, rels)
    data = tmp_path / "data"
    assert prepare_enterface(root, data).decoded == 3
    wav = data / "wav" / "s01_an_2.wav"
    first = sf.read(wav)[0]
    assert prepare_enterface(root, data).decoded == 0  # the data dir was replaced, its wav/ kept
    t = np.arange(24000) / 48000
    write_avi(root / rels[1], np.stack([0.5 * np.sin(2 * np.pi * 200 * t)] * 2, axis=1), 48000)
    p = prepare_enterface(root, data)
    assert p.decoded == 1 and not np.array_equal(sf.read(wav)[0], first)
    assert p.data.table("utt2dur")["s01_an_2"] == pytest.approx(0.5)
    os.utime(root / rels[0], ns=(1, 1))  # same bytes, other mtime: redone
    assert prepare_enterface(root, data).decoded == 1
    (root / rels[2]).unlink()
    shutil.rmtree(root / "subject 1" / "anger" / "sentence 3")
    p = prepare_enterface(root, data)
    assert p.decoded == 0 and p.data.utts == ["s01_an_1", "s01_an_2"]
    assert sorted(x.name for x in (data / "wav").glob("*.wav")) == ["s01_an_1.wav", "s01_an_2.wav"]


def test_audio_dir_option(tmp_path, small_avi):
    root = make_tree(tmp_path / "c", small_avi, ["subject 1/anger/sentence 1/s1_an_1.avi"])
    audio = tmp_path / "cache"
    d = prepare_enterface(root, tmp_path / "a", audio_dir=audio).data
    assert Path(d.table("wav.scp")["s01_an_1"]) == (audio / "s01_an_1.wav").resolve()
    assert not (tmp_path / "a" / "wav").exists()
    assert prepare_enterface(root, tmp_path / "b", audio_dir=audio).decoded == 0
    mono = decode_avi(root / "subject 1/anger/sentence 1/s1_an_1.avi")
    assert np.abs(sf.read(audio / "s01_an_1.wav")[0] - mono).max() <= 1 / 32768 + 1e-7


# --- CLI ----------------------------------------------------------------------------------------------------

def test_cli(corpus, tmp_path, small_avi):
    r = run_cli("prepare-enterface", str(corpus), str(tmp_path / "data"), "--nj", "1")
    assert r.returncode == 0, r.stderr
    assert "117 utterances of 4 subjects from 123 .avi files of the SYNTHETIC" in r.stderr
    assert "per emotion: anger 20, disgust 20, fear 20, happiness 17, sadness 20, surprise 20" in r.stderr
    bad = tmp_path / "bad"
    make_tree(bad, small_avi, ["subject 1/anger/sentence 1/s1_an_1.avi"])
    _video_only_avi(bad / "subject 1" / "anger" / "sentence 1" / "s1_an_1.avi")
    r = run_cli("prepare-enterface", str(bad), str(tmp_path / "d2"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"emotk: error: {bad / 'subject 1/anger/sentence 1/s1_an_1.avi'}: "
                                             "no audio stream (1 video stream(s) only)"]
    r = run_cli("make-synthetic-corpus", "enterface", str(tmp_path / "s"), "--size", "43")
    assert r.returncode == 1 and "size (segmented subjects) must be 1 to 42" in r.stderr
