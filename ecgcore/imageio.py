"""Safe image input and atomic image output.

``read_image`` accepts a path or bytes, refuses what is not a supported image with one sentence, bounds memory
(huge images are decoded downscaled where the format allows it, refused otherwise, before full decoding), applies
EXIF orientation, and returns 8-bit RGB whatever the mode (grayscale, palette, RGBA, 16-bit, CMYK).
"""

from __future__ import annotations

import functools
import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from ecgcore.errors import ImageError  # noqa: F401  (raised here; defined with the other user errors)

SUPPORTED_FORMATS = {"JPEG", "PNG", "BMP", "TIFF", "WEBP", "MPO", "GIF"}
UPLOAD_TYPES = ("jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp")
# Largest image decoded at full size; bigger JPEGs are decoded downscaled, bigger others refused.
MAX_DECODE_PIXELS = 40_000_000
# Longest side handed to the pipeline; larger images are downscaled after decoding.
MAX_SIDE = 4096
MIN_SIDE = 64
_EXIF_ORIENTATION = 0x0112



@dataclass
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    # (width, height) at the file's full resolution, upright: as stored, with the EXIF orientation applied (a
    # portrait phone shot stored sideways reports its portrait size), so that rgb = original_size * scale.
    original_size: tuple[int, int]
    format: str
    scale: float  # rgb size / original size (1.0 when not downscaled)
    notes: list[str]


def read_image(source: str | os.PathLike | bytes, name: str | None = None, max_side: int = MAX_SIDE) -> LoadedImage:
    """Decode an image file or its bytes into bounded-size 8-bit RGB; raise ImageError with one sentence."""
    label = name or (Path(source).name if not isinstance(source, (bytes, bytearray)) else "the upload")
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        path = Path(source)
        if path.is_dir():
            raise ImageError(f"{label} is a folder, not an image file.")
        if not path.is_file():
            raise ImageError(f"{label}: no such file.")
        data = path.read_bytes()
    if not data:
        raise ImageError(f"{label} is empty (0 bytes).")
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        old_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # we check the size ourselves before decoding
        try:
            try:
                img = Image.open(io.BytesIO(data))
            except Exception:
                raise ImageError(f"{label} is not an image this app can read (JPEG, PNG, BMP, TIFF or WebP).") from None
            fmt = img.format or "unknown"
            if fmt not in SUPPORTED_FORMATS:
                raise ImageError(f"{label} is a {fmt} file; use JPEG, PNG, BMP, TIFF or WebP.")
            width, height = img.size
            if width < MIN_SIDE or height < MIN_SIDE:
                raise ImageError(f"{label} is only {width}x{height} pixels; an ECG photo needs at least {MIN_SIDE} px a side.")
            if getattr(img, "n_frames", 1) > 1:
                notes.append(f"{label} has {img.n_frames} frames; the first is used.")
            if width * height > MAX_DECODE_PIXELS:
                if fmt in ("JPEG", "MPO"):
                    # JPEG decodes at 1/2, 1/4 or 1/8 scale directly: memory stays bounded.
                    target = _fit(width, height, max_side)
                    img.draft("RGB", target)
                    notes.append(f"{label} is {width}x{height} pixels; decoded downscaled.")
                else:
                    mp = width * height / 1e6
                    raise ImageError(
                        f"{label} is {width}x{height} pixels ({mp:.0f} MP), over the {MAX_DECODE_PIXELS / 1e6:.0f} MP limit; "
                        "please downscale it first."
                    )
            try:
                img.load()
                if img.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):  # a quarter turn: sides swap
                    width, height = height, width
                img = ImageOps.exif_transpose(img) or img
                rgb = _to_rgb8(img)
            except ImageError:
                raise
            except Exception:
                raise ImageError(f"{label} is truncated or corrupt and cannot be decoded.") from None
        finally:
            Image.MAX_IMAGE_PIXELS = old_limit
    scale = 1.0
    h, w = rgb.shape[:2]
    if max(h, w) > max_side:
        tw, th = _fit(w, h, max_side)
        rgb = cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_AREA)
        notes.append(f"downscaled from {w}x{h} to {tw}x{th}.")
    scale = rgb.shape[1] / width
    return LoadedImage(np.ascontiguousarray(rgb), (width, height), fmt, scale, notes)


def _fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    s = min(1.0, max_side / max(width, height))
    return max(1, int(round(width * s))), max(1, int(round(height * s)))


def _to_rgb8(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = np.nanmin(arr), np.nanmax(arr)
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        gray = arr.astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


# --- atomic output ----------------------------------------------------------------------------------------


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so that a reader (or a
    killed writer) never sees a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp creates the file 0600; give it the mode an ordinary open() would (0666 less the umask), so
            # that samples and outputs stay readable by the app's user and by people.
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    # The umask can only be read by setting it; do it once, at the first write.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError("JPEG encoding failed")
    return buf.tobytes()


def encode_png(array: np.ndarray) -> bytes:
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError("PNG encoding failed")
    return buf.tobytes()


def decode_png_mask(path: str | os.PathLike) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise ImageError(f"{Path(path).name} is not a readable PNG mask.")
    return mask
