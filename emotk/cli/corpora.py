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
    corpus: str = typer.Argument(..., help="Which corpus to imitate: emodb, recola."),
    out_dir: Path = typer.Argument(..., help="Where to write it, in the real corpus's layout (replaced)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (same seed, same files)."),
    size: Optional[int] = typer.Option(
        None, "--size", help="Number of utterances (emodb) or recordings per partition (recola); default: the module's."),
    duration: Optional[float] = typer.Option(
        None, "--duration", help="Seconds: emodb cuts each utterance there; recola recordings last that long."),
):
    """Write a synthetic look-alike of a corpus (speech synthesized with espeak-ng) for tests and demos.

    Example: emotk make-synthetic-corpus emodb /tmp/emodb_synth --size 70 --seed 1
    """
    from emotk.corpora import synthetic_maker

    make = synthetic_maker(corpus)
    kwargs = {k: v for k, v in (("seed", seed), ("size", size), ("duration", duration)) if v is not None}
    out = make(out_dir, **kwargs)
    log(f"{out}: synthetic {corpus} corpus ready (an existing one with the same options is reused)")
