"""Finding the ECG paper's major grid in a segmentation class map: rotation, pitch, perspective and curl.

The result is a mapping from image pixels to paper millimetres in which every major grid line lies on a multiple of
5 mm. It is fitted in four steps, each robust to the mistakes of the one before:

1. Rotation: the angle at which the x = const line pixels (class GRID_X) and the y = const line pixels (GRID_Y)
   project onto the sharpest histograms (a coarse search over +-45 degrees, then a fine one).
2. Pitch: the period of those projections near the centre of the paper, from the harmonic sum of their power
   spectrum (so neither a harmonic nor a sub-harmonic is mistaken for the line spacing), refined by phase coherence.
3. Homography: every grid pixel is assigned to its nearest line (u = 5 i or v = 5 j) and the 8-parameter homography
   is solved linearly (DLT-style) for those targets; assignment and solution alternate while the fitted region grows
   from the centre outwards, so a strong perspective never has to be guessed from the start.
4. Curl: what remains of the y = const lines is modelled as a vertical displacement that depends on the paper's x
   only (a sheet curling around a vertical axis), a low-order polynomial of u fitted together with the homography.
5. Warp: paper that is not flat (a page photographed on a knee, a wavy or creased sheet) bends the lines in ways no
   homography and curl describe: x = const lines wander by up to a millimetre, which is 40 ms of a row's time. What
   remains is modelled as a smooth displacement field (du, dv) on a lattice of WARP_NODE_MM, bilinear between its
   nodes and kept smooth by a penalty on its second differences, fitted to the x = const lines' u residuals and the
   y = const lines' v residuals. It is kept only where it explains a real part of the residual (flat scans and
   synthetic photos keep the plain homography + curl).

Paper coordinates ``(u, v)`` are in mm; the paper's own origin is some multiple of 5 mm away, which the layout
detection in :mod:`ecgcore.read.digitize` settles. Pixel coordinates follow cv2's convention (integer = pixel centre).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgcore.constants import GRID_X, GRID_Y, MAJOR_EVERY, SMALL_CELL_MM
from ecgcore.errors import DigitizationError

MAJOR_MM = MAJOR_EVERY * SMALL_CELL_MM  # 5 mm between major lines
MIN_GRID_PIXELS = 400  # of each class: fewer cannot make several lines
MIN_LINES = 3  # of each direction
MAX_POINTS = 25_000  # per class, for the fits (subsampled, deterministic): plenty for a 0.01 mm fit
PITCH_RANGE_PX = (6.0, 400.0)  # plausible major-grid pitch in pixels (1.2 to 80 px/mm)
INLIER_MM = 1.2  # a grid pixel farther than this from its nearest line does not vote
CURL_DEGREE = 4  # polynomial degree of the vertical displacement v(u) (terms of degree >= 2 only)
WARP_NODE_MM = 20.0  # lattice spacing of the smooth displacement field (a wave of paper spans several cells)
WARP_SMOOTH = 0.1  # weight of the second-difference penalty, relative to the mean data weight of a node
WARP_MIN_GAIN = 0.25  # the warp is kept when it removes at least this fraction of the residual's RMS ...
WARP_MIN_MM = 0.15  # ... and moves some part of the paper by at least this much
WARP_PASSES = 3  # assignment to the nearest line and the field's solve alternate this often
# What a fit must look like to be an ECG paper's grid (a chart's or a spreadsheet's grid can fit too): the paper is at
# most an A3 sheet's long side (420 mm) plus a margin a side, and its cells are square, so the two scales agree
# within what a steep camera angle gives. Everything sized in paper mm downstream (the ink map, the layouts, the
# lead cells) is bounded by these.
MAX_PAPER_MM = 450.0
MAX_ANISOTROPY = 2.0  # larger / smaller of the x and y scales at the grid's centre


@dataclass
class Warp:
    """A smooth displacement field on the paper: ``at(uv)`` is the (du, dv) in mm to subtract from a point that the
    homography and curl place at ``uv``. Nodes every ``step`` mm from ``origin``; bilinear between them."""

    origin: tuple[float, float]
    step: float
    du: np.ndarray  # (rows, cols) node values, rows along v
    dv: np.ndarray

    @property
    def max_mm(self) -> float:
        return float(max(np.abs(self.du).max(), np.abs(self.dv).max()))

    def at(self, uv: np.ndarray) -> np.ndarray:
        idx, w = _bilinear(uv, self.origin, self.step, self.du.shape)
        return np.stack([(self.du.reshape(-1)[idx] * w).sum(axis=1), (self.dv.reshape(-1)[idx] * w).sum(axis=1)], 1)

    def unwarp(self, uv: np.ndarray) -> np.ndarray:
        """The pre-warp point p with p - at(p) = uv (fixed-point iteration: the field is smooth and small)."""
        p = uv.copy()
        for _ in range(6):
            p = uv + self.at(p)
        return p


def _bilinear(uv: np.ndarray, origin: tuple[float, float], step: float,
              shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """For each point, the flat indices of its four lattice nodes and their bilinear weights, (n, 4) each; points
    outside the lattice take the nearest cell's extrapolation clamped at its border."""
    rows, cols = shape
    fu = np.clip(np.nan_to_num((uv[:, 0] - origin[0]) / step), 0.0, cols - 1.0)  # a point at infinity: the border
    fv = np.clip(np.nan_to_num((uv[:, 1] - origin[1]) / step), 0.0, rows - 1.0)
    c0 = np.minimum(np.floor(fu).astype(np.int64), cols - 2)
    r0 = np.minimum(np.floor(fv).astype(np.int64), rows - 2)
    a, b = fu - c0, fv - r0
    idx = np.stack([r0 * cols + c0, r0 * cols + c0 + 1, (r0 + 1) * cols + c0, (r0 + 1) * cols + c0 + 1], axis=1)
    w = np.stack([(1 - a) * (1 - b), a * (1 - b), (1 - a) * b, a * b], axis=1)
    return idx, w


@dataclass
class GridFit:
    """The fitted paper grid: image pixels <-> paper mm.

    ``homography`` maps image (x, y, 1) to paper (u, v') up to scale; the paper's v is then ``v' - curl(u)``.
    """

    homography: np.ndarray  # 3x3, image px -> paper mm (before the curl correction)
    curl_coef: np.ndarray  # coefficients of curl(u) on the normalised variable (u - curl_centre) / curl_scale
    curl_centre: float
    curl_scale: float
    px_per_mm: float  # mean of the x and y scales at the grid's centre
    px_per_mm_xy: tuple[float, float]
    rotation_deg: float  # counter-clockwise on screen, as ecgcore.synth.photo reports it
    perspective: float  # relative change of scale across the grid (0 for an affine mapping)
    curl_mm: float  # largest vertical displacement the curl model explains, mm
    residual_mm: float  # RMS distance of inlier grid pixels to their line
    inlier_fraction: float
    lines_x: int  # distinct x = const lines found
    lines_y: int
    extent_mm: tuple[float, float, float, float]  # (u_min, u_max, v_min, v_max) of the grid pixels
    pitch_source: str = "major grid"
    warp: Warp | None = None  # smooth displacement left after homography + curl (None: the paper is flat enough)

    @property
    def warp_mm(self) -> float:
        """The largest displacement the warp applies anywhere, mm (0 without a warp)."""
        return 0.0 if self.warp is None else self.warp.max_mm

    def curl(self, u: np.ndarray) -> np.ndarray:
        z = (np.asarray(u, np.float64) - self.curl_centre) / self.curl_scale
        return _curl_basis(z) @ self.curl_coef

    def to_paper(self, xy: np.ndarray) -> np.ndarray:
        """(n, 2) image pixels -> (n, 2) paper mm."""
        uv = _apply_h(self.homography, np.asarray(xy, np.float64).reshape(-1, 2))
        uv[:, 1] -= self.curl(uv[:, 0])
        if self.warp is not None:
            uv -= self.warp.at(uv)
        return uv

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        """(n, 2) paper mm -> (n, 2) image pixels (the inverse of :meth:`to_paper`; exact without a warp, to far
        below a pixel with one)."""
        uv = np.asarray(uv, np.float64).reshape(-1, 2).copy()
        if self.warp is not None:
            uv = self.warp.unwarp(uv)
        uv[:, 1] += self.curl(uv[:, 0])
        return _apply_h(np.linalg.inv(self.homography), uv)

    def to_json(self) -> dict:
        return {
            "px_per_mm": round(self.px_per_mm, 4),
            "px_per_mm_xy": [round(v, 4) for v in self.px_per_mm_xy],
            "rotation_deg": round(self.rotation_deg, 3),
            "perspective": round(self.perspective, 4),
            "curl_mm": round(self.curl_mm, 3),
            "residual_mm": round(self.residual_mm, 4),
            "inlier_fraction": round(self.inlier_fraction, 4),
            "lines": [self.lines_x, self.lines_y],
            "pitch_source": self.pitch_source,
            "warp_mm": round(self.warp_mm, 3),
            "homography": [round(float(v), 9) for v in self.homography.reshape(-1)],
        }


def find_grid(class_map: np.ndarray) -> GridFit:
    """Fit the major grid of a class map (uint8 HxW, classes of :mod:`ecgcore.constants`).

    Raises DigitizationError with one sentence when there is no usable grid.
    """
    if class_map.ndim != 2:
        raise DigitizationError(f"the class map must be a 2-D array of class indices, not shape {class_map.shape}.")
    ys_x, xs_x = np.nonzero(class_map == GRID_X)
    ys_y, xs_y = np.nonzero(class_map == GRID_Y)
    if min(xs_x.size, xs_y.size) < MIN_GRID_PIXELS:
        raise DigitizationError(
            "no ECG grid/trace found: the image shows too few major grid lines "
            f"({xs_x.size} px of x = const and {xs_y.size} px of y = const lines)."
        )
    rng = np.random.default_rng(0)  # fixed: the same image always gives the same fit
    pts_x = _subsample(np.stack([xs_x, ys_x], axis=1).astype(np.float64), MAX_POINTS, rng)
    pts_y = _subsample(np.stack([xs_y, ys_y], axis=1).astype(np.float64), MAX_POINTS, rng)

    # Rotation and pitch come from the centre of the paper, where perspective and curl bend the lines least; the
    # homography then follows the lines outwards. Each family gets its own angle there (perspective shears them).
    centre = np.median(np.vstack([pts_x, pts_y]), axis=0)
    near_x = _nearest_fraction(pts_x, centre, 0.2)
    near_y = _nearest_fraction(pts_y, centre, 0.2)
    angle_x = _find_rotation(pts_x[near_x], "x")
    angle_y = _find_rotation(pts_y[near_y], "y")
    q = _project(pts_x, angle_x, "x")
    p = _project(pts_y, angle_y, "y")
    pitch_x = _find_pitch(q[near_x])
    pitch_y = _find_pitch(p[near_y])
    if pitch_x is None or pitch_y is None:
        raise DigitizationError("no ECG grid/trace found: the grid lines are not evenly spaced.")
    # Both directions share one paper: when one pitch is a multiple of the other, trust the smaller one.
    pitch_x, pitch_y = _reconcile(pitch_x, pitch_y, q[near_x], p[near_y])
    q0 = _phase(q[near_x], pitch_x)
    p0 = _phase(p[near_y], pitch_y)

    # Initial affine mapping: u = 5 (q - q0) / pitch_x, v = 5 (p - p0) / pitch_y.
    cx, sx = np.cos(np.deg2rad(angle_x)), np.sin(np.deg2rad(angle_x))
    cy, sy = np.cos(np.deg2rad(angle_y)), np.sin(np.deg2rad(angle_y))
    h0 = np.array(
        [
            [MAJOR_MM * cx / pitch_x, -MAJOR_MM * sx / pitch_x, -MAJOR_MM * q0 / pitch_x],
            [MAJOR_MM * sy / pitch_y, MAJOR_MM * cy / pitch_y, -MAJOR_MM * p0 / pitch_y],
            [0.0, 0.0, 1.0],
        ]
    )
    return _refine(h0, pts_x, pts_y, centre, pitch_x, pitch_y)


# --- steps ---------------------------------------------------------------------------------------------------


def _subsample(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(points) <= n:
        return points
    return points[np.sort(rng.choice(len(points), n, replace=False))]


def _project(points: np.ndarray, angle_deg: float, family: str) -> np.ndarray:
    """Coordinate of each pixel across its line family, for a paper turned ``angle_deg`` counter-clockwise.

    The paper's x axis points along (cos a, -sin a) in the image and its y axis along (sin a, cos a).
    """
    a = np.deg2rad(angle_deg)
    if family == "x":
        return points[:, 0] * np.cos(a) - points[:, 1] * np.sin(a)
    return points[:, 0] * np.sin(a) + points[:, 1] * np.cos(a)


def _sharpness(values: np.ndarray, bin_px: float) -> float:
    idx = np.floor((values - values.min()) / bin_px).astype(np.int64)
    counts = np.bincount(idx).astype(np.float64)
    return float((counts**2).sum()) / max(1.0, float(values.size)) ** 2


def _find_rotation(points: np.ndarray, family: str) -> float:
    """The angle at which one line family's projection is sharpest: coarse (+-45 deg), then finer and finer."""
    coarse = _subsample(points, 15_000, np.random.default_rng(1))
    best = max(np.arange(-45.0, 45.0 + 1e-9, 0.5), key=lambda a: _sharpness(_project(coarse, a, family), 3.0))
    best = max(np.arange(best - 0.6, best + 0.6 + 1e-9, 0.1), key=lambda a: _sharpness(_project(points, a, family), 1.5))
    best = max(np.arange(best - 0.12, best + 0.12 + 1e-9, 0.02), key=lambda a: _sharpness(_project(points, a, family), 1.0))
    return float(best)


def _nearest_fraction(points: np.ndarray, centre: np.ndarray, fraction: float) -> np.ndarray:
    d = np.hypot(points[:, 0] - centre[0], points[:, 1] - centre[1])
    return d <= np.quantile(d, fraction)


def _find_pitch(values: np.ndarray) -> float | None:
    """The line spacing (px) of a projected comb of line pixels, from the harmonic sum of its power spectrum."""
    if values.size < MIN_GRID_PIXELS // 2:
        return None
    lo = values.min()
    counts = np.bincount(np.floor(values - lo).astype(np.int64)).astype(np.float64)
    if counts.size < 3 * PITCH_RANGE_PX[0]:
        return None
    counts -= counts.mean()
    n_fft = 1 << int(np.ceil(np.log2(counts.size * 8)))
    power = np.abs(np.fft.rfft(counts, n_fft)) ** 2
    freqs = np.fft.rfftfreq(n_fft)  # cycles per px
    f_lo = max(1.0 / PITCH_RANGE_PX[1], 2.0 / counts.size)
    f_hi = 1.0 / PITCH_RANGE_PX[0]
    cand = freqs[(freqs >= f_lo) & (freqs <= f_hi)]
    if cand.size == 0:
        return None
    harmonic = sum(np.interp(h * cand, freqs, power, right=0.0) for h in (1, 2, 3))
    f = cand[int(np.argmax(harmonic))]
    pitch = 1.0 / f
    # Refine: the pitch at which the line pixels' phases agree best (coherence is sharp at the true period).
    trial = pitch * np.linspace(0.97, 1.03, 121)
    sample = values[:: max(1, values.size // 4000)]
    coherence = np.abs(np.exp(2j * np.pi * sample[None, :] / trial[:, None]).mean(axis=1))
    best = int(np.argmax(coherence))
    if coherence[best] < 0.2:
        return None
    return float(trial[best])


def _reconcile(pitch_x: float, pitch_y: float, q: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """If one direction's pitch is about k times the other's (k >= 2), the larger one skipped lines: check it."""
    ratio = pitch_x / pitch_y
    for k in (2, 3):
        if abs(ratio - k) < 0.15 * k:
            alt = pitch_x / k
            if np.abs(np.exp(2j * np.pi * q / alt).mean()) > 0.3:
                pitch_x = alt
        if abs(1 / ratio - k) < 0.15 * k:
            alt = pitch_y / k
            if np.abs(np.exp(2j * np.pi * p / alt).mean()) > 0.3:
                pitch_y = alt
    return pitch_x, pitch_y


def _phase(values: np.ndarray, pitch: float) -> float:
    """Offset (px) of the comb: values - offset are near multiples of ``pitch``."""
    return float(np.angle(np.exp(2j * np.pi * values / pitch).mean()) * pitch / (2 * np.pi))


def _apply_h(h: np.ndarray, xy: np.ndarray) -> np.ndarray:
    w = xy[:, 0] * h[2, 0] + xy[:, 1] * h[2, 1] + h[2, 2]
    u = (xy[:, 0] * h[0, 0] + xy[:, 1] * h[0, 1] + h[0, 2]) / w
    v = (xy[:, 0] * h[1, 0] + xy[:, 1] * h[1, 1] + h[1, 2]) / w
    return np.stack([u, v], axis=1)


def _curl_basis(z: np.ndarray) -> np.ndarray:
    """Terms z^2 .. z^CURL_DEGREE: the constant and linear parts belong to the homography."""
    z2 = z * z
    return np.stack([z2, z2 * z, z2 * z2][: CURL_DEGREE - 1], axis=-1)


def _refine(h0: np.ndarray, pts_x: np.ndarray, pts_y: np.ndarray, centre: np.ndarray,
            pitch_x: float, pitch_y: float) -> GridFit:
    """Alternate line assignment and a linear homography (+ curl) solve over a region growing from the centre."""
    # Normalise pixel coordinates for a well-conditioned solve; the homography is de-normalised at the end.
    scale = float(max(np.ptp(np.vstack([pts_x, pts_y]), axis=0).max(), 1.0)) / 2
    norm = np.array([[1 / scale, 0, -centre[0] / scale], [0, 1 / scale, -centre[1] / scale], [0, 0, 1]])
    nx = _apply_h(norm, pts_x)
    ny = _apply_h(norm, pts_y)
    h = h0 @ np.linalg.inv(norm)  # maps normalised coords -> paper
    h /= h[2, 2]
    dist_x = np.hypot(nx[:, 0], nx[:, 1])
    dist_y = np.hypot(ny[:, 0], ny[:, 1])
    r_max = float(max(dist_x.max(), dist_y.max()))
    pitch_norm = min(pitch_x, pitch_y) / scale
    radius = 6.0 * pitch_norm  # six major cells from the centre: where the initial guess is surely right
    uv_y = _apply_h(h, ny)
    curl_centre = float(np.median(uv_y[:, 0]))
    curl_scale = float(max(np.ptp(uv_y[:, 0]) / 2, MAJOR_MM))
    coef = np.zeros(CURL_DEGREE - 1)
    passes_at_full = 0
    for _ in range(80):
        at_full = radius >= r_max
        sel_x, sel_y = dist_x <= radius, dist_y <= radius
        uv_x, uv_y = _apply_h(h, nx[sel_x]), _apply_h(h, ny[sel_y])
        basis = _curl_basis((uv_y[:, 0] - curl_centre) / curl_scale)
        v_flat = uv_y[:, 1] - basis @ coef
        k_x = np.round(uv_x[:, 0] / MAJOR_MM)
        k_y = np.round(v_flat / MAJOR_MM)
        in_x = np.abs(uv_x[:, 0] - MAJOR_MM * k_x) < INLIER_MM
        in_y = np.abs(v_flat - MAJOR_MM * k_y) < INLIER_MM
        if in_x.sum() < 50 or in_y.sum() < 50:
            raise DigitizationError("no ECG grid/trace found: the grid lines could not be followed across the image.")
        # The curl joins once the fitted region is wide enough to tell a bend from a tilt.
        use_curl = radius >= 0.4
        pts_y_in = ny[sel_y][in_y]
        w_y = pts_y_in[:, 0] * h[2, 0] + pts_y_in[:, 1] * h[2, 1] + h[2, 2]
        h, coef = _solve(nx[sel_x][in_x], MAJOR_MM * k_x[in_x], pts_y_in, MAJOR_MM * k_y[in_y],
                         basis[in_y] * w_y[:, None] if use_curl else None)
        if at_full:
            passes_at_full += 1
            if passes_at_full >= 4:
                break
        radius = min(radius * 1.2, r_max)

    # Final statistics over every point.
    uv_x, uv_y = _apply_h(h, nx), _apply_h(h, ny)
    v_flat = uv_y[:, 1] - _curl_basis((uv_y[:, 0] - curl_centre) / curl_scale) @ coef
    res_x = uv_x[:, 0] - MAJOR_MM * np.round(uv_x[:, 0] / MAJOR_MM)
    res_y = v_flat - MAJOR_MM * np.round(v_flat / MAJOR_MM)
    in_x, in_y = np.abs(res_x) < INLIER_MM, np.abs(res_y) < INLIER_MM
    residual = float(np.sqrt(np.mean(np.r_[res_x[in_x], res_y[in_y]] ** 2)))
    inliers = float((in_x.sum() + in_y.sum()) / (len(in_x) + len(in_y)))
    lines_x = _count_lines(np.round(uv_x[in_x, 0] / MAJOR_MM))
    lines_y = _count_lines(np.round(v_flat[in_y] / MAJOR_MM))
    if lines_x < MIN_LINES or lines_y < MIN_LINES or inliers < 0.4:
        raise DigitizationError(
            f"no ECG grid/trace found: only {lines_x} x {lines_y} grid lines fit a regular grid "
            f"({inliers:.0%} of grid pixels)."
        )

    homography = h @ norm
    homography /= homography[2, 2]
    u_all = np.r_[uv_x[:, 0], uv_y[:, 0]]
    v_all = np.r_[_apply_h(h, nx)[:, 1], v_flat]
    extent = tuple(float(v) for v in (*np.quantile(u_all, [0.002, 0.998]), *np.quantile(v_all, [0.002, 0.998])))
    curl_z = np.linspace(-1, 1, 41)
    curl_values = _curl_basis(curl_z) @ coef
    fit = GridFit(homography, coef, curl_centre, curl_scale, 0.0, (0.0, 0.0), 0.0, 0.0,
                  float(np.ptp(curl_values)), residual, inliers, lines_x, lines_y, extent)  # type: ignore[arg-type]
    _fill_scales(fit)
    _check_plausible(fit)
    _add_warp(fit, pts_x, pts_y)
    return fit


def _add_warp(fit: GridFit, pts_x: np.ndarray, pts_y: np.ndarray) -> None:
    """Fit the smooth displacement field of step 5 to the lines' residuals and keep it (updating the fit's residual
    and inlier figures) when it explains a real part of them."""
    uv_x, uv_y = fit.to_paper(pts_x), fit.to_paper(pts_y)
    allpts = np.vstack([uv_x, uv_y])
    lo = np.floor(allpts.min(axis=0)) - 1.0
    hi = np.ceil(allpts.max(axis=0)) + 1.0
    shape = (int(np.ceil((hi[1] - lo[1]) / WARP_NODE_MM)) + 1, int(np.ceil((hi[0] - lo[0]) / WARP_NODE_MM)) + 1)
    if min(shape) < 3:
        return  # too small a piece of paper to tell a wave from the homography's own terms
    origin = (float(lo[0]), float(lo[1]))
    idx_x, w_x = _bilinear(uv_x, origin, WARP_NODE_MM, shape)
    idx_y, w_y = _bilinear(uv_y, origin, WARP_NODE_MM, shape)
    smooth = _second_differences(shape)

    # Each pixel keeps the line that homography and curl assign it: a field free to re-assign could slide a region
    # onto the next line, 5 mm away, which the lines alone cannot tell from the right one.
    k_u = np.round(uv_x[:, 0] / MAJOR_MM)
    k_v = np.round(uv_y[:, 1] / MAJOR_MM)

    def residuals(warp: Warp | None) -> tuple[np.ndarray, np.ndarray]:
        u = uv_x[:, 0] - (0.0 if warp is None else warp.at(uv_x)[:, 0])
        v = uv_y[:, 1] - (0.0 if warp is None else warp.at(uv_y)[:, 1])
        return u - MAJOR_MM * k_u, v - MAJOR_MM * k_v

    def rms(res_u: np.ndarray, res_v: np.ndarray) -> float:
        both = np.r_[res_u[np.abs(res_u) < INLIER_MM], res_v[np.abs(res_v) < INLIER_MM]]
        return float(np.sqrt(np.mean(both**2))) if both.size else float("inf")

    res_u, res_v = residuals(None)
    before = rms(res_u, res_v)
    warp = None
    for _ in range(WARP_PASSES):
        in_u, in_v = np.abs(res_u) < INLIER_MM, np.abs(res_v) < INLIER_MM
        if in_u.sum() < 50 or in_v.sum() < 50:
            return
        du = _solve_field(idx_x[in_u], w_x[in_u], uv_x[in_u, 0] - MAJOR_MM * k_u[in_u], smooth, shape)
        dv = _solve_field(idx_y[in_v], w_y[in_v], uv_y[in_v, 1] - MAJOR_MM * k_v[in_v], smooth, shape)
        warp = Warp(origin, WARP_NODE_MM, du, dv)
        res_u, res_v = residuals(warp)
    after = rms(res_u, res_v)
    if warp is None or after > before * (1.0 - WARP_MIN_GAIN) or warp.max_mm < WARP_MIN_MM:
        return
    fit.warp = warp
    in_u, in_v = np.abs(res_u) < INLIER_MM, np.abs(res_v) < INLIER_MM
    fit.residual_mm = after
    fit.inlier_fraction = float((in_u.sum() + in_v.sum()) / (len(in_u) + len(in_v)))


def _second_differences(shape: tuple[int, int]) -> np.ndarray:
    """The operator (as a dense matrix) of the lattice's second differences along u and along v."""
    rows, cols = shape
    n = rows * cols
    ops = []
    for r in range(rows):
        for c in range(1, cols - 1):
            row = np.zeros(n)
            row[[r * cols + c - 1, r * cols + c, r * cols + c + 1]] = (1.0, -2.0, 1.0)
            ops.append(row)
    for r in range(1, rows - 1):
        for c in range(cols):
            row = np.zeros(n)
            row[[(r - 1) * cols + c, r * cols + c, (r + 1) * cols + c]] = (1.0, -2.0, 1.0)
            ops.append(row)
    return np.array(ops).reshape(-1, n)


def _solve_field(idx: np.ndarray, w: np.ndarray, target: np.ndarray, smooth: np.ndarray,
                 shape: tuple[int, int]) -> np.ndarray:
    """Node values of a bilinear field that best fits ``target`` at the points (node indices ``idx``, weights
    ``w``), with the second-difference penalty WARP_SMOOTH and a small pull towards zero where no point lies."""
    n = shape[0] * shape[1]
    pair = (idx[:, :, None] * n + idx[:, None, :]).reshape(-1)
    normal = np.bincount(pair, weights=(w[:, :, None] * w[:, None, :]).reshape(-1), minlength=n * n).reshape(n, n)
    rhs = np.bincount(idx.reshape(-1), weights=(w * target[:, None]).reshape(-1), minlength=n)
    scale = max(float(np.trace(normal)) / n, 1.0)
    system = normal + WARP_SMOOTH * scale * (smooth.T @ smooth) + 1e-3 * scale * np.eye(n)
    return np.linalg.solve(system, rhs).reshape(shape)


def _check_plausible(fit: GridFit) -> None:
    """Refuse a fit that no ECG paper gives (a huge sheet, oblong cells, a mapping that folds): everything read
    in paper mm afterwards would be sized by it."""
    u0, u1, v0, v1 = fit.extent_mm
    width, height = u1 - u0, v1 - v0
    if not (np.isfinite([width, height]).all() and max(width, height) <= MAX_PAPER_MM):
        raise DigitizationError(
            f"no ECG grid/trace found: no ECG layout fits the grid of this image, which would span {width:.0f} x "
            f"{height:.0f} mm, more than any ECG paper (at most {MAX_PAPER_MM:.0f} mm a side)."
        )
    sx, sy = fit.px_per_mm_xy
    ratio = max(sx, sy) / max(min(sx, sy), 1e-9)
    if not np.isfinite(ratio) or ratio > MAX_ANISOTROPY:
        raise DigitizationError(
            f"no ECG grid/trace found: no ECG layout fits the grid of this image, whose cells are {ratio:.1f} times "
            "longer one way than the other (ECG paper has square cells)."
        )


def _count_lines(k: np.ndarray) -> int:
    values, counts = np.unique(k, return_counts=True)
    return int((counts >= max(5, 0.05 * counts.max())).sum())


def _solve(px: np.ndarray, u_target: np.ndarray, py: np.ndarray, v_target: np.ndarray,
           curl_columns: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Least squares for H (h33 = 1) and the curl from u(px) = u_target and v_H(py) = v_target + curl(u(py)).

    Linearised as in the DLT: h11 x + h12 y + h13 - t (h31 x + h32 y) = t for the target t. For the y = const lines
    the curl moves the target: with w = h31 x + h32 y + 1 of the previous estimate and B the curl basis at the
    previous u, the curl adds the columns -B w (``curl_columns`` = B w). Returns (H, curl coefficients).
    """
    n_x, n_y = len(px), len(py)
    # Balance the two families so that one with many more pixels does not dominate the shared perspective terms.
    weight = np.r_[np.full(n_x, np.sqrt(n_y / n_x) if n_x > n_y else 1.0),
                   np.full(n_y, np.sqrt(n_x / n_y) if n_y > n_x else 1.0)]
    n_curl = 0 if curl_columns is None else curl_columns.shape[1]
    a = np.zeros((n_x + n_y, 8 + n_curl))
    b = np.r_[u_target, v_target]
    x, y = px[:, 0], px[:, 1]
    a[:n_x, 0], a[:n_x, 1], a[:n_x, 2] = x, y, 1.0
    a[:n_x, 6], a[:n_x, 7] = -u_target * x, -u_target * y
    x, y = py[:, 0], py[:, 1]
    a[n_x:, 3], a[n_x:, 4], a[n_x:, 5] = x, y, 1.0
    a[n_x:, 6], a[n_x:, 7] = -v_target * x, -v_target * y
    if n_curl:
        a[n_x:, 8:] = -curl_columns
    a *= weight[:, None]
    b = b * weight
    # Normal equations: an 8 to 11 unknown system over up to 10^5 rows, far faster than an SVD-based lstsq; the
    # pixel coordinates are normalised to about [-1, 1], which keeps them well conditioned.
    sol = np.linalg.solve(a.T @ a + 1e-9 * np.eye(a.shape[1]), a.T @ b)
    h = np.append(sol[:8], 1.0).reshape(3, 3)
    coef = sol[8:] if n_curl else np.zeros(CURL_DEGREE - 1)
    return h, coef


def _fill_scales(fit: GridFit) -> None:
    """Scale (px per mm), rotation and perspective strength of a fit, from the local Jacobian of paper -> image."""
    u0, u1, v0, v1 = fit.extent_mm

    def local(u: float, v: float) -> tuple[np.ndarray, np.ndarray]:
        pts = fit.to_image(np.array([[u, v], [u + 1.0, v], [u, v + 1.0]]))
        return pts[1] - pts[0], pts[2] - pts[0]

    cu, cv = (u0 + u1) / 2, (v0 + v1) / 2
    du, dv = local(cu, cv)
    sx, sy = float(np.hypot(*du)), float(np.hypot(*dv))
    fit.px_per_mm_xy = (sx, sy)
    fit.px_per_mm = (sx + sy) / 2
    fit.rotation_deg = float(np.degrees(np.arctan2(-du[1], du[0])))
    corner_scales = []
    for u, v in ((u0, v0), (u1, v0), (u0, v1), (u1, v1)):
        a, b = local(u, v)
        corner_scales.append((np.hypot(*a) + np.hypot(*b)) / 2)
    fit.perspective = float((max(corner_scales) - min(corner_scales)) / fit.px_per_mm)
