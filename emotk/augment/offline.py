"""Offline noise augmentation of a data dir, Kaldi style: the new data dir records what to mix, and
the audio is mixed whenever the utterance is read (feature extraction, ``wav`` inputs).

For each utterance of IN, ``noises_per_utt`` noises are drawn without replacement, each mixed at
``snrs_per_noise`` SNRs drawn uniformly from ``snr_range``, each copy with its own offset
(paper 002: 20 x 3, SNR in [-10, 15] dB, plus the clean copy: x61). The copies are
``<utt>-n01 ... <utt>-n60`` (the speaker prefix is kept); the clean copy keeps ``<utt>``.
Draws depend only on the seed and the utterance id, not on the other utterances.

``utt2aug`` (one line per utterance of OUT)::

    <utt>-n07 <noise-id> <offset-s> <snr-db> <noise-path>
    <utt> -                                         (the clean copy)

Every other table keyed by utterance (utt2spk, utt2dur, utt2emo, utt2<dim>, text, segments,
labels.scp, any utt2*) is carried to the copies; features (feats.scp, openSMILE tables, any other
feature ``.scp`` and their statistics) are not: they describe the clean audio.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from emotk.augment.mix import Aug, apply_aug, check_snr_range, draw_offset, draw_snr, key_rng
from emotk.augment.noise import NoiseDir, audio_info, notice, validate_noise_dir
from emotk.data.datadir import (PATH_TABLES, DataDir, read_table, spk2utt_from,
                                validate_data_dir, write_table)
from emotk.errors import EmotkError
from emotk.fileio import atomic_dir

UTT2AUG = "utt2aug"
CLEAN = "-"
STAMP = "conf/augment.yaml"
# Tables derived from the audio describe the clean audio, so they are not carried: feats.scp and every other
# feature table (openSMILE functionals or LLDs, any ``*.scp`` but labels.scp) with its statistics.
_NOT_CARRIED = {"feats.scp", "utt2num_frames", "cmvn.scp", "frame_shift", "spk2utt", UTT2AUG}


def _derived_from_audio(name: str) -> bool:
    return name in _NOT_CARRIED or (name.endswith(".scp") and name not in ("labels.scp", "wav.scp"))


def format_aug(aug: Aug | None) -> str:
    return CLEAN if aug is None else f"{aug.noise_id} {aug.offset:.3f} {aug.snr:.2f} {aug.noise_path}"


def parse_aug(value: str) -> Aug | None:
    if value == CLEAN:
        return None
    parts = value.split(maxsplit=3)
    if len(parts) != 4:
        raise ValueError("expected '<noise-id> <offset> <snr> <noise-path>' or '-'")
    offset, snr = float(parts[1]), float(parts[2])
    if not offset >= 0 or snr != snr:
        raise ValueError(f"bad offset {parts[1]} or SNR {parts[2]}")
    return Aug(parts[0], offset, snr, parts[3])


def read_utt2aug(path: str | Path) -> dict[str, Aug | None]:
    return read_table(path, parse_aug)


def mix_utterance(d: DataDir, utt: str, wav, sample_rate: int):
    """The extraction hook: ``wav`` with the noise ``d/utt2aug`` records for ``utt`` mixed in."""
    table = d.table(UTT2AUG)  # read once per DataDir
    if utt not in table:
        raise EmotkError(f"{d.path / UTT2AUG}: no record for utterance {utt!r}")
    try:
        aug = parse_aug(table[utt])
    except ValueError as e:
        raise EmotkError(f"{d.path / UTT2AUG}: bad record for utterance {utt!r}: {e}") from None
    return wav if aug is None else apply_aug(wav, sample_rate, aug, repr(utt))


def _durations(d: DataDir) -> dict[str, float]:
    """Seconds per utterance: utt2dur, else segments, else the audio files' headers."""
    if d.has("utt2dur"):
        return {u: float(v) for u, v in d.table("utt2dur").items()}
    if d.has("segments"):
        return {u: end - start for u, (_, start, end) in d.table("segments").items()}
    info = audio_info(str(d.wav_path(u)) for u in d.utts)
    return {u: info[str(d.wav_path(u))][1] for u in d.utts}


def _check_noise_rates(nd: NoiseDir, sample_rate: int | None) -> None:
    """Name every noise file whose rate differs from the speech's (they are resampled when mixed)."""
    if sample_rate is None:
        return
    for path, (sr, _) in audio_info(nd.paths.values()).items():
        if sr != sample_rate:
            notice(f"{path}: noise at {sr} Hz, the speech is at {sample_rate} Hz; it is resampled when mixed")


def _speech_rate(d: DataDir) -> int | None:
    first = next(iter(d.table("wav.scp")))
    return audio_info([d.wav_path(first)])[str(d.wav_path(first))][0]


def plan(d: DataDir, nd: NoiseDir, noises_per_utt: int, snrs_per_noise: int, snr_range: tuple[float, float],
         seed: int, keep_clean: bool) -> dict[str, tuple[str, Aug | None]]:
    """``new utterance id -> (source utterance id, mixing or None for the clean copy)``."""
    durs = _durations(d)
    width = len(str(noises_per_utt * snrs_per_noise))
    out: dict[str, tuple[str, Aug | None]] = {}
    for utt in d.utts:
        rng = key_rng(seed, utt)
        chosen = rng.choice(len(nd), size=noises_per_utt, replace=False)
        k = 0
        for i in chosen:
            nid = nd.ids[int(i)]
            for _ in range(snrs_per_noise):
                k += 1
                aug = Aug(nid, draw_offset(rng, nd.durs[nid], durs[utt]), draw_snr(rng, snr_range), nd.paths[nid])
                out[f"{utt}-n{k:0{width}d}"] = (utt, aug)
        if keep_clean:
            out[utt] = (utt, None)
    clash = sorted(set(d.utts) & {u for u, (_, a) in out.items() if a is not None})
    if clash:
        raise EmotkError(f"{d.path / 'utt2spk'}: utterance {clash[0]!r} looks like an augmented copy's id; "
                         "cannot augment a data dir with such ids")
    return out


def _carried_tables(d: DataDir) -> list[str]:
    names = [n for n in d.utt_tables() if not _derived_from_audio(n)]
    names += sorted(p.name for p in d.path.glob("utt2*")
                    if p.is_file() and p.name not in names and not _derived_from_audio(p.name))
    return names


def _carried_scalars(d: DataDir) -> list[str]:
    """Label and class names; not the frame shifts of features (not carried)."""
    return [n for n in d.scalar_files() if n != "frame_shift" and not n.endswith(".frame_shift")]


def _stamp(d: DataDir, nd: NoiseDir, options: dict) -> str:
    import yaml

    h = hashlib.sha256()
    read = _carried_tables(d) + ["wav.scp", "spk2gender"] + _carried_scalars(d)
    for base, names in ((d.path, read), (nd.path, ["wav.scp", "utt2dur"])):
        for name in names:
            if (base / name).is_file():
                h.update(f"{base.name}/{name}\n".encode())
                h.update((base / name).read_bytes())
    return yaml.safe_dump({**options, "inputs_sha256": h.hexdigest()}, sort_keys=True)


def augment_data_dir(src: str | Path, dst: str | Path, noise_dir: str | Path, noises_per_utt: int = 20,
                     snrs_per_noise: int = 3, snr_range="-10:15", seed: int = 0, keep_clean: bool = False) -> tuple[DataDir, bool]:
    """Write the augmented data dir ``dst`` (see the module docstring); returns it and whether it was (re)written.

    A re-run with the same inputs and options leaves ``dst`` (and features extracted in it) as is.
    """
    snr_range = check_snr_range(snr_range)
    for option, value in (("--noises-per-utt", noises_per_utt), ("--snrs-per-noise", snrs_per_noise)):
        if value < 1:
            raise EmotkError(f"{option} must be >= 1, got {value}")
    d = validate_data_dir(src, require=["wav.scp"])
    if d.has(UTT2AUG):
        raise EmotkError(f"{d.path / UTT2AUG}: this data dir is already augmented; augment the clean one")
    nd = validate_noise_dir(noise_dir)
    if noises_per_utt > len(nd):
        raise EmotkError(f"--noises-per-utt {noises_per_utt} is more than the {len(nd)} noises of {nd.path}")
    dst = Path(dst)
    options = {"noise_dir": str(nd.path.resolve()), "noises_per_utt": noises_per_utt, "snrs_per_noise": snrs_per_noise,
               "snr_range": list(snr_range), "seed": seed, "keep_clean": keep_clean}
    stamp = _stamp(d, nd, options)
    if (dst / STAMP).is_file() and (dst / STAMP).read_text(encoding="utf-8") == stamp and (dst / UTT2AUG).is_file():
        return DataDir(dst), False
    _check_noise_rates(nd, _speech_rate(d))
    new = plan(d, nd, noises_per_utt, snrs_per_noise, snr_range, seed, keep_clean)
    with atomic_dir(dst) as tmp:
        for name in _carried_tables(d):
            table = read_table(d.path / name, parse=str)
            if name in PATH_TABLES:
                table = {k: d.resolve(v) for k, v in table.items()}
            write_table(tmp / name, {u: table[src_utt] for u, (src_utt, _) in new.items()})
        wav = {k: d.resolve(v) for k, v in d.table("wav.scp").items()}
        if not d.has("segments"):  # keyed by utterance; with segments, by recording (unchanged)
            wav = {u: wav[s] for u, (s, _) in new.items()}
        write_table(tmp / "wav.scp", wav)
        utt2spk = {u: d.utt2spk[s] for u, (s, _) in new.items()}
        write_table(tmp / "spk2utt", spk2utt_from(utt2spk))
        write_table(tmp / UTT2AUG, {u: format_aug(a) for u, (_, a) in new.items()})
        if d.has("spk2gender"):
            shutil.copyfile(d.path / "spk2gender", tmp / "spk2gender")
        for name in _carried_scalars(d):
            shutil.copyfile(d.path / name, tmp / name)
        (tmp / "conf").mkdir()
        (tmp / STAMP).write_text(stamp, encoding="utf-8")
    return validate_data_dir(dst), True


def summary(d: DataDir, src_count: int) -> str:
    augs = read_utt2aug(d.path / UTT2AUG)
    noisy = [a for a in augs.values() if a is not None]
    snrs = [a.snr for a in noisy]
    return (f"{len(augs)} utterances from {src_count} (x{len(augs) / src_count:g}): {len(noisy)} noisy copies "
            f"with {len({a.noise_id for a in noisy})} distinct noises, SNR {min(snrs):g} to {max(snrs):g} dB, "
            f"{len(augs) - len(noisy)} clean")
