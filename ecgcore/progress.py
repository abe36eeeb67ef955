"""Progress and metrics reporting shared by every pipeline: a tqdm bar for people, JSON lines for the Jobs page.

When the environment variable ECGLAB_EVENTS names a file, each report is appended there as one JSON object per line:

    {"t": 1732521600.1, "kind": "progress", "done": 40, "total": 100, "message": "..."}
    {"t": ..., "kind": "metrics", "step": 3, "values": {"train_loss": 0.41, "val_iou_curve": 0.83}}
    {"t": ..., "kind": "log", "message": "..."}

The job runner (ecgcore.jobs) tails that file; nothing else is needed to show live progress and charts.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from tqdm import tqdm

EVENTS_ENV = "ECGLAB_EVENTS"


class Reporter:
    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", disable: bool | None = None):
        self.total = total
        self.done = 0
        self._path = os.environ.get(EVENTS_ENV)
        self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                         disable=disable if disable is not None else None, mininterval=0.5)
        self._last_emit = 0.0
        self.event("progress", done=0, total=total, message=desc)

    def event(self, kind: str, **fields: Any) -> None:
        if not self._path:
            return
        line = json.dumps({"t": round(time.time(), 3), "kind": kind, **fields}, default=float)
        with open(self._path, "a") as f:
            f.write(line + "\n")

    def set_total(self, total: int) -> None:
        self.total = total
        self._bar.total = total
        self._bar.refresh()

    def advance(self, n: int = 1, message: str = "") -> None:
        self.done += n
        self._bar.update(n)
        now = time.monotonic()
        if now - self._last_emit >= 0.5 or (self.total is not None and self.done >= self.total):
            self._last_emit = now
            self.event("progress", done=self.done, total=self.total, message=message)

    def metrics(self, step: int, **values: float) -> None:
        self._bar.write(f"step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in values.items()), file=sys.stderr)
        self.event("metrics", step=step, values=values)

    def log(self, message: str) -> None:
        self._bar.write(message, file=sys.stderr)
        self.event("log", message=message)

    def close(self) -> None:
        self.event("progress", done=self.done, total=self.total, message="finished")
        self._bar.close()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()
