"""Paper layouts: where each lead sits on the paper (in mm) and which seconds of the record it shows.

A layout is pure geometry in millimetres, independent of resolution; :mod:`ecgcore.synth.render` turns it into pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ecgcore.constants import CALIBRATION_SEGMENTS_MM, DEFAULT_PAPER_SPEED, LEAD_NAMES, PAGE_SIZES_MM

LAYOUT_NAMES: tuple[str, ...] = ("seed-3x4", "3x4+II", "6x2", "12x1", "3x4", "3x4+3", "6x1")

# Lead grid of the standard 3x4 printout: rows x columns.
_GRID_3X4 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
# The 10 s rhythm strips under the 3x4 of a "3x4+3" printout (GE/Philips-style "3 rhythm leads").
RHYTHM_LEADS_3 = ("V1", "II", "V5")
# The 10 s rhythm strips under each 3x4-style layout's grid.
_RHYTHM_STRIPS: dict[str, tuple[str, ...]] = {"3x4": (), "3x4+II": ("II",), "3x4+3": RHYTHM_LEADS_3}
# Layouts whose calibration pulses and rows of trace sit at the same places: pulses cannot tell them apart (the
# digitiser compares the leads that 3x4+3 shows twice).
SAME_PULSES: dict[str, str] = {"6x2": "3x4+3", "3x4+3": "6x2"}
# "6x1" is the first page of a six-channel printout: the six limb leads, 10 s each, in 6x2's rows with 6x2's pulses
# (its second page, V1-V6, has no limb-lead physics to tell it by and is not read as such). A page with six rows of
# trace is read as 6x1 when the limb-lead laws also hold where 6x2 would show the chest leads.
LIMB_PAGE: dict[str, str] = {"6x2": "6x1"}
MARGIN_MM = 5.0
FOOTER_MM = 10.0


@dataclass(frozen=True)
class LeadCell:
    """One lead's cell on the paper. ``x_mm``..``x_mm + w_mm`` includes the calibration pulse when ``pulse``."""

    lead: str
    row: int
    col: int
    x_mm: float
    y_mm: float
    w_mm: float
    h_mm: float
    t0: float
    t1: float
    pulse: bool

    @property
    def baseline_mm(self) -> float:
        """The 0 mV line: one small cell below the middle of the row (the prototype's choice)."""
        return self.y_mm + self.h_mm / 2 + 1.0


@dataclass(frozen=True)
class Pulse:
    """A calibration pulse printed apart from any cell's trace (e.g. at the end of a row). Its left foot is at
    (x_mm, baseline_mm); ``lead`` is the lead of the row it belongs to (for the per-pixel lead map)."""

    lead: str
    x_mm: float
    baseline_mm: float


@dataclass(frozen=True)
class Layout:
    name: str
    cells: tuple[LeadCell, ...]
    width_mm: float
    height_mm: float
    paper_speed: float  # mm/s
    # Printer-style variants (styled_layout); the defaults are make_layout's geometry.
    pulse_segments_mm: tuple[float, float, float] | None = None  # lead-in flat, +1 mV top, lead-out flat
    pulses: tuple[Pulse, ...] = ()  # pulses drawn apart from the cells' traces
    style: LayoutStyle | None = None  # the variant this layout was built with (None: make_layout's)
    top_mm: float = 0.0  # where the text above the traces may start (the header area's bottom edge)

    @property
    def duration_s(self) -> float:
        """The seconds of the record the layout spans (the digitised record's length)."""
        return max(cell.t1 for cell in self.cells)

    @property
    def row_mm(self) -> float:
        """Length of a row of trace on the paper: the first cell's left edge to the last cell's right edge."""
        return max(cell.x_mm + cell.w_mm for cell in self.cells) - min(cell.x_mm for cell in self.cells)

    @property
    def pulse_mm(self) -> float:
        if self.pulse_segments_mm is not None:
            return sum(self.pulse_segments_mm)
        return pulse_width_mm(self.paper_speed)

    @property
    def segments_mm(self) -> tuple[float, float, float]:
        """The pulse's lead-in flat, top and lead-out flat on the paper, in mm."""
        if self.pulse_segments_mm is not None:
            return self.pulse_segments_mm
        scale = self.paper_speed / DEFAULT_PAPER_SPEED
        return tuple(seg * scale for seg in CALIBRATION_SEGMENTS_MM)  # type: ignore[return-value]

    def cells_of(self, lead: str) -> list[LeadCell]:
        return [cell for cell in self.cells if cell.lead == lead]

    def cells_of_row(self, row: int) -> list[LeadCell]:
        return [cell for cell in self.cells if cell.row == row]


def pulse_width_mm(paper_speed: float) -> float:
    """Width of the calibration pulse: 9 small cells at 25 mm/s (0.36 s of paper), scaled with the speed."""
    return sum(CALIBRATION_SEGMENTS_MM) * paper_speed / DEFAULT_PAPER_SPEED


def make_layout(name: str, paper_speed: float = DEFAULT_PAPER_SPEED) -> Layout:
    """Build a named layout at a paper speed. Raises ValueError naming the valid layouts."""
    if name not in LAYOUT_NAMES:
        raise ValueError(f"unknown layout {name!r}; choose one of {', '.join(LAYOUT_NAMES)}.")
    pulse = pulse_width_mm(paper_speed)
    cells: list[LeadCell] = []
    if name == "seed-3x4":
        # The prototype: every lead shows the same first 1.8 s, each with its own pulse.
        row_h, seconds = 40.0, 1.8
        cell_w = pulse + seconds * paper_speed
        for r, row in enumerate(_GRID_3X4):
            for c, lead in enumerate(row):
                x = MARGIN_MM + c * cell_w
                cells.append(LeadCell(lead, r, c, x, MARGIN_MM + r * row_h, cell_w, row_h, 0.0, seconds, True))
        rows, width = 3, 4 * cell_w
    elif name in _RHYTHM_STRIPS:
        # Clinical printouts: columns at consecutive 2.5 s windows, one pulse per row, then 10 s rhythm strips: lead
        # II in 3x4+II, V1, II and V5 in 3x4+3 (six rows, as close as 6x2's), none in a plain 3x4.
        strips = _RHYTHM_STRIPS[name]
        row_h, seconds = (25.0 if len(strips) == 3 else 40.0), 2.5
        col_w = seconds * paper_speed
        for r, row in enumerate(_GRID_3X4):
            for c, lead in enumerate(row):
                x = MARGIN_MM + (0.0 if c == 0 else pulse + c * col_w)
                w = col_w + (pulse if c == 0 else 0.0)
                t0 = c * seconds
                cells.append(LeadCell(lead, r, c, x, MARGIN_MM + r * row_h, w, row_h, t0, t0 + seconds, c == 0))
        width = pulse + 4 * col_w
        for i, lead in enumerate(strips):
            r = 3 + i
            cells.append(LeadCell(lead, r, 0, MARGIN_MM, MARGIN_MM + r * row_h, width, row_h, 0.0, 10.0, True))
        rows = 3 + len(strips)
    elif name == "6x2":
        row_h, seconds = 25.0, 5.0
        col_w = seconds * paper_speed
        for r in range(6):
            for c in range(2):
                lead = LEAD_NAMES[r + 6 * c]
                x = MARGIN_MM + (0.0 if c == 0 else pulse + col_w)
                w = col_w + (pulse if c == 0 else 0.0)
                t0 = c * seconds
                cells.append(LeadCell(lead, r, c, x, MARGIN_MM + r * row_h, w, row_h, t0, t0 + seconds, c == 0))
        rows, width = 6, pulse + 2 * col_w
    elif name == "6x1":
        row_h, seconds = 25.0, 10.0
        for r, lead in enumerate(LEAD_NAMES[:6]):
            cells.append(
                LeadCell(lead, r, 0, MARGIN_MM, MARGIN_MM + r * row_h, pulse + seconds * paper_speed, row_h, 0.0, seconds, True)
            )
        rows, width = 6, pulse + seconds * paper_speed
    else:  # 12x1
        row_h, seconds = 20.0, 10.0
        for r, lead in enumerate(LEAD_NAMES):
            cells.append(
                LeadCell(lead, r, 0, MARGIN_MM, MARGIN_MM + r * row_h, pulse + seconds * paper_speed, row_h, 0.0, seconds, True)
            )
        rows, width = 12, pulse + seconds * paper_speed
    width_mm = float(round(width + 2 * MARGIN_MM))
    height_mm = float(round(MARGIN_MM + rows * row_h + FOOTER_MM))
    return Layout(name, tuple(cells), width_mm, height_mm, paper_speed)


# --- printer-style variants -----------------------------------------------------------------------------------
PULSE_PLACES: tuple[str, ...] = ("layout", "row_start", "row_end", "each_cell", "none")
COLUMN_MODES: tuple[str, ...] = ("layout", "follow", "gap")
RHYTHM_CHOICES: tuple[str, ...] = ("layout", "1", "2", "3")
# Rhythm strips of a 3x4 printout by their number (1: lead II as in 3x4+II, 3: as in 3x4+3).
RHYTHM_LEADS_BY_COUNT: dict[int, tuple[str, ...]] = {1: ("II",), 2: ("II", "V1"), 3: RHYTHM_LEADS_3}
ROW_MM_BY_ROWS: dict[int, float] = {4: 40.0, 5: 32.0, 6: 25.0}  # row height of a 3x4 with 1, 2 or 3 strips
MIN_ROW_SHARE = 0.75
PULSE_ROW_END_GAP_MM = 1.5  # blank paper between a row's last trace and a pulse printed after it


@dataclass(frozen=True)
class LayoutStyle:
    """How a printer arranges a named layout on its page. The defaults reproduce :func:`make_layout` exactly.

    ``pulse_s`` is the calibration pulse's (lead-in flat, top, lead-out flat) in seconds of paper; ``columns``:
    "layout" as the named layout, "follow" (each column's window starts where the previous one ends on the paper)
    or "gap" (blank paper of ``column_gap_mm`` between columns; the time windows still follow each other);
    ``rhythm_strips``: "layout" or how many 10 s strips a 3x4 printout has under its grid. ``page``: "auto" (the
    layout's own size) or a landscape sheet of PAGE_SIZES_MM; ``offset_mm`` moves the block of traces on the page
    (and so against the grid); ``header_mm``/``footer_mm``/``left_mm`` are room for text above, below and left.
    """

    pulse_place: str = "layout"
    pulse_s: tuple[float, float, float] = (0.08, 0.2, 0.08)
    columns: str = "layout"
    column_gap_mm: float = 2.0
    rhythm_strips: str = "layout"
    page: str = "auto"
    margin_mm: float = MARGIN_MM
    offset_mm: tuple[float, float] = (0.0, 0.0)
    header_mm: float = 0.0
    footer_mm: float = FOOTER_MM
    left_mm: float = 0.0

    def is_default(self) -> bool:
        return self == LayoutStyle()

    def validate(self) -> None:
        if self.pulse_place not in PULSE_PLACES:
            raise ValueError(f"pulse_place must be one of {', '.join(PULSE_PLACES)}, not {self.pulse_place!r}.")
        if self.columns not in COLUMN_MODES:
            raise ValueError(f"columns must be one of {', '.join(COLUMN_MODES)}, not {self.columns!r}.")
        if self.rhythm_strips not in RHYTHM_CHOICES:
            raise ValueError(f"rhythm_strips must be one of {', '.join(RHYTHM_CHOICES)}, not {self.rhythm_strips!r}.")
        if self.page != "auto" and self.page not in PAGE_SIZES_MM:
            raise ValueError(f"page must be auto or one of {', '.join(PAGE_SIZES_MM)}, not {self.page!r}.")
        if len(self.pulse_s) != 3 or min(self.pulse_s) < 0 or self.pulse_s[1] <= 0:
            raise ValueError(f"pulse_s must be (lead-in, top, lead-out) seconds with a positive top, not {self.pulse_s}.")

    def to_json(self) -> dict:
        return asdict(self)


def styled_layout(name: str, paper_speed: float = DEFAULT_PAPER_SPEED, style: LayoutStyle | None = None) -> Layout:
    """The named layout as a printer of ``style`` arranges it: pulses, columns, rhythm strips, page and offsets.

    With the default style this is ``make_layout(name, paper_speed)`` itself. Every cell keeps its lead and its true
    time window (t0, t1); only where it sits on the paper changes, so a digitiser can be tested against pages whose
    columns and pulses are moved.
    """
    base = make_layout(name, paper_speed)
    style = style or LayoutStyle()
    style.validate()
    if style.is_default():
        return base
    segments = tuple(s * paper_speed for s in style.pulse_s)
    pulse = sum(segments)

    # Rows of (lead, col, t0, t1), from the named layout, with the 3x4 family's rhythm strips re-chosen.
    rows: dict[int, list[LeadCell]] = {}
    for cell in base.cells:
        rows.setdefault(cell.row, []).append(cell)
    spec = [[(c.lead, c.col, c.t0, c.t1) for c in sorted(rows[r], key=lambda c: c.col)] for r in sorted(rows)]
    row_h = base.cells[0].h_mm
    if style.rhythm_strips != "layout" and name in ("3x4+II", "3x4+3"):
        strips = RHYTHM_LEADS_BY_COUNT[int(style.rhythm_strips)]
        spec = spec[:3] + [[(lead, 0, 0.0, 10.0)] for lead in strips]
        row_h = ROW_MM_BY_ROWS[len(spec)]

    def has_pulse(col: int) -> bool:
        """Whether the cell in column ``col`` starts with its own pulse (the named layouts: seed-3x4 every cell,
        the others the first of each row)."""
        if style.pulse_place == "layout":
            return name == "seed-3x4" or col == 0
        return style.pulse_place == "each_cell" or (style.pulse_place == "row_start" and col == 0)

    # Page and the block of traces on it.
    left = style.margin_mm + style.left_mm + style.offset_mm[0]
    top = style.margin_mm + style.header_mm + style.offset_mm[1]
    n_rows = len(spec)
    if style.page != "auto":
        page_w, page_h = PAGE_SIZES_MM[style.page]
        room = page_h - top - style.footer_mm
        # A sheet too short for the rows: they move closer (traces may overlap, as on real sheets), down to
        # MIN_ROW_SHARE of their height; below that the sheet grows instead.
        row_h = max(min(row_h, room / n_rows), MIN_ROW_SHARE * row_h)
    cells: list[LeadCell] = []
    pulses: list[Pulse] = []
    right = left
    for r, row in enumerate(spec):
        y = top + r * row_h
        x = left
        for i, (lead, col, t0, t1) in enumerate(row):
            if i > 0 and style.columns == "gap":
                x += style.column_gap_mm
            own = has_pulse(col)
            window = (t1 - t0) * paper_speed
            w = window + (pulse if own else 0.0)
            cells.append(LeadCell(lead, r, col, x, y, w, row_h, t0, t1, own))
            x += w
        if style.pulse_place == "row_end":
            x += PULSE_ROW_END_GAP_MM
            pulses.append(Pulse(row[-1][0], x, y + row_h / 2 + 1.0))
            x += pulse
        right = max(right, x)
    width = right + style.margin_mm
    height = top + n_rows * row_h + style.footer_mm
    if style.page != "auto":
        page_w, page_h = PAGE_SIZES_MM[style.page]
        width, height = max(page_w, width), max(page_h, height)  # a block wider than the sheet widens it
    return Layout(name, tuple(cells), float(round(width, 3)), float(round(height, 3)), paper_speed,
                  pulse_segments_mm=segments, pulses=tuple(pulses), style=style,
                  top_mm=style.margin_mm + style.header_mm)


@dataclass
class LeadBox:
    """Where a lead is in an image: its cell's corners (TL, TR, BL, BR) in pixels and the seconds it shows."""

    name: str
    quad: np.ndarray  # (4, 2) float: top-left, top-right, bottom-left, bottom-right
    t0: float
    t1: float

    def to_json(self) -> dict:
        return {"name": self.name, "quad": [round(float(v), 2) for v in self.quad.reshape(-1)], "t0": self.t0, "t1": self.t1}

    @classmethod
    def from_json(cls, data: dict) -> LeadBox:
        return cls(data["name"], np.asarray(data["quad"], dtype=np.float64).reshape(4, 2), float(data["t0"]), float(data["t1"]))
