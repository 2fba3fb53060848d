"""Evaluation protocols: speaker-disjointness, stratification, overlap refusal, no stale folds."""

from __future__ import annotations

from collections import Counter

import pytest
import yaml

from emotk.data.datadir import validate_data_dir, write_data_dir, write_table
from emotk.data.split import check_fold, check_speaker_disjoint, plan_folds, read_folds, split_data_dir
from emotk.errors import EmotkError

EMOS = ["anger", "boredom", "neutral", "sadness"]


def labelled_dir(tmp_path, n_spk=6, n_per_emo=5):
    tables = {"utt2spk": {}, "utt2emo": {}}
    for s in range(n_spk):
        spk = f"{s:02d}"
        for e, emo in enumerate(EMOS):
            for i in range(n_per_emo + (s % 2)):  # unequal speaker sizes
                utt = f"{spk}_{emo}_{i}"
                tables["utt2spk"][utt] = spk
                tables["utt2emo"][utt] = emo
    return write_data_dir(tmp_path / "all", tables)


def speakers(dir_path):
    return set(validate_data_dir(dir_path, check_files=False).speakers)


def test_loso_folds_are_speaker_disjoint_and_cover_everyone(tmp_path):
    d = labelled_dir(tmp_path)
    names = split_data_dir(d.path, tmp_path / "folds", "loso")
    assert names == [f"loso-{s:02d}" for s in range(6)]
    tested = []
    for name in names:
        parts = {p: speakers(tmp_path / "folds" / name / p) for p in ("train", "valid", "test")}
        assert len(parts["test"]) == 1 and len(parts["valid"]) == 1 and len(parts["train"]) == 4
        assert not (parts["train"] & parts["test"]) and not (parts["train"] & parts["valid"])
        assert not (parts["valid"] & parts["test"])
        meta = yaml.safe_load((tmp_path / "folds" / name / "fold.yaml").read_text())
        assert meta["speaker_independent"] is True and meta["test_speakers"] == sorted(parts["test"])
        tested += parts["test"]
    assert sorted(tested) == d.speakers
    assert read_folds(tmp_path / "folds") == names


def assert_disjoint(d, fold):
    """Independent of the split's own check: no utterance and no speaker in two parts."""
    spk = d.utt2spk
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not (fold[a] & fold[b]), (a, b)
        assert not ({spk[u] for u in fold[a]} & {spk[u] for u in fold[b]}), (a, b)


def test_kfold_balances_and_is_disjoint(tmp_path):
    d = labelled_dir(tmp_path)
    folds = plan_folds(d, "kfold", k=3, seed=1)
    for f in folds.values():
        assert_disjoint(d, f)
        assert f["valid"] and f["meta"]["checks"]["speakers"] == {"parts": "train valid test", "result": "disjoint"}
    tested = sorted(u for f in folds.values() for u in f["test"])
    assert tested == sorted(d.utts)  # every utterance tested exactly once
    test_spks = [f["meta"]["test_speakers"] for f in folds.values()]
    assert sorted(s for group in test_spks for s in group) == d.speakers
    sizes = [len(f["test"]) for f in folds.values()]
    assert max(sizes) - min(sizes) <= 6  # greedy balancing on utterance counts
    with pytest.raises(EmotkError, match="k-fold needs"):
        plan_folds(d, "kfold", k=7)


def test_explicit_lists_refuse_overlap(tmp_path):
    d = labelled_dir(tmp_path)
    folds = plan_folds(d, "lists", train_speakers=["00", "01", "02"], valid_speakers=["03"],
                       test_speakers=["04", "05"])
    assert folds["lists"]["meta"]["test_speakers"] == ["04", "05"]
    with pytest.raises(EmotkError, match="speaker '02' is in both train and test: speaker overlap refused"):
        plan_folds(d, "lists", train_speakers=["00", "01", "02"], test_speakers=["02", "05"])
    with pytest.raises(EmotkError, match="test speaker '99' is not in"):
        plan_folds(d, "lists", train_speakers=["00"], test_speakers=["99"])


def test_overlap_check_directly():
    utt2spk = {"a_1": "a", "a_2": "a", "b_1": "b"}
    check_speaker_disjoint({"train": {"a_1", "a_2"}, "test": {"b_1"}}, utt2spk)
    with pytest.raises(EmotkError, match="speaker 'a'"):
        check_speaker_disjoint({"train": {"a_1"}, "test": {"a_2", "b_1"}}, utt2spk)


def test_random_split_is_named_speaker_dependent_and_stratified(tmp_path):
    d = labelled_dir(tmp_path)
    folds = plan_folds(d, "random", test_fraction=0.2, valid_fraction=0.1, repeats=2, seed=3)
    assert list(folds) == ["sd-random-1", "sd-random-2"]
    f = folds["sd-random-1"]
    assert f["meta"]["speaker_independent"] is False
    assert not (f["train"] & f["test"]) and not (f["valid"] & f["test"])
    assert len(f["train"]) + len(f["valid"]) + len(f["test"]) == len(d.utts)
    emo = d.table("utt2emo")
    per_class = Counter(emo[u] for u in f["test"])
    totals = Counter(emo.values())
    for c in EMOS:  # stratified: each class gets ~20% of its utterances
        assert abs(per_class[c] - 0.2 * totals[c]) <= 1
    assert folds["sd-random-1"]["test"] != folds["sd-random-2"]["test"]


def test_resplit_replaces_stale_folds(tmp_path):
    d = labelled_dir(tmp_path)
    out = tmp_path / "folds"
    split_data_dir(d.path, out, "loso")
    split_data_dir(d.path, out, "kfold", k=2)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["kfold2-1", "kfold2-2"]


def test_single_utterance_speaker_is_fine(tmp_path):
    tables = {"utt2spk": {"a_1": "a", "b_1": "b", "b_2": "b", "c_1": "c"},
              "utt2emo": {"a_1": "x", "b_1": "y", "b_2": "x", "c_1": "y"}}
    d = write_data_dir(tmp_path / "d", tables)
    folds = plan_folds(d, "loso")
    assert folds["loso-a"]["test"] == {"a_1"}
    with pytest.raises(EmotkError, match="at least 3 speakers"):
        plan_folds(write_data_dir(tmp_path / "e", {"utt2spk": {"a_1": "a", "b_1": "b"}}), "loso")


def test_two_valid_speakers(tmp_path):
    d = labelled_dir(tmp_path)
    split_data_dir(d.path, tmp_path / "folds", "loso", n_valid_speakers=2)
    meta = yaml.safe_load((tmp_path / "folds/loso-00/fold.yaml").read_text())
    assert meta["valid_speakers"] == ["01", "02"] and len(meta["train_speakers"]) == 3
    assert speakers(tmp_path / "folds/loso-00/valid") == {"01", "02"}
    assert meta["checks"]["utterances"]["result"] == "disjoint" and meta["checks"]["speakers"]["result"] == "disjoint"


def with_texts(tmp_path, n_spk=5, texts=("a01", "a02", "a04", "b01", "b02", "b03")):
    """Every speaker speaks every sentence with every emotion (EmoDB's design)."""
    tables = {"utt2spk": {}, "utt2emo": {}, "utt2text": {}}
    for s in range(n_spk):
        for t in texts:
            for emo in EMOS[:2]:
                utt = f"{s:02d}{t}{emo[0].upper()}a"
                tables["utt2spk"][utt], tables["utt2emo"][utt], tables["utt2text"][utt] = f"{s:02d}", emo, t
    return write_data_dir(tmp_path / "all", tables)


def test_speaker_and_text_independent_loso(tmp_path):
    d = with_texts(tmp_path)
    folds = plan_folds(d, "loso", text_folds=2, seed=0)
    assert list(folds)[:2] == ["loso-00-text1", "loso-00-text2"] and len(folds) == 10
    utt2text = {u: u[2:5] for u in d.utts}
    tested = []
    for name, f in folds.items():
        assert_disjoint(d, f)
        test_texts = {utt2text[u] for u in f["test"]}
        assert test_texts == set(f["meta"]["test_texts"]) and len(test_texts) == 3
        assert not test_texts & {utt2text[u] for u in f["train"] | f["valid"]}
        # only sentences in test are dropped: each train speaker keeps its 3 other sentences x 2 emotions
        assert len(f["train"]) == 3 * 6 and f["meta"]["dropped"]["train"] == 3 * 6
        assert f["meta"]["text_independent"] is True and f["meta"]["checks"]["texts"]["result"] == "disjoint"
        tested += f["test"]
    assert sorted(tested) == sorted(d.utts)  # each utterance tested once
    split_data_dir(d.path, tmp_path / "folds", "loso", text_folds=2)
    meta = yaml.safe_load((tmp_path / "folds/loso-01-text2/fold.yaml").read_text())
    assert meta["dropped"]["train"] == 18 and meta["counts"]["train"] == 18 and meta["checks"]["texts"]
    with pytest.raises(EmotkError, match="missing utt2text"):
        plan_folds(labelled_dir(tmp_path / "x"), "loso", text_folds=2)


def test_text_overlap_is_refused_by_the_check():
    utt2spk = {"a_1": "a", "b_1": "b", "c_1": "c"}
    parts = {"train": {"a_1"}, "valid": {"b_1"}, "test": {"c_1"}}
    with pytest.raises(EmotkError, match="'b_1' in valid has the test sentence 't1'"):
        check_fold(parts, utt2spk, True, {"a_1": "t2", "b_1": "t1", "c_1": "t1"})
    with pytest.raises(EmotkError, match="utterance 'a_1' is in both train and test"):
        check_fold({"train": {"a_1"}, "valid": set(), "test": {"a_1", "c_1"}}, utt2spk, False)


def test_leave_one_group_out(tmp_path):
    d = labelled_dir(tmp_path)  # speakers 00..05
    session = {u: f"Ses{int(s) // 2 + 1}" for u, s in d.utt2spk.items()}
    write_table(d.path / "utt2session", session)
    folds = plan_folds(d, "logo", groups="utt2session")
    assert list(folds) == ["logo-Ses1", "logo-Ses2", "logo-Ses3"]
    f = folds["logo-Ses1"]
    assert f["meta"]["test_speakers"] == ["00", "01"] and f["meta"]["valid_speakers"] == ["02"]
    assert f["meta"]["test_group"] == "Ses1" and f["meta"]["groups"] == "utt2session"
    for f in folds.values():
        assert_disjoint(d, f)
        assert {session[u] for u in f["test"]} == {f["meta"]["test_group"]}
    write_table(d.path / "spk2session", {s: f"g{int(s) % 3}" for s in d.speakers})
    assert list(plan_folds(d, "logo", groups="spk2session")) == ["logo-g0", "logo-g1", "logo-g2"]
    session["00_anger_0"] = "Ses2"  # speaker 00 in two sessions
    write_table(d.path / "utt2session", session)
    with pytest.raises(EmotkError, match="speaker '00' is in groups 'Ses2' and 'Ses1'"):
        plan_folds(d, "logo", groups="utt2session")


def test_tvt_partitions_speakers_in_the_papers_shares(tmp_path):
    """Paper 002: 42 subjects split 70:10:20 by subject -> 30 / 4 / 8 speakers, every speaker in one part."""
    d = labelled_dir(tmp_path, n_spk=42, n_per_emo=1)
    names = split_data_dir(d.path, tmp_path / "folds", "tvt", speaker_fractions="0.7:0.1:0.2", seed=3)
    assert names == ["tvt-1"]
    parts = {p: speakers(tmp_path / "folds/tvt-1" / p) for p in ("train", "valid", "test")}
    assert [len(parts[p]) for p in ("train", "valid", "test")] == [30, 4, 8]
    assert set().union(*parts.values()) == set(d.speakers)
    fold = {p: set(validate_data_dir(tmp_path / "folds/tvt-1" / p, check_files=False).utts) for p in parts}
    assert_disjoint(d, fold)
    assert sum(len(u) for u in fold.values()) == len(d.utts)  # nothing dropped
    meta = yaml.safe_load((tmp_path / "folds/tvt-1/fold.yaml").read_text())
    assert meta["protocol"] == "tvt" and meta["speaker_independent"] is True
    assert meta["speaker_fractions"] == [0.7, 0.1, 0.2]
    assert meta["checks"]["speakers"]["result"] == "disjoint"
    assert {p: sorted(parts[p]) for p in parts} == {p: meta[f"{p}_speakers"] for p in parts}


def test_tvt_is_seeded_and_repeats_differ(tmp_path):
    d = labelled_dir(tmp_path, n_spk=10, n_per_emo=1)
    a = plan_folds(d, "tvt", seed=1, repeats=3)
    assert list(a) == ["tvt-1", "tvt-2", "tvt-3"]
    assert plan_folds(d, "tvt", seed=1, repeats=3)["tvt-2"]["meta"] == a["tvt-2"]["meta"]
    tests = {frozenset(f["meta"]["test_speakers"]) for f in a.values()}
    assert len(tests) > 1  # the repeats are different partitions
    partition = lambda f: [f["meta"][f"{p}_speakers"] for p in ("train", "valid", "test")]  # noqa: E731
    assert partition(plan_folds(d, "tvt", seed=2)["tvt-1"]) != partition(a["tvt-1"])
    for f in a.values():
        assert_disjoint(d, f)
        assert len(f["meta"]["test_speakers"]) == 2 and len(f["meta"]["valid_speakers"]) == 1


def test_tvt_small_corpus_keeps_one_speaker_per_part_and_refuses_bad_shares(tmp_path):
    d = labelled_dir(tmp_path, n_spk=4, n_per_emo=1)
    meta = plan_folds(d, "tvt")["tvt-1"]["meta"]  # 0.4 valid and 0.8 test speakers round up to one each
    assert (len(meta["train_speakers"]), len(meta["valid_speakers"]), len(meta["test_speakers"])) == (2, 1, 1)
    assert plan_folds(d, "tvt", speaker_fractions="0.75:0:0.25")["tvt-1"]["meta"]["valid_speakers"] == []
    for bad, message in (("0.7:0.3", "three shares"), ("0.7:0.2:0.2", "sum to 1.1"), ("a:b:c", "three shares"),
                         ("1.2:-0.1:-0.1", "three shares")):
        with pytest.raises(EmotkError, match=message):
            plan_folds(d, "tvt", speaker_fractions=bad)
    with pytest.raises(EmotkError, match="leave no training speaker among 4 speakers"):
        plan_folds(d, "tvt", speaker_fractions="0.1:0.4:0.5")


def test_split_data_dir_command_tvt(tmp_path):
    import subprocess
    import sys

    d = labelled_dir(tmp_path, n_spk=10, n_per_emo=1)
    cmd = [sys.executable, "-c", "from emotk.cli import main; main()", "split-data-dir", str(d.path),
           str(tmp_path / "folds"), "--protocol", "tvt", "--speaker-fractions", "0.6:0.2:0.2", "--seed", "5"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    meta = yaml.safe_load((tmp_path / "folds/tvt-1/fold.yaml").read_text())
    assert meta["speaker_fractions"] == [0.6, 0.2, 0.2] and meta["seed"] == 5001
    assert meta == {**plan_folds(d, "tvt", speaker_fractions="0.6:0.2:0.2", seed=5)["tvt-1"]["meta"],
                    "counts": meta["counts"]}
    r = subprocess.run(cmd[:-4] + ["--speaker-fractions", "0.6:0.6:0.2"], capture_output=True, text=True)
    assert r.returncode != 0 and "sum to 1.4" in r.stderr and "Traceback" not in r.stderr


def test_resplit_with_the_same_folds_keeps_what_later_stages_derived(tmp_path):
    d = labelled_dir(tmp_path, n_spk=10, n_per_emo=1)
    out = tmp_path / "folds"
    split_data_dir(d.path, out, "tvt", seed=1)
    derived = out / "tvt-1/train_aug/utt2aug"  # e.g. an augmented copy made by a later recipe stage
    derived.parent.mkdir()
    derived.write_text("x -\n")
    messages = []
    split_data_dir(d.path, out, "tvt", seed=1, log=messages.append)
    assert derived.is_file() and "kept as they are" in messages[0]
    (out / "tvt-1/test/utt2emo").write_text("tampered\n")  # a part that differs from the plan is rewritten
    split_data_dir(d.path, out, "tvt", seed=1)
    assert not derived.exists() and (out / "tvt-1/test/utt2emo").read_text() != "tampered\n"
    derived.parent.mkdir()
    derived.write_text("x -\n")
    write_table(d.path / "utt2gender", {u: "f" for u in d.utts})  # the parent gained a table: the parts change
    split_data_dir(d.path, out, "tvt", seed=1)
    assert not derived.exists() and (out / "tvt-1/train/utt2gender").is_file()
    split_data_dir(d.path, out, "tvt", seed=2)  # other folds: replaced as a whole
    assert yaml.safe_load((out / "tvt-1/fold.yaml").read_text())["seed"] == 2001
    assert not list(tmp_path.glob(".folds.*"))  # no staging dir left behind
