"""Segment photos of paper ECGs into background, grid lines and curve.

    python -m pipelines.segment IMAGE... --out DIR [--weights FILE.safetensors] [--device cpu|cuda] [--overlay]

Writes DIR/STEM_seg.png per image: uint8 class index per pixel (0 background, 1 major grid line at x = const,
2 major grid line at y = const, 3 curve), the same size as the image; --overlay also writes DIR/STEM_overlay.png
for people to look at. An unreadable image gets one line on stderr, the others are still processed, and the exit
code is non-zero.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from ecgcore.errors import USER_ERRORS
from ecgcore.imageio import atomic_write_bytes, encode_png, read_image
from ecgcore.progress import Reporter

from ._cli import fail, run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.segment", description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--weights", type=Path, help="segmentation .safetensors (default: the shipped weights)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--overlay", action="store_true", help="also write STEM_overlay.png (classes over the photo)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stems = [p.stem for p in args.images]
    if len(set(stems)) != len(stems):
        fail("two images have the same file name stem; their outputs would overwrite each other")
    from ecgcore.read.segmentation import load_segmenter
    from ecgcore.synth.photo import overlay

    segmenter = load_segmenter(args.weights, device=args.device)  # ModelError -> one line, exit 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create output folder {args.out} ({exc.strerror or exc})")
    failed = 0
    reporter = Reporter(total=len(args.images), desc="segmenting", unit="image")
    for path in args.images:
        try:
            loaded = read_image(path)
            class_map = segmenter.predict(loaded.rgb)
            width, height = loaded.original_size
            full_map = class_map
            if class_map.shape != (height, width):
                # The image was decoded downscaled (huge input): hand back a map of the original size.
                full_map = cv2.resize(class_map, (width, height), interpolation=cv2.INTER_NEAREST)
            atomic_write_bytes(args.out / f"{path.stem}_seg.png", encode_png(full_map))
            if args.overlay:
                atomic_write_bytes(args.out / f"{path.stem}_overlay.png", encode_png(overlay(loaded.rgb, class_map)))
        except USER_ERRORS as exc:
            failed += 1
            reporter.log(f"error: {path}: {str(exc).strip()}")
        except OSError as exc:  # e.g. the disk is full: this image's outputs are removed, the next are tried
            failed += 1
            for name in (f"{path.stem}_seg.png", f"{path.stem}_overlay.png"):
                (args.out / name).unlink(missing_ok=True)
            reporter.log(f"error: {path}: cannot write to {args.out} ({exc.strerror or exc}).")
        reporter.advance(1, message=path.name)
    reporter.close()
    if failed:
        print(f"error: {failed} of {len(args.images)} images could not be segmented.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run(main)
