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

Blank paper that every row shows at a lead change also places columns beyond that reach. A layout table's
placement (anchored on found pulses, no search) assumes the table's columns: where the blank starts where the
earlier column's trace ends, :func:`cells_on_lead_changes` moves the later columns onto where their ink starts (a
6x2 printer that leaves 1.4-2.6 mm between its columns). A page placement's search may trade its origin against
the gap by a whole gap: where one of the first two columns meets the blank, :func:`page_lead_change` moves the
other onto it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ecgcore.layouts import LeadCell
from ecgcore.read.ink import PaperInk

NEGATIVE_GAP_MM = 0.1  # a gap solved below -this is not one (within it: none)
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
        if np.count_nonzero(np.isfinite(strip)) < 2:
            continue
        end = _row_end_mm(paper, strip, u_start, step_mm, plan, image_px_per_mm)
        if end is not None:
            obs.append((end, plan.end_s * paper_speed, float(len(plan.boundaries_s))))
        if breaks:
            for k, s in enumerate(plan.boundaries_s):
                expected = x0 + s * paper_speed + (k + 0.5) * gap
                middle = break_middle_mm(paper, strip, u_start, step_mm, expected, gap)
                if middle is not None:
                    obs.append((middle, s * paper_speed, k + 0.5))
    return solve_placement(obs, x0, gap)


def solve_placement(obs: list[tuple[float, float, float]], x0: float, gap: float) -> tuple[float, float]:
    """The origin and gap (paper mm) that measures ``obs`` put near the search's (``x0``, ``gap``): each measure
    (y, a, b) says y = x0 + a + b * gap (a row's end: b its number of gaps; a break's middle: b half a gap more than
    the gaps before it). Those within REFINE_MM of the search's placement are solved for both unknowns where they
    tell the two apart (breaks and ends, or breaks at several boundaries), else for the origin alone; the result
    moves each by at most MAX_MOVE_MM, or (x0, gap) is returned unchanged."""
    if not obs:
        return x0, gap
    y, a, b = (np.array(v, np.float64) for v in zip(*obs))
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
        if new_gap < -NEGATIVE_GAP_MM:
            # No printer overlaps its columns: the measures' scatter (a pen's cap read short at the rows' ends, one
            # break's middle a little late) traded into a negative gap. The origin alone then, at no gap; throwing
            # the measures away left fold-9 dev pages 0.3-0.6 mm (1-2 samples) off where all of them agreed.
            new_x0, new_gap = float(np.median(y - a)), 0.0
    else:
        new_x0, new_gap = float(np.median(y - a - b * gap)), gap
    if abs(new_x0 - x0) > MAX_MOVE_MM or abs(new_gap - gap) > MAX_MOVE_MM:
        return x0, gap
    return float(new_x0), float(max(new_gap, 0.0))


def origin_from_row_ends(paper: PaperInk, strips: np.ndarray, u_start: float, step_mm: float, plans: list[RowPlan],
                         gap: float, paper_speed: float, image_px_per_mm: float,
                         span_mm: tuple[float, float]) -> float | None:
    """The origin (paper mm) that the rows' trace ends put within ``span_mm`` (lowest, highest): the median of what
    the ends that fall in it say (each end less its row's length of cells and gaps at ``gap``), or None when no row
    ending in trace says one there."""
    said = []
    for plan, strip in zip(plans, strips):
        end = _row_end_mm(paper, strip, u_start, step_mm, plan, image_px_per_mm)
        if end is not None:
            x0 = end - plan.end_s * paper_speed - len(plan.boundaries_s) * gap
            if span_mm[0] <= x0 <= span_mm[1]:
                said.append(x0)
    return float(np.median(said)) if said else None


def _row_end_mm(paper: PaperInk, strip: np.ndarray, u_start: float, step_mm: float, plan: RowPlan,
                image_px_per_mm: float) -> float | None:
    """Where a row ending in trace ends (trace_end_mm), or None (a row ending in a pulse, read at fewer than two
    steps, or with too little ink at its end)."""
    read = np.flatnonzero(np.isfinite(strip))
    if not plan.ends_in_trace or read.size < 2:
        return None
    tail = strip[read[read >= read[-1] - int(round(ROW_END_SPAN_MM / step_mm))]]
    return trace_end_mm(paper, u_start + read[-1] * step_mm, tail, image_px_per_mm)


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
    half_width = pen_half_width(u[body], v[body], pitch, image_px_per_mm)
    return None if half_width is None else last - half_width


def pen_half_width(u: np.ndarray, v: np.ndarray, pitch: float, image_px_per_mm: float) -> float | None:
    """Half the pen's width (mm) from a stretch of one trace's ink (``u``, ``v``: pixel centres on a raster of
    ``pitch`` mm): half the trace's height across its slope (the lower quartile over the stretch), less the widening
    that pixels add to it (SEGMENTATION_WIDENING_PX of the photo's pixels at ``image_px_per_mm``); None when the
    stretch holds under 10 pixels."""
    col = np.round(u / pitch).astype(np.int64)
    if col.size < 10:
        return None
    order = np.argsort(col, kind="stable")
    col, vs = col[order], v[order]
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    top, bottom = np.minimum.reduceat(vs, starts), np.maximum.reduceat(vs, starts)
    # the pen's width across the trace: each column's height, less what the trace's slope adds to it
    slope = np.gradient(0.5 * (top + bottom), col[starts] * pitch) if starts.size > 1 else np.zeros(1)
    height = (bottom - top + pitch) / np.sqrt(1.0 + slope**2)
    widening = SEGMENTATION_WIDENING_PX / image_px_per_mm
    return max(0.5 * float(np.percentile(height, 25)) - widening, 0.0)


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


# --- lead changes on breaks -------------------------------------------------------------------------------------
LEAD_CHANGE_SEARCH_MM = 5.0  # a lead change's break is looked for this far either side of where the cells put it
# (gaps between columns up to about 4 mm)
LEAD_CHANGE_BAND_MM = 2.5  # ... in each row's ink within this of the level the row keeps there
LEAD_CHANGE_MARK_MM = 1.5  # ink this narrow between blank paper, in every row alike, is a mark printed there
LEAD_CHANGE_BREAK_MM = 0.5  # blank in every row this long (and LEAD_CHANGE_BREAK_PX photo pixels) is a break ...
LEAD_CHANGE_BREAK_PX = 2.5
LEAD_CHANGE_END_MM = 1.0  # ... when it starts this close to where the earlier column ends
LEAD_CHANGE_GAP_MM = 1.2  # a break this long is paper between columns; a shorter one lies across the lead change (a
# gap printed there, or a bar taken out of the ink)
LEAD_CHANGE_PEN_MM = 0.12  # the pen's half width where it cannot be measured: a trace's ink starts this far before
# its first sample
LEAD_CHANGE_MOVE_MM = REFINE_MM  # a later column moves when its break says so by more than this (less: refined)
LEAD_CHANGE_KEEP_MM = 0.5  # a column this close to where its break says it starts is in place
PULSE_LOOK_MM = 8.0  # a pulse that opens a column shows its top within this of the column's first ink ...
LEAD_CHANGE_PULSE_MM = 3.0  # ... at least this far above the row's level (alike in every row) ...
PULSE_TOP_MIN_MM = 1.5  # ... for at least this long (0.06 s at 25 mm/s)


@dataclass(frozen=True)
class _Break:
    """Blank paper (a mark printed in it skipped) that every row of a column shows at a lead change."""

    blank_from: float  # where the blank starts on the search raster (mm)
    before: float  # where the earlier column's ink ends (its last pixel's edge, mm)
    after: float  # where the later column's ink starts
    long: bool  # LEAD_CHANGE_GAP_MM or more: paper between columns, not a break across the lead change


@dataclass(frozen=True)
class _Boundary:
    """A lead change of a row layout as cells place it: where the earlier column's and the later one's cells put
    the lead change's time (mm), the later column's cell of each row, and what the rows' ink shows around it."""

    x_prev: float
    x_next: float
    cells: list[LeadCell]
    breaks: list[_Break]
    levels: list[float]  # the level each row's trace keeps there (mm)
    inks: list[tuple[np.ndarray, np.ndarray]]  # each row's ink within LEAD_CHANGE_BAND_MM of it (u, v)


def _boundary(rows: dict[int, list[LeadCell]], full: list[int], k: int, offset: tuple[float, float],
                paper: PaperInk, paper_speed: float, pulse_mm: float, image_px_per_mm: float) -> _Boundary:
    """The lead change between columns k - 1 and k of the rows ``full`` (each row's cells by column)."""
    pitch = max(1.0 / image_px_per_mm, 1.0 / paper.px_per_mm)
    mark = int(LEAD_CHANGE_MARK_MM / pitch)
    shortest = max(LEAD_CHANGE_BREAK_MM, LEAD_CHANGE_BREAK_PX / image_px_per_mm)
    at_prev, at_next = [], []
    for r in full:
        a, b = rows[r][k - 1], rows[r][k]
        t = 0.5 * (a.t1 + b.t0)  # the lead change (cells placed from the page leave a little either side)
        at_prev.append(a.x_mm + (pulse_mm if a.pulse else 0.0) + (t - a.t0) * paper_speed + offset[0])
        at_next.append(b.x_mm + (t - b.t0) * paper_speed + offset[0])
    x_prev, x_next = float(np.median(at_prev)), float(np.median(at_next))
    cells = [rows[r][k] for r in full]
    lo = 0.5 * (x_prev + x_next) - LEAD_CHANGE_SEARCH_MM
    n_bins = int(np.ceil(2 * LEAD_CHANGE_SEARCH_MM / pitch))
    blank = np.ones(n_bins, bool)
    levels: list[float] = []
    inks: list[tuple[np.ndarray, np.ndarray]] = []
    for cell in cells:
        base = cell.baseline_mm + offset[1]
        near = (paper.u >= lo) & (paper.u < lo + n_bins * pitch) & (np.abs(paper.v - base) <= 0.5 * cell.h_mm)
        if near.sum() < 4:
            return _Boundary(x_prev, x_next, cells, [], levels, inks)
        level = _trace_level(paper.v[near])
        band = near & (np.abs(paper.v - level) <= LEAD_CHANGE_BAND_MM)
        levels.append(level)
        inks.append((paper.u[band], paper.v[band]))
        blank[np.clip(((paper.u[band] - lo) / pitch).astype(np.int64), 0, n_bins - 1)] = False
    edges = np.flatnonzero(np.diff(np.concatenate([[0], blank.astype(np.int8), [0]])))
    joined: list[list[int]] = []
    for s, e in zip(edges[0::2], edges[1::2]):  # blank paper either side of a mark is one break
        if joined and s - joined[-1][1] <= mark:
            joined[-1][1] = e
        else:
            joined.append([s, e])
    ink_pitch = 1.0 / paper.px_per_mm
    breaks = []
    for s, e in joined:
        if s == 0 or e == n_bins or (e - s) * pitch < shortest:
            continue  # a break lies between ink on both sides
        # the ink's edges either side (pixel centres and half the paper raster's pixel), alike in every row
        before = float(np.median([u[u < lo + s * pitch].max() for u, _ in inks if (u < lo + s * pitch).any()]))
        after = float(np.median([u[u >= lo + e * pitch].min() for u, _ in inks if (u >= lo + e * pitch).any()]))
        breaks.append(_Break(lo + s * pitch, before + 0.5 * ink_pitch, after - 0.5 * ink_pitch,
                             (e - s) * pitch >= LEAD_CHANGE_GAP_MM))
    return _Boundary(x_prev, x_next, cells, breaks, levels, inks)


def _pen_near(boundary: _Boundary, lo: float, hi: float, paper: PaperInk, image_px_per_mm: float) -> float:
    """The pen's half width (mm) measured on the rows' ink between ``lo`` and ``hi`` (their median; where it cannot
    be measured, LEAD_CHANGE_PEN_MM)."""
    widths = [pen_half_width(u[(u >= lo) & (u < hi)], v[(u >= lo) & (u < hi)], 1.0 / paper.px_per_mm,
                             image_px_per_mm) for u, v in boundary.inks]
    widths = [w for w in widths if w is not None]
    return float(np.median(widths)) if widths else LEAD_CHANGE_PEN_MM


def _column_start(boundary: _Boundary, brk: _Break, paper: PaperInk, image_px_per_mm: float) -> float:
    """Where the later column's first sample lies after blank paper ``brk``: where its ink starts, plus the pen's half
    width measured on it (past the round cap, over ROW_END_SPAN_MM)."""
    lo = brk.after + ROW_END_CAP_MM
    return brk.after + _pen_near(boundary, lo, lo + ROW_END_SPAN_MM, paper, image_px_per_mm)


def _row_cells(cells: list[LeadCell]) -> tuple[dict[int, list[LeadCell]], list[int], int]:
    """The cells of each row by column, the rows that have the most columns, and how many that is."""
    rows: dict[int, list[LeadCell]] = {}
    for c in cells:
        rows.setdefault(c.row, []).append(c)
    rows = {r: sorted(cs, key=lambda c: c.col) for r, cs in rows.items()}
    n_cols = max(len(cs) for cs in rows.values())
    return rows, [r for r, cs in rows.items() if len(cs) == n_cols], n_cols


def cells_on_lead_changes(cells: list[LeadCell], offset: tuple[float, float], paper: PaperInk, paper_speed: float,
                          pulse_mm: float, image_px_per_mm: float) -> tuple[list[LeadCell], list[float]]:
    """The cells with each later column moved to where the page shows it starts: at a break in the ink that every row
    of the column shows from where the earlier column's trace ends (within LEAD_CHANGE_END_MM of where the cells end
    it; a bar or dotted line printed in it is skipped). After blank paper at least LEAD_CHANGE_GAP_MM long the column
    starts where its ink does, plus the pen's half width (its round cap reaches that far before the first sample); a
    shorter break lies across the lead change (a gap a printer leaves there, a bar taken out of the ink), which is
    then its middle. The earlier column stays (its start is the placement's origin). Returns the cells and each lead
    change's move (mm, 0 where none). A move within LEAD_CHANGE_MOVE_MM is not made, nor one past a pulse in or
    after the break (the column's trace starts after the pulse, not where its ink does)."""
    rows, full, n_cols = _row_cells(cells)
    if n_cols < 2 or len(full) < 2:
        return cells, []
    moves: list[float] = []
    for k in range(1, n_cols):
        if any(rows[r][k].pulse for r in full):
            moves.append(0.0)
            continue
        at = _boundary(rows, full, k, offset, paper, paper_speed, pulse_mm, image_px_per_mm)
        best = None
        for brk in at.breaks:
            if abs(brk.blank_from - at.x_prev) > LEAD_CHANGE_END_MM:
                continue  # it starts where the earlier column's trace ends
            start = _column_start(at, brk, paper, image_px_per_mm) if brk.long else 0.5 * (brk.before + brk.after)
            if _pulse_opens(paper, at.cells, offset, brk, start, at.levels):
                continue
            if best is None or abs(start - at.x_next) < abs(best - at.x_next):
                best = start
        move = 0.0
        if best is not None and abs(best - at.x_next) > LEAD_CHANGE_MOVE_MM:
            move = best - at.x_next
        moves.append(round(float(move), 3))
        if move:
            for r, cs in rows.items():
                rows[r] = [replace(c, x_mm=c.x_mm + move) if c.col >= k else c for c in cs]
    if not any(moves):
        return cells, moves
    by_place = {(c.row, c.col): c for cs in rows.values() for c in cs}
    return [by_place[(c.row, c.col)] for c in cells], moves


def page_lead_change(cells: list[LeadCell], paper: PaperInk, paper_speed: float, image_px_per_mm: float,
                     sample_mm: float) -> tuple[float, float]:
    """How far (mm) a page placement's origin and gap between columns move so that its first two columns meet the
    blank paper (LEAD_CHANGE_GAP_MM or more, in every row) at their lead change, where one of them already does:
    the second column's cells within LEAD_CHANGE_KEEP_MM of where its ink starts (plus the pen's half width) and the
    first column's trace ending (its last sample, ``sample_mm`` before the lead change, plus the pen's half width)
    more than LEAD_CHANGE_MOVE_MM from where its cells end it: the origin moves there and the gap on by as much; or
    the first column in place and the second more than LEAD_CHANGE_MOVE_MM off: the gap moves. (0, 0) where
    neither. The search that placed them trades the origin against the gap (the physics sees neither): it takes
    the latest origin it can, and counts a gap holding ink (labels, marks) as unread."""
    rows, full, n_cols = _row_cells(cells)
    if n_cols < 2 or len(full) < 2 or any(rows[r][1].pulse for r in full):
        return 0.0, 0.0
    at = _boundary(rows, full, 1, (0.0, 0.0), paper, paper_speed, 0.0, image_px_per_mm)
    for brk in at.breaks:
        if not brk.long:
            continue
        start = _column_start(at, brk, paper, image_px_per_mm)
        end = brk.before - _pen_near(at, brk.before - ROW_END_CAP_MM - ROW_END_SPAN_MM, brk.before - ROW_END_CAP_MM,
                                     paper, image_px_per_mm) + sample_mm
        if _pulse_opens(paper, at.cells, (0.0, 0.0), brk, start, at.levels):
            continue
        off_end, off_start = end - at.x_prev, start - at.x_next
        if abs(off_start) <= LEAD_CHANGE_KEEP_MM and abs(off_end) > LEAD_CHANGE_MOVE_MM:
            return off_end, -off_end
        if abs(off_end) <= LEAD_CHANGE_KEEP_MM and abs(off_start) > LEAD_CHANGE_MOVE_MM:
            return 0.0, off_start
    return 0.0, 0.0


def _pulse_opens(paper: PaperInk, cells: list[LeadCell], offset: tuple[float, float], brk: _Break, start: float,
                 levels: list[float]) -> bool:
    """Whether a pulse opens the column in every row of it (``cells``, one per row, whose traces keep ``levels``
    around the lead change): from where the break ``brk`` starts to PULSE_LOOK_MM after ``start`` (where the column
    would start), the ink's top keeps one level at least LEAD_CHANGE_PULSE_MM above the row's for at least
    PULSE_TOP_MIN_MM, the same height in every row. Its trace starts after the pulse, not where its ink does (and
    a pulse's top, above the rows' levels, leaves blank paper at them)."""
    heights = []
    lo = brk.blank_from - 0.5
    for cell, level in zip(cells, levels):
        base = cell.baseline_mm + offset[1]
        near = ((paper.u >= lo) & (paper.u < start + PULSE_LOOK_MM) & (paper.v >= base - 0.6 * cell.h_mm)
                & (paper.v <= base + 0.4 * cell.h_mm))
        if near.sum() < 4:
            return False
        u, v = paper.u[near], paper.v[near]
        bins = ((u - lo) / 0.25).astype(np.int64)
        top = np.full(int(bins.max()) + 1, np.inf)
        np.minimum.at(top, bins, v)
        high = np.isfinite(top) & (top <= level - LEAD_CHANGE_PULSE_MM)
        if not high.any():
            return False
        h = float(np.median(top[high]))
        flat = high & (np.abs(top - h) <= 0.4)
        if flat.sum() * 0.25 < PULSE_TOP_MIN_MM:
            return False
        heights.append(level - h)
    return bool(np.ptp(heights) <= 1.0)


def _trace_level(v: np.ndarray, bin_mm: float = 0.5) -> float:
    """The level (paper mm) a row's trace keeps most over a stretch of its ink ``v``: the fullest of 0.5 mm bins
    (smoothed over three); a flat trace holds many pixels at one level, the strokes of a pulse, a QRS or a mark
    few at each."""
    lo = float(v.min())
    counts = np.bincount(((v - lo) / bin_mm).astype(np.int64))
    smooth = np.convolve(counts, np.ones(3), "same")
    return lo + (float(np.argmax(smooth)) + 0.5) * bin_mm
