"""Sub-step page placement (ecgcore.read.refine): a row's end and a break between columns measured on the ink."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from ecgcore.layouts import LeadCell
from ecgcore.read.ink import PaperInk
from ecgcore.read.refine import (
    LEAD_CHANGE_MOVE_MM,
    SEGMENTATION_WIDENING_PX,
    break_middle_mm,
    cells_on_lead_changes,
    page_lead_change,
    solve_placement,
    trace_end_mm,
)

PPM = 8.0


def _ink(image: np.ndarray) -> PaperInk:
    """Curve pixels of a drawn image as paper mm (pixel centres, the raster at PPM)."""
    ys, xs = np.nonzero(image)
    u, v = (xs + 0.5) / PPM, (ys + 0.5) / PPM
    return PaperInk(u, v, PPM, np.zeros((1, 1), np.uint16), 0.0, 0.0)


def _line(image: np.ndarray, x0_mm: float, x1_mm: float, y_mm: float, width_px: int) -> None:
    pts = np.array([[x0_mm, y_mm], [x1_mm, y_mm]]) * PPM - 0.5
    cv2.polylines(image, [np.round(pts * 16).astype(np.int32)[None]], False, 1, width_px, cv2.LINE_8, 4)


def test_a_row_ends_where_its_last_sample_was_drawn_less_the_pens_cap():
    image = np.zeros((200, 1200), np.uint8)
    _line(image, 10.0, 120.37, 12.0, 3)
    paper = _ink(image)
    tail = np.full(8, 12.0)
    end = trace_end_mm(paper, 120.25, tail, image_px_per_mm=PPM)
    # the last ink reaches the round cap's radius (half the pen's width) beyond the last sample; pixel coverage makes
    # the trace look about a pixel wider than the pen (SEGMENTATION_WIDENING_PX on either side), which is taken off
    assert abs(end - 120.37) <= 1.0 / PPM, end
    # a sloped trace's height is more than the pen's width: the width across the slope is used
    image = np.zeros((400, 1200), np.uint8)
    pts = np.array([[10.0, 12.0], [100.0, 12.0], [120.37, 22.0]]) * PPM - 0.5
    cv2.polylines(image, [np.round(pts * 16).astype(np.int32)[None]], False, 1, 3, cv2.LINE_8, 4)
    sloped = trace_end_mm(_ink(image), 120.25, np.linspace(20.0, 22.0, 8), image_px_per_mm=PPM)
    assert abs(sloped - 120.37) <= 1.5 / PPM, sloped
    assert SEGMENTATION_WIDENING_PX > 0


def test_measures_that_trade_into_a_negative_gap_still_place_the_origin():
    # fold-9 dev 000059's kind: a 6x2 printer without gaps, the rows' ends (b = 1 gap) read a little short and the
    # breaks' middles (b = 0.5) a little late: alone they solve to a gap of -0.1 mm and more
    x0_true, search_x0 = 13.42, 13.75
    ends = [(x0_true + 249.75 + e, 249.75, 1.0) for e in (-0.04, 0.02, 0.0, -0.02, 0.03, -0.01)]
    breaks = [(x0_true + 125.0 + e, 125.0, 0.5) for e in (0.04, 0.06, 0.05, 0.07, 0.05, 0.08)]
    x0, gap = solve_placement(ends + breaks, search_x0, 0.0)
    assert gap == 0.0 and abs(x0 - x0_true) < 0.05
    # 000099's kind: one wrong break (a label's gap) among a 3x4+II page's ends, some with 3 gaps, one with none
    obs = [(x0_true + 249.75 + e, 249.75, 3.0) for e in (0.1, -0.01, -0.13)] + [(x0_true + 249.75, 249.75, 0.0),
                                                                               (x0_true + 62.5 + 0.83, 62.5, 0.5)]
    x0, gap = solve_placement(obs, x0_true + 0.55, 0.0)
    assert gap == 0.0 and abs(x0 - x0_true) < 0.05
    # measures that agree on a real gap keep it; none near the search's placement leave it as it is
    x0, gap = solve_placement([(20.0 + 250.0 + 3 * 2.0, 250.0, 3.0), (20.0 + 62.5 + 0.5 * 2.0, 62.5, 0.5),
                               (20.0 + 125.0 + 1.5 * 2.0, 125.0, 1.5)], 20.25, 2.25)
    assert abs(x0 - 20.0) < 1e-6 and abs(gap - 2.0) < 1e-6
    assert solve_placement([(30.0, 0.0, 0.0)], 20.0, 0.0) == (20.0, 0.0)
    assert solve_placement([], 20.0, 1.0) == (20.0, 1.0)


def test_a_break_between_columns_is_found_by_its_middle_even_with_a_tick_in_it():
    image = np.zeros((200, 1200), np.uint8)
    _line(image, 10.0, 72.5, 12.0, 2)
    _line(image, 75.5, 140.0, 12.0, 2)
    strip_u = np.arange(0.0, 150.0, 0.25)
    strip = np.where((strip_u < 72.5) | (strip_u > 75.5), 12.0, np.nan)
    paper = _ink(image)
    assert abs(break_middle_mm(paper, strip, 0.0, 0.25, 74.2, 2.75) - 74.0) <= 0.5 / PPM
    # a tick printed at the lead change, across the trace's level: still the break's middle
    cv2.line(image, (int(74.0 * PPM), int(10.5 * PPM)), (int(74.0 * PPM), int(13.5 * PPM)), 1, 2)
    assert abs(break_middle_mm(_ink(image), strip, 0.0, 0.25, 74.2, 2.75) - 74.0) <= 1.0 / PPM
    # no break near where the column boundary should be: nothing is measured
    assert break_middle_mm(paper, strip, 0.0, 0.25, 100.0, 2.75) is None


def _two_columns(gap_mm: float, mark: bool = False, pulse: bool = False, cut_mm: float = 0.0,
                 late_mm: float = 0.0) -> tuple[PaperInk, list]:
    """Three rows of two 2.5 s columns, ``gap_mm`` of blank paper between them (a bar through the rows in its middle
    with ``mark``, a 10 mm pulse opening the second column with ``pulse``, ``cut_mm`` of trace left out across the
    lead change, the whole page ``late_mm`` further on); the cells as a table without a gap places them at 10 mm."""
    image = np.zeros((int(80 * PPM), int(160 * PPM)), np.uint8)
    rng = np.random.default_rng(3)
    first, second = 10.0 + late_mm, 72.5 + late_mm + gap_mm
    for base in (21.0, 41.0, 61.0):
        for x0, x1 in ((first, first + 62.5 - cut_mm / 2), (second + cut_mm / 2 + (5.0 if pulse else 0.0), second + 62.5)):
            xs = np.arange(x0, x1 + 1e-9, 0.25)
            ys = base - 0.3 * rng.standard_normal(xs.size).cumsum() / np.sqrt(xs.size)
            pts = np.stack([xs, ys], axis=1) * PPM - 0.5
            cv2.polylines(image, [np.round(pts * 16).astype(np.int32)[None]], False, 1, 2, cv2.LINE_8, 4)
        if pulse:  # a pulse's 1 mm lead-in, rise, top and fall, straight into the trace
            pts = np.array([[second, base], [second + 1.0, base], [second + 1.0, base - 10.0], [second + 5.0, base - 10.0],
                            [second + 5.0, base]])
            cv2.polylines(image, [np.round((pts * PPM - 0.5) * 16).astype(np.int32)[None]], False, 1, 2, cv2.LINE_8, 4)
    if mark:
        cv2.line(image, (int((72.5 + gap_mm / 2) * PPM), int(12 * PPM)), (int((72.5 + gap_mm / 2) * PPM), int(68 * PPM)),
                 1, 3)
    cells = [LeadCell(lead, row, col, 10.0 + 62.5 * col, 10.0 + 20.0 * row, 62.5, 20.0, 2.5 * col, 2.5 * (col + 1), False)
             for row, leads in enumerate((("I", "aVR"), ("II", "aVL"), ("III", "aVF"))) for col, lead in enumerate(leads)]
    return _ink(image), cells


def test_a_later_column_moves_onto_the_break_its_lead_change_shows():
    for mark in (False, True):  # blank paper between the columns, or a bar printed in its middle
        paper, cells = _two_columns(2.5, mark=mark)
        moved, moves = cells_on_lead_changes(cells, (0.0, 0.0), paper, 25.0, 9.0, PPM)
        assert len(moves) == 1 and abs(moves[0] - 2.5) <= 0.25, moves
        assert all(c.x_mm == 10.0 for c in moved if c.col == 0)  # the first column keeps the placement's origin
        assert all(abs(c.x_mm - (72.5 + moves[0])) < 1e-9 for c in moved if c.col == 1)


def test_a_short_break_lies_across_the_lead_change():
    # a printer that leaves 1 mm of trace out across each lead change, its page 1 mm further on than the table's
    # (the table's first column keeps its place: its start is the placement's)
    paper, cells = _two_columns(0.0, cut_mm=1.0, late_mm=1.0)
    moved, moves = cells_on_lead_changes(cells, (0.0, 0.0), paper, 25.0, 9.0, PPM)
    assert abs(moves[0] - 1.0) <= 0.2, moves
    # the same cut where the table puts the lead change: nothing to move
    paper, cells = _two_columns(0.0, cut_mm=1.0)
    assert not any(cells_on_lead_changes(cells, (0.0, 0.0), paper, 25.0, 9.0, PPM)[1])


def test_columns_stay_where_no_break_or_a_pulse_shows_the_lead_change():
    # no gap: the trace runs on through the lead change
    paper, cells = _two_columns(0.0)
    assert not any(cells_on_lead_changes(cells, (0.0, 0.0), paper, 25.0, 9.0, PPM)[1])
    # a break within the refinement's reach is the refinement's to measure
    paper, cells = _two_columns(0.5 * LEAD_CHANGE_MOVE_MM)
    assert not any(cells_on_lead_changes(cells, (0.0, 0.0), paper, 25.0, 9.0, PPM)[1])
    # a pulse after the break opens the column: its trace starts after it, not where the ink does
    paper, cells = _two_columns(2.5, pulse=True)
    assert not any(cells_on_lead_changes(cells, (0.0, 0.0), paper, 25.0, 9.0, PPM)[1])


def test_a_page_placements_first_columns_meet_the_blank_paper_at_their_lead_change():
    """A page placement's search may trade the origin against the gap (the physics sees neither): the blank paper
    at the first lead change says where the first column ends and the second starts; where one of them meets it,
    the other is moved onto it."""
    paper, cells = _two_columns(2.5)
    late = [replace(c, x_mm=c.x_mm + (2.0 if c.col == 0 else 2.5)) for c in cells]  # first 2 mm late, second right
    origin, gap = page_lead_change(late, paper, 25.0, PPM, 0.0)
    assert abs(origin + 2.0) <= 0.15 and abs(gap - 2.0) <= 0.15, (origin, gap)
    early = [replace(c, x_mm=c.x_mm + (0.0 if c.col == 0 else 0.5)) for c in cells]  # second 2 mm early, first right
    origin, gap = page_lead_change(early, paper, 25.0, PPM, 0.0)
    assert origin == 0.0 and abs(gap - 2.0) <= 0.15, (origin, gap)
    # placed right: nothing moves; both off: neither says where the other goes, nothing moves
    right = [replace(c, x_mm=c.x_mm + (0.0 if c.col == 0 else 2.5)) for c in cells]
    assert page_lead_change(right, paper, 25.0, PPM, 0.0) == (0.0, 0.0)
    both_off = [replace(c, x_mm=c.x_mm + (2.0 if c.col == 0 else 4.0)) for c in cells]  # second 1.5 mm late
    assert page_lead_change(both_off, paper, 25.0, PPM, 0.0) == (0.0, 0.0)
