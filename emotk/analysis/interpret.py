"""What a raw-waveform network learned (Wieser, Barros et al. 2018, paper 003, section 2.3).

- **Saliency maps** (data-driven, section 2.3.2): the gradient of one output unit (the predicted
  class of a head) with respect to the input waveform, by guided backpropagation (Springenberg et
  al.): at every ReLU the backward pass lets through only positive gradients at positive
  activations. ReLUs are replaced while the saliency is computed, whether the model calls
  ``nn.ReLU``, ``torch.relu`` or ``F.relu`` (a ``TorchFunctionMode``); other activations keep their
  gradient. Per piece: the Pearson correlation between the signal and its saliency map (the paper
  reports 0.50 for arousal, 0.53 for valence), and between the maps of two heads (0.96).
- **Generalized input signals** (network-driven, section 2.3.1, eq. 4): starting from low-level
  noise, the input is optimized (Adam) to maximize one output unit (a class logit) minus
  ``l2 * ||x||^2``, the network's weights fixed (eval mode). Other inputs of the model (an utterance
  vector, as in ELoR + FTR) are held at zero, the training mean after global normalization.
- **Table 6** per generalized signal: loudness (dBFS of the RMS, full scale 1.0), minimum and
  maximum amplitude, the dominant frequency band (the frequencies whose power, smoothed over
  50 Hz, is within 6 dB of the peak), and pauses: 25 ms frames every 10 ms are active when within
  30 dB of the loudest frame; a pause is a run of inactive frames between active ones (mean
  duration, count); the "voiced" length is from the first active frame to the end of the last.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from emotk.errors import EmotkError


class _GuidedRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0).to(grad.dtype)


_RELUS = {torch.relu, torch.relu_, torch.nn.functional.relu, torch.nn.functional.relu_, torch.Tensor.relu,
          torch.Tensor.relu_}


class guided_relu(TorchFunctionMode):
    """Within this context every ReLU call backpropagates guided gradients; ``calls`` counts them."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _RELUS:
            self.calls += 1
            return _GuidedRelu.apply(args[0])
        return func(*args, **(kwargs or {}))


def input_gradient(net, inputs: dict, lengths: dict, head: str, unit: torch.Tensor, wrt: str,
                   guided: bool = True) -> tuple[np.ndarray, int]:
    """``(d output[head][b, unit[b]] / d inputs[wrt] as [B, T, D], number of ReLU calls guided)``; ``net`` in eval mode."""
    x = inputs[wrt].detach().clone().requires_grad_(True)
    mode = guided_relu() if guided else contextlib.nullcontext()
    with mode:
        out, _ = net({**inputs, wrt: x}, lengths)
        y = out[head]
        y.gather(1, unit.view(-1, 1).to(y.device)).sum().backward()
    return x.grad.detach().cpu().numpy(), (mode.calls if guided else 0)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def generalized_input(net, head: str, unit: int, n_samples: int, wrt: str, others: dict, steps: int = 200,
                      lr: float = 0.01, l2: float = 1e-3, seed: int = 0, init_std: float = 1e-3):
    """Eq. 4: ``argmax_x a(x) - l2 ||x||^2`` from noise; returns ``(x [n], activation before, after)``."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(1, n_samples, 1, generator=g) * init_std).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    lengths = {wrt: torch.tensor([n_samples]), **{n: torch.ones(1, dtype=torch.long) for n in others}}

    def activation():
        out, _ = net({**others, wrt: x}, lengths)
        return out[head][0, unit]

    with torch.no_grad():
        before = float(activation())
    for _ in range(steps):
        opt.zero_grad()
        loss = -(activation() - l2 * x.pow(2).sum())
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(activation())
    return x.detach()[0, :, 0].numpy(), before, after


def signal_stats(x: np.ndarray, sr: int, frame: float = 0.025, hop: float = 0.010, floor_db: float = 30.0,
                 band_db: float = 6.0) -> dict:
    """Table 6's characteristics of one signal (see the module docstring)."""
    x = np.asarray(x, np.float64)
    eps = 1e-12
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / sr)
    width = max(1, int(round(50.0 / (freqs[1] - freqs[0])))) if len(freqs) > 1 else 1
    smooth = np.convolve(power, np.ones(width) / width, mode="same")
    band = freqs[smooth >= smooth.max() * 10 ** (-band_db / 10)]
    fl, hl = int(round(frame * sr)), int(round(hop * sr))
    n_frames = max(1, 1 + (len(x) - fl) // hl) if len(x) >= fl else 1
    frame_db = np.array([10 * np.log10(np.mean(x[i * hl: i * hl + fl] ** 2) + eps) for i in range(n_frames)])
    active = np.flatnonzero(frame_db >= frame_db.max() - floor_db)
    pauses = []
    if len(active) > 1:
        gaps = np.diff(active) - 1
        pauses = [g * hop * 1000.0 for g in gaps if g > 0]
    voiced = ((active[-1] - active[0]) * hop + frame) if len(active) else 0.0
    return {"loudness_dbfs": float(10 * np.log10(np.mean(x ** 2) + eps)), "min_amplitude": float(x.min()),
            "max_amplitude": float(x.max()), "dominant_band_khz": [float(band.min() / 1000), float(band.max() / 1000)],
            "pause_ms": float(np.mean(pauses)) if pauses else 0.0, "pauses": len(pauses),
            "voiced_s": float(min(voiced, len(x) / sr))}


# Plots -----------------------------------------------------------------------------------------------

def plot_saliency(path, x: np.ndarray, saliency: np.ndarray, sr: int, title: str) -> None:
    """Paper 003 Fig. 4: the signal; the positive saliency; the signal coloured by its saliency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(len(x)) / sr
    fig, ax = plt.subplots(3, 1, figsize=(10, 6), sharex=True)
    ax[0].plot(t, x, lw=0.5, color="k")
    ax[0].set_ylabel("signal")
    ax[1].plot(t, np.clip(saliency, 0, None), lw=0.5, color="tab:red")
    ax[1].set_ylabel("saliency > 0")
    lim = float(np.abs(saliency).max()) or 1.0
    ax[2].scatter(t, x, c=saliency, cmap="coolwarm", vmin=-lim, vmax=lim, s=0.5)
    ax[2].set_ylabel("signal")
    ax[2].set_xlabel("time (s)")
    ax[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_generalized(path, signals: dict[str, np.ndarray], sr: int, title: str) -> None:
    """Paper 003 Fig. 5: each class's generalized signal in time (top) and frequency (below)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(signals)
    fig, ax = plt.subplots(2, n, figsize=(3 * n, 4.5), squeeze=False)
    for j, (name, x) in enumerate(signals.items()):
        ax[0, j].plot(np.arange(len(x)) / sr, x, lw=0.4, color="k")
        ax[0, j].set_title(name)
        ax[0, j].set_xlabel("time (s)")
        spec = 10 * np.log10(np.abs(np.fft.rfft(x)) ** 2 + 1e-12)
        ax[1, j].plot(np.fft.rfftfreq(len(x), 1.0 / sr) / 1000, spec, lw=0.4)
        ax[1, j].set_xlabel("frequency (kHz)")
    ax[0, 0].set_ylabel("amplitude")
    ax[1, 0].set_ylabel("power (dB)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table6_markdown(stats: dict[str, dict[str, dict]]) -> str:
    """``{head: {class: signal_stats}}`` as paper 003 Table 6 (one column per head and class)."""
    cols = [(h, c) for h, per in stats.items() for c in per]
    rows = [("Loudness (dBFS)", lambda s: f"{s['loudness_dbfs']:.1f}"),
            ("Dom. f. (kHz)", lambda s: f"{s['dominant_band_khz'][0]:.2f}-{s['dominant_band_khz'][1]:.2f}"),
            ("Min. amplitude", lambda s: f"{s['min_amplitude']:.3f}"),
            ("Max. amplitude", lambda s: f"{s['max_amplitude']:.3f}"),
            ("Pause d. (ms)", lambda s: f"{s['pause_ms']:.0f} ({s['pauses']})"),
            ('"Voiced" s. (s)', lambda s: f"{s['voiced_s']:.2f}")]
    out = ["| | " + " | ".join(f"{h} {c}" for h, c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, fmt in rows:
        out.append(f"| {name} | " + " | ".join(fmt(stats[h][c]) for h, c in cols) + " |")
    return "\n".join(out) + "\n"


# The command -------------------------------------------------------------------------------------------

def _wav_input(meta: dict) -> str:
    wavs = [n for n, s in meta["inputs"].items() if s["kind"] == "wav"]
    feats = [n for n, s in meta["inputs"].items() if s["kind"] == "feats"]
    if len(wavs) != 1 or feats:
        raise EmotkError("interpret needs a raw-waveform model (one wav input, no feats input); this model reads "
                         + ", ".join(f"{n} ({s['kind']})" for n, s in meta["inputs"].items()))
    return wavs[0]


def interpret(exp_dir, data_dir, out_dir, checkpoint: str = "best", max_pieces: int = 50, steps: int = 200,
              lr: float = 0.01, l2: float = 1e-3, seconds: float | None = None, seed: int = 0,
              log: Callable[[str], None] = print) -> dict:
    """Saliency statistics on ``data_dir`` and generalized input signals per class; writes ``out_dir``."""
    import hashlib
    from pathlib import Path

    import soundfile as sf
    import yaml

    from emotk.fileio import atomic_dir
    from emotk.inference import Model, data_dir_dataset
    from emotk.training.dataset import loader

    out = Path(out_dir)
    model = Model(exp_dir, checkpoint)
    if model.kind != "torch":
        raise EmotkError(f"{exp_dir}: interpret needs a torch model (this one is scikit-learn)")
    wav = _wav_input(model.meta)
    sr = int(model.meta["inputs"][wav]["sample_rate"])
    heads = {h: s for h, s in model.meta["heads"].items() if s["kind"] == "class"}
    if not heads:
        raise EmotkError(f"{exp_dir}: interpret needs a class head; the model has {', '.join(model.meta['heads'])}")
    seg = model.meta["segments"]
    if seconds is None:
        seconds = float(seg["length"]) if seg["mode"] != "none" else 6.0
    ds = data_dir_dataset(model, data_dir)
    record = {"model": str(model.source.resolve()),
              "checkpoint_sha256": hashlib.sha256(model.source.read_bytes()).hexdigest()[:20],
              "data": str(Path(data_dir).resolve()),
              "utterances_sha256": hashlib.sha256(" ".join(ds.utts).encode()).hexdigest()[:20],
              "options": {"max_pieces": max_pieces, "steps": steps, "lr": lr, "l2": l2, "seconds": seconds,
                          "seed": seed}}
    if (out / "interpret.yaml").is_file() and yaml.safe_load((out / "interpret.yaml").read_text()) == record:
        log(f"{out}: already done with this model, data and options; skipping")
        return yaml.safe_load((out / "summary.yaml").read_text())
    net = model.net.eval()
    torch.manual_seed(seed)
    rows, per_head, between, guided_calls = [], {h: [] for h in heads}, [], 0
    picks = list(range(min(max_pieces, len(ds))))
    with atomic_dir(out) as tmp:
        for k, b in zip(picks, loader(ds, [[i] for i in picks])):
            utt = ds.utts[ds.owner[k]]
            n = int(b.lengths[wav][0])
            x = b.inputs[wav][0, :n, 0].numpy()
            maps = {}
            for h in heads:
                with torch.no_grad():
                    pred = int(net(b.inputs, b.lengths)[0][h].argmax(-1)[0])
                grad, calls = input_gradient(net, b.inputs, b.lengths, h, torch.tensor([pred]), wav)
                guided_calls += calls
                maps[h] = grad[0, :n, 0]
                r = pearson(x, maps[h])
                per_head[h].append(r)
                rows.append(f"{utt}\t{k}\t{h}\t{heads[h]['names'][pred]}\t{r:.4f}")
            if len(maps) > 1:
                a, c = list(maps.values())[:2]
                between.append(pearson(a, c))
            if k == 0:
                for h in heads:
                    plot_saliency(tmp / f"saliency_{utt}_{h}.png", x, maps[h], sr, f"{utt}: guided saliency, head {h}")
        if guided_calls == 0:
            log("the model has no ReLU: guided backpropagation equals the plain gradient")
        (tmp / "saliency.tsv").write_text("# utt piece head predicted pearson(signal, saliency)\n"
                                          + "".join(r + "\n" for r in rows), encoding="utf-8")
        others = {n: torch.zeros(1, s["dim"]) for n, s in model.meta["inputs"].items() if s["kind"] == "vector"}
        stats, activations = {}, {}
        (tmp / "generalized").mkdir()
        for h, spec in heads.items():
            signals = {}
            stats[h] = {}
            for unit, name in enumerate(spec["names"]):
                sig, before, after = generalized_input(net, h, unit, int(round(seconds * sr)), wav, others, steps,
                                                       lr, l2, seed)
                signals[name] = sig
                stats[h][name] = signal_stats(sig, sr)
                activations[f"{h} {name}"] = {"before": before, "after": after}
                sf.write(tmp / "generalized" / f"{h}_{name}.wav", sig.astype(np.float32), sr, subtype="FLOAT")
            plot_generalized(tmp / f"generalized_{h}.png", signals, sr, f"generalized input signals, head {h}")
        (tmp / "table6.md").write_text(table6_markdown(stats), encoding="utf-8")
        summary = {"pieces": len(picks), "saliency_signal_pearson": {h: float(np.nanmean(v)) for h, v in per_head.items()},
                   "saliency_between_heads_pearson": float(np.nanmean(between)) if between else None,
                   "guided_relu_calls": guided_calls, "generalized": stats, "activation": activations}
        (tmp / "summary.yaml").write_text(yaml.safe_dump(summary, sort_keys=False), encoding="utf-8")
        (tmp / "interpret.yaml").write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")
    log(f"{out}: saliency of {len(picks)} pieces (mean pearson with the signal: "
        + ", ".join(f"{h} {v:.3f}" for h, v in summary["saliency_signal_pearson"].items())
        + f"); generalized signals of {sum(len(s['names']) for s in heads.values())} classes")
    return summary
