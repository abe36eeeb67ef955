"""Score every sample of a PTB-V dataset for curation: segmentation IoU, digitisation SNR, model confidence.

    python -m pipelines.score_dataset --data DIR [--force] [--limit N] [--device cpu|cuda]

Writes DIR/scores.csv (one row per sample; the Curation page reads it) and, per sample, DIR/scores/ID_pred.png (the
predicted class map) and DIR/scores/ID_dig.npz (the digitised signal) for the page's detail view. Every score that
needs a model is left empty, with the reason logged once, when that model is not installed: the ink-contrast score
needs none. Rerunning resumes: rows scored with the same models are kept (``--force`` rescores all).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ecgcore.constants import LABELS
from ecgcore.dataset import Sample, iter_samples, open_dataset
from ecgcore.errors import DigitizationError, ModelError
from ecgcore.imageio import atomic_write_bytes, encode_png
from ecgcore.progress import Reporter
from ecgcore.signals import DataSourceError
from ecgcore.train.evaluate import digitize_sample
from ecgcore.train.scores import (
    SCORE_COLUMNS,
    SuspectRule,
    ink_contrast,
    pred_mask_path,
    read_scores,
    save_digitized,
    scores_path,
    write_scores,
)

from ._cli import fail, run

SAVE_EVERY = 10  # rewrite scores.csv every this many samples, so a killed job keeps most of its work


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.score_dataset", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="PTB-V dataset folder")
    p.add_argument("--force", action="store_true", help="rescore every sample, even those already scored")
    p.add_argument("--limit", type=int, help="score at most this many samples (in id order)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    return p


class Models:
    """The models available for scoring; each missing one is None, with the sentence saying why."""

    def __init__(self, device: str, reporter: Reporter):
        from ecgcore.classify.classifiers import DEFAULT_SIGNAL_WEIGHTS, load_classifiers
        from ecgcore.read.segmentation import DEFAULT_SEGMENTATION_WEIGHTS, load_segmenter

        self.segmenter = self.classifiers = None
        self.signature_parts: list[str] = []
        try:
            self.segmenter = load_segmenter(device=device)
            self.signature_parts.append(f"seg@{_weights_stamp(DEFAULT_SEGMENTATION_WEIGHTS)}")
        except ModelError as exc:
            reporter.log(f"segmentation IoU skipped: {exc}")
        self.signature_parts.append("dig" if self.segmenter else "dig(truth mask)")
        try:
            self.classifiers = load_classifiers(device=device, with_image=False)
            self.signature_parts.append(f"cls@{_weights_stamp(DEFAULT_SIGNAL_WEIGHTS)}")
        except ModelError as exc:
            reporter.log(f"model confidence skipped: {exc}")
        if not self.segmenter:
            reporter.log("no segmenter: the SNR is measured on the truth mask (it then scores the photo geometry "
                         "and the digitiser, not the segmentation).")

    @property
    def signature(self) -> str:
        return "+".join(["contrast", *self.signature_parts])


def _weights_stamp(path: Any) -> str:
    """Changes when the weights file is replaced, so rows scored with older models are rescored."""
    try:
        return str(int(os.stat(path).st_mtime))
    except (TypeError, OSError):
        return "?"


def score_sample(sample: Sample, models: Models) -> dict[str, Any]:
    rgb, truth = sample.image(), sample.mask()
    row: dict[str, Any] = {"id": sample.id, "ink_contrast": round(ink_contrast(rgb, truth), 4),
                           "scored_with": models.signature, "error": ""}
    class_map, margin = truth, None
    if models.segmenter is not None:
        from ecgcore.read.segmentation import sample_iou, segment_with_margin

        class_map, margin = segment_with_margin(models.segmenter, rgb)
        row["seg_iou"] = round(sample_iou(class_map, truth)["iou_curve"], 4)
        atomic_write_bytes(_mkparent(pred_mask_path(sample.folder, sample.id)), encode_png(class_map))
    row["snr_from"] = "predicted mask" if models.segmenter is not None else "truth mask"
    try:
        # Layout detection included ("auto"), as for a real photo: a sample whose layout cannot be told is suspect.
        dig, scores = digitize_sample(sample, class_map, margin)
    except (DigitizationError, DataSourceError) as exc:
        row["error"] = f"not digitisable: {exc}"
        return row
    save_digitized(sample.folder, sample.id, dig.signal, dig.fs, dig.layout)
    row["snr_db"] = round(scores.summary()["snr_db"], 3)
    if models.classifiers is not None:
        try:
            probs = models.classifiers.predict_signal(dig)
        except DigitizationError as exc:
            row["error"] = f"not classifiable: {exc}"
            return row
        row["predicted"] = max(probs, key=probs.get)
        row["confidence"] = round(max(probs.values()), 4)
        if sample.label in LABELS:  # synthetic samples have no diagnosis to be confident about
            row["p_true"] = round(probs[sample.label], 4)
    return row


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(exist_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folder = args.data
    open_dataset(folder)
    samples = list(iter_samples(folder, include_discarded=True))  # discarded ones are scored too, to be reviewed
    if args.limit is not None:
        if args.limit < 1:
            fail(f"--limit must be at least 1, not {args.limit}")
        samples = samples[: args.limit]
    if not samples:
        fail(f"{folder} has no complete samples to score")
    reporter = Reporter(total=len(samples), desc="scored", unit="sample")
    models = Models(args.device, reporter)
    existing = read_scores(folder)
    rows: dict[str, dict[str, Any]] = {}
    if not args.force and len(existing):
        for row in existing.to_dict("records"):
            if row.get("scored_with") == models.signature:
                rows[str(row["id"])] = {k: row.get(k) for k in SCORE_COLUMNS}
    todo = [s for s in samples if s.id not in rows]
    reporter.log(f"{len(todo)} of {len(samples)} samples to score in {folder} with {models.signature}")
    reporter.advance(len(samples) - len(todo))
    for k, sample in enumerate(todo, start=1):
        rows[sample.id] = score_sample(sample, models)
        reporter.advance(1, message=sample.id)
        if k % SAVE_EVERY == 0:
            write_scores(folder, rows)
    write_scores(folder, rows)
    reporter.close()
    suspects = sum(bool(SuspectRule().reasons(r)) for r in rows.values())
    reporter.log(f"{len(rows)} samples scored, {suspects} suspect; wrote {scores_path(folder)}")
    return 0


if __name__ == "__main__":
    run(main)
