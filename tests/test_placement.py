"""Placing a layout's columns from the page (ecgcore.read.placement): the time origin is where the limb-lead laws hold."""

from __future__ import annotations

import numpy as np
import pytest

from ecgcore.constants import LEAD_INDEX
from ecgcore.layouts import make_layout
from ecgcore.read.placement import (
    LEAD_CHANGE_TRIM_S,
    SEARCH_STEP_MM,
    StripPulse,
    band_pulses,
    best_origin,
    column_gaps_mm,
    gap_from_band_pulses,
    gap_from_pulses,
    law_windows,
    match_rows,
    place_cells,
    rows_with_holes,
)


def test_law_windows_of_each_layout():
    three = {w.law: w for w in law_windows(make_layout("3x4+II"))}
    assert three["einthoven"].rows == (0, 2, 1) and three["einthoven"].t0 == 0.0
    assert three["einthoven"].t1 == pytest.approx(2.5 - LEAD_CHANGE_TRIM_S)
    assert three["goldberger"].rows == (0, 1, 2)
    assert (three["goldberger"].t0, three["goldberger"].t1) == pytest.approx((2.5 + LEAD_CHANGE_TRIM_S,
                                                                              5.0 - LEAD_CHANGE_TRIM_S))
    six = {w.law: w for w in law_windows(make_layout("6x2"))}
    assert six["einthoven"].rows == (0, 2, 1) and six["goldberger"].rows == (3, 4, 5)
    twelve = {w.law: w for w in law_windows(make_layout("12x1"))}
    assert (twelve["goldberger"].t0, twelve["goldberger"].t1) == (0.0, 10.0)  # no lead change in a 12x1 row
    # the prototype's seed-3x4: every column shows the same first 1.8 s, so a law sits in its column's paper seconds
    seed = {w.law: w for w in law_windows(make_layout("seed-3x4"))}
    assert (seed["einthoven"].col, seed["einthoven"].paper_s) == (0, 0.0)
    assert seed["goldberger"].col == 1 and seed["goldberger"].t0 == pytest.approx(LEAD_CHANGE_TRIM_S)
    assert seed["goldberger"].paper_s == pytest.approx(1.8 + LEAD_CHANGE_TRIM_S)


def test_rows_match_in_order_or_by_nearness():
    assert match_rows([10.0, 50.0, 90.0], [14.0, 52.0, 95.0], 20.0) == [14.0, 52.0, 95.0]
    assert match_rows([10.0, 50.0, 90.0], [52.0, 130.0], 20.0) == [None, 52.0, None]
    # a 12x1 page on a 15 mm pitch (the table's is 20) that misses its seventh row: the others keep their places
    ink = [30.0 + 15.0 * k for k in range(12) if k != 6]
    table = [30.0 + 20.0 * k for k in range(12)]
    matched = match_rows(table, ink, 10.0)
    assert matched[6] is None and matched[:6] == ink[:6] and matched[7:] == ink[6:]
    # a rhythm strip more than the layout has (3x4+II with II and V1 under the grid): the first rows, in order
    assert match_rows([30.0, 70.0, 110.0, 150.0], [25.0, 57.0, 89.0, 121.0, 153.0], 20.0) == [25.0, 57.0, 89.0, 121.0]
    # rows not on one pitch are matched by nearness
    assert match_rows(table, [30.0, 47.0, 51.0, 90.0, 110.0, 150.0, 170.0, 190.0, 210.0, 230.0, 250.0], 10.0)[1] == 51.0


def test_pulses_before_every_column_tell_the_gap_between_columns():
    # seed-3x4 rows: a pulse before each 45 mm column, 10.5 mm apart beyond it (the pulse and a printer's gap)
    rows = [[38.0, 93.5, 149.0, 204.5], [38.2, 93.5, 149.1, 204.4], [93.6, 38.0]]
    assert gap_from_pulses(rows, 45.0) == pytest.approx(10.5, abs=0.15)
    assert gap_from_pulses([[38.0, 93.5]], 45.0) is None  # one pair does not tell it
    assert gap_from_pulses([[38.0, 93.5], [38.0, 96.0]], 45.0) is None  # two pairs that disagree by 2.5 mm
    assert gap_from_pulses([[38.0], [40.0], [42.0]], 45.0) is None  # a pulse at each row's start only
    assert gap_from_pulses([[38.0, 138.0, 238.0]] * 3, 45.0) is None  # 100 mm apart: no column and gap


def test_rows_with_holes_count_the_empty_places_of_their_pitch():
    assert rows_with_holes([68.0, 93.0, 118.5, 143.5, 192.5]) == 6  # a six-row page whose fifth row holds no ink
    assert rows_with_holes([20.0 + 16.0 * k for k in range(12) if k not in (3, 8)]) == 12
    assert rows_with_holes([25.0, 65.0, 105.0, 145.0]) == 4  # evenly spaced: as many as there are
    assert rows_with_holes([25.0, 65.0, 105.0, 165.0]) == 4  # the last a row and a half on: not on one pitch
    assert rows_with_holes([0.0, 20.0, 40.0, 140.0]) == 4  # four places empty: more than MAX_MISSING_ROWS
    assert rows_with_holes([30.0, 70.0, 150.0]) == 3  # three rows tell no pitch


def _strips_3x4(synthetic, x0_mm: float, u_start: float, pulse: bool, gap_mm: float = 0.0) -> np.ndarray:
    """The three rows of a 3x4 printout read across the page, sampled every SEARCH_STEP_MM, first lead at x0_mm,
    and ``gap_mm`` of blank paper between columns."""
    speed = 25.0
    signal = np.asarray(synthetic.signal, np.float64)
    fs = synthetic.fs
    n = int(round((x0_mm + 10.0 * speed + 3 * gap_mm - u_start) / SEARCH_STEP_MM)) + 40
    u = u_start + np.arange(n) * SEARCH_STEP_MM
    strips = np.full((3, n), np.nan)
    grid = ((("I", "aVR", "V1", "V4")), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
    for r, leads in enumerate(grid):
        for c, lead in enumerate(leads):
            t = (u - x0_mm - c * gap_mm) / speed
            sel = (t >= 2.5 * c) & (t < 2.5 * (c + 1))
            strips[r, sel] = np.interp(t[sel], np.arange(len(signal)) / fs, signal[:, LEAD_INDEX[lead]])
        if pulse:  # a 1 mV calibration pulse in the 6 mm before the first lead
            strips[r, (u >= x0_mm - 6.0) & (u < x0_mm)] = np.where(
                (u[(u >= x0_mm - 6.0) & (u < x0_mm)] > x0_mm - 4.5) & (u[(u >= x0_mm - 6.0) & (u < x0_mm)] < x0_mm - 1.5),
                1.0, 0.0)
    return strips


@pytest.mark.parametrize("x0_mm,pulse", [(17.0, True), (12.25, False), (23.5, True)])
def test_best_origin_finds_the_first_lead_wherever_the_printer_put_it(synthetic, x0_mm, pulse):
    lay = make_layout("3x4")
    strips = _strips_3x4(synthetic, x0_mm, u_start=2.0, pulse=pulse)
    found = best_origin(strips, 2.0, law_windows(lay), 25.0, around_mm=[14.0])
    assert found is not None
    origin, score = found.x0_mm, found.score_db
    # The pulse's flat foot (1.5 mm at 0 mV) keeps the laws like a lead's flat stretch: it may be taken as part of
    # the first lead; without a pulse the first sample is found to within a step.
    assert x0_mm - (1.5 if pulse else 0.0) - SEARCH_STEP_MM <= origin <= x0_mm + SEARCH_STEP_MM
    assert score >= 20


@pytest.mark.parametrize("gap_mm", [0.0, 2.5, 6.0])
def test_best_origin_finds_a_gap_between_columns(synthetic, gap_mm):
    """A printer that leaves blank paper between columns (the time windows still follow each other): the gap is
    found, and none is taken where there is none."""
    lay = make_layout("3x4")
    strips = _strips_3x4(synthetic, 15.0, u_start=2.0, pulse=False, gap_mm=gap_mm)
    found = best_origin(strips, 2.0, law_windows(lay), 25.0, around_mm=[14.0], row_s=10.0,
                        row_cells_s=[2.5] * 4, gaps_mm=column_gaps_mm(lay))
    assert found is not None
    assert found.gap_mm == pytest.approx(gap_mm, abs=0.5)
    assert found.x0_mm == pytest.approx(15.0, abs=0.75) and found.score_db >= 20
    cells = {c.lead: c for c in place_cells(lay, found.x0_mm, [30.0, 70.0, 110.0], 25.0, found.gap_mm)}
    assert cells["V4"].x_mm == pytest.approx(15.0 + (7.5 + LEAD_CHANGE_TRIM_S) * 25.0 + 3 * gap_mm, abs=1.5)


def test_one_column_layouts_search_no_gap():
    assert column_gaps_mm(make_layout("12x1")) == (0.0,)
    assert column_gaps_mm(make_layout("6x1")) == (0.0,)
    assert len(column_gaps_mm(make_layout("3x4+II"))) > 1


def test_best_origin_without_limb_leads_read_is_none(synthetic):
    strips = _strips_3x4(synthetic, 15.0, 2.0, pulse=False)
    strips[1] = np.nan  # lead II's row not read
    assert best_origin(strips, 2.0, law_windows(make_layout("3x4")), 25.0, around_mm=[14.0]) is None


def test_placed_cells_follow_the_page():
    lay = make_layout("3x4+II")
    cells = place_cells(lay, 20.0, [30.0, 70.0, 110.0, 150.0], 25.0)
    first = {(c.lead, c.row): c for c in cells}
    assert first[("I", 0)].x_mm == 20.0 and first[("I", 0)].baseline_mm == pytest.approx(30.0)
    aVR = first[("aVR", 0)]
    assert aVR.x_mm == pytest.approx(20.0 + (2.5 + LEAD_CHANGE_TRIM_S) * 25.0) and aVR.t0 == pytest.approx(2.58)
    assert not any(c.pulse for c in cells)
    rhythm = first[("II", 3)]
    assert (rhythm.t0, rhythm.t1) == (0.0, 10.0) and rhythm.baseline_mm == pytest.approx(150.0)


def test_best_origin_within_a_distance_keeps_to_the_pulses_origin(synthetic):
    """A label stroke read as trace at the start of lead I's and aVR's cells breaks the laws there: the search alone
    prefers an origin past it (the physics cannot see the whole page read late), and keeps to the origin the page's
    pulses tell when asked to (ecgcore.read.digitize.PULSE_ANCHOR_MM)."""
    lay = make_layout("3x4")
    strips = _strips_3x4(synthetic, 17.0, u_start=2.0, pulse=True)
    u = 2.0 + np.arange(strips.shape[1]) * SEARCH_STEP_MM
    for start in (17.0, 17.0 + 2.5 * 25.0):
        strips[0, (u >= start) & (u < start + 2.0)] += 1.5
    free = best_origin(strips, 2.0, law_windows(lay), 25.0, around_mm=[17.0], row_s=10.0, row_cells_s=[2.5] * 4)
    kept = best_origin(strips, 2.0, law_windows(lay), 25.0, around_mm=[17.0], row_s=10.0, row_cells_s=[2.5] * 4,
                       span_mm=(16.0, 18.0))
    assert free is not None and kept is not None
    assert free.x0_mm > 18.0  # read late by the stroke
    assert abs(kept.x0_mm - 17.0) <= 1.0


def _polyline_ink(points_mm: list[tuple[float, float]], px_per_mm: float = 8.0, pen_mm: float = 0.3):
    """Ink pixels (u, v in mm) of a polyline drawn with a pen ``pen_mm`` wide, ``px_per_mm`` pixels per mm."""
    us, vs = [], []
    for (u0, v0), (u1, v1) in zip(points_mm, points_mm[1:]):
        n = int(np.ceil(max(abs(u1 - u0), abs(v1 - v0)) * px_per_mm)) + 1
        t = np.linspace(0.0, 1.0, n)
        for off in np.arange(-pen_mm / 2, pen_mm / 2 + 1e-9, 1.0 / px_per_mm):
            us.append(u0 + t * (u1 - u0))
            vs.append(v0 + t * (v1 - v0) + off)
    return np.concatenate(us), np.concatenate(vs)


def _row_with_pulse(rise: float, width: float, height: float = 10.0, top: bool = True, qrs_at: float = 40.0):
    """A row on level v = 50 mm: a lead-in flat, a pulse of ``width`` mm rising at ``rise``, then trace with one QRS."""
    pts = [(0.0, 50.0), (rise, 50.0), (rise, 50.0 - height)]
    if top:
        pts += [(rise + width, 50.0 - height)]
    else:  # its top not read: two strokes only
        u1, v1 = _polyline_ink(pts)
        pts = [(rise + width, 50.0 - height)]
    pts += [(rise + width, 50.0), (qrs_at, 50.0), (qrs_at + 0.5, 40.0), (qrs_at + 1.0, 53.0), (qrs_at + 1.5, 50.0),
            (90.0, 50.0)]
    u, v = _polyline_ink(pts)
    if not top:
        u, v = np.concatenate([u1, u]), np.concatenate([v1, v])
    return u, v


@pytest.mark.parametrize("width_s", [0.08, 0.12, 0.2, 0.25])
def test_pulses_of_any_width_are_found_by_their_two_strokes(width_s):
    u, v = _row_with_pulse(12.0, width_s * 25.0)
    found = band_pulses(u, v, 0.0, 400, SEARCH_STEP_MM, (5.0, 10.0, 20.0), 25.0)
    assert len(found) == 1  # the QRS is no pulse
    assert found[0].rise_mm == pytest.approx(12.0, abs=0.5)
    assert found[0].fall_mm == pytest.approx(12.0 + width_s * 25.0, abs=0.5)
    assert found[0].height_mm == pytest.approx(10.0, abs=0.6)


def test_a_pulse_is_found_without_its_top_and_not_when_not_hollow_or_of_no_standard_height():
    u, v = _row_with_pulse(12.0, 3.0, top=False)  # a label printed on the top, or a segmenter that lost it
    assert [round(p.rise_mm) for p in band_pulses(u, v, 0.0, 400, SEARCH_STEP_MM, (10.0,), 25.0)] == [12]
    u, v = _row_with_pulse(12.0, 3.0, height=7.5)  # 0.75 mV at 10 mm/mV: no calibration pulse
    assert band_pulses(u, v, 0.0, 400, SEARCH_STEP_MM, (5.0, 10.0, 20.0), 25.0) == []
    # two spikes 10 mm tall 3 mm apart with trace between them at their foot: strokes of a pulse's height and width
    # apart, but no hollow between them
    u, v = _polyline_ink([(0.0, 50.0), (12.0, 50.0), (12.0, 40.0), (12.05, 50.0), (15.0, 50.0), (15.0, 40.0),
                          (15.05, 50.0), (90.0, 50.0)])
    assert band_pulses(u, v, 0.0, 400, SEARCH_STEP_MM, (10.0,), 25.0) == []
    u, v = _row_with_pulse(12.0, 9.0)  # 0.36 s: wider than any printer's pulse
    assert band_pulses(u, v, 0.0, 400, SEARCH_STEP_MM, (10.0,), 25.0) == []


def test_pulses_of_any_width_tell_the_gap_only_where_every_row_shows_them_alike():
    def pulse(rise: float, height: float = 10.0) -> StripPulse:
        return StripPulse(rise, rise + 3.0, height, rise + 3.5)

    # three rows of 6x2 columns (125 mm) with a 0.12 s pulse and 5 mm of blank paper before the second: the rises
    # are 133 mm apart; the third row's first pulse was not found
    rows = [[pulse(10.0), pulse(143.0)], [pulse(10.25), pulse(143.0)], [pulse(143.25)]]
    assert gap_from_band_pulses(rows, 125.0, [10.0, 10.0]) == pytest.approx(8.0, abs=0.3)
    # tremor in two rows: steps of half the opening pulses' height, one column apart, alike in both rows
    tremor = [[pulse(4.75, 9.2), pulse(82.75, 5.0)], [pulse(5.25, 9.6)], [pulse(5.25, 10.0), pulse(83.25, 5.6)]]
    assert gap_from_band_pulses(tremor, 62.5, [9.2, 9.6, 10.0]) is None
    # pulses of the right height one column apart in one row only (a noisy row): no gap
    lone = [[pulse(10.0), pulse(80.0), pulse(150.0)], [pulse(10.0)], [pulse(10.0)], [pulse(10.0)]]
    assert gap_from_band_pulses(lone, 62.5, [10.0]) is None
