"""The ink on the paper: the curve pixels mapped to paper millimetres (exactly, or on a finer raster from the
segmenter's curve margin), the long vertical lines that are never trace, and the calibration pulses found by
template matching. Step 2 and 3 of :mod:`ecgcore.read.digitize`."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ecgcore.constants import (
    CALIBRATION_MV,
    CALIBRATION_SEGMENTS_MM,
    CURVE,
    DEFAULT_PAPER_SPEED,
)
from ecgcore.errors import DigitizationError
from ecgcore.read.gridfind import MAX_PAPER_MM, GridFit

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
LONG_VERTICAL_MM = 100.0  # a vertical line of ink this long is a grid line or a mark, never trace
MARK_MAX_MM = 4.0  # a piece of ink at most this tall and wide ...
MARK_BESIDE_MM = 8.0  # ... with other ink this near above or below ...
MARK_BESIDE_SHARE = 0.8  # ... along this share of its columns is a mark beside the trace, not trace ...
MARK_IN_LINE_MM = 1.0  # ... unless the trace goes on this near left or right of it at its height ...
MARK_STROKE_MM = 3.0  # ... or a steep stroke this long ends next to it (a spike's broken-off tip)
MAX_MARK_PIECES = 5_000  # pieces looked at (a page's labels and dots: tens)
# Caps on what one page can hold (with the paper's size, gridfind.MAX_PAPER_MM, and the time budget, ecgcore.read.budget),
# so that no picture makes the reader's work grow without end. Real ECG photos stay far below each.
MAX_INK_PIXELS = 4_000_000  # curve pixels on the reading raster (a 12 MP ECG photo has well under 1 M)
INK_PAD_MM = 15.0  # ink this far beyond the grid's extent still counts (a trace may leave the last grid line)
# cells of the coarse ink map: the largest paper, its ink margin and a rounding millimetre, at PULSE_PX_PER_MM
MAX_INK_MAP_CELLS = int((np.ceil((MAX_PAPER_MM + 2 * INK_PAD_MM + 1) * PULSE_PX_PER_MM) + 1) ** 2)
MAX_PULSES = 48  # calibration pulse candidates kept, best first (a page shows at most 15)
MAX_PULSE_PEAKS = 2_000  # template-match maxima looked at (an ECG page gives tens)


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


def paper_ink(class_map: np.ndarray, fit: GridFit, curve_margin: np.ndarray | None = None) -> PaperInk:
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
    return ink_of_points(u, v, float(fit.px_per_mm_xy[0]) * fx, ext_up, ext_down)


def ink_of_points(u: np.ndarray, v: np.ndarray, px_per_mm: float, ext_up: np.ndarray | None = None,
                  ext_down: np.ndarray | None = None) -> PaperInk:
    """PaperInk of curve pixels at paper positions (mm), with their coverage map at PULSE_PX_PER_MM."""
    ppm = PULSE_PX_PER_MM
    u0, v0 = float(np.floor(u.min())), float(np.floor(v.min()))
    cols = np.round((u - u0) * ppm).astype(np.int64)
    rows = np.round((v - v0) * ppm).astype(np.int64)
    shape = (int(rows.max()) + 1, int(cols.max()) + 1)
    if shape[0] * shape[1] > MAX_INK_MAP_CELLS:  # the grid's extent bounds it; a fit made elsewhere might not
        raise DigitizationError(f"no ECG grid/trace found: no ECG layout fits a trace spread over "
                                f"{shape[1] / ppm:.0f} x {shape[0] / ppm:.0f} mm of paper, more than any ECG printout.")
    coverage = np.bincount(rows * shape[1] + cols, minlength=shape[0] * shape[1]).reshape(shape)
    return PaperInk(u, v, px_per_mm, np.minimum(coverage, 65535).astype(np.uint16), u0, v0, ppm, ext_up, ext_down)


def without_long_verticals(paper: PaperInk) -> PaperInk:
    """The ink without straight vertical lines (grid lines and bars that the segmenter took for trace): runs of ink
    in one coverage column, or in two neighbouring ones (a line a little off the grid's axis), longer than
    LONG_VERTICAL_MM. That is longer than any chain of QRS complexes that touch from row to
    row on close layouts (12x1, 6x2: at 50 mm such chains were cut and cost held-out photos 1-2 dB)."""
    inked = paper.coverage > 0
    pair = inked | np.pad(inked[:, 1:], ((0, 0), (0, 1)))
    paired = _long_runs(pair, int(round(LONG_VERTICAL_MM * paper.ppm)))
    line = (paired | np.pad(paired[:, :-1], ((0, 0), (1, 0)))) & inked
    return _without_cells(paper, line)


def without_marks_beside_trace(paper: PaperInk) -> PaperInk:
    """The ink without small pieces that stand apart beside the trace: a printed lead label, a dot or a tick that the
    segmenter took for trace, above or below a row's trace in the same columns. A piece is a group of touching
    cells of the coverage map (0.5 mm) no larger than MARK_MAX_MM either way, with another piece's ink within
    MARK_BESIDE_MM above or below it along at least MARK_BESIDE_SHARE of its columns, and none within
    MARK_IN_LINE_MM left or right of it at its own height: pieces of a trace that the segmentation broke have the
    trace going on beside them, not only above or below. Nor is a piece that a steep stroke of at least
    MARK_STROKE_MM points at (the nearest ink above or below it ends such a stroke): a spike's tip that broke off.
    On held-out mixed photos (labels above, below and beside the trace, in several fonts) and the real images, what
    it drops are the segmenter's label strokes, dots and bits of dark grid lines; a label printed on the trace
    touches it and stays. MAX_MARK_PIECES bounds the pieces looked at."""
    inked = (paper.coverage > 0).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inked, connectivity=8)
    if n <= 2:
        return paper
    size = int(round(MARK_MAX_MM * paper.ppm))
    small = (stats[:, cv2.CC_STAT_WIDTH] <= size) & (stats[:, cv2.CC_STAT_HEIGHT] <= size)
    small[0] = False
    if not small.any():
        return paper
    # ink of the large pieces, counted down each column: the count within any vertical window is a difference
    large = (labels > 0) & ~small[labels]
    below = np.vstack([np.zeros((1, large.shape[1]), np.int32), np.cumsum(large, axis=0, dtype=np.int32)])
    reach = int(round(MARK_BESIDE_MM * paper.ppm))
    gap = max(1, int(round(MARK_IN_LINE_MM * paper.ppm)))
    stroke = int(round(MARK_STROKE_MM * paper.ppm))
    # strokes counted on the large ink widened by a cell either side: a steep slanted line keeps to one column of it
    wide = large.copy()
    wide[:, 1:] |= large[:, :-1]
    wide[:, :-1] |= large[:, 1:]
    down, up = _vertical_runs(wide)
    marks = np.zeros(n, bool)
    for k in np.flatnonzero(small)[:MAX_MARK_PIECES]:
        x, y, w, h = (int(v) for v in stats[k, :4])
        top, bottom = max(0, y - reach), min(large.shape[0], y + h + reach)
        beside = (below[bottom, x:x + w] - below[top, x:x + w]) > 0
        if beside.mean() < MARK_BESIDE_SHARE:
            continue
        # in line with the trace: other ink at its own height just left or right of it (a piece of a broken trace)
        if labels[y:y + h, max(0, x - gap):x].any() or labels[y:y + h, x + w:x + w + gap].any():
            continue
        # the tip of a spike whose stroke points at it: the nearest large ink above or below is the end of a steep
        # stroke (a deep S wave whose thin line broke before its tip), not a flat stretch of trace
        points = False
        for c in range(x, x + w):
            above = np.flatnonzero(wide[top:y, c])
            under = np.flatnonzero(wide[y + h:bottom, c])
            points |= (above.size > 0 and down[top + above[-1], c] >= stroke) or \
                      (under.size > 0 and up[y + h + under[0], c] >= stroke)
        marks[k] = not points
    return _without_cells(paper, marks[labels])


def _vertical_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each cell, how many cells of ``mask`` run down to it without a break from above (``down``, counting
    itself) and on below it (``up``)."""
    down = np.zeros(mask.shape, np.int32)
    up = np.zeros(mask.shape, np.int32)
    for r in range(mask.shape[0]):
        down[r] = np.where(mask[r], (down[r - 1] if r else 0) + 1, 0)
    for r in range(mask.shape[0] - 1, -1, -1):
        up[r] = np.where(mask[r], (up[r + 1] if r + 1 < mask.shape[0] else 0) + 1, 0)
    return down, up


def _without_cells(paper: PaperInk, cells: np.ndarray) -> PaperInk:
    """The ink without the pixels that fall in the given cells of its coverage map (boolean, the map's shape)."""
    if not cells.any():
        return paper
    cols = np.round((paper.u - paper.u0) * paper.ppm).astype(np.int64)
    rows = np.round((paper.v - paper.v0) * paper.ppm).astype(np.int64)
    keep = ~cells[rows, cols]
    coverage = np.where(cells, 0, paper.coverage).astype(np.uint16)
    return PaperInk(paper.u[keep], paper.v[keep], paper.px_per_mm, coverage, paper.u0, paper.v0, paper.ppm,
                    None if paper.ext_up is None else paper.ext_up[keep],
                    None if paper.ext_down is None else paper.ext_down[keep])


def _long_runs(mask: np.ndarray, min_len: int) -> np.ndarray:
    """The cells of ``mask`` that belong to a vertical run of True at least ``min_len`` long."""
    if mask.shape[0] < min_len:
        return np.zeros_like(mask)
    down, up = _vertical_runs(mask)
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


def find_pulses(paper: PaperInk, paper_speed: float, gain: float) -> list[Pulse]:
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
