"""Pacing marks: the fixed-height spike a printer draws in every lead at each pacemaker pulse is found and taken
out of the reading (it breaks the limb-lead laws by construction); QRS complexes are never taken for marks."""

from __future__ import annotations

import dataclasses

import numpy as np

from ecgcore.read.digitize import digitize
from ecgcore.read.pacing import find_pace_marks, without_marks
from ecgcore.read.physics import limb_consistency
from ecgcore.synth.render import PaperOptions, render

MARK_TIMES = np.arange(0.35, 9.5, 0.8)


def _with_marks(record, height_mv: float = 1.0):
    """The record with a one-sample spike of ``height_mv`` in all 12 leads at MARK_TIMES (what the printer draws)."""
    signal = record.signal.copy()
    for t in MARK_TIMES:
        signal[int(round(t * record.fs))] += height_mv
    return dataclasses.replace(record, signal=signal)


def test_marks_are_found_and_qrs_complexes_are_not(synthetic):
    marked = _with_marks(synthetic)
    found = find_pace_marks(marked.signal, marked.fs)
    # every mark found is a true one; a mark that lands on a QRS (leads going up and down there) may be missed
    assert len(found) >= len(MARK_TIMES) - 1
    assert all(np.abs(MARK_TIMES - t).min() <= 0.011 for t in found)
    assert find_pace_marks(synthetic.signal, synthetic.fs) == []


def test_bridging_the_marks_restores_the_limb_lead_laws(synthetic):
    marked = _with_marks(synthetic)
    assert min(limb_consistency(marked.signal, marked.fs).values()) < 5
    t = np.arange(len(marked.signal)) / marked.fs
    bridged = np.stack([without_marks(t, marked.signal[:, j], list(MARK_TIMES)) for j in range(12)], axis=1)
    assert min(limb_consistency(bridged, marked.fs).values()) >= 15


def test_a_paced_printout_reads_without_its_marks(synthetic):
    dig = digitize(render(_with_marks(synthetic), "6x2", PaperOptions(px_per_mm=6.0)).mask)
    assert "pacing_marks_removed" in dig.quality["flags"] and len(dig.quality["pace_marks_s"]) >= 5
    assert min(dig.quality["einthoven_db"], dig.quality["goldberger_db"]) >= 10
    plain = digitize(render(synthetic, "6x2", PaperOptions(px_per_mm=6.0)).mask)
    assert "pace_marks_s" not in plain.quality
