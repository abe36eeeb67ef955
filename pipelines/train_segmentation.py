"""Train the segmentation U-Net on PTB-V photos (and optional lead-crop folders) into a run folder.

    python -m pipelines.train_segmentation --data DIR[,DIR...] --out RUN_DIR [--epochs E] [--device cpu|cuda]
        [--val DIR[,DIR...]] [--resume] [--steps-per-epoch N] [--batch-size B] [--crop PX] [--encoder NAME] ...

RUN_DIR gets config.json, train.log, metrics.csv, checkpoints/{last,best}.pt and best.safetensors + best.json.
Rerun with --resume to continue from checkpoints/last.pt. Training data must come from PTB-XL folds 1-8.

    python -m pipelines.train_segmentation --export RUN_DIR --to weights/segmentation_unet.safetensors \
        --test default=DIR --test harsh=DIR ...

exports a run's best weights with a model card holding held-out metrics measured on each --test folder.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ecgcore.progress import Reporter
from ecgcore.train.checkpoints import CONFIG_FILE

from ._cli import fail, run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.train_segmentation", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="comma-separated PTB-V dataset folders and/or crops folders to train on")
    p.add_argument("--out", type=Path, help="run folder (created)")
    p.add_argument("--val", help="comma-separated PTB-V folders for validation (default: 2%% of --data)")
    p.add_argument("--val-samples", type=int, default=16, help="whole validation photos scored per epoch")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps-per-epoch", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=320, help="training example side in px (multiple of 64)")
    p.add_argument("--lead-crop-p", type=float, default=0.2,
                   help="share of examples that are the prototype's jittered per-lead crops")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--patience", type=int, default=8, help="early stop after this many epochs without improvement")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop after the epoch that passes this wall time")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--workers", type=int, default=0,
                   help="data-loading processes (0: in the training process; use several on a GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder", help="smp encoder name (default: the shipped architecture's)")
    p.add_argument("--encoder-depth", type=int)
    p.add_argument("--decoder-channels", help="comma-separated decoder widths, one per encoder stage")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.pt")
    p.add_argument("--init", type=Path, help="start from these .safetensors weights (fine-tuning; same architecture)")
    p.add_argument("--loader-rate", type=float, metavar="SECONDS",
                   help="only measure the data loader (with --workers) for SECONDS and print batches/s as JSON")
    p.add_argument("--init-partial", action="store_true",
                   help="with --init: allow another architecture, loading the tensors whose name and shape match")
    p.add_argument("--allow-any-fold", action="store_true", help="do not check that records are from folds 1-8")
    p.add_argument("--export", type=Path, metavar="RUN_DIR", help="export RUN_DIR's best weights instead of training")
    p.add_argument("--to", type=Path, help="with --export: destination .safetensors (card written beside it)")
    p.add_argument("--test", action="append", default=[], metavar="NAME=DIR",
                   help="with --export: a held-out PTB-V folder to measure (repeatable)")
    p.add_argument("--test-limit", type=int, help="with --export: at most this many samples per test folder")
    p.add_argument("--notes", type=Path, help="with --export: JSON file merged into the model card")
    return p


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python -m pipelines.train_segmentation " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.export:
        return _export(args, command)
    if not args.data or not args.out:
        fail("--data and --out are required (or --export RUN_DIR --to FILE)")
    from ecgcore.read.segmentation import DEFAULT_MODEL_CONFIG, model_stride
    from ecgcore.train.segmenter import TrainConfig, train

    model = dict(DEFAULT_MODEL_CONFIG)
    if args.encoder:
        model["encoder_name"] = args.encoder
    if args.encoder_depth:
        model["encoder_depth"] = args.encoder_depth
    if args.decoder_channels:
        try:
            model["decoder_channels"] = [int(v) for v in _split(args.decoder_channels)]
        except ValueError:
            fail(f"--decoder-channels expects comma-separated integers, not {args.decoder_channels!r}")
    if len(model["decoder_channels"]) != model["encoder_depth"]:
        fail(f"--decoder-channels needs one width per encoder stage ({model['encoder_depth']})")
    if args.crop % model_stride(model):
        fail(f"--crop must be a multiple of {model_stride(model)} for this architecture, not {args.crop}")
    if args.workers < 0:
        fail("--workers must be 0 or more")
    if args.epochs < 1 or args.steps_per_epoch < 1 or args.batch_size < 1:
        fail("--epochs, --steps-per-epoch and --batch-size must be at least 1")
    if args.init and not args.init.is_file():
        fail(f"--init weights {args.init} do not exist")
    data, val = _split(args.data), _split(args.val)
    for folder in data + val:
        if not Path(folder).is_dir():
            fail(f"data folder {folder} does not exist")
    if args.resume and (args.out / CONFIG_FILE).is_file():
        previous = json.loads((args.out / CONFIG_FILE).read_text())
        if previous.get("model") != model:
            fail(f"{args.out} was trained with another architecture ({previous.get('model')}); use a new --out")
    cfg = TrainConfig(data=data, out=str(args.out), val=val, val_samples=args.val_samples, epochs=args.epochs,
                      steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, crop=args.crop,
                      lead_crop_p=args.lead_crop_p, lr=args.lr, patience=args.patience, max_minutes=args.max_minutes,
                      device=args.device, threads=args.threads, workers=args.workers, seed=args.seed,
                      allow_any_fold=args.allow_any_fold,
                      init=str(args.init or ""), init_partial=args.init_partial, model=model)
    if args.loader_rate:
        return _loader_rate(cfg, args.loader_rate)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create run folder {args.out} ({exc.strerror or exc})")
    reporter = Reporter(total=cfg.epochs * cfg.steps_per_epoch, desc="training", unit="step")
    try:
        summary = train(cfg, resume=args.resume, reporter=reporter, command=command)
    finally:
        reporter.close()
    print(json.dumps({k: summary[k] for k in ("stop_reason", "epoch", "step", "best", "best_epoch", "run_dir")}))
    return 0


def _loader_rate(cfg, seconds: float) -> int:
    """Draw training batches for ``seconds`` (after the first) and print the rate: sizes a time-boxed schedule."""
    import time

    from ecgcore.train.segmenter import training_batches

    batches = training_batches(cfg, {}, 0)
    next(batches)
    n, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        next(batches)
        n += 1
    rate = n / (time.monotonic() - start)
    print(json.dumps({"batches_per_s": round(rate, 3), "examples_per_s": round(rate * cfg.batch_size, 1),
                      "workers": cfg.workers, "batch_size": cfg.batch_size}))
    return 0


def _export(args: argparse.Namespace, command: str) -> int:
    from ecgcore.read.segmentation import load_segmenter
    from ecgcore.train.segmenter import export_run

    if not args.to:
        fail("--export needs --to FILE.safetensors")
    tests = {}
    for spec in args.test:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            fail(f"--test expects NAME=DIR, not {spec!r}")
        tests[name] = Path(folder)
    notes = json.loads(args.notes.read_text()) if args.notes else None
    reporter = Reporter(total=None, desc="evaluating", unit="photo")
    try:
        card = export_run(args.export, args.to, tests, limit=args.test_limit, notes=notes, command=command,
                          on_sample=lambda sid, ious: reporter.advance(1, message=sid))
    finally:
        reporter.close()
    load_segmenter(args.to)  # the exported file must load the way users load it
    print(json.dumps({name: {k: v for k, v in m.items() if k.startswith("iou_")}
                      for name, m in card.get("held_out", {}).items()}, indent=1))
    return 0


if __name__ == "__main__":
    run(main)
