"""One training loop for the classifiers (each member of the signal ensemble, and the image model).

Epochs of shuffled batches (the order and every random draw of a batch from one generator seeded by (seed, epoch),
so a resumed run draws what an uninterrupted one would), one validation score per epoch, the best weights kept, a
history line and a checkpoint after every epoch in the run-folder layout of :mod:`ecgcore.train.checkpoints` (a
killed run resumes after its last finished epoch), and early stopping after ``patience`` epochs without a better
score. What differs between trainers, the batch and its loss and the validation, comes in as two functions.

(The segmentation trainer, :mod:`ecgcore.train.segmenter`, counts steps rather than epochs over a stream of photo
crops, and shares the checkpoint and history helpers rather than this loop.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgcore.progress import Reporter
from ecgcore.train.checkpoints import CHECKPOINT_FILE, drop_history_from, load_checkpoint, save_checkpoint

# (indices of the batch's samples, the epoch's generator) -> the batch's loss
BatchLoss = Callable[[np.ndarray, np.random.Generator], torch.Tensor]
# () -> (validation figures by name, the score that picks the best epoch; higher is better)
Validate = Callable[[], tuple[dict[str, float], float]]


@dataclass
class Loop:
    """What one training run (or ensemble member) is: the model and its optimiser, where its state lives, and how
    long it may run."""

    model: torch.nn.Module
    optimizer: Any
    scheduler: Any
    folder: Path  # CHECKPOINT_FILE here; the best weights go where save_best puts them
    history: Path  # the run's HISTORY_FILE (shared by ensemble members)
    save_best: Callable[[], None]
    reporter: Reporter
    seed: int
    epochs: int
    patience: int
    n_train: int
    batch_size: int
    member: int | None = None  # the ensemble member ("member K" in messages, "member": K in the history)
    stop_file: Path | None = None  # the run stops before an epoch when this file appears (a finished run)

    @property
    def steps(self) -> int:
        return steps_per_epoch(self.n_train, self.batch_size)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Batches per epoch (the last one may be short); the learning-rate schedule is sized by it too."""
    return int(np.ceil(n_train / batch_size))


def run(loop: Loop, batch_loss: BatchLoss, validate: Validate) -> tuple[int, float]:
    """Train from the last checkpoint (or the start) to the end or an early stop; returns (best epoch, best score)."""
    name = "" if loop.member is None else f"member {loop.member}"
    prefix = f"{name}: " if name else ""
    history_keys = {} if loop.member is None else {"member": loop.member}
    checkpoint = loop.folder / CHECKPOINT_FILE
    start_epoch, best_score, best_epoch = 0, -np.inf, -1
    if checkpoint.is_file():
        start_epoch, best_score, best_epoch = load_checkpoint(checkpoint, loop.model, loop.optimizer, loop.scheduler)
        loop.reporter.advance(start_epoch)  # the progress counts the epochs done before the interruption
        loop.reporter.log(f"{prefix}resumed after epoch {start_epoch - 1}")
    if loop.stop_file is None or not loop.stop_file.is_file():
        drop_history_from(loop.history, start_epoch, loop.member)
    for epoch in range(start_epoch, loop.epochs):
        if loop.stop_file is not None and loop.stop_file.is_file():
            break
        t0 = time.time()
        rng = np.random.default_rng([loop.seed, epoch])
        order = rng.permutation(loop.n_train)
        loop.model.train()
        losses = []
        for b in range(loop.steps):
            loss = batch_loss(order[b * loop.batch_size: (b + 1) * loop.batch_size], rng)
            loop.optimizer.zero_grad()
            loss.backward()
            loop.optimizer.step()
            loop.scheduler.step()
            losses.append(float(loss.detach()))
        figures, score = validate()
        values = {"train_loss": float(np.mean(losses)), **figures, "epoch_s": time.time() - t0}
        if score > best_score:
            best_score, best_epoch = score, epoch
            loop.save_best()
        loop.reporter.metrics(epoch, **{k: round(v, 4) for k, v in values.items()})
        with open(loop.history, "a") as f:
            f.write(json.dumps({**history_keys, "epoch": epoch, **values, "best_epoch": best_epoch}) + "\n")
        save_checkpoint(checkpoint, loop.model, loop.optimizer, loop.scheduler, epoch, best_score, best_epoch)
        loop.reporter.advance(1, message=f"{name} epoch {epoch}" if name else f"epoch {epoch}")
        if epoch - best_epoch >= loop.patience:
            loop.reporter.log(f"{prefix}early stop at epoch {epoch} (best {best_epoch}, score {best_score:.4f})")
            break
    return best_epoch, best_score
