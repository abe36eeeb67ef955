"""Training and calibration of the signal classifier (an ensemble), and its model card.

The signal model trains on clean PTB-XL signals (strat_fold 1-8) made to look like digitised photos: each training
example is cut to the windows a random layout shows (:func:`ecgcore.classify.classifiers.layout_mask`) and passed through
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

from ecgcore.classify.classifiers import (
    SIGNAL_CONFIG,
    SIGNAL_FS,
    SIGNAL_SAMPLES,
    SignalEnsemble,
    layout_mask,
    prepare_signal,
    save_weights,
)
from ecgcore.constants import LABEL_INDEX, LABELS, TEST_FOLDS, TRAIN_FOLDS, VALIDATION_FOLDS
from ecgcore.errors import ModelError
from ecgcore.layouts import LAYOUT_NAMES
from ecgcore.progress import Reporter
from ecgcore.signals import PtbXl
from ecgcore.train import loop
from ecgcore.train.checkpoints import (
    BEST_FILE,
    CONFIG_FILE,
    DONE_FILE,
    EXPORT_DIR,
    HISTORY_FILE,
    check_settings,
    write_atomic,
)
from ecgcore.train.metrics import (
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
    plot_confusions,
    plot_reliability,
    softmax,
)

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

    def __post_init__(self) -> None:
        check_settings(self, {"epochs": (1, None), "batch_size": (1, None), "lr": (0, 1), "weight_decay": (0, 1),
                              "label_smoothing": (0, 0.5), "aux_weight": (0, 10), "aux_min_count": (1, None),
                              "patience": (1, None), "members": (1, 20), "seed": (0, None)})


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
    best_path = folder / BEST_FILE
    if (folder / DONE_FILE).is_file():
        reporter.log(f"member {member}: already trained")
        return best_path
    seed = cfg.seed + 1000 * member
    torch.manual_seed(seed)
    model = _member_model(cfg.model)
    steps = loop.steps_per_epoch(len(train), cfg.batch_size)
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

    def batch_loss(idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        layouts = list(rng.choice(layout_names, size=len(idx), p=layout_p))
        x = torch.from_numpy(signal_batch(train.signals[idx], rng, layouts, options))
        y = torch.from_numpy(train.labels[idx])
        logits = model.members[0].forward_all(x)
        loss = F.cross_entropy(logits[:, :n_classes], y, weight=weights, label_smoothing=cfg.label_smoothing)
        if aux is not None:
            loss = loss + cfg.aux_weight * F.binary_cross_entropy_with_logits(
                logits[:, n_classes:], torch.from_numpy(aux[idx]))
        return loss

    def validate() -> tuple[dict[str, float], float]:
        values: dict[str, float] = {}
        aurocs, f1s = [], []
        for name, inputs in val_inputs.items():
            m = classification_metrics(val_labels, softmax(predict_logits(model, inputs)))
            values[f"val_mi_auroc/{name}"] = m["mi_auroc"]
            if name.startswith("noisy/"):
                aurocs.append(m["mi_auroc"])
                f1s.append(m["macro_f1"])
        # Selection: MI AUROC under digitisation noise, averaged over layouts, with macro F1 as a lesser term.
        score = float(np.mean(aurocs) + 0.25 * np.mean(f1s))
        values.update(val_mi_auroc=float(np.mean(aurocs)), val_macro_f1=float(np.mean(f1s)), val_score=score)
        return values, score

    best_epoch, best_score = loop.run(
        loop.Loop(model, optimizer, scheduler, folder, run_dir / HISTORY_FILE,
                  lambda: save_weights(best_path, "signal", model), reporter, seed, cfg.epochs, cfg.patience,
                  len(train), cfg.batch_size, member=member),
        batch_loss, validate)
    write_atomic(folder / DONE_FILE, json.dumps({"best_epoch": best_epoch, "best_score": best_score}) + "\n")
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
    write_atomic(run_dir / CONFIG_FILE, json.dumps(asdict(cfg), indent=1) + "\n")
    command_file = run_dir / "command.txt"
    if not command_file.is_file() and not export_only:
        write_atomic(command_file, command + "\n")
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
        write_atomic(run_dir / CONFIG_FILE, json.dumps(asdict(cfg), indent=1) + "\n")
    options = NoiseOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.noise.items()})
    val_inputs = evaluation_inputs(val, seed=9, options=options)
    reporter = Reporter(total=cfg.epochs * cfg.members, desc="training", unit="epoch")
    reporter.log(f"train {len(train)} records {np.bincount(train.labels, minlength=3).tolist()}, "
                 f"validation {len(val)}, test {len(test)}")
    if export_only:
        members = [k for k in range(cfg.members) if (run_dir / f"member{k}" / DONE_FILE).is_file()]
        if not members:
            raise ModelError(f"{run_dir} has no finished member to export yet.")
        member_paths = [run_dir / f"member{k}" / BEST_FILE for k in members]
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

    export = run_dir / EXPORT_DIR
    export.mkdir(exist_ok=True)
    stem = "classifier_signal"
    plot_confusions({k: np.asarray(v["confusion"]) for k, v in test_metrics.items()}, export / f"{stem}_confusion.png",
                    "signal model, PTB-XL strat_fold 10 (clean = layout windows only; noisy = digitisation-like noise)")
    plot_reliability({k: (test.labels, test_probs[k]) for k in ("clean/12x1", "noisy/3x4+II", "noisy/seed-3x4")},
                     export / f"{stem}_reliability.png", f"signal model, strat_fold 10, T = {temperature:.2f}")
    history = [json.loads(line) for line in (run_dir / HISTORY_FILE).read_text().splitlines() if line.strip()]
    card = {
        "name": stem,
        "kind": "signal",
        "architecture": (f"1D ResNet, {len(cfg.model['widths'])} stages {cfg.model['widths']}, kernel "
                         f"{cfg.model['kernel']}, masked avg+max pooling; ensemble of {len(members)}"),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "labels": list(LABELS),
        "input": ("12 leads at 100 Hz over 10 s (1000 samples, NaN where the layout does not show a lead -> 0) with "
                  "each lead's median removed, plus 12 observed-mask channels; ecgcore.classify.classifiers.prepare_signal"),
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
            "members": [json.loads((run_dir / f"member{k}" / DONE_FILE).read_text()) for k in members],
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
