"""What the Classify page draws and lets people download, without Streamlit: the verdict in words, the annotated
photo, editable lead boxes, CSV / WFDB exports and a one-page PNG or PDF report."""

from __future__ import annotations

import io
import math
import tempfile
import textwrap
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ecgcore.app.plots import (
    LABEL_COLORS,
    LABEL_TITLES,
    NOT_READ_TEXT,
    PARTLY_READ_BELOW,
    PARTLY_READ_COLOR,
    UNREAD_NAMED_S,
    LeadWindows,
    lead_title,
    read_fractions,
    unread_spans,
    window_mask,
    window_slice,
)
from ecgcore.constants import LABELS, LEAD_NAMES
from ecgcore.errors import DigitizationError
from ecgcore.layouts import LeadBox

UNRELIABLE_HEADLINE = "Could not read this ECG reliably"
BOX_COLUMNS = ("lead", "centre_x", "centre_y", "width", "height", "angle_deg", "t0", "t1")


def annotate_photo(rgb: np.ndarray, class_map: np.ndarray | None = None, leads: Sequence[LeadBox] = (),
                   rotation_deg: float | None = None, heat: np.ndarray | None = None) -> np.ndarray:
    """The photo with the segmented grid and curve coloured, the lead boxes outlined and named, the detected
    rotation written in a corner, and optionally a heat map of what the image model looked at."""
    from ecgcore.synth.photo import overlay

    out = np.ascontiguousarray(rgb.copy())
    if heat is not None:
        h = cv2.resize(np.clip(heat, 0, 1).astype(np.float32), (out.shape[1], out.shape[0]))
        colour = cv2.applyColorMap((h * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        weight = (0.55 * h)[..., None]
        out = (out * (1 - weight) + colour * weight).astype(np.uint8)
    mask = class_map if class_map is not None else np.zeros(out.shape[:2], np.uint8)
    out = overlay(out, mask, list(leads), alpha=0.55)
    if rotation_deg is not None:
        scale = max(0.6, out.shape[1] / 1400)
        text = f"rotation {rotation_deg:+.1f} deg"
        cv2.putText(out, text, (12, int(34 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 5, cv2.LINE_AA)
        cv2.putText(out, text, (12, int(34 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 160), 2, cv2.LINE_AA)
    return out


def boxes_to_rows(leads: Sequence[LeadBox]) -> list[dict[str, Any]]:
    """Lead boxes as editable rows: centre, size and angle of each (possibly rotated) rectangle, and its seconds."""
    rows = []
    for box in leads:
        q = np.asarray(box.quad, np.float64)  # TL, TR, BL, BR
        top = q[1] - q[0]
        side = q[2] - q[0]
        centre = q.mean(axis=0)
        rows.append({"lead": box.name, "centre_x": round(float(centre[0]), 1), "centre_y": round(float(centre[1]), 1),
                     "width": round(float(np.hypot(*top)), 1), "height": round(float(np.hypot(*side)), 1),
                     "angle_deg": round(float(-math.degrees(math.atan2(top[1], top[0]))), 2),
                     "t0": round(float(box.t0), 3), "t1": round(float(box.t1), 3)})
    return rows


def rows_to_boxes(rows: Sequence[dict[str, Any]]) -> list[LeadBox]:
    """Edited rows back to LeadBoxes; raises DigitizationError with one sentence for an unusable row."""
    boxes = []
    for i, row in enumerate(rows, start=1):
        name = row.get("lead")
        if name not in LEAD_NAMES:
            raise DigitizationError(f"row {i}: lead must be one of {', '.join(LEAD_NAMES)}, not {name!r}.")
        try:
            cx, cy, w, h, angle, t0, t1 = (float(row[k]) for k in BOX_COLUMNS[1:])
        except (KeyError, TypeError, ValueError):
            raise DigitizationError(f"row {i} ({name}): every column needs a number.") from None
        if not (w > 2 and h > 2 and t1 > t0 >= 0):
            raise DigitizationError(f"row {i} ({name}): width and height must be > 2 px and t1 > t0 >= 0.")
        a = math.radians(-angle)
        ux, uy = math.cos(a), math.sin(a)  # along the box's top edge
        vx, vy = -uy, ux  # down the box's side
        corners = [(-w / 2, -h / 2), (w / 2, -h / 2), (-w / 2, h / 2), (w / 2, h / 2)]  # TL, TR, BL, BR
        quad = np.array([[cx + dx * ux + dy * vx, cy + dx * uy + dy * vy] for dx, dy in corners])
        boxes.append(LeadBox(name, quad, t0, t1))
    return boxes


def signal_csv(signal: np.ndarray, fs: float) -> bytes:
    """time_s plus the 12 leads in mV; empty cells where a lead is not on the image."""
    signal = np.asarray(signal, np.float64)
    t = np.arange(signal.shape[0]) / float(fs)
    buffer = io.StringIO()
    buffer.write("time_s," + ",".join(f"{n}_mV" for n in LEAD_NAMES) + "\n")
    table = np.column_stack([t, signal])
    for line in table:
        buffer.write(",".join("" if not np.isfinite(v) else f"{v:.4f}" for v in line) + "\n")
    return buffer.getvalue().encode()


def wfdb_zip(digitized: Any, stem: str = "ecg") -> bytes:
    """The digitised record as WFDB (.hea/.dat) plus its JSON, zipped, written by ecgcore.read.digitize.write_wfdb."""
    from ecgcore.read.digitize import write_wfdb

    with tempfile.TemporaryDirectory() as tmp:
        write_wfdb(digitized, tmp, stem)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(Path(tmp).iterdir()):
                zf.write(path, path.name)
    return buffer.getvalue()


def verdict_lines(reading: Any, prediction: str) -> tuple[str, list[str]]:
    """The verdict in words, shared by the Classify page and the report: (headline, lines below it).

    An unreliable reading leads with "Could not read this ECG reliably" and its reasons, never with a class; a
    reliable one leads with the model's output and says that the limb leads agree. Limb leads derived where they were
    not read are named last, either way."""
    derived = list(getattr(reading, "derived", None) or [])
    also = [f"Not read on the photo, derived from the other limb leads: {', '.join(derived)}."] if derived else []
    if reading is None or not reading.reliable:
        reasons = list(getattr(reading, "reasons", None) or ["the reading was not checked"])
        return UNRELIABLE_HEADLINE, [f"{reason[:1].upper()}{reason[1:]}" for reason in reasons] + also
    return f"Model output: {LABEL_TITLES.get(prediction, prediction)}", [limb_leads_agree(reading)] + also


def limb_leads_agree(reading: Any) -> str:
    """The short line under a reliable verdict: the two limb-lead laws in dB (>= 5 dB on any reading called
    reliable; true recordings give 15-24 dB)."""
    def db(value: float | None) -> str:
        return "not measured" if value is None else f"{value:.1f} dB"

    return f"The limb leads agree (Einthoven {db(reading.einthoven_db)}, Goldberger {db(reading.goldberger_db)})."


def report(annotated_rgb: np.ndarray, signal: np.ndarray, fs: float, probabilities: dict[str, float],
           prediction: str, disclaimer: str, models: dict[str, Any] | None = None, fmt: str = "png",
           title: str = "ECG Lab report", reading: Any = None, windows: LeadWindows | None = None) -> bytes:
    """A one-page report: the verdict (or, for a reading that is not reliable, "could not read this ECG reliably"
    with its reasons and the probabilities marked as research output), the annotated photo, the 12 digitised leads
    on ECG paper (only what was read; unread stretches shaded, leads read along little of their window named so),
    and the disclaimer. ``reading`` is the analysis's ecgcore.read.physics.Reading (None: not checked, so not reliable);
    ``windows`` the leads' shown seconds (ui_plots.lead_windows). ``fmt`` is 'png' or 'pdf'."""
    from matplotlib import pyplot as plt

    fig = report_figure(annotated_rgb, signal, fs, probabilities, prediction, disclaimer, models, title, reading,
                        windows)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def report_figure(annotated_rgb: np.ndarray, signal: np.ndarray, fs: float, probabilities: dict[str, float],
                  prediction: str, disclaimer: str, models: dict[str, Any] | None = None,
                  title: str = "ECG Lab report", reading: Any = None, windows: LeadWindows | None = None):
    """The matplotlib Figure of :func:`report` (close it with ``plt.close`` when done)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.gridspec import GridSpec

    signal = np.asarray(signal, np.float64)
    reliable = reading is not None and reading.reliable
    fig = plt.figure(figsize=(11.69, 8.27), dpi=110)  # A4 landscape
    grid = GridSpec(7, 4, figure=fig, hspace=0.5, wspace=0.12, height_ratios=[1.2, 1, 1, 1, 1, 1, 1])
    fig.suptitle(title, fontsize=14, fontweight="bold", x=0.02, ha="left")
    ax_photo = fig.add_subplot(grid[0:3, 0:2])
    ax_photo.imshow(annotated_rgb)
    ax_photo.set_axis_off()
    ax_p = fig.add_subplot(grid[0, 2:4])
    labels = [lab for lab in LABELS if lab in probabilities]
    values = [probabilities[lab] for lab in labels]
    # A reading that is not reliable keeps its probabilities as a faded, labelled research output.
    ax_p.barh([LABEL_TITLES[lab] for lab in labels], values, color=[LABEL_COLORS[lab] for lab in labels],
              alpha=1.0 if reliable else 0.35)
    ax_p.set_xlim(0, 1)
    ax_p.invert_yaxis()
    for y, v in enumerate(values):
        ax_p.text(min(v + 0.01, 0.9), y, f"{v:.0%}", va="center", fontsize=9, color="black" if reliable else "#777777")
    if reliable:
        ax_p.set_title(f"Model output: {LABEL_TITLES.get(prediction, prediction)}", fontsize=11, loc="left")
    else:
        ax_p.set_title("Research output only, not a result (the reading is not reliable)", fontsize=9, loc="left",
                       color="#777777")
    ax_p.tick_params(labelsize=8)
    t = np.arange(signal.shape[0]) / float(fs)
    fractions = read_fractions(signal, fs, windows)
    order = [0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11]
    for k, lead in enumerate(order):
        row, col = 1 + k // 2, 2 + k % 2
        ax = fig.add_subplot(grid[row, col])
        name = LEAD_NAMES[lead]
        y = signal[:, lead]
        shown = np.isfinite(y)
        window = window_mask(shown, fs, (windows or {}).get(name, ()))
        span = window_slice(window)
        t0, t1, lo, hi = 0.0, float(t[-1]) if t.size else 1.0, -0.6, 0.6
        if window.any():
            t0, t1 = float(t[span.start]), float(t[span.stop - 1])
        if shown.any():
            lo, hi = min(-0.6, float(np.nanmin(y)) - 0.15), max(0.6, float(np.nanmax(y)) + 0.15)
        # The paper grid as two line collections per panel: tick-based grids cost a second per panel.
        minor_x = np.arange(np.floor(t0 / 0.04) * 0.04, t1 + 0.04, 0.04)
        minor_y = np.arange(np.floor(lo / 0.1) * 0.1, hi + 0.1, 0.1)
        ax.vlines(minor_x, lo, hi, colors="#f6c6c6", linewidth=0.25)
        ax.hlines(minor_y, t0, t1, colors="#f6c6c6", linewidth=0.25)
        ax.vlines(minor_x[np.isclose(np.mod(minor_x + 1e-6, 0.2), 0, atol=1e-3)], lo, hi, colors="#e88b8b",
                  linewidth=0.5)
        ax.hlines(minor_y[np.isclose(np.mod(minor_y + 1e-6, 0.5), 0, atol=1e-3)], t0, t1, colors="#e88b8b",
                  linewidth=0.5)
        for a, b in unread_spans(shown, window, fs):
            ax.axvspan(a, b, color="#8a8a8a", alpha=0.22, linewidth=0)
            if b - a >= UNREAD_NAMED_S:
                ax.text((a + b) / 2, (lo + hi) / 2, "not read", ha="center", va="center", fontsize=7,
                        color=NOT_READ_TEXT)
        if shown.any():  # NaN breaks matplotlib's line: only the read stretches are drawn
            ax.plot(t[span], y[span], color="black", linewidth=0.7)
        ax.set_xlim(t0, t1)
        ax.set_ylim(lo, hi)
        ax.set_facecolor("#fff7f5")
        ax.set_xticks([])
        ax.set_yticks([])
        partly = fractions[name] < PARTLY_READ_BELOW
        ax.set_title(lead_title(name, fractions[name]), fontsize=8, loc="left", pad=2,
                     color=PARTLY_READ_COLOR if partly else "black", fontweight="bold" if partly else "normal")
    lines = []
    for name, info in (models or {}).items():
        if isinstance(info, dict):
            lines.append(f"{name} model: " + ", ".join(f"{k} {v}" for k, v in info.items()
                                                        if isinstance(v, (int, float, str)) and len(str(v)) < 40))
    ax_text = fig.add_subplot(grid[3:7, 0:2])
    ax_text.set_axis_off()
    # matplotlib does not wrap text to an axes, so wrap by characters to stay inside the left half; each block is
    # placed under the one before it, whatever its number of lines.
    headline, details = verdict_lines(reading, prediction)
    if not reliable:
        details = [f"- {line}" for line in details] + [
            "Compare the lead boxes on the photo with the printout; the probabilities are shown only as research "
            "output."]
    block = ax_text.text(0, 1, headline, va="top", fontsize=12, fontweight="bold",
                         color="#111111" if reliable else "#a01010", transform=ax_text.transAxes)
    for text, size, colour, family in (("\n".join(textwrap.fill(line, 80, subsequent_indent="  ") for line in details),
                                        8, "black", "sans-serif"),
                                       ("\n".join(textwrap.fill(line, 88) for line in lines[:4]), 6.5, "#333333",
                                        "monospace"),
                                       (textwrap.fill(disclaimer, 80), 8, "#a01010", "sans-serif")):
        if text:
            block = ax_text.annotate(text, xy=(0, 0), xycoords=block, xytext=(0, -6), textcoords="offset points",
                                     va="top", fontsize=size, color=colour, family=family)
    return fig
