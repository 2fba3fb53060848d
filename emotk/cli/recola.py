"""Continuous-emotion commands (RECOLA / AVEC 2016, paper 000): data prep, ensembles, analyses, report."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from emotk.cli.app import app, log


def _int_list(value: str, what: str) -> list[int]:
    from emotk.errors import EmotkError

    try:
        out = [int(x) for x in value.replace(",", " ").split()]
    except ValueError:
        raise EmotkError(f"{what}: expected integers separated by commas, got {value!r}") from None
    if not out or any(x < 1 for x in out):
        raise EmotkError(f"{what}: expected positive integers, got {value!r}")
    return out


@app.command("prepare-recola")
def prepare_recola_cmd(
    corpus_dir: Path = typer.Argument(..., help="AVEC 2016 RECOLA root: recordings_audio/, ratings_gold_standard/."),
    data_dir: Path = typer.Argument(..., help="Output: DATA_DIR/{train,dev,test} data dirs (replaced)."),
):
    """Data dirs for RECOLA (AVEC 2016): one speaker per recording, 40 ms frame-level arousal/valence labels.

    Gold-standard ARFF files are parsed and checked (attributes, instance names, 0.04 s steps, NaN);
    a partition without any gold standard (the AVEC test set) is prepared for inference only.

    Example: emotk prepare-recola /data/AVEC2016 data/recola
    """
    from emotk.corpora.recola import prepare_recola

    counts = prepare_recola(corpus_dir, data_dir, log=log)
    log(f"{data_dir}: " + ", ".join(f"{p} {n}" for p, n in counts.items()) + " recordings")


@app.command("ensemble-predictions")
def ensemble_predictions_cmd(
    inputs: List[Path] = typer.Argument(..., help="Predictions of the runs: frame-level dirs or categorical .txt files."),
    out: Path = typer.Option(..., "--out", help="Averaged predictions (a dir or a file, like the inputs)."),
):
    """Average the predictions of several runs (frame-wise for frame-level dirs, posteriors for class files).

    Example: emotk ensemble-predictions exp/recola/dilated_cnn/arousal/seed{1,2,3}/predictions/dev
    --out exp/recola/dilated_cnn/arousal/ensemble/predictions/dev
    """
    from emotk.evaluation.ensemble import ensemble_predictions

    r = ensemble_predictions(inputs, out)
    parts = r["heads"].items() if r["kind"] == "heads" else [(r["kind"], r)]
    log(f"{out}: average of {r['runs']} runs (" + ", ".join(f"{n}: {h['utterances']} utterances" for n, h in parts) + ")")


@app.command("analyze-label-spectrum")
def analyze_label_spectrum_cmd(
    data_dir: Path = typer.Argument(..., help="Data dir with frame-level labels (labels.scp)."),
    out_dir: Path = typer.Option(..., "--out-dir", help="Writes label_spectrum.png and label_spectrum.tsv here."),
    cutoff: float = typer.Option(1.0, "--cutoff", help="Frequency (Hz) below which the power share is reported."),
):
    """Share of the label power below a cutoff (paper 000: over 95 % below 1 Hz on RECOLA), with the spectrum.

    Example: emotk analyze-label-spectrum data/recola/train --out-dir exp/recola/analysis
    """
    from emotk.analysis.continuous import label_spectrum, write_label_spectrum
    from emotk.data.predictions import read_frame_labels

    names, shift, mats = read_frame_labels(data_dir)
    r = label_spectrum(mats, names, shift, cutoff)
    png, tsv = write_label_spectrum(r, out_dir)
    log(f"{tsv}, {png}: power below {cutoff:g} Hz: "
        + ", ".join(f"{n} {100 * v:.1f}%" for n, v in r["share_below"].items()))


@app.command("analyze-label-resampling")
def analyze_label_resampling_cmd(
    data_dir: Path = typer.Argument(..., help="Data dir with frame-level labels (labels.scp)."),
    out_dir: Path = typer.Option(..., "--out-dir", help="Writes label_resampling.png and label_resampling.tsv here."),
    factors: str = typer.Option("2,4,8,16,32,64,128", "--factors", help="Downsampling factors."),
):
    """CCC between the labels and the labels downsampled by each factor and restored by spline (paper 000 Fig. 4).

    Example: emotk analyze-label-resampling data/recola/dev --out-dir exp/recola/analysis
    """
    from emotk.analysis.continuous import resampling_ccc, write_resampling
    from emotk.data.predictions import read_frame_labels

    names, shift, mats = read_frame_labels(data_dir)
    r = resampling_ccc(mats, names, _int_list(factors, "--factors"))
    png, tsv = write_resampling(r, shift, out_dir)
    log(f"{tsv}, {png}: " + "; ".join(f"{n} " + " ".join(f"x{f}:{c:.3f}" for f, c in v.items()) for n, v in r.items()))


@app.command("sweep-receptive-field")
def sweep_receptive_field_cmd(
    config: Path = typer.Option(..., "--config", help="Single-filter model config, e.g. conf/model/single_filter.yaml."),
    train: Path = typer.Option(..., "--train", help="Training data dir."),
    valid: Path = typer.Option(..., "--valid", help="Dev data dir (the CCC reported)."),
    exp: Path = typer.Option(..., "--exp", help="Sweep dir: runs in EXP/L<len>/<dim>/seed<k>; the PNG and TSV in EXP."),
    lengths: str = typer.Option("2,4,8,16,32,64,128,256,512,1024,2048", "--lengths", help="Filter lengths (frames)."),
    runs: int = typer.Option(10, "--runs", help="Runs (seeds 1..N) per length and dimension; paper 000: 10."),
    dims: Optional[str] = typer.Option(None, "--dims", help="Label dimensions, each swept separately (default: all)."),
    overrides: List[str] = typer.Option([], "--set", help="Override a config value, e.g. --set train.epochs=20."),
):
    """Dev CCC of the single-filter model against filter length, mean and std over runs (paper 000 Fig. 1).

    Finished runs are skipped, so an interrupted sweep resumes.

    Example: emotk sweep-receptive-field --config conf/model/single_filter.yaml --train data/recola/train
    --valid data/recola/dev --exp exp/recola/rf_sweep --runs 3
    """
    from emotk.analysis.continuous import receptive_field_sweep, write_sweep
    from emotk.config import load_config
    from emotk.data.datadir import DataDir
    from emotk.errors import EmotkError

    if runs < 1:
        raise EmotkError(f"--runs must be >= 1, got {runs}")
    cfg = load_config(config, overrides)
    d = DataDir(train)
    names = d.label_names
    wanted = [x for x in (dims or "").replace(",", " ").split()] or names
    for n in wanted:
        if n not in names:
            raise EmotkError(f"--dims: {n!r} is not in {train / 'label_names'} ({' '.join(names)})")
    r = receptive_field_sweep(cfg, train, valid, exp, _int_list(lengths, "--lengths"), runs, wanted, log=log)
    png, tsv = write_sweep(r, float(d.scalar("label_frame_shift")), exp)
    log(f"{tsv}, {png}: receptive-field sweep written")


@app.command("plot-trajectories")
def plot_trajectories_cmd(
    ref: Path = typer.Option(..., "--ref", help="Data dir with the gold standard (labels.scp)."),
    hyps: List[str] = typer.Option(..., "--hyp", help="NAME=PRED_DIR, repeatable; a NAME given twice merges the "
                                   "dirs' dimensions (per-dimension runs)."),
    utt: Optional[str] = typer.Option(None, "--utt", help="Recording (default: the first of --ref)."),
    start: float = typer.Option(0.0, "--start", help="Segment start (s)."),
    end: Optional[float] = typer.Option(None, "--end", help="Segment end (s); default the end of the recording."),
    out: Path = typer.Option(..., "--out", help="PNG to write; the table goes beside it as .tsv."),
):
    """Predictions of several models against the gold standard on one segment (paper 000 Fig. 5), with each
    model's CCC, RMSE and mean frame-to-frame change (smoothness) on that segment.

    Example: emotk plot-trajectories --ref data/recola/dev --hyp dilated=exp/recola/dilated_cnn/arousal/ensemble/predictions/dev
    --hyp down/up=exp/recola/downup_cnn/arousal/ensemble/predictions/dev --utt dev_1 --start 0 --end 40 --out fig5.png
    """
    from emotk.analysis.continuous import plot_trajectories, trajectory_table
    from emotk.data.datadir import DataDir
    from emotk.errors import EmotkError

    named: dict[str, list[Path]] = {}
    for h in hyps:
        name, sep, path = h.partition("=")
        if not sep or not name or not path:
            raise EmotkError(f"--hyp {h!r}: expected NAME=PRED_DIR")
        named.setdefault(name, []).append(Path(path))
    utt = utt or DataDir(ref).utts[0]
    curves, rows = trajectory_table(ref, named, utt, start, end)
    png, tsv = plot_trajectories(curves, rows, utt, out, out.with_suffix(".tsv"))
    log(f"{png}, {tsv}: " + "; ".join(f"{r[0]} {r[1]} ccc {r[2]:.3f} change {r[4]:.4f}" for r in rows))


@app.command("report-continuous")
def report_continuous_cmd(
    exp_root: Path = typer.Argument(..., help="Root of EXP/<model>/<target>/{seed<N>,ensemble}/scores/{dev,test}.json."),
    out: Path = typer.Option(..., "--out", help="Markdown file to write, e.g. recipes/recola/RESULTS.md."),
    title: str = typer.Option("Results", "--title"),
    note: Optional[str] = typer.Option(None, "--note", help="Bold text at the top (e.g. SYNTHETIC CORPUS)."),
    dev_set: str = typer.Option("dev", "--dev-set", help="Scores file name of the development set."),
    test_set: str = typer.Option("test", "--test-set", help="Scores file name of the test set (— where absent)."),
    append: List[Path] = typer.Option([], "--append", help="Markdown or TSV files appended as sections (analyses)."),
):
    """RESULTS.md in the layout of paper 000 Tables 1-2: dev (and test) RMSE and CCC per model and dimension,
    mean ± std over runs, and the ensemble rows; ranked by dev CCC.  The set that chose each run's
    checkpoints and the normalization are stated from the runs' provenance records.

    Example: emotk report-continuous exp/recola --out recipes/recola/RESULTS.md --note "SYNTHETIC CORPUS"
    """
    from emotk.analysis.continuous import write_results
    from emotk.training.provenance import describe_runs

    note = " ".join(([note] if note else []) + describe_runs(exp_root)) or None
    n_rows, n_dims = write_results(exp_root, out, title, note, dev_set, test_set, append)
    log(f"{out}: {n_rows} rows over {n_dims} dimensions")
