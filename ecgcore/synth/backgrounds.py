"""Surfaces for the paper to lie on: procedural textures (deterministic by seed) or a folder of user photos.

Textures are built at a quarter of the output size from smooth noise and resized, so a background costs a few
milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ecgcore.errors import DataSourceError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: float, octaves: int = 4) -> np.ndarray:
    """Fractal value noise in [0, 1] of ``shape`` (h, w), with ``cells`` blobs across the first octave."""
    h, w = shape
    out = np.zeros((h, w), np.float32)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        n = max(2, int(cells * 2**octave))
        grid = rng.random((max(2, int(n * h / max(w, 1))) + 1, n + 1)).astype(np.float32)
        out += amplitude * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amplitude
        amplitude *= 0.5
    out /= total
    return np.clip((out - out.min()) / max(float(np.ptp(out)), 1e-6), 0, 1)


def _colorize(gray: np.ndarray, dark: np.ndarray, light: np.ndarray) -> np.ndarray:
    return dark[None, None, :] + (light - dark)[None, None, :] * gray[..., None]


def _wood(rng, h, w):
    base = np.array([rng.uniform(60, 120), rng.uniform(35, 70), rng.uniform(15, 40)], np.float32)
    light = base * rng.uniform(1.5, 2.2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    warp = smooth_noise(rng, (h, w), 3) * rng.uniform(8, 20)
    grain_axis = xx if rng.random() < 0.5 else yy
    rings = 0.5 + 0.5 * np.sin((grain_axis / w * rng.uniform(25, 60)) + warp)
    fine = smooth_noise(rng, (h, w), 40, octaves=2)
    gray = 0.65 * rings + 0.35 * fine
    img = _colorize(gray, base, light)
    plank = int(rng.uniform(0.2, 0.5) * (h if grain_axis is xx else w))
    if grain_axis is xx:
        img[::plank, :] *= 0.45
    else:
        img[:, ::plank] *= 0.45
    return img


def _cloth(rng, h, w):
    # muted fabric colours: a random hue mixed with grey
    grey = rng.uniform(60, 200)
    color = (0.55 * grey + 0.45 * rng.uniform(30, 230, size=3)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(1.5, 3.0)
    weave = 0.5 + 0.25 * (np.sin(xx * np.pi / period) * np.sin(yy * np.pi / period))
    folds = smooth_noise(rng, (h, w), 2, octaves=2)
    gray = 0.75 + 0.25 * weave + 0.3 * (folds - 0.5)
    return color[None, None, :] * gray[..., None]


def _desk(rng, h, w):
    tone = rng.choice([rng.uniform(20, 60), rng.uniform(150, 230), rng.uniform(90, 150)])
    tint = rng.normal(0, 12, size=3)
    color = np.clip(tone + tint, 0, 255).astype(np.float32)
    speckle = smooth_noise(rng, (h, w), 80, octaves=1)
    shade = smooth_noise(rng, (h, w), 1.5, octaves=2)
    gray = 0.9 + 0.08 * speckle + 0.15 * (shade - 0.5)
    return color[None, None, :] * gray[..., None]


def _paper_stack(rng, h, w):
    img = _desk(rng, h, w)
    for _ in range(int(rng.integers(2, 5))):
        cw, ch = int(w * rng.uniform(0.4, 0.8)), int(h * rng.uniform(0.4, 0.8))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        angle = rng.uniform(-25, 25)
        box = cv2.boxPoints(((cx, cy), (cw, ch), angle)).astype(np.int32)
        shadow = np.zeros((h, w), np.float32)
        cv2.fillConvexPoly(shadow, box + np.int32([3, 4]), 1.0)
        shadow = cv2.GaussianBlur(shadow, (0, 0), 3)
        img *= (1 - 0.35 * shadow)[..., None]
        sheet = np.zeros((h, w), np.float32)
        cv2.fillConvexPoly(sheet, box, 1.0, cv2.LINE_AA)
        paper_tone = rng.uniform(215, 250) + rng.normal(0, 4, size=3)
        img = img * (1 - sheet[..., None]) + paper_tone[None, None, :].astype(np.float32) * sheet[..., None]
    return img


def _concrete(rng, h, w):
    tone = rng.uniform(90, 190)
    gray = 0.6 * smooth_noise(rng, (h, w), 6, octaves=5) + 0.4 * smooth_noise(rng, (h, w), 60, octaves=2)
    color = np.array([tone, tone * rng.uniform(0.95, 1.03), tone * rng.uniform(0.9, 1.02)], np.float32)
    return color[None, None, :] * (0.75 + 0.5 * gray)[..., None]


def _wall(rng, h, w):
    color = rng.uniform(170, 245, size=3).astype(np.float32)
    gray = 0.94 + 0.06 * smooth_noise(rng, (h, w), 30, octaves=2)
    return color[None, None, :] * gray[..., None]


PROCEDURAL = {"wood": _wood, "cloth": _cloth, "desk": _desk, "paper_stack": _paper_stack, "concrete": _concrete, "wall": _wall}


def procedural_background(kind: str, size: tuple[int, int], seed: int) -> np.ndarray:
    """An RGB uint8 surface of ``size`` (width, height)."""
    if kind not in PROCEDURAL:
        raise ValueError(f"unknown background {kind!r}; choose one of {', '.join(PROCEDURAL)} or 'folder'.")
    width, height = size
    rng = np.random.default_rng(seed)
    small = PROCEDURAL[kind](rng, max(8, height // 4), max(8, width // 4))
    img = cv2.resize(np.clip(small, 0, 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    return img


def list_background_photos(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataSourceError(f"background folder {folder} does not exist.")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataSourceError(f"background folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)}).")
    return files


def folder_background(files: list[Path], size: tuple[int, int], seed: int) -> np.ndarray:
    """A random photo from ``files``, cover-resized and randomly cropped to ``size`` (width, height)."""
    from ecgcore.imageio import read_image

    rng = np.random.default_rng(seed)
    image = read_image(files[int(rng.integers(len(files)))]).rgb
    width, height = size
    scale = max(width / image.shape[1], height / image.shape[0])
    resized = cv2.resize(image, (int(np.ceil(image.shape[1] * scale)), int(np.ceil(image.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y0 = int(rng.integers(0, resized.shape[0] - height + 1))
    x0 = int(rng.integers(0, resized.shape[1] - width + 1))
    return np.ascontiguousarray(resized[y0 : y0 + height, x0 : x0 + width])


def make_background(kind: str, size: tuple[int, int], seed: int, folder_files: list[Path] | None = None) -> np.ndarray:
    if kind == "folder":
        if not folder_files:
            raise DataSourceError("background 'folder' needs a folder of photos (--backgrounds DIR).")
        return folder_background(folder_files, size, seed)
    return procedural_background(kind, size, seed)
