"""Digitise photos of paper ECGs into 12-lead WFDB records.

    python -m pipelines.digitize IMAGE... --out DIR [--layout auto|seed-3x4|3x4+II|6x2|12x1|3x4|3x4+3] [--fs 100|500]
        [--mask MASK.png ...] [--weights FILE.safetensors] [--paper-speed 25] [--gain 10] [--overlay]

Per image writes DIR/STEM.hea + DIR/STEM.dat (wfdb: 12 signals I II III aVR aVL aVF V1..V6 in mV over the layout's
whole duration, NaN where a lead is not on the image) and DIR/STEM.json (detected layout, rotation, px per mm, each
lead's box in image pixels with t0/t1, quality flags, and the ``reading``: reliable or not by the limb-lead physics,
with the reasons); --overlay adds DIR/STEM_digitized.png (the extracted traces
drawn on the photo). The photo is segmented with the shipped U-Net unless --mask gives its class map (uint8 PNG,
0 background, 1/2 major grid lines, 3 curve; e.g. a PTB-V ID_mask.png or a pipelines.segment STEM_seg.png), one
--mask per IMAGE in the same order (it may follow its image). STEM is the image's file name stem made a valid WFDB
record name (letters, digits and '_': "patient ecg (1).jpg" -> patient_ecg_1). An image that cannot be read gets
one line on stderr saying why, the others are still processed, and the exit code is 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ecgcore.errors import USER_ERRORS, DigitizationError, cli_sentence
from ecgcore.layouts import LAYOUT_NAMES
from ecgcore.progress import Reporter

from ._cli import fail, run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.digitize", description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--layout", default="auto", choices=("auto", *LAYOUT_NAMES), help="paper layout (default: detect)")
    p.add_argument("--fs", type=int, default=100, choices=(100, 500), help="sampling rate of the record (Hz)")
    p.add_argument("--mask", type=Path, action="append", default=[],
                   help="class-map PNG to digitise instead of segmenting (one per IMAGE, in order)")
    p.add_argument("--weights", type=Path, help="segmentation .safetensors (default: the shipped weights)")
    p.add_argument("--paper-speed", type=float, default=25.0, choices=(25.0, 50.0), help="mm/s")
    p.add_argument("--gain", type=float, default=10.0, choices=(5.0, 10.0, 20.0),
                   help="mm/mV (a calibration pulse of another standard height overrides it)")
    p.add_argument("--overlay", action="store_true", help="also write STEM_digitized.png (traces on the photo)")
    return p


def main(argv: list[str] | None = None) -> int:
    # Intermixed, so that each --mask may follow its IMAGE: a.png --mask a_mask.png b.png --mask b_mask.png
    args = build_parser().parse_intermixed_args(argv)
    if args.mask and len(args.mask) != len(args.images):
        fail(f"give one --mask per IMAGE ({len(args.images)} images but {len(args.mask)} masks)")
    from ecgcore.read.digitize import wfdb_record_name

    names = [wfdb_record_name(p.stem) for p in args.images]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        fail(f"two images get the same record name ({', '.join(twice)}: WFDB names keep only letters, digits and "
             "'_'); their outputs would overwrite each other; rename one")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create output folder {args.out} ({exc.strerror or exc})")

    segmenter = None
    if not args.mask:
        from ecgcore.read.segmentation import load_segmenter

        segmenter = load_segmenter(args.weights)  # ModelError ("segmentation weights not found ...") -> exit 2

    failed = 0
    reporter = Reporter(total=len(args.images), desc="digitising", unit="image")
    for k, path in enumerate(args.images):
        mask_path = args.mask[k] if args.mask else None
        try:
            info = digitize_one(path, mask_path, segmenter, args)
            reading = info["reading"]
            verdict = "reliable" if reading["reliable"] else "NOT reliable"
            reporter.advance(1, message=f"{path.name}: {info['layout']}, {info['quality']['leads_ok']}/12 leads ok, "
                                        f"{verdict} (Einthoven {reading['einthoven_db']} dB, "
                                        f"Goldberger {reading['goldberger_db']} dB)")
        except USER_ERRORS as exc:
            failed += 1
            reporter.log(f"error: {path}: {cli_sentence(exc).rstrip('.')}.")
            reporter.advance(1, message=f"{path.name}: failed")
        except MemoryError:
            failed += 1
            reporter.log(f"error: {path}: not enough memory to digitise this image.")
            reporter.advance(1, message=f"{path.name}: failed")
        except OSError as exc:  # e.g. the disk is full: no half record is left behind
            failed += 1
            remove_outputs(args.out, wfdb_record_name(path.stem))
            reporter.log(f"error: {path}: cannot write to {args.out} ({exc.strerror or exc}).")
            reporter.advance(1, message=f"{path.name}: failed")
    reporter.close()
    done = len(args.images) - failed
    reporter.log(f"{done} of {len(args.images)} images digitised into {args.out}")
    if failed:
        print(f"error: {failed} of {len(args.images)} images could not be digitised (reasons above).", file=sys.stderr)
        return 2
    return 0


def digitize_one(path: Path, mask_path: Path | None, segmenter: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Digitise one image and write its record, JSON and optional overlay. Raises a user error with a sentence."""
    from ecgcore.imageio import atomic_write_bytes, encode_png, read_image
    from ecgcore.read.digitize import digitize, overlay_traces, wfdb_record_name, write_wfdb
    from ecgcore.read.segmentation import segment_with_margin

    loaded = read_image(path)
    rgb = loaded.rgb
    margin = None
    if mask_path is not None:
        class_map = read_class_map(mask_path)
        if class_map.shape != rgb.shape[:2]:
            w, h = loaded.original_size
            if class_map.shape != (h, w):
                raise DigitizationError(
                    f"mask {mask_path.name} is {class_map.shape[1]}x{class_map.shape[0]} pixels but the image is {w}x{h}."
                )
            rgb = None  # digitise at the mask's (original) size; the overlay is drawn on the mask
    else:
        class_map, margin = segment_with_margin(segmenter, rgb)
    dig = digitize(class_map, layout=args.layout, fs=args.fs, paper_speed=args.paper_speed, gain=args.gain,
                   curve_margin=margin)
    scale = loaded.scale if (rgb is not None and mask_path is None) else 1.0
    if scale != 1.0:
        _to_original_pixels(dig, scale)
    stem = wfdb_record_name(path.stem)  # every output of the image is named as its record
    write_wfdb(dig, args.out, stem)
    info = dig.to_json()
    info["image"] = str(path)
    info["class_map"] = str(mask_path) if mask_path else "segmentation (shipped U-Net)" if not args.weights else str(args.weights)
    if loaded.notes:
        info["image_notes"] = loaded.notes
    atomic_write_bytes(args.out / f"{stem}.json", (json.dumps(info, indent=1) + "\n").encode())
    if args.overlay:
        if scale != 1.0:  # segmented at the decoded size: draw there
            picture = overlay_traces(loaded.rgb, _scaled_copy(dig, scale))
        else:
            picture = overlay_traces(rgb if rgb is not None else class_map, dig)
        atomic_write_bytes(args.out / f"{stem}_digitized.png", encode_png(picture))
    return info


def remove_outputs(out: Path, stem: str) -> None:
    """Remove what digitize_one may have written for ``stem`` (a record without its JSON is no result)."""
    for suffix in (".hea", ".dat", ".json", "_digitized.png"):
        (out / f"{stem}{suffix}").unlink(missing_ok=True)


def read_class_map(path: Path) -> np.ndarray:
    """A class-map PNG (uint8 class indices 0..3); a sentence when it is not one."""
    from ecgcore.constants import N_CLASSES
    from ecgcore.imageio import ImageError, decode_png_mask

    if not Path(path).is_file():
        raise ImageError(f"{Path(path).name}: no such mask file.")
    try:
        mask = decode_png_mask(path)
    except Exception as exc:  # decoder errors of many kinds: the file is not a readable PNG
        raise ImageError(f"{Path(path).name} is not a readable class-map PNG ({exc}).") from exc
    if mask.ndim != 2 or mask.max(initial=0) >= N_CLASSES:
        raise ImageError(f"{Path(path).name} is not a class map (expected one channel of values 0..{N_CLASSES - 1}).")
    return mask


def _to_original_pixels(dig, scale: float) -> None:
    """The image was decoded downscaled: report boxes, traces and px per mm in the input image's pixels."""
    for box in dig.leads:
        box.quad = box.quad / scale
    dig.traces = [(name, xy / scale) for name, xy in dig.traces]
    dig.px_per_mm /= scale
    dig.grid["px_per_mm"] = round(dig.px_per_mm, 4)


def _scaled_copy(dig, scale: float):
    from copy import copy

    out = copy(dig)
    out.leads = [type(b)(b.name, b.quad * scale, b.t0, b.t1) for b in dig.leads]
    out.traces = [(name, xy * scale) for name, xy in dig.traces]
    return out


if __name__ == "__main__":
    run(main)
