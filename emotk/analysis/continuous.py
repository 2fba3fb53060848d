"""Analyses of continuous (frame-level) emotion labels and predictions, after paper 000.

- :func:`label_spectrum`: share of the label power below a cutoff (paper 000 section 5.2: over
  95 % below 1 Hz on RECOLA).  Each recording's mean is removed first (the DC term would
  otherwise dominate and say nothing about how fast the labels move); the share is
  ``sum over recordings of the power below the cutoff / sum of all power``, from each
  recording's periodogram (Parseval-exact).
- :func:`resampling_ccc`: labels downsampled by a factor (every f-th frame, plus the last frame
  so the spline never extrapolates) and restored with a cubic spline; CCC against the originals
  over the concatenation of all recordings (Figure 4).
- :func:`receptive_field_sweep`: dev CCC of the single-filter model against its filter length,
  mean and std over runs (Figure 1); trains through :func:`emotk.training.loop.train`.
- :func:`trajectory_table` / :func:`plot_trajectories`: predictions of several models against the
  gold standard on one segment (Figure 5), with each model's CCC on the segment and its mean
  absolute frame-to-frame change (how smooth the output is).
- :func:`results_markdown`: the dev RMSE / CCC tables in the layout of paper 000's Tables 1-2.

Every analysis returns its numbers; the ``write_*`` / ``plot_*`` helpers write a PNG and a
tab-separated table, both atomically.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from emotk.data.predictions import read_frame_labels
from emotk.errors import EmotkError
from emotk.fileio import atomic_path, write_text
from emotk.evaluation.report import REPRODUCIBILITY
from emotk.metrics.regression import ccc, rmse


def _fig(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path


def write_tsv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence]) -> Path:
    def cell(x):
        return f"{x:.6g}" if isinstance(x, float) else str(x)

    write_text(path, "\t".join(header) + "\n" + "".join("\t".join(cell(x) for x in r) + "\n" for r in rows))
    return Path(path)


# Label spectrum ------------------------------------------------------------------------

def label_spectrum(mats: Mapping[str, np.ndarray], names: Sequence[str], frame_shift: float,
                   cutoff: float = 1.0) -> dict:
    """Share of (mean-removed) label power below ``cutoff`` Hz per dimension, overall and per recording.

    Also returns the averaged power spectral density (Welch) for plotting.
    """
    from scipy.signal import welch

    fs = 1.0 / frame_shift
    if cutoff >= fs / 2:
        raise EmotkError(f"cutoff {cutoff} Hz is not below the Nyquist frequency {fs / 2:g} Hz of the labels")
    below = np.zeros(len(names))
    total = np.zeros(len(names))
    per_rec = {}
    nperseg = min(1024, min(m.shape[0] for m in mats.values()))
    psd_sum, n_psd, freqs = None, 0, None
    for utt, m in mats.items():
        x = m - m.mean(axis=0)
        p = np.abs(np.fft.rfft(x, axis=0)) ** 2
        f = np.fft.rfftfreq(x.shape[0], frame_shift)
        b, t = p[f < cutoff].sum(axis=0), p.sum(axis=0)
        below += b
        total += t
        per_rec[utt] = {n: float(b[k] / t[k]) if t[k] > 0 else math.nan for k, n in enumerate(names)}
        freqs, psd = welch(x, fs=fs, nperseg=nperseg, axis=0)
        psd_sum = psd if psd_sum is None else psd_sum + psd
        n_psd += 1
    share = {n: float(below[k] / total[k]) if total[k] > 0 else math.nan for k, n in enumerate(names)}
    return {"cutoff_hz": cutoff, "share_below": share, "per_recording": per_rec,
            "freqs": freqs, "psd": psd_sum / n_psd, "names": list(names)}


def write_label_spectrum(result: dict, out_dir: str | Path, name: str = "label_spectrum") -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    names, cutoff = result["names"], result["cutoff_hz"]
    rows = [["all", *[result["share_below"][n] for n in names]]]
    rows += [[utt, *[v[n] for n in names]] for utt, v in sorted(result["per_recording"].items())]
    tsv = write_tsv(out_dir / f"{name}.tsv", ["recording", *[f"{n}_share_below_{cutoff:g}Hz" for n in names]], rows)
    fig = _fig(6, 3.5)
    ax = fig.add_subplot()
    f = result["freqs"]
    for k, n in enumerate(names):
        ax.semilogy(f[1:], result["psd"][1:, k], label=f"{n}: {100 * result['share_below'][n]:.1f}% below {cutoff:g} Hz")
    ax.axvline(cutoff, color="k", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("power spectral density")
    ax.set_title("Label spectrum (recording means removed)")
    ax.legend(fontsize=8)
    return _save(fig, out_dir / f"{name}.png"), tsv


# Label down/up-sampling ----------------------------------------------------------------

def downsample_restore(x: np.ndarray, factor: int) -> np.ndarray:
    """Keep every ``factor``-th frame of ``x [T]`` (and the last), restore all T frames with a cubic spline."""
    from scipy.interpolate import CubicSpline

    T = len(x)
    keep = np.arange(0, T, factor)
    if keep[-1] != T - 1:
        keep = np.append(keep, T - 1)
    if len(keep) < 2:
        return np.full(T, float(x[0]))
    return CubicSpline(keep, x[keep])(np.arange(T))


def resampling_ccc(mats: Mapping[str, np.ndarray], names: Sequence[str],
                   factors: Sequence[int] = (2, 4, 8, 16, 32, 64, 128)) -> dict[str, dict[int, float]]:
    """``{dim: {factor: CCC(original, restored)}}`` over the concatenation of all recordings."""
    out: dict[str, dict[int, float]] = {}
    for k, n in enumerate(names):
        orig = np.concatenate([m[:, k] for m in mats.values()])
        out[n] = {}
        for f in factors:
            if f < 1:
                raise EmotkError(f"downsampling factor must be >= 1, got {f}")
            rest = np.concatenate([downsample_restore(m[:, k], f) for m in mats.values()])
            out[n][int(f)] = ccc(rest, orig)
    return out


def write_resampling(result: dict[str, dict[int, float]], frame_shift: float, out_dir: str | Path,
                     name: str = "label_resampling") -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    names = list(result)
    factors = sorted(next(iter(result.values())))
    rows = [[f, f * frame_shift, *[result[n][f] for n in names]] for f in factors]
    tsv = write_tsv(out_dir / f"{name}.tsv", ["factor", "seconds_per_sample", *[f"ccc_{n}" for n in names]], rows)
    fig = _fig(6, 3.5)
    ax = fig.add_subplot()
    for n in names:
        ax.plot(factors, [result[n][f] for f in factors], marker="o", label=n)
    ax.set_xscale("log", base=2)
    ax.set_xticks(factors, labels=[str(f) for f in factors])
    ax.set_xlabel("downsampling factor")
    ax.set_ylabel("CCC(original, spline-restored)")
    ax.set_title("Label downsampling / spline upsampling (paper 000 Fig. 4)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out_dir / f"{name}.png"), tsv


# Receptive-field sweep -----------------------------------------------------------------

def receptive_field_sweep(cfg: dict, train_dir: str | Path, valid_dir: str | Path, exp_dir: str | Path,
                          lengths: Sequence[int], runs: int, dims: Sequence[str],
                          log: Callable[[str], None] = print) -> dict[str, dict[int, list[float]]]:
    """Train the single-filter model for each filter length, label dimension and seed 1..runs.

    ``cfg`` is a resolved training config (``model.name: single_filter``); each run goes to
    ``exp_dir/L<length>/<dim>/seed<k>`` and is skipped when already done, so the sweep resumes.
    Returns ``{dim: {length: [best dev CCC of each run]}}``.
    """
    import copy

    import yaml

    from emotk.training.loop import train

    if cfg["model"]["name"] != "single_filter":
        raise EmotkError(f"the receptive-field sweep trains model 'single_filter', the config names {cfg['model']['name']!r}")
    out: dict[str, dict[int, list[float]]] = {d: {} for d in dims}
    for length in lengths:
        for dim in dims:
            for seed in range(1, runs + 1):
                c = copy.deepcopy(cfg)
                c["model"]["params"]["filter_length"] = int(length)
                (head,) = c["heads"].values()
                head["dims"] = [dim]
                c["train"]["seed"] = seed
                exp = Path(exp_dir) / f"L{length}" / dim / f"seed{seed}"
                train(c, train_dir, valid_dir, exp, resume=True, log=lambda msg: None)
                done = yaml.safe_load((exp / "done").read_text(encoding="utf-8"))
                out[dim].setdefault(int(length), []).append(float(done["best_valid_ccc"]))
            v = out[dim][int(length)]
            log(f"filter length {length}, {dim}: dev CCC {np.mean(v):.4f} +- {sample_std(v):.4f} over {len(v)} runs")
    return out


def write_sweep(result: dict[str, dict[int, list[float]]], frame_shift: float, out_dir: str | Path,
                name: str = "receptive_field_sweep") -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    dims = list(result)
    lengths = sorted(next(iter(result.values())))
    header = ["filter_length", "seconds"]
    for d in dims:
        header += [f"{d}_ccc_mean", f"{d}_ccc_std", f"{d}_runs"]
    rows = []
    for L in lengths:
        row = [L, L * frame_shift]
        for d in dims:
            v = result[d][L]
            row += [float(np.mean(v)), sample_std(v), len(v)]
        rows.append(row)
    tsv = write_tsv(out_dir / f"{name}.tsv", header, rows)
    fig = _fig(6, 3.5)
    ax = fig.add_subplot()
    for d in dims:
        mean = np.array([np.mean(result[d][L]) for L in lengths])
        std = np.array([sample_std(result[d][L]) for L in lengths])
        ax.plot(lengths, mean, marker="o", label=d)
        ax.fill_between(lengths, mean - std, mean + std, alpha=0.25)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, labels=[str(L) for L in lengths])
    ax.set_xlabel("filter length (frames of 40 ms)")
    ax.set_ylabel("dev CCC (mean +- std over runs)")
    ax.set_title("Receptive-field sweep, single-filter model (paper 000 Fig. 1)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out_dir / f"{name}.png"), tsv


# Trajectories --------------------------------------------------------------------------

def _segment(T: int, shift: float, start: float, end: float | None, utt: str) -> slice:
    a = int(round(start / shift))
    b = T if end is None else min(T, int(round(end / shift)))
    if a < 0 or b - a < 2:
        raise EmotkError(f"{utt}: segment {start:g}-{end if end is not None else 'end'} s is empty for "
                         f"{T} frames of {shift:g} s")
    return slice(a, b)


def trajectory_table(ref_dir: str | Path, hyps: Mapping[str, Sequence[str | Path]], utt: str, start: float = 0.0,
                     end: float | None = None) -> tuple[dict, list[list]]:
    """Gold standard and each model's prediction on a segment of ``utt``.

    ``hyps[model]`` lists prediction dirs whose dimensions are merged (e.g. one per-dimension run
    for arousal and one for valence).  Returns ``(curves, rows)``: ``curves = {"time": t, "names":
    dims, "ref": [T, K], model: [T, K] (NaN where the model has no such dimension) ...}`` and table
    rows ``[model, dim, ccc, rmse, mean |frame-to-frame change|]``, the gold standard first.
    """
    names, shift, ref = read_frame_labels(ref_dir)
    if utt not in ref:
        raise EmotkError(f"{Path(ref_dir) / 'labels.scp'}: no recording {utt!r} (have {', '.join(sorted(ref))})")
    r = ref[utt]
    T = r.shape[0]
    preds = {}
    for model, paths in hyps.items():
        cols: dict[int, np.ndarray] = {}
        for path in paths:
            path = Path(path)
            hn, hshift, h = read_frame_labels(path)
            if not math.isclose(hshift, shift, rel_tol=1e-6):
                raise EmotkError(f"{path / 'label_frame_shift'}: {hshift:g} s, the reference has {shift:g} s")
            if utt not in h:
                raise EmotkError(f"{path / 'labels.scp'}: no recording {utt!r}")
            for k, n in enumerate(hn):
                if n not in names:
                    raise EmotkError(f"{path / 'label_names'}: dimension {n!r} is not in the reference ({' '.join(names)})")
                if names.index(n) in cols:
                    raise EmotkError(f"{path}: model {model!r} has dimension {n!r} twice")
                cols[names.index(n)] = h[utt][:, k]
                T = min(T, h[utt].shape[0])
        preds[model] = cols
    seg = _segment(T, shift, start, end, utt)
    curves = {"time": np.arange(T)[seg] * shift, "names": names, "ref": r[seg]}
    rows = [["gold standard", n, 1.0, 0.0, float(np.mean(np.abs(np.diff(r[seg, k]))))] for k, n in enumerate(names)]
    for model, cols in preds.items():
        m = np.full((seg.stop - seg.start, len(names)), np.nan)
        for k, y in cols.items():
            m[:, k] = y[seg]
        curves[model] = m
        for k, n in enumerate(names):
            if k in cols:
                y = m[:, k]
                rows.append([model, n, ccc(y, r[seg, k]), rmse(y, r[seg, k]), float(np.mean(np.abs(np.diff(y))))])
    return curves, rows


def plot_trajectories(curves: dict, rows: list[list], utt: str, out_png: str | Path, out_tsv: str | Path) -> tuple[Path, Path]:
    names = curves["names"]
    models = [k for k in curves if k not in ("time", "names", "ref")]
    fig = _fig(9, 2.6 * len(names))
    t = curves["time"]
    for k, n in enumerate(names):
        ax = fig.add_subplot(len(names), 1, k + 1)
        ax.plot(t, curves["ref"][:, k], color="k", linewidth=2, label="gold standard")
        for m in models:
            y = curves[m][:, k]
            if not np.isnan(y).any():
                ax.plot(t, y, linewidth=1, label=m)
        ax.set_ylabel(n)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.set_title(f"{utt}: predictions against the gold standard (paper 000 Fig. 5)")
            ax.legend(fontsize=8, ncol=min(4, len(models) + 1))
    ax.set_xlabel("time (s)")
    tsv = write_tsv(out_tsv, ["model", "dimension", "ccc", "rmse", "mean_abs_frame_change"], rows)
    return _save(fig, out_png), tsv


# Results tables (paper 000 Tables 1-2) -------------------------------------------------

def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1, as ``emotk report``); 0 for a single value."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {sample_std(values):.3f}"


def collect_scores(exp_root: str | Path, set_name: str) -> dict[str, dict[str, dict]]:
    """Scores of ``exp_root/<model>/<target>/<run>/scores/<set>.json``.

    Returns ``{dim: {row: {"metrics": {metric: [one value per run]}, "dirs": [run dirs]}}}``.
    ``<run>`` is ``seed<N>`` (single runs) or ``ensemble``; a row is ``<model>`` or
    ``<model> ensemble``, with `` (joint)`` when the target dir is ``joint`` (both dims at once).
    """
    out: dict[str, dict[str, dict]] = {}
    for path in sorted(Path(exp_root).glob(f"*/*/*/scores/{set_name}.json")):
        run_dir = path.parent.parent
        target, model = run_dir.parent.name, run_dir.parent.parent.name
        if not (run_dir.name == "ensemble" or run_dir.name.startswith("seed")):
            continue
        s = json.loads(path.read_text(encoding="utf-8"))
        row = model + (" (joint)" if target == "joint" else "") + (" ensemble" if run_dir.name == "ensemble" else "")
        dims = {dim: m for h in s["heads"].values() if h["kind"] == "frame_regression" for dim, m in h["metrics"].items()}
        for dim, metrics in dims.items():
            cell = out.setdefault(dim, {}).setdefault(row, {"metrics": {}, "dirs": []})
            cell["dirs"].append(run_dir)
            for m, v in metrics.items():
                cell["metrics"].setdefault(m, []).append(float(v))
    return out


def _dim_order(dims) -> list[str]:
    known = [d for d in ("arousal", "valence") if d in dims]
    return known + sorted(d for d in dims if d not in known)


def results_markdown(dev: dict, test: dict, notes: Mapping[tuple[str, str], str] | None = None) -> str:
    """Tables 1-2 of paper 000 from :func:`collect_scores` of the dev and test sets.

    One table per dimension; rows = models, single runs as mean ± std over runs, ensembles (the
    runs' averaged prediction) as one value; columns Dev RMSE / CCC and Test RMSE / CCC ("—"
    where the test labels are withheld).  Rows are ranked by dev CCC.  ``notes[(dim, row)]`` fills
    the last column (receptive field, parameters).
    """
    lines = []
    for k, dim in enumerate(_dim_order(dev)):
        rows = dev[dim]
        lines += [f"### Table {k + 1}: {dim.capitalize()} results", "",
                  "| Method | runs | Dev RMSE | Dev CCC | Test RMSE | Test CCC | model |",
                  "|---|---|---|---|---|---|---|"]
        ranked = sorted(rows, key=lambda r: -float(np.mean(rows[r]["metrics"].get("ccc", [-math.inf]))))
        for row in ranked:
            m = rows[row]["metrics"]
            t = test.get(dim, {}).get(row, {}).get("metrics", {})
            base = row[: -len(" ensemble")] if row.endswith(" ensemble") else None
            runs = f"average of {len(rows[base]['dirs'])}" if base in rows else str(len(rows[row]["dirs"]))
            lines.append(f"| {row} | {runs} | {_mean_std(m.get('rmse', []))} | {_mean_std(m.get('ccc', []))} "
                         f"| {_mean_std(t.get('rmse', []))} | {_mean_std(t.get('ccc', []))} "
                         f"| {(notes or {}).get((dim, row), '')} |")
        lines.append("")
    return "\n".join(lines)


# RESULTS.md ----------------------------------------------------------------------------

def _model_notes(rows: dict) -> dict[tuple[str, str], str]:
    """Model name, parameter count and receptive field of each row, from a run's best checkpoint."""
    from emotk.models import build_model
    from emotk.training.checkpoint import load_checkpoint

    notes = {}
    for dim, by_row in rows.items():
        for row, cell in by_row.items():
            run = next((d for d in cell["dirs"] if (d / "checkpoints" / "best.pt").is_file()), None)
            if run is None:  # an ensemble row: no model of its own
                continue
            meta = load_checkpoint(run / "checkpoints" / "best.pt")["meta"]
            m = meta["model"]
            (inp,) = meta["inputs"].values()
            out_dim = sum(len(h["names"]) for h in meta["heads"].values())
            model = build_model(m["name"], inp["dim"], out_dim, **m["params"])
            rf = model.receptive_field()
            rf_text = "whole recording" if rf is None else f"{rf} frames ({rf / inp['rate']:.1f} s)"
            n = sum(p.numel() for p in model.parameters())
            notes[(dim, row)] = f"{m['name']}, {n / 1000:.0f}k params, receptive field {rf_text}"
    return notes


def _markdown_section(path: Path, md: Path) -> list[str]:
    """An appended analysis: a TSV becomes a markdown table (with its PNG beside it, if any)."""
    import os

    if not path.is_file():
        raise EmotkError(f"--append {path}: file not found")
    text = path.read_text(encoding="utf-8").rstrip("\n")
    if path.suffix == ".tsv":
        rows = [line.split("\t") for line in text.splitlines()]
        text = "\n".join(["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
                         + ["| " + " | ".join(r) + " |" for r in rows[1:]])
        png = path.with_suffix(".png")
        if png.is_file():
            text += f"\n\n![{path.stem}]({os.path.relpath(png.resolve(), md.resolve().parent)})"
    return [f"## {path.stem.replace('_', ' ').capitalize()}", "", text, ""]


def write_results(exp_root: str | Path, out: str | Path, title: str, note: str | None, dev_set: str = "dev",
                  test_set: str = "test", append: Sequence[Path] = ()) -> tuple[int, int]:
    """RESULTS.md in the layout of paper 000 Tables 1-2, plus appended analyses; returns (rows, dimensions)."""
    out = Path(out)
    dev = collect_scores(exp_root, dev_set)
    if not dev:
        raise EmotkError(f"no {exp_root}/<model>/<target>/<run>/scores/{dev_set}.json (run 'emotk score' first)")
    test = collect_scores(exp_root, test_set)
    parts = [f"# {title}", ""]
    if note:
        parts += [f"**{note}**", ""]
    parts += [f"Generated by `emotk report-continuous {exp_root}`. CCC and RMSE are computed over the concatenation "
              "of all recordings of a partition (AVEC convention). Single-run rows: mean ± sample std (ddof=1) over the runs "
              "(seeds) counted in the runs column; "
              "ensemble rows: the runs' predictions averaged frame by frame. Test: — where the test labels are withheld. "
              + REPRODUCIBILITY,
              "", results_markdown(dev, test, _model_notes(dev))]
    for path in append:
        parts += _markdown_section(Path(path), out)
    write_text(out, "\n".join(parts).rstrip("\n") + "\n")
    return sum(len(v) for v in dev.values()), len(dev)
