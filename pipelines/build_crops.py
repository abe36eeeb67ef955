"""Export the prototype's jittered per-lead crops of a PTB-V dataset, as extra segmentation training data.

    python -m pipelines.build_crops --data DIR --out DIR2 [--seed S] [--copies K]

Each kept sample (curated-out ones are skipped) gives one crop per lead: the lead's box with every corner moved by
N(0, 1% of the image size) and turned by N(0, 3 deg), warped upright. DIR2 gets ID_COPY_BOX_LEAD.png and
ID_COPY_BOX_LEAD_mask.png pairs and crops.json (the index). Pass DIR2 to ``pipelines.train_segmentation --data``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ecgcore.dataset import iter_samples, open_dataset
from ecgcore.progress import Reporter
from ecgcore.train.crops import build_crops

from ._cli import fail, run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.build_crops", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="PTB-V dataset folder")
    p.add_argument("--out", required=True, type=Path, help="crops folder (created)")
    p.add_argument("--seed", type=int, default=0, help="seed of the jitter")
    p.add_argument("--copies", type=int, default=1, help="differently jittered crops per lead")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    open_dataset(args.data)
    if args.copies < 1:
        fail(f"--copies must be at least 1, not {args.copies}")
    total = sum(1 for _ in iter_samples(args.data, include_discarded=False))
    reporter = Reporter(total=total, desc="samples", unit="sample")
    try:
        index = build_crops(args.data, args.out, seed=args.seed, copies=args.copies,
                            on_sample=lambda sid: reporter.advance(1, message=sid))
    finally:
        reporter.close()
    reporter.log(f"{index['n_crops']} crops of {total} samples written to {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
