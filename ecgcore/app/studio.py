"""The Augmentation Studio's model, without Streamlit: widget state <-> Preset, slider ranges, and the preview.

Each schema parameter has a distribution-kind widget and one or two argument widgets, keyed ``p:NAME:PART``. The
page stores these in ``st.session_state``; :func:`preset_from_state` turns them into a validated :class:`Preset`,
and :func:`state_from_preset` sets them from a loaded preset.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgcore.signals import EcgRecord
from ecgcore.synth.params import SCHEMA, Dist, Param, Preset, beta, choice, constant, normal, uniform
from ecgcore.synth.photo import Photo, overlay, synthesize_photo

NUMERIC_KINDS = ("normal", "beta", "uniform", "constant")
PREVIEW_SIZE = (800, 600)  # (width, height): <= 900 px wide keeps a re-render within the 250 ms budget
THUMB_SIZE = (400, 300)
BETA_MAX = 60.0


def key(name: str, part: str) -> str:
    """Session-state key of one widget of a parameter (part: kind, mu, sd, a, b, range, value, options; weights:
    not a widget, a categorical parameter's choice weights from a loaded preset)."""
    return f"p:{name}:{part}"


@dataclass(frozen=True)
class SliderSpec:
    """Range and step of one argument slider."""

    low: float
    high: float
    step: float
    fmt: str


def slider_spec(param: Param, part: str) -> SliderSpec:
    """Slider bounds for an argument: values within the parameter's bounds, sd up to half its span, beta a/b."""
    span = float(param.high - param.low)
    if part in ("a", "b"):
        return SliderSpec(0.1, BETA_MAX, 0.1, "%.1f")
    if param.integer:
        return SliderSpec(float(param.low), float(param.high), 1.0, "%d")
    step = _nice_step(span / 1000.0)
    fmt = "%.4f" if step < 0.001 else "%.3f" if step < 0.01 else "%.2f" if step < 0.1 else "%.1f"
    if part == "sd":
        return SliderSpec(0.0, span / 2.0, step, fmt)
    return SliderSpec(float(param.low), float(param.high), step, fmt)


def _nice_step(raw: float) -> float:
    exponent = np.floor(np.log10(raw))
    base = raw / 10**exponent
    nice = 1.0 if base < 2 else 2.0 if base < 5 else 5.0
    return float(nice * 10**exponent)


def _snap(value: float, spec: SliderSpec) -> float:
    """A value inside the slider's range (a preset may hold values the slider grid cannot show exactly)."""
    value = float(np.clip(value, spec.low, spec.high))
    return int(round(value)) if spec.fmt == "%d" else value


def state_from_preset(preset: Preset) -> dict[str, Any]:
    """Widget values that show ``preset``: a kind per parameter and its arguments."""
    state: dict[str, Any] = {}
    for param in SCHEMA:
        dist = preset.dists[param.name]
        if param.categorical:
            if dist.kind == "constant":
                state[key(param.name, "options")] = [dist.args[0]]
                state[key(param.name, "weights")] = {}
            else:
                state[key(param.name, "options")] = [o for o, w in zip(*dist.args) if w > 0]
                # a preset's choice weights (the multiselect shows only which options): kept for the chosen options
                state[key(param.name, "weights")] = {o: w for o, w in zip(*dist.args) if w > 0 and w != 1.0}
            continue
        state[key(param.name, "kind")] = dist.kind
        state.update(_arg_state(param, dist))
    return state


def _arg_state(param: Param, dist: Dist) -> dict[str, Any]:
    k, a = dist.kind, dist.args
    if k == "normal":
        return {key(param.name, "mu"): _snap(a[0], slider_spec(param, "mu")),
                key(param.name, "sd"): _snap(a[1], slider_spec(param, "sd"))}
    if k == "beta":
        return {key(param.name, "a"): _snap(a[0], slider_spec(param, "a")),
                key(param.name, "b"): _snap(a[1], slider_spec(param, "b"))}
    if k == "uniform":
        spec = slider_spec(param, "range")
        return {key(param.name, "range"): (_snap(a[0], spec), _snap(a[1], spec))}
    return {key(param.name, "value"): _snap(a[0], slider_spec(param, "value"))}


def default_args(param: Param, kind: str, current: Dist | None = None) -> dict[str, Any]:
    """Sensible arguments when the user switches a parameter to another kind: centred where the current one is."""
    centre = _centre(param, current or param.default)
    span = float(param.high - param.low)
    if kind == "normal":
        dist = normal(centre, span / 20.0)
    elif kind == "beta":
        dist = beta(2.0, 2.0)
    elif kind == "uniform":
        dist = uniform(max(param.low, centre - span / 10.0), min(param.high, centre + span / 10.0))
    else:
        dist = constant(round(centre) if param.integer else centre)
    return _arg_state(param, dist)


def _centre(param: Param, dist: Dist) -> float:
    k, a = dist.kind, dist.args
    if k == "normal":
        return float(a[0])
    if k == "uniform":
        return (float(a[0]) + float(a[1])) / 2.0
    if k == "beta":
        return float(param.low + (param.high - param.low) * a[0] / (a[0] + a[1]))
    return float(a[0])


def preset_from_state(state: Mapping[str, Any]) -> Preset:
    """The Preset the widgets describe (defaults where a widget is absent); raises PresetError naming a parameter."""
    dists: dict[str, Dist] = {}
    for param in SCHEMA:
        name = param.name
        if param.categorical:
            options = state.get(key(name, "options"))
            if options is None:
                continue
            options = [o for o in param.options if o in options]  # schema order, duplicates dropped
            weights = state.get(key(name, "weights")) or {}
            dists[name] = constant(options[0]) if len(options) == 1 else choice(
                tuple(options), tuple(float(weights.get(o, 1.0)) for o in options))
            continue
        kind = state.get(key(name, "kind"))
        if kind is None:
            continue
        args = {**default_args(param, kind), **{k: v for k, v in state.items() if k.startswith(f"p:{name}:")}}
        if kind == "normal":
            dists[name] = normal(args[key(name, "mu")], args[key(name, "sd")])
        elif kind == "beta":
            dists[name] = beta(args[key(name, "a")], args[key(name, "b")])
        elif kind == "uniform":
            low, high = args[key(name, "range")]
            dists[name] = uniform(low, high)
        else:
            dists[name] = constant(args[key(name, "value")])
    return Preset(dists)


def preset_json(preset: Preset) -> dict[str, Any]:
    """``preset.to_json()``, except that a categorical constant is written as its bare value ("wood"), the form
    ``Preset.from_json`` reads back (it parses a constant object's value as a number)."""
    out = preset.to_json()
    for param in SCHEMA:
        dist = preset.dists[param.name]
        if param.categorical and dist.kind == "constant":
            out[param.name] = dist.args[0]
    return out


def preset_file_json(preset: Preset, name: str, description: str = "") -> dict[str, Any]:
    """What a saved preset file holds (``Preset.from_json`` and ``generate_ptb_v --preset`` read it back)."""
    return {"name": name, "description": description, "params": preset_json(preset)}


def describe(dist: Dist) -> str:
    """Short human text of a distribution, e.g. 'normal(mu=1, sd=0.05)'."""
    parts = []
    for n, v in zip(("mu", "sd") if dist.kind == "normal" else ("a", "b") if dist.kind == "beta"
                    else ("low", "high") if dist.kind == "uniform" else ("value",) if dist.kind == "constant"
                    else ("options", "weights"), dist.args):
        parts.append(f"{n}={v:.4g}" if isinstance(v, float) else f"{n}={v}")
    return f"{dist.kind}(" + ", ".join(parts) + ")"


@dataclass(frozen=True)
class JobsPrefill:
    """What the Studio hands to the Jobs page ("Continue in Jobs"): a PTB-V generation job of the preset it saved,
    with the layout, seed and background choice of the preview. Jobs fills its form with it and leaves the number
    of samples to the user."""

    out: str  # the dataset's name
    preset: str  # the saved preset file
    layout: str
    seed: int
    backgrounds: bool  # draw photo backgrounds from the shared folder
    pipeline: str = "generate_ptb_v"


@dataclass
class Preview:
    """One preview render and what it cost."""

    photo: Photo
    picture: np.ndarray  # what is shown: the photo, optionally with mask and lead boxes drawn on it
    rerender_ms: float  # synthesis + overlay, the part a slider move pays for


def render_preview(record: EcgRecord, preset: Preset, seed: int, layout: str, show_mask: bool = False,
                   show_boxes: bool = False, size: tuple[int, int] = PREVIEW_SIZE,
                   background_files: list[Path] | None = None) -> Preview:
    """Synthesize the preview photo at preview size and draw the requested overlays, timing both."""
    t0 = time.perf_counter()
    photo = synthesize_photo(record, seed=seed, preset=preset, layout=layout, size=size,
                             background_files=background_files, scan_max_side=max(size))
    picture = photo.image
    if show_mask or show_boxes:
        mask = photo.mask if show_mask else np.zeros_like(photo.mask)
        picture = overlay(photo.image, mask, photo.leads if show_boxes else None,
                          annotations=photo.annotations if show_boxes else None)
    return Preview(photo, picture, (time.perf_counter() - t0) * 1000.0)


def draw_grid(record: EcgRecord, preset: Preset, seed: int, layout: str, k: int,
              size: tuple[int, int] = THUMB_SIZE, background_files: list[Path] | None = None) -> list[Photo]:
    """K independent draws from the preset's distributions (seeds seed+1 .. seed+k), at thumbnail size."""
    return [synthesize_photo(record, seed=seed + 1 + i, preset=preset, layout=layout, size=size,
                             background_files=background_files, scan_max_side=max(size)) for i in range(k)]


def uses_folder_background(preset: Preset) -> bool:
    """Whether the preset can draw the 'folder' background (the user's photos)."""
    dist = preset.dists["background"]
    return "folder" in (dist.args[0] if dist.kind == "choice" else (dist.args[0],))


def stage_params(stage: str) -> list[str]:
    return [p.name for p in SCHEMA if p.stage == stage]
