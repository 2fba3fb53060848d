"""eNTERFACE'05 audio-visual emotion database: data prep from the .avi files, and a synthetic look-alike.

Layout (shared/reference/corpora.md)::

    subject 1/ ... subject 44/                  (no "subject 12" folder)
      anger|disgust|fear|happiness|sadness|surprise/
        sentence 1/ ... sentence 5/s1_an_1.avi   (audio 48 kHz inside the .avi)

The subject, emotion and sentence come from the FOLDERS; file names are only compared with them,
and every disagreement is reported. Known irregularities, each handled explicitly:

- ``subject 6`` has no sentence folders, one unsegmented recording per emotion
  (``subject 6/anger/s6_an.avi``): left out, as in most studies (and in the paper's 1257), and
  listed. Any .avi directly inside an emotion folder is treated the same way.
- ``subject 11`` holds files named ``s12_*``; subject 3 spells some names ``s_3_*``;
  ``subject 16/surprise/sentence 3/s16_su_3avi.avi`` lacks a dot: kept, the folders are used.
- ``subject 23`` has happiness sentences 4 and 5 only: missing sentence folders are reported.
- Some copies nest extra folders inside sentence folders: the .avi is found there, and reported.

Any other .avi that does not fit (outside ``subject N/<emotion>/``, an unknown emotion or
sentence folder, two files for one sentence) and any .avi whose audio cannot be decoded (no
audio stream, corrupt file) is an error naming the file: nothing is dropped silently. Files that
are not .avi are ignored and listed in the report.

Audio is decoded with PyAV (bundled ffmpeg), converted exactly to float, downmixed by averaging
the channels and resampled to 16 kHz (scipy polyphase), then written once as 16-bit wavs to
``DATA_DIR/wav/`` (or ``audio_dir``). ``decoded.json`` there records each source's size and
mtime: an unchanged .avi is not decoded again, a changed one is.

Data dir: wav.scp, utt2spk, spk2utt, utt2emo, utt2dur, utt2text (the sentence, ``anger_3``:
each emotion has its own five sentences), emo_names, and prepare_report.txt (every irregular
file and folder, one a line). Speakers ``s01`` ... ``s44``; utterances ``s03_an_1``
(speaker, emotion code, sentence), all from the folders. corpora.md gives no per-subject gender,
so there is no spk2gender.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotk.corpora.acted import (ACTING, Act, act_out, at_level, check_synthetic_options, counts, is_complete,
                                 run_jobs, speak)
from emotk.data.datadir import DataDir, validate_data_dir, write_table, spk2utt_from
from emotk.errors import EmotkError

# Corpus folder name -> (documented label, code used in file names and utterance ids)
EMOTIONS = {"anger": "an", "disgust": "di", "fear": "fe", "happiness": "ha", "sadness": "sa", "surprise": "su"}
EMO_NAMES = sorted(EMOTIONS)
N_SENTENCES = 5
SAMPLE_RATE = 16000
# The paper's clean set (paper 002 section 4.1): 42 subjects x 6 emotions x 5 sentences, less 3
# happiness sentences of subject 23; subject 6 left out.
PAPER_TOTAL = 1257
PAPER_SUBJECTS = 42
EXPECTED_PER_EMOTION = {e: 207 if e == "happiness" else 210 for e in EMO_NAMES}
REPORT = "prepare_report.txt"
RECORD = "decoded.json"
DECODER = f"pyav pcm-exact, channel mean, scipy resample_poly to {SAMPLE_RATE} Hz, PCM_16 (v1)"
SYNTHETIC_MARK = "emotk synthetic look-alike"

_SUBJECT_RE = re.compile(r"subject\s*(\d+)", re.IGNORECASE)
_SENTENCE_RE = re.compile(r"sentence\s*(\d+)", re.IGNORECASE)
_NAME_RE = re.compile(r"s(_?)(\d+)_([a-z]+)_(\d+)(avi)?", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Scanning the file tree


@dataclass
class Note:
    """One reported irregularity: ``status`` kept / skipped / missing / ignored."""

    status: str
    kind: str
    path: str  # relative to the corpus root
    text: str

    def line(self) -> str:
        return f"{self.status}: {self.path}: {self.text}"


@dataclass
class Utterance:
    utt: str
    speaker: str
    emotion: str
    sentence: int
    avi: Path


@dataclass
class Scan:
    root: Path
    utts: dict[str, Utterance] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    n_avi: int = 0


def _corpus_root(corpus_dir: Path) -> Path:
    """The folder holding the ``subject N`` folders: ``corpus_dir`` or its only such subfolder."""
    if not corpus_dir.is_dir():
        raise EmotkError(f"{corpus_dir}: eNTERFACE'05 corpus directory not found")

    def has_subjects(d: Path) -> bool:
        return any(p.is_dir() and _SUBJECT_RE.fullmatch(p.name) for p in d.iterdir())

    if has_subjects(corpus_dir):
        return corpus_dir
    inner = [p for p in corpus_dir.iterdir() if p.is_dir() and has_subjects(p)]
    if len(inner) == 1:
        return inner[0]
    raise EmotkError(f"{corpus_dir}: no 'subject N' folders here or in one subfolder "
                     "(give the eNTERFACE'05 root, e.g. 'enterface database')")


def _name_notes(name: str, subject: int, code: str, sentence: int) -> list[tuple[str, str]]:
    """(kind, text) for each way the file name disagrees with its folders."""
    m = _NAME_RE.fullmatch(name[:-4])
    if m is None:
        return [("name-other", f"file name does not follow s<subject>_<emotion>_<sentence>.avi "
                               f"(expected s{subject}_{code}_{sentence}.avi); the folders are used")]
    out = []
    if m[1]:
        out.append(("name-s_N_", f"file name spells the subject 's_{m[2]}_'"))
    if int(m[2]) != subject:
        out.append(("name-subject", f"file name says subject {int(m[2])}, the folder says subject {subject}; "
                                    "the folder is used"))
    if m[3].lower() != code:
        out.append(("name-emotion", f"file name says emotion {m[3]!r}, the folder says {code!r}; the folder is used"))
    if int(m[4]) != sentence:
        out.append(("name-sentence", f"file name says sentence {int(m[4])}, the folder says sentence {sentence}; "
                                     "the folder is used"))
    if m[5]:
        out.append(("name-dot", "file name lacks the dot before 'avi'"))
    return out


def _classify(scan: Scan, path: Path, parts: tuple[str, ...]) -> None:
    """File one .avi (``parts``: its path below the root) as an utterance, a skipped file or an error."""
    rel = "/".join(parts)
    subj = _SUBJECT_RE.fullmatch(parts[0]) if len(parts) > 1 else None
    if subj is None:
        scan.errors.append(f"{path}: not inside a 'subject N' folder")
        return
    if len(parts) == 2:
        scan.errors.append(f"{path}: directly in a subject folder, not in an emotion folder")
        return
    emotion = parts[1].lower()
    if emotion not in EMOTIONS:
        scan.errors.append(f"{path}: unknown emotion folder {parts[1]!r} (expected {', '.join(EMO_NAMES)})")
        return
    if len(parts) == 3:
        scan.notes.append(Note("skipped", "unsegmented", rel,
                               "no sentence folder: one unsegmented recording of the whole emotion "
                               "(subject 6's layout); left out, as in most studies"))
        return
    sent = _SENTENCE_RE.fullmatch(parts[2])
    if sent is None or not 1 <= int(sent[1]) <= N_SENTENCES:
        scan.errors.append(f"{path}: unexpected folder {parts[2]!r} (expected 'sentence 1' ... "
                           f"'sentence {N_SENTENCES}')")
        return
    subject, sentence, code = int(subj[1]), int(sent[1]), EMOTIONS[emotion]
    utt = f"s{subject:02d}_{code}_{sentence}"
    if utt in scan.utts:
        scan.errors.append(f"{path}: a second .avi for {parts[0]}/{parts[1]}/{parts[2]} "
                           f"(the first: {scan.utts[utt].avi})")
        return
    notes = _name_notes(parts[-1], subject, code, sentence)
    if len(parts) > 4:
        notes.append(("nested", f"nested in extra folder(s) {'/'.join(parts[3:-1])!r} inside the sentence folder"))
    scan.notes.extend(Note("kept", kind, rel, text) for kind, text in notes)
    scan.utts[utt] = Utterance(utt, f"s{subject:02d}", emotion, sentence, path)


def _missing_folders(scan: Scan) -> None:
    """Report emotion and sentence folders that a subject lacks (subject 23's happiness 1-3)."""
    present = Counter((u.speaker, u.emotion, u.sentence) for u in scan.utts.values())
    unsegmented = {tuple(n.path.split("/")[:2]) for n in scan.notes if n.kind == "unsegmented"}
    for sdir in sorted(p for p in scan.root.iterdir() if p.is_dir() and _SUBJECT_RE.fullmatch(p.name)):
        spk = f"s{int(_SUBJECT_RE.fullmatch(sdir.name)[1]):02d}"
        folders = {p.name.lower(): p.name for p in sdir.iterdir() if p.is_dir()}
        for emotion in EMO_NAMES:
            if emotion not in folders:
                scan.notes.append(Note("missing", "missing-emotion", sdir.name, f"no {emotion} folder"))
                continue
            if (sdir.name, folders[emotion]) in unsegmented:
                continue
            lacking = [k for k in range(1, N_SENTENCES + 1) if (spk, emotion, k) not in present]
            if lacking:
                scan.notes.append(Note("missing", "missing-sentence", f"{sdir.name}/{folders[emotion]}",
                                       "no .avi for sentence " + ", ".join(map(str, lacking))))


def scan_corpus(corpus_dir: str | Path) -> Scan:
    """Walk the tree: every .avi becomes an utterance, a reported skip, or an error (see module doc)."""
    corpus_dir = Path(corpus_dir)
    scan = Scan(_corpus_root(corpus_dir))
    for path in sorted(corpus_dir.rglob("*")):
        if path.is_dir():
            continue
        try:
            parts = path.relative_to(scan.root).parts
        except ValueError:
            parts = ()
        if path.suffix.lower() != ".avi":
            rel = "/".join(parts) if parts else str(path)
            scan.notes.append(Note("ignored", "not-avi", rel, "not an .avi file"))
            continue
        scan.n_avi += 1
        if not parts:
            scan.errors.append(f"{path}: outside the folder of 'subject N' folders ({scan.root})")
            continue
        _classify(scan, path, parts)
    _missing_folders(scan)
    return scan


# ---------------------------------------------------------------------------------------------
# Audio


def read_avi_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """The first audio stream of a video file: float32 ``[channels, samples]`` and its sample rate.

    Integer samples are scaled exactly (s16 / 32768 ...), with no resampling or mixing here.
    """
    import av

    chunks, rate = [], None
    try:
        with av.open(str(path)) as container:
            if not container.streams:
                raise EmotkError(f"{path}: no readable streams (corrupt, or not a video file)")
            if not container.streams.audio:
                raise EmotkError(f"{path}: no audio stream ({len(container.streams.video)} video stream(s) only)")
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                rate = frame.sample_rate
                x = frame.to_ndarray()
                if not frame.format.is_planar:
                    x = x.reshape(-1, len(frame.layout.channels)).T
                chunks.append(_to_float(x))
            announced = stream.frames if stream.codec_context.name.startswith("pcm_") else 0
    except av.FFmpegError as e:
        raise EmotkError(f"{path}: cannot decode ({getattr(e, 'strerror', None) or e})") from None
    n = sum(c.shape[1] for c in chunks)
    if n == 0:
        raise EmotkError(f"{path}: the audio stream has no samples")
    if n < 0.99 * announced:  # PCM in AVI: the header counts samples, so a cut file is detectable
        raise EmotkError(f"{path}: truncated: {n} of the {announced} audio samples its header announces")
    return np.concatenate(chunks, axis=1), rate


def _to_float(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return ((x.astype(np.float32) - 128.0) / 128.0)
    if np.issubdtype(x.dtype, np.integer):
        return (x.astype(np.float64) / float(2 ** (8 * x.dtype.itemsize - 1))).astype(np.float32)
    return x.astype(np.float32)


def decode_avi(path: str | Path) -> np.ndarray:
    """16 kHz mono float32 audio of an .avi: channel mean, then polyphase resampling."""
    from emotk.corpora.tts import resample

    x, rate = read_avi_audio(path)
    return np.clip(resample(x.mean(axis=0), rate, SAMPLE_RATE), -1.0, 32767 / 32768)


def _decode_job(args: tuple[str, str, str]) -> tuple[str, int | None, str | None]:
    """Decode one .avi into a wav; (utt, samples, None) or (utt, None, error line)."""
    import soundfile as sf

    from emotk.fileio import atomic_path

    utt, avi, wav = args
    try:
        y = decode_avi(avi)
    except EmotkError as e:
        return utt, None, str(e)
    with atomic_path(wav) as tmp:
        sf.write(str(tmp), y, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return utt, int(y.size), None


def _source_key(avi: Path) -> dict:
    st = avi.stat()
    return {"avi": str(avi.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _load_record(audio_dir: Path) -> dict:
    p = audio_dir / RECORD
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(rec, dict) or rec.get("decoder") != DECODER or not isinstance(rec.get("files"), dict):
        return {}
    return rec["files"]


def _still_valid(entry: dict | None, key: dict, wav: Path) -> bool:
    import soundfile as sf

    if not entry or any(entry.get(k) != v for k, v in key.items()) or not wav.is_file():
        return False
    try:
        return sf.info(str(wav)).frames == entry.get("samples")
    except sf.SoundFileError:
        return False


def decode_all(utts: dict[str, Utterance], audio_dir: Path, nj: int = 1) -> tuple[dict[str, int], int]:
    """Decode every utterance's .avi to ``audio_dir/<utt>.wav`` unless already decoded from the same file.

    Returns samples per utterance and how many were decoded now. Errors are collected over all
    files and raised together (the ones decoded are recorded, so a re-run only redoes the rest).
    """
    from emotk.fileio import write_text

    audio_dir.mkdir(parents=True, exist_ok=True)
    old = _load_record(audio_dir)
    files, todo = {}, []
    for utt, u in sorted(utts.items()):
        key, wav = _source_key(u.avi), audio_dir / f"{utt}.wav"
        if _still_valid(old.get(utt), key, wav):
            files[utt] = old[utt]
        else:
            todo.append((utt, str(u.avi), str(wav)))
    for utt in sorted(set(old) - set(utts)):  # sources gone from the corpus: their wavs go too
        (audio_dir / f"{utt}.wav").unlink(missing_ok=True)
    errors = []
    for utt, samples, error in _run_jobs(todo, nj):
        if error is None:
            files[utt] = {**_source_key(utts[utt].avi), "samples": samples}
        else:
            errors.append(error)
    write_text(audio_dir / RECORD, json.dumps({"decoder": DECODER, "files": files}, indent=1, sort_keys=True))
    if errors:
        raise _many(errors, "cannot be decoded")
    return {u: files[u]["samples"] for u in utts}, len(todo)


def _run_jobs(todo: list, nj: int):
    if nj > 1 and len(todo) > 2 * nj:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(nj, mp_context=multiprocessing.get_context("spawn")) as pool:
            yield from pool.map(_decode_job, todo, chunksize=8)
    else:
        yield from map(_decode_job, todo)


def _many(lines: list[str], what: str) -> EmotkError:
    """One line for one problem; for several, the first on the first line and all of them below."""
    if len(lines) == 1:
        return EmotkError(lines[0])
    return EmotkError(f"{len(lines)} .avi files {what}; the first: {lines[0]}\n  " + "\n  ".join(lines))


# ---------------------------------------------------------------------------------------------
# Data prep


@dataclass
class Prepared:
    data: DataDir
    notes: list[Note]
    n_avi: int
    decoded: int
    audio_dir: Path


def prepare_enterface(corpus_dir: str | Path, data_dir: str | Path, audio_dir: str | Path | None = None,
                      nj: int = 1) -> Prepared:
    """Write a data dir for eNTERFACE'05 (see the module doc); wavs go to ``audio_dir`` (default DATA_DIR/wav)."""
    from emotk.fileio import atomic_dir

    if nj < 1:
        raise EmotkError(f"--nj must be >= 1, got {nj}")
    scan = scan_corpus(corpus_dir)
    if scan.errors:
        raise _many(scan.errors, "do not fit the eNTERFACE'05 layout")
    if not scan.utts:
        raise EmotkError(f"{scan.root}: no segmented eNTERFACE'05 .avi files found")
    data_dir = Path(data_dir).resolve()
    audio = Path(audio_dir).resolve() if audio_dir is not None else data_dir / "wav"
    samples, decoded = decode_all(scan.utts, audio, nj)
    inside = audio.relative_to(data_dir) if audio.is_relative_to(data_dir) else None
    tables = {
        "wav.scp": {u: str(audio / f"{u}.wav") for u in scan.utts},
        "utt2spk": {u: x.speaker for u, x in scan.utts.items()},
        "utt2emo": {u: x.emotion for u, x in scan.utts.items()},
        "utt2text": {u: f"{x.emotion}_{x.sentence}" for u, x in scan.utts.items()},
        "utt2dur": {u: round(samples[u] / SAMPLE_RATE, 4) for u in scan.utts},
    }
    with atomic_dir(data_dir) as tmp:
        for name, t in tables.items():
            write_table(tmp / name, t)
        write_table(tmp / "spk2utt", spk2utt_from(tables["utt2spk"]))
        (tmp / "emo_names").write_text(" ".join(EMO_NAMES) + "\n", encoding="utf-8")
        (tmp / REPORT).write_text("".join(n.line() + "\n" for n in scan.notes), encoding="utf-8")
        if inside is not None:  # keep the decoded wavs when the old data dir is replaced
            (tmp / inside).parent.mkdir(parents=True, exist_ok=True)
            os.replace(audio, tmp / inside)
    return Prepared(validate_data_dir(data_dir), scan.notes, scan.n_avi, decoded, audio)


def is_synthetic(corpus_dir: str | Path) -> bool:
    """True for a corpus written by :func:`make_synthetic` (its README.txt says so)."""
    f = _corpus_root(Path(corpus_dir)) / "README.txt"
    return f.is_file() and SYNTHETIC_MARK in f.read_text(encoding="utf-8", errors="replace")


_KIND_SUMMARY = {
    "unsegmented": "unsegmented recordings without sentence folders, left out (subject 6's layout)",
    "name-subject": "file names naming another subject than their folder (subject 11's s12_*), folder used",
    "name-s_N_": "file names spelled s_N_ (subject 3)",
    "name-dot": "file names missing the dot before 'avi' (s16_su_3avi.avi)",
    "name-emotion": "file names naming another emotion than their folder, folder used",
    "name-sentence": "file names naming another sentence than their folder, folder used",
    "name-other": "file names not of the form s<subject>_<emotion>_<sentence>.avi, folders used",
    "nested": "files nested in extra folders inside their sentence folder",
    "missing-sentence": "emotion folders lacking sentences (subject 23's happiness 1-3)",
    "missing-emotion": "subject folders lacking an emotion folder",
    "not-avi": "files that are not .avi, ignored",
}


def summary(p: Prepared, synthetic: bool = False) -> list[str]:
    """Log lines: totals (vs. the paper), per emotion, per subject, every kind of irregularity, audio."""
    utt2emo, utt2spk = p.data.table("utt2emo"), p.data.utt2spk
    n, n_spk = len(utt2spk), len(set(utt2spk.values()))
    head = f"{n} utterances of {n_spk} subjects from {p.n_avi} .avi files"
    if synthetic:
        head += " of the SYNTHETIC eNTERFACE'05 look-alike (not the real corpus)"
    else:
        head += f" (the paper's clean set: {PAPER_TOTAL} utterances of {PAPER_SUBJECTS} subjects)"
    per_emo = counts(Counter(utt2emo.values()), None if synthetic else EXPECTED_PER_EMOTION)
    lines = [head, "per emotion" + ("" if synthetic else " (vs. the paper)") + f": {per_emo}",
             "per subject: " + counts(Counter(utt2spk.values()))]
    kinds = Counter(note.kind for note in p.notes)
    for kind, text in _KIND_SUMMARY.items():
        if kinds[kind]:
            lines.append(f"irregular: {kinds[kind]} {text}")
    skipped = sum(1 for note in p.notes if note.status == "skipped")
    lines.append(f"{p.n_avi} .avi = {n} utterances + {skipped} left out; every irregular file is listed in "
                 f"{p.data.path / REPORT}")
    lines.append(f"audio: {p.decoded} .avi decoded, {n - p.decoded} reused, 16 kHz mono wavs in {p.audio_dir}")
    return lines


# ---------------------------------------------------------------------------------------------
# Synthetic look-alike

# Invented English sentences, five per emotion (NOT the corpus's own scripts).
SENTENCES = {
    "anger": ["I told you three times already, this is not what I ordered.", "Get out of my way right now.",
              "You lied to me and you knew it all along.", "I will not pay for something I never asked for.",
              "Stop talking and give me back my money."],
    "disgust": ["That smell is making me sick.", "How can you eat something so rotten?",
                "There are worms crawling all over the plate.", "Please take it away, I cannot even look at it.",
                "This is the most revolting thing I have ever seen."],
    "fear": ["Did you hear that noise behind the door?", "Please do not leave me alone here.",
             "Someone is following us in the dark.", "I think the bridge is going to break.",
             "We have to get out before they find us."],
    "happiness": ["This is the best day of my whole life.", "I passed the exam, I really passed it.",
                  "What a wonderful surprise to see you all here.", "We won the match in the very last minute.",
                  "I am so glad that everything worked out."],
    "sadness": ["She is gone and she will never come back.", "I lost everything I had worked for.",
                "Nobody came to say goodbye.", "I miss the old house and the garden.",
                "It was my fault, and now it is too late."],
    "surprise": ["You bought me a car, really?", "I never expected to meet you in this town.",
                 "Wow, the whole room is full of flowers.", "Is that really you after all these years?",
                 "I cannot believe you remembered my birthday."],
}
AVI_RATE = 48000
UNSEGMENTED_SUBJECT = 6
# Subjects with irregular trees first, so that a small look-alike still has every irregularity.
_SUBJECT_ORDER = [3, 11, 16, 23] + [s for s in range(1, 45) if s not in (3, 6, 11, 12, 16, 23)]
_NESTED = {(3, "anger", 1), (16, "fear", 2)}  # (subject, emotion, sentence) nested one folder deeper
_FEMALE = {2, 9, 14, 20, 27, 31, 36, 41}  # 8 of 42 as in the paper; which ones is invented
_ACCENTS = ["en", "en-US", "en-GB-x-rp", "en-GB-scotland", "en-029", "en-US-nyc", "en-GB-x-gbclan"]


def _acting() -> dict[str, Act]:
    """Prosody rules per emotion: EmoDB's, plus surprise (high, wide F0, louder, a little faster)."""
    surprise = Act(f0=1.32, f0_range=1.9, tempo=1.05, gain_db=4.0, breath=0.1, tension=0.1)
    return {e: surprise if e == "surprise" else ACTING[e] for e in EMO_NAMES}


def synthetic_tree(size: int = PAPER_SUBJECTS) -> list[tuple[str, int, str, list[int]]]:
    """(relative path, subject, emotion, sentences spoken) of every .avi of a look-alike with ``size``
    segmented subjects, with the real corpus's irregularities (see the module doc)."""
    out = []
    for subject in sorted(_SUBJECT_ORDER[:size]):
        for emotion, code in EMOTIONS.items():
            for k in range(1, N_SENTENCES + 1):
                if subject == 23 and emotion == "happiness" and k < 4:
                    continue
                name = f"s{subject}_{code}_{k}.avi"
                if subject == 11:
                    name = f"s12_{code}_{k}.avi"
                elif subject == 3 and (emotion in ("happiness", "sadness", "surprise") or (emotion, k) == ("fear", 5)):
                    name = f"s_3_{code}_{k}.avi"
                elif (subject, emotion, k) == (16, "surprise", 3):
                    name = "s16_su_3avi.avi"
                folder = f"subject {subject}/{emotion}/sentence {k}"
                if (subject, emotion, k) in _NESTED:
                    folder += f"/sentence {k}"
                out.append((f"{folder}/{name}", subject, emotion, [k]))
    for emotion, code in EMOTIONS.items():
        out.append((f"subject {UNSEGMENTED_SUBJECT}/{emotion}/s{UNSEGMENTED_SUBJECT}_{code}.avi",
                    UNSEGMENTED_SUBJECT, emotion, list(range(1, N_SENTENCES + 1))))
    return sorted(out)


def _voice(seed: int, subject: int) -> dict:
    rng = np.random.default_rng([seed, 2, subject])
    female = subject in _FEMALE
    return {"voice": _ACCENTS[int(rng.integers(len(_ACCENTS)))],
            "variant": f"{'f' if female else 'm'}{int(rng.integers(1, 6 if female else 8))}",
            "pitch": int(rng.integers(45, 65) if female else rng.integers(30, 55)),
            "rate": int(rng.integers(150, 190)), "range": int(rng.integers(40, 70)),
            "strength": rng.uniform(0.45, 1.0), "spread": rng.uniform(0.2, 0.35),
            "balance": rng.uniform(0.7, 1.0)}  # right channel gain: a camera's stereo microphone


def synthesize_sentence(subject: int, emotion: str, sentence: int, seed: int = 0,
                        max_duration: float | None = None) -> np.ndarray:
    """Mono float32 audio at 48 kHz of one subject acting one sentence; depends only on the arguments."""
    from emotk.corpora.tts import resample

    v = _voice(seed, subject)
    act = _acting()[emotion]
    rng = np.random.default_rng([seed, 1, subject, EMO_NAMES.index(emotion), sentence])
    s = float(np.clip(v["strength"] * rng.lognormal(0.0, v["spread"]), 0.15, 1.6))
    tempo = act.tempo ** s * rng.lognormal(0.0, 0.07)
    wav, sr = speak(SENTENCES[emotion][sentence - 1], v["voice"], v["variant"], v["rate"], v["pitch"], v["range"],
                    tempo, s * act.pause, rng, max_duration)
    wav = resample(act_out(wav, sr, act, s, rng), sr, AVI_RATE)
    return at_level(wav, s * act.gain_db + rng.normal(0.0, 2.0)).astype(np.float32)


def synthetic_audio(subject: int, emotion: str, sentences: list[int], seed: int = 0,
                    max_duration: float | None = None) -> np.ndarray:
    """Stereo float32 ``[n, 2]`` at 48 kHz of one .avi: its sentences with 1 s pauses, a noise floor per channel."""
    pause = np.zeros(AVI_RATE, np.float32)
    parts = [synthesize_sentence(subject, emotion, k, seed, max_duration) for k in sentences]
    mono = np.concatenate([x for k in parts for x in (k, pause)][:-1])
    rng = np.random.default_rng([seed, 3, subject, EMO_NAMES.index(emotion), *sentences])
    balance = _voice(seed, subject)["balance"]
    floor = 10 ** (rng.uniform(-70, -58) / 20)
    stereo = np.stack([mono, balance * mono], axis=1) + rng.normal(0.0, floor, (mono.size, 2))
    return np.clip(stereo, -0.999, 0.999).astype(np.float32)


def _write_avi_job(args) -> None:
    from emotk.corpora.tts import write_avi

    path, subject, emotion, sentences, seed, max_duration = args
    write_avi(path, synthetic_audio(subject, emotion, sentences, seed, max_duration), AVI_RATE)


def make_synthetic(out_dir: str | Path, *, seed: int = 0, size: int | None = None,
                   duration: float | None = None, nj: int = 2) -> Path:
    """Write a synthetic eNTERFACE'05 in the real layout: English espeak-ng speech, emotions acted by
    prosody rules, stereo 48 kHz PCM in .avi files with a tiny video stream.

    ``size`` segmented subjects (default 42, as the real corpus; 1 to 42), taken irregular ones
    first (3, 11, 16, 23), plus subject 6's unsegmented recordings (its five sentences per emotion
    in one file). ``duration`` cuts each sentence after that many seconds (for quick tests).
    Same seed, same audio samples; an existing corpus made with the same options is reused.
    """
    from emotk.fileio import atomic_dir

    size = PAPER_SUBJECTS if size is None else int(size)
    if not 1 <= size <= PAPER_SUBJECTS:
        raise EmotkError(f"synthetic eNTERFACE'05: size (segmented subjects) must be 1 to {PAPER_SUBJECTS}, got {size}")
    check_synthetic_options("eNTERFACE'05", seed, duration)
    tree = synthetic_tree(size)
    out_dir = Path(out_dir)
    note = (f"{SYNTHETIC_MARK}: {size} subjects plus subject 6's unsegmented files, synthesized with "
            f"espeak-ng and PSOLA prosody rules (seed {seed}, duration {duration}); "
            "NOT the eNTERFACE'05 database.\n")
    if is_complete(out_dir / "README.txt", note, (out_dir / rel for rel, *_ in tree)):
        return out_dir
    with atomic_dir(out_dir) as tmp:
        (tmp / "README.txt").write_text(note, encoding="utf-8")
        jobs = []
        for rel, subject, emotion, sentences in tree:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            jobs.append((str(tmp / rel), subject, emotion, sentences, seed, duration))
        run_jobs(_write_avi_job, jobs, nj)
    return out_dir
