"""The prototype's classification image (SEED_NOTES section 5), built from a segmentation class map.

Each lead's cell is rectified from its quad (so rotation and perspective are undone exactly where the quads are
known), split into one binary channel per foreground class (grid x, grid y, curve: "channel-separated"), and
thumbnailed to at most 210x120 px. The 12 leads are then merged on a 640x640 black canvas: PTB-XL leads 0-3, 4-7,
8-11 in columns 0, 1, 2 (210 px apart), row = index mod 4 (120 px each).

For augmentation and storage a sample is kept as its 12 *slots* (12, 120, 210, 3) uint8, each lead's thumbnail in
the top-left corner of its slot; :func:`merge_slots` places them on the canvas. :func:`augment_slots` is the
prototype's augmentation: in each channel, 1-2 leads come from another sample of the same class, then every lead
is stretched by N(1, 0.1) (at least 0.5) in each direction.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ecgcore.constants import CURVE, GRID_X, GRID_Y, LEAD_INDEX, LEAD_NAMES
from ecgcore.layouts import LeadBox

SLOT_W, SLOT_H = 210, 120
CANVAS = 640
ROWS = 4  # leads per column
CHANNEL_CLASSES: tuple[int, ...] = (GRID_X, GRID_Y, CURVE)  # image channel c holds class CHANNEL_CLASSES[c]
STRETCH_SD = 0.1
STRETCH_MIN = 0.5

CLASS_SET_FILE = "classification_set.json"  # a classification-image set's description (pipelines.build_classification_set)


def slot_origin(lead_index: int) -> tuple[int, int]:
    """(x, y) of a lead's slot on the canvas."""
    return (lead_index // ROWS) * SLOT_W, (lead_index % ROWS) * SLOT_H


def _quad_size(quad: np.ndarray) -> tuple[int, int]:
    tl, tr, bl, br = quad
    width = 0.5 * (np.linalg.norm(tr - tl) + np.linalg.norm(br - bl))
    height = 0.5 * (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr))
    return max(2, int(round(width))), max(2, int(round(height)))


def rectify_lead(class_map: np.ndarray, box: LeadBox) -> np.ndarray:
    """The lead's cell, rectified to an upright rectangle at its own resolution: (h, w, 3) uint8, 255 where a
    pixel of the class map belongs to CHANNEL_CLASSES[c] (bilinear at the cell's edges and slopes)."""
    width, height = _quad_size(box.quad)
    target = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]], np.float32)
    homography = cv2.getPerspectiveTransform(box.quad.astype(np.float32), target)
    one_hot = np.stack([(class_map == c) for c in CHANNEL_CLASSES], axis=-1).astype(np.uint8) * 255
    return cv2.warpPerspective(one_hot, homography, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def thumbnail(image: np.ndarray, max_w: int = SLOT_W, max_h: int = SLOT_H) -> np.ndarray:
    """Shrink (never enlarge) to fit max_w x max_h, keeping the aspect ratio; area averaging keeps thin lines as
    soft values instead of dropping them."""
    h, w = image.shape[:2]
    scale = min(1.0, max_w / w, max_h / h)
    if scale >= 1.0:
        return image
    size = (max(1, min(max_w, round(w * scale))), max(1, min(max_h, round(h * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def lead_crops(class_map: np.ndarray, leads: Sequence[LeadBox]) -> list[np.ndarray | None]:
    """Each lead's channel-separated thumbnail, in PTB-XL lead order; None for a lead the image does not show.

    When a lead appears twice (the 10 s lead II strip of 3x4+II), its first cell is used, as in a plain 3x4 print.
    """
    crops: list[np.ndarray | None] = [None] * len(LEAD_NAMES)
    for box in leads:
        index = LEAD_INDEX.get(box.name)
        if index is not None and crops[index] is None:
            crops[index] = thumbnail(rectify_lead(class_map, box))
    return crops


def crops_to_slots(crops: Sequence[np.ndarray | None]) -> np.ndarray:
    """(12, 120, 210, 3) uint8: each crop in the top-left corner of its slot, black elsewhere."""
    slots = np.zeros((len(LEAD_NAMES), SLOT_H, SLOT_W, len(CHANNEL_CLASSES)), np.uint8)
    for i, crop in enumerate(crops):
        if crop is not None:
            h, w = min(SLOT_H, crop.shape[0]), min(SLOT_W, crop.shape[1])
            slots[i, :h, :w] = crop[:h, :w]
    return slots


def merge_slots(slots: np.ndarray) -> np.ndarray:
    """The 640x640x3 classification image from (12, 120, 210, 3) slots."""
    canvas = np.zeros((CANVAS, CANVAS, slots.shape[-1]), np.uint8)
    for i in range(slots.shape[0]):
        x, y = slot_origin(i)
        canvas[y : y + SLOT_H, x : x + SLOT_W] = slots[i]
    return canvas


def classification_image(crops: Sequence[np.ndarray | None]) -> np.ndarray:
    """The prototype's merged 640x640x3 classification image from 12 lead crops."""
    return merge_slots(crops_to_slots(crops))


def build_slots(class_map: np.ndarray, leads: Sequence[LeadBox]) -> np.ndarray:
    """Class map + lead boxes -> (12, 120, 210, 3) slots (the stored form of a classification sample)."""
    return crops_to_slots(lead_crops(class_map, leads))


def stretch_slot(slot: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Stretch a slot's content about its top-left corner and cut it back to the slot size."""
    h, w = slot.shape[:2]
    size = (max(1, round(w * sx)), max(1, round(h * sy)))
    stretched = cv2.resize(slot, size, interpolation=cv2.INTER_AREA if sx * sy < 1 else cv2.INTER_LINEAR)
    out = np.zeros_like(slot)
    hh, ww = min(h, stretched.shape[0]), min(w, stretched.shape[1])
    out[:hh, :ww] = stretched[:hh, :ww]
    return out


def augment_slots(slots: np.ndarray, donors: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The prototype's augmentation of one sample's slots.

    ``donors`` are slots of other samples of the same class: in each channel, 1-2 lead slots take that channel
    from a random donor's same lead; then each lead is stretched by N(1, 0.1), at least 0.5, in x and y.
    """
    out = slots.copy()
    if len(donors):
        for channel in range(out.shape[-1]):
            donor = donors[int(rng.integers(len(donors)))]
            leads = rng.choice(out.shape[0], size=int(rng.integers(1, 3)), replace=False)
            out[leads, ..., channel] = donor[leads, ..., channel]
    scales = np.maximum(rng.normal(1.0, STRETCH_SD, size=(out.shape[0], 2)), STRETCH_MIN)
    for i in range(out.shape[0]):  # 12 resizes per sample
        out[i] = stretch_slot(out[i], scales[i, 0], scales[i, 1])
    return out


def heatmap_to_photo(heat: np.ndarray, leads: Sequence[LeadBox], image_shape: tuple[int, int]) -> np.ndarray:
    """Map a heat map over the 640x640 classification image back onto the photo, through each lead's quad.

    Returns (H, W) float32 in the photo's pixels: each lead cell gets the part of the heat map that its slot held
    (0 outside the lead cells), so the image model's evidence can be drawn on the photo.
    """
    height, width = image_shape
    out = np.zeros((height, width), np.float32)
    seen: set[int] = set()
    for box in leads:
        index = LEAD_INDEX.get(box.name)
        if index is None or index in seen:
            continue
        seen.add(index)
        cell_w, cell_h = _quad_size(box.quad)
        scale = min(1.0, SLOT_W / cell_w, SLOT_H / cell_h)
        thumb_w, thumb_h = max(1, min(SLOT_W, round(cell_w * scale))), max(1, min(SLOT_H, round(cell_h * scale)))
        x, y = slot_origin(index)
        patch = np.ascontiguousarray(heat[y : y + thumb_h, x : x + thumb_w], np.float32)
        source = np.array([[0, 0], [thumb_w, 0], [0, thumb_h], [thumb_w, thumb_h]], np.float32) - 0.5
        homography = cv2.getPerspectiveTransform(source, box.quad.astype(np.float32))
        warped = cv2.warpPerspective(patch, homography, (width, height), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        np.maximum(out, warped, out=out)
    return out
