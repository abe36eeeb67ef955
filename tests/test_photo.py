"""Photo synthesis: photo, mask and lead quads move together; every parameter does what its help text says."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ecgcore.constants import CURVE, CURVE_MASK_MIN_COVERAGE, GRID_X, GRID_Y
from ecgcore.errors import DataSourceError
from ecgcore.signals import synthetic_record
from ecgcore.synth.params import Preset
from ecgcore.synth.photo import synthesize_photo

CLEAN = {"white_noise_p": 0.0, "shadow_alpha": 0.0, "blur_factor": 0.0, "jpeg_quality": 100}


@pytest.fixture(scope="module")
def small_record():
    record = synthetic_record(21)
    record.signal *= 0.5  # every deflection stays inside its row
    return record


def _inside(points: np.ndarray, quad: np.ndarray, tol: float) -> np.ndarray:
    polygon = np.array([quad[0], quad[1], quad[3], quad[2]], np.float32)
    dist = np.array([cv2.pointPolygonTest(polygon, (float(x), float(y)), True) for x, y in points])
    return dist >= -tol


@pytest.mark.parametrize("seed, layout", [(1, "seed-3x4"), (2, "3x4+II"), (3, "6x2"), (4, "12x1")])
def test_curve_pixels_lie_on_ink_and_inside_their_lead_quad(small_record, seed, layout):
    preset = Preset.from_json({"rotation_angle": {"dist": "normal", "mu": 0, "sd": 4},
                               "perspective_tilt_x": {"dist": "uniform", "low": -0.05, "high": 0.05}})
    photo = synthesize_photo(small_record, seed, preset, layout=layout, size=(900, 700), values=CLEAN)
    curve = photo.mask == CURVE
    assert curve.sum() > 1000
    # on ink: curve pixels are dark in the photo (background surfaces may be dark too, so compare to the paper)
    _assert_curve_is_ink(photo)
    # inside its own lead quad: warp the per-lead trace map with the same mapping as the photo
    lead_map = cv2.warpPerspective(photo.paper.curve_lead, photo.homography, (900, 700), flags=cv2.INTER_NEAREST)
    # the curve class is the photo pixels the ink covers by >= 20%: the ink resampled like the image, then thresholded
    ink = cv2.warpPerspective(photo.paper.ink, photo.homography, (900, 700), flags=cv2.INTER_LINEAR)
    assert np.array_equal(curve, ink >= round(CURVE_MASK_MIN_COVERAGE * 255))
    # ... and it follows the drawn trace: every curve pixel is within a pixel of it, and most of the 8-connected path
    # is curve (at 3 px/mm the 0.3 mm pen is under a pixel wide: where the path steps diagonally some pixels are
    # barely inked)
    near_trace = cv2.dilate((lead_map > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert near_trace[curve].all() and curve[lead_map > 0].mean() > 0.95
    # elsewhere the classes are the paper's grid, traces left out (a pixel the trace only grazes shows its grid line)
    grid = cv2.warpPerspective(photo.paper.grid, photo.homography, (900, 700), flags=cv2.INTER_NEAREST)
    assert np.array_equal(photo.mask[~curve], grid[~curve]) and {GRID_X, GRID_Y} <= set(np.unique(grid).tolist())
    for i, box in enumerate(photo.leads):
        ys, xs = np.nonzero(lead_map == i + 1)
        pts = np.stack([xs, ys], axis=1)[:: max(1, len(xs) // 400)]
        assert _inside(pts, box.quad, tol=2.5).all(), box.name


def test_same_seed_same_photo_other_seed_other_photo(small_record):
    a = synthesize_photo(small_record, 7, size=(640, 480))
    b = synthesize_photo(small_record, 7, size=(640, 480))
    c = synthesize_photo(small_record, 8, size=(640, 480))
    assert a.jpeg == b.jpeg and np.array_equal(a.mask, b.mask) and a.params == b.params
    assert a.jpeg != c.jpeg


def test_rotation_is_counter_clockwise(small_record):
    photo = synthesize_photo(small_record, 1, size=(900, 700), values={**CLEAN, "rotation_angle": 10.0})
    first_row = [box for box in photo.leads][:4]  # I, aVR, V1, V4 along the top row
    (x0, y0), (x1, y1) = first_row[0].quad[0], first_row[-1].quad[1]
    # counter-clockwise on screen: the right end of the top row is higher (smaller y)
    assert np.degrees(np.arctan2(y0 - y1, x1 - x0)) == pytest.approx(10.0, abs=0.3)
    assert photo.angle_deg == 10.0


def test_quads_follow_the_grid(small_record):
    """A quad corner lies on the paper exactly where the renderer put it: check through the homography."""
    photo = synthesize_photo(small_record, 3, size=(900, 700), values={**CLEAN, "rotation_angle": -3.0})
    paper_quad = photo.paper.leads[5].quad
    mapped = cv2.perspectiveTransform(paper_quad.reshape(-1, 1, 2), photo.homography).reshape(-1, 2)
    np.testing.assert_allclose(mapped, photo.leads[5].quad, atol=1e-6)


@pytest.mark.parametrize(
    "name, value, changes_mask",
    [
        ("perspective_tilt_x", 0.15, True),
        ("paper_curl", 0.05, True),
        ("crease_strength", 1.0, False),
        ("lighting_gradient", 0.6, False),
        ("color_temperature", 0.25, False),
        ("motion_blur", 9.0, False),
        ("jpeg_quality", 15, False),
        ("shadow_alpha", 0.8, False),
        ("white_noise_p", 0.9, False),
        ("blur_factor", 3.0, False),
    ],
)
def test_each_stage_changes_what_it_should(small_record, name, value, changes_mask):
    base = synthesize_photo(small_record, 5, size=(640, 480), values=CLEAN)
    moved = synthesize_photo(small_record, 5, size=(640, 480), values={**CLEAN, name: value})
    diff = np.abs(base.image.astype(int) - moved.image.astype(int)).mean()
    assert diff > 0.5, name
    assert (not np.array_equal(base.mask, moved.mask)) == changes_mask, name


def test_curl_keeps_mask_and_photo_together(small_record):
    photo = synthesize_photo(small_record, 9, size=(800, 600), values={**CLEAN, "paper_curl": 0.06})
    _assert_curve_is_ink(photo)


def _assert_curve_is_ink(photo):
    """Curve pixels are the trace's ink: dark, and clearly darker than the paper right around them (the mask includes
    the trace's anti-aliased fringe, so its lightest pixels are only partly inked)."""
    curve = (photo.mask == CURVE).astype(np.uint8)
    gray = cv2.cvtColor(photo.image, cv2.COLOR_RGB2GRAY).astype(int)
    ring = (cv2.dilate(curve, np.ones((9, 9), np.uint8)) > 0) & (cv2.dilate(curve, np.ones((5, 5), np.uint8)) == 0)
    assert np.median(gray[curve > 0]) < 110
    assert np.percentile(gray[curve > 0], 90) < np.median(gray[ring]) - 30


def test_photo_size_and_px_per_mm(small_record):
    photo = synthesize_photo(small_record, 2, size=(1600, 1200), values={"ecg_paper_scale": 1.0, "ecg_paper_y_skew": 1.0})
    assert photo.image.shape == (1200, 1600, 3) and photo.mask.shape == (1200, 1600)
    # seed-3x4 paper is 226 mm wide: at scaling factor 1 it spans 80% of the width
    assert photo.px_per_mm == pytest.approx(0.8 * 1600 / 226, rel=0.01)


def test_backgrounds_from_a_folder_of_photos(small_record, tmp_path):
    from PIL import Image

    from ecgcore.synth.backgrounds import list_background_photos

    Image.new("RGB", (300, 200), (10, 200, 30)).save(tmp_path / "green.png")
    Image.new("RGB", (400, 300), (10, 200, 30)).save(tmp_path / "green2.jpg")
    files = list_background_photos(tmp_path)
    photo = synthesize_photo(small_record, 1, size=(640, 480), background_files=files,
                             values={**CLEAN, "background": "folder", "original_image_scaling_factor": 0.6})
    corner = photo.image[:20, :20].reshape(-1, 3).mean(axis=0)
    assert corner[1] > 150 and corner[0] < 80  # the user's green surface shows around the paper
    with pytest.raises(DataSourceError, match="has no images"):
        list_background_photos(tmp_path / "empty") if (tmp_path / "empty").mkdir() is None else None


@pytest.mark.parametrize("kind", ["wood", "cloth", "desk", "paper_stack", "concrete", "wall"])
def test_procedural_backgrounds_are_deterministic_textures(kind):
    from ecgcore.synth.backgrounds import procedural_background

    a = procedural_background(kind, (320, 240), 5)
    assert a.shape == (240, 320, 3) and a.dtype == np.uint8
    assert np.array_equal(a, procedural_background(kind, (320, 240), 5))
    assert not np.array_equal(a, procedural_background(kind, (320, 240), 6))
    assert a.std() > 1.0
