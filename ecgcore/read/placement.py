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

from ecgcore.constants import LEAD_INDEX
from ecgcore.layouts import Layout, LeadCell
from ecgcore.read.physics import LIMB_LAWS, residual_db
from ecgcore.read.trace import standard_gain

SEARCH_STEP_MM = 0.25  # the rows of trace are sampled this finely along the paper (10 ms at 25 mm/s)
SEARCH_BEFORE_MM = 4.0  # the time origin is searched from this far left of the first trace ink ...
SEARCH_AFTER_MM = 16.0  # ... to this far right of it (a pulse and a gap before the first lead's trace)
SEARCH_AROUND_MM = 10.0  # and this far either side of where the layout table put it
MIN_WINDOW_COVERAGE = 0.6  # a law's window counts when all its rows are read along this share of it
# ... or, where no origin has such a window (a trace the segmenter left in pieces), along this share
MIN_WINDOW_COVERAGE_SPARSE = 0.3
UNMEASURED_DB = -10.0  # a law that cannot be measured at a candidate origin scores this
CAP_DB = 25.0
PLATEAU_DB = 0.5  # origins whose score is this close to the best one keep the physics as well
UNREAD_COST_DB_PER_MM = 2.0  # a candidate origin's score pays this per mm of its law windows left unread
GAP_MARGIN_DB = 1.0  # a gap between columns is taken when it keeps the physics better than none by more than this
GAP_INK_SHARE = 0.25  # a gap between columns inked along more than this share of it holds trace, unless ...
GAP_PULSE_MIN_MM = 4.0  # ... every row shows a flat top this far above its level (a pulse of 0.5 mV at 10 mm/mV) ...
GAP_ALIKE_MM = 1.0  # ... alike within this from row to row ...
GAP_PULSE_TOP_MM = 1.0  # ... for at least this long in one stretch (no QRS: its peaks are narrow)
MAX_GAP_MM = 16.0  # the widest gap between columns searched (a pulse with its flats before each column fits)
PULSE_GAP_MIN_PAIRS = 2  # pulses one column apart in a row that tell the gap between columns ...
PULSE_GAP_ALIKE_MM = 1.0  # ... when they tell it alike within this; the gap is then searched ...
PULSE_GAP_AROUND_MM = 1.0  # ... this close to theirs only (the physics cannot see it where columns keep their laws)
# A calibration pulse of any width in a row (band_pulses): two vertical strokes (a stroke's ink counted at most this
# wide) ...
PULSE_STROKE_MAX_MM = 1.0
PULSE_TOP_S = (0.07, 0.27)  # ... this far apart (printers: 0.08-0.25 s), ...
# ... from the same level or to the same top within this (the trace after a pulse need not start at its foot, and a
# segmenter may cut a stroke's top), ...
PULSE_ENDS_ALIKE_MM = 1.5
PULSE_STROKE_SHARE = 0.8  # ... the shorter at least this share of the taller (a segmenter may cut a corner), ...
PULSE_HOLLOW_MM = 1.0  # ... with ink this near their foot's level between them ...
PULSE_HOLLOW_CLEAR = 2  # ... (steps clear of either stroke) ...
PULSE_HOLLOW_SHARE = 0.2  # ... along at most this share of it
PULSE_ROWS_ALIKE_SHARE = 0.5  # pulses before every column rise at the same place in this share of the rows ...
PULSE_RISES_ALIKE_MM = 1.0  # ... within this (gap_from_band_pulses)
MAX_MISSING_ROWS = 2  # a page of evenly spaced rows may miss this many of its layout's rows
MAX_EXTRA_STRIPS = 1  # a 3x4+II page may show this many more rhythm strips (II and V1: five rows)
# A page placement's row starts are left unread for this long (its first sample at 100 Hz): a pulse printed right
# before the trace ends in a vertical edge there, which the pen's width (and a segmentation's blur) puts under the
# first sample when the lead-out flat is short (a mixed 12x1 page: both laws 9.9 -> 6.3 dB by that one sample)
ROW_START_TRIM_S = 0.01
LEAD_CHANGE_TRIM_S = 0.08  # beyond this a law holds as well as on a true record: more does not make a better origin


@dataclass(frozen=True)
class LawWindow:
    """Rows of a layout where one limb-lead law holds, and the seconds of the record they share.

    ``col`` is the layout column of its cells and ``paper_s`` the seconds of paper from the first lead's start to
    the window's start, counting the cells before it in the row but no gap between columns (a printer may leave
    one; best_origin searches it)."""

    law: str
    rows: tuple[int, ...]  # the layout rows holding the law's leads, in LIMB_LAWS order
    t0: float
    t1: float
    col: int = 0
    paper_s: float = 0.0


def law_windows(lay: Layout) -> list[LawWindow]:
    """Per limb-lead law, the layout cells that show all its leads over the same seconds in one column (3x4: I, II,
    III in the first column; aVR, aVL, aVF in the second; 6x2 and 12x1: both in the first)."""
    out = []
    last = _last_cols(lay)
    starts = paper_starts(lay)
    for law, leads in LIMB_LAWS.items():
        by_window: dict[tuple[int, float, float], dict[str, LeadCell]] = {}
        for cell in lay.cells:
            by_window.setdefault((cell.col, cell.t0, cell.t1), {}).setdefault(cell.lead, cell)
        for (col, t0, t1), cells in sorted(by_window.items()):
            if all(name in cells for name, _ in leads):
                rows = tuple(cells[name].row for name, _ in leads)
                if len(set(rows)) == len(rows):
                    # where the cells give way to other leads, the same stretch the reading leaves out
                    a, b = _trimmed(t0, t1, col, min(last[r] for r in rows))
                    out.append(LawWindow(law, rows, a, b, col, starts[(rows[0], col)] + a - t0))
                    break
    return out


def paper_starts(lay: Layout) -> dict[tuple[int, int], float]:
    """Seconds of paper from a row's first lead to the start of each of its cells, (row, col) -> s: the cells
    before it in the row, end to end (3x4: 0, 2.5, 5, 7.5; the prototype's seed-3x4, whose every column shows the
    same first seconds: 0, 1.8, 3.6, 5.4)."""
    out: dict[tuple[int, int], float] = {}
    for row in sorted({c.row for c in lay.cells}):
        at = 0.0
        for cell in sorted(lay.cells_of_row(row), key=lambda c: c.col):
            out[(row, cell.col)] = at
            at += cell.t1 - cell.t0
    return out


def match_rows(layout_rows_mm: list[float], ink_rows_mm: list[float], tolerance_mm: float) -> list[float | None]:
    """The ink row that each layout row (baseline in paper mm, already placed) stands for: in order when the page
    shows as many rows as the layout, or up to MAX_EXTRA_STRIPS more (further rhythm strips under a 3x4+II
    grid, left unread); in order on the page's own row pitch when one or two rows are missing from a
    page of evenly spaced rows (a flat lead printed faintly, two rows read as one), the first ink row the first
    layout row; else the nearest ink row within ``tolerance_mm`` (None where there is none)."""
    if len(ink_rows_mm) == len(layout_rows_mm):
        return [float(v) for v in ink_rows_mm]
    if len(layout_rows_mm) < len(ink_rows_mm) <= len(layout_rows_mm) + MAX_EXTRA_STRIPS:
        return [float(v) for v in ink_rows_mm[: len(layout_rows_mm)]]  # more rhythm strips below: not read
    on_pitch = _rows_on_pitch(ink_rows_mm, len(layout_rows_mm))
    if on_pitch is not None:
        return on_pitch
    out: list[float | None] = []
    for v in layout_rows_mm:
        near = [w for w in ink_rows_mm if abs(w - v) <= tolerance_mm]
        out.append(min(near, key=lambda w: abs(w - v)) if near else None)
    return out


def _rows_on_pitch(ink_rows_mm: list[float], n_rows: int) -> list[float | None] | None:
    """``n_rows`` rows on the ink rows' own pitch (the smallest spacing), each ink row on its lattice place, None where
    a place holds none; None when the page misses more than MAX_MISSING_ROWS or its rows are not on one pitch."""
    n_ink = len(ink_rows_mm)
    if not n_rows - MAX_MISSING_ROWS <= n_ink < n_rows:
        return None
    index = _lattice_index(ink_rows_mm)
    if index is None or index[-1] >= n_rows:
        return None
    out: list[float | None] = [None] * n_rows
    for k, value in zip(index, np.sort(np.asarray(ink_rows_mm, np.float64))):
        out[k] = float(value)
    return out


def rows_with_holes(ink_rows_mm: list[float]) -> int:
    """How many rows a page of evenly spaced rows of trace prints: the ink rows and up to MAX_MISSING_ROWS places
    of their pitch between them that hold none (a flat lead printed faintly, a row the segmenter missed); the
    number of ink rows when they are not on one pitch."""
    index = _lattice_index(ink_rows_mm)
    if index is None or index[-1] + 1 - len(ink_rows_mm) > MAX_MISSING_ROWS:
        return len(ink_rows_mm)
    return int(index[-1]) + 1


def _lattice_index(ink_rows_mm: list[float]) -> np.ndarray | None:
    """Each ink row's place (sorted, the first at 0) on the rows' own pitch (their smallest spacing), or None when
    fewer than four rows or not every row lies within a fifth of the pitch of its place."""
    v = np.sort(np.asarray(ink_rows_mm, np.float64))
    if len(v) < 4:
        return None
    gaps = np.diff(v)
    pitch = float(np.median(gaps[gaps <= 1.25 * gaps.min()]))
    if pitch <= 0:
        return None
    index = np.round((v - v[0]) / pitch).astype(int)
    if len(set(index)) < len(v) or np.abs(v - v[0] - index * pitch).max() > 0.2 * pitch:
        return None
    return index


def window_scores(strips: np.ndarray, x0_index: np.ndarray, windows: list[LawWindow], samples_per_s: float,
                  min_coverage: float = MIN_WINDOW_COVERAGE) -> tuple[np.ndarray, np.ndarray]:
    """Each law's dB (capped at CAP_DB; UNMEASURED_DB where it cannot be measured) for each candidate time origin,
    and how much of each window (mm) is not read in all its rows.

    ``strips`` is (layout rows, n) trace values (NaN where not read) sampled every SEARCH_STEP_MM along the paper;
    ``x0_index`` are candidate sample indices of t = 0; ``samples_per_s`` = paper speed / SEARCH_STEP_MM. Columns
    are taken end to end (a gap between them is an origin moved by the window's column times the gap).
    A window counts where its rows are read together along ``min_coverage`` of it. Returns two (len(x0_index),
    len(windows)) arrays.
    """
    n = strips.shape[1]
    scores = np.full((len(x0_index), len(windows)), UNMEASURED_DB)
    unread = np.full((len(x0_index), len(windows)), np.inf)
    for j, win in enumerate(windows):
        coefficients = np.array([c for _, c in LIMB_LAWS[win.law]])
        rows = strips[list(win.rows)]
        a_off = int(round(win.paper_s * samples_per_s))
        b_off = a_off + int(round((win.t1 - win.t0) * samples_per_s))
        for i, x0 in enumerate(x0_index):
            a, b = int(x0) + a_off, int(x0) + b_off
            if b > n and n - a >= 0.5 * (b - a):
                b = n  # a page cropped at the right (a photo of part of it): the window is read as far as it goes
            if a < 0 or b > n or b <= a:
                continue
            x = rows[:, a:b].T
            shared = np.isfinite(x).all(axis=1)
            unread[i, j] = float((~shared).sum()) * SEARCH_STEP_MM
            if shared.mean() < min_coverage:
                continue
            db = residual_db(x[shared], coefficients)
            if db is not None:
                scores[i, j] = min(db, CAP_DB)
    return scores, unread


@dataclass(frozen=True)
class Origin:
    """Where a layout's first lead starts on the paper (mm), the weakest law's dB there, and the blank paper (mm)
    between one column's end and the next one's start."""

    x0_mm: float
    score_db: float
    gap_mm: float = 0.0
    # of the law windows and the law rows' cells on the page (and of gaps holding trace, trace after the last cell)
    unread_mm: float = 0.0


@dataclass(frozen=True)
class _PageRuns:
    """Running counts along the law rows' strips (one entry per SEARCH_STEP_MM), for the cost of a placement's cells:
    samples where every law row is read, where a pulse's top shows alike in every row (and where such a top
    starts a stretch of GAP_PULSE_TOP_MM), and where the rows hold trace unlike from row to row."""

    read: np.ndarray
    in_top: np.ndarray
    top: np.ndarray
    trace: np.ndarray
    top_n: int

    @property
    def n(self) -> int:
        return len(self.read) - 1

    @classmethod
    def of(cls, law: np.ndarray, read: np.ndarray) -> _PageRuns:
        def running(mask: np.ndarray) -> np.ndarray:
            return np.concatenate([[0], np.cumsum(mask.astype(np.int64))])

        # between columns a printer leaves blank paper, or prints a pulse alike in every row (a flat top well above
        # each row's level, the same in all): a gap that is mostly ink without such a top holds trace
        level = np.where(read, law - np.nanmedian(law, axis=1, keepdims=True), 0.0)
        alike = np.ptp(level, axis=0) <= GAP_ALIKE_MM
        pulse_top = read & (level.max(axis=0) <= -GAP_PULSE_MIN_MM) & alike
        top_n = max(1, int(round(GAP_PULSE_TOP_MM / SEARCH_STEP_MM)))
        top_starts = np.convolve(pulse_top.astype(np.int64), np.ones(top_n, np.int64), "valid") == top_n
        return cls(running(read), running(pulse_top), running(np.concatenate([top_starts, np.zeros(top_n - 1, bool)])),
                   running(read & ~alike), top_n)

    def cell_costs(self, candidates: np.ndarray, cells_s: list[float], gap_steps: int,
                   samples_per_s: float) -> tuple[np.ndarray, np.ndarray]:
        """For each candidate origin (a strip index), in samples: what its law rows' cells (end to end, ``gap_steps``
        between columns) leave unread, used to place; and what the placement leaves of the page, compared between
        layouts: the same without the rule for cells past the page's end, plus the trace after its last cell."""
        n = self.n
        cell_unread = np.zeros(len(candidates))
        n_cells = sum(int(round(seconds * samples_per_s)) for seconds in cells_s)
        at = 0.0
        for k, seconds in enumerate(cells_s):
            lo = candidates + int(round(at * samples_per_s)) + k * gap_steps
            n_cell = int(round(seconds * samples_per_s))
            first, hi = np.clip(lo, 0, n), np.clip(lo + n_cell, 0, n)
            cell_unread += n_cell - np.where(lo < n, self.read[hi] - self.read[first], 0)
            # a cell holds no pulse: a pulse's top read as trace counts as unread
            cell_unread += self.in_top[hi] - self.in_top[first]
            if k and gap_steps:  # trace in the gap before this column: the whole gap counts as unread
                a, b = np.clip(lo - gap_steps, 0, n), first
                inked = self.read[b] - self.read[a] > GAP_INK_SHARE * (b - a)
                top = self.top[np.maximum(b - self.top_n + 1, a)] > self.top[a]
                cell_unread += np.where(inked & ~top, b - a, 0)
            at += seconds
        end = lo + n_cell
        # what the placement leaves of the page (compared between layouts, not used to place): also the trace after
        # its last cell (a pulse after the rows is alike in every row and does not count)
        on_page = cell_unread + self.trace[n] - self.trace[np.clip(end, 0, n)]
        # rows placed past the end of the page count as not read at all: a page cropped at the right shows no end to
        # place them by (every candidate pays alike), a whole page does (it is placed inside)
        return np.where(end > n, n_cells, cell_unread), on_page


def best_origin(strips: np.ndarray, u_start: float, windows: list[LawWindow], paper_speed: float,
                around_mm: list[float], row_s: float | None = None, row_cells_s: list[float] | None = None,
                gaps_mm: tuple[float, ...] = (0.0,), table_gap_mm: float = 0.0,
                span_mm: tuple[float, float] | None = None, min_coverage: float = MIN_WINDOW_COVERAGE) -> Origin | None:
    """The paper position (mm) of t = 0 (and the gap between columns, of ``gaps_mm``) that best keeps every law
    window's physics; None when no candidate measures every law. Candidates lie every SEARCH_STEP_MM within
    SEARCH_AROUND_MM of each position in ``around_mm`` (the layout table's origin) and from SEARCH_BEFORE_MM before
    to SEARCH_AFTER_MM after the first trace ink; with ``span_mm`` (lowest, highest), only within it (where the
    page's own calibration pulses say the first lead starts: see ecgcore.read.digitize.PULSE_ANCHOR_MM).

    The laws hold over a stretch of origins (a window may start on a flat stretch before the trace, such as a
    pulse's lead-out, and the cells' ends next to a lead change are not read), so each candidate's weakest law pays
    UNREAD_COST_DB_PER_MM for every mm left unread of its windows and of its rows' cells (``row_cells_s``: the
    seconds of each cell of the law rows, end to end; ``row_s`` seconds from the origin when not given: the law
    rows' traces end there), and of the candidates within PLATEAU_DB of the best and contiguous with it the latest
    is taken: any later and a row's span runs past the end of its trace; any earlier only adds a flat stretch before
    it. Without ``row_s`` (a row whose end is not trace) the earliest is taken, and a flat foot after a calibration
    pulse may then be taken for the first lead's start.

    A gap between columns other than the layout table's (``table_gap_mm``: none, or the prototype's pulse before
    every cell) is taken only when it beats the table's by more than GAP_MARGIN_DB: a column
    moved by a gap breaks a law held across it (3x4: aVR, aVL and aVF read a gap early), its cells read blank
    paper where the gap is, and a gap too wide holds trace (ink without the flat top that a pulse printed between
    columns shows alike in every row): each counts as unread.
    """
    if not windows:
        return None
    law = strips[sorted({r for w in windows for r in w.rows})]
    read = np.isfinite(law).all(axis=0)  # every law row read
    if not read.any():
        return None
    first_ink = u_start + float(np.flatnonzero(read)[0]) * SEARCH_STEP_MM
    if span_mm is not None:
        spans = [span_mm]
    else:
        spans = [(first_ink - SEARCH_BEFORE_MM, first_ink + SEARCH_AFTER_MM)]
        spans += [(x - SEARCH_AROUND_MM, x + SEARCH_AROUND_MM) for x in around_mm]
    candidates = np.unique(np.concatenate([
        np.arange(int(np.floor((lo - u_start) / SEARCH_STEP_MM)), int(np.ceil((hi - u_start) / SEARCH_STEP_MM)) + 1)
        for lo, hi in spans]))
    candidates = candidates[(candidates >= 0) & (candidates < strips.shape[1])]
    if not len(candidates):
        return None
    samples_per_s = paper_speed / SEARCH_STEP_MM
    page = _PageRuns.of(law, read)
    cells_s = row_cells_s if row_cells_s is not None else ([row_s] if row_s is not None else [])
    tried = []
    # Each window scored once at every origin any gap needs: a window in column c at origin x0 and gap g reads
    # what it reads at origin x0 + c * g with no gap.
    steps = [int(round(gap / SEARCH_STEP_MM)) for gap in gaps_mm]
    lo_index = int(candidates.min())
    origins = np.arange(lo_index, int(candidates.max()) + max(w.col for w in windows) * max(steps) + 1)
    tables = [window_scores(strips, origins, [w], samples_per_s, min_coverage) for w in windows]
    for gap, gap_steps in zip(gaps_mm, steps):
        at_origin = [candidates + w.col * gap_steps - lo_index for w in windows]
        per_law = np.stack([table[0][i, 0] for table, i in zip(tables, at_origin)], axis=1)
        unread = np.stack([table[1][i, 0] for table, i in zip(tables, at_origin)], axis=1).max(axis=1)
        scores = per_law.min(axis=1)
        if cells_s:
            cell_unread, page_unread = page.cell_costs(candidates, cells_s, gap_steps, samples_per_s)
            on_page = np.maximum(unread, page_unread * SEARCH_STEP_MM)
            unread = np.maximum(unread, cell_unread * SEARCH_STEP_MM)
        else:
            on_page = unread
        objective = np.where(scores > UNMEASURED_DB, scores - UNREAD_COST_DB_PER_MM * np.minimum(unread, 1e6), -np.inf)
        tried.append((gap, scores, objective, on_page))
    top = max(float(np.max(t[2])) for t in tried)
    if not np.isfinite(top):
        return None
    gap, scores, objective, on_page = next(t for t in sorted(tried, key=lambda t: (abs(t[0] - table_gap_mm), t[0]))
                                           if float(np.max(t[2])) >= top - GAP_MARGIN_DB)
    best = int(np.argmax(objective))
    near = objective >= objective[best] - PLATEAU_DB
    step = 1 if row_s is not None else -1
    pick = best
    while 0 <= pick + step < len(candidates) and near[pick + step] and candidates[pick + step] == candidates[pick] + step:
        pick += step
    return Origin(u_start + float(candidates[pick]) * SEARCH_STEP_MM, float(scores[pick]), gap, float(on_page[pick]))


@dataclass(frozen=True)
class StripPulse:
    """A calibration pulse of any width found in a row of trace: where it rises and falls (mm along the paper) and
    its height (mm)."""

    rise_mm: float
    fall_mm: float
    height_mm: float
    after_mm: float  # where the fall's stroke ends (the pen's width, as the row's flat trace shows it, after the fall)


def band_pulses(u: np.ndarray, v: np.ndarray, u_start: float, n: int, step_mm: float, heights_mm: tuple[float, ...],
                paper_speed: float) -> list[StripPulse]:
    """The calibration pulses of any width in one row of trace, from its ink (``u``, ``v``: paper mm of the curve
    pixels in the row's band) sampled every ``step_mm`` from ``u_start`` (``n`` steps): two vertical strokes
    PULSE_TOP_S apart, the taller one of ``heights_mm`` tall (within 15 %, less the pen's width), the shorter at
    least PULSE_STROKE_SHARE of it, from the same level or to the same top (within PULSE_ENDS_ALIKE_MM), with no ink
    at their foot's level between them (a pulse is hollow; a QRS's strokes are closer, and have trace between them).
    Its top need not be read: a label printed on it, or a segmenter, may cut it."""
    if not len(u) or not heights_mm:
        return []
    bins = np.round((u - u_start) / step_mm).astype(np.int64)
    inside = (bins >= 0) & (bins < n)
    bins, v = bins[inside], v[inside]
    top = np.full(n, np.inf)
    bottom = np.full(n, -np.inf)
    np.minimum.at(top, bins, v)
    np.maximum.at(bottom, bins, v)
    extent = bottom - top
    tall = extent >= PULSE_STROKE_SHARE * (1.0 - 0.15) * min(heights_mm)
    flat = np.isfinite(extent) & ~tall
    pen = float(np.median(extent[flat])) if flat.any() else 0.0  # a stroke's extent holds the pen's width too
    edges = np.flatnonzero(np.diff(np.concatenate([[0], tall.astype(np.int8), [0]])))
    # the runs of tall steps: a pulse rises at the end of one (a label printed against it may widen it) and falls at
    # the start of the next as tall (shorter runs between are a label printed inside it); each stroke is the run's
    # last (first) step at least PULSE_STROKE_SHARE of the run's tallest
    runs = list(zip(edges[0::2], edges[1::2] - 1))
    tallest = [float(extent[i:j + 1].max()) for i, j in runs]
    lo_mm, hi_mm = (s * paper_speed for s in PULSE_TOP_S)
    clear = int(round(PULSE_STROKE_MAX_MM / step_mm))
    found: list[StripPulse] = []
    for k, (i0, i1) in enumerate(runs):
        m = next((m for m in range(k + 1, len(runs)) if tallest[m] >= PULSE_STROKE_SHARE * tallest[k]), None)
        if m is None:
            continue
        j0, j1 = runs[m]
        i1 = i0 + int(np.flatnonzero(extent[i0:i1 + 1] >= PULSE_STROKE_SHARE * tallest[k])[-1])
        j0 = j0 + int(np.flatnonzero(extent[j0:j1 + 1] >= PULSE_STROKE_SHARE * tallest[m])[0])
        rise, fall = slice(max(i0, i1 - clear), i1 + 1), slice(j0, min(j1, j0 + clear) + 1)  # each stroke's ink
        t0, b0, t1, b1 = top[rise].min() + pen, bottom[rise].max(), top[fall].min() + pen, bottom[fall].max()
        width = (j0 - i1) * step_mm
        height = max(b0 - t0, b1 - t1)
        if (not lo_mm <= width <= hi_mm or (abs(b0 - b1) > PULSE_ENDS_ALIKE_MM and abs(t0 - t1) > PULSE_ENDS_ALIKE_MM)
                or min(b0 - t0, b1 - t1) < PULSE_STROKE_SHARE * height or standard_gain(height, heights_mm) is None):
            continue
        foot = 0.5 * (b0 + b1)
        between = (bins > i1 + PULSE_HOLLOW_CLEAR) & (bins < j0 - PULSE_HOLLOW_CLEAR) & (np.abs(v - foot) <= PULSE_HOLLOW_MM)
        span = max(1, j0 - i1 - 1 - 2 * PULSE_HOLLOW_CLEAR)
        if len(np.unique(bins[between])) <= PULSE_HOLLOW_SHARE * span:
            found.append(StripPulse(u_start + i1 * step_mm, u_start + j0 * step_mm, float(height),
                                    u_start + j0 * step_mm + max(pen, step_mm)))
    return found


def gap_from_pulses(row_pulses_mm: list[list[float]], column_mm: float) -> float | None:
    """The gap between columns that pulses printed before every column show, or None when they do not show one:
    two pulses of a row one column apart (``column_mm``, the trace of one column) are that column plus a gap apart.
    ``row_pulses_mm`` holds, per row, where its pulses start (mm along the paper). At least PULSE_GAP_MIN_PAIRS
    such pairs, alike within PULSE_GAP_ALIKE_MM: their median."""
    gaps = []
    for starts in row_pulses_mm:
        starts = sorted(starts)
        gaps += [b - a - column_mm for a, b in zip(starts, starts[1:]) if 0.0 <= b - a - column_mm <= MAX_GAP_MM]
    if len(gaps) < PULSE_GAP_MIN_PAIRS or np.ptp(gaps) > PULSE_GAP_ALIKE_MM:
        return None
    return float(np.median(gaps))


def gap_from_band_pulses(row_pulses: list[list[StripPulse]], column_mm: float,
                         opening_heights_mm: list[float] | None = None) -> float | None:
    """The gap between columns that pulses of any width printed before every column show (gap_from_pulses of
    their rises; ``row_pulses``: each law row's band_pulses), or None. Only pulses that stand at the same place in
    at least PULSE_ROWS_ALIKE_SHARE of the rows (two at least) and are as tall as those that open the rows
    (``opening_heights_mm``; else as the pulses found: one gain on a page) count: a printer prints them in every
    row at once, periodic tremor in one row or two, of its own height."""
    heights = list(opening_heights_mm or []) or [p.height_mm for row in row_pulses for p in row]
    if not heights:
        return None
    tall = float(np.median(heights))
    rises = [[p.rise_mm for p in row if standard_gain(p.height_mm, (tall,)) is not None] for row in row_pulses]
    need = max(2.0, PULSE_ROWS_ALIKE_SHARE * len(row_pulses))
    rises = [[u for u in row if sum(any(abs(u - w) <= PULSE_RISES_ALIKE_MM for w in other) for other in rises) >= need]
             for row in rises]
    return gap_from_pulses(rises, column_mm)


def table_gap_mm(lay: Layout) -> float:
    """The blank paper or pulse (mm) between one column's trace and the next one's in the layout table."""
    row = sorted(lay.cells_of_row(0), key=lambda c: c.col)
    if len(row) < 2:
        return 0.0
    first, second = row[0], row[1]
    return second.x_mm + (lay.pulse_mm if second.pulse else 0.0) - (first.x_mm + first.w_mm)


def column_gaps_mm(lay: Layout) -> tuple[float, ...]:
    """The gaps between columns a page placement tries for a layout: none for one column, else 0 to MAX_GAP_MM."""
    if max(c.col for c in lay.cells) == 0:
        return (0.0,)
    return tuple(float(g) for g in np.arange(0.0, MAX_GAP_MM + 1e-9, SEARCH_STEP_MM))


def place_cells(lay: Layout, x0_mm: float, row_baselines_mm: list[float], paper_speed: float,
                gap_mm: float = 0.0) -> list[LeadCell]:
    """The layout's cells placed on the page: each lead's window starts at ``x0_mm`` + its seconds of paper x speed
    (the trace only, no calibration pulse), each column ``gap_mm`` further on than the one before it ends, and each
    row on its baseline. Where a row changes lead, LEAD_CHANGE_TRIM_S on either side is left unread: printers put
    marks and the next lead's label there, which are not trace."""
    last = _last_cols(lay)
    starts = paper_starts(lay)
    cells = []
    for c in lay.cells:
        base = row_baselines_mm[c.row]
        t0, t1 = _trimmed(c.t0, c.t1, c.col, last[c.row])
        x = x0_mm + (starts[(c.row, c.col)] + t0 - c.t0) * paper_speed + c.col * gap_mm
        cells.append(LeadCell(c.lead, c.row, c.col, x, base - c.h_mm / 2 - 1.0, (t1 - t0) * paper_speed, c.h_mm,
                              t0, t1, False))
    return cells


def row_start_samples(fs: int, trim_s: float = ROW_START_TRIM_S) -> int:
    """How many samples at ``fs`` unread_row_starts leaves unread at each row's start."""
    return int(np.ceil(max(trim_s, ROW_START_TRIM_S) * fs - 1e-9))


def unread_row_starts(signal: np.ndarray, fs: int, cells: list[LeadCell], trim_s: float = ROW_START_TRIM_S) -> None:
    """Set the samples of each row's first ``trim_s`` (at least ROW_START_TRIM_S) to NaN (in place; ``signal`` is
    (n, 12) at ``fs``), after reading: the cells keep their place, so the trace is followed from the same start."""
    n = row_start_samples(fs, trim_s)
    for c in cells:
        if c.col == 0:
            first = int(round(c.t0 * fs))
            signal[first: first + n, LEAD_INDEX[c.lead]] = np.nan


def _last_cols(lay: Layout) -> dict[int, int]:
    """Each row's last column."""
    last: dict[int, int] = {}
    for c in lay.cells:
        last[c.row] = max(last.get(c.row, c.col), c.col)
    return last


def _trimmed(t0: float, t1: float, col: int, last_col: int) -> tuple[float, float]:
    """A cell's seconds without LEAD_CHANGE_TRIM_S next to a lead change (not at the row's start or end)."""
    return t0 + (LEAD_CHANGE_TRIM_S if col > 0 else 0.0), t1 - (LEAD_CHANGE_TRIM_S if col < last_col else 0.0)
