"""Resumable training state on disk, shared by both trainers: written atomically, read back as tensors only.

A kill never leaves half a checkpoint (temporary file + rename), and a damaged checkpoint or one of another run's
model is a ModelError with one sentence; torch's own messages are long and suggest loading unsafely.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .errors import ModelError

T = TypeVar("T")


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
