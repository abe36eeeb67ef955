"""PTB-V photo synthesis: a rendered paper turned into a simulated phone photo, with exact ground truth.

Every geometric step (scale, skew, rotation, perspective, translation, curl) is composed into one mapping from
paper pixels to photo pixels, and the photo, the class mask and the lead quads all go through that same mapping, so
they can never drift apart (the grid classes nearest-neighbour; the curve class where the traces' ink, resampled like
the image, covers at least CURVE_MASK_MIN_COVERAGE of a photo pixel). The paper is rendered directly at the
resolution it will have in the photo, which keeps lines crisp and the synthesis fast.

Stage order (the prototype's, SEED_NOTES section 2): paper fitted to the photo; shadow on the paper; paper scaled,
skewed and rotated about its centre; pasted on the background at centre + translation; whole photo blurred;
contrast; white noise. Added stages (off by default): perspective, curl, crease, lighting gradient, colour
temperature, motion blur, JPEG quality.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ecgcore.constants import CURVE, CURVE_MASK_MIN_COVERAGE
from ecgcore.imageio import encode_jpeg, encode_png
from ecgcore.layouts import LeadBox, styled_layout
from ecgcore.signals import EcgRecord
from ecgcore.synth.backgrounds import make_background
from ecgcore.synth.params import Preset
from ecgcore.synth.printstyle import Annotation, printer_style
from ecgcore.synth.render import PaperOptions, RenderedPaper, render

DEFAULT_PHOTO_SIZE = (1600, 1200)  # (width, height)
# At scaling factor 1.0 the paper spans 80% of the limiting photo dimension: the prototype's translations
# (sd 5% of the photo) and rotations then rarely push a lead out of the frame.
FIT_MARGIN = 0.8
SCAN_LID_GREY = 248  # the scanner lid, where a skewed page leaves the glass bare


@dataclass
class Photo:
    """A synthesized photo and its ground truth."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, exactly what ``jpeg`` decodes to
    jpeg: bytes
    mask: np.ndarray  # (H, W) uint8 class index
    leads: list[LeadBox]  # quads in photo pixels
    px_per_mm: float
    px_per_mm_xy: tuple[float, float]
    angle_deg: float
    params: dict[str, Any]  # every sampled value
    paper: RenderedPaper
    homography: np.ndarray  # 3x3, paper pixels -> photo pixels (before curl)
    timings_ms: dict[str, float] = field(default_factory=dict)
    # labels, text lines, lead-change marks and pulses with quads in photo pixels (mapped like the lead quads)
    annotations: list[Annotation] = field(default_factory=list)
    image_format: str = "jpeg"  # what ``jpeg`` holds: "jpeg", or "png" (a scan saved losslessly)


def synthesize_photo(
    record: EcgRecord,
    seed: int,
    preset: Preset | None = None,
    layout: str = "seed-3x4",
    paper_options: PaperOptions | None = None,
    size: tuple[int, int] = DEFAULT_PHOTO_SIZE,
    background_files: list[Path] | None = None,
    values: dict[str, Any] | None = None,
    scan_max_side: int | None = None,
) -> Photo:
    """Render ``record`` and photograph it. ``seed`` fixes every random choice; ``values`` overrides drawn values.

    ``paper_options.px_per_mm`` is ignored: the paper is rendered at the resolution the photo gives it. The
    print-stage parameters restyle the printout (at their defaults it is printed exactly as ``paper_options`` says);
    ``capture`` = "scan" makes a flat scan of the page at ``scan_dpi`` instead of a photo, whose size is then the
    page's at that resolution (``size`` is not used); ``scan_max_side`` caps its longer side (the Studio's previews
    show a scan at preview size, as they show photos).
    """
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = timings.get(stage, 0.0) + (now - clock) * 1000.0
        clock = now

    preset = preset or Preset()
    params = preset.sample(seed)
    if values:
        params.update(values)
    width, height = size
    paper_options = paper_options or PaperOptions()
    layout_style, print_style, paper_changes = printer_style(params, seed)
    if paper_changes:
        paper_options = replace(paper_options, **paper_changes)
    lay = styled_layout(layout, paper_options.paper_speed, layout_style)
    if params["capture"] == "scan":
        return _scan(record, seed, params, lay, paper_options, print_style, timings, lap, scan_max_side)

    # 1. Fit the paper to the photo and render it at that resolution.
    fit = params["original_image_scaling_factor"] * FIT_MARGIN
    ppm = max(1.0, fit * min(width / lay.width_mm, height / lay.height_mm))
    paper = render(record, lay, replace(paper_options, px_per_mm=ppm), style=print_style)
    lap("render")

    # 2. Shadow (or flash) and crease on the paper.
    sheet = _shade_paper(paper.image, params, ppm)
    lap("shadow")

    # 3. One mapping paper -> photo for image, mask and quads.
    ph, pw = paper.mask.shape
    homography = _paper_to_photo(pw, ph, width, height, params)
    curl_px = params["paper_curl"] * ph
    rgba = np.dstack([sheet, np.full((ph, pw), 255, np.uint8)])
    warped, mask = _warp(rgba, paper, homography, curl_px, (width, height))
    quads = [_map_points(box.quad, homography, curl_px, pw) for box in paper.leads]
    leads = [LeadBox(box.name, q, box.t0, box.t1) for box, q in zip(paper.leads, quads)]
    annotations = [Annotation(a.kind, a.name, _map_points(a.quad, homography, curl_px, pw), a.text)
                   for a in paper.annotations]
    lap("geometry")

    # 4. Onto the background.
    background = make_background(params["background"], (width, height), seed, background_files)
    alpha = warped[..., 3].astype(np.float32) * (1.0 / 255.0)
    photo = cv2.blendLinear(np.ascontiguousarray(warped[..., :3]), background, alpha, 1.0 - alpha)
    photo = photo.astype(np.float32)
    lap("background")

    # 5. Light, optics, noise, compression.
    photo = _lighting(photo, params)
    lap("lighting")
    photo = _optics(photo, params)
    lap("optics")
    _white_noise(photo, params["white_noise_p"], params["white_noise_sd"], seed)
    image = np.clip(photo + 0.5, 0, 255).astype(np.uint8)
    lap("noise")
    jpeg = encode_jpeg(image, int(params["jpeg_quality"]))
    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    lap("jpeg")

    sx = ppm * params["ecg_paper_scale"]
    sy = sx * params["ecg_paper_y_skew"]
    return Photo(
        image=image,
        jpeg=jpeg,
        mask=mask,
        leads=leads,
        px_per_mm=float((sx + sy) / 2),
        px_per_mm_xy=(float(sx), float(sy)),
        angle_deg=float(params["rotation_angle"]),
        params=params,
        paper=paper,
        homography=homography,
        timings_ms=timings,
        annotations=annotations,
    )


def _scan(record: EcgRecord, seed: int, params: dict[str, Any], lay, paper_options: PaperOptions, print_style,
          timings: dict[str, float], lap, max_side: int | None = None) -> Photo:
    """A flat scan: the page rendered at the scan's dpi, turned by a small skew about its centre on a white
    scanner lid, blurred by the optics, with sensor noise, saved as JPEG or PNG. No background, no light stages."""
    ppm = float(params["scan_dpi"]) / 25.4
    if max_side:
        ppm = min(ppm, max_side / max(lay.width_mm, lay.height_mm))
    paper = render(record, lay, replace(paper_options, px_per_mm=ppm), style=print_style)
    lap("render")
    ph, pw = paper.mask.shape
    a = np.deg2rad(params["scan_skew"])
    c = np.array([(pw - 1) / 2, (ph - 1) / 2])
    rotate = np.array([[np.cos(a), np.sin(a), 0], [-np.sin(a), np.cos(a), 0], [0, 0, 1]], np.float64)
    homography = (np.array([[1, 0, c[0]], [0, 1, c[1]], [0, 0, 1]]) @ rotate
                  @ np.array([[1, 0, -c[0]], [0, 1, -c[1]], [0, 0, 1]]))
    rgba = np.dstack([paper.image, np.full((ph, pw), 255, np.uint8)])
    warped, mask = _warp(rgba, paper, homography, 0.0, (pw, ph))
    leads = [LeadBox(b.name, _map_points(b.quad, homography, 0.0, pw), b.t0, b.t1) for b in paper.leads]
    annotations = [Annotation(x.kind, x.name, _map_points(x.quad, homography, 0.0, pw), x.text)
                   for x in paper.annotations]
    lap("geometry")
    # The scanner lid where the skewed page leaves the glass bare. A scan is several megapixels: blending, blur and
    # noise stay in 8/16-bit integers (cv2), not float images.
    image = np.ascontiguousarray(warped[..., :3])
    edge = np.nonzero(warped[..., 3] < 255)  # only along the page's edges and outside it (a thin strip)
    alpha = warped[..., 3][edge].astype(np.float32)[:, None] * (1.0 / 255.0)
    image[edge] = (image[edge] * alpha + np.float32(SCAN_LID_GREY) * (1.0 - alpha) + 0.5).astype(np.uint8)
    lap("background")
    sigma = params["scan_blur"]
    if sigma >= 0.05:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    lap("optics")
    sd = float(params["scan_noise_sd"])
    if sd > 0:
        cv2.setRNGSeed(int(seed) * 2654435761 % (2**31 - 1) + 1)
        noise = np.empty(image.shape, np.int16)
        cv2.randn(noise, 0.0, sd)
        image = cv2.add(image, noise, dtype=cv2.CV_8U)  # saturating
    lap("noise")
    if params["scan_format"] == "png":
        data, fmt = encode_png(image), "png"
    else:
        data, fmt = encode_jpeg(image, int(params["jpeg_quality"])), "jpeg"
        image = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    lap("jpeg")
    return Photo(image=image, jpeg=data, mask=mask, leads=leads, px_per_mm=ppm, px_per_mm_xy=(ppm, ppm),
                 angle_deg=float(params["scan_skew"]), params=params, paper=paper, homography=homography,
                 timings_ms=timings, annotations=annotations, image_format=fmt)


def _shade_paper(image: np.ndarray, params: dict[str, Any], ppm: float) -> np.ndarray:
    """The prototype's blurred elliptical shadow, plus an optional crease, computed at 1/8 scale (they are smooth)."""
    h, w = image.shape[:2]
    alpha, strength = params["shadow_alpha"], params["crease_strength"]
    if alpha <= 0 and strength <= 0:
        return image
    down = 8
    sh, sw = max(2, h // down), max(2, w // down)
    shade = np.zeros((sh, sw), np.float32)  # 0 = untouched; darkening/brightening amount via colour below
    if alpha > 0:
        start, end = params["shadow_relative_start_point"], params["shadow_relative_end_point"]
        (x0, y0), (x1, y1) = (start * sw, start * sh), (end * sw, end * sh)
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        axes = (abs(x1 - x0) / 2, abs(y1 - y0) / 2)
        ellipse = np.zeros((sh, sw), np.float32)
        cv2.ellipse(ellipse, (centre, (2 * axes[0], 2 * axes[1]), 0.0), 1.0, -1, cv2.LINE_AA)
        sigma = params["shadow_blur_factor"] * ppm / 10.0 / down
        if sigma > 0.1:
            ellipse = cv2.GaussianBlur(ellipse, (0, 0), sigma)
        shade = ellipse * np.float32(alpha)
    out = image.astype(np.float32)
    if alpha > 0:
        weight = cv2.resize(shade, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
        out = out * (1.0 - weight) + np.float32(params["shadow_color"] * 255.0) * weight
    if strength > 0:
        out *= _crease_gain(sw, sh, w, h, params)[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _crease_gain(sw: int, sh: int, w: int, h: int, params: dict[str, Any]) -> np.ndarray:
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    theta = np.deg2rad(params["crease_angle"])
    # signed distance (in small-grid px) from a line through (position * w, h / 2) tilted by theta from vertical
    cx, cy = params["crease_position"] * sw, sh / 2
    dist = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
    s = params["crease_strength"]
    side = 1.0 - 0.22 * s / (1.0 + np.exp(-dist / 1.5))  # the far side of the fold is in shade
    ridge = 1.0 + 0.10 * s * np.exp(-0.5 * (dist / 0.8) ** 2)  # the fold itself catches the light
    return cv2.resize((side * ridge).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def _paper_to_photo(pw: int, ph: int, width: int, height: int, params: dict[str, Any]) -> np.ndarray:
    """3x3 homography: centre the paper, scale/skew, rotate (counter-clockwise on screen), tilt, translate."""
    cx, cy = (pw - 1) / 2, (ph - 1) / 2
    centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], np.float64)
    sx = params["ecg_paper_scale"]
    sy = sx * params["ecg_paper_y_skew"]
    scale = np.diag([sx, sy, 1.0])
    a = np.deg2rad(params["rotation_angle"])
    # y points down in images, so a counter-clockwise turn on screen is this matrix (cv2.getRotationMatrix2D's)
    rotate = np.array([[np.cos(a), np.sin(a), 0], [-np.sin(a), np.cos(a), 0], [0, 0, 1]], np.float64)
    tilt = np.array(
        [[1, 0, 0], [0, 1, 0], [2 * params["perspective_tilt_x"] / pw, 2 * params["perspective_tilt_y"] / ph, 1]],
        np.float64,
    )
    tx = (width - 1) / 2 + params["ecg_paper_relative_translation_x"] * width
    ty = (height - 1) / 2 + params["ecg_paper_relative_translation_y"] * height
    place = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], np.float64)
    return place @ tilt @ rotate @ scale @ centre


def _curl_offset(x: np.ndarray, pw: int, curl_px: float) -> np.ndarray:
    """Vertical displacement of the paper at column x: a parabola, zero at the side edges, curl_px in the middle."""
    u = 2.0 * x / max(pw - 1, 1) - 1.0
    return curl_px * (1.0 - u * u)


def _warp(rgba: np.ndarray, paper: RenderedPaper, homography: np.ndarray, curl_px: float, size: tuple[int, int]):
    """The photo-sized RGBA of the paper, and its class mask.

    The grid classes are resampled nearest-neighbour; the curve class is where the traces' ink, resampled like the
    image (bilinearly), covers at least CURVE_MASK_MIN_COVERAGE of the photo pixel. Resampling the paper's
    thresholded curve mask nearest-neighbour instead would give an aliased trace: which photo pixels it marks would
    depend on which paper pixel happens to be nearest, not on the ink the photo pixel shows.
    """
    width, height = size
    if curl_px == 0:
        def resample(image: np.ndarray, interpolation: int) -> np.ndarray:
            return cv2.warpPerspective(image, homography, (width, height), flags=interpolation,
                                       borderMode=cv2.BORDER_CONSTANT)
    else:
        # With curl the mapping is no longer projective: build the inverse map explicitly. The curl moves paper points
        # vertically by an amount that depends only on x, so its inverse is exact: y_paper = y_curled - offset(x).
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        pts = np.stack([xx, yy], axis=-1).reshape(-1, 1, 2)
        src = cv2.perspectiveTransform(pts, np.linalg.inv(homography)).reshape(height, width, 2)
        map_x = src[..., 0]
        map_y = src[..., 1] - _curl_offset(map_x, rgba.shape[1], curl_px).astype(np.float32)

        def resample(image: np.ndarray, interpolation: int) -> np.ndarray:
            return cv2.remap(image, map_x, map_y, interpolation, borderMode=cv2.BORDER_CONSTANT)

    warped = resample(rgba, cv2.INTER_LINEAR)
    ink = resample(paper.ink, cv2.INTER_LINEAR)
    mask = resample(paper.grid, cv2.INTER_NEAREST)
    mask[ink >= round(CURVE_MASK_MIN_COVERAGE * 255)] = CURVE
    return warped, mask


def _map_points(points: np.ndarray, homography: np.ndarray, curl_px: float, pw: int) -> np.ndarray:
    pts = np.asarray(points, np.float64).copy()
    if curl_px:
        pts[:, 1] += _curl_offset(pts[:, 0], pw, curl_px)
    return cv2.perspectiveTransform(pts.reshape(-1, 1, 2), homography).reshape(-1, 2)


def _white_noise(photo: np.ndarray, p: float, sd: float, seed: int) -> None:
    """Add N(0, sd) to each pixel channel with probability p, in place.

    OpenCV's generator is used for speed (3x numpy's for normals); it is seeded per sample, so the noise is
    deterministic given the seed.
    """
    if p <= 0 or sd <= 0:
        return
    flat = photo.reshape(photo.shape[0], -1)
    cv2.setRNGSeed(int(seed) * 2654435761 % (2**31 - 1) + 1)
    gate = np.empty(flat.shape, np.uint8)
    cv2.randu(gate, 0, 256)
    noise = np.empty(flat.shape, np.float32)
    cv2.randn(noise, 0.0, float(sd))
    if p < 1.0:
        noise[gate >= min(255, int(round(p * 256)))] = 0.0
    flat += noise


def _lighting(photo: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    h, w = photo.shape[:2]
    g = params["lighting_gradient"]
    if g > 0:
        a = np.deg2rad(params["lighting_angle"])
        xs = (np.arange(w, dtype=np.float32) / max(w - 1, 1) - 0.5) * np.float32(np.cos(a))
        ys = (np.arange(h, dtype=np.float32) / max(h - 1, 1) - 0.5) * np.float32(np.sin(a))
        gain = 1.0 - g * (0.5 + xs[None, :] + ys[:, None])  # 1 at the lit side, 1 - g at the far side
        photo *= np.clip(gain, 0.05, 1.5)[..., None]
    k = params["color_temperature"]
    if k:
        photo *= np.array([1.0 + k, 1.0, 1.0 - k], np.float32)
    c = params["contrast"]
    if c != 1.0:
        mean = np.float32(photo.mean())  # PIL's ImageEnhance.Contrast blends with the mean grey level
        photo = mean + np.float32(c) * (photo - mean)
    return photo


def _optics(photo: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    sigma = params["blur_factor"]
    if sigma >= 0.05:
        photo = cv2.GaussianBlur(photo, (0, 0), sigma)
    length = params["motion_blur"]
    if length >= 1.0:
        k = int(np.ceil(length)) | 1
        kernel = np.zeros((k, k), np.float32)
        c = k // 2
        a = np.deg2rad(params["motion_blur_angle"])
        dx, dy = np.cos(a) * length / 2, -np.sin(a) * length / 2
        cv2.line(kernel, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1, cv2.LINE_AA)
        photo = cv2.filter2D(photo, -1, kernel / kernel.sum())
    return photo


# Outline colours (RGB) of the annotation kinds in overlays.
ANNOTATION_COLORS: dict[str, tuple[int, int, int]] = {"label": (0, 190, 0), "text": (170, 0, 200), "mark": (0, 90, 255),
                                                     "pulse": (255, 140, 0)}


def overlay(image: np.ndarray, mask: np.ndarray, leads: list[LeadBox] | None = None, alpha: float = 0.65,
            annotations: list[Annotation] | None = None) -> np.ndarray:
    """The photo with mask classes coloured over it, the lead quads outlined, and optionally the boxes of labels
    (green), text lines (purple), lead-change marks (blue) and pulses (orange) (for people to look at)."""
    from ecgcore.constants import CLASS_COLORS

    out = image.copy()
    colours = np.asarray(CLASS_COLORS, np.uint8)
    on = mask > 0
    out[on] = (out[on] * (1 - alpha) + colours[mask[on]] * alpha).astype(np.uint8)
    for box in leads or []:
        drawable = box_outline(box.quad, out.shape, (4, 18))
        if drawable is None:
            continue
        poly, org = drawable
        cv2.polylines(out, [poly], True, (20, 160, 40), 2, cv2.LINE_AA)
        cv2.putText(out, box.name, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6, (20, 120, 40), 2)
    line = max(1, int(round(max(image.shape[:2]) / 800)))
    for a in annotations or []:
        drawable = box_outline(a.quad, out.shape, (0, 0))
        if drawable is None:
            continue
        cv2.polylines(out, [drawable[0]], True, ANNOTATION_COLORS[a.kind], line, cv2.LINE_AA)
    return out


# Boxes whose corners lie farther than this many image sizes off the image are not drawn: OpenCV takes 32-bit pixel
# coordinates, and nothing of such a box would show anyway.
DRAW_REACH = 4.0


def box_outline(quad: np.ndarray, shape: tuple[int, ...], label_offset: tuple[float, float]
                ) -> tuple[np.ndarray, tuple[int, int]] | None:
    """A lead box's outline (int32 TL, TR, BR, BL) and where its label goes (``label_offset`` from the top-left
    corner, kept on the image), or None when the box cannot be drawn (corners not finite, or far off the image)."""
    q = np.asarray(quad, np.float64).reshape(-1, 2)
    h, w = shape[:2]
    reach = DRAW_REACH * max(h, w)
    if q.shape[0] != 4 or not np.isfinite(q).all() or np.abs(q).max() > reach:
        return None
    poly = np.round(np.array([q[0], q[1], q[3], q[2]])).astype(np.int32)
    x, y = q[0] + np.asarray(label_offset, np.float64)
    return poly, (int(np.clip(x, 0, w - 1)), int(np.clip(y, 0, h - 1)))
