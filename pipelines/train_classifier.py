"""Train an MI classifier: the 12-lead signal model or the prototype-style image model.

    python -m pipelines.train_classifier --kind signal --out RUN_DIR [--ptbxl DIR] [--epochs E] [--members K]
    python -m pipelines.train_classifier --kind image --out RUN_DIR --data CLS_DIR [--epochs E]

The signal model trains on PTB-XL strat_fold 1-8 with layout windows and digitisation-like noise, selects its epoch
and calibrates on fold 9, and is tested on fold 10. The image model trains on a classification set made by
``pipelines.build_classification_set`` (its folds come from the PTB-XL records behind the samples). Rerunning the
same command resumes from the run folder's checkpoints. The weights, model card and plots land in RUN_DIR/export/;
``--ship`` also copies them into weights/.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ecgcore.signals import DataSourceError, default_ptbxl_dir
from ecgcore.train.checkpoints import CONFIG_FILE, EXPORT_DIR
from ecgcore.train.signal_trainer import scaled_noise
from ecgcore.workspace import WEIGHTS_DIR

from ._cli import fail, run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.train_classifier", description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", required=True, choices=("signal", "image"), help="which model to train")
    p.add_argument("--out", required=True, type=Path, help="run folder (created; rerun the command to resume)")
    p.add_argument("--ptbxl", type=Path, help="PTB-XL folder for --kind signal (default: $ECGLAB_PTBXL)")
    p.add_argument("--data", type=Path, help="classification set folder for --kind image (build_classification_set)")
    p.add_argument("--epochs", type=int, help="maximum epochs (default: 80 signal, 25 image)")
    p.add_argument("--members", type=int, default=1, help="signal: ensemble members, each its own seed")
    p.add_argument("--batch-size", type=int, help="default: 64 signal, 12 image")
    p.add_argument("--lr", type=float, help="peak learning rate (default: 3e-3 signal, 1e-3 image)")
    p.add_argument("--patience", type=int, help="early stopping: epochs without a better validation score")
    p.add_argument("--noise-scale", type=float, default=1.0,
                   help="signal: multiply every digitisation-noise strength by this (0 = layout windows only)")
    p.add_argument("--p-clean", type=float, help="signal: share of training examples without digitisation noise")
    p.add_argument("--aux-weight", type=float,
                   help="signal: weight of the auxiliary loss on PTB-XL statements (codes, diagnostic classes and "
                        "subclasses) next to the 3-class loss (default 0: none)")
    p.add_argument("--aux-min-count", type=int,
                   help="signal: a statement is an auxiliary target when at least this many training records carry "
                        "it (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--export-only", action="store_true",
                   help="signal: export the ensemble of the members finished so far, without training")
    p.add_argument("--evaluate-photos", metavar="DIR",
                   help="no training: classify the photos of this PTB-V dataset (strat_fold 10) end to end with the "
                        "run's exported model and add the metrics to its card")
    p.add_argument("--class-maps", default="segmenter", choices=("segmenter", "truth"),
                   help="with --evaluate-photos: segment the photos (default) or use their ground-truth masks")
    p.add_argument("--limit", type=int, help="with --evaluate-photos: at most N photos")
    p.add_argument("--ship", action="store_true", help="copy the exported weights, card and plots into weights/")
    return p


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options among ``names`` given on the command line (the config's own defaults stand for the rest)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    command = "python -m pipelines.train_classifier " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    for name in ("epochs", "members", "batch_size", "patience", "aux_min_count"):
        value = getattr(args, name)
        if value is not None and value < 1:
            fail(f"--{name.replace('_', '-')} must be at least 1, not {value}")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"classifier_{args.kind}"
    if args.evaluate_photos:
        card = evaluate_photos_into_card(args, stem, command)
    elif args.kind == "signal":
        from ecgcore.train.signal_trainer import SignalTrainConfig, train_signal

        ptbxl = args.ptbxl or default_ptbxl_dir()
        if ptbxl is None:
            raise DataSourceError("the signal model trains on PTB-XL; give --ptbxl DIR or set ECGLAB_PTBXL "
                                  "(./download_datasets.sh fetches it)")
        cfg = SignalTrainConfig(members=args.members, seed=args.seed)
        if not 0.0 <= args.noise_scale <= 3.0:
            fail(f"--noise-scale must be between 0 and 3, not {args.noise_scale}")
        cfg.noise = scaled_noise(cfg.noise, args.noise_scale)
        if args.p_clean is not None:
            if not 0.0 <= args.p_clean <= 1.0:
                fail(f"--p-clean must be between 0 and 1, not {args.p_clean}")
            cfg.noise["p_clean"] = args.p_clean
        if args.aux_weight is not None and not 0.0 <= args.aux_weight <= 10.0:
            fail(f"--aux-weight must be between 0 and 10, not {args.aux_weight}")
        cfg = replace(cfg, **_given(args, "epochs", "batch_size", "lr", "patience", "aux_weight", "aux_min_count"))
        _check_resume(args.out, asdict(cfg))
        card = train_signal(cfg, ptbxl, args.out, command=command, export_only=args.export_only)
    else:
        from ecgcore.train.image_trainer import ImageTrainConfig, train_image

        if args.data is None:
            fail("--kind image needs --data CLS_DIR (made by python -m pipelines.build_classification_set)")
        cfg = ImageTrainConfig(seed=args.seed, **_given(args, "epochs", "batch_size", "lr", "patience"))
        _check_resume(args.out, asdict(cfg))
        card = train_image(cfg, args.data, args.out, command=command)
    export = args.out / EXPORT_DIR
    print(json.dumps(card["summary"], indent=1))
    if args.ship:
        WEIGHTS_DIR.mkdir(exist_ok=True)
        for path in sorted(export.glob(f"{stem}*")):
            shutil.copy2(path, WEIGHTS_DIR / path.name)
        print(f"shipped {stem} to {WEIGHTS_DIR}", file=sys.stderr)
    return 0


def evaluate_photos_into_card(args: argparse.Namespace, stem: str, command: str) -> dict:
    """Classify a PTB-V dataset's photos with the run's exported model; record the metrics in its card."""
    from ecgcore.classify.classifiers import DEFAULT_IMAGE_WEIGHTS, DEFAULT_SIGNAL_WEIGHTS, Classifiers, load_model
    from ecgcore.errors import ModelError
    from ecgcore.read import models
    from ecgcore.train.metrics import evaluate_photos, plot_confusions

    export = args.out / EXPORT_DIR
    weights = export / f"{stem}.safetensors"
    if not weights.is_file():
        raise ModelError(f"{weights} does not exist; train the run first (same command without --evaluate-photos).")
    if args.kind == "signal":
        signal = load_model(weights, "signal")
        image = load_model(DEFAULT_IMAGE_WEIGHTS, "image") if DEFAULT_IMAGE_WEIGHTS.is_file() else None
    else:
        signal = load_model(DEFAULT_SIGNAL_WEIGHTS, "signal")
        image = load_model(weights, "image")
    segmenter = models.segmenter() if args.class_maps == "segmenter" else None
    result = evaluate_photos(args.evaluate_photos, Classifiers(signal, image), segmenter, limit=args.limit)
    result["command"] = command
    card = json.loads((export / f"{stem}.json").read_text())
    photos = card["metrics"].get("photos_fold_10")
    photos = photos if isinstance(photos, dict) else {}
    photos[args.class_maps] = {k: v for k, v in result.items() if k not in ("signal", "image")} | {
        "metrics": result[args.kind]}
    card["metrics"]["photos_fold_10"] = photos
    overall = result[args.kind]["all"]
    if "all_failures_uniform" in overall:
        tag = "photos" if args.class_maps == "segmenter" else "truth_masks"
        card["summary"][f"mi_auroc_{tag}"] = round(overall["all_failures_uniform"]["mi_auroc"], 4)
        card["summary"][f"macro_f1_{tag}"] = round(overall["all_failures_uniform"]["macro_f1"], 4)
        card["summary"][f"digitised_{tag}"] = f"{overall['n_digitised']}/{overall['n_photos']}"
        confusions = {"all": overall["all_failures_uniform"]["confusion"]}
        confusions |= {k: v["all_failures_uniform"]["confusion"] for k, v in result[args.kind].items() if k != "all"}
        png = f"{stem}_photos_{args.class_maps}_confusion.png"
        plot_confusions(confusions, export / png, f"{args.kind} model from PTB-V photos of strat_fold 10 "
                        f"({result['class_maps']}; undigitised photos scored as uniform)")
        card["plots"][f"photos_{args.class_maps}_confusion"] = png
    (export / f"{stem}.json").write_text(json.dumps(card, indent=1, default=float) + "\n")
    return card


def _check_resume(out: Path, config: dict) -> None:
    """A run folder resumes only with the settings it was started with."""
    path = out / CONFIG_FILE
    if path.is_file():
        previous = json.loads(path.read_text())
        normalised = json.loads(json.dumps(config))
        if "aux_targets" not in normalised.get("model", {}):  # chosen from the training data when the run began
            previous.get("model", {}).pop("aux_targets", None)
        differs = sorted(k for k in normalised if previous.get(k) != normalised[k])
        if differs:
            fail(f"{out} holds a run with other settings ({', '.join(differs)}); use a new --out")


if __name__ == "__main__":
    run(main)
