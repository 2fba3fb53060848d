"""Noise augmentation commands: MUSAN noise data dirs, disjoint noise splits, augmented data dirs."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from emotk.cli.app import app, log


@app.command("prepare-musan")
def prepare_musan_cmd(
    musan_dir: Path = typer.Argument(..., help="MUSAN root (with noise/, music/, speech/) or the folder holding musan/."),
    data_dir: Path = typer.Argument(..., help="Noise data dir to write (replaced): kind, wav.scp, utt2dur."),
    parts: List[str] = typer.Option(["noise"], "--parts", help="MUSAN parts (repeatable): noise, music, speech."),
):
    """Write a noise data dir of MUSAN recordings (lhotse's prepare_musan underneath).

    A noise data dir has no speakers: 'kind' (the word noise), wav.scp and utt2dur. Paper 002
    mixes only the noise part (music and speech carry emotion of their own).

    Example: emotk prepare-musan /corpora/musan data/musan_noise --parts noise
    """
    from emotk.corpora.musan import is_synthetic, prepare_musan, summary

    nd = prepare_musan(musan_dir, data_dir, parts)
    if is_synthetic(musan_dir):
        log(f"{data_dir}: SYNTHETIC MUSAN look-alike, not the real corpus")
    for line in summary(nd):
        log(f"{data_dir}: {line}")


@app.command("validate-noise-dir")
def validate_noise_dir_cmd(
    noise_dir: Path = typer.Argument(..., help="Noise data dir to check."),
    no_check_files: bool = typer.Option(False, "--no-check-files", help="Do not check that the audio files exist."),
):
    """Check a noise data dir: kind file, sorted wav.scp and utt2dur with the same ids, files existing.

    Example: emotk validate-noise-dir data/musan_noise
    """
    from emotk.augment.noise import validate_noise_dir

    nd = validate_noise_dir(noise_dir, check_files=not no_check_files)
    log(f"{noise_dir}: OK ({len(nd)} noises, {sum(nd.durs.values()) / 3600:.2f} h)")


@app.command("split-noise-dir")
def split_noise_dir_cmd(
    noise_dir: Path = typer.Argument(..., help="Noise data dir to split."),
    train_dir: Path = typer.Argument(..., help="Noise data dir of the training noises (replaced)."),
    test_dir: Path = typer.Argument(..., help="Noise data dir of the test noises (replaced)."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of the noise files kept for testing."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the split."),
):
    """Split noises into disjoint training and test sets (no file in both; checked by code).

    For a noisy test condition with noises unseen in training.

    Example: emotk split-noise-dir data/musan_noise data/noise_train data/noise_test --test-fraction 0.2 --seed 1
    """
    from emotk.augment.noise import split_noise_dir

    train, test = split_noise_dir(noise_dir, train_dir, test_dir, test_fraction, seed)
    log(f"{noise_dir}: {len(train)} training noises in {train_dir}, {len(test)} test noises in {test_dir}, disjoint")


@app.command("check-noise-disjoint")
def check_noise_disjoint_cmd(
    a: Path = typer.Argument(..., help="A noise data dir or an augmented data dir."),
    b: Path = typer.Argument(..., help="Another one."),
):
    """Fail if two noise sets share a noise (id or audio file).

    Each side is a noise data dir or an augmented data dir (the noises of its utt2aug).

    Example: emotk check-noise-disjoint data/enterface/train_aug data/enterface/test_noisy
    """
    from emotk.augment.noise import check_disjoint

    check_disjoint(a, b)
    log(f"{a} and {b}: no noise in common")


@app.command("augment-data-dir")
def augment_data_dir_cmd(
    src: Path = typer.Argument(..., help="Clean data dir with wav.scp."),
    dst: Path = typer.Argument(..., help="Augmented data dir to write (replaced unless made with the same inputs)."),
    noise: Path = typer.Option(..., "--noise", help="Noise data dir (emotk prepare-musan)."),
    noises_per_utt: int = typer.Option(20, "--noises-per-utt", help="Noises per utterance, drawn without replacement."),
    snrs_per_noise: int = typer.Option(3, "--snrs-per-noise", help="SNRs per noise, each a copy."),
    snr_range: str = typer.Option("-10:15", "--snr-range", help="LOW:HIGH in dB; SNRs are drawn uniformly in it."),
    seed: int = typer.Option(0, "--seed", help="Random seed: with the utterance id, it fixes every draw."),
    keep_clean: bool = typer.Option(False, "--keep-clean", help="Keep the clean copy (under the original id)."),
):
    """Write a noise-augmented copy of a data dir (MUSAN noises at random SNRs), Kaldi style.

    Copies <utt>-n01 ... of every utterance, speaker and labels carried, and utt2aug recording noise,
    offset and SNR. The audio is mixed when it is read (emotk extract-fbank, wav inputs), so nothing
    is written but tables.

    SNR is over the whole utterance; noise shorter than the utterance is looped, longer is cut at the
    recorded offset; noise files at another sample rate are resampled (with a notice naming them).
    Paper 002: --noises-per-utt 20 --snrs-per-noise 3 --snr-range -10:15 --keep-clean (x61).

    Example: emotk augment-data-dir data/emodb/all data/emodb/all_aug --noise data/musan_noise --keep-clean --seed 1
    """
    from emotk.augment.offline import augment_data_dir, summary
    from emotk.data.datadir import DataDir

    d, written = augment_data_dir(src, dst, noise, noises_per_utt, snrs_per_noise, snr_range, seed, keep_clean)
    if not written:
        log(f"{dst}: up to date (same data, noises and options), nothing to do")
        return
    log(f"{dst}: {summary(d, len(DataDir(src).utts))}")
