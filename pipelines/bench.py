"""Performance figures of ECG Lab on this machine (a benchmark, not a test).

    python -m pipelines.bench [--json] [--repeats N] [--scaling]

Keys (seconds unless named): render_s_per_sample, synthesis_s_per_sample, synthesis_s_per_sample_mixed (the 'mixed'
preset: photos and the pages it scans, as drawn), synthesis_s_per_photo_mixed and synthesis_s_per_scan_mixed (the
same seeds forced to one capture), preview_rerender_ms, preview_rerender_ms_mixed,
segmentation_s_per_photo, segmentation_s_phone_photo (a 12 MP photo, 4032x3024), digitize_s_per_photo,
digitize_s_placed_from_page (a photo without calibration pulses: the layout also placed from the page),
classify_end_to_end_s, peak_rss_mb, machine. A figure whose stage is not available (e.g. no shipped weights) is null,
with the reason under "notes".
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ecgcore.signals import synthetic_record
from ecgcore.synth.params import Preset, resolve_preset
from ecgcore.synth.photo import DEFAULT_PHOTO_SIZE, FIT_MARGIN, synthesize_photo
from ecgcore.synth.render import PaperOptions, render

from ._cli import print_figures, run

ECG_IMAGE_KIT_S_PER_IMAGE = 2.65  # published figure with augmentation (PRODUCT.md)
PREVIEW_SIZE = (800, 600)


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


def bench_foundation(repeats: int) -> dict[str, float]:
    record = synthetic_record(1)
    preset = Preset()
    # the paper at the resolution a 1600x1200 photo gives it (what synthesis renders)
    ppm = FIT_MARGIN * DEFAULT_PHOTO_SIZE[0] / 226.0
    render_s = median_time(lambda: render(record, "seed-3x4", PaperOptions(px_per_mm=ppm)), repeats)
    seeds = iter(range(10_000))
    synth_s = median_time(lambda: synthesize_photo(record, next(seeds), preset, size=DEFAULT_PHOTO_SIZE), repeats)
    # a slider move: the same seed with one distribution changed, at preview size
    angles = iter([a / 10 for a in range(-300, 300)])
    preview_s = median_time(
        lambda: synthesize_photo(record, 3, preset, size=PREVIEW_SIZE, values={"rotation_angle": next(angles)}), repeats
    )
    figures = {"render_s_per_sample": render_s, "synthesis_s_per_sample": synth_s, "preview_rerender_ms": preview_s * 1000}
    return {**figures, **bench_mixed(record, repeats)}


def bench_mixed(record, repeats: int) -> dict[str, float]:
    """The 'mixed' preset: every printer style and 30% scans (at their own 100-300 dpi size, not 1600x1200)."""
    mixed = resolve_preset("mixed")
    layouts = ("seed-3x4", "3x4+II", "6x2", "12x1", "3x4", "3x4+3")
    n = max(repeats, 6)  # at least one draw per layout

    def per_sample(values: dict[str, Any] | None) -> float:
        seeds = iter(range(100, 100 + n + 1))
        return median_time(lambda: synthesize_photo(record, (s := next(seeds)), mixed, layout=layouts[s % 6],
                                                    size=DEFAULT_PHOTO_SIZE, values=values), n)

    angles = iter([a / 10 for a in range(-300, 300)])
    preview_s = median_time(lambda: synthesize_photo(record, 3, mixed, size=PREVIEW_SIZE, layout="3x4+II",
                                                     values={"rotation_angle": next(angles), "capture": "photo"}),
                            repeats)
    return {"synthesis_s_per_sample_mixed": per_sample(None),
            "synthesis_s_per_photo_mixed": per_sample({"capture": "photo"}),
            "synthesis_s_per_scan_mixed": per_sample({"capture": "scan"}),
            "preview_rerender_ms_mixed": preview_s * 1000}


def bench_scaling(n: int = 24) -> dict[str, float]:
    """Wall time per sample of generate_ptb_v with 1 and 2 workers (process start-up included)."""
    out: dict[str, float] = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pipelines.generate_ptb_v", "--synthetic", "-n", str(n), "--out",
                            f"{tmp}/d", "--workers", str(workers)], check=True, capture_output=True)
            out[f"generate_s_per_sample_{workers}_workers"] = (time.perf_counter() - start) / n
    return out


def bench_page_placement(segmenter, repeats: int) -> float:
    """Digitising a 3x4+II photo whose calibration pulses are erased from the class map: with no pulse to anchor the
    layout table, the reader also places the layout from the page (rows read across the page, the time origin
    searched, the page read again): the slowest path a photo takes."""
    import cv2
    import numpy as np

    from ecgcore.constants import BACKGROUND, CURVE
    from ecgcore.layouts import pulse_width_mm
    from ecgcore.read.digitize import digitize

    photo = synthesize_photo(synthetic_record(3), 12, layout="3x4+II", size=DEFAULT_PHOTO_SIZE)
    class_map, margin = segmenter.predict_with_margin(photo.image) if segmenter is not None else (photo.mask, None)
    class_map = class_map.copy()
    pulse = np.zeros(class_map.shape, np.uint8)
    for box in photo.leads:
        if box.t0 == 0.0:  # the row's first cell starts with its pulse
            q = box.quad.astype(np.float64)  # top-left, top-right, bottom-left, bottom-right
            cell_w = float(np.hypot(*(q[1] - q[0])))
            f = min(1.0, (pulse_width_mm(25.0) + 0.5) * photo.px_per_mm / max(cell_w, 1.0))
            tl, bl = q[0], q[2]
            tr, br = tl + f * (q[1] - q[0]), bl + f * (q[3] - q[2])
            cv2.fillConvexPoly(pulse, np.round([tl, tr, br, bl]).astype(np.int32), 1)
    erase = (pulse > 0) & (class_map == CURVE)
    class_map[erase] = BACKGROUND
    if margin is not None:
        margin = margin.copy()
        margin[erase] = -1.0
    return median_time(lambda: digitize(class_map, layout="auto", curve_margin=margin), repeats)


def bench_models(repeats: int, notes: dict[str, str]) -> dict[str, float | None]:
    figures: dict[str, float | None] = {
        "segmentation_s_per_photo": None, "segmentation_s_phone_photo": None, "digitize_s_per_photo": None,
        "digitize_s_placed_from_page": None,
        "classify_end_to_end_s": None,
    }
    photo = synthesize_photo(synthetic_record(2), 11, size=DEFAULT_PHOTO_SIZE)
    try:
        from ecgcore.read.segmentation import load_segmenter

        segmenter = load_segmenter()
        figures["segmentation_s_per_photo"] = median_time(lambda: segmenter.predict(photo.image), repeats)
        import cv2

        phone = cv2.resize(photo.image, (4032, 3024), interpolation=cv2.INTER_CUBIC)
        figures["segmentation_s_phone_photo"] = median_time(lambda: segmenter.predict(phone), max(1, repeats // 2))
    except Exception as exc:  # a missing module or weights: report why instead of a figure
        notes["segmentation_s_per_photo"] = f"{type(exc).__name__}: {exc}"
        segmenter = None
    try:
        from ecgcore.read.digitize import digitize

        # As the app reads a photo: the class map and the curve margin (read on a finer raster, sub-pixel edges).
        class_map, margin = segmenter.predict_with_margin(photo.image) if segmenter is not None else (photo.mask, None)
        if segmenter is None:
            notes["digitize_s_per_photo"] = "measured on the ground-truth mask (no segmentation weights)"
        figures["digitize_s_per_photo"] = median_time(lambda: digitize(class_map, layout="auto", curve_margin=margin),
                                                      repeats)
    except Exception as exc:
        notes["digitize_s_per_photo"] = f"{type(exc).__name__}: {exc}"
    try:
        figures["digitize_s_placed_from_page"] = bench_page_placement(segmenter, repeats)
    except Exception as exc:
        notes["digitize_s_placed_from_page"] = f"{type(exc).__name__}: {exc}"
    try:
        from ecgcore.read.analyze import analyze_photo

        figures["classify_end_to_end_s"] = median_time(lambda: analyze_photo(photo.image), max(1, repeats // 2))
    except Exception as exc:
        notes["classify_end_to_end_s"] = f"{type(exc).__name__}: {exc}"
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--scaling", action="store_true", help="also time generate_ptb_v with 1 and 2 workers")
    parser.add_argument("--no-models", action="store_true", help="skip segmentation/digitisation/classification")
    args = parser.parse_args(argv)
    notes: dict[str, str] = {}
    figures: dict[str, Any] = bench_foundation(args.repeats)
    if args.scaling:
        figures.update(bench_scaling())
    if args.no_models:
        figures.update({"segmentation_s_per_photo": None, "digitize_s_per_photo": None, "classify_end_to_end_s": None})
        notes["models"] = "skipped (--no-models)"
    else:
        figures.update(bench_models(max(3, args.repeats // 2), notes))
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["synthesis_speedup_vs_ecg_image_kit"] = ECG_IMAGE_KIT_S_PER_IMAGE / figures["synthesis_s_per_sample"]
    figures["machine"] = machine()
    figures["notes"] = notes
    rounded = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()}
    print_figures(rounded, args.json, 40)
    return 0


if __name__ == "__main__":
    run(main)
