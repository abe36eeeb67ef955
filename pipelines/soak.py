"""Soak run: classify hundreds of PTB-V photos in one process and watch its memory (issue #7, part 4).

    python -m pipelines.soak --n 300 [--json] [--synthetic | --ptbxl DIR | --data DIR] [--distinct K]
                             [--size WxH] [--every K] [--warmup W] [--threads T] [--explain] [--trim]

Each photo goes the way an upload goes: its file's bytes through ``ecgcore.imageio.read_image``, then
``ecgcore.read.analyze.analyze_photo`` with the shipped models, all in this one process. The resident memory (VmRSS) is
sampled every K images. Printed (one JSON object with --json): n, seconds per image, rss_mb at start (before the
models), after loading the models, after the warm-up and at the end, the peak, the growth per 100 images after the
warm-up and the slope of a straight line fitted to the post-warm-up samples (MB per 100 images). A leak shows as a
slope that does not go to zero as n grows; allocator noise does not.

Photos: ``--data DIR`` uses a PTB-V dataset's photos (cycled if it has fewer than N); otherwise ``--distinct K``
photos (default: N) are generated first into a temporary folder by ``pipelines.generate_ptb_v`` in a separate process
(from ``--ptbxl DIR`` folds 1-8, or the built-in synthetic signals), so generation does not count in this process's
memory, and cycled.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ecgcore.dataset import iter_samples, open_dataset
from ecgcore.errors import USER_ERRORS, DigitizationError
from ecgcore.layouts import LAYOUT_NAMES
from ecgcore.progress import Reporter

from ._cli import fail, print_figures, run

DEFAULT_SIZE = "1600x1200"  # the PTB-V photo size, what a phone photo is downscaled to


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (or its peak, ``VmHWM``) in MB, from /proc/self/status (psutil elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import psutil  # not Linux: no /proc

    info = psutil.Process().memory_info()
    return (getattr(info, "peak_wset", info.rss) if field == "VmHWM" else info.rss) / 2**20


def generate_photos(out: Path, count: int, size: str, seed: int, ptbxl: Path | None) -> list[Path]:
    """``count`` PTB-V photos made by pipelines.generate_ptb_v in a child process; their paths."""
    command = [sys.executable, "-m", "pipelines.generate_ptb_v", "--out", str(out), "-n", str(count), "--seed",
               str(seed), "--size", size, "--workers", "1", "--layout", ",".join(LAYOUT_NAMES)]
    command += ["--ptbxl", str(ptbxl), "--folds", "1-8"] if ptbxl else ["--synthetic"]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        fail(f"generating the photos failed: {lines[-1] if lines else f'exit code {proc.returncode}'}")
    return [s.image_path for s in iter_samples(out, include_discarded=False)]


def fit_slope(samples: Sequence[tuple[int, float]]) -> float | None:
    """Least-squares slope of RSS (MB) against images done, in MB per 100 images; None with fewer than 3 samples."""
    if len(samples) < 3:
        return None
    x, y = np.asarray(samples, dtype=np.float64).T
    return float(np.polyfit(x, y, 1)[0] * 100.0)


def soak(photos: Sequence[Path], n: int, every: int = 10, warmup: int = 20, layout: str = "auto",
         explain: bool = False, trim: bool = False,
         on_image: Callable[[int, str], None] | None = None) -> dict[str, Any]:
    """Analyse ``n`` photos (cycling over ``photos``) in this process; the memory and time figures as a dict."""
    from ecgcore.imageio import read_image
    from ecgcore.read import models
    from ecgcore.read.analyze import analyze_photo, release_memory

    rss = {"start": rss_mb()}
    segmenter, classifiers = models.load()  # ModelError: a sentence, exit 2
    rss["models_loaded"] = rss_mb()
    samples: list[tuple[int, float]] = [(0, rss["models_loaded"])]
    outcomes = {"verdict": 0, "no_ecg": 0, "error": 0}
    first_problems: list[str] = []
    seconds: list[float] = []
    for i in range(n):
        path = photos[i % len(photos)]
        started = time.perf_counter()
        try:
            rgb = read_image(path.read_bytes(), name=path.name).rgb  # as an upload: bytes in memory
            analyze_photo(rgb, layout=layout, segmenter=segmenter, classifiers=classifiers, explain=explain)
            outcomes["verdict"] += 1
        except DigitizationError as exc:  # a photo the digitiser cannot read counts, but is not a failure of the run
            outcomes["no_ecg"] += 1
            first_problems += [f"{path.name}: {exc}"][: max(0, 5 - len(first_problems))]
        except USER_ERRORS as exc:
            outcomes["error"] += 1
            first_problems += [f"{path.name}: {exc}"][: max(0, 5 - len(first_problems))]
        if trim:
            release_memory()
        seconds.append(time.perf_counter() - started)
        done = i + 1
        if done == warmup:
            rss["after_warmup"] = rss_mb()
        if done % every == 0 or done == n:
            samples.append((done, rss_mb()))
        if on_image is not None:
            on_image(done, path.name)
    rss["end"] = rss_mb()
    rss["peak"] = rss_mb("VmHWM")
    rss.setdefault("after_warmup", rss["end"])  # n <= warmup: no post-warm-up figures
    post = [(i, m) for i, m in samples if i >= warmup]
    measured = max(0, n - warmup)
    return {
        "n": n,
        "distinct_photos": len(photos),
        "seconds_per_image": round(float(np.mean(seconds)), 4),
        "seconds_per_image_median": round(float(np.median(seconds)), 4),
        "total_s": round(float(np.sum(seconds)), 2),
        "warmup_images": min(warmup, n),
        "rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "growth_after_warmup_mb": round(rss["end"] - rss["after_warmup"], 1),
        "growth_mb_per_100_images": round((rss["end"] - rss["after_warmup"]) / measured * 100.0, 2) if measured else None,
        "slope_mb_per_100_images": None if (s := fit_slope(post)) is None else round(s, 2),
        "samples": [[i, round(m, 1)] for i, m in samples],
        "outcomes": outcomes,
        "problems": first_problems,
        "explain": explain,
        "trim": trim,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=300, help="photos to classify (default 300)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--synthetic", action="store_true", help="generate photos from synthetic signals (default)")
    source.add_argument("--ptbxl", type=Path, metavar="DIR", help="generate photos from PTB-XL (folds 1-8)")
    source.add_argument("--data", type=Path, metavar="DIR", help="use the photos of this PTB-V dataset")
    p.add_argument("--distinct", type=int, help="photos to generate and cycle over (default: N)")
    p.add_argument("--size", default=DEFAULT_SIZE, help=f"generated photo size WxH (default {DEFAULT_SIZE})")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated photos")
    p.add_argument("--every", type=int, default=10, help="sample the memory every K images (default 10)")
    p.add_argument("--warmup", type=int, default=20, help="images before the memory baseline (default 20)")
    p.add_argument("--layout", default="auto", choices=("auto", *LAYOUT_NAMES))
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--explain", action="store_true", help="also compute the attributions, as 'explain' in the app")
    p.add_argument("--trim", action="store_true", help="return freed heap to the OS after each image, as the app does")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("n", "every"):
        if getattr(args, name) < 1:
            fail(f"--{name} must be at least 1, not {getattr(args, name)}")
    if args.warmup < 0 or (args.distinct is not None and args.distinct < 1):
        fail("--warmup must be 0 or more and --distinct at least 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    reporter = Reporter(total=args.n, desc="soak", unit="image", disable=True if args.json else None)
    with tempfile.TemporaryDirectory(prefix="ecglab-soak-") as tmp:
        if args.data:
            open_dataset(args.data)  # DatasetError: one sentence
            photos = [s.image_path for s in iter_samples(args.data, include_discarded=False)]
            if not photos:
                fail(f"{args.data} has no photos to classify")
            source = f"dataset {args.data}"
        else:
            count = args.distinct or args.n
            reporter.log(f"generating {count} PTB-V photos ({args.size}) for the soak...")
            photos = generate_photos(Path(tmp) / "photos", count, args.size, args.seed, args.ptbxl)
            source = f"{count} generated PTB-V photos ({'PTB-XL folds 1-8' if args.ptbxl else 'synthetic'}), {args.size}"
        figures = soak(photos, args.n, every=args.every, warmup=args.warmup, layout=args.layout,
                       explain=args.explain, trim=args.trim, on_image=lambda i, name: reporter.advance(1, name))
    reporter.close()
    import torch

    from pipelines.bench import machine

    figures = {**figures, "source": source, "threads": torch.get_num_threads(), "machine": machine()}
    print_figures(figures, args.json, 28)
    return 0


if __name__ == "__main__":
    run(main)
