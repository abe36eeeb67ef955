"""Classify photos of paper ECGs: normal, non-MI abnormality or myocardial infarction.

    python -m pipelines.classify IMAGE... [--json] [--layout auto|seed-3x4|3x4+II|6x2|12x1|3x4|3x4+3]

Each image is segmented, digitised and classified (ecgcore.read.analyze). With --json, one JSON object per image on
stdout: {"image", "probabilities": {normal, non_mi_abnormality, mi}, "prediction", "models", "digitization",
"reading": {"reliable", "einthoven_db", "goldberger_db", "repeats_r", "reasons"}}, or {"image", "error": "one
sentence"}; the exit code is non-zero when any image failed. A reading that is not reliable (it breaks the limb-lead
physics or another check; "reasons" say why) is no result: its probabilities are research output only, and the
plain-text line says so first. Each image's analysis may grow the process by at most
ecgcore.read.isolate.MEMORY_ALLOWANCE_BYTES (past it: an error line, and the next image goes on).
Research use only: not medical advice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ecgcore.errors import USER_ERRORS, cli_sentence
from ecgcore.imageio import read_image
from ecgcore.layouts import LAYOUT_NAMES
from ecgcore.progress import Reporter
from ecgcore.read import models
from ecgcore.read.analyze import (
    DISCLAIMER,
    LABEL_NAMES_FOR_PEOPLE,
    analyze_photo,
    release_memory,
)
from ecgcore.read.isolate import is_out_of_memory, memory_allowance, memory_sentence

from ._cli import run

EXIT_SOME_FAILED = 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.classify", description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="photos or scans of paper ECGs")
    p.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    p.add_argument("--layout", default="auto", choices=("auto", *LAYOUT_NAMES), help="paper layout (default: detect)")
    p.add_argument("--signal-weights", type=Path, help="signal classifier .safetensors (default: shipped)")
    p.add_argument("--image-weights", type=Path, help="image classifier .safetensors (default: shipped, if present)")
    p.add_argument("--segmentation-weights", type=Path, help="segmentation .safetensors (default: shipped)")
    return p


def _error_sentence(exc: BaseException) -> str:
    text = cli_sentence(exc) or exc.__class__.__name__
    first_word = text.split(" ", 1)[0]
    # "the layout ..." becomes "The layout ..."; a sentence that starts with a file name keeps the name as it is.
    return text[0].upper() + text[1:] if first_word.isalpha() else text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results: list[dict] = []
    models_error: str | None = None
    try:
        segmenter, classifiers = models.load(args.segmentation_weights, args.signal_weights, args.image_weights)
    except USER_ERRORS as exc:
        # Without models no image can be classified: each image gets the same sentence.
        models_error = _error_sentence(exc)
    reporter = Reporter(total=len(args.images), desc="classifying", unit="image", disable=True if args.json else None)
    for path in args.images:
        try:
            rgb = read_image(path).rgb  # a bad file is named as such even when the models are missing
            if models_error is not None:
                result = {"image": str(path), "error": models_error}
            else:
                analysis = _analyze_within_allowance(rgb, args.layout, segmenter, classifiers)
                result = analysis.to_json(str(path))
        except USER_ERRORS as exc:
            result = {"image": str(path), "error": _error_sentence(exc)}
        except Exception as exc:  # MemoryError, or torch's and OpenCV's words for it; anything else is a bug
            if not is_out_of_memory(exc):
                raise
            result = {"image": str(path), "error": _error_sentence(ValueError(memory_sentence()))}
        results.append(result)
        _emit(result, args.json)
        reporter.advance(1, message=path.name)
    reporter.close()
    if not args.json:
        print(DISCLAIMER, file=sys.stderr)
    return EXIT_SOME_FAILED if any("error" in r for r in results) else 0


def _analyze_within_allowance(rgb, layout: str, segmenter, classifiers):
    """analyze_photo with the process's growth capped (an image that makes the reader run away gets MemoryError,
    not the kernel's OOM killer); the memory is given back to the OS afterwards."""
    try:
        with memory_allowance():
            return analyze_photo(rgb, layout=layout, segmenter=segmenter, classifiers=classifiers, explain=False)
    finally:
        release_memory()


def _emit(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result), flush=True)
        return
    if "error" in result:
        print(f"{result['image']}: error: {result['error']}", flush=True)
        return
    probs = ", ".join(f"{LABEL_NAMES_FOR_PEOPLE[k]} {v:.0%}" for k, v in result["probabilities"].items())
    dig, reading = result["digitization"], result["reading"]
    where = f"layout {dig['layout']}, {len(dig['leads_found'])} leads read"
    if reading["reliable"]:
        laws = ", ".join(f"{law} {_db(reading[f'{law.lower()}_db'])}" for law in ("Einthoven", "Goldberger"))
        print(f"{result['image']}: {LABEL_NAMES_FOR_PEOPLE[result['prediction']]} ({probs}); {where}; the limb leads "
              f"agree ({laws})", flush=True)
    else:
        print(f"{result['image']}: could not read this ECG reliably: {'; '.join(reading['reasons'])}. {where}. "
              f"Research output only, not a result: {probs}", flush=True)


def _db(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.1f} dB"


if __name__ == "__main__":
    run(main)
