"""The photo-to-verdict path that the Classify page and ``pipelines.classify`` run: segment -> digitise -> classify
-> explain, with every intermediate result kept in one plain :class:`Analysis`.

The steps come from three modules: ``ecgcore.read.segmentation`` (class map), ``ecgcore.read.digitize`` (12-lead signal and
lead boxes) and ``ecgcore.classify.classifiers`` (probabilities). A missing module or missing weights is a ModelError whose
sentence says what is missing and how to get it; an image without an ECG is a DigitizationError ("no ECG
grid/trace found ..."); neither is ever a confident diagnosis.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecgcore.constants import CURVE, LEAD_NAMES
from ecgcore.errors import DigitizationError
from ecgcore.read import models
from ecgcore.read.physics import Reading, reading_of

DISCLAIMER = (
    "Research demonstration only: this is not medical advice and not a medical device, and it must not be used to "
    "diagnose or treat anyone. In an emergency, call your local emergency number. The network always outputs some "
    "probability for every class, even for images unlike those it was trained on, so check the digitised leads "
    "against the photo and ask a clinician."
)
STEPS = ("segment", "digitize", "classify", "explain")
MIN_CURVE_FRACTION = 1e-4  # fewer curve pixels than this share of the image: nothing to digitise


@dataclass
class Analysis:
    """Everything the Classify page shows for one photo."""

    image_shape: tuple[int, int]  # (H, W) of the analysed RGB image
    class_map: np.ndarray  # (H, W) uint8 segmentation classes (ecgcore.constants)
    digitized: Any  # ecgcore.read.digitize.DigitizedEcg: signal (n, 12) mV with NaN, fs, layout, leads, quality
    probabilities: dict[str, float]  # combined verdict, {normal, non_mi_abnormality, mi}
    prediction: str
    model_probabilities: dict[str, dict[str, float]]  # per model ("signal", "image")
    models: dict[str, Any]  # per model: weights, training date, temperature, test metrics from its card
    signal_attribution: np.ndarray | None  # (12, n) on the digitised signal's time grid; > 0 pushes towards MI
    image_attribution: np.ndarray | None = None  # (H, W) 0..1 on the photo (image model's Grad-CAM), if loaded
    classification_image: np.ndarray | None = None  # (640, 640, 3) the image model's input, if loaded
    timings_ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    disclaimer: str = DISCLAIMER
    curve_margin: np.ndarray | None = None  # (H, W) float16: the segmenter's curve margin (sub-pixel trace edges)
    # ecgcore.read.physics.Reading: whether the digitised record can be trusted, and why not. Computed once, in
    # analyze_photo, from the digitiser's result; the page, the report and the CLI show it and never recompute it.
    reading: Reading | None = None

    @property
    def reliable(self) -> bool:
        """True when the reading passed every check; an analysis without a reading is never called reliable."""
        return bool(getattr(self.reading, "reliable", False))

    def digitization_summary(self) -> dict[str, Any]:
        """The ``digitization`` object of the classify JSON."""
        dig = self.digitized
        signal = np.asarray(dig.signal)
        shown = [name for name, ok in zip(LEAD_NAMES, np.isfinite(signal).any(axis=0)) if ok]
        quality = getattr(dig, "quality", {}) or {}
        return {
            "layout": getattr(dig, "layout", None),
            "rotation_deg": _round(getattr(dig, "rotation_deg", None), 2),
            "px_per_mm": _round(getattr(dig, "px_per_mm", None), 3),
            "fs": int(dig.fs),
            "duration_s": round(signal.shape[0] / float(dig.fs), 3),
            "leads_found": shown,
            "quality_ok": bool(quality.get("ok", True)),
        }

    def to_json(self, image: str) -> dict[str, Any]:
        """The classify JSON contract (PRODUCT.md): image, probabilities, prediction, models, digitization,
        reading (reliable true/false, the two limb-lead figures in dB, the repeats' r and the reasons)."""
        models = {name: {**info, "probabilities": _rounded(self.model_probabilities.get(name, {}))}
                  for name, info in self.models.items() if isinstance(info, dict)}
        models["combined_from"] = self.models.get("combined_from", [])
        return {
            "image": image,
            "probabilities": _rounded(self.probabilities),
            "prediction": self.prediction,
            "models": models,
            "digitization": self.digitization_summary(),
            "reading": reading_json(self.reading),
        }


def reading_json(reading: Reading | None) -> dict[str, Any]:
    """The ``reading`` object of the classify JSON; an analysis made without one is reported as not reliable."""
    if reading is None:
        return {"reliable": False, "einthoven_db": None, "goldberger_db": None, "repeats_r": None,
                "reasons": ["the reading was not checked"]}
    return reading.to_json()


def _round(value, digits: int):
    return None if value is None else round(float(value), digits)


def _rounded(probabilities: dict[str, float]) -> dict[str, float]:
    """Rounded to 6 digits, the largest absorbing the rounding so that they still sum to 1."""
    if not probabilities:
        return {}
    out = {k: round(float(v), 6) for k, v in probabilities.items()}
    top = max(out, key=out.get)
    out[top] = round(1.0 - sum(v for k, v in out.items() if k != top), 6)
    return out


def _digitize(class_map: np.ndarray, layout: str, curve_margin: np.ndarray | None = None,
              lead_boxes: list | None = None, fs: int = 100):
    from ecgcore.read.digitize import digitize

    return digitize(class_map, layout=layout, fs=fs, lead_boxes=lead_boxes or None, curve_margin=curve_margin)


class KnownClassMap:
    """A segmenter that returns the class map already computed: explaining a result or re-reading it with drawn
    lead boxes does not segment the photo again."""

    def __init__(self, class_map: np.ndarray, curve_margin: np.ndarray | None = None):
        self.class_map = class_map
        self.curve_margin = curve_margin

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        return self.class_map

    def predict_with_margin(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return self.class_map, self.curve_margin


# --- the pipeline -----------------------------------------------------------------------------------------


def analyze_photo(rgb: np.ndarray, layout: str = "auto", on_step: Callable[[str, float], None] | None = None,
                  segmenter=None, classifiers=None, explain: bool = True, lead_boxes: list | None = None,
                  fs: int = 100) -> Analysis:
    """Segment, digitise, classify and explain one photo of a paper ECG.

    ``rgb`` is (H, W, 3) uint8 (use ecgcore.imageio.read_image to get it from a file or an upload). ``on_step(name,
    fraction_done)`` is called as each step starts (names in STEPS) and with ("done", 1.0) at the end. Models default
    to the shipped ones, loaded once per process. ``lead_boxes`` (LeadBoxes a person drew or corrected) replace the
    automatic lead cells; ``fs`` is the digitised record's rate. The result's ``reading`` says whether the record
    can be trusted, whoever chose the layout or the boxes. Raises ModelError (models missing) or
    DigitizationError (no ECG).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"analyze_photo expects an (H, W, 3) uint8 RGB image, not {rgb.shape} {rgb.dtype}.")
    timings: dict[str, float] = {}
    notes: list[str] = []

    def step(name: str) -> None:
        if on_step is not None:
            on_step(name, STEPS.index(name) / len(STEPS))

    def lap(name: str, t0: float) -> None:
        timings[name] = round((time.perf_counter() - t0) * 1000.0, 1)

    # Load both model families first: a missing model is reported before any work is done.
    classifiers = classifiers or models.classifiers()
    segmenter = segmenter or models.segmenter()
    notes += list(getattr(classifiers, "notes", []))

    step("segment")
    t0 = time.perf_counter()
    from ecgcore.read.segmentation import segment_with_margin

    class_map, margin = segment_with_margin(segmenter, rgb)
    if margin is not None:  # kept with the analysis (re-reading with lead boxes, explaining): half the memory
        margin = margin.astype(np.float16)
    lap("segment", t0)
    if (class_map == CURVE).mean() < MIN_CURVE_FRACTION:
        raise DigitizationError("no ECG grid/trace found in this image (no ECG curve was segmented).")

    step("digitize")
    t0 = time.perf_counter()
    dig = _digitize(class_map, layout, margin, lead_boxes=lead_boxes, fs=fs)
    reading = reading_of(dig)
    lap("digitize", t0)
    quality = getattr(dig, "quality", {}) or {}
    if not quality.get("ok", True):
        notes.append("the digitisation quality checks flagged problems; compare the digitised leads with the photo.")
    for key, where in (("row_starts_unread_s", "each row"), ("cell_starts_unread_s", "each lead")):
        if quality.get(key):
            notes.append(f"the first {quality[key]:g} s of {where} were left unread (blank in the record): marks printed "
                         "there, such as lead labels or a filter's hook, joined the trace and broke the limb-lead checks.")
    for lead, entry in (quality.get("derived") or {}).items():
        notes.append(f"{lead} was not read on the photo for {entry['seconds']:g} s; there it is derived from the other "
                     f"limb leads ({lead} = {entry['from']}), as the electrocardiograph computes it, and drawn dotted. "
                     "The limb-lead checks do not count the derived samples.")
    marks = quality.get("pace_marks_s") or []
    if marks:
        notes.append(f"{len(marks)} pacemaker spikes were found (drawn alike in every lead at "
                     f"{', '.join(f'{t:.2f}' for t in marks[:6])}{' ...' if len(marks) > 6 else ''} s) and bridged "
                     "in the digitised leads: a paced rhythm, whose QRS the classifiers were not made to judge.")

    step("classify")
    t0 = time.perf_counter()
    model_probs = {"signal": classifiers.predict_signal(dig)}
    canvas = None
    if classifiers.image is not None:
        from ecgcore.classify.classimage import build_slots, merge_slots

        canvas = merge_slots(build_slots(class_map, dig.leads))
        image_input = canvas.transpose(2, 0, 1).astype(np.float32) / 255.0
        from ecgcore.classify.classifiers import as_probabilities

        model_probs["image"] = as_probabilities(classifiers.image.probabilities(image_input[None])[0])
    lap("classify", t0)
    probabilities = dict(model_probs["signal"])  # the signal model is the stronger one (see the model cards)
    prediction = max(probabilities, key=probabilities.get)

    signal_attr = image_attr = None
    if explain:
        step("explain")
        t0 = time.perf_counter()
        signal_attr = _signal_attribution_on_grid(classifiers, dig)
        if canvas is not None:
            from ecgcore.classify.attribution import image_gradcam
            from ecgcore.classify.classimage import heatmap_to_photo

            heat = image_gradcam(classifiers.image.model, canvas.transpose(2, 0, 1).astype(np.float32) / 255.0)
            image_attr = heatmap_to_photo(heat, dig.leads, rgb.shape[:2])
        lap("explain", t0)
    if on_step is not None:
        on_step("done", 1.0)
    return Analysis(
        image_shape=(int(rgb.shape[0]), int(rgb.shape[1])),
        class_map=class_map,
        curve_margin=margin,
        digitized=dig,
        probabilities=probabilities,
        prediction=prediction,
        model_probabilities=model_probs,
        models=classifiers.models_info(),
        signal_attribution=signal_attr,
        image_attribution=image_attr,
        classification_image=canvas,
        timings_ms=timings,
        notes=notes,
        reading=reading,
    )


def _signal_attribution_on_grid(classifiers, dig) -> np.ndarray:
    """Integrated gradients for MI, mapped from the model's 100 Hz grid onto the digitised signal's samples."""
    from ecgcore.classify.attribution import signal_attribution
    from ecgcore.classify.classifiers import SIGNAL_FS

    attribution = signal_attribution(classifiers.signal.model, classifiers.signal_input(dig), label="mi")
    n = np.asarray(dig.signal).shape[0]
    t = np.arange(n) / float(dig.fs)
    grid = np.arange(attribution.shape[1]) / SIGNAL_FS
    mapped = np.stack([np.interp(t, grid, lead, right=0.0) for lead in attribution])
    return np.where(np.isfinite(np.asarray(dig.signal).T), mapped, 0.0).astype(np.float32)


# How the labels read in sentences for people (keys: ecgcore.constants.LABELS).
LABEL_NAMES_FOR_PEOPLE = {"normal": "normal", "non_mi_abnormality": "non-MI abnormality", "mi": "myocardial infarction"}


def release_memory() -> None:
    """Give the memory freed after an analysis back to the OS (glibc keeps freed heap otherwise): the segmentation
    network's activations for a large photo are hundreds of MB that are used once per upload."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
            pass


def explain_analysis(rgb: np.ndarray, analysis: Analysis, layout: str = "auto", classifiers=None) -> Analysis:
    """``analysis`` with the attributions added (signal model per lead and time; image model on the photo): the same
    reading of the same class map (``layout`` as first asked), not a new segmentation; the timings keep the first run's and add "explain"."""
    explained = analyze_photo(rgb, layout=layout, segmenter=KnownClassMap(analysis.class_map, analysis.curve_margin),
                              classifiers=classifiers, explain=True)
    explained.timings_ms = {**analysis.timings_ms, "explain": explained.timings_ms.get("explain", 0.0)}
    return explained
