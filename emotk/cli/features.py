"""Feature commands: extract-fbank, extract-mfcc, compute-cmvn, apply-cmvn."""

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


@app.command("compute-cmvn")
def compute_cmvn_cmd(
    data_dir: Path = typer.Argument(..., help="Data dir with feats.scp."),
    ark: Optional[Path] = typer.Option(None, "--ark", help="Stats archive (default: DATA_DIR/data/cmvn.ark)."),
):
    """Per-speaker CMVN stats (Kaldi 'compute-cmvn-stats --spk2utt' layout) into cmvn.scp.

    Example: emotk compute-cmvn data/recola/train
    """
    from emotk.features.cmvn import compute_cmvn_data_dir

    n = compute_cmvn_data_dir(data_dir, ark)
    log(f"{data_dir}: wrote cmvn.scp ({n} speakers)")


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
