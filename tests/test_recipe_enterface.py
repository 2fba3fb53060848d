"""recipes/enterface/run.sh end to end on a tiny synthetic eNTERFACE'05 and MUSAN (x3 augmentation, _small
models, 2 epochs, 1 seed, IS09 with a linear SVM): folds, augmentation and noisy test sets checked from the
files the recipe wrote, scores recomputed independently, the paper-layout tables, re-entry."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import yaml
from sklearn.metrics import balanced_accuracy_score

from emotk.data.datadir import read_table
from emotk.data.predictions import read_predictions

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "enterface" / "run.sh"
NOISES, SNRS = 1, 2  # x(1 x 2 + 1) = x3
SNR_RANGE = (-10.0, 15.0)
NEURAL = {"ldnn_mfcc": "mfcc", "cldnn_fst_fbank": "fbank"}


def run_recipe(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    args = ["bash", str(RECIPE), "--synthetic-dir", str(tmp / "corpus"), "--synthetic-subjects", "4",
            "--synthetic-musan-dir", str(tmp / "musan"), "--synthetic-noises", "10",
            "--data", str(tmp / "data"), "--exp", str(tmp / "exp"), "--results", str(tmp / "RESULTS.md"),
            "--noises-per-utt", str(NOISES), "--snrs-per-noise", str(SNRS), "--opensmile-sets", "IS09",
            "--svm-kernels", "linear", "--neural-systems", "ldnn:mfcc cldnn_fst:fbank", "--model-size", "_small",
            "--seeds", "1", "--train-opts", "--set train.epochs=2", "--loso-valid-speakers", "1", "--nj", "2", *extra]
    env = dict(os.environ, PATH=f"{Path(os.sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800)


def speakers_of(d: Path) -> set[str]:
    return set(read_table(d / "utt2spk").values())


def noises_used(d: Path) -> dict[str, str]:
    """noise id -> noise path of an augmented data dir's utt2aug (clean copies, '-', skipped)."""
    out = {}
    for value in read_table(d / "utt2aug").values():
        if value != "-":
            nid, _, _, path = value.split(maxsplit=3)
            out[nid] = path
    return out


def check_folds(folds: Path, all_spks: set[str]) -> list[str]:
    names = (folds / "folds.txt").read_text().split()
    for name in names:
        parts = {p: speakers_of(folds / name / p) for p in ("train", "valid", "test")}
        assert not (parts["train"] & parts["valid"] or parts["train"] & parts["test"] or parts["valid"] & parts["test"])
        assert set().union(*parts.values()) == all_spks, name
        meta = yaml.safe_load((folds / name / "fold.yaml").read_text())
        assert meta["speaker_independent"] is True and meta["test_speakers"] == sorted(parts["test"])
    return names


def check_augmented(fold: Path, noise: Path) -> None:
    train, aug = fold / "train", fold / "train_aug"
    spk, emo = read_table(train / "utt2spk"), read_table(train / "utt2emo")
    aug_spk, aug_emo = read_table(aug / "utt2spk"), read_table(aug / "utt2emo")
    assert len(aug_spk) == (NOISES * SNRS + 1) * len(spk)  # x(N+1): the noisy copies and the clean one
    for utt in spk:
        copies = [u for u in aug_spk if u == utt or u.startswith(f"{utt}-n")]
        assert len(copies) == NOISES * SNRS + 1, utt
        assert all(aug_spk[u] == spk[utt] and aug_emo[u] == emo[utt] for u in copies), utt
    test, noisy = read_table(fold / "test" / "utt2emo"), fold / "test_noisy"
    noisy_emo, augs = read_table(noisy / "utt2emo"), read_table(noisy / "utt2aug")
    assert sorted(u.rsplit("-n", 1)[0] for u in noisy_emo) == sorted(test)  # one noisy copy per test utterance
    assert all(noisy_emo[u] == test[u.rsplit("-n", 1)[0]] for u in noisy_emo)
    for value in augs.values():
        assert value != "-" and SNR_RANGE[0] <= float(value.split()[2]) <= SNR_RANGE[1]
    # No noise of the noisy test set is a training noise, by id or by file, nor in the training noise dir.
    train_noises, test_noises = noises_used(aug), noises_used(noisy)
    train_pool = set(read_table(noise / "train" / "wav.scp").values())
    assert train_noises and test_noises
    assert not set(train_noises) & set(test_noises)
    assert not set(train_noises.values()) & set(test_noises.values())
    assert not set(test_noises.values()) & train_pool
    assert set(test_noises.values()) <= set(read_table(noise / "test" / "wav.scp").values())
    assert (noisy / "feats.scp").is_file() and (aug / "feats.scp").is_file()


def check_scores(run: Path, ref: Path, set_name: str) -> float:
    s = json.loads((run / "scores" / f"{set_name}.json").read_text())
    labels = read_table(ref / "utt2emo")
    _, preds = read_predictions(run / "predictions" / set_name / "emotion.txt")
    utts = sorted(labels)
    assert sorted(preds) == utts
    ua = balanced_accuracy_score([labels[u] for u in utts], [preds[u][0] for u in utts])
    assert abs(s["heads"]["emotion"]["metrics"]["ua"] - ua) < 1e-9, run
    assert s["disjointness"]["checked"] and s["disjointness"]["utterances_disjoint"]
    assert s["disjointness"]["speaker_independent"] and not s["disjointness"]["shared_speakers"]
    return ua


def table_row(results: str, label: str) -> list[str]:
    line = next(x for x in results.splitlines() if x.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_enterface_recipe_end_to_end(tmp_path):
    r = run_recipe(tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SYNTHETIC" in r.stderr
    data, exp = tmp_path / "data", tmp_path / "exp"
    all_spks = speakers_of(data / "all")
    assert len(all_spks) == 4

    # Folds: speaker-disjoint, the same speakers in every feature dir.
    assert check_folds(data / "folds" / "loso", all_spks) == [f"loso-{s}" for s in sorted(all_spks)]
    assert check_folds(data / "folds" / "tvt", all_spks) == ["tvt-1"]
    for kind in ("fbank", "mfcc"):
        check_folds(data / kind / "folds" / "tvt", all_spks)
        assert (data / kind / "folds/tvt/tvt-1/fold.yaml").read_text() == (data / "folds/tvt/tvt-1/fold.yaml").read_text()
        check_augmented(data / kind / "folds" / "tvt" / "tvt-1", data / "noise")

    # Scores: every system on the clean test set, the TVT ones on the noisy one too.
    for kind_tag, kind in NEURAL.items():
        run = exp / kind_tag / "tvt" / "tvt-1" / "seed1"
        for set_name in ("test", "test_noisy"):
            check_scores(run, data / kind / "folds/tvt/tvt-1" / set_name, set_name)
    for fold in ["tvt/tvt-1"] + [f"loso/loso-{s}" for s in sorted(all_spks)]:
        check_scores(exp / "svm_linear_is09" / fold / "seed1", data / "folds" / fold / "test", "test")
    check_scores(exp / "svm_linear_is09/tvt/tvt-1/seed1", data / "folds/tvt/tvt-1/test_noisy", "test_noisy")

    # The report: Tables 3 and 4 filled where the systems ran, Table 5 from the probes.
    results = (tmp_path / "RESULTS.md").read_text()
    assert "SYNTHETIC" in results and "Table 3" in results and "Table 4" in results and "Table 5" in results
    loso, tvt = table_row(results, "IS09 (EC), linear")
    assert re.match(r"\d+\.\d ± \d+\.\d", loso) and re.match(r"\d+\.\d", tvt)
    assert table_row(results, "IS13 (ComParE), rbf") == ["-", "-"]  # not run here
    for label, tag in (("LDNN (MFCCs)", "ldnn_mfcc"), ("FST-CLDNN (log-Mels)", "cldnn_fst_fbank")):
        noisy, clean = table_row(results, label)
        for set_name, cell in (("test_noisy", noisy), ("test", clean)):
            s = json.loads((exp / tag / "tvt/tvt-1/seed1/scores" / f"{set_name}.json").read_text())
            assert cell == f"{100 * s['heads']['emotion']['metrics']['ua']:.1f}"
    probe = (exp / "cldnn_fst_fbank/tvt/tvt-1/seed1/probe/probe.tsv").read_text().splitlines()
    ua = {row.split("\t")[0]: float(row.split("\t")[3]) for row in probe[1:] if row.split("\t")[1] == "emotion"}
    assert table_row(results, "FST-CLDNN (log-Mels)")  # Table 4's row comes first; Table 5's is the next one
    table5 = results[results.index("### Table 5"):]
    assert table_row(table5, "FST-CLDNN (log-Mels)") == ["1"] + [f"{100 * ua[m]:.1f}" for m in ("raw", "cnn", "blstm", "mlp")]

    # Re-entering at the folds keeps the augmented sets and their features (same folds, same inputs).
    feats = data / "fbank/folds/tvt/tvt-1/train_aug/feats.scp"
    before = feats.stat().st_mtime_ns
    r2 = run_recipe(tmp_path, "--stage", "3", "--stop-stage", "4")
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert feats.stat().st_mtime_ns == before and "kept as they are" in r2.stderr


def test_probe_table_means_over_runs_and_refuses_bad_input(tmp_path):
    import numpy as np
    import pytest

    from emotk.analysis.probe_table import append_to, parse_row
    from emotk.errors import EmotkError

    values = {"seed1": (0.50, 0.70), "seed2": (0.60, 0.90)}  # (cnn, blstm) probe UA of two runs
    for seed, (cnn, blstm) in values.items():
        d = tmp_path / "exp" / seed / "probe"
        d.mkdir(parents=True)
        (d / "probe.tsv").write_text("module\tlabel\tclasses\tprobe_ua\tinertia_ratio\n"
                                     f"cnn\temotion\t6\t{cnn}\t0.5\nblstm\temotion\t6\t{blstm}\t0.25\n"
                                     "cnn\tspeaker\t3\tnan\t2.0\nblstm\tspeaker\t3\tnan\t1.0\n")
    results = tmp_path / "RESULTS.md"
    results.write_text("# Report\n")
    append_to(results, [parse_row(f"T-CLDNN={tmp_path}/exp/seed*/probe"), parse_row(f"none={tmp_path}/nothing/*")],
              ["emotion", "speaker"])
    text = results.read_text()
    assert text.startswith("# Report\n")
    cnn, blstm = zip(*values.values())
    expected = [f"{100 * np.mean(v):.1f} ± {100 * np.std(v, ddof=1):.1f}" for v in (cnn, blstm)]
    assert table_row(text[text.index("### Table 5"):], "T-CLDNN") == ["2", *expected]
    assert table_row(text[text.index("### Table 5"):], "none") == ["0", "-", "-"]
    speaker = text[text.index("label `speaker`"):]
    assert table_row(speaker, "T-CLDNN") == ["2", "2.000 ± 0.000", "1.000 ± 0.000"]
    results.write_text(text + "\n## Later section\n\nkept\n")  # a re-run replaces its section, keeps the rest
    append_to(results, [parse_row(f"T-CLDNN={tmp_path}/exp/seed*/probe")], ["emotion", "speaker"])
    again = results.read_text()
    assert again.count("### Table 5") == 1 and "## Later section\n\nkept" in again and "| none |" not in again
    with pytest.raises(EmotkError, match="expected LABEL=GLOB"):
        parse_row("no-glob")
    (tmp_path / "exp/seed2/probe/probe.tsv").write_text("module\tlabel\n")
    with pytest.raises(EmotkError, match="not a probe-modules table"):
        append_to(results, [parse_row(f"x={tmp_path}/exp/seed*/probe")], ["emotion"])
