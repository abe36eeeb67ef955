"""Digitisation: from a segmentation class map of an ECG photo to the 12-lead signal in mV.

The steps, each in paper millimetres once the grid is known:

1. Grid (:mod:`ecgcore.gridfind`): rotation, pitch (px per mm), perspective and curl from the major grid lines,
   giving a mapping image pixels <-> paper mm in which every major line lies on a multiple of 5 mm.
2. Ink: every curve pixel is mapped to paper mm exactly (no resampling of the class map, which would blur each line
   by a pixel and cut the sharp peaks); a coarse 2 px/mm coverage map of it serves the pulse and row searches.
   Given the segmenter's curve margin (its curve score minus the best other class's), the curve is read on a finer
   raster instead: the margin, interpolated to about READ_PX_PER_MM, is positive where the trace is, and its zero
   crossings place the trace's upper and lower edges between pixels. At the ~5 px/mm of a 1600x1200 photo this is
   worth about 4 dB of SNR (the class map's 2-px-thick line is the limit, not the grid fit).
3. Calibration pulses: found by template matching (the 1 mV step, its flat top, and an empty inside).
4. Layout: each known layout's pulse positions are matched against the pulses found; the layout and the paper's
   offset (snapped to the 5 mm grid when that explains as many pulses) that explain the most pulses win, ties
   going to the offset that leaves no row of cells empty and puts the paper where the grid is. A given layout only
   searches the offset. Without pulses, the number of ink rows decides (and the result is flagged); three rows
   are seed-3x4 or a plain 3x4, whichever row length matches the ink's.
   A reading that then breaks the limb-lead physics (:mod:`ecgcore.physics`; without matched pulses, any reading) is
   read again placed from the page (:mod:`ecgcore.placement`): the layout's rows on the page's rows of trace, its
   columns and time origin where Einthoven and Goldberger hold along those rows; the placement that keeps the
   physics better is kept. Straight vertical lines longer than LONG_VERTICAL_MM (grid lines and lead-change bars
   that a segmenter took for trace) are removed from the ink before any of this.
5. Per lead cell: the curve pixels are grouped into columns about one image pixel wide and, within a column, into
   vertical runs; a Viterbi path through the runs (free to continue a run that touches the previous one, costly
   to jump, pulled towards the cell's baseline beyond half a row, allowed to skip columns) follows the lead through
   overlapping neighbours, text and gaps. Fragments of a thin line that the path could not hold are gathered back.
6. Centre line: the trace is a line drawn with a pen of some width; the column's top edge dilated by the pen
   (an opening) and its bottom edge eroded (a closing) bound the centre line, exactly on slopes and flats; at a
   peak the opening is the exact one, at a trough the closing (the run's middle would cut every QRS).
7. Calibration: the pulse's flat parts give the row's 0 mV line and its height the gain (snapped to 5, 10 or
   20 mm/mV when it clearly differs from the given gain); the pulse itself is not part of the signal.
8. Time: column u -> t = t0 + (u - start of the lead's trace) / paper speed; the column values are interpolated at
   the output rate (100 or 500 Hz), a sharp extreme kept at its full height. Samples outside every cell of a lead
   stay NaN; where a lead is shown twice (II in 3x4+II) the readings are averaged, and how well the two agree is
   reported (``quality["repeats_r"]``). 6x2 and 3x4+3 put pulses and rows at the same places: the page is read as
   3x4+3 when its three repeated leads (V1, II, V5) agree.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import budget
from .constants import (
    CALIBRATION_MV,
    CALIBRATION_SEGMENTS_MM,
    CURVE,
    DEFAULT_GAIN,
    DEFAULT_PAPER_SPEED,
    GAINS,
    LEAD_INDEX,
    LEAD_NAMES,
    PAPER_SPEEDS,
)
from .errors import DigitizationError
from .gridfind import MAJOR_MM, MAX_PAPER_MM, GridFit, find_grid
from .layouts import LAYOUT_NAMES, SAME_PULSES, Layout, LeadCell, make_layout
from .physics import RELIABLE_MIN_DB, Reading, consistency_score, limb_consistency, reading_of
from .placement import SEARCH_STEP_MM, best_origin, law_windows, match_rows, place_cells
from .render import LeadBox

SUPPORTED_FS = (100, 500)
# A WFDB record name: the WFDB format allows letters, digits and underscores (wfdb-python also accepts '-' and any
# Unicode letter when writing, but its header reader and other WFDB tools do not agree on those), at most 50 long
# (the WFDB library's WFDB_MAXRNL).
WFDB_RECORD_NAME_RE = re.compile(r"[A-Za-z0-9_]{1,50}")
WFDB_RECORD_NAME_MAX = 50
WFDB_DEFAULT_RECORD_NAME = "ecg"
MIN_SIDE_PX = 64
MIN_CURVE_PIXELS = 200
# With the segmenter's curve margin, the trace is read on a finer raster than the photo's: the margin, interpolated
# bilinearly to about READ_PX_PER_MM (at most MAX_READ_FACTOR times the photo's pixels), places the trace's outline
# between the photo's pixels. A 1600x1200 photo (~4.8 px/mm) is read at 3x: median SNR 13.7 -> 18.6 dB on 16 held-out
# PTB-V photos (4x made some reads unstable: the reader's pixel constants are tuned for 2-3 px thick lines).
READ_PX_PER_MM = 14.0
MAX_READ_FACTOR = 3.0
MAX_READ_PIXELS = 20_000_000  # and at most this many pixels (memory: a 12 MP photo is read at no more than 1.29x)
PULSE_PX_PER_MM = 2.0  # resolution of the pulse search
PULSE_MIN_SCORE = 0.8
PULSE_FLAT_MM = 0.4  # a pulse's flat parts stay within this of their level
PULSE_LEVEL_SHARE = 0.15  # each of a pulse's two levels holds at least this share of its columns
PULSE_SEARCH_MM = 10.0  # a page placed from its rows looks for pulses this far before and after each row's trace
PULSE_TOP_MIN_MM = 1.5  # a pulse's top is flat for at least this long (0.06 s at 25 mm/s)
# A lead shown twice (3x4+3's V1, II and V5) reads the same in both places: the median Pearson r of its two readings
# over their common seconds is at least this (different leads at the same time: rarely above 0.6).
REPEAT_R_SAME = 0.8
PULSE_MATCH_MM = 3.0  # a layout's pulse counts as found when a detected pulse is this close
# Viterbi costs (per column unless named): see _track_all.
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
ROW_MIN_EXTENT = 0.6  # a row of trace runs along at least this fraction of the grid's width
# Plausibility of a lead (for the quality flags).
MIN_COVERAGE = 0.8
LONG_VERTICAL_MM = 100.0  # a vertical line of ink this long is a grid line or a mark, never trace
# A reading whose weaker limb-lead law is below this is read again with its cells placed from the page
# (ecgcore.placement); the new reading replaces it when its weaker law is better by at least PLACEMENT_MARGIN_DB.
PLACEMENT_SEARCH_BELOW_DB = 10.0
PLACEMENT_MARGIN_DB = 1.0
# A layout guessed from the number of rows may also be one of these (three rows: the prototype's seed-3x4, whose
# columns all restart at 0 s, or a plain 3x4 of consecutive 2.5 s columns).
GUESS_ALTERNATIVES: dict[str, tuple[str, ...]] = {"seed-3x4": ("3x4",)}
MIN_PTP_MV, MAX_PTP_MV = 0.05, 8.0
# Caps on what one page can hold (with the paper's size, gridfind.MAX_PAPER_MM, and the time budget, ecgcore.budget),
# so that no picture makes the reader's work grow without end. Real ECG photos stay far below each.
MAX_INK_PIXELS = 4_000_000  # curve pixels on the reading raster (a 12 MP ECG photo has well under 1 M)
INK_PAD_MM = 15.0  # ink this far beyond the grid's extent still counts (a trace may leave the last grid line)
# cells of the coarse ink map: the largest paper, its ink margin and a rounding millimetre, at PULSE_PX_PER_MM
MAX_INK_MAP_CELLS = int((np.ceil((MAX_PAPER_MM + 2 * INK_PAD_MM + 1) * PULSE_PX_PER_MM) + 1) ** 2)
MAX_PULSES = 48  # calibration pulse candidates kept, best first (a page shows at most 15)
MAX_PULSE_PEAKS = 2_000  # template-match maxima looked at (an ECG page gives tens)
MAX_LEAD_BOXES = 24  # lead boxes a person may give (a page shows at most 15 cells)
MAX_RECORD_S = 60.0  # a lead box ends by then (printouts show 10 s; a long rhythm strip 20-40 s)
BOX_PAPER_REACH_MM = 30.0  # a lead box may reach this far beyond the paper found on the photo
MAX_PEN_STEPS = 400  # offsets of the pen in the centre line's opening and closing (real pens need under 200)
BUDGET_EVERY_COLUMNS = 256  # the tracker checks the time budget this often


@dataclass
class DigitizedEcg:
    """A digitised 12-lead ECG and how it was read from the image."""

    signal: np.ndarray  # (n, 12) float32 mV, NaN where a lead is not on the image; lead order LEAD_NAMES
    fs: int
    layout: str
    rotation_deg: float
    px_per_mm: float
    leads: list[LeadBox]  # one per lead cell, quads in input-image pixels
    quality: dict[str, Any]  # per lead flags and an overall ``ok``
    paper_speed: float = DEFAULT_PAPER_SPEED
    gain: float = DEFAULT_GAIN
    layout_source: str = "auto"  # auto | given | boxes
    grid: dict[str, Any] = field(default_factory=dict)
    traces: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (lead, (m, 2) image px) for overlays
    class_map: np.ndarray | None = None  # the segmentation it was read from, when digitize_photo made it

    @property
    def duration_s(self) -> float:
        return self.signal.shape[0] / self.fs

    def lead(self, name: str) -> np.ndarray:
        return self.signal[:, LEAD_INDEX[name]]

    def reading(self) -> Reading:
        """Whether this reading can be trusted (limb-lead physics, repeated leads, leads read; ecgcore.physics)."""
        return reading_of(self)

    def to_json(self) -> dict[str, Any]:
        """What OUT/STEM.json holds: layout, rotation, px per mm, each lead's box and t0/t1, quality flags."""
        return {
            "schema": "ecglab-digitized/1",
            "layout": self.layout,
            "layout_source": self.layout_source,
            "fs": self.fs,
            "n_samples": int(self.signal.shape[0]),
            "duration_s": round(self.duration_s, 6),
            "paper_speed": self.paper_speed,
            "gain": self.gain,
            "rotation_deg": round(self.rotation_deg, 3),
            "px_per_mm": round(self.px_per_mm, 4),
            "grid": self.grid,
            "leads": [box.to_json() for box in self.leads],
            "quality": self.quality,
            "reading": self.reading().to_json(),
        }


# --- public entry points ---------------------------------------------------------------------------------------


@budget.budgeted()
def digitize(
    class_map: np.ndarray,
    layout: str = "auto",
    fs: int = 100,
    lead_boxes: list[LeadBox] | None = None,
    paper_speed: float = DEFAULT_PAPER_SPEED,
    gain: float = DEFAULT_GAIN,
    curve_margin: np.ndarray | None = None,
) -> DigitizedEcg:
    """Read the 12-lead signal from a segmentation class map (uint8 HxW: BACKGROUND, GRID_X, GRID_Y, CURVE).

    ``layout`` is ``"auto"`` or one of :data:`ecgcore.layouts.LAYOUT_NAMES`; ``lead_boxes`` (lead cells drawn by a
    person, quads in image pixels with t0/t1) override the automatic cell localisation. ``paper_speed`` (mm/s) and
    ``gain`` (mm/mV) are the printout's; a calibration pulse of another height overrides the gain.
    ``curve_margin`` (the segmenter's curve score minus its best other class's score, float HxW, from
    :meth:`ecgcore.segmentation.Segmenter.predict_with_margin`) places the trace's edges between pixels.
    Raises DigitizationError with one sentence when the image holds no readable ECG, when a lead box is unusable,
    or when reading would pass its budget (ecgcore.budget: time, and the caps above on what a page holds).
    """
    class_map = _check_inputs(class_map, layout, fs, paper_speed, gain)
    if lead_boxes:
        check_lead_boxes(lead_boxes, class_map.shape)
    fit = find_grid(class_map)
    if curve_margin is not None and curve_margin.shape != class_map.shape:
        raise DigitizationError(f"curve scores of size {curve_margin.shape} do not match the class map's {class_map.shape}.")
    paper = _without_long_verticals(_paper_ink(class_map, fit, curve_margin))
    pulses = _find_pulses(paper, paper_speed, gain)
    if lead_boxes:
        cells, offset, chosen, source = _cells_from_boxes(lead_boxes, fit, pulses, paper_speed), (0.0, 0.0), "custom", "boxes"
        layout_flags: list[str] = []
    else:
        chosen, offset, layout_flags = _choose_layout(layout, paper, pulses, fit, paper_speed)
        cells = list(make_layout(chosen, paper_speed).cells)
        source = "auto" if layout == "auto" else "given"
    lay = make_layout(chosen, paper_speed) if chosen in LAYOUT_NAMES else None
    duration = lay.duration_s if lay else max(c.t1 for c in cells)
    dig = _read_cells(paper, fit, cells, offset, chosen, source, duration, fs, paper_speed, gain, pulses, layout_flags)
    twin = SAME_PULSES.get(chosen) if source == "auto" else None
    if twin is None:
        return _checked(_placed_from_page(dig, paper, fit, offset, pulses, paper_speed, gain, layout_flags)
                        if lay is not None else dig)
    # 6x2 and 3x4+3 put their pulses and rows at the same places. 3x4+3 shows V1, II and V5 twice (in the 3x4 and as
    # rhythm strips): read as 3x4+3, a true 3x4+3 page repeats itself there, a 6x2 page does not (it shows other leads).
    alt_lay = make_layout(twin, paper_speed)
    alt = _read_cells(paper, fit, list(alt_lay.cells), offset, twin, source, alt_lay.duration_s, fs, paper_speed, gain,
                      pulses, layout_flags)
    three_by_four = dig if chosen == "3x4+3" else alt
    agree = three_by_four.quality.get("repeats_r_median")
    is_3x4_3 = agree is not None and agree >= REPEAT_R_SAME
    dig = three_by_four if is_3x4_3 else (alt if chosen == "3x4+3" else dig)
    return _checked(_placed_from_page(dig, paper, fit, offset, pulses, paper_speed, gain, layout_flags))


def _checked(dig: DigitizedEcg) -> DigitizedEcg:
    """The limb-lead physics of the reading, in its quality report (see ecgcore.physics): a reading that breaks a
    law, or whose limb leads cannot be checked, is flagged and not ok."""
    laws = limb_consistency(dig.signal, dig.fs)
    dig.quality.update(laws)
    if any(db is None or db < RELIABLE_MIN_DB for db in laws.values()):
        dig.quality["flags"] = [*dig.quality.get("flags", []), "limb_leads_inconsistent"]
        dig.quality["ok"] = False
    return dig


def _placed_from_page(dig: DigitizedEcg, paper: PaperInk, fit: GridFit, offset: tuple[float, float],
                      pulses: list[Pulse], paper_speed: float, gain: float, layout_flags: list[str]) -> DigitizedEcg:
    """More hypotheses for a reading that breaks the limb-lead physics: the layout's rows placed on the page's rows
    of trace and its columns and time origin where the limb-lead laws hold (ecgcore.placement), and, for a layout
    guessed from the rows alone, the other layouts with as many rows (GUESS_ALTERNATIVES). A page placement
    replaces the table's reading when it keeps the physics better by at least PLACEMENT_MARGIN_DB; every
    hypothesis tried is named in the quality report.

    A reading that already keeps the physics (PTB-V with its pulses found, most of the time) is not searched."""
    before = consistency_score(dig.signal, dig.fs)
    tried = [{"layout": dig.layout, "placement": "layout table", "score_db": round(before, 2)}]
    dig.quality["placement"] = "layout table"
    dig.quality["hypotheses"] = tried
    # Without matched pulses the table's placement is a guess on the 5 mm lattice, and the physics cannot see a
    # time origin that is off in every row alike (12x1): the page's placement is preferred unless it is worse.
    guessed = "layout_guessed" in layout_flags
    if before >= PLACEMENT_SEARCH_BELOW_DB and not guessed:
        return dig
    names = [dig.layout] + (list(GUESS_ALTERNATIVES.get(dig.layout, ())) if guessed and dig.layout_source == "auto"
                            else [])
    best, best_score = dig, before + (-PLACEMENT_MARGIN_DB if guessed else PLACEMENT_MARGIN_DB)
    ink_rows = _ink_rows(paper, fit)
    for name in names:
        again = _page_reading(name, dig, paper, fit, ink_rows, offset, pulses, paper_speed, gain, layout_flags)
        if again is None:
            continue
        score = consistency_score(again.signal, again.fs)
        tried.append({"layout": name, "placement": "from the page", "score_db": round(score, 2)})
        if score >= best_score:
            best, best_score = again, score
    best.quality["hypotheses"] = tried
    return best


def _page_reading(name: str, dig: DigitizedEcg, paper: PaperInk, fit: GridFit,
                  ink_rows: tuple[list[float], list[np.ndarray]], offset: tuple[float, float], pulses: list[Pulse],
                  paper_speed: float, gain: float, layout_flags: list[str]) -> DigitizedEcg | None:
    """The page read in layout ``name`` placed from the page (None when the page does not show the rows its limb
    leads need); ``ink_rows`` is :func:`_ink_rows` of the page. The prototype's seed-3x4 restarts every column at
    0 s, which no printer does: not placed."""
    if name == "seed-3x4":
        return None
    lay = make_layout(name, paper_speed)
    windows = law_windows(lay)
    ink_rows, row_cols = ink_rows
    n_rows = 1 + max(c.row for c in lay.cells)
    table_rows = [lay.cells_of_row(r)[0].baseline_mm + offset[1] for r in range(n_rows)]
    row_pitch = float(np.median(np.diff(table_rows))) if n_rows > 1 else 20.0
    rows = match_rows(table_rows, ink_rows, 0.5 * row_pitch)
    if not windows or any(rows[r] is None for w in windows for r in w.rows) or not row_cols:
        return None
    u_start = min(float(paper.u_of(cols[0])) for cols in row_cols) - 2.0
    u_end = max(float(paper.u_of(cols[-1])) for cols in row_cols) + 2.0
    strips = _read_strips(paper, rows, min(row_pitch, 20.0), u_start, u_end)
    x0_table = offset[0] + lay.cells[0].x_mm + (lay.pulse_mm if lay.cells[0].pulse else 0.0)
    # Where the rows end in trace, their end places the origin (a pulse's flat lead-out before the first lead looks
    # like trace); where they end in a pulse, their start does (best_origin without row_s).
    law_rows = sorted({r for w in windows for r in w.rows})
    trailing = sum(_ends_in_pulse(strips[r], gain) for r in law_rows)
    row_s = None if 2 * trailing > len(law_rows) else min(max(c.t1 for c in lay.cells if c.row == r) for r in law_rows)
    found = best_origin(strips, u_start, windows, paper_speed, [x0_table], row_s=row_s)
    if found is None:
        return None
    x0, _ = found
    # Each row's 0 mV line: the level its trace keeps most (the median of the row read across the page); rows not
    # found on the page keep the layout table's place, moved as the found rows moved.
    shift = float(np.median([rows[r] - table_rows[r] for r in range(n_rows) if rows[r] is not None]))
    baselines = []
    for r in range(n_rows):
        values = strips[r][np.isfinite(strips[r])] if rows[r] is not None else np.empty(0)
        baselines.append(float(np.median(values)) if values.size else table_rows[r] + shift)
    cells = place_cells(lay, x0, baselines, paper_speed)
    flags = [f for f in layout_flags if f != "layout_guessed"] + ["layout_from_page"]
    # The gain from pulses printed before or after the rows (of any shape); else the given one. The table reading's
    # pulse measurement is not used: its cells were placed where this reading says they are not.
    heights = []
    row_n = int(round(lay.row_mm / SEARCH_STEP_MM))
    start = int(round((x0 - u_start) / SEARCH_STEP_MM))
    span = int(round(PULSE_SEARCH_MM / SEARCH_STEP_MM))
    for r in law_rows:
        for lo, hi in ((start - span, start), (start + row_n - span, start + row_n + span)):
            levels = _pulse_levels(strips[r, max(lo, 0): max(hi, 0)])
            if levels is not None:
                heights.append(levels[0] - levels[1])
    used_gain = _gain_from_pulses([h / CALIBRATION_MV for h in heights], gain) if len(heights) >= 2 else gain
    again = _read_cells(paper, fit, cells, (0.0, 0.0), name, dig.layout_source, lay.duration_s, dig.fs,
                        paper_speed, used_gain, pulses, flags)
    again.grid["paper_offset_mm"] = [round(x0 - x0_table + offset[0], 3), round(shift + offset[1], 3)]
    again.quality["placement"] = "from the page"
    return again


def _ends_in_pulse(strip: np.ndarray, gain: float) -> bool:
    """Whether a row read across the page (sampled every SEARCH_STEP_MM) ends in a calibration pulse: in its last
    PULSE_SEARCH_MM of trace, two flat levels 1 mV apart at the given or a standard gain, the top one held for at
    least PULSE_TOP_MIN_MM in one stretch."""
    read = np.flatnonzero(np.isfinite(strip))
    if not read.size:
        return False
    last = int(read[-1])
    tail = strip[max(0, last + 1 - int(round(PULSE_SEARCH_MM / SEARCH_STEP_MM))): last + 1]
    levels = _pulse_levels(tail)
    if levels is None:
        return False
    height = (levels[0] - levels[1]) / CALIBRATION_MV
    if not any(abs(height - g) <= 0.15 * g for g in {gain, *GAINS}):
        return False
    at_top = np.abs(tail - levels[1]) <= PULSE_FLAT_MM
    longest = max((len(run) for run in np.split(at_top, np.flatnonzero(np.diff(at_top.astype(np.int8))) + 1)
                   if run.size and run[0]), default=0)
    return longest * SEARCH_STEP_MM >= PULSE_TOP_MIN_MM


def _read_strips(paper: PaperInk, rows: list[float | None], row_h: float, u_start: float, u_end: float) -> np.ndarray:
    """Each row of trace read across the whole page (one long cell per row, tracked like lead cells), sampled every
    SEARCH_STEP_MM from ``u_start``: (len(rows), n) paper v in mm, NaN where not read or where the row is None."""
    placed = [(r, v) for r, v in enumerate(rows) if v is not None]
    cells = [LeadCell(LEAD_NAMES[k % len(LEAD_NAMES)], r, 0, u_start, v - row_h / 2 - 1.0, u_end - u_start, row_h,
                      0.0, 1.0, False) for k, (r, v) in enumerate(placed)]
    # One tracking pass, without settling the ink that two rows' paths share (_owners): the time-origin search needs
    # the rows' shapes, not every crossing QRS, and this read is as long as a whole page's.
    touch = TOUCH_PX / paper.px_per_mm
    columns = [_cell_columns(paper, cell, RUN_SPLIT_MM) for cell in cells]
    paths = _track_all(columns, touch)
    grid = u_start + np.arange(int(np.floor((u_end - u_start) / SEARCH_STEP_MM)) + 1) * SEARCH_STEP_MM
    strips = np.full((len(rows), len(grid)), np.nan)
    for (r, _), col, path in zip(placed, columns, paths):
        u, v = _column_values(col.runs, path, col.n_cols, paper.px_per_mm)
        strips[r] = _resample(u, v, grid, max_gap_s=2.0)
    return strips


def digitize_photo(
    rgb: np.ndarray,
    segmenter: Any = None,
    layout: str = "auto",
    fs: int = 100,
    lead_boxes: list[LeadBox] | None = None,
    paper_speed: float = DEFAULT_PAPER_SPEED,
    gain: float = DEFAULT_GAIN,
    on_step: Callable[[str], None] | None = None,
) -> DigitizedEcg:
    """Segment an RGB photo (uint8 HxWx3) and digitise it. ``segmenter`` defaults to the shipped U-Net
    (:func:`ecgcore.segmentation.load_segmenter`), which raises ModelError when its weights are missing."""
    if segmenter is None:
        from .segmentation import load_segmenter

        segmenter = load_segmenter()
    if on_step:
        on_step("segmenting")
    from .segmentation import segment_with_margin

    class_map, margin = segment_with_margin(segmenter, rgb)
    if on_step:
        on_step("digitising")
    dig = digitize(class_map, layout=layout, fs=fs, lead_boxes=lead_boxes, paper_speed=paper_speed, gain=gain,
                   curve_margin=margin)
    dig.class_map = class_map
    return dig


def wfdb_record_name(name: str) -> str:
    """A valid WFDB record name made from any file name stem: accents dropped (``é`` -> ``e``), every run of other
    characters (spaces, ``:``, ``(``, ``.``, ``-``, non-Latin letters) one ``_``, no ``_`` at either end, at most
    WFDB_RECORD_NAME_MAX characters; ``ecg`` when nothing is left. ``patient ecg (1)`` -> ``patient_ecg_1``."""
    ascii_name = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode("ascii")
    record = re.sub(r"[^A-Za-z0-9]+", "_", ascii_name).strip("_")[:WFDB_RECORD_NAME_MAX].strip("_")
    return record or WFDB_DEFAULT_RECORD_NAME


def write_wfdb(dig: DigitizedEcg, out_dir: str | Path, stem: str) -> Path:
    """Write ``OUT/NAME.hea`` and ``OUT/NAME.dat`` with wfdb.wrsamp, NAME being :func:`wfdb_record_name` of ``stem``
    (wfdb writes any name but cannot read back a header whose record name breaks the WFDB rule): 12 signals in mV
    (1 uV steps), NaN kept as WFDB's missing-sample value. Both files appear at once (written in a temporary folder,
    then renamed). Returns the record path without extension."""
    import wfdb

    stem = wfdb_record_name(stem)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{stem}-") as tmp:
        wfdb.wrsamp(
            stem,
            fs=dig.fs,
            units=["mV"] * len(LEAD_NAMES),
            sig_name=list(LEAD_NAMES),
            p_signal=np.clip(dig.signal.astype(np.float64), -32.0, 32.0),
            fmt=["16"] * len(LEAD_NAMES),
            adc_gain=[1000.0] * len(LEAD_NAMES),
            baseline=[0] * len(LEAD_NAMES),
            comments=[f"digitised by ECG Lab; layout {dig.layout}; px_per_mm {dig.px_per_mm:.3f}"],
            write_dir=tmp,
        )
        for ext in (".dat", ".hea"):  # header last: a record whose header exists is complete
            os.replace(Path(tmp) / f"{stem}{ext}", out_dir / f"{stem}{ext}")
    return out_dir / stem


def overlay_traces(image: np.ndarray, dig: DigitizedEcg, thickness: int = 2) -> np.ndarray:
    """The image (RGB, or a class map shown as grey) with the lead boxes and the extracted traces drawn on it."""
    if image.ndim == 2:
        grey = np.full(image.shape, 255, np.uint8)
        grey[image == CURVE] = 0
        grey[(image > 0) & (image != CURVE)] = 200
        out = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    else:
        out = image.copy()
    from .photo import DRAW_REACH, box_outline

    for box in dig.leads:
        drawable = box_outline(box.quad, out.shape, (3, 14))
        if drawable is None:
            continue
        poly, org = drawable
        cv2.polylines(out, [poly], True, (20, 160, 40), 1, cv2.LINE_AA)
        cv2.putText(out, box.name, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 120, 40), 1, cv2.LINE_AA)
    reach = DRAW_REACH * max(out.shape[:2])
    for _, xy in dig.traces:
        ok = np.isfinite(xy).all(axis=1) & (np.abs(xy) <= reach).all(axis=1)
        # break the polyline at gaps so that missing stretches stay visibly missing
        edges = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))
        parts = [np.round(xy[a:b] * 16).astype(np.int32) for a, b in zip(edges[::2], edges[1::2]) if b - a >= 2]
        if parts:
            cv2.polylines(out, parts, False, (0, 90, 255), thickness, cv2.LINE_AA, 4)
    return out


# --- inputs ----------------------------------------------------------------------------------------------------


def _check_inputs(class_map: np.ndarray, layout: str, fs: int, paper_speed: float, gain: float) -> np.ndarray:
    class_map = np.asarray(class_map)
    if class_map.ndim != 2:
        raise DigitizationError(f"the class map must be 2-D (height x width), not shape {class_map.shape}.")
    if min(class_map.shape) < MIN_SIDE_PX:
        h, w = class_map.shape
        raise DigitizationError(f"the image is only {w}x{h} pixels; reading an ECG needs at least {MIN_SIDE_PX} px a side.")
    if layout != "auto" and layout not in LAYOUT_NAMES:
        raise DigitizationError(f"unknown layout {layout!r}; choose auto or one of {', '.join(LAYOUT_NAMES)}.")
    if fs not in SUPPORTED_FS:
        raise DigitizationError(f"the output rate must be 100 or 500 Hz, not {fs}.")
    if paper_speed not in PAPER_SPEEDS:
        raise DigitizationError(f"paper speed must be one of {PAPER_SPEEDS} mm/s, not {paper_speed}.")
    if gain not in GAINS:
        raise DigitizationError(f"gain must be one of {GAINS} mm/mV, not {gain}.")
    if int(np.count_nonzero(class_map == CURVE)) < MIN_CURVE_PIXELS:
        raise DigitizationError("no ECG grid/trace found: the image shows no ECG trace.")
    return class_map.astype(np.uint8, copy=False)


def check_lead_boxes(boxes: list[LeadBox], image_shape: tuple[int, ...]) -> None:
    """Refuse, with one sentence, lead boxes that cannot be read: too many, a lead name that does not exist, seconds
    outside 0..MAX_RECORD_S, or a box that is not on the image (``image_shape``: the class map's (H, W)). The
    record's length and every lead cell's size follow from the boxes, so each must be bounded before reading."""
    if len(boxes) > MAX_LEAD_BOXES:
        raise DigitizationError(f"{len(boxes)} lead boxes given; a page holds at most {MAX_LEAD_BOXES}.")
    h, w = image_shape[:2]
    for box in boxes:
        if box.name not in LEAD_INDEX:
            raise DigitizationError(f"lead box {box.name!r} is not one of {', '.join(LEAD_NAMES)}.")
        t0, t1 = float(box.t0), float(box.t1)
        if not (np.isfinite([t0, t1]).all() and 0 <= t0 < t1 <= MAX_RECORD_S):
            raise DigitizationError(f"lead box {box.name}: its seconds must satisfy 0 <= t0 < t1 <= {MAX_RECORD_S:g} "
                                    f"(a record of at most {MAX_RECORD_S:g} s), not t0 = {box.t0}, t1 = {box.t1}.")
        quad = np.asarray(box.quad, np.float64)
        if quad.shape != (4, 2) or not np.isfinite(quad).all():
            raise DigitizationError(f"lead box {box.name} needs four corners with finite pixel coordinates.")
        x0, y0 = quad.min(axis=0)
        x1, y1 = quad.max(axis=0)
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            raise DigitizationError(f"lead box {box.name} (x {x0:.0f} to {x1:.0f}, y {y0:.0f} to {y1:.0f} px) is not "
                                    f"on the {w}x{h} px image.")


# --- the ink on the paper --------------------------------------------------------------------------------------


@dataclass
class PaperInk:
    """The curve pixels in paper coordinates, and a coarse coverage map of them for finding pulses and rows.

    Working on the pixels themselves (not on a resampled image) keeps their exact positions: resampling would blur
    each thick line by a pixel and cut every sharp peak.
    """

    u: np.ndarray  # (n,) mm, one per curve pixel (its centre)
    v: np.ndarray
    px_per_mm: float  # the image's own resolution along the paper's x axis
    coverage: np.ndarray  # (rows, cols) uint16 count of curve pixels per INK_MAP_PX_PER_MM cell
    u0: float  # paper mm of the coverage map's first column / row centre
    v0: float
    ppm: float = 2.0  # resolution of the coverage map (px per mm)
    # How far (mm, along v) the trace's edge lies beyond the pixel-edge of a curve pixel that is the top (up) or
    # bottom (down) of its image column's stretch of curve: 0 for a class map alone, sub-pixel from class scores.
    ext_up: np.ndarray | None = None
    ext_down: np.ndarray | None = None

    def u_of(self, col: np.ndarray) -> np.ndarray:
        return self.u0 + np.asarray(col, np.float64) / self.ppm

    def v_of(self, row: np.ndarray) -> np.ndarray:
        return self.v0 + np.asarray(row, np.float64) / self.ppm


def _paper_ink(class_map: np.ndarray, fit: GridFit, curve_margin: np.ndarray | None = None) -> PaperInk:
    """The curve pixels at their exact paper positions, and a coarse coverage map of them.

    With the segmenter's curve margin (see :func:`curve_edge_offsets`) the curve is taken where the margin, resampled
    to a raster of about READ_PX_PER_MM, is positive, and its upper and lower edges are placed between that raster's
    pixels. Positions are mapped back to the photo's pixel frame before going to paper mm, so everything after this
    (lead boxes, traces) stays in the photo's pixels.
    """
    fx = fy = 1.0
    if curve_margin is None:
        curve = class_map == CURVE
        margin = None
    else:
        h, w = curve_margin.shape
        cap = min(MAX_READ_FACTOR, float(np.sqrt(MAX_READ_PIXELS / (h * w))))
        factor = float(np.clip(READ_PX_PER_MM / max(fit.px_per_mm, 1e-6), 1.0, max(cap, 1.0)))
        margin = curve_margin.astype(np.float32, copy=False)
        if factor > 1.0:
            size = (int(round(w * factor)), int(round(h * factor)))
            margin = cv2.resize(margin, size, interpolation=cv2.INTER_LINEAR)
            fx, fy = size[0] / w, size[1] / h
        curve = margin > 0
    n_curve = int(np.count_nonzero(curve))
    if n_curve > MAX_INK_PIXELS:
        raise DigitizationError(f"no ECG grid/trace found: too many trace candidates ({n_curve:,} pixels look like "
                                f"trace, more than an ECG printout holds: at most {MAX_INK_PIXELS:,}).")
    ys, xs = np.nonzero(curve)
    # pixel centres of the reading raster in the photo's pixel frame (cv2.resize's convention)
    native = np.stack([(xs + 0.5) / fx - 0.5, (ys + 0.5) / fy - 0.5], axis=1)
    uv = fit.to_paper(native)
    u, v = uv[:, 0], uv[:, 1]
    u_min, u_max, v_min, v_max = fit.extent_mm
    pad = INK_PAD_MM
    inside = (u > u_min - pad) & (u < u_max + pad) & (v > v_min - pad) & (v < v_max + pad)
    u, v = u[inside], v[inside]
    if u.size < MIN_CURVE_PIXELS:
        raise DigitizationError("no ECG grid/trace found: no ECG trace lies on the grid.")
    ext_up = ext_down = None
    if margin is not None:
        up_px, down_px = curve_edge_offsets(curve, margin, ys[inside], xs[inside])
        ppm_v = float(fit.px_per_mm_xy[1]) * fy
        ext_up, ext_down = up_px / ppm_v, down_px / ppm_v
    ppm = PULSE_PX_PER_MM
    u0, v0 = float(np.floor(u.min())), float(np.floor(v.min()))
    cols = np.round((u - u0) * ppm).astype(np.int64)
    rows = np.round((v - v0) * ppm).astype(np.int64)
    shape = (int(rows.max()) + 1, int(cols.max()) + 1)
    if shape[0] * shape[1] > MAX_INK_MAP_CELLS:  # the grid's extent bounds it; a fit made elsewhere might not
        raise DigitizationError(f"no ECG grid/trace found: no ECG layout fits a trace spread over "
                                f"{shape[1] / ppm:.0f} x {shape[0] / ppm:.0f} mm of paper, more than any ECG printout.")
    coverage = np.bincount(rows * shape[1] + cols, minlength=shape[0] * shape[1]).reshape(shape)
    return PaperInk(u, v, float(fit.px_per_mm_xy[0]) * fx, np.minimum(coverage, 65535).astype(np.uint16), u0, v0,
                    ppm, ext_up, ext_down)


def _without_long_verticals(paper: PaperInk) -> PaperInk:
    """The ink without straight vertical lines (grid lines and bars that the segmenter took for trace): runs of ink
    in one coverage column, or in two neighbouring ones (a line a little off the grid's axis), longer than
    LONG_VERTICAL_MM. That is longer than any chain of QRS complexes that touch from row to
    row on close layouts (12x1, 6x2: at 50 mm such chains were cut and cost held-out photos 1-2 dB)."""
    inked = paper.coverage > 0
    pair = inked | np.pad(inked[:, 1:], ((0, 0), (0, 1)))
    paired = _long_runs(pair, int(round(LONG_VERTICAL_MM * paper.ppm)))
    line = (paired | np.pad(paired[:, :-1], ((0, 0), (1, 0)))) & inked
    if not line.any():
        return paper
    cols = np.round((paper.u - paper.u0) * paper.ppm).astype(np.int64)
    rows = np.round((paper.v - paper.v0) * paper.ppm).astype(np.int64)
    keep = ~line[rows, cols]
    coverage = np.where(line, 0, paper.coverage).astype(np.uint16)
    return PaperInk(paper.u[keep], paper.v[keep], paper.px_per_mm, coverage, paper.u0, paper.v0, paper.ppm,
                    None if paper.ext_up is None else paper.ext_up[keep],
                    None if paper.ext_down is None else paper.ext_down[keep])


def _long_runs(mask: np.ndarray, min_len: int) -> np.ndarray:
    """The cells of ``mask`` that belong to a vertical run of True at least ``min_len`` long."""
    if mask.shape[0] < min_len:
        return np.zeros_like(mask)
    down = np.zeros(mask.shape, np.int32)
    up = np.zeros(mask.shape, np.int32)
    for r in range(mask.shape[0]):
        down[r] = np.where(mask[r], (down[r - 1] if r else 0) + 1, 0)
    for r in range(mask.shape[0] - 1, -1, -1):
        up[r] = np.where(mask[r], (up[r + 1] if r + 1 < mask.shape[0] else 0) + 1, 0)
    return (down + up - 1) >= min_len


def curve_edge_offsets(curve: np.ndarray, margin: np.ndarray, ys: np.ndarray,
                       xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel edges of the trace from the segmenter's curve margin (curve logit minus the best other class's,
    float HxW; > 0 exactly where the class map says curve).

    For a curve pixel (ys, xs) whose upper neighbour is not curve, the margin crosses 0 between the two pixel
    centres; linear interpolation puts the edge ``m1 / (m1 - m0)`` pixels above the curve pixel's centre, where a
    class map alone puts it at 0.5. Returns, per pixel, that distance minus 0.5 (in [-0.5, 0.5] px) upwards and
    the same downwards; 0 where the neighbour is curve too or outside the image.
    """
    h = curve.shape[0]
    m1 = margin[ys, xs].astype(np.float64)
    out = []
    for dy in (-1, 1):
        yn = ys + dy
        inside = (yn >= 0) & (yn < h)
        yn_c = np.clip(yn, 0, h - 1)
        edge = inside & ~curve[yn_c, xs]
        m0 = margin[yn_c, xs].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(edge & (m1 - m0 > 1e-6), np.maximum(m1, 0.0) / (np.maximum(m1, 0.0) - np.minimum(m0, 0.0)),
                            0.5)
        out.append(np.clip(frac, 0.0, 1.0) - 0.5)
    return out[0], out[1]


# --- calibration pulses ----------------------------------------------------------------------------------------


@dataclass
class Pulse:
    u: float  # where the pulse starts (mm), at its 0 mV line
    v: float  # the 0 mV line (mm)
    score: float


def _pulse_shape_mm(paper_speed: float, gain: float) -> np.ndarray:
    """The pulse polyline in mm relative to its start on the 0 mV line (y down)."""
    scale = paper_speed / DEFAULT_PAPER_SPEED
    flat1, high, flat2 = (seg * scale for seg in CALIBRATION_SEGMENTS_MM)
    top = -CALIBRATION_MV * gain
    xs = np.array([0.0, flat1, flat1, flat1 + high, flat1 + high, flat1 + high + flat2])
    ys = np.array([0.0, 0.0, top, top, 0.0, 0.0])
    return np.stack([xs, ys], axis=1)


def _find_pulses(paper: PaperInk, paper_speed: float, gain: float) -> list[Pulse]:
    """Calibration pulses on the rectified paper: the pulse outline is inked and its inside (and the space above
    its flat ends) is empty. Scores are (ink on outline) - (ink inside), in 0..1."""
    # Padded, so that a pulse at the very edge of the ink (the paper's first column) can still be matched.
    border = 12
    ink = cv2.dilate((paper.coverage > 0).astype(np.float32), np.ones((3, 3), np.uint8))
    ink = cv2.copyMakeBorder(ink, border, border, border, border, cv2.BORDER_CONSTANT, value=0)
    shape = _pulse_shape_mm(paper_speed, gain) * PULSE_PX_PER_MM
    pad = 2
    width = int(np.ceil(shape[:, 0].max())) + 2 * pad + 1
    height = int(np.ceil(-shape[:, 1].min())) + 2 * pad + 1
    origin = np.array([pad, height - 1 - pad], np.float64)  # template pixel of the pulse's start
    outline = np.zeros((height, width), np.float32)
    cv2.polylines(outline, [np.round(shape + origin).astype(np.int32)], False, 1.0, 1)
    inside = np.zeros_like(outline)
    scale = paper_speed / DEFAULT_PAPER_SPEED
    x1 = CALIBRATION_SEGMENTS_MM[0] * scale * PULSE_PX_PER_MM + origin[0]
    x2 = x1 + CALIBRATION_SEGMENTS_MM[1] * scale * PULSE_PX_PER_MM
    top = origin[1] - CALIBRATION_MV * gain * PULSE_PX_PER_MM
    inside[int(top + 3): int(origin[1] - 2), int(x1 + 3): int(x2 - 2)] = 1.0  # the inside, 1.5 mm clear of the ink
    inside[int(top + 3): int(origin[1] - 3), pad: int(x1 - 2)] = 1.0  # above the first flat part
    if ink.shape[0] < height or ink.shape[1] < width or inside.sum() == 0:
        return []
    on = cv2.matchTemplate(ink, outline, cv2.TM_CCORR) / outline.sum()
    off = cv2.matchTemplate(ink, inside, cv2.TM_CCORR) / inside.sum()
    score = on - off
    # Local maxima over about one pulse width.
    k = max(3, int(round(CALIBRATION_SEGMENTS_MM[1] * scale * PULSE_PX_PER_MM)) | 1)
    peaks = (score >= PULSE_MIN_SCORE) & (score == cv2.dilate(score, np.ones((k, k), np.uint8)))
    iy, ix = np.nonzero(peaks)
    if iy.size > MAX_PULSE_PEAKS:  # the best ones, in the same (row-major) order as before
        best = np.sort(np.argsort(-score[iy, ix], kind="stable")[:MAX_PULSE_PEAKS])
        iy, ix = iy[best], ix[best]
    found = [
        Pulse(paper.u0 + (x + origin[0] - border) / PULSE_PX_PER_MM, paper.v0 + (y + origin[1] - border) / PULSE_PX_PER_MM,
              float(score[y, x]))
        for y, x in zip(iy, ix)
    ]
    found.sort(key=lambda p: -p.score)
    kept: list[Pulse] = []
    for p in found:  # plateaus of equal score give neighbouring maxima: keep the best of each
        if all(abs(p.u - q.u) > 3.0 or abs(p.v - q.v) > 3.0 for q in kept):
            kept.append(p)
            # The layout search tries every pairing of a found pulse with a layout's: a page of step-like shapes
            # (a bar chart) must not make it quadratic in the shapes. The best MAX_PULSES are plenty for any page.
            if len(kept) == MAX_PULSES:
                break
    return kept


# --- layout ----------------------------------------------------------------------------------------------------


def _pulse_anchors(lay: Layout) -> np.ndarray:
    return np.array([[c.x_mm, c.baseline_mm] for c in lay.cells if c.pulse], np.float64).reshape(-1, 2)


def _choose_layout(layout: str, paper: PaperInk, pulses: list[Pulse], fit: GridFit,
                   paper_speed: float) -> tuple[str, tuple[float, float], list[str]]:
    """The layout and the offset (mm) of its origin on the fitted paper, and flags saying how sure that is."""
    names = LAYOUT_NAMES if layout == "auto" else (layout,)
    found = np.array([[p.u, p.v] for p in pulses], np.float64).reshape(-1, 2)
    ink_rows = _ink_rows(paper, fit)[0]
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


def _layout_from_rows(layout: str, paper: PaperInk, fit: GridFit,
                      paper_speed: float) -> tuple[str, tuple[float, float], list[str]]:
    """Without pulses: the number of rows of trace picks the layout; the first row and the left end of the traces
    place it. A row counts when its ink runs along at least ROW_MIN_EXTENT of the grid (text lines do not)."""
    rows, row_cols = _ink_rows(paper, fit)
    by_rows = {3: ("seed-3x4", "3x4"), 4: ("3x4+II",), 6: ("6x2", "3x4+3"), 12: ("12x1",)}
    if layout != "auto":
        name = layout
    elif len(rows) in by_rows:
        # Three rows are the prototype's seed-3x4 (4 x 1.8 s, 216 mm) or a plain 3x4 (4 x 2.5 s, 259 mm): the one
        # whose row is as long as the ink's.
        ink_mm = _ink_row_length_mm(paper, row_cols)
        name = min(by_rows[len(rows)], key=lambda n: abs(make_layout(n, paper_speed).row_mm - ink_mm))
    elif not rows:
        # Specks of "curve" but no band of trace along the paper (blank ECG paper, a sideways photo): no ECG to read,
        # and naming a layout would not help.
        raise DigitizationError("no ECG grid/trace found: no row of ECG trace runs along the grid "
                                "(blank paper, or a photo turned sideways?).")
    else:
        raise DigitizationError(
            f"the layout could not be recognised: {len(rows)} rows of trace and no calibration pulse found "
            f"(known layouts have 3, 4, 6 or 12 rows); choose the layout ({', '.join(LAYOUT_NAMES[:-1])} or "
            f"{LAYOUT_NAMES[-1]}).", cli_hint="with --layout NAME")
    lay = make_layout(name, paper_speed)
    # Align the first row of trace with the layout's first baseline and the traces' left end with its first cell,
    # on the 5 mm lattice.
    dv = (rows[0] if rows else fit.extent_mm[2]) - lay.cells[0].baseline_mm
    start = min((c[0] for c in row_cols), default=None)
    du = (paper.u_of(start) if start is not None else fit.extent_mm[0]) - lay.cells[0].x_mm
    offset = (float(np.round(du / MAJOR_MM) * MAJOR_MM), float(np.round(dv / MAJOR_MM) * MAJOR_MM))
    return name, offset, ["no_calibration_pulse", "layout_guessed"]


def _ink_row_length_mm(paper: PaperInk, row_cols: list[np.ndarray]) -> float:
    """The typical length (mm) of the rows of trace: the median, over rows, of the first to the last inked column."""
    lengths = [float(paper.u_of(cols[-1]) - paper.u_of(cols[0])) for cols in row_cols if len(cols)]
    return float(np.median(lengths)) if lengths else 0.0


def _ink_rows(paper: PaperInk, fit: GridFit) -> tuple[list[float], list[np.ndarray]]:
    """Rows of trace: the paper v (mm) of each horizontal band of ink that runs along at least ROW_MIN_EXTENT of
    the grid's width (text lines do not), and the coverage-map columns it covers."""
    inked = paper.coverage > 0
    profile = inked.sum(axis=1).astype(np.float64)
    sigma = 2.5 * paper.ppm
    profile = cv2.GaussianBlur(profile.reshape(-1, 1), (1, 0), sigmaX=0, sigmaY=sigma).ravel()
    peaks = _peaks(profile, min_distance=int(12 * paper.ppm), rel_height=0.25)
    half = int(round(3.0 * paper.ppm))
    grid_cols = max(1.0, (fit.extent_mm[1] - fit.extent_mm[0]) * paper.ppm)
    rows, row_cols = [], []
    for r in peaks:
        along = inked[max(0, r - half): r + half + 1].any(axis=0)
        if along.sum() >= ROW_MIN_EXTENT * grid_cols:
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


def _cells_from_boxes(boxes: list[LeadBox], fit: GridFit, pulses: list[Pulse], paper_speed: float) -> list[LeadCell]:
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


# --- reading the leads -----------------------------------------------------------------------------------------


@dataclass
class _CellReading:
    cell: LeadCell
    u: np.ndarray  # paper mm of each column
    v: np.ndarray  # the trace's v (mm) per column, NaN where none
    pulse_baseline: float | None
    pulse_gain: float | None


def _read_cells(paper: PaperInk, fit: GridFit, cells: list[LeadCell], offset: tuple[float, float],
                layout: str, source: str, duration: float, fs: int, paper_speed: float, gain: float,
                pulses: list[Pulse], layout_flags: list[str]) -> DigitizedEcg:
    ou, ov = offset
    pulse_w = sum(CALIBRATION_SEGMENTS_MM) * paper_speed / DEFAULT_PAPER_SPEED
    shifted = [LeadCell(c.lead, c.row, c.col, c.x_mm + ou, c.y_mm + ov, c.w_mm, c.h_mm, c.t0, c.t1, c.pulse)
               for c in cells]
    touch = TOUCH_PX / paper.px_per_mm
    # Pass 1: follow every lead through runs of touching pixels, and note which lead holds which ink pixel.
    owner = _owners(paper, shifted, touch)
    # Pass 2: without the other leads' ink, pieces of a column up to RUN_SPLIT_MM apart are one run (a thin line
    # through a sharp spike falls apart within a column; the neighbour's trace is no longer there to be merged).
    columns = [_cell_columns(paper, cell, RUN_SPLIT_MM, (owner < 0) | (owner == b)) for b, cell in enumerate(shifted)]
    paths = _track_all(columns, touch)
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
    used_gain = _gain_from_pulses(measured_gains, gain)
    leads_out: list[LeadBox] = []
    traces: list[tuple[str, np.ndarray]] = []
    for r in readings:
        cell = r.cell
        key = (round(cell.y_mm, 1), round(cell.h_mm, 1))
        baseline = row_base.get(key, cell.baseline_mm)
        start_u = cell.x_mm + (pulse_w if cell.pulse else 0.0)
        t = cell.t0 + (r.u - start_u) / paper_speed
        mv = (baseline - r.v) / used_gain
        i0 = int(np.ceil(cell.t0 * fs - 1e-6))
        i1 = min(int(np.floor(cell.t1 * fs + 1e-6)), n - 1)
        k = np.arange(i0, i1 + 1)
        values = _resample(t, mv, k / fs, max_gap_s=2.0 / paper_speed)
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
    grid = fit.to_json()
    grid["paper_offset_mm"] = [round(ou, 3), round(ov, 3)]
    grid["pulses_found"] = len(pulses)
    return DigitizedEcg(
        signal=signal, fs=fs, layout=layout, rotation_deg=fit.rotation_deg, px_per_mm=fit.px_per_mm,
        leads=leads_out, quality=quality, paper_speed=paper_speed, gain=used_gain, layout_source=source,
        grid=grid, traces=traces,
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
        columns = [_cell_columns(paper, cell, 0.0, (settled < 0) | (settled == b)) for b, cell in enumerate(cells)]
        paths, costs = _track_all(columns, touch, with_costs=True)
        claimed = [col.pixel_ids[_run_pixels(col.runs, path[path >= 0])] for col, path in zip(columns, paths)]
        count = np.zeros(n, np.int32)
        for ids in claimed:
            count[np.unique(ids)] += 1
        shared = count >= 2
        if not shared.any():
            break
        retracked = [_cell_columns(paper, cell, 0.0, ~shared & ((settled < 0) | (settled == b)))
                     for b, cell in enumerate(cells)]
        _, costs_without = _track_all(retracked, touch, with_costs=True)
        need = costs_without - costs
        for b in np.argsort(need, kind="stable"):  # the neediest claimant writes last
            ids = claimed[b][shared[claimed[b]]]
            settled[ids] = b
    owner = np.full(n, -1, np.int64)
    for b, ids in enumerate(claimed):
        owner[ids] = b
    owner = np.where(settled >= 0, settled, owner)
    return owner


def _gain_from_pulses(measured: list[float], gain: float) -> float:
    """The given gain, unless the pulses clearly show another standard one (each within 15 % of it)."""
    if not measured:
        return gain
    m = float(np.median(measured))
    for g in GAINS:
        if abs(m - g) <= 0.15 * g:
            return g
    return gain


@dataclass
class _CellColumns:
    """A cell's columns and the runs in them, ready for tracking."""

    cell: LeadCell
    runs: _Runs
    n_cols: int
    u_start: float
    col_mm: float
    pixel_ids: np.ndarray  # index into the page's ink of each of runs' (sorted) pixels


def _cell_columns(paper: PaperInk, cell: LeadCell, merge_mm: float = 0.0,
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
    u, v = _column_values(columns.runs, path, n_cols, paper.px_per_mm)
    u = np.where(np.isfinite(u), u, columns.u_start + np.arange(n_cols) * columns.col_mm)
    pulse_baseline = pulse_gain = None
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
            levels = _pulse_levels(v[(rel >= 0) & (rel <= pulse_w)])
        if levels is not None:
            base, top = levels
            height = base - top
            if abs(base - cell.baseline_mm) <= 3.0 and height > 0:
                pulse_baseline = base
                pulse_gain = height / CALIBRATION_MV
        # The pulse is not signal; nor is the step back down at its end.
        v = np.where(rel < pulse_w + 0.5 * columns.col_mm, np.nan, v)
    return _CellReading(cell, u, v, pulse_baseline, pulse_gain)


def _pulse_levels(v: np.ndarray) -> tuple[float, float] | None:
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


def _track_all(columns: list[_CellColumns], touch_mm: float, with_costs: bool = False):
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


def _column_values(runs: _Runs, path: np.ndarray, n_cols: int, px_per_mm: float,
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


def _resample(t: np.ndarray, mv: np.ndarray, t_out: np.ndarray, max_gap_s: float) -> np.ndarray:
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
    repeats = _repeat_agreement(per_cell, fs)
    n_ok = sum(1 for e in leads.values() if e["ok"])
    overall_flags = list(layout_flags)
    if repeats and float(np.median(list(repeats.values()))) < REPEAT_R_SAME:
        overall_flags.append("repeated_leads_disagree")
    if fit.residual_mm > 0.35:
        overall_flags.append("grid_fit_poor")
    if measured_gains and used_gain != given_gain:
        overall_flags.append(f"gain_from_pulse_{used_gain:g}")
    return {
        "ok": n_ok >= 10 and "grid_fit_poor" not in overall_flags and "layout_guessed" not in overall_flags,
        "leads_ok": n_ok,
        "flags": overall_flags,
        "pulse_gain_mm_per_mv": round(float(np.median(measured_gains)), 3) if measured_gains else None,
        "repeats_r": {name: round(r, 4) for name, r in repeats.items()},
        "repeats_r_median": round(float(np.median(list(repeats.values()))), 4) if repeats else None,
        "leads": {name: leads[name] for name in LEAD_NAMES},
    }


def _repeat_agreement(per_cell: list, fs: int) -> dict[str, float]:
    """For each lead shown in two cells (II in 3x4+II; V1, II, V5 in 3x4+3): the Pearson r of the two readings over
    the samples both have (at least half a second)."""
    by_lead: dict[str, list] = {}
    for cell, _, values, i0 in per_cell:
        by_lead.setdefault(cell.lead, []).append((i0, values))
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
