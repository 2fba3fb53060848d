"""Feature extraction for a whole data dir: jobs, merge, re-run skipping.

Layout (Kaldi's ``make_fbank.sh`` naming), for data dir ``<data>`` named ``<name>`` and feature
type ``<type>`` (fbank or mfcc), job ``J`` of ``N``:

    <feats-dir>/raw_<type>_<name>.J.ark             the matrices (default feats-dir: <data>/data)
    <feats-dir>/raw_<type>_<name>.J.scp             the job's index
    <feats-dir>/raw_<type>_<name>.J.utt2num_frames
    <feats-dir>/raw_<type>_<name>.J.yaml            the job's config, written last: the job is done
    <data>/feats.scp, utt2num_frames, frame_shift    merged once every job is done
    <data>/conf/feats.yaml                           the config, written last: extraction is done

A job that (re)writes an archive first removes ``<data>/feats.scp`` (and ``cmvn.scp``, whose
stats would be stale), so a crash or a changed config never leaves an index pointing into a
rewritten archive. Utterances are split into N contiguous shares in sorted order.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from emotk.data.datadir import DataDir, read_table, validate_data_dir, write_table
from emotk.errors import EmotkError, where
from emotk.fileio import write_text

# Utterances are read until this many samples are pending, then computed in one call.
_BATCH_SAMPLES = 60 * 16000
# A segment may end this far past the end of its recording (Kaldi extract-segments' max-overshoot).
_MAX_OVERSHOOT = 0.5
CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf" / "features"  # package data (also ./conf in a checkout)


def resolve_feature_config(name_or_path: str | Path) -> Path:
    """A config file: an existing path, else ``conf/features/<name>[.yaml]`` shipped with emotk."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (CONFIG_DIR / p, CONFIG_DIR / f"{p}.yaml", CONFIG_DIR / p.name):
        if cand.is_file():
            return cand
    known = ", ".join(sorted(f.stem for f in CONFIG_DIR.glob("*.yaml")))
    raise EmotkError(f"{name_or_path}: feature config not found (a path, or one of: {known})")


def config_yaml(config: dict) -> str:
    import yaml

    # Sorted here, not by sort_keys: importing opensmile (through oyaml) turns PyYAML's key sorting off.
    return yaml.safe_dump(_sorted(config), sort_keys=False, default_flow_style=False)


def _sorted(value):
    return {k: _sorted(value[k]) for k in sorted(value)} if isinstance(value, dict) else value


def load_utterance(d: DataDir, utt: str, sample_rate: int) -> np.ndarray:
    """Mono float32 audio of one utterance at ``sample_rate`` (segments applied)."""
    import soundfile as sf

    from emotk.features.extract import prepare_audio

    segments = d.table("segments") if d.has("segments") else None
    rec, start, end = segments[utt] if segments is not None else (utt, None, None)
    path = d.wav_path(rec)
    try:
        with sf.SoundFile(str(path)) as f:
            sr, total = f.samplerate, f.frames
            first, last = 0, total
            if start is not None:
                first, last = int(round(start * sr)), int(round(end * sr))
                if last > total + _MAX_OVERSHOOT * sr:
                    raise EmotkError(f"{path}: segment of utterance {utt!r} ends at {end:g} s, "
                                     f"after the end of recording {rec!r} ({total / sr:g} s)")
                last = min(last, total)
                if last <= first:
                    raise EmotkError(f"{path}: segment of utterance {utt!r} ({start:g}-{end:g} s) "
                                     f"is empty within recording {rec!r} ({total / sr:g} s)")
                f.seek(first)
            if f.subtype == "PCM_16":  # numpy converts int16 twice as fast as libsndfile, to the same values
                wav = f.read(last - first, dtype="int16", always_2d=True).astype(np.float32)
                wav *= 1.0 / 32768
            else:
                wav = f.read(last - first, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:  # LibsndfileError is a RuntimeError in newer soundfile
        raise EmotkError(f"{path}: cannot read audio of utterance {utt!r}: {e}") from None
    wav = prepare_audio(wav, sr, {"sample_rate": sample_rate}, f"{path} (utterance {utt!r})")
    if d.has("utt2aug"):  # an augmented data dir: mix the recorded noise in (emotk.augment.offline)
        from emotk.augment.offline import mix_utterance

        wav = mix_utterance(d, utt, wav, sample_rate)
    return wav


def job_utts(utts: list[str], nj: int, job: int) -> list[str]:
    """The ``job``-th (1-based) of ``nj`` contiguous, near-equal shares of ``utts``."""
    bounds = np.linspace(0, len(utts), nj + 1).round().astype(int)
    return utts[bounds[job - 1]: bounds[job]]


class Progress:
    """A tqdm bar on a terminal, otherwise one log line per ~10% step."""

    def __init__(self, total: int, desc: str, log: Callable[[str], None]):
        self.total, self.desc, self.log, self.done, self.next_pct = total, desc, log, 0, 10
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="utt", leave=False)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        pct = 100 * self.done // max(self.total, 1)
        if pct >= self.next_pct:
            self.log(f"{self.desc}: {self.done}/{self.total} utterances ({pct}%)")
            self.next_pct = (pct // 10 + 1) * 10

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TableExtraction:
    """Jobs, merge and re-run checks of one data dir's extraction into one Kaldi table.

    A subclass opens the data dir (``_open``), sets ``config``, ``yaml`` (the record that makes a
    result current) and the jobs (``_set_jobs``), and says which data-dir files it merges into
    (``merged``: the scp first, the config record last), which CMVN stats go stale with it
    (``cmvn``), which job tables it writes besides ark, scp and yaml (``job_tables``), how a job's
    items are computed and written (``_features``, ``_write_job``), what merging writes besides the
    scp and the record (``_write_merged``), and how a worker process makes it again (``factory``).
    """

    job_tables: tuple[str, ...] = ()
    label = ""  # the table's name in the merge error, after "cannot merge"

    def _open(self, data_dir: str | Path) -> None:
        # Archives are not checked: a stale scp pointing at deleted archives is about to be replaced.
        self.d = validate_data_dir(data_dir, require=["wav.scp"], check_files=False)
        for n, rec in enumerate(self.d.table("wav.scp"), start=1):
            if not self.d.wav_path(rec).is_file():
                raise EmotkError(f"{where(self.d.path / 'wav.scp', n)}: audio file of {rec!r} not found: "
                                 f"{self.d.wav_path(rec)}")

    def _set_jobs(self, nj: int, feats_dir: str | Path | None, table: str) -> None:
        if nj < 1:
            raise EmotkError(f"--nj must be >= 1, got {nj}")
        if nj > len(self.d.utts):
            raise EmotkError(f"--nj {nj} is more than the {len(self.d.utts)} utterances of {self.d.path}")
        self.nj = nj
        self.feats_dir = Path(feats_dir) if feats_dir is not None else self.d.path / "data"
        self.prefix = f"raw_{table}_{self.d.path.resolve().name}"

    def job_file(self, job: int, suffix: str) -> Path:
        return self.feats_dir / f"{self.prefix}.{job}.{suffix}"

    def job_utts(self, job: int) -> list[str]:
        return job_utts(self.d.utts, self.nj, job)

    # Subclass parts -------------------------------------------------------------
    def merged(self) -> list[Path]:
        raise NotImplementedError

    @property
    def cmvn(self) -> Path:
        raise NotImplementedError

    def _features(self, utts: list[str], progress: Progress | None) -> Iterator[tuple[str, np.ndarray]]:
        raise NotImplementedError

    def _write_job(self, job: int, items: Iterator[tuple[str, np.ndarray]]) -> None:
        raise NotImplementedError

    def _write_merged(self, tables: dict[str, dict]) -> None:
        """Merged outputs besides the scp and the config record (``tables``: each job table, merged)."""

    def factory(self) -> Callable[[], TableExtraction]:
        raise NotImplementedError

    # Status ---------------------------------------------------------------------
    def is_done(self) -> bool:
        """Merged outputs exist, were made with this config, and cover every utterance."""
        files = self.merged()
        if not all(f.is_file() for f in files) or files[-1].read_text(encoding="utf-8") != self.yaml:
            return False
        scp = read_table(files[0], parse=str)
        return list(scp) == self.d.utts and all(
            Path(a).is_file() for a in {self.d.resolve(v).rpartition(":")[0] for v in scp.values()})

    def job_done(self, job: int) -> bool:
        stamp, scp = self.job_file(job, "yaml"), self.job_file(job, "scp")
        if not all(self.job_file(job, s).is_file() for s in ("yaml", "scp", "ark", *self.job_tables)):
            return False
        return (stamp.read_text(encoding="utf-8") == self.yaml
                and list(read_table(scp, parse=str)) == self.job_utts(job))

    def all_jobs_done(self) -> bool:
        return all(self.job_done(j) for j in range(1, self.nj + 1))

    # Work -----------------------------------------------------------------------
    def invalidate(self) -> None:
        """Remove the merged outputs and the stats: an archive they point into is about to be rewritten."""
        for f in [*self.merged(), self.cmvn]:
            f.unlink(missing_ok=True)

    def run_job(self, job: int, progress: Progress | None = None) -> bool:
        """Extract job ``job``'s share; False if it was already done with this config."""
        if self.job_done(job):
            return False
        self.invalidate()
        self.job_file(job, "yaml").unlink(missing_ok=True)
        self._write_job(job, self._features(self.job_utts(job), progress))
        write_text(self.job_file(job, "yaml"), self.yaml)
        return True

    def merge(self) -> None:
        """Write the merged outputs from the finished jobs, the config record last."""
        missing = [j for j in range(1, self.nj + 1) if not self.job_done(j)]
        if missing:
            raise EmotkError(f"{self.d.path}: cannot merge{self.label}: job {missing[0]} of {self.nj} is not done with "
                             f"this config ({len(missing)} such jobs); run it with --nj {self.nj} --job {missing[0]}")
        tables: dict[str, dict] = {s: {} for s in ("scp", *self.job_tables)}
        for j in range(1, self.nj + 1):
            for suffix, table in tables.items():
                table.update(read_table(self.job_file(j, suffix), parse=str))
        files = self.merged()
        write_table(files[0], tables["scp"])
        self._write_merged(tables)
        write_text(files[-1], self.yaml)


def check_job_options(nj: int, job: int | None, merge_only: bool) -> None:
    if job is not None and not 1 <= job <= nj:
        raise EmotkError(f"--job {job} is outside 1..{nj} (--nj {nj})")
    if job is not None and merge_only:
        raise EmotkError("--merge and --job exclude each other")


def run_extraction(ex: TableExtraction, job: int | None, merge_only: bool, name: str, desc: str,
                   log: Callable[[str], None], up_to_date: str | None = None) -> str:
    """Run ``ex``'s jobs and merge them; a one-line summary starting with ``name``.

    ``job=None`` runs every job (in ``nj`` worker processes when ``nj > 1``) and merges;
    ``job=J`` runs one job and merges if it finds every other job done; ``merge_only`` merges
    the ``nj`` finished jobs and fails naming the first one that is not done.
    """
    nj, out = ex.nj, ex.merged()[0].name
    if ex.is_done():
        return f"{name}: {up_to_date or f'{out} is up to date'}, nothing to do"
    if merge_only:
        ex.merge()
        return f"{name}: merged {nj} jobs into {out}"
    if job is not None:
        progress = Progress(len(ex.job_utts(job)), f"job {job}/{nj}", log)
        try:
            ran = ex.run_job(job, progress)
        finally:
            progress.close()
        if not ex.all_jobs_done():
            said = "done" if ran else "was already done"
            return f"{name}: job {job}/{nj} {said}; waiting for the other jobs to merge"
        ex.merge()
        return f"{name}: job {job}/{nj} done, merged all {nj} jobs into {out}"
    progress = Progress(len(ex.d.utts), desc, log)
    try:
        if nj == 1:
            ex.run_job(1, progress)
        else:
            _run_parallel(ex, progress)
    finally:
        progress.close()
    ex.merge()
    return f"{name}: wrote {out} ({nj} job{'s' if nj > 1 else ''})"


def _worker(make: Callable[[], TableExtraction], job: int) -> int:
    ex = make()
    ex.run_job(job)
    return len(ex.job_utts(job))


def _run_parallel(ex: TableExtraction, progress: Progress) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    todo = [j for j in range(1, ex.nj + 1) if not ex.job_done(j)]
    for j in range(1, ex.nj + 1):
        if j not in todo:
            progress.update(len(ex.job_utts(j)))
    if not todo:
        return
    ex.invalidate()
    workers = min(len(todo), os.cpu_count() or 1)
    # spawn, not fork: the caller may have started thread pools (torch's, BLAS's), and forking those can deadlock.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_worker, ex.factory(), j) for j in todo]
        try:
            for fut in as_completed(futures):
                progress.update(fut.result())
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


class Extraction(TableExtraction):
    """One data dir's feature extraction with one config."""

    job_tables = ("utt2num_frames",)

    def __init__(self, data_dir: str | Path, config: dict, nj: int = 1, feats_dir: str | Path | None = None):
        from emotk.features.extract import computer_for

        self._open(data_dir)
        self.comp = computer_for(config)
        self.config = self.comp.config
        self.yaml = config_yaml(self.config)
        if self.d.has("utt2aug"):  # other noise draws make other features: finished jobs are checked against them too
            digest = hashlib.sha256((self.d.path / "utt2aug").read_bytes()).hexdigest()
            self.yaml += f"# utt2aug sha256 {digest}\n"
        self._set_jobs(nj, feats_dir, self.config["type"])

    def merged(self) -> list[Path]:
        return [self.d.path / n for n in ("feats.scp", "utt2num_frames", "frame_shift", "conf/feats.yaml")]

    @property
    def cmvn(self) -> Path:
        return self.d.path / "cmvn.scp"

    def factory(self) -> Callable[[], TableExtraction]:
        return functools.partial(Extraction, str(self.d.path), self.config, self.nj, str(self.feats_dir))

    def _features(self, utts: list[str], progress: Progress | None) -> Iterator[tuple[str, np.ndarray]]:
        from emotk.features.extract import compute_many

        batch, pending = [], 0
        for i, utt in enumerate(utts):
            wav = load_utterance(self.d, utt, self.config["sample_rate"])
            batch.append((utt, wav))
            pending += len(wav)
            if pending >= _BATCH_SAMPLES or i == len(utts) - 1:
                yield from compute_many(batch, self.config)
                if progress is not None:
                    progress.update(len(batch))
                batch, pending = [], 0

    def _write_job(self, job: int, items: Iterator[tuple[str, np.ndarray]]) -> None:
        from emotk.data.ark import write_ark_scp

        rows = write_ark_scp(self.job_file(job, "ark"), self.job_file(job, "scp"), items)
        write_table(self.job_file(job, "utt2num_frames"), rows)

    def _write_merged(self, tables: dict[str, dict]) -> None:
        write_table(self.d.path / "utt2num_frames", tables["utt2num_frames"])
        write_text(self.d.path / "frame_shift", f"{self.comp.frame_shift:g}\n")


def extract_data_dir(data_dir: str | Path, config: dict, nj: int = 1, job: int | None = None,
                     feats_dir: str | Path | None = None, merge_only: bool = False,
                     log: Callable[[str], None] = print) -> str:
    """Extract features of a data dir (see the module docstring and ``run_extraction``); returns a one-line summary."""
    check_job_options(nj, job, merge_only)
    ex = Extraction(data_dir, config, nj, feats_dir)
    return run_extraction(ex, job, merge_only, f"{ex.d.path} ({ex.config['type']}, {len(ex.d.utts)} utterances)",
                          f"extract {ex.config['type']}", log, up_to_date="features are up to date")
