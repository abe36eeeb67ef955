"""Makers of pictures that look a little like an ECG printout to a segmenter but are not one: line charts, sines and
bar charts drawn with cv2 on a light grid, a page of text and a blank page (all about 1600x1200, RGB uint8).

They reproduce the tracker's runaway (a 1600x1200 PNG of three random walks on a light grid drove the reader to
22.5 GB) and keep every step of reading bounded: each must end in one sentence or a reading marked not reliable.
"""

from __future__ import annotations

import cv2
import numpy as np

SIZE = (1600, 1200)  # width, height
GRID_PX = 40  # major grid pitch of the charts (a light, regular lattice like a spreadsheet's)


def _canvas(size: tuple[int, int] = SIZE, grid_px: int = GRID_PX, minor: bool = True) -> np.ndarray:
    """A near-white page with a light grey (or pale blue) grid and darker axes, like a plotting library's figure."""
    w, h = size
    img = np.full((h, w, 3), 248, np.uint8)
    if minor:
        for x in range(0, w, grid_px // 5):
            cv2.line(img, (x, 0), (x, h - 1), (236, 238, 244), 1)
        for y in range(0, h, grid_px // 5):
            cv2.line(img, (0, y), (w - 1, y), (236, 238, 244), 1)
    for x in range(0, w, grid_px):
        cv2.line(img, (x, 0), (x, h - 1), (205, 210, 222), 1)
    for y in range(0, h, grid_px):
        cv2.line(img, (0, y), (w - 1, y), (205, 210, 222), 1)
    cv2.line(img, (80, h - 80), (w - 40, h - 80), (40, 40, 40), 2)
    cv2.line(img, (80, 40), (80, h - 80), (40, 40, 40), 2)
    return img


def _polyline(img: np.ndarray, ys: np.ndarray, colour: tuple[int, int, int], thickness: int = 2) -> None:
    w = img.shape[1]
    xs = np.linspace(90, w - 50, len(ys))
    pts = np.round(np.stack([xs, ys], axis=1) * 16).astype(np.int32)
    cv2.polylines(img, [pts], False, colour, thickness, cv2.LINE_AA, 4)


def random_walks(seed: int = 0, n: int = 3, size: tuple[int, int] = SIZE) -> np.ndarray:
    """The tracker's chart: ``n`` random walks (dark, thin lines) over the whole plot area on a light grid."""
    rng = np.random.default_rng(seed)
    img = _canvas(size)
    h = size[1]
    colours = [(30, 30, 30), (200, 40, 40), (40, 80, 200), (30, 140, 60)]
    for i in range(n):
        walk = np.cumsum(rng.normal(0.0, 6.0, 1500))
        walk = (walk - walk.min()) / max(np.ptp(walk), 1e-9)
        _polyline(img, 60 + walk * (h - 160), colours[i % len(colours)])
    return img


def sines(seed: int = 0, n: int = 4, size: tuple[int, int] = SIZE) -> np.ndarray:
    """``n`` sine waves of different periods, one above the other, across the plot (rows of trace, like a 3x4)."""
    rng = np.random.default_rng(seed)
    img = _canvas(size)
    h = size[1]
    t = np.linspace(0.0, 1.0, 2000)
    for i in range(n):
        centre = 100 + (i + 0.5) * (h - 200) / n
        ys = centre + 0.3 * (h - 200) / n * np.sin(2 * np.pi * rng.uniform(3, 25) * t + rng.uniform(0, 6))
        _polyline(img, ys, (20, 20, 20))
    return img


def bars(seed: int = 0, n: int = 24, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A bar chart: ``n`` outlined bars of random heights on the grid (steps, flat tops: pulse-like shapes)."""
    rng = np.random.default_rng(seed)
    img = _canvas(size)
    w, h = size
    base = h - 80
    step = (w - 160) / n
    for i in range(n):
        x0 = int(100 + i * step)
        x1 = int(x0 + 0.6 * step)
        top = int(base - rng.uniform(0.1, 0.9) * (h - 160))
        cv2.rectangle(img, (x0, top), (x1, base), (30, 30, 30), 2)
        cv2.rectangle(img, (x0 + 2, top + 2), (x1 - 2, base - 2), (170, 190, 230), -1)
    return img


def text_page(seed: int = 0, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A page of typed text lines (no grid)."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.full((h, w, 3), 250, np.uint8)
    words = ["patient", "rhythm", "sinus", "report", "normal", "axis", "interval", "the", "of", "and", "ECG", "mm/s"]
    for y in range(80, h - 60, 42):
        line = " ".join(rng.choice(words, 12))
        cv2.putText(img, line, (70, y), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (25, 25, 25), 2, cv2.LINE_AA)
    return img


def blank_page(size: tuple[int, int] = SIZE) -> np.ndarray:
    """A blank, slightly uneven white page."""
    w, h = size
    shade = np.linspace(240, 252, w, dtype=np.float32)[None, :, None]
    return np.broadcast_to(shade, (h, w, 3)).astype(np.uint8).copy()


CHARTS = {
    "random_walks": random_walks,
    "random_walks_1": lambda: random_walks(seed=1),
    "sines": sines,
    "bars": bars,
    "text_page": text_page,
    "blank_page": blank_page,
}
