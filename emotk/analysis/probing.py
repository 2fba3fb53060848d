"""Module-wise analysis of a trained model (paper 002, section 7.5, Table 5 and Fig. 3).

A model names its modules in a class attribute ``probe_modules = {module: submodule path}`` (the
X-CLDNNs: cnn, blstm, mlp; the LDNN: blstm, mlp). Forward hooks take each module's output on every
utterance of a data dir; a sequence output (CNN, BLSTM) is mean-pooled over its valid steps, as in
the paper, and the MLP's output is the last layer's logits (the softmax lives in the loss). ``raw``,
the model's input mean-pooled over valid frames, is the paper's lower bound (for the CLDNNs that is
the unspliced frame: the splicing happens inside the model). An utterance cut into segments gets
the mean of its pieces.

Per module and label (every class head of the model, ``speaker`` from utt2spk, ``gender`` from
spk2gender when the data dir has it):

- **probe UA**: a linear SVM (scikit-learn ``LinearSVC``, C = 1, ``class_weight='balanced'``, after
  z-normalization with the training set's statistics) trained on the training set's activations and
  scored (UA) on the test set's. Labels with a test class the training set lacks (speakers under a
  speaker-independent split) get no probe (NaN), as do labels with fewer than two training classes.
- **inertia ratio** rho = omega_i / omega_o on the training set's activations (section 7.5,
  Eqs. 15-17, the original representations, not the LDA projections), C the set of classes:
  omega_i = (1/|C|) sum_c (1/|c|) sum_{s in c} ||p_c - p_s||^2 (mean squared distance to the class
  centre, averaged over classes), omega_o = 1/(|C|^2 - |C|) sum_c sum_{c' != c} ||p_c' - p_c||^2 (mean
  squared distance between the centres of two different classes). Smaller is a better clustering;
  0 when every class collapses to a point.
- **LDA projection** of the training set's activations on the first min(K - 1, 2) discriminants
  (scikit-learn ``LinearDiscriminantAnalysis``, class priors = class proportions), one scatter per
  module and label, coloured by class with the class centres labelled and rho as the title (Fig. 3).

``probe_modules`` writes ``probe.tsv`` (module, label, classes, probe_ua, inertia_ratio), ``lda.png``
and ``record.yaml`` (what it was computed from: a re-run with the same inputs is skipped).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from emotk.data.datadir import DataDir, read_table
from emotk.errors import EmotkError
from emotk.fileio import atomic_dir, atomic_path
from emotk.metrics.classification import ua

RAW = "raw"
PROBE = "LinearSVC(C=1, class_weight=balanced) on z-normalized activations"


# Measures ----------------------------------------------------------------------------------------

def inertia_ratio(x: np.ndarray, labels) -> float:
    """rho = omega_i / omega_o of paper 002, Eqs. 15-17 (see the module docstring); NaN for fewer than two
    classes, inf when distinct classes share one centre but are spread around it."""
    x, labels = np.asarray(x, dtype=np.float64), np.asarray(labels)
    classes = sorted(set(labels.tolist()))
    if len(classes) < 2:
        return float("nan")
    centres = np.stack([x[labels == c].mean(axis=0) for c in classes])
    omega_i = np.mean([((x[labels == c] - centres[k]) ** 2).sum(axis=1).mean() for k, c in enumerate(classes)])
    pair = ((centres[:, None, :] - centres[None, :, :]) ** 2).sum(axis=-1)  # zero diagonal
    n = len(classes)
    omega_o = pair.sum() / (n * n - n)
    if omega_o == 0:
        return float("nan") if omega_i == 0 else float("inf")
    return float(omega_i / omega_o)


def svm_probe(x_train: np.ndarray, y_train, x_test: np.ndarray, y_test, seed: int = 0) -> float:
    """UA on the test set of the linear SVM probe (``PROBE``) trained on the training set."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    clf = make_pipeline(StandardScaler(), LinearSVC(C=1.0, class_weight="balanced", max_iter=20000, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on hard probes: the UA says how it went
        clf.fit(x_train, list(y_train))
    labels = sorted(set(y_train) | set(y_test))
    return ua(list(y_test), clf.predict(x_test).tolist(), labels)


def lda_projection(x: np.ndarray, labels) -> np.ndarray:
    """``[N, min(K - 1, 2)]`` LDA projection of ``x`` fitted on ``x`` (class priors = class proportions)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    k = len(set(labels))
    if k < 2:
        raise EmotkError(f"LDA needs at least two classes, got {k}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # collinear variables (dead ReLU units) are expected
        return LinearDiscriminantAnalysis(n_components=min(k - 1, 2)).fit_transform(x, list(labels))


# Activations -------------------------------------------------------------------------------------

def module_paths(net) -> dict[str, str]:
    """``{module: submodule path}`` of a model (the network inside the trainer's adapter)."""
    paths = getattr(type(net), "probe_modules", None)
    if not paths:
        name = getattr(net, "registry_name", type(net).__name__)
        raise EmotkError(f"model {name!r} names no modules to probe (class attribute probe_modules)")
    return dict(paths)


def _utterance_level(output, args) -> np.ndarray:
    """A module's output per example: ``[B, T, D]`` sequences mean-pooled over the lengths the module got."""
    import torch

    from emotk.models.layers import masked_mean

    y = output[0] if isinstance(output, tuple) else output
    if y.dim() == 3:
        lengths = next((a for a in args if torch.is_tensor(a) and a.dim() == 1 and not a.is_floating_point()), None)
        if lengths is None:
            raise EmotkError("a probed module returns a sequence but was given no lengths")
        y = masked_mean(y, lengths)
    return y.detach().float().cpu().numpy()


def module_activations(model, data_dir: str | Path, batch_size: int = 16) -> tuple[list[str], dict[str, np.ndarray]]:
    """Utterance ids and ``{module: [N, D]}`` activations (``raw`` first) of a trained ``emotk.inference.Model``."""
    import torch

    from emotk.inference import data_dir_dataset
    from emotk.models.layers import masked_mean
    from emotk.training.dataset import eval_batches, loader

    if model.kind != "torch":
        raise EmotkError(f"{model.exp}: module-wise probing needs a torch model")
    net = getattr(model.net, "net", model.net)
    paths = module_paths(net)
    if len(model.meta["inputs"]) != 1:
        raise EmotkError(f"{model.exp}: module-wise probing reads models with one input")
    (name,) = model.meta["inputs"]
    ds = data_dir_dataset(model, data_dir)
    pieces: dict[str, list] = {m: [None] * len(ds) for m in (RAW, *paths)}
    current: dict[str, np.ndarray] = {}
    hooks = []
    for module, path in paths.items():
        try:
            sub = net.get_submodule(path)
        except AttributeError:
            raise EmotkError(f"{model.exp}: probe module {module!r}: the model has no submodule {path!r}") from None
        def keep(_module, args, output, key=module):
            current[key] = _utterance_level(output, args)

        hooks.append(sub.register_forward_hook(keep))
    try:
        with torch.no_grad():
            for b in loader(ds, eval_batches(ds, batch_size)):
                b = b.to(model.device)
                current.clear()
                model.net(b.inputs, b.lengths)
                x, n = b.inputs[name], b.lengths[name]
                current[RAW] = (masked_mean(x, n) if x.dim() == 3 else x).float().cpu().numpy()
                for module, values in current.items():
                    for j, i in enumerate(b.index):
                        pieces[module][i] = values[j]
    finally:
        for h in hooks:
            h.remove()
    owner = np.asarray(ds.owner)
    out = {}
    for module, values in pieces.items():
        v = np.stack(values).astype(np.float64)
        sums = np.zeros((len(ds.utts), v.shape[1]))
        np.add.at(sums, owner, v)
        out[module] = sums / np.bincount(owner, minlength=len(ds.utts))[:, None]
    return ds.utts, out


# Labels ------------------------------------------------------------------------------------------

def utterance_labels(model, data_dir: str | Path, utts: list[str]) -> dict[str, list[str]]:
    """``{label: [class per utterance]}``: every class head of the model, speaker, and gender when known."""
    d = DataDir(data_dir)
    out = {}
    for head, spec in model.meta["heads"].items():
        if spec["kind"] != "class":
            continue
        d.require(spec["labels"], hint=f"the labels of head {head!r}")
        table = read_table(d.path / spec["labels"], parse=str)
        missing = [u for u in utts if u not in table]
        if missing:
            raise EmotkError(f"{d.path / spec['labels']}: utterance {missing[0]!r} has no label")
        out[head] = [table[u] for u in utts]
    out["speaker"] = [d.utt2spk[u] for u in utts]
    if d.has("spk2gender"):
        gender = d.table("spk2gender")
        missing = sorted({s for s in out["speaker"] if s not in gender})
        if missing:
            raise EmotkError(f"{d.path / 'spk2gender'}: speaker {missing[0]!r} has no gender")
        out["gender"] = [gender[s] for s in out["speaker"]]
    return out


# The analysis ------------------------------------------------------------------------------------

def _file_digest(path: Path, h) -> None:
    h.update(path.read_bytes())


def _data_digest(model, data_dir: Path, h) -> None:
    """The tables the analysis reads, and the size and time of every archive their scp entries name."""
    d = DataDir(data_dir)
    names = ["utt2spk", "spk2gender"] + [s["labels"] for s in model.meta["heads"].values() if s["kind"] == "class"]
    for spec in model.meta["inputs"].values():
        names += [spec["table"]] + ([spec["norm_table"]] if spec.get("norm_table") else [])
    for name in names:
        if not d.has(name):
            continue
        h.update(f"{name}\n".encode())
        _file_digest(d.path / name, h)
        if name.endswith(".scp"):
            entries = read_table(d.path / name, parse=str).values()
            arks = sorted({d.resolve(v).rpartition(":")[0] or d.resolve(v) for v in entries})
            for ark in arks:
                st = Path(ark).stat()
                h.update(f"{ark} {st.st_size} {st.st_mtime_ns}\n".encode())


def _record(model, train_dir: Path, test_dir: Path) -> dict:
    out = {"model": str(model.exp.resolve()), "checkpoint": str(model.source.resolve()),
           "train": str(train_dir.resolve()), "test": str(test_dir.resolve()), "probe": PROBE}
    h = hashlib.sha256()
    _file_digest(model.source, h)
    for d in (train_dir, test_dir):
        h.update(f"--- {d.resolve()}\n".encode())
        _data_digest(model, d, h)
    out["digest"] = h.hexdigest()[:20]
    return out


def probe_table(train: dict[str, np.ndarray], test: dict[str, np.ndarray], train_labels: dict[str, list[str]],
                test_labels: dict[str, list[str]], log: Callable[[str], None] = print) -> list[dict]:
    """One row per (module, label): classes, probe UA (NaN when not applicable) and inertia ratio."""
    rows = []
    for label, y_train in train_labels.items():
        y_test = test_labels.get(label)
        classes = sorted(set(y_train))
        why = None
        if y_test is None:
            why = "the test set has no such labels"
        elif len(classes) < 2:
            why = f"one training class ({classes[0]})"
        else:
            unseen = sorted(set(y_test) - set(classes))
            if unseen:
                why = f"{len(unseen)} test classes are not in the training set (e.g. {unseen[0]})"
        if why:
            log(f"probe-modules: {label}: no SVM probe: {why}")
        for module in train:
            ua_ = float("nan") if why else svm_probe(train[module], y_train, test[module], y_test)
            rows.append({"module": module, "label": label, "classes": len(classes), "probe_ua": ua_,
                         "inertia_ratio": inertia_ratio(train[module], y_train)})
    return rows


def write_tsv(rows: list[dict], path: Path) -> None:
    cols = ["module", "label", "classes", "probe_ua", "inertia_ratio"]
    lines = ["\t".join(cols)] + ["\t".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols)
                                 for r in rows]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot_lda(acts: dict[str, np.ndarray], labels: dict[str, list[str]], path: Path, title: str = "") -> Path:
    """Fig. 3 of paper 002: a row per label, a column per module; LDA scatter coloured by class, class
    centres labelled, rho in each title. One-discriminant projections (two classes) are spread in y."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [lab for lab, y in labels.items() if len(set(y)) >= 2]
    fig = Figure(figsize=(3.6 * len(acts), 3.2 * max(len(rows), 1)))
    FigureCanvasAgg(fig)
    jitter = np.random.default_rng(0).uniform(-1, 1, len(next(iter(labels.values()))))
    for r, label in enumerate(rows):
        y = np.asarray(labels[label])
        classes = sorted(set(y.tolist()))
        cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
        for c, (module, x) in enumerate(acts.items()):
            ax = fig.add_subplot(len(rows), len(acts), r * len(acts) + c + 1)
            z = lda_projection(x, y)
            one_d = z.shape[1] == 1
            z = np.column_stack([z[:, 0], jitter]) if one_d else z
            for k, cls in enumerate(classes):
                sel = y == cls
                ax.scatter(z[sel, 0], z[sel, 1], s=8, color=cmap(k % cmap.N), alpha=0.6, linewidths=0)
                cx, cy = z[sel].mean(axis=0)
                ax.text(cx, cy, cls, fontsize=8, weight="bold", ha="center", va="center")
            ax.set_title(f"{module} / {label}: rho = {inertia_ratio(x, y):.3f}", fontsize=9)
            ax.tick_params(labelsize=6)
            if one_d:
                ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path


def probe_modules(exp: str | Path, train_dir: str | Path, test_dir: str | Path, out_dir: str | Path, *,
                  checkpoint: str = "best", batch_size: int = 16, device: str = "cpu",
                  log: Callable[[str], None] = print) -> Path:
    """The whole analysis into ``out_dir`` (``probe.tsv``, ``lda.png``, ``record.yaml``); skipped when
    ``out_dir`` already holds it for the same model and data."""
    from emotk.data.datadir import validate_data_dir
    from emotk.inference import Model

    out, train_dir, test_dir = Path(out_dir), Path(train_dir), Path(test_dir)
    for d in (train_dir, test_dir):
        validate_data_dir(d)
    model = Model(exp, checkpoint=checkpoint, device=device)
    record = _record(model, train_dir, test_dir)
    done = out / "record.yaml"
    if done.is_file() and yaml.safe_load(done.read_text(encoding="utf-8")) == record:
        log(f"probe-modules: {out} is up to date (same model and data)")
        return out
    if out.exists() and not done.is_file() and (not out.is_dir() or any(out.iterdir())):
        raise EmotkError(f"{out}: exists and is not an output of probe-modules (no record.yaml); choose another --out")
    train_utts, train = module_activations(model, train_dir, batch_size)
    test_utts, test = module_activations(model, test_dir, batch_size)
    train_labels = utterance_labels(model, train_dir, train_utts)
    test_labels = utterance_labels(model, test_dir, test_utts)
    rows = probe_table(train, test, train_labels, test_labels, log)
    with atomic_dir(out) as tmp:
        write_tsv(rows, tmp / "probe.tsv")
        title = f"{Path(exp).name}: {train_dir} ({len(train_utts)} utterances)"
        plot_lda(train, train_labels, tmp / "lda.png", title=title)
        (tmp / "record.yaml").write_text(yaml.safe_dump(record, sort_keys=True), encoding="utf-8")
    for r in rows:
        log(f"probe-modules: {r['module']:>6} {r['label']:<8} probe UA {100 * r['probe_ua']:6.2f}%  "
            f"inertia ratio {r['inertia_ratio']:.4f}")
    log(f"probe-modules: wrote {out / 'probe.tsv'} and {out / 'lda.png'}")
    return out
