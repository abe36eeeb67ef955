"""Where a layout's leads sit on a page, found from the page itself and checked by the limb-lead physics.

A layout table says which lead follows which, but not where a printer put them: printers differ in the pulse's
width and place, in margins, and in row pitch. Two things on the page say it without any table:

- Rows: each row of trace is a band of ink; its baseline is where the trace spends most of its time.
- Columns and time origin: along a row of a 3x4 printout, the first column shows I, II, III (one above the other,
  at the same times) and the second aVR, aVL, aVF. So wherever the first column is, row 1 - row 2 + row 3 = 0
  (Einthoven), and wherever the second is, row 1 + row 2 + row 3 = 0 (Goldberger); neither holds for the chest
  leads, the pulse or a neighbouring column. Sliding the layout's time windows along the rows until both laws hold
  places the columns and the time origin to within a sample, whatever marks the printer used.

This module holds that search as plain functions over arrays (rows of trace read across the whole page, sampled
every ``step_mm``); :mod:`ecgcore.read.digitize` reads the rows and places the cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgcore.layouts import Layout, LeadCell
from ecgcore.read.physics import LIMB_LAWS, residual_db

SEARCH_STEP_MM = 0.25  # the rows of trace are sampled this finely along the paper (10 ms at 25 mm/s)
SEARCH_BEFORE_MM = 4.0  # the time origin is searched from this far left of the first trace ink ...
SEARCH_AFTER_MM = 16.0  # ... to this far right of it (a pulse and a gap before the first lead's trace)
SEARCH_AROUND_MM = 10.0  # and this far either side of where the layout table put it
MIN_WINDOW_COVERAGE = 0.8  # a law's window counts when all its rows are read along this share of it
UNMEASURED_DB = -10.0  # a law that cannot be measured at a candidate origin scores this
CAP_DB = 25.0
PLATEAU_DB = 0.5  # origins whose score is this close to the best one keep the physics as well
UNREAD_COST_DB_PER_MM = 2.0  # a candidate origin's score pays this per mm of its law windows left unread
LEAD_CHANGE_TRIM_S = 0.08  # beyond this a law holds as well as on a true record: more does not make a better origin


@dataclass(frozen=True)
class LawWindow:
    """Rows of a layout where one limb-lead law holds, and the seconds of the record they share."""

    law: str
    rows: tuple[int, ...]  # the layout rows holding the law's leads, in LIMB_LAWS order
    t0: float
    t1: float


def law_windows(lay: Layout) -> list[LawWindow]:
    """Per limb-lead law, the layout cells that show all its leads over the same seconds (3x4: I, II, III in the
    first column; aVR, aVL, aVF in the second; 6x2 and 12x1: both in the first)."""
    out = []
    ends = _row_ends(lay)
    for law, leads in LIMB_LAWS.items():
        by_window: dict[tuple[float, float], dict[str, LeadCell]] = {}
        for cell in lay.cells:
            by_window.setdefault((cell.t0, cell.t1), {}).setdefault(cell.lead, cell)
        for (t0, t1), cells in sorted(by_window.items()):
            if all(name in cells for name, _ in leads):
                rows = tuple(cells[name].row for name, _ in leads)
                if len(set(rows)) == len(rows):
                    # where the cells give way to other leads, the same stretch the reading leaves out
                    row_end = min(ends[r] for r in rows)
                    out.append(LawWindow(law, rows, *_trimmed(t0, t1, row_end)))
                    break
    return out


def match_rows(layout_rows_mm: list[float], ink_rows_mm: list[float], tolerance_mm: float) -> list[float | None]:
    """The ink row that each layout row (baseline in paper mm, already placed) stands for: in order when the page
    shows as many rows as the layout, else the nearest ink row within ``tolerance_mm`` (None where there is none)."""
    if len(ink_rows_mm) == len(layout_rows_mm):
        return [float(v) for v in ink_rows_mm]
    out: list[float | None] = []
    for v in layout_rows_mm:
        near = [w for w in ink_rows_mm if abs(w - v) <= tolerance_mm]
        out.append(min(near, key=lambda w: abs(w - v)) if near else None)
    return out


def window_scores(strips: np.ndarray, x0_index: np.ndarray, windows: list[LawWindow], samples_per_s: float,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Each law's dB (capped at CAP_DB; UNMEASURED_DB where it cannot be measured) for each candidate time origin,
    and how much of each window (mm) is not read in all its rows.

    ``strips`` is (layout rows, n) trace values (NaN where not read) sampled every SEARCH_STEP_MM along the paper;
    ``x0_index`` are candidate sample indices of t = 0; ``samples_per_s`` = paper speed / SEARCH_STEP_MM.
    Returns two (len(x0_index), len(windows)) arrays.
    """
    n = strips.shape[1]
    scores = np.full((len(x0_index), len(windows)), UNMEASURED_DB)
    unread = np.full((len(x0_index), len(windows)), np.inf)
    for j, win in enumerate(windows):
        coefficients = np.array([c for _, c in LIMB_LAWS[win.law]])
        rows = strips[list(win.rows)]
        a_off, b_off = int(round(win.t0 * samples_per_s)), int(round(win.t1 * samples_per_s))
        for i, x0 in enumerate(x0_index):
            a, b = int(x0) + a_off, int(x0) + b_off
            if b > n and n - a >= 0.5 * (b - a):
                b = n  # a page cropped at the right (a photo of part of it): the window is read as far as it goes
            if a < 0 or b > n or b <= a:
                continue
            x = rows[:, a:b].T
            shared = np.isfinite(x).all(axis=1)
            unread[i, j] = float((~shared).sum()) * SEARCH_STEP_MM
            if shared.mean() < MIN_WINDOW_COVERAGE:
                continue
            db = residual_db(x[shared], coefficients)
            if db is not None:
                scores[i, j] = min(db, CAP_DB)
    return scores, unread


def best_origin(strips: np.ndarray, u_start: float, windows: list[LawWindow], paper_speed: float,
                around_mm: list[float], row_s: float | None = None) -> tuple[float, float] | None:
    """The paper position (mm) of t = 0 that best keeps every law window's physics, and its score (the weakest law's
    dB); None when no candidate measures every law. Candidates lie every SEARCH_STEP_MM within SEARCH_AROUND_MM of
    each position in ``around_mm`` (the layout table's origin) and from SEARCH_BEFORE_MM before to SEARCH_AFTER_MM
    after the first trace ink.

    The laws hold over a stretch of origins (a window may start on a flat stretch before the trace, such as a
    pulse's lead-out, and the cells' ends next to a lead change are not read), so each candidate's weakest law pays
    UNREAD_COST_DB_PER_MM for every mm left unread of its windows and of its rows' whole span (``row_s`` seconds
    from the origin, when given: the law rows' traces end there), and of the candidates within PLATEAU_DB of the
    best and contiguous with it the latest is taken: any later and a row's span runs past the end of its trace; any
    earlier only adds a flat stretch before it. Without ``row_s`` (a row whose end is not trace) the earliest is
    taken, and a flat foot after a calibration pulse may then be taken for the first lead's start.
    """
    if not windows:
        return None
    read = np.isfinite(strips[sorted({r for w in windows for r in w.rows})]).all(axis=0)  # every law row read
    if not read.any():
        return None
    first_ink = u_start + float(np.flatnonzero(read)[0]) * SEARCH_STEP_MM
    spans = [(first_ink - SEARCH_BEFORE_MM, first_ink + SEARCH_AFTER_MM)]
    spans += [(x - SEARCH_AROUND_MM, x + SEARCH_AROUND_MM) for x in around_mm]
    candidates = np.unique(np.concatenate([
        np.arange(int(np.floor((lo - u_start) / SEARCH_STEP_MM)), int(np.ceil((hi - u_start) / SEARCH_STEP_MM)) + 1)
        for lo, hi in spans]))
    candidates = candidates[(candidates >= 0) & (candidates < strips.shape[1])]
    if not len(candidates):
        return None
    samples_per_s = paper_speed / SEARCH_STEP_MM
    per_law, unread = window_scores(strips, candidates, windows, samples_per_s)
    scores = per_law.min(axis=1)
    if scores.max() <= UNMEASURED_DB:
        return None
    unread = unread.max(axis=1)
    if row_s is not None:
        span = int(round(row_s * samples_per_s))
        ends = candidates + span
        inside = (candidates >= 0) & (ends <= len(read))
        cumulative = np.concatenate([[0], np.cumsum(read.astype(np.int64))])
        read_in_span = np.where(inside, cumulative[np.minimum(ends, len(read))] - cumulative[candidates], 0)
        unread = np.maximum(unread, (span - read_in_span) * SEARCH_STEP_MM)
    objective = scores - UNREAD_COST_DB_PER_MM * np.minimum(unread, 1e6)
    best = int(np.argmax(objective))
    near = objective >= objective[best] - PLATEAU_DB
    step = 1 if row_s is not None else -1
    pick = best
    while 0 <= pick + step < len(candidates) and near[pick + step] and candidates[pick + step] == candidates[pick] + step:
        pick += step
    return u_start + float(candidates[pick]) * SEARCH_STEP_MM, float(scores[pick])


def place_cells(lay: Layout, x0_mm: float, row_baselines_mm: list[float], paper_speed: float) -> list[LeadCell]:
    """The layout's cells placed on the page: each lead's window starts at ``x0_mm`` + t0 x speed (the trace only,
    no calibration pulse) and each row on its baseline. Where a row changes lead, LEAD_CHANGE_TRIM_S on either side
    is left unread: printers put marks and the next lead's label there, which are not trace."""
    ends = _row_ends(lay)
    cells = []
    for c in lay.cells:
        base = row_baselines_mm[c.row]
        t0, t1 = _trimmed(c.t0, c.t1, ends[c.row])
        cells.append(LeadCell(c.lead, c.row, c.col, x0_mm + t0 * paper_speed, base - c.h_mm / 2 - 1.0,
                              (t1 - t0) * paper_speed, c.h_mm, t0, t1, False))
    return cells


def _row_ends(lay: Layout) -> dict[int, float]:
    ends: dict[int, float] = {}
    for c in lay.cells:
        ends[c.row] = max(ends.get(c.row, c.t1), c.t1)
    return ends


def _trimmed(t0: float, t1: float, row_end: float) -> tuple[float, float]:
    """A cell's seconds without LEAD_CHANGE_TRIM_S next to a lead change (not at the row's start or end)."""
    return t0 + (LEAD_CHANGE_TRIM_S if t0 > 0 else 0.0), t1 - (LEAD_CHANGE_TRIM_S if t1 < row_end else 0.0)
