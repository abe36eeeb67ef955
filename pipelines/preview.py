"""Contact sheet of synthesized samples with their ground truth, for people to look at.

    python -m pipelines.preview --out sheet.jpg [--layouts seed-3x4,3x4+II,6x2,12x1] [--preset NAME|FILE] [--seed S]
        [--ptbxl DIR | --synthetic] [--width 640] [--count N] [--per-row K] [--boxes] [--quality Q]

Each sample is a pair: the photo, then the photo with the mask classes and lead quads drawn over it (with --boxes
also the boxes of lead labels, text, lead-change marks and pulses). By default one sample per layout, one pair per
row; --count cycles through the layouts, --per-row puts several pairs side by side (each letterboxed to 4:3, as
scans have the page's own shape).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from ecgcore.imageio import atomic_write_bytes, encode_jpeg, encode_png
from ecgcore.layouts import LAYOUT_NAMES
from ecgcore.signals import PtbXl, default_ptbxl_dir, synthetic_record
from ecgcore.synth.params import resolve_preset
from ecgcore.synth.photo import overlay, synthesize_photo

from ._cli import run


def contact_sheet(photos_and_overlays: list[tuple[np.ndarray, np.ndarray]], width: int, per_row: int = 1) -> np.ndarray:
    """Pairs (photo, overlay) side by side, ``per_row`` pairs a row. With one pair a row each keeps its own
    height (the sheets in docs/); with more, each picture is letterboxed into width x 3/4 width."""
    if per_row <= 1:
        rows = []
        for photo, over in photos_and_overlays:
            h = int(round(photo.shape[0] * width / photo.shape[1]))
            a = cv2.resize(photo, (width, h), interpolation=cv2.INTER_AREA)
            b = cv2.resize(over, (width, h), interpolation=cv2.INTER_AREA)
            rows.append(np.hstack([a, np.full((h, 8, 3), 255, np.uint8), b]))
        gap = np.full((8, rows[0].shape[1], 3), 255, np.uint8)
        return np.vstack([x for row in rows for x in (row, gap)][:-1])
    height = width * 3 // 4

    def boxed(picture: np.ndarray) -> np.ndarray:
        s = min(width / picture.shape[1], height / picture.shape[0])
        w, h = max(1, int(round(picture.shape[1] * s))), max(1, int(round(picture.shape[0] * s)))
        cell = np.full((height, width, 3), 255, np.uint8)
        y0, x0 = (height - h) // 2, (width - w) // 2
        cell[y0:y0 + h, x0:x0 + w] = cv2.resize(picture, (w, h), interpolation=cv2.INTER_AREA)
        return cell

    pairs = [np.hstack([boxed(a), np.full((height, 4, 3), 255, np.uint8), boxed(b)]) for a, b in photos_and_overlays]
    blank = np.full_like(pairs[0], 255)
    pairs += [blank] * (-len(pairs) % per_row)
    vgap = np.full((height, 16, 3), 255, np.uint8)
    rows = [np.hstack([x for pair in pairs[i:i + per_row] for x in (pair, vgap)][:-1])
            for i in range(0, len(pairs), per_row)]
    hgap = np.full((12, rows[0].shape[1], 3), 255, np.uint8)
    return np.vstack([x for row in rows for x in (row, hgap)][:-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.preview", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help=".jpg or .png")
    p.add_argument("--layouts", default=",".join(LAYOUT_NAMES))
    p.add_argument("--preset", help="preset file or shipped preset name (default, harsh, mixed)")
    p.add_argument("--seed", type=int, default=0)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--ptbxl", type=Path)
    src.add_argument("--synthetic", action="store_true")
    p.add_argument("--ids", help="comma-separated ecg_ids, one per layout (PTB-XL only)")
    p.add_argument("--width", type=int, default=640, help="width of each picture in the sheet")
    p.add_argument("--count", type=int, help="number of samples (default: one per layout), cycling the layouts")
    p.add_argument("--per-row", type=int, default=1, help="pairs (photo, overlay) per row of the sheet")
    p.add_argument("--boxes", action="store_true", help="also outline lead labels, text, marks and pulses")
    p.add_argument("--quality", type=int, default=88, help="JPEG quality of the sheet")
    args = p.parse_args(argv)
    preset = resolve_preset(args.preset)
    layouts = [name for name in args.layouts.split(",") if name]
    ptbxl_dir = args.ptbxl or (None if args.synthetic else default_ptbxl_dir())
    db = PtbXl(ptbxl_dir) if ptbxl_dir else None
    ids = [int(v) for v in args.ids.split(",")] if args.ids else None
    if not layouts or (args.count is not None and args.count < 1) or args.per_row < 1:
        raise ValueError("--layouts, --count and --per-row must name at least one layout, sample and pair.")
    count = args.count or len(layouts)
    pairs = []
    for i in range(count):
        layout = layouts[i % len(layouts)]
        seed = args.seed + i
        if db is None:
            record = synthetic_record(seed)
        else:
            pool = ids or db.ids(folds=[10])
            record = db.record(pool[(seed * 7919) % len(pool)] if not ids else pool[i % len(pool)])
        photo = synthesize_photo(record, seed, preset, layout=layout)
        pairs.append((photo.image, overlay(photo.image, photo.mask, photo.leads,
                                           annotations=photo.annotations if args.boxes else None)))
    sheet = contact_sheet(pairs, args.width, args.per_row)
    data = encode_png(sheet) if args.out.suffix.lower() == ".png" else encode_jpeg(sheet, args.quality)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, data)
    print(args.out)
    return 0


if __name__ == "__main__":
    run(main)
