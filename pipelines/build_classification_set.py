"""Build the prototype-style classification set from PTB-V datasets: one 640x640 classification image per sample.

    python -m pipelines.build_classification_set --data DIR[,DIR...] --out CLS_DIR [--source truth|segmenter]
        [--weights SEG.safetensors] [--limit N]

Each sample's class map (its ground-truth mask, or the segmenter's prediction on its photo) is cut into the 12 lead
cells by the sample's lead quads and merged as SEED_NOTES section 5 describes (ecgcore.classify.classimage). Curated-out
samples are skipped. CLS_DIR gets ``NAME_ID.png`` per sample (lossless; the 12 lead slots are regions of it),
``index.jsonl`` (file, dataset, id, label, ecg_id, strat_fold, layout) and ``classification_set.json``.
Rerunning the command resumes.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from ecgcore.classify.classimage import CLASS_SET_FILE, build_slots, merge_slots
from ecgcore.dataset import DatasetError, iter_samples, open_dataset
from ecgcore.imageio import atomic_write_bytes, encode_png
from ecgcore.progress import Reporter

from ._cli import fail, run

INDEX_FILE = "index.jsonl"
INFO_FILE = CLASS_SET_FILE


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.build_classification_set", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="PTB-V dataset folder(s), comma-separated")
    p.add_argument("--out", required=True, type=Path, help="classification set folder (created; rerun to resume)")
    p.add_argument("--source", default="truth", choices=("truth", "segmenter"),
                   help="class maps from the ground-truth masks, or from the segmentation model on the photos")
    p.add_argument("--weights", type=Path, help="segmentation weights for --source segmenter (default: shipped)")
    p.add_argument("--limit", type=int, help="at most N samples per dataset (for quick sets)")
    return p


def read_index(folder: Path) -> list[dict]:
    """The entries of a classification set (a torn last line from a killed build is ignored)."""
    path = folder / INDEX_FILE
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [e for e in entries if (folder / e.get("file", "")).is_file()]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folders = [Path(p.strip()) for p in args.data.split(",") if p.strip()]
    if not folders:
        fail("--data names no dataset folder")
    for folder in folders:
        open_dataset(folder)
    if args.limit is not None and args.limit < 1:
        fail(f"--limit must be at least 1, not {args.limit}")
    args.out.mkdir(parents=True, exist_ok=True)
    config = {"data": [str(f.resolve()) for f in folders], "source": args.source,
              "weights": str(args.weights) if args.weights else None}
    info_path = args.out / INFO_FILE
    if info_path.is_file():
        previous = json.loads(info_path.read_text())
        if previous.get("source") != config["source"]:
            raise DatasetError(f"{args.out} was built with --source {previous.get('source')}; use a new --out")
    segmenter = None
    if args.source == "segmenter":
        from ecgcore.read.segmentation import load_segmenter

        segmenter = load_segmenter(args.weights)

    done = {e["file"] for e in read_index(args.out)}
    work = []
    for folder in folders:
        samples = list(iter_samples(folder, include_discarded=False))  # curated-out samples never enter
        work += [(folder, s) for s in samples[: args.limit]]
    reporter = Reporter(total=len(work), desc="classification images", unit="sample")
    counts: dict[str, int] = {}
    with open(args.out / INDEX_FILE, "a") as index:
        for folder, sample in work:
            name = f"{folder.name}_{sample.id}.png"
            if name not in done:
                class_map = segmenter.predict(sample.image()) if segmenter is not None else sample.mask()
                canvas = merge_slots(build_slots(class_map, sample.leads))
                atomic_write_bytes(args.out / name, encode_png(canvas))
                source = sample.meta.get("source", {})
                entry = {"file": name, "dataset": folder.name, "dataset_dir": str(folder.resolve()), "id": sample.id, "label": sample.label,
                         "ecg_id": source.get("ecg_id"), "strat_fold": source.get("strat_fold"),
                         "layout": sample.meta.get("layout")}
                index.write(json.dumps(entry) + "\n")
                index.flush()
            counts[sample.label] = counts.get(sample.label, 0) + 1
            reporter.advance(1, message=name)
    reporter.close()
    entries = read_index(args.out)
    info = {**config, "samples": len(entries), "labels": counts,
            "built": datetime.now(UTC).isoformat(timespec="seconds")}
    atomic_write_bytes(info_path, (json.dumps(info, indent=1) + "\n").encode())
    reporter.log(f"{len(entries)} classification images in {args.out} ({counts})")
    return 0


if __name__ == "__main__":
    run(main)
