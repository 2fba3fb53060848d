"""Noise data dirs: a data dir of their own kind, for noise recordings that have no speaker.

Layout (sorted, UTF-8, one record a line, as every data dir)::

    kind        the word ``noise`` (what tells it from an utterance data dir)
    wav.scp     <noise-id> <path>      absolute or dir-relative path to a wav/flac
    utt2dur     <noise-id> <seconds>

``emotk prepare-musan`` writes one; ``split_noise_dir`` splits one into two disjoint ones (training
noises and test noises), and ``check_disjoint`` proves two noise sets share no file.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from emotk.data.datadir import read_table, write_table
from emotk.errors import EmotkError, where
from emotk.fileio import atomic_dir

KIND = "noise"
# A file noise can be mixed from: the blank id ``-`` marks a clean copy in utt2aug.
_RESERVED_IDS = ("-",)


@dataclass(frozen=True)
class NoiseDir:
    """A validated noise data dir: ids in sorted order, absolute paths, durations in seconds."""

    path: Path
    ids: tuple[str, ...]
    paths: Mapping[str, str]
    durs: Mapping[str, float]

    def __len__(self) -> int:
        return len(self.ids)


def write_noise_dir(path: str | Path, wavs: Mapping[str, str | Path], durs: Mapping[str, float]) -> NoiseDir:
    """Write a noise data dir atomically (paths made absolute) and return it validated."""
    if not wavs:
        raise EmotkError(f"{path}: no noise recordings to write")
    with atomic_dir(path) as tmp:
        (tmp / "kind").write_text(f"{KIND}\n", encoding="utf-8")
        write_table(tmp / "wav.scp", {k: str(Path(v).resolve()) for k, v in wavs.items()})
        write_table(tmp / "utt2dur", {k: float(durs[k]) for k in wavs})
    return validate_noise_dir(path)


def is_noise_dir(path: str | Path) -> bool:
    p = Path(path) / "kind"
    return p.is_file() and p.read_text(encoding="utf-8").strip() == KIND


def validate_noise_dir(path: str | Path, check_files: bool = True) -> NoiseDir:
    """Check a noise data dir; raise EmotkError naming the file (and line) of the first problem."""
    path = Path(path)
    if not path.is_dir():
        raise EmotkError(f"{path}: noise data dir not found")
    if not is_noise_dir(path):
        hint = " (an utterance data dir, not noises)" if (path / "utt2spk").is_file() else ""
        raise EmotkError(f"{path}: not a noise data dir{hint}: no 'kind' file saying '{KIND}' "
                         "(make one with 'emotk prepare-musan')")
    for name in ("wav.scp", "utt2dur"):
        if not (path / name).is_file():
            raise EmotkError(f"{path / name}: file not found (a noise data dir has kind, wav.scp, utt2dur)")
    wav = read_table(path / "wav.scp")
    durs = read_table(path / "utt2dur")
    if not wav:
        raise EmotkError(f"{path / 'wav.scp'}: no noise recordings (empty noise data dir)")
    for n, key in enumerate(wav, start=1):
        if key in _RESERVED_IDS:
            raise EmotkError(f"{where(path / 'wav.scp', n)}: {key!r} is reserved (it marks clean copies in utt2aug)")
    if set(wav) != set(durs):
        odd = sorted(set(wav) ^ set(durs))[0]
        raise EmotkError(f"{path / 'utt2dur'}: noise id {odd!r} is not in both wav.scp and utt2dur")
    paths = {}
    for n, key in enumerate(wav, start=1):
        p = Path(wav[key])
        p = p if p.is_absolute() else (path / p).resolve()
        if check_files and not p.is_file():
            raise EmotkError(f"{where(path / 'wav.scp', n)}: audio file of noise {key!r} not found: {p}")
        paths[key] = str(p)
    return NoiseDir(path, tuple(wav), paths, durs)  # read_table checked that durations are > 0


def noise_digest(nd: NoiseDir) -> str:
    """sha256 (hex) of a noise set's ids, durations and audio bytes: what the mixing reads, wherever it lies."""
    h = hashlib.sha256()
    for key in nd.ids:
        h.update(f"{key} {nd.durs[key]!r}\n".encode())
        with open(nd.paths[key], "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _hash_fraction(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by the seed and the key (independent of the other keys)."""
    h = hashlib.sha256(f"{seed}\t{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_noise_dir(src: str | Path, train_dir: str | Path, test_dir: str | Path, test_fraction: float = 0.2,
                    seed: int = 0) -> tuple[NoiseDir, NoiseDir]:
    """Split a noise dir into disjoint training and test noise dirs (``round(test_fraction * n)`` test noises).

    The test noises are those with the smallest seeded hash of their id, so the split depends only on
    the seed and the ids. Files, not only ids, are kept apart: two ids with the same audio file go to
    the same side. The result is checked with ``check_disjoint``.
    """
    nd = validate_noise_dir(src)
    if not 0.0 < test_fraction < 1.0:
        raise EmotkError(f"--test-fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    files = sorted(set(nd.paths.values()), key=lambda p: _hash_fraction(seed, p))
    n_test = int(round(test_fraction * len(files)))
    if not 1 <= n_test < len(files):
        raise EmotkError(f"{nd.path}: {len(files)} noise files cannot be split with --test-fraction {test_fraction} "
                         "(each side needs at least one)")
    test_files = set(files[:n_test])
    test = {k for k in nd.ids if nd.paths[k] in test_files}
    parts = []
    for out, keep in ((train_dir, lambda k: k not in test), (test_dir, lambda k: k in test)):
        ids = [k for k in nd.ids if keep(k)]
        parts.append(write_noise_dir(out, {k: nd.paths[k] for k in ids}, {k: nd.durs[k] for k in ids}))
    check_disjoint(parts[0], parts[1])
    return parts[0], parts[1]


def _noise_files(source: NoiseDir | str | Path) -> tuple[Path, dict[str, str]]:
    """``id -> absolute path`` of a noise dir, or of the noises an augmented data dir's utt2aug uses."""
    if isinstance(source, NoiseDir):
        return source.path, dict(source.paths)
    path = Path(source)
    if is_noise_dir(path):
        nd = validate_noise_dir(path, check_files=False)
        return nd.path, dict(nd.paths)
    if (path / "utt2aug").is_file():
        from emotk.augment.offline import read_utt2aug

        augs = read_utt2aug(path / "utt2aug").values()
        return path / "utt2aug", {a.noise_id: a.noise_path for a in augs if a is not None}
    raise EmotkError(f"{path}: neither a noise data dir nor an augmented data dir (no kind or utt2aug file)")


def check_disjoint(a: NoiseDir | str | Path, b: NoiseDir | str | Path) -> None:
    """Raise EmotkError if two noise sets share a noise id or an audio file.

    Each side is a noise dir or an augmented data dir (its utt2aug names the noises it was mixed with).
    """
    (pa, fa), (pb, fb) = _noise_files(a), _noise_files(b)
    same_id = sorted(set(fa) & set(fb))
    if same_id:
        raise EmotkError(f"{pb}: noise {same_id[0]!r} is also in {pa} ({len(same_id)} shared noises)")
    same_file = sorted(set(fa.values()) & set(fb.values()))
    if same_file:
        raise EmotkError(f"{pb}: noise file {same_file[0]} is also used by {pa} ({len(same_file)} shared files)")


# Reading --------------------------------------------------------------------------------------

_NOTICED: set[str] = set()


def notice(msg: str) -> None:
    """A one-line notice on stderr (not an error), in the CLI's ``emotk:`` style."""
    print(f"emotk: notice: {msg}", file=sys.stderr, flush=True)


def _notice_resampled(path: str, sr: int, target: int) -> None:
    if path not in _NOTICED:  # once per file and process
        _NOTICED.add(path)
        notice(f"{path}: noise at {sr} Hz, resampled to {target} Hz")


@functools.lru_cache(maxsize=32)
def _resampled(path: str, target: int) -> np.ndarray:
    """A whole noise file, mono, at ``target`` Hz (only files at another rate come here)."""
    import soundfile as sf

    from emotk.features.extract import resample, to_mono

    wav, sr = sf.read(path, dtype="float32", always_2d=True)
    _notice_resampled(path, sr, target)
    return resample(to_mono(wav, path), sr, target)


def read_noise(path: str, offset: float, num_samples: int, sample_rate: int) -> np.ndarray:
    """``num_samples`` samples of a noise file at ``sample_rate``, starting ``offset`` seconds in.

    The noise is read as a loop: past its end it starts again from its beginning, so a noise
    shorter than the utterance repeats, and a longer one is a plain cut when the offset leaves
    room. Multi-channel noise is downmixed; a file at another rate is resampled (with a notice).
    """
    import soundfile as sf

    from emotk.features.extract import to_mono

    try:
        with sf.SoundFile(path) as f:
            sr, total = f.samplerate, f.frames
            if total == 0:
                raise EmotkError(f"{path}: empty noise file (0 samples)")
            if sr == sample_rate:
                start = int(round(offset * sr)) % total
                if start + num_samples <= total:
                    f.seek(start)
                    return to_mono(f.read(num_samples, dtype="float32", always_2d=True), path)
                return _looped(to_mono(f.read(dtype="float32", always_2d=True), path), start, num_samples)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise EmotkError(f"{path}: cannot read noise audio: {e}") from None
    x = _resampled(path, sample_rate)
    if x.size == 0:
        raise EmotkError(f"{path}: empty noise file after resampling")
    return _looped(x, int(round(offset * sample_rate)) % x.size, num_samples)


def _looped(x: np.ndarray, start: int, num_samples: int) -> np.ndarray:
    """``num_samples`` samples of ``x`` read as a loop from ``start`` (< len(x))."""
    return np.resize(np.concatenate([x[start:], x[:start]]), num_samples)


def audio_info(paths: Iterable[str | Path]) -> dict[str, tuple[int, float]]:
    """``path -> (sample rate, seconds)``; unreadable or empty files raise EmotkError naming them."""
    import soundfile as sf

    out = {}
    for p in paths:
        try:
            info = sf.info(str(p))
        except (RuntimeError, sf.LibsndfileError) as e:
            raise EmotkError(f"{p}: cannot read audio: {e}") from None
        if info.frames == 0:
            raise EmotkError(f"{p}: empty audio file (0 samples)")
        out[str(p)] = (info.samplerate, info.frames / info.samplerate)
    return out
