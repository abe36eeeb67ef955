"""Grid lines that the segmenter took for trace, found by their colour.

Some printers draw every fifth major grid line (each second at 25 mm/s) darker and thicker than the others
(real ecg00010, a Mortara ELI 350: dark red lines every 25 mm). The segmenter, which learned that thick dark lines
are trace, marks long stretches of them as curve, and the reader then reads each as a QRS-like spike in every lead
it crosses. Their shape does not tell them from the trace (QRS strokes of 12x1 and 6x2 pages line up from row to
row the same way), but their colour does where the paper's grid and the trace have different colours: a pixel's
colour, seen from the paper's, points towards the grid's ink or towards the trace's.

The step runs on the segmenter's class map and the photo (:meth:`ecgcore.read.segmentation.Segmenter.predict`):
a curve pixel coloured like the grid and not like the trace, in an image column where such pixels make a line
down at least LINE_MIN_SHARE of the image, becomes a grid pixel. Colours are seen from the paper's colour around
each pixel (shadows, tinted paper and the photo's background do not move it). Horizontal lines are left alone: a
trace's flat baseline lies along them, and read as curve they cost little. Pages whose trace and grid share a colour
(black on grey, blue on blue) are left as they are: the step does nothing unless the two colours are told apart.
"""

from __future__ import annotations

import cv2
import numpy as np

from ecgcore.constants import CURVE, GRID_X, GRID_Y

# The grid's and the trace's colours (directions from the paper's colour in RGB) must be at least this far apart
# (cosine at most): black on red or pink grids ~0.82, black on grey or blue-grey grids 0.99-1.0.
MAX_GRID_TRACE_COS = 0.9
GRID_LIKE_MIN_COS = 0.97  # a curve pixel this close in colour to the grid ...
GRID_LIKE_MARGIN = 0.05  # ... and this much closer to it than to the trace is coloured like the grid
LINE_MIN_SHARE = 0.15  # grid-coloured curve down this share of an image column (3 px wide) is a line
TRACE_DARKEST_SHARE = 0.1  # the trace's colour: the median of the tenth of the curve pixels farthest from the paper
GRID_DARKER_SHARE = 0.5  # the grid's colour: the median of the darker half of the grid pixels
MIN_PIXELS = 200  # each class needs this many pixels for its colour to be measured
MAX_SAMPLE = 200_000  # grid pixels sampled to measure the grid's colour
MIN_DARKNESS = 20.0  # RGB distance from the paper below which a pixel's colour is too faint to tell
PAPER_WINDOW_PX = 9  # the paper's colour is the brightest within this window (wider than any line)


def _direction(rgb: np.ndarray, paper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions of the colours from the paper's, and their lengths."""
    d = rgb.astype(np.float32) - paper
    n = np.linalg.norm(d, axis=-1, keepdims=True)
    return d / (n + 1e-6), n[..., 0]


def local_paper(rgb: np.ndarray) -> np.ndarray:
    """The paper's colour around each pixel (float32 HxWx3): the brightest colour within PAPER_WINDOW_PX, which
    passes over grid lines and trace and follows shadows and the paper's edge."""
    kernel = np.ones((PAPER_WINDOW_PX, PAPER_WINDOW_PX), np.uint8)
    return cv2.dilate(np.ascontiguousarray(rgb), kernel).astype(np.float32)


def grid_coloured_lines(rgb: np.ndarray, class_map: np.ndarray) -> np.ndarray:
    """Boolean mask (H, W) of the curve pixels that are vertical grid lines by their colour; all False when the
    page's grid and trace colours cannot be told apart or a class has too few pixels to measure."""
    curve = class_map == CURVE
    mask = np.zeros(class_map.shape, bool)
    grid = (class_map == GRID_X) | (class_map == GRID_Y)
    if min(int(curve.sum()), int(grid.sum())) < MIN_PIXELS:
        return mask
    paper = local_paper(rgb)
    gy, gx = np.nonzero(grid)
    step = max(1, gy.size // MAX_SAMPLE)
    gy, gx = gy[::step], gx[::step]
    grid_dirs, grid_dark = _direction(rgb[gy, gx], paper[gy, gx])
    grid_dirs = grid_dirs[grid_dark >= max(MIN_DARKNESS, float(np.quantile(grid_dark, 1.0 - GRID_DARKER_SHARE)))]
    ys, xs = np.nonzero(curve)
    d, dark = _direction(rgb[ys, xs], paper[ys, xs])
    darkest = d[dark >= np.quantile(dark, 1.0 - TRACE_DARKEST_SHARE)]
    if grid_dirs.shape[0] < MIN_PIXELS // 4 or darkest.shape[0] < MIN_PIXELS // 4:
        return mask
    grid_dir = _unit(np.median(grid_dirs, axis=0))
    trace_dir = _unit(np.median(darkest, axis=0))
    if float(grid_dir @ trace_dir) > MAX_GRID_TRACE_COS:
        return mask
    to_grid = d @ grid_dir
    like = (dark >= MIN_DARKNESS) & (to_grid >= GRID_LIKE_MIN_COS) & (to_grid >= d @ trace_dir + GRID_LIKE_MARGIN)
    if not like.any():
        return mask
    h, w = class_map.shape
    count = np.bincount(xs[like], minlength=w).astype(np.int64)
    wide = count + np.r_[0, count[:-1]] + np.r_[count[1:], 0]  # a line may straddle two pixel columns
    line = wide >= LINE_MIN_SHARE * h
    line = line | np.r_[False, line[:-1]] | np.r_[line[1:], False]
    keep = like & line[xs]
    mask[ys[keep], xs[keep]] = True
    return mask


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) + 1e-6)


def without_grid_coloured_lines(rgb: np.ndarray, class_map: np.ndarray,
                                curve_margin: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The class map (and curve margin) with the grid-coloured lines of :func:`grid_coloured_lines` made GRID_X and
    their margin set below zero (no longer curve). Returns the inputs themselves when there is nothing to change."""
    lines = grid_coloured_lines(rgb, class_map)
    if not lines.any():
        return class_map, curve_margin
    class_map = class_map.copy()
    class_map[lines] = GRID_X
    if curve_margin is not None:
        curve_margin = curve_margin.copy()
        curve_margin[lines] = np.minimum(curve_margin[lines], -1.0)
    return class_map, curve_margin
