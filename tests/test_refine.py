"""Sub-step page placement (ecgcore.read.refine): a row's end and a break between columns measured on the ink."""

from __future__ import annotations

import cv2
import numpy as np

from ecgcore.read.ink import PaperInk
from ecgcore.read.refine import SEGMENTATION_WIDENING_PX, break_middle_mm, trace_end_mm

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
