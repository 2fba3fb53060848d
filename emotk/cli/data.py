"""Data-dir commands: validate, fix, subset, combine, split, lhotse conversion."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from emotk.cli.app import app, log


def _id_list(value: Optional[str]) -> Optional[list[str]]:
    """A comma-separated list, or ``@file`` with one id per line (first token)."""
    if value is None:
        return None
    if value.startswith("@"):
        from emotk.errors import EmotkError

        path = Path(value[1:])
        if not path.is_file():
            raise EmotkError(f"{path}: id list not found")
        return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [x for x in value.split(",") if x]


@app.command("validate-data-dir")
def validate_data_dir_cmd(
    data_dir: Path = typer.Argument(..., help="Data dir to check."),
    require: List[str] = typer.Option([], "--require", help="Files that must exist (repeatable), e.g. feats.scp."),
    no_check_files: bool = typer.Option(False, "--no-check-files", help="Do not check that audio/ark files exist."),
):
    """Check a data dir: sorting, ids matching across files, files existing, values parseable.

    Example: emotk validate-data-dir data/emodb/all --require feats.scp
    """
    from emotk.data.datadir import validate_data_dir

    d = validate_data_dir(data_dir, require=require, check_files=not no_check_files)
    log(f"{data_dir}: OK ({len(d.utts)} utterances, {len(d.speakers)} speakers; {', '.join(sorted(p.name for p in d.path.iterdir() if p.is_file()))})")


@app.command("fix-data-dir")
def fix_data_dir_cmd(data_dir: Path = typer.Argument(..., help="Data dir to fix in place.")):
    """Sort every table, derive spk2utt, drop utterances missing from any table (and say how many).

    Example: emotk fix-data-dir data/emodb/all
    """
    from emotk.data.datadir import fix_data_dir

    r = fix_data_dir(data_dir)
    detail = ", ".join(f"{n} missing from {t}" for t, n in r["dropped_by"].items())
    log(f"{data_dir}: kept {r['kept']} utterances, dropped {r['dropped']}" + (f" ({detail})" if detail else ""))


@app.command("subset-data-dir")
def subset_data_dir_cmd(
    src: Path = typer.Argument(..., help="Source data dir."),
    dst: Path = typer.Argument(..., help="Output data dir (replaced)."),
    utts: Optional[str] = typer.Option(None, "--utts", help="Utterance ids: a,b,c or @file."),
    spks: Optional[str] = typer.Option(None, "--spks", help="Speaker ids: a,b,c or @file."),
):
    """Copy a subset of utterances or speakers to a new data dir sharing the same audio and features.

    Example: emotk subset-data-dir data/all data/spk03 --spks 03
    """
    from emotk.data.datadir import subset_data_dir
    from emotk.errors import EmotkError

    if utts is None and spks is None:
        raise EmotkError("subset-data-dir: give --utts or --spks")
    d = subset_data_dir(src, dst, utts=_id_list(utts), spks=_id_list(spks))
    log(f"{dst}: {len(d.utts)} utterances, {len(d.speakers)} speakers")


@app.command("combine-data-dir")
def combine_data_dir_cmd(
    dst: Path = typer.Argument(..., help="Output data dir (replaced)."),
    srcs: List[Path] = typer.Argument(..., help="Source data dirs."),
):
    """Combine several data dirs into one; refuses duplicate utterance ids.

    Example: emotk combine-data-dir data/train_all data/train data/train_noisy
    """
    from emotk.data.datadir import combine_data_dirs

    d = combine_data_dirs(dst, srcs)
    log(f"{dst}: {len(d.utts)} utterances, {len(d.speakers)} speakers")


@app.command("split-data-dir")
def split_data_dir_cmd(
    data_dir: Path = typer.Argument(..., help="Data dir to split."),
    out_dir: Path = typer.Argument(..., help="Folds dir to write (replaced): <out>/<fold>/{train,valid,test}."),
    protocol: str = typer.Option("loso", "--protocol", help="loso | kfold | lists | logo (leave one group out) | tvt (speakers split by --speaker-fractions) | random (speaker-dependent)."),
    k: int = typer.Option(5, "--k", help="kfold: number of speaker-disjoint folds."),
    valid_speakers_n: int = typer.Option(1, "--num-valid-speakers", help="loso/kfold/logo: speakers held out of train as the valid set (model selection); 2 or more make early stopping less noisy."),
    groups: Optional[str] = typer.Option(None, "--groups", help="logo: the grouping table in the data dir, utt2<group> or spk2<group> (e.g. utt2session)."),
    text_independent: bool = typer.Option(False, "--text-independent", help="Also text-independent (corpora with fixed sentences, needs utt2text): no test sentence in train or valid; train/valid utterances with a test sentence are dropped and counted."),
    text_folds: int = typer.Option(2, "--text-folds", help="--text-independent: sentence groups each speaker fold is split into."),
    train_speakers: Optional[str] = typer.Option(None, "--train-speakers", help="lists: a,b,c or @file."),
    valid_speakers: Optional[str] = typer.Option(None, "--valid-speakers", help="lists: a,b,c or @file."),
    test_speakers: Optional[str] = typer.Option(None, "--test-speakers", help="lists: a,b,c or @file."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="random: share of utterances for test."),
    valid_fraction: float = typer.Option(0.1, "--valid-fraction", help="random: share of utterances for valid."),
    speaker_fractions: str = typer.Option("0.7:0.1:0.2", "--speaker-fractions", help="tvt: TRAIN:VALID:TEST shares of the speakers (paper 002: 0.7:0.1:0.2; at least one test and one training speaker)."),
    repeats: int = typer.Option(1, "--repeats", help="random, tvt: number of random splits."),
    seed: int = typer.Option(0, "--seed"),
):
    """Write evaluation folds, each checked by code (utterances, speakers, sentences disjoint) with the checks recorded in <fold>/fold.yaml. Speaker-independent protocols refuse speaker overlap.

    Example: emotk split-data-dir data/emodb/all data/emodb/folds/loso-ti --protocol loso --text-independent --num-valid-speakers 2

    Example: emotk split-data-dir data/enterface/all data/enterface/folds/tvt --protocol tvt --speaker-fractions 0.7:0.1:0.2 --seed 0
    """
    from emotk.data.split import split_data_dir

    names = split_data_dir(
        data_dir, out_dir, protocol, log=log, k=k, n_valid_speakers=valid_speakers_n, test_fraction=test_fraction,
        valid_fraction=valid_fraction, repeats=repeats, seed=seed,
        train_speakers=_id_list(train_speakers) or (), valid_speakers=_id_list(valid_speakers) or (),
        test_speakers=_id_list(test_speakers) or (), groups=groups,
        text_folds=text_folds if text_independent else None, speaker_fractions=speaker_fractions)
    log(f"{out_dir}: {len(names)} folds ({protocol}{', text-independent' if text_independent else ''}): {' '.join(names)}")


@app.command("export-lhotse")
def export_lhotse_cmd(
    data_dir: Path = typer.Argument(..., help="Data dir with wav.scp."),
    out_dir: Path = typer.Argument(..., help="Where to write recordings.jsonl.gz and supervisions.jsonl.gz."),
):
    """Write lhotse manifests for a data dir; labels travel in supervision.custom.

    Example: emotk export-lhotse data/emodb/all manifests/emodb
    """
    from emotk.data.lhotse_bridge import data_dir_to_manifests, save_manifests

    recs, sups = data_dir_to_manifests(data_dir)
    save_manifests(recs, sups, out_dir)
    log(f"{out_dir}: {len(recs)} recordings, {len(sups)} supervisions")


@app.command("import-lhotse")
def import_lhotse_cmd(
    manifest_dir: Path = typer.Argument(..., help="Dir with recordings.jsonl.gz and supervisions.jsonl.gz."),
    data_dir: Path = typer.Argument(..., help="Data dir to write (replaced)."),
):
    """Write a data dir from lhotse manifests (supervision.custom labels become utt2emo, utt2arousal ...).

    Example: emotk import-lhotse manifests/emodb data/emodb/all
    """
    from emotk.data.lhotse_bridge import load_manifests, manifests_to_data_dir

    recs, sups = load_manifests(manifest_dir)
    d = manifests_to_data_dir(recs, sups, data_dir)
    log(f"{data_dir}: {len(d.utts)} utterances, {len(d.speakers)} speakers")
