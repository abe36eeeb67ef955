"""The PTB-V dataset folder: sample files, dataset.json, and the curation log beside them.

A sample exists when its ``ID.json`` exists: the photo and mask are written first (each atomically, through a
temporary file and a rename), the JSON last, so a killed writer never leaves a sample that counts as done.
Curation decisions are appended to ``curation.jsonl`` under a file lock; nothing is ever deleted. The state of a
sample is its latest decision that no undo withdrew; an undo is itself a record that names the decision it withdraws.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ecgcore.constants import GENERATOR_VERSION, SAMPLE_SCHEMA
from ecgcore.errors import DatasetError  # noqa: F401  (raised here; defined with the other user errors)
from ecgcore.imageio import atomic_write_bytes, encode_png
from ecgcore.layouts import LeadBox
from ecgcore.signals import EcgRecord

if TYPE_CHECKING:  # a dataset is read without loading synthesis
    from ecgcore.synth.photo import Photo

DATASET_FILE = "dataset.json"
CURATION_FILE = "curation.jsonl"
DECISIONS = ("discard", "restore")


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
        from ecgcore.imageio import decode_png_mask

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
        raise DatasetError(f"{path} is not valid JSON ({exc}).") from exc


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

    from ecgcore.constants import LABELS, LEAD_NAMES, N_CLASSES, SYNTHETIC_LABEL

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
#
# The log is append-only JSON lines of two kinds. A decision record sets a sample's state:
#   {"rid": "3f..", "id": "000016", "decision": "discard" | "restore", "reason": "..", "by": "alice", "time": "..",
#    "batch": "9c.."}
# An undo record withdraws one earlier decision record of the same curator, named by its rid:
#   {"rid": "7a..", "id": "000016", "decision": "undo", "undoes": "3f..", "undid": "discard", "by": "alice", ...}
# and carries "overtaken_by" (who decided what later) when another curator's later decision on that sample stood.
# Replaying the log (replay_curation) gives each sample's state and each curator's undo stack. Logs written before
# records had ids (no "rid"; an undo was written as the inverse decision) replay to the state they always meant.

UNDO = "undo"
KEPT, DISCARDED = "kept", "discarded"
MAX_CURATOR_CHARS = 60  # a name, not a paragraph: it is shown in tables and toasts


def _lock(f) -> None:
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)


@contextmanager
def _locked_log(folder: Path) -> Iterator[BinaryIO]:
    """The curation log opened for reading and appending, under an exclusive lock until the block ends."""
    if not (folder / DATASET_FILE).is_file():
        raise DatasetError(f"{folder} is not a PTB-V dataset (no {DATASET_FILE}).")
    with open(folder / CURATION_FILE, "a+b") as f:
        _lock(f)  # closing the file releases it
        yield f


def _append(f: BinaryIO, entries: list[dict]) -> None:
    """Append records to the locked log and make them durable before the lock is released."""
    payload = "".join(json.dumps(e) + "\n" for e in entries).encode()
    size = f.seek(0, os.SEEK_END)
    if size:
        f.seek(size - 1)
        if f.read(1) != b"\n":  # a writer killed mid-line: start on a fresh line so this record stays whole
            payload = b"\n" + payload
    f.write(payload)  # append mode: always at the end, whatever the read position
    f.flush()
    os.fsync(f.fileno())


def _parse_log(data: bytes) -> list[dict]:
    """The records of a log's bytes, oldest first; torn or foreign lines are skipped."""
    out = []
    for line in data.decode(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        if entry.get("decision") in DECISIONS or (entry.get("decision") == UNDO and isinstance(entry.get("undoes"), str)):
            out.append(entry)
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


def record_id(entry: dict) -> str:
    """A record's id: its ``rid``; records from before ids existed get one from their batch (or time) and sample."""
    rid = entry.get("rid")
    if isinstance(rid, str) and rid:
        return rid
    return f"legacy:{entry.get('batch') or entry.get('time', '')}:{entry['id']}"


def _batch_key(entry: dict) -> str:
    return str(entry.get("batch") or entry.get("time", ""))


def record_decisions(folder: str | Path, ids: list[str], decision: str, reason: str = "", by: str = "") -> list[dict]:
    """Append one decision per id (``discard`` or ``restore``; one batch, so one undo) to the curation log.

    Appends happen under an exclusive lock and never rewrite earlier lines, so two sessions curating at once lose
    nothing. Returns the records written (each with its own ``rid``, which an undo refers to).
    """
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, not {decision!r}.")
    folder = Path(folder)
    unique = list(dict.fromkeys(str(i) for i in ids))  # one record per sample: a batch is undone as a whole
    if not unique:
        if not (folder / DATASET_FILE).is_file():
            raise DatasetError(f"{folder} is not a PTB-V dataset (no {DATASET_FILE}).")
        return []
    now, batch = _now(), _new_id()
    entries = [{"rid": _new_id(), "id": i, "decision": decision, "reason": reason, "by": by, "time": now,
                "batch": batch} for i in unique]
    with _locked_log(folder) as f:
        _append(f, entries)
    return entries


def read_decisions(folder: str | Path) -> list[dict]:
    """The whole curation log (decisions and undos), oldest first (a torn line from a crash is ignored)."""
    path = Path(folder) / CURATION_FILE
    if not path.is_file():
        return []
    with open(path, "rb") as f:
        _lock(f)
        data = f.read()
    return _parse_log(data)


@dataclass
class CurationLog:
    """The curation log replayed: every sample's standing decisions, and what each curator can still undo."""

    records: list[dict]
    standing: dict[str, list[dict]]  # per sample, its decision records not withdrawn by an undo, oldest first
    undone: set[str]  # rids of the decision records an undo withdrew

    def state(self, sid: str) -> str:
        """``discarded`` when the sample's latest standing decision is a discard, else ``kept``."""
        stack = self.standing.get(sid)
        return DISCARDED if stack and stack[-1]["decision"] == "discard" else KEPT

    @property
    def discarded(self) -> set[str]:
        return {sid for sid in self.standing if self.state(sid) == DISCARDED}

    def undo_stack(self, by: str) -> list[list[dict]]:
        """``by``'s batches of decisions not undone yet, oldest first: an undo withdraws the last one."""
        batches: dict[str, list[dict]] = {}
        for entry in self.records:
            if entry["decision"] in DECISIONS and entry.get("by") == by and record_id(entry) not in self.undone:
                batches.setdefault(_batch_key(entry), []).append(entry)
        return list(batches.values())


def replay_curation(records: list[dict]) -> CurationLog:
    """Replay log records in order: a decision stands on its sample until an undo withdraws it.

    Withdrawing the latest standing decision returns the sample to the one before it (or to kept); withdrawing an
    older one (another curator decided later) leaves the state to that later decision.
    """
    standing: dict[str, list[dict]] = {}
    undone: set[str] = set()
    decisions: dict[str, dict] = {}
    for entry in records:
        if entry["decision"] != UNDO:
            decisions[record_id(entry)] = entry
            standing.setdefault(entry["id"], []).append(entry)
            continue
        target = decisions.get(entry["undoes"])
        if target is None or entry["undoes"] in undone:  # unknown or already withdrawn: nothing left to do
            continue
        undone.add(entry["undoes"])
        stack = standing[target["id"]]
        # by identity, not equality: of two equal legacy records (an id twice in one batch) only this one goes
        del stack[next(k for k in range(len(stack) - 1, -1, -1) if stack[k] is target)]
    return CurationLog(records=records, standing=standing, undone=undone)


def read_curation(folder: str | Path) -> CurationLog:
    """The dataset's curation log, replayed."""
    return replay_curation(read_decisions(folder))


def discarded_ids(folder: str | Path) -> set[str]:
    """Ids whose latest standing decision is ``discard``: every builder and trainer skips these."""
    return read_curation(folder).discarded


@dataclass(frozen=True)
class UndoneDecision:
    """One decision an undo withdrew, and what that did to its sample."""

    id: str
    undid: str  # the decision withdrawn: "discard" or "restore"
    state: str  # the sample's state after the undo: "kept" or "discarded"
    changed: bool  # whether the undo changed the sample's state
    overtaken_by: dict | None = None  # another curator's later decision that still stands ({"by", "decision", ...})


@dataclass
class UndoResult:
    """What one undo did: one item per decision of the batch it withdrew (empty when there was nothing to undo)."""

    items: list[UndoneDecision] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)  # the undo records appended to the log

    def __bool__(self) -> bool:
        return bool(self.items)


def clean_curator(name: str) -> str:
    """A curator name as logged: printable, trimmed, at most MAX_CURATOR_CHARS characters."""
    text = "".join(ch for ch in str(name) if ch.isprintable()).strip()
    return text[:MAX_CURATOR_CHARS].strip()


def undo_last(folder: str | Path, by: str) -> UndoResult:
    """Withdraw ``by``'s latest batch of decisions not undone yet; each call steps one batch further back.

    Only ``by``'s own decisions are ever withdrawn. When another curator decided on one of its samples later, that
    later decision stands: the undo record notes it (``overtaken_by``) and the sample keeps its state, so nobody's
    newer work is silently overridden. Reading the log and appending the undo happen under one lock, so the check
    and the write cannot be split by another session's decision.
    """
    by = clean_curator(by)
    if not by:
        raise DatasetError("undo needs a curator name: it steps back through that curator's own decisions only.")
    folder = Path(folder)
    if (folder / DATASET_FILE).is_file() and not (folder / CURATION_FILE).is_file():
        return UndoResult()  # no decision yet: nothing to undo, and no empty log to leave behind
    with _locked_log(folder) as f:
        f.seek(0)
        log = replay_curation(_parse_log(f.read()))
        stack = log.undo_stack(by)
        if not stack:
            return UndoResult()
        now, batch = _now(), _new_id()
        items, records = [], []
        for entry in stack[-1]:
            sid = entry["id"]
            standing = log.standing[sid]
            latest = standing[-1]
            record = {"rid": _new_id(), "id": sid, "decision": UNDO, "undoes": record_id(entry),
                      "undid": entry["decision"], "reason": f"undo of {entry['decision']}", "by": by, "time": now,
                      "batch": batch}
            if latest is entry:
                below = standing[-2]["decision"] if len(standing) > 1 else "restore"
                state = DISCARDED if below == "discard" else KEPT
                items.append(UndoneDecision(sid, entry["decision"], state, changed=state != log.state(sid)))
            else:  # someone decided on this sample after this curator: their decision stands
                later = {"by": latest.get("by", ""), "decision": latest["decision"], "time": latest.get("time", ""),
                         "rid": record_id(latest)}
                record["overtaken_by"] = later
                items.append(UndoneDecision(sid, entry["decision"], log.state(sid), changed=False, overtaken_by=later))
            records.append(record)
        _append(f, records)
    return UndoResult(items=items, records=records)
