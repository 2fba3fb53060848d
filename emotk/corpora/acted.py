"""Shared by the acted-emotion corpora (EmoDB, IEMOCAP, eNTERFACE'05): the count lines of their prep
summaries, and of their synthetic look-alikes how each emotion is acted and spoken, the option checks,
the reuse of a finished corpus and the parallel writing of its files."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from emotk.errors import EmotkError


def counts(c: Counter, expected: dict | None = None) -> str:
    """``key n`` per key of ``c``, sorted; with ``expected``, ``key n/expected`` for each of its keys."""
    if expected:
        return ", ".join(f"{k} {c.get(k, 0)}/{expected[k]}" for k in sorted(expected))
    return ", ".join(f"{k} {c[k]}" for k in sorted(c)) or "none"


@dataclass(frozen=True)
class Act:
    """How an emotion changes speech relative to neutral, at full acting strength.

    After Murray & Arnott (1993) and Burkhardt & Sendlmeier (2000): F0 level and range, tempo,
    loudness, F0 jitter, breathiness, vocal tension (spectral tilt), pauses between words.
    """

    f0: float = 1.0
    f0_range: float = 1.0
    tempo: float = 1.0
    gain_db: float = 0.0
    jitter: float = 0.0
    breath: float = 0.0
    tension: float = 0.0
    pause: float = 0.0  # extra gap between words, in 10 ms units


# EmoDB's seven emotions; the other look-alikes add their own on this scale.
ACTING = {
    "anger": Act(f0=1.28, f0_range=1.7, tempo=1.15, gain_db=6.0, tension=0.5),
    "boredom": Act(f0=0.92, f0_range=0.55, tempo=0.85, gain_db=-2.0, tension=-0.2, pause=3),
    "disgust": Act(f0=0.87, f0_range=1.25, tempo=0.8, gain_db=-1.0, breath=0.2, tension=0.15, pause=2),
    "fear": Act(f0=1.35, f0_range=1.2, tempo=1.2, gain_db=1.0, jitter=0.04, breath=0.15),
    "happiness": Act(f0=1.18, f0_range=1.6, tempo=1.08, gain_db=3.0, tension=0.15),
    "sadness": Act(f0=0.9, f0_range=0.6, tempo=0.8, gain_db=-5.0, breath=0.35, tension=-0.4, pause=8),
    "neutral": Act(),
}


def speak(text: str, voice: str, variant: str, rate: int, pitch: int, pitch_range: int, tempo: float, pause: float,
          rng: np.random.Generator, max_duration: float | None) -> tuple[np.ndarray, int]:
    """espeak-ng speech of one acted utterance and its rate: ``rate`` (wpm) times ``tempo``, the speaker's
    pitch and range jittered by ``rng``, ``pause`` (10 ms units) plus up to 20 ms between words; cut after
    ``max_duration`` seconds."""
    from emotk.corpora.tts import synthesize

    wav, sr = synthesize(text, voice=voice, variant=variant, rate_wpm=int(round(rate * tempo)),
                         pitch=int(np.clip(pitch + rng.normal(0, 4), 0, 100)),
                         pitch_range=int(np.clip(pitch_range + rng.normal(0, 8), 0, 100)),
                         wordgap=int(round(pause + rng.uniform(0, 2))))
    if max_duration is not None:
        wav = wav[: int(max_duration * sr)]
    return wav, sr


def act_out(wav: np.ndarray, sr: int, act: Act, s: float, rng: np.random.Generator) -> np.ndarray:
    """``act`` at strength ``s`` on neutral speech, each prosody change varied at random."""
    from emotk.corpora.tts import modify_prosody

    return modify_prosody(
        wav, sr, f0_shift=act.f0 ** s * rng.lognormal(0.0, 0.06), f0_range=act.f0_range ** s * rng.lognormal(0.0, 0.2),
        jitter=s * act.jitter + abs(rng.normal(0.0, 0.006)), breathiness=s * act.breath + rng.uniform(0.0, 0.08),
        tension=float(np.clip(s * act.tension + rng.normal(0.0, 0.12), -0.9, 0.9)), seed=int(rng.integers(2**31)))


def at_level(wav: np.ndarray, gain_db: float) -> np.ndarray:
    """Peak 0.3 (about -10 dBFS) shifted by ``gain_db``."""
    return wav / (np.max(np.abs(wav)) + 1e-9) * 0.3 * 10 ** (gain_db / 20)


def with_noise_floor(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Float32 with a recording noise floor at -75 to -60 dBFS, clipped below full scale."""
    wav = wav + rng.normal(0.0, 10 ** (rng.uniform(-75, -60) / 20), wav.size)
    return np.clip(wav, -0.999, 0.999).astype(np.float32)


def check_synthetic_options(corpus: str, seed: int, duration: float | None) -> None:
    if seed < 0:
        raise EmotkError(f"synthetic {corpus}: seed must be >= 0, got {seed}")
    if duration is not None and duration <= 0:
        raise EmotkError(f"synthetic {corpus}: duration must be > 0 seconds, got {duration}")


def is_complete(marker: Path, note: str, files: Iterable[Path]) -> bool:
    """A look-alike made with the same options (``marker`` holds ``note``) with all its files: a re-run reuses it."""
    if not marker.is_file() or marker.read_text(encoding="utf-8") != note:
        return False
    return all(f.is_file() for f in files)


def run_jobs(fn: Callable, jobs: list, nj: int) -> list:
    """``fn`` of each job, in any order; in ``nj`` spawned processes when there are more than 20 jobs."""
    if nj > 1 and len(jobs) > 20:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(nj) as pool:
            return list(pool.imap_unordered(fn, jobs, chunksize=4))
    return [fn(job) for job in jobs]
