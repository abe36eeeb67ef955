"""The prototype's per-lead training crops: each lead's cell cut out of a PTB-V photo along a jittered box.

SEED_NOTES section 4: every corner of the lead's box is moved by N(0, 1% of the image size) and the box is turned
by N(0, 3 deg) about its centre; the box is then warped to an upright rectangle, the photo bilinearly and the class
mask nearest-neighbour, with the same transform, so the crop's mask stays exact.

A crops folder holds ``ID_COPY_BOX_LEAD.png`` (RGB), ``ID_COPY_BOX_LEAD_mask.png`` (class index) and
``crops.json``, the index, which names the source dataset (and its PTB-XL folds, so trainers can check where the records came from).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ecgcore.dataset import DatasetError, iter_samples, open_dataset
from ecgcore.imageio import atomic_write_bytes, decode_png_mask, encode_png
from ecgcore.layouts import LeadBox

CROPS_INDEX = "crops.json"
CROPS_SCHEMA = "ptb-v-crops/1"
CORNER_SD_FRACTION = 0.01  # of the image size (width for x, height for y)
ANGLE_SD_DEG = 3.0


@dataclass
class LeadCrop:
    name: str
    image: np.ndarray  # (h, w, 3) uint8 RGB
    mask: np.ndarray  # (h, w) uint8 class index
    quad: np.ndarray  # (4, 2) the jittered box in photo pixels: TL, TR, BL, BR


def jitter_quad(quad: np.ndarray, image_size: tuple[int, int], rng: np.random.Generator,
                corner_sd: float = CORNER_SD_FRACTION, angle_sd_deg: float = ANGLE_SD_DEG) -> np.ndarray:
    """The prototype's jitter: corners by N(0, corner_sd x image size), then a turn by N(0, angle_sd) deg.

    ``image_size`` is (width, height); the quad is (4, 2) TL, TR, BL, BR in pixels.
    """
    width, height = image_size
    q = np.asarray(quad, np.float64).reshape(4, 2)
    q = q + rng.normal(0.0, 1.0, (4, 2)) * np.array([corner_sd * width, corner_sd * height])
    angle = np.deg2rad(rng.normal(0.0, angle_sd_deg))
    c, s = np.cos(angle), np.sin(angle)
    centre = q.mean(axis=0)
    # Image y points down, so this turns the box counter-clockwise on screen for a positive angle.
    rot = np.array([[c, s], [-s, c]])
    return (q - centre) @ rot.T + centre


def crop_quad(image: np.ndarray, mask: np.ndarray, quad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Warp the box ``quad`` (TL, TR, BL, BR) of the photo and mask to an upright rectangle of the box's size.

    Outside the photo the crop is black and the mask background.
    """
    q = np.asarray(quad, np.float32).reshape(4, 2)
    tl, tr, bl, br = q
    # Corners are pixel centres (cv2's convention): a box whose corners are d px apart spans d + 1 pixels.
    out_w = int(round(max(8.0, (np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2))) + 1
    out_h = int(round(max(8.0, (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2))) + 1
    dst = np.array([[0, 0], [out_w - 1, 0], [0, out_h - 1], [out_w - 1, out_h - 1]], np.float32)
    m = cv2.getPerspectiveTransform(q, dst)
    img = cv2.warpPerspective(image, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    msk = cv2.warpPerspective(mask, m, (out_w, out_h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    return img, msk


def lead_crops(image: np.ndarray, mask: np.ndarray, leads: list[LeadBox], rng: np.random.Generator,
               corner_sd: float = CORNER_SD_FRACTION, angle_sd_deg: float = ANGLE_SD_DEG) -> list[LeadCrop]:
    """One jittered crop per lead box of a photo."""
    height, width = image.shape[:2]
    out = []
    for box in leads:
        quad = jitter_quad(box.quad, (width, height), rng, corner_sd, angle_sd_deg)
        img, msk = crop_quad(image, mask, quad)
        out.append(LeadCrop(box.name, img, msk, quad))
    return out


def build_crops(dataset_dir: str | Path, out_dir: str | Path, seed: int = 0, copies: int = 1,
                on_sample: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export jittered lead crops of every kept sample of a PTB-V folder (curated-out samples skipped).

    Each sample's crops depend only on (seed, sample id, copy), so reruns reproduce them. Returns the index.
    """
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    info = open_dataset(dataset_dir)
    if copies < 1:
        raise DatasetError(f"copies must be at least 1, not {copies}.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create the crops folder {out_dir} ({exc.strerror or exc}).") from exc
    if out_dir.resolve() == dataset_dir.resolve():
        raise DatasetError("the crops folder must differ from the dataset folder.")
    entries: list[dict[str, Any]] = []
    for sample in iter_samples(dataset_dir, include_discarded=False):
        image, mask = sample.image(), sample.mask()
        for copy in range(copies):
            rng = np.random.default_rng([int(seed), int(sample.id), copy])
            for k, crop in enumerate(lead_crops(image, mask, sample.leads, rng)):
                # The box index keeps names unique where a layout shows a lead twice (3x4+II's rhythm strip).
                stem = f"{sample.id}_{copy}_{k:02d}_{crop.name}"
                atomic_write_bytes(out_dir / f"{stem}.png", encode_png(crop.image))
                atomic_write_bytes(out_dir / f"{stem}_mask.png", encode_png(crop.mask))
                entries.append({
                    "image": f"{stem}.png", "mask": f"{stem}_mask.png", "sample_id": sample.id,
                    "lead": crop.name, "copy": copy, "quad": np.round(crop.quad, 2).ravel().tolist(),
                    "label": sample.label,
                })
        if on_sample is not None:
            on_sample(sample.id)
    source = info.get("source", {})
    index = {
        "schema": CROPS_SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": str(dataset_dir.resolve()),
        # What trainers need to check the records' folds, without the long id list.
        "source": {k: v for k, v in source.items() if k != "ids"},
        "seed": int(seed),
        "copies": int(copies),
        "jitter": {"corner_sd_fraction": CORNER_SD_FRACTION, "angle_sd_deg": ANGLE_SD_DEG},
        "n_crops": len(entries),
        "crops": entries,
    }
    atomic_write_bytes(out_dir / CROPS_INDEX, (json.dumps(index, indent=1) + "\n").encode())
    return index


def is_crops_folder(folder: str | Path) -> bool:
    return (Path(folder) / CROPS_INDEX).is_file()


def read_crops_index(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CROPS_INDEX
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{folder} has no {CROPS_INDEX}, so it is not a crops folder.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc}).") from exc
    if index.get("schema") != CROPS_SCHEMA:
        raise DatasetError(f"{path} is not a crops index (schema {index.get('schema')!r}).")
    return index


def load_crop(folder: str | Path, entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, class mask) of one crops-index entry."""
    folder = Path(folder)
    bgr = cv2.imread(str(folder / entry["image"]), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"crop {entry['image']} in {folder} cannot be read.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), decode_png_mask(folder / entry["mask"])
