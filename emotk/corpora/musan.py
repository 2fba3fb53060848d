"""MUSAN (music, speech and noise, OpenSLR 17): noise data dirs, and a synthetic look-alike.

Layout (shared/reference/corpora.md), all 16 kHz::

    musan/noise/{free-sound,sound-bible}/noise-free-sound-0000.wav ...
    musan/music/{fma,fma-western-art,hd-classical,jamendo,rfm}/music-fma-0000.wav ...
    musan/speech/{librivox,us-gov}/speech-librivox-0000.wav ...
    each folder: ANNOTATIONS, LICENSE

About 930 noise files (~6 h); paper 002 uses only ``noise/`` (music and speech carry emotion).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from emotk.augment.noise import NoiseDir, audio_info, notice, write_noise_dir
from emotk.errors import EmotkError

PARTS = ("music", "speech", "noise")
FOLDERS = {
    "noise": ("free-sound", "sound-bible"),
    "music": ("fma", "fma-western-art", "hd-classical", "jamendo", "rfm"),
    "speech": ("librivox", "us-gov"),
}
SAMPLE_RATE = 16000
SYNTHETIC_MARK = "emotk synthetic look-alike"


# ---------------------------------------------------------------------------------------------
# Data prep


def _root(corpus_dir: Path) -> Path:
    """The folder holding music/ speech/ noise/: the corpus dir itself or its musan/."""
    if not corpus_dir.is_dir():
        raise EmotkError(f"{corpus_dir}: MUSAN corpus directory not found")
    if not any((corpus_dir / p).is_dir() for p in PARTS) and (corpus_dir / "musan").is_dir():
        return corpus_dir / "musan"
    return corpus_dir


def prepare_musan(corpus_dir: str | Path, data_dir: str | Path, parts: Sequence[str] = ("noise",)) -> NoiseDir:
    """Write a noise data dir (kind, wav.scp, utt2dur) of the MUSAN ``parts`` through lhotse's ``prepare_musan``.

    Files at another rate than MUSAN's 16 kHz are kept (they are resampled when mixed) and named in a notice.
    """
    from lhotse.recipes import prepare_musan as lhotse_prepare_musan

    root = _root(Path(corpus_dir))
    parts = tuple(dict.fromkeys(parts))
    for part in parts:
        if part not in PARTS:
            raise EmotkError(f"--parts: unknown MUSAN part {part!r} (known: {', '.join(PARTS)})")
        if not (root / part).is_dir():
            raise EmotkError(f"{root / part}: MUSAN part folder not found (--parts {part})")
        if not any((root / part).rglob("*.wav")):
            raise EmotkError(f"{root / part}: no .wav files in this MUSAN part (empty noise folder?)")
    try:
        manifests = lhotse_prepare_musan(root, parts=parts)
    except Exception as e:  # lhotse reports unreadable audio with its own exception types
        raise EmotkError(f"{root}: lhotse could not read the MUSAN files: {e}") from None
    wavs, durs, owner = {}, {}, {}
    for part in parts:
        for rec in manifests[part]["recordings"]:
            path = rec.sources[0].source
            if rec.id in owner:
                raise EmotkError(f"{path}: recording id {rec.id!r} is also {owner[rec.id]}")
            owner[rec.id] = path
            wavs[rec.id], durs[rec.id] = path, rec.duration
    for path, (sr, _) in audio_info(wavs.values()).items():
        if sr != SAMPLE_RATE:
            notice(f"{path}: {sr} Hz, not MUSAN's {SAMPLE_RATE} Hz; it is resampled when mixed")
    return write_noise_dir(data_dir, wavs, durs)


def summary(nd: NoiseDir) -> list[str]:
    groups = Counter(Path(p).parent.name for p in nd.paths.values())
    hours = sum(nd.durs.values()) / 3600
    return [f"{len(nd)} recordings, {hours:.2f} h",
            "per folder: " + ", ".join(f"{g} {n}" for g, n in sorted(groups.items()))]


def is_synthetic(corpus_dir: str | Path) -> bool:
    readme = _root(Path(corpus_dir)) / "README"
    return readme.is_file() and SYNTHETIC_MARK in readme.read_text(encoding="utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------
# Synthetic look-alike: every noise type paper 002 lists, made from numpy recipes


def _lowpass(x: np.ndarray, cutoff: float, sr: int, order: int = 2) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    return sosfilt(butter(order, cutoff, fs=sr, output="sos"), x)


def _coloured(rng, n: int, sr: int, exponent: float) -> np.ndarray:
    """Noise with power ~ 1/f**exponent (0 white, 1 pink, 2 brown), above 20 Hz."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec *= np.where(f < 20, 0.0, np.maximum(f, 20) ** (-exponent / 2))
    return np.fft.irfft(spec, n)


def _tones(t: np.ndarray, freqs, gate: np.ndarray | float = 1.0) -> np.ndarray:
    return sum(np.sin(2 * np.pi * f * t) for f in freqs) * gate


def _dtmf(rng, n: int, sr: int) -> np.ndarray:
    rows, cols = (697, 770, 852, 941), (1209, 1336, 1477, 1633)
    out = np.zeros(n)
    pos = 0
    while pos < n:
        on, off = int(rng.uniform(0.06, 0.15) * sr), int(rng.uniform(0.05, 0.4) * sr)
        t = np.arange(min(on, n - pos)) / sr
        out[pos:pos + len(t)] = _tones(t, (rng.choice(rows), rng.choice(cols)))
        pos += on + off
    return out


def _dial_tone(rng, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    kind = rng.integers(3)
    if kind == 0:  # North American dial tone
        return _tones(t, (350, 440))
    if kind == 1:  # European busy signal: 425 Hz, 0.5 s on / 0.5 s off
        return _tones(t, (425,), (t % 1.0) < 0.5)
    return _tones(t, (440, 480), (t % 6.0) < 2.0)  # ringback


def _fax(rng, n: int, sr: int) -> np.ndarray:
    """A 2100 Hz answer tone with phase reversals, then V.21-like frequency-shift keying."""
    t = np.arange(n) / sr
    bits = rng.integers(2, size=int(n / sr * 300) + 1)
    freq = np.where(bits[(t * 300).astype(int)] == 1, 1650.0, 1850.0)
    fsk = np.sin(2 * np.pi * np.cumsum(freq) / sr)
    answer = np.sin(2 * np.pi * 2100 * t + np.pi * (t // 0.45 % 2))
    return np.where(t < min(1.5, n / sr / 2), answer, fsk)


def _hum(rng, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    base = rng.choice([50.0, 60.0])
    harmonics = sum(rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3))
                    for k in range(1, 8))
    return harmonics + 0.02 * rng.standard_normal(n)


def _clicks(rng, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    rate = rng.uniform(2, 15)  # clicks per second (clock ticks to typing)
    decay = np.exp(-np.arange(int(0.01 * sr)) / (0.0015 * sr))
    for pos in np.flatnonzero(rng.random(n) < rate / sr):
        m = min(len(decay), n - pos)
        out[pos:pos + m] += rng.uniform(0.3, 1.0) * decay[:m] * rng.standard_normal(m)
    return out + 0.002 * rng.standard_normal(n)


def _rain(rng, n: int, sr: int) -> np.ndarray:
    drops = np.zeros(n)
    idx = np.flatnonzero(rng.random(n) < rng.uniform(200, 2000) / sr)
    drops[idx] = rng.uniform(0.1, 1.0, idx.size) * rng.choice([-1, 1], idx.size)
    from scipy.signal import lfilter

    r = np.exp(-1 / (0.002 * sr))
    drops = lfilter([1.0, -1.0], [1.0, -r], drops)  # short high-passed decays
    return drops + 0.3 * _lowpass(_coloured(rng, n, sr, 1.0), 4000, sr)


def _wind(rng, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    gust = 1.0 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 6.3))
    gust *= 1.0 + 0.5 * _lowpass(rng.standard_normal(n), 1.0, sr, 1) * 30
    return _lowpass(_coloured(rng, n, sr, 1.0), rng.uniform(300, 1200), sr) * np.clip(gust, 0.05, None)


def _voice(rng, n: int, sr: int) -> np.ndarray:
    """A speech-like voice: a glottal pulse train through formant resonators that move every syllable."""
    from scipy.signal import lfilter

    f0 = rng.uniform(90, 240) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * np.arange(n) / sr))
    phase = np.cumsum(f0 / sr)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    syllable = int(rng.uniform(0.12, 0.25) * sr)
    out = np.zeros(n)
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410)]
    for start in range(0, n, syllable):
        seg = pulses[start:start + syllable]
        if rng.random() < 0.25:
            continue  # a pause
        y = seg
        for f in vowels[rng.integers(len(vowels))]:
            r = np.exp(-np.pi * 90 / sr)
            y = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / sr), r * r], y)
        out[start:start + len(y)] = y * np.hanning(len(y))
    return out


def _babble(rng, n: int, sr: int) -> np.ndarray:
    return sum(_voice(rng, n, sr) * rng.uniform(0.5, 1.0) for _ in range(int(rng.integers(3, 8))))


def _car(rng, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    rpm = rng.uniform(700, 1000) / 60 * 2  # firing frequency of a 4-stroke 4-cylinder idle
    engine = sum(np.sin(2 * np.pi * rpm * k * t) / k for k in range(1, 6))
    return engine + 3 * _coloured(rng, n, sr, 2.0) / 20


NOISES = {
    "white": lambda rng, n, sr: rng.standard_normal(n),
    "pink": lambda rng, n, sr: _coloured(rng, n, sr, 1.0),
    "brown": lambda rng, n, sr: _coloured(rng, n, sr, 2.0),
    "dtmf": _dtmf,
    "dialtone": _dial_tone,
    "fax": _fax,
    "hum": _hum,
    "clicks": _clicks,
    "rain": _rain,
    "wind": _wind,
    "babble": _babble,
    "car-idle": _car,
}
_MIN_SIZE, _MAX_SIZE = 2, 2000


def _music(rng, n: int, sr: int) -> np.ndarray:
    """A few notes of a chord progression (only so that the music part is not empty)."""
    t = np.arange(n) / sr
    notes = 220 * 2 ** (rng.integers(0, 12, size=int(n / sr * 2) + 1) / 12)
    f = notes[(t * 2).astype(int)]
    return np.sin(2 * np.pi * np.cumsum(f) / sr) + 0.5 * np.sin(2 * np.pi * np.cumsum(1.5 * f) / sr)


def noise_signal(kind: str, seed: int, index: int, seconds: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """One synthetic recording (float32), fixed by ``(seed, index)``, at an RMS of -35 to -15 dBFS
    over a -75 to -65 dBFS noise floor (gated tones are not digital silence)."""
    rng = np.random.default_rng([seed, index])
    n = int(round(seconds * sr))
    make = _music if kind == "music" else _voice if kind == "speech" else NOISES[kind]
    x = np.asarray(make(rng, n, sr), dtype=np.float64)
    x -= x.mean()
    rms = np.sqrt(np.mean(x ** 2)) + 1e-12
    x *= 10 ** (rng.uniform(-35, -15) / 20) / rms
    x += rng.normal(0.0, 10 ** (rng.uniform(-75, -65) / 20), n)  # a recording's noise floor: never digital silence
    return np.clip(x, -0.99, 0.99).astype(np.float32)


def _plan(size: int, seed: int, duration: float) -> list[tuple[str, str, str, float]]:
    """``(folder, file id, kind, seconds)``: about 9 in 10 noises in free-sound as in MUSAN, types in turn."""
    rng = np.random.default_rng([seed, 0])
    n_bible = max(1, size // 10)
    kinds = list(NOISES)
    out = []
    for i in range(size):
        folder, j = ("sound-bible", i - (size - n_bible)) if i >= size - n_bible else ("free-sound", i)
        kind = kinds[i] if i < len(kinds) else kinds[int(rng.integers(len(kinds)))]  # each type at least once
        out.append((folder, f"noise-{folder}-{j:04d}", kind, round(float(rng.uniform(0.1, 1.0)) * duration, 2)))
    return out


def make_synthetic(out_dir: str | Path, *, seed: int = 0, size: int | None = None,
                   duration: float | None = None) -> Path:
    """Write a synthetic MUSAN in the real layout: ``size`` noise files (default 40) of 12 types
    (coloured noises, DTMF, dial tones, fax, mains hum, clicks, rain, wind, babble, car idle),
    0.1 to 1 times ``duration`` seconds long (default 12 s, so some are shorter than an utterance
    and are looped), plus one file in every music and speech folder. 16 kHz PCM, like MUSAN.

    Each file depends only on the seed and its index: the same options give byte-identical files,
    and an existing corpus made with the same options is reused.
    """
    import soundfile as sf

    from emotk.fileio import atomic_dir

    size = 40 if size is None else int(size)
    duration = 12.0 if duration is None else float(duration)
    if not _MIN_SIZE <= size <= _MAX_SIZE:
        raise EmotkError(f"synthetic MUSAN: size (noise files) must be {_MIN_SIZE} to {_MAX_SIZE}, got {size}")
    if seed < 0:
        raise EmotkError(f"synthetic MUSAN: seed must be >= 0, got {seed}")
    if not duration >= 1.0:
        raise EmotkError(f"synthetic MUSAN: duration must be >= 1 second, got {duration}")
    plan = _plan(size, seed, duration)
    extra = [("music", f, f"music-{f}-0000", "music") for f in FOLDERS["music"]]
    extra += [("speech", f, f"speech-{f}-0000", "speech") for f in FOLDERS["speech"]]
    out_dir = Path(out_dir)
    note = (f"{SYNTHETIC_MARK}: {size} noise files synthesized from numpy recipes (seed {seed}, "
            f"duration {duration}); NOT the MUSAN corpus (https://www.openslr.org/17/).\n")
    files = [out_dir / "musan" / "noise" / folder / f"{fid}.wav" for folder, fid, _, _ in plan]
    files += [out_dir / "musan" / part / folder / f"{fid}.wav" for part, folder, fid, _ in extra]
    readme = out_dir / "musan" / "README"
    if readme.is_file() and readme.read_text(encoding="utf-8") == note and all(f.is_file() for f in files):
        return out_dir
    with atomic_dir(out_dir) as tmp:
        root = tmp / "musan"
        annotations: dict[Path, list[str]] = {}
        for part, folders in FOLDERS.items():
            for folder in folders:
                (root / part / folder).mkdir(parents=True)
                (root / part / folder / "LICENSE").write_text(note, encoding="utf-8")
                annotations[root / part / folder] = []
        for i, (folder, fid, kind, seconds) in enumerate(plan):
            sf.write(str(root / "noise" / folder / f"{fid}.wav"), noise_signal(kind, seed, i + 1, seconds),
                     SAMPLE_RATE, subtype="PCM_16")
            annotations[root / "noise" / folder].append(f"{fid} synthetic:{kind}")
        for j, (part, folder, fid, kind) in enumerate(extra):
            sf.write(str(root / part / folder / f"{fid}.wav"), noise_signal(kind, seed, 10000 + j, 3.0),
                     SAMPLE_RATE, subtype="PCM_16")
            annotations[root / part / folder].append(
                f"{fid} synthetic N synthetic" if part == "music" else f"{fid} synthetic:{kind}")
        for folder, lines in annotations.items():
            (folder / "ANNOTATIONS").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        (root / "README").write_text(note, encoding="utf-8")
    return out_dir
