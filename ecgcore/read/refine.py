"""A page placement made finer than its search's steps, from where the ink of each row ends and breaks.

The page search (:mod:`ecgcore.read.placement`) steps its time origin and the gap between columns by 0.25 mm
(10 ms at 25 mm/s) and reads the pen's round cap as trace, so its cells may start up to ~10 ms off, and a gap off
by 0.2 mm moves every later column of a 3x4 page by as much again. The limb-lead laws cannot see either (every
lead of a column moves alike), yet at 100 Hz a 5 ms error halves the SNR of each QRS. Two things printed on the
page place them finer:

- A row's end: its trace stops at the record's last sample (or its last cell's end), the pen's round cap beyond.
  Its last ink less the pen's half width (from the trace's height where it is flattest) is where that sample was
  drawn.
- A break between columns: blank paper, or a cut printed at the lead change, is centred on the column boundary,
  whichever the printer drew (the pens' caps on either side are alike), so its middle needs no pen model.

Each measure is a line in (origin, gap): ``y = x0 + a + b * gap``. Those within REFINE_MM of the search's placement
are solved for both (when column breaks and row ends give two different ``b``) or for the origin alone; the
result moves each by at most MAX_MOVE_MM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgcore.read.ink import PaperInk

REFINE_MM = 0.75  # a measure this far from the search's placement is something else (a label, a mark, a crop)
MAX_MOVE_MM = 1.5  # the origin and the gap move at most this far (the search may trade one for the other this much)
ROW_END_SPAN_MM = 2.0  # the pen's width is measured over this much of a row's end ...
ROW_END_CAP_MM = 0.6  # ... leaving out the last this much (the cap itself)
# A round cap reaches half the pen's width beyond the last sample. The trace's width across its slope, counted in
# pixels, is the pen's plus about SEGMENTATION_WIDENING_PX of the photo's pixels on either side (pixel coverage, and
# the U-Net's blur), while the cap's tip is not lengthened as much. On a validation set of mixed PTB-V photos (fold
# 9, not the held-out fold 10) the cap share of the height that 23 page placements needed was 0.44 on scans of 8-12
# px/mm and 0.25 on photos of 4-5 px/mm, which half a pixel explains (0.5 - 0.5 / (px/mm x height)); with it, the
# median time error of page placements there is -1.0 ms (photos) and +1.5 ms (scans), was +3.5 and +7 ms.
SEGMENTATION_WIDENING_PX = 0.5
BREAK_MIN_MM = 0.3  # blank paper this long along a row is a break in its trace
BREAK_ISLAND_MM = 0.6  # ink this narrow inside a break is a mark printed there (a tick), not trace
BREAK_NEAR_MM = 1.0  # a break's middle this close to where the search put the column boundary


@dataclass(frozen=True)
class RowPlan:
    """One layout row as the search placed it: paper seconds from the origin to each column boundary (the
    later cells' starts, without gaps) and to its end, and whether its ink ends in trace (not in a pulse)."""

    boundaries_s: tuple[float, ...]
    end_s: float
    ends_in_trace: bool


def refine_placement(paper: PaperInk, strips: np.ndarray, u_start: float, step_mm: float, plans: list[RowPlan],
                     x0: float, gap: float, paper_speed: float, image_px_per_mm: float,
                     breaks: bool = True) -> tuple[float, float]:
    """The origin and gap (paper mm) of a page placement, refined from the rows' ends and (with ``breaks``) the
    breaks between their columns; ``strips`` are the rows read across the page every ``step_mm`` from ``u_start``
    (NaN where unread), ``image_px_per_mm`` the photo's resolution. Returns (x0, gap) unchanged when nothing is
    measured."""
    obs: list[tuple[float, float, float]] = []  # (y, a, b): y = x0 + a + b * gap
    for plan, strip in zip(plans, strips):
        read = np.flatnonzero(np.isfinite(strip))
        if read.size < 2:
            continue
        if plan.ends_in_trace:
            tail = strip[read[read >= read[-1] - int(round(ROW_END_SPAN_MM / step_mm))]]
            end = trace_end_mm(paper, u_start + read[-1] * step_mm, tail, image_px_per_mm)
            if end is not None:
                obs.append((end, plan.end_s * paper_speed, float(len(plan.boundaries_s))))
        if breaks:
            for k, s in enumerate(plan.boundaries_s):
                expected = x0 + s * paper_speed + (k + 0.5) * gap
                middle = break_middle_mm(paper, strip, u_start, step_mm, expected, gap)
                if middle is not None:
                    obs.append((middle, s * paper_speed, k + 0.5))
    if not obs:
        return x0, gap
    y, a, b = (np.array(v) for v in zip(*obs))
    keep = np.abs(y - (x0 + a + b * gap)) <= REFINE_MM
    y, a, b = y[keep], a[keep], b[keep]
    if not y.size:
        return x0, gap
    if np.ptp(b) >= 0.5 and np.count_nonzero(b != np.round(b)) >= 1:
        # breaks and ends (or breaks at several boundaries): both unknowns by least squares, then again without the
        # measures more than 0.2 mm off the residuals' median, while those left still tell the two apart
        design = np.stack([np.ones_like(b), b], axis=1)
        for _ in range(2):
            (new_x0, new_gap), *_ = np.linalg.lstsq(design, y - a, rcond=None)
            residual = y - a - design @ np.array([new_x0, new_gap])
            inliers = np.abs(residual - np.median(residual)) <= 0.2
            if inliers.all() or inliers.sum() < 2 or np.ptp(b[inliers]) < 0.5:
                break
            design, y, a, b = design[inliers], y[inliers], a[inliers], b[inliers]
    else:
        new_x0, new_gap = float(np.median(y - a - b * gap)), gap
    if abs(new_x0 - x0) > MAX_MOVE_MM or abs(new_gap - gap) > MAX_MOVE_MM or new_gap < -0.1:
        return x0, gap
    return float(new_x0), float(max(new_gap, 0.0))


def trace_end_mm(paper: PaperInk, u_last: float, tail_v: np.ndarray, image_px_per_mm: float) -> float | None:
    """Where a row's trace ends (paper mm, the centre of the pen at its last sample): its rightmost ink near
    ``u_last`` (where the row read across the page ends; ``tail_v`` its levels over the last ROW_END_SPAN_MM), less
    the pen's half width: half the trace's height across its slope (the lower quartile over that stretch), less the
    widening that pixels add to it (SEGMENTATION_WIDENING_PX of the photo's pixels at ``image_px_per_mm``)."""
    pitch = 1.0 / paper.px_per_mm
    lo, hi = float(np.min(tail_v)) - 1.0, float(np.max(tail_v)) + 1.0
    near = (paper.u > u_last - ROW_END_SPAN_MM) & (paper.u < u_last + 1.0) & (paper.v > lo) & (paper.v < hi)
    u, v = paper.u[near], paper.v[near]
    if u.size < 10:
        return None
    last = float(u.max()) + 0.5 * pitch
    body = u < last - ROW_END_CAP_MM
    col = np.round(u[body] / pitch).astype(np.int64)
    if col.size < 10:
        return None
    order = np.argsort(col, kind="stable")
    col, vs = col[order], v[body][order]
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    top, bottom = np.minimum.reduceat(vs, starts), np.maximum.reduceat(vs, starts)
    # the pen's width across the trace: each column's height, less what the trace's slope adds to it
    slope = np.gradient(0.5 * (top + bottom), col[starts] * pitch) if starts.size > 1 else np.zeros(1)
    height = (bottom - top + pitch) / np.sqrt(1.0 + slope**2)
    widening = SEGMENTATION_WIDENING_PX / image_px_per_mm
    half_width = 0.5 * float(np.percentile(height, 25)) - widening
    return last - max(half_width, 0.0)


def break_middle_mm(paper: PaperInk, strip: np.ndarray, u_start: float, step_mm: float, expected: float,
                    gap: float) -> float | None:
    """The middle (paper mm) of the break in a row's ink nearest ``expected`` (a column boundary, ``gap`` mm of
    blank paper the search found there), or None: the row's ink within gap / 2 + 1.5 mm of it, at the levels the row
    keeps there, its stretches of no ink at least BREAK_MIN_MM long (joined across ink narrower than
    BREAK_ISLAND_MM: a tick printed in the break), the one whose middle is within BREAK_NEAR_MM of ``expected``."""
    half = 0.5 * gap + 1.5
    i0 = max(int(np.floor((expected - half - 2.0 - u_start) / step_mm)), 0)
    i1 = max(int(np.ceil((expected + half + 2.0 - u_start) / step_mm)), 0)
    levels = strip[i0:i1]
    levels = levels[np.isfinite(levels)]
    if levels.size < 4:
        return None
    lo, hi = float(levels.min()) - 1.5, float(levels.max()) + 1.5
    near = (paper.u > expected - half) & (paper.u < expected + half) & (paper.v > lo) & (paper.v < hi)
    u = np.unique(paper.u[near])
    if u.size < 2:
        return None
    gaps = np.diff(u)
    open_ = np.flatnonzero(gaps >= BREAK_MIN_MM)
    if not open_.size:
        return None
    # join breaks separated by a narrow island of ink
    spans = [[u[open_[0]], u[open_[0] + 1]]]
    for i in open_[1:]:
        if u[i] - spans[-1][1] <= BREAK_ISLAND_MM:
            spans[-1][1] = u[i + 1]
        else:
            spans.append([u[i], u[i + 1]])
    middles = np.array([0.5 * (a + b) for a, b in spans])
    best = int(np.argmin(np.abs(middles - expected)))
    return float(middles[best]) if abs(middles[best] - expected) <= BREAK_NEAR_MM else None
