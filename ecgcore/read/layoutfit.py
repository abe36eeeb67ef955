"""The layout on the page: which known layout and paper offset explain the calibration pulses found, or the rows
of ink when there are none, and lead boxes given by a person turned into cells. Step 4 of
:mod:`ecgcore.read.digitize`."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from ecgcore.constants import (
    CALIBRATION_SEGMENTS_MM,
    DEFAULT_PAPER_SPEED,
    LEAD_INDEX,
    LEAD_NAMES,
)
from ecgcore.errors import DigitizationError
from ecgcore.layouts import LAYOUT_NAMES, Layout, LeadBox, LeadCell, make_layout
from ecgcore.read import budget
from ecgcore.read.gridfind import MAJOR_MM, GridFit
from ecgcore.read.ink import PaperInk, Pulse
from ecgcore.read.placement import MAX_MISSING_ROWS, rows_with_holes

PULSE_MATCH_MM = 3.0  # a layout's pulse counts as found when a detected pulse is this close
ROW_MIN_EXTENT = 0.6  # a row of trace runs along at least this fraction of the grid's width ...
ROW_OF_LONGEST = 0.75  # ... or this fraction of the longest row's, where that is less ...
ROW_MIN_EXTENT_SHORT = 0.45  # ... but never less than this fraction of the grid's width
BOX_PAPER_REACH_MM = 30.0  # a lead box may reach this far beyond the paper found on the photo


# --- layout ----------------------------------------------------------------------------------------------------


def _pulse_anchors(lay: Layout) -> np.ndarray:
    return np.array([[c.x_mm, c.baseline_mm] for c in lay.cells if c.pulse], np.float64).reshape(-1, 2)


def choose_layout(layout: str, paper: PaperInk, pulses: list[Pulse], fit: GridFit,
                   paper_speed: float) -> tuple[str, tuple[float, float], list[str]]:
    """The layout and the offset (mm) of its origin on the fitted paper, and flags saying how sure that is."""
    names = LAYOUT_NAMES if layout == "auto" else (layout,)
    found = np.array([[p.u, p.v] for p in pulses], np.float64).reshape(-1, 2)
    ink_rows = find_ink_rows(paper, fit)[0]
    scored: list[tuple[float, int, float, str, tuple[float, float], Layout]] = []
    for name in names:
        budget.check("layout hypotheses")
        lay = make_layout(name, paper_speed)
        anchors = _pulse_anchors(lay)
        for offset in _candidate_offsets(anchors, found):
            matched, offset = _match(anchors, found, offset)
            f1 = 2.0 * matched / (len(anchors) + len(found)) if len(found) else 0.0
            # Pulses missed by a segmentation can make a subset of one layout's pulses look like another layout:
            # the rows of trace must agree too (a 3x4+II read off a 12x1 page leaves every other row unexplained).
            score = round(f1 + _row_f1(lay, offset, ink_rows), 3)
            scored.append((score, matched, f1, name, offset, lay))
    best: tuple[tuple[float, int, int, float], float, str, tuple[float, float]] | None = None
    if scored:
        top_key = max((score, matched) for score, matched, *_ in scored)
        # Ties (rows that repeat, e.g. 12x1 shifted by a row when a pulse is missed) go to the offset that leaves
        # no row of cells without a trace, then to the one that puts the layout's paper where the grid is.
        for score, matched, f1, name, offset, lay in scored:
            if (score, matched) != top_key:
                continue
            key = (score, matched, _cells_inked(lay, offset, paper), -_extent_misfit(lay, offset, fit))
            if best is None or key > best[0]:
                best = (key, f1, name, offset)
    if best is not None and best[1] >= 0.5 and best[0][1] >= 2:
        flags = [] if best[1] >= 0.9 and best[0][0] >= 1.8 else ["layout_uncertain"]
        return best[2], best[3], flags
    # No convincing pulse pattern: fall back on the rows of ink.
    return _layout_from_rows(layout, paper, fit, paper_speed)


def cells_after_found_pulses(lay: Layout, offset: tuple[float, float], pulses: list[Pulse]) -> tuple[list[LeadCell], int]:
    """The layout's cells, where a printer put a calibration pulse before a later column too (a pulse found within
    PULSE_MATCH_MM of where that cell starts, on its row): that cell then holds the pulse and its trace after it, and
    the row's later cells move on by the pulse's width. Returns the cells and how many gained a pulse."""
    found = np.array([[p.u, p.v] for p in pulses], np.float64).reshape(-1, 2)
    if not len(found):
        return list(lay.cells), 0
    out: list[LeadCell] = []
    added = 0
    for row in sorted({c.row for c in lay.cells}):
        moved = 0.0
        for cell in sorted(lay.cells_of_row(row), key=lambda c: c.col):
            x = cell.x_mm + moved
            if not cell.pulse and cell.col > 0:
                d = np.hypot(found[:, 0] - (x + offset[0]), found[:, 1] - (cell.baseline_mm + offset[1]))
                if d.min() <= PULSE_MATCH_MM:
                    out.append(replace(cell, x_mm=x, w_mm=cell.w_mm + lay.pulse_mm, pulse=True))
                    moved += lay.pulse_mm
                    added += 1
                    continue
            out.append(replace(cell, x_mm=x))
    by_place = {(c.row, c.col): c for c in out}
    return [by_place[(c.row, c.col)] for c in lay.cells], added


def _cells_inked(lay: Layout, offset: tuple[float, float], paper: PaperInk) -> int:
    """How many of the layout's cells, placed at ``offset``, have a trace along most of their 0 mV line (a layout
    shifted by a whole row leaves a row of cells empty)."""
    inked = paper.coverage > 0
    count = 0
    for cell in lay.cells:
        c0 = int(round((cell.x_mm + offset[0] - paper.u0) * paper.ppm))
        c1 = int(round((cell.x_mm + cell.w_mm + offset[0] - paper.u0) * paper.ppm))
        r0 = int(round((cell.baseline_mm - 0.4 * cell.h_mm + offset[1] - paper.v0) * paper.ppm))
        r1 = int(round((cell.baseline_mm + 0.4 * cell.h_mm + offset[1] - paper.v0) * paper.ppm))
        c0, c1 = max(c0, 0), min(c1, inked.shape[1])
        r0, r1 = max(r0, 0), min(r1, inked.shape[0])
        if c1 > c0 and r1 > r0 and inked[r0:r1, c0:c1].any(axis=0).mean() > 0.5:
            count += 1
    return count


def _extent_misfit(lay: Layout, offset: tuple[float, float], fit: GridFit) -> float:
    """How far (mm) the layout's paper, placed at ``offset``, is from the grid's extent. The top and left sides
    count fully; the right and bottom sides a quarter, because photos crop the paper there more often (and a
    cropped side is no evidence)."""
    u0, u1, v0, v1 = fit.extent_mm
    left, top = offset
    right, bottom = left + lay.width_mm, top + lay.height_mm
    return float(abs(left - u0) + abs(top - v0) + 0.25 * (abs(right - u1) + abs(bottom - v1)))


def _candidate_offsets(anchors: np.ndarray, found: np.ndarray) -> list[np.ndarray]:
    if not len(found) or not len(anchors):
        return []
    diffs = (found[:, None, :] - anchors[None, :, :]).reshape(-1, 2)
    return list(diffs)


def _match(anchors: np.ndarray, found: np.ndarray, offset: np.ndarray) -> tuple[int, tuple[float, float]]:
    """How many layout pulses, shifted by ``offset``, have a detected pulse nearby; and the refined offset.

    Printed layouts sit on the grid, so the offset is snapped to whole major cells (5 mm) when that explains as
    many pulses; otherwise the mean of the matched differences is used.
    """
    def count(off: np.ndarray) -> tuple[int, np.ndarray]:
        d = found[None, :, :] - (anchors + off)[:, None, :]
        dist = np.hypot(d[..., 0], d[..., 1])
        nearest = dist.argmin(axis=1)
        ok = dist[np.arange(len(anchors)), nearest] <= PULSE_MATCH_MM
        return int(ok.sum()), d[np.arange(len(anchors)), nearest][ok]

    matched, residuals = count(offset)
    if matched:
        offset = offset + residuals.mean(axis=0)
    snapped = np.round(offset / MAJOR_MM) * MAJOR_MM
    n_snapped, _ = count(snapped)
    if n_snapped >= matched:
        return n_snapped, (float(snapped[0]), float(snapped[1]))
    return matched, (float(offset[0]), float(offset[1]))


# How many rows of trace name which layouts. Five rows are a 3x4 with two rhythm strips (II, then V1): read as 3x4+II,
# the second strip left unread.
LAYOUTS_BY_ROWS: dict[int, tuple[str, ...]] = {3: ("seed-3x4", "3x4"), 4: ("3x4+II",), 5: ("3x4+II",),
                                              6: ("6x2", "3x4+3"), 12: ("12x1",)}


def layout_of_rows(paper: PaperInk, fit: GridFit, paper_speed: float,
                   ink_rows: tuple[list[float], list[np.ndarray]] | None = None) -> str | None:
    """The layout the rows of trace name (None when their number names none): three rows are the prototype's
    seed-3x4 (4 x 1.8 s, 216 mm) or a plain 3x4 (4 x 2.5 s, 259 mm), the one whose row is as long as the ink's;
    ten or eleven rows are a 12x1 page that misses one or two (a flat lead printed faintly, two rows read as one:
    the placement from the page puts the others on their own pitch). ``ink_rows`` is find_ink_rows of the page."""
    rows, row_cols = ink_rows if ink_rows is not None else find_ink_rows(paper, fit)
    n_rows = _rows_counted(rows)
    if n_rows not in LAYOUTS_BY_ROWS and not 12 - MAX_MISSING_ROWS <= n_rows < 12:
        return None
    ink_mm = _ink_row_length_mm(paper, row_cols)
    names = LAYOUTS_BY_ROWS.get(n_rows, ("12x1",))
    return min(names, key=lambda n: abs(make_layout(n, paper_speed).row_mm - ink_mm))


def _layout_from_rows(layout: str, paper: PaperInk, fit: GridFit,
                      paper_speed: float) -> tuple[str, tuple[float, float], list[str]]:
    """Without pulses: the number of rows of trace picks the layout (layout_of_rows); the first row and the left end
    of the traces place it. Rows of trace are find_ink_rows' (text lines are not)."""
    rows, row_cols = find_ink_rows(paper, fit)
    by_rows = layout_of_rows(paper, fit, paper_speed, (rows, row_cols)) if layout == "auto" else None
    if layout != "auto":
        name = layout
    elif by_rows is not None:
        name = by_rows
    elif not rows:
        # Specks of "curve" but no band of trace along the paper (blank ECG paper, a sideways photo): no ECG to read,
        # and naming a layout would not help.
        raise DigitizationError("no ECG grid/trace found: no row of ECG trace runs along the grid "
                                "(blank paper, or a photo turned sideways?).")
    else:
        raise DigitizationError(
            f"the layout could not be recognised: {len(rows)} rows of trace and no calibration pulse found "
            f"(known layouts have 3 to 6 or 10 to 12 rows); choose the layout ({', '.join(LAYOUT_NAMES[:-1])} or "
            f"{LAYOUT_NAMES[-1]}).", cli_hint="with --layout NAME")
    lay = make_layout(name, paper_speed)
    # Align the first row of trace with the layout's first baseline and the traces' left end with its first cell,
    # on the 5 mm lattice.
    dv = (rows[0] if rows else fit.extent_mm[2]) - lay.cells[0].baseline_mm
    start = min((c[0] for c in row_cols), default=None)
    du = (paper.u_of(start) if start is not None else fit.extent_mm[0]) - lay.cells[0].x_mm
    offset = (float(np.round(du / MAJOR_MM) * MAJOR_MM), float(np.round(dv / MAJOR_MM) * MAJOR_MM))
    return name, offset, ["no_calibration_pulse", "layout_guessed"]


def _rows_counted(rows: list[float]) -> int:
    """The rows a page prints, from its rows of ink: with the places of their pitch that hold none between them
    (ecgcore.read.placement.rows_with_holes: five rows on a 25 mm pitch with one place empty are a six-row page)
    when that names a layout (LAYOUTS_BY_ROWS), else as many as there are."""
    with_holes = rows_with_holes(rows)
    return with_holes if with_holes in LAYOUTS_BY_ROWS else len(rows)


def _ink_row_length_mm(paper: PaperInk, row_cols: list[np.ndarray]) -> float:
    """The typical length (mm) of the rows of trace: the median, over rows, of the first to the last inked column."""
    lengths = [float(paper.u_of(cols[-1]) - paper.u_of(cols[0])) for cols in row_cols if len(cols)]
    return float(np.median(lengths)) if lengths else 0.0


def find_ink_rows(paper: PaperInk, fit: GridFit) -> tuple[list[float], list[np.ndarray]]:
    """Rows of trace: the paper v (mm) of each horizontal band of ink that runs along at least ROW_MIN_EXTENT of
    the grid's width (text lines do not), or ROW_OF_LONGEST of the longest band's where that is less (but at least
    ROW_MIN_EXTENT_SHORT of the grid's width), and the coverage-map columns it covers."""
    inked = paper.coverage > 0
    profile = inked.sum(axis=1).astype(np.float64)
    sigma = 2.5 * paper.ppm
    profile = cv2.GaussianBlur(profile.reshape(-1, 1), (1, 0), sigmaX=0, sigmaY=sigma).ravel()
    peaks = _peaks(profile, min_distance=int(12 * paper.ppm), rel_height=0.25)
    half = int(round(3.0 * paper.ppm))
    grid_cols = max(1.0, (fit.extent_mm[1] - fit.extent_mm[0]) * paper.ppm)
    alongs = [inked[max(0, r - half): r + half + 1].any(axis=0) for r in peaks]
    extents = [int(along.sum()) for along in alongs]
    # Short rows on a wide sheet (the prototype's 7.2 s rows on A4 or Letter paper with its margins, 0.5-0.65 of
    # the grid, one of them read in part) count when as long as most of the longest, and still a good part of it.
    need = min(ROW_MIN_EXTENT, max(ROW_MIN_EXTENT_SHORT, ROW_OF_LONGEST * max(extents, default=0) / grid_cols))
    need *= grid_cols
    rows, row_cols = [], []
    for r, along, extent in zip(peaks, alongs, extents):
        if extent >= need:
            rows.append(float(paper.v_of(r)))
            row_cols.append(np.flatnonzero(along))
    return rows, row_cols


def _row_f1(lay: Layout, offset: tuple[float, float], ink_rows: list[float], tol_mm: float = 5.0) -> float:
    """Agreement (F1) between the layout's rows, placed at ``offset``, and the rows of trace on the paper."""
    if not ink_rows:
        return 0.0
    baselines = np.unique(np.round([c.baseline_mm + offset[1] for c in lay.cells], 3))
    rows = np.asarray(ink_rows)
    dist = np.abs(baselines[:, None] - rows[None, :])
    hit_layout = (dist.min(axis=1) <= tol_mm).sum()
    hit_ink = (dist.min(axis=0) <= tol_mm).sum()
    precision, recall = hit_ink / len(rows), hit_layout / len(baselines)
    return float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0


def _peaks(profile: np.ndarray, min_distance: int, rel_height: float) -> np.ndarray:
    if profile.max() <= 0:
        return np.array([], np.int64)
    k = 2 * max(1, min_distance // 2) + 1
    profile = profile.astype(np.float32).ravel()
    local_max = profile == cv2.dilate(profile.reshape(-1, 1), np.ones((k, 1), np.uint8)).ravel()
    return np.flatnonzero(local_max & (profile >= rel_height * profile.max()))


def cells_from_boxes(boxes: list[LeadBox], fit: GridFit, pulses: list[Pulse], paper_speed: float) -> list[LeadCell]:
    """Lead cells from boxes a person drew: the box in paper mm; a pulse at its left edge makes it a pulse cell."""
    cells = []
    pulse_w = sum(CALIBRATION_SEGMENTS_MM) * paper_speed / DEFAULT_PAPER_SPEED
    for box in boxes:
        if box.name not in LEAD_INDEX:
            raise DigitizationError(f"lead box {box.name!r} is not one of {', '.join(LEAD_NAMES)}.")
        if not box.t1 > box.t0 >= 0:
            raise DigitizationError(f"lead box {box.name}: t1 ({box.t1}) must be after t0 ({box.t0}) >= 0.")
        uv = fit.to_paper(box.quad)
        u0, u1 = float(uv[:, 0].min()), float(uv[:, 0].max())
        v0, v1 = float(uv[:, 1].min()), float(uv[:, 1].max())
        # A box partly on the image may still reach far beyond the paper (a huge width): its cell's columns, and the
        # tracker's memory, grow with it.
        e_u0, e_u1, e_v0, e_v1 = fit.extent_mm
        reach = BOX_PAPER_REACH_MM
        if not (np.isfinite(uv).all() and u0 >= e_u0 - reach and u1 <= e_u1 + reach and v0 >= e_v0 - reach
                and v1 <= e_v1 + reach):
            raise DigitizationError(f"lead box {box.name} reaches beyond the ECG paper found on the photo "
                                    f"(more than {reach:g} mm past its grid); draw it on the paper.")
        has_pulse = any(u0 - 2 <= p.u <= u0 + 4 and v0 <= p.v <= v1 for p in pulses)
        # A cell's baseline is 1 mm below its middle (layouts.LeadCell); a pulse, when present, replaces it.
        cells.append(LeadCell(box.name, 0, 0, u0, v0, u1 - u0, v1 - v0, float(box.t0), float(box.t1), has_pulse))
        if has_pulse and u1 - u0 <= pulse_w:
            raise DigitizationError(f"lead box {box.name} is narrower than its calibration pulse.")
    return cells
