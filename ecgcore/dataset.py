"""The PTB-V dataset folder: sample files, dataset.json, and the curation log beside them.

A sample exists when its ``ID.json`` exists: the photo and mask are written first (each atomically, through a
temporary file and a rename), the JSON last, so a killed writer never leaves a sample that counts as done.
Curation decisions are appended to ``curation.jsonl`` under a file lock; nothing is ever deleted, and the state of
a sample is its latest decision.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .constants import GENERATOR_VERSION, SAMPLE_SCHEMA
from .imageio import atomic_write_bytes, encode_png
from .photo import Photo
from .render import LeadBox
from .signals import EcgRecord

DATASET_FILE = "dataset.json"
CURATION_FILE = "curation.jsonl"
DECISIONS = ("discard", "restore")


class DatasetError(ValueError):
    """A dataset folder is missing, unwritable or inconsistent; one sentence."""


def sample_id(index: int) -> str:
    return f"{index:06d}"


def sample_seed(dataset_seed: int, index: int) -> int:
    """The seed of sample ``index``: independent of workers and order, so any subset can be (re)made alone."""
    return int(np.random.SeedSequence([int(dataset_seed), int(index)]).generate_state(1)[0])


def sample_json(sid: str, photo: Photo, record: EcgRecord, layout: str, seed: int) -> dict[str, Any]:
    height, width = photo.image.shape[:2]
    by_kind: dict[str, list[dict[str, Any]]] = {"label": [], "text": [], "mark": [], "pulse": []}
    for annotation in photo.annotations:
        by_kind[annotation.kind].append(annotation.to_json())
    lay = photo.paper.layout
    return {
        "schema": SAMPLE_SCHEMA,
        "id": sid,
        "image": f"{sid}.{'png' if photo.image_format == 'png' else 'jpg'}",
        "mask": f"{sid}_mask.png",
        "width": int(width),
        "height": int(height),
        "angle_deg": round(photo.angle_deg, 4),
        "layout": layout,
        "source": record.source,
        "label": record.label,
        "px_per_mm": round(photo.px_per_mm, 4),
        "px_per_mm_xy": [round(v, 4) for v in photo.px_per_mm_xy],
        "paper": {
            "paper_speed": photo.paper.options.paper_speed,
            "gain": photo.paper.options.gain,
            "grid_color": photo.paper.options.grid_color,
            "print_style": photo.paper.options.print_style,
            "minor_grid": photo.paper.options.minor_grid,
        },
        "leads": [box.to_json() for box in photo.leads],
        # Everything printed besides the traces, in image pixels (quads as the leads'): lead labels with the lead
        # they name, text lines, lead-change marks (never curve in the mask) and calibration pulses (curve).
        "labels": by_kind["label"],
        "texts": by_kind["text"],
        "marks": by_kind["mark"],
        "pulses": by_kind["pulse"],
        "print": {
            "capture": photo.params.get("capture", "photo"),
            "pulse_segments_mm": [round(v, 4) for v in lay.segments_mm],
            "layout_style": lay.style.to_json() if lay.style is not None else None,
            "print_style": ({k: v for k, v in asdict(photo.paper.style).items() if k != "text_seed"}
                            if photo.paper.style is not None else None),
            "curve_line_mm": photo.paper.options.curve_line_mm,
        },
        "params": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in photo.params.items()},
        "seed": int(seed),
    }


def write_sample(folder: Path, sid: str, photo: Photo, record: EcgRecord, layout: str, seed: int) -> dict[str, Any]:
    """Write ID.jpg, ID_mask.png, then ID.json; each atomically. Returns the sample JSON."""
    meta = sample_json(sid, photo, record, layout, seed)
    atomic_write_bytes(folder / meta["image"], photo.jpeg)
    atomic_write_bytes(folder / meta["mask"], encode_png(photo.mask))
    atomic_write_bytes(folder / f"{sid}.json", (json.dumps(meta, indent=1) + "\n").encode())
    return meta


def is_done(folder: Path, sid: str) -> bool:
    """A sample counts as done when its JSON parses and the files it names exist."""
    path = folder / f"{sid}.json"
    if not path.is_file():
        return False
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return False
    return (folder / meta.get("image", "")).is_file() and (folder / meta.get("mask", "")).is_file()


@dataclass
class Sample:
    """One sample of a dataset, loaded lazily."""

    folder: Path
    meta: dict[str, Any]

    @property
    def id(self) -> str:
        return self.meta["id"]

    @property
    def image_path(self) -> Path:
        return self.folder / self.meta["image"]

    @property
    def mask_path(self) -> Path:
        return self.folder / self.meta["mask"]

    @property
    def label(self) -> str:
        return self.meta["label"]

    @property
    def leads(self) -> list[LeadBox]:
        return [LeadBox.from_json(lead) for lead in self.meta["leads"]]

    def image(self) -> np.ndarray:
        import cv2

        bgr = cv2.imread(str(self.image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"sample {self.id}: {self.image_path.name} cannot be read.")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def mask(self) -> np.ndarray:
        from .imageio import decode_png_mask

        return decode_png_mask(self.mask_path)


def open_dataset(folder: str | Path) -> dict[str, Any]:
    """Read dataset.json; a sentence when the folder is not a PTB-V dataset."""
    folder = Path(folder)
    path = folder / DATASET_FILE
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} does not exist.")
    if not path.is_file():
        raise DatasetError(f"{folder} has no {DATASET_FILE}, so it is not a PTB-V dataset.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc}).") from None


def iter_samples(folder: str | Path, include_discarded: bool = True) -> Iterator[Sample]:
    """Samples in id order (only complete ones); optionally without the curated-out ones."""
    folder = Path(folder)
    skip = set() if include_discarded else discarded_ids(folder)
    for path in sorted(folder.glob("[0-9]*.json")):
        sid = path.stem
        if sid in skip or not is_done(folder, sid):
            continue
        yield Sample(folder, json.loads(path.read_text()))


def validate_sample(folder: str | Path, sid: str) -> list[str]:
    """Problems with one sample against the ptb-v/1 contract (empty list when it is valid)."""
    import cv2

    from .constants import LABELS, LEAD_NAMES, N_CLASSES, SYNTHETIC_LABEL

    folder = Path(folder)
    problems: list[str] = []
    try:
        meta = json.loads((folder / f"{sid}.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return [f"{sid}.json unreadable ({exc})"]
    required = ("schema", "id", "image", "mask", "width", "height", "angle_deg", "layout", "source", "label",
                "px_per_mm", "leads", "params", "seed")
    problems += [f"missing key {k!r}" for k in required if k not in meta]
    if problems:
        return problems
    if meta["schema"] != SAMPLE_SCHEMA or meta["id"] != sid:
        problems.append("schema or id mismatch")
    if meta["label"] not in (*LABELS, SYNTHETIC_LABEL):
        problems.append(f"unknown label {meta['label']!r}")
    image = cv2.imread(str(folder / meta["image"]), cv2.IMREAD_COLOR)
    mask = cv2.imread(str(folder / meta["mask"]), cv2.IMREAD_UNCHANGED)
    if image is None or mask is None:
        return problems + ["image or mask unreadable"]
    if image.shape[:2] != (meta["height"], meta["width"]) or mask.shape != image.shape[:2] or mask.dtype != np.uint8:
        problems.append("image/mask size or type does not match the JSON")
    if int(mask.max()) >= N_CLASSES:
        problems.append(f"mask has class {int(mask.max())}")
    names = [lead.get("name") for lead in meta["leads"]]
    if not set(names) <= set(LEAD_NAMES) or len(set(names)) != 12:
        problems.append(f"lead names {names}")
    for lead in meta["leads"]:
        if len(lead.get("quad", [])) != 8 or not 0 <= lead.get("t0", -1) < lead.get("t1", -1):
            problems.append(f"lead {lead.get('name')}: bad quad or t0/t1")
    for label in meta.get("labels", []):  # samples made before lead labels were recorded have none
        if label.get("lead") not in LEAD_NAMES or len(label.get("quad", [])) != 8:
            problems.append(f"label {label.get('lead')!r}: unknown lead or bad quad")
    return problems


def count_labels(samples: list[Sample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.label] = counts.get(s.label, 0) + 1
    return counts


def write_dataset_json(folder: Path, info: dict[str, Any]) -> None:
    atomic_write_bytes(folder / DATASET_FILE, (json.dumps(info, indent=1) + "\n").encode())


def new_dataset_info(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": SAMPLE_SCHEMA,
        "generator_version": GENERATOR_VERSION,
        **config,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# --- curation ------------------------------------------------------------------------------------------


def _lock(f) -> None:
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)


def record_decisions(folder: str | Path, ids: list[str], decision: str, reason: str = "", by: str = "") -> list[dict]:
    """Append one decision per id (``discard`` or ``restore``) to the curation log, under an exclusive lock.

    Appends never rewrite earlier lines, so two sessions curating at once lose nothing.
    """
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, not {decision!r}.")
    folder = Path(folder)
    if not (folder / DATASET_FILE).is_file():
        raise DatasetError(f"{folder} is not a PTB-V dataset (no {DATASET_FILE}).")
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    batch = uuid.uuid4().hex[:12]
    entries = [
        {"id": str(i), "decision": decision, "reason": reason, "by": by, "time": now, "batch": batch} for i in ids
    ]
    if not entries:
        return []
    payload = "".join(json.dumps(e) + "\n" for e in entries).encode()
    with open(folder / CURATION_FILE, "ab") as f:
        _lock(f)
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    return entries


def read_decisions(folder: str | Path) -> list[dict]:
    """The whole curation history, oldest first (a torn last line from a crash is ignored)."""
    path = Path(folder) / CURATION_FILE
    if not path.is_file():
        return []
    out = []
    with open(path, "rb") as f:
        _lock(f)
        data = f.read()
    for line in data.decode(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("decision") in DECISIONS and "id" in entry:
            out.append(entry)
    return out


def discarded_ids(folder: str | Path) -> set[str]:
    """Ids whose latest decision is ``discard``: every builder and trainer skips these."""
    state: dict[str, str] = {}
    for entry in read_decisions(folder):
        state[entry["id"]] = entry["decision"]
    return {i for i, d in state.items() if d == "discard"}


def undo_last(folder: str | Path, by: str = "") -> list[dict]:
    """Undo the most recent batch of decisions (one call of record_decisions) by appending its inverse.

    ``by`` limits the undo to the latest batch of that curator, so two sessions undo only their own work.
    """
    history = [e for e in read_decisions(folder) if not by or e.get("by") == by]
    if not history:
        return []
    last = history[-1].get("batch", history[-1]["time"])
    batch = [e for e in history if e.get("batch", e["time"]) == last]
    inverse = "restore" if batch[-1]["decision"] == "discard" else "discard"
    return record_decisions(folder, [e["id"] for e in batch], inverse, reason=f"undo of batch {last}", by=by)
