"""Reading any image is bounded in memory and time (the tracker's 22.5 GB runaway on a line chart): every step of
the reader stops with one sentence when the page is not an ECG or its budget is spent, and charts, text and blank
pages through ``pipelines.classify --json`` give one JSON line each, under 2 GB and a minute."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from ecgcore.constants import GRID_X, GRID_Y
from ecgcore.errors import DigitizationError
from ecgcore.layouts import LeadBox
from ecgcore.read import ink as ink_module
from ecgcore.read.budget import read_budget
from ecgcore.read.digitize import MAX_LEAD_BOXES, MAX_RECORD_S, digitize
from ecgcore.read.gridfind import find_grid
from ecgcore.read.ink import MAX_PULSES, PaperInk
from ecgcore.synth.photo import box_outline, overlay
from ecgcore.synth.render import PaperOptions, render
from tests.charts import CHARTS

REPO = Path(__file__).resolve().parents[1]
CHART_PEAK_MB = 2048
CHART_SECONDS = 60.0


def _one_sentence(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message and message.endswith("."), message
    return message


def _grid(shape: tuple[int, int], pitch_x: int, pitch_y: int) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[:, ::pitch_x] = GRID_X
    mask[::pitch_y, :] = GRID_Y
    return mask


# --- the grid fit -----------------------------------------------------------------------------------------------


def test_a_grid_larger_than_any_ecg_paper_is_no_ecg_layout():
    # A chart's fine grid read as 5 mm cells: 1600 px at 2 px/mm would be a sheet 0.8 m wide.
    with pytest.raises(DigitizationError) as info:
        find_grid(_grid((1200, 1600), 10, 10))
    assert "no ECG layout fits" in _one_sentence(info.value) and "mm" in str(info.value)


def test_oblong_grid_cells_are_no_ecg_layout():
    with pytest.raises(DigitizationError) as info:
        find_grid(_grid((600, 800), 50, 10))
    assert "no ECG layout fits" in _one_sentence(info.value)


# --- the ink, pulses, tracking ----------------------------------------------------------------------------------


def test_a_bogus_fit_cannot_size_the_ink_map(synthetic):
    """The app's 'Unable to allocate 11.6 GiB': a fit that maps the trace over kilometres of 'paper' made the coarse
    ink map that large. Now the map is bounded, and such a fit is refused with a sentence."""
    paper = render(synthetic, "3x4", PaperOptions(px_per_mm=6.0))
    fit = find_grid(paper.mask)
    stretched = dataclasses.replace(fit, homography=fit.homography @ np.diag([1000.0, 1000.0, 1.0]),
                                    extent_mm=(-1e7, 1e7, -1e7, 1e7))
    with pytest.raises(DigitizationError) as info:
        ink_module.paper_ink(paper.mask, stretched)
    assert "no ECG layout fits" in _one_sentence(info.value)


def test_too_many_trace_pixels_are_too_many_trace_candidates(synthetic, monkeypatch):
    paper = render(synthetic, "3x4", PaperOptions(px_per_mm=6.0))
    monkeypatch.setattr(ink_module, "MAX_INK_PIXELS", 1000)
    with pytest.raises(DigitizationError) as info:
        digitize(paper.mask)
    assert "too many trace candidates" in _one_sentence(info.value)


def test_a_page_of_pulse_shapes_keeps_the_best_few():
    """A bar chart is a page of steps with flat tops: the layout search pairs every candidate with every layout
    pulse, so the candidates are capped."""
    ppm = ink_module.PULSE_PX_PER_MM
    ink = np.zeros((900, 900), np.uint16)
    shape = ink_module._pulse_shape_mm(25.0, 10.0) * ppm
    for y in range(60, 880, 40):
        for x in range(10, 880, 20):
            cv2.polylines(ink, [np.round(shape + [x, y]).astype(np.int32)], False, 1, 1)
    paper = PaperInk(np.zeros(1), np.zeros(1), 5.0, ink, 0.0, 0.0, ppm)
    pulses = ink_module.find_pulses(paper, 25.0, 10.0)
    assert 0 < len(pulses) <= MAX_PULSES
    assert [p.score for p in pulses] == sorted((p.score for p in pulses), reverse=True)


def test_reading_past_its_time_budget_stops_with_a_sentence(synthetic):
    paper = render(synthetic, "3x4", PaperOptions(px_per_mm=6.0))
    with read_budget(0.0), pytest.raises(DigitizationError) as info:
        digitize(paper.mask)
    assert "budget" in _one_sentence(info.value)
    assert digitize(paper.mask).layout == "3x4"  # the next reading has its own budget


# --- lead boxes typed by hand ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page():
    from ecgcore.signals import synthetic_record

    return render(synthetic_record(seed=7), "3x4", PaperOptions(px_per_mm=6.0))


def _moved(box: LeadBox, **changes) -> LeadBox:
    return dataclasses.replace(box, **changes)


@pytest.mark.parametrize("change, phrase", [
    (lambda b: _moved(b, t1=1_000_000.0), f"t1 <= {MAX_RECORD_S:g}"),  # the editor's 2.24 GiB (1e8, 12) int16
    (lambda b: _moved(b, t1=float("inf")), "t1 <="),
    (lambda b: _moved(b, quad=b.quad + [99_999_999_999.0, 0.0]), "is not on the"),  # the editor's putText crash
    (lambda b: _moved(b, quad=np.full((4, 2), np.nan)), "finite"),
    (lambda b: _moved(b, quad=b.quad * [1.0, 1.0] + np.array([[-1e6, 0], [1e6, 0], [-1e6, 0], [1e6, 0]])),
     "beyond the ECG paper"),  # on the image, but a kilometre wide
])
def test_unusable_lead_boxes_are_refused_with_one_sentence(page, change, phrase):
    boxes = list(page.leads)
    boxes[1] = change(boxes[1])
    with pytest.raises(DigitizationError) as info:
        digitize(page.mask, lead_boxes=boxes)
    assert phrase in _one_sentence(info.value) and boxes[1].name in str(info.value)


def test_too_many_lead_boxes_are_refused(page):
    with pytest.raises(DigitizationError, match=f"at most {MAX_LEAD_BOXES}"):
        digitize(page.mask, lead_boxes=list(page.leads) * 3)


def test_usable_lead_boxes_still_read(page):
    assert digitize(page.mask, lead_boxes=list(page.leads)).layout_source == "boxes"


def test_boxes_off_the_photo_are_drawn_or_skipped_never_a_crash(page):
    rgb = np.full((300, 400, 3), 255, np.uint8)
    quad = np.array([[10.0, 10.0], [110.0, 10.0], [10.0, 60.0], [110.0, 60.0]])
    far = [LeadBox("I", quad + [99_999_999_999.0, 0.0], 0.0, 2.5), LeadBox("II", quad * np.nan, 0.0, 2.5),
           LeadBox("III", quad - [60.0, 30.0], 0.0, 2.5)]  # partly off the photo: drawn, label kept on the photo
    out = overlay(rgb, np.zeros((300, 400), np.uint8), far)
    assert out.shape == rgb.shape and (out != 255).any()
    assert box_outline(far[0].quad, rgb.shape, (4, 18)) is None
    _, org = box_outline(far[2].quad, rgb.shape, (4, 18))
    assert 0 <= org[0] < 400 and 0 <= org[1] < 300


# --- whole pictures through the command line -------------------------------------------------------------------


def test_chart_generators_draw_light_grids_with_dark_lines():
    for name, make in CHARTS.items():
        img = make()
        assert img.shape == (1200, 1600, 3) and img.dtype == np.uint8, name
        assert np.median(img) >= 240, name  # a light page


@pytest.mark.slow
def test_charts_text_and_blank_pages_give_one_json_line_each_within_2_gb_and_a_minute(tmp_path):
    """Each picture in one ``classify --json`` process (models loaded once): one JSON line per image, either an
    error sentence or a reading marked not reliable, the process's own peak RSS under 2 GB, under a minute each."""
    paths = []
    for name, make in CHARTS.items():
        path = tmp_path / f"{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(make(), cv2.COLOR_RGB2BGR))
        paths.append(path)
    peak_file = tmp_path / "peak_kb"
    wrapper = ("import atexit, runpy, sys\n"
               "def peak():\n"
               "    kb = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
               f"    open({str(peak_file)!r}, 'w').write(str(kb))\n"
               "atexit.register(peak)\n"
               "sys.argv = ['classify', *sys.argv[1:]]\n"
               "runpy.run_module('pipelines.classify', run_name='__main__')\n")
    if not Path("/proc/self/status").is_file():
        pytest.skip("the peak memory is read from /proc (Linux)")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", wrapper, *map(str, paths), "--json"], cwd=REPO, capture_output=True,
                          text=True, timeout=CHART_SECONDS * (len(paths) + 1))
    wall = time.perf_counter() - t0
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [line["image"] for line in lines] == [str(p) for p in paths], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for line in lines:
        assert ("error" in line and "\n" not in line["error"]) or not line["digitization"]["quality_ok"], line
    peak_mb = int(peak_file.read_text()) / 1024
    assert peak_mb < CHART_PEAK_MB, f"peak RSS {peak_mb:.0f} MB"
    assert wall < CHART_SECONDS * len(paths), f"{wall:.0f} s for {len(paths)} pictures"
