"""The digitiser's result: a 12-lead signal in mV with how it was read (layout, grid, lead boxes, quality) and its
JSON form, the ``OUT/STEM.json`` of ``pipelines.digitize``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecgcore.constants import DEFAULT_GAIN, DEFAULT_PAPER_SPEED, LEAD_INDEX
from ecgcore.layouts import LeadBox
from ecgcore.read.physics import Reading, reading_of


@dataclass
class DigitizedEcg:
    """A digitised 12-lead ECG and how it was read from the image."""

    signal: np.ndarray  # (n, 12) float32 mV, NaN where a lead is not on the image; lead order LEAD_NAMES
    fs: int
    layout: str
    rotation_deg: float
    px_per_mm: float
    leads: list[LeadBox]  # one per lead cell, quads in input-image pixels
    quality: dict[str, Any]  # per lead flags and an overall ``ok``
    paper_speed: float = DEFAULT_PAPER_SPEED
    gain: float = DEFAULT_GAIN
    layout_source: str = "auto"  # auto | given | boxes
    grid: dict[str, Any] = field(default_factory=dict)
    traces: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (lead, (m, 2) image px) for overlays
    class_map: np.ndarray | None = None  # the segmentation it was read from, when digitize_photo made it
    # each cell's own reading before cells of one lead are merged: (lead, first sample, values at fs), in ``leads``'
    # order; the leads a layout shows twice are compared on them
    cell_values: list[tuple[str, int, np.ndarray]] = field(default_factory=list, repr=False)

    @property
    def duration_s(self) -> float:
        return self.signal.shape[0] / self.fs

    def lead(self, name: str) -> np.ndarray:
        return self.signal[:, LEAD_INDEX[name]]

    def reading(self) -> Reading:
        """Whether this reading can be trusted (limb-lead physics, repeated leads, leads read; ecgcore.read.physics)."""
        return reading_of(self)

    def to_json(self) -> dict[str, Any]:
        """What OUT/STEM.json holds: layout, rotation, px per mm, each lead's box and t0/t1, quality flags."""
        return {
            "schema": "ecglab-digitized/1",
            "layout": self.layout,
            "layout_source": self.layout_source,
            "fs": self.fs,
            "n_samples": int(self.signal.shape[0]),
            "duration_s": round(self.duration_s, 6),
            "paper_speed": self.paper_speed,
            "gain": self.gain,
            "rotation_deg": round(self.rotation_deg, 3),
            "px_per_mm": round(self.px_per_mm, 4),
            "grid": self.grid,
            "leads": [box.to_json() for box in self.leads],
            "quality": self.quality,
            "reading": self.reading().to_json(),
        }
