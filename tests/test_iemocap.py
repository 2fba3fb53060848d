"""IEMOCAP: EmoEvaluation parsing, speakers, label sets on a hand-made mini corpus, bad input,
the synthetic look-alike and the CLI."""

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

from emotk.corpora.iemocap import (
    expected_totals, make_synthetic, parse_emo_evaluation, prepare_iemocap, speaker_of, summary,
    synthesize_utterance, utt_id,
)
from emotk.data.datadir import validate_data_dir
from emotk.errors import EmotkError

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from emotk.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120)


# --- speakers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("turn, speaker, gender", [
    ("Ses01F_impro01_M000", "Ses01M", "m"),
    ("Ses03M_impro05a_F012", "Ses03F", "f"),
    ("Ses05M_script01_1b_F003", "Ses05F", "f"),
    ("Ses02F_script02_2_F041", "Ses02F", "f"),
])
def test_speaker_is_session_plus_gender_of_last_token(turn, speaker, gender):
    assert speaker_of(turn) == (speaker, gender)
    assert utt_id(turn) == f"{speaker}-{turn}"


@pytest.mark.parametrize("turn", ["Ses01F_impro01", "Ses1F_impro01_M000", "Ses01F_impro01_X000"])
def test_bad_turn_name(turn):
    with pytest.raises(ValueError, match="is not Ses"):
        speaker_of(turn)


# --- EmoEvaluation parsing -----------------------------------------------------------------------

SNIPPET = HEADER + (
    "[6.2901 - 8.2357]\tSes03M_impro05a_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
    "C-E2:\tNeutral;\t()\n"
    "C-E3:\tNeutral; Frustration;\t()\n"
    "C-E4:\tNeutral state;\t(mildly aggravated, but polite)\n"
    "C-F1:\tOther:bored;\t(curious)\n"
    "A-E3:\tval 3; act 2; dom  2;\t()\n"
    "A-E4:\tval 2; act 3; dom  ;\t(threatening, belligerent)\n"
    "A-F1:\tval 3; act 2; dom  1;\t()\n"
    "\n"
    "[10.0100 - 11.3925]\tSes03M_impro05a_M000\txxx\t[1.5000, 4.0000, 4.5000]\n"
    "C-E1:\tAnger;\t()\n"
    "C-E2:\tSadness;\t()\n"
    "C-E3:\tExcited;\t()\n"
    "A-E2:\tval 1; act 4; dom  5;\t()\n"
    "A-M1:\tval 2; act 5; dom  4;\t()\n"
)


def test_parse_emo_evaluation_oddities(tmp_path):
    path = tmp_path / "Ses03M_impro05a.txt"
    path.write_text(SNIPPET, encoding="utf-8")
    first, second = parse_emo_evaluation(path)
    assert (first.name, first.dialog, first.start, first.end) == ("Ses03M_impro05a_F000", "Ses03M_impro05a",
                                                                  6.2901, 8.2357)
    assert first.emo == "neu" and first.vad == (2.5, 2.5, 2.5)
    assert first.source == f"{path}:3"
    assert first.cat == {"E2": ("neu",), "E3": ("neu", "fru"), "E4": ("neu",), "F1": ("oth",)}
    assert first.dim == {"E3": (3.0, 2.0, 2.0), "E4": (2.0, 3.0, None), "F1": (3.0, 2.0, 1.0)}
    assert second.emo == "xxx" and second.vad == (1.5, 4.0, 4.5)
    assert second.cat == {"E1": ("ang",), "E2": ("sad",), "E3": ("exc",)}
    assert second.dim == {"E2": (1.0, 4.0, 5.0), "M1": (2.0, 5.0, 4.0)}


@pytest.mark.parametrize("line, reason", [
    ("C-E5:\tNeutral\t()", "unknown line format"),  # no ';' before the comment
    ("A-E3:\tval 3; act 2;\t()", "unknown line format"),  # dom missing entirely
    ("A-E3:\tval 3; act 2; pow 2;\t()", "unknown line format"),
    ("B-E2:\tNeutral;\t()", "unknown line format"),
    ("C-E5:\tBoredom;\t()", "unknown category 'Boredom'"),
    ("A-E3:\tval 7; act 2; dom  2;\t()", "outside the 1-5 scale"),
    ("A-E3:\tval x; act 2; dom  2;\t()", "is not a number"),
    ("C-E5:\tNeutral;\t()\nC-E5:\tAnger;\t()", "second C-E5 line"),
    ("[12.0 - 13.0]\tSes03M_impro05a_F001\tjoy\t[3, 3, 3]", "unknown emotion code 'joy'"),
    ("[12.0 - 13.0]\tSes03M_impro05a_F001\tneu", "unknown line format"),
    ("[12.0 - 13.0]\tSes03M_impro05a_F001\tneu\t[3, 3]", "must be 3 numbers"),
    ("[12.0 - 13.0]\tSes01F_impro01_F001\tneu\t[3, 3, 3]", "not of dialog"),
    ("[12.0 - 11.0]\tSes03M_impro05a_F001\tneu\t[3, 3, 3]", "not after start"),
    ("Ses03M_impro05a_F001 [012.0000-013.0000]: hello", "unknown line format"),
])
def test_unknown_line_names_file_and_line(tmp_path, line, reason):
    path = tmp_path / "Ses03M_impro05a.txt"
    path.write_text(SNIPPET + line + "\n", encoding="utf-8")
    bad_line = SNIPPET.count("\n") + 1 + (1 if line.count("\n") else 0)
    with pytest.raises(EmotkError) as e:
        parse_emo_evaluation(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:{bad_line}: ") and reason in msg and "\n" not in msg


def test_evaluator_line_before_any_utterance(tmp_path):
    path = tmp_path / "Ses03M_impro05a.txt"
    path.write_text(HEADER + "C-E2:\tNeutral;\t()\n", encoding="utf-8")
    with pytest.raises(EmotkError, match=rf"^{path}:3: evaluator line before any utterance"):
        parse_emo_evaluation(path)


# --- a hand-made mini corpus ---------------------------------------------------------------------
# (session, dialog, turn, consensus, [V, A, D], C- lines, A- lines)

def _mini_spec():
    spec = []
    codes = ["neu", "hap", "exc", "ang", "sad", "fru", "xxx", "sur", "neu", "exc", "fea", "oth"]
    dialogs = {1: ["Ses01F_impro01", "Ses01M_script01_1"], 2: ["Ses02M_impro02"], 3: ["Ses03M_impro05a"],
               4: ["Ses04F_script02_2"], 5: ["Ses05M_script01_1b"]}
    vads = [(2.5, 3.0, 3.5), (3.0, 2.0, 4.0), (4.5, 3.5, 3.0), (1.0, 5.0, 2.5)]
    i = 0
    for session, names in dialogs.items():
        for dialog in names:
            for k in range(4):
                gender = "FM"[k % 2] if dialog != "Ses01F_impro01" else "M"  # a dialog spoken by M only
                turn = f"{dialog}_{gender}{k:03d}"
                code = codes[i % len(codes)]
                cat = {"E1": "Neutral; Frustration;" if i == 0 else "Anger;", "E3": "Sadness;"}
                # E2 rates even-numbered utterances; E2's dominance missing on one, valence on another
                dim = {"E3": "val 3; act 3; dom  3;"}
                if i % 2 == 0:
                    dim["E2"] = {4: "val 2; act 4; dom  ;", 6: "val ; act 4; dom  2;"}.get(
                        i, f"val {1 + i % 5}; act {1 + (i // 2) % 5}; dom  3;")
                if i % 3 == 0:
                    dim[f"{gender}1"] = "val 4; act 4; dom  4;"
                spec.append((session, dialog, turn, code, vads[i % 4], cat, dim))
                i += 1
    return spec


def _write_mini(root: Path, spec) -> Path:
    by_dialog: dict[tuple[int, str], list] = {}
    for s in spec:
        by_dialog.setdefault((s[0], s[1]), []).append(s)
    rng = np.random.default_rng(0)
    for (session, dialog), rows in by_dialog.items():
        ses = root / f"Session{session}"
        for sub in ("dialog/EmoEvaluation/Categorical", "dialog/transcriptions", f"sentences/wav/{dialog}"):
            (ses / sub).mkdir(parents=True, exist_ok=True)
        ev, tr = [HEADER], []
        for j, (_, _, turn, code, vad, cat, dim) in enumerate(rows):
            ev.append(f"[{j * 2 + 1:.4f} - {j * 2 + 2:.4f}]\t{turn}\t{code}\t[{vad[0]:.4f}, {vad[1]:.4f}, {vad[2]:.4f}]\n")
            ev += [f"C-{r}:\t{v}\t()\n" for r, v in cat.items()]
            ev += [f"A-{r}:\t{v}\t()\n" for r, v in dim.items()]
            ev.append("\n")
            tr.append(f"{turn} [{j * 2 + 1:08.4f}-{j * 2 + 2:08.4f}]: Words of {turn}.\n")
            sf.write(str(ses / "sentences" / "wav" / dialog / f"{turn}.wav"),
                     0.1 * rng.standard_normal(1600 + 160 * j), 16000, subtype="PCM_16")
        (ses / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("".join(ev), encoding="utf-8")
        (ses / "dialog" / "transcriptions" / f"{dialog}.txt").write_text(
            "M: (not an utterance line)\n" + "".join(tr), encoding="utf-8")
    return root


@pytest.fixture
def mini(tmp_path):
    spec = _mini_spec()
    return _write_mini(tmp_path / "IEMOCAP_full_release", spec), spec


def _ids(spec, keep=lambda s: True) -> dict[str, tuple]:
    return {f"Ses{s[2][3:5]}{s[2].rsplit('_', 1)[1][0]}-{s[2]}": s for s in spec if keep(s)}


FOUR = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
SIX = {"neu": "neutral", "hap": "happy", "exc": "excited", "ang": "angry", "sad": "sad", "fru": "frustrated"}


@pytest.mark.parametrize("labels, mapping", [("4class", FOUR), ("6class", SIX)])
def test_categorical_label_sets(mini, tmp_path, labels, mapping):
    root, spec = mini
    r = prepare_iemocap(root, tmp_path / "d", labels=labels)
    d = validate_data_dir(r.data_dir.path, require=("wav.scp", "utt2emo", "text", "spk2gender", "utt2dur"))
    expected = {u: mapping[s[3]] for u, s in _ids(spec, lambda s: s[3] in mapping).items()}
    assert d.table("utt2emo") == expected
    assert d.scalar("emo_names").split() == sorted(set(mapping.values()))
    assert r.classes["utt2emo"] == Counter(expected.values())
    dropped = Counter(s[3] for s in spec if s[3] not in mapping)
    assert sum(r.dropped.values()) == len(spec) - len(expected)
    assert r.dropped["xxx (no agreement)"] == dropped["xxx"]
    for code in set(dropped) - {"xxx"}:
        assert r.dropped[f"{code} (not in {labels})"] == dropped[code]
    assert r.per_speaker == Counter(d.utt2spk.values())
    assert r.per_session == Counter(u[:5] for u in expected)


def test_full_tables(mini, tmp_path):
    root, spec = mini
    d = prepare_iemocap(root, tmp_path / "d", labels="all").data_dir
    ids = _ids(spec)
    assert d.utts == sorted(ids)
    assert d.utt2spk["Ses01M-Ses01F_impro01_M000"] == "Ses01M"
    assert d.utt2spk["Ses03F-Ses03M_impro05a_F002"] == "Ses03F"
    assert d.table("spk2gender") == {f"Ses0{k}{g}": g.lower() for k in range(1, 6) for g in "FM"}
    assert d.table("utt2session") == {u: u[:5] for u in ids}
    assert d.table("utt2dialog") == {u: s[1] for u, s in ids.items()}
    assert d.table("utt2type") == {u: "improvised" if "impro" in s[1] else "scripted" for u, s in ids.items()}
    assert d.table("utt2emo_full") == {u: s[3] for u, s in ids.items()}
    assert d.table("text") == {u: f"Words of {s[2]}." for u, s in ids.items()}
    for k, dim in enumerate(("valence", "arousal", "dominance")):
        assert d.table(f"utt2{dim}") == {u: s[4][k] for u, s in ids.items()}
    u0 = "Ses01M-Ses01F_impro01_M000"  # multi-label line, E2 and self rated
    assert d.table("utt2emo_evaluators")[u0] == "E1=neu,fru E3=sad"
    assert d.table("utt2emo_self")[u0] == "-"
    assert d.table("utt2vad_evaluators")[u0] == "E2=1,1,3 E3=3,3,3"
    assert d.table("utt2vad_self")[u0] == "M1=4,4,4"
    assert d.table("utt2vad_evaluators")[utt_id(spec[4][2])] == "E2=2,4,- E3=3,3,3"  # missing dominance
    durs = d.table("utt2dur")
    assert all(durs[u] == pytest.approx(sf.info(d.table("wav.scp")[u]).duration, abs=1e-4) for u in ids)


def test_apv3_levels(mini, tmp_path):
    root, spec = mini
    d = prepare_iemocap(root, tmp_path / "d", labels="apv3").data_dir
    level = {1.0: "low", 2.0: "low", 2.5: "low", 3.0: "mid", 3.5: "high", 4.0: "high", 4.5: "high", 5.0: "high"}
    ids = _ids(spec)
    for k, dim in enumerate(("valence", "arousal", "dominance")):
        assert d.table(f"utt2{dim}3") == {u: level[s[4][k]] for u, s in ids.items()}
        assert d.scalar(f"{dim}3_names") == "low mid high"  # every class, whatever a fold's speakers hold
    assert not d.has("utt2emo")


def test_va5_from_one_evaluator(mini, tmp_path):
    root, spec = mini
    r = prepare_iemocap(root, tmp_path / "d", labels="va5")  # E2 by default (paper 003)
    assert r.evaluator == "E2"
    d = r.data_dir
    rated = {u: s[6]["E2"] for u, s in _ids(spec).items() if "E2" in s[6]}
    unrated = len(spec) - len(rated)
    whole = {u: line for u, line in rated.items() if "val ;" not in line and "act ;" not in line}
    assert d.utts == sorted(whole)
    expected_v = {u: line.split(";")[0].split()[1] for u, line in whole.items()}
    expected_a = {u: line.split(";")[1].split()[1] for u, line in whole.items()}
    assert d.table("utt2valence5") == expected_v and d.table("utt2arousal5") == expected_a
    assert d.scalar("valence5_names") == d.scalar("arousal5_names") == "1 2 3 4 5"
    # the stated rule: unrated utterances, and those without E2's valence, are dropped and counted
    assert r.dropped == Counter({"not rated by E2": unrated, "E2 gave no valence": 1})
    # a missing dominance does not matter for valence/arousal
    assert utt_id(spec[4][2]) in d.utts
    # another evaluator, spelled as paper 003 does
    r3 = prepare_iemocap(root, tmp_path / "d3", labels="va5", evaluator="E-3")
    assert r3.evaluator == "E3" and len(r3.data_dir.utts) == len(spec) and not r3.dropped


@pytest.mark.parametrize("subset", ["improvised", "scripted"])
def test_subsets(mini, tmp_path, subset):
    root, spec = mini
    r = prepare_iemocap(root, tmp_path / "d", labels="4class", subset=subset)
    chosen = [s for s in spec if ("impro" in s[1]) == (subset == "improvised")]
    assert r.n_subset == len(chosen)
    assert r.data_dir.utts == sorted(_ids(chosen, lambda s: s[3] in FOUR))
    assert set(r.data_dir.table("utt2type").values()) == {subset}


def test_known_totals_checked_on_complete_corpus(mini, tmp_path):
    root, spec = mini  # all five sessions, not synthetic: counts are compared, every mismatch named
    r = prepare_iemocap(root, tmp_path / "d", labels="4class")
    assert r.complete and not r.synthetic
    n4 = sum(1 for s in spec if s[3] in FOUR)
    assert f"4class: {n4} utterances, the full release has 5531" in r.warnings
    n_happy = sum(1 for s in spec if s[3] in ("hap", "exc"))
    assert f"4class happy: {n_happy} utterances, the full release has 1636" in r.warnings
    assert f"{len(spec)} utterances in the EmoEvaluation files, the full release has 10039" in r.warnings
    assert "6 dialogs, the full release has 151" in r.warnings
    lines = summary(r)
    assert any(line.startswith("WARNING: 4class: ") for line in lines)
    assert any(line.startswith("per class (utt2emo, vs. the full release): angry ") for line in lines)
    # the totals of corpora.md
    assert expected_totals("4class") == {"neutral": 1708, "angry": 1103, "sad": 1084, "happy": 1041 + 595}
    assert sum(expected_totals("4class").values()) == 5531


def test_partial_corpus_is_not_checked(mini, tmp_path):
    root, spec = mini
    for k in (2, 3, 4, 5):
        shutil.rmtree(root / f"Session{k}")
    r = prepare_iemocap(root, tmp_path / "d", labels="all")
    assert not r.complete and r.warnings == [] and r.sessions == [1]
    assert "(partial)" in summary(r)[0]


# --- bad input -----------------------------------------------------------------------------------

def test_missing_wav_names_file_and_line(mini, tmp_path):
    root, spec = mini
    (root / "Session2" / "sentences" / "wav" / "Ses02M_impro02" / "Ses02M_impro02_M001.wav").unlink()
    ev = root / "Session2" / "dialog" / "EmoEvaluation" / "Ses02M_impro02.txt"
    line = ev.read_text().splitlines().index(next(x for x in ev.read_text().splitlines() if "_M001\t" in x)) + 1
    with pytest.raises(EmotkError) as e:
        prepare_iemocap(root, tmp_path / "d")
    assert str(e.value).startswith(f"{ev}:{line}: wav of Ses02M_impro02_M001 not found: ")
    assert not (tmp_path / "d").exists()


def test_unlisted_wav_is_an_error(mini, tmp_path):
    root, _ = mini
    extra = root / "Session4" / "sentences" / "wav" / "Ses04F_script02_2" / "Ses04F_script02_2_F099.wav"
    sf.write(str(extra), np.zeros(1600), 16000)
    with pytest.raises(EmotkError, match=rf"^{extra}: wav not listed in .*Ses04F_script02_2.txt$"):
        prepare_iemocap(root, tmp_path / "d")


def test_bad_line_in_corpus(mini, tmp_path):
    root, _ = mini
    ev = root / "Session5" / "dialog" / "EmoEvaluation" / "Ses05M_script01_1b.txt"
    lines = ev.read_text().splitlines()
    lines[3] = "C-E1 Anger"
    ev.write_text("\n".join(lines) + "\n")
    with pytest.raises(EmotkError, match=rf"^{ev}:4: unknown line format: 'C-E1 Anger'"):
        prepare_iemocap(root, tmp_path / "d")


def test_missing_transcription(mini, tmp_path):
    root, _ = mini
    tr = root / "Session1" / "dialog" / "transcriptions" / "Ses01F_impro01.txt"
    tr.write_text("\n".join(x for x in tr.read_text().splitlines() if "_M002 " not in x) + "\n")
    with pytest.raises(EmotkError, match=rf"^{tr}: no transcription of Ses01F_impro01_M002 \(listed at .*:\d+\)$"):
        prepare_iemocap(root, tmp_path / "d")


def test_bad_options(mini, tmp_path):
    root, _ = mini
    with pytest.raises(EmotkError, match=r"^--evaluator E9: no A-E9 line in the EmoEvaluation files of .*"
                                         r"\(dimensional evaluators there: E2 E3 F1 M1\)$"):
        prepare_iemocap(root, tmp_path / "d", labels="va5", evaluator="E9")
    with pytest.raises(EmotkError, match="^--evaluator 'X2': expected an evaluator id"):
        prepare_iemocap(root, tmp_path / "d", labels="va5", evaluator="X2")
    with pytest.raises(EmotkError, match="^--evaluator applies to --labels va5 only"):
        prepare_iemocap(root, tmp_path / "d", labels="4class", evaluator="E2")
    with pytest.raises(EmotkError, match="^--labels '5class'"):
        prepare_iemocap(root, tmp_path / "d", labels="5class")
    with pytest.raises(EmotkError, match="^--subset 'all'"):
        prepare_iemocap(root, tmp_path / "d", subset="all")
    with pytest.raises(EmotkError, match="no Session1 ... Session5 folders"):
        prepare_iemocap(tmp_path, tmp_path / "d")


def test_cli(mini, tmp_path):
    root, _ = mini
    r = run_cli("prepare-iemocap", str(root), str(tmp_path / "d"), "--labels", "6class", "--subset", "improvised")
    assert r.returncode == 0, r.stderr
    assert "per class (utt2emo): " in r.stderr and "per speaker: Ses01M " in r.stderr
    r = run_cli("prepare-iemocap", str(root), str(tmp_path / "d"), "--labels", "va5", "--evaluator", "E7")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("emotk: error: --evaluator E7")


# --- synthetic look-alike ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release", seed=0, size=20,
                          duration=1.0, nj=1)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_synthetic_layout(synth):
    sessions = sorted(p.name for p in synth.iterdir() if p.is_dir())
    assert sessions == [f"Session{k}" for k in range(1, 6)]
    dialogs = sorted(p.stem for p in synth.glob("Session*/dialog/EmoEvaluation/*.txt"))
    assert "Ses03M_impro05a" in dialogs and "Ses05M_script01_1b" in dialogs and len(dialogs) == 10
    for dialog in dialogs:
        session = synth / f"Session{int(dialog[3:5])}"
        assert (session / "dialog" / "transcriptions" / f"{dialog}.txt").is_file()
        assert (session / "sentences" / "wav" / dialog).is_dir()
    wavs = sorted(synth.glob("Session*/sentences/wav/*/*.wav"))
    assert len(wavs) == 20
    info = sf.info(str(wavs[0]))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    speakers = {speaker_of(w.stem)[0] for w in wavs}
    assert len(speakers) == 10


def test_synthetic_oddities_and_evaluator_files(synth):
    turns = [t for p in sorted(synth.glob("Session*/dialog/EmoEvaluation/*.txt")) for t in parse_emo_evaluation(p)]
    assert any(len(codes) > 1 for t in turns for codes in t.cat.values())  # multi-label line
    assert any(v[2] is None for t in turns for v in t.dim.values())  # missing dominance
    assert any(t.emo == "xxx" for t in turns)
    assert any(r[0] in "FM" for t in turns for r in t.cat)  # self-evaluations
    assert any("E2" in t.dim for t in turns) and any("E2" not in t.dim for t in turns)
    # the per-evaluator Categorical/ and Attribute/ files hold the same ratings as the C- and A- lines
    words = {"Neutral state": "neu", "Anger": "ang", "Happiness": "hap", "Sadness": "sad", "Excited": "exc",
             "Frustration": "fru", "Fear": "fea", "Surprise": "sur", "Disgust": "dis", "Other": "oth"}
    by_name = {t.name: t for t in turns}
    n_cat = n_atr = 0
    for f in synth.glob("Session*/dialog/EmoEvaluation/Categorical/*_cat.txt"):
        rater = f.stem.split("_")[-2].upper()
        for line in f.read_text().splitlines():
            turn, _, rest = line.partition(" :")
            codes = tuple(words[w.strip()] for w in rest.split(";")[:-1])
            assert by_name[turn].cat[rater] == codes
            n_cat += 1
    for f in synth.glob("Session*/dialog/EmoEvaluation/Attribute/*_atr.txt"):
        rater = f.stem.split("_")[-2].upper()
        for line in f.read_text().splitlines():
            turn, _, rest = line.partition(" :")
            kv = dict(p.strip(" :").split(" ", 1) if p.strip(" :").count(" ") else (p.strip(" :"), "")
                      for p in rest.split(";")[:-1])
            got = tuple(float(kv[k]) if kv[k].strip() else None for k in ("val", "act", "dom"))
            assert by_name[turn].dim[rater] == got
            n_atr += 1
    assert n_cat == sum(1 for t in turns for r in t.cat if r[0] == "E")
    assert n_atr == sum(1 for t in turns for r in t.dim if r[0] == "E")
    # consensus = more than half of the outside evaluators; summary V/A/D = their mean
    for t in turns:
        firsts = Counter(c[0] for r, c in t.cat.items() if r[0] == "E")
        top = firsts.most_common()
        majority = top[0][0] if 2 * top[0][1] > sum(firsts.values()) else "xxx"
        assert t.emo == majority
        for k in range(3):
            xs = [v[k] for r, v in t.dim.items() if r[0] == "E" and v[k] is not None]
            assert t.vad[k] == pytest.approx(np.mean(xs), abs=1e-4)


def test_prepare_synthetic_every_label_set(synth, tmp_path):
    for labels in ("4class", "6class", "apv3", "va5", "all"):
        r = prepare_iemocap(synth, tmp_path / labels, labels=labels)
        validate_data_dir(r.data_dir.path, require=("wav.scp", "utt2dur", "text", "spk2gender"))
        assert r.synthetic and r.warnings == []
        assert "SYNTHETIC" in summary(r)[0]
    assert len(prepare_iemocap(synth, tmp_path / "all", labels="all").data_dir.utts) == 20


def test_synthetic_reused_and_deterministic(synth, tmp_path):
    before = _tree(synth)
    stamp = (synth / "README.txt").stat().st_mtime_ns
    make_synthetic(synth, seed=0, size=20, duration=1.0, nj=1)  # same options: reused, untouched
    assert (synth / "README.txt").stat().st_mtime_ns == stamp and _tree(synth) == before
    again = make_synthetic(tmp_path / "again", seed=0, size=20, duration=1.0, nj=2)  # parallel: same bytes
    assert _tree(again) == before
    other = make_synthetic(tmp_path / "other", seed=1, size=20, duration=0.3, nj=1)
    ev = "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    assert (other / ev).read_text() != (synth / ev).read_text()
    with pytest.raises(EmotkError, match="size must be 20"):
        make_synthetic(tmp_path / "x", size=10)


def test_synthesized_acoustics_follow_the_labels():
    """Angry at high arousal vs. sad at low arousal, same actor and sentence: louder and higher."""
    import parselmouth

    def f0_and_rms(x):
        pitch = parselmouth.Sound(x.astype(np.float64), 16000).to_pitch().selected_array["frequency"]
        return np.median(pitch[pitch > 0]), np.sqrt(np.mean(x ** 2))

    text = "I have been standing in this line for two hours."
    angry = synthesize_utterance("Ses02F_impro01_F000", text, "ang", (1.5, 4.5, 4.0), seed=3)
    sad = synthesize_utterance("Ses02F_impro01_F000", text, "sad", (2.0, 1.5, 2.0), seed=3)
    (f0_ang, rms_ang), (f0_sad, rms_sad) = f0_and_rms(angry), f0_and_rms(sad)
    assert f0_ang > 1.2 * f0_sad and rms_ang > 2 * rms_sad
    assert len(angry) < len(sad)  # faster
