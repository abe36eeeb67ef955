"""Training, calibration and evaluation of the classifiers, and their model cards.

The signal model trains on clean PTB-XL signals (strat_fold 1-8) made to look like digitised photos: each training
example is cut to the windows a random layout shows (:func:`ecgcore.classify.layout_mask`) and passed through
:func:`digitization_noise` (time jitter and stretch, baseline offsets, gain error, smoothing, quantisation, ragged
window ends, dropped segments). strat_fold 9 selects the epoch (early stopping) and calibrates the probabilities
(temperature scaling); strat_fold 10 is touched once, for the model card.

A run folder holds ``config.json``, per-member checkpoints (resumable), ``history.jsonl`` and the exported weights,
card and plots under ``export/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter1d
from scipy.stats import rankdata

from .checkpoints import atomic_torch_save, restore_checkpoint
from .classify import (
    IMAGE_CONFIG,
    SIGNAL_CONFIG,
    SIGNAL_FS,
    SIGNAL_SAMPLES,
    SignalEnsemble,
    layout_mask,
    prepare_signal,
    save_weights,
)
from .constants import LABEL_INDEX, LABELS, TEST_FOLDS, TRAIN_FOLDS, VALIDATION_FOLDS
from .errors import ModelError
from .layouts import LAYOUT_NAMES
from .progress import Reporter
from .signals import PtbXl

MI = LABEL_INDEX["mi"]

# --- metrics --------------------------------------------------------------------------------------------


def auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied scores averaged); NaN when one class is absent."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = len(LABELS)) -> np.ndarray:
    """(true, predicted) counts."""
    return np.bincount(np.asarray(y_true) * n_classes + np.asarray(y_pred), minlength=n_classes**2).reshape(
        n_classes, n_classes
    )


def f1_per_class(confusion: np.ndarray) -> np.ndarray:
    tp = np.diag(confusion).astype(float)
    precision = tp / np.maximum(confusion.sum(axis=0), 1)
    recall = tp / np.maximum(confusion.sum(axis=1), 1)
    return np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    """Top-label ECE: the confidence-weighted gap between confidence and accuracy over equal-width bins."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    conf_sum = np.bincount(bins, confidence, minlength=n_bins)
    acc_sum = np.bincount(bins, correct.astype(float), minlength=n_bins)
    return float(np.abs(conf_sum - acc_sum).sum() / max(len(y_true), 1))


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """MI-vs-rest AUROC, 3-class macro F1 (argmax), accuracy, ECE, per-class F1 and the confusion matrix."""
    y_true = np.asarray(y_true)
    pred = probs.argmax(axis=1)
    confusion = confusion_matrix(y_true, pred)
    f1 = f1_per_class(confusion)
    return {
        "n": int(len(y_true)),
        "mi_auroc": auroc(y_true == MI, probs[:, MI]),
        "macro_f1": float(f1.mean()),
        "accuracy": float((pred == y_true).mean()),
        "ece": expected_calibration_error(y_true, probs),
        "f1": {label: float(v) for label, v in zip(LABELS, f1)},
        "confusion": confusion.tolist(),
    }


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood (a 1-D search over log T, coarse then fine)."""

    def nll(t: float) -> float:
        p = softmax(logits, t)[np.arange(len(y_true)), y_true]
        return float(-np.log(np.maximum(p, 1e-12)).mean())

    grid = np.exp(np.linspace(np.log(0.2), np.log(10.0), 81))
    best = grid[int(np.argmin([nll(t) for t in grid]))]
    fine = best * np.exp(np.linspace(-0.05, 0.05, 41))
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


# --- plots ----------------------------------------------------------------------------------------------


def plot_confusions(confusions: dict[str, np.ndarray], path: Path, title: str) -> None:
    """One row-normalised confusion matrix per named condition, counts written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(confusions)
    cols = min(4, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.3 * rows + 0.5), squeeze=False)
    short = ["normal", "other", "MI"]
    for ax, name in zip(axes.flat, names):
        cm = np.asarray(confusions[name])
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.6 else "black")
        ax.set_xticks(range(3), short)
        ax.set_yticks(range(3), short)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str, n_bins: int = 10) -> None:
    """Reliability diagram (top-label confidence vs accuracy) for each named (y_true, probs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    for name, (y_true, probs) in curves.items():
        confidence = probs.max(axis=1)
        correct = probs.argmax(axis=1) == y_true
        bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
        counts = np.bincount(bins, minlength=n_bins)
        keep = counts > 0
        conf = np.bincount(bins, confidence, minlength=n_bins)[keep] / counts[keep]
        acc = np.bincount(bins, correct.astype(float), minlength=n_bins)[keep] / counts[keep]
        ece = expected_calibration_error(y_true, probs, n_bins)
        ax.plot(conf, acc, marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- signal data and augmentation ----------------------------------------------------------------------


@dataclass
class SignalSet:
    """Clean 100 Hz records of some strat_folds: signals (N, 1000, 12) mV, labels (N,) class index."""

    signals: np.ndarray
    labels: np.ndarray
    ecg_ids: np.ndarray
    statements: list[set[str]] = field(default_factory=list)  # each record's statement names (PtbXl.statements)

    def __len__(self) -> int:
        return len(self.labels)

    def aux_matrix(self, names: list[str]) -> np.ndarray:
        """(N, len(names)) 0/1 targets: whether each record carries each statement."""
        out = np.zeros((len(self), len(names)), np.float32)
        for i, have in enumerate(self.statements):
            out[i] = [name in have for name in names]
        return out


def aux_target_names(data: SignalSet, min_count: int) -> list[str]:
    """Statements carried by at least ``min_count`` training records, most frequent first (ties by name)."""
    counts: dict[str, int] = {}
    for have in data.statements:
        for name in have:
            counts[name] = counts.get(name, 0) + 1
    return sorted((n for n, c in counts.items() if c >= min_count), key=lambda n: (-counts[n], n))


def load_signal_set(db: PtbXl, folds: tuple[int, ...], reporter: Reporter | None = None) -> SignalSet:
    """Read every record of ``folds`` at 100 Hz (cut or NaN-padded to 10 s)."""
    ids = db.ids(folds=folds)
    signals = np.full((len(ids), SIGNAL_SAMPLES, 12), np.nan, np.float32)
    labels = np.zeros(len(ids), np.int64)
    for i, ecg_id in enumerate(ids):
        record = db.record(ecg_id, fs=SIGNAL_FS)
        n = min(SIGNAL_SAMPLES, record.signal.shape[0])
        signals[i, :n] = record.signal[:n]
        labels[i] = LABEL_INDEX[record.label]
        if reporter is not None:
            reporter.advance(1)
    return SignalSet(signals, labels, np.asarray(ids), [db.statements(ecg_id) for ecg_id in ids])


@dataclass
class NoiseOptions:
    """Strength of the digitisation-like corruption (standard deviations or ranges, in samples at 100 Hz / mV)."""

    p_clean: float = 0.15  # share of examples that only get the layout's windows
    stretch_sd: float = 0.02  # time-scale error from a misread grid pitch
    jitter_sd: float = 1.5  # per-lead misalignment of a digitised window (samples)
    gain_sd: float = 0.08  # record-level amplitude error (vertical pitch)
    lead_gain_sd: float = 0.04
    offset_sd: float = 0.1  # per-lead baseline offset (mV)
    wander_max: float = 0.1  # per-lead sinusoidal wander amplitude (mV)
    smooth_max: float = 1.5  # Gaussian smoothing sigma (samples): trace thickness averaged by the digitiser
    noise_max: float = 0.03  # white noise sd (mV)
    quantum: tuple[float, float] = (0.005, 0.05)  # amplitude step of one pixel (mV)
    trim_max: int = 15  # ragged window ends (samples)
    p_drop_segment: float = 0.2  # per lead: one gap where the trace was lost
    drop_len: tuple[int, int] = (10, 50)
    p_drop_lead: float = 0.02  # per lead: lost entirely


def scaled_noise(noise: dict[str, Any], scale: float) -> dict[str, Any]:
    """Noise options (as a dict) with every strength multiplied by ``scale``; probabilities and ranges of ends and
    gaps are kept, the upper amplitude quantum is scaled."""
    strengths = ("stretch_sd", "jitter_sd", "gain_sd", "lead_gain_sd", "offset_sd", "wander_max", "smooth_max",
                 "noise_max")
    out = {k: (v * scale if k in strengths else v) for k, v in noise.items()}
    low, high = noise["quantum"]
    out["quantum"] = (min(low, high * scale), max(low, high * scale)) if scale > 0 else (1e-6, 1e-6)
    return out


def _sample_columns(signal: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of each column of ``signal`` (n, L) at fractional ``positions`` (m, L); NaN outside."""
    n = signal.shape[0]
    inside = (positions >= 0) & (positions <= n - 1)
    lo = np.clip(np.floor(positions).astype(int), 0, n - 2)
    frac = np.clip(positions - lo, 0.0, 1.0).astype(np.float32)
    cols = np.arange(signal.shape[1])[None, :]
    values = signal[lo, cols] * (1 - frac) + signal[lo + 1, cols] * frac
    return np.where(inside, values, np.nan).astype(np.float32)


def digitization_noise(signal: np.ndarray, rng: np.random.Generator, layout: str,
                       options: NoiseOptions | None = None, clean: bool | None = None) -> np.ndarray:
    """A clean (1000, 12) record made to look like the digitisation of a photo printed in ``layout``.

    Returns (1000, 12) with NaN wherever the layout (or a lost trace) shows nothing. For the seed's 1.8 s layout the
    window is taken from a random point of the record (the seed printed the first 1.8 s; any 1.8 s is as good an
    example), which multiplies the examples that layout sees.
    """
    o = options or NoiseOptions()
    n, n_leads = signal.shape
    clean = bool(rng.random() < o.p_clean) if clean is None else clean
    observed = layout_mask(layout, n)
    shown = int(observed.any(axis=1).sum())
    if layout == "seed-3x4":
        start = rng.uniform(0, n - shown - 2)
    else:
        start = 0.0 if clean else rng.normal(0, 2.0)
    if clean:
        positions = start + np.repeat(np.arange(n, dtype=np.float64)[:, None], n_leads, axis=1)
        out = _sample_columns(signal, positions)
        out[~observed] = np.nan
        return out

    sigma = rng.uniform(0, o.smooth_max)
    source = gaussian_filter1d(signal, sigma, axis=0, mode="nearest") if sigma > 0.3 else signal
    stretch = float(np.clip(rng.normal(1.0, o.stretch_sd), 0.94, 1.06))
    jitter = rng.normal(0, o.jitter_sd, n_leads)
    positions = start + np.arange(n, dtype=np.float64)[:, None] * stretch + jitter[None, :]
    out = _sample_columns(source, positions)

    out *= rng.normal(1.0, o.gain_sd) * rng.normal(1.0, o.lead_gain_sd, n_leads).astype(np.float32)
    t = np.arange(n, dtype=np.float32)[:, None] / SIGNAL_FS
    wander = rng.uniform(0, o.wander_max, n_leads) * np.sin(
        2 * np.pi * rng.uniform(0.05, 0.5, n_leads) * t + rng.uniform(0, 2 * np.pi, n_leads))
    out += (rng.normal(0, o.offset_sd, n_leads) + wander).astype(np.float32)
    out += rng.normal(0, rng.uniform(0, o.noise_max), out.shape).astype(np.float32)
    quantum = rng.uniform(*o.quantum)
    out = np.round(out / quantum) * quantum

    # What the photo shows: the layout's windows, with ragged ends, gaps and the odd lost lead.
    rows = np.arange(n)[:, None]
    first = np.argmax(observed, axis=0)
    last = n - 1 - np.argmax(observed[::-1], axis=0)
    trim_start = rng.integers(0, o.trim_max + 1, n_leads) * (rng.random(n_leads) < 0.5)
    trim_end = rng.integers(0, o.trim_max + 1, n_leads) * (rng.random(n_leads) < 0.5)
    observed &= (rows >= first + trim_start) & (rows <= last - trim_end)
    drop = rng.random(n_leads) < o.p_drop_segment
    drop_start = first + rng.random(n_leads) * np.maximum(last - first, 1)
    drop_len = rng.integers(o.drop_len[0], o.drop_len[1] + 1, n_leads)
    observed &= ~(drop & (rows >= drop_start) & (rows < drop_start + drop_len))
    observed &= ~(rng.random(n_leads) < o.p_drop_lead)
    out[~observed] = np.nan
    return out.astype(np.float32)


def signal_batch(signals: np.ndarray, rng: np.random.Generator, layouts: list[str],
                 options: NoiseOptions | None = None, clean: bool | None = None) -> np.ndarray:
    """Model inputs (B, 24, 1000) for clean records, each with its layout from ``layouts`` (one per record)."""
    return np.stack([prepare_signal(digitization_noise(s, rng, layout, options, clean)) for s, layout in zip(signals, layouts)])


# --- signal training -------------------------------------------------------------------------------------

LAYOUT_WEIGHTS = {"seed-3x4": 0.3, "3x4+II": 0.3, "6x2": 0.2, "12x1": 0.2}


@dataclass
class SignalTrainConfig:
    """Hyper-parameters of a signal-model run (stored as config.json in the run folder)."""

    epochs: int = 80
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.05
    aux_weight: float = 0.0  # weight of the auxiliary statement loss (0 = 3-class loss only)
    aux_min_count: int = 20  # a statement becomes an auxiliary target when this many training records carry it
    patience: int = 20
    members: int = 1
    seed: int = 0
    model: dict[str, Any] = field(default_factory=lambda: dict(SIGNAL_CONFIG))
    noise: dict[str, Any] = field(default_factory=lambda: asdict(NoiseOptions()))
    layout_weights: dict[str, float] = field(default_factory=lambda: dict(LAYOUT_WEIGHTS))
    train_folds: tuple[int, ...] = TRAIN_FOLDS
    validation_folds: tuple[int, ...] = VALIDATION_FOLDS
    test_folds: tuple[int, ...] = TEST_FOLDS


def class_weights(labels: np.ndarray, n_classes: int = len(LABELS)) -> np.ndarray:
    """Inverse class frequency, scaled to mean 1."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    w = len(labels) / (n_classes * np.maximum(counts, 1))
    return w / w.mean()


def evaluation_inputs(data: SignalSet, seed: int, options: NoiseOptions) -> dict[str, np.ndarray]:
    """Fixed inputs for evaluation: each layout clean (just its windows) and with digitisation noise."""
    inputs = {}
    for i, layout in enumerate(LAYOUT_NAMES):
        rng = np.random.default_rng([seed, i])
        layouts = [layout] * len(data)
        # The seed layout's 1.8 s is the record's first 1.8 s when clean, as printed.
        clean = np.stack([prepare_signal(np.where(layout_mask(layout), s, np.nan)) for s in data.signals])
        inputs[f"clean/{layout}"] = clean
        inputs[f"noisy/{layout}"] = signal_batch(data.signals, rng, layouts, options, clean=False)
    return inputs


def predict_logits(model: torch.nn.Module, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(inputs), batch_size):
            out.append(model(torch.from_numpy(inputs[i : i + batch_size])).numpy())
    return np.concatenate(out).astype(np.float64)


def _member_model(config: dict[str, Any]) -> torch.nn.Module:
    return SignalEnsemble({**config, "members": 1})


def train_signal_member(member: int, cfg: SignalTrainConfig, train: SignalSet, val_inputs: dict[str, np.ndarray],
                        val_labels: np.ndarray, run_dir: Path, reporter: Reporter) -> Path:
    """Train one member (resuming from its checkpoint); returns the path of its best weights."""
    folder = run_dir / f"member{member}"
    folder.mkdir(parents=True, exist_ok=True)
    best_path = folder / "best.safetensors"
    if (folder / "done.json").is_file():
        reporter.log(f"member {member}: already trained")
        return best_path
    seed = cfg.seed + 1000 * member
    torch.manual_seed(seed)
    model = _member_model(cfg.model)
    steps = int(np.ceil(len(train) / cfg.batch_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps,
                                                    pct_start=0.15)
    weights = torch.tensor(class_weights(train.labels), dtype=torch.float32)
    aux_names = list(cfg.model.get("aux_targets") or ())
    aux = train.aux_matrix(aux_names) if aux_names else None
    n_classes = len(LABELS)  # the class logits come first, the auxiliary statements after them
    options = NoiseOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.noise.items()})
    layout_names = list(cfg.layout_weights)
    layout_p = np.asarray([cfg.layout_weights[k] for k in layout_names], float)
    layout_p /= layout_p.sum()
    start_epoch, best_score, best_epoch = 0, -np.inf, -1
    checkpoint = folder / "checkpoint.pt"
    if checkpoint.is_file():
        start_epoch, best_score, best_epoch = _load_checkpoint(checkpoint, model, optimizer, scheduler)
        reporter.advance(start_epoch)  # the progress counts the epochs done before the interruption
        reporter.log(f"member {member}: resumed after epoch {start_epoch - 1}")
    _drop_history_from(run_dir / "history.jsonl", start_epoch, member)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(train))
        model.train()
        losses = []
        for b in range(steps):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            layouts = list(rng.choice(layout_names, size=len(idx), p=layout_p))
            x = torch.from_numpy(signal_batch(train.signals[idx], rng, layouts, options))
            y = torch.from_numpy(train.labels[idx])
            logits = model.members[0].forward_all(x)
            loss = F.cross_entropy(logits[:, :n_classes], y, weight=weights, label_smoothing=cfg.label_smoothing)
            if aux is not None:
                loss = loss + cfg.aux_weight * F.binary_cross_entropy_with_logits(
                    logits[:, n_classes:], torch.from_numpy(aux[idx]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        values: dict[str, float] = {"train_loss": float(np.mean(losses))}
        aurocs, f1s = [], []
        for name, inputs in val_inputs.items():
            probs = softmax(predict_logits(model, inputs))
            m = classification_metrics(val_labels, probs)
            values[f"val_mi_auroc/{name}"] = m["mi_auroc"]
            if name.startswith("noisy/"):
                aurocs.append(m["mi_auroc"])
                f1s.append(m["macro_f1"])
        # Selection: MI AUROC under digitisation noise, averaged over layouts, with macro F1 as a lesser term.
        score = float(np.mean(aurocs) + 0.25 * np.mean(f1s))
        values.update(val_mi_auroc=float(np.mean(aurocs)), val_macro_f1=float(np.mean(f1s)), val_score=score,
                      epoch_s=time.time() - t0)
        if score > best_score:
            best_score, best_epoch = score, epoch
            save_weights(best_path, "signal", model)
        reporter.metrics(epoch, **{k: round(v, 4) for k, v in values.items()})
        with open(run_dir / "history.jsonl", "a") as f:
            f.write(json.dumps({"member": member, "epoch": epoch, **values, "best_epoch": best_epoch}) + "\n")
        _save_checkpoint(checkpoint, model, optimizer, scheduler, epoch, best_score, best_epoch)
        reporter.advance(1, message=f"member {member} epoch {epoch}")
        if epoch - best_epoch >= cfg.patience:
            reporter.log(f"member {member}: early stop at epoch {epoch} (best {best_epoch}, score {best_score:.4f})")
            break
    _write_atomic(folder / "done.json", json.dumps({"best_epoch": best_epoch, "best_score": best_score}) + "\n")
    return best_path


def load_member_states(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Merge single-member weights into one ensemble state dict (members.K.*)."""
    from safetensors.torch import load_file

    state = {}
    for k, path in enumerate(paths):
        for name, tensor in load_file(str(path)).items():
            state[name.replace("members.0.", f"members.{k}.", 1)] = tensor
    return state


def train_signal(cfg: SignalTrainConfig, ptbxl_root: str | Path, run_dir: str | Path, command: str = "",
                 export_only: bool = False) -> dict[str, Any]:
    """Train (or resume) a signal-model run, calibrate it on fold 9, test it on fold 10; write ``export/``.

    With ``export_only`` no training happens: the members finished so far form the exported ensemble (for a run
    that has to be shipped before all its members are trained). Returns the model card.
    """
    torch.set_num_threads(1)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(run_dir / "config.json", json.dumps(asdict(cfg), indent=1) + "\n")
    command_file = run_dir / "command.txt"
    if not command_file.is_file() and not export_only:
        _write_atomic(command_file, command + "\n")
    train_command = command_file.read_text().strip() if command_file.is_file() else command
    db = PtbXl(ptbxl_root)
    t_start = time.time()
    n_records = sum(len(db.ids(folds=f)) for f in (cfg.train_folds, cfg.validation_folds, cfg.test_folds))
    with Reporter(total=n_records, desc="reading PTB-XL", unit="record") as reporter:
        train = load_signal_set(db, cfg.train_folds, reporter)
        val = load_signal_set(db, cfg.validation_folds, reporter)
        test = load_signal_set(db, cfg.test_folds, reporter)
    if cfg.aux_weight > 0 and "aux_targets" not in cfg.model:
        cfg.model["aux_targets"] = aux_target_names(train, cfg.aux_min_count)
        _write_atomic(run_dir / "config.json", json.dumps(asdict(cfg), indent=1) + "\n")
    options = NoiseOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.noise.items()})
    val_inputs = evaluation_inputs(val, seed=9, options=options)
    reporter = Reporter(total=cfg.epochs * cfg.members, desc="training", unit="epoch")
    reporter.log(f"train {len(train)} records {np.bincount(train.labels, minlength=3).tolist()}, "
                 f"validation {len(val)}, test {len(test)}")
    if export_only:
        members = [k for k in range(cfg.members) if (run_dir / f"member{k}" / "done.json").is_file()]
        if not members:
            raise ModelError(f"{run_dir} has no finished member to export yet.")
        member_paths = [run_dir / f"member{k}" / "best.safetensors" for k in members]
    else:
        members = list(range(cfg.members))
        member_paths = [train_signal_member(k, cfg, train, val_inputs, val.labels, run_dir, reporter) for k in members]
    reporter.close()

    model = SignalEnsemble({**cfg.model, "members": len(members)})
    model.load_state_dict(load_member_states(member_paths))
    model.eval()

    # Calibration on fold 9: one temperature over every layout, clean and noisy.
    val_logits = {name: predict_logits(model, inputs) for name, inputs in val_inputs.items()}
    stacked = np.concatenate(list(val_logits.values()))
    stacked_y = np.tile(val.labels, len(val_logits))
    temperature = fit_temperature(stacked, stacked_y)
    ece_before = expected_calibration_error(stacked_y, softmax(stacked))
    ece_after = expected_calibration_error(stacked_y, softmax(stacked, temperature))

    test_inputs = evaluation_inputs(test, seed=10, options=options)
    test_metrics: dict[str, dict[str, Any]] = {}
    test_probs: dict[str, np.ndarray] = {}
    for name, inputs in test_inputs.items():
        test_probs[name] = softmax(predict_logits(model, inputs), temperature)
        test_metrics[name] = classification_metrics(test.labels, test_probs[name])
    val_metrics = {name: classification_metrics(val.labels, softmax(lg, temperature)) for name, lg in val_logits.items()}

    export = run_dir / "export"
    export.mkdir(exist_ok=True)
    stem = "classifier_signal"
    plot_confusions({k: np.asarray(v["confusion"]) for k, v in test_metrics.items()}, export / f"{stem}_confusion.png",
                    "signal model, PTB-XL strat_fold 10 (clean = layout windows only; noisy = digitisation-like noise)")
    plot_reliability({k: (test.labels, test_probs[k]) for k in ("clean/12x1", "noisy/3x4+II", "noisy/seed-3x4")},
                     export / f"{stem}_reliability.png", f"signal model, strat_fold 10, T = {temperature:.2f}")
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if line.strip()]
    card = {
        "name": stem,
        "kind": "signal",
        "architecture": (f"1D ResNet, {len(cfg.model['widths'])} stages {cfg.model['widths']}, kernel "
                         f"{cfg.model['kernel']}, masked avg+max pooling; ensemble of {len(members)}"),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "labels": list(LABELS),
        "input": ("12 leads at 100 Hz over 10 s (1000 samples, NaN where the layout does not show a lead -> 0) with "
                  "each lead's median removed, plus 12 observed-mask channels; ecgcore.classify.prepare_signal"),
        "data": {
            "source": f"PTB-XL 1.0.3 subset at {Path(ptbxl_root).resolve()} (100 Hz)",
            "train_folds": list(cfg.train_folds), "validation_folds": list(cfg.validation_folds),
            "test_folds": list(cfg.test_folds),
            "n_train": len(train), "n_validation": len(val), "n_test": len(test),
            "train_class_counts": dict(zip(LABELS, np.bincount(train.labels, minlength=3).tolist())),
            "test_class_counts": dict(zip(LABELS, np.bincount(test.labels, minlength=3).tolist())),
            "label_rule": "MI if any MI code; else normal if NORM >= 80; else non_mi_abnormality (SEED_NOTES 3)",
        },
        "training": {
            "config": asdict(cfg),
            "augmentation": ("random layout windows (weights " + json.dumps(cfg.layout_weights) + "), time stretch "
                             "and per-lead jitter, gain error, baseline offset and wander, smoothing, white noise, "
                             "amplitude quantisation, ragged window ends, dropped segments and leads"),
            "loss": "cross-entropy with inverse-frequency class weights and label smoothing" + (
                f", plus {cfg.aux_weight} x binary cross-entropy on {len(cfg.model['aux_targets'])} auxiliary PTB-XL "
                f"statements (SCP codes, diagnostic classes and subclasses carried by >= {cfg.aux_min_count} "
                "training records; model.aux_targets)" if cfg.model.get("aux_targets") else ""),
            "members": [json.loads((run_dir / f"member{k}" / "done.json").read_text()) for k in members],
            "epochs_run": [sum(1 for h in history if h["member"] == k) for k in members],
            "seconds": round(time.time() - t_start, 1),
            "device": "cpu, 1 thread",
        },
        "command": train_command,
        "export_command": command if export_only else None,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "calibration": {"method": "temperature scaling on strat_fold 9 (all layouts, clean and noisy)",
                        "temperature": temperature, "val_ece_before": ece_before, "val_ece_after": ece_after},
        "metrics": {
            "test_fold_10": test_metrics,
            "validation_fold_9": {k: {m: v[m] for m in ("mi_auroc", "macro_f1", "ece")} for k, v in val_metrics.items()},
            "photos_fold_10": "pending: needs the shipped segmentation and digitisation (pipelines.evaluate)",
        },
        "summary": {
            **{f"mi_auroc_clean_{layout}": round(test_metrics[f"clean/{layout}"]["mi_auroc"], 4) for layout in LAYOUT_NAMES},
            **{f"mi_auroc_noisy_{layout}": round(test_metrics[f"noisy/{layout}"]["mi_auroc"], 4) for layout in LAYOUT_NAMES},
            **{f"macro_f1_noisy_{layout}": round(test_metrics[f"noisy/{layout}"]["macro_f1"], 4) for layout in LAYOUT_NAMES},
        },
        "plots": {"confusion": f"{stem}_confusion.png", "reliability": f"{stem}_reliability.png"},
        "limitations": [
            f"trained on {len(train)} records (PTB-XL benchmarks use ~17k); metrics on {len(test)} test records have "
            "wide confidence intervals (about +-0.03 AUROC)",
            "'noisy' metrics use simulated digitisation error, not real digitised photos",
            "not a medical device; the network always outputs some probability for every class",
        ],
    }
    save_weights(export / f"{stem}.safetensors", "signal", model, temperature=temperature, card=card)
    return card


# --- image model --------------------------------------------------------------------------------------------


@dataclass
class ImageTrainConfig:
    """Hyper-parameters of an image-model run. Defaults follow the prototype (focal loss, class weights
    [1, 1, 1.5], batch 12) with a compact CNN trained from scratch instead of an ImageNet ResNet-152."""

    epochs: int = 25
    batch_size: int = 12
    lr: float = 1e-3
    weight_decay: float = 1e-4
    focal_gamma: float = 2.0
    class_weights: tuple[float, ...] = (1.0, 1.0, 1.5)
    patience: int = 8
    seed: int = 0
    model: dict[str, Any] = field(default_factory=lambda: dict(IMAGE_CONFIG))
    train_folds: tuple[int, ...] = TRAIN_FOLDS
    validation_folds: tuple[int, ...] = VALIDATION_FOLDS
    test_folds: tuple[int, ...] = TEST_FOLDS


def focal_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, gamma: float) -> torch.Tensor:
    """Class-weighted focal loss: -w_y (1 - p_y)^gamma log p_y, averaged."""
    log_p = F.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
    return (-weights[target] * (1.0 - log_p.exp()) ** gamma * log_p).mean()


@dataclass
class ImageSet:
    """Entries of a classification set (index.jsonl rows) with their PNG bytes, loaded once."""

    folder: Path
    entries: list[dict[str, Any]]
    pngs: list[bytes]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.entries)

    def slots(self, i: int) -> np.ndarray:
        import cv2

        canvas = cv2.cvtColor(cv2.imdecode(np.frombuffer(self.pngs[i], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return canvas_to_slots(canvas)


def canvas_to_slots(canvas: np.ndarray) -> np.ndarray:
    """Inverse of ecgcore.classimage.merge_slots: the (12, 120, 210, 3) slots of a 640x640 canvas."""
    from .classimage import SLOT_H, SLOT_W, slot_origin

    out = np.empty((12, SLOT_H, SLOT_W, canvas.shape[-1]), np.uint8)
    for i in range(12):
        x, y = slot_origin(i)
        out[i] = canvas[y : y + SLOT_H, x : x + SLOT_W]
    return out


def load_image_set(folder: str | Path, folds: tuple[int, ...]) -> ImageSet:
    """The classification-set entries of ``folds``, without the samples curated out of their PTB-V datasets."""
    from .dataset import DatasetError, discarded_ids

    folder = Path(folder)
    index = folder / "index.jsonl"
    if not index.is_file():
        raise DatasetError(f"{folder} has no index.jsonl; build it with python -m pipelines.build_classification_set.")
    entries = []
    for line in index.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    discarded: dict[str, set[str]] = {}
    kept = []
    for e in entries:
        ddir = e.get("dataset_dir", "")
        if ddir not in discarded:
            discarded[ddir] = discarded_ids(ddir) if ddir and Path(ddir).is_dir() else set()
        # Synthetic-source samples carry no diagnosis and never train a classifier.
        if (e.get("strat_fold") in folds and e.get("label") in LABEL_INDEX and e["id"] not in discarded[ddir]
                and (folder / e["file"]).is_file()):
            kept.append(e)
    pngs = [(folder / e["file"]).read_bytes() for e in kept]
    labels = np.asarray([LABEL_INDEX[e["label"]] for e in kept], np.int64)
    return ImageSet(folder, kept, pngs, labels)


def image_batch(data: ImageSet, idx: np.ndarray, rng: np.random.Generator | None,
                by_class: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """(B, 3, 640, 640) float inputs; with ``rng``, the prototype's lead-swap and stretch augmentation."""
    from .classimage import augment_slots, merge_slots

    batch = []
    for i in idx:
        slots = data.slots(int(i))
        if rng is not None:
            pool = by_class[int(data.labels[i])] if by_class is not None else np.array([], int)
            pool = pool[pool != i]
            donors = [data.slots(int(rng.choice(pool)))] if len(pool) else []
            slots = augment_slots(slots, donors, rng)
        batch.append(merge_slots(slots).transpose(2, 0, 1))
    return np.stack(batch).astype(np.float32) / 255.0


def image_logits(model: torch.nn.Module, data: ImageSet, batch_size: int = 16) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            x = torch.from_numpy(image_batch(data, np.arange(i, min(i + batch_size, len(data))), None))
            out.append(model(x).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, len(LABELS)))


def train_image(cfg: ImageTrainConfig, data_dir: str | Path, run_dir: str | Path, command: str = "") -> dict[str, Any]:
    """Train (or resume) the image model on a classification set, calibrate on fold 9, test on fold 10."""
    from .classify import ImageNet
    from .dataset import DatasetError

    torch.set_num_threads(max(1, torch.get_num_threads()))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(run_dir / "config.json", json.dumps(asdict(cfg), indent=1) + "\n")
    t_start = time.time()
    train = load_image_set(data_dir, cfg.train_folds)
    val = load_image_set(data_dir, cfg.validation_folds)
    test = load_image_set(data_dir, cfg.test_folds)
    if len(train) == 0 or len(val) == 0:
        raise DatasetError(f"{data_dir} has {len(train)} training (folds {list(cfg.train_folds)}) and {len(val)} "
                           f"validation samples (folds {list(cfg.validation_folds)}); both are needed.")
    by_class = {c: np.flatnonzero(train.labels == c) for c in range(len(LABELS))}
    torch.manual_seed(cfg.seed)
    model = ImageNet(cfg.model)
    steps = int(np.ceil(len(train) / cfg.batch_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps,
                                                    pct_start=0.15)
    weights = torch.tensor(cfg.class_weights, dtype=torch.float32)
    best_path = run_dir / "best.safetensors"
    checkpoint = run_dir / "checkpoint.pt"
    start_epoch, best_score, best_epoch = 0, -np.inf, -1
    reporter = Reporter(total=cfg.epochs, desc="training image model", unit="epoch")
    if checkpoint.is_file():
        start_epoch, best_score, best_epoch = _load_checkpoint(checkpoint, model, optimizer, scheduler)
        reporter.advance(start_epoch)
        reporter.log(f"resumed after epoch {start_epoch - 1}")
    if not (run_dir / "done.json").is_file():
        _drop_history_from(run_dir / "history.jsonl", start_epoch)
    reporter.log(f"train {len(train)} {np.bincount(train.labels, minlength=3).tolist()}, validation {len(val)}, "
                 f"test {len(test)}")
    for epoch in range(start_epoch, cfg.epochs):
        if (run_dir / "done.json").is_file():
            break
        t0 = time.time()
        rng = np.random.default_rng([cfg.seed, epoch])
        order = rng.permutation(len(train))
        model.train()
        losses = []
        for b in range(steps):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x = torch.from_numpy(image_batch(train, idx, rng, by_class))
            loss = focal_loss(model(x), torch.from_numpy(train.labels[idx]), weights, cfg.focal_gamma)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        m = classification_metrics(val.labels, softmax(image_logits(model, val)))
        score = m["mi_auroc"] + 0.25 * m["macro_f1"]
        values = {"train_loss": float(np.mean(losses)), "val_mi_auroc": m["mi_auroc"], "val_macro_f1": m["macro_f1"],
                  "val_score": score, "epoch_s": time.time() - t0}
        if score > best_score:
            best_score, best_epoch = score, epoch
            save_weights(best_path, "image", model)
        reporter.metrics(epoch, **{k: round(v, 4) for k, v in values.items()})
        with open(run_dir / "history.jsonl", "a") as f:
            f.write(json.dumps({"epoch": epoch, **values, "best_epoch": best_epoch}) + "\n")
        _save_checkpoint(checkpoint, model, optimizer, scheduler, epoch, best_score, best_epoch)
        reporter.advance(1, message=f"epoch {epoch}")
        if epoch - best_epoch >= cfg.patience:
            reporter.log(f"early stop at epoch {epoch} (best {best_epoch}, score {best_score:.4f})")
            break
    reporter.close()
    _write_atomic(run_dir / "done.json", json.dumps({"best_epoch": best_epoch, "best_score": best_score}) + "\n")

    from .classify import load_model

    model = load_model(best_path, "image").model
    val_logits = image_logits(model, val)
    temperature = fit_temperature(val_logits, val.labels)
    test_probs = softmax(image_logits(model, test), temperature) if len(test) else np.zeros((0, 3))
    metrics: dict[str, Any] = {"all": classification_metrics(test.labels, test_probs)} if len(test) else {}
    layouts = np.asarray([e.get("layout") for e in test.entries])
    for layout in LAYOUT_NAMES:
        sel = layouts == layout
        if sel.sum() >= 10:
            metrics[layout] = classification_metrics(test.labels[sel], test_probs[sel])
    export = run_dir / "export"
    export.mkdir(exist_ok=True)
    stem = "classifier_image"
    info_path = Path(data_dir) / "classification_set.json"
    set_info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    if metrics:
        plot_confusions({k: np.asarray(v["confusion"]) for k, v in metrics.items()}, export / f"{stem}_confusion.png",
                        f"image model, strat_fold 10, class maps from {set_info.get('source', '?')}")
        plot_reliability({"fold 10": (test.labels, test_probs)}, export / f"{stem}_reliability.png",
                         f"image model, strat_fold 10, T = {temperature:.2f}")
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if line.strip()]
    card = {
        "name": stem,
        "kind": "image",
        "architecture": (f"compact CNN from scratch: 2x average pooling, {len(cfg.model['widths'])} stride-2 stages "
                         f"{cfg.model['widths']}, global average pooling (replaces the prototype's ImageNet "
                         "ResNet-152: no pretrained weights can be downloaded here)"),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "labels": list(LABELS),
        "input": ("640x640 classification image (SEED_NOTES 5): each lead's class map rectified from its quad, "
                  "channels = (grid_x, grid_y, curve), thumbnailed to <= 210x120, merged 3 columns x 4 rows; "
                  "ecgcore.classimage"),
        "data": {
            "classification_set": str(Path(data_dir).resolve()),
            "class_maps": set_info.get("source", "?") + (" (ground-truth PTB-V masks, not a segmenter's output)"
                                                        if set_info.get("source") == "truth" else ""),
            "ptbv_datasets": set_info.get("data"),
            "n_train": len(train), "n_validation": len(val), "n_test": len(test),
            "train_class_counts": dict(zip(LABELS, np.bincount(train.labels, minlength=3).tolist())),
            "train_folds": list(cfg.train_folds), "validation_folds": list(cfg.validation_folds),
            "test_folds": list(cfg.test_folds),
        },
        "training": {
            "config": asdict(cfg),
            "augmentation": ("the prototype's: per channel 1-2 lead slots from another sample of the same class, "
                             "each lead stretched by N(1, 0.1) >= 0.5 in x and y; redrawn every epoch"),
            "loss": f"focal loss (gamma {cfg.focal_gamma}) with class weights {list(cfg.class_weights)}",
            "best_epoch": best_epoch, "epochs_run": len(history), "seconds": round(time.time() - t_start, 1),
            "device": "cpu",
        },
        "command": command,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "calibration": {"method": "temperature scaling on strat_fold 9", "temperature": temperature,
                        "val_ece_before": expected_calibration_error(val.labels, softmax(val_logits)),
                        "val_ece_after": expected_calibration_error(val.labels, softmax(val_logits, temperature))},
        "metrics": {"test_fold_10": metrics},
        "summary": {"mi_auroc": round(metrics["all"]["mi_auroc"], 4) if metrics else None,
                    "macro_f1": round(metrics["all"]["macro_f1"], 4) if metrics else None,
                    "class_maps": set_info.get("source", "?")},
        "plots": {"confusion": f"{stem}_confusion.png", "reliability": f"{stem}_reliability.png"},
        "limitations": [
            *([f"near chance on strat_fold 10 (MI AUROC {metrics['all']['mi_auroc']:.2f}): the compact CNN did not "
               f"learn the task from scratch in {len(history)} CPU epochs; it is shipped for comparison only and never "
               "enters the verdict"] if metrics and metrics["all"]["mi_auroc"] < 0.7 else []),
            "the prototype's input squeezes wide leads (6x2, 12x1) into 210x120 slots: little of the waveform is left",
            "trained from scratch on a few thousand images; weaker than the signal model, kept for comparison",
            "not a medical device; the network always outputs some probability for every class",
        ],
    }
    save_weights(export / f"{stem}.safetensors", "image", model, temperature=temperature, card=card)
    return card


# --- evaluation from photos -----------------------------------------------------------------------------------


def evaluate_photos(dataset_dir: str | Path, classifiers, segmenter=None, limit: int | None = None,
                    layout: str = "auto") -> dict[str, Any]:
    """Classify the photos of a PTB-V dataset end to end and score them against their labels.

    Class maps come from ``segmenter`` (the real path) or, when it is None, from the ground-truth masks (which
    isolates digitisation and classification). Photos that cannot be digitised count as failures; the metrics are
    given over the digitised photos and, more conservatively, over all photos with failures scored as uniform
    probabilities. Returns metrics overall and per layout, per model.
    """
    from .classify import as_probabilities
    from .dataset import iter_samples
    from .digitize import digitize
    from .errors import DigitizationError
    from .segmentation import segment_with_margin

    samples = [s for s in iter_samples(dataset_dir, include_discarded=False) if s.label in LABEL_INDEX][:limit]
    uniform = np.full(len(LABELS), 1.0 / len(LABELS))
    rows: list[dict[str, Any]] = []
    reporter = Reporter(total=len(samples), desc="classifying photos", unit="photo")
    for sample in samples:
        rgb = sample.image()
        t0 = time.perf_counter()
        class_map, margin = segment_with_margin(segmenter, rgb) if segmenter is not None else (sample.mask(), None)
        row: dict[str, Any] = {"id": sample.id, "layout": sample.meta.get("layout"), "label": LABEL_INDEX[sample.label]}
        try:
            dig = digitize(class_map, layout=layout, curve_margin=margin)
            row["signal"] = np.asarray(list(classifiers.predict_signal(dig).values()))
            if classifiers.image is not None:
                x = classifiers.image_input(class_map, dig.leads)
                row["image"] = np.asarray(list(as_probabilities(classifiers.image.probabilities(x[None])[0]).values()))
            row["detected_layout"] = getattr(dig, "layout", None)
        except DigitizationError as exc:
            row["error"] = str(exc)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        reporter.advance(1, message=sample.id)
    reporter.close()

    def score(selected: list[dict[str, Any]], model: str) -> dict[str, Any]:
        ok = [r for r in selected if model in r]
        out: dict[str, Any] = {"n_photos": len(selected), "n_digitised": len(ok)}
        if ok:
            y = np.asarray([r["label"] for r in ok])
            out["digitised"] = classification_metrics(y, np.stack([r[model] for r in ok]))
        y_all = np.asarray([r["label"] for r in selected])
        probs_all = np.stack([r.get(model, uniform) for r in selected]) if selected else np.zeros((0, 3))
        if len(selected):
            out["all_failures_uniform"] = classification_metrics(y_all, probs_all)
        return out

    models = ["signal"] + (["image"] if classifiers.image is not None else [])
    result: dict[str, Any] = {
        "dataset": str(Path(dataset_dir).resolve()),
        "class_maps": "segmenter" if segmenter is not None else "ground-truth masks",
        "segmenter": (f"{(getattr(segmenter, 'card', None) or {}).get('name', 'shipped segmentation_unet')}, "
                      f"{getattr(segmenter, 'phases', 1)} pixel phase(s) averaged" if segmenter is not None else None),
        "layout_hint": layout,
        "seconds_per_photo": float(np.mean([r["seconds"] for r in rows])) if rows else None,
        "failures": [{"id": r["id"], "error": r["error"]} for r in rows if "error" in r][:20],
        "layout_detected_correctly": float(np.mean([r.get("detected_layout") == r["layout"] for r in rows
                                                    if "detected_layout" in r])) if rows else None,
    }
    for model in models:
        result[model] = {"all": score(rows, model)}
        for name in LAYOUT_NAMES:
            selected = [r for r in rows if r["layout"] == name]
            if selected:
                result[model][name] = score(selected, model)
    return result


def _save_checkpoint(path: Path, model, optimizer, scheduler, epoch: int, best_score: float, best_epoch: int) -> None:
    """Write the resumable training state atomically: a kill never leaves half a file."""
    atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "scheduler": scheduler.state_dict(), "epoch": epoch, "best_score": best_score,
                       "best_epoch": best_epoch}, path)


def _load_checkpoint(path: Path, model, optimizer, scheduler) -> tuple[int, float, int]:
    """Restore what _save_checkpoint wrote; returns (next epoch, best score, best epoch). A damaged checkpoint or one
    of another run's model is a ModelError with one sentence."""

    def apply(state: dict) -> tuple[int, float, int]:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        return int(state["epoch"]) + 1, float(state["best_score"]), int(state["best_epoch"])

    return restore_checkpoint(path, apply, "delete it to train that part again from the start, or use a new --out")


def _write_atomic(path: Path, text: str) -> None:
    """Write a small text file so that a kill leaves the old content or the new, never half (a half done.json
    would read as a finished member)."""
    from .imageio import atomic_write_bytes

    atomic_write_bytes(path, text.encode())


def _drop_history_from(path: Path, epoch: int, member: int | None = None) -> None:
    """Remove the history lines of epochs >= ``epoch`` (of ``member``, when given), which a run killed after writing
    them but before its checkpoint would otherwise repeat on resume; a torn last line goes too. Atomic rewrite."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(entry, dict):
            continue
        same_member = member is None or entry.get("member") == member
        if same_member and int(entry.get("epoch", -1)) >= epoch:
            continue
        kept.append(line + "\n")
    _write_atomic(path, "".join(kept))
