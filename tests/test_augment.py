"""MUSAN noise data dirs, offline and on-the-fly noise augmentation (paper 002's x61 set-up)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotk.augment.mix import NoiseMixer, mix_at_snr, parse_snr_range
from emotk.augment.noise import check_disjoint, read_noise, split_noise_dir, validate_noise_dir, write_noise_dir
from emotk.augment.offline import augment_data_dir, read_utt2aug
from emotk.corpora.musan import FOLDERS, NOISES, make_synthetic, noise_signal, prepare_musan
from emotk.data.datadir import DataDir, read_table, subset_data_dir, validate_data_dir
from emotk.errors import EmotkError

SR = 16000
FBANK = {"type": "fbank", "sample_rate": SR, "num_filters": 23}


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from emotk.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True)


def measured_snr(clean: np.ndarray, mixed: np.ndarray) -> float:
    c = clean.astype(np.float64)
    n = mixed.astype(np.float64) - c
    return 10 * np.log10(np.sum(c ** 2) / np.sum(n ** 2))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """24 synthetic noises (0.3 to 3 s: some shorter than the utterances, so they loop)."""
    return make_synthetic(tmp_path_factory.mktemp("musan") / "c", seed=0, size=24, duration=3.0)


@pytest.fixture(scope="module")
def noise_dir(corpus, tmp_path_factory):
    return prepare_musan(corpus, tmp_path_factory.mktemp("noise") / "noise").path


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """3 speakers x 2 utterances of formant-filtered pulse trains (1.2 to 2.2 s), with labels of every kind."""
    d = tmp_path_factory.mktemp("speech") / "data"
    (d / "wav").mkdir(parents=True)
    rows = {}
    for i, spk in enumerate(["f01", "m02", "m03"]):
        for j in range(2):
            utt = f"{spk}-utt{j}"
            x = noise_signal("speech", 7, 10 * i + j, 1.2 + 0.5 * j + 0.1 * i) * 8
            sf.write(str(d / "wav" / f"{utt}.wav"), x, SR, subtype="PCM_16")
            rows[utt] = (spk, len(x) / SR)

    def write(name, value):
        (d / name).write_text("".join(f"{u} {value(u)}\n" for u in sorted(rows)), encoding="utf-8")

    write("wav.scp", lambda u: f"wav/{u}.wav")
    write("utt2spk", lambda u: rows[u][0])
    write("utt2dur", lambda u: f"{rows[u][1]:g}")
    write("utt2emo", lambda u: "anger" if u.endswith("0") else "sadness")
    write("utt2arousal", lambda u: "0.25" if u.endswith("0") else "-0.5")
    write("utt2gender_guess", lambda u: "x")  # an extra utt2* table: carried too
    write("text", lambda u: f"words of {u}")
    (d / "spk2gender").write_text("f01 f\nm02 m\nm03 m\n", encoding="utf-8")
    (d / "emo_names").write_text("anger sadness\n", encoding="utf-8")
    return validate_data_dir(d).path


def features(data_dir: Path) -> dict[str, np.ndarray]:
    from emotk.data.ark import read_scp
    from emotk.features.pipeline import extract_data_dir

    extract_data_dir(data_dir, FBANK, log=lambda m: None)
    d = DataDir(data_dir)
    return dict(read_scp({k: d.resolve(v) for k, v in d.table("feats.scp").items()}))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- MUSAN ------------------------------------------------------------------------------------------

def test_synthetic_musan_layout_types_and_reuse(corpus, tmp_path):
    root = corpus / "musan"
    for part, folders in FOLDERS.items():
        for folder in folders:
            assert (root / part / folder / "ANNOTATIONS").is_file() and (root / part / folder / "LICENSE").is_file()
    noises = sorted((root / "noise").rglob("*.wav"))
    assert len(noises) == 24
    assert {p.parent.name for p in noises} == {"free-sound", "sound-bible"}
    assert all(p.name.startswith(f"noise-{p.parent.name}-") for p in noises)
    assert {sf.info(str(p)).samplerate for p in root.rglob("*.wav")} == {SR}  # MUSAN is all 16 kHz
    kinds = {line.split()[1] for f in (root / "noise").rglob("ANNOTATIONS") for line in f.read_text().splitlines()}
    assert kinds == {f"synthetic:{k}" for k in NOISES}
    # Same options: reused, not rewritten; same seed elsewhere: same bytes; another seed: other bytes.
    mtime = noises[0].stat().st_mtime_ns
    make_synthetic(corpus, seed=0, size=24, duration=3.0)
    assert noises[0].stat().st_mtime_ns == mtime
    again = make_synthetic(tmp_path / "again", seed=0, size=24, duration=3.0)
    other = make_synthetic(tmp_path / "other", seed=1, size=24, duration=3.0)
    rel = noises[3].relative_to(corpus)
    assert sha(again / rel) == sha(noises[3]) and sha(other / rel) != sha(noises[3])


def test_synthetic_noise_types_differ_in_spectrum():
    """Coloured noises tilt as they should (white flat, brown low-heavy), tones are narrow-band."""
    def low_share(x):
        p = np.abs(np.fft.rfft(x)) ** 2
        return p[: len(p) // 16].sum() / p.sum()  # energy below 500 Hz

    share = {k: low_share(noise_signal(k, 3, 1, 2.0)) for k in ("white", "pink", "brown", "hum", "dtmf")}
    assert share["white"] < 0.1 < share["pink"] < share["brown"]
    assert share["hum"] > 0.9 and share["dtmf"] < 0.05


def test_prepare_musan_parts_and_noise_dir_kind(corpus, noise_dir, tmp_path):
    nd = validate_noise_dir(noise_dir)
    assert len(nd) == 24 and all(i.startswith("noise-") for i in nd.ids)
    for nid in nd.ids[:5]:
        info = sf.info(nd.paths[nid])
        assert nd.durs[nid] == pytest.approx(info.frames / info.samplerate, abs=1e-3)
    assert (noise_dir / "kind").read_text().strip() == "noise" and not (noise_dir / "utt2spk").exists()
    both = prepare_musan(corpus / "musan", tmp_path / "ns", parts=["noise", "speech"])
    assert len(both) == 24 + len(FOLDERS["speech"]) and any(i.startswith("speech-") for i in both.ids)
    with pytest.raises(EmotkError, match="noise data dir.*validate-noise-dir"):
        validate_data_dir(noise_dir)  # speech commands refuse it with a pointer
    with pytest.raises(EmotkError, match="unknown MUSAN part 'noize'"):
        prepare_musan(corpus, tmp_path / "x", parts=["noize"])


def test_empty_noise_folder_and_empty_noise_dir(tmp_path):
    (tmp_path / "musan" / "noise" / "free-sound").mkdir(parents=True)
    with pytest.raises(EmotkError, match=r"musan/noise: no \.wav files"):
        prepare_musan(tmp_path / "musan", tmp_path / "nd")
    (tmp_path / "nd").mkdir()
    for name, text in (("kind", "noise\n"), ("wav.scp", ""), ("utt2dur", "")):
        (tmp_path / "nd" / name).write_text(text)
    with pytest.raises(EmotkError, match=r"nd/wav.scp: no noise recordings"):
        validate_noise_dir(tmp_path / "nd")


# --- mixing -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("snr", [-10.0, -3.3, 0.0, 7.5, 15.0])
def test_mix_at_snr_reaches_the_target(snr):
    rng = np.random.default_rng(int(snr * 10) + 100)
    clean = (rng.standard_normal(16000) * np.hanning(16000) * 0.1).astype(np.float32)
    noise = rng.uniform(-0.3, 0.3, 16000).astype(np.float32)
    assert abs(measured_snr(clean, mix_at_snr(clean, noise, snr)) - snr) < 0.5
    assert mix_at_snr(np.zeros(100, np.float32), noise[:100], snr).tolist() == [0.0] * 100  # silent speech: as is
    assert mix_at_snr(clean[:100], np.zeros(100, np.float32), snr) is None  # silent noise: cannot set an SNR


def test_mix_agrees_with_lhotse(speech, noise_dir):
    """lhotse's MixedCut (an independent implementation of SNR mixing) gives the same samples."""
    from lhotse import Recording

    nd = validate_noise_dir(noise_dir)
    utt = "f01-utt0"
    clean_rec = Recording.from_file(speech / "wav" / f"{utt}.wav")
    nid = max(nd.ids, key=nd.durs.get)  # longer than the utterance: no looping in either
    assert nd.durs[nid] > clean_rec.duration
    cut = clean_rec.to_cut()
    noise_cut = Recording.from_file(nd.paths[nid]).to_cut().truncate(duration=cut.duration)
    ref = cut.mix(noise_cut, snr=4.0).load_audio()[0]
    clean = clean_rec.load_audio()[0]
    ours = mix_at_snr(clean, read_noise(nd.paths[nid], 0.0, len(clean), SR), 4.0)
    np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_noise_is_looped_when_short_and_cut_at_the_offset_when_long(tmp_path):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 1000).astype(np.float32)
    sf.write(str(tmp_path / "n.wav"), x, SR, subtype="FLOAT")
    cut = read_noise(str(tmp_path / "n.wav"), 300 / SR, 200, SR)
    np.testing.assert_array_equal(cut, x[300:500])
    looped = read_noise(str(tmp_path / "n.wav"), 900 / SR, 2500, SR)
    np.testing.assert_array_equal(looped, np.concatenate([x[900:], x, x, x[:400]]))


def test_parse_snr_range():
    assert parse_snr_range("-10:15") == (-10.0, 15.0) and parse_snr_range("5:5") == (5.0, 5.0)
    with pytest.raises(EmotkError, match=r"--snr-range '15:-10' is written backwards"):
        parse_snr_range("15:-10")
    with pytest.raises(EmotkError, match=r"--snr-range '10': expected LOW:HIGH"):
        parse_snr_range("10")


# --- offline augmentation ---------------------------------------------------------------------------

def test_x61_expansion_keeps_speaker_and_labels(speech, noise_dir, tmp_path):
    d, written = augment_data_dir(speech, tmp_path / "aug", noise_dir, 20, 3, "-10:15", seed=1, keep_clean=True)
    assert written
    src = DataDir(speech)
    assert len(d.utts) == 61 * len(src.utts)
    augs = read_utt2aug(d.path / "utt2aug")
    for utt in src.utts:
        copies = [u for u in d.utts if u == utt or u.startswith(f"{utt}-n")]
        assert len(copies) == 61 and augs[utt] is None  # the clean copy keeps its id
        noisy = [augs[u] for u in copies if u != utt]
        assert len({a.noise_id for a in noisy}) == 20  # 20 distinct noises, 3 SNRs each
        assert all(-10 <= a.snr <= 15 for a in noisy)
        for name in ("utt2spk", "utt2emo", "utt2arousal", "text", "utt2dur", "utt2gender_guess"):
            assert {read_table(d.path / name, str)[u] for u in copies} == {read_table(speech / name, str)[utt]}, name
        assert all(u.startswith(src.utt2spk[utt]) for u in copies)
    assert (d.path / "spk2gender").read_text() == (speech / "spk2gender").read_text()
    assert (d.path / "emo_names").read_text() == (speech / "emo_names").read_text()
    d60, _ = augment_data_dir(speech, tmp_path / "aug60", noise_dir, 20, 3, "-10:15", seed=1)
    assert len(d60.utts) == 60 * len(src.utts) and not set(src.utts) & set(d60.utts)


def test_feature_tables_of_the_clean_audio_are_not_carried(speech, noise_dir, tmp_path):
    """openSMILE-like tables and their statistics describe the clean audio: the copies must not inherit them."""
    src = tmp_path / "src"
    shutil.copytree(speech, src)
    utts = DataDir(src).utts
    (src / "is09.scp").write_text("".join(f"{u} /nonexistent/is09.ark:{i}\n" for i, u in enumerate(utts)))
    (src / "is09_cmvn.scp").write_text("".join(f"{s} /nonexistent/cmvn.ark:{i}\n"
                                               for i, s in enumerate(sorted(set(DataDir(src).utt2spk.values())))))
    (src / "is09.frame_shift").write_text("0.01\n")
    d, _ = augment_data_dir(src, tmp_path / "aug", noise_dir, 2, 1, "-10:15", seed=1)
    names = {p.name for p in d.path.iterdir()}
    assert not names & {"is09.scp", "is09_cmvn.scp", "is09.frame_shift"}, names
    assert {"utt2emo", "utt2arousal", "text", "utt2gender_guess"} <= names


def test_achieved_snr_of_extracted_audio(speech, noise_dir, tmp_path):
    """The audio an augmented dir yields (what extraction reads): SNR within 0.5 dB of utt2aug's."""
    from emotk.features.pipeline import load_utterance

    d, _ = augment_data_dir(speech, tmp_path / "aug", noise_dir, 4, 2, "-10:15", seed=3)
    nd = validate_noise_dir(noise_dir)
    src = DataDir(speech)
    looped = 0
    for utt, aug in read_utt2aug(d.path / "utt2aug").items():
        base = utt.rsplit("-n", 1)[0]
        clean = load_utterance(src, base, SR)
        mixed = load_utterance(d, utt, SR)
        assert abs(measured_snr(clean, mixed) - aug.snr) < 0.5, utt
        looped += nd.durs[aug.noise_id] < len(clean) / SR
        # what was added is the recorded noise (looped from the recorded offset), scaled
        noise = read_noise(aug.noise_path, aug.offset, len(clean), SR).astype(np.float64)
        added = mixed.astype(np.float64) - clean
        gain = np.dot(added, noise) / np.dot(noise, noise)
        np.testing.assert_allclose(added, gain * noise, atol=1e-5)
    assert looped > 0  # the looping path was exercised


def test_same_seed_same_record_and_features_other_seed_differs(speech, noise_dir, tmp_path):
    a, _ = augment_data_dir(speech, tmp_path / "a", noise_dir, 2, 1, "-5:5", seed=7)
    b, _ = augment_data_dir(speech, tmp_path / "b", noise_dir, 2, 1, "-5:5", seed=7)
    c, _ = augment_data_dir(speech, tmp_path / "c", noise_dir, 2, 1, "-5:5", seed=8)
    assert sha(a.path / "utt2aug") == sha(b.path / "utt2aug") != sha(c.path / "utt2aug")
    fa, fb, fc = features(a.path), features(b.path), features(c.path)
    assert list(fa) == list(fb) == list(fc)
    assert all(np.array_equal(fa[u], fb[u]) for u in fa)
    assert sum(not np.array_equal(fa[u], fc[u]) for u in fa) == len(fa)


def test_augmentation_off_is_bit_identical(speech, noise_dir, tmp_path):
    """Clean dirs: features as computed from the file directly; clean copies of an augmented dir: the same."""
    from emotk.features.extract import compute_features

    clean = shutil.copytree(speech, tmp_path / "clean")
    f = features(clean)
    for utt, m in f.items():
        wav, sr = sf.read(str(speech / "wav" / f"{utt}.wav"), dtype="float32")
        assert np.array_equal(m, compute_features(wav, sr, FBANK))
    aug, _ = augment_data_dir(speech, tmp_path / "aug", noise_dir, 1, 1, "0:0", seed=0, keep_clean=True)
    fa = features(aug.path)
    assert all(np.array_equal(fa[u], f[u]) for u in f)
    assert not np.array_equal(fa[f"{next(iter(f))}-n1"][:5], f[next(iter(f))][:5])


def test_rerun_skips_same_inputs_redoes_other(speech, noise_dir, tmp_path):
    d, written = augment_data_dir(speech, tmp_path / "aug", noise_dir, 2, 1, "-5:5", seed=1)
    assert written
    features(d.path)
    _, written = augment_data_dir(speech, tmp_path / "aug", noise_dir, 2, 1, "-5:5", seed=1)
    assert not written and (d.path / "feats.scp").is_file()  # features of the same augmentation kept
    _, written = augment_data_dir(speech, tmp_path / "aug", noise_dir, 2, 1, "-5:5", seed=2)
    assert written and not (d.path / "feats.scp").exists()


def test_subset_of_augmented_dir_keeps_the_record(speech, noise_dir, tmp_path):
    from emotk.features.pipeline import load_utterance

    d, _ = augment_data_dir(speech, tmp_path / "aug", noise_dir, 2, 1, "-5:5", seed=1)
    sub = subset_data_dir(d.path, tmp_path / "sub", spks=["m02"])
    assert (sub.path / "utt2aug").is_file() and len(sub.utts) == 4
    for utt in sub.utts:
        assert np.array_equal(load_utterance(sub, utt, SR), load_utterance(d, utt, SR))


def test_noise_at_another_rate_is_resampled_with_a_notice(speech, noise_dir, tmp_path, capfd):
    from emotk.features.pipeline import load_utterance

    nd = validate_noise_dir(noise_dir)
    slow = tmp_path / "hum8k.wav"
    t = np.arange(8000 * 3) / 8000
    sf.write(str(slow), 0.1 * np.sin(2 * np.pi * 440 * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size),
             8000, subtype="PCM_16")
    mixed_dir = write_noise_dir(tmp_path / "nd", {"hum8k": slow, nd.ids[0]: nd.paths[nd.ids[0]]},
                                {"hum8k": 3.0, nd.ids[0]: nd.durs[nd.ids[0]]})
    capfd.readouterr()
    d, _ = augment_data_dir(speech, tmp_path / "aug", mixed_dir.path, 2, 1, "3:3", seed=0)
    assert f"{slow}: noise at 8000 Hz" in capfd.readouterr().err
    utt = next(u for u, a in read_utt2aug(d.path / "utt2aug").items() if a.noise_id == "hum8k")
    clean = load_utterance(DataDir(speech), utt.rsplit("-n", 1)[0], SR)
    mixed = load_utterance(d, utt, SR)
    assert abs(measured_snr(clean, mixed) - 3.0) < 0.5
    added = mixed - clean
    spectrum = np.abs(np.fft.rfft(added))
    assert abs(np.argmax(spectrum) * SR / len(added) - 440) < 5  # the 440 Hz tone survived resampling
    assert "hum8k.wav: noise at 8000 Hz, resampled to 16000 Hz" in capfd.readouterr().err


def test_bad_augmentation_inputs(speech, noise_dir, tmp_path):
    with pytest.raises(EmotkError, match=r"--snr-range '15:-10' is written backwards"):
        augment_data_dir(speech, tmp_path / "a", noise_dir, snr_range="15:-10")
    with pytest.raises(EmotkError, match=r"--noises-per-utt 30 is more than the 24 noises"):
        augment_data_dir(speech, tmp_path / "a", noise_dir, noises_per_utt=30)
    with pytest.raises(EmotkError, match=r"speech|data: not a noise data dir \(an utterance data dir"):
        augment_data_dir(speech, tmp_path / "a", speech)
    d, _ = augment_data_dir(speech, tmp_path / "a", noise_dir, 1, 1)
    with pytest.raises(EmotkError, match=r"a/utt2aug: this data dir is already augmented"):
        augment_data_dir(d.path, tmp_path / "b", noise_dir, 1, 1)
    assert not (tmp_path / "b").exists()


# --- disjoint noise sets ----------------------------------------------------------------------------

def test_split_noise_dir_is_disjoint_and_seeded(noise_dir, speech, tmp_path):
    train, test = split_noise_dir(noise_dir, tmp_path / "tr", tmp_path / "te", 0.25, seed=1)
    full = validate_noise_dir(noise_dir)
    assert len(test) == 6 and len(train) == 18
    assert not set(train.ids) & set(test.ids) and set(train.ids) | set(test.ids) == set(full.ids)
    assert not set(train.paths.values()) & set(test.paths.values())
    again = split_noise_dir(noise_dir, tmp_path / "tr2", tmp_path / "te2", 0.25, seed=1)[1]
    other = split_noise_dir(noise_dir, tmp_path / "tr3", tmp_path / "te3", 0.25, seed=2)[1]
    assert again.ids == test.ids != other.ids
    # augmented dirs made from each side share no noise file; the check catches a shared one
    a, _ = augment_data_dir(speech, tmp_path / "a_tr", train.path, 5, 1, seed=0)
    b, _ = augment_data_dir(speech, tmp_path / "a_te", test.path, 5, 1, seed=0)
    check_disjoint(a.path, b.path)
    check_disjoint(a.path, test)
    with pytest.raises(EmotkError, match=r"is also in .*a_tr/utt2aug"):
        check_disjoint(a.path, noise_dir)
    with pytest.raises(EmotkError, match=r"--test-fraction must be between 0 and 1"):
        split_noise_dir(noise_dir, tmp_path / "x", tmp_path / "y", 1.5)


# --- on the fly -------------------------------------------------------------------------------------

def test_noise_mixer_is_keyed_and_shares_the_offline_semantics(speech, noise_dir):
    from emotk.features.pipeline import load_utterance

    clean = load_utterance(DataDir(speech), "f01-utt1", SR)
    mixer = NoiseMixer(noise_dir, prob=0.5, snr_range=(-5, 10), seed=3)
    keys = [(epoch, i) for epoch in range(3) for i in range(8)]
    forward = {k: mixer(clean, SR, k) for k in keys}
    backward = {k: NoiseMixer(noise_dir, 0.5, (-5, 10), seed=3)(clean, SR, k) for k in reversed(keys)}
    assert all(np.array_equal(forward[k], backward[k]) for k in keys)  # order of calls does not matter
    untouched = [k for k in keys if forward[k] is clean]
    assert 0 < len(untouched) < len(keys)  # prob 0.5
    for k in keys:
        aug = mixer.draw(k, len(clean) / SR)
        assert (aug is None) == (forward[k] is clean)
        if aug is not None:
            assert -5 <= aug.snr <= 10 and abs(measured_snr(clean, forward[k]) - aug.snr) < 0.5
    other = NoiseMixer(noise_dir, prob=0.5, snr_range=(-5, 10), seed=4)
    assert any(not np.array_equal(forward[k], other(clean, SR, k)) for k in keys)
    assert NoiseMixer(noise_dir, prob=0.0, seed=3)(clean, SR, (0, 0)) is clean
    with pytest.raises(EmotkError, match="probability must be in"):
        NoiseMixer(noise_dir, prob=1.5)


# --- CLI --------------------------------------------------------------------------------------------

def test_cli_chain_and_one_line_errors(corpus, speech, tmp_path):
    r = run_cli("prepare-musan", corpus, tmp_path / "noise", "--parts", "noise")
    assert r.returncode == 0, r.stderr
    assert "SYNTHETIC" in r.stderr and "24 recordings" in r.stderr
    r = run_cli("augment-data-dir", speech, tmp_path / "aug", "--noise", tmp_path / "noise", "--noises-per-utt", "2",
                "--snrs-per-noise", "3", "--snr-range", "-10:15", "--seed", "1", "--keep-clean")
    assert r.returncode == 0, r.stderr
    assert "42 utterances from 6 (x7)" in r.stderr
    r = run_cli("extract-fbank", tmp_path / "aug")
    assert r.returncode == 0, r.stderr
    validate_data_dir(tmp_path / "aug", require=["feats.scp"])
    for args, needle in ((("augment-data-dir", speech, tmp_path / "x", "--noise", tmp_path / "noise", "--snr-range", "15:-10"),
                          "--snr-range '15:-10' is written backwards"),
                         (("validate-data-dir", tmp_path / "noise"), "validate-noise-dir"),
                         (("prepare-musan", tmp_path / "nowhere", tmp_path / "y"), "nowhere: MUSAN corpus directory not found")):
        r = run_cli(*args)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr
    assert run_cli("validate-noise-dir", tmp_path / "noise").returncode == 0
