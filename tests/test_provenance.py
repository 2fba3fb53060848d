"""Provenance records: every planted change to what a run reads changes the record; a move does not;
the exp dir is reused only on a match, redone or refused otherwise; train/valid overlap is refused."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from emotk.config import load_config
from emotk.data.ark import read_matrix, write_ark_scp
from emotk.data.datadir import DataDir, read_table, write_data_dir, write_table
from emotk.errors import EmotkError
from emotk.training.expdir import env_text, prepare_exp_dir
from emotk.training.provenance import (build_record, describe_runs, first_difference, read_record, read_trained,
                                       write_record)

CONF = Path(__file__).resolve().parent.parent / "conf" / "model" / "ldnn_small.yaml"


def make_dir(path: Path, spks, seed: int, dim: int = 5) -> Path:
    """A small feature data dir with speaker CMVN stats and a feature config; archives in ``path.parent/arks``."""
    rng = np.random.default_rng(seed)
    feats, utt2spk, utt2emo = {}, {}, {}
    for spk in spks:
        for i in range(4):
            utt = f"{spk}-u{i}"
            feats[utt] = rng.normal(size=(int(rng.integers(5, 12)), dim)).astype(np.float32)
            utt2spk[utt], utt2emo[utt] = spk, ("ang", "neu")[i % 2]
    arks = path.parent / "arks"
    arks.mkdir(parents=True, exist_ok=True)
    rows = write_ark_scp(arks / f"{path.name}.ark", arks / f"{path.name}.scp", sorted(feats.items()))
    stats = {}
    for spk in spks:
        x = np.concatenate([m for u, m in feats.items() if utt2spk[u] == spk]).astype(np.float64)
        stats[spk] = np.stack([np.r_[x.sum(0), len(x)], np.r_[(x ** 2).sum(0), 0]])
    write_ark_scp(arks / f"{path.name}.cmvn.ark", arks / f"{path.name}.cmvn.scp", sorted(stats.items()), dtype=np.float64)
    write_data_dir(path, {"utt2spk": utt2spk, "utt2emo": utt2emo, "utt2num_frames": rows,
                          "feats.scp": read_table(arks / f"{path.name}.scp"),
                          "cmvn.scp": read_table(arks / f"{path.name}.cmvn.scp")}, {"frame_shift": "0.01"})
    (path / "conf").mkdir()
    (path / "conf" / "feats.yaml").write_text("type: fbank\nnum_filters: 5\n")
    return path


def resolved(*sets):
    return load_config(CONF, ["inputs.feats.norm=speaker", *sets])


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    return make_dir(root / "train", ("s1", "s2"), 1), make_dir(root / "valid", ("s3",), 2)


def test_planted_changes_change_the_record_a_move_does_not(data, tmp_path):
    train, valid = data
    cfg = resolved()
    base = build_record(cfg, train, valid)
    assert base["train"]["labels"]["emotion"]["classes"] == {"ang": 4, "neu": 4}
    assert base["selection"] == {"set": "valid", "speakers": ["s3"], "utterances": 4}
    assert base["normalization"] == {"feats": "speaker"}
    assert build_record(cfg, train, valid) == base  # deterministic

    # the same data (tables and archives) moved to another directory: same record, other info
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "data", moved)
    for d in ("train", "valid"):
        for table in ("feats.scp", "cmvn.scp"):
            t = read_table(moved / d / table)
            write_table(moved / d / table, {k: v.replace(str(tmp_path / "data"), str(moved)) for k, v in t.items()})
    other = build_record(cfg, moved / "train", moved / "valid")
    assert other["info"]["train_dir"] != base["info"]["train_dir"]
    assert first_difference(base, other) is None

    def changed(**kw) -> str:
        diff = first_difference(base, build_record(kw.get("cfg", cfg), train, valid))
        assert diff is not None
        return diff

    # config: any setting but those a resume may change; the seed
    assert changed(cfg=resolved("train.lr=0.5")).startswith(f"config.train.lr ({cfg['train']['lr']!r} vs 0.5)")
    assert changed(cfg=resolved("train.seed=3")) == "seed (0 vs 3)"
    assert changed(cfg=resolved("inputs.feats.norm=utterance")) == "normalization.feats ('speaker' vs 'utterance')"
    assert first_difference(base, build_record(resolved("train.epochs=99", "train.num_threads=2"), train, valid)) is None
    # a label
    labels = read_table(train / "utt2emo")
    labels["s1-u0"] = "neu"
    write_table(train / "utt2emo", labels)
    assert changed().startswith("train.labels.emotion.digest")
    labels["s1-u0"], labels["s1-u1"] = "ang", "ang"
    labels["s2-u0"], labels["s2-u1"] = "neu", "neu"  # same class counts, other utterances
    write_table(train / "utt2emo", labels)
    assert changed().startswith("train.labels.emotion.digest")
    labels["s2-u0"], labels["s2-u1"], labels["s1-u1"] = "ang", "neu", "neu"
    write_table(train / "utt2emo", labels)
    assert first_difference(base, build_record(cfg, train, valid)) is None
    # a feature value of one valid utterance (rewritten in place, same length)
    scp = read_table(valid / "feats.scp")
    path, _, offset = scp["s3-u2"].rpartition(":")
    mat = read_matrix(scp["s3-u2"])
    with open(path, "r+b") as f:
        f.seek(int(offset) + 15 + 4 * 7)
        f.write(np.float32(mat.flat[7] + 1e-3).tobytes())
    assert read_matrix(scp["s3-u2"]).flat[7] != mat.flat[7]
    assert changed().startswith("inputs.feats.valid.digest")
    with open(path, "r+b") as f:
        f.seek(int(offset) + 15 + 4 * 7)
        f.write(mat.flat[7].tobytes())
    # the speaker statistics
    cmvn = read_table(train / "cmvn.scp")
    write_table(train / "cmvn.scp", {**cmvn, "s1": cmvn["s2"]})
    assert changed().startswith("inputs.feats.train.norm_digest")
    write_table(train / "cmvn.scp", cmvn)
    # the feature config
    (train / "conf" / "feats.yaml").write_text("type: fbank\nnum_filters: 6\n")
    assert changed().startswith("feature_config.num_filters")
    (train / "conf" / "feats.yaml").write_text("type: fbank\nnum_filters: 5\n")
    # another selection set
    write_data_dir(valid, {k: {u: v for u, v in read_table(valid / k).items() if u != "s3-u3"}
                           for k in ("utt2spk", "utt2emo", "utt2num_frames", "feats.scp")}
                   | {"cmvn.scp": read_table(valid / "cmvn.scp")}, {"frame_shift": "0.01"})
    shutil.copytree(moved / "valid" / "conf", valid / "conf")
    assert changed() == "valid.utterances (4 vs 3)"


def test_protocol_and_overlap(tmp_path):
    root = tmp_path / "folds" / "sd-random-1"
    train = make_dir(root / "train", ("s1", "s2"), 1)
    valid = make_dir(root / "valid", ("s2",), 2)  # other utterance ids would clash: rename them
    t = {k: {u.replace("-u", "-v"): v for u, v in read_table(valid / k).items()}
         for k in ("utt2spk", "utt2emo", "utt2num_frames", "feats.scp")}
    write_data_dir(valid, {**t, "cmvn.scp": read_table(valid / "cmvn.scp")}, {"frame_shift": "0.01"})
    with pytest.raises(EmotkError, match=r"valid: speaker 's2' is also in the training set .*1 shared\); declare"):
        build_record(resolved(), train, valid)
    meta = {"protocol": "random", "speaker_independent": False, "seed": 7}
    (root / "fold.yaml").write_text(yaml.safe_dump(meta))
    r = build_record(resolved(), train, valid)
    assert r["protocol"] == {"name": "random", "speaker_independent": False, "fold": "sd-random-1"}
    assert r["checks"] == {"shared_utterances": 0, "shared_speakers": 1, "speaker_dependent": True}
    (root / "fold.yaml").write_text(yaml.safe_dump({**meta, "seed": 8}))  # same folds from another seed
    r8 = build_record(resolved(), train, valid)
    assert r8["info"]["split_seed"] == 8 and first_difference(r, r8) is None
    same = make_dir(tmp_path / "x" / "train", ("s1", "s2"), 1)
    with pytest.raises(EmotkError, match=r"utterance 's1-u0' is also in the training set"):
        build_record(resolved(), train, same)


def test_exp_dir_reuse_redo_refuse(data, tmp_path):
    train, valid = data
    cfg = resolved()
    record = build_record(cfg, train, valid)
    exp = tmp_path / "exp"
    messages = []
    assert prepare_exp_dir(exp, cfg, record, resume=False, overwrite=False, log=messages.append)
    write_record(exp, record, DataDir(train).utt2spk, DataDir(valid).utt2spk)
    (exp / "done").write_text("best_epoch: 1\n")
    (exp / "predictions").mkdir()
    assert read_record(exp) == record
    assert read_trained(exp) == {"train": DataDir(train).utt2spk, "valid": DataDir(valid).utt2spk}
    # statements derived from the record, and changing with it
    said = describe_runs(tmp_path)
    assert said[0] == "Checkpoints (early stopping, learning-rate schedule) of 1 run(s) under exp were chosen on `valid` (4 utterances of 1 speaker(s): s3)."
    assert said[1].startswith("Normalization of input `feats` in 1 run(s): speaker (per-speaker statistics")
    write_record(exp, {**record, "normalization": {"feats": "global"}}, DataDir(train).utt2spk, DataDir(valid).utt2spk)
    assert describe_runs(tmp_path)[1].startswith("Normalization of input `feats` in 1 run(s): global (statistics of the training set only")
    write_record(exp, record, DataDir(train).utt2spk, DataDir(valid).utt2spk)
    # a match is skipped
    assert not prepare_exp_dir(exp, cfg, record, resume=False, overwrite=False, log=messages.append)
    assert "skipping" in messages[-1]
    # a change is refused with one line naming the run and the field, or redone (outputs removed)
    other = build_record(resolved("train.seed=5"), train, valid)
    with pytest.raises(EmotkError, match=r"^\S+/exp: finished run differs from the request in seed \(0 vs 5\)"):
        prepare_exp_dir(exp, cfg, other, resume=False, overwrite=False, on_mismatch="refuse", log=messages.append)
    assert (exp / "done").is_file()
    assert prepare_exp_dir(exp, cfg, other, resume=True, overwrite=False, log=messages.append)
    assert "in seed (0 vs 5)" in messages[-1] and not (exp / "done").exists() and not (exp / "predictions").exists()
    # a run without a record (an older emotk) does not match
    (exp / "done").write_text("best_epoch: 1\n")
    with pytest.raises(EmotkError, match="no provenance record"):
        prepare_exp_dir(exp, cfg, record, resume=False, overwrite=False, on_mismatch="refuse", log=messages.append)
    with pytest.raises(EmotkError, match="no provenance record"):
        read_trained(exp)


def test_env_text_records_threads_cpu_and_libraries():
    import torch

    env = dict(line.split(": ", 1) for line in env_text("emotk train x").splitlines())
    for key in ("torch", "numpy", "scikit-learn", "lhotse", "opensmile", "cpu", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        assert env[key] and env[key] != "not installed", key
    assert env["torch_threads"] == str(torch.get_num_threads())
    assert env["command"] == "emotk train x"
