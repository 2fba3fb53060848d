"""EmoDB (Berlin Database of Emotional Speech): data prep and a synthetic look-alike.

Layout (shared/reference/corpora.md): ``wav/03a01Fa.wav`` = speaker 03, text a01, emotion F,
version a; 535 files, 10 speakers, 16 kHz mono.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from emotk.corpora.acted import (ACTING, act_out, at_level, check_synthetic_options, counts, is_complete, run_jobs,
                                 speak, with_noise_floor)
from emotk.data.datadir import DataDir, write_data_dir
from emotk.errors import EmotkError

EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness",
            "N": "neutral"}
EMO_NAMES = sorted(EMOTIONS.values())
SPEAKERS = {"03": "m", "08": "f", "09": "f", "10": "m", "11": "m", "12": "m", "13": "f", "14": "f", "15": "m",
            "16": "f"}
TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
# Utterances per emotion in the real corpus (535 in all).
EMODB_COUNTS = {"W": 127, "L": 81, "N": 79, "F": 71, "A": 69, "T": 62, "E": 46}
EMODB_TOTAL = sum(EMODB_COUNTS.values())

_NAME_RE = re.compile(r"(?P<spk>\d{2})(?P<text>[ab]\d{2})(?P<emo>[A-Z])(?P<ver>[a-z])")
SYNTHETIC_MARK = "emotk synthetic look-alike"


# ---------------------------------------------------------------------------------------------
# Data prep


def _wav_folder(corpus_dir: Path) -> Path:
    if not corpus_dir.is_dir():
        raise EmotkError(f"{corpus_dir}: EmoDB corpus directory not found")
    if (corpus_dir / "wav").is_dir():
        return corpus_dir / "wav"
    if any(p.suffix == ".wav" for p in corpus_dir.iterdir()):
        return corpus_dir
    raise EmotkError(f"{corpus_dir}: neither a wav/ folder nor *.wav files here "
                     "(give the EmoDB root or its folder of wavs, e.g. wav_corpus/)")


def _check_name(name: str) -> str | None:
    """Why an EmoDB file name is invalid, or None."""
    if not name.endswith(".wav"):
        return "not a .wav file"
    m = _NAME_RE.fullmatch(name[:-4])
    if m is None:
        return "name is not <speaker 2 digits><text id><emotion letter><version letter>.wav"
    problems = []
    if m["spk"] not in SPEAKERS:
        problems.append(f"unknown speaker {m['spk']!r} (EmoDB has {' '.join(SPEAKERS)})")
    if m["text"] not in TEXTS:
        problems.append(f"unknown text id {m['text']!r} (EmoDB has {' '.join(TEXTS)})")
    if m["emo"] not in EMOTIONS:
        problems.append(f"unknown emotion letter {m['emo']!r} (EmoDB has {' '.join(EMOTIONS)})")
    return "; ".join(problems) or None


def _duration(path: Path) -> tuple[float | None, str | None]:
    """Duration in seconds, or why the file is not usable audio."""
    import soundfile as sf

    if path.stat().st_size == 0:
        return None, "empty file (0 bytes)"
    try:
        info = sf.info(str(path))
    except sf.SoundFileError as e:
        detail = getattr(e, "error_string", "") or str(e)  # libsndfile's reason, without the path
        return None, f"unreadable audio ({detail.strip().rstrip('.')})"
    if info.frames <= 0:
        return None, "audio has no samples"
    return info.frames / info.samplerate, None


def prepare_emodb(corpus_dir: str | Path, data_dir: str | Path) -> DataDir:
    """Write a data dir (wav.scp, utt2spk, spk2utt, utt2emo, utt2text, spk2gender, utt2dur, emo_names) for EmoDB.

    ``utt2text`` holds the sentence id of each utterance (``a01`` ... ``b10``, see ``TEXTS``): EmoDB's
    ten sentences are spoken by every speaker, and text-independent folds need it.

    ``corpus_dir`` is the corpus root (with ``wav/``) or the folder of wavs itself. Every file
    that does not fit (bad name, unknown speaker/emotion, unreadable or empty audio) is reported
    at once, one per line, and nothing is written.
    """
    wav_dir = _wav_folder(Path(corpus_dir))
    bad: list[str] = []
    tables: dict[str, dict] = {"wav.scp": {}, "utt2spk": {}, "utt2emo": {}, "utt2text": {}, "utt2dur": {}}
    for path in sorted(wav_dir.iterdir()):
        if path.name.startswith("."):
            continue
        if not path.is_file():
            bad.append(f"{path}: unexpected {'folder' if path.is_dir() else 'entry'} among the wavs")
            continue
        problem = _check_name(path.name)
        dur = None
        if problem is None:
            dur, problem = _duration(path)
        if problem is not None:
            bad.append(f"{path}: {problem}")
            continue
        utt = path.stem
        tables["wav.scp"][utt] = str(path.resolve())
        tables["utt2spk"][utt] = utt[:2]
        tables["utt2emo"][utt] = EMOTIONS[utt[5]]
        tables["utt2text"][utt] = utt[2:5]
        tables["utt2dur"][utt] = round(dur, 4)
    if bad:
        raise EmotkError(f"{wav_dir}: {len(bad)} file(s) do not fit the EmoDB layout:\n  " + "\n  ".join(bad))
    if not tables["utt2spk"]:
        raise EmotkError(f"{wav_dir}: no EmoDB wav files found")
    tables["spk2gender"] = {s: SPEAKERS[s] for s in set(tables["utt2spk"].values())}
    return write_data_dir(data_dir, tables, {"emo_names": " ".join(EMO_NAMES)})


def is_synthetic(corpus_dir: str | Path) -> bool:
    """True for a corpus written by :func:`make_synthetic` (it marks its erklaerung.txt)."""
    wav_dir = _wav_folder(Path(corpus_dir))
    for root in (wav_dir.parent, wav_dir):
        f = root / "erklaerung.txt"
        if f.is_file():
            return SYNTHETIC_MARK in f.read_text(encoding="utf-8", errors="replace")
    return False


def summary(d: DataDir, synthetic: bool = False) -> list[str]:
    """Log lines: total (vs. the real corpus), utterances per emotion and per speaker."""
    utt2emo, utt2spk = d.table("utt2emo"), d.utt2spk
    n = len(utt2spk)
    if synthetic:
        head = f"{n} utterances of the SYNTHETIC EmoDB look-alike (not the real corpus)"
    else:
        head = f"{n} utterances (the full EmoDB has {EMODB_TOTAL})"
    expected = {EMOTIONS[k]: v for k, v in EMODB_COUNTS.items()}
    return [head,
            "per emotion (vs. the full EmoDB): " + counts(Counter(utt2emo.values()), expected),
            "per speaker: " + counts(Counter(utt2spk.values()))]


# ---------------------------------------------------------------------------------------------
# Synthetic look-alike


# espeak voice variant, base pitch (0-100), rate (wpm), intonation range (0-100) per speaker
_VOICES = {
    "03": ("m1", 40, 165, 55), "08": ("f1", 55, 175, 60), "09": ("f2", 50, 185, 50),
    "10": ("m2", 45, 160, 45), "11": ("m3", 50, 175, 60), "12": ("m4", 38, 170, 50),
    "13": ("f3", 45, 165, 55), "14": ("f4", 58, 180, 65), "15": ("m5", 52, 185, 55),
    "16": ("f5", 48, 170, 50),
}
# Speaker order when fewer than 10 are needed: alternate sexes.
_SPEAKER_ORDER = ["03", "08", "10", "09", "11", "13", "12", "14", "15", "16"]
_SR = 16000
_MAX_SIZE = 5000  # version letters a..z per speaker, text and emotion suffice up to here


def _counts(size: int) -> dict[str, int]:
    """Utterances per emotion: EmoDB's proportions scaled to ``size`` (largest remainder), >= 1 each."""
    exact = {e: size * c / EMODB_TOTAL for e, c in EMODB_COUNTS.items()}
    per_emo = {e: max(1, int(x)) for e, x in exact.items()}
    for e in sorted(exact, key=lambda e: exact[e] - int(exact[e]), reverse=True):
        if sum(per_emo.values()) >= size:
            break
        per_emo[e] += 1
    while sum(per_emo.values()) > size:  # only when the >= 1 floor overshot
        per_emo[max(per_emo, key=per_emo.get)] -= 1
    return per_emo


def _plan(size: int, seed: int) -> list[str]:
    """Utterance names: emotions in EmoDB's proportions, spread evenly over speakers, texts and versions."""
    rng = np.random.default_rng([seed, 0])
    n_spk = min(10, max(4, size // 14))
    speakers = sorted(_SPEAKER_ORDER[:n_spk])
    names = []
    seen: Counter = Counter()
    slot = 0
    for emo, count in _counts(size).items():
        upcoming: dict[str, list[str]] = {}
        for _ in range(count):
            spk = speakers[slot % n_spk]
            slot += 1
            queue = upcoming.setdefault(spk, [])
            if not queue:  # each speaker goes through the ten texts in a fresh random order
                queue.extend(str(t) for t in rng.permutation(list(TEXTS)))
            key = f"{spk}{queue.pop(0)}{emo}"
            names.append(key + "abcdefghijklmnopqrstuvwxyz"[seen[key]])
            seen[key] += 1
    return sorted(names)


def _utt_seed(seed: int, name: str) -> list[int]:
    """Random stream of one utterance: depends only on the corpus seed and the utterance name."""
    return [seed, 1] + [ord(c) for c in name]


def _speaker_style(seed: int, spk: str) -> dict:
    """How strongly and how variably a speaker acts (actors differ)."""
    rng = np.random.default_rng([seed, 2, int(spk)])
    return {"strength": rng.uniform(0.45, 1.0), "spread": rng.uniform(0.2, 0.35)}


def synthesize_utterance(name: str, seed: int = 0, max_duration: float | None = None) -> np.ndarray:
    """The audio (float32, 16 kHz) of one synthetic EmoDB utterance, e.g. ``03a01Wa``."""
    from emotk.corpora.tts import resample

    spk, text, emo = name[:2], name[2:5], name[5]
    variant, pitch, rate, prange = _VOICES[spk]
    style = _speaker_style(seed, spk)
    act = ACTING[EMOTIONS[emo]]
    rng = np.random.default_rng(_utt_seed(seed, name))
    s = float(np.clip(style["strength"] * rng.lognormal(0.0, style["spread"]), 0.15, 1.6))
    tempo = act.tempo ** s * rng.lognormal(0.0, 0.07)
    wav, sr = speak(TEXTS[text], "de", variant, rate, pitch, prange, tempo, s * act.pause, rng, max_duration)
    wav = resample(act_out(wav, sr, act, s, rng), sr, _SR)
    return with_noise_floor(at_level(wav, s * act.gain_db + rng.normal(0.0, 2.0)), rng)


def _write_utterance(args) -> None:
    import soundfile as sf

    name, seed, max_duration, wav_dir = args
    sf.write(str(Path(wav_dir) / f"{name}.wav"), synthesize_utterance(name, seed, max_duration), _SR,
             subtype="PCM_16")


def make_synthetic(out_dir: str | Path, *, seed: int = 0, size: int | None = None,
                   duration: float | None = None, nj: int = 2) -> Path:
    """Write a synthetic EmoDB in the real layout: German espeak-ng speech, emotion acted by prosody rules.

    ``size`` utterances (default 535, EmoDB's count and emotion proportions; 7 to 5000);
    ``duration`` cuts each utterance after that many seconds (for quick tests).
    Each utterance depends only on ``seed`` and its name, so the same seed gives byte-identical files.
    Speakers act with different strengths and every utterance varies at random, so the emotions
    overlap acoustically as in real acted speech.
    """
    from emotk.fileio import atomic_dir

    size = EMODB_TOTAL if size is None else int(size)
    if not len(EMOTIONS) <= size <= _MAX_SIZE:
        raise EmotkError(f"synthetic EmoDB: size must be {len(EMOTIONS)} (one per emotion) to {_MAX_SIZE}, got {size}")
    check_synthetic_options("EmoDB", seed, duration)
    names = _plan(size, seed)
    out_dir = Path(out_dir)
    note = (f"{SYNTHETIC_MARK}: {size} utterances synthesized with espeak-ng and PSOLA prosody rules "
            f"(seed {seed}, duration {duration}); NOT the Berlin Database of Emotional Speech.\n")
    if is_complete(out_dir / "erklaerung.txt", note, (out_dir / "wav" / f"{n}.wav" for n in names)):
        return out_dir  # same parameters, all files there: a re-run of the recipe stage skips it
    with atomic_dir(out_dir) as tmp:
        for sub in ("wav", "lablaut", "labsilb", "silb"):
            (tmp / sub).mkdir()
        (tmp / "erklaerung.txt").write_text(note, encoding="utf-8")
        (tmp / "erkennung.txt").write_text(note, encoding="utf-8")
        run_jobs(_write_utterance, [(n, seed, duration, str(tmp / "wav")) for n in names], nj)
    return out_dir
