"""The model's inputs, read lazily from a data dir one utterance at a time.

One source per input of the config (``inputs.<name>``):

- ``feats``: a matrix table (``feats.scp`` or any T x D table such as openSMILE LLDs), normalized
  (speaker / utterance / global / none), then ``stack`` and ``splice`` (the same pipeline in
  training and inference);
- ``wav``: mono samples at ``sample_rate`` through wav.scp (and segments), optionally standardized
  per utterance;
- ``vector``: an utterance-level table (1 x D per utterance: openSMILE functionals), normalized.

A source holds only its index (scp lines), per-speaker statistics and lengths; values are read from
disk when an example is built, so memory is bounded by the batches in flight, not by the corpus.
Every value read is checked: a NaN or infinity names the table and utterance.

``read_mixed(utt, mix)`` is ``read(utt)`` computed from the utterance's audio with noise mixed in
(``train.augment``, ``emotk.augment.online``): wav samples are mixed before their normalization;
feats.scp made by extract-fbank / extract-mfcc is computed again from the mixed audio with the
config its extraction recorded (``conf/feats.yaml``) and the extractor's code, then normalized,
stacked and spliced as the table's rows are. Normalization statistics (per-speaker CMVN, global)
stay those of the clean data. Vectors and other tables cannot be computed again.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from emotk.data.ark import read_entry, read_matrix
from emotk.data.datadir import DataDir
from emotk.errors import EmotkError
from emotk.features.cmvn import apply_cmvn, compute_cmvn_stats, utterance_cmvn


def _finite(x: np.ndarray, table: Path, utt: str) -> np.ndarray:
    if not np.all(np.isfinite(x)):
        raise EmotkError(f"{table}: utterance {utt!r} has NaN or infinite values")
    return x


def read_table_item(d: DataDir, table: str, utt: str) -> np.ndarray:
    """One utterance's matrix (or vector, as a 1 x D matrix) of a Kaldi scp table."""
    scp = d.table(table)
    if utt not in scp:
        raise EmotkError(f"{d.path / table}: utterance {utt!r} not found")
    x = read_matrix(d.resolve(scp[utt]))
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0:
        raise EmotkError(f"{d.path / table}: utterance {utt!r}: expected a non-empty matrix or vector, got {x.shape}")
    return _finite(x.astype(np.float32, copy=False), d.path / table, utt)


class Source:
    """Base of the three input kinds: ``read(utt)`` -> array with time (or the single vector) on axis 0."""

    kind = ""
    rate = math.inf  # units of axis 0 per second (frames or samples); inf for vectors

    def __init__(self, d: DataDir, name: str, spec: dict, global_stats: np.ndarray | None = None):
        self.d, self.name, self.spec = d, name, spec
        self.table_path = d.path / spec["table"]
        if not d.has(spec["table"]):
            raise EmotkError(f"{d.path}: input {name!r} needs {spec['table']}, which is missing "
                             f"(set inputs.{name}.table, or create it)")
        self.global_stats = global_stats
        self._spk_stats: dict[str, np.ndarray] = {}

    @property
    def temporal(self) -> bool:
        return self.kind != "vector"

    def length(self, utt: str) -> int:
        raise NotImplementedError

    def read_raw(self, utt: str) -> np.ndarray:
        raise NotImplementedError

    def read(self, utt: str) -> np.ndarray:
        return self.normalize(utt, self.read_raw(utt))

    def check_mixable(self) -> None:
        """Raise EmotkError unless ``read_mixed`` can compute this input from noisy audio."""
        raise EmotkError(f"{self.table_path}: input {self.name!r} ({self.kind}) cannot be computed again from "
                         "noisy audio (train.augment needs wav inputs or feats.scp made by extract-fbank / extract-mfcc)")

    def read_mixed(self, utt: str, mix: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
        """``read(utt)`` computed from the utterance's audio after ``mix(samples, sample_rate)``."""
        self.check_mixable()
        raise NotImplementedError

    def normalize(self, utt: str, x: np.ndarray) -> np.ndarray:
        norm = self.spec["norm"]
        if norm == "speaker":
            x = apply_cmvn(x, self.speaker_stats(self.d.utt2spk[utt]))
        elif norm == "utterance":
            x = utterance_cmvn(x)
        elif norm == "global":
            if self.global_stats is None:
                raise EmotkError(f"input {self.name!r}: norm 'global' needs the training set's statistics")
            x = apply_cmvn(x, self.global_stats)
        return x

    def speaker_stats(self, spk: str) -> np.ndarray:
        if spk not in self._spk_stats:
            table = self.spec["norm_table"]
            if not self.d.has(table):
                raise EmotkError(f"{self.d.path}: input {self.name!r} has norm 'speaker' but {table} is missing "
                                 f"(run 'emotk compute-cmvn', or set inputs.{self.name}.norm)")
            stats = self.d.table(table)
            if spk not in stats:
                raise EmotkError(f"{self.d.path / table}: no statistics for speaker {spk!r}")
            self._spk_stats[spk] = read_matrix(self.d.resolve(stats[spk]))
        return self._spk_stats[spk]

    def accumulate_stats(self, utts: list[str]) -> np.ndarray:
        """Kaldi CMVN stats over ``utts`` before normalization (the ``global`` scope, from training data)."""
        return compute_cmvn_stats(self.read_raw(u) for u in utts)


class FeatsSource(Source):
    kind = "feats"

    def __init__(self, d: DataDir, name: str, spec: dict, global_stats=None):
        super().__init__(d, name, spec, global_stats)
        self.stack, self.splice = spec["stack"], spec["splice"]
        self.rate = 1.0 / (self.base_frame_shift() * self.stack)
        self._lengths = d.table("utt2num_frames") if spec["table"] == "feats.scp" and d.has("utt2num_frames") else None
        self._audio_config: dict | None = None

    def base_frame_shift(self) -> float:
        """Seconds per row of the table: ``frame_shift`` for feats.scp, ``<stem>.frame_shift`` for others."""
        table = self.spec["table"]
        name = "frame_shift" if table == "feats.scp" else table.removesuffix(".scp") + ".frame_shift"
        if not self.d.has(name):
            raise EmotkError(f"{self.d.path}: input {self.name!r} ({table}) needs its frame shift in {name}")
        try:
            shift = float(self.d.scalar(name))
        except ValueError:
            raise EmotkError(f"{self.d.path / name}: not a number") from None
        if shift <= 0:
            raise EmotkError(f"{self.d.path / name}: frame shift must be positive, got {shift}")
        return shift

    def length(self, utt: str) -> int:
        n = int(self._lengths[utt]) if self._lengths is not None and utt in self._lengths else self.read_raw(utt).shape[0]
        return -(-n // self.stack)

    def read_raw(self, utt: str) -> np.ndarray:
        return read_table_item(self.d, self.spec["table"], utt)

    def read(self, utt: str) -> np.ndarray:
        return self.pipeline(utt, self.read_raw(utt))

    def pipeline(self, utt: str, x: np.ndarray) -> np.ndarray:
        """Normalization, stack and splice of an utterance's rows (from the table, or computed from audio)."""
        from emotk.features.transforms import splice_frames, stack_frames

        x = self.normalize(utt, x)
        if self.stack > 1:
            x = stack_frames(x, self.stack)
        if self.splice[0] or self.splice[1]:
            x = splice_frames(x, self.splice[0], self.splice[1])
        return np.ascontiguousarray(x, dtype=np.float32)

    def dim(self, utt: str) -> int:
        return self.read(utt).shape[1]

    def audio_config(self) -> dict:
        """The feature config feats.scp was extracted with (``conf/feats.yaml``), checked."""
        if self._audio_config is None:
            import yaml

            from emotk.features.extract import normalize_config

            path = self.d.path / "conf" / "feats.yaml"
            if self.spec["table"] != "feats.scp":
                super().check_mixable()
            if not path.is_file():
                raise EmotkError(f"{self.table_path}: input {self.name!r} cannot be computed again from noisy audio: "
                                 "no conf/feats.yaml (extract-fbank / extract-mfcc records its config there)")
            if not self.d.has("wav.scp"):
                raise EmotkError(f"{self.d.path}: input {self.name!r} cannot be computed again from noisy audio: no wav.scp")
            try:
                raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as e:
                raise EmotkError(f"{path}: invalid YAML: {e}") from None
            kind = raw.get("type") if isinstance(raw, dict) else None
            if kind not in ("fbank", "mfcc"):
                raise EmotkError(f"{path}: input {self.name!r} has {kind!r} features; only fbank and mfcc can be "
                                 "computed again from noisy audio")
            self._audio_config = normalize_config(raw, str(path))
        return self._audio_config

    def check_mixable(self) -> None:
        self.audio_config()

    def read_mixed(self, utt: str, mix: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
        from emotk.features.extract import compute_many
        from emotk.features.pipeline import load_utterance

        conf = self.audio_config()
        rate = conf["sample_rate"]
        ((_, x),) = compute_many([(utt, mix(load_utterance(self.d, utt, rate), rate))], conf)
        n = self._lengths.get(utt) if self._lengths is not None else None
        if n is not None and int(n) != x.shape[0]:
            raise EmotkError(f"{self.d.path / 'utt2num_frames'}: utterance {utt!r} has {n} frames, its audio gives "
                             f"{x.shape[0]} with conf/feats.yaml: feats.scp was not made from this data dir's audio")
        return self.pipeline(utt, x)


class VectorSource(Source):
    kind = "vector"

    def length(self, utt: str) -> int:
        return 1

    def __init__(self, d: DataDir, name: str, spec: dict, global_stats=None):
        super().__init__(d, name, spec, global_stats)
        self._dim: int | None = None

    def read_raw(self, utt: str) -> np.ndarray:
        """``[1, D]``; a Kaldi vector (openSMILE functionals) or a one-row matrix."""
        scp = self.d.table(self.spec["table"])
        if utt not in scp:
            raise EmotkError(f"{self.table_path}: utterance {utt!r} not found")
        x = read_entry(self.d.resolve(scp[utt]))
        x = np.asarray(x, dtype=np.float32).reshape(1, -1) if x.ndim == 1 or x.shape[0] == 1 else x
        if x.shape[0] != 1:
            raise EmotkError(f"{self.table_path}: utterance {utt!r}: expected one vector, got a {x.shape[0]} x "
                             f"{x.shape[1]} matrix (use kind: feats for frame-level tables)")
        if self._dim is not None and x.shape[1] != self._dim:
            raise EmotkError(f"{self.table_path}: utterance {utt!r} has a vector of dim {x.shape[1]}, earlier ones "
                             f"have {self._dim}")
        self._dim = x.shape[1]
        return _finite(x, self.table_path, utt)

    def read(self, utt: str) -> np.ndarray:
        return np.ascontiguousarray(super().read(utt), dtype=np.float32)

    def dim(self, utt: str) -> int:
        return self.read_raw(utt).shape[1]


class WavSource(Source):
    """Samples as a ``[T, 1]`` array (time on axis 0 like every temporal input)."""

    kind = "wav"

    def __init__(self, d: DataDir, name: str, spec: dict, global_stats=None):
        super().__init__(d, name, spec, global_stats)
        self.rate = float(spec["sample_rate"])
        self._durs = d.table("utt2dur") if d.has("utt2dur") else None

    def length(self, utt: str) -> int:
        if self._durs is not None and utt in self._durs:
            return max(1, int(round(float(self._durs[utt]) * self.rate)))
        return self.read_raw(utt).shape[0]

    def read_raw(self, utt: str) -> np.ndarray:
        from emotk.features.pipeline import load_utterance

        x = load_utterance(self.d, utt, int(self.rate))
        if x.size == 0:
            raise EmotkError(f"{self.table_path}: utterance {utt!r} has no samples")
        return _finite(np.asarray(x, dtype=np.float32).reshape(-1, 1), self.table_path, utt)

    def check_mixable(self) -> None:
        pass

    def read_mixed(self, utt: str, mix: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
        x = mix(self.read_raw(utt).reshape(-1), int(self.rate))
        return self.normalize(utt, np.asarray(x, dtype=np.float32).reshape(-1, 1))

    def normalize(self, utt: str, x: np.ndarray) -> np.ndarray:
        if self.spec["norm"] == "utterance":
            std = float(x.std())
            return ((x - x.mean()) / (std if std > 1e-8 else 1.0)).astype(np.float32)
        return x

    def dim(self, utt: str) -> int:
        return 1


SOURCES = {"feats": FeatsSource, "vector": VectorSource, "wav": WavSource}


def open_sources(d: DataDir, inputs: dict, global_stats: dict | None = None) -> dict[str, Source]:
    """A source per input of the config; ``global_stats[name]`` for inputs normalized with ``global``."""
    global_stats = global_stats or {}
    return {name: SOURCES[spec["kind"]](d, name, spec, global_stats.get(name)) for name, spec in inputs.items()}


def training_stats(d: DataDir, inputs: dict, utts: list[str]) -> dict[str, np.ndarray]:
    """The ``global`` normalization statistics of each input that asks for them, from ``utts`` of ``d``."""
    out = {}
    for name, spec in inputs.items():
        if spec.get("norm") == "global":
            out[name] = SOURCES[spec["kind"]](d, name, spec).accumulate_stats(utts)
    return out
