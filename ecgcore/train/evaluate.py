"""How well a digitised ECG matches its source record: SNR (dB), Pearson r and RMSE (uV), per lead.

Definition (the numbers the README, the Curation page and ``pipelines.evaluate`` report):

* Window: only the samples the digitiser produced for that lead (the plotted window; NaN elsewhere), paired with
  the source record's samples at the same times. The digitised record starts at the source's t = 0 and has the
  source's sampling rate (resample the source first otherwise).
* Baseline: each signal's median over the paired samples is subtracted (a paper trace has no absolute 0 mV; the
  pulse only fixes it to within the line width, and baseline wander is not what a digitiser should be scored on).
* Time shift: the digitised lead may be shifted by up to +-``max_shift_s`` (0.05 s by default, whole samples); the
  shift with the highest SNR is used, per lead.
* SNR = 10 log10(sum(true^2) / sum((true - estimate)^2)) over the paired, median-removed samples.
* Pearson r and RMSE (in uV) are computed on the same pairs at the same shift.
A lead with fewer than ``min_samples`` pairs (not shown) gets NaN. The summary of a record is the median over its
leads; the summary of a data set is the median over all (record, lead) pairs unless named otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgcore.constants import LEAD_NAMES
from ecgcore.dataset import DATASET_FILE

DEFAULT_MAX_SHIFT_S = 0.05


@dataclass
class LeadScores:
    """Per-lead comparison, arrays of length 12 (NaN where a lead was not shown)."""

    snr_db: np.ndarray
    pearson_r: np.ndarray
    rmse_uv: np.ndarray
    shift_s: np.ndarray
    n_samples: np.ndarray

    def summary(self) -> dict[str, float]:
        """Median over the shown leads of each score (NaN when no lead was shown)."""
        def med(a: np.ndarray) -> float:
            a = a[np.isfinite(a)]
            return float(np.median(a)) if a.size else float("nan")

        return {"snr_db": med(self.snr_db), "pearson_r": med(self.pearson_r), "rmse_uv": med(self.rmse_uv),
                "leads_scored": int(np.isfinite(self.snr_db).sum())}

    def to_json(self) -> dict[str, Any]:
        def clean(a: np.ndarray, nd: int) -> list:
            return [None if not np.isfinite(v) else round(float(v), nd) for v in a]

        return {
            "summary": {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in self.summary().items()},
            "leads": {
                name: {"snr_db": s, "pearson_r": r, "rmse_uv": e, "shift_s": t}
                for name, s, r, e, t in zip(LEAD_NAMES, clean(self.snr_db, 3), clean(self.pearson_r, 4),
                                            clean(self.rmse_uv, 1), clean(self.shift_s, 3))
            },
        }


def compare_signals(true: np.ndarray, estimate: np.ndarray, fs: int, max_shift_s: float = DEFAULT_MAX_SHIFT_S,
                    min_samples: int | None = None) -> LeadScores:
    """Score ``estimate`` (n, L) against ``true`` (m, L), both in mV at ``fs``, per lead (see the module docstring).

    1-D inputs are treated as one lead.
    """
    true = np.asarray(true, np.float64)
    estimate = np.asarray(estimate, np.float64)
    if true.ndim == 1:
        true, estimate = true[:, None], estimate[:, None]
    if true.shape[1] != estimate.shape[1]:
        raise ValueError(f"true has {true.shape[1]} leads but the estimate {estimate.shape[1]}.")
    min_samples = int(min_samples if min_samples is not None else _min_pairs(fs))
    max_shift = int(round(max_shift_s * fs))
    n_leads = true.shape[1]
    out = {k: np.full(n_leads, np.nan) for k in ("snr", "r", "rmse", "shift", "n")}
    for lead in range(n_leads):
        best = None
        for shift in range(-max_shift, max_shift + 1):
            t, e = _pairs(true[:, lead], estimate[:, lead], shift)
            if t.size < min_samples:
                continue
            snr, t, e = _centred_snr(t, e)
            if best is None or snr > best[0]:
                best = (snr, shift, t, e)
        if best is None:
            continue
        snr, shift, t, e = best
        out["snr"][lead] = snr
        out["shift"][lead] = shift / fs
        out["n"][lead] = t.size
        out["rmse"][lead] = 1000.0 * float(np.sqrt(np.mean((t - e) ** 2)))
        if np.std(t) > 0 and np.std(e) > 0:
            out["r"][lead] = float(np.corrcoef(t, e)[0, 1])
    return LeadScores(out["snr"], out["r"], out["rmse"], out["shift"], out["n"])


def _min_pairs(fs: int) -> int:
    """The fewest paired samples a lead is scored on (a quarter of a second, at least 10)."""
    return max(10, fs // 4)


def _centred_snr(t: np.ndarray, e: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """SNR (dB) of ``e`` against ``t`` with each one's median removed (the module docstring's definition), and the
    two centred signals."""
    t = t - np.median(t)
    e = e - np.median(e)
    noise = float(np.sum((t - e) ** 2))
    return (10.0 * np.log10(float(np.sum(t**2)) / noise) if noise > 0 else np.inf), t, e


SUBSAMPLE_STEP = 0.1  # the timing diagnostic's shift step, in sample periods


def subsample_timing(true: np.ndarray, estimate: np.ndarray, fs: int,
                     max_shift_s: float = DEFAULT_MAX_SHIFT_S) -> tuple[np.ndarray, np.ndarray]:
    """A diagnostic, not the score: per lead, the time shift (s, continuous, within +-``max_shift_s``) that best
    aligns ``estimate`` with ``true`` and the SNR (dB) at it, ``true`` linearly interpolated between its samples.

    The score allows whole-sample shifts only, so a reading whose time origin is a fraction of a sample off loses
    there on every steep QRS flank (half a sample, 5 ms at 100 Hz, costs several dB); this tells that loss apart
    from a wrong shape. Positive shift: the estimate is late. NaN where the score has none."""
    true = np.asarray(true, np.float64)
    estimate = np.asarray(estimate, np.float64)
    if true.ndim == 1:
        true, estimate = true[:, None], estimate[:, None]
    n_leads = true.shape[1]
    shift_out, snr_out = np.full(n_leads, np.nan), np.full(n_leads, np.nan)
    max_shift = max_shift_s * fs
    shifts = np.arange(-max_shift, max_shift + 0.5 * SUBSAMPLE_STEP, SUBSAMPLE_STEP)
    grid = np.arange(len(true), dtype=np.float64)
    for lead in range(n_leads):
        idx = np.flatnonzero(np.isfinite(estimate[:, lead]))
        t_lead = true[:, lead]
        if idx.size < _min_pairs(fs) or not np.isfinite(t_lead).all():
            continue
        best = None
        for d in shifts:
            at = idx - d
            keep = (at >= 0) & (at <= len(true) - 1)
            if keep.sum() < _min_pairs(fs):
                continue
            snr, _, _ = _centred_snr(np.interp(at[keep], grid, t_lead), estimate[idx[keep], lead])
            if best is None or snr > best[0]:
                best = (snr, d)
        if best is not None:
            snr_out[lead], shift_out[lead] = best[0], best[1] / fs
    return shift_out, snr_out


def snr_db(true: np.ndarray, estimate: np.ndarray, fs: int = 100,
           max_shift_s: float = DEFAULT_MAX_SHIFT_S) -> np.ndarray:
    """Per-lead SNR in dB of ``estimate`` against ``true`` (see the module docstring for the exact definition)."""
    return compare_signals(true, estimate, fs, max_shift_s).snr_db


def _pairs(true: np.ndarray, est: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """(true[i], est[i + shift]) for every i where both exist and are finite."""
    n = min(len(true), len(est))
    if shift >= 0:
        t, e = true[: n - shift] if shift else true[:n], est[shift:n]
    else:
        t, e = true[-shift:n], est[: n + shift]
    m = min(len(t), len(e))
    t, e = t[:m], e[:m]
    ok = np.isfinite(t) & np.isfinite(e)
    return t[ok], e[ok]


# --- per sample (Curation) -------------------------------------------------------------------------------------


def sample_source_record(sample, ptbxl_root: str | Path | None = None):
    """The source record of a PTB-V sample: PTB-XL (root from the dataset's dataset.json unless given) or the
    built-in synthetic source (re-made from its seed)."""
    from ecgcore.signals import DataSourceError, PtbXl, default_ptbxl_dir, synthetic_record

    source = sample.meta.get("source", {})
    fs = int(source.get("fs", 100))
    if source.get("dataset") == "synthetic":
        return synthetic_record(int(source["seed"]), fs=fs)
    if source.get("dataset") == "ptb-xl":
        root = ptbxl_root
        if root is None:
            info_path = Path(sample.folder) / DATASET_FILE
            if info_path.is_file():
                root = json.loads(info_path.read_text()).get("source", {}).get("root")
        root = root or default_ptbxl_dir()
        if root is None:
            raise DataSourceError(f"sample {sample.id} comes from PTB-XL but no PTB-XL folder is known; pass one.")
        return PtbXl(root).record(int(source["ecg_id"]), fs=fs)
    raise DataSourceError(f"sample {sample.id} names no source record it could be compared with.")


def digitize_sample(sample, class_map: np.ndarray | None = None, curve_margin: np.ndarray | None = None,
                    layout: str = "auto", fs: int | None = None, ptbxl_root: str | Path | None = None, source=None):
    """Digitise one PTB-V sample as a photo would be read (the layout found unless given, the sample's paper speed
    and gain) and compare it with its source record: returns (DigitizedEcg, LeadScores). ``class_map`` defaults to
    the sample's ground-truth mask; ``source`` (the record) is looked up when not given. Raises DigitizationError
    (unreadable) or DataSourceError (no source record)."""
    from ecgcore.read.digitize import digitize

    record = source if source is not None else sample_source_record(sample, ptbxl_root)
    fs = fs or record.fs
    mask = sample.mask() if class_map is None else class_map
    paper = sample.meta.get("paper", {})
    dig = digitize(mask, layout=layout, fs=fs, paper_speed=float(paper.get("paper_speed", 25.0)),
                   gain=float(paper.get("gain", 10.0)), curve_margin=curve_margin)
    return dig, compare_signals(source_signal(record, fs), dig.signal, fs)


def source_signal(record, fs: int) -> np.ndarray:
    """A source record's signal (n, 12) in mV at ``fs`` (resampled when the record has another rate)."""
    return record.signal if record.fs == fs else resample_record(record.signal, record.fs, fs)


def sample_digitization_scores(sample, class_map: np.ndarray | None = None, fs: int | None = None,
                               ptbxl_root: str | Path | None = None, source=None) -> dict[str, Any]:
    """Digitise one PTB-V sample and score it against its source record (for the Curation page).

    ``class_map`` defaults to the sample's ground-truth mask (a perfect segmentation, without the sub-pixel edges
    that a segmenter's curve margin gives, so not an upper bound); pass a
    predicted map to score the whole pipeline. Returns {"snr_db": median over leads, "pearson_r", "rmse_uv",
    "leads_scored", "per_lead": {...}, "layout": detected layout, "einthoven_db", "goldberger_db", "reliable" (the
    limb-lead physics and the verdict of ecgcore.read.physics.assess_reading), "error": None} or, when the sample
    cannot be read, the same keys with NaN scores, no reading and "error": one sentence.
    """
    from ecgcore.errors import DigitizationError
    from ecgcore.read.physics import reading_of

    record = source if source is not None else sample_source_record(sample, ptbxl_root)
    try:
        dig, scores = digitize_sample(sample, class_map, fs=fs, source=record)
    except DigitizationError as exc:
        return {"snr_db": float("nan"), "pearson_r": float("nan"), "rmse_uv": float("nan"), "leads_scored": 0,
                "per_lead": {}, "layout": None, "einthoven_db": None, "goldberger_db": None, "reliable": False,
                "error": str(exc)}
    out: dict[str, Any] = scores.summary()
    out["per_lead"] = scores.to_json()["leads"]
    out["layout"] = dig.layout
    out["layout_correct"] = dig.layout == sample.meta.get("layout")
    reading = reading_of(dig)
    out.update(einthoven_db=reading.einthoven_db, goldberger_db=reading.goldberger_db, reliable=reading.reliable)
    out["error"] = None
    return out


def sample_snr(sample, class_map: np.ndarray | None = None, **kwargs: Any) -> float:
    """Digitisation SNR (dB, median over leads) of one PTB-V sample against its source record; NaN if unreadable."""
    return float(sample_digitization_scores(sample, class_map=class_map, **kwargs)["snr_db"])


def resample_record(signal: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = np.gcd(fs_in, fs_out)
    return resample_poly(signal, fs_out // g, fs_in // g, axis=0).astype(np.float32)
