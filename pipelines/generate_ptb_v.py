"""Generate a PTB-V dataset: ECG paper rendered from PTB-XL (or synthetic) signals, photographed.

    python -m pipelines.generate_ptb_v --out DIR -n N [--ptbxl DIR | --synthetic] [--preset NAME|FILE.json] [--seed S]
        [--workers W] [--layout NAME[,NAME...]] [--ids ECG_ID,...] [--folds 1-8]

Rerunning the same command resumes: samples already written are kept, missing ones are made. Each sample's
seed depends only on (--seed, sample index), so the result is the same whatever --workers or --backend.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from ecgcore.constants import GENERATOR_VERSION, GRID_COLORS, MINOR_GRIDS
from ecgcore.dataset import (
    DATASET_FILE,
    DatasetError,
    is_done,
    new_dataset_info,
    open_dataset,
    sample_id,
    write_dataset_json,
)
from ecgcore.layouts import LAYOUT_NAMES
from ecgcore.progress import Reporter
from ecgcore.signals import PtbXl, default_ptbxl_dir
from ecgcore.synth.backgrounds import list_background_photos
from ecgcore.synth.generate import IDENTITY_KEYS, make_sample
from ecgcore.synth.params import Preset, resolve_preset, shipped_preset_names
from ecgcore.synth.photo import DEFAULT_PHOTO_SIZE
from ecgcore.synth.render import PRINT_STYLES, PaperOptions

from ._cli import fail, run


def parse_folds(text: str) -> list[int]:
    """'1-8' -> [1..8]; '9,10' -> [9, 10]."""
    folds: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                folds.update(range(a, b + 1))
            elif part:
                folds.add(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--folds expects e.g. 1-8 or 9,10, not {text!r}") from None
    if not folds or not all(1 <= f <= 10 for f in folds):
        raise argparse.ArgumentTypeError(f"--folds must name strat_folds between 1 and 10, not {text!r}")
    return sorted(folds)


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size expects WIDTHxHEIGHT, e.g. 1600x1200, not {text!r}") from None
    if not (256 <= w <= 6000 and 256 <= h <= 6000):
        raise argparse.ArgumentTypeError(f"--size sides must be between 256 and 6000 px, not {text!r}")
    return w, h


LATER_PAPER_OPTIONS = ("print_style", "minor_grid")  # PaperOptions fields that joined the dataset identity later


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.generate_ptb_v", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="dataset folder (created; rerun to resume)")
    p.add_argument("-n", type=int, required=True, help="number of samples")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--ptbxl", type=Path, help="PTB-XL folder (default: $ECGLAB_PTBXL, else --synthetic)")
    src.add_argument("--synthetic", action="store_true", help="use the built-in synthetic 12-lead source")
    p.add_argument("--preset", help="JSON preset file of parameter distributions, or the name of a shipped preset: "
                                    f"{', '.join(shipped_preset_names())} (default: the prototype's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (joblib)")
    p.add_argument("--layout", default="seed-3x4",
                   help=f"layout, or a comma list to draw from per sample: {', '.join(LAYOUT_NAMES)}")
    p.add_argument("--ids", help="comma-separated PTB-XL ecg_ids to use (default: all of --folds)")
    p.add_argument("--folds", type=parse_folds, help="PTB-XL strat_folds to draw records from, e.g. 1-8 or 10")
    p.add_argument("--fs", type=int, default=100, choices=(100, 500), help="sampling rate of the source signals")
    p.add_argument("--size", type=parse_size, default=DEFAULT_PHOTO_SIZE, help="photo size WIDTHxHEIGHT")
    p.add_argument("--paper-speed", type=float, default=25.0, choices=(25.0, 50.0))
    p.add_argument("--gain", type=float, default=10.0, choices=(5.0, 10.0, 20.0))
    p.add_argument("--grid-color", default=PaperOptions.grid_color, choices=tuple(GRID_COLORS), help=", ".join(GRID_COLORS))
    p.add_argument("--minor-grid", default=PaperOptions.minor_grid, choices=MINOR_GRIDS,
                   help="the minor grid as thin lines, or as a dot at every 1 mm crossing")
    p.add_argument("--print-style", default=PaperOptions.print_style, choices=PRINT_STYLES,
                   help="ptb-v: labels above the cells (the prototype's); device: labels on the trace and dotted "
                        "lead separators, as many electrocardiographs print")
    p.add_argument("--backgrounds", type=Path, help="folder of background photos (enables background 'folder')")
    p.add_argument("--backend", default="loky", choices=("loky", "dask"), help="joblib backend")
    p.add_argument("--scheduler", help="Dask scheduler address for --backend dask (e.g. tcp://host:8786)")
    return p


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """Validate every input before any work starts; return the dataset's identity."""
    if args.n < 1:
        fail(f"-n must be at least 1, not {args.n}")
    if args.workers < 1:
        fail(f"--workers must be at least 1, not {args.workers}")
    preset = resolve_preset(args.preset)
    layouts = [name.strip() for name in args.layout.split(",") if name.strip()]
    unknown = [name for name in layouts if name not in LAYOUT_NAMES]
    if not layouts or unknown:
        fail(f"unknown layout {', '.join(unknown) or args.layout!r}; choose from {', '.join(LAYOUT_NAMES)}")
    paper = PaperOptions(paper_speed=args.paper_speed, gain=args.gain, grid_color=args.grid_color,
                         print_style=args.print_style, minor_grid=args.minor_grid)
    paper.validate()
    backgrounds = str(args.backgrounds.resolve()) if args.backgrounds else None
    if backgrounds:
        list_background_photos(backgrounds)
    elif "folder" in preset.dists["background"].args[0]:  # a choice's options, or a constant's value
        fail("the preset uses background 'folder' but no --backgrounds DIR was given")

    ptbxl_dir = args.ptbxl or (None if args.synthetic else default_ptbxl_dir())
    if ptbxl_dir is None:
        if args.ids or args.folds:
            fail("--ids and --folds select PTB-XL records; give --ptbxl DIR (or set ECGLAB_PTBXL)")
        source: dict[str, Any] = {"kind": "synthetic"}
    else:
        db = PtbXl(ptbxl_dir)
        if args.ids:
            try:
                ids = [int(v) for v in args.ids.split(",") if v.strip()]
            except ValueError:
                fail(f"--ids expects comma-separated ecg_ids, not {args.ids!r}")
            missing = [i for i in ids if i not in db.metadata.index]
            if missing:
                fail(f"ecg_id {missing[0]} is not in {db.root / 'ptbxl_database.csv'}"
                     + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
            if args.folds:
                ids = [i for i in ids if int(db.metadata.loc[i, "strat_fold"]) in args.folds]
        else:
            ids = db.ids(folds=args.folds)
        if not ids:
            fail("no PTB-XL records match --ids/--folds")
        # Record order: a shuffle fixed by the dataset seed, so sample i always shows the same record.
        order = np.random.default_rng(args.seed).permutation(len(ids))
        ids = [int(ids[i]) for i in order]
        db.record(ids[0], fs=args.fs)  # fail now, not in a worker, when the files are absent
        source = {"kind": "ptb-xl", "root": str(db.root.resolve()), "folds": args.folds, "ids": ids}
    return {
        "preset": preset.to_json(),
        "source": source,
        "layouts": layouts,
        "seed": args.seed,
        "size": list(args.size),
        # options added later only when not their default, so that datasets made before they existed still resume
        "paper": {"paper_speed": paper.paper_speed, "gain": paper.gain, "grid_color": paper.grid_color,
                  **{k: getattr(paper, k) for k in LATER_PAPER_OPTIONS if getattr(paper, k) != getattr(PaperOptions, k)}},
        "fs": args.fs,
        "backgrounds": backgrounds,
    }


def _same_setting(key: str, old: Any, new: Any) -> bool:
    """Whether a dataset's stored setting equals this run's. Presets are compared after filling in the parameters
    the schema gained since (at their defaults), so a dataset made before them still resumes."""
    if key == "preset" and isinstance(old, dict):
        try:
            return Preset.from_json(old).to_json() == new
        except ValueError:
            return False
    return old == new


def prepare_folder(out: Path, config: dict[str, Any], n: int) -> dict[str, Any]:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        fail(f"cannot write to output folder {out} ({exc.strerror or exc})")
    # Temporary files of a killed run (atomic writes that never got renamed) are never samples: remove them.
    for stale in out.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    if (out / DATASET_FILE).exists():
        info = open_dataset(out)
        differs = [k for k in IDENTITY_KEYS if not _same_setting(k, info.get(k), config.get(k))]
        if differs:
            raise DatasetError(
                f"{out} already holds a dataset made with other settings ({', '.join(differs)}); use a new --out"
            )
        if info.get("generator_version") != GENERATOR_VERSION:
            raise DatasetError(
                f"{out} was made by generator {info.get('generator_version')}, this is {GENERATOR_VERSION}: its samples"
                " would not match the new ones; use a new --out"
            )
    else:
        info = new_dataset_info(config)
    info["requested"] = max(n, int(info.get("requested", 0)))
    try:
        write_dataset_json(out, info)
    except OSError as exc:
        fail(f"cannot write to output folder {out} ({exc.strerror or exc})")
    return info


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.backend == "dask" and not args.scheduler:
        fail("--backend dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")
    config = resolve_config(args)
    out = args.out
    info = prepare_folder(out, config, args.n)
    todo = [i for i in range(args.n) if not is_done(out, sample_id(i))]
    source_name = "synthetic signals" if config["source"]["kind"] == "synthetic" else f"PTB-XL at {config['source']['root']}"
    reporter = Reporter(total=args.n, desc="samples", unit="sample")
    reporter.log(f"{len(todo)} of {args.n} samples to make from {source_name} into {out}")
    reporter.advance(args.n - len(todo))
    labels: dict[str, int] = {}
    try:
        for sid, label, written in _run_parallel(todo, config, str(out), args):
            if written:
                labels[label] = labels.get(label, 0) + 1
            reporter.advance(1, message=sid)
        done = sum(1 for i in range(max(args.n, info["requested"])) if is_done(out, sample_id(i)))
        info = open_dataset(out)
        info["complete"] = done
        info["labels_written_this_run"] = labels
        write_dataset_json(out, info)
    except OSError as exc:  # disk full, folder removed, ...: every sample that counts as done is whole
        reporter.close()
        fail(f"writing to {out} failed ({exc.strerror or exc}); the samples written before are complete, rerun to resume", 1)
    reporter.close()
    reporter.log(f"{done} samples complete in {out}")
    return 0


def _run_parallel(todo: list[int], config: dict[str, Any], out: str, args: argparse.Namespace):
    if not todo:
        return
    if args.workers == 1 and args.backend == "loky":
        for index in todo:
            yield make_sample(index, config, out)
        return
    from joblib import Parallel, delayed, parallel_config

    jobs = (delayed(make_sample)(index, config, out) for index in todo)
    if args.backend == "dask":
        from distributed import Client

        with Client(args.scheduler) as client, parallel_config(backend="dask", wait_for_workers_timeout=30):
            n_workers = max(1, len(client.scheduler_info().get("workers", {})))
            yield from Parallel(n_jobs=-1, return_as="generator_unordered", pre_dispatch=f"{2 * n_workers}")(jobs)
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # workers are processes: keep each to one core
    yield from Parallel(n_jobs=args.workers, return_as="generator_unordered", batch_size=1)(jobs)


if __name__ == "__main__":
    run(main)
