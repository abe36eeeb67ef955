"""MI classification: the 12-lead signal model, the prototype-style image model, and their shipped weights.

Two models answer the same question (normal / non-MI abnormality / MI, :data:`ecgcore.constants.LABELS`):

* the **signal model** (:class:`SignalNet`, a compact 1D ResNet) reads a digitised 12-lead record. One model serves
  every layout: its input is 12 signal channels over 10 s at 100 Hz plus 12 "observed" channels (1 where the lead is
  on the paper, 0 where the layout does not show it), so a 3x4 printout that shows each lead for 2.5 s and a 12x1
  printout that shows all of them for 10 s are the same kind of input (:func:`prepare_signal`).
* the **image model** (:class:`ImageNet`, a compact 2D CNN) reads the prototype's classification image: the
  segmentation map of each lead, channel-separated and merged on a 640x640 canvas (:mod:`ecgcore.classify.classimage`).

Weights are ``.safetensors`` files (loaded without executing code) whose metadata hold the architecture and the
calibration temperature; the JSON model card beside each file holds the data, command, date and metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ecgcore.constants import LABELS, LEAD_INDEX, LEAD_NAMES
from ecgcore.errors import DigitizationError, ModelError
from ecgcore.layouts import make_layout
from ecgcore.workspace import WEIGHTS_DIR

DEFAULT_SIGNAL_WEIGHTS = WEIGHTS_DIR / "classifier_signal.safetensors"
DEFAULT_IMAGE_WEIGHTS = WEIGHTS_DIR / "classifier_image.safetensors"

SIGNAL_FS = 100  # Hz: the signal model's sampling rate
SIGNAL_SECONDS = 10.0  # every layout spans at most the 10 s of a PTB-XL record
SIGNAL_SAMPLES = int(SIGNAL_FS * SIGNAL_SECONDS)
CLIP_MV = 5.0  # digitisation outliers beyond +-5 mV are clipped: no real lead swings further from its baseline
MIN_OBSERVED_S = 0.5  # less than this much of the leads visible in total is no ECG to classify
WEIGHTS_HINT = "train it with `python -m pipelines.train_classifier --kind {kind} --out RUN_DIR` and copy the result to weights/"


# --- the signal model's input ---------------------------------------------------------------------------


def layout_mask(layout: str, n_samples: int = SIGNAL_SAMPLES, fs: int = SIGNAL_FS) -> np.ndarray:
    """(n_samples, 12) bool: where ``layout`` shows each lead (its cells' t0..t1), in the model's time grid."""
    observed = np.zeros((n_samples, len(LEAD_NAMES)), bool)
    for cell in make_layout(layout).cells:
        observed[round(cell.t0 * fs) : round(cell.t1 * fs), LEAD_INDEX[cell.lead]] = True
    return observed


def resample_signal(signal: np.ndarray, fs: float, target_fs: int = SIGNAL_FS) -> np.ndarray:
    """Resample a (n, 12) signal with NaN gaps to ``target_fs``; gaps stay gaps.

    An integer ratio (500 -> 100 Hz) averages blocks of samples, which also removes what would alias; other ratios
    interpolate linearly. A sample is NaN when its source neighbourhood had no value.
    """
    signal = np.asarray(signal, np.float32)
    if fs == target_fs:
        return signal
    ratio = fs / target_fs
    if abs(ratio - round(ratio)) < 1e-9 and ratio >= 1:
        k = round(ratio)
        n = signal.shape[0] // k
        blocks = signal[: n * k].reshape(n, k, signal.shape[1])
        counts = np.isfinite(blocks).sum(axis=1)
        sums = np.nansum(blocks, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(np.float32)
    n_out = round(signal.shape[0] * target_fs / fs)
    t_src = np.arange(signal.shape[0]) / fs
    t_dst = np.arange(n_out) / target_fs
    observed = np.isfinite(signal)
    filled = np.where(observed, signal, 0.0)
    out = np.empty((n_out, signal.shape[1]), np.float32)
    for lead in range(signal.shape[1]):  # 12 calls of a vectorised interpolation
        values = np.interp(t_dst, t_src, filled[:, lead])
        support = np.interp(t_dst, t_src, observed[:, lead].astype(np.float64))
        out[:, lead] = np.where(support > 0.999, values, np.nan)
    return out


def prepare_signal(signal: np.ndarray, fs: float = SIGNAL_FS, n_samples: int = SIGNAL_SAMPLES) -> np.ndarray:
    """The signal model's input, (24, n_samples) float32, from a (n, 12) mV signal with NaN where a lead is not shown.

    Channels 0-11 are the leads with each lead's median removed (a digitiser's baseline is only known up to an
    offset; the median of a lead is close to its isoelectric line) and clipped to +-5 mV; channels 12-23 are 1 where
    the lead was observed and 0 elsewhere, where the signal channels are 0. Signals are cut or padded to 10 s.
    """
    signal = np.asarray(signal, np.float32)
    if signal.ndim != 2 or signal.shape[1] != len(LEAD_NAMES):
        raise ValueError(f"a 12-lead signal has shape (n, 12), not {signal.shape}.")
    signal = resample_signal(signal, fs)[:n_samples]
    if signal.shape[0] < n_samples:
        pad = np.full((n_samples - signal.shape[0], signal.shape[1]), np.nan, np.float32)
        signal = np.concatenate([signal, pad])
    observed = np.isfinite(signal)
    has_any = observed.any(axis=0)
    baseline = np.zeros(signal.shape[1], np.float32)
    if has_any.any():
        baseline[has_any] = np.nanmedian(signal[:, has_any], axis=0)
    centred = np.clip(np.where(observed, signal - baseline, 0.0), -CLIP_MV, CLIP_MV)
    return np.concatenate([centred.T, observed.T]).astype(np.float32)


# --- models ---------------------------------------------------------------------------------------------


def build_model(kind: str, config: dict[str, Any]) -> nn.Module:
    """The architecture of ``kind`` ('signal' or 'image') from its config (as stored in the weights' metadata)."""
    if kind == "signal":
        return SignalEnsemble(config)
    if kind == "image":
        return ImageNet(config)
    raise ValueError(f"unknown model kind {kind!r}; 'signal' or 'image'.")


SIGNAL_CONFIG: dict[str, Any] = {
    "in_channels": 24,
    "widths": [32, 64, 96, 128],
    "blocks_per_stage": 1,
    "kernel": 9,
    "stem_kernel": 15,
    "dropout": 0.2,
    "n_classes": len(LABELS),
    "members": 1,
}

IMAGE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "input_size": 640,
    "downsample": 2,
    "widths": [16, 32, 64, 128, 192],
    "dropout": 0.3,
    "n_classes": len(LABELS),
}


class ResBlock1d(nn.Module):
    """Two convolutions with a shortcut; the first may stride (the shortcut then pools)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, kernel, stride, padding=kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(cout, cout, kernel, 1, padding=kernel // 2, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        shortcut: list[nn.Module] = []
        if stride > 1:
            shortcut.append(nn.AvgPool1d(stride, stride, ceil_mode=True))
        if cin != cout:
            shortcut += [nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout)]
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(F.relu(self.bn1(self.conv1(x))))
        h = self.bn2(self.conv2(h))
        return F.relu(h + self.shortcut(x)[..., : h.shape[-1]])


class SignalNet(nn.Module):
    """Compact 1D ResNet over (B, 24, T): 12 leads + 12 observed masks -> 3 logits.

    With ``config['aux_targets']`` (names of PTB-XL statements) the head also has one logit per statement; they are
    trained as extra multi-label targets (each record teaches more than its 3-class label), and ``forward`` leaves
    them out.

    Pooling is masked: the average and the maximum over time are taken only where some lead was observed, so the
    long unobserved stretch of a 1.8 s layout does not dilute the features.
    """

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        widths, kernel = config["widths"], config["kernel"]
        self.stem = nn.Sequential(
            nn.Conv1d(config["in_channels"], widths[0], config["stem_kernel"], 2, config["stem_kernel"] // 2, bias=False),
            nn.BatchNorm1d(widths[0]),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        cin = widths[0]
        for width in widths:
            for b in range(config["blocks_per_stage"]):
                blocks.append(ResBlock1d(cin, width, kernel, 2 if b == 0 else 1, config["dropout"]))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.n_classes = int(config["n_classes"])
        n_aux = len(config.get("aux_targets") or ())
        self.head = nn.Sequential(nn.Dropout(config["dropout"]), nn.Linear(2 * cin, self.n_classes + n_aux))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The class logits (B, n_classes)."""
        return self.forward_all(x)[:, : self.n_classes]

    def forward_all(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits followed by the auxiliary statement logits (training only), (B, n_classes + n_aux)."""
        n_leads = x.shape[1] // 2
        observed = x[:, n_leads:].amax(dim=1, keepdim=True)
        h = self.blocks(self.stem(x))
        m = F.adaptive_max_pool1d(observed, h.shape[-1])
        avg = (h * m).sum(-1) / m.sum(-1).clamp_min(1.0)
        peak = (h - (1.0 - m) * 1e4).amax(-1)
        return self.head(torch.cat([avg, peak], dim=1))


class SignalEnsemble(nn.Module):
    """The shipped signal model: ``config['members']`` SignalNets (differing by training seed), logits averaged."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = dict(config)
        self.members = nn.ModuleList([SignalNet(config) for _ in range(int(config.get("members", 1)))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


class ImageNet(nn.Module):
    """Compact CNN for the 640x640 classification image (3 class channels), trained from scratch.

    The canvas is average-pooled by ``downsample`` first (thin traces survive as soft values), then five stride-2
    stages; ``features`` ends with the last feature map, the layer Grad-CAM reads.
    """

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = dict(config)
        layers: list[nn.Module] = []
        cin = config["in_channels"]
        for i, width in enumerate(config["widths"]):
            layers += [nn.Conv2d(cin, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            if i > 0:  # the stem is one convolution; later stages get a second, non-strided one
                layers += [nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            cin = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(config["dropout"]), nn.Linear(cin, config["n_classes"]))

    def pool_input(self, x: torch.Tensor) -> torch.Tensor:
        d = self.config["downsample"]
        return F.avg_pool2d(x, d) if d > 1 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.pool_input(x)).mean(dim=(2, 3)))


# --- weights --------------------------------------------------------------------------------------------


def save_weights(path: str | Path, kind: str, model, temperature: float = 1.0, card: dict | None = None,
                 half: bool = False) -> None:
    """Write ``model`` as .safetensors (architecture + temperature in its metadata) and its card as .json."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if half and tensor.is_floating_point():
            tensor = tensor.to(torch.float16)
        state[name] = tensor
    metadata = {"kind": kind, "config": json.dumps(model.config), "temperature": repr(float(temperature)),
                "labels": json.dumps(list(LABELS))}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=metadata)
    tmp.chmod(0o644)  # safetensors writes 0600; shipped weights must be readable by the app's user too
    tmp.replace(path)
    if card is not None:
        card_path = path.with_suffix(".json")
        card_path.write_text(json.dumps(card, indent=1, default=float) + "\n")


@dataclass
class LoadedModel:
    """A model ready for inference with its calibration temperature and model card."""

    kind: str
    model: Any
    config: dict[str, Any]
    temperature: float
    card: dict[str, Any]
    path: Path

    def probabilities(self, inputs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (B, 3) for a batch of model inputs."""
        with torch.no_grad():
            logits = self.model(torch.as_tensor(inputs, dtype=torch.float32))
            return torch.softmax(logits / self.temperature, dim=1).numpy().astype(np.float64)

    def info(self) -> dict[str, Any]:
        """What the classify JSON and the app say about this model: file, training date, validation metrics."""
        return {
            "weights": self.path.name,
            "architecture": self.card.get("architecture", self.kind),
            "trained": self.card.get("date"),
            "temperature": round(self.temperature, 4),
            "test_metrics": self.card.get("summary", {}),
        }


def load_model(path: str | Path, kind: str, device: str = "cpu") -> LoadedModel:
    """Load weights of ``kind`` from .safetensors (no code is executed); ModelError with a sentence on failure."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"the {kind} classifier weights {path} are missing; " + WEIGHTS_HINT.format(kind=kind) + ".")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        state = load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"the {kind} classifier weights {path} are corrupt ({exc}).") from exc
    if metadata.get("kind") != kind:
        raise ModelError(f"{path} holds a {metadata.get('kind', 'unknown')!r} model, not a {kind} classifier.")
    try:
        config = json.loads(metadata["config"])
        temperature = float(metadata.get("temperature", "1.0"))
        model = build_model(kind, config)
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        model.load_state_dict(state)
    except (KeyError, json.JSONDecodeError, RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(f"{path} does not match the {kind} classifier architecture ({str(exc).splitlines()[0]}).") from exc
    model.eval().to(device)
    card_path = path.with_suffix(".json")
    card: dict[str, Any] = {}
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text())
        except json.JSONDecodeError:
            card = {}
    return LoadedModel(kind, model, config, temperature, card, path)


# --- inference ------------------------------------------------------------------------------------------


def as_probabilities(probs: np.ndarray) -> dict[str, float]:
    """A length-3 probability vector as {label: p}, summing to 1."""
    probs = np.asarray(probs, np.float64)
    probs = probs / probs.sum()
    return {label: float(p) for label, p in zip(LABELS, probs)}


@dataclass
class Classifiers:
    """The loaded classifiers; the signal model is the primary one, the image model is optional."""

    signal: LoadedModel | None
    image: LoadedModel | None = None
    notes: list[str] = field(default_factory=list)

    def signal_input(self, dig) -> np.ndarray:
        """The signal model's (24, 1000) input for a DigitizedEcg; DigitizationError when too little was read."""
        x = prepare_signal(dig.signal, dig.fs)
        observed_s = x[len(LEAD_NAMES):].sum() / SIGNAL_FS
        if observed_s < MIN_OBSERVED_S:
            raise DigitizationError("no ECG grid/trace found: too little of the leads could be read to classify.")
        return x

    def predict_signal(self, dig) -> dict[str, float]:
        """Calibrated {label: probability} from the signal model for a DigitizedEcg."""
        if self.signal is None:
            raise ModelError("no signal classifier is loaded; " + WEIGHTS_HINT.format(kind="signal") + ".")
        return as_probabilities(self.signal.probabilities(self.signal_input(dig)[None])[0])

    def image_input(self, class_map: np.ndarray, leads) -> np.ndarray:
        """The image model's (3, 640, 640) float input from a class map and the lead boxes in its pixels."""
        from ecgcore.classify.classimage import classification_image, lead_crops

        canvas = classification_image(lead_crops(class_map, leads))
        return canvas.transpose(2, 0, 1).astype(np.float32) / 255.0

    def predict_image(self, class_map: np.ndarray, leads) -> dict[str, float]:
        """Calibrated {label: probability} from the prototype-style image model."""
        if self.image is None:
            raise ModelError("no image classifier is loaded; " + WEIGHTS_HINT.format(kind="image") + ".")
        return as_probabilities(self.image.probabilities(self.image_input(class_map, leads)[None])[0])

    def models_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        if self.signal is not None:
            info["signal"] = self.signal.info()
        if self.image is not None:
            info["image"] = self.image.info()
        info["combined_from"] = ["signal"] if self.signal is not None else []
        return info


def load_classifiers(signal_weights: str | Path | None = None, image_weights: str | Path | None = None,
                     device: str = "cpu", with_image: bool = True) -> Classifiers:
    """Load the shipped (or given) classifiers. The signal model is required; the image model is loaded when its
    weights exist (it is reported beside the signal model, for comparison with the prototype)."""
    signal = load_model(signal_weights or DEFAULT_SIGNAL_WEIGHTS, "signal", device)
    image = None
    notes: list[str] = []
    if with_image:
        path = Path(image_weights or DEFAULT_IMAGE_WEIGHTS)
        if path.is_file() or image_weights is not None:
            image = load_model(path, "image", device)
        else:
            notes.append(f"the image classifier ({path.name}) is not installed; only the signal model answers.")
    return Classifiers(signal, image, notes)
