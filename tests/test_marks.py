"""Small marks beside the trace (lead labels, dots, ticks taken for trace) are dropped from the ink; pieces of a
broken trace and the trace's own spikes are kept (ecgcore.read.ink.without_marks_beside_trace)."""

from __future__ import annotations

import numpy as np

from ecgcore.read.ink import ink_of_points, without_marks_beside_trace

PX = 10.0  # points per mm along each made-up stroke


def _stroke(u0: float, u1: float, v0: float, v1: float) -> tuple[np.ndarray, np.ndarray]:
    n = int(max(abs(u1 - u0), abs(v1 - v0)) * PX) + 1
    return np.linspace(u0, u1, n), np.linspace(v0, v1, n)


def _ink(*strokes):
    return ink_of_points(np.concatenate([s[0] for s in strokes]), np.concatenate([s[1] for s in strokes]), PX)


def _count(paper, u0: float, u1: float, v0: float, v1: float) -> int:
    return int(np.sum((paper.u >= u0) & (paper.u <= u1) & (paper.v >= v0) & (paper.v <= v1)))


def _trace_with_spike():
    """A row's trace at v = 50 mm from u = 10 to 110 with a QRS up to 8 mm tall at u = 40."""
    return [_stroke(10, 39.5, 50, 50), _stroke(39.5, 40, 50, 42), _stroke(40, 40.5, 42, 51), _stroke(40.5, 41, 51, 50),
            _stroke(41, 110, 50, 50)]


def test_a_lead_label_above_the_trace_is_dropped_and_the_trace_kept():
    label = [_stroke(12, 12, 44, 46.5), _stroke(13.5, 13.5, 44, 46.5)]  # "II", 3.5 mm above the trace
    paper = _ink(*_trace_with_spike(), *label)
    out = without_marks_beside_trace(paper)
    assert _count(paper, 11.5, 14, 43.5, 47) > 0 and _count(out, 11.5, 14, 43.5, 47) == 0
    assert _count(out, 10, 110, 49.5, 50.5) == _count(paper, 10, 110, 49.5, 50.5)  # the trace
    assert _count(out, 39, 42, 41.5, 49) == _count(paper, 39, 42, 41.5, 49)  # its spike
    assert out.coverage.sum() < paper.coverage.sum()


def test_pieces_of_a_broken_trace_are_kept():
    pieces = [_stroke(u, u + 2.0, 50, 50.3) for u in np.arange(10, 100, 3.0)]  # 2 mm of trace, 1 mm gaps
    paper = _ink(*pieces)
    out = without_marks_beside_trace(paper)
    assert out.u.size == paper.u.size


def test_a_mark_in_line_with_other_ink_is_kept():
    # a short stroke above the trace that continues another stroke at its height (a wave's top, not a label)
    paper = _ink(*_trace_with_spike(), _stroke(60, 62, 46, 46), _stroke(62.8, 70, 46, 46))
    out = without_marks_beside_trace(paper)
    assert _count(out, 59.5, 62.5, 45.5, 46.5) == _count(paper, 59.5, 62.5, 45.5, 46.5)


def test_a_page_without_marks_is_returned_as_is():
    paper = _ink(*_trace_with_spike())
    assert without_marks_beside_trace(paper) is paper


def test_the_broken_off_tip_of_a_spike_is_kept(monkeypatch):
    # a deep S wave drawn down 9.5 mm whose thin line broke 1 mm before its last 2.5 mm (its tip), on both flanks
    strokes = [_stroke(10, 60, 50, 50), _stroke(60, 60.3, 50, 56), _stroke(60.35, 60.5, 57, 59.5),
               _stroke(60.5, 60.65, 59.5, 57), _stroke(60.7, 61, 56, 50), _stroke(61, 110, 50, 50)]
    paper = _ink(*strokes, _stroke(20, 20, 44, 46.5))  # and a label "I" above the flat trace
    tip = (60.3, 60.7, 56.8, 59.7)
    out = without_marks_beside_trace(paper)
    assert _count(out, *tip) == _count(paper, *tip) > 0
    assert _count(out, 19.5, 20.5, 43.5, 47) == 0
    # the tip is a piece of its own, beside the trace: only the stroke pointing at it keeps it
    monkeypatch.setattr("ecgcore.read.ink.MARK_STROKE_MM", 100.0)
    assert _count(without_marks_beside_trace(paper), *tip) == 0
