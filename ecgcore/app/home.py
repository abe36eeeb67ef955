"""What the Home page lists, without Streamlit: datasets of the workspace, shipped models and training runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ecgcore.dataset import CURATION_FILE, DATASET_FILE, discarded_ids
from ecgcore.train.checkpoints import METRICS_FILE
from ecgcore.train.scores import scores_path
from ecgcore.workspace import WEIGHTS_DIR

# The models the app uses, with the command that makes each (shown when one is missing).
EXPECTED_MODELS: dict[str, tuple[str, str]] = {
    "segmentation_unet": ("Segmentation U-Net (photo -> grid/curve classes)",
                          "python -m pipelines.train_segmentation --data DIR --out workspace/runs/seg"),
    "classifier_signal": ("Signal classifier (digitised 12 leads -> normal / other / MI)",
                          "python -m pipelines.train_classifier --kind signal --out workspace/runs/cls-signal"),
    "classifier_image": ("Prototype-style image classifier (segmentation image -> 3 classes)",
                         "python -m pipelines.train_classifier --kind image --out workspace/runs/cls-image"),
}
OPTIONAL_MODELS = frozenset({"classifier_image"})  # the prototype-style model, kept for comparison only


def dataset_summary(folder: Path) -> dict[str, Any]:
    """One row of the datasets table: counts, source, layouts, creation time, curation and scoring state."""
    try:
        info = json.loads((folder / DATASET_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        info = {}
    n = sum(1 for _ in folder.glob("[0-9]*.json"))
    source = info.get("source", {}) if isinstance(info.get("source"), dict) else {}
    return {
        "dataset": folder.name,
        "samples": n,
        "discarded": len(discarded_ids(folder)) if (folder / CURATION_FILE).is_file() else 0,
        "source": source.get("kind", "?"),
        "layouts": ", ".join(info.get("layouts", [])),
        "size": "x".join(str(v) for v in info.get("size", [])),
        "scored": scores_path(folder).is_file(),
        "created": str(info.get("created", ""))[:16].replace("T", " "),
    }


def flatten_numbers(obj: Any, prefix: str = "", depth: int = 0) -> dict[str, float]:
    """Flatten the numeric leaves of a (nested) metrics dict: {'test': {'auroc': 0.9}} -> {'test.auroc': 0.9}."""
    out: dict[str, float] = {}
    if depth > 3:
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten_numbers(v, f"{prefix}.{k}" if prefix else str(k), depth + 1))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix] = float(obj)
    return out


def headline_metrics(card: dict[str, Any], limit: int = 8) -> dict[str, float]:
    """The few numbers worth a table cell: a card's ``summary``, else its held-out curve IoUs, else its metrics."""
    if isinstance(card.get("summary"), dict):
        numbers = flatten_numbers(card["summary"])
    elif isinstance(card.get("held_out"), dict):
        numbers = {f"{name} curve IoU": float(result["iou_curve"]) for name, result in card["held_out"].items()
                   if isinstance(result, dict) and isinstance(result.get("iou_curve"), (int, float))}
    else:
        numbers = flatten_numbers(card.get("metrics", card.get("validation", {})))
    return dict(list(numbers.items())[:limit])


def model_cards(weights_dir: Path = WEIGHTS_DIR) -> list[dict[str, Any]]:
    """Every shipped model: its card's headline metrics, or a 'missing' row with the command that makes it."""
    rows = []
    seen = set()
    for card_path in sorted(weights_dir.glob("*.json")):
        weights = card_path.with_suffix(".safetensors")
        if not weights.is_file():
            continue  # presets and other JSON files are not model cards
        try:
            card = json.loads(card_path.read_text())
        except (OSError, json.JSONDecodeError):
            card = {}
        exported = card.get("exported", {}) if isinstance(card.get("exported"), dict) else {}
        rows.append({
            "model": card_path.stem,
            "what": EXPECTED_MODELS.get(card_path.stem, (card.get("task", card.get("architecture", "")),))[0],
            "status": "ready",
            "size_mb": round(weights.stat().st_size / 1e6, 1),
            "date": str(card.get("date") or exported.get("date") or "")[:10],
            "metrics": ", ".join(f"{k} {v:.3g}" for k, v in headline_metrics(card).items()),
            "command": card.get("command") or exported.get("command") or "",
            "headline": headline_metrics(card),
            "plots": [p for p in (card.get("plots") or {}).values() if isinstance(p, str)]
            if isinstance(card.get("plots"), dict) else [],
        })
        seen.add(card_path.stem)
    for name, (what, command) in EXPECTED_MODELS.items():
        if name not in seen:
            status = "optional, not installed" if name in OPTIONAL_MODELS else "missing"
            rows.append({"model": name, "what": what, "status": status, "size_mb": None, "date": "",
                         "metrics": "", "command": command, "headline": {}, "plots": []})
    return rows


def training_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Run folders under the workspace: their last metrics row (metrics.csv) and whether a model card exists."""
    rows = []
    if not runs_dir.is_dir():
        return rows
    for run in sorted((p for p in runs_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True):
        last: dict[str, str] = {}
        metrics_csv = run / METRICS_FILE
        if metrics_csv.is_file():
            try:
                with open(metrics_csv, newline="") as f:
                    for row in csv.DictReader(f):
                        last = row
            except (OSError, csv.Error):
                last = {}
        rows.append({
            "run": run.name,
            "epochs": last.get("epoch", last.get("step", "")),
            "last metrics": ", ".join(f"{k} {v}" for k, v in last.items() if k not in ("epoch", "step", "time"))[:160],
            "model card": any(run.glob("*card*.json")) or (run / "model_card.json").is_file(),
        })
    return rows[:30]


# --- the active models (Classify uses them; the shipped ones unless chosen otherwise) ---------------------------

ACTIVE_FILE = "active_models.json"
MODEL_KINDS = {"segmentation": "segmentation_unet", "signal": "classifier_signal", "image": "classifier_image"}


def weights_kind(path: Path) -> str | None:
    """'segmentation', 'signal' or 'image' from a .safetensors file's metadata (header only), else None."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
    except Exception:  # not a safetensors file, or truncated: not a candidate
        return None
    if metadata.get("kind") in ("signal", "image"):
        return metadata["kind"]
    if "segmentation" in str(metadata.get("format", "")):
        return "segmentation"
    return None


def model_candidates(workspace: Path, weights_dir: Path = WEIGHTS_DIR) -> dict[str, list[Path]]:
    """Weights that can be made active, by kind: the shipped ones and those at the top of each training run."""
    found: dict[str, list[Path]] = {kind: [] for kind in MODEL_KINDS}
    files = sorted(weights_dir.glob("*.safetensors")) + sorted((workspace / "runs").glob("*/*.safetensors"))
    for path in files:
        kind = weights_kind(path)
        if kind:
            found[kind].append(path)
    return found


def read_active(workspace: Path) -> dict[str, str | None]:
    """The chosen weights per kind (None = the shipped file)."""
    try:
        data = json.loads((workspace / ACTIVE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        data = {}
    return {kind: (data.get(kind) if isinstance(data.get(kind), str) and Path(data[kind]).is_file() else None)
            for kind in MODEL_KINDS}


def write_active(workspace: Path, active: dict[str, str | None]) -> None:
    from ecgcore.imageio import atomic_write_bytes

    payload = {kind: active.get(kind) for kind in MODEL_KINDS}
    atomic_write_bytes(workspace / ACTIVE_FILE, (json.dumps(payload, indent=1) + "\n").encode())
