"""Rendering: the paper is drawn exactly as specified, and its ground truth comes from the same geometry."""

from __future__ import annotations

import numpy as np
import pytest

from ecgcore.constants import CURVE, GRID_X, GRID_Y, LEAD_NAMES
from ecgcore.layouts import LAYOUT_NAMES, make_layout
from ecgcore.signals import EcgRecord
from ecgcore.synth.render import PaperOptions, render


def flat_record(seconds: float = 10.0, fs: int = 100) -> EcgRecord:
    return EcgRecord(np.zeros((int(seconds * fs), 12), np.float32), fs)


def test_calibration_pulse_is_exactly_one_millivolt_tall():
    paper = render(flat_record(), "seed-3x4", PaperOptions(px_per_mm=10.0, gain=10.0))
    assert pulse_height_px(paper.curve_lead == 1, 10.0) == pytest.approx(100.0, abs=0.5)  # 1 mV*10 mm/mV*10 px/mm


def pulse_height_px(trace: np.ndarray, ppm: float) -> float:
    """Distance between the centre lines of the pulse top and of the flat trace after it."""
    cols = np.flatnonzero(trace.any(axis=0))
    top_col = cols[0] + int(4.5 * ppm)  # middle of the 5 mm high part of the pulse
    top_centre = np.flatnonzero(trace[:, top_col]).mean()
    base_centre = np.flatnonzero(trace[:, cols[-1] - 2]).mean()
    return base_centre - top_centre


@pytest.mark.parametrize("gain", [5.0, 20.0])
def test_pulse_height_follows_gain(gain):
    paper = render(flat_record(), "seed-3x4", PaperOptions(px_per_mm=10.0, gain=gain))
    assert pulse_height_px(paper.curve_lead == 1, 10.0) == pytest.approx(gain * 10.0, abs=0.5)


@pytest.mark.parametrize("ppm", [10.0, 7.3, 4.5])
def test_grid_pitch_equals_px_per_mm(ppm):
    paper = render(flat_record(), "seed-3x4", PaperOptions(px_per_mm=ppm))
    # major vertical lines in the mask: runs of GRID_X columns on a row without curve
    row = paper.mask[int(2.5 * ppm)]
    cols = np.flatnonzero(row == GRID_X)
    starts = cols[np.r_[True, np.diff(cols) > 1]]
    ends = cols[np.r_[np.diff(cols) > 1, True]]
    centres = (starts + ends) / 2
    assert np.diff(centres).mean() == pytest.approx(5 * ppm, rel=0.01)
    # minor lines in the image: darker columns between major ones, every ppm px
    red_row = paper.image[int(2.5 * ppm), :, 1].astype(float)  # green channel dips on red/pink lines
    spectrum = np.abs(np.fft.rfft(red_row - red_row.mean()))
    freqs = np.fft.rfftfreq(red_row.size)
    peak = freqs[np.argmax(spectrum[1:]) + 1]
    assert 1 / peak == pytest.approx(ppm, rel=0.02)


def test_mask_classes_and_precedence():
    from ecgcore.signals import synthetic_record

    paper = render(synthetic_record(1), "3x4+II", PaperOptions(px_per_mm=8.0))
    classes = set(np.unique(paper.mask))
    assert classes == {0, GRID_X, GRID_Y, CURVE}
    # curve pixels win over grid pixels: every traced pixel is CURVE in the mask
    assert np.all(paper.mask[paper.curve_lead > 0] == CURVE)
    # grid line crossings belong to the horizontal line (GRID_Y > GRID_X)
    row = int(round(5 * 8.0 * 3))  # a major horizontal line far from any trace label
    assert (paper.mask[row - 1 : row + 1] == GRID_X).sum() == 0 or (paper.mask[row] == GRID_Y).any()


def test_every_curve_pixel_of_the_mask_is_inked():
    from ecgcore.signals import synthetic_record

    paper = render(synthetic_record(2), "6x2", PaperOptions(px_per_mm=6.5))
    curve = paper.mask == CURVE
    darkness = 255 - paper.image.min(axis=2).astype(int)
    # every curve pixel of the mask is visibly inked (the mask is the ink covering >= 20% of a pixel)
    assert darkness[curve].min() > 35
    assert np.mean(darkness[curve] >= 0.2 * 255) > 0.999
    assert np.median(darkness[curve]) > 150


def test_all_visible_trace_ink_is_in_the_curve_class():
    from ecgcore.signals import synthetic_record

    options = PaperOptions(px_per_mm=4.7, labels=False)
    paper = render(synthetic_record(2), "3x4+II", options)
    empty = render(EcgRecord(np.zeros((1000, 12), np.float32), 100), "3x4+II", options)
    # ink where the flat zero-signal traces are not: the pixels a person would call "trace"
    added = empty.image.astype(int).min(axis=2) - paper.image.astype(int).min(axis=2)
    visible = (added >= 0.3 * 255) & (empty.mask != CURVE)
    assert visible.sum() > 1000
    assert (paper.mask[visible] == CURVE).mean() > 0.99
    # and a thin trace (0.3 mm at 4.7 px/mm) is about 2 px wide in the mask, not a 1-px skeleton
    assert 2.6 < (paper.mask == CURVE).sum() / paper.layout.width_mm / 4.7 / 4 < 6


@pytest.mark.parametrize(
    "layout, expected",
    [
        ("seed-3x4", {name: [(0.0, 1.8)] for name in LEAD_NAMES}),
        (
            "3x4+II",
            {
                **{n: [(0.0, 2.5)] for n in ("I", "III")},
                "II": [(0.0, 2.5), (0.0, 10.0)],
                **{n: [(2.5, 5.0)] for n in ("aVR", "aVL", "aVF")},
                **{n: [(5.0, 7.5)] for n in ("V1", "V2", "V3")},
                **{n: [(7.5, 10.0)] for n in ("V4", "V5", "V6")},
            },
        ),
        ("6x2", {**{n: [(0.0, 5.0)] for n in LEAD_NAMES[:6]}, **{n: [(5.0, 10.0)] for n in LEAD_NAMES[6:]}}),
        ("12x1", {name: [(0.0, 10.0)] for name in LEAD_NAMES}),
    ],
)
def test_lead_windows_per_layout(layout, expected):
    paper = render(flat_record(), layout, PaperOptions(px_per_mm=4.0))
    got: dict[str, list[tuple[float, float]]] = {}
    for box in paper.leads:
        got.setdefault(box.name, []).append((box.t0, box.t1))
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in expected.items()}


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_trace_lies_inside_its_lead_box(layout):
    from ecgcore.signals import synthetic_record

    record = synthetic_record(4)
    record.signal *= 0.5  # keep every deflection inside its row
    paper = render(record, layout, PaperOptions(px_per_mm=5.0))
    for i, box in enumerate(paper.leads):
        ys, xs = np.nonzero(paper.curve_lead == i + 1)
        (x0, y0), (x1, y1) = box.quad[0], box.quad[3]
        assert xs.min() >= x0 - 2 and xs.max() <= x1 + 2, box.name
        assert ys.min() >= y0 - 2 and ys.max() <= y1 + 2, box.name


def test_trace_x_position_encodes_time():
    """A spike at t = 1.0 s is drawn 25 mm after the signal start at 25 mm/s."""
    record = flat_record()
    record.signal[100, 0] = 1.0  # lead I, t = 1.0 s at 100 Hz
    ppm = 10.0
    paper = render(record, "12x1", PaperOptions(px_per_mm=ppm))
    lead_i = paper.curve_lead == 1
    rows = np.flatnonzero(lead_i.any(axis=1))
    spike_cols = np.flatnonzero(lead_i[rows.min() + 1])  # just under the tip: spike (and the pulse top)
    layout = make_layout("12x1")
    start_mm = layout.cells[0].x_mm + layout.pulse_mm
    expected_px = (start_mm + 25.0) * ppm - 0.5
    assert np.abs(spike_cols - expected_px).min() <= 2.0


def test_nan_breaks_the_trace():
    record = flat_record()
    record.signal[50:150, 0] = np.nan
    paper = render(record, "12x1", PaperOptions(px_per_mm=5.0))
    lead_i = paper.curve_lead == 1
    layout = make_layout("12x1")
    start_mm = layout.cells[0].x_mm + layout.pulse_mm
    gap_col = int((start_mm + 25.0) * 5.0)  # t = 1.0 s lies inside the NaN run
    assert not lead_i[:, gap_col].any()


@pytest.mark.parametrize(
    "kwargs, words",
    [({"px_per_mm": 0.5}, "px_per_mm"), ({"gain": 7.0}, "gain"), ({"grid_color": "purple"}, "grid_color"),
     ({"print_style": "fancy"}, "print_style"), ({"minor_grid": "hatched"}, "minor_grid")],
)
def test_bad_paper_options_are_named(kwargs, words):
    with pytest.raises(ValueError, match=words):
        render(flat_record(), "seed-3x4", PaperOptions(**kwargs))


def test_unknown_layout_and_short_record():
    with pytest.raises(ValueError, match="unknown layout"):
        render(flat_record(), "5x5")
    with pytest.raises(ValueError, match="only 1 s"):
        render(flat_record(seconds=1.0), "12x1")


@pytest.mark.parametrize("layout_name", ["3x4+II", "seed-3x4"])
def test_device_print_style_marks_lead_changes_and_labels_the_trace_without_calling_them_curve(layout_name):
    from ecgcore.signals import synthetic_record

    ppm = 8.0
    record = synthetic_record(3)
    plain = render(record, layout_name, PaperOptions(px_per_mm=ppm, labels=False))
    device = render(record, layout_name, PaperOptions(px_per_mm=ppm, print_style="device"))
    # the ground truth does not change: separators and labels are ink, not ECG curve
    assert np.array_equal(device.mask, plain.mask) and np.array_equal(device.curve_lead, plain.curve_lead)
    added = plain.image.min(axis=2).astype(int) - device.image.min(axis=2).astype(int) >= 100
    layout = device.layout
    for cell in layout.cells:
        follows = any(abs(o.x_mm + o.w_mm - cell.x_mm) < 0.5 and abs(o.y_mm - cell.y_mm) < 0.5 for o in layout.cells)
        x = int(round(cell.x_mm * ppm))
        rows = slice(int(cell.y_mm * ppm), int((cell.y_mm + cell.h_mm) * ppm))
        column = added[rows, x - 1 : x + 2].any(axis=1)
        # a dotted line over the row's height where the lead changes (not solid), none elsewhere
        if follows:
            assert 0.25 < column.mean() < 0.65, cell.lead
        elif cell.col == 0 and cell.row < 3:
            assert column.mean() < 0.05, cell.lead
        # the label sits on the trace: ink within 4 mm above the 0 mV line, just after the cell's start
        start = cell.x_mm + (layout.pulse_mm if cell.pulse else 0.0)
        box = added[int((cell.baseline_mm - 4.0) * ppm) : int(cell.baseline_mm * ppm),
                    int((start + 0.5) * ppm) : int((start + 6.0) * ppm)]
        assert box.sum() > 20, cell.lead
    # the prototype's style (the default) prints no separators
    default = render(record, layout_name, PaperOptions(px_per_mm=ppm))
    x = int(round(layout.cells[3].x_mm * ppm))
    assert default.options.print_style == "ptb-v"
    assert (plain.image.min(axis=2).astype(int) - default.image.min(axis=2).astype(int) >= 100)[:, x - 1 : x + 2].sum() < 200


def test_dotted_minor_grid_puts_a_dot_at_each_crossing_and_keeps_the_major_lines_and_the_mask():
    ppm = 10.0
    record = flat_record()
    lines = render(record, "seed-3x4", PaperOptions(px_per_mm=ppm, grid_color="black", labels=False))
    dots = render(record, "seed-3x4", PaperOptions(px_per_mm=ppm, grid_color="black", labels=False, minor_grid="dots"))
    # the ground truth (major lines, curve) is the same; minor marks are never a class
    assert np.array_equal(lines.mask, dots.mask)
    gray = dots.image.min(axis=2).astype(int)
    # 1 mm crossings away from major lines (mm 11, 12, ...), and the middle of the minor lines between them
    crossing = [(int(round(y * ppm)), int(round(x * ppm))) for y in (51, 52, 53) for x in (11, 12, 13)]
    between = [(int(round(y * ppm)), int(round((x + 0.5) * ppm))) for y in (51, 52, 53) for x in (11, 12, 13)]
    assert all(gray[p] < 200 for p in crossing)  # a dark dot
    assert all(gray[p] > 240 for p in between)  # white paper where the lines would run
    assert (lines.image.min(axis=2)[tuple(np.array(between).T)] < 200).all()  # ...which the line grid inks
    # the black scheme's major lines are nearly as dark as the trace
    major_col = int(round(dots.mask.shape[1] / 2))
    major_x = np.flatnonzero((dots.mask == GRID_X).any(axis=0))
    assert gray[:, major_x[major_x > major_col][0]].min() < 0x40
