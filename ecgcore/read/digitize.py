"""Digitisation: from a segmentation class map of an ECG photo to the 12-lead signal in mV.

The steps, each in paper millimetres once the grid is known:

1. Grid (:mod:`ecgcore.read.gridfind`): rotation, pitch (px per mm), perspective and curl from the major grid lines,
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
   A reading that then breaks the limb-lead physics (:mod:`ecgcore.read.physics`; without matched pulses, any reading) is
   read again placed from the page (:mod:`ecgcore.read.placement`): the layout's rows on the page's rows of trace, its
   columns and time origin where Einthoven and Goldberger hold along those rows; the placement that keeps the
   physics better is kept, read at its origin and column gap refined from where the rows' ink ends and breaks
   (:mod:`ecgcore.read.refine`). Straight vertical lines longer than LONG_VERTICAL_MM (grid lines and lead-change bars
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
9. Physics (:mod:`ecgcore.read.physics`): both limb-lead laws measured on what was read; then, where a law holds
   (or cannot be measured) and one of its leads is not read while the two others are, that lead is derived from
   them (III = II - I, aVF = -aVR - aVL, ...), as the electrocardiograph computes it, and named in
   ``quality["derived"]`` and in the lead's flags; the laws and the verdict never count derived samples.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ecgcore.constants import (
    CALIBRATION_MV,
    CURVE,
    DEFAULT_GAIN,
    DEFAULT_PAPER_SPEED,
    GAINS,
    LEAD_INDEX,
    LEAD_NAMES,
    PAPER_SPEEDS,
    RECORD_S,
)
from ecgcore.errors import DigitizationError
from ecgcore.layouts import LAYOUT_NAMES, LIMB_PAGE, SAME_PULSES, Layout, LeadBox, LeadCell, make_layout
from ecgcore.read import budget
from ecgcore.read.digitized import DigitizedEcg
from ecgcore.read.gridfind import GridFit, find_grid
from ecgcore.read.ink import (
    MIN_CURVE_PIXELS,
    PaperInk,
    Pulse,
    find_pulses,
    paper_ink,
    without_long_verticals,
    without_marks_beside_trace,
)
from ecgcore.read.layoutfit import (
    PULSE_MATCH_MM,
    cells_after_found_pulses,
    cells_from_boxes,
    choose_layout,
    find_ink_rows,
    layout_of_rows,
)
from ecgcore.read.physics import (
    NO_LAW_SCORE_DB,
    RELIABLE_MIN_DB,
    UNMEASURED_SCORE_DB,
    consistency_score,
    derive_unread_limb_leads,
    limb_consistency,
)
from ecgcore.read.placement import (
    MIN_WINDOW_COVERAGE,
    MIN_WINDOW_COVERAGE_SPARSE,
    PULSE_GAP_AROUND_MM,
    SEARCH_STEP_MM,
    StripPulse,
    band_pulses,
    best_origin,
    column_gaps_mm,
    gap_from_band_pulses,
    gap_from_pulses,
    law_windows,
    match_rows,
    paper_starts,
    place_cells,
    row_start_samples,
    table_gap_mm,
    unread_row_starts,
)
from ecgcore.read.refine import (
    REFINE_MM,
    ROW_END_SPAN_MM,
    RowPlan,
    cells_on_lead_changes,
    origin_from_row_ends,
    page_lead_change,
    refine_placement,
)
from ecgcore.read.trace import (
    PULSE_FLAT_MM,
    PULSE_OTHER_SHAPE,
    REPEAT_R_SAME,
    REPEATS_DISAGREE,
    RUN_SPLIT_MM,
    TOUCH_PX,
    cell_columns,
    cell_samples,
    column_values,
    gain_from_pulses,
    longest_run,
    pulse_levels,
    read_cells,
    repeats_disagree,
    repeats_report,
    resample,
    standard_gain,
    standard_pulse_mm,
    track_all,
)

SUPPORTED_FS = (100, 500)
# A WFDB record name: the WFDB format allows letters, digits and underscores (wfdb-python also accepts '-' and any
# Unicode letter when writing, but its header reader and other WFDB tools do not agree on those), at most 50 long
# (the WFDB library's WFDB_MAXRNL).
WFDB_RECORD_NAME_RE = re.compile(r"[A-Za-z0-9_]{1,50}")
WFDB_RECORD_NAME_MAX = 50
WFDB_DEFAULT_RECORD_NAME = "ecg"
MIN_SIDE_PX = 64
# A row read across the page is bridged over gaps in its ink up to this long; a longer one stays unread: the blank
# paper a printer leaves between columns (1.5 mm and more) must show in the placement's cell costs
STRIP_MAX_GAP_MM = 1.0
DERIVED_FLAG = "derived"  # a lead's flag: some of its samples are derived from the other two of its limb-lead law
LEADS_DERIVED_FLAG = "limb_leads_derived"  # the reading's flag: some lead is
PULSE_SEARCH_MM = 10.0  # a page placed from its rows looks for pulses this far before and after each row's trace
PULSE_TOP_MIN_MM = 1.5  # a pulse's top is flat for at least this long (0.06 s at 25 mm/s)
PULSE_BASE_MM = 1.5  # a pulse starts from its row's 0 mV line: its lower level is this close to the row's trace level
# A reading whose weaker limb-lead law is below this is read again with its cells placed from the page
# (ecgcore.read.placement). A table reading anchored on pulses is replaced when the page's weaker law is better by
# at least TABLE_KEEP_MARGIN_DB: with flat stretches before and after each pulse, a placement 2 mm off keeps the
# physics about as well (at 1 dB, a held-out device-style seed-3x4 photo read at 19.2 dB from its pulses went to
# -0.8 dB, marked reliable). A guessed one (no pulses, or another printer's) is replaced unless the page's is worse
# by more than PLACEMENT_MARGIN_DB.
PLACEMENT_SEARCH_BELOW_DB = 10.0
TABLE_KEEP_MARGIN_DB = 1.5
PLACEMENT_MARGIN_DB = 1.0
PULSE_PLACED_MARGIN_DB = 3.0  # ... and unless worse by more than this where pulses of any width on the page placed it
COLUMN_SHORT_MM = 1.0  # every later column leaves this much more of its cells unread than the first: a gap may lie between
LAYOUT_UNREAD_MARGIN_MM = 10.0  # a page placement leaving this much more trace unread than another layout's is dropped
# A layout read from the rows or from one pulse per row may also be one of these, which print as many rows with a
# pulse at the start of each: three rows are the prototype's seed-3x4 (its columns all restart at 0 s) or a plain
# 3x4 of consecutive 2.5 s columns; six rows a 6x2 or a 3x4 with three rhythm strips.
SAME_ROWS_ALTERNATIVES: dict[str, tuple[str, ...]] = {"seed-3x4": ("3x4",), "3x4": ("seed-3x4",),
                                                      "6x2": ("3x4+3",), "3x4+3": ("6x2",)}
# A 6x2 page's later seconds read as limb leads (6x1) keep both laws above this when they are limb leads: chest leads
# read as limb leads scored -4.5 dB at most (57 held-out 6x2 pages, default and mixed sets); a limb page's 5-25 dB,
# less on a noisy photo (the real six-channel page ecg00005: 4.8-5.4 dB, depending on a few removed grid bits).
LIMB_PAGE_MIN_DB = 0.0
# A page placement whose rows open with pulses starts the first lead after the pulses' tops end and at most this
# after the standard pulse's lead-out would end (the physics is blind to an origin off in every row alike).
PULSE_ANCHOR_MM = 1.0
ROWS_END_EARLY_S = 0.05  # a table reading whose rows' traces end this much before their cells is searched ...
ROWS_END_LATE_S = 0.05  # ... and one whose rows' traces run on this much past them (_rows_end_late) ...
ROW_END_LOOK_MM = 5.0  # ... looked for this far, ...
ROW_END_STEP_MM = 0.25  # ... on a raster of this many mm, ...
ROW_END_BAND_MM = 1.5  # ... this far above and below the trace's level at the cell's end
# Pulses of any width that open the law rows (in at least PULSE_OPENING_SHARE of them, two at least: a label or a
# segmenter may cut one; their falls alike within PULSE_FALLS_ALIKE_MM; each rising at most PULSE_LEAD_IN_MAX_S
# after its row's first ink) start the first lead at most PULSE_LEAD_OUT_MAX_S after their fall (printers: flats of
# 0-0.2 s before and after the pulse).
PULSE_OPENING_SHARE = 0.5
PULSE_FALLS_ALIKE_MM = 1.0
PULSE_LEAD_IN_MAX_S = 0.2
PULSE_LEAD_OUT_MAX_S = 0.2
PULSE_BAND_BELOW_MM = 2.0  # a pulse rises from its row's level: its ink is looked for down to this below it
PULSE_FALL_CLEAR_MM = 0.25  # the first lead is read from this far after the fall's stroke (its ink is no trace)
PULSE_EACH_COLUMN = "pulse_before_each_column"  # flag: later columns start with a pulse of their own
# A reading that breaks a limb-lead law is read without each row's first STARTS_UNREAD_S (the shortest that does),
# else each cell's, where that keeps both laws and lifts the weaker by STARTS_UNREAD_GAIN_DB: printers put their
# labels, filter hooks and pulses' falls at the rows' starts, joined to the trace (real ecg00010: each row's label
# read as a spike's broken-off tip at 0 s, Einthoven 0.5 dB, 5.2 without the first 0.12 s), and labels and marks
# after each lead change.
STARTS_UNREAD_S = (0.04, 0.08, 0.12, 0.16)
STARTS_UNREAD_GAIN_DB = 3.0
MAX_LEAD_BOXES = 24  # lead boxes a person may give (a page shows at most 15 cells)
MAX_RECORD_S = 60.0  # a lead box ends by then (printouts show 10 s; a long rhythm strip 20-40 s)


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
    :meth:`ecgcore.read.segmentation.Segmenter.predict_with_margin`) places the trace's edges between pixels.
    Raises DigitizationError with one sentence when the image holds no readable ECG, when a lead box is unusable,
    or when reading would pass its budget (ecgcore.read.budget: time, and the caps above on what a page holds).
    """
    class_map = _check_inputs(class_map, layout, fs, paper_speed, gain)
    if lead_boxes:
        check_lead_boxes(lead_boxes, class_map.shape)
    fit = find_grid(class_map)
    if curve_margin is not None and curve_margin.shape != class_map.shape:
        raise DigitizationError(f"curve scores of size {curve_margin.shape} do not match the class map's {class_map.shape}.")
    paper = without_marks_beside_trace(without_long_verticals(paper_ink(class_map, fit, curve_margin)))
    pulses = find_pulses(paper, paper_speed, gain)
    if lead_boxes:
        cells, offset, chosen, source = cells_from_boxes(lead_boxes, fit, pulses, paper_speed), (0.0, 0.0), "custom", "boxes"
        layout_flags: list[str] = []
    else:
        chosen, offset, found_flags = choose_layout(layout, paper, pulses, fit, paper_speed)
        cells, layout_flags = _table_cells(make_layout(chosen, paper_speed), offset, pulses, found_flags)
        source = "auto" if layout == "auto" else "given"
    lay = make_layout(chosen, paper_speed) if chosen in LAYOUT_NAMES else None
    if lay is None:  # boxes a person drew: read as drawn
        return _checked(read_cells(paper, fit, cells, offset, chosen, source, max(c.t1 for c in cells), fs,
                                   paper_speed, gain, pulses, layout_flags))
    dig = _read_placed(paper, fit, cells, offset, lay, source, fs, paper_speed, gain, pulses, layout_flags)
    twin = SAME_PULSES.get(chosen) if source == "auto" else None
    if twin is not None:
        # 6x2 and 3x4+3 put their pulses and rows at the same places. 3x4+3 shows V1, II and V5 twice (in the 3x4 and
        # as rhythm strips): read as 3x4+3, a true 3x4+3 page repeats itself there, a 6x2 page does not.
        alt_lay = make_layout(twin, paper_speed)
        alt_cells, alt_flags = _table_cells(alt_lay, offset, pulses, found_flags)
        alt = _read_placed(paper, fit, alt_cells, offset, alt_lay, source, fs, paper_speed, gain, pulses, alt_flags)
        three_by_four = dig if chosen == "3x4+3" else alt
        agree = three_by_four.quality.get("repeats_r_median")
        is_3x4_3 = agree is not None and agree >= REPEAT_R_SAME
        dig = three_by_four if is_3x4_3 else (alt if chosen == "3x4+3" else dig)
        if dig is alt:  # the twin's own cells: its later columns may or may not start at a found pulse
            layout_flags = alt_flags
    dig = _placed_from_page(dig, paper, fit, offset, pulses, paper_speed, gain, layout_flags)
    dig = _as_limb_page(dig, paper, fit, offset, pulses, paper_speed, gain, layout_flags)
    return _checked(_starts_unread(dig, fit))


def _read_placed(paper: PaperInk, fit: GridFit, cells: list[LeadCell], offset: tuple[float, float], lay: Layout,
                 source: str, fs: int, paper_speed: float, gain: float, pulses: list[Pulse],
                 layout_flags: list[str]) -> DigitizedEcg:
    """The layout table's cells read where the table places them, each later column first moved to where the page
    shows it starts after blank paper between the columns (ecgcore.read.refine.cells_on_lead_changes; the moves, mm,
    in the quality report's ``lead_change_moves_mm``)."""
    # a layout or a page with pulses before its later columns: the pulses place them (and a pulse of a shape the
    # pulse search does not know is no break)
    own_pulses = PULSE_EACH_COLUMN in layout_flags or any(c.pulse for c in lay.cells if c.col > 0)
    moves: list[float] = []
    if not own_pulses:
        cells, moves = cells_on_lead_changes(cells, offset, paper, paper_speed, lay.pulse_mm, fit.px_per_mm)
    dig = read_cells(paper, fit, cells, offset, lay.name, source, lay.duration_s, fs, paper_speed, gain, pulses,
                     layout_flags)
    if any(moves):
        dig.quality["lead_change_moves_mm"] = moves
    return dig


def _table_cells(lay: Layout, offset: tuple[float, float], pulses: list[Pulse],
                 layout_flags: list[str]) -> tuple[list[LeadCell], list[str]]:
    """The layout table's cells at ``offset``, a later column that starts with a pulse of its own moved on by it
    (ecgcore.read.layoutfit.cells_after_found_pulses), flagged PULSE_EACH_COLUMN when any is."""
    cells, added = cells_after_found_pulses(lay, offset, pulses)
    return cells, [*layout_flags, PULSE_EACH_COLUMN] if added else list(layout_flags)


def _as_limb_page(dig: DigitizedEcg, paper: PaperInk, fit: GridFit, offset: tuple[float, float], pulses: list[Pulse],
                  paper_speed: float, gain: float, layout_flags: list[str]) -> DigitizedEcg:
    """A page read as 6x2 read again as the limb leads alone (6x1, ecgcore.layouts.LIMB_PAGE), placed as the 6x2
    reading was; kept when both limb-lead laws hold at >= LIMB_PAGE_MIN_DB also over the seconds where 6x2 would
    show the chest leads (chest leads read as limb leads break both laws there). Whether the reading is reliable is
    judged afterwards, as for any reading."""
    name = LIMB_PAGE.get(dig.layout)
    if name is None or dig.layout_source != "auto":
        return dig
    if dig.quality.get("placement") == "from the page":
        found = _page_reading(name, dig, paper, fit, find_ink_rows(paper, fit), offset, pulses, paper_speed, gain,
                              layout_flags)
        alt = found.reading if found is not None else None
    else:
        found = None
        lay = make_layout(name, paper_speed)
        alt = read_cells(paper, fit, list(lay.cells), offset, name, dig.layout_source, lay.duration_s, dig.fs,
                         paper_speed, gain, pulses, layout_flags)
    if alt is None:
        return dig
    chest_from = min(c.t0 for c in make_layout(dig.layout, paper_speed).cells if c.lead.startswith("V"))
    later = limb_consistency(alt.signal[int(round(chest_from * alt.fs)):], alt.fs)
    score = min((db if db is not None else NO_LAW_SCORE_DB) for db in later.values())
    tried = [*dig.quality.get("hypotheses", []),
             {"layout": name, "placement": alt.quality.get("placement", "layout table"),
              "score_db": round(consistency_score(alt.signal, alt.fs), 2),
              f"score_db_from_{chest_from:g}_s": round(score, 2)}]
    chosen = dig
    if score >= LIMB_PAGE_MIN_DB:
        chosen = found.final() if found is not None else alt
    chosen.quality["hypotheses"] = tried
    return chosen


def _checked(dig: DigitizedEcg) -> DigitizedEcg:
    """The limb-lead physics of the reading, in its quality report (see ecgcore.read.physics): a reading that breaks a
    law, or whose limb leads cannot be checked, is flagged and not ok. Then a limb lead not read where the two others
    of a law that holds are is derived from them (ecgcore.read.physics.derive_unread_limb_leads), named in
    ``quality["derived"]``, in the lead's flags (DERIVED_FLAG) and in the reading's flags (LEADS_DERIVED_FLAG)."""
    laws = limb_consistency(dig.signal, dig.fs)
    dig.quality.update(laws)
    if any(db is None or db < RELIABLE_MIN_DB for db in laws.values()):
        dig.quality["flags"] = [*dig.quality.get("flags", []), "limb_leads_inconsistent"]
        dig.quality["ok"] = False
    leads = dig.quality.get("leads") or {}
    shown = {name for name, entry in leads.items() if entry.get("shown", True)} if leads else None
    signal, derived = derive_unread_limb_leads(dig.signal, dig.fs, shown, laws)
    if derived:
        dig.signal = signal
        dig.quality["derived"] = derived
        dig.quality["flags"] = [*dig.quality.get("flags", []), LEADS_DERIVED_FLAG]
        for name in derived:
            if name in leads:
                leads[name]["flags"] = [*leads[name].get("flags", []), DERIVED_FLAG]
    return dig


def _starts_unread(dig: DigitizedEcg, fit: GridFit) -> DigitizedEcg:
    """``dig`` with the first seconds of each row, else of each cell, unread (NaN, and left out of the overlay's
    paths) where that makes a reading that breaks a limb-lead law keep both (see STARTS_UNREAD_S;
    ``quality.row_starts_unread_s`` or ``cell_starts_unread_s``); else ``dig``. A row starts at a cell whose window
    starts at 0 s (the first column of every layout; every cell of seed-3x4, each of which opens with its own
    pulse); printers put labels and marks after each lead change too, past the reader's LEAD_CHANGE_TRIM_S."""
    laws = limb_consistency(dig.signal, dig.fs)
    if any(db is None for db in laws.values()) or min(laws.values()) >= RELIABLE_MIN_DB:
        return dig
    weaker = min(laws.values())
    rows = [i for i, box in enumerate(dig.leads) if box.t0 <= 1e-9]
    passes = [("row_starts_unread_s", rows)]
    if len(rows) < len(dig.leads):  # else every cell starts a row
        passes.append(("cell_starts_unread_s", list(range(len(dig.leads)))))
    for key, starts in passes:
        for trim_s in STARTS_UNREAD_S:
            n = row_start_samples(dig.fs, trim_s)
            cell_values = _cells_unread_from_start(dig.cell_values, starts, n)
            signal = _without_cell_starts(dig, cell_values, starts, n)
            trimmed = limb_consistency(signal, dig.fs)
            if all(db is not None and db >= RELIABLE_MIN_DB for db in trimmed.values()) and \
                    min(trimmed.values()) >= weaker + STARTS_UNREAD_GAIN_DB:
                dig.signal = signal
                dig.quality[key] = trim_s
                for i in starts:
                    box = dig.leads[i]
                    # the box's right edge is its window's end: its read stretch starts (t1 - t0) before it
                    u_end = float(fit.to_paper(box.quad)[:, 0].max())
                    _hide_path_before(dig, fit, i, box.name,
                                      u_end - (box.t1 - box.t0 - (n - 0.5) / dig.fs) * dig.paper_speed)
                _set_repeats(dig, cell_values)
                return dig
    return dig


def _cells_unread_from_start(cell_values: list[tuple[str, int, np.ndarray]], which: list[int],
                             n: int) -> list[tuple[str, int, np.ndarray]]:
    """``cell_values`` (DigitizedEcg.cell_values) with the first ``n`` samples of the cells ``which`` set to NaN."""
    out = list(cell_values)
    for i in which:
        if i < len(out):
            lead, i0, values = out[i]
            values = values.copy()
            values[:n] = np.nan
            out[i] = (lead, i0, values)
    return out


def _without_cell_starts(dig: DigitizedEcg, cell_values: list[tuple[str, int, np.ndarray]], which: list[int],
                         n: int) -> np.ndarray:
    """``dig.signal`` with the first ``n`` samples of the cells ``which`` read again from ``cell_values`` (those
    cells' starts unread): where another cell shows the lead then, its reading alone (read_cells averages them)."""
    signal = dig.signal.copy()
    for i in which:
        if i >= len(cell_values):
            continue
        lead, i0, _ = cell_values[i]
        j, stop = LEAD_INDEX[lead], min(i0 + n, signal.shape[0])
        signal[i0:stop, j] = np.nan
        for other, (lead_o, o0, values) in enumerate(cell_values):
            if lead_o != lead or other == i:
                continue
            k = np.arange(max(i0, o0), min(stop, o0 + len(values)))
            v = values[k - o0]
            signal[k[np.isfinite(v)], j] = v[np.isfinite(v)]  # a layout shows a lead in two cells at most
    return signal


def _set_repeats(dig: DigitizedEcg, cell_values: list[tuple[str, int, np.ndarray]]) -> None:
    """``dig``'s cells' own readings set to ``cell_values``, its repeated leads' agreement measured again on them."""
    dig.cell_values = cell_values
    dig.quality.update(repeats_report(cell_values, dig.fs))
    flags = [f for f in dig.quality.get("flags", []) if f != REPEATS_DISAGREE]
    dig.quality["flags"] = flags + ([REPEATS_DISAGREE] if repeats_disagree(dig.quality["repeats_r"]) else [])


def _placed_from_page(dig: DigitizedEcg, paper: PaperInk, fit: GridFit, offset: tuple[float, float],
                      pulses: list[Pulse], paper_speed: float, gain: float, layout_flags: list[str]) -> DigitizedEcg:
    """More hypotheses for a reading that breaks the limb-lead physics: the layout's rows placed on the page's rows
    of trace and its columns and time origin where the limb-lead laws hold (ecgcore.read.placement), and, for a layout
    read automatically, the other layouts with as many rows (SAME_ROWS_ALTERNATIVES). A page placement
    replaces the table's reading when it keeps the physics better by at least TABLE_KEEP_MARGIN_DB (a guessed
    table reading: unless it is worse by more than PLACEMENT_MARGIN_DB); every hypothesis tried is named in the
    quality report.

    A reading that already keeps the physics (PTB-V with its pulses found, most of the time) is not searched."""
    before = consistency_score(dig.signal, dig.fs)
    tried = [{"layout": dig.layout, "placement": "layout table", "score_db": round(before, 2)}]
    dig.quality["placement"] = "layout table"
    dig.quality["hypotheses"] = tried
    # Without matched pulses the table's placement is a guess on the 5 mm lattice, and the physics cannot see a
    # time origin that is off in every row alike (12x1): the page's placement is preferred unless it is worse.
    # Nor can it see the origin of a table placement anchored on another printer's pulse (the lead after it starts
    # where that pulse ends, not where the standard one would): searched, and the page's placement preferred, alike.
    # Nor, where the pulses end with a shorter lead-out than the standard one's (a plain rectangle matched by its
    # fall), the origin that starts every lead late by the difference; the rows' traces then end before their cells.
    guessed = _origin_guessed(dig, layout_flags) or _rows_end_early(dig, paper_speed)
    # And the mirror: a lead-out longer than the standard's starts every lead early, and the rows' traces run on past
    # their cells. (Looked for where the table keeps the physics only: a reading that breaks it is searched anyway.)
    if not guessed and "pulse_top_mm" in dig.quality and before >= PLACEMENT_SEARCH_BELOW_DB:
        late = _rows_end_late(dig, paper, fit, pulses, paper_speed)
        if late is not None:
            dig.quality["rows_end_late_s"] = round(late, 3)
            guessed = True
    # The physics cannot see a gap between columns either (each column keeps its laws): where every later column's
    # cells miss ink and the first column's do not, the page is searched, and its placement wins on ink read.
    table_unread = _column_unread_mm(dig, paper_speed)
    short = len(table_unread) > 1 and min(table_unread[1:]) >= table_unread[0] + COLUMN_SHORT_MM
    if before >= PLACEMENT_SEARCH_BELOW_DB and not guessed and not short:
        return dig
    ink_rows = find_ink_rows(paper, fit)
    names = [dig.layout]
    if dig.layout_source == "auto":
        # and the layout the rows of trace name, where pulses named another (three pulses found on a twelve-row page)
        names += [*SAME_ROWS_ALTERNATIVES.get(dig.layout, ()), layout_of_rows(paper, fit, paper_speed, ink_rows)]
        names = [name for i, name in enumerate(names) if name is not None and name not in names[:i]]
    best, best_score = dig, before + (-PLACEMENT_MARGIN_DB if guessed else TABLE_KEEP_MARGIN_DB)
    placed = []
    for name in names:
        found = _page_reading(name, dig, paper, fit, ink_rows, offset, pulses, paper_speed, gain, layout_flags)
        if found is None:
            continue
        score = consistency_score(found.reading.signal, found.reading.fs)
        tried.append({"layout": name, "placement": "from the page", "score_db": round(score, 2),
                      "unread_mm": round(found.unread_mm, 2)})
        placed.append((found, score))
    # A layout whose cells leave much more of the page's trace unread than another one's is not what was printed,
    # however well its shorter windows keep the physics (the prototype's 1.8 s seed-3x4 on a 3x4 page); the other
    # one must keep the physics well enough to be chosen itself, and not break a law (a 6x1 page read as 3x4+3
    # leaves less unread, and breaks both laws).
    fits = min((found.unread_mm for found, score in placed if score >= max(best_score, UNMEASURED_SCORE_DB)),
               default=float("inf"))
    chosen = None
    for found, score in placed:
        again = found.reading
        if found.unread_mm > fits + LAYOUT_UNREAD_MARGIN_MM:
            continue
        reads_more = (short and score >= before - PLACEMENT_MARGIN_DB and again.layout == dig.layout
                      and sum(_column_unread_mm(again, paper_speed)[1:]) <= sum(table_unread[1:]) - COLUMN_SHORT_MM)
        # a guessed table reading gives way to one placed by pulses found on the page by more: the few samples a
        # pulse's fall leaves at the start of each row weigh on the laws as much as the whole placement
        anchored = guessed and "placed_by_pulses" in again.quality and score >= before - PULSE_PLACED_MARGIN_DB
        # a table reading whose rows end short of their traces is off whatever its physics says (the pulses' lead-out
        # flats it reads as the leads' starts keep the laws): the page's, placed where the rows end, wins while it keeps
        # both laws (labels printed on the trace after the pulse weigh on them more where the leads start right)
        anchored |= "rows_end_late_s" in again.quality.get("placed_by_pulses", {}) and score >= RELIABLE_MIN_DB
        if score >= best_score or (reads_more and best is dig) or (anchored and best is dig):
            best, best_score, chosen = again, max(score, best_score), found
    if chosen is not None:  # chosen on the search's steps, kept at the refined placement
        best = chosen.final()
    best.quality["hypotheses"] = tried
    if best is not dig and "pulse_top_mm" in dig.quality:  # what sent it here stays in the report
        best.quality["pulse_top_mm"] = dig.quality["pulse_top_mm"]
        if PULSE_OTHER_SHAPE in dig.quality["flags"]:
            best.quality["flags"] = [*best.quality["flags"], PULSE_OTHER_SHAPE]
    return best


def _column_unread_mm(dig: DigitizedEcg, paper_speed: float) -> list[float]:
    """Per column of the reading's layout (rhythm strips in the first), the median over its cells of the paper (mm)
    each leaves unread."""
    lay = make_layout(dig.layout, paper_speed)
    by_col: dict[int, list[float]] = {}
    for lead, entry in dig.quality.get("leads", {}).items():
        for cell in entry.get("cells", []):
            mid = 0.5 * (cell["t0"] + cell["t1"])
            col = next((c.col for c in lay.cells if c.lead == lead and c.t0 <= mid < c.t1), None)
            if col is not None:
                by_col.setdefault(col, []).append((1.0 - cell["coverage"]) * (cell["t1"] - cell["t0"]) * paper_speed)
    return [float(np.median(by_col[c])) for c in sorted(by_col)]


def _rows_end_early(dig: DigitizedEcg, paper_speed: float) -> bool:
    """Whether a table reading reads its rows' traces ending before their cells end: by at least ROWS_END_EARLY_S
    in three quarters of the cells that end a row (their last sample read). Held-out default pages (standard
    pulses): one of 100 (0.2 s; searched: 15.4 -> 16.0 dB); fold-9 mixed pages whose pulse is a plain 0.2-0.23 s
    rectangle: 0.06-0.11 s, every lead 0.08-0.09 s late (one of them with no pulse measured in its cells)."""
    early = []
    for cell in make_layout(dig.layout, paper_speed).cells:
        if cell.t1 < RECORD_S - 1e-9:
            continue
        k = cell_samples(cell, dig.fs, dig.signal.shape[0])
        read = k[np.isfinite(dig.signal[k, LEAD_INDEX[cell.lead]])]
        if read.size:
            early.append(cell.t1 - (read[-1] + 1) / dig.fs)
    return len(early) >= 2 and float(np.quantile(early, 0.25)) >= ROWS_END_EARLY_S


def _unread_path_starts(dig: DigitizedEcg, fit: GridFit, cells: list[LeadCell], trim_s: float,
                        paper_speed: float) -> None:
    """The followed paths (``dig.traces``, what the overlay draws; one per cell, in ``cells``' order) without the
    stretch at each row's start that unread_row_starts left unread: the overlay shows what was read."""
    n = row_start_samples(dig.fs, trim_s)
    pulse_w = standard_pulse_mm(paper_speed)  # where read_cells starts a cell's time
    for i, cell in enumerate(cells):
        if cell.col == 0:
            start_u = cell.x_mm + (pulse_w if cell.pulse else 0.0)
            _hide_path_before(dig, fit, i, cell.lead, start_u + (n - 0.5) / dig.fs * paper_speed)


def _hide_path_before(dig: DigitizedEcg, fit: GridFit, i: int, lead: str, until_u: float) -> None:
    """Cell ``i``'s followed path (``dig.traces[i]``, when it is ``lead``'s) without its points left of ``until_u``
    (paper mm): the overlay draws what was read."""
    if i >= len(dig.traces):
        return
    name, xy = dig.traces[i]
    if name != lead or not len(xy):
        return
    unread = fit.to_paper(xy)[:, 0] < until_u
    if unread.any():
        xy = xy.copy()
        xy[unread] = np.nan
        dig.traces[i] = (name, xy)


def _rows_end_late(dig: DigitizedEcg, paper: PaperInk, fit: GridFit, pulses: list[Pulse],
                   paper_speed: float) -> float | None:
    """How far (s) a table reading leaves its rows' traces running on past the cells that end them, when by at least
    ROWS_END_LATE_S in three quarters of those cells (two at least) that have no found pulse after them (the lower
    quartile); else None. How far a trace runs on is measured on the page's ink at the level of the cell's last read
    ROW_END_SPAN_MM (within ROW_END_BAND_MM), unbroken on the ROW_END_STEP_MM raster but for a step, from the cell's
    end."""
    late = []
    for box, (_, xy) in zip(dig.leads, dig.traces):
        if box.t1 < RECORD_S - 1e-9 or len(xy) < 2:
            continue
        uv = fit.to_paper(xy)
        uv = uv[np.isfinite(uv).all(axis=1)]
        if len(uv) < 2:
            continue
        end_u = float(fit.to_paper(box.quad[[1, 3]])[:, 0].mean())
        tail = uv[uv[:, 0] >= uv[:, 0].max() - ROW_END_SPAN_MM]
        lo, hi = tail[:, 1].min() - ROW_END_BAND_MM, tail[:, 1].max() + ROW_END_BAND_MM
        if any(end_u - 1.0 <= p.u <= end_u + ROW_END_LOOK_MM + 3.0 and lo - 10.0 <= p.v <= hi + 10.0 for p in pulses):
            continue  # a pulse after the row's end: its lead-in flat is no trace
        near = (paper.u >= end_u) & (paper.u < end_u + ROW_END_LOOK_MM) & (paper.v >= lo) & (paper.v <= hi)
        bins = np.zeros(int(np.ceil(ROW_END_LOOK_MM / ROW_END_STEP_MM)), bool)
        bins[((paper.u[near] - end_u) / ROW_END_STEP_MM).astype(np.int64)] = True
        empty = np.flatnonzero(~bins[:-1] & ~bins[1:])  # two empty steps in a row end the run
        run = int(empty[0]) if empty.size else bins.size
        late.append(run * ROW_END_STEP_MM / paper_speed)
    quartile = float(np.quantile(late, 0.25)) if len(late) >= 2 else 0.0
    return quartile if quartile >= ROWS_END_LATE_S else None


def _origin_guessed(dig: DigitizedEcg, layout_flags: list[str]) -> bool:
    """Whether the table reading's time origin is a guess: no pulse matched (the layout guessed from the rows), or
    the pulses are another printer's (the lead after one starts where it ends, not where the standard one would)."""
    return "layout_guessed" in layout_flags or PULSE_OTHER_SHAPE in dig.quality.get("flags", [])


def _opens_row(strip: np.ndarray, u_start: float, row_pulses: list[Pulse], at_mm: float) -> bool:
    """Whether one of a row's found pulses starts within PULSE_ANCHOR_MM of ``at_mm`` and within PULSE_MATCH_MM of
    the row's first ink (``strip``: the row read across the page from ``u_start``)."""
    first = _first_ink_mm(strip, u_start)
    if first is None:
        return False
    return any(abs(p.u - at_mm) <= PULSE_ANCHOR_MM and abs(p.u - first) <= PULSE_MATCH_MM for p in row_pulses)


def _first_ink_mm(strip: np.ndarray, u_start: float) -> float | None:
    """Where a row read across the page (sampled every SEARCH_STEP_MM from ``u_start``) is first read; None: nowhere."""
    read = np.flatnonzero(np.isfinite(strip))
    return u_start + float(read[0]) * SEARCH_STEP_MM if read.size else None


def _opening_pulse(strip: np.ndarray, u_start: float, pulses: list[StripPulse], paper_speed: float) -> StripPulse | None:
    """The pulse (of ``pulses``, found in the row ``strip`` reads across the page) that opens the row: it rises at
    most a lead-in flat (PULSE_LEAD_IN_MAX_S) after the row's first ink; None when none does."""
    first = _first_ink_mm(strip, u_start)
    if first is None or not pulses:
        return None
    return next((p for p in pulses if p.rise_mm - first <= PULSE_LEAD_IN_MAX_S * paper_speed + PULSE_ANCHOR_MM), None)


def _page_reading(name: str, dig: DigitizedEcg, paper: PaperInk, fit: GridFit,
                  ink_rows: tuple[list[float], list[np.ndarray]], offset: tuple[float, float], pulses: list[Pulse],
                  paper_speed: float, gain: float, layout_flags: list[str]) -> _PageReading | None:
    """The page read in layout ``name`` placed from the page (a _PageReading: the reading on the search's steps, how
    much of its limb-lead rows (mm) that placement leaves unread, and its reading at the refined placement), or None
    when the page does not show the rows its limb leads need; ``ink_rows`` is :func:`ink_rows` of the page."""
    lay = make_layout(name, paper_speed)
    windows = law_windows(lay)
    ink_rows, row_cols = ink_rows
    n_rows = 1 + max(c.row for c in lay.cells)
    table_rows = [lay.cells_of_row(r)[0].baseline_mm + offset[1] for r in range(n_rows)]
    row_pitch = float(np.median(np.diff(table_rows))) if n_rows > 1 else 20.0
    rows = match_rows(table_rows, ink_rows, 0.5 * row_pitch)
    # a law whose rows are not all on the page (a row of flat trace printed too faintly to find) cannot place it;
    # the other law can
    windows = [w for w in windows if all(rows[r] is not None for r in w.rows)]
    if not windows or not row_cols:
        return None
    u_start = min(float(paper.u_of(cols[0])) for cols in row_cols) - 2.0
    u_end = max(float(paper.u_of(cols[-1])) for cols in row_cols) + 2.0
    strips = _read_strips(paper, rows, min(row_pitch, 20.0), u_start, u_end)
    x0_table = offset[0] + lay.cells[0].x_mm + (lay.pulse_mm if lay.cells[0].pulse else 0.0)
    # Where the rows end in trace, their end places the origin (a pulse's flat lead-out before the first lead looks
    # like trace); where they end in a pulse, their start does (best_origin without row_s).
    law_rows = sorted({r for w in windows for r in w.rows})
    in_pulse = [_ends_in_pulse(strip, gain) for strip in strips]
    trailing = sum(in_pulse[r] for r in law_rows)
    row_cells_s = min(([c.t1 - c.t0 for c in sorted(lay.cells_of_row(r), key=lambda c: c.col)] for r in law_rows),
                      key=sum)
    row_s = None if 2 * trailing > len(law_rows) else sum(row_cells_s)
    gaps, gap_table = column_gaps_mm(lay), table_gap_mm(lay) + (lay.pulse_mm if PULSE_EACH_COLUMN in layout_flags else 0.0)
    # pulses printed before every column (the prototype's seed-3x4, some 3x4 printers) show the gap between columns,
    # which the physics cannot see when each column keeps its own laws
    near = 0.4 * row_pitch
    row_pulses = {r: [p for p in pulses if abs(p.v - rows[r]) <= near] for r in law_rows}
    gap_pulses = gap_from_pulses([[p.u for p in row_pulses[r]] for r in law_rows], row_cells_s[0] * paper_speed)
    if gap_pulses is not None and len(gaps) > 1:
        gaps = tuple(g for g in gaps if abs(g - gap_pulses) <= PULSE_GAP_AROUND_MM)
        gap_table = gap_pulses
    # Pulses of the standard shape that open every law row, where the table puts them, bound where the first lead
    # starts: after the pulse's top ends (its measured end: a pulse's lead-out flat looks like trace and may be
    # short) and no more than PULSE_ANCHOR_MM after the standard pulse's lead-out would end. The search keeps
    # within: the physics cannot see an origin off in every row alike, and prefers one that skips whatever breaks
    # the laws at the cells' starts (a label stroke read as trace, a record's opening transient). Pulses at the
    # rows' ends bound nothing.
    span = None
    top = dig.quality.get("pulse_top_mm")
    pulse_at = x0_table - lay.pulse_mm
    if top is not None and not _origin_guessed(dig, layout_flags) and all(
            _opens_row(strips[r], u_start, row_pulses[r], pulse_at) for r in law_rows):
        span = (pulse_at + float(top[1]), x0_table + PULSE_ANCHOR_MM)
    by_pulses: dict[str, float] = {}
    late = dig.quality.get("rows_end_late_s")
    if span is not None and late is not None:
        # the table's rows end short of their traces (a lead-out longer than the standard's): the origin lies about
        # as much later, where the rows' ends put it
        shifted = x0_table + late * paper_speed
        span = (shifted - PULSE_ANCHOR_MM, shifted + PULSE_ANCHOR_MM)
        by_pulses["rows_end_late_s"] = late
    # Else pulses of any width and shape (ecgcore.read.placement.band_pulses) do alike: those that open the law rows
    # bound the origin to after their fall, at most a lead-out flat later; those before every column give the gap.
    each_column = PULSE_EACH_COLUMN in layout_flags
    after = None  # where the opening pulses' falls end (mm), when found
    if span is None:
        any_width = _row_pulses(paper, rows, min(row_pitch, 20.0), u_start, strips.shape[1], gain, paper_speed)
        opening = [p for p in (_opening_pulse(strips[r], u_start, any_width[r], paper_speed) for r in law_rows) if p]
        if (len(opening) >= max(2, PULSE_OPENING_SHARE * len(law_rows))
                and np.ptp([p.fall_mm for p in opening]) <= PULSE_FALLS_ALIKE_MM):
            fall = float(np.median([p.fall_mm for p in opening]))
            after = float(np.max([p.after_mm for p in opening])) + PULSE_FALL_CLEAR_MM
            span = (fall, fall + PULSE_LEAD_OUT_MAX_S * paper_speed)
            by_pulses["pulse_fall_mm"] = round(fall, 2)
        other_shape = PULSE_OTHER_SHAPE in dig.quality.get("flags", [])  # the template matched them by one edge
        if (gap_pulses is None or other_shape) and len(column_gaps_mm(lay)) > 1:
            gap_any = gap_from_band_pulses([any_width[r] for r in law_rows], row_cells_s[0] * paper_speed,
                                           [p.height_mm for p in opening])
            if gap_any is not None:
                # the rises of pulses alike are as far apart as the columns' starts: the gap within a step (the row's
                # end may trade the origin against each gap of the row)
                gaps = tuple(g for g in column_gaps_mm(lay) if abs(g - gap_any) <= SEARCH_STEP_MM + 1e-9)
                gap_table, each_column = gap_any, True
                by_pulses["gap_mm"] = round(gap_any, 2)
    found = None
    for coverage in (MIN_WINDOW_COVERAGE, MIN_WINDOW_COVERAGE_SPARSE):
        found = found or best_origin(strips, u_start, windows, paper_speed, [x0_table], row_s=row_s,
                                     row_cells_s=row_cells_s, gaps_mm=gaps, table_gap_mm=gap_table, span_mm=span,
                                     min_coverage=coverage)
    if found is None:
        return None
    x0, gap = found.x0_mm, found.gap_mm
    starts = paper_starts(lay)
    plans = []
    for r in range(n_rows):
        cells = sorted(lay.cells_of_row(r), key=lambda c: c.col)
        ends_record = cells[-1].t1 >= RECORD_S - 1e-9  # its last sample is one sample period before the end
        plans.append(RowPlan(tuple(starts[(r, c.col)] for c in cells[1:]),
                             sum(c.t1 - c.t0 for c in cells) - (1.0 / dig.fs if ends_record else 0.0),
                             not in_pulse[r]))
    if after is not None and row_s is not None:
        # Pulses of any width bound the origin and the rows end in trace: where the rows' ends put it within the
        # pulses' bounds, more than a refinement away from the search's, the ends win (an earlier origin leaves the
        # rows unread up to the search's). Two measures of the page agree there, and the physics cannot see an
        # origin off in every row alike: it placed it by whatever breaks the laws at the cells' starts (a lead label
        # printed under the trace after a lead change, read as trace: fold-9 dev 000015, 2 mm late, every lead
        # 0.08 s off).
        by_ends = origin_from_row_ends(paper, strips, u_start, SEARCH_STEP_MM, plans, gap, paper_speed,
                                       fit.px_per_mm, (span[0] - SEARCH_STEP_MM, span[1] + SEARCH_STEP_MM))
        if by_ends is not None and abs(by_ends - x0) > REFINE_MM:
            # what the search skipped is what broke the laws at the rows' starts (a printer's filter hook after its
            # pulse, a label printed over the first beat: real ecg00002, Einthoven 9.9 dB read, 14.6 left unread)
            if by_ends < x0:
                after = max(after, x0)
            x0 = u_start + round((by_ends - u_start) / SEARCH_STEP_MM) * SEARCH_STEP_MM  # on the search's steps
            by_pulses["origin_from_row_ends"] = True
    # the search's steps made finer by where the rows' ink ends and breaks between columns (ecgcore.read.refine)
    fine_x0, fine_gap = refine_placement(paper, strips, u_start, SEARCH_STEP_MM, plans, x0, gap, paper_speed,
                                         fit.px_per_mm, breaks=not each_column)
    # a pulse of any width is found to within a step (the first step of its fall's ink; with no lead-out the trace
    # starts at the stroke's middle)
    bound = span if after is None else (span[0] - SEARCH_STEP_MM, span[1] + SEARCH_STEP_MM)
    if bound is not None and not bound[0] <= fine_x0 <= bound[1]:
        # the pulses still bound the origin: refined from the rows' ends alone (a break's middle traded it against the
        # gap), else as searched
        fine_x0, fine_gap = refine_placement(paper, strips, u_start, SEARCH_STEP_MM, plans, x0, gap, paper_speed,
                                             fit.px_per_mm, breaks=False)
        if not bound[0] <= fine_x0 <= bound[1]:
            fine_x0, fine_gap = x0, gap
    # Each row's 0 mV line: the level its trace keeps most (the median of the row read across the page); rows not
    # found on the page keep the layout table's place, moved as the found rows moved.
    shift = float(np.median([rows[r] - table_rows[r] for r in range(n_rows) if rows[r] is not None]))
    baselines = []
    for r in range(n_rows):
        values = strips[r][np.isfinite(strips[r])] if rows[r] is not None else np.empty(0)
        baselines.append(float(np.median(values)) if values.size else table_rows[r] + shift)
    flags = [f for f in layout_flags if f != "layout_guessed"] + ["layout_from_page"]
    # The gain from pulses printed before or after the rows (of any shape); else the given one. The table reading's
    # pulse measurement is not used: its cells were placed where this reading says they are not.
    heights = []
    row_n = int(round((sum(row_cells_s) * paper_speed + (len(row_cells_s) - 1) * gap) / SEARCH_STEP_MM))
    start = int(round((x0 - u_start) / SEARCH_STEP_MM))
    look = int(round(PULSE_SEARCH_MM / SEARCH_STEP_MM))
    for r in law_rows:
        for lo, hi, trace_side in ((start - look, start, "right"), (start + row_n - look, start + row_n + look, "left")):
            height = _pulse_height_mm(strips[r, max(lo, 0): max(hi, 0)], trace_side, baselines[r])
            if height is not None and standard_gain(height / CALIBRATION_MV) is not None:
                heights.append(height)  # a pulse of a standard gain (a 1 mm step in a T wave is no pulse)
    used_gain = gain_from_pulses([h / CALIBRATION_MV for h in heights], gain) if len(heights) >= 2 else gain

    def read_at(at_x0: float, at_gap: float) -> DigitizedEcg:
        cells = place_cells(lay, at_x0, baselines, paper_speed, at_gap)
        again = read_cells(paper, fit, cells, (0.0, 0.0), name, dig.layout_source, lay.duration_s, dig.fs,
                           paper_speed, used_gain, pulses, flags)
        # a first lead that starts where the pulse falls: the fall's stroke is not its trace
        trim_s = (after - at_x0) / paper_speed if after is not None else 0.0
        unread_row_starts(again.signal, again.fs, cells, trim_s)
        _unread_path_starts(again, fit, cells, trim_s, paper_speed)
        again.grid["paper_offset_mm"] = [round(at_x0 - x0_table + offset[0], 3), round(shift + offset[1], 3)]
        again.grid["column_gap_mm"] = round(at_gap, 2)
        again.quality["placement"] = "from the page"
        if by_pulses:
            again.quality["placed_by_pulses"] = dict(by_pulses)
        if (at_x0, at_gap) != (x0, gap):
            again.quality["placement_refined_mm"] = {"origin": round(at_x0 - x0, 3), "gap": round(at_gap - gap, 3)}
        return again

    searched = read_at(x0, gap)

    def final() -> DigitizedEcg:
        """The chosen placement read at the refined origin and gap. The search trades the origin against the gap (the
        physics sees neither): blank paper at the first lead change that one of the first two columns meets moves
        the other onto it (ecgcore.read.refine.page_lead_change), kept where the physics holds as well; only the gap
        where pulses of any width bound the origin."""
        move = (0.0, 0.0)
        origin_by_pulses = "pulse_fall_mm" in by_pulses  # pulses of any width bound the origin, not the gap
        if (span is None or origin_by_pulses) and not each_column:
            move = page_lead_change(place_cells(lay, fine_x0, baselines, paper_speed, fine_gap), paper, paper_speed,
                                    fit.px_per_mm, paper_speed / dig.fs)
            if origin_by_pulses and move[0] != 0.0:
                move = (0.0, 0.0)
        fine = read_at(fine_x0, fine_gap) if (fine_x0, fine_gap) != (x0, gap) else searched
        if any(move) and fine_gap + move[1] >= 0.0:
            again = read_at(fine_x0 + move[0], fine_gap + move[1])
            if consistency_score(again.signal, again.fs) >= consistency_score(fine.signal, fine.fs) - PLACEMENT_MARGIN_DB:
                again.quality["lead_change_placement_mm"] = {"origin": round(float(move[0]), 3),
                                                             "gap": round(float(move[1]), 3)}
                return again
        return fine

    return _PageReading(searched, found.unread_mm, final)


@dataclass
class _PageReading:
    """A page placement's reading on the search's steps (what its physics is compared by: at 100 Hz a QRS read
    a few ms off scores the laws 1-3 dB apart, noise that must not decide between placements), how much of its
    limb-lead rows it leaves unread (mm), and how to read it at the placement refined from the rows' ends and
    breaks and its lead changes (ecgcore.read.refine; None: the reading itself), the reading to keep once it is
    chosen: the refinement's measures are taken for the chosen placement only."""

    reading: DigitizedEcg
    unread_mm: float
    refined: Callable[[], DigitizedEcg] | None

    def final(self) -> DigitizedEcg:
        return self.refined() if self.refined is not None else self.reading


def _ends_in_pulse(strip: np.ndarray, gain: float) -> bool:
    """Whether a row read across the page (sampled every SEARCH_STEP_MM) ends in a calibration pulse: in its last
    PULSE_SEARCH_MM of trace, two flat levels 1 mV apart at the given or a standard gain, the top one held for at
    least PULSE_TOP_MIN_MM in one stretch."""
    read = np.flatnonzero(np.isfinite(strip))
    if not read.size:
        return False
    last = int(read[-1])
    tail = strip[max(0, last + 1 - int(round(PULSE_SEARCH_MM / SEARCH_STEP_MM))): last + 1]
    levels = pulse_levels(tail)
    if levels is None:
        return False
    height = (levels[0] - levels[1]) / CALIBRATION_MV
    if standard_gain(height, (gain, *GAINS)) is None:
        return False
    run = longest_run(np.abs(tail - levels[1]) <= PULSE_FLAT_MM)
    return run is not None and (run[1] - run[0]) * SEARCH_STEP_MM >= PULSE_TOP_MIN_MM


def _pulse_height_mm(segment: np.ndarray, trace_side: str, baseline: float) -> float | None:
    """The height (mm) of a calibration pulse of any shape in a stretch of a row read across the page (sampled every
    SEARCH_STEP_MM), or None: two flat levels (pulse_levels), the lower one the row's ``baseline`` (its trace's
    level, within PULSE_BASE_MM), the top one held for at least PULSE_TOP_MIN_MM in one stretch, and the base level
    beside that stretch on the side of the row's trace (``trace_side``: "right" for a pulse printed before the trace,
    "left" for one after it). Two flat stretches that are not a pulse are common: a row whose trace ends and goes on
    lower down the page, or a pulse taller than the row, read where it leaves the row's band."""
    levels = pulse_levels(segment)
    if levels is None:
        return None
    base, top = levels
    if abs(base - baseline) > PULSE_BASE_MM:
        return None
    with np.errstate(invalid="ignore"):
        at_top = np.abs(segment - top) <= PULSE_FLAT_MM
        at_base = np.abs(segment - base) <= PULSE_FLAT_MM
    run = longest_run(at_top)
    if run is None or (run[1] - run[0]) * SEARCH_STEP_MM < PULSE_TOP_MIN_MM:
        return None
    beside = at_base[run[1]:] if trace_side == "right" else at_base[: run[0]]
    return base - top if beside.any() else None


def _read_strips(paper: PaperInk, rows: list[float | None], row_h: float, u_start: float, u_end: float) -> np.ndarray:
    """Each row of trace read across the whole page (one long cell per row, tracked like lead cells), sampled every
    SEARCH_STEP_MM from ``u_start``: (len(rows), n) paper v in mm, NaN where not read or where the row is None."""
    placed = [(r, v) for r, v in enumerate(rows) if v is not None]
    cells = [LeadCell(LEAD_NAMES[k % len(LEAD_NAMES)], r, 0, u_start, v - row_h / 2 - 1.0, u_end - u_start, row_h,
                      0.0, 1.0, False) for k, (r, v) in enumerate(placed)]
    # One tracking pass, without settling the ink that two rows' paths share (_owners): the time-origin search needs
    # the rows' shapes, not every crossing QRS, and this read is as long as a whole page's.
    touch = TOUCH_PX / paper.px_per_mm
    columns = [cell_columns(paper, cell, RUN_SPLIT_MM) for cell in cells]
    paths = track_all(columns, touch)
    grid = u_start + np.arange(int(np.floor((u_end - u_start) / SEARCH_STEP_MM)) + 1) * SEARCH_STEP_MM
    strips = np.full((len(rows), len(grid)), np.nan)
    for (r, _), col, path in zip(placed, columns, paths):
        u, v = column_values(col.runs, path, col.n_cols, paper.px_per_mm)
        strips[r] = resample(u, v, grid, max_gap_s=STRIP_MAX_GAP_MM)
    return strips


def _row_pulses(paper: PaperInk, rows: list[float | None], row_h: float, u_start: float, n: int, gain: float,
                paper_speed: float) -> list[list[StripPulse]]:
    """Each row's calibration pulses of any width (ecgcore.read.placement.band_pulses) in its band (as _read_strips
    reads it above the row's level, PULSE_BAND_BELOW_MM below it: the next row's pulse top lies below), of the given
    gain or a standard one that fits the band; [] for a row not on the page."""
    heights = tuple(sorted({CALIBRATION_MV * g for g in (gain, *GAINS) if CALIBRATION_MV * g <= 0.6 * row_h}))
    found: list[list[StripPulse]] = []
    for v in rows:
        if v is None:
            found.append([])
            continue
        near = (paper.v >= v - 0.6 * row_h) & (paper.v <= v + PULSE_BAND_BELOW_MM)
        found.append(band_pulses(paper.u[near], paper.v[near], u_start, n, SEARCH_STEP_MM, heights, paper_speed))
    return found


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
    (:func:`ecgcore.read.segmentation.load_segmenter`), which raises ModelError when its weights are missing."""
    if segmenter is None:
        from ecgcore.read.segmentation import load_segmenter

        segmenter = load_segmenter()
    if on_step:
        on_step("segmenting")
    from ecgcore.read.segmentation import segment_with_margin

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
            comments=[f"digitised by ECG Lab; layout {dig.layout}; px_per_mm {dig.px_per_mm:.3f}"]
            + [f"{lead} derived from {entry['from']} over {entry['seconds']:g} s (not read on the image)"
               for lead, entry in (dig.quality.get("derived") or {}).items()],
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
    from ecgcore.synth.photo import DRAW_REACH, box_outline

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
