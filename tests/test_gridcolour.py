"""Grid lines the segmenter took for trace, found by their colour (ecgcore.read.gridcolour)."""

from __future__ import annotations

import numpy as np

from ecgcore.constants import CURVE, GRID_X
from ecgcore.read.digitize import digitize
from ecgcore.read.gridcolour import grid_coloured_lines, without_grid_coloured_lines
from ecgcore.synth.render import PaperOptions, render
from ecgcore.train.evaluate import compare_signals

DARK_RED = (200, 40, 40)


def _second_lines(mask: np.ndarray) -> list[tuple[int, int]]:
    """Pixel columns (first, last + 1) of every fifth major vertical grid line (each second at 25 mm/s) on a
    rendered page."""
    share = (mask == GRID_X).mean(axis=0)
    cols = np.flatnonzero(share > 0.3)
    breaks = np.flatnonzero(np.diff(cols) > 1)
    starts, ends = cols[np.r_[0, breaks + 1]], cols[np.r_[breaks, cols.size - 1]] + 1
    return [(int(a), int(b)) for a, b in zip(starts[::5], ends[::5])]


def _with_dark_second_lines(paper, colour=DARK_RED) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """The page with its one-second lines printed dark and thick (as some printers do), and a class map in which
    the segmenter took them for trace: what real ecg00010 (a Mortara ELI 350) shows."""
    image, mask = paper.image.copy(), paper.mask.copy()
    xs = _second_lines(mask)
    # taken for trace in stretches of 40 mm broken by 2 mm (unbroken lines this long the reader drops by their
    # length alone: ecgcore.read.ink.without_long_verticals)
    piece = np.arange(mask.shape[0]) % int(42 * paper.px_per_mm) < int(40 * paper.px_per_mm)
    for first, end in xs:
        band = slice(first - 1, end + 1)  # a pixel thicker either side, on the line's own centre
        not_trace = mask[:, band] != CURVE
        image[:, band][not_trace] = colour
        mask[:, band][not_trace & piece[:, None]] = CURVE
    return image, mask, xs


def _snr(record, dig) -> float:
    return float(np.nanmedian(compare_signals(record.signal[: dig.signal.shape[0]], dig.signal, dig.fs).snr_db))


def test_dark_grid_lines_taken_for_trace_are_made_grid_and_the_trace_is_kept(synthetic):
    paper = render(synthetic, "3x4+II", PaperOptions(px_per_mm=5.0))
    image, mask, xs = _with_dark_second_lines(paper)
    assert len(xs) >= 8
    lines = grid_coloured_lines(image, mask)
    painted = (mask == CURVE) & (paper.mask != CURVE)
    # nearly all of each painted line is found (pixels beside the trace's anti-aliased edge may stay), and of the
    # trace, its vertical QRS strokes included, only an edge pixel here and there that shows the grid's colour
    assert lines[painted].mean() > 0.95
    trace = paper.mask == CURVE
    assert lines[trace].mean() < 0.001
    assert not lines[trace & (paper.image.max(axis=2) < 150)].any()
    cleaned, _ = without_grid_coloured_lines(image, mask)
    assert (cleaned[lines] == GRID_X).all()
    # read from the map with the lines, every lead crossed by one gets a spike; without them it reads as the page
    raw, fixed, clean = (_snr(synthetic, digitize(m)) for m in (mask, cleaned, paper.mask))
    assert raw < clean - 3.0
    assert fixed > clean - 1.0


def test_the_margin_of_the_lines_is_set_below_zero(synthetic):
    paper = render(synthetic, "seed-3x4", PaperOptions(px_per_mm=5.0))
    image, mask, _ = _with_dark_second_lines(paper)
    margin = np.where(mask == CURVE, 2.0, -2.0).astype(np.float32)
    cleaned, cleaned_margin = without_grid_coloured_lines(image, mask, margin)
    moved = cleaned != mask
    assert moved.any() and (cleaned_margin[moved] < 0).all() and (cleaned_margin[~moved] == margin[~moved]).all()


def test_lines_in_the_traces_colour_are_left_alone(synthetic):
    """Black lines on a page with a black trace cannot be told from it by colour: nothing changes (the reader's
    shape rules are all that can help there)."""
    paper = render(synthetic, "seed-3x4", PaperOptions(px_per_mm=5.0))
    trace = paper.image[paper.mask == CURVE].reshape(-1, 3)
    ink = tuple(int(v) for v in trace[trace.sum(axis=1).argmin()])
    image, mask, _ = _with_dark_second_lines(paper, colour=ink)
    cleaned, _ = without_grid_coloured_lines(image, mask)
    assert cleaned is mask


def test_a_page_without_lines_is_returned_as_is(synthetic):
    paper = render(synthetic, "6x2", PaperOptions(px_per_mm=5.0))
    margin = np.zeros(paper.mask.shape, np.float32)
    cleaned, cleaned_margin = without_grid_coloured_lines(paper.image, paper.mask, margin)
    assert cleaned is paper.mask and cleaned_margin is margin
    blank = np.full((60, 80, 3), 255, np.uint8)
    assert not grid_coloured_lines(blank, np.zeros((60, 80), np.uint8)).any()
