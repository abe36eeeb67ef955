"""The paper grid fit on wavy paper: a smooth displacement the homography and curl cannot describe (a page
photographed on an uneven surface) is followed by the warp, and flat paper keeps the plain fit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ecgcore.constants import GRID_X, GRID_Y
from ecgcore.read.digitize import digitize
from ecgcore.read.gridfind import MAJOR_MM, find_grid
from ecgcore.read.physics import limb_consistency
from ecgcore.synth.render import PaperOptions, render

PX_PER_MM = 6.0


def _wavy(class_map: np.ndarray, amplitude_mm: float, wavelength_mm: float = 150.0) -> np.ndarray:
    """The class map seen through a smooth wave: each point moves along x by amplitude * sin(y / ...) and along y
    by amplitude * cos(x / ...) (a few millimetres of paper per wave, as on a sheet that is not flat)."""
    h, w = class_map.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = amplitude_mm * PX_PER_MM
    k = 2 * np.pi / (wavelength_mm * PX_PER_MM)
    map_x = xx + a * np.sin(k * yy) * np.sin(0.7 * k * xx)
    map_y = yy + a * np.cos(0.8 * k * xx)
    return cv2.remap(class_map, map_x, map_y, interpolation=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)


def _line_residuals(class_map: np.ndarray) -> float:
    """RMS distance (mm) of the major-line pixels to their nearest line under the fit."""
    fit = find_grid(class_map)
    out = []
    for cls, axis in ((GRID_X, 0), (GRID_Y, 1)):
        ys, xs = np.nonzero(class_map == cls)
        uv = fit.to_paper(np.stack([xs, ys], axis=1).astype(np.float64))[:, axis]
        r = uv - MAJOR_MM * np.round(uv / MAJOR_MM)
        out.append(r[np.abs(r) < 1.2])
    return float(np.sqrt(np.mean(np.concatenate(out) ** 2)))


@pytest.fixture(scope="module")
def page(synthetic):
    return render(synthetic, "6x2", PaperOptions(px_per_mm=PX_PER_MM))


def test_flat_paper_keeps_the_plain_fit(page):
    fit = find_grid(page.mask)
    assert fit.warp is None and fit.warp_mm == 0.0


def test_a_wave_is_followed_and_the_mapping_inverts(page):
    wavy = _wavy(page.mask, amplitude_mm=0.8)
    fit = find_grid(wavy)
    assert fit.warp is not None and fit.warp_mm > 0.3
    assert _line_residuals(wavy) < 0.12  # flat paper: 0.08; the homography + curl alone leave 0.3 here
    xy = np.array([[100.0, 100.0], [700.0, 500.0], [1200.0, 300.0]])
    assert np.abs(fit.to_image(fit.to_paper(xy)) - xy).max() < 0.01


def test_wavy_page_reads_with_its_limb_leads_in_agreement(page, synthetic):
    dig = digitize(_wavy(page.mask, amplitude_mm=0.8))
    assert dig.layout == "6x2" and dig.grid["warp_mm"] > 0.3
    laws = limb_consistency(dig.signal, dig.fs)
    assert min(laws.values()) >= 10.0, laws
