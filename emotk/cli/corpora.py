"""Corpus commands: data prep from the real layouts, and synthetic look-alikes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emotk.cli.app import app, log


@app.command("prepare-emodb")
def prepare_emodb_cmd(
    corpus_dir: Path = typer.Argument(..., help="EmoDB root (with wav/) or its folder of wavs."),
    data_dir: Path = typer.Argument(..., help="Data dir to write (replaced)."),
):
    """Write a data dir for EmoDB: wav.scp, utt2spk, utt2emo, spk2gender, utt2dur, emo_names.

    Example: emotk prepare-emodb /corpora/emodb data/emodb/all
    """
    from emotk.corpora.emodb import is_synthetic, prepare_emodb, summary

    d = prepare_emodb(corpus_dir, data_dir)
    for line in summary(d, synthetic=is_synthetic(corpus_dir)):
        log(f"{data_dir}: {line}")


@app.command("make-synthetic-corpus")
def make_synthetic_corpus_cmd(
    corpus: str = typer.Argument(..., help="Which corpus to imitate: emodb, enterface, iemocap, musan, recola."),
    out_dir: Path = typer.Argument(..., help="Where to write it, in the real corpus's layout (replaced)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (same seed, same files)."),
    size: Optional[int] = typer.Option(
        None, "--size", help="Utterances (emodb, iemocap), recordings per partition (recola), segmented subjects "
        "(enterface) or noise files (musan); default: the module's."),
    duration: Optional[float] = typer.Option(
        None, "--duration", help="Seconds: emodb cuts each utterance there; recola recordings last that long."),
    test_labels: bool = typer.Option(False, "--test-labels", help="recola: label the test partition too (the "
                                     "challenge withholds them; this exercises test scoring)."),
):
    """Write a synthetic look-alike of a corpus (speech synthesized with espeak-ng) for tests and demos.

    Example: emotk make-synthetic-corpus emodb /tmp/emodb_synth --size 70 --seed 1
    """
    from emotk.corpora import synthetic_maker

    make = synthetic_maker(corpus)
    kwargs = {k: v for k, v in (("seed", seed), ("size", size), ("duration", duration)) if v is not None}
    if test_labels:
        if corpus != "recola":
            from emotk.errors import EmotkError

            raise EmotkError(f"--test-labels applies to the recola look-alike, not {corpus!r}")
        kwargs["test_labels"] = True
    out = make(out_dir, **kwargs)
    log(f"{out}: synthetic {corpus} corpus ready (an existing one with the same options is reused)")


@app.command("prepare-iemocap")
def prepare_iemocap_cmd(
    corpus_dir: Path = typer.Argument(..., help="IEMOCAP_full_release (with Session1 ... Session5)."),
    data_dir: Path = typer.Argument(..., help="Data dir to write (replaced)."),
    labels: str = typer.Option(
        "4class", "--labels",
        help="4class (angry happy+excited neutral sad) | 6class (angry excited frustrated happy neutral sad) | "
             "apv3 (utt2{valence,arousal,dominance}3: low <3, mid =3, high >3) | va5 (utt2valence5, "
             "utt2arousal5: one evaluator's 1-5 levels) | all (every utterance, no derived label)."),
    evaluator: Optional[str] = typer.Option(
        None, "--evaluator", help="With --labels va5: whose ratings (default E2, as paper 003); utterances "
                                  "that evaluator did not rate on both are dropped and counted."),
    subset: str = typer.Option("complete", "--subset", help="complete | improvised | scripted dialogs."),
):
    """Write a data dir for IEMOCAP: wav.scp, utt2spk (speaker = session + gender of the turn), text,
    utt2session, utt2type, consensus and averaged V/A/D, every evaluator's ratings, and the label set.

    Counts per class, session and speaker are logged; on the complete real corpus they are checked
    against the release's known totals (5531 utterances in 4class), a mismatch is a WARNING line.

    Example: emotk prepare-iemocap /corpora/IEMOCAP_full_release data/iemocap/4class --labels 4class
    """
    from emotk.corpora.iemocap import prepare_iemocap, summary

    report = prepare_iemocap(corpus_dir, data_dir, labels=labels, evaluator=evaluator, subset=subset)
    for line in summary(report):
        log(f"{data_dir}: {line}")


@app.command("prepare-enterface")
def prepare_enterface_cmd(
    corpus_dir: Path = typer.Argument(..., help="eNTERFACE'05 root (with 'subject 1' ... 'subject 44')."),
    data_dir: Path = typer.Argument(..., help="Data dir to write (replaced; its wav/ cache is kept)."),
    audio_dir: Optional[Path] = typer.Option(
        None, "--audio-dir", help="Where the decoded 16 kHz wavs go (default DATA_DIR/wav); reused when unchanged."),
    nj: int = typer.Option(1, "--nj", help="Parallel decoding processes."),
):
    """Write a data dir for eNTERFACE'05 from its .avi files: wav.scp (16 kHz mono wavs decoded with
    PyAV), utt2spk, utt2emo, utt2text (sentence), utt2dur, emo_names, prepare_report.txt.

    Subject and emotion come from the folders, never from file names. Every known irregularity
    (subject 6 unsegmented, s12_* in subject 11, s_3_, the missing dot, missing sentences, nested
    folders) is handled and reported; any other misfit or undecodable .avi is an error naming the file.

    Example: emotk prepare-enterface "/corpora/enterface database" data/enterface/all --nj 4
    """
    from emotk.corpora.enterface import is_synthetic, prepare_enterface, summary

    p = prepare_enterface(corpus_dir, data_dir, audio_dir=audio_dir, nj=nj)
    for line in summary(p, synthetic=is_synthetic(corpus_dir)):
        log(f"{data_dir}: {line}")
