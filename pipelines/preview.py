"""Contact sheet of synthesized samples with their ground truth, for people to look at.

    python -m pipelines.preview --out sheet.jpg [--layouts seed-3x4,3x4+II,6x2,12x1] [--preset FILE] [--seed S]
        [--ptbxl DIR | --synthetic] [--width 640]

Each row is one sample: the photo, then the photo with the mask classes and lead quads drawn over it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from ecgcore.imageio import atomic_write_bytes, encode_jpeg, encode_png
from ecgcore.layouts import LAYOUT_NAMES
from ecgcore.params import Preset
from ecgcore.photo import overlay, synthesize_photo
from ecgcore.signals import PtbXl, default_ptbxl_dir, synthetic_record

from ._cli import run


def contact_sheet(photos_and_overlays: list[tuple[np.ndarray, np.ndarray]], width: int) -> np.ndarray:
    rows = []
    for photo, over in photos_and_overlays:
        h = int(round(photo.shape[0] * width / photo.shape[1]))
        a = cv2.resize(photo, (width, h), interpolation=cv2.INTER_AREA)
        b = cv2.resize(over, (width, h), interpolation=cv2.INTER_AREA)
        rows.append(np.hstack([a, np.full((h, 8, 3), 255, np.uint8), b]))
    gap = np.full((8, rows[0].shape[1], 3), 255, np.uint8)
    return np.vstack([x for row in rows for x in (row, gap)][:-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.preview", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help=".jpg or .png")
    p.add_argument("--layouts", default=",".join(LAYOUT_NAMES))
    p.add_argument("--preset", type=Path)
    p.add_argument("--seed", type=int, default=0)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--ptbxl", type=Path)
    src.add_argument("--synthetic", action="store_true")
    p.add_argument("--ids", help="comma-separated ecg_ids, one per layout (PTB-XL only)")
    p.add_argument("--width", type=int, default=640, help="width of each picture in the sheet")
    args = p.parse_args(argv)
    preset = Preset.load(args.preset) if args.preset else Preset()
    layouts = [name for name in args.layouts.split(",") if name]
    ptbxl_dir = args.ptbxl or (None if args.synthetic else default_ptbxl_dir())
    db = PtbXl(ptbxl_dir) if ptbxl_dir else None
    ids = [int(v) for v in args.ids.split(",")] if args.ids else None
    pairs = []
    for i, layout in enumerate(layouts):
        seed = args.seed + i
        if db is None:
            record = synthetic_record(seed)
        else:
            pool = ids or db.ids(folds=[10])
            record = db.record(pool[(seed * 7919) % len(pool)] if not ids else pool[i % len(pool)])
        photo = synthesize_photo(record, seed, preset, layout=layout)
        pairs.append((photo.image, overlay(photo.image, photo.mask, photo.leads)))
    sheet = contact_sheet(pairs, args.width)
    data = encode_png(sheet) if args.out.suffix.lower() == ".png" else encode_jpeg(sheet, 88)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, data)
    print(args.out)
    return 0


if __name__ == "__main__":
    run(main)
