"""What the classifiers looked at: integrated gradients per lead and time for the signal model, Grad-CAM for the
image model. Both return plain arrays the app draws over the digitised leads or the photo."""

from __future__ import annotations

import numpy as np
import torch

from ecgcore.constants import LABEL_INDEX, LEAD_NAMES


def signal_attribution(model: torch.nn.Module, inputs: np.ndarray, label: str = "mi", steps: int = 16) -> np.ndarray:
    """Integrated gradients of ``label``'s logit for one signal-model input (24, T); returns (12, T) float32.

    The baseline is a flat line on the same observed windows (signal channels 0, mask channels kept), so the
    attribution answers "which samples of which lead moved the answer away from a flat trace". Positive values
    push towards ``label``; unobserved samples get 0.
    """
    n_leads = len(LEAD_NAMES)
    x = torch.as_tensor(inputs, dtype=torch.float32)[None]
    baseline = x.clone()
    baseline[:, :n_leads] = 0.0
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps  # midpoint rule
    path = baseline + alphas[:, None, None] * (x - baseline)
    path.requires_grad_(True)
    model.eval()
    with torch.enable_grad():
        logits = model(path)
        logits[:, LABEL_INDEX[label]].sum().backward()
    grads = path.grad[:, :n_leads].mean(0)
    attribution = (x[0, :n_leads] - baseline[0, :n_leads]) * grads
    return (attribution * x[0, n_leads:]).detach().numpy().astype(np.float32)


def image_gradcam(model: torch.nn.Module, inputs: np.ndarray, label: str = "mi") -> np.ndarray:
    """Grad-CAM of ``label`` on the image model's last feature map for one input (3, H, W); returns (H, W) in 0..1."""
    x = torch.as_tensor(inputs, dtype=torch.float32)[None]
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["features"] = output

    handle = model.features.register_forward_hook(keep)
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(x)
            logits[0, LABEL_INDEX[label]].backward()
    finally:
        handle.remove()
    features = captured["features"]
    weights = features.grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * features).sum(dim=1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam.detach().numpy().astype(np.float32)
    peak = float(cam.max())
    return cam / peak if peak > 0 else cam
