"""Render ECG paper from a 12-lead record, with exact ground truth drawn from the same geometry.

The grid is computed analytically (anti-aliased coverage of each line, separable in x and y, so no drawing loop);
all traces and calibration pulses are one anti-aliased ``cv2.polylines`` call per lead. The curve class of the mask is
every pixel the anti-aliased ink covers by at least CURVE_MASK_MIN_COVERAGE (so the mask is the visible trace), and the
lead map comes from the same polylines drawn without anti-aliasing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from ecgcore.constants import (
    CALIBRATION_MV,
    CURVE,
    CURVE_LINE_MM,
    CURVE_MASK_MIN_COVERAGE,
    DEFAULT_GAIN,
    DEFAULT_PAPER_SPEED,
    DEFAULT_PX_PER_MM,
    GAINS,
    GRID_COLORS,
    GRID_X,
    GRID_Y,
    INK_RGB,
    LABEL_FONT_PX_AT_10,
    LEAD_NAMES,
    MAJOR_EVERY,
    MAJOR_LINE_MM,
    MINOR_DOT_MM,
    MINOR_GRIDS,
    MINOR_LINE_MM,
    PAPER_RGB,
    PAPER_SPEEDS,
    TRACE_COLORS,
)
from ecgcore.layouts import LAYOUT_NAMES, Layout, LeadBox, LeadCell, make_layout
from ecgcore.signals import EcgRecord
from ecgcore.synth.printstyle import (
    _SUBPIXEL,
    _SUBPIXEL_BITS,
    SEPARATOR_DOT_MM,
    Annotation,
    PrintStyle,
    box_quad,
    decorate,
    gap_bands,
)

PRINT_STYLES: tuple[str, ...] = ("ptb-v", "device")


SECONDS_EVERY = 5  # a printer's one-second line: every fifth major line (25 mm at 25 mm/s)
SECOND_LINE_DARKEN = 0.55  # its colour: the major lines' times this


@dataclass(frozen=True)
class PaperOptions:
    """How the paper is printed. Widths are in mm so that the look does not depend on the resolution."""

    px_per_mm: float = DEFAULT_PX_PER_MM
    paper_speed: float = DEFAULT_PAPER_SPEED  # mm/s
    gain: float = DEFAULT_GAIN  # mm/mV
    grid_color: str = "red"
    major_line_mm: float = MAJOR_LINE_MM
    minor_line_mm: float = MINOR_LINE_MM
    curve_line_mm: float = CURVE_LINE_MM
    labels: bool = True
    # "ptb-v": lead labels above the cells' top-left corners, as the prototype printed them; "device": as many
    # electrocardiographs print, the label sits on the trace at the start of its cell and a dotted line marks each
    # lead change within a row (neither is ECG curve in the mask).
    print_style: str = "ptb-v"
    # "lines": the minor grid as thin lines; "dots": a dot at every 1 mm crossing (major lines stay lines)
    minor_grid: str = "lines"
    # every fifth vertical major line (each second at 25 mm/s) this wide and darker (SECOND_LINE_DARKEN); 0: none
    second_line_mm: float = 0.0

    def validate(self) -> None:
        if not 1.0 <= self.px_per_mm <= 40.0:
            raise ValueError(f"px_per_mm must be between 1 and 40, not {self.px_per_mm}.")
        if self.paper_speed not in PAPER_SPEEDS:
            raise ValueError(f"paper_speed must be one of {PAPER_SPEEDS} mm/s, not {self.paper_speed}.")
        if self.gain not in GAINS:
            raise ValueError(f"gain must be one of {GAINS} mm/mV, not {self.gain}.")
        if self.print_style not in PRINT_STYLES:
            raise ValueError(f"print_style must be one of {', '.join(PRINT_STYLES)}, not {self.print_style!r}.")
        if self.minor_grid not in MINOR_GRIDS:
            raise ValueError(f"minor_grid must be one of {', '.join(MINOR_GRIDS)}, not {self.minor_grid!r}.")
        if self.grid_color not in GRID_COLORS:
            raise ValueError(f"grid_color must be one of {', '.join(GRID_COLORS)}, not {self.grid_color!r}.")
        for name in ("major_line_mm", "minor_line_mm", "curve_line_mm"):
            if not 0.02 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0.02 and 1.0 mm, not {getattr(self, name)}.")
        if not (self.second_line_mm == 0.0 or 0.02 <= self.second_line_mm <= 1.0):
            raise ValueError(f"second_line_mm must be 0 or between 0.02 and 1.0 mm, not {self.second_line_mm}.")


@dataclass
class RenderedPaper:
    """A rendered paper: RGB image, class mask, per-pixel lead index of the curve, the lead boxes, and the ink and grid
    maps that a photo's class mask is made from."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) uint8 class index (constants.BACKGROUND..CURVE)
    curve_lead: np.ndarray  # (H, W) uint8: 0, or 1 + index into leads of the trace drawn there
    leads: list[LeadBox]
    layout: Layout
    options: PaperOptions
    ink: np.ndarray  # (H, W) uint8 anti-aliased coverage of the traces (0..255), as blended
    grid: np.ndarray  # (H, W) uint8 class index of the paper without its traces (BACKGROUND, GRID_X|Y)
    # lead labels, text lines, lead-change marks and pulses, with their boxes in paper pixels
    annotations: list[Annotation] = field(default_factory=list)
    style: PrintStyle | None = None
    px_per_mm: float = field(init=False)

    def __post_init__(self) -> None:
        self.px_per_mm = self.options.px_per_mm


def render(record: EcgRecord, layout: str | Layout = "seed-3x4", options: PaperOptions | None = None,
           style: PrintStyle | None = None) -> RenderedPaper:
    """Render ``record`` on ECG paper in ``layout``, printed in ``style`` (None: the print style of ``options``).

    Returns the image and, from the same geometry, the 4-class mask, the lead boxes with their t0/t1, a map of
    which lead drew each curve pixel, and the boxes of everything printed besides the traces (labels, text, marks)
    and of the calibration pulses. Labels, text and marks are never curve; pulses are.
    """
    options = options or PaperOptions()
    options.validate()
    if style is not None:
        style.validate()
    if isinstance(layout, str):
        layout = make_layout(layout, options.paper_speed)
    elif layout.name not in LAYOUT_NAMES:
        raise ValueError(f"unknown layout {layout.name!r}.")
    needed = layout.duration_s
    if record.duration_s + 1e-9 < needed:
        raise ValueError(f"layout {layout.name} shows {needed:g} s but the record is only {record.duration_s:g} s long.")

    ppm = options.px_per_mm
    width = int(np.ceil(layout.width_mm * ppm))
    height = int(np.ceil(layout.height_mm * ppm))
    major_rgb, minor_rgb = GRID_COLORS[options.grid_color]

    grid_image, grid_x, grid_y = _grid(width, height, ppm, options.minor_line_mm, options.major_line_mm, major_rgb, minor_rgb,
                                       options.minor_grid, options.second_line_mm)
    image = grid_image.copy()

    thickness = pen_thickness(options.curve_line_mm * ppm)
    ink = np.zeros((height, width), np.uint8)
    curve_lead = np.zeros((height, width), np.uint8)
    leads: list[LeadBox] = []
    for i, cell in enumerate(layout.cells):
        points = _trace_points(record, cell, layout, options)
        fixed = [np.round(p * _SUBPIXEL).astype(np.int32) for p in points]
        cv2.polylines(ink, fixed, False, 255, thickness, cv2.LINE_AA, _SUBPIXEL_BITS)
        cv2.polylines(curve_lead, fixed, False, i + 1, thickness, cv2.LINE_8, _SUBPIXEL_BITS)
        # cv2's convention throughout: integer coordinates are pixel centres, so mm -> px is x * ppm - 0.5
        x0, y0 = cell.x_mm * ppm - 0.5, cell.y_mm * ppm - 0.5
        x1, y1 = (cell.x_mm + cell.w_mm) * ppm - 0.5, (cell.y_mm + cell.h_mm) * ppm - 0.5
        quad = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float64)
        leads.append(LeadBox(cell.lead, quad, cell.t0, cell.t1))
    annotations = [Annotation("pulse", cell.lead, _pulse_quad(layout, cell.x_mm, cell.baseline_mm, options))
                   for cell in layout.cells if cell.pulse]
    for pulse in layout.pulses:  # pulses apart from the traces (e.g. at a row's end): curve, of their row's lead
        index = next(i for i, c in enumerate(layout.cells)
                     if c.lead == pulse.lead and abs(c.baseline_mm - pulse.baseline_mm) < 1e-6)
        xy = _pulse_xy(layout, pulse.x_mm, pulse.baseline_mm, options.gain) * ppm - 0.5
        fixed = [np.round(xy * _SUBPIXEL).astype(np.int32)]
        cv2.polylines(ink, fixed, False, 255, thickness, cv2.LINE_AA, _SUBPIXEL_BITS)
        cv2.polylines(curve_lead, fixed, False, index + 1, thickness, cv2.LINE_8, _SUBPIXEL_BITS)
        annotations.append(Annotation("pulse", pulse.lead, _pulse_quad(layout, pulse.x_mm, pulse.baseline_mm, options)))
    if style is not None:  # a printer that cuts the trace at each lead change: no ink, so no curve, in the cut
        for x0, x1, y0, y1 in gap_bands(layout, style, options.print_style, options.labels, ppm):
            rows = slice(max(0, y0), y1)
            ink[rows, max(0, x0):x1] = 0
            curve_lead[rows, max(0, x0):x1] = 0
            # the anti-aliased fringe just outside the cut whose pen pixel was inside it goes too (it would be ink
            # without a lead; the gap widens by at most a pixel)
            for x in (x0 - 1, x1):
                if 0 <= x < width:
                    ink[rows, x][curve_lead[rows, x] == 0] = 0

    # Blend the ink only where there is some: traces cover a few percent of the paper.
    ink_rgb = INK_RGB if style is None else TRACE_COLORS[style.trace_color]
    on = np.nonzero(ink)
    alpha = ink[on].astype(np.float32)[:, None] * (1.0 / 255.0)
    image[on] = (image[on] * (1.0 - alpha) + np.asarray(ink_rgb, np.float32) * alpha + 0.5).astype(np.uint8)
    if style is not None:
        annotations += decorate(image, layout, options, style, thickness)
    else:  # the print styles of PaperOptions, exactly as before printer styles existed
        if options.print_style == "device":
            annotations += _draw_separators(image, layout, options)
        if options.labels:
            annotations += _draw_text(image, layout, options)

    # The curve class is the visible ink; its lead is the nearest drawn trace's (the anti-aliased fringe lies within
    # one pixel of the aliased line).
    fringe = (ink >= round(CURVE_MASK_MIN_COVERAGE * 255)) & (curve_lead == 0)
    if fringe.any():
        curve_lead[fringe] = cv2.dilate(curve_lead, np.ones((3, 3), np.uint8))[fringe]
    # (uint8 from the start: the broadcast np.where of int64 arrays was the slowest step on large papers)
    grid = np.empty((height, width), np.uint8)
    grid[:] = np.where(grid_x, GRID_X, 0).astype(np.uint8)[None, :]
    grid[grid_y] = GRID_Y
    mask = grid.copy()
    mask[curve_lead > 0] = CURVE
    return RenderedPaper(image, mask, curve_lead, leads, layout, options, ink, grid, annotations, style)


def _pulse_xy(layout: Layout, x_mm: float, baseline_mm: float, gain: float) -> np.ndarray:
    """The calibration pulse's corner points (mm): lead-in flat, 1 mV up, top, down, lead-out flat."""
    flat1, high, flat2 = layout.segments_mm
    top = baseline_mm - CALIBRATION_MV * gain
    xs = x_mm + np.array([0.0, flat1, flat1, flat1 + high, flat1 + high, flat1 + high + flat2])
    ys = np.array([baseline_mm, baseline_mm, top, top, baseline_mm, baseline_mm])
    return np.stack([xs, ys], axis=1)


def _pulse_quad(layout: Layout, x_mm: float, baseline_mm: float, options: PaperOptions) -> np.ndarray:
    """Box (pixels) of a pulse drawn at (x_mm, baseline_mm): its corners, widened by half the pen."""
    xy = _pulse_xy(layout, x_mm, baseline_mm, options.gain) * options.px_per_mm - 0.5
    half = options.curve_line_mm * options.px_per_mm / 2.0
    return box_quad(xy[:, 0].min() - half, xy[:, 1].min() - half, xy[:, 0].max() + half, xy[:, 1].max() + half)


def pen_thickness(width_px: float) -> int:
    """The ``cv2`` thickness whose anti-aliased line is closest to ``width_px`` wide.

    cv2 draws thickness t (t >= 2) about 2t - 1 px wide plus an anti-aliased fringe, and t = 1 about 1.4 px wide,
    so using the width itself as the thickness would print lines nearly twice as thick as asked.
    """
    if width_px < 2.4:  # halfway between the widths of t = 1 and t = 2
        return 1
    return int(round((width_px + 1.0) / 2.0))


def _line_coverage(n_px: int, pitch_px: float, width_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased coverage (0..1) of lines at k * pitch, and the 'on the line' flag used for the mask.

    Pixel x covers [x, x+1); a line of width w centred at c covers [c - w/2, c + w/2]. The mask flag marks pixels
    whose centre is within max(w, 1 px)/2 of the line, so that every line is at least one pixel wide in the mask.
    """
    x = np.arange(n_px, dtype=np.float64)
    centre = np.round((x + 0.5) / pitch_px) * pitch_px
    lo, hi = centre - width_px / 2, centre + width_px / 2
    coverage = np.clip(np.minimum(x + 1, hi) - np.maximum(x, lo), 0.0, 1.0)
    on_line = np.abs(x + 0.5 - centre) <= max(width_px, 1.0) / 2
    return coverage.astype(np.float32), on_line


@functools.lru_cache(maxsize=4)
def _grid(width, height, ppm, minor_mm, major_mm, major_rgb, minor_rgb, minor_grid="lines", second_mm=0.0):
    """The empty paper (uint8 RGB) and the major-line flags per column and row (every fifth vertical major line
    ``second_mm`` wide and darker when it is not 0). Cached: a dataset or a Studio session renders the same paper
    size again and again. Callers must not modify the returned arrays."""
    major_x, on_x = _line_coverage(width, MAJOR_EVERY * ppm, major_mm * ppm)
    major_y, on_y = _line_coverage(height, MAJOR_EVERY * ppm, major_mm * ppm)
    dots = minor_grid == "dots"
    minor_w = (MINOR_DOT_MM if dots else minor_mm) * ppm
    minor_x, _ = _line_coverage(width, ppm, minor_w)
    minor_y, _ = _line_coverage(height, ppm, minor_w)
    # Rows with the same (minor, major) coverage are the same row of pixels: compute each distinct row once (most
    # rows lie between lines) and copy it. Every pixel goes through the same float operations as before.
    pairs = np.stack([minor_y, major_y], axis=1)
    distinct, row_of = np.unique(pairs, axis=0, return_inverse=True)
    minor_y, major_y = distinct[:, 0].copy(), distinct[:, 1].copy()
    rows = len(distinct)
    if minor_grid == "none":
        a_minor = np.zeros((rows, width), np.float32)
    elif dots:  # a square dot at every crossing: the intersection of the two line families
        a_minor = minor_y[:, None] * minor_x[None, :]
    else:  # union of horizontal and vertical lines: 1 - (1 - a_x)(1 - a_y), by broadcasting rows against columns
        a_minor = 1.0 - (1.0 - minor_y[:, None]) * (1.0 - minor_x[None, :])
    a_major = 1.0 - (1.0 - major_y[:, None]) * (1.0 - major_x[None, :])
    paper = np.asarray(PAPER_RGB, np.float32)
    minor = np.asarray(minor_rgb, np.float32)
    major = np.asarray(major_rgb, np.float32)
    image = paper + (minor - paper) * a_minor[..., None]
    image += (major - image) * a_major[..., None]
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)[row_of.reshape(-1)]
    if second_mm > 0:
        # the printer's one-second lines: drawn over the major line they widen, in the major colour darkened
        second_x, on_second = _line_coverage(width, SECONDS_EVERY * MAJOR_EVERY * ppm, second_mm * ppm)
        second = major * SECOND_LINE_DARKEN
        cols = np.flatnonzero(second_x > 0)
        part = image[:, cols].astype(np.float32)
        part += (second - part) * second_x[cols][None, :, None]
        image[:, cols] = np.clip(part + 0.5, 0, 255).astype(np.uint8)
        on_x = on_x | on_second
    for array in (image, on_x, on_y):
        array.setflags(write=False)
    return image, on_x, on_y


def _trace_points(record: EcgRecord, cell: LeadCell, layout: Layout, options: PaperOptions) -> list[np.ndarray]:
    """Pixel polylines of one cell: the calibration pulse (if any) joined to the lead's samples in [t0, t1].

    A NaN in the signal breaks the trace, so one cell may give several polylines.
    """
    ppm, gain = options.px_per_mm, options.gain
    baseline = cell.baseline_mm
    x_start = cell.x_mm
    parts: list[np.ndarray] = []
    pulse_xy = np.empty((0, 2))
    if cell.pulse:
        flat1, high, flat2 = layout.segments_mm
        top = baseline - CALIBRATION_MV * gain
        xs = x_start + np.array([0.0, flat1, flat1, flat1 + high, flat1 + high, flat1 + high + flat2])
        ys = np.array([baseline, baseline, top, top, baseline, baseline])
        pulse_xy = np.stack([xs, ys], axis=1)
        x_start += flat1 + high + flat2
    lead = record.lead(cell.lead)
    i0 = int(round(cell.t0 * record.fs))
    i1 = min(int(round(cell.t1 * record.fs)), lead.size - 1)
    samples = lead[i0 : i1 + 1].astype(np.float64)
    t = (np.arange(i0, i1 + 1) / record.fs) - cell.t0
    xy = np.stack([x_start + t * layout.paper_speed, baseline - samples * gain], axis=1)
    finite = np.isfinite(samples)
    if finite.all():
        parts.append(np.vstack([pulse_xy, xy]))
    else:
        if len(pulse_xy):
            parts.append(pulse_xy)
        # split into runs of finite samples
        edges = np.flatnonzero(np.diff(np.r_[0, finite.astype(np.int8), 0]))
        for a, b in zip(edges[::2], edges[1::2]):
            parts.append(xy[a:b])
    return [p * ppm - 0.5 for p in parts if len(p) >= 2]


def _following_cells(layout: Layout) -> list[LeadCell]:
    """The cells that follow another cell in their row: where the lead changes within a row."""
    return [c for c in layout.cells
            if any(abs(o.x_mm + o.w_mm - c.x_mm) < 0.5 and abs(o.y_mm - c.y_mm) < 0.5 for o in layout.cells)]


def _draw_separators(image: np.ndarray, layout: Layout, options: PaperOptions) -> list[Annotation]:
    """Device style: a dotted vertical line over the row's height where the lead changes."""
    ppm = options.px_per_mm
    dot, pitch = SEPARATOR_DOT_MM
    thickness = pen_thickness(options.curve_line_mm * ppm)
    marks = []
    for cell in _following_cells(layout):
        x = round((cell.x_mm * ppm - 0.5) * _SUBPIXEL)
        for y_mm in np.arange(cell.y_mm + 0.5 * pitch, cell.y_mm + cell.h_mm, pitch):
            y0, y1 = (round((y * ppm - 0.5) * _SUBPIXEL) for y in (y_mm, y_mm + dot))
            cv2.line(image, (x, y0), (x, y1), INK_RGB, thickness, cv2.LINE_AA, _SUBPIXEL_BITS)
        half, xc = thickness / 2.0 + 0.5, cell.x_mm * ppm - 0.5
        marks.append(Annotation("mark", "dotted", box_quad(xc - half, cell.y_mm * ppm - half, xc + half,
                                                           (cell.y_mm + cell.h_mm) * ppm + half)))
    return marks


def _text_box(text: str, org: tuple[int, int], font: int, scale: float, thickness: int) -> np.ndarray:
    """Pixel box of what cv2.putText draws for ``text`` at ``org`` (its baseline's left end)."""
    (w, h), descent = cv2.getTextSize(text, font, scale, thickness)
    pad = thickness / 2.0
    return box_quad(org[0] - pad, org[1] - h - pad, org[0] + w + pad, org[1] + descent + pad)


def _draw_text(image: np.ndarray, layout: Layout, options: PaperOptions) -> list[Annotation]:
    ppm = options.px_per_mm
    scale = LABEL_FONT_PX_AT_10 / 22.0 * ppm / 10.0
    thickness = max(1, int(round(2 * ppm / 10.0)))
    device = options.print_style == "device"
    font = cv2.FONT_HERSHEY_COMPLEX if device else cv2.FONT_HERSHEY_DUPLEX
    seen: set[tuple[int, int]] = set()
    drawn: list[Annotation] = []
    for cell in layout.cells:
        if (cell.row, cell.col) in seen:
            continue
        seen.add((cell.row, cell.col))
        if device:
            # On the trace, just after the lead change (or the pulse), its foot half a small cell above 0 mV.
            start = cell.x_mm + (layout.pulse_mm if cell.pulse else 0.0)
            org = (int(round((start + 1.0) * ppm)), int(round((cell.baseline_mm - 0.5) * ppm)))
        else:
            org = (int(round((cell.x_mm + 1.0) * ppm)), int(round((cell.y_mm + 5.0) * ppm)))
        cv2.putText(image, cell.lead, org, font, scale, INK_RGB, thickness, cv2.LINE_AA)
        drawn.append(Annotation("label", cell.lead, _text_box(cell.lead, org, font, scale, thickness)))
    footer = f"{options.paper_speed:.1f} mm/s;  {options.gain:.1f} mm/mV"
    org = (int(round(6.0 * ppm)), int(round((layout.height_mm - 3.0) * ppm)))
    cv2.putText(image, footer, org, font, scale * 0.8, INK_RGB, thickness, cv2.LINE_AA)
    drawn.append(Annotation("text", "footer", _text_box(footer, org, font, scale * 0.8, thickness), footer))
    return drawn


def lead_names_of(layout: Layout) -> list[str]:
    """The leads a layout shows (each once), in PTB-XL order."""
    shown = {cell.lead for cell in layout.cells}
    return [name for name in LEAD_NAMES if name in shown]
