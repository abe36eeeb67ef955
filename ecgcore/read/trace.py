"""Reading the leads: per lead cell, a Viterbi path through the columns' vertical runs of ink, the pen's centre
line, calibration from the pulse, resampling to the output rate, and the quality report. Steps 5 to 8 of
:mod:`ecgcore.read.digitize`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ecgcore.constants import (
    CALIBRATION_MV,
    CALIBRATION_SEGMENTS_MM,
    DEFAULT_PAPER_SPEED,
    GAINS,
    LEAD_INDEX,
    LEAD_NAMES,
)
from ecgcore.layouts import LeadBox, LeadCell
from ecgcore.read import budget, pacing
from ecgcore.read.digitized import DigitizedEcg
from ecgcore.read.gridfind import GridFit
from ecgcore.read.ink import PaperInk, Pulse

PULSE_FLAT_MM = 0.4  # a pulse's flat parts stay within this of their level
# A pulse whose top ends further than this from the standard 2-5-2 mm pulse's (7 mm after the start the pulse search
# matched; PTB-V photos: within 0.25 mm) is another printer's: the lead after it need not start where the standard
# pulse would end (ecgcore.read.digitize then places the leads from the page). Where the top starts is not used:
# the search matches a pulse of another width by its rise or its fall.
PULSE_END_TOLERANCE_MM = 0.4
PULSE_OTHER_SHAPE = "pulse_of_other_shape"  # the flag such a reading carries
PULSE_LEVEL_SHARE = 0.15  # each of a pulse's two levels holds at least this share of its columns
# A lead shown twice (3x4+3's V1, II and V5) reads the same in both places: the median Pearson r of its two readings
# over their common seconds is at least this (different leads at the same time: rarely above 0.6).
REPEAT_R_SAME = 0.8
REPEATS_DISAGREE = "repeated_leads_disagree"  # the flag of a reading whose repeated leads do not
# Viterbi costs (per column unless named): see track_all.
JUMP_COST_PER_MM = 0.3
GAP_COST = 0.3  # a column skipped
GAP_COST_INK = 2.0  # a column skipped although a run of it continues the trace
REENTRY_COST = 0.5
PRIOR_COST_PER_MM = 0.1
MAX_CANDIDATES = 8
SHARE_ROUNDS = 4  # rounds of settling pixels that two leads' paths share (see _owners)
# Pixels of one column farther apart than RUN_SPLIT_PX pixels and RUN_SPLIT_MM mm belong to different runs: a thin
# steep line warped into a photo leaves gaps inside a column (a spike's two flanks millimetres apart), which must
# not split it, while the next lead's trace is normally farther away.
RUN_SPLIT_MM = 5.0
RUN_SPLIT_PX = 3.0
TOUCH_PX = 1.5  # runs of neighbouring columns this close (in image pixels) count as touching
BEND_TOLERANCE_PX = 1.0  # a bend of the centre line smaller than this is pixel noise
COLUMN_FILL = 1.0  # column width = 1 / (COLUMN_FILL * px per mm): one image pixel
# Plausibility of a lead (for the quality flags).
MIN_COVERAGE = 0.8
MIN_PTP_MV, MAX_PTP_MV = 0.05, 8.0
MAX_PEN_STEPS = 400  # offsets of the pen in the centre line's opening and closing (real pens need under 200)
BUDGET_EVERY_COLUMNS = 256  # the tracker checks the time budget this often


# --- reading the leads -----------------------------------------------------------------------------------------


@dataclass
class _CellReading:
    cell: LeadCell
    u: np.ndarray  # paper mm of each column
    v: np.ndarray  # the trace's v (mm) per column, NaN where none
    pulse_baseline: float | None
    pulse_gain: float | None
    pulse_top_mm: tuple[float, float] | None = None  # where the pulse's top starts and ends, mm from the cell's start


def standard_pulse_mm(paper_speed: float) -> float:
    """The width (mm) of the standard calibration pulse with its flats: a cell that opens with a pulse starts its
    time after it."""
    return sum(CALIBRATION_SEGMENTS_MM) * paper_speed / DEFAULT_PAPER_SPEED


def read_cells(paper: PaperInk, fit: GridFit, cells: list[LeadCell], offset: tuple[float, float],
                layout: str, source: str, duration: float, fs: int, paper_speed: float, gain: float,
                pulses: list[Pulse], layout_flags: list[str]) -> DigitizedEcg:
    ou, ov = offset
    pulse_w = standard_pulse_mm(paper_speed)
    shifted = [LeadCell(c.lead, c.row, c.col, c.x_mm + ou, c.y_mm + ov, c.w_mm, c.h_mm, c.t0, c.t1, c.pulse)
               for c in cells]
    touch = TOUCH_PX / paper.px_per_mm
    # Pass 1: follow every lead through runs of touching pixels, and note which lead holds which ink pixel.
    owner = _owners(paper, shifted, touch)
    # Pass 2: without the other leads' ink, pieces of a column up to RUN_SPLIT_MM apart are one run (a thin line
    # through a sharp spike falls apart within a column; the neighbour's trace is no longer there to be merged).
    columns = [cell_columns(paper, cell, RUN_SPLIT_MM, (owner < 0) | (owner == b)) for b, cell in enumerate(shifted)]
    paths = track_all(columns, touch)
    readings = [_read_cell(paper, col, path, pulse_w, paper_speed) for col, path in zip(columns, paths)]

    # Rows share one 0 mV line and gain: cells without a pulse take their row's.
    row_base: dict[tuple[float, float], float] = {}
    row_gain: dict[tuple[float, float], float] = {}
    for r in readings:
        key = (round(r.cell.y_mm, 1), round(r.cell.h_mm, 1))
        if r.pulse_baseline is not None:
            row_base.setdefault(key, r.pulse_baseline)
        if r.pulse_gain is not None:
            row_gain.setdefault(key, r.pulse_gain)

    n = int(round(duration * fs))
    signal = np.full((n, len(LEAD_NAMES)), np.nan, np.float32)
    filled = np.zeros((n, len(LEAD_NAMES)), np.int16)  # how many cells wrote each sample (lead II twice in 3x4+II)
    per_cell_quality = []
    measured_gains = [g for g in row_gain.values()]
    used_gain = gain_from_pulses(measured_gains, gain)
    leads_out: list[LeadBox] = []
    traces: list[tuple[str, np.ndarray]] = []
    timed = []  # each cell's readings in s and mV
    for r in readings:
        cell = r.cell
        key = (round(cell.y_mm, 1), round(cell.h_mm, 1))
        start_u = cell.x_mm + (pulse_w if cell.pulse else 0.0)
        timed.append((cell.t0 + (r.u - start_u) / paper_speed, (row_base.get(key, cell.baseline_mm) - r.v) / used_gain))
    marks = _pace_marks(readings, timed, duration, paper_speed)
    for r, (t, mv) in zip(readings, timed):
        cell = r.cell
        if marks:
            mv = pacing.without_marks(t, mv, marks)
        k = cell_samples(cell, fs, n)
        i0 = int(k[0]) if k.size else 0  # the cell's first sample (an empty cell overlaps nothing)
        values = resample(t, mv, k / fs, max_gap_s=2.0 / paper_speed)
        j = LEAD_INDEX[cell.lead]
        both = np.isfinite(values) & np.isfinite(signal[k, j])
        # Where two cells show the same lead at the same time (II in 3x4+II), average them.
        merged = np.where(both, (signal[k, j] * filled[k, j] + values) / (filled[k, j] + 1), values)
        take = np.isfinite(values)
        signal[k[take], j] = merged[take]
        filled[k[take], j] += 1
        coverage = float(np.isfinite(values).mean()) if len(values) else 0.0
        per_cell_quality.append((cell, coverage, values, i0))
        quad_uv = np.array([[cell.x_mm, cell.y_mm], [cell.x_mm + cell.w_mm, cell.y_mm],
                            [cell.x_mm, cell.y_mm + cell.h_mm], [cell.x_mm + cell.w_mm, cell.y_mm + cell.h_mm]])
        leads_out.append(LeadBox(cell.lead, fit.to_image(quad_uv), cell.t0, cell.t1))
        traces.append((cell.lead, fit.to_image(np.stack([r.u, r.v], axis=1))))

    quality = _quality(signal, per_cell_quality, fit, layout_flags, measured_gains, used_gain, gain, fs)
    tops = [r.pulse_top_mm for r in readings if r.pulse_top_mm is not None]
    if tops and "no_calibration_pulse" not in layout_flags:  # else what was measured is not a pulse
        top = np.median(np.asarray(tops), axis=0)
        quality["pulse_top_mm"] = [round(float(top[0]), 2), round(float(top[1]), 2)]
        standard_end = sum(CALIBRATION_SEGMENTS_MM[:2]) * paper_speed / DEFAULT_PAPER_SPEED
        if abs(float(top[1]) - standard_end) > PULSE_END_TOLERANCE_MM:
            quality["flags"] = [*quality["flags"], PULSE_OTHER_SHAPE]
    if marks:
        quality["pace_marks_s"] = marks
        quality["flags"] = [*quality["flags"], "pacing_marks_removed"]
    grid = fit.to_json()
    grid["paper_offset_mm"] = [round(ou, 3), round(ov, 3)]
    grid["pulses_found"] = len(pulses)
    return DigitizedEcg(
        signal=signal, fs=fs, layout=layout, rotation_deg=fit.rotation_deg, px_per_mm=fit.px_per_mm,
        leads=leads_out, quality=quality, paper_speed=paper_speed, gain=used_gain, layout_source=source,
        grid=grid, traces=traces, cell_values=[(cell.lead, i0, values) for cell, _, values, i0 in per_cell_quality],
    )


def _owners(paper: PaperInk, cells: list[LeadCell], touch: float) -> np.ndarray:
    """Which lead holds each ink pixel (-1: none), from first-pass paths.

    Where rows are close (12x1, 6x2), a deep S wave or a tall R wave crosses the next row's baseline and both leads'
    paths may follow it: the intruder's own small QRS and the neighbour's flank both continue its trace at no cost.
    Pixels claimed by two leads go to the lead that needs them more: each lead is tracked again without the pixels
    it shares, and the one whose path cost rises more keeps them (the intruder has its own trace to fall back on; the
    owner would have to skip its flank). Settling one pair can start another (V3 freed from V2's flank takes back its
    own from V4), so this repeats until no pixel is shared, at most SHARE_ROUNDS times.
    """
    n = len(paper.u)
    settled = np.full(n, -1, np.int64)  # shared pixels already given to a lead
    for _ in range(SHARE_ROUNDS):
        budget.check("trace following")
        columns = [cell_columns(paper, cell, 0.0, (settled < 0) | (settled == b)) for b, cell in enumerate(cells)]
        paths, costs = track_all(columns, touch, with_costs=True)
        claimed = [col.pixel_ids[_run_pixels(col.runs, path[path >= 0])] for col, path in zip(columns, paths)]
        count = np.zeros(n, np.int32)
        for ids in claimed:
            count[np.unique(ids)] += 1
        shared = count >= 2
        if not shared.any():
            break
        retracked = [cell_columns(paper, cell, 0.0, ~shared & ((settled < 0) | (settled == b)))
                     for b, cell in enumerate(cells)]
        _, costs_without = track_all(retracked, touch, with_costs=True)
        need = costs_without - costs
        for b in np.argsort(need, kind="stable"):  # the neediest claimant writes last
            ids = claimed[b][shared[claimed[b]]]
            settled[ids] = b
    owner = np.full(n, -1, np.int64)
    for b, ids in enumerate(claimed):
        owner[ids] = b
    owner = np.where(settled >= 0, settled, owner)
    return owner


def standard_gain(measured: float, gains: tuple[float, ...] = GAINS) -> float | None:
    """The first of ``gains`` (mm/mV) that a measured pulse height (mm per mV) is within 15 % of, or None."""
    return next((g for g in gains if abs(measured - g) <= 0.15 * g), None)


def gain_from_pulses(measured: list[float], gain: float) -> float:
    """The given gain, unless the pulses clearly show another standard one (each within 15 % of it)."""
    if not measured:
        return gain
    found = standard_gain(float(np.median(measured)))
    return gain if found is None else found


@dataclass
class _CellColumns:
    """A cell's columns and the runs in them, ready for tracking."""

    cell: LeadCell
    runs: _Runs
    n_cols: int
    u_start: float
    col_mm: float
    pixel_ids: np.ndarray  # index into the page's ink of each of runs' (sorted) pixels


def cell_columns(paper: PaperInk, cell: LeadCell, merge_mm: float = 0.0,
                  usable: np.ndarray | None = None) -> _CellColumns:
    """Group the ink near one lead cell into columns and runs (pixels of a column closer than RUN_SPLIT_PX pixels or
    ``merge_mm`` mm form one run); ``usable`` masks out ink that belongs to other leads."""
    # Columns a little wider than the image's pixels, so that a continuous trace rarely leaves a column empty
    # (perspective makes the local resolution vary by tens of percent across a photo).
    col_mm = 1.0 / (COLUMN_FILL * paper.px_per_mm)
    u_start = cell.x_mm
    n_cols = int(np.floor(cell.w_mm / col_mm)) + 1
    # Vertical search band: the cell's row plus most of a row on either side (tall waves cross into neighbours).
    reach = max(cell.h_mm, 20.0)
    sel = ((paper.u >= u_start - 0.5 * col_mm) & (paper.u < u_start + (n_cols - 0.5) * col_mm)
           & (np.abs(paper.v - cell.baseline_mm) <= reach))
    if usable is not None:
        sel &= usable
    ids = np.flatnonzero(sel)
    ext = None if paper.ext_up is None else (paper.ext_up[ids], paper.ext_down[ids])
    runs = _column_runs(paper.u[ids], paper.v[ids], u_start, col_mm, n_cols, paper.px_per_mm, merge_mm, ext)
    return _CellColumns(cell, runs, n_cols, u_start, col_mm, ids[runs.order])


def _read_cell(paper: PaperInk, columns: _CellColumns, path: np.ndarray, pulse_w: float,
               paper_speed: float) -> _CellReading:
    """The trace's centre line along a cell from its tracked path, and the pulse's 0 mV line and height."""
    budget.check("reading the leads")
    cell, n_cols = columns.cell, columns.n_cols
    u, v = column_values(columns.runs, path, n_cols, paper.px_per_mm)
    u = np.where(np.isfinite(u), u, columns.u_start + np.arange(n_cols) * columns.col_mm)
    pulse_baseline = pulse_gain = None
    pulse_top = None
    rel = u - cell.x_mm
    if cell.pulse:
        scale = paper_speed / DEFAULT_PAPER_SPEED
        f1, hi, f2 = (seg * scale for seg in CALIBRATION_SEGMENTS_MM)
        flats = ((rel > 0.3 * f1) & (rel < 0.8 * f1)) | ((rel > f1 + hi + 0.3 * f2) & (rel < f1 + hi + 0.8 * f2))
        tops = (rel > f1 + 0.25 * hi) & (rel < f1 + 0.75 * hi)
        vf, vt = v[flats], v[tops]
        if np.isfinite(vf).sum() >= 2 and np.isfinite(vt).sum() >= 2 and np.nanstd(vf) <= PULSE_FLAT_MM:
            levels = float(np.nanmedian(vf)), float(np.nanmedian(vt))
        else:  # a pulse of another shape than the standard 2-5-2 mm: its two flat levels, wherever they are
            levels = pulse_levels(v[(rel >= 0) & (rel <= pulse_w)])
        if levels is not None:
            base, top = levels
            height = base - top
            if abs(base - cell.baseline_mm) <= 3.0 and height > 0:
                pulse_baseline = base
                pulse_gain = height / CALIBRATION_MV
                pulse_top = _top_extent(rel, v, top, pulse_w)
        # The pulse is not signal; nor is the step back down at its end.
        v = np.where(rel < pulse_w + 0.5 * columns.col_mm, np.nan, v)
    return _CellReading(cell, u, v, pulse_baseline, pulse_gain, pulse_top)


def _top_extent(rel: np.ndarray, v: np.ndarray, top: float, pulse_w: float) -> tuple[float, float] | None:
    """The longest stretch of columns (mm from the cell's start) where a pulse's trace keeps its top level, within
    the standard pulse's width and half of it again (a wider pulse's top runs on past it)."""
    run = longest_run((rel >= 0) & (rel <= 1.5 * pulse_w) & (np.abs(v - top) <= PULSE_FLAT_MM))
    return None if run is None else (float(rel[run[0]]), float(rel[run[1] - 1]))


def longest_run(mask: np.ndarray) -> tuple[int, int] | None:
    """The longest stretch of True in a boolean array, as (start, end) indices, end exclusive; None when none."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    if not edges.size:
        return None
    starts, ends = edges[0::2], edges[1::2]
    k = int(np.argmax(ends - starts))
    return int(starts[k]), int(ends[k])


def pulse_levels(v: np.ndarray) -> tuple[float, float] | None:
    """The 0 mV line and the top of a calibration pulse of any shape from the trace's v (mm, down) across it: the
    two levels (lowest and highest on the paper) that each hold at least PULSE_LEVEL_SHARE of the columns within
    PULSE_FLAT_MM; None when there are not two such flat levels."""
    v = v[np.isfinite(v)]
    if v.size < 8:
        return None
    base, top = float(np.percentile(v, 90)), float(np.percentile(v, 10))
    flat = [np.mean(np.abs(v - level) <= PULSE_FLAT_MM) for level in (base, top)]
    if min(flat) < PULSE_LEVEL_SHARE or base - top < 1.0:
        return None
    return float(np.median(v[np.abs(v - base) <= PULSE_FLAT_MM])), float(np.median(v[np.abs(v - top) <= PULSE_FLAT_MM]))


@dataclass
class _Runs:
    """Vertical runs of curve pixels in each column of a cell, in mm: column, pixel-centre extremes, mean
    position and pixel count; ``starts[j]:starts[j + 1]`` are the runs of column j."""

    col: np.ndarray
    top: np.ndarray  # smallest v (highest on the paper) of the run's pixel centres
    bottom: np.ndarray
    u: np.ndarray  # mean u of the run's pixels
    centre: np.ndarray  # mean v
    count: np.ndarray
    starts: np.ndarray
    first: np.ndarray  # index of the run's first pixel in pixels_u / pixels_v (sorted by column, then v)
    pixels_u: np.ndarray
    pixels_v: np.ndarray
    order: np.ndarray  # position of each sorted pixel in the input arrays


def _column_runs(u: np.ndarray, v: np.ndarray, u_start: float, col_mm: float, n_cols: int,
                 px_per_mm: float, merge_mm: float = 0.0,
                 ext: tuple[np.ndarray, np.ndarray] | None = None) -> _Runs:
    """Group curve pixels into columns of width ``col_mm`` and, within a column, into runs of pixels closer than
    RUN_SPLIT_PX pixels or RUN_SPLIT_MM mm to each other (vectorised: one sort, then reductions over the run
    boundaries)."""
    col = np.clip(np.floor((u - u_start) / col_mm + 0.5).astype(np.int64), 0, n_cols - 1)
    order = np.lexsort((v, col))
    col, u, v = col[order], u[order], v[order]
    if col.size == 0:
        empty = np.zeros(0)
        none = empty.astype(np.int64)
        return _Runs(none, empty, empty, empty, empty, empty, np.zeros(n_cols + 1, np.int64), none, empty, empty, none)
    new = np.ones(col.size, bool)
    new[1:] = (col[1:] != col[:-1]) | (np.diff(v) > max(RUN_SPLIT_PX / px_per_mm, merge_mm))
    first = np.flatnonzero(new)
    last = np.r_[first[1:], col.size] - 1
    count = (last - first + 1).astype(np.float64)
    run_col = col[first]
    top, bottom = v[first], v[last]
    if ext is not None:  # sub-pixel edges (PaperInk.ext_up / ext_down)
        top = top - ext[0][order][first]
        bottom = bottom + ext[1][order][last]
    return _Runs(
        col=run_col,
        top=top,
        bottom=bottom,
        u=np.add.reduceat(u, first) / count,
        centre=np.add.reduceat(v, first) / count,
        count=count,
        starts=np.searchsorted(run_col, np.arange(n_cols + 1)),
        first=first,
        pixels_u=u,
        pixels_v=v,
        order=order,
    )


def track_all(columns: list[_CellColumns], touch_mm: float, with_costs: bool = False):
    """Viterbi paths, one per cell, all cells advanced together column by column (one small array operation per
    column for the whole page instead of one per cell). Each path holds one run (or none) per column.

    Costs: continuing to a run that touches the previous one is free; a jump costs JUMP_COST_PER_MM per mm of
    vertical gap beyond ``touch_mm``; skipping a column costs GAP_COST, or GAP_COST_INK when a run of it touches
    the previous one (a steep spike whose thin line breaks up must not be cut off), and coming back REENTRY_COST;
    every run pays PRIOR_COST_PER_MM per mm its nearest point lies beyond half a row from the cell's baseline, which
    keeps the path on its own row when a neighbour's trace is the only ink in reach. An empty column is transparent. Returns, per cell,
    the chosen run index per column (-1 for none); with ``with_costs``, also each path's total cost.
    """
    n_tracks = len(columns)
    if n_tracks == 0:
        return ([], np.zeros(0)) if with_costs else []
    k_max = MAX_CANDIDATES
    width = max(c.n_cols for c in columns)
    far = 1e9
    top = np.full((n_tracks, width, k_max), far)
    bot = np.full((n_tracks, width, k_max), -far)
    unary = np.full((n_tracks, width, k_max), np.inf)
    index = np.full((n_tracks, width, k_max), -1, np.int64)
    for b, col in enumerate(columns):
        runs, base, free = col.runs, col.cell.baseline_mm, 0.45 * col.cell.h_mm
        if not len(runs.col):
            continue
        # rank of each run within its column, nearest the baseline first; keep the k_max best
        order = np.lexsort((np.abs(runs.centre - base), runs.col))
        rank = np.arange(len(order)) - runs.starts[runs.col[order]]
        keep = rank < k_max
        r, j, k = order[keep], runs.col[order][keep], rank[keep]
        top[b, j, k], bot[b, j, k], index[b, j, k] = runs.top[r], runs.bottom[r], r
        # how far the run's nearest point is from the baseline: a deep S wave's flank starts at the baseline and is
        # the lead's own; only its far end (and a neighbour's trace) pays
        off = np.maximum(0.0, np.maximum(runs.top[r] - base, base - runs.bottom[r]))
        unary[b, j, k] = PRIOR_COST_PER_MM * np.maximum(0.0, off - free)
    valid = index >= 0
    empty = ~valid.any(axis=2)  # (tracks, width)
    back = np.zeros((n_tracks, width, k_max + 1), np.int8)
    cost = np.full((n_tracks, k_max + 1), np.inf)
    cost[:, 0] = 0.0
    prev_top = np.full((n_tracks, k_max), far)
    prev_bot = np.full((n_tracks, k_max), -far)
    identity = np.arange(k_max + 1)
    tracks = np.arange(n_tracks)[:, None]
    for j in range(width):
        if j % BUDGET_EVERY_COLUMNS == 0:
            budget.check("trace following")
        t, bt = top[:, j], bot[:, j]
        gap = np.maximum(0.0, np.maximum(t[:, None, :] - prev_bot[:, :, None], prev_top[:, :, None] - bt[:, None, :])
                         - touch_mm)  # (tracks, previous run, new run)
        trans = np.empty((n_tracks, k_max + 1, k_max + 1))
        trans[:, :, 0] = GAP_COST
        trans[:, 0, 1:] = REENTRY_COST
        trans[:, 1:, 1:] = JUMP_COST_PER_MM * gap
        continues = ((gap <= 0) & valid[:, j][:, None, :]).any(axis=2)
        trans[:, 1:, 0] = np.where(continues, GAP_COST_INK, GAP_COST)
        total = cost[:, :, None] + trans
        best = np.argmin(total, axis=1)  # (tracks, new state)
        new_cost = np.take_along_axis(total, best[:, None, :], axis=1)[:, 0, :]
        new_cost[:, 1:] += unary[:, j]
        skip = empty[:, j]
        back[:, j] = np.where(skip[:, None], identity[None, :], best)
        cost = np.where(skip[:, None], cost, new_cost)
        prev_top = np.where(skip[:, None], prev_top, t)
        prev_bot = np.where(skip[:, None], prev_bot, bt)
    # Back-tracking, all cells at once.
    state = np.argmin(cost, axis=1)
    final_cost = cost[np.arange(n_tracks), state]
    chosen = np.full((n_tracks, width), -1, np.int64)
    rows = tracks[:, 0]
    for j in range(width - 1, -1, -1):
        run = index[rows, j, np.maximum(state - 1, 0)]
        chosen[:, j] = np.where((state > 0) & ~empty[:, j], run, -1)
        state = back[rows, j, state]
    paths = [chosen[b, : col.n_cols].copy() for b, col in enumerate(columns)]
    return (paths, final_cost) if with_costs else paths


def column_values(runs: _Runs, path: np.ndarray, n_cols: int, px_per_mm: float,
                   foreign: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The trace's centre line (u, v) in each column, recovered from the chosen runs of a thick line.

    A line drawn with a round pen of radius r covers, in each column, the centre line's values within r to either
    side: its top edge is the erosion of the centre line by a half-disk and its bottom edge the dilation. Dilating
    the top edge (an opening) and eroding the bottom edge (a closing) gives a lower and an upper bound of the centre
    line that are both exact on slopes and flats; at an upward peak the opening is exact, at a downward one the
    closing. Using the run's middle instead would widen every steep QRS by the pen's width and cut its peak.
    """
    ok = path >= 0
    u_out = np.full(n_cols, np.nan)
    v_out = np.full(n_cols, np.nan)
    if ok.sum() < 3:
        return u_out, v_out
    idx = path[ok]
    half_px = 0.5 / px_per_mm  # pixel centres -> pixel edges
    u = runs.u[idx]
    grown_top, grown_bot = _grow_extents(runs, path, n_cols, px_per_mm, foreign)
    top = grown_top[ok] - half_px
    bot = grown_bot[ok] + half_px
    # The pen: half its height from where the trace is flat, half its width from where it is steep (rasterised
    # thick lines, and segmentation masks, are not round). Means, not medians: a pixel count is the pen's size
    # rounded up or down depending on where the line falls between pixel centres, and only the mean is unbiased.
    height = bot - top
    flat = height <= np.quantile(height, 0.5) + 1.0 / px_per_mm
    radius_v = 0.5 * float(height[flat].mean())
    radius = _pen_half_width(runs, idx, px_per_mm, 2.0 * radius_v)
    m = len(u)
    opened = np.full(m, -np.inf)
    closed = np.full(m, np.inf)
    # The top and bottom edges are sampled at the columns but the pen reaches a fraction of a column: interpolate
    # the edges between columns (they are straight along a QRS flank), or the reach is rounded to whole columns
    # and every steep flank moves by the rounding times its slope.
    # (at most MAX_PEN_STEPS offsets: a blob read as a trace must not make this loop as long as the blob is wide)
    step = max(0.1 / px_per_mm, 2.0 * radius / MAX_PEN_STEPS)
    for d in np.arange(-radius, radius + 0.5 * step, step):
        s = radius_v * np.sqrt(max(1.0 - (d / radius) ** 2, 0.0))
        opened = np.maximum(opened, np.interp(u + d, u, top) + s)
        closed = np.minimum(closed, np.interp(u + d, u, bot) - s)
    # Which bound is exact depends on the bend: where the line bends like a peak (v has a local minimum, the
    # centre line is convex in v) the opening, where it bends like a trough the closing; straight, both agree.
    mid = (opened + closed) / 2.0
    k = max(1, int(round(radius * px_per_mm)))
    bend = np.zeros(m)
    if m > 2 * k:
        bend[k:-k] = mid[: -2 * k] + mid[2 * k:] - 2.0 * mid[k:-k]
    # Where the bend is within pixel noise, the middle of both bounds averages the quantisation of both edges.
    tol = BEND_TOLERANCE_PX / px_per_mm
    v = np.where(bend > tol, opened, np.where(bend < -tol, closed, mid))
    u_out[ok], v_out[ok] = u, v
    return u_out, v_out


def _grow_extents(runs: _Runs, path: np.ndarray, n_cols: int, px_per_mm: float, foreign: np.ndarray | None = None,
                  passes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The trace's vertical extent in each column: the chosen run, widened by the column's other runs that lie within
    RUN_SPLIT_MM of it or touch the trace's extent in a neighbouring column, unless another lead's path holds them
    (``foreign``). A thin line through a sharp spike falls apart into pieces within one column (rising and falling
    flank, pixels lost in the photo's resampling); the path holds only one."""
    ok = path >= 0
    top = np.full(n_cols, np.nan)
    bot = np.full(n_cols, np.nan)
    top[ok], bot[ok] = runs.top[path[ok]], runs.bottom[path[ok]]
    touch = TOUCH_PX / px_per_mm
    col = runs.col
    member = np.zeros(len(col), bool)
    member[path[ok]] = True
    allowed = ~member & ok[col] & (~foreign if foreign is not None else True)
    for _ in range(passes):
        with np.errstate(invalid="ignore"):
            lo = np.fmin(np.fmin(np.r_[np.nan, top[:-1]], np.r_[top[1:], np.nan]) - touch, top - RUN_SPLIT_MM)
            hi = np.fmax(np.fmax(np.r_[np.nan, bot[:-1]], np.r_[bot[1:], np.nan]) + touch, bot + RUN_SPLIT_MM)
            joins = allowed & ~member & (runs.bottom >= lo[col]) & (runs.top <= hi[col])
        if not joins.any():
            break
        member |= joins
        np.fmin.at(top, col[joins], runs.top[joins])
        np.fmax.at(bot, col[joins], runs.bottom[joins])
    return top, bot


def _run_pixels(runs: _Runs, chosen: np.ndarray) -> np.ndarray:
    """Positions (in the runs' sorted pixel arrays) of every pixel of the given runs."""
    count = runs.count[chosen].astype(np.int64)
    offsets = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return np.repeat(runs.first[chosen], count) + offsets


def _pen_half_width(runs: _Runs, chosen: np.ndarray, px_per_mm: float, pen_height: float) -> float:
    """Half the horizontal width of the trace where it is steep: the typical length of the trace's pixel runs
    along rows, among the short ones (long row runs are flat stretches)."""
    pix = _run_pixels(runs, chosen)
    u, v = runs.pixels_u[pix], runs.pixels_v[pix]
    row = np.round(v * px_per_mm).astype(np.int64)
    order = np.lexsort((u, row))
    row, u = row[order], u[order]
    new = np.ones(row.size, bool)
    new[1:] = (row[1:] != row[:-1]) | (np.diff(u) > 1.6 / px_per_mm)
    first = np.flatnonzero(new)
    last = np.r_[first[1:], row.size] - 1
    width = u[last] - u[first] + 1.0 / px_per_mm
    short = width[width <= np.quantile(width, 0.5) + 1.0 / px_per_mm]
    if short.size < 20:
        return pen_height / 2.0
    return 0.5 * float(short.mean())


def cell_samples(cell: LeadCell, fs: int, n: int) -> np.ndarray:
    """The indices of the record's samples (``n`` at ``fs``) that fall in the cell's window [t0, t1]."""
    return np.arange(int(np.ceil(cell.t0 * fs - 1e-6)), min(int(np.floor(cell.t1 * fs + 1e-6)), n - 1) + 1)


def _pace_marks(readings: list, timed: list, duration: float, paper_speed: float) -> list[float]:
    """The pacing marks (ecgcore.read.pacing) of a reading, looked for at pacing.FS whatever the output rate."""
    n = int(round(duration * pacing.FS))
    fine = np.full((n, len(LEAD_NAMES)), np.nan, np.float32)
    for r, (t, mv) in zip(readings, timed):
        k = cell_samples(r.cell, pacing.FS, n)
        values = resample(t, mv, k / pacing.FS, max_gap_s=2.0 / paper_speed)
        j = LEAD_INDEX[r.cell.lead]
        fine[k, j] = np.where(np.isfinite(fine[k, j]), fine[k, j], values)
    return pacing.find_pace_marks(fine, pacing.FS)


def resample(t: np.ndarray, mv: np.ndarray, t_out: np.ndarray, max_gap_s: float) -> np.ndarray:
    """The signal at the output sample times: linear interpolation of the column readings (times ``t``, values
    ``mv``); NaN outside the read stretch and inside gaps longer than ``max_gap_s``."""
    ok = np.isfinite(mv) & np.isfinite(t)
    out = np.full(len(t_out), np.nan, np.float32)
    if ok.sum() < 2 or len(t_out) == 0:
        return out
    order = np.argsort(t[ok], kind="stable")
    tt, vv = t[ok][order], mv[ok][order]
    step = float(np.median(np.diff(tt)))
    out[:] = np.interp(t_out, tt, vv)
    # Peaks: a sharp wave is a vertex of the printed polyline, at a sample time, and the column holding it reads
    # its full height; interpolating between that column and its neighbour would cut it. So a sample whose
    # nearest extreme column lies within half a sample interval takes that column's value.
    if len(t_out) > 1 and len(tt) > 2:
        half = 0.5 * float(t_out[1] - t_out[0])
        prev, nxt = np.r_[vv[0], vv[:-1]], np.r_[vv[1:], vv[-1]]
        prominence = 0.02  # mV: well above the quantisation of a flat stretch
        extreme = ((vv > np.maximum(prev, nxt) + prominence) | (vv < np.minimum(prev, nxt) - prominence))
        ext_t, ext_v = tt[extreme], vv[extreme]
        if ext_t.size:
            pos = np.clip(np.searchsorted(ext_t, t_out), 1, max(ext_t.size - 1, 1))
            cand = np.stack([pos - 1, np.minimum(pos, ext_t.size - 1)], axis=1)
            dist = np.abs(ext_t[cand] - t_out[:, None])
            pick = cand[np.arange(len(t_out)), dist.argmin(axis=1)]
            near = np.abs(ext_t[pick] - t_out) <= half
            out[near] = ext_v[pick[near]]
    # NaN where the nearest reading is far: outside the read stretch (beyond one column) or inside a long gap.
    pos = np.clip(np.searchsorted(tt, t_out), 1, len(tt) - 1)
    left, right = tt[pos - 1], tt[pos]
    inside = (t_out >= tt[0] - step) & (t_out <= tt[-1] + step)
    in_gap = (right - left > max_gap_s) & (t_out > left) & (t_out < right)
    out[~inside | in_gap] = np.nan
    return out


def _quality(signal: np.ndarray, per_cell: list, fit: GridFit, layout_flags: list[str], measured_gains: list[float],
             used_gain: float, given_gain: float, fs: int) -> dict[str, Any]:
    """Per-lead flags and an overall verdict, for people and for the Curation/Classify pages."""
    leads: dict[str, Any] = {}
    for cell, coverage, values, _ in per_cell:
        finite = values[np.isfinite(values)]
        ptp = float(np.ptp(finite)) if finite.size else 0.0
        flags = []
        if coverage < MIN_COVERAGE:
            flags.append("low_coverage")
        if finite.size and ptp < MIN_PTP_MV:
            flags.append("flat")
        if ptp > MAX_PTP_MV:
            flags.append("implausible_amplitude")
        entry = leads.setdefault(cell.lead, {"cells": []})
        entry["cells"].append({"t0": cell.t0, "t1": cell.t1, "coverage": round(coverage, 4), "ptp_mv": round(ptp, 3),
                               "flags": flags})
    for name in LEAD_NAMES:
        entry = leads.setdefault(name, {"cells": []})
        cells = entry["cells"]
        entry["shown"] = bool(cells)
        entry["coverage"] = round(max((c["coverage"] for c in cells), default=0.0), 4)
        entry["flags"] = sorted({f for c in cells for f in c["flags"]}) if cells else ["not_shown"]
        entry["ok"] = bool(cells) and not entry["flags"]
    repeats = repeats_report([(cell.lead, i0, values) for cell, _, values, i0 in per_cell], fs)
    n_ok = sum(1 for e in leads.values() if e["ok"])
    overall_flags = list(layout_flags)
    if repeats_disagree(repeats["repeats_r"]):
        overall_flags.append(REPEATS_DISAGREE)
    if fit.residual_mm > 0.35:
        overall_flags.append("grid_fit_poor")
    if measured_gains and used_gain != given_gain:
        overall_flags.append(f"gain_from_pulse_{used_gain:g}")
    return {
        "ok": n_ok >= 10 and "grid_fit_poor" not in overall_flags and "layout_guessed" not in overall_flags,
        "leads_ok": n_ok,
        "flags": overall_flags,
        "pulse_gain_mm_per_mv": round(float(np.median(measured_gains)), 3) if measured_gains else None,
        **repeats,
        "leads": {name: leads[name] for name in LEAD_NAMES},
    }


def repeats_report(cell_values: list[tuple[str, int, np.ndarray]], fs: int) -> dict[str, Any]:
    """The quality report's ``repeats_r`` (repeat_agreement per lead, rounded) and ``repeats_r_median``."""
    repeats = repeat_agreement(cell_values, fs)
    return {"repeats_r": {name: round(r, 4) for name, r in repeats.items()},
            "repeats_r_median": round(float(np.median(list(repeats.values()))), 4) if repeats else None}


def repeats_disagree(repeats: dict[str, float]) -> bool:
    """Whether the leads a layout shows twice read differently in their two places (median r below REPEAT_R_SAME)."""
    return bool(repeats) and float(np.median(list(repeats.values()))) < REPEAT_R_SAME


def repeat_agreement(cell_values: list[tuple[str, int, np.ndarray]], fs: int) -> dict[str, float]:
    """For each lead shown in two cells (II in 3x4+II; V1, II, V5 in 3x4+3): the Pearson r of the two readings over
    the samples both have (at least half a second). ``cell_values``: each cell's (lead, first sample, values)."""
    by_lead: dict[str, list] = {}
    for lead, i0, values in cell_values:
        by_lead.setdefault(lead, []).append((i0, values))
    out: dict[str, float] = {}
    for lead, cells in by_lead.items():
        if len(cells) < 2:
            continue
        (a0, a), (b0, b) = cells[:2]
        lo, hi = max(a0, b0), min(a0 + len(a), b0 + len(b))
        if hi - lo < fs // 2:
            continue
        x, y = a[lo - a0: hi - a0], b[lo - b0: hi - b0]
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < fs // 2 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
            continue
        out[lead] = float(np.corrcoef(x[ok], y[ok])[0, 1])
    return out
