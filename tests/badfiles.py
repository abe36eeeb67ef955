"""Makers of awkward and hostile image files, shared by the bad-input tests of the library, the CLI and the app."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def ecg_like(width: int = 640, height: int = 480) -> np.ndarray:
    """A small synthesized ECG photo (RGB uint8) to wrap in various encodings."""
    from ecgcore.photo import synthesize_photo
    from ecgcore.signals import synthetic_record

    return synthesize_photo(synthetic_record(1), 1, size=(width, height)).image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid 1-bit PNG of width x height that compresses to ~100 KB: decoding it whole would need ~1 GB as RGB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    raw = zlib.compressobj(9)
    body = b"".join(raw.compress(row) for _ in range(height)) + raw.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def variants() -> dict[str, bytes]:
    """name -> bytes of files the app must handle (decode to an RGB image)."""
    rgb = Image.fromarray(ecg_like())
    gray16 = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(200)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    frames = [rgb.convert("P"), rgb.rotate(1).convert("P")]
    anim = io.BytesIO()
    frames[0].save(anim, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return {
        "photo.jpg": encode(rgb, "JPEG", quality=90),
        "photo.png": encode(rgb, "PNG"),
        "photo.bmp": encode(rgb, "BMP"),
        "photo.tiff": encode(rgb, "TIFF"),
        "photo.webp": encode(rgb, "WEBP", quality=90),
        "gray.png": encode(rgb.convert("L"), "PNG"),
        "gray16.png": encode(gray16, "PNG"),
        "palette.png": encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "rgba.png": encode(rgba, "PNG"),
        "cmyk.jpg": encode(rgb.convert("CMYK"), "JPEG"),
        "exif_rotated.jpg": encode(rgb, "JPEG", exif=exif.tobytes()),
        "animated.gif": anim.getvalue(),
    }


def bad_files() -> dict[str, bytes]:
    """name -> bytes of files that must be refused with one sentence."""
    good_jpg = encode(Image.fromarray(ecg_like()), "JPEG")
    good_png = encode(Image.fromarray(ecg_like()), "PNG")
    rng = np.random.default_rng(0)
    return {
        "empty.png": b"",
        "text.png": b"this is not an image, just text with a .png name\n" * 20,
        "random.jpg": rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes(),
        "truncated.jpg": good_jpg[: len(good_jpg) // 3],
        "truncated.png": good_png[: len(good_png) // 3],
        "tiny.png": encode(Image.new("RGB", (12, 9), "white"), "PNG"),
        "corrupt.png": good_png[:200] + bytes(rng.integers(0, 256, 5000, dtype=np.uint8)) + good_png[5200:],
    }
