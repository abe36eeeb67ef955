"""Evaluate the models and the digitiser on a PTB-V dataset.

    python -m pipelines.evaluate segmentation   --data DIR [--weights FILE] [--limit N] [--out FILE.json]
    python -m pipelines.evaluate digitization   --data DIR [--masks truth|predicted] [--weights FILE] [--fs 100|500]
                                                [--layout auto|NAME] [--limit N] [--out FILE.json]
    python -m pipelines.evaluate classification --data DIR [--masks truth|predicted] [--signal-weights FILE]
                                                [--limit N] [--out FILE.json]

segmentation: per-class IoU and Dice of the U-Net against the ground-truth masks.
digitization: per-lead SNR (dB), Pearson r and RMSE (uV) of the digitised record against its source record, over
  the plotted window of each lead, each signal's median removed, the best time shift within +-0.05 s per lead
  (ecgcore.train.evaluate documents the exact definition). Next to them, the limb-lead physics that needs no source
  record (ecgcore.read.physics: Einthoven I+III=II and Goldberger aVR+aVL+aVF=0 in dB, medians per set) and the share
  of readings marked reliable. --masks truth digitises the ground-truth masks (a perfect segmentation, but
  a class map only: no curve margin, so no sub-pixel edges; not an upper bound, see the note it prints);
  --masks predicted segments the photos first. A timing diagnostic (each reading's time origin to a tenth of a
  sample, and its SNR exactly on time) tells a late or early reading apart from a wrong shape.
classification: MI-vs-rest AUROC and 3-class macro F1 of the signal classifier on the digitised samples, and the
  share of those readings marked reliable.
Every command prints one JSON object (also written to --out) and skips curated-out samples.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ecgcore.layouts import LAYOUT_NAMES
from ecgcore.progress import Reporter

from ._cli import fail, run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="what", required=True, metavar="{segmentation,digitization,classification}")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--data", required=True, type=Path, help="PTB-V dataset folder")
        q.add_argument("--limit", type=int, help="evaluate at most this many samples (in id order)")
        q.add_argument("--out", type=Path, help="also write the JSON result here")
        q.add_argument("--phases", type=int, choices=(1, 2, 4),
                       help="segmentation: pixel phases whose logits are averaged (default 2, as the app)")

    seg = sub.add_parser("segmentation", help="IoU/Dice of the segmentation U-Net")
    common(seg)
    seg.add_argument("--weights", type=Path, help="segmentation .safetensors (default: the shipped weights)")

    dig = sub.add_parser("digitization", help="SNR / r / RMSE of digitised samples against their source records")
    common(dig)
    dig.add_argument("--masks", default="truth", choices=("truth", "predicted"),
                     help="digitise the ground-truth masks (perfect segmentation, no sub-pixel edges) or the U-Net's "
                          "predictions")
    dig.add_argument("--weights", type=Path, help="segmentation weights for --masks predicted")
    dig.add_argument("--fs", type=int, choices=(100, 500), help="output rate (default: the source record's)")
    dig.add_argument("--layout", default="auto", choices=("auto", *LAYOUT_NAMES))
    dig.add_argument("--ptbxl", type=Path, help="PTB-XL folder (default: the one named in dataset.json)")

    cls = sub.add_parser("classification", help="AUROC / F1 of the signal classifier on digitised samples")
    common(cls)
    cls.add_argument("--masks", default="predicted", choices=("truth", "predicted"))
    cls.add_argument("--weights", type=Path, help="segmentation weights for --masks predicted")
    cls.add_argument("--signal-weights", type=Path, help="signal classifier weights (default: the shipped ones)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        fail(f"--limit must be at least 1, not {args.limit}")
    from ecgcore.dataset import open_dataset

    open_dataset(args.data)  # one sentence when it is not a dataset
    if args.what == "segmentation":
        result = evaluate_segmentation_cmd(args)
    elif args.what == "digitization":
        result = evaluate_digitization(args)
    else:
        result = evaluate_classification(args)
    text = json.dumps(result, indent=1, default=_json_default)
    if args.out:
        from ecgcore.imageio import atomic_write_bytes

        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.out, (text + "\n").encode())
    print(text)
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _samples(args: argparse.Namespace) -> list:
    from ecgcore.dataset import DatasetError, iter_samples

    samples = list(iter_samples(args.data, include_discarded=False))
    if args.limit:
        samples = samples[: args.limit]
    if not samples:
        raise DatasetError(f"{args.data} has no samples to evaluate (all discarded or none complete).")
    return samples


def _segmenter(args: argparse.Namespace):
    from ecgcore.read.segmentation import load_segmenter

    segmenter = load_segmenter(args.weights)  # ModelError with a sentence when missing
    if args.phases:
        segmenter.phases = args.phases
    return segmenter


# --- segmentation -------------------------------------------------------------------------------------------------


def evaluate_segmentation_cmd(args: argparse.Namespace) -> dict[str, Any]:
    from ecgcore.read.segmentation import evaluate_segmentation

    segmenter = _segmenter(args)
    reporter = Reporter(total=len(_samples(args)), desc="segmentation", unit="sample")
    result = evaluate_segmentation(segmenter, args.data, limit=args.limit,
                                   on_sample=lambda sid, ious: reporter.advance(1, message=sid))
    reporter.close()
    result["weights"] = str(args.weights or "shipped")
    return result


# --- digitisation ---------------------------------------------------------------------------------------------


def evaluate_digitization(args: argparse.Namespace) -> dict[str, Any]:
    """Per-sample and pooled SNR / r / RMSE; failures are counted (and scored as missing, not as 0 dB)."""
    from ecgcore.errors import DigitizationError
    from ecgcore.read.physics import reading_of
    from ecgcore.read.segmentation import segment_with_margin
    from ecgcore.train.evaluate import digitize_sample, sample_source_record, source_signal, subsample_timing

    samples = _samples(args)
    segmenter = _segmenter(args) if args.masks == "predicted" else None
    reporter = Reporter(total=len(samples), desc=f"digitising ({args.masks} masks)", unit="sample")
    rows: list[dict[str, Any]] = []
    lead_snr: list[np.ndarray] = []
    for sample in samples:
        record = sample_source_record(sample, args.ptbxl)
        class_map, margin = (sample.mask(), None) if segmenter is None else segment_with_margin(segmenter, sample.image())
        row: dict[str, Any] = {"id": sample.id, "layout": sample.meta.get("layout"), "label": sample.label}
        try:
            dig, scores = digitize_sample(sample, class_map, margin, layout=args.layout, fs=args.fs, source=record)
        except DigitizationError as exc:
            row.update(error=str(exc), snr_db=None)
            rows.append(row)
            reporter.advance(1, message=f"{sample.id}: failed")
            continue
        summary = scores.summary()
        reading = reading_of(dig)  # the Classify page's and the CLI's verdict on the same reading
        timing_s, exact_db = subsample_timing(source_signal(record, dig.fs), dig.signal, dig.fs)
        row.update(detected_layout=dig.layout, layout_correct=dig.layout == sample.meta.get("layout"),
                   rotation_error_deg=round(abs(dig.rotation_deg - float(sample.meta.get("angle_deg", 0.0))), 3),
                   px_per_mm_error=round(dig.px_per_mm / float(sample.meta["px_per_mm"]) - 1.0, 5),
                   **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary.items()},
                   per_lead_snr_db=[None if not np.isfinite(v) else round(float(v), 2) for v in scores.snr_db],
                   timing_ms=_median_or_none(1000.0 * timing_s, 1), snr_db_exact_timing=_median_or_none(exact_db, 2),
                   quality_ok=dig.quality["ok"], einthoven_db=reading.einthoven_db,
                   goldberger_db=reading.goldberger_db, reliable=reading.reliable, reasons=reading.reasons)
        rows.append(row)
        lead_snr.append(scores.snr_db)
        reporter.advance(1, message=f"{sample.id}: {summary['snr_db']:.1f} dB")
    reporter.close()
    return _digitization_summary(rows, lead_snr, args)


def _median_or_none(values: np.ndarray, digits: int) -> float | None:
    finite = values[np.isfinite(values)]
    return round(float(np.median(finite)), digits) if finite.size else None


def _digitization_summary(rows: list[dict[str, Any]], lead_snr: list[np.ndarray],
                          args: argparse.Namespace) -> dict[str, Any]:
    ok = [r for r in rows if r.get("snr_db") is not None]
    pooled = np.concatenate(lead_snr) if lead_snr else np.zeros(0)
    pooled = pooled[np.isfinite(pooled)]

    def stats(subset: list[dict[str, Any]]) -> dict[str, Any]:
        if not subset:
            return {"n": 0}
        snr = np.array([r["snr_db"] for r in subset], np.float64)
        reliable = np.array([r["reliable"] for r in subset], bool)
        return {
            "n": len(subset),
            "snr_db_median_of_records": float(np.nanmedian(snr)),
            "snr_db_p10_of_records": float(np.nanpercentile(snr, 10)),
            "pearson_r_median": float(np.nanmedian([r["pearson_r"] for r in subset])),
            "rmse_uv_median": float(np.nanmedian([r["rmse_uv"] for r in subset])),
            "layout_accuracy": float(np.mean([r["layout_correct"] for r in subset])),
            # a diagnostic: how far each reading's time origin is off, and what it would score exactly on time
            "timing_error_ms_median_abs": _median_or_none(np.abs(_column(subset, "timing_ms")), 2),
            "snr_db_median_exact_timing": _median_or_none(_column(subset, "snr_db_exact_timing"), 2),
            **physics_summary(subset),
            # Does the flag separate good readings from bad ones? The source record's SNR on each side of it.
            "snr_db_median_reliable": float(np.nanmedian(snr[reliable])) if reliable.any() else None,
            "snr_db_median_unreliable": float(np.nanmedian(snr[~reliable])) if (~reliable).any() else None,
        }

    by_layout = {name: stats([r for r in ok if r["layout"] == name]) for name in sorted({r["layout"] for r in rows})}
    pooled_by_layout = {}
    for name in by_layout:
        values = [np.asarray([v for v in r["per_lead_snr_db"] if v is not None]) for r in ok if r["layout"] == name]
        flat = np.concatenate(values) if values else np.zeros(0)
        pooled_by_layout[name] = float(np.median(flat)) if flat.size else None
    return {
        "what": "digitization",
        "data": str(args.data),
        "masks": args.masks,
        "note": ("ground-truth masks: a perfect segmentation but a class map only, without the U-Net's curve margin "
                 "that the reader takes sub-pixel edges from; not an upper bound (held-out default, 24 photos: truth "
                 "15.4 dB, the U-Net's class map without its margin 15.5, with it 19.7), and not the pipeline's score"
                 if args.masks == "truth" else "masks predicted by the segmentation U-Net: the pipeline's score"),
        "definition": "per-lead SNR = 10 log10(sum true^2 / sum (true - est)^2) over the plotted window, each "
                      "signal's median removed, best time shift within +-0.05 s per lead",
        "timing_definition": "diagnostic, not the score: per lead the continuous time shift (0.1-sample steps, the "
                             "true signal interpolated) that best aligns the reading, as timing_ms (+: read late) and "
                             "snr_db_exact_timing (median over leads); the score's whole-sample shifts leave up to "
                             "half a sample, which costs several dB on every steep QRS flank",
        "physics_definition": "per law, 10 log10(mean energy of its leads / energy of the residual) over the samples "
                              "where all its leads are read, each lead's median removed (ecgcore.read.physics); medians "
                              "over the readings where the law could be measured; reliable as in classify --json",
        "n_samples": len(rows),
        "n_failed": len(rows) - len(ok),
        "snr_db_median_all_leads": float(np.median(pooled)) if pooled.size else None,
        "snr_db_mean_all_leads": float(np.mean(pooled)) if pooled.size else None,
        **{k: v for k, v in stats(ok).items() if k != "n"},
        "by_layout": by_layout,
        "snr_db_median_all_leads_by_layout": pooled_by_layout,
        "failures": [{"id": r["id"], "error": r["error"]} for r in rows if r.get("snr_db") is None],
        "per_sample": rows,
    }


def _column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else r[key] for r in rows], np.float64)


def physics_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the two limb-lead laws (dB) over the rows where each was measurable, how many that was, and the
    share of rows whose reading was marked reliable (rows: dicts with einthoven_db, goldberger_db, reliable)."""
    out: dict[str, Any] = {}
    for key in ("einthoven_db", "goldberger_db"):
        values = [r[key] for r in rows if r.get(key) is not None]
        out[f"{key}_median"] = round(float(np.median(values)), 2) if values else None
        out[f"{key}_measured"] = len(values)
    out["reliable_share"] = round(float(np.mean([bool(r.get("reliable")) for r in rows])), 4) if rows else None
    return out


# --- classification -------------------------------------------------------------------------------------------


def evaluate_classification(args: argparse.Namespace) -> dict[str, Any]:
    from ecgcore.classify.classifiers import load_classifiers
    from ecgcore.constants import LABEL_INDEX, LABELS
    from ecgcore.errors import DigitizationError
    from ecgcore.read.digitize import digitize
    from ecgcore.read.physics import reading_of
    from ecgcore.read.segmentation import segment_with_margin
    from ecgcore.train.metrics import classification_metrics

    samples = [s for s in _samples(args) if s.label in LABEL_INDEX]
    if not samples:
        fail(f"{args.data} has no samples with a diagnostic label (synthetic sources have none)")
    classifiers = load_classifiers(args.signal_weights, with_image=False)
    segmenter = _segmenter(args) if args.masks == "predicted" else None
    reporter = Reporter(total=len(samples), desc="classifying", unit="sample")
    y_true, probs, failed, readings = [], [], [], []
    for sample in samples:
        class_map, margin = (sample.mask(), None) if segmenter is None else segment_with_margin(segmenter, sample.image())
        try:
            dig = digitize(class_map, layout="auto", fs=100, curve_margin=margin)
            p = classifiers.predict_signal(dig)
        except DigitizationError as exc:
            failed.append({"id": sample.id, "error": str(exc)})
            reporter.advance(1, message=f"{sample.id}: failed")
            continue
        y_true.append(LABEL_INDEX[sample.label])
        probs.append([p[label] for label in LABELS])
        readings.append(reading_of(dig).to_json())
        reporter.advance(1, message=sample.id)
    reporter.close()
    if not y_true:
        fail("no sample could be digitised and classified")
    metrics = classification_metrics(np.asarray(y_true), np.asarray(probs))
    return {"what": "classification", "data": str(args.data), "masks": args.masks, **metrics,
            **physics_summary(readings), "n_failed": len(failed), "failures": failed,
            "models": classifiers.models_info()}


if __name__ == "__main__":
    run(main)
