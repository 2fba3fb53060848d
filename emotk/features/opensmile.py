"""openSMILE feature sets of a data dir (functionals as Kaldi vectors, LLDs as Kaldi matrices).

The feature sets are those the ``opensmile`` package ships (``SETS``, with the official size of
their functionals); extraction runs the package's own ``Smile`` on each utterance. Audio is read
as ``extract-fbank`` reads it (wav.scp, segments, downmix, resampling to ``sample_rate``) and
handed to openSMILE as 16-bit samples, as ``Smile.process_file`` does with a wav file: a 16-bit
file at the configured rate gives the package's own numbers.

Layout, for data dir ``<data>`` named ``<dname>``, output name ``<name>`` (default: the set's name
lower-cased), table ``<t>`` = ``<name>`` (functionals) or ``<name>_lld`` (LLDs), job ``J`` of ``N``:

    <feats-dir>/raw_<t>_<dname>.J.ark, .J.scp     the job's vectors or matrices (default feats-dir: <data>/data)
    <feats-dir>/raw_<t>_<dname>.J.yaml            the job's config, written last: the job is done
    <data>/<t>.scp                                 merged once every job is done
    <data>/<t>.frame_shift                         LLDs: seconds between frames
    <data>/conf/<t>.yaml                           set, level, rate, package version, audio digest; written last

The config records a digest of the audio (wav.scp, segments, each file's size and mtime), so a
re-run with the same set, level and audio skips, and any change redoes. Jobs, merge and atomic
writes work as in ``emotk.features.pipeline``; (re)writing a job removes the merged outputs and
the stale ``<t>_cmvn.scp``.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from emotk.data.datadir import DataDir
from emotk.errors import EmotkError
from emotk.features.pipeline import (Progress, TableExtraction, check_job_options, config_yaml, load_utterance,
                                     run_extraction)
from emotk.fileio import write_text

# Feature set -> number of functionals (the sets' papers; the package's feature names agree).
SETS = {
    "eGeMAPSv02": 88,
    "GeMAPSv01b": 62,
    "ComParE_2016": 6373,
    "emobase": 988,
    "IS09": 384,
    "IS10": 1582,
    "IS11": 4368,
    "IS12": 6125,
    "IS13": 6373,
}
# emotk level -> opensmile.FeatureLevel member.
LEVELS = {"functionals": "Functionals", "lld": "LowLevelDescriptors"}
# Largest sample value that survives the package's float -> int16 cast (it wraps beyond full scale).
_INT16_MAX = 32767 / 32768


def resolve_set(name: str) -> str:
    """The package's spelling of a feature set name (case-insensitive); unknown names list the known ones."""
    for known in SETS:
        if known.lower() == name.lower():
            return known
    raise EmotkError(f"unknown openSMILE feature set {name!r} (known: {', '.join(SETS)})")


def opensmile_config(feature_set: str, level: str = "functionals", sample_rate: int = 16000) -> dict:
    """The checked config of one extraction (without the audio digest)."""
    from importlib.metadata import version

    if level not in LEVELS:
        raise EmotkError(f"unknown openSMILE level {level!r} (known: {', '.join(LEVELS)})")
    if sample_rate <= 0:
        raise EmotkError(f"--sample-rate must be > 0, got {sample_rate}")
    return {"type": "opensmile", "feature_set": resolve_set(feature_set), "level": level,
            "sample_rate": int(sample_rate), "opensmile_version": version("opensmile")}


class OpenSmileExtractor:
    """One feature set and level of the ``opensmile`` package, on mono audio at ``sample_rate``."""

    def __init__(self, feature_set: str, level: str = "functionals", sample_rate: int = 16000):
        import opensmile

        self.feature_set, self.level, self.sample_rate = resolve_set(feature_set), level, sample_rate
        if level not in LEVELS:
            raise EmotkError(f"unknown openSMILE level {level!r} (known: {', '.join(LEVELS)})")
        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet[self.feature_set],
                                     feature_level=opensmile.FeatureLevel[LEVELS[level]])
        self.dim = len(self.smile.feature_names)
        if level == "functionals" and self.dim != SETS[self.feature_set]:
            raise EmotkError(f"openSMILE {self.feature_set} functionals: the package has {self.dim} features, "
                             f"the official size is {SETS[self.feature_set]}")

    def _run(self, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame start times (seconds) and the ``[frames, dim]`` output of the package."""
        x = np.clip(np.asarray(wav, dtype=np.float32), -1.0, _INT16_MAX)
        with warnings.catch_warnings():  # "Segment too short, filling with NaN": reported by compute()
            warnings.simplefilter("ignore")
            starts, _, y = self.smile.process(x, self.sample_rate)
        return np.asarray(starts.total_seconds()), np.asarray(y, dtype=np.float32)

    @functools.cached_property
    def frame_shift(self) -> float:
        """Seconds between LLD frames, as the package's frame times show them on half a second of noise."""
        probe = 0.1 * np.random.default_rng(0).standard_normal(self.sample_rate // 2)
        starts, _ = self._run(probe)
        return round(float(np.median(np.diff(starts))), 6)

    def compute(self, wav: np.ndarray, utt: str = "audio") -> np.ndarray:
        """Functionals ``[dim]`` or LLDs ``[frames, dim]`` (float32) of one utterance; checks size and values."""
        _, y = self._run(wav)
        what = f"utterance {utt!r}: openSMILE {self.feature_set} {self.level}"
        if y.ndim != 2 or y.shape[1] != self.dim or (self.level == "functionals" and len(y) != 1):
            want = f"1 x {self.dim}" if self.level == "functionals" else f"T x {self.dim}"
            raise EmotkError(f"{what} have shape {y.shape}, expected {want}")
        if not np.isfinite(y.sum(dtype=np.float64)):
            raise EmotkError(f"{what} have NaN or infinite values "
                             f"({len(wav) / self.sample_rate:.3f} s of audio: too short for this set?)")
        return y[0] if self.level == "functionals" else y


@functools.lru_cache(maxsize=4)
def extractor_for(feature_set: str, level: str, sample_rate: int) -> OpenSmileExtractor:
    return OpenSmileExtractor(feature_set, level, sample_rate)


def audio_digest(d: DataDir) -> str:
    """sha256 of wav.scp, segments and each audio file's resolved path, size and mtime."""
    h = hashlib.sha256()
    for name in ("wav.scp", "segments"):
        h.update(name.encode() + b"\0" + ((d.path / name).read_bytes() if d.has(name) else b"") + b"\0")
    for rec in d.table("wav.scp"):
        p = d.wav_path(rec)
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def table_name(config: dict, name: str | None = None) -> str:
    """The data-dir table of an extraction: ``<name>`` (functionals) or ``<name>_lld``."""
    name = name or config["feature_set"].lower()
    if not name or "/" in name or name.startswith("."):
        raise EmotkError(f"--name must be a plain file name stem, got {name!r}")
    return name if config["level"] == "functionals" else f"{name}_lld"


class OpenSmileExtraction(TableExtraction):
    """One data dir's extraction of one openSMILE set and level (see the module docstring)."""

    def __init__(self, data_dir: str | Path, config: dict, name: str | None = None, nj: int = 1,
                 feats_dir: str | Path | None = None):
        self._open(data_dir)
        self.config = dict(opensmile_config(config["feature_set"], config["level"], config["sample_rate"]),
                           audio=audio_digest(self.d))
        # Sorted before dumping: importing opensmile (through oyaml) makes yaml.safe_dump ignore sort_keys.
        self.yaml = config_yaml(dict(sorted(self.config.items())))
        self.name = name
        self.table = table_name(self.config, name)
        self.label = f" {self.table}"
        self._set_jobs(nj, feats_dir, self.table)
        self.is_lld = self.config["level"] == "lld"

    @property
    def extractor(self) -> OpenSmileExtractor:
        c = self.config
        return extractor_for(c["feature_set"], c["level"], c["sample_rate"])

    def merged(self) -> list[Path]:
        """The data-dir files of this table, the config last."""
        names = [f"{self.table}.scp"] + ([f"{self.table}.frame_shift"] if self.is_lld else [])
        return [self.d.path / n for n in names] + [self.d.path / "conf" / f"{self.table}.yaml"]

    @property
    def cmvn(self) -> Path:
        return self.d.path / f"{self.table}_cmvn.scp"

    def factory(self) -> Callable[[], TableExtraction]:
        return functools.partial(OpenSmileExtraction, str(self.d.path), self.config, self.name, self.nj,
                                 str(self.feats_dir))

    def _features(self, utts: list[str], progress: Progress | None) -> Iterator[tuple[str, np.ndarray]]:
        ex = self.extractor
        for utt in utts:
            yield utt, ex.compute(load_utterance(self.d, utt, self.config["sample_rate"]), utt)
            if progress is not None:
                progress.update(1)

    def _write_job(self, job: int, items: Iterator[tuple[str, np.ndarray]]) -> None:
        from emotk.data.ark import write_ark_scp, write_vector_ark_scp

        write = write_ark_scp if self.is_lld else write_vector_ark_scp
        write(self.job_file(job, "ark"), self.job_file(job, "scp"), items)

    def _write_merged(self, tables: dict[str, dict]) -> None:
        if self.is_lld:
            write_text(self.merged()[1], f"{self.extractor.frame_shift:g}\n")


def extract_opensmile_data_dir(data_dir: str | Path, feature_set: str, level: str = "functionals",
                               name: str | None = None, nj: int = 1, job: int | None = None,
                               feats_dir: str | Path | None = None, merge_only: bool = False,
                               sample_rate: int = 16000, log: Callable[[str], None] = print) -> str:
    """Extract one openSMILE set/level of a data dir (see the module docstring and
    ``emotk.features.pipeline.run_extraction``); returns a one-line summary."""
    check_job_options(nj, job, merge_only)
    config = opensmile_config(feature_set, level, sample_rate)
    ex = OpenSmileExtraction(data_dir, config, name, nj, feats_dir)
    what = f"{config['feature_set']} {level}"
    return run_extraction(ex, job, merge_only, f"{ex.d.path} ({what}, {len(ex.d.utts)} utterances)",
                          f"extract {what}", log)
