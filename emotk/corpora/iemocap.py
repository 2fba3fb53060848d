"""IEMOCAP (IEMOCAP_full_release): data prep with its label sets, and a synthetic look-alike.

Layout (shared/reference/corpora.md)::

    Session{1..5}/sentences/wav/<dialog>/<utt>.wav
    Session{1..5}/dialog/EmoEvaluation/<dialog>.txt            consensus + every evaluator's line
    Session{1..5}/dialog/EmoEvaluation/{Categorical,Attribute,Self-evaluation}/
    Session{1..5}/dialog/transcriptions/<dialog>.txt

The speaker of ``Ses01F_impro01_M000`` is the MALE actor of session 1 (``Ses01M``): the letter
after ``Ses01`` belongs to the dialog, the speaker's is the first letter of the last ``_`` token.
Utterance ids are prefixed by the speaker, Kaldi style: ``Ses01M-Ses01F_impro01_M000``.

Prep reads ``EmoEvaluation/<dialog>.txt`` only: it holds every line of the per-evaluator
``Categorical/`` and ``Attribute/`` files, with the evaluator ids.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from emotk.corpora.acted import (ACTING, Act, at_level, check_synthetic_options, counts, is_complete, run_jobs, speak,
                                 with_noise_floor)
from emotk.data.datadir import DataDir, class_names_file, write_data_dir
from emotk.errors import EmotkError, where

# Consensus codes of the summary lines (xxx: the evaluators did not agree).
CODES = ("ang", "dis", "exc", "fea", "fru", "hap", "neu", "oth", "sad", "sur", "xxx")
# Category words of the evaluator lines ("C-E2:\tNeutral; Frustration;\t()"), lower-cased; the
# Categorical/ files spell neutral "Neutral state". "Other" may carry a description after ':'.
CATEGORY_WORDS = {
    "anger": "ang", "angry": "ang", "disgust": "dis", "disgusted": "dis", "excited": "exc", "excitement": "exc",
    "fear": "fea", "fearful": "fea", "frustration": "fru", "frustrated": "fru", "happiness": "hap", "happy": "hap",
    "neutral": "neu", "neutral state": "neu", "other": "oth", "sadness": "sad", "sad": "sad", "surprise": "sur",
    "surprised": "sur",
}
# Consensus code -> class name of each categorical label set.
LABEL_SETS = {
    # paper 001 (and most IEMOCAP work): happy and excited merged
    "4class": {"ang": "angry", "exc": "happy", "hap": "happy", "neu": "neutral", "sad": "sad"},
    # paper 004
    "6class": {"ang": "angry", "exc": "excited", "fru": "frustrated", "hap": "happy", "neu": "neutral", "sad": "sad"},
}
LABEL_OPTIONS = ("4class", "6class", "apv3", "va5", "all")
SUBSETS = ("complete", "improvised", "scripted")
DIMS = ("valence", "arousal", "dominance")  # the order of the summary's [V, A, D] and of utt2vad_*
LEVELS3 = ("low", "mid", "high")  # paper 001: below 3, exactly 3, above 3
DEFAULT_EVALUATOR = "E2"  # paper 003

# Totals of the full release. 10,039 utterances in 151 dialogs and the 4-class numbers are from
# corpora.md; fru, sur, fea, oth, dis, xxx are the distribution commonly reported for the
# release (unconfirmed here; they sum with corpora.md's numbers to exactly 10,039).
FULL_UTTERANCES = 10039
FULL_DIALOGS = 151
FULL_CONSENSUS = {"xxx": 2507, "fru": 1849, "neu": 1708, "ang": 1103, "sad": 1084, "exc": 1041, "hap": 595,
                  "sur": 107, "fea": 40, "oth": 3, "dis": 2}
SYNTHETIC_MARK = "emotk synthetic look-alike"

_SESSION_RE = re.compile(r"Session(\d+)")
_TURN_RE = re.compile(r"Ses(?P<session>\d{2})[FM]_\S+_(?P<gender>[FM])\d+")
_SUMMARY_RE = re.compile(r"\[\s*(?P<start>\d+(?:\.\d*)?)\s*-\s*(?P<end>\d+(?:\.\d*)?)\s*\]\s+(?P<turn>\S+)\s+"
                         r"(?P<emo>\S+)\s+\[(?P<vad>[^\]]*)\]")
_RATER_RE = re.compile(r"(?P<kind>[CA])-(?P<rater>[EFM]\d+):(?P<body>.*)")
_TRANSCRIPT_RE = re.compile(r"(?P<turn>\S+)\s+\[[^\]]*\]:\s?(?P<text>.*)")


# ---------------------------------------------------------------------------------------------
# Parsing


@dataclass
class Turn:
    """One utterance of an EmoEvaluation file: the summary line and its evaluator lines."""

    name: str  # Ses01F_impro01_M000
    dialog: str
    start: float
    end: float
    emo: str  # consensus code
    vad: tuple[float, float, float]  # averaged valence, arousal (activation), dominance
    source: str  # "file:line" of the summary line
    cat: dict[str, tuple[str, ...]] = field(default_factory=dict)  # rater -> category codes
    dim: dict[str, tuple[float | None, float | None, float | None]] = field(default_factory=dict)  # rater -> v, a, d


def speaker_of(turn: str) -> tuple[str, str]:
    """``Ses01F_impro01_M000`` -> ``("Ses01M", "m")``: session + the gender letter of the last token."""
    m = _TURN_RE.fullmatch(turn)
    if m is None:
        raise ValueError(f"utterance name {turn!r} is not Ses<2 digits><F|M>_<dialog>_<F|M><number>")
    return f"Ses{m['session']}{m['gender']}", m["gender"].lower()


def utt_id(turn: str) -> str:
    """The data-dir utterance id: speaker-prefixed turn name (``Ses01M-Ses01F_impro01_M000``)."""
    return f"{speaker_of(turn)[0]}-{turn}"


def is_self(rater: str) -> bool:
    """F1, M1, ...: an actor's self-evaluation; E1, E2, ...: an outside evaluator."""
    return rater[0] in "FM"


def normalize_evaluator(name: str) -> str:
    """``E2``, ``e2``, ``E-2`` (paper 003's spelling) -> ``E2``."""
    m = re.fullmatch(r"([EeFfMm])-?(\d+)", name.strip())
    if m is None:
        raise EmotkError(f"--evaluator {name!r}: expected an evaluator id such as E2 (or F1/M1 for a self-evaluation)")
    return f"{m[1].upper()}{int(m[2])}"


def _bad_line(path: Path, n: int, line: str, why: str = "") -> EmotkError:
    expected = ("expected '% ...' header, '[start - end]<TAB>turn<TAB>code<TAB>[v, a, d]', "
                "'C-<rater>:<TAB>Label; ...;<TAB>(comment)' or 'A-<rater>:<TAB>val v; act a; dom d;<TAB>(comment)'")
    return EmotkError(f"{where(path, n)}: {why or 'unknown line format'}: {line.strip()!r} ({expected})")


def _split_comment(body: str) -> list[str] | None:
    """``'Neutral; Frustration;\\t()'`` -> ``['Neutral', 'Frustration']``; None if there is no ';' before the comment."""
    pieces = body.split(";")
    comment = pieces.pop().strip()
    if not pieces or (comment and not comment.startswith("(")):
        return None
    return [p.strip() for p in pieces]


def _category(word: str) -> str | None:
    w = " ".join(word.lower().split())
    if w.startswith("other"):
        return "oth"
    return CATEGORY_WORDS.get(w)


def _parse_categorical(body: str) -> tuple[str, ...] | str:
    """Category codes of a C- line body, or why it cannot be read."""
    pieces = _split_comment(body)
    if pieces is None:
        return "unknown line format"
    words = [p for p in pieces if p]
    if not words:
        return "evaluator line without a category"
    codes = []
    for w in words:
        code = _category(w)
        if code is None:
            return f"unknown category {w!r}"
        codes.append(code)
    return tuple(dict.fromkeys(codes))


def _parse_dimensional(body: str) -> tuple[float | None, float | None, float | None] | str:
    """(valence, arousal, dominance) of an A- line body (None where the value is missing), or why not."""
    pieces = _split_comment(body)
    if pieces is None or len(pieces) != 3:
        return "unknown line format"
    values: dict[str, float | None] = {}
    for p in pieces:
        m = re.fullmatch(r":?\s*(val|act|dom)\s*(\S*)", p)
        if m is None or m[1] in values:
            return "unknown line format"
        if not m[2]:
            values[m[1]] = None
            continue
        try:
            x = float(m[2])
        except ValueError:
            return f"{m[1]} value {m[2]!r} is not a number"
        if not 1.0 <= x <= 5.0:
            return f"{m[1]} value {m[2]!r} is outside the 1-5 scale"
        values[m[1]] = x
    return values["val"], values["act"], values["dom"]


def parse_emo_evaluation(path: str | Path) -> list[Turn]:
    """Every turn of one ``EmoEvaluation/<dialog>.txt``; any line in an unknown format is an error naming it."""
    path = Path(path)
    dialog = path.stem
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise EmotkError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    turns: list[Turn] = []
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("%"):
            continue
        m = _RATER_RE.fullmatch(stripped)
        if m is not None:
            if not turns:
                raise _bad_line(path, n, line, "evaluator line before any utterance line")
            turn = turns[-1]
            rater = m["rater"]
            table = turn.cat if m["kind"] == "C" else turn.dim
            if rater in table:
                raise _bad_line(path, n, line, f"second {m['kind']}-{rater} line for {turn.name}")
            parsed = (_parse_categorical if m["kind"] == "C" else _parse_dimensional)(m["body"])
            if isinstance(parsed, str):
                raise _bad_line(path, n, line, parsed)
            table[rater] = parsed
            continue
        m = _SUMMARY_RE.fullmatch(stripped)
        if m is None:
            raise _bad_line(path, n, line)
        if m["emo"] not in CODES:
            raise _bad_line(path, n, line, f"unknown emotion code {m['emo']!r} (IEMOCAP has {' '.join(CODES)})")
        if not m["turn"].startswith(dialog + "_"):
            raise _bad_line(path, n, line, f"utterance {m['turn']!r} is not of dialog {dialog!r}")
        try:
            speaker_of(m["turn"])
            vad = tuple(float(v) for v in m["vad"].split(","))
        except ValueError as e:
            raise _bad_line(path, n, line, str(e) if "utterance name" in str(e) else "[V, A, D] must be 3 numbers")
        if len(vad) != 3 or not all(math.isfinite(x) for x in vad):
            raise _bad_line(path, n, line, "[V, A, D] must be 3 numbers")
        start, end = float(m["start"]), float(m["end"])
        if end <= start:
            raise _bad_line(path, n, line, f"end time {end} is not after start time {start}")
        turns.append(Turn(m["turn"], dialog, start, end, m["emo"], vad, where(path, n)))
    return turns


def read_transcriptions(path: Path) -> dict[str, str]:
    """``Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.`` -> turn -> text (other lines are not utterances)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        raise EmotkError(f"{path}: transcription file not found") from None
    out = {}
    for line in lines:
        m = _TRANSCRIPT_RE.fullmatch(line.strip())
        if m is not None:
            out[m["turn"]] = " ".join(m["text"].split()) or "<no-text>"
    return out


# ---------------------------------------------------------------------------------------------
# Data prep


@dataclass
class PrepReport:
    """What prepare_iemocap read, kept and dropped, for the log and the known-total checks."""

    data_dir: DataDir
    labels: str
    subset: str
    evaluator: str | None
    sessions: list[int]
    n_dialogs: int
    n_listed: int  # utterances in the EmoEvaluation files
    consensus: Counter  # consensus code -> utterances, whole corpus
    n_subset: int  # utterances of the subset, before the label set
    dropped: Counter  # reason -> utterances dropped by the label set
    classes: dict[str, Counter]  # label table -> class -> utterances kept
    per_session: Counter
    per_speaker: Counter
    synthetic: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.sessions == [1, 2, 3, 4, 5]


def _sessions(corpus_dir: Path) -> dict[int, Path]:
    if not corpus_dir.is_dir():
        raise EmotkError(f"{corpus_dir}: IEMOCAP corpus directory not found")
    found = {}
    for p in corpus_dir.iterdir():
        m = _SESSION_RE.fullmatch(p.name)
        if m and p.is_dir():
            found[int(m[1])] = p
    if not found:
        raise EmotkError(f"{corpus_dir}: no Session1 ... Session5 folders (give the IEMOCAP_full_release folder)")
    return dict(sorted(found.items()))


def _eval_files(session: Path) -> list[Path]:
    folder = session / "dialog" / "EmoEvaluation"
    if not folder.is_dir():
        raise EmotkError(f"{folder}: folder not found (IEMOCAP has Session<k>/dialog/EmoEvaluation/<dialog>.txt)")
    files = sorted(p for p in folder.glob("*.txt") if not p.name.startswith(".") and p.is_file())
    if not files:
        raise EmotkError(f"{folder}: no <dialog>.txt files")
    return files


def read_corpus(corpus_dir: str | Path) -> tuple[dict[int, Path], list[Turn], dict[str, Path], dict[str, str]]:
    """Sessions, every turn, its wav and its transcription; errors name the file (and line) that does not fit."""
    corpus_dir = Path(corpus_dir)
    sessions = _sessions(corpus_dir)
    turns: list[Turn] = []
    wavs: dict[str, Path] = {}
    texts: dict[str, str] = {}
    seen: dict[str, str] = {}
    for k, session in sessions.items():
        wav_root = session / "sentences" / "wav"
        for path in _eval_files(session):
            dialog_turns = parse_emo_evaluation(path)
            transcript_path = session / "dialog" / "transcriptions" / path.name
            transcript = read_transcriptions(transcript_path)
            for t in dialog_turns:
                if not t.name.startswith(f"Ses{k:02d}"):
                    raise EmotkError(f"{t.source}: utterance {t.name!r} is not of session {k} ({session})")
                if t.name in seen:
                    raise EmotkError(f"{t.source}: utterance {t.name!r} is also listed at {seen[t.name]}")
                seen[t.name] = t.source
                wav = wav_root / t.dialog / f"{t.name}.wav"
                if not wav.is_file():
                    raise EmotkError(f"{t.source}: wav of {t.name} not found: {wav}")
                if t.name not in transcript:
                    raise EmotkError(f"{transcript_path}: no transcription of {t.name} (listed at {t.source})")
                wavs[t.name] = wav
                texts[t.name] = transcript[t.name]
            turns.extend(dialog_turns)
        if wav_root.is_dir():  # never drop audio silently: every wav must be listed
            for wav in sorted(wav_root.glob("*/*.wav")):
                if not wav.name.startswith(".") and wav.stem not in seen:
                    raise EmotkError(f"{wav}: wav not listed in {session / 'dialog' / 'EmoEvaluation' / (wav.parent.name + '.txt')}")
    return sessions, turns, wavs, texts


def is_improvised(dialog: str) -> bool:
    return "impro" in dialog


LEVEL_NAMES = {"3": ("low", "mid", "high"), "5": ("1", "2", "3", "4", "5")}  # apv3 and va5 classes


def level3(x: float) -> str:
    """Paper 001's three levels of a 1-5 rating: low (< 3), mid (= 3), high (> 3)."""
    return "low" if x < 3 - 1e-6 else "high" if x > 3 + 1e-6 else "mid"


def label_turns(turns: list[Turn], labels: str, evaluator: str | None) -> tuple[dict[str, dict[str, str]], Counter]:
    """Label tables (name -> turn -> class) of ``labels`` for ``turns``, and the dropped turns by reason."""
    tables: dict[str, dict[str, str]] = {}
    dropped: Counter = Counter()
    if labels in LABEL_SETS:
        mapping = LABEL_SETS[labels]
        tables["utt2emo"] = {}
        for t in turns:
            if t.emo in mapping:
                tables["utt2emo"][t.name] = mapping[t.emo]
            else:
                dropped["xxx (no agreement)" if t.emo == "xxx" else f"{t.emo} (not in {labels})"] += 1
    elif labels == "apv3":
        for dim in DIMS:
            tables[f"utt2{dim}3"] = {t.name: level3(t.vad[DIMS.index(dim)]) for t in turns}
    elif labels == "va5":
        tables["utt2valence5"], tables["utt2arousal5"] = {}, {}
        for t in turns:
            if evaluator not in t.dim:
                dropped[f"not rated by {evaluator}"] += 1
                continue
            v, a, _ = t.dim[evaluator]
            if v is None or a is None:
                dropped[f"{evaluator} gave no {'valence' if v is None else 'arousal'}"] += 1
            elif v != int(v) or a != int(a):
                dropped[f"{evaluator} rating not a whole level"] += 1
            else:
                tables["utt2valence5"][t.name], tables["utt2arousal5"][t.name] = str(int(v)), str(int(a))
    elif labels != "all":
        raise EmotkError(f"--labels {labels!r}: expected one of {', '.join(LABEL_OPTIONS)}")
    return tables, dropped


def _ratings(t: Turn, self_eval: bool) -> tuple[str, str]:
    """``E2=neu E3=neu,fru`` and ``E3=3,2,2 E4=2,3,-`` (valence, arousal, dominance; '-' missing)."""
    def order(r: str) -> tuple[str, int]:
        return r[0], int(r[1:])

    cat = " ".join(f"{r}={','.join(t.cat[r])}" for r in sorted(t.cat, key=order) if is_self(r) == self_eval)
    dim = " ".join(f"{r}=" + ",".join("-" if x is None else f"{x:g}" for x in t.dim[r])
                   for r in sorted(t.dim, key=order) if is_self(r) == self_eval)
    return cat or "-", dim or "-"


def _duration(path: Path) -> float:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as e:
        detail = getattr(e, "error_string", "") or str(e)
        raise EmotkError(f"{path}: unreadable audio ({detail.strip().rstrip('.')})") from None
    if info.frames <= 0:
        raise EmotkError(f"{path}: audio has no samples")
    return info.frames / info.samplerate


def prepare_iemocap(corpus_dir: str | Path, data_dir: str | Path, labels: str = "4class",
                    evaluator: str | None = None, subset: str = "complete") -> PrepReport:
    """Write a data dir for IEMOCAP with the label set ``labels``, for the ``subset`` of dialogs.

    Always written: wav.scp, utt2spk, spk2utt, spk2gender, utt2dur, text, utt2session, utt2dialog,
    utt2type (improvised|scripted), utt2emo_full (consensus code), utt2valence / utt2arousal /
    utt2dominance (the summary's averages), utt2emo_evaluators / utt2vad_evaluators (outside
    evaluators E1, E2, ...) and utt2emo_self / utt2vad_self (the actors' self-evaluations).
    ``labels``: 4class / 6class write utt2emo + emo_names (other consensus codes dropped and
    counted); apv3 writes utt2{valence,arousal,dominance}3 (low/mid/high); va5 writes
    utt2valence5 and utt2arousal5 (1..5) of ``evaluator`` (default E2), dropping and counting the
    utterances it did not rate on both; all keeps every utterance.
    """
    if subset not in SUBSETS:
        raise EmotkError(f"--subset {subset!r}: expected one of {', '.join(SUBSETS)}")
    if labels not in LABEL_OPTIONS:
        raise EmotkError(f"--labels {labels!r}: expected one of {', '.join(LABEL_OPTIONS)}")
    if evaluator is not None and labels != "va5":
        raise EmotkError(f"--evaluator applies to --labels va5 only (got --labels {labels})")
    corpus_dir = Path(corpus_dir)
    sessions, turns, wavs, texts = read_corpus(corpus_dir)
    if labels == "va5":
        evaluator = normalize_evaluator(evaluator or DEFAULT_EVALUATOR)
        raters = sorted({r for t in turns for r in t.dim}, key=lambda r: (r[0], int(r[1:])))
        if evaluator not in raters:
            raise EmotkError(f"--evaluator {evaluator}: no A-{evaluator} line in the EmoEvaluation files of "
                             f"{corpus_dir} (dimensional evaluators there: {' '.join(raters)})")
    chosen = [t for t in turns if subset == "complete" or is_improvised(t.dialog) == (subset == "improvised")]
    if not chosen:
        raise EmotkError(f"{corpus_dir}: no {subset} dialogs")
    label_tables, dropped = label_turns(chosen, labels, evaluator)
    keep = [t for t in chosen if all(t.name in tab for tab in label_tables.values())]
    if not keep:
        raise EmotkError(f"{corpus_dir}: no utterance left for --labels {labels} --subset {subset} "
                         f"(dropped: {dict(dropped)})")
    tables: dict[str, dict] = {name: {} for name in (
        "wav.scp", "utt2spk", "utt2dur", "text", "utt2session", "utt2dialog", "utt2type", "utt2emo_full",
        "utt2valence", "utt2arousal", "utt2dominance", "utt2emo_evaluators", "utt2vad_evaluators",
        "utt2emo_self", "utt2vad_self", *label_tables)}
    spk2gender = {}
    for t in keep:
        u = utt_id(t.name)
        spk, gender = speaker_of(t.name)
        spk2gender[spk] = gender
        tables["wav.scp"][u] = str(wavs[t.name].resolve())
        tables["utt2spk"][u] = spk
        tables["utt2dur"][u] = round(_duration(wavs[t.name]), 4)
        tables["text"][u] = texts[t.name]
        tables["utt2session"][u] = t.name[:5]
        tables["utt2dialog"][u] = t.dialog
        tables["utt2type"][u] = "improvised" if is_improvised(t.dialog) else "scripted"
        tables["utt2emo_full"][u] = t.emo
        for dim, x in zip(DIMS, t.vad):
            tables[f"utt2{dim}"][u] = x
        tables["utt2emo_evaluators"][u], tables["utt2vad_evaluators"][u] = _ratings(t, self_eval=False)
        tables["utt2emo_self"][u], tables["utt2vad_self"][u] = _ratings(t, self_eval=True)
        for name, tab in label_tables.items():
            tables[name][u] = tab[t.name]
    tables["spk2gender"] = spk2gender
    scalars = {"emo_names": " ".join(sorted(set(LABEL_SETS[labels].values())))} if labels in LABEL_SETS else {}
    # every class of the level sets, so a fold whose training speakers lack one still knows it
    scalars.update({class_names_file(name): " ".join(LEVEL_NAMES[name[-1]]) for name in label_tables
                    if name[-1] in LEVEL_NAMES})
    d = write_data_dir(data_dir, tables, scalars)
    report = PrepReport(
        data_dir=d, labels=labels, subset=subset, evaluator=evaluator, sessions=list(sessions),
        n_dialogs=len({t.dialog for t in turns}), n_listed=len(turns), consensus=Counter(t.emo for t in turns),
        n_subset=len(chosen), dropped=dropped,
        classes={name: Counter(tables[name].values()) for name in label_tables},
        per_session=Counter(tables["utt2session"].values()), per_speaker=Counter(tables["utt2spk"].values()),
        synthetic=is_synthetic(corpus_dir))
    report.warnings = check_known_totals(report)
    return report


def expected_totals(labels: str) -> dict[str, int]:
    """Class counts of ``labels`` on the complete full release (categorical sets only)."""
    out: Counter = Counter()
    for code, name in LABEL_SETS.get(labels, {}).items():
        out[name] += FULL_CONSENSUS[code]
    return dict(out)


def check_known_totals(r: PrepReport) -> list[str]:
    """Warnings naming every count that differs from the full release's (complete real corpus only)."""
    if r.synthetic or not r.complete:
        return []
    out = []
    if r.n_dialogs != FULL_DIALOGS:
        out.append(f"{r.n_dialogs} dialogs, the full release has {FULL_DIALOGS}")
    if r.n_listed != FULL_UTTERANCES:
        out.append(f"{r.n_listed} utterances in the EmoEvaluation files, the full release has {FULL_UTTERANCES}")
    for code, n in FULL_CONSENSUS.items():
        if r.consensus[code] != n:
            out.append(f"consensus {code}: {r.consensus[code]} utterances, the full release has {n}")
    if r.subset == "complete" and r.labels in LABEL_SETS:
        expected = expected_totals(r.labels)
        got = r.classes["utt2emo"]
        total = sum(expected.values())
        if sum(got.values()) != total:
            out.append(f"{r.labels}: {sum(got.values())} utterances, the full release has {total}")
        for name, n in expected.items():
            if got[name] != n:
                out.append(f"{r.labels} {name}: {got[name]} utterances, the full release has {n}")
    return out


def is_synthetic(corpus_dir: str | Path) -> bool:
    """True for a corpus written by :func:`make_synthetic` (it marks its README.txt)."""
    f = Path(corpus_dir) / "README.txt"
    return f.is_file() and SYNTHETIC_MARK in f.read_text(encoding="utf-8", errors="replace")


def summary(r: PrepReport) -> list[str]:
    """Log lines: what was read, kept and dropped; per class, session and speaker; known-total warnings."""
    n_kept = sum(r.per_speaker.values())
    what = "the SYNTHETIC IEMOCAP look-alike (not the real corpus)" if r.synthetic else (
        "IEMOCAP (all 5 sessions)" if r.complete else f"IEMOCAP sessions {' '.join(map(str, r.sessions))} (partial)")
    lines = [f"{r.n_listed} utterances in {r.n_dialogs} dialogs of {what}",
             "consensus codes: " + counts(r.consensus),
             f"--subset {r.subset}: {r.n_subset} utterances; --labels {r.labels}"
             + (f" --evaluator {r.evaluator}" if r.evaluator else "") + f": {n_kept} kept"]
    if r.dropped:
        lines.append("dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(r.dropped.items())))
    compare = not r.synthetic and r.complete and r.subset == "complete" and r.labels in LABEL_SETS
    for name, c in r.classes.items():
        lines.append(f"per class ({name}" + (", vs. the full release" if compare else "") + "): "
                     + counts(c, expected_totals(r.labels) if compare else None))
    lines.append("per session: " + counts(r.per_session))
    lines.append("per speaker: " + counts(r.per_speaker))
    lines += [f"WARNING: {w}" for w in r.warnings]
    return lines


# ---------------------------------------------------------------------------------------------
# Synthetic look-alike

_SR = 16000
_DEFAULT_SIZE = 400
_MIN_PER_DIALOG = 2
_OUTSIDE = ("E1", "E2", "E3", "E4", "E5", "E6")
_WORDS = {"ang": "Anger", "dis": "Disgust", "exc": "Excited", "fea": "Fear", "fru": "Frustration",
          "hap": "Happiness", "neu": "Neutral", "oth": "Other", "sad": "Sadness", "sur": "Surprise"}
# How often each emotion is acted (the consensus distribution of the release, xxx spread over the rest).
_ACTED = {"neu": 0.22, "fru": 0.22, "ang": 0.14, "sad": 0.14, "exc": 0.13, "hap": 0.09, "sur": 0.03,
          "fea": 0.015, "oth": 0.01, "dis": 0.005}
# What an evaluator says instead when they read an utterance differently.
_CONFUSED = {"neu": "fru", "fru": "ang", "ang": "fru", "sad": "neu", "exc": "hap", "hap": "exc", "sur": "exc",
             "fea": "sad", "oth": "neu", "dis": "ang"}
# Prototypical valence, arousal, dominance (1-5) of each acted emotion.
_VAD = {"neu": (3.0, 2.3, 2.8), "fru": (2.2, 3.2, 3.1), "ang": (1.8, 3.9, 3.9), "sad": (2.0, 2.0, 2.3),
        "exc": (3.9, 3.7, 3.3), "hap": (4.0, 3.2, 3.1), "sur": (3.4, 3.8, 3.0), "fea": (2.0, 3.5, 2.2),
        "dis": (1.8, 3.2, 3.4), "oth": (3.0, 3.0, 3.0)}
# espeak variant, base pitch (0-100), rate (wpm), intonation range (0-100) of the ten actors
_VOICES = {
    "Ses01F": ("f1", 58, 180, 60), "Ses01M": ("m1", 40, 165, 50), "Ses02F": ("f2", 52, 170, 55),
    "Ses02M": ("m2", 45, 175, 55), "Ses03F": ("f3", 48, 160, 45), "Ses03M": ("m3", 38, 170, 50),
    "Ses04F": ("f4", 55, 185, 65), "Ses04M": ("m4", 42, 160, 45), "Ses05F": ("f5", 50, 175, 55),
    "Ses05M": ("m5", 47, 180, 60),
}
_SENTENCES = (
    "Excuse me.", "Do you have your forms?", "Yeah, I filled them out this morning.",
    "I have been standing in this line for two hours.", "That is not what I asked you.",
    "Can you just tell me where to go next?", "I think we should talk about it later.",
    "Well, it is not my fault that the office is closed.", "We finally got the letter today.",
    "I never thought he would actually leave.", "You always say that and nothing changes.",
    "Maybe we could go to the beach this weekend.", "I got the job, can you believe it?",
    "It is fine, really, do not worry about me.", "Why would you even say something like that?",
    "The train leaves at seven, so we have some time.", "I miss the way things used to be.",
    "Look at this, everything is ruined.", "Okay. Okay, I understand.", "Are you serious right now?",
)
_COMMENTS = ("()", "()", "()", "(curious)", "(mildly annoyed)", "(sarcastic)")


def _dialogs(session: int, n: int) -> list[str]:
    """Dialog ids of a session, improvised and scripted in turn, with the release's suffixes (impro05a ...)."""
    p = f"Ses{session:02d}"
    names = [f"{p}F_impro01", f"{p}M_script01_1", f"{p}M_impro02", f"{p}F_script02_1", f"{p}F_impro03",
             f"{p}M_script03_2", f"{p}M_impro04", f"{p}F_script01_2"]
    special = {3: {0: "Ses03M_impro05a", 2: "Ses03M_impro05b"}, 5: {1: "Ses05M_script01_1b"}}
    for i, name in special.get(session, {}).items():
        names[i] = name
    return names[:n]


@dataclass
class _Utt:
    turn: str
    session: int
    text: str
    acted: str
    vad: tuple[float, float, float]  # the true (acted) valence, arousal, dominance
    cat: dict[str, tuple[str, ...]]
    dim: dict[str, list]
    comments: dict[str, str]


def _consensus(cat: dict[str, tuple[str, ...]]) -> str:
    """The label more than half of the outside evaluators gave (their first label), else xxx."""
    votes = Counter(codes[0] for r, codes in cat.items() if not is_self(r))
    n = sum(votes.values())
    best = votes.most_common(2)
    if best and 2 * best[0][1] > n and (len(best) == 1 or best[0][1] > best[1][1]):
        return best[0][0]
    return "xxx"


def _rate(rng: np.random.Generator, acted: str, vad: tuple[float, float, float], agree: float):
    """One evaluator's category codes and (valence, arousal, dominance) levels of an utterance."""
    u = rng.random()
    codes = [acted if u < agree else _CONFUSED[acted] if u < (1 + agree) / 2 else str(rng.choice(list(_ACTED)))]
    if rng.random() < 0.08:
        codes.append(_CONFUSED[codes[0]])
    dim = [int(np.clip(np.rint(x + rng.normal(0, 0.5)), 1, 5)) for x in vad]
    return tuple(dict.fromkeys(codes)), dim


def _plan(size: int, seed: int) -> dict[str, list[_Utt]]:
    """Dialog -> its utterances with every evaluator's ratings, deterministic from ``seed`` and ``size``."""
    rng = np.random.default_rng([seed, 0])
    per_session = int(np.clip(round(size / 60), 2, 8))
    dialogs = [(s, d) for s in range(1, 6) for d in _dialogs(s, per_session)]
    sizes = [size // len(dialogs) + (i < size % len(dialogs)) for i in range(len(dialogs))]
    acted_codes, p = list(_ACTED), np.array(list(_ACTED.values()))
    plan: dict[str, list[_Utt]] = {}
    for (session, dialog), n in zip(dialogs, sizes):
        index = _dialogs(session, per_session).index(dialog)
        cat_raters = sorted(rng.choice(_OUTSIDE, 3, replace=False).tolist())
        dim_raters = [r for r in rng.permutation(_OUTSIDE).tolist() if r != "E2"][:2]
        if index == 0:  # E2 rates the first dialog of every session, never the second: va5 has data and drops
            dim_raters[0] = "E2"
        self_eval = is_improvised(dialog)
        counters = Counter()
        utts = []
        for i in range(n):
            gender = "FM"[i % 2] if rng.random() < 0.85 else "FM"[(i + 1) % 2]
            turn = f"{dialog}_{gender}{counters[gender]:03d}"
            counters[gender] += 1
            acted = str(rng.choice(acted_codes, p=p / p.sum()))
            vad = tuple(float(np.clip(x + rng.normal(0, 0.45), 1, 5)) for x in _VAD[acted])
            agree = rng.uniform(0.4, 0.85)
            cat, dim, comments = {}, {}, {}
            for r in sorted(set(cat_raters) | set(dim_raters)):
                codes, values = _rate(rng, acted, vad, agree)
                if r in cat_raters:
                    cat[r] = codes
                if r in dim_raters:
                    dim[r] = values
                comments[r] = str(rng.choice(_COMMENTS))
            if self_eval and rng.random() < 0.6:
                me = f"{gender}1"
                cat[me], dim[me] = _rate(rng, acted, vad, 0.9)
                comments[me] = str(rng.choice(_COMMENTS))
            utts.append(_Utt(turn, session, str(rng.choice(_SENTENCES)), acted, vad, cat, dim, comments))
        plan[dialog] = utts
    # The release's oddities, always present: a multi-label line, a missing dominance value, a disagreement.
    first, second = plan[_dialogs(1, per_session)[0]], plan[_dialogs(1, per_session)[1]]
    r0 = sorted(first[0].cat)[0]
    first[0].cat[r0] = (first[0].cat[r0][0], "fru" if first[0].cat[r0][0] != "fru" else "neu")
    first[1].dim[sorted(first[1].dim)[0]][2] = None
    for r, code in zip(sorted(second[0].cat), ("ang", "neu", "sad")):
        second[0].cat[r] = (code,)
    return plan


def _summary_vad(u: _Utt) -> tuple[float, float, float]:
    """The release's [V, A, D]: the mean of the outside evaluators' ratings (missing values left out)."""
    out = []
    for k in range(3):
        xs = [v[k] for r, v in u.dim.items() if not is_self(r) and v[k] is not None]
        out.append(float(np.mean(xs)) if xs else 3.0)
    return out[0], out[1], out[2]


# Acting of the emotions EmoDB lacks, on the scale of acted.ACTING.
def _acting(code: str) -> Act:
    emodb = {"ang": "anger", "dis": "disgust", "fea": "fear", "hap": "happiness", "neu": "neutral", "sad": "sadness",
             "oth": "neutral"}
    if code in emodb:
        return ACTING[emodb[code]]
    return {"exc": Act(f0=1.25, f0_range=1.8, tempo=1.15, gain_db=5.0, tension=0.2),
            "fru": Act(f0=1.08, f0_range=1.2, tempo=0.95, gain_db=2.0, tension=0.3, pause=2),
            "sur": Act(f0=1.35, f0_range=1.9, tempo=1.05, gain_db=3.0, breath=0.1)}[code]


def synthesize_utterance(turn: str, text: str, acted: str, vad: tuple[float, float, float], seed: int = 0,
                         max_duration: float | None = None) -> np.ndarray:
    """The audio (float32, 16 kHz) of one synthetic IEMOCAP utterance: English espeak-ng speech acted
    by the emotion's prosody rules, then shifted by how far its valence and arousal lie from the
    emotion's prototype (higher arousal: higher, faster, louder; lower valence: flatter, tenser)."""
    from emotk.corpora.tts import modify_prosody, resample

    spk, _ = speaker_of(turn)
    variant, pitch, rate, prange = _VOICES[spk]
    act = _acting(acted)
    rng = np.random.default_rng([seed, 1] + [ord(c) for c in turn])
    dv, da = vad[0] - _VAD[acted][0], vad[1] - _VAD[acted][1]
    s = float(np.clip(rng.lognormal(np.log(0.8), 0.25), 0.2, 1.5))
    tempo = act.tempo ** s * 1.06 ** da * rng.lognormal(0.0, 0.06)
    wav, sr = speak(text, "en-US", variant, rate, pitch, prange, tempo, s * act.pause, rng, max_duration)
    wav = modify_prosody(
        wav, sr,
        f0_shift=act.f0 ** s * 1.05 ** da * rng.lognormal(0.0, 0.05),
        f0_range=act.f0_range ** s * 1.12 ** dv * rng.lognormal(0.0, 0.15),
        jitter=s * act.jitter + abs(rng.normal(0.0, 0.006)),
        breathiness=s * act.breath + rng.uniform(0.0, 0.08),
        tension=float(np.clip(s * act.tension - 0.08 * dv + rng.normal(0.0, 0.1), -0.9, 0.9)),
        seed=int(rng.integers(2**31)))
    wav = resample(wav, sr, _SR)
    return with_noise_floor(at_level(wav, s * act.gain_db + 2.5 * da + rng.normal(0.0, 1.5)), rng)


def _write_utterance(args) -> tuple[str, float]:
    import soundfile as sf

    turn, text, acted, vad, seed, max_duration, path = args
    wav = synthesize_utterance(turn, text, acted, vad, seed, max_duration)
    sf.write(path, wav, _SR, subtype="PCM_16")
    return turn, wav.size / _SR


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


def _write_texts(root: Path, dialog: str, utts: list[_Utt], times: dict[str, tuple[float, float]]) -> None:
    """EmoEvaluation/<dialog>.txt, its Categorical/ Attribute/ Self-evaluation/ files, transcriptions/<dialog>.txt."""
    ev = root / "dialog" / "EmoEvaluation"
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    per_rater: dict[tuple[str, str], list[str]] = {}
    for u in sorted(utts, key=lambda u: times[u.turn]):
        start, end = times[u.turn]
        v, a, d = _summary_vad(u)
        lines.append(f"[{start:.4f} - {end:.4f}]\t{u.turn}\t{_consensus(u.cat)}\t[{v:.4f}, {a:.4f}, {d:.4f}]")
        raters = sorted(u.cat, key=lambda r: (is_self(r), r))
        for r in raters:
            words = "; ".join(_WORDS[c] for c in u.cat[r])
            lines.append(f"C-{r}:\t{words};\t{u.comments[r]}")
            file_words = "; ".join("Neutral state" if c == "neu" else _WORDS[c] for c in u.cat[r])
            per_rater.setdefault((r, "cat"), []).append(f"{u.turn} :{file_words}; {u.comments[r]}")
        for r in sorted(u.dim, key=lambda r: (is_self(r), r)):
            x = u.dim[r]
            lines.append(f"A-{r}:\tval {_fmt(x[0])}; act {_fmt(x[1])}; dom  {_fmt(x[2])};\t{u.comments[r]}")
            per_rater.setdefault((r, "atr"), []).append(
                f"{u.turn} :act {_fmt(x[1])}; :val {_fmt(x[0])}; :dom  {_fmt(x[2])}; {u.comments[r]}")
        lines.append("")
    (ev / f"{dialog}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for (r, kind), rows in sorted(per_rater.items()):
        if is_self(r):  # the release keeps self-evaluations as ANVIL annotation files
            out = ev / "Self-evaluation" / f"{dialog}_{r.lower()}.anvil"
            if not out.exists():
                out.write_text(f'<?xml version="1.0"?>\n<annotation dialog="{dialog}" evaluator="{r}"/>\n',
                               encoding="utf-8")
            continue
        folder = "Categorical" if kind == "cat" else "Attribute"
        (ev / folder / f"{dialog}_{r.lower()}_{kind}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    tr = [f"{u.turn} [{times[u.turn][0]:08.4f}-{times[u.turn][1]:08.4f}]: {u.text}"
          for u in sorted(utts, key=lambda u: times[u.turn])]
    (root / "dialog" / "transcriptions" / f"{dialog}.txt").write_text("\n".join(tr) + "\n", encoding="utf-8")


def _files(out_dir: Path, plan: dict[str, list[_Utt]]) -> Iterator[Path]:
    """Each dialog's EmoEvaluation file and wavs."""
    for dialog, utts in plan.items():
        session = out_dir / f"Session{utts[0].session}"
        yield session / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        yield from (session / "sentences" / "wav" / dialog / f"{u.turn}.wav" for u in utts)


def make_synthetic(out_dir: str | Path, *, seed: int = 0, size: int | None = None,
                   duration: float | None = None, nj: int = 2) -> Path:
    """Write a synthetic IEMOCAP_full_release in the real layout (English espeak-ng speech).

    ``size`` utterances (default 400, at least 20) over 5 sessions of 2 actors and 2 to 8 dialogs
    per session, improvised and scripted; three outside evaluators label each utterance (they
    disagree, sometimes give two labels), two rate valence/arousal/dominance (E2 rates the first
    dialog of each session and never the second), actors self-evaluate some improvised turns.
    The release's oddities are always there: ``impro05a``-style dialog ids, a multi-label line, a
    missing dominance value, an ``xxx`` consensus. Audio follows the acted emotion and the
    utterance's valence and arousal. Same seed and size: byte-identical files, and an existing
    complete corpus is reused.
    """
    from emotk.fileio import atomic_dir

    size = _DEFAULT_SIZE if size is None else int(size)
    n_min = 5 * 2 * _MIN_PER_DIALOG
    if not n_min <= size <= 20000:
        raise EmotkError(f"synthetic IEMOCAP: size must be {n_min} (2 per dialog) to 20000, got {size}")
    check_synthetic_options("IEMOCAP", seed, duration)
    plan = _plan(size, seed)
    out_dir = Path(out_dir)
    note = (f"{SYNTHETIC_MARK}: {size} utterances synthesized with espeak-ng and PSOLA prosody rules "
            f"(seed {seed}, duration {duration}); NOT the IEMOCAP database.\n")
    if is_complete(out_dir / "README.txt", note, _files(out_dir, plan)):
        return out_dir
    with atomic_dir(out_dir) as tmp:
        (tmp / "README.txt").write_text(note, encoding="utf-8")
        jobs = []
        for dialog, utts in plan.items():
            root = tmp / f"Session{utts[0].session}"
            for sub in ("Categorical", "Attribute", "Self-evaluation"):
                (root / "dialog" / "EmoEvaluation" / sub).mkdir(parents=True, exist_ok=True)
            (root / "dialog" / "transcriptions").mkdir(parents=True, exist_ok=True)
            (root / "sentences" / "wav" / dialog).mkdir(parents=True)
            jobs += [(u.turn, u.text, u.acted, u.vad, seed, duration,
                      str(root / "sentences" / "wav" / dialog / f"{u.turn}.wav")) for u in utts]
        durations = dict(run_jobs(_write_utterance, jobs, nj))
        trng = np.random.default_rng([seed, 3])
        for dialog, utts in plan.items():
            t, times = float(trng.uniform(2, 8)), {}
            for u in utts:
                times[u.turn] = (round(t, 4), round(t + durations[u.turn], 4))
                t += durations[u.turn] + float(trng.uniform(0.2, 1.5))
            _write_texts(tmp / f"Session{utts[0].session}", dialog, utts, times)
    return out_dir
