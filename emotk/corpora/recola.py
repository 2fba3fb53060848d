"""RECOLA as distributed for AVEC 2016: data preparation and a synthetic look-alike.

Layout read by :func:`prepare_recola` (and written by :func:`make_synthetic`)::

    recordings_audio/{train,dev,test}_N.wav
    ratings_gold_standard/{arousal,valence}/{train,dev}_N.arff   (test labels are withheld)

Each partition becomes a data dir ``DATA_DIR/<partition>`` with one speaker per recording
(speaker = utterance = recording id, e.g. ``train_1``), ``wav.scp``, ``utt2dur`` and, where the
partition has gold standards, ``labels.scp`` (a T x 2 matrix per recording), ``label_names``
(``arousal valence``) and ``label_frame_shift`` (0.04).  The label matrices are stored in
``DATA_DIR/labels/<partition>.ark``.

Gold-standard ARFF files are parsed as ARFF (:mod:`emotk.corpora.arff`), not by line offsets,
and checked: attributes exactly ``Instance_name`` (string), ``frameTime`` (numeric),
``GoldStandard`` (numeric); every instance name equal to the file's recording id; frameTime
starting at 0 and increasing in steps of 0.04 s.  A gap in frameTime (missing rows) is an error
naming the file, line and time; so are NaN and missing (``?``) values.  No interpolation: the
challenge files are complete, and a gap means a damaged copy.

Alignment rule.  Label frame ``t`` covers ``[0.04 t, 0.04 (t+1))`` s.  Features are computed at
a 10 ms shift and stacked by 4 (``features.stack: 4``), so stacked frame ``t`` starts at
``0.04 t`` too (Kaldi framing, 25 ms windows with snip_edges, gives ``1 + (N - 400) // 160``
frames for N samples at 16 kHz, stacked to ``ceil(frames / 4)``, the last group completed by
repeating the last frame: 29998 -> 7500 for 300 s).  A recording of ``d`` seconds has
``floor(d / 0.04)`` label frames' worth of audio; the AVEC files carry one row more (frameTime 0
to 300.00 for 300 s of audio, 7501 rows).  When the
label rows and the audio disagree by at most :data:`MAX_FRAME_MISMATCH` frames, prepare keeps
both as they are and the trainer, scorer and ensembler truncate to the shorter; a larger
disagreement in either direction is an error at prepare time naming the recording (labels much
shorter than the audio mean lost annotations, much longer mean the wrong audio).  Within a
partition with gold standards, a recording without both ARFF files is an error, and so is an
ARFF file without a recording; a partition without any (the AVEC test set) is prepared without
labels, for inference only.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from emotk.data.predictions import MAX_FRAME_MISMATCH
from emotk.errors import EmotkError, where
from emotk.fileio import atomic_dir, write_text

PARTITIONS = ("train", "dev", "test")
LABEL_NAMES = ("arousal", "valence")
LABEL_FRAME_SHIFT = 0.04
GOLD_ATTRIBUTES = (("Instance_name", "string"), ("frameTime", "numeric"), ("GoldStandard", "numeric"))
_REC_RE = re.compile(r"^(train|dev|test)_(\d+)$")
_TIME_TOL = 1e-3  # seconds; frameTime values are printed with 6 decimals


def read_gold_standard(path: str | Path, recording: str) -> np.ndarray:
    """The ``GoldStandard`` column of one AVEC 2016 ARFF file as float32 ``[T]``, checked (see module doc)."""
    from emotk.corpora.arff import read_arff

    path = Path(path)
    arff = read_arff(path)
    got = tuple((a.name, a.type) for a in arff.attributes)
    if got != GOLD_ATTRIBUTES:
        want = ", ".join(f"{n} ({t})" for n, t in GOLD_ATTRIBUTES)
        have = ", ".join(f"{n} ({t})" for n, t in got)
        raise EmotkError(f"{path}: attributes must be {want}; found {have}")
    if not arff.rows:
        raise EmotkError(f"{path}: no data rows")
    values = np.empty(len(arff.rows), dtype=np.float32)
    prev_time = None
    for i, ((name, time, value), line) in enumerate(zip(arff.rows, arff.line_numbers)):
        loc = where(path, line)
        for attr, v in (("Instance_name", name), ("frameTime", time), ("GoldStandard", value)):
            if v is None:
                raise EmotkError(f"{loc}: missing value (?) for {attr}")
        if name != recording:
            raise EmotkError(f"{loc}: Instance_name {name!r} does not match the file's recording {recording!r}")
        if prev_time is None:
            if abs(time) > _TIME_TOL:
                raise EmotkError(f"{loc}: frameTime must start at 0, got {time:g}")
        else:
            step = time - prev_time
            if step <= _TIME_TOL:
                raise EmotkError(f"{loc}: frameTime {time:g} does not increase (previous {prev_time:g})")
            if abs(step - LABEL_FRAME_SHIFT) > _TIME_TOL:
                missing = round(step / LABEL_FRAME_SHIFT) - 1
                what = f"{missing} missing row(s)" if missing >= 1 and abs(step - (missing + 1) * LABEL_FRAME_SHIFT) <= _TIME_TOL \
                    else f"a step of {step:g} s"
                raise EmotkError(f"{loc}: {what} between frameTime {prev_time:g} and {time:g} "
                                 f"(rows must be {LABEL_FRAME_SHIFT} s apart)")
        if abs(time - i * LABEL_FRAME_SHIFT) > _TIME_TOL:
            raise EmotkError(f"{loc}: frameTime {time:g} is not row {i} x {LABEL_FRAME_SHIFT} s")
        values[i] = value
        prev_time = time
    return values


def audio_frames(duration: float) -> int:
    """40 ms label frames fully covered by ``duration`` seconds of audio."""
    return int(math.floor(duration / LABEL_FRAME_SHIFT + 1e-6))


def _recordings(corpus_dir: Path) -> dict[str, list[str]]:
    audio_dir = corpus_dir / "recordings_audio"
    if not audio_dir.is_dir():
        raise EmotkError(f"{audio_dir}: not found (expected the AVEC 2016 layout: recordings_audio/, "
                         f"ratings_gold_standard/)")
    parts: dict[str, list[str]] = {p: [] for p in PARTITIONS}
    for wav in sorted(audio_dir.glob("*.wav")):
        m = _REC_RE.match(wav.stem)
        if m is None:
            raise EmotkError(f"{wav}: recording names must be train_N, dev_N or test_N")
        parts[m.group(1)].append(wav.stem)
    if not any(parts.values()):
        raise EmotkError(f"{audio_dir}: no .wav recordings")
    return parts


def _read_partition(corpus_dir: Path, part: str, recs: list[str]) -> dict:
    """Check and read one partition: ``{"wav.scp", "utt2dur", "labels" (None if unlabelled), "diffs"}``."""
    import soundfile as sf

    gold_dir = corpus_dir / "ratings_gold_standard"
    wav_scp, utt2dur, labels, diffs = {}, {}, {}, {}
    arffs = {rec: {dim: gold_dir / dim / f"{rec}.arff" for dim in LABEL_NAMES} for rec in recs}
    labelled = any(p.is_file() for files in arffs.values() for p in files.values())
    for rec in recs:
        wav = (corpus_dir / "recordings_audio" / f"{rec}.wav").resolve()
        try:
            info = sf.info(str(wav))
        except RuntimeError as e:
            raise EmotkError(f"{wav}: cannot read audio: {e}") from None
        if info.frames == 0:
            raise EmotkError(f"{wav}: empty audio")
        wav_scp[rec] = str(wav)
        utt2dur[rec] = info.frames / info.samplerate
        if not labelled:
            continue
        missing = [str(p) for p in arffs[rec].values() if not p.is_file()]
        if missing:
            raise EmotkError(f"{rec}: partition {part!r} has gold standards but this recording has none: "
                             f"{', '.join(missing)} not found")
        cols = [read_gold_standard(arffs[rec][dim], rec) for dim in LABEL_NAMES]
        if len(cols[0]) != len(cols[1]):
            raise EmotkError(f"{rec}: {arffs[rec]['arousal']} has {len(cols[0])} rows but "
                             f"{arffs[rec]['valence']} has {len(cols[1])}")
        n_audio = audio_frames(utt2dur[rec])
        diff = len(cols[0]) - n_audio
        if abs(diff) > MAX_FRAME_MISMATCH:
            how = "shorter" if diff < 0 else "longer"
            raise EmotkError(
                f"{rec}: labels much {how} than audio: {len(cols[0])} label frames "
                f"({len(cols[0]) * LABEL_FRAME_SHIFT:.2f} s) for {utt2dur[rec]:.2f} s of audio "
                f"({n_audio} frames of {LABEL_FRAME_SHIFT} s; at most {MAX_FRAME_MISMATCH} frames apart allowed) "
                f"in {arffs[rec]['arousal'].parent.parent}")
        diffs[diff] = diffs.get(diff, 0) + 1
        labels[rec] = np.stack(cols, axis=1)
    return {"wav.scp": wav_scp, "utt2dur": utt2dur, "labels": labels if labelled else None, "diffs": diffs}


def prepare_recola(corpus_dir: str | Path, data_dir: str | Path, log=lambda msg: None) -> dict[str, int]:
    """Write ``data_dir/{train,dev,test}`` from an AVEC 2016 RECOLA copy; returns recordings per partition.

    Every partition is read and checked before any is written, so a bad file leaves the data dirs
    as they were.  Partitions with no recording are skipped.  See the module docstring for the
    checks and the alignment rule.
    """
    from emotk.data.ark import write_ark_scp
    from emotk.data.datadir import read_table, write_data_dir

    corpus_dir, data_dir = Path(corpus_dir), Path(data_dir)
    parts = {p: recs for p, recs in _recordings(corpus_dir).items() if recs}
    known = {rec for recs in parts.values() for rec in recs}
    for dim in LABEL_NAMES:
        for arff in sorted((corpus_dir / "ratings_gold_standard" / dim).glob("*.arff")):
            if arff.stem not in known:
                raise EmotkError(f"{arff}: gold standard of a recording with no audio "
                                 f"({corpus_dir / 'recordings_audio' / arff.stem}.wav not found)")
    read = {part: _read_partition(corpus_dir, part, recs) for part, recs in parts.items()}
    for part, r in read.items():
        recs = parts[part]
        tables = {"wav.scp": r["wav.scp"], "utt2spk": {x: x for x in recs}, "utt2dur": r["utt2dur"]}
        scalars = {}
        if r["labels"] is not None:
            ark, scp = data_dir / "labels" / f"{part}.ark", data_dir / "labels" / f"{part}.scp"
            write_ark_scp(ark, scp, sorted(r["labels"].items()))
            tables["labels.scp"] = read_table(scp)
            scalars = {"label_names": " ".join(LABEL_NAMES), "label_frame_shift": LABEL_FRAME_SHIFT}
        write_data_dir(data_dir / part, tables, scalars)
        log(f"{data_dir / part}: {len(recs)} recordings, {sum(r['utt2dur'].values()):.0f} s"
            + (", frame-level labels" if r["labels"] is not None else ", no labels (inference only)"))
        for diff, n in sorted(r["diffs"].items()):
            if diff:
                log(f"{data_dir / part}: {n} recording(s) with {abs(diff)} label frame(s) {'more' if diff > 0 else 'fewer'} "
                    f"than audio frames; the shorter is used (alignment rule)")
    return {part: len(recs) for part, recs in parts.items()}


# Synthetic look-alike ------------------------------------------------------------------

SYNTH_SAMPLE_RATE = 16000
SYNTH_VOICE = "fr"
_VARIANTS = ("m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "f5", "m6", "m7")

# A winter-survival discussion, as in RECOLA's collaborative task.
_SENTENCES = (
    "Je pense que le briquet est l'objet le plus important pour faire du feu.",
    "Attends, tu ne crois pas que la carte est plus utile pour retrouver la route ?",
    "On devrait rester près de l'avion, les secours vont chercher l'épave.",
    "Le chocolat nous donnera de l'énergie pendant la nuit.",
    "Moi je mettrais les vêtements en premier, il fait moins trente dehors.",
    "Oui, d'accord, mais sans feu on ne tiendra pas longtemps.",
    "La hache peut servir à couper du bois pour le feu.",
    "Je ne suis pas sûr que la boussole serve à grand chose ici.",
    "Le journal peut allumer le feu et isoler du froid.",
    "Tu as raison, on classe le pistolet plutôt en bas de la liste.",
    "Bon, alors on est d'accord sur les trois premiers objets ?",
    "Non, attends, je voudrais revoir la place de la toile.",
    "La toile pourrait nous protéger du vent et de la neige.",
    "Franchement, le whisky ne sert à rien dans le froid.",
    "C'est vrai, l'alcool fait perdre de la chaleur au corps.",
    "La laine d'acier peut faire des étincelles avec la pile.",
    "Je n'y avais pas pensé, c'est une très bonne idée.",
    "Il nous reste encore cinq objets à classer.",
    "On n'a plus beaucoup de temps, il faut se décider.",
    "Je propose de mettre la lampe de poche en sixième position.",
    "Ça me va, et la corde juste après.",
    "Est-ce que tu entends bien ce que je dis ?",
    "Excuse-moi, je t'ai coupé la parole.",
    "Parfait, je crois que notre liste est complète maintenant.",
)


def _smooth_noise(rng: np.random.Generator, n: int, fs: float, cutoff: float) -> np.ndarray:
    """Unit-variance Gaussian noise low-passed at ``cutoff`` Hz (4th-order Butterworth, zero phase)."""
    from scipy.signal import butter, sosfiltfilt

    pad = int(10 * fs / cutoff)
    x = sosfiltfilt(butter(4, cutoff, fs=fs, output="sos"), rng.standard_normal(n + 2 * pad))[pad:pad + n]
    return x / x.std()


def _latents(rng: np.random.Generator, n: int) -> np.ndarray:
    """Latent arousal and valence ``[n, 2]`` at 25 Hz: a recording-level offset plus slow variation.

    Variation low-passed at 0.15 Hz (arousal) and 0.1 Hz (valence), so essentially all of their
    power lies below 1 Hz; values are in standard-deviation units, roughly -2.5..2.5.
    """
    fs = 1 / LABEL_FRAME_SHIFT
    cols = [rng.normal(0, 0.5) + _smooth_noise(rng, n, fs, cutoff) for cutoff in (0.15, 0.1)]
    return np.clip(np.stack(cols, axis=1), -2.5, 2.5)


# dimension, mean, scale of the gold standard (about RECOLA's ranges)
_GOLD_SCALE = (("arousal", 0.05, 0.15), ("valence", 0.1, 0.1))
_MAX_LAG = 4.0  # seconds


def synthetic_trajectories(seed: int, index: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The latent driving the speech and the gold standard of synthetic recording ``index``: ``[n_frames, 2]`` each.

    The gold standard at frame t is the latent at t - lag (lag 2-4 s per dimension: annotators
    react late) plus annotation noise (low-passed at 2 Hz, 0.2 of the latent's s.d.), scaled to
    RECOLA's ranges.  On 300 s recordings 98 % of the label power lies below 1 Hz, and labels
    downsampled by 64 and restored by spline keep a CCC of 0.97 (paper 000: over 95 % and under
    5 % loss on the real labels).  Deterministic for ``(seed, index)``.
    """
    rng = np.random.default_rng([seed, index, 0])
    max_lag = int(_MAX_LAG / LABEL_FRAME_SHIFT)
    latent = _latents(rng, n_frames + max_lag)  # starts max_lag frames before time 0
    gold = np.empty((n_frames, len(_GOLD_SCALE)))
    for d, (_, mean, scale) in enumerate(_GOLD_SCALE):
        lag = int(rng.uniform(2.0, _MAX_LAG) / LABEL_FRAME_SHIFT)
        noise = 0.2 * _smooth_noise(rng, n_frames, 1 / LABEL_FRAME_SHIFT, 2.0)
        gold[:, d] = mean + scale * (latent[max_lag - lag: max_lag - lag + n_frames, d] + noise)
    return latent[max_lag:], gold


def _voice(rng: np.random.Generator, variant: str, duration: float, latent: np.ndarray) -> np.ndarray:
    """French TTS speech of ``duration`` s whose prosody follows ``latent`` (arousal, valence at 25 Hz).

    Per sentence, from the latent at its onset: arousal raises speaking rate, pitch, pitch range
    and loudness and shortens the pauses; valence widens the pitch range and tilts the spectrum
    (positive: brighter, tense; negative: lax and breathy).  Sample by sample, loudness further
    follows arousal (4 dB per s.d.) and the spectral balance follows valence (a cross-fade between
    a brightened and a darkened copy), so both cues vary continuously as the latent does.
    """
    from scipy.signal import lfilter

    from emotk.corpora.tts import modify_prosody, resample, synthesize

    sr = SYNTH_SAMPLE_RATE
    n = int(round(duration * sr))
    out = np.zeros(n, dtype=np.float32)
    base_pitch = rng.uniform(-8, 8)
    t = rng.uniform(0.2, 1.0)
    k = 0
    while t < duration:
        i = min(int(t / LABEL_FRAME_SHIFT), len(latent) - 1)
        a, v = latent[i]
        text = _SENTENCES[int(rng.integers(len(_SENTENCES)))]
        wav, tts_sr = synthesize(
            text, voice=SYNTH_VOICE, variant=variant,
            rate_wpm=int(np.clip(165 + 30 * a, 90, 320)),
            pitch=int(np.clip(50 + base_pitch + 14 * a, 0, 99)),
            pitch_range=int(np.clip(50 + 15 * a + 15 * v, 0, 100)),
            volume=int(np.clip(100 + 30 * a, 30, 190)))
        wav = modify_prosody(wav, tts_sr, tension=float(np.clip(0.3 * v, -0.8, 0.8)),
                             breathiness=float(np.clip(-0.25 * v, 0, 0.6)), seed=k)
        wav = resample(wav, tts_sr, sr)
        start = int(t * sr)
        seg = wav[: max(0, n - start)]
        out[start:start + len(seg)] += seg
        t += len(wav) / sr + (0.3 + 0.7 * math.exp(-0.6 * a)) * rng.uniform(0.5, 1.5)
        k += 1
    frame_t = np.arange(len(latent)) * LABEL_FRAME_SHIFT
    sample_t = np.arange(n) / sr
    bright = lfilter([1.0, -0.9], [1.0], out) / 0.45  # pre-emphasis, about level-matched
    dark = lfilter([0.4], [1.0, -0.6], out)  # one-pole low-pass, unit gain at DC
    w = 1 / (1 + np.exp(-1.5 * np.interp(sample_t, frame_t, latent[:, 1])))
    out = (w * bright + (1 - w) * dark).astype(np.float32)
    gain_db = 4.0 * np.interp(sample_t, frame_t, latent[:, 0])
    out *= (10 ** (gain_db / 20)).astype(np.float32)
    peak = np.abs(out).max()
    if peak > 0.95:
        out *= 0.95 / peak
    return out


def _write_arff(path: Path, dim: str, rec: str, values: np.ndarray) -> None:
    lines = [f"@relation GOLDSTANDARD_{dim.upper()}", "",
             "@attribute Instance_name string", "@attribute frameTime numeric",
             "@attribute GoldStandard numeric", "", "@data"]
    lines += [f"{rec},{i * LABEL_FRAME_SHIFT:.6f},{x:.6f}" for i, x in enumerate(values)]
    write_text(path, "\n".join(lines) + "\n")


def make_synthetic(out_dir: str | Path, seed: int = 0, size: int = 3, duration: float = 60.0,
                   test_labels: bool = False) -> Path:
    """Write a RECOLA look-alike in the AVEC 2016 layout; deterministic for ``seed``.

    ``size`` recordings per partition (train, dev, test; default 3, the real corpus has 9) of
    ``duration`` seconds (default 60; the real ones are 300 s, so ``size=9, duration=300``
    reproduces the real corpus size), one speaker (an espeak-ng French voice variant) each.
    Latent arousal and valence trajectories drive the speech (see :func:`_voice`); the
    gold standard is the latent delayed by an annotation lag of 2 to 4 s plus annotation noise
    (:func:`synthetic_trajectories`), on RECOLA's scale (arousal about 0.05 + 0.15 z, valence
    0.1 + 0.1 z).  On 300 s recordings over 95 % of the label power lies below 1 Hz, as paper 000
    measured on the real labels (less on short recordings, whose mean removal takes the slowest
    part of the variation).  Test gold standards are
    withheld, as in the challenge, unless ``test_labels`` (a labelled test partition, to exercise
    test scoring).  An existing corpus made with the same parameters is kept.
    """
    import soundfile as sf

    out_dir = Path(out_dir)
    if size < 1:
        raise EmotkError(f"synthetic RECOLA needs --size >= 1 (recordings per partition), got {size}")
    if duration < 2:
        raise EmotkError(f"synthetic RECOLA needs --duration >= 2 s, got {duration}")
    params = {"corpus": "recola", "seed": seed, "size": size, "duration": duration}
    if test_labels:  # absent otherwise: corpora made before the option stay valid
        params["test_labels"] = True
    stamp = out_dir / "synthetic.json"
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == params:
        return out_dir
    n_frames = audio_frames(duration) + 1  # rows at 0, 0.04, ..., as the AVEC files
    with atomic_dir(out_dir) as tmp:
        (tmp / "recordings_audio").mkdir()
        k = 0
        for part in PARTITIONS:
            for j in range(1, size + 1):
                rec = f"{part}_{j}"
                latent, gold = synthetic_trajectories(seed, k, n_frames)
                wav = _voice(np.random.default_rng([seed, k, 1]), _VARIANTS[k % len(_VARIANTS)], duration, latent)
                sf.write(tmp / "recordings_audio" / f"{rec}.wav", wav, SYNTH_SAMPLE_RATE, subtype="PCM_16")
                if part != "test" or test_labels:
                    for d, (dim, _, _) in enumerate(_GOLD_SCALE):
                        _write_arff(tmp / "ratings_gold_standard" / dim / f"{rec}.arff", dim, rec, gold[:, d])
                k += 1
        write_text(tmp / "README.txt",
                   "SYNTHETIC look-alike of RECOLA (AVEC 2016 layout), made by emotk make-synthetic-corpus.\n"
                   "French espeak-ng speech whose prosody follows latent arousal/valence trajectories; the gold\n"
                   "standard is the latent delayed by 2-4 s plus annotation noise. Not real data.\n")
        write_text(tmp / "synthetic.json", json.dumps(params) + "\n")
    return out_dir
