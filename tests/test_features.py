"""Features: fbank/MFCC against kaldi-native-fbank, data-dir extraction (jobs, merge, re-runs, errors),
CMVN against numpy and kaldi-native-fbank, frame stacking and splicing."""

import shutil
import subprocess
import sys
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import pytest
import soundfile as sf

from emotk.data.ark import read_matrix
from emotk.data.datadir import DataDir, read_table, write_data_dir
from emotk.errors import EmotkError
from emotk.features.cmvn import (apply_cmvn, apply_cmvn_data_dir, compute_cmvn_data_dir, compute_cmvn_stats,
                                 load_normalized, utterance_cmvn)
from emotk.features.extract import FeatureComputer, compute_features, load_feature_config, normalize_config
from emotk.features.lhotse_extractor import lhotse_native
from emotk.features.pipeline import extract_data_dir, resolve_feature_config
from emotk.features.transforms import splice_frames, stack_frames

EMOTK = [sys.executable, "-c", "from emotk.cli import main; main()"]
CONF = Path(__file__).resolve().parent.parent / "conf" / "features"


def quiet(msg):
    pass


def chirp(seconds=3.0, sr=16000, seed=0, channels=1, noise=0.05):
    """A 150 -> 3000 Hz chirp plus white noise, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0, f1 = 150.0, 3000.0
    x = 0.4 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))) + noise * rng.standard_normal(len(t))
    if channels > 1:
        x = np.stack([x * (1 - 0.3 * c) for c in range(channels)], axis=1)
    return x.astype(np.float32)


def knf_features(wav, c):
    """kaldi-native-fbank on 16-bit-range samples, as Kaldi reads a wav file."""
    o = knf.FbankOptions() if c["type"] == "fbank" else knf.MfccOptions()
    f = o.frame_opts
    f.samp_freq, f.dither, f.snip_edges = c["sample_rate"], 0.0, c["snip_edges"]
    f.frame_length_ms, f.frame_shift_ms = c["frame_length"] * 1000, c["frame_shift"] * 1000
    f.preemph_coeff, f.remove_dc_offset, f.window_type = c["preemph_coeff"], c["remove_dc_offset"], c["window_type"]
    o.mel_opts.num_bins, o.mel_opts.low_freq, o.mel_opts.high_freq = c["num_filters"], c["low_freq"], c["high_freq"]
    o.use_energy, o.raw_energy, o.energy_floor = c["use_energy"], c["raw_energy"], c["energy_floor"]
    if c["type"] == "mfcc":
        o.num_ceps, o.cepstral_lifter = c["num_ceps"], c["cepstral_lifter"]
    ex = knf.OnlineFbank(o) if c["type"] == "fbank" else knf.OnlineMfcc(o)
    ex.accept_waveform(c["sample_rate"], (wav * 32768).tolist())
    ex.input_finished()
    return np.stack([ex.get_frame(i) for i in range(ex.num_frames_ready)])


@pytest.mark.parametrize("name", ["fbank40", "mfcc13", "fbank128_2048"])
def test_features_match_kaldi_native_fbank(name):
    c = load_feature_config(CONF / f"{name}.yaml")
    wav = chirp(3.0)
    ours = compute_features(wav, 16000, c)
    ref = knf_features(wav, c)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-3


def test_energy_options_and_lhotse_native_agree():
    wav = chirp(2.0, seed=1)
    for kind, raw, floor in (("fbank", True, 0.0), ("fbank", False, 1.0), ("mfcc", True, 0.0), ("mfcc", False, 1e12)):  # 1e12: above every frame
        c = normalize_config({"type": kind, "sample_rate": 16000, "num_filters": 23, "use_energy": True,
                              "raw_energy": raw, "energy_floor": floor})
        ours = compute_features(wav, 16000, c)
        assert ours.shape[1] == (24 if kind == "fbank" else 13)
        assert np.abs(ours - knf_features(wav, c)).max() < 1e-3, (kind, raw, floor)
    c = load_feature_config(CONF / "fbank40.yaml")
    lhotse = lhotse_native(c).extract(wav * 32768, 16000)  # lhotse works on the scale it is given
    assert np.abs(compute_features(wav, 16000, c) - lhotse).max() < 1e-3


def test_an_utterance_gets_the_same_features_in_any_batch():
    """Jobs split utterances differently; each utterance's matrix must not depend on its neighbours."""
    comp = FeatureComputer(load_feature_config(CONF / "fbank40.yaml"))
    wavs = [chirp(s, seed=i) for i, s in enumerate((0.3, 7.0, 2.0, 0.05))]  # 7 s: more than one block of frames
    together = comp.compute(wavs)
    for i, w in enumerate(wavs):
        assert np.array_equal(comp.compute([w])[0], together[i])
    assert together[3].shape == (3, 40)


def test_all_shipped_configs_load():
    dims = {name: compute_features(chirp(1.0), 16000, load_feature_config(CONF / f"{name}.yaml")).shape[1]
            for name in ("fbank40", "fbank80", "fbank128_2048", "mfcc13", "mfcc26")}
    assert dims == {"fbank40": 40, "fbank80": 80, "fbank128_2048": 128, "mfcc13": 13, "mfcc26": 26}
    assert resolve_feature_config("fbank80").resolve() == (CONF / "fbank80.yaml").resolve()  # ./conf links to emotk/conf


def test_resampling_and_downmix(tmp_path):
    from scipy.signal import resample_poly

    c = load_feature_config(CONF / "fbank40.yaml")
    ref = compute_features(chirp(2.0, 16000, noise=0), 16000, c)
    for sr in (22050, 44100):
        stereo = chirp(2.0, sr, channels=2, noise=0)
        sf.write(tmp_path / "x.wav", stereo, sr)
        wav, file_sr = sf.read(tmp_path / "x.wav", dtype="float32")
        feats = compute_features(wav, file_sr, c)
        up, down = {22050: (320, 441), 44100: (160, 441)}[sr]
        mono = resample_poly(wav.mean(1), up, down)
        assert abs(len(feats) - len(ref)) <= 1
        np.testing.assert_allclose(feats, compute_features(mono, 16000, c), atol=1e-3)
        # the same sound at another rate: the chirp is in the same mel bin, frame by frame
        n = min(len(feats), len(ref))
        assert np.mean(feats[:n].argmax(1) == ref[:n].argmax(1)) > 0.97


# Data dirs -------------------------------------------------------------------------------------

def make_data_dir(root: Path, spks=("s1", "s2", "s3"), per_spk=3, rates=(16000,), segments=False) -> Path:
    (root / "wav").mkdir(parents=True, exist_ok=True)
    wav, utt2spk, segs = {}, {}, {}
    k = 0
    for spk in spks:
        for i in range(per_spk):
            sr = rates[k % len(rates)]
            rec = f"{spk}-r{i}"
            channels = 2 if sr != 16000 else 1
            sf.write(root / "wav" / f"{rec}.wav", chirp(0.8 + 0.3 * i, sr, seed=k, channels=channels), sr)
            wav[rec] = str(root / "wav" / f"{rec}.wav")
            if segments:
                for j, (s, e) in enumerate(((0.0, 0.4), (0.3, 0.8 + 0.3 * i))):
                    segs[f"{rec}-{j}"] = (rec, s, e)
                    utt2spk[f"{rec}-{j}"] = spk
            else:
                utt2spk[rec] = spk
            k += 1
    tables = {"utt2spk": utt2spk, "wav.scp": wav}
    if segments:
        tables["segments"] = segs
    write_data_dir(root / "data", tables)
    return root / "data"


def scp_matrices(data_dir) -> dict:
    d = DataDir(data_dir)
    return {u: read_matrix(d.resolve(v)) for u, v in d.table("feats.scp").items()}


def test_extract_writes_kaldi_readable_features(tmp_path):
    import kaldi_native_io

    data = make_data_dir(tmp_path, rates=(16000, 22050, 44100), segments=True)
    c = load_feature_config(CONF / "fbank40.yaml")
    extract_data_dir(data, c, log=quiet)
    d = DataDir(data)
    assert d.frame_shift == 0.01 and set(d.table("feats.scp")) == set(d.utts)
    assert load_feature_config(data / "conf" / "feats.yaml") == c
    mats = scp_matrices(data)  # read by kaldi-io
    reader = kaldi_native_io.RandomAccessFloatMatrixReader(f"scp:{data / 'feats.scp'}")
    frames = read_table(data / "utt2num_frames")
    for utt, m in mats.items():
        np.testing.assert_array_equal(m, reader[utt])
        assert m.shape == (frames[utt], 40)
    # a segment equals the features of the same stretch of audio cut by hand
    rec, start, end = d.table("segments")["s1-r1-1"]
    wav, sr = sf.read(d.wav_path(rec), dtype="float32")
    np.testing.assert_allclose(mats["s1-r1-1"], compute_features(wav[round(start * sr):round(end * sr)], sr, c), atol=1e-5)


def test_jobs_merge_equal_single_run_and_reruns_skip(tmp_path):
    data = make_data_dir(tmp_path / "a")
    other = tmp_path / "b" / "data"
    shutil.copytree(tmp_path / "a" / "data", other)
    c = load_feature_config(CONF / "fbank40.yaml")
    extract_data_dir(data, c, log=quiet)
    for job in (1, 3):
        msg = extract_data_dir(other, c, nj=3, job=job, log=quiet)
        assert "waiting" in msg and not (other / "feats.scp").exists()
    with pytest.raises(EmotkError, match="cannot merge: job 2 of 3 is not done"):
        extract_data_dir(other, c, nj=3, merge_only=True, log=quiet)
    assert "merged all 3 jobs" in extract_data_dir(other, c, nj=3, job=2, log=quiet)
    (other / "feats.scp").unlink()
    assert "merged 3 jobs" in extract_data_dir(other, c, nj=3, merge_only=True, log=quiet)
    single, split = scp_matrices(data), scp_matrices(other)
    assert list(single) == list(split)
    for utt in single:
        np.testing.assert_array_equal(single[utt], split[utt])
    assert read_table(data / "utt2num_frames") == read_table(other / "utt2num_frames")
    # same config: nothing redone
    ark = data / "data" / "raw_fbank_data.1.ark"
    before = ark.stat().st_mtime_ns
    assert "up to date" in extract_data_dir(data, c, log=quiet)
    assert ark.stat().st_mtime_ns == before
    # archives deleted under a finished feats.scp: redone
    shutil.rmtree(data / "data")
    assert "wrote feats.scp" in extract_data_dir(data, c, log=quiet)
    assert all(np.array_equal(m, single[u]) for u, m in scp_matrices(data).items())
    # changed config: redone, and a stale cmvn.scp is removed
    compute_cmvn_data_dir(data)
    assert "wrote feats.scp" in extract_data_dir(data, load_feature_config(CONF / "fbank80.yaml"), log=quiet)
    assert not (data / "cmvn.scp").exists()
    assert next(iter(scp_matrices(data).values())).shape[1] == 80


def test_worker_processes_equal_single_run(tmp_path):
    data = make_data_dir(tmp_path / "a", spks=("s1", "s2"), per_spk=2)
    other = tmp_path / "b" / "data"
    shutil.copytree(data, other)
    c = load_feature_config(CONF / "mfcc13.yaml")
    extract_data_dir(data, c, log=quiet)
    extract_data_dir(other, c, nj=2, log=quiet)
    single, split = scp_matrices(data), scp_matrices(other)
    assert list(single) == list(split) and all(np.array_equal(single[u], split[u]) for u in single)


def test_crashed_extraction_leaves_no_feats_scp(tmp_path):
    data = make_data_dir(tmp_path)
    extract_data_dir(data, load_feature_config(CONF / "fbank40.yaml"), log=quiet)
    assert (data / "feats.scp").exists()
    bad = Path(DataDir(data).wav_path("s2-r1"))
    bad.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(EmotkError, match=r"s2-r1\.wav: cannot read audio of utterance 's2-r1'"):
        extract_data_dir(data, load_feature_config(CONF / "fbank80.yaml"), log=quiet)
    assert not (data / "feats.scp").exists() and not (data / "conf" / "feats.yaml").exists()
    assert not list((data / "data").glob("*fbank*.tmp")) and not list((data / "data").glob(".*"))


def test_bad_inputs_are_clear_errors(tmp_path):
    c = load_feature_config(CONF / "fbank40.yaml")
    data = make_data_dir(tmp_path, spks=("s1",), per_spk=2)
    empty = DataDir(data).wav_path("s1-r0")
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(EmotkError, match=r"s1-r0\.wav \(utterance 's1-r0'\): empty audio"):
        extract_data_dir(data, c, log=quiet)
    with pytest.raises(EmotkError, match="empty audio"):
        compute_features(np.zeros(0, np.float32), 16000, c)
    with pytest.raises(EmotkError, match="NaN"):
        compute_features(np.full(1600, np.nan, np.float32), 16000, c)
    with pytest.raises(EmotkError, match="shorter than one frame"):
        compute_features(np.zeros(100, np.float32), 16000, c)
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: fbank\nsample_rate: 16000\nnum_bins: 40\n")
    with pytest.raises(EmotkError, match=r"bad\.yaml: unknown key 'num_bins'"):
        load_feature_config(bad)
    with pytest.raises(EmotkError, match="--job 3 is outside 1..2"):
        extract_data_dir(data, c, nj=2, job=3, log=quiet)
    with pytest.raises(EmotkError, match="'window_type' must be one of"):
        normalize_config({"type": "fbank", "sample_rate": 16000, "window_type": "kaiser"})


def run_cli(*args):
    return subprocess.run([*EMOTK, *map(str, args)], capture_output=True, text=True)


def test_cli_extraction_does_not_import_torch(tmp_path):
    data = make_data_dir(tmp_path, spks=("s1",), per_spk=2)
    report = "import atexit, sys; atexit.register(lambda: print('torch loaded:', 'torch' in sys.modules)); "
    for kind, nj in (("fbank", 1), ("mfcc", 2)):  # computing here, and in worker processes
        r = subprocess.run([sys.executable, "-c", report + "from emotk.cli import main; main()", f"extract-{kind}",
                            str(data), "--nj", str(nj)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1] == "torch loaded: False" and (data / "feats.scp").is_file()


def test_cli_errors_are_one_line(tmp_path):
    nofeats = make_data_dir(tmp_path / "nofeats", spks=("s1",), per_spk=1)
    r = run_cli("compute-cmvn", nofeats)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "missing feats.scp" in r.stderr and "extract-fbank" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: fbank\nsample_rate: 16000\nnum_bins: 40\n")
    r = run_cli("extract-fbank", nofeats, "--config", bad)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "unknown key 'num_bins'" in r.stderr
    DataDir(nofeats).wav_path("s1-r0").write_bytes(b"\x00garbage bytes, not audio" * 20)
    r = run_cli("extract-fbank", nofeats)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "cannot read audio of utterance 's1-r0'" in r.stderr and not (nofeats / "feats.scp").exists()


# CMVN ------------------------------------------------------------------------------------------

def test_cmvn_matches_numpy_and_kaldi_native_fbank(tmp_path):
    data = make_data_dir(tmp_path)
    extract_data_dir(data, load_feature_config(CONF / "fbank40.yaml"), log=quiet)
    assert compute_cmvn_data_dir(data) == 3
    d = DataDir(data)
    mats = scp_matrices(data)
    normed = dict(load_normalized(data))
    opts = knf.CmvnOptions()
    opts.norm_vars = True
    for spk, utts in d.spk2utt.items():
        x = np.concatenate([mats[u] for u in utts]).astype(np.float64)
        stats = read_matrix(d.resolve(d.table("cmvn.scp")[spk]))
        assert stats.dtype == np.float64 and stats.shape == (2, 41)
        np.testing.assert_allclose(stats, knf.compute_cmvn_stats(x.astype(np.float32)), rtol=1e-9)
        z = np.concatenate([normed[u] for u in utts])
        np.testing.assert_allclose(z, (x - x.mean(0)) / x.std(0), atol=1e-4)
        for u in utts:
            np.testing.assert_allclose(normed[u], knf.apply_cmvn(stats, opts, mats[u]), atol=1e-4)
    # materialized normalization equals the in-memory one
    apply_cmvn_data_dir(data, tmp_path / "normed")
    out = scp_matrices(tmp_path / "normed")
    assert list(out) == list(normed) and all(np.array_equal(out[u], normed[u]) for u in out)
    assert not (tmp_path / "normed" / "cmvn.scp").exists()
    assert (tmp_path / "normed" / "frame_shift").read_text() == (data / "frame_shift").read_text()


def test_cmvn_degenerate_cases_stay_finite():
    one_frame = np.array([[1.5, -2.0, 3.0]], np.float32)
    out = apply_cmvn(one_frame, compute_cmvn_stats([one_frame]))
    assert np.all(np.isfinite(out)) and np.all(out == 0)
    rng = np.random.default_rng(0)
    mat = rng.standard_normal((50, 4)).astype(np.float32)
    mat[:, 2] = 7.25  # zero variance
    out = utterance_cmvn(mat)
    assert np.all(np.isfinite(out)) and np.all(out[:, 2] == 0)
    np.testing.assert_allclose(out[:, [0, 1, 3]].std(0), 1, atol=1e-5)
    np.testing.assert_allclose(apply_cmvn(mat, compute_cmvn_stats([mat]), norm_vars=False), mat - mat.mean(0), atol=1e-5)
    with pytest.raises(EmotkError, match="do not fit"):
        apply_cmvn(mat, compute_cmvn_stats([mat[:, :3]]))


# Stacking and splicing -------------------------------------------------------------------------

@pytest.mark.parametrize("t", [1, 7, 8, 9])
def test_stack_frames(t):
    mat = np.arange(t * 3, dtype=np.float32).reshape(t, 3)
    out = stack_frames(mat, 4)
    assert out.shape == (-(-t // 4), 12)
    np.testing.assert_array_equal(out[0, :3], mat[0])
    np.testing.assert_array_equal(out[-1, -3:], mat[-1])  # the tail is padded with the last frame
    np.testing.assert_array_equal(out.reshape(-1, 3)[:t], mat)


@pytest.mark.parametrize("t", [1, 5, 23])
def test_splice_frames_matches_kaldi(t):
    mat = np.random.default_rng(t).standard_normal((t, 4)).astype(np.float32)
    out = splice_frames(mat, 10, 5)
    assert out.shape == (t, 16 * 4)
    np.testing.assert_array_equal(out, knf.splice_frames(mat, knf.SpliceOptions(left_context=10, right_context=5)))
    np.testing.assert_array_equal(out[:, 40:44], mat)  # the centre frame
