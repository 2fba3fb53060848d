"""Analysis commands: ``emotk probe-modules``, ``emotk report-probes``."""

from __future__ import annotations

from pathlib import Path

import typer

from emotk.cli.app import app, log


@app.command("probe-modules")
def probe_modules_cmd(
    model: Path = typer.Option(..., "--model", help="Exp dir of a trained model that names its modules (X-CLDNNs: cnn, blstm, mlp; LDNN: blstm, mlp)."),
    train: Path = typer.Option(..., "--train", help="Data dir the SVM probes are trained on and the LDA plots and inertia ratios computed on."),
    test: Path = typer.Option(..., "--test", help="Data dir the SVM probes are scored on (UA)."),
    out: Path = typer.Option(..., "--out", help="Output dir: probe.tsv, lda.png, record.yaml."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last."),
    batch_size: int = typer.Option(16, "--batch-size"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda."),
):
    """Module-wise analysis (paper 002, section 7.5, Table 5, Fig. 3): each module's output (mean over valid time for sequences) and the raw input per utterance; a linear SVM probe per module for every class head, speaker and gender (spk2gender) label, trained on --train and scored on --test (UA); the inertia ratio (intra-/inter-class inertia, Eqs. 15-17) and 2-D LDA scatter plots on --train.

    Writes OUT/probe.tsv (module, label, classes, probe_ua, inertia_ratio), OUT/lda.png and OUT/record.yaml; a re-run with the same model and data is skipped.

    Example: emotk probe-modules --model exp/enterface/cldnn_fst/tvt/seed1 --train data/enterface/tvt/train --test data/enterface/tvt/test --out exp/enterface/cldnn_fst/tvt/seed1/probe
    """
    from emotk.analysis.probing import probe_modules
    from emotk.errors import EmotkError

    if checkpoint not in ("best", "last"):
        raise EmotkError(f"--checkpoint must be best or last, got {checkpoint!r}")
    probe_modules(model, train, test, out, checkpoint=checkpoint, batch_size=batch_size, device=device, log=log)


@app.command("report-probes")
def report_probes_cmd(
    results: Path = typer.Option(..., "--results", help="RESULTS.md (written by emotk report) to append the tables to."),
    row: list[str] = typer.Option([], "--row", help="LABEL=GLOB of probe-modules output dirs of one model's runs (repeatable)."),
    labels: str = typer.Option("emotion,speaker", "--labels", help="Labels, comma-separated; the first is Table 5's."),
):
    """Append paper 002's Table 5 (probe UA per module, mean ± std over runs) and the inertia ratios per label to RESULTS.md.

    Example: emotk report-probes --results RESULTS.md --row "FST-CLDNN (log-Mels)=exp/cldnn_fst_fbank/tvt/*/seed*/probe"
    """
    from emotk.analysis.probe_table import append_to, parse_row

    append_to(results, [parse_row(r) for r in row], [x for x in labels.split(",") if x])
