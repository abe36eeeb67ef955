"""Resumable training state on disk, shared by both trainers: written atomically, read back as tensors only.

A kill never leaves half a checkpoint (temporary file + rename), and a damaged checkpoint or one of another run's
model is a ModelError with one sentence; torch's own messages are long and suggest loading unsafely.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ecgcore.errors import ConfigError, ModelError

T = TypeVar("T")

# A training run folder (one layout for every trainer): its settings, its per-epoch history, the marker of a finished
# run (or ensemble member), and the exported weights with their card.
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.jsonl"
DONE_FILE = "done.json"
EXPORT_DIR = "export"
BEST_FILE = "best.safetensors"  # the best epoch's weights (of the run, or of an ensemble member's folder)
CHECKPOINT_FILE = "checkpoint.pt"  # a classifier run's (or member's) resumable state (ecgcore.train.loop)
METRICS_FILE = "metrics.csv"  # the segmentation trainer's per-epoch metrics (its history; Home and Jobs chart it)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through ``path.tmp`` and a rename."""
    import torch

    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def restore_checkpoint(path: Path, apply: Callable[[dict[str, Any]], T], fix: str,
                       map_location: str | None = None) -> T:
    """Load ``path`` (``weights_only``: no code runs) and hand it to ``apply``, which loads it into the model and
    optimiser and returns what the trainer needs. Either step failing is a ModelError ending in ``fix``."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. pickle-protocol warnings: the sentence below says it all
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # torch raises many kinds (RuntimeError, UnpicklingError, EOFError, ...)
        raise ModelError(f"the training checkpoint {path} is damaged or not a checkpoint of this trainer; {fix}.") \
            from None
    try:
        return apply(state)
    except Exception:  # missing keys, other shapes, another optimiser
        raise ModelError(f"the training checkpoint {path} does not fit this run's model and settings; {fix}.") from None


def save_checkpoint(path: Path, model, optimizer, scheduler, epoch: int, best_score: float, best_epoch: int) -> None:
    """Write the resumable training state atomically: a kill never leaves half a file."""
    atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "scheduler": scheduler.state_dict(), "epoch": epoch, "best_score": best_score,
                       "best_epoch": best_epoch}, path)


def load_checkpoint(path: Path, model, optimizer, scheduler) -> tuple[int, float, int]:
    """Restore what save_checkpoint wrote; returns (next epoch, best score, best epoch). A damaged checkpoint or one
    of another run's model is a ModelError with one sentence."""

    def apply(state: dict) -> tuple[int, float, int]:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        return int(state["epoch"]) + 1, float(state["best_score"]), int(state["best_epoch"])

    return restore_checkpoint(path, apply, "delete it to train that part again from the start, or use a new --out")


def write_atomic(path: Path, text: str) -> None:
    """Write a small text file so that a kill leaves the old content or the new, never half (a half done.json
    would read as a finished member)."""
    from ecgcore.imageio import atomic_write_bytes

    atomic_write_bytes(path, text.encode())


def drop_history_from(path: Path, epoch: int, member: int | None = None) -> None:
    """Remove the history lines of epochs >= ``epoch`` (of ``member``, when given), which a run killed after writing
    them but before its checkpoint would otherwise repeat on resume; a torn last line goes too. Atomic rewrite."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(entry, dict):
            continue
        same_member = member is None or entry.get("member") == member
        if same_member and int(entry.get("epoch", -1)) >= epoch:
            continue
        kept.append(line + "\n")
    write_atomic(path, "".join(kept))


def check_settings(cfg: Any, ranges: dict[str, tuple[float | None, float | None]]) -> None:
    """A training config's checks, for every caller (the CLI, the Jobs page, a script): each named field lies in its
    [low, high] range (None: open); ConfigError naming the first that does not."""
    for name, (low, high) in ranges.items():
        value = getattr(cfg, name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"{name} must be a number, not {value!r}.")
        if low is not None and value < low or high is not None and value > high:
            bound = (f"between {low:g} and {high:g}" if low is not None and high is not None
                     else f"at least {low:g}" if low is not None else f"at most {high:g}")
            raise ConfigError(f"{name} must be {bound}, not {value}.")
