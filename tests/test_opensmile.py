"""openSMILE extraction against the opensmile package's own process_file, Kaldi readability, jobs and
re-runs, vector tables (errors), per-speaker standardization of vectors against numpy."""

import shutil
import subprocess
import sys
from pathlib import Path

import kaldi_native_io
import numpy as np
import opensmile
import pytest
import soundfile as sf

from emotk.data.ark import read_matrix, read_vector_table, read_vectors, write_vector_ark_scp
from emotk.data.datadir import DataDir, read_table, write_data_dir
from emotk.errors import EmotkError
from emotk.features.cmvn import compute_cmvn_data_dir, load_normalized_vectors, vector_stats
from emotk.features.opensmile import SETS, extract_opensmile_data_dir

EMOTK = [sys.executable, "-c", "from emotk.cli import main; main()"]
SR = 16000
# The official sizes of the functionals (issue 6; the sets' papers).
OFFICIAL = {"eGeMAPSv02": 88, "GeMAPSv01b": 62, "ComParE_2016": 6373, "emobase": 988, "IS09": 384,
            "IS10": 1582, "IS11": 4368, "IS12": 6125, "IS13": 6373}


def quiet(msg):
    pass


def voice(seconds: float, seed: int) -> np.ndarray:
    """A vowel-like sound: a gliding harmonic series with vibrato, plus noise, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(110, 220) * (1 + 0.2 * t / seconds) + 5 * np.sin(2 * np.pi * 5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * np.hanning(len(t)) ** 0.2
    return (0.3 * x / np.abs(x).max() + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def make_data_dir(root: Path, spks=("s1", "s2"), per_spk=2, seconds=1.0, segments=False) -> Path:
    """16-bit 16 kHz wavs, one per utterance (or one recording cut into two segments)."""
    (root / "wav").mkdir(parents=True, exist_ok=True)
    wav, utt2spk, segs = {}, {}, {}
    for k, (spk, i) in enumerate((s, i) for s in spks for i in range(per_spk)):
        rec = f"{spk}-r{i}"
        sf.write(root / "wav" / f"{rec}.wav", voice(seconds + 0.25 * i, k), SR, subtype="PCM_16")
        wav[rec] = str(root / "wav" / f"{rec}.wav")
        if segments:  # times on sample boundaries, so process_file cuts the same samples
            for j, (s, e) in enumerate(((0.0, 0.5), (0.25, seconds))):
                segs[f"{rec}-{j}"], utt2spk[f"{rec}-{j}"] = (rec, s, e), spk
        else:
            utt2spk[rec] = spk
    tables = {"utt2spk": utt2spk, "wav.scp": wav} | ({"segments": segs} if segments else {})
    write_data_dir(root / "data", tables)
    return root / "data"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two speakers x two utterances of 1-1.25 s. Shared: copy it before extracting into it."""
    return make_data_dir(tmp_path_factory.mktemp("osm"))


def copy_dir(data: Path, dst: Path) -> Path:
    shutil.copytree(data, dst)
    return dst


def package(feature_set: str, level: str = "Functionals") -> opensmile.Smile:
    return opensmile.Smile(feature_set=opensmile.FeatureSet[feature_set],
                           feature_level=opensmile.FeatureLevel[level])


def run_cli(*args):
    return subprocess.run([*EMOTK, *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("feature_set", list(OFFICIAL))
def test_functionals_equal_the_package_and_have_the_official_size(feature_set, corpus, tmp_path):
    assert SETS == OFFICIAL
    data = copy_dir(corpus, tmp_path / "data")
    extract_opensmile_data_dir(data, feature_set, log=quiet)
    scp = data / f"{feature_set.lower()}.scp"
    utts, x = read_vectors(scp)
    d = DataDir(data)
    assert utts == d.utts and x.shape == (len(utts), OFFICIAL[feature_set])
    smile = package(feature_set)
    assert len(smile.feature_names) == OFFICIAL[feature_set]
    ref = np.stack([smile.process_file(str(d.wav_path(u))).to_numpy()[0] for u in utts])
    np.testing.assert_allclose(x, ref, rtol=1e-6, atol=1e-5)
    # Kaldi's own reader (copy-vector) reads the same vectors
    reader = kaldi_native_io.RandomAccessFloatVectorReader(f"scp:{scp}")
    for u, v in zip(utts, x):
        np.testing.assert_array_equal(np.asarray(reader[u]), v)


def test_segments_and_lld_frames_equal_the_package(tmp_path):
    data = make_data_dir(tmp_path, spks=("s1",), per_spk=2, seconds=1.5, segments=True)
    d = DataDir(data)
    extract_opensmile_data_dir(data, "eGeMAPSv02", log=quiet)
    extract_opensmile_data_dir(data, "IS10", level="lld", log=quiet)
    func = dict(read_vector_table(data / "egemapsv02.scp"))
    lld_scp = read_table(data / "is10_lld.scp")
    shift = float((data / "is10_lld.frame_shift").read_text())
    smile_f, smile_l = package("eGeMAPSv02"), package("IS10", "LowLevelDescriptors")
    for utt, (rec, start, end) in d.table("segments").items():
        path = str(d.wav_path(rec))
        np.testing.assert_allclose(func[utt], smile_f.process_file(path, start=start, end=end).to_numpy()[0],
                                   rtol=1e-6, atol=1e-5)
        ref = smile_l.process_file(path, start=start, end=end)
        lld = read_matrix(d.resolve(lld_scp[utt]))
        assert lld.shape == ref.shape and lld.shape[1] == len(smile_l.feature_names)
        np.testing.assert_allclose(lld, ref.to_numpy(), rtol=1e-6, atol=1e-5)
        starts = ref.index.get_level_values("start").total_seconds().to_numpy()
        np.testing.assert_allclose(np.diff(starts[1:]), shift, atol=1e-9)  # row 0's start is the segment's
    assert shift == 0.01
    assert "level: lld" in (data / "conf" / "is10_lld.yaml").read_text()


def test_jobs_merge_and_workers_equal_a_single_run(tmp_path):
    data = make_data_dir(tmp_path / "a", per_spk=3)
    split = copy_dir(data, tmp_path / "b" / "data")
    workers = copy_dir(data, tmp_path / "c" / "data")
    extract_opensmile_data_dir(data, "IS09", log=quiet)
    for job in (1, 3):
        msg = extract_opensmile_data_dir(split, "IS09", nj=3, job=job, log=quiet)
        assert "waiting" in msg and not (split / "is09.scp").exists()
    with pytest.raises(EmotkError, match="cannot merge is09: job 2 of 3 is not done"):
        extract_opensmile_data_dir(split, "IS09", nj=3, merge_only=True, log=quiet)
    assert "merged all 3 jobs" in extract_opensmile_data_dir(split, "IS09", nj=3, job=2, log=quiet)
    (split / "is09.scp").unlink()
    assert "merged 3 jobs" in extract_opensmile_data_dir(split, "IS09", nj=3, merge_only=True, log=quiet)
    assert "2 jobs" in extract_opensmile_data_dir(workers, "IS09", nj=2, log=quiet)
    single, x = read_vectors(data / "is09.scp")
    for other in (split, workers):
        utts, y = read_vectors(other / "is09.scp")
        assert utts == single and np.array_equal(x, y)


def test_reruns_skip_and_changes_redo(corpus, tmp_path):
    data = copy_dir(corpus, tmp_path / "data")
    extract_opensmile_data_dir(data, "IS09", name="feats_os", log=quiet)
    ark = data / "data" / "raw_feats_os_data.1.ark"
    before = ark.stat().st_mtime_ns
    assert "up to date" in extract_opensmile_data_dir(data, "is09", name="feats_os", log=quiet)
    assert ark.stat().st_mtime_ns == before
    # another set under the same name: redone, and the stale speaker stats go
    compute_cmvn_data_dir(data, table="feats_os.scp")
    assert (data / "feats_os_cmvn.scp").exists()
    assert "wrote" in extract_opensmile_data_dir(data, "eGeMAPSv02", name="feats_os", log=quiet)
    assert read_vectors(data / "feats_os.scp")[1].shape[1] == 88 and not (data / "feats_os_cmvn.scp").exists()
    # another level: its own table; the functionals stay up to date
    extract_opensmile_data_dir(data, "eGeMAPSv02", level="lld", name="feats_os", log=quiet)
    assert (data / "feats_os_lld.scp").exists() and (data / "feats_os_lld.frame_shift").exists()
    assert "up to date" in extract_opensmile_data_dir(data, "eGeMAPSv02", name="feats_os", log=quiet)
    # other audio behind the same wav.scp: redone, with the new audio's values
    utt = DataDir(data).utts[0]
    old = dict(read_vector_table(data / "feats_os.scp"))[utt]
    wav = tmp_path / "other.wav"
    sf.write(wav, voice(1.0, seed=99), SR, subtype="PCM_16")
    shutil.copyfile(wav, DataDir(data).wav_path(utt))
    assert "wrote" in extract_opensmile_data_dir(data, "eGeMAPSv02", name="feats_os", log=quiet)
    new = dict(read_vector_table(data / "feats_os.scp"))[utt]
    assert not np.allclose(new, old)
    np.testing.assert_allclose(new, package("eGeMAPSv02").process_file(str(wav)).to_numpy()[0], rtol=1e-6, atol=1e-5)


def test_bad_inputs_are_one_line_errors(corpus, tmp_path):
    r = run_cli("extract-opensmile", corpus, "--set", "IS14")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "unknown openSMILE feature set 'IS14'" in r.stderr and all(s in r.stderr for s in OFFICIAL)
    # a vector table whose dimension changes, and one with a NaN: errors name the file and the utterance
    import kaldi_io

    data = copy_dir(corpus, tmp_path / "data")
    utts = DataDir(data).utts
    (data / "data").mkdir()
    for name, vecs in (("ragged", [np.ones(4), np.ones(4), np.ones(3), np.ones(4)]),
                       ("nan", [np.ones(4), np.ones(4), np.array([1, np.nan, 1, 1]), np.ones(4)])):
        with open(data / "data" / f"{name}.ark", "wb") as f:
            lines = []
            for u, v in zip(utts, vecs):
                f.write(f"{u} ".encode())
                lines.append(f"{u} {data / 'data' / f'{name}.ark'}:{f.tell()}\n")
                kaldi_io.write_vec_flt(f, v.astype(np.float32))
        (data / f"{name}.scp").write_text("".join(lines))
    with pytest.raises(EmotkError, match=rf"ragged\.scp: utterance '{utts[2]}' has a vector of dim 3, earlier ones have 4"):
        read_vectors(data / "ragged.scp")
    with pytest.raises(EmotkError, match=rf"nan\.scp: utterance '{utts[2]}' has NaN or infinite values"):
        list(load_normalized_vectors(data, "nan.scp", norm="none"))
    r = run_cli("compute-cmvn", data, "--table", "ragged.scp")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and f"'{utts[2]}' has a vector of dim 3" in r.stderr
    with pytest.raises(EmotkError, match="'s1-r1' has a vector of dim 2"):
        write_vector_ark_scp(tmp_path / "x.ark", tmp_path / "x.scp", [("s1-r0", np.ones(3)), ("s1-r1", np.ones(2))])
    # audio too short for the set: the NaN openSMILE returns is reported with the utterance
    short = copy_dir(corpus, tmp_path / "short")
    sf.write(DataDir(short).wav_path(utts[1]), voice(0.01, 0), SR, subtype="PCM_16")
    with pytest.raises(EmotkError, match=rf"utterance '{utts[1]}': openSMILE eGeMAPSv02 functionals have NaN"):
        extract_opensmile_data_dir(short, "eGeMAPSv02", log=quiet)
    assert not (short / "egemapsv02.scp").exists() and not list((short / "data").glob("*.ark"))


def test_vector_standardization_equals_numpy(tmp_path):
    data = make_data_dir(tmp_path, spks=("s1", "s2"), per_spk=3)
    extract_opensmile_data_dir(data, "eGeMAPSv02", log=quiet)
    r = run_cli("compute-cmvn", data, "--table", "egemapsv02.scp", "--out", "egemapsv02_cmvn.scp")
    assert r.returncode == 0, r.stderr
    d = DataDir(data)
    utts, x = read_vectors(data / "egemapsv02.scp")
    x = x.astype(np.float64)
    spk = np.array([d.utt2spk[u] for u in utts])

    def znorm(v, mean, std):
        return np.where(std > 1e-5, (v - mean) / np.where(std > 1e-5, std, 1), 0)

    z = np.stack([v for _, v in load_normalized_vectors(data, "egemapsv02.scp", norm="speaker")])
    for s in np.unique(spk):
        m = spk == s
        np.testing.assert_allclose(z[m], znorm(x[m], x[m].mean(0), x[m].std(0)), atol=1e-5)
        stats = read_matrix(d.resolve(d.table("egemapsv02_cmvn.scp")[s]))
        assert stats.shape == (2, 89) and stats[0, -1] == m.sum()
    # global: the stats of a training subset, applied to every utterance
    train = spk == "s1"
    stats = vector_stats(x[train])
    g = np.stack([v for _, v in load_normalized_vectors(data, "egemapsv02.scp", norm="global", stats=stats)])
    np.testing.assert_allclose(g, znorm(x, x[train].mean(0), x[train].std(0)), atol=1e-5)
    raw = dict(load_normalized_vectors(data, "egemapsv02.scp", utts=utts[::-1], norm="none"))
    assert list(raw) == utts[::-1] and np.array_equal(np.stack([raw[u] for u in utts]), x.astype(np.float32))
    extract_opensmile_data_dir(data, "IS09", log=quiet)
    with pytest.raises(EmotkError, match="missing is09_cmvn.scp"):
        list(load_normalized_vectors(data, "is09.scp", norm="speaker"))
