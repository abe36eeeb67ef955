"""Segmenting ECG photos into background, major grid lines (x = const, y = const) and the ECG curve.

The model is a segmentation-models-pytorch U-Net wrapped in a space-to-depth step: the photo is folded 2x2 into
12 channels at half resolution (``pixel_unshuffle``), the U-Net works at that half resolution, and its 16 output
channels are unfolded back into 4 class logits per full-resolution pixel (``pixel_shuffle``). The curve is only
about 2 px wide in a 1600x1200 photo, so the output must be full resolution; folding keeps every input pixel while
all convolutions run on a quarter of the pixels, which is what brings a whole photo under 1.5 s on two CPU cores.

Weights are ``.safetensors`` (no code is executed when loading) whose metadata holds the architecture; the model
card is the JSON file beside them. Inference takes any image size: the photo is padded (reflected) to a multiple
of the network's stride, run whole when it is small enough and in overlapping tiles otherwise (only each tile's
centre is kept, so seams do not show), then cropped back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecgcore.constants import CLASS_NAMES, CURVE, N_CLASSES
from ecgcore.errors import ModelError
from ecgcore.read.gridcolour import without_grid_coloured_lines
from ecgcore.workspace import WEIGHTS_DIR

DEFAULT_SEGMENTATION_WEIGHTS = WEIGHTS_DIR / "segmentation_unet.safetensors"
WEIGHTS_FORMAT = "ecglab-segmentation/1"

# The architecture chosen by the encoder table in the model card (see weights/segmentation_unet.json).
DEFAULT_MODEL_CONFIG: dict[str, Any] = {
    "arch": "Unet",
    "encoder_name": "mobilenet_v2",
    "encoder_depth": 4,
    "decoder_channels": [64, 48, 32, 32],
    "fold": 2,  # space-to-depth factor
    "n_classes": N_CLASSES,
}
# Pixel normalisation inside the model, so every caller feeds plain uint8 RGB.
_MEAN, _STD = 0.5, 0.25


# --- model -----------------------------------------------------------------------------------------------------


def model_stride(config: dict[str, Any]) -> int:
    """Height and width of every network input must be a multiple of this."""
    return int(config.get("fold", 1)) * 2 ** int(config["encoder_depth"])


def build_model(config: dict[str, Any] | None = None):
    """A fresh (randomly initialised, never downloaded) segmentation network for ``config``."""
    import segmentation_models_pytorch as smp
    import torch

    config = {**DEFAULT_MODEL_CONFIG, **(config or {})}
    fold = int(config.get("fold", 1))
    n_classes = int(config["n_classes"])

    class FoldedSegmenter(torch.nn.Module):
        """uint8-range RGB (N,3,H,W) float -> class logits (N,C,H,W), via a U-Net at 1/fold resolution."""

        def __init__(self) -> None:
            super().__init__()
            self.fold = fold
            self.unet = smp.create_model(
                config["arch"],
                encoder_name=config["encoder_name"],
                encoder_depth=int(config["encoder_depth"]),
                encoder_weights=None,
                decoder_channels=tuple(config["decoder_channels"]),
                in_channels=3 * fold * fold,
                classes=n_classes * fold * fold,
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = (x * (1.0 / 255.0) - _MEAN) * (1.0 / _STD)
            if self.fold > 1:
                x = torch.nn.functional.pixel_unshuffle(x, self.fold)
            y = self.unet(x)
            return torch.nn.functional.pixel_shuffle(y, self.fold) if self.fold > 1 else y

    return FoldedSegmenter()


# --- weights I/O ----------------------------------------------------------------------------------------------


def save_weights(model, path: str | Path, config: dict[str, Any], card: dict[str, Any] | None = None) -> Path:
    """Write the model as .safetensors (matrices in fp16, small vectors and counters as they are) and, when
    ``card`` is given, the JSON model card beside it (same stem)."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        # fp16 halves the file; BatchNorm statistics and biases stay fp32 (they are tiny and range-sensitive).
        if tensor.is_floating_point() and tensor.ndim > 1:
            tensor = tensor.to(torch.float16)
        tensors[name] = tensor.contiguous()
    metadata = {"format": WEIGHTS_FORMAT, "config": json.dumps(config, sort_keys=True)}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.chmod(0o644)  # safetensors creates the file private; shipped weights must be readable by the app's user
    tmp.replace(path)
    if card is not None:
        card_path = path.with_suffix(".json")
        card_path.write_text(json.dumps(card, indent=1) + "\n")
    return path


def read_weights(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, state dict) from a .safetensors file; ModelError with one sentence when missing or unreadable."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"segmentation weights not found at {path}; train them with python -m "
                         "pipelines.train_segmentation or restore weights/segmentation_unet.safetensors.")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # safetensors raises several types for truncated / foreign files
        raise ModelError(f"segmentation weights {path.name} are corrupt or not a safetensors file ({exc}).") from exc
    if metadata.get("format") != WEIGHTS_FORMAT or "config" not in metadata:
        raise ModelError(f"{path.name} is a safetensors file but not ECG Lab segmentation weights "
                         f"(format {metadata.get('format')!r}).")
    try:
        config = json.loads(metadata["config"])
    except json.JSONDecodeError as exc:
        raise ModelError(f"segmentation weights {path.name} have an unreadable architecture record.") from exc
    return config, state


def read_card(weights_path: str | Path) -> dict[str, Any]:
    """The JSON model card beside the weights ({} when there is none or it does not parse)."""
    card_path = Path(weights_path).with_suffix(".json")
    try:
        return json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


# --- inference ------------------------------------------------------------------------------------------------


@dataclass
class Segmenter:
    """A loaded segmentation network with tiling inference.

    Images whose padded size is at most ``max_pixels`` run in one pass; larger ones in tiles of ``tile`` px that
    overlap by ``2 * margin`` px, of which only the centre is kept.

    The network learned from photos of about ``work_side`` px (the paper at about 5 px/mm): a photo whose longer
    side exceeds ``max_side`` (a scan or a camera's full resolution, the paper at 10-15 px/mm, where a major grid
    line is as thick as the trace was in training) is scaled down to ``work_side`` first and its class scores
    scaled back up to the photo's size. ``max_side=None`` always works at the photo's own resolution.

    ``phases`` > 1 averages the logits of the photo shifted by one pixel (PHASE_SHIFTS): the network's 2x2 pixel fold
    scores a trace's edge by where it falls in the fold, and the average evens that out (on 40 held-out photos:
    curve IoU +0.006, digitisation +0.4 dB) for one more forward pass.
    """

    model: Any
    config: dict[str, Any]
    card: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    tile: int = 1024
    margin: int = 64
    max_pixels: int = 2560 * 1920
    batch_size: int = 4
    max_side: int | None = 2048
    work_side: int = 1600
    phases: int = 2  # pixel phases whose logits are averaged: 1, 2 or 4 (PHASE_SHIFTS); 2 costs two passes

    @property
    def stride(self) -> int:
        return model_stride(self.config)

    def predict_proba(self, rgb: np.ndarray, tiled: bool | None = None) -> np.ndarray:
        """Class probabilities, float32 (4, H, W), for an RGB uint8 (H, W, 3) image of any size: the network's own
        (the grid-colour step of :meth:`predict` changes the class map, not these).

        ``tiled`` forces tiling on (True) or off (False); by default only images above ``max_pixels`` are tiled.
        """
        logits = self._logits(rgb, tiled)
        return _softmax(logits)

    def predict(self, rgb: np.ndarray, tiled: bool | None = None) -> np.ndarray:
        """The class map, uint8 (H, W): 0 background, 1 grid x, 2 grid y, 3 curve. Grid lines that the network
        took for curve are made grid where their colour tells them from the trace
        (:func:`ecgcore.read.gridcolour.without_grid_coloured_lines`)."""
        class_map = np.argmax(self._logits(rgb, tiled), axis=0).astype(np.uint8)
        return without_grid_coloured_lines(rgb, class_map)[0]

    def predict_with_margin(self, rgb: np.ndarray, tiled: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The class map and the curve margin, float32 (H, W): the curve logit minus the largest other logit
        (> 0 exactly where the map says curve; its zero crossing places the trace's edges between pixels), with the
        grid-coloured lines of :meth:`predict` made grid in both."""
        logits = self._logits(rgb, tiled)
        class_map = np.argmax(logits, axis=0).astype(np.uint8)
        others = np.delete(logits, CURVE, axis=0).max(axis=0)
        return without_grid_coloured_lines(rgb, class_map, (logits[CURVE] - others).astype(np.float32))

    def predict_batch(self, images: Iterable[np.ndarray]) -> list[np.ndarray]:
        """Class maps for several images (as :meth:`predict`); images of the same size share forward passes."""
        images = list(images)
        out: list[np.ndarray | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            by_size.setdefault(img.shape[:2], []).append(i)
        for (h, w), idx in by_size.items():
            if not self._single_pass(h, w) or self._rescaled(h, w) or self.phases > 1:
                for i in idx:
                    out[i] = self.predict(images[i])
                continue
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size]
                padded = [_pad_to(images[i], self.stride)[0] for i in chunk]
                logits = self._forward(np.stack(padded))
                for i, lg in zip(chunk, logits):
                    out[i] = without_grid_coloured_lines(images[i], np.argmax(lg[:, :h, :w], axis=0).astype(np.uint8))[0]
        return out  # type: ignore[return-value]

    # -- internals --
    def _single_pass(self, h: int, w: int) -> bool:
        s = self.stride
        return math.ceil(h / s) * s * math.ceil(w / s) * s <= self.max_pixels

    def _rescaled(self, h: int, w: int) -> bool:
        return self.max_side is not None and max(h, w) > self.max_side

    def _logits(self, rgb: np.ndarray, tiled: bool | None) -> np.ndarray:
        rgb = _check_rgb(rgb)
        h, w = rgb.shape[:2]
        if not self._rescaled(h, w):
            return self._native_logits(rgb, tiled)
        import cv2

        f = self.work_side / max(h, w)
        small = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        logits = self._native_logits(small, tiled)
        return np.stack([cv2.resize(channel, (w, h), interpolation=cv2.INTER_LINEAR) for channel in logits])

    def _native_logits(self, rgb: np.ndarray, tiled: bool | None) -> np.ndarray:
        shifts = PHASE_SHIFTS.get(self.phases)
        if shifts is None:
            raise ValueError(f"phases must be one of {sorted(PHASE_SHIFTS)}, not {self.phases}")
        if len(shifts) == 1:
            return self._phase_logits(rgb, tiled)
        h, w = rgb.shape[:2]
        total = None
        for dy, dx in shifts:
            shifted = np.pad(rgb, ((dy, 0), (dx, 0), (0, 0)), mode="edge") if dy or dx else rgb
            logits = self._phase_logits(shifted, tiled)[:, dy:dy + h, dx:dx + w]
            total = logits if total is None else total + logits
        return total / len(shifts)

    def _phase_logits(self, rgb: np.ndarray, tiled: bool | None) -> np.ndarray:
        h, w = rgb.shape[:2]
        padded, _ = _pad_to(rgb, self.stride)
        use_tiles = (not self._single_pass(h, w)) if tiled is None else tiled
        if use_tiles and max(padded.shape[:2]) > self.tile:
            logits = self._tiled_logits(padded)
        else:
            logits = self._forward(padded[None])[0]
        return logits[:, :h, :w]

    def _tiled_logits(self, padded: np.ndarray) -> np.ndarray:
        ph, pw = padded.shape[:2]
        tile, margin = self.tile, self.margin
        # Tile origins on multiples of the stride keep the network's view of each pixel the same as untiled.
        if tile % self.stride or (2 * margin) % self.stride:
            raise ValueError(f"tile ({tile}) and 2 x margin ({2 * margin}) must be multiples of the stride {self.stride}")
        ys, xs = _tile_starts(ph, tile, margin), _tile_starts(pw, tile, margin)
        th, tw = min(tile, ph), min(tile, pw)
        out = np.empty((N_CLASSES, ph, pw), np.float32)
        boxes = [(y, x) for y in ys for x in xs]
        for start in range(0, len(boxes), self.batch_size):
            chunk = boxes[start:start + self.batch_size]
            logits = self._forward(np.stack([padded[y:y + th, x:x + tw] for y, x in chunk]))
            for (y, x), lg in zip(chunk, logits):
                # Keep the tile's centre: the margin is dropped except where the tile touches the image border.
                y0 = 0 if y == 0 else margin
                x0 = 0 if x == 0 else margin
                y1 = th if y + th >= ph else th - margin
                x1 = tw if x + tw >= pw else tw - margin
                out[:, y + y0:y + y1, x + x0:x + x1] = lg[:, y0:y1, x0:x1]
        return out

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        import torch

        batch = np.ascontiguousarray(batch)
        if not batch.flags.writeable:  # torch wants writable memory (read-only views come from some decoders)
            batch = batch.copy()
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            if self.device.startswith("cuda"):
                with torch.autocast("cuda", dtype=torch.float16):
                    y = self.model(x)
            else:
                y = self.model(x)
        return y.float().cpu().numpy()


# The network sees the photo through a 2x2 pixel fold (pixel_unshuffle), so a trace's edge is scored differently
# depending on which of the fold's four phases it falls in. Averaging the logits of the photo shifted by one pixel
# evens that out: 2 phases shift by (0, 0) and (1, 1), 4 phases by all four.
PHASE_SHIFTS: dict[int, tuple[tuple[int, int], ...]] = {
    1: ((0, 0),),
    2: ((0, 0), (1, 1)),
    4: ((0, 0), (1, 0), (0, 1), (1, 1)),
}


def _tile_starts(size: int, tile: int, margin: int) -> list[int]:
    """Tile origins along one axis such that the kept centres (tile minus margins) cover [0, size)."""
    if size <= tile:
        return [0]
    step = tile - 2 * margin
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


def _pad_to(rgb: np.ndarray, stride: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad bottom and right to multiples of ``stride`` (reflection keeps grid lines continuous)."""
    h, w = rgb.shape[:2]
    ph, pw = -h % stride, -w % stride
    if not ph and not pw:
        return rgb, (0, 0)
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode=mode), (ph, pw)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=0, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=0, keepdims=True)
    return z.astype(np.float32, copy=False)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {rgb.dtype}")
    return rgb[..., :3]


def segmenter_from_model(model, config: dict[str, Any], card: dict[str, Any] | None = None,
                         device: str = "cpu") -> Segmenter:
    """Wrap an in-memory model (e.g. during training) for inference."""
    model.eval()
    return Segmenter(model=model, config=config, card=card or {}, device=device)


def load_segmenter(weights: str | Path | None = None, device: str = "cpu") -> Segmenter:
    """Load segmentation weights (default: the shipped ``weights/segmentation_unet.safetensors``).

    Raises ModelError with one sentence when the file is missing, corrupt, or does not fit its architecture.
    """
    import torch

    path = Path(weights) if weights is not None else DEFAULT_SEGMENTATION_WEIGHTS
    config, state = read_weights(path)
    try:
        model = build_model(config)
    except Exception as exc:
        raise ModelError(f"segmentation weights {path.name} describe an unknown architecture ({exc}).") from exc
    expected = model.state_dict()
    state = {k: v.to(expected[k].dtype) if k in expected else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"segmentation weights {path.name} do not match their architecture ({first}).") from exc
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("device cuda was requested for segmentation but no CUDA GPU is available.")
    model.to(device).eval()
    return Segmenter(model=model, config=config, card=read_card(path), device=device)


# --- metrics --------------------------------------------------------------------------------------------------


def confusion(pred: np.ndarray, truth: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """Confusion matrix (truth rows, prediction columns) of two class maps, int64 (C, C)."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    idx = truth.astype(np.int64).ravel() * n_classes + pred.astype(np.int64).ravel()
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def iou_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU; NaN for a class absent from both prediction and truth."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def dice_from_confusion(cm: np.ndarray) -> np.ndarray:
    tp = np.diag(cm).astype(np.float64)
    total = cm.sum(0) + cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2 * tp / total, np.nan)


def sample_iou(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Per-class IoU of one predicted class map against its truth mask, keyed ``iou_<class name>``."""
    iou = iou_from_confusion(confusion(pred, truth))
    return {f"iou_{name}": float(v) for name, v in zip(CLASS_NAMES, iou)}


def curve_match_counts(pred: np.ndarray, truth: np.ndarray, tolerance_px: int = 1) -> np.ndarray:
    """(predicted curve px near a true one, predicted curve px, true curve px near a predicted one, true curve px).

    IoU punishes a curve drawn one pixel off as a miss; for a 2 px line that is most of it. These counts give a
    precision/recall with ``tolerance_px`` of slack, which is what tracing the signal needs.
    """
    import cv2

    kernel = np.ones((2 * tolerance_px + 1, 2 * tolerance_px + 1), np.uint8)
    p = (pred == CURVE).view(np.uint8)
    t = (truth == CURVE).view(np.uint8)
    near_t = cv2.dilate(t, kernel)
    near_p = cv2.dilate(p, kernel)
    return np.array([int(np.count_nonzero(p & near_t)), int(np.count_nonzero(p)),
                     int(np.count_nonzero(t & near_p)), int(np.count_nonzero(t))], np.int64)


def curve_f1_from_counts(counts: np.ndarray) -> dict[str, float]:
    precision = counts[0] / counts[1] if counts[1] else float("nan")
    recall = counts[2] / counts[3] if counts[3] else float("nan")
    if np.isnan(precision) or np.isnan(recall):
        f1 = float("nan")
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"curve_precision_1px": float(precision), "curve_recall_1px": float(recall), "curve_f1_1px": float(f1)}


def summarize_confusion(cm: np.ndarray) -> dict[str, float]:
    iou, dice = iou_from_confusion(cm), dice_from_confusion(cm)
    out = {f"iou_{n}": float(v) for n, v in zip(CLASS_NAMES, iou)}
    out.update({f"dice_{n}": float(v) for n, v in zip(CLASS_NAMES, dice)})
    out["miou_foreground"] = float(np.nanmean(iou[1:]))
    out["pixel_accuracy"] = float(np.trace(cm) / max(cm.sum(), 1))
    return out


def evaluate_segmentation(segmenter: Segmenter, dataset_dir: str | Path, limit: int | None = None,
                          on_sample: Callable[[str, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Per-class IoU and Dice of ``segmenter`` over a PTB-V folder (curated-out samples skipped).

    IoU/Dice pool all pixels of all samples; ``curve_f1_1px`` (with precision and recall) scores the curve with one
    pixel of slack (see curve_match_counts); ``per_sample`` lists each sample's own IoUs and ``curve_iou_median``
    summarises their spread. ``on_sample(id, ious)`` is called after each sample (progress bars, live tables).
    """
    from ecgcore.dataset import iter_samples, open_dataset

    open_dataset(dataset_dir)
    cm = np.zeros((N_CLASSES, N_CLASSES), np.int64)
    match = np.zeros(4, np.int64)
    per_sample: list[dict[str, Any]] = []
    for k, sample in enumerate(iter_samples(dataset_dir, include_discarded=False)):
        if limit is not None and k >= limit:
            break
        truth = sample.mask()
        pred = segmenter.predict(sample.image())
        one = confusion(pred, truth)
        cm += one
        counts = curve_match_counts(pred, truth)
        match += counts
        ious = {f"iou_{n}": float(v) for n, v in zip(CLASS_NAMES, iou_from_confusion(one))}
        per_sample.append({"id": sample.id, "layout": sample.meta.get("layout"), **ious,
                           "curve_f1_1px": curve_f1_from_counts(counts)["curve_f1_1px"]})
        if on_sample is not None:
            on_sample(sample.id, ious)
    if not per_sample:
        from ecgcore.dataset import DatasetError

        raise DatasetError(f"{dataset_dir} has no samples to evaluate (all discarded or none complete).")
    result: dict[str, Any] = {"n_samples": len(per_sample), **summarize_confusion(cm), **curve_f1_from_counts(match)}
    curve = np.array([s[f"iou_{CLASS_NAMES[CURVE]}"] for s in per_sample], np.float64)
    result["curve_iou_median"] = float(np.nanmedian(curve))
    result["curve_iou_p10"] = float(np.nanpercentile(curve, 10))
    result["confusion"] = cm.tolist()
    result["per_sample"] = per_sample
    return result


# --- convenience verb -----------------------------------------------------------------------------------------

_DEFAULT: dict[str, Segmenter] = {}


def segment_with_margin(segmenter: Any, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The class map and, when the segmenter gives one (:meth:`Segmenter.predict_with_margin`), the curve margin
    that places the trace's edges between pixels; None for segmenters that only give a class map."""
    if hasattr(segmenter, "predict_with_margin"):
        return segmenter.predict_with_margin(rgb)
    return segmenter.predict(rgb), None
