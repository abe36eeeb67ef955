"""Paper layouts: where each lead sits on the paper (in mm) and which seconds of the record it shows.

A layout is pure geometry in millimetres, independent of resolution; :mod:`ecgcore.render` turns it into pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import CALIBRATION_SEGMENTS_MM, DEFAULT_PAPER_SPEED, LEAD_NAMES

LAYOUT_NAMES: tuple[str, ...] = ("seed-3x4", "3x4+II", "6x2", "12x1", "3x4", "3x4+3")

# Lead grid of the standard 3x4 printout: rows x columns.
_GRID_3X4 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
# The 10 s rhythm strips under the 3x4 of a "3x4+3" printout (GE/Philips-style "3 rhythm leads").
RHYTHM_LEADS_3 = ("V1", "II", "V5")
# The 10 s rhythm strips under each 3x4-style layout's grid.
_RHYTHM_STRIPS: dict[str, tuple[str, ...]] = {"3x4": (), "3x4+II": ("II",), "3x4+3": RHYTHM_LEADS_3}
# Layouts whose calibration pulses and rows of trace sit at the same places: pulses cannot tell them apart (the
# digitiser compares the leads that 3x4+3 shows twice).
SAME_PULSES: dict[str, str] = {"6x2": "3x4+3", "3x4+3": "6x2"}
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
class Layout:
    name: str
    cells: tuple[LeadCell, ...]
    width_mm: float
    height_mm: float
    paper_speed: float  # mm/s

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
        return pulse_width_mm(self.paper_speed)

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
