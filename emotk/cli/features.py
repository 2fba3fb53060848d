"""Feature commands: extract-fbank, extract-mfcc, extract-opensmile, compute-cmvn, apply-cmvn."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emotk.cli.app import app, log

_NJ_HELP = """
Parallel work: --nj N alone runs N worker processes and merges their outputs into feats.scp. --nj N --job J (1-based) runs only job J's 1/N share of the utterances, for a job launcher ('$cmd JOB=1:N log/fbank.JOB.log emotk extract-fbank --nj N --job JOB data/x'); the job that finds all N jobs done merges them, so feats.scp appears when the last job ends. --nj N --merge only merges (an explicit last step for scripts; it fails naming a job that is not done).

Outputs: FEATS_DIR/raw_TYPE_NAME.J.ark (with .scp and .utt2num_frames per job); in the data dir feats.scp, utt2num_frames, frame_shift (seconds) and conf/feats.yaml (the config used). A re-run with the same config skips finished work; a changed config redoes it. Re-extracting removes a stale cmvn.scp.
"""

def _extract(kind: str, data_dir: Path, config: str, nj: int, job: Optional[int], feats_dir: Optional[Path],
             merge: bool) -> None:
    from emotk.errors import EmotkError
    from emotk.features.extract import load_feature_config
    from emotk.features.pipeline import extract_data_dir, resolve_feature_config

    path = resolve_feature_config(config)
    cfg = load_feature_config(path)
    if cfg["type"] != kind:
        raise EmotkError(f"{path}: config type is {cfg['type']}; use 'emotk extract-{cfg['type']}' for it")
    log(extract_data_dir(data_dir, cfg, nj=nj, job=job, feats_dir=feats_dir, merge_only=merge, log=log))


def _register_extractor(kind: str, title: str, default: str, names: str, example: str) -> None:
    """``emotk extract-<kind>``: one definition for fbank and MFCC, so their options stay the same."""

    def command(
        data_dir: Path = typer.Argument(..., help="Data dir with wav.scp (and optional segments)."),
        config: str = typer.Option(default, "--config",
                                   help=f"Feature config: a YAML path, or a name in conf/features/ ({names})."),
        nj: int = typer.Option(1, "--nj", help="Number of jobs."),
        job: Optional[int] = typer.Option(None, "--job", help="Run only this job (1..nj)."),
        feats_dir: Optional[Path] = typer.Option(None, "--feats-dir", help="Where the archives go (default: DATA_DIR/data)."),
        merge: bool = typer.Option(False, "--merge", help="Only merge the --nj finished jobs into feats.scp."),
    ):
        _extract(kind, data_dir, config, nj, job, feats_dir, merge)

    app.command(f"extract-{kind}", help=f"{title} (Kaldi-compatible).\n\nExample: {example}\n{_NJ_HELP}")(command)


_register_extractor("fbank", "Compute log-mel filterbank features of a data dir", "fbank40",
                    "fbank40, fbank80, fbank128_2048", "emotk extract-fbank data/emodb/all --config fbank40 --nj 4")
_register_extractor("mfcc", "Compute MFCC features of a data dir", "mfcc13", "mfcc13, mfcc26",
                    "emotk extract-mfcc data/enterface/all --config mfcc13 --nj 4")


@app.command("extract-opensmile")
def extract_opensmile_cmd(
    data_dir: Path = typer.Argument(..., help="Data dir with wav.scp (and optional segments)."),
    feature_set: str = typer.Option(..., "--set", help="eGeMAPSv02, GeMAPSv01b, ComParE_2016, emobase, IS09, IS10, "
                                                        "IS11, IS12 or IS13 (case-insensitive)."),
    level: str = typer.Option("functionals", "--level", help="functionals (one vector per utterance) or lld (frames)."),
    name: Optional[str] = typer.Option(None, "--name", help="Output table stem (default: the set lower-cased)."),
    sample_rate: int = typer.Option(16000, "--sample-rate", help="Audio is resampled to this rate (Hz) first."),
    nj: int = typer.Option(1, "--nj", help="Number of jobs."),
    job: Optional[int] = typer.Option(None, "--job", help="Run only this job (1..nj)."),
    feats_dir: Optional[Path] = typer.Option(None, "--feats-dir", help="Where the archives go (default: DATA_DIR/data)."),
    merge: bool = typer.Option(False, "--merge", help="Only merge the --nj finished jobs."),
):
    """Compute an openSMILE feature set of a data dir (the 'opensmile' package's configs).

    Functionals are Kaldi float vectors (copy-vector reads them) in NAME.scp, NAME = the set lower-cased (egemapsv02.scp, compare_2016.scp); LLDs are Kaldi matrices in NAME_lld.scp, with their frame shift (seconds) in NAME_lld.frame_shift. conf/NAME[_lld].yaml records the set, level, rate, package version and a digest of the audio: a re-run with the same ones skips, any change redoes. The size of the functionals is checked against the set's official size.

    --nj/--job/--merge and FEATS_DIR/raw_NAME_DATA.J.ark archives as in extract-fbank.

    Example: emotk extract-opensmile data/emodb/all --set eGeMAPSv02 --nj 4
    """
    from emotk.features.opensmile import extract_opensmile_data_dir

    log(extract_opensmile_data_dir(data_dir, feature_set, level, name=name, nj=nj, job=job, feats_dir=feats_dir,
                                   merge_only=merge, sample_rate=sample_rate, log=log))


@app.command("compute-cmvn")
def compute_cmvn_cmd(
    data_dir: Path = typer.Argument(..., help="Data dir with feats.scp (or the --table)."),
    ark: Optional[Path] = typer.Option(None, "--ark", help="Stats archive (default: DATA_DIR/data/<out stem>.ark)."),
    table: str = typer.Option("feats.scp", "--table",
                              help="Features table in the data dir: matrices, or vectors (openSMILE functionals) "
                                   "counted as one frame each."),
    out: Optional[str] = typer.Option(None, "--out", help="Stats table (default: cmvn.scp for feats.scp, "
                                                          "else <table stem>_cmvn.scp)."),
):
    """Per-speaker CMVN stats (Kaldi 'compute-cmvn-stats --spk2utt' layout) into cmvn.scp.

    With --table NAME.scp of utterance-level vectors, each vector counts as one frame: the stats are the speaker's mean and variance over utterances, for per-speaker standardization of the vectors.

    Example: emotk compute-cmvn data/recola/train; emotk compute-cmvn data/emodb/all --table egemapsv02.scp --out egemapsv02_cmvn.scp
    """
    from emotk.features.cmvn import compute_cmvn_data_dir, stats_table_name

    n = compute_cmvn_data_dir(data_dir, ark, table=table, out=out)
    log(f"{data_dir}: wrote {out or stats_table_name(table)} ({n} speakers)")


@app.command("apply-cmvn")
def apply_cmvn_cmd(
    data_dir: Path = typer.Argument(..., help="Data dir with feats.scp (and cmvn.scp for --norm speaker)."),
    out_dir: Path = typer.Argument(..., help="Output data dir (replaced) with normalized features."),
    norm: str = typer.Option("speaker", "--norm", help="speaker (cmvn.scp stats) or utterance (each utterance's own)."),
    norm_vars: bool = typer.Option(True, "--norm-vars/--no-norm-vars", help="Also divide by the standard deviation."),
):
    """Write a copy of a data dir with z-normalized features (Kaldi 'apply-cmvn --utt2spk').

    Training reads normalized features on the fly; use this to hand normalized features to other tools.
    Example: emotk apply-cmvn data/recola/train data/recola/train_cmvn
    """
    from emotk.errors import EmotkError
    from emotk.features.cmvn import apply_cmvn_data_dir

    if norm not in ("speaker", "utterance"):
        raise EmotkError(f"apply-cmvn: --norm must be speaker or utterance, got {norm!r}")
    n = apply_cmvn_data_dir(data_dir, out_dir, norm=norm, norm_vars=norm_vars)
    log(f"{out_dir}: {n} utterances with {norm}-normalized features")
