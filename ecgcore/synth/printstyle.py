"""Printer styles: how a printout looks beyond its grid and traces (lead labels, lead-change marks, text blocks).

The print-stage parameters of :mod:`ecgcore.synth.params` are turned into a :class:`PrintStyle` (drawing) and a
:class:`~ecgcore.layouts.LayoutStyle` (geometry) by :func:`printer_style`. When every one of them is at its default
value both are "default" and rendering takes exactly the code path it took before styles existed (the default and
harsh presets stay byte-identical).

Nothing drawn here is ECG curve: the curve class of the mask is the traces' ink (and the calibration pulses), which
:mod:`ecgcore.synth.render` draws before calling :func:`decorate`. Every label, mark and line of text drawn here returns its
box, so the sample JSON can say where each printed lead label is and what it names.

Fonts: OpenCV's Hershey fonts, and TrueType fonts shipped inside matplotlib (DejaVu Sans/Serif/Mono, STIX (a
Times-like serif) and Computer Modern): no font is ever downloaded. TrueType text is rasterised with Pillow; lead
labels are cached as sprites per (font, size, text), so a dataset pays for each once per worker.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ecgcore.constants import CURVE_LINE_MM, INK_RGB, LABEL_FONT_PX_AT_10, MAJOR_LINE_MM, MINOR_LINE_MM, TRACE_COLORS
from ecgcore.layouts import FOOTER_MM, Layout, LayoutStyle, LeadCell

_SUBPIXEL_BITS = 4  # cv2 fixed-point drawing precision: 1/16 px (render's too)
_SUBPIXEL = 1 << _SUBPIXEL_BITS

LEAD_MARKS: tuple[str, ...] = ("auto", "none", "ticks", "bars", "dotted", "gap")
LABEL_PLACES: tuple[str, ...] = ("auto", "above", "below", "on_trace", "margin", "none")
TEXT_BLOCKS: tuple[str, ...] = ("auto", "none", "footer", "header", "full")
LABEL_WEIGHTS: tuple[str, ...] = ("regular", "bold")
HERSHEY_FONTS: dict[str, int] = {
    "hershey_simplex": cv2.FONT_HERSHEY_SIMPLEX,
    "hershey_duplex": cv2.FONT_HERSHEY_DUPLEX,
    "hershey_complex": cv2.FONT_HERSHEY_COMPLEX,
    "hershey_triplex": cv2.FONT_HERSHEY_TRIPLEX,
}
# TrueType fonts shipped with matplotlib (a dependency): regular file, bold file (None: Pillow strokes it bolder).
TRUETYPE_FONTS: dict[str, tuple[str, str | None]] = {
    "dejavu_sans": ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    "dejavu_serif": ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf"),
    "dejavu_mono": ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf"),
    "stix_serif": ("STIXGeneral.ttf", "STIXGeneralBol.ttf"),
    "cm_sans": ("cmss10.ttf", None),
    "cm_mono": ("cmtt10.ttf", None),
}
LABEL_FONTS: tuple[str, ...] = ("auto", *HERSHEY_FONTS, *TRUETYPE_FONTS)
DEFAULT_LABEL_MM = LABEL_FONT_PX_AT_10 / 10.0  # lead label height (mm) of the default print styles
HERSHEY_CAP_PX = 22.0  # height of a Hershey capital at fontScale 1 (the default labels' scale is derived from it)
SEPARATOR_DOT_MM = (0.15, 1.0)  # dotted lead-change line: dots this long (plus the pen's round ends), one per mm
MARK_GAP_MM = 1.2  # width of the gap cut into the trace at a lead change
HEADER_MM = {"none": 0.0, "footer": 0.0, "header": 9.0, "full": 24.0}  # room above the traces per text_blocks
LABEL_MARGIN_MM = 9.0  # room left of the traces for labels in the margin


@dataclass(frozen=True)
class PrintStyle:
    """How labels, lead-change marks and text are printed. ``auto`` values follow PaperOptions.print_style."""

    trace_color: str = "black"
    lead_marks: str = "auto"
    label_font: str = "auto"
    label_weight: str = "regular"
    label_size_mm: float = DEFAULT_LABEL_MM
    label_place: str = "auto"
    text_blocks: str = "auto"
    text_seed: int = 0  # seeds the fake patient fields and measurements of the text blocks

    def is_default(self) -> bool:
        return replace(self, text_seed=0) == PrintStyle()

    def validate(self) -> None:
        for name, allowed in (("trace_color", tuple(TRACE_COLORS)), ("lead_marks", LEAD_MARKS),
                              ("label_font", LABEL_FONTS), ("label_weight", LABEL_WEIGHTS),
                              ("label_place", LABEL_PLACES), ("text_blocks", TEXT_BLOCKS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}.")
        if not 0.8 <= self.label_size_mm <= 6.0:
            raise ValueError(f"label_size_mm must be between 0.8 and 6 mm, not {self.label_size_mm}.")


@dataclass
class Annotation:
    """Something printed besides the traces, and where: kind 'label' (name: the lead), 'text' (name: header,
    measurements, interpretation or footer; text: the line), 'mark' (name: its style) or 'pulse' (name: the lead of
    its row). ``quad`` is (4, 2) pixels: top-left, top-right, bottom-left, bottom-right (as LeadBox quads)."""

    kind: str
    name: str
    quad: np.ndarray
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        key = "lead" if self.kind in ("label", "pulse") else "block" if self.kind == "text" else "style"
        out: dict[str, Any] = {key: self.name, "quad": [round(float(v), 2) for v in self.quad.reshape(-1)]}
        if self.text:
            out["text"] = self.text
        return out


def box_quad(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float64)


# --- the parameters -> styles ---------------------------------------------------------------------------------
def printer_style(params: dict[str, Any], seed: int) -> tuple[LayoutStyle, PrintStyle | None, dict[str, Any]]:
    """The layout style, the print style (None when every print parameter is at its default: today's rendering)
    and the PaperOptions fields the parameters change (grid colour and weights, minor grid, pen width)."""
    pulse_place = params.get("pulse_place", "layout")
    lead_in, top, lead_out = (params.get("pulse_lead_in_s", 0.08), params.get("pulse_width_s", 0.2),
                              params.get("pulse_lead_out_s", 0.08))
    if params.get("pulse_shape", "flats") == "rectangle":
        lead_in = lead_out = 0.0
    style = PrintStyle(
        trace_color=params.get("trace_color", "black"),
        lead_marks=params.get("lead_marks", "auto"),
        label_font=params.get("label_font", "auto"),
        label_weight=params.get("label_weight", "regular"),
        label_size_mm=float(params.get("label_size_mm", DEFAULT_LABEL_MM)),
        label_place=params.get("label_place", "auto"),
        text_blocks=params.get("text_blocks", "auto"),
        text_seed=int(seed),
    )
    columns = params.get("columns", "layout")
    layout_style = LayoutStyle(
        pulse_place=pulse_place,
        pulse_s=(float(lead_in), float(top), float(lead_out)),
        columns=columns,
        # drawn for every sample (its own stream), used only with gaps: elsewhere it must not make a style
        column_gap_mm=float(params.get("column_gap_mm", 2.0)) if columns == "gap" else LayoutStyle.column_gap_mm,
        rhythm_strips=params.get("rhythm_strips", "layout"),
        page=params.get("page_size", "auto"),
        margin_mm=float(params.get("page_margin_mm", 5.0)),
        offset_mm=(float(params.get("grid_offset_x_mm", 0.0)), float(params.get("grid_offset_y_mm", 0.0))),
        header_mm=HEADER_MM.get(style.text_blocks, 0.0),
        footer_mm=FOOTER_MM,
        left_mm=LABEL_MARGIN_MM if style.label_place == "margin" else 0.0,
    )
    paper: dict[str, Any] = {}
    # A value at its neutral default leaves the paper options as given (e.g. by --grid-color).
    if params.get("grid_color", "auto") != "auto":
        paper["grid_color"] = params["grid_color"]
    if params.get("minor_grid", "auto") != "auto":
        paper["minor_grid"] = params["minor_grid"]
    for name, field, neutral in (("trace_width_mm", "curve_line_mm", CURVE_LINE_MM),
                                 ("grid_major_mm", "major_line_mm", MAJOR_LINE_MM),
                                 ("grid_minor_mm", "minor_line_mm", MINOR_LINE_MM),
                                 ("grid_second_mm", "second_line_mm", 0.0)):
        if name in params and float(params[name]) != neutral:
            paper[field] = float(params[name])
    drawn = not style.is_default() or not layout_style.is_default()
    return layout_style, (style if drawn else None), paper


# --- text -------------------------------------------------------------------------------------------------------
def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=64)
def _truetype(font: str, bold: bool, px: int):
    from PIL import ImageFont

    regular, bold_file = TRUETYPE_FONTS[font]
    path = _font_dir() / (bold_file if bold and bold_file else regular)
    return ImageFont.truetype(str(path), size=px)


@functools.lru_cache(maxsize=512)
def _sprite(font: str, bold: bool, cap_px: int, text: str) -> tuple[np.ndarray, int, int]:
    """Coverage (uint8) of ``text`` and the offset of its top-left from the text's left end on the baseline."""
    from PIL import Image, ImageDraw

    px = max(4, int(round(cap_px / 0.72)))  # font size whose capitals are about cap_px tall
    face = _truetype(font, bold, px)
    stroke = 1 if bold and TRUETYPE_FONTS[font][1] is None else 0
    left, top, right, bottom = face.getbbox(text, anchor="ls", stroke_width=stroke)
    w, h = int(right - left) + 2, int(bottom - top) + 2
    canvas = Image.new("L", (max(w, 1), max(h, 1)), 0)
    ImageDraw.Draw(canvas).text((1 - left, 1 - top), text, fill=255, font=face, anchor="ls", stroke_width=stroke,
                                stroke_fill=255)
    alpha = np.asarray(canvas, dtype=np.uint8)
    alpha.setflags(write=False)
    return alpha, int(left) - 1, int(top) - 1


def draw_text(image: np.ndarray, text: str, x: float, y: float, font: str, cap_px: float, bold: bool = False,
              color: tuple[int, int, int] = INK_RGB, align: str = "left") -> np.ndarray:
    """Print ``text`` with its left (or right, ``align='right'``) end at x and its baseline at y; return its box."""
    if font in HERSHEY_FONTS:
        face = HERSHEY_FONTS[font]
        scale = cap_px / HERSHEY_CAP_PX
        thickness = max(1, int(round(cap_px / 11.0))) * (2 if bold else 1)
        (w, h), descent = cv2.getTextSize(text, face, scale, thickness)
        org_x = int(round(x - w if align == "right" else x))
        org_y = int(round(y))
        cv2.putText(image, text, (org_x, org_y), face, scale, color, thickness, cv2.LINE_AA)
        pad = thickness / 2.0
        return box_quad(org_x - pad, org_y - h - pad, org_x + w + pad, org_y + descent + pad)
    alpha, ox, oy = _sprite(font, bold, max(4, int(round(cap_px))), text)
    h, w = alpha.shape
    x0 = int(round(x - (w + ox) if align == "right" else x)) + ox
    y0 = int(round(y)) + oy
    _blend(image, alpha, x0, y0, color)
    return box_quad(x0, y0, x0 + w, y0 + h)


def _blend(image: np.ndarray, alpha: np.ndarray, x0: int, y0: int, color: tuple[int, int, int]) -> None:
    """Alpha-blend a coverage sprite onto the image at (x0, y0), clipped to the image."""
    H, W = image.shape[:2]
    h, w = alpha.shape
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if xa >= xb or ya >= yb:
        return
    a = alpha[ya - y0 : yb - y0, xa - x0 : xb - x0].astype(np.float32)[..., None] * (1.0 / 255.0)
    region = image[ya:yb, xa:xb].astype(np.float32)
    image[ya:yb, xa:xb] = (region * (1.0 - a) + np.asarray(color, np.float32) * a + 0.5).astype(np.uint8)


# --- what a style resolves to ---------------------------------------------------------------------------------
def resolved(style: PrintStyle, print_style: str, labels: bool) -> dict[str, str]:
    """The concrete marks, label place, font and text blocks of a style on paper of ``print_style``."""
    device = print_style == "device"
    return {
        "lead_marks": style.lead_marks if style.lead_marks != "auto" else ("dotted" if device else "none"),
        "label_place": ("none" if not labels else style.label_place if style.label_place != "auto"
                        else ("on_trace" if device else "above")),
        "label_font": style.label_font if style.label_font != "auto" else (
            "hershey_complex" if device else "hershey_duplex"),
        "text_blocks": style.text_blocks if style.text_blocks != "auto" else ("footer" if labels else "none"),
    }


def lead_changes(layout: Layout) -> list[tuple[LeadCell, float]]:
    """Each cell that follows another in its row, and the x (mm) of the lead change: the middle of any gap."""
    out = []
    rows: dict[int, list[LeadCell]] = {}
    for cell in layout.cells:
        rows.setdefault(cell.row, []).append(cell)
    for cells in rows.values():
        cells.sort(key=lambda c: c.x_mm)
        for prev, cell in zip(cells, cells[1:]):
            out.append((cell, (prev.x_mm + prev.w_mm + cell.x_mm) / 2.0))
    return out


def gap_bands(layout: Layout, style: PrintStyle, print_style: str, labels: bool, ppm: float) -> list[tuple[int, ...]]:
    """Pixel bands (x0, x1, y0, y1) where the trace is cut at a lead change (lead_marks 'gap')."""
    if resolved(style, print_style, labels)["lead_marks"] != "gap":
        return []
    bands = []
    for cell, x in lead_changes(layout):
        x0 = int(np.floor((x - MARK_GAP_MM / 2) * ppm))
        x1 = int(np.ceil((x + MARK_GAP_MM / 2) * ppm))
        bands.append((x0, x1, int(np.floor(cell.y_mm * ppm)), int(np.ceil((cell.y_mm + cell.h_mm) * ppm))))
    return bands


def decorate(image: np.ndarray, layout: Layout, options: Any, style: PrintStyle, pen: int) -> list[Annotation]:
    """Draw lead-change marks (``pen``: the traces' cv2 thickness), lead labels and text blocks of ``style``;
    return what was drawn where."""
    ppm = options.px_per_mm
    r = resolved(style, options.print_style, options.labels)
    out: list[Annotation] = []
    out += _marks(image, layout, r["lead_marks"], ppm, pen)
    out += _labels(image, layout, r["label_place"], r["label_font"], style, ppm)
    out += _text_blocks(image, layout, options, r["text_blocks"], r["label_font"], style, ppm)
    return out


def _marks(image, layout: Layout, kind: str, ppm: float, pen: int) -> list[Annotation]:
    out = []
    for cell, x_mm in lead_changes(layout):
        x = x_mm * ppm - 0.5
        xf = round(x * _SUBPIXEL)
        if kind == "gap":
            y0, y1 = cell.y_mm * ppm, (cell.y_mm + cell.h_mm) * ppm
            out.append(Annotation("mark", "gap", box_quad((x_mm - MARK_GAP_MM / 2) * ppm, y0,
                                                          (x_mm + MARK_GAP_MM / 2) * ppm, y1)))
            continue
        if kind == "none":
            continue
        if kind == "dotted":
            dot, pitch = SEPARATOR_DOT_MM
            for y_mm in np.arange(cell.y_mm + 0.5 * pitch, cell.y_mm + cell.h_mm, pitch):
                y0, y1 = (round((y * ppm - 0.5) * _SUBPIXEL) for y in (y_mm, y_mm + dot))
                cv2.line(image, (xf, y0), (xf, y1), INK_RGB, pen, cv2.LINE_AA, _SUBPIXEL_BITS)
            top, bottom, width = cell.y_mm, cell.y_mm + cell.h_mm, pen
        else:
            if kind == "ticks":  # a short stroke across the baseline
                top, bottom, width = cell.baseline_mm - 1.5, cell.baseline_mm + 1.5, pen
            else:  # bars: a tall line through the trace
                top, bottom, width = cell.y_mm + 0.15 * cell.h_mm, cell.y_mm + 0.85 * cell.h_mm, pen + 1
            y0, y1 = (round((y * ppm - 0.5) * _SUBPIXEL) for y in (top, bottom))
            cv2.line(image, (xf, y0), (xf, y1), INK_RGB, width, cv2.LINE_AA, _SUBPIXEL_BITS)
        half = max(width, 1) / 2.0 + 0.5
        out.append(Annotation("mark", kind, box_quad(x - half, top * ppm - half, x + half, bottom * ppm + half)))
    return out


def _labels(image, layout: Layout, place: str, font: str, style: PrintStyle, ppm: float) -> list[Annotation]:
    if place == "none":
        return []
    cap = style.label_size_mm * ppm
    bold = style.label_weight == "bold"
    out = []
    for cell in layout.cells:
        start = cell.x_mm + (layout.pulse_mm if cell.pulse else 0.0)
        where = place if place != "margin" or cell.col == 0 else "on_trace"
        align = "left"
        if where == "above":
            x, y = cell.x_mm + 1.0, cell.y_mm + 1.0 + style.label_size_mm + 0.6
        elif where == "below":
            x, y = start + 1.0, cell.baseline_mm + 3.5 + style.label_size_mm
        elif where == "on_trace":
            x, y = start + 1.0, cell.baseline_mm - 0.5
        else:  # margin, left of the row's first cell
            x, y, align = cell.x_mm - 1.0, cell.baseline_mm + style.label_size_mm / 2, "right"
        quad = draw_text(image, cell.lead, x * ppm, y * ppm, font, cap, bold, INK_RGB, align)
        out.append(Annotation("label", cell.lead, quad))
    return out


_DEVICES = ("CardioPrint 12", "ECG-1200 v2.3", "MultiLead 6000", "HeartWriter 3", "Electro 12 Pro")
_INTERPRETATIONS = ("Sinus rhythm. Normal ECG.", "Sinus rhythm with 1st degree AV block.",
                    "Sinus bradycardia. Otherwise normal ECG.", "Sinus tachycardia. Nonspecific T wave abnormality.",
                    "Sinus rhythm. Left axis deviation. Borderline ECG.", "Atrial fibrillation with rapid response.",
                    "Sinus rhythm. Possible inferior infarct, age undetermined. Abnormal ECG.",
                    "Sinus rhythm. ST elevation, consider anterior injury. Abnormal ECG.")
_SURNAMES = ("SMITH", "MUELLER", "GARCIA", "ROSSI", "DUBOIS", "NOWAK", "JENSEN", "SILVA", "KOWALSKI", "BROWN")


def text_lines(rng: np.random.Generator, options: Any) -> dict[str, list[str]]:
    """Fake but plausible text of each block (no real patient: names and numbers are drawn at random)."""
    hr = int(rng.integers(48, 125))
    qt = int(rng.integers(330, 440))
    qtc = int(round(qt / np.sqrt(60.0 / hr)))
    initial = "ABCDEFGHJKLMNPRSTW"[int(rng.integers(18))]
    date = f"{int(rng.integers(1, 29)):02d}.{int(rng.integers(1, 13)):02d}.{int(rng.integers(2005, 2025))}"
    return {
        "header": [f"{_SURNAMES[int(rng.integers(len(_SURNAMES)))]}, {initial}.   ID {int(rng.integers(10**6, 10**7))}"
                   f"   {'MF'[int(rng.integers(2))]}   {int(rng.integers(25, 91))} yrs   {date} "
                   f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}"],
        "measurements": [f"Vent. rate {hr} bpm    PR {int(rng.integers(120, 220))} ms    "
                         f"QRS {int(rng.integers(78, 130))} ms",
                         f"QT/QTc {qt}/{qtc} ms    P-R-T axes {int(rng.integers(-10, 80))} "
                         f"{int(rng.integers(-40, 100))} {int(rng.integers(-20, 90))}"],
        "interpretation": [_INTERPRETATIONS[int(rng.integers(len(_INTERPRETATIONS)))]],
        "footer": [f"{options.paper_speed:g} mm/s   {options.gain:g} mm/mV   "
                   f"{('0.05-40 Hz', '0.05-150 Hz', '0.5-100 Hz')[int(rng.integers(3))]}   "
                   f"{('50 Hz', '60 Hz', 'AC filter off')[int(rng.integers(3))]}   "
                   f"{_DEVICES[int(rng.integers(len(_DEVICES)))]}"],
    }


def _text_blocks(image, layout: Layout, options: Any, blocks: str, font: str, style: PrintStyle,
                 ppm: float) -> list[Annotation]:
    if blocks == "none":
        return []
    rng = np.random.default_rng([int(style.text_seed) & 0xFFFFFFFF, 0x7E47])
    lines = text_lines(rng, options)
    size_mm = float(np.clip(style.label_size_mm * 0.9, 1.6, 2.8))
    cap = size_mm * ppm
    margin = layout.style.margin_mm if layout.style else 5.0
    x = (margin + 1.0) * ppm
    out = []
    y_mm = margin + size_mm + 0.5
    wanted = {"header": ("header",), "full": ("header", "measurements", "interpretation")}.get(blocks, ())
    for block in wanted:
        for line in lines[block]:
            if y_mm > layout.top_mm:
                break  # no room left above the traces
            quad = draw_text(image, line, x, y_mm * ppm, font, cap)
            out.append(Annotation("text", block, quad, line))
            y_mm += size_mm * 1.9
    footer_y = (layout.height_mm - 3.0) * ppm
    quad = draw_text(image, lines["footer"][0], x, footer_y, font, cap)
    out.append(Annotation("text", "footer", quad, lines["footer"][0]))
    return out
