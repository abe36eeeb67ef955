"""Classification metrics (AUROC, F1, calibration error, temperature), their plots, and the classifiers' figures on
PTB-V photos read by the whole pipeline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from ecgcore.constants import LABEL_INDEX, LABELS
from ecgcore.layouts import LAYOUT_NAMES
from ecgcore.progress import Reporter

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


# --- evaluation from photos -----------------------------------------------------------------------------------


def evaluate_photos(dataset_dir: str | Path, classifiers, segmenter=None, limit: int | None = None,
                    layout: str = "auto") -> dict[str, Any]:
    """Classify the photos of a PTB-V dataset end to end and score them against their labels.

    Class maps come from ``segmenter`` (the real path) or, when it is None, from the ground-truth masks (which
    isolates digitisation and classification). Photos that cannot be digitised count as failures; the metrics are
    given over the digitised photos and, more conservatively, over all photos with failures scored as uniform
    probabilities. Returns metrics overall and per layout, per model.
    """
    from ecgcore.classify.classifiers import as_probabilities
    from ecgcore.dataset import iter_samples
    from ecgcore.errors import DigitizationError
    from ecgcore.read.digitize import digitize
    from ecgcore.read.segmentation import segment_with_margin

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
