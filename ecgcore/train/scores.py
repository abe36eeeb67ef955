"""A dataset's quality scores, the one home of their files: ``DIR/scores.csv`` (one row per sample: curve IoU, SNR,
classifier confidence, ink contrast, the suspect flag) and ``DIR/scores/`` (each sample's predicted class map and
digitised signal). ``pipelines.score_dataset`` writes them; the Curation page and the Home page read them."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from ecgcore.constants import CURVE
from ecgcore.imageio import atomic_write_bytes

SCORES_FILE = "scores.csv"
SCORES_DIR = "scores"
SCORE_COLUMNS = ("id", "seg_iou", "snr_db", "snr_from", "confidence", "p_true", "predicted", "ink_contrast",
                 "scored_with", "error")


@dataclass(frozen=True)
class SuspectRule:
    """A sample is suspect when any available score is on the bad side of its threshold."""

    min_seg_iou: float = 0.5  # curve IoU of the predicted mask against the truth
    min_snr_db: float = 3.0  # digitisation SNR against the source signal (median over leads)
    min_p_true: float = 0.10  # classifier probability of the sample's own label
    min_ink_contrast: float = 0.12  # curve ink vs surrounding paper, 0..1 (shadows, flash, noise wash it out)

    def reasons(self, row: dict[str, Any]) -> list[str]:
        out = []
        checks = (("seg_iou", self.min_seg_iou, "segmentation IoU {v:.2f} < {t}"),
                  ("snr_db", self.min_snr_db, "SNR {v:.1f} dB < {t}"),
                  ("p_true", self.min_p_true, "p(own label) {v:.2f} < {t}"),
                  ("ink_contrast", self.min_ink_contrast, "ink contrast {v:.2f} < {t}"))
        for column, threshold, text in checks:
            value = row.get(column)
            if value is not None and isinstance(value, (int, float)) and math.isfinite(value) and value < threshold:
                out.append(text.format(v=value, t=threshold))
        error = row.get("error")
        if isinstance(error, str) and error:
            out.append(error)
        return out


def ink_contrast(rgb: np.ndarray, mask: np.ndarray, ring_px: int = 4) -> float:
    """How much darker the ECG curve is than the paper right around it, 0..1 (NaN when no curve is visible).

    Local (a ring a few pixels around the curve), so an even shadow does not count against a sample, but a flash,
    heavy noise or blur that washes the trace into the paper does.
    """
    curve = (mask == CURVE).astype(np.uint8)
    if curve.sum() < 50:
        return float("nan")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_px + 1, 2 * ring_px + 1))
    near = cv2.dilate(curve, kernel).astype(bool)
    ring = near & (mask == 0)
    if ring.sum() < 50:
        return float("nan")
    return float((np.median(gray[ring]) - np.median(gray[curve.astype(bool)])) / 255.0)


def scores_path(folder: str | Path) -> Path:
    return Path(folder) / SCORES_FILE


def pred_mask_path(folder: str | Path, sid: str) -> Path:
    return Path(folder) / SCORES_DIR / f"{sid}_pred.png"


def digitized_path(folder: str | Path, sid: str) -> Path:
    return Path(folder) / SCORES_DIR / f"{sid}_dig.npz"


def read_scores(folder: str | Path) -> pd.DataFrame:
    """The scores CSV (empty frame with the score columns when the dataset was not scored yet)."""
    path = scores_path(folder)
    if not path.is_file():
        return pd.DataFrame(columns=list(SCORE_COLUMNS))
    df = pd.read_csv(path, dtype={"id": str}, on_bad_lines="skip")
    return df


def load_digitized(folder: str | Path, sid: str) -> dict[str, Any] | None:
    """The digitised signal saved by the scoring job: {'signal': (n, 12), 'fs': float, 'layout': str}."""
    path = digitized_path(folder, sid)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {"signal": data["signal"].astype(np.float32), "fs": float(data["fs"]), "layout": str(data["layout"])}


def save_digitized(folder: str | Path, sid: str, signal: np.ndarray, fs: float, layout: str) -> None:
    path = digitized_path(folder, sid)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, signal=np.asarray(signal, np.float16), fs=np.float64(fs), layout=np.str_(layout))
    tmp.replace(path)


def write_scores(folder: Path, rows: dict[str, dict[str, Any]]) -> None:
    """scores.csv, atomically, in id order, with the default suspect flag for command-line readers."""
    rule = SuspectRule()
    table = pd.DataFrame([rows[k] for k in sorted(rows)])
    for column in SCORE_COLUMNS:
        if column not in table.columns:
            table[column] = np.nan
    table["suspect"] = [bool(rule.reasons(r)) for r in table.to_dict("records")]
    buffer = io.StringIO()
    table[[*SCORE_COLUMNS, "suspect"]].to_csv(buffer, index=False)
    atomic_write_bytes(scores_path(folder), buffer.getvalue().encode())

