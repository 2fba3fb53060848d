"""Shared by the acted-emotion corpora (EmoDB, IEMOCAP, eNTERFACE'05): the count lines of their prep
summaries, and of their synthetic look-alikes how each emotion is acted, the option checks, the reuse
of a finished corpus and the parallel writing of its files."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

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
