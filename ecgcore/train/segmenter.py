"""Training the segmentation network: data, augmentation, loss, the resumable loop, and the run folder.

Training examples come from two kinds of folders, mixed:
- PTB-V photo folders: random tiles of whole photos (most centred on a lead cell, some anywhere, so the model also
  learns the background), and, with probability ``lead_crop_p``, the prototype's jittered per-lead crops cut on the
  fly (ecgcore.train.crops);
- crops folders written by ``pipelines.build_crops``.
Every example then goes through one albumentations pipeline (geometry moves image and mask together; the mask
uses nearest-neighbour and marks pixels that came from outside the image as IGNORE).

The loss is cross-entropy with class weights plus soft Dice over the three thin classes, so the grid lines and the
curve (a few percent of the pixels) are not drowned by the background. The learning rate is a pure function of the
step (warm-up, then cosine), which makes resuming exact. A run folder holds::

    config.json  train.log  metrics.csv  checkpoints/last.pt  checkpoints/best.pt  best.safetensors  best.json
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ecgcore.constants import CLASS_NAMES, CURVE, N_CLASSES, TRAIN_FOLDS
from ecgcore.dataset import DatasetError, Sample, discarded_ids, iter_samples, open_dataset
from ecgcore.errors import ConfigError, ModelError
from ecgcore.read.segmentation import (
    DEFAULT_MODEL_CONFIG,
    build_model,
    evaluate_segmentation,
    model_stride,
    read_weights,
    save_weights,
    segmenter_from_model,
)
from ecgcore.train.checkpoints import BEST_FILE, CONFIG_FILE, METRICS_FILE, check_settings, restore_checkpoint
from ecgcore.train.checkpoints import atomic_torch_save as _atomic_torch_save  # a module name the fault tests patch
from ecgcore.train.crops import crop_quad, is_crops_folder, jitter_quad, load_crop, read_crops_index

IGNORE = 255  # mask value of pixels that carry no label (padding, outside the photo after a warp)


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as the run's config.json."""

    data: list[str]
    out: str
    val: list[str] = field(default_factory=list)  # empty: hold out val_fraction of the training photos
    val_fraction: float = 0.02  # the prototype's 98/2 split
    val_samples: int = 16  # whole photos evaluated after each epoch
    epochs: int = 30
    steps_per_epoch: int = 300
    batch_size: int = 8
    crop: int = 320
    crops_per_photo: int = 4  # examples cut from one decoded photo (decoding is the expensive part)
    lead_crop_p: float = 0.2
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    min_lr_fraction: float = 0.05
    class_weights: list[float] = field(default_factory=lambda: [0.75, 1.0, 1.0, 1.5])
    dice_weight: float = 1.0
    patience: int = 8  # epochs without a better validation curve IoU before stopping
    max_minutes: float = 0.0  # 0: no time limit; else stop (cleanly, after an epoch) past this wall time
    device: str = "cpu"
    threads: int = 0  # torch CPU threads; 0 = torch's default
    workers: int = 0  # data-loading processes; 0 = in the training process (a GPU needs several to stay busy)
    seed: int = 0
    allow_any_fold: bool = False
    init: str = ""  # .safetensors to start from (fine-tuning); its architecture must be ``model``
    init_partial: bool = False  # with init: another architecture is allowed; tensors of matching name and shape load
    model: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_MODEL_CONFIG))

    def __post_init__(self) -> None:
        check_settings(self, {"val_fraction": (0, 0.5), "val_samples": (0, None), "epochs": (1, None),
                              "steps_per_epoch": (1, None), "batch_size": (1, None), "crop": (64, 4096),
                              "crops_per_photo": (1, None), "lead_crop_p": (0, 1), "lr": (0, 1),
                              "weight_decay": (0, 1), "warmup_steps": (0, None), "min_lr_fraction": (0, 1),
                              "dice_weight": (0, None), "patience": (1, None), "max_minutes": (0, None),
                              "threads": (0, None), "workers": (0, None), "seed": (0, None)})
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"device must be cpu or cuda, not {self.device!r}.")


# --- data -----------------------------------------------------------------------------------------------------


def check_training_folds(folder: str | Path) -> None:
    """Refuse a dataset or crops folder whose records may come from PTB-XL folds outside 1-8 (validation/test)."""
    folder = Path(folder)
    source = read_crops_index(folder)["source"] if is_crops_folder(folder) else open_dataset(folder).get("source", {})
    if source.get("kind") != "ptb-xl":
        return  # synthetic signals share no records with the held-out folds
    folds = source.get("folds")
    if folds is None:
        ids = source.get("ids")
        root = source.get("root")
        if ids is None or root is None:
            raise DatasetError(f"{folder} does not record which PTB-XL folds its records come from; training needs "
                               f"folds {TRAIN_FOLDS[0]}-{TRAIN_FOLDS[-1]} only (pass --allow-any-fold to override).")
        from ecgcore.signals import PtbXl

        folds = sorted({int(f) for f in PtbXl(root).metadata.loc[[int(i) for i in ids], "strat_fold"]})
    outside = sorted(set(int(f) for f in folds) - set(TRAIN_FOLDS))
    if outside:
        raise DatasetError(f"{folder} holds records of strat_fold {', '.join(map(str, outside))}, which are kept for "
                           "validation and test; training data must come from folds 1-8 (or use --allow-any-fold).")


def build_augmentation(crop: int):
    """The albumentations pipeline applied to every training example (image uint8 RGB, mask uint8)."""
    import albumentations as A

    return A.Compose([
        A.Affine(scale=(0.7, 1.5), rotate=(-8, 8), shear=(-4, 4), interpolation=cv2.INTER_LINEAR,
                 mask_interpolation=cv2.INTER_NEAREST, fill=0, fill_mask=IGNORE, p=0.7),
        A.PadIfNeeded(crop, crop, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE),
        A.RandomCrop(crop, crop),
        # Real ECG paper is red, pink, green, blue or grey: move the hue a long way, sometimes drop the colour.
        A.HueSaturationValue(hue_shift_limit=90, sat_shift_limit=40, val_shift_limit=25, p=0.6),
        A.ToGray(p=0.1),
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.3, p=0.6),
        A.RandomGamma(gamma_limit=(70, 140), p=0.3),
        A.OneOf([A.GaussianBlur(sigma_limit=(0.3, 1.2)), A.MotionBlur(blur_limit=(3, 5))], p=0.25),
        A.GaussNoise(std_range=(0.02, 0.08), p=0.3),
        A.ImageCompression(quality_range=(45, 95), p=0.3),
    ])


class ExampleStream:
    """An endless, seeded stream of (image, mask) training examples of size ``crop`` x ``crop``."""

    def __init__(self, folders: list[str | Path], crop: int, crops_per_photo: int = 4, lead_crop_p: float = 0.2,
                 seed: int = 0, exclude: dict[str, set[str]] | None = None, augment: bool = True):
        self.crop = crop
        self.crops_per_photo = crops_per_photo
        self.lead_crop_p = lead_crop_p
        self.rng = np.random.default_rng(seed)
        self.photos: list[Sample] = []
        self.crop_entries: list[tuple[Path, dict[str, Any]]] = []
        exclude = exclude or {}
        for folder in folders:
            folder = Path(folder)
            if is_crops_folder(folder):
                index = read_crops_index(folder)
                self.crop_entries += [(folder, e) for e in index["crops"]]
            else:
                skip = exclude.get(str(folder.resolve()), set())
                self.photos += [s for s in iter_samples(folder, include_discarded=False) if s.id not in skip]
        if not self.photos and not self.crop_entries:
            raise DatasetError("no training samples found in " + ", ".join(map(str, folders)) + ".")
        self.augment = build_augmentation(crop) if augment else None
        # Albumentations draws from Python's and numpy's global generators; seed them for reproducible runs.
        random.seed(seed)
        np.random.seed(seed % 2**32)

    def __len__(self) -> int:
        return len(self.photos) + len(self.crop_entries)

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Endless (images (B, crop, crop, 3) uint8, masks (B, crop, crop) uint8) batches, shuffled from a pool."""
        pool: list[tuple[np.ndarray, np.ndarray]] = []
        while True:
            while len(pool) < 4 * batch_size:
                pool += self._examples()
            order = self.rng.permutation(len(pool))
            pick = [pool[i] for i in order[:batch_size]]
            pool = [pool[i] for i in order[batch_size:]]
            yield np.stack([p[0] for p in pick]), np.stack([p[1] for p in pick])

    def _examples(self) -> list[tuple[np.ndarray, np.ndarray]]:
        n_photo, n_crop = len(self.photos), len(self.crop_entries)
        if n_crop and (not n_photo or self.rng.random() < n_crop / (n_photo * self.crops_per_photo + n_crop)):
            folder, entry = self.crop_entries[int(self.rng.integers(n_crop))]
            image, mask = load_crop(folder, entry)
            return [self._finish(image, mask)]
        sample = self.photos[int(self.rng.integers(n_photo))]
        image, mask = sample.image(), sample.mask()
        leads = sample.leads
        out = []
        for _ in range(self.crops_per_photo):
            if leads and self.rng.random() < self.lead_crop_p:
                box = leads[int(self.rng.integers(len(leads)))]
                quad = jitter_quad(box.quad, (image.shape[1], image.shape[0]), self.rng)
                out.append(self._finish(*crop_quad(image, mask, quad)))
            else:
                out.append(self._finish(*self._tile(image, mask, leads)))
        return out

    def _tile(self, image: np.ndarray, mask: np.ndarray, leads) -> tuple[np.ndarray, np.ndarray]:
        """A square region around a point on a lead cell (80%) or anywhere (20%), big enough for the augmentation
        to rotate and scale without running out of photo."""
        h, w = mask.shape
        side = min(int(self.crop * 1.6), h, w)
        if leads and self.rng.random() < 0.8:
            q = leads[int(self.rng.integers(len(leads)))].quad
            a, b = self.rng.random(2)
            top = q[0] + a * (q[1] - q[0])
            bottom = q[2] + a * (q[3] - q[2])
            cx, cy = top + b * (bottom - top)
        else:
            cx, cy = self.rng.uniform(0, w), self.rng.uniform(0, h)
        x0 = int(np.clip(cx - side / 2, 0, w - side))
        y0 = int(np.clip(cy - side / 2, 0, h - side))
        return image[y0:y0 + side, x0:x0 + side], mask[y0:y0 + side, x0:x0 + side]

    def _finish(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.augment is not None:
            res = self.augment(image=image, mask=mask)
            return res["image"], res["mask"]
        h, w = mask.shape
        pad = ((0, max(0, self.crop - h)), (0, max(0, self.crop - w)))
        image = np.pad(image, pad + ((0, 0),))[: self.crop, : self.crop]
        mask = np.pad(mask, pad, constant_values=IGNORE)[: self.crop, : self.crop]
        return image, mask


def stream_seed(seed: int, step: int, worker: int) -> int:
    """The seed of one data stream: the run's seed, where training (re)started, and which worker draws."""
    return int(np.random.SeedSequence([seed, step, worker]).generate_state(1)[0])


def training_batches(cfg: TrainConfig, exclude: dict[str, set[str]], start_step: int,
                     stream: ExampleStream | None = None) -> Iterator[tuple]:
    """The run's endless batches: from ``cfg.workers`` processes, or from ``stream`` (made from ``cfg`` when not
    given) in this process."""
    if cfg.workers > 0:
        return parallel_batches(cfg, exclude, start_step)
    if stream is None:
        stream = ExampleStream(cfg.data, cfg.crop, cfg.crops_per_photo, cfg.lead_crop_p, cfg.seed, exclude)
    return stream.batches(cfg.batch_size)


def parallel_batches(cfg: TrainConfig, exclude: dict[str, set[str]], start_step: int) -> Iterator[tuple]:
    """Endless training batches drawn by ``cfg.workers`` processes, each its own seeded ``ExampleStream``.

    The workers are spawned, not forked: a fork of a process whose torch or OpenCV thread pools already ran can
    hang in the child. Batches arrive in whatever order the workers finish them, so a run with workers is not
    bit-for-bit repeatable (a run without them is).
    """
    import torch

    from ecgcore.train.loader import WorkerBatches

    loader = torch.utils.data.DataLoader(WorkerBatches(cfg, exclude, start_step), batch_size=None,
                                         num_workers=cfg.workers, prefetch_factor=4, persistent_workers=True,
                                         multiprocessing_context="spawn",
                                         pin_memory=cfg.device.startswith("cuda"))
    yield from loader


def split_validation(folders: list[str], fraction: float, seed: int) -> tuple[dict[str, set[str]], list[Sample]]:
    """Hold out ``fraction`` of each photo folder's samples (at least one): (ids to exclude per folder, samples)."""
    exclude: dict[str, set[str]] = {}
    held: list[Sample] = []
    rng = np.random.default_rng(seed + 17)
    for folder in folders:
        if is_crops_folder(folder):
            continue
        samples = list(iter_samples(folder, include_discarded=False))
        if len(samples) < 2:
            continue
        k = max(1, int(round(fraction * len(samples))))
        pick = [samples[i] for i in rng.choice(len(samples), k, replace=False)]
        exclude[str(Path(folder).resolve())] = {s.id for s in pick}
        held += pick
    return exclude, held


# --- loss -----------------------------------------------------------------------------------------------------


def make_loss(class_weights: list[float], dice_weight: float, device: str = "cpu"):
    """Cross-entropy (class-weighted, IGNORE skipped) + dice_weight x (1 - mean soft Dice of classes 1..3)."""
    import torch
    import torch.nn.functional as F

    weights = torch.tensor(class_weights, dtype=torch.float32, device=device)

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        ce = F.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE)
        if dice_weight <= 0:
            return ce
        valid = (target != IGNORE).unsqueeze(1).float()
        probs = logits.softmax(dim=1) * valid
        onehot = F.one_hot(torch.where(target == IGNORE, 0, target), N_CLASSES).permute(0, 3, 1, 2).float() * valid
        inter = (probs * onehot).sum(dim=(0, 2, 3))
        total = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
        dice = (2 * inter + 1.0) / (total + 1.0)
        return ce + dice_weight * (1.0 - dice[1:].mean())

    return loss_fn


def learning_rate(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_fraction`` x lr at ``total_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    floor = cfg.min_lr_fraction
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


# --- the loop -------------------------------------------------------------------------------------------------


class RunLog:
    """Messages to the reporter (bar + Jobs page) and to RUN_DIR/train.log."""

    def __init__(self, run_dir: Path, reporter=None):
        self.path = run_dir / "train.log"
        self.reporter = reporter

    def __call__(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        with open(self.path, "a") as f:
            f.write(f"{stamp} {message}\n")
        if self.reporter is not None:
            self.reporter.log(message)


def train(cfg: TrainConfig, resume: bool = False, reporter=None, command: str = "",
          should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Train (or resume) a run; returns a summary with the best epoch and its validation metrics.

    ``reporter`` (ecgcore.progress.Reporter) gets one progress tick per step and per-epoch metrics.
    """
    import torch

    run_dir = Path(cfg.out)
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(run_dir, reporter)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda was requested but no CUDA GPU is available; use --device cpu.")
    torch.manual_seed(cfg.seed)
    if not cfg.allow_any_fold:
        for folder in cfg.data:
            check_training_folds(folder)

    if cfg.val:
        exclude: dict[str, set[str]] = {}
        val_samples = [s for folder in cfg.val for s in iter_samples(folder, include_discarded=False)]
    else:
        exclude, val_samples = split_validation(cfg.data, cfg.val_fraction, cfg.seed)
    # A fixed, spread-out subset of the validation photos, the same every epoch.
    if len(val_samples) > cfg.val_samples:
        pick = np.linspace(0, len(val_samples) - 1, cfg.val_samples).round().astype(int)
        val_samples = [val_samples[i] for i in pick]
    stream = ExampleStream(cfg.data, cfg.crop, cfg.crops_per_photo, cfg.lead_crop_p, cfg.seed, exclude)

    model = build_model(cfg.model).to(cfg.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_amp = cfg.device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_fn = make_loss(cfg.class_weights, cfg.dice_weight, cfg.device)
    state = {"epoch": 0, "step": 0, "best": -1.0, "best_epoch": 0, "bad_epochs": 0, "elapsed_s": 0.0}

    last = ckpt_dir / "last.pt"
    if resume and last.is_file():
        _restore_checkpoint(last, cfg.device, model, optimizer, scaler, state)
        # Fresh, but different, augmentation draws after a resume.
        stream.rng = np.random.default_rng([cfg.seed, state["step"]])
        log(f"resumed from {last} at epoch {state['epoch']}, step {state['step']} "
            f"(best val curve IoU {state['best']:.4f} at epoch {state['best_epoch']})")
    elif resume:
        log(f"nothing to resume in {ckpt_dir}; starting fresh")
    # A kill between an epoch's metrics row and its checkpoint would repeat that row: keep only the checkpointed epochs.
    _drop_metrics_after(run_dir / METRICS_FILE, state["epoch"])
    if cfg.init and state["step"] == 0:
        init_config, init_state = read_weights(cfg.init)
        init_state = {k: v.float() if v.is_floating_point() else v for k, v in init_state.items()}
        if {k: init_config.get(k) for k in cfg.model} == cfg.model:
            model.load_state_dict(init_state)
            log(f"initialised from {cfg.init}")
        elif cfg.init_partial:
            own = model.state_dict()
            match = {k: v for k, v in init_state.items() if k in own and own[k].shape == v.shape}
            if not match:
                raise ModelError(f"--init weights {Path(cfg.init).name} share no tensor with this architecture.")
            model.load_state_dict(match, strict=False)
            log(f"initialised {len(match)} of {len(own)} tensors from {cfg.init} (the rest fresh)")
        else:
            raise ModelError(f"--init weights {Path(cfg.init).name} have another architecture ({init_config}).")
    (run_dir / CONFIG_FILE).write_text(json.dumps({**asdict(cfg), "command": command}, indent=1) + "\n")
    log(f"{len(stream.photos)} training photos, {len(stream.crop_entries)} prepared crops, "
        f"{len(val_samples)} validation photos; device {cfg.device}, torch threads {torch.get_num_threads()}, "
        f"data workers {cfg.workers}")

    total_steps = cfg.epochs * cfg.steps_per_epoch
    if reporter is not None:
        reporter.set_total(total_steps)
        reporter.advance(state["step"])
    batches = training_batches(cfg, exclude, state["step"], stream)
    started = time.monotonic()
    stop_reason = "epochs done"
    while state["epoch"] < cfg.epochs:
        epoch = state["epoch"] + 1
        model.train()
        t0 = time.monotonic()
        losses = []
        for _ in range(cfg.steps_per_epoch):
            lr = learning_rate(state["step"], total_steps, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, masks = next(batches)
            x = torch.as_tensor(images).to(cfg.device, non_blocking=True).permute(0, 3, 1, 2).float()
            y = torch.as_tensor(masks).to(cfg.device, non_blocking=True).long()
            with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.detach()))
            state["step"] += 1
            if reporter is not None:
                reporter.advance(1, message=f"epoch {epoch} loss {np.mean(losses[-50:]):.4f}")
            if should_stop is not None and should_stop():
                break
        train_s = time.monotonic() - t0

        val = _validate(model, cfg, val_samples)
        state["epoch"] = epoch
        state["elapsed_s"] += time.monotonic() - t0
        curve_iou = val[f"iou_{CLASS_NAMES[CURVE]}"]
        improved = curve_iou > state["best"] + 1e-4
        if improved:
            state.update(best=curve_iou, best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        row = {"epoch": epoch, "step": state["step"], "lr": lr, "train_loss": float(np.mean(losses)),
               **{f"val_{k}": v for k, v in val.items()}, "epoch_s": round(time.monotonic() - t0, 1),
               "train_s": round(train_s, 1)}
        _append_metrics(run_dir / METRICS_FILE, row)
        if reporter is not None:
            reporter.metrics(epoch, **{k: float(v) for k, v in row.items() if k not in ("epoch", "step")})
        # The best weights go first: a checkpoint that records a new best must never exist without them (a kill
        # between the two writes would otherwise leave a run whose best.safetensors is missing or an older epoch's).
        if improved:
            _atomic_torch_save({"model": model.state_dict(), "state": dict(state),
                                "model_config": json.dumps(cfg.model)}, ckpt_dir / "best.pt")
            save_weights(model, run_dir / BEST_FILE, cfg.model,
                         card=run_card(cfg, state, val, command))
        ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "state": dict(state), "model_config": json.dumps(cfg.model)}
        _atomic_torch_save(ckpt, last)
        log(f"epoch {epoch}: loss {row['train_loss']:.4f}, val IoU " +
            ", ".join(f"{n} {val[f'iou_{n}']:.3f}" for n in CLASS_NAMES) + (" (best)" if improved else ""))
        if should_stop is not None and should_stop():
            stop_reason = "stopped on request"
            break
        if state["bad_epochs"] >= cfg.patience:
            stop_reason = f"early stop: no better validation curve IoU for {cfg.patience} epochs"
            break
        if cfg.max_minutes and (time.monotonic() - started) / 60 >= cfg.max_minutes:
            stop_reason = f"time limit of {cfg.max_minutes:g} min reached"
            break
    log(f"{stop_reason}; best val curve IoU {state['best']:.4f} at epoch {state['best_epoch']}")
    return {"stop_reason": stop_reason, **state, "run_dir": str(run_dir)}


def _validate(model, cfg: TrainConfig, samples: list[Sample]) -> dict[str, float]:
    from ecgcore.read.segmentation import confusion, summarize_confusion

    segmenter = segmenter_from_model(model, cfg.model, device=cfg.device)
    cm = np.zeros((N_CLASSES, N_CLASSES), np.int64)
    for sample in samples:
        cm += confusion(segmenter.predict(sample.image()), sample.mask())
    model.train()
    return summarize_confusion(cm)


def _append_metrics(path: Path, row: dict[str, Any]) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})


def _restore_checkpoint(path: Path, device: str, model, optimizer, scaler, state: dict[str, Any]) -> None:
    """Load checkpoints/last.pt into the model, optimiser, scaler and state (ModelError, one sentence, if damaged)."""

    def apply(ckpt: dict[str, Any]) -> None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        state.update(ckpt["state"])
        int(state["epoch"]), int(state["step"])

    restore_checkpoint(path, apply, "delete it to start the run again, or train into a new --out", map_location=device)


def _drop_metrics_after(path: Path, epoch: int) -> None:
    """Keep the metrics.csv rows of epochs <= ``epoch`` (a torn last line goes too); atomic rewrite."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    kept = []
    for row in rows:
        try:
            if int(row["epoch"]) <= epoch and None not in row.values():
                kept.append(row)
        except (KeyError, TypeError, ValueError):
            continue
    if len(kept) == len(rows):
        return
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        if kept:
            writer = csv.DictWriter(f, fieldnames=list(kept[0]))
            writer.writeheader()
            writer.writerows(kept)
    os.replace(tmp, path)


def describe_data(folders: list[str]) -> list[dict[str, Any]]:
    """What each data folder is, for model cards: kind, size, source folds, preset name, layouts."""
    out = []
    for folder in folders:
        if is_crops_folder(folder):
            index = read_crops_index(folder)
            out.append({"folder": str(folder), "kind": "crops", "n": index["n_crops"], "source": index["source"],
                        "from_dataset": index["dataset"]})
            continue
        info = open_dataset(folder)
        source = {k: v for k, v in info.get("source", {}).items() if k != "ids"}
        n = sum(1 for _ in iter_samples(folder, include_discarded=False))
        out.append({"folder": str(folder), "kind": "ptb-v", "n": n, "discarded": len(discarded_ids(folder)),
                    "source": source, "layouts": info.get("layouts"), "seed": info.get("seed"),
                    "size": info.get("size"), "generator_version": info.get("generator_version")})
    return out


def run_card(cfg: TrainConfig, state: dict[str, Any], val: dict[str, float], command: str) -> dict[str, Any]:
    return {
        "model": "ECG Lab segmentation U-Net (segmentation-models-pytorch, space-to-depth x2)",
        "classes": list(CLASS_NAMES),
        "architecture": cfg.model,
        "input": "RGB uint8 photo, any size (padded to a multiple of "
                 f"{model_stride(cfg.model)} px; tiled when large)",
        "training": {"command": command, "data": cfg.data, "val": cfg.val, "epochs_run": state["epoch"],
                     "best_epoch": state["best_epoch"], "steps": state["step"], "crop": cfg.crop,
                     "batch_size": cfg.batch_size, "lr": cfg.lr, "loss": "class-weighted cross-entropy "
                     f"{cfg.class_weights} + {cfg.dice_weight} x soft Dice (classes 1-3)",
                     "train_minutes": round(state["elapsed_s"] / 60, 1)},
        "validation": {k: round(v, 4) for k, v in val.items()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()},
    }


def export_run(run_dir: str | Path, dest: str | Path, tests: dict[str, Path] | None = None, limit: int | None = None,
               notes: dict[str, Any] | None = None, command: str = "",
               on_sample: Callable[[str, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Write a run's best weights to ``dest`` (.safetensors) with a model card holding metrics on held-out sets.

    The card records the training data, the exact training command, dates, validation and held-out metrics.
    """
    from ecgcore.read.segmentation import load_segmenter, read_card

    run_dir = Path(run_dir)
    source = run_dir / BEST_FILE
    if not source.is_file():
        raise ModelError(f"{run_dir} has no {BEST_FILE} yet; train at least one epoch first.")
    segmenter = load_segmenter(source)
    card = read_card(source)
    config = json.loads((run_dir / CONFIG_FILE).read_text()) if (run_dir / CONFIG_FILE).is_file() else {}
    card["training"]["data_description"] = describe_data(config.get("data", []))
    card["training"]["val_description"] = describe_data(config.get("val", []))
    card["exported"] = {"from_run": str(run_dir), "date": datetime.now(UTC).isoformat(timespec="seconds"),
                        "command": command}
    held_out: dict[str, Any] = {}
    for name, folder in (tests or {}).items():
        result = evaluate_segmentation(segmenter, folder, limit=limit, on_sample=on_sample)
        info = open_dataset(folder)
        per_layout: dict[str, list[float]] = {}
        for s in result["per_sample"]:
            per_layout.setdefault(s["layout"], []).append(s["iou_curve"])
        held_out[name] = {
            "folder": str(folder),
            "source": {k: v for k, v in info.get("source", {}).items() if k != "ids"},
            "seed": info.get("seed"), "layouts": info.get("layouts"),
            "generator_version": info.get("generator_version"),
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()
               if k not in ("per_sample", "confusion")},
            "confusion": result["confusion"],
            "curve_iou_mean_by_layout": {k: round(float(np.nanmean(v)), 4) for k, v in per_layout.items()},
        }
    card["held_out"] = held_out
    if notes:
        card.update(notes)
    save_weights(segmenter.model, dest, segmenter.config, card=card)
    return card
