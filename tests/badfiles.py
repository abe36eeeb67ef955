"""Makers of awkward and hostile image files, shared by the bad-input tests of the library, the CLI and the app."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def ecg_like(width: int = 640, height: int = 480) -> np.ndarray:
    """A small synthesized ECG photo (RGB uint8) to wrap in various encodings."""
    from ecgcore.signals import synthetic_record
    from ecgcore.synth.photo import synthesize_photo

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


def apng(frames: list[np.ndarray]) -> bytes:
    """An animated PNG (APNG) of the given RGB frames."""
    images = [Image.fromarray(f) for f in frames]
    return encode(images[0], "PNG", save_all=True, append_images=images[1:], duration=200, loop=0)


def exif_upright(rgb: np.ndarray) -> bytes:
    """A JPEG as a phone stores a portrait-held shot: the pixels are turned a quarter left and the EXIF orientation
    (6, rotate 90 degrees clockwise to display) turns them back, so the image is upright only when EXIF is applied."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.fromarray(np.ascontiguousarray(np.rot90(rgb, k=1))), "JPEG", quality=92, exif=exif.tobytes())


def ecg_paper_without_trace(width: int = 800, height: int = 600, px_per_mm: float = 5.0) -> np.ndarray:
    """Blank ECG paper: the red 1 mm / 5 mm grid and nothing drawn on it (RGB uint8)."""
    from ecgcore.constants import GRID_COLORS

    major, minor = GRID_COLORS["red"]
    image = np.full((height, width, 3), 255, np.uint8)
    mm_x = np.arange(0, width / px_per_mm)
    mm_y = np.arange(0, height / px_per_mm)
    for mm_positions, axis in ((mm_x, 1), (mm_y, 0)):
        for major_line in (False, True):
            picked = mm_positions[(mm_positions % 5 == 0) == major_line]
            pixels = np.round(picked * px_per_mm).astype(int)
            if axis == 1:
                image[:, pixels] = major if major_line else minor
            else:
                image[pixels, :] = major if major_line else minor
    return image


def room_photo(width: int = 900, height: int = 650, seed: int = 0) -> np.ndarray:
    """A photo with no ECG in it: a lit wall and floor, a window, a table and sensor noise (RGB uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    wall = np.stack([200 - yy / 8 + xx / 30, 185 - yy / 9, 160 - yy / 10], axis=-1)
    image = wall.copy()
    floor = yy > 0.7 * height
    image[floor] = np.stack([120 + xx / 40, 85 + xx / 60, 60 + 0 * xx], axis=-1)[floor]
    image[80:300, 550:800] = (170, 205, 240)  # window
    image[80:300, 672:678] = image[188:194, 550:800] = (90, 80, 70)  # window bars
    image[380:420, 120:520] = (110, 70, 40)  # table top
    image[420:560, 140:160] = image[420:560, 480:500] = (90, 55, 30)  # legs
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def odd_inputs() -> dict[str, bytes]:
    """name -> bytes of readable images that are odd as ECG photos: upright after EXIF, animated PNG, blank paper,
    plain white paper, a room without an ECG, a very small image and one just above the size limit."""
    rgb = ecg_like()
    return {
        "exif_upright.jpg": exif_upright(rgb),
        "animated.png": apng([rgb, np.ascontiguousarray(rgb[::-1, ::-1])]),
        "blank_ecg_paper.png": encode(Image.fromarray(ecg_paper_without_trace()), "PNG"),
        "white_paper.jpg": encode(Image.new("RGB", (800, 600), (246, 244, 238)), "JPEG"),
        "room.jpg": encode(Image.fromarray(room_photo()), "JPEG", quality=90),
        "small_20x15.png": encode(Image.fromarray(rgb).resize((20, 15), Image.Resampling.BILINEAR), "PNG"),
        "small_96x72.png": encode(Image.fromarray(rgb).resize((96, 72), Image.Resampling.LANCZOS), "PNG"),
    }


def fake_ptbxl(root, per_fold: tuple[int, ...] = (5, 5, 5, 5, 5, 5, 5, 5, 6, 6)):
    """A tiny folder in PTB-XL's layout (ptbxl_database.csv + records100/) of synthetic 12-lead records, per_fold[k]
    records in strat_fold k+1, labels cycling normal / non-MI abnormality / MI: for training and fault tests that
    must not depend on the real data. Returns the folder (a pathlib.Path)."""
    from pathlib import Path

    import pandas as pd
    import wfdb

    from ecgcore.constants import LEAD_NAMES
    from ecgcore.signals import synthetic_record

    root = Path(root)
    codes = ["{'NORM': 100.0}", "{'AFLT': 100.0}", "{'IMI': 100.0}"]
    rows = []
    ecg_id = 0
    for fold, n in enumerate(per_fold, start=1):
        for _ in range(n):
            ecg_id += 1
            rel = f"records100/00000/{ecg_id:05d}_lr"
            folder = (root / rel).parent
            folder.mkdir(parents=True, exist_ok=True)
            wfdb.wrsamp(f"{ecg_id:05d}_lr", fs=100, units=["mV"] * 12, sig_name=list(LEAD_NAMES),
                        p_signal=synthetic_record(ecg_id, fs=100).signal.astype(np.float64), fmt=["16"] * 12,
                        adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder))
            rows.append({"ecg_id": ecg_id, "patient_id": 1000 + ecg_id, "scp_codes": codes[ecg_id % 3],
                         "strat_fold": fold, "filename_lr": rel,
                         "filename_hr": f"records500/00000/{ecg_id:05d}_hr"})
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    return root
