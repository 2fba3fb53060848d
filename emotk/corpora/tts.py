"""A small speech synthesizer for the synthetic corpora: espeak-ng (via ``espeakng-loader``) plus
Praat PSOLA (via ``praat-parselmouth``) to act out emotions.

``synthesize`` speaks a sentence with a voice and espeak's own prosody parameters;
``modify_prosody`` then rescales its F0 contour and tempo and changes voice quality, the way
rule-based emotional-speech simulation does (Murray & Arnott 1993, Burkhardt & Sendlmeier 2000).
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

import numpy as np

from emotk.errors import EmotkError

# espeak_AUDIO_OUTPUT / espeak_PARAMETER / flags from speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()
_praat_lock = threading.Lock()
_state: dict = {}


def _engine():
    """Load and initialize libespeak-ng once per process (call with ``_lock`` held)."""
    if _state.get("pid") == os.getpid():
        return _state["lib"], _state["sr"]
    try:
        import espeakng_loader
    except ImportError:
        raise EmotkError("the synthetic corpora need espeak-ng: pip install espeakng-loader") from None
    data_path = espeakng_loader.get_data_path()
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
    if sr <= 0:
        raise EmotkError(f"espeak-ng failed to initialize with data at {data_path}")
    _state.update(pid=os.getpid(), lib=lib, sr=sr, data=Path(data_path))
    return lib, sr


def _voice_exists(data: Path, voice: str, variant: str | None) -> bool:
    for name in (voice, variant or "x"):
        if not name or name.startswith(".") or Path(name).name != name:
            return False
    if variant is not None and not (data / "voices" / "!v" / variant).is_file():
        return False
    return any(p.is_file() for p in (data / "lang").rglob(voice))


def _synth_child(lib, name: str, params, text: bytes, out_fd: int) -> None:
    """Runs in a forked child: synthesize and write ``<int32 status><int16 samples>`` to ``out_fd``."""
    chunks: list[bytes] = []

    def on_audio(wav, n, _events):
        if n > 0:
            chunks.append(ctypes.string_at(wav, 2 * n))
        return 0

    callback = _SYNTH_CALLBACK(on_audio)
    lib.espeak_SetSynthCallback(callback)
    status = lib.espeak_SetVoiceByName(name.encode())
    if status == _EE_OK:
        for param, value in params:
            lib.espeak_SetParameter(param, int(value), 0)
        lib.espeak_ng_SetRandSeed(0)
        status = lib.espeak_Synth(text, len(text), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    payload = np.int32(status).tobytes() + b"".join(chunks)
    view = memoryview(payload)
    while view:
        view = view[os.write(out_fd, view):]


def synthesize(text: str, voice: str = "de", rate_wpm: int = 170, pitch: int = 50, pitch_range: int = 50,
               volume: int = 100, wordgap: int = 0, variant: str | None = None) -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng; return float32 mono samples in [-1, 1] and the sample rate (22050).

    ``voice`` is an espeak language/voice name ("de", "fr"), ``variant`` a voice variant ("m3", "f2").
    ``pitch`` and ``pitch_range`` are espeak's 0-100 scales, ``volume`` 0-200, ``wordgap`` in 10 ms units.

    espeak-ng keeps hidden state between utterances (pitch flutter phase, AGC), so the same call
    would sound slightly different depending on what was spoken before. Each utterance is therefore
    synthesized in a forked child of a freshly initialized engine: output depends only on the arguments.
    """
    name = voice if variant is None else f"{voice}+{variant}"
    params = ((_RATE, rate_wpm), (_PITCH, pitch), (_RANGE, pitch_range), (_VOLUME, volume), (_WORDGAP, wordgap))
    data = text.encode("utf-8") + b"\0"
    with _lock:
        lib, sr = _engine()
        if not _voice_exists(_state["data"], voice, variant):
            raise EmotkError(f"espeak-ng has no voice {name!r} (see {_state['data'] / 'lang'} and "
                             f"{_state['data'] / 'voices' / '!v'})")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never returns
            try:
                os.close(r)
                _synth_child(lib, name, params, data, w)
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            payload = f.read()
        _, wait_status = os.waitpid(pid, 0)
    if len(payload) < 4 or os.waitstatus_to_exitcode(wait_status) != 0:
        raise EmotkError(f"espeak-ng crashed synthesizing {text!r} with voice {name!r}")
    status = int(np.frombuffer(payload[:4], np.int32)[0])
    if status != _EE_OK:
        raise EmotkError(f"espeak-ng failed on {text!r} with voice {name!r} (error {status})")
    pcm = np.frombuffer(payload[4:], np.int16)
    if pcm.size == 0:
        raise EmotkError(f"espeak-ng produced no audio for {text!r} with voice {name!r}")
    return pcm.astype(np.float32) / 32768.0, sr


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly); float32 out."""
    from math import gcd

    from scipy.signal import resample_poly

    if sr_in == sr_out:
        return np.asarray(wav, dtype=np.float32)
    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(np.asarray(wav, dtype=np.float64), sr_out // g, sr_in // g).astype(np.float32)


def _tilt(wav: np.ndarray, amount: float) -> np.ndarray:
    """First-order spectral tilt: ``amount`` > 0 boosts highs (tense, pressed voice), < 0 damps them (lax)."""
    from scipy.signal import lfilter

    if amount == 0:
        return wav
    a = float(np.clip(amount, -0.95, 0.95))
    if a > 0:  # x + a * (x - x[n-1]): unity gain at 0 Hz, 1 + 2a at Nyquist
        y = lfilter([1.0 + a, -a], [1.0], wav)
    else:  # one-pole low-pass with unity gain at 0 Hz
        y = lfilter([1.0 + a], [1.0, a], wav)
    return y.astype(np.float32)


def _breath_noise(wav: np.ndarray, sr: int, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Aspiration noise that follows the speech envelope, high-passed above ~1.5 kHz."""
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import butter, sosfilt

    env = np.sqrt(np.maximum(uniform_filter1d(wav.astype(np.float64) ** 2, max(1, int(0.02 * sr))), 0.0))
    noise = rng.standard_normal(wav.size)
    noise = sosfilt(butter(2, 1500, "highpass", fs=sr, output="sos"), noise)
    noise *= env / (np.sqrt(np.mean(noise ** 2)) + 1e-9)
    return (amount * noise).astype(np.float32)


def modify_prosody(wav: np.ndarray, sr: int, f0_shift: float = 1.0, f0_range: float = 1.0, tempo: float = 1.0,
                   jitter: float = 0.0, breathiness: float = 0.0, tension: float = 0.0, seed: int = 0) -> np.ndarray:
    """Act out an emotion on neutral speech; returns float32 of the same rate.

    PSOLA resynthesis (Praat Manipulation): F0 is scaled around its mean by ``f0_range`` in the
    log domain (2 = twice the excursions in semitones), then multiplied by ``f0_shift``; ``jitter``
    is the relative s.d. of a random F0 perturbation per 10 ms pitch point (a shaky voice); duration
    is divided by ``tempo``. Voice quality: ``breathiness`` (0..1) mixes in envelope-following
    aspiration noise and softens the highs; ``tension`` (-1..1) tilts the spectrum (+ pressed, - lax).
    Deterministic for a ``seed``.
    """
    import parselmouth
    from parselmouth.praat import call

    f0_shift, f0_range, tempo, jitter = float(f0_shift), float(f0_range), float(tempo), float(jitter)
    rng = np.random.default_rng(seed)
    phase = float(rng.uniform(0, 1000))
    # Jitter noise: a stateless hash of the point's time (uniform, unit variance); Praat's own
    # randomGauss keeps hidden state across calls, which would break reproducibility.
    h = f"(sin (x * 12989.8 + {phase!r}) * 43758.5453)"
    noise = f"sqrt (3) * (2 * ({h} - floor ({h})) - 1)"
    with _praat_lock:  # parselmouth is not documented as thread-safe
        snd = parselmouth.Sound(np.asarray(wav, dtype=np.float64), sampling_frequency=sr)
        manip = call(snd, "To Manipulation", 0.01, 60, 600)
        tier = call(manip, "Extract pitch tier")
        if call(tier, "Get number of points") > 0:
            centre = call(tier, "Get mean (points)", 0, 0)
            call(tier, "Formula", f"max (50, min (800, {centre!r} * exp ({f0_range!r} * ln (self / {centre!r}))"
                                  f" * {f0_shift!r} * exp ({jitter!r} * {noise})))")
            call([manip, tier], "Replace pitch tier")
        if tempo != 1.0:
            dur = call("Create DurationTier", "dur", 0.0, snd.duration)
            call(dur, "Add point", 0.0, 1.0 / tempo)
            call([manip, dur], "Replace duration tier")
        out = call(manip, "Get resynthesis (overlap-add)").values[0].astype(np.float32)
    out = _tilt(out, tension - 0.6 * breathiness)
    if breathiness > 0:
        out = out + _breath_noise(out, sr, 0.5 * breathiness, rng)
    return out.astype(np.float32)


def write_avi(path: str | Path, audio: np.ndarray, sample_rate: int, fps: int = 25,
              size: tuple[int, int] = (16, 16)) -> None:
    """Write ``audio`` (float in [-1, 1], shape ``(n,)`` or ``(n, channels)``) into an AVI file as
    16-bit PCM, beside a tiny blank video stream covering the same time, as a camera recording has.

    PCM keeps the samples exact, so a decoder gets back what was written. Muxed with PyAV (its
    bundled ffmpeg); not atomic: write to a temporary name and rename.
    """
    import av

    a = np.asarray(audio, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    pcm = np.clip(np.round(a * 32767.0), -32768, 32767).astype(np.int16)
    n, channels = pcm.shape
    layout = {1: "mono", 2: "stereo"}[channels]
    with av.open(str(path), "w", format="avi") as out:
        video = out.add_stream("rawvideo", rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        sound = out.add_stream("pcm_s16le", rate=sample_rate, layout=layout)
        blank = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 96, np.uint8), format="rgb24")
        blank = blank.reformat(format="yuv420p")
        for i in range(max(1, int(np.ceil(n / sample_rate * fps)))):
            blank.pts = i
            out.mux(video.encode(blank))
        block = 1024
        for start in range(0, n, block):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[start:start + block]).reshape(1, -1),
                                               format="s16", layout=layout)
            frame.sample_rate, frame.pts = sample_rate, start
            out.mux(sound.encode(frame))
        out.mux(video.encode(None))
        out.mux(sound.encode(None))
