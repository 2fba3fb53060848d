"""On-the-fly noise augmentation in the streamed trainer (``train.augment``, emotk.augment.online)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from emotk.augment.mix import NoiseMixer
from emotk.augment.online import OnlineAugment
from emotk.config import load_config
from emotk.corpora.musan import make_synthetic, prepare_musan
from emotk.data.datadir import DataDir
from emotk.errors import EmotkError
from emotk.features.cmvn import compute_cmvn_data_dir
from emotk.features.pipeline import extract_data_dir, load_utterance
from emotk.training.dataset import Example, SerDataset, loader, train_batches
from emotk.training.heads import load_head
from emotk.training.inputs import open_sources
from emotk.training.loop import train
from emotk.training.provenance import first_difference, read_record
from tests.toydata import write_wav_dir

torch.set_num_threads(1)
SR = 16000
FBANK = {"type": "fbank", "sample_rate": SR, "num_filters": 23}
EMOTK = [sys.executable, "-c", "from emotk.cli import main; main()"]
TINY = ["model.name=ldnn", "model.params.lstm_size=8", "model.params.fc_sizes=[8,8,8]", "train.batch_size=4",
        "train.epochs=2", "train.patience=2", "train.num_threads=1"]


def quiet(msg):
    pass


def measured_snr(clean: np.ndarray, mixed: np.ndarray) -> float:
    c = clean.astype(np.float64)
    return 10 * np.log10(np.sum(c ** 2) / np.sum((mixed.astype(np.float64) - c) ** 2))


@pytest.fixture(scope="module")
def noise(tmp_path_factory):
    root = tmp_path_factory.mktemp("musan")
    return prepare_musan(make_synthetic(root / "c", seed=0, size=8, duration=3.0), root / "noise").path


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """Tones at 16 kHz with fbank (feats.scp, conf/feats.yaml) and per-speaker CMVN stats."""
    root = tmp_path_factory.mktemp("speech")
    out = {}
    for name, spks, seed in (("train", ("s1", "s2"), 1), ("valid", ("s3",), 2)):
        d = write_wav_dir(root / name, spks=spks, n_per_class=3, sr=SR, min_dur=0.5, max_dur=1.5, seed=seed)
        extract_data_dir(d, FBANK, log=quiet)
        compute_cmvn_data_dir(d)
        out[name] = d
    return out


def dataset(d: Path, overrides=(), noise_dir=None, prob=1.0, seed=0) -> SerDataset:
    cfg = load_config(None, ["model.name=ldnn", *overrides])
    dd = DataDir(d)
    sources = open_sources(dd, cfg["inputs"])
    aug = OnlineAugment(NoiseMixer(noise_dir, prob, (-5, 10), seed), sources) if noise_dir else None
    return SerDataset(dd, sources, {"emotion": load_head(dd, "emotion", cfg["heads"]["emotion"])}, cfg["segments"],
                      augment=aug)


def batches_of(ds, batches, workers) -> list:
    return [(b.index, b.inputs["feats"].clone(), b.lengths["feats"].clone()) for b in loader(ds, batches, workers)]


# The loader ----------------------------------------------------------------------------------------

def test_fbank_from_clean_audio_equals_feats_scp(dirs):
    ds = dataset(dirs["train"], ["inputs.feats.norm=speaker", "inputs.feats.splice=[1,1]"])
    src = ds.sources["feats"]
    clean = lambda samples, rate: samples  # noqa: E731 (the mixing step, without noise)
    for utt in ds.utts:
        table, computed = src.read(utt), src.read_mixed(utt, clean)
        assert computed.shape == table.shape
        np.testing.assert_allclose(computed, table, rtol=1e-5, atol=2e-4)


def test_same_batches_with_any_num_workers_and_order(dirs, noise):
    ds = dataset(dirs["train"], ["inputs.feats.norm=none"], noise)
    batches = train_batches(ds, 4, np.random.default_rng(0), max_frames=60, epoch=3)
    assert all(isinstance(e, Example) and e.epoch == 3 for b in batches for e in b)
    one, two = batches_of(ds, batches, 0), batches_of(ds, batches, 2)
    for (i1, x1, n1), (i2, x2, n2) in zip(one, two):
        assert i1 == i2 and torch.equal(n1, n2) and torch.equal(x1, x2)
    # built in another order and other batches: every example gets the same input
    singles = {b[0][0]: b[1][0, : b[2][0]] for b in batches_of(ds, [[e] for b in reversed(batches) for e in b], 0)}
    for idx, x, n in one:
        for k, i in enumerate(idx):
            assert torch.equal(x[k, : n[k]], singles[i])
    # and the noise is there: the clean table differs
    clean = dataset(dirs["train"], ["inputs.feats.norm=none"])
    assert not any(torch.equal(x, c) for (_, x, _), (_, c, _) in zip(one, batches_of(clean, batches, 0)))


def test_epochs_draw_other_noise_and_valid_items_stay_clean(dirs, noise):
    ds = dataset(dirs["train"], ["inputs.feats.norm=none"], noise)
    for i in range(len(ds)):
        e1, e2 = ds[Example(i, 1)][1]["feats"], ds[Example(i, 2)][1]["feats"]
        assert e1.shape == e2.shape and not np.array_equal(e1, e2)
        assert np.array_equal(ds[Example(i, 1)][1]["feats"], e1)  # reproducible
    # an item without an epoch (evaluation) reads the table as it is
    plain = dataset(dirs["train"], ["inputs.feats.norm=none"])
    for i in range(len(ds)):
        assert np.array_equal(ds[i][1]["feats"], plain[i][1]["feats"])


def test_wav_input_mixed_before_normalization_at_the_drawn_snr(dirs, noise):
    wav = ["inputs.wav.kind=wav", "inputs.wav.sample_rate=16000"]
    ds = dataset(dirs["train"], wav + ["inputs.wav.norm=none"], noise, prob=1.0, seed=7)
    mixer = ds.augment.mixer
    d = DataDir(dirs["train"])
    for i, utt in enumerate(ds.utts):
        clean = load_utterance(d, utt, SR)
        mixed = ds[Example(i, 5)][1]["wav"].reshape(-1)
        aug = mixer.draw((5, utt), len(clean) / SR)
        assert len(clean) - len(mixed) <= 1  # the example is the utterance to utt2dur's precision
        assert -5 <= aug.snr <= 10 and abs(measured_snr(clean[: len(mixed)], mixed) - aug.snr) < 0.5
    normed = dataset(dirs["train"], wav + ["inputs.wav.norm=utterance"], noise, prob=1.0, seed=7)
    x = normed[Example(0, 5)][1]["wav"]
    raw = ds[Example(0, 5)][1]["wav"]
    np.testing.assert_allclose(x, (raw - raw.mean()) / raw.std(), atol=1e-4)  # normalized after mixing


def test_prob_mixes_that_share_of_examples(dirs, noise):
    ds = dataset(dirs["train"], ["inputs.feats.norm=none"], noise, prob=0.5)
    plain = dataset(dirs["train"], ["inputs.feats.norm=none"])
    same = [np.array_equal(ds[Example(i, e)][1]["feats"], plain[i][1]["feats"]) for e in range(1, 6) for i in range(len(ds))]
    assert 0.2 < np.mean(same) < 0.8
    keys = [(e, u) for e in range(1, 6) for u in ds.utts]
    assert same == [not ds.augment.mixer.mixes(k) for k in keys]  # clean examples read the table unchanged


def test_inputs_that_cannot_be_computed_from_audio(dirs, noise, tmp_path):
    d = tmp_path / "noconf"
    shutil.copytree(dirs["train"], d)
    shutil.rmtree(d / "conf")
    with pytest.raises(EmotkError, match=r"input 'feats' cannot be computed again from noisy audio: no conf/feats\.yaml"):
        dataset(d, [], noise)
    (d / "conf").mkdir()
    (d / "conf" / "feats.yaml").write_text("type: opensmile\nfeature_set: eGeMAPSv02\n")
    with pytest.raises(EmotkError, match=r"feats\.yaml: input 'feats' has 'opensmile' features"):
        dataset(d, [], noise)


# Config ---------------------------------------------------------------------------------------------

def test_config_section_defaults_and_one_line_errors(noise, dirs, tmp_path):
    cfg = load_config(None, ["model.name=ldnn"])
    assert cfg["train"]["augment"] == {"noise": None, "prob": 1.0, "snr_range": [-10.0, 15.0]}
    on = load_config(None, ["model.name=ldnn", f"train.augment.noise={noise}", "train.augment.snr_range='-5:10'"])
    assert on["train"]["augment"] == {"noise": str(noise), "prob": 1.0, "snr_range": [-5.0, 10.0]}
    bad = {  # override -> the one line it gives (as a regex)
        "train.augment.prob=1.5": r"config: train\.augment\.prob must be a number in \[0, 1\], got 1\.5$",
        "train.augment.prob=often": r"config: train\.augment\.prob must be a number in \[0, 1\], got 'often'$",
        "train.augment.snr_range=[15,-10]": r"config: train\.augment\.snr_range '15\.0:-10\.0' is written backwards",
        "train.augment.snr_range=[3]": r"config: train\.augment\.snr_range \[3\]: expected \[LOW, HIGH\]",
        "train.augment.snr_range=-5:10": r"snr_range -310: expected \[LOW, HIGH\] .*base-60",  # YAML 1.1
        "train.augment.level=3": r"unknown config key 'train\.augment\.level'",
        f"train.augment.noise={tmp_path / 'none'}": r"config: train\.augment\.noise: .*none: noise data dir not found$",
        f"train.augment.noise={dirs['train']}": r"train\.augment\.noise: .*not a noise data dir \(an utterance data dir",
    }
    for item, message in bad.items():
        with pytest.raises(EmotkError, match=message) as e:
            load_config(None, ["model.name=ldnn", f"train.augment.noise={noise}", item])
        assert "\n" not in str(e.value)
    with pytest.raises(EmotkError, match=r"train.augment: input 'f' \(feats, lld\.scp\) cannot be computed again"):
        load_config(None, ["model.name=ldnn", f"train.augment.noise={noise}", "inputs.f.kind=feats", "inputs.f.table=lld.scp"])
    with pytest.raises(EmotkError, match=r"train.augment: input 'v' \(vector, v\.scp\)"):
        load_config(None, ["model.name=svm_linear", f"train.augment.noise={noise}", "inputs.v.kind=vector",
                           "inputs.v.table=v.scp"])
    load_config(None, ["model.name=svm_linear", f"train.augment.noise={noise}", "train.augment.prob=0",
                       "inputs.v.kind=vector", "inputs.v.table=v.scp"])  # prob 0: off
    r = subprocess.run(EMOTK + ["train", "--config", "ldnn", "--set", "train.augment.prob=2", "--train",
                                str(dirs["train"]), "--valid", str(dirs["valid"]), "--exp", str(tmp_path / "exp")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "train.augment.prob" in r.stderr, r.stderr


# Training -------------------------------------------------------------------------------------------

def weights(exp: Path) -> dict:
    return torch.load(exp / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_augment_off_trains_the_same_weights_and_on_trains_with_its_noises(dirs, noise, tmp_path):
    off = load_config(None, TINY)
    train(off, dirs["train"], dirs["valid"], tmp_path / "off", log=quiet)
    prob0 = load_config(None, TINY + [f"train.augment.noise={noise}", "train.augment.prob=0"])
    train(prob0, dirs["train"], dirs["valid"], tmp_path / "prob0", log=quiet)
    w_off, w_p0 = weights(tmp_path / "off"), weights(tmp_path / "prob0")
    assert all(torch.equal(w_off[k], w_p0[k]) for k in w_off)
    assert first_difference(read_record(tmp_path / "off"), read_record(tmp_path / "prob0")) is None

    on = load_config(None, TINY + [f"train.augment.noise={noise}"])
    summary = train(on, dirs["train"], dirs["valid"], tmp_path / "on", log=quiet)
    assert summary["epochs"] == 2 and (tmp_path / "on" / "done").is_file()
    w_on = weights(tmp_path / "on")
    assert not all(torch.equal(w_off[k], w_on[k]) for k in w_off)
    rec_on = read_record(tmp_path / "on")
    assert rec_on["augment"]["noises"] == 8 and "augment" not in read_record(tmp_path / "off")
    assert first_difference(read_record(tmp_path / "off"), rec_on).startswith("augment")
    assert yaml.safe_load((tmp_path / "on" / "config.yaml").read_text())["train"]["augment"]["noise"] == str(noise)

    # the same run is reused; moved noises (same content) too; other noises are not
    log = []
    assert train(on, dirs["train"], dirs["valid"], tmp_path / "on", log=log.append) is None
    moved = tmp_path / "moved_noise"
    shutil.copytree(noise, moved)
    assert train(load_config(None, TINY + [f"train.augment.noise={moved}"]), dirs["train"], dirs["valid"],
                 tmp_path / "on", log=quiet) is None
    other = prepare_musan(make_synthetic(tmp_path / "c2", seed=1, size=8, duration=3.0), tmp_path / "noise2").path
    log = []
    train(load_config(None, TINY + [f"train.augment.noise={other}"]), dirs["train"], dirs["valid"],
          tmp_path / "on", log=log.append)
    assert any("differs from the request in augment.noise_digest" in m for m in log), log
    with pytest.raises(EmotkError, match="differs from the request in config.train.augment"):
        train(load_config(None, TINY + [f"train.augment.noise={other}", "train.augment.prob=0.5"]), dirs["train"],
              dirs["valid"], tmp_path / "on", on_mismatch="refuse", log=quiet)


class _Stop(Exception):
    pass


def _stop_after_epoch_1(entry):
    if entry["epoch"] == 1:
        raise _Stop


def test_a_resumed_run_draws_the_noises_of_an_uninterrupted_one(dirs, noise, tmp_path):
    cfg = load_config(None, TINY + [f"train.augment.noise={noise}", "train.augment.prob=0.7"])
    train(cfg, dirs["train"], dirs["valid"], tmp_path / "straight", log=quiet)
    with pytest.raises(_Stop):  # stopped after epoch 1's checkpoint, as a kill there
        train(cfg, dirs["train"], dirs["valid"], tmp_path / "split", log=quiet, on_epoch=_stop_after_epoch_1)
    log = []
    train(cfg, dirs["train"], dirs["valid"], tmp_path / "split", resume=True, log=log.append)
    assert any("resuming after epoch 1" in m for m in log), log
    straight, split = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert all(torch.equal(straight[k], split[k]) for k in straight)
