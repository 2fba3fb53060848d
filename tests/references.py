"""Independent reference implementations, shared by tests and benchmarks (a benchmark may import
from tests, a test never from benchmarks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def swr_decode(path: Path) -> np.ndarray:
    """A media file's first audio stream as float32 mono at 16 kHz, by libswresample's own downmix
    ((L+R)/sqrt 2) and resampler, through PyAV."""
    import av

    out = []
    with av.open(str(path)) as c:
        r = av.AudioResampler(format="flt", layout="mono", rate=16000)
        for frame in c.decode(c.streams.audio[0]):
            out += [f.to_ndarray().ravel() for f in r.resample(frame)]
        out += [f.to_ndarray().ravel() for f in r.resample(None)]
    return np.concatenate(out)
