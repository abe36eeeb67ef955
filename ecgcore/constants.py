"""The single source of truth for ECG Lab's domain constants.

Lead order, class indices, label names and the prototype's paper geometry live here and nowhere else.
"""

from __future__ import annotations

# Lead order of PTB-XL (and of every 12-lead array in this project).
LEAD_NAMES: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
LEAD_INDEX: dict[str, int] = {name: i for i, name in enumerate(LEAD_NAMES)}
# PTB-XL's .hea files spell the augmented leads in capitals.
LEAD_ALIASES: dict[str, str] = {"AVR": "aVR", "AVL": "aVL", "AVF": "aVF"}

# Segmentation classes (mask pixel values). Precedence when layers overlap: CURVE > GRID_Y > GRID_X > BACKGROUND.
BACKGROUND = 0
GRID_X = 1  # major grid line at x = const ("vertical line")
GRID_Y = 2  # major grid line at y = const ("horizontal line")
CURVE = 3  # ECG curve, calibration pulses included
CLASS_NAMES: tuple[str, ...] = ("background", "grid_x", "grid_y", "curve")
N_CLASSES = len(CLASS_NAMES)
# Display colours (RGB) for mask overlays.
CLASS_COLORS: tuple[tuple[int, int, int], ...] = ((0, 0, 0), (0, 170, 255), (255, 170, 0), (230, 0, 60))

# Diagnostic classes (the seed's 3-class rule, SEED_NOTES section 3).
LABELS: tuple[str, ...] = ("normal", "non_mi_abnormality", "mi")
LABEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(LABELS)}
MI_CODES: frozenset[str] = frozenset({"IMI", "ASMI", "ILMI", "AMI", "LMI", "IPLMI", "IPMI", "PMI"})
NORMAL_MIN_LIKELIHOOD = 80.0
SYNTHETIC_LABEL = "synthetic"  # label of samples from the built-in signal source: never a diagnosis

# PTB-XL's recommended split (strat_fold 1..10).
TRAIN_FOLDS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
VALIDATION_FOLDS: tuple[int, ...] = (9,)
TEST_FOLDS: tuple[int, ...] = (10,)

# Paper geometry of the prototype (SEED_NOTES section 1), in millimetres unless named otherwise.
SMALL_CELL_MM = 1.0
MAJOR_EVERY = 5  # a thick line every 5 small cells
DEFAULT_PX_PER_MM = 10.0
DEFAULT_PAPER_SPEED = 25.0  # mm/s
DEFAULT_GAIN = 10.0  # mm/mV
PAPER_SPEEDS: tuple[float, ...] = (25.0, 50.0)
GAINS: tuple[float, ...] = (5.0, 10.0, 20.0)
RECORD_S = 10.0  # a standard 12-lead record (PTB-XL's): the rows of 3x4, 6x2 and 12x1 pages end with it
MAJOR_LINE_MM = 0.2  # 2 px at 10 px/mm
MINOR_LINE_MM = 0.1  # 1 px at 10 px/mm
MINOR_GRIDS = ("lines", "dots", "none")  # the minor grid as lines, a dot at every 1 mm crossing, or not printed
MINOR_DOT_MM = 0.2  # side of a minor-grid dot
CURVE_LINE_MM = 0.3  # 3 px at 10 px/mm
# A pixel belongs to the curve class when the trace's anti-aliased ink covers at least this share of it: the mask
# marks every pixel where the trace shows, not a 1-px skeleton inside a wider stroke (which left a thin trace's
# class ambiguous between its two or three visibly inked pixels).
CURVE_MASK_MIN_COVERAGE = 0.2
CALIBRATION_MV = 1.0
# Calibration pulse: 2 small cells flat, 5 at +1 mV, 2 flat (at 25 mm/s); scaled with the paper speed.
CALIBRATION_SEGMENTS_MM: tuple[float, float, float] = (2.0, 5.0, 2.0)
LABEL_FONT_PX_AT_10 = 22  # lead label height at 10 px/mm

# Grid colour schemes (RGB): (major line, minor line).
GRID_COLORS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "red": ((0xEC, 0x23, 0x20), (0xED, 0x88, 0x88)),
    "pink": ((0xF0, 0x6E, 0x9A), (0xF7, 0xB8, 0xCC)),
    "blue": ((0x3A, 0x6E, 0xC8), (0xA8, 0xC4, 0xEC)),
    "green": ((0x2E, 0x9A, 0x4E), (0xA6, 0xD8, 0xB2)),
    "grey": ((0x70, 0x70, 0x70), (0xC0, 0xC0, 0xC0)),
    # as some printers and screen exports: black major lines, as dark as the trace (usually with a dotted minor grid)
    "black": ((0x26, 0x26, 0x26), (0x50, 0x50, 0x50)),
    # more schemes of real printers and papers (drawn by the 'mixed' preset's grid_color)
    "orange": ((0xF0, 0x7A, 0x3A), (0xF8, 0xC0, 0xA0)),
    "salmon": ((0xE8, 0x90, 0x80), (0xF4, 0xCC, 0xC4)),
    "light_grey": ((0xA0, 0xA0, 0xA0), (0xD8, 0xD8, 0xD8)),
    "teal": ((0x3C, 0x96, 0x9A), (0xB0, 0xD8, 0xDA)),
    "brown": ((0xA0, 0x58, 0x40), (0xD8, 0xB4, 0xA8)),
}
PAPER_RGB = (255, 255, 255)
INK_RGB = (0, 0, 0)

# --- printer styles beyond the defaults (the print-stage parameters of ecgcore.synth.params) ---
# Trace (pen) colours.
TRACE_COLORS: dict[str, tuple[int, int, int]] = {"black": INK_RGB, "dark_blue": (0x1E, 0x2A, 0x78),
                                                 "dark_grey": (0x48, 0x48, 0x48)}
# Landscape sheets (width, height) in mm.
PAGE_SIZES_MM: dict[str, tuple[float, float]] = {"a4": (297.0, 210.0), "letter": (279.4, 215.9)}

# Sample JSON schema tag of the PTB-V format (PRODUCT.md).
SAMPLE_SCHEMA = "ptb-v/1"
# 1.1: pen width honours curve_line_mm; curve mask = visible ink. 1.2: a photo's curve class is the ink resampled
# like the image (bilinear) and then thresholded, not the paper's thresholded mask resampled nearest-neighbour.
GENERATOR_VERSION = "1.2.0"

# Seeds offered by the app (Studio, Jobs form) run 0..SEED_MAX: 31 bits, which every library's generator accepts.
SEED_MAX = 2**31 - 1
