"""The one parameter schema of PTB-V photo synthesis.

Each :class:`Param` has a name (the prototype's where it had one), a stage, a default distribution, hard bounds for
the drawn value, and help text. The CLI, presets (JSON) and the Studio's sliders all read this table; a preset is
validated against it before any work starts, and every error names the offending parameter.

A preset maps parameter names to distributions::

    {"rotation_angle": {"dist": "normal", "mu": 0.0, "sd": 3.0},
     "shadow_alpha": {"dist": "beta", "a": 8, "b": 25},
     "jpeg_quality": 60}                  # a bare number means "always this value"
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ecgcore.constants import CURVE_LINE_MM, GRID_COLORS, MAJOR_LINE_MM, MINOR_GRIDS, MINOR_LINE_MM, TRACE_COLORS
from ecgcore.errors import PresetError  # noqa: F401  (raised here; defined with the other user errors)
from ecgcore.layouts import COLUMN_MODES, PULSE_PLACES, RHYTHM_CHOICES
from ecgcore.synth.printstyle import DEFAULT_LABEL_MM, LABEL_FONTS, LABEL_PLACES, LABEL_WEIGHTS, LEAD_MARKS, TEXT_BLOCKS
from ecgcore.workspace import PRESETS_DIR

STAGES: tuple[str, ...] = ("print", "ink", "capture", "paper", "geometry", "shadow", "lighting", "optics", "noise",
                           "background")
STAGE_TITLES: dict[str, str] = {
    "print": "Printer: pulses, columns, labels, text",
    "ink": "Printer: ink, grid and page",
    "capture": "Phone photo or flat scan",
    "paper": "Paper on the background",
    "geometry": "Paper geometry",
    "shadow": "Shadow or flash",
    "lighting": "Lighting and colour",
    "optics": "Focus and motion",
    "noise": "Sensor noise and compression",
    "background": "Background surface",
}
DIST_KINDS: tuple[str, ...] = ("normal", "beta", "uniform", "constant", "choice")



@dataclass(frozen=True)
class Dist:
    """A distribution: normal(mu, sd), beta(a, b) scaled to [lo, hi] of its param, uniform(low, high), constant(value),
    or choice(options, weights). Values outside the param's bounds are clipped after drawing."""

    kind: str
    args: tuple = ()

    def to_json(self) -> dict[str, Any]:
        names = _ARG_NAMES[self.kind]
        out: dict[str, Any] = {"dist": self.kind}
        for name, value in zip(names, self.args):
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    def describe(self) -> str:
        return f"{self.kind}(" + ", ".join(f"{n}={v}" for n, v in zip(_ARG_NAMES[self.kind], self.args)) + ")"


_ARG_NAMES: dict[str, tuple[str, ...]] = {
    "normal": ("mu", "sd"),
    "beta": ("a", "b"),
    "uniform": ("low", "high"),
    "constant": ("value",),
    "choice": ("options", "weights"),
}


def normal(mu: float, sd: float) -> Dist:
    return Dist("normal", (float(mu), float(sd)))


def beta(a: float, b: float) -> Dist:
    return Dist("beta", (float(a), float(b)))


def uniform(low: float, high: float) -> Dist:
    return Dist("uniform", (float(low), float(high)))


def constant(value: Any) -> Dist:
    return Dist("constant", (value,))


def choice(options: tuple[str, ...], weights: tuple[float, ...] | None = None) -> Dist:
    weights = weights or tuple(1.0 for _ in options)
    return Dist("choice", (tuple(options), tuple(float(w) for w in weights)))


@dataclass(frozen=True)
class Param:
    name: str
    stage: str
    default: Dist
    low: float | None  # hard bounds of a drawn value (numeric params); also the slider range
    high: float | None
    help: str
    unit: str = ""
    options: tuple[str, ...] = ()  # categorical params

    @property
    def categorical(self) -> bool:
        return bool(self.options)

    @property
    def integer(self) -> bool:
        return self.name in _INTEGER_PARAMS


_INTEGER_PARAMS = frozenset({"jpeg_quality"})
BACKGROUND_KINDS: tuple[str, ...] = ("wood", "cloth", "desk", "paper_stack", "concrete", "wall", "folder")
CAPTURES: tuple[str, ...] = ("photo", "scan")
SCAN_FORMATS: tuple[str, ...] = ("jpeg", "png")

SCHEMA: tuple[Param, ...] = (
    # --- the prototype's parameters (SEED_NOTES section 2), same names, same default distributions ---
    Param("original_image_scaling_factor", "paper", normal(1.0, 0.0), 0.3, 1.2,
          "Size of the paper relative to the photo: 1.0 makes the paper span 80% of the frame, 1.25 fills it; "
          "the prototype limited the background to 1.5x the paper (about 0.83 here)."),
    Param("ecg_paper_scale", "geometry", normal(1.02, 0.02), 0.7, 1.3, "Horizontal scale of the paper."),
    Param("ecg_paper_y_skew", "geometry", normal(1.0, 0.08), 0.6, 1.4,
          "Vertical scale relative to the horizontal one (vertical scale = scale x y_skew)."),
    Param("rotation_angle", "geometry", normal(0.0, 1.5), -45.0, 45.0,
          "Counter-clockwise rotation of the paper about its centre.", "deg"),
    Param("ecg_paper_relative_translation_x", "paper", normal(0.0, 0.05), -0.4, 0.4,
          "Horizontal offset of the paper centre, as a fraction of the photo width."),
    Param("ecg_paper_relative_translation_y", "paper", normal(0.0, 0.05), -0.4, 0.4,
          "Vertical offset of the paper centre, as a fraction of the photo height."),
    Param("shadow_color", "shadow", beta(0.3, 0.3), 0.0, 1.0,
          "Brightness of the shadow ellipse: near 0 a dark shadow, near 1 a camera flash (U-shaped by default)."),
    Param("shadow_alpha", "shadow", beta(8, 25), 0.0, 1.0, "Opacity of the shadow."),
    Param("shadow_relative_start_point", "shadow", normal(0.0, 0.1), -0.5, 1.5,
          "Shadow ellipse's first corner (Ps*w, Ps*h), as a fraction of the paper size."),
    Param("shadow_relative_end_point", "shadow", normal(1.0, 0.1), -0.5, 1.5,
          "Shadow ellipse's opposite corner (Pe*w, Pe*h), as a fraction of the paper size."),
    Param("shadow_blur_factor", "shadow", normal(50.0, 3.0), 0.0, 200.0,
          "Gaussian blur of the shadow edge, in pixels of a 10 px/mm paper (scaled with the paper).", "px"),
    Param("blur_factor", "optics", normal(0.1, 0.05), 0.0, 6.0, "Gaussian blur (sigma) of the whole photo.", "px"),
    Param("white_noise_p", "noise", beta(5, 5), 0.0, 1.0,
          "Probability that a pixel channel receives Gaussian noise."),
    Param("white_noise_sd", "noise", normal(20.0, 5.0), 0.0, 80.0,
          "Standard deviation of the added noise on the 0..255 scale."),
    # --- realism beyond the prototype: off by default (constant at their neutral value) ---
    Param("perspective_tilt_x", "geometry", constant(0.0), -0.3, 0.3,
          "Perspective tilt about the vertical axis (camera not square to the paper); fraction of keystone."),
    Param("perspective_tilt_y", "geometry", constant(0.0), -0.3, 0.3,
          "Perspective tilt about the horizontal axis; fraction of keystone."),
    Param("paper_curl", "geometry", constant(0.0), -0.1, 0.1,
          "Paper curl: vertical bulge of the paper's middle, as a fraction of its height."),
    Param("crease_strength", "lighting", constant(0.0), 0.0, 1.0,
          "A fold across the paper: shading on one side and a bright ridge along it."),
    Param("crease_position", "lighting", uniform(0.25, 0.75), 0.0, 1.0,
          "Where the fold crosses the paper, as a fraction of its width."),
    Param("crease_angle", "lighting", uniform(-20.0, 20.0), -45.0, 45.0, "Tilt of the fold from vertical.", "deg"),
    Param("lighting_gradient", "lighting", constant(0.0), 0.0, 0.8,
          "Strength of a linear light fall-off across the photo (0 = even light)."),
    Param("lighting_angle", "lighting", uniform(0.0, 360.0), 0.0, 360.0,
          "Direction the light falls off towards.", "deg"),
    Param("color_temperature", "lighting", constant(0.0), -0.3, 0.3,
          "White balance shift: negative is cooler (blue), positive warmer (yellow)."),
    Param("contrast", "lighting", constant(1.25), 0.5, 2.0, "Contrast factor (the prototype used 1.25)."),
    Param("motion_blur", "optics", constant(0.0), 0.0, 25.0, "Length of a camera-shake blur kernel.", "px"),
    Param("motion_blur_angle", "optics", uniform(0.0, 180.0), 0.0, 180.0, "Direction of the camera shake.", "deg"),
    Param("jpeg_quality", "noise", constant(95), 5, 100, "JPEG quality the photo is compressed with."),
    Param("background", "background", choice(BACKGROUND_KINDS[:-1]), None, None,
          "Surface under the paper: procedural textures, or 'folder' for the user's photos (--backgrounds DIR).",
          options=BACKGROUND_KINDS),
    # --- printer styles (ecgcore.synth.printstyle, ecgcore.layouts.styled_layout): at their defaults the paper is printed
    # exactly as PaperOptions says (the 'layout'/'auto' options and the default numbers are today's printout) ---
    Param("pulse_place", "print", constant("layout"), None, None,
          "Where calibration pulses are printed: as the layout does (seed-3x4: every cell, others: each row's start), "
          "at each row's start, after each row's end, before every cell, or none.", options=PULSE_PLACES),
    Param("pulse_shape", "print", constant("flats"), None, None,
          "Pulse with lead-in/lead-out flats (their lengths below) or a plain rectangle (no flats).",
          options=("flats", "rectangle")),
    Param("pulse_width_s", "print", constant(0.2), 0.08, 0.25, "Duration of the pulse's 1 mV top.", "s"),
    Param("pulse_lead_in_s", "print", constant(0.08), 0.0, 0.2, "Flat before the pulse rises.", "s"),
    Param("pulse_lead_out_s", "print", constant(0.08), 0.0, 0.2, "Flat after the pulse falls.", "s"),
    Param("columns", "print", constant("layout"), None, None,
          "How the columns of a row share it: as the layout, windows that follow each other with no gap, or blank "
          "paper between columns (the time windows still follow each other).", options=COLUMN_MODES),
    Param("column_gap_mm", "print", uniform(1.0, 5.0), 0.5, 10.0, "Blank paper between columns (columns = gap).",
          "mm"),
    Param("rhythm_strips", "print", constant("layout"), None, None,
          "Number of 10 s rhythm strips under a 3x4+II or 3x4+3 grid (1: II, 2: II and V1, 3: V1, II, V5).",
          options=RHYTHM_CHOICES),
    Param("lead_marks", "print", constant("auto"), None, None,
          "Marks where the lead changes within a row: auto (the print style's: dotted for device, none for ptb-v), "
          "none, short ticks across the baseline, tall bars, a dotted line, or a gap cut into the trace.",
          options=LEAD_MARKS),
    Param("label_font", "print", constant("auto"), None, None,
          "Font of the lead labels and text: auto (the print style's Hershey font), Hershey fonts, or TrueType "
          "fonts shipped with matplotlib (DejaVu Sans/Serif/Mono, STIX serif, Computer Modern sans/mono).",
          options=LABEL_FONTS),
    Param("label_weight", "print", constant("regular"), None, None, "Regular or bold labels and text.",
          options=LABEL_WEIGHTS),
    Param("label_size_mm", "print", constant(DEFAULT_LABEL_MM), 1.2, 4.5, "Height of the lead labels' capitals.",
          "mm"),
    Param("label_place", "print", constant("auto"), None, None,
          "Where lead labels sit: auto (the print style's), above the cell, below the trace's start, on the trace "
          "just after the lead change, in a left margin (first column), or no labels.", options=LABEL_PLACES),
    Param("text_blocks", "print", constant("auto"), None, None,
          "Text around the grid: auto (the speed/gain footer), none, a footer with speed, gain, filters and device, "
          "plus a header with fake patient fields, or 'full': header, measurements and an interpretation too.",
          options=TEXT_BLOCKS),
    Param("trace_color", "ink", constant("black"), None, None, "Colour of the traces and pulses.",
          options=tuple(TRACE_COLORS)),
    Param("trace_width_mm", "ink", constant(CURVE_LINE_MM), 0.15, 0.5,
          "Pen width of the traces (at the default the paper options' width is kept).", "mm"),
    Param("grid_color", "ink", constant("auto"), None, None,
          "Grid colour scheme: auto (the paper options', e.g. --grid-color) or one of the schemes.",
          options=("auto", *GRID_COLORS)),
    Param("grid_major_mm", "ink", constant(MAJOR_LINE_MM), 0.08, 0.4, "Line weight of the 5 mm grid.", "mm"),
    Param("grid_minor_mm", "ink", constant(MINOR_LINE_MM), 0.03, 0.2, "Line weight of the 1 mm grid.", "mm"),
    Param("grid_second_mm", "ink", constant(0.0), 0.0, 0.8,
          "Line weight of every fifth vertical 5 mm line (each second at 25 mm/s), drawn darker, as some printers "
          "do (real ecg00010, a Mortara ELI 350); 0: like the other 5 mm lines.", "mm"),
    Param("minor_grid", "ink", constant("auto"), None, None,
          "The 1 mm grid: auto (the paper options'), lines, dots at the crossings, or none.",
          options=("auto", *MINOR_GRIDS)),
    Param("page_size", "ink", constant("auto"), None, None,
          "The sheet: auto (just around the layout) or a landscape A4 or Letter page.", options=("auto", "a4", "letter")),
    Param("page_margin_mm", "ink", constant(5.0), 2.0, 20.0, "Paper margin around the traces.", "mm"),
    Param("grid_offset_x_mm", "ink", constant(0.0), 0.0, 10.0,
          "Shift of the block of traces to the right on the page (and so against the grid).", "mm"),
    Param("grid_offset_y_mm", "ink", constant(0.0), 0.0, 10.0, "Shift of the block of traces downwards.", "mm"),
    # --- capture: a phone photo (the stages above) or a flat scan of the page ---
    Param("capture", "capture", constant("photo"), None, None,
          "A phone photo (paper on a background, every photo stage) or a flat scan: the page alone, resampled at "
          "a dpi, slightly skewed, with scanner noise, saved as JPEG or PNG.", options=CAPTURES),
    Param("scan_dpi", "capture", uniform(100.0, 300.0), 72.0, 600.0, "Resolution of a scan.", "dpi"),
    Param("scan_skew", "capture", normal(0.0, 0.6), -5.0, 5.0, "Rotation of the page on the scanner glass.", "deg"),
    Param("scan_noise_sd", "capture", uniform(1.0, 6.0), 0.0, 30.0, "Scanner noise (sd on the 0..255 scale).",
          "level"),
    Param("scan_blur", "capture", uniform(0.2, 0.8), 0.0, 3.0, "Optical blur (sigma) of a scan.", "px"),
    Param("scan_format", "capture", choice(SCAN_FORMATS), None, None, "File format of a scan.",
          options=SCAN_FORMATS),
)
PARAMS: dict[str, Param] = {p.name: p for p in SCHEMA}


class Preset:
    """A full set of distributions, one per schema parameter (defaults for the ones not given)."""

    def __init__(self, dists: dict[str, Dist] | None = None):
        self.dists: dict[str, Dist] = {p.name: p.default for p in SCHEMA}
        for name, dist in (dists or {}).items():
            self.dists[name] = validate_dist(name, dist)

    # --- I/O ------------------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: Any) -> Preset:
        if not isinstance(data, dict):
            raise PresetError("a preset must be a JSON object mapping parameter names to distributions.")
        body = data.get("params", data) if "params" in data and isinstance(data.get("params"), dict) else data
        dists = {}
        for name, spec in body.items():
            if name in ("name", "description", "generator_version"):
                continue
            dists[name] = dist_from_json(name, spec)
        return cls(dists)

    @classmethod
    def from_text(cls, text: str | bytes, source: str = "the preset") -> Preset:
        """Parse a preset file's content; anything that is not a valid preset is a PresetError (one sentence)."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PresetError(f"{source} is not valid JSON ({exc}).") from exc
        except RecursionError:  # e.g. '[[[[...' nested deeper than the parser's stack
            raise PresetError(f"{source} is not valid JSON (nested too deeply).") from None
        return cls.from_json(data)

    @classmethod
    def load(cls, path: str | Path) -> Preset:
        path = Path(path)
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            raise PresetError(f"preset file {path} does not exist.") from None
        return cls.from_text(text, f"preset file {path}")

    def to_json(self) -> dict[str, Any]:
        return {name: dist.to_json() for name, dist in self.dists.items()}

    def diff(self, other: Preset | None = None) -> dict[str, tuple[Dist, Dist]]:
        """Parameters whose distribution differs from ``other`` (default: the schema defaults)."""
        other = other or Preset()
        return {n: (other.dists[n], d) for n, d in self.dists.items() if d != other.dists[n]}

    # --- drawing -------------------------------------------------------------------------------------
    def sample(self, seed: int) -> dict[str, Any]:
        """Draw one value per parameter, clipped to its bounds.

        Each parameter draws from its own stream (seed, parameter name), so changing one distribution never
        changes the values drawn for the others: a Studio slider moves only what it names.
        """
        return {p.name: draw(p, self.dists[p.name], param_rng(seed, p.name)) for p in SCHEMA}

    def with_values(self, values: dict[str, Any]) -> Preset:
        """A copy in which the given parameters are fixed (constant) at the given values."""
        dists = dict(self.dists)
        for name, value in values.items():
            dists[name] = constant(value)
        return Preset(dists)


# Presets shipped with the code, resolvable by name (weights/presets/NAME.json); 'default' is the schema's defaults.
SHIPPED_PRESETS_DIR = PRESETS_DIR


def shipped_preset_names() -> list[str]:
    """Names ``resolve_preset`` accepts besides paths: 'default' and the shipped presets."""
    return ["default", *sorted(p.stem for p in SHIPPED_PRESETS_DIR.glob("*.json"))]


def resolve_preset(spec: str | Path | None) -> Preset:
    """A preset from a path to a JSON file, or from a name: 'default' or a shipped preset ('harsh', 'mixed').

    A path that exists wins over a name; anything else is a PresetError naming the known presets.
    """
    if spec is None or str(spec) == "default":
        return Preset()
    path = Path(spec)
    if path.is_file():
        return Preset.load(path)
    shipped = SHIPPED_PRESETS_DIR / f"{spec}.json"
    if path.name == str(spec) and path.suffix != ".json" and shipped.is_file():
        return Preset.load(shipped)
    if path.suffix == ".json" or len(path.parts) > 1:
        return Preset.load(path)  # a missing file: its own sentence
    raise PresetError(f"preset {str(spec)!r} is neither a file nor a shipped preset; known presets: "
                      f"{', '.join(shipped_preset_names())}.")


def draw(param: Param, dist: Dist, rng: np.random.Generator) -> Any:
    kind, args = dist.kind, dist.args
    if kind == "choice":
        options, weights = args
        w = np.asarray(weights, dtype=np.float64)
        return str(options[int(rng.choice(len(options), p=w / w.sum()))])
    if kind == "constant":
        value = args[0]
        if param.categorical:
            return str(value)
    elif kind == "normal":
        value = rng.normal(args[0], args[1])
    elif kind == "beta":
        value = param.low + (param.high - param.low) * rng.beta(args[0], args[1])
    else:  # uniform
        value = rng.uniform(args[0], args[1])
    value = float(np.clip(value, param.low, param.high))
    return int(round(value)) if param.integer else value


def param_rng(seed: int, name: str) -> np.random.Generator:
    """The random stream of one parameter of one sample."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())])


def dist_from_json(name: str, spec: Any) -> Dist:
    """Parse one preset entry; a bare number (or option string) is a constant."""
    if name not in PARAMS:
        raise PresetError(f"unknown parameter {name!r} in preset; known parameters: {', '.join(PARAMS)}.")
    if isinstance(spec, (int, float, str)) and not isinstance(spec, bool):
        return constant(spec)
    if not isinstance(spec, dict) or "dist" not in spec:
        raise PresetError(f"parameter {name!r}: expected a number or an object with a 'dist' key, got {spec!r}.")
    kind = spec["dist"]
    if not isinstance(kind, str) or kind not in _ARG_NAMES:  # a list or object here must not crash the lookup
        raise PresetError(f"parameter {name!r}: unknown distribution {kind!r}; use one of {', '.join(DIST_KINDS)}.")
    names = _ARG_NAMES[kind]
    extra = set(spec) - set(names) - {"dist"}
    if extra:
        raise PresetError(f"parameter {name!r}: {kind} takes {', '.join(names)}, not {', '.join(sorted(extra))}.")
    if kind == "constant" and isinstance(spec.get("value"), str):
        return constant(spec["value"])  # a categorical constant, e.g. {"dist": "constant", "value": "wood"}
    if kind == "choice":
        options, weights = spec.get("options", []), spec.get("weights")
        # Lists only: a bare string or number would be split into characters or fail deep inside choice().
        if not isinstance(options, list):
            raise PresetError(f"parameter {name!r}: choice options must be a list of option names.")
        if weights is not None and (not isinstance(weights, list) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights)):
            raise PresetError(f"parameter {name!r}: choice weights must be a list of numbers.")
        try:
            return choice(tuple(options), tuple(weights) if weights is not None else None)
        except OverflowError:
            raise PresetError(f"parameter {name!r}: choice weights must be finite numbers.") from None
    try:
        args = tuple(float(spec[n]) for n in names)
    except KeyError as exc:
        raise PresetError(f"parameter {name!r}: {kind} needs {', '.join(names)} (missing {exc.args[0]}).") from exc
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer too large for a float
        raise PresetError(f"parameter {name!r}: {kind} arguments must be numbers.") from None
    return Dist(kind, args)


def validate_dist(name: str, dist: Dist) -> Dist:
    """Check a distribution against its parameter's bounds; raise PresetError naming the parameter."""
    if name not in PARAMS:
        raise PresetError(f"unknown parameter {name!r}; known parameters: {', '.join(PARAMS)}.")
    p = PARAMS[name]
    if dist.kind not in _ARG_NAMES:
        raise PresetError(f"parameter {name!r}: unknown distribution {dist.kind!r}.")
    if p.categorical:
        if dist.kind == "constant":
            if dist.args[0] not in p.options:
                raise PresetError(f"parameter {name!r}: {dist.args[0]!r} is not one of {', '.join(p.options)}.")
            return dist
        if dist.kind != "choice":
            raise PresetError(f"parameter {name!r} is categorical: use a choice or a constant option.")
        options, weights = dist.args
        bad = [o for o in options if o not in p.options]
        if not options or bad:
            raise PresetError(f"parameter {name!r}: options must be among {', '.join(p.options)} (got {list(options)}).")
        if len(weights) != len(options) or any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise PresetError(f"parameter {name!r}: weights must be one non-negative number per option, not all zero.")
        return dist
    if dist.kind == "choice":
        raise PresetError(f"parameter {name!r} is numeric: choice is only for categorical parameters.")
    try:
        values = [float(v) for v in dist.args]
    except (TypeError, ValueError, OverflowError):  # e.g. an option name, or a huge integer, for a numeric parameter
        raise PresetError(f"parameter {name!r}: distribution arguments must be numbers.") from None
    if not all(math.isfinite(v) for v in values):
        raise PresetError(f"parameter {name!r}: distribution arguments must be finite numbers.")
    lo, hi, span = p.low, p.high, p.high - p.low

    def check(label: str, value: float, low: float, high: float) -> None:
        if not low <= value <= high:
            raise PresetError(f"parameter {name!r}: {label} = {value:g} is out of range [{low:g}, {high:g}].")

    if dist.kind == "constant":
        check("value", values[0], lo, hi)
    elif dist.kind == "normal":
        check("mu", values[0], lo, hi)
        check("sd", values[1], 0.0, span)
    elif dist.kind == "uniform":
        check("low", values[0], lo, hi)
        check("high", values[1], values[0], hi)
    elif dist.kind == "beta":
        check("a", values[0], 0.05, 200.0)
        check("b", values[1], 0.05, 200.0)
    return Dist(dist.kind, tuple(values))


def pdf(param: Param, dist: Dist, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Density of a numeric parameter's distribution over its bounds (for the Studio's plots).

    A constant is drawn as a narrow spike. Clipping mass at the bounds is not shown.
    """
    x = np.linspace(param.low, param.high, n)
    kind, args = dist.kind, dist.args
    if kind == "normal":
        y = stats.norm.pdf(x, args[0], max(args[1], 1e-3 * (param.high - param.low)))
    elif kind == "beta":
        u = (x - param.low) / (param.high - param.low)
        y = stats.beta.pdf(np.clip(u, 1e-4, 1 - 1e-4), args[0], args[1]) / (param.high - param.low)
    elif kind == "uniform":
        width = max(args[1] - args[0], 1e-9)
        y = np.where((x >= args[0]) & (x <= args[1]), 1.0 / width, 0.0)
    else:
        y = np.zeros_like(x)
        y[int(np.argmin(np.abs(x - float(args[0]))))] = 1.0
    return x, y
