"""Pacing marks: the spike that many electrocardiographs draw at each pacemaker pulse.

A printer marks a paced beat with a thin vertical line of one fixed height (about 1 mV), the same in every lead. It
is a mark, not a recording: I + III = II and aVR + aVL + aVF = 0 cannot hold across it (the same spike h in all
three leads leaves h, or 3h, of residual), and the classifiers never saw such marks in PTB-XL's signals. So the
reader finds them and takes them out of the signal, saying where (``quality["pace_marks_s"]``).

A mark candidate is a spike narrower than MAX_WIDTH_S at half height (a QRS's R wave is wider) of at least MIN_MV,
found at the same instant (within MATCH_S), with the same sign and a height within HEIGHT_RATIO, in at least two
leads and in at least half of the leads read at that time, and in none with the opposite sign (at a QRS, some leads
go up and others down). Pacing is proven only by MIN_PROVEN candidates that all three leads of a limb-lead law show
alike, which no heart can make (the law would leave the spike zero); chest leads alone may show alike narrow R
waves at every beat. The other candidates count when they have the proven marks' height (a printer draws every
mark alike), and fewer than MIN_MARKS in all are not taken for pacing.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ecgcore.constants import LEAD_INDEX
from ecgcore.read.physics import LIMB_LAWS

FS = 500  # the rate the marks are looked for at (a mark is 5-10 samples wide here; at 100 Hz, one or two)
MIN_MV = 0.4
MAX_WIDTH_S = 0.02
MATCH_S = 0.01
HEIGHT_RATIO = 1.33
MIN_MARKS = 5  # a paced 10 s record shows one at every paced beat (5 or more at 30 bpm and above) ...
MIN_PROVEN = 2  # ... of which this many in all three leads of a limb-lead law
LAW_LEADS = tuple(frozenset(LEAD_INDEX[name] for name, _ in leads) for leads in LIMB_LAWS.values())
BASELINE_S = 0.05  # a spike's height is measured from the running median over this much either side
CUT_S = 0.015  # the signal is bridged over this much either side of a mark


def narrow_spikes(x: np.ndarray, fs: int = FS) -> list[tuple[int, float]]:
    """(sample, height in mV over the running median) of the spikes of one lead (NaN where not read) that are at
    least MIN_MV high and at most MAX_WIDTH_S wide at half their height."""
    n = len(x)
    w = int(round(BASELINE_S * fs))
    k = max(1, int(round(MAX_WIDTH_S * fs)))
    if n < 2 * w + 1 or not np.isfinite(x).any():
        return []
    # Candidates first (cheap): a narrow spike stands out from the samples MAX_WIDTH_S either side of it.
    padded = np.pad(x, k, mode="edge")
    with np.errstate(invalid="ignore"):
        rise = np.abs(x - 0.5 * (padded[: n] + padded[2 * k:]))
    candidates = np.flatnonzero(np.nan_to_num(rise) >= 0.5 * MIN_MV)
    if not candidates.size:
        return []
    windows = sliding_window_view(np.pad(x, w, mode="edge"), 2 * w + 1)[candidates]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a window all NaN (outside the lead's cells) stays NaN
        base = np.nanmedian(windows, axis=1)
    near = int(round(MATCH_S * fs))
    out = []
    for i, b0 in zip(candidates, base):
        if not np.isfinite(b0) or not np.isfinite(x[i]) or abs(x[i] - b0) < MIN_MV:
            continue
        lo, hi = max(0, i - w), min(n, i + w + 1)
        ad = np.nan_to_num(np.abs(x[lo:hi] - b0))
        j = i - lo
        if ad[j] < ad[max(0, j - near): j + near + 1].max():
            continue  # not the top of its spike
        half = ad >= ad[j] / 2
        a = b = j
        while a > 0 and half[a - 1]:
            a -= 1
        while b < len(ad) - 1 and half[b + 1]:
            b += 1
        if (b - a + 1) / fs <= MAX_WIDTH_S:
            out.append((int(i), float(x[i] - b0)))
    return out


def find_pace_marks(signal: np.ndarray, fs: int = FS) -> list[float]:
    """The times (s) of the pacing marks in a (n, 12) mV signal at ``fs`` (NaN where a lead is not read, columns in
    LEAD_NAMES order); empty when the record shows no pacing."""
    events = sorted((i, h, lead) for lead in range(signal.shape[1]) for i, h in narrow_spikes(signal[:, lead], fs))
    near = MATCH_S * fs
    marks: list[tuple[int, float, set[int]]] = []
    for i, h, _lead in events:
        if any(abs(m - i) <= 2 * near for m, _, _ in marks):
            continue
        around = [(g, other) for j, g, other in events if abs(j - i) <= near]
        alike = {other for g, other in around if g * h > 0 and 1 / HEIGHT_RATIO <= g / h <= HEIGHT_RATIO}
        read = int(np.isfinite(signal[i]).sum())
        # A mark is drawn alike in every lead: none shows an opposite spike there (a QRS does: I up, aVR down), and
        # most leads read at that instant show it (the segmentation may miss it in some).
        if len(alike) >= max(2, (read + 1) // 2) and not any(g * h < 0 for g, _ in around):
            marks.append((i, h, alike))
    # Proof of pacing: instants where all three leads of a limb-lead law show the same spike, which no heart can
    # make (I + III = II and aVR + aVL + aVF = 0 leave it 0). Chest leads alone may show alike narrow R waves.
    proven = [h for _, h, alike in marks if any(law <= alike for law in LAW_LEADS)]
    if len(proven) < MIN_PROVEN:
        return []
    typical = float(np.median(proven))  # the printer draws every mark alike: the others must be of that height
    kept = [i for i, h, _ in marks if 1 / HEIGHT_RATIO <= h / typical <= HEIGHT_RATIO]
    return [round(i / fs, 4) for i in kept] if len(kept) >= MIN_MARKS else []


def without_marks(t: np.ndarray, mv: np.ndarray, marks: list[float]) -> np.ndarray:
    """A lead's readings (times ``t`` s, values ``mv``) bridged by a straight line over CUT_S either side of each
    mark, between the last reading before and the first after."""
    out = np.array(mv, np.float64, copy=True)
    for m in marks:
        inside = np.abs(t - m) <= CUT_S
        if not inside.any():
            continue
        before = np.flatnonzero((t < m - CUT_S) & np.isfinite(out))
        after = np.flatnonzero((t > m + CUT_S) & np.isfinite(out))
        if not before.size or not after.size:
            out[inside] = np.nan
            continue
        i, j = before[np.argmax(t[before])], after[np.argmin(t[after])]
        out[inside] = np.interp(t[inside], [t[i], t[j]], [out[i], out[j]])
    return out
