"""Kaldi-compatible log-mel filterbank and MFCC features.

Configs are plain YAML files in ``conf/features/`` (see ``load_feature_config``). The option
names are those of lhotse's ``FbankConfig`` / ``MfccConfig``, and the arithmetic is Kaldi's
``compute-fbank-feats`` / ``compute-mfcc-feats``: same framing, DC removal, pre-emphasis, window,
mel banks, log floor, DCT and lifter, checked against kaldi-native-fbank in the tests. lhotse
users get this extractor as ``emotk.features.lhotse_extractor.EmotkFbank``.

Plain numpy and scipy.fft, no torch. Against the torch.fft path it replaced (commit e98889e,
measured side by side: BENCHMARKS.md "Feature extraction (fbank)", ``--ref e98889e``) the compute
alone is slower (torch's MKL FFT is about twice as fast as scipy's pocketfft), but an extraction
process skips ``import torch`` (a second) and peaks at a quarter of the memory, so it is faster
end to end for a job of up to about two hours of audio, and parallel jobs fit many more to a machine.
The work per frame is a handful of whole-block array operations (one FFT, one matmul with the mel
matrix). Samples are scaled to the 16-bit integer range before analysis, as Kaldi does with wav
files, so the features equal Kaldi's.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from emotk.errors import EmotkError

# Option -> default. ``None`` marks a required key.
_COMMON = {
    "type": None,
    "sample_rate": None,
    "frame_length": 0.025,  # seconds
    "frame_shift": 0.01,  # seconds
    "round_to_power_of_two": True,
    "snip_edges": True,
    "dither": 0.0,
    "remove_dc_offset": True,
    "preemph_coeff": 0.97,
    "window_type": "povey",
    "num_filters": 23,
    "low_freq": 20.0,
    "high_freq": 0.0,  # <= 0: offset from Nyquist, as in Kaldi
    "use_energy": False,
    "raw_energy": True,
    "energy_floor": 0.0,
}
_OPTIONS = {
    "fbank": dict(_COMMON),
    "mfcc": dict(_COMMON, num_ceps=13, cepstral_lifter=22.0),
}
_WINDOWS = ("povey", "hamming", "hanning", "rectangular", "blackman")
_FLOAT_EPS = float(np.finfo(np.float32).eps)  # Kaldi's log floor for mel energies
_INT16_SCALE = 32768.0
# Frames per block: small enough that a block's intermediate arrays stay in the CPU cache.
_BLOCK_FRAMES = 512


def normalize_config(config: dict, source: str = "feature config") -> dict:
    """Check keys and types, fill defaults; errors name the key and the source file."""
    if not isinstance(config, dict):
        raise EmotkError(f"{source}: expected a mapping of options, got {type(config).__name__}")
    kind = config.get("type")
    if kind not in _OPTIONS:
        raise EmotkError(f"{source}: 'type' must be one of {sorted(_OPTIONS)}, got {kind!r}")
    options = _OPTIONS[kind]
    unknown = sorted(set(config) - set(options))
    if unknown:
        raise EmotkError(f"{source}: unknown key {unknown[0]!r} for type {kind} (known: {', '.join(sorted(options))})")
    out = {}
    for key, default in options.items():
        if key not in config:
            if default is None:
                raise EmotkError(f"{source}: missing required key {key!r}")
            out[key] = default
            continue
        value = config[key]
        want = type(default) if default is not None else (str if key == "type" else int)
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise EmotkError(f"{source}: key {key!r} must be {want.__name__}, got {value!r}")
        out[key] = value
    _check_values(out, source)
    return out


def _check_values(c: dict, source: str) -> None:
    def bad(key, why):
        raise EmotkError(f"{source}: key {key!r} {why}, got {c[key]!r}")

    if c["sample_rate"] <= 0:
        bad("sample_rate", "must be > 0")
    for key in ("frame_length", "frame_shift"):
        if c[key] <= 0:
            bad(key, "must be > 0 seconds")
    if c["dither"] != 0.0:
        bad("dither", "must be 0 (emotk features are deterministic)")
    if c["window_type"] not in _WINDOWS:
        bad("window_type", f"must be one of {', '.join(_WINDOWS)}")
    if not 0.0 <= c["preemph_coeff"] <= 1.0:
        bad("preemph_coeff", "must be in [0, 1]")
    if c["num_filters"] < 3:
        bad("num_filters", "must be >= 3")
    nyquist = c["sample_rate"] / 2
    high = c["high_freq"] if c["high_freq"] > 0 else nyquist + c["high_freq"]
    if not (0 <= c["low_freq"] < high <= nyquist):
        bad("low_freq", f"and high_freq ({c['high_freq']}) must satisfy 0 <= low < high <= Nyquist ({nyquist})")
    if c["type"] == "mfcc" and not 1 <= c["num_ceps"] <= c["num_filters"]:
        bad("num_ceps", f"must be between 1 and num_filters ({c['num_filters']})")


def load_feature_config(path: str | Path) -> dict:
    """Read a feature config YAML file and return the checked, defaults-filled dict."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmotkError(f"{path}: feature config not found") from None
    except yaml.YAMLError as e:
        raise EmotkError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    return normalize_config(raw if raw is not None else {}, str(path))


def _num_samples(seconds: float, sr: int) -> int:
    x = seconds * sr
    return int(round(x)) if abs(x - round(x)) < 1e-6 else int(x)


def _window(kind: str, n: int) -> np.ndarray:
    a = 2 * math.pi / (n - 1)
    i = np.arange(n, dtype=np.float64)
    if kind == "povey":
        return (0.5 - 0.5 * np.cos(a * i)) ** 0.85
    if kind == "hamming":
        return 0.54 - 0.46 * np.cos(a * i)
    if kind == "hanning":
        return 0.5 - 0.5 * np.cos(a * i)
    if kind == "blackman":
        return 0.42 - 0.5 * np.cos(a * i) + 0.08 * np.cos(2 * a * i)
    return np.ones(n)


def _mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_banks(num_bins: int, fft_size: int, sr: float, low_freq: float, high_freq: float) -> np.ndarray:
    """Kaldi's triangular mel filters as a ``[fft_size // 2 + 1, num_bins]`` matrix (Nyquist row zero)."""
    nyquist = 0.5 * sr
    high = high_freq if high_freq > 0 else nyquist + high_freq
    lo, hi = _mel(low_freq), _mel(high)
    delta = (hi - lo) / (num_bins + 1)
    left = lo + delta * np.arange(num_bins)[None, :]
    center, right = left + delta, left + 2 * delta
    mel = _mel(sr / fft_size * np.arange(fft_size // 2))[:, None]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    w = np.where((mel > left) & (mel < right), np.where(mel <= center, up, down), 0.0)
    return np.vstack([w, np.zeros((1, num_bins))])


def _dct_lifted(num_ceps: int, num_bins: int, lifter: float) -> np.ndarray:
    """Kaldi's DCT (orthonormal DCT-II rows) times the cepstral lifter, as a ``[num_bins, num_ceps]`` matrix."""
    k = np.arange(num_ceps)[:, None]
    n = np.arange(num_bins)[None, :]
    dct = np.sqrt(2.0 / num_bins) * np.cos(math.pi / num_bins * (n + 0.5) * k)
    dct[0] = np.sqrt(1.0 / num_bins)
    if lifter != 0:
        dct *= (1.0 + 0.5 * lifter * np.sin(math.pi * np.arange(num_ceps) / lifter))[:, None]
    return dct.T


class FeatureComputer:
    """Computes one config's features for many waveforms (all at the config's sample rate).

    Each utterance is cut into blocks of at most ``_BLOCK_FRAMES`` frames counted from its own first
    frame, so an utterance's features do not depend on which other utterances share the call (BLAS
    sums a matrix product's rows differently for blocks of other sizes).
    """

    def __init__(self, config: dict):
        from scipy.fft import rfft  # imported here: `emotk --help` and config checks need no FFT

        self._rfft = rfft
        c = self.config = normalize_config(config)
        sr = c["sample_rate"]
        self.length = _num_samples(c["frame_length"], sr)
        self.shift = _num_samples(c["frame_shift"], sr)
        if self.length < 2 or self.shift < 1:
            raise EmotkError(f"feature config: frames of {self.length} samples / shift {self.shift} at {sr} Hz are too short")
        self.fft = 1 << (self.length - 1).bit_length() if c["round_to_power_of_two"] else self.length
        self.window = _window(c["window_type"], self.length).astype(np.float32)
        self.mel = mel_banks(c["num_filters"], self.fft, sr, c["low_freq"], c["high_freq"]).astype(np.float32)
        self.dct = (_dct_lifted(c["num_ceps"], c["num_filters"], c["cepstral_lifter"]).astype(np.float32)
                    if c["type"] == "mfcc" else None)
        self.dim = c["num_ceps"] if c["type"] == "mfcc" else c["num_filters"] + int(c["use_energy"])

    @property
    def frame_shift(self) -> float:
        return self.shift / self.config["sample_rate"]

    def num_frames(self, num_samples: int) -> int:
        if self.config["snip_edges"]:
            return 0 if num_samples < self.length else 1 + (num_samples - self.length) // self.shift
        return (num_samples + self.shift // 2) // self.shift

    def _frame_source(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """The samples the frames are cut from, and the number of frames.

        Without snip_edges, Kaldi reflects the signal at both ends (sample -1 is sample 0).
        """
        n = self.num_frames(len(x))
        if self.config["snip_edges"] or n == 0:
            return x, n
        left = self.length // 2 - self.shift // 2
        right = max(0, (n - 1) * self.shift + self.length - left - len(x))
        return np.pad(x, (left, right), mode="symmetric"), n

    def compute(self, wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Features ``[T_i, dim]`` float32 of 1-D waveforms in [-1, 1] at the config's rate."""
        with _one_blas_thread():
            return [self._utterance(np.asarray(x, dtype=np.float32)) for x in wavs]

    def _utterance(self, x: np.ndarray) -> np.ndarray:
        src, n = self._frame_source(x)
        out = np.empty((n, self.dim), np.float32)
        if n == 0:
            return out
        # Every window position as a strided view; frames are every shift-th row of it.
        frames = np.lib.stride_tricks.sliding_window_view(src, self.length)[:: self.shift][:n]
        for b in range(0, n, _BLOCK_FRAMES):
            block = frames[b: b + _BLOCK_FRAMES] * np.float32(_INT16_SCALE)  # a copy, scaled as Kaldi reads wav files
            out[b: b + len(block)] = self._block(block)
        return out

    def _block(self, x: np.ndarray) -> np.ndarray:
        """Features of a block of frames ``[n, length]`` (modified in place)."""
        c = self.config
        if c["remove_dc_offset"]:
            x -= x.mean(1, keepdims=True)
        energy = None
        if c["use_energy"] and c["raw_energy"]:
            energy = np.einsum("ij,ij->i", x, x)
        a = c["preemph_coeff"]
        if a != 0.0:
            x[:, 1:] -= a * x[:, :-1]
            x[:, 0] *= 1.0 - a
        x *= self.window
        if c["use_energy"] and not c["raw_energy"]:
            energy = np.einsum("ij,ij->i", x, x)
        spec = self._rfft(x, n=self.fft, axis=1, overwrite_x=True)  # zero-padded to fft samples, as Kaldi
        power = np.square(spec.real)
        power += np.square(spec.imag)
        feats = power @ self.mel
        np.log(np.maximum(feats, _FLOAT_EPS, out=feats), out=feats)
        if self.dct is not None:
            feats = feats @ self.dct
        if energy is None:
            return feats
        log_e = np.log(np.maximum(energy, _FLOAT_EPS))
        if c["energy_floor"] > 0:
            np.maximum(log_e, math.log(c["energy_floor"]), out=log_e)
        if self.dct is None:  # Kaldi puts the energy before the mel bins
            return np.concatenate([log_e[:, None], feats], 1)
        feats[:, 0] = log_e  # and in place of c0 in MFCC
        return feats


@functools.lru_cache(maxsize=1)
def _blas_threads():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_blas_thread():
    """Run the mel matmuls on one BLAS thread: they are small, and on a busy machine BLAS's other threads
    spin for their share (six times the CPU time measured on 2 loaded cores). Parallel work is --nj."""
    return _blas_threads().limit(limits=1, user_api="blas")


@functools.lru_cache(maxsize=8)
def _computer(items: tuple) -> FeatureComputer:
    return FeatureComputer(dict(items))


def computer_for(config: dict) -> FeatureComputer:
    """A cached ``FeatureComputer`` for a config."""
    c = normalize_config(config)
    return _computer(tuple(sorted(c.items())))


def to_mono(wav: np.ndarray, source: str = "audio") -> np.ndarray:
    """Downmix ``[samples]`` or ``[samples, channels]`` (soundfile's layout) to float32 mono."""
    wav = np.asarray(wav)
    if wav.ndim == 2:
        wav = wav[:, 0] if wav.shape[1] == 1 else wav.mean(axis=1)
    elif wav.ndim != 1:
        raise EmotkError(f"{source}: expected [samples] or [samples, channels] audio, got shape {wav.shape}")
    return wav.astype(np.float32, copy=False)


def resample(wav: np.ndarray, sr: int, target: int) -> np.ndarray:
    """Polyphase resampling (scipy) of mono audio from ``sr`` to ``target`` Hz."""
    if sr == target:
        return wav
    from scipy.signal import resample_poly

    g = math.gcd(int(sr), int(target))
    return resample_poly(wav, target // g, sr // g).astype(np.float32)


def prepare_audio(wav: np.ndarray, sr: int, config: dict, source: str = "audio") -> np.ndarray:
    """Mono float32 at the config's rate; rejects empty audio and NaN/inf samples."""
    wav = to_mono(wav, source)
    if wav.size == 0:
        raise EmotkError(f"{source}: empty audio (0 samples)")
    if not np.isfinite(wav.sum(dtype=np.float64)):  # one pass; a NaN or inf anywhere makes the sum non-finite
        raise EmotkError(f"{source}: audio has NaN or infinite samples")
    return resample(wav, sr, config["sample_rate"])


def compute_features(wav: np.ndarray, sr: int, config: dict) -> np.ndarray:
    """Features ``[T, D]`` float32 of one waveform (``[samples]`` or ``[samples, channels]``, in [-1, 1]).

    Downmixes to mono and resamples to the config's ``sample_rate`` first.
    """
    comp = computer_for(config)
    x = prepare_audio(wav, sr, comp.config)
    if comp.num_frames(len(x)) == 0:
        raise EmotkError(f"audio of {len(x)} samples is shorter than one frame ({comp.length} samples)")
    return comp.compute([x])[0]


def compute_many(wavs: Iterable[tuple[str, np.ndarray]], config: dict) -> list[tuple[str, np.ndarray]]:
    """Features of ``(utt, mono waveform at the config's rate)`` pairs, in one batched call."""
    comp = computer_for(config)
    items = list(wavs)
    feats = comp.compute([w for _, w in items])
    out = []
    for (utt, w), m in zip(items, feats):
        if len(m) == 0:
            raise EmotkError(f"utterance {utt!r}: {len(w)} samples is shorter than one frame ({comp.length} samples)")
        if not np.isfinite(m.sum(dtype=np.float64)):
            raise EmotkError(f"utterance {utt!r}: features have NaN or infinite values")
        out.append((utt, m))
    return out
