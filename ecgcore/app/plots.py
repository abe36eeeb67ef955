"""Plotly figures for the app's pages (no Streamlit here, so they can be tested and reused in reports).

ECG signals are drawn on ECG-paper styling: pink minor grid every 0.04 s and 0.1 mV, red major grid every 0.2 s and
0.5 mV (at 25 mm/s and 10 mm/mV those are the paper's 1 mm and 5 mm squares). Only what was read is drawn: a lead's
line breaks where it was not read (never a ramp across the gap), the unread stretches of its window are shaded and
named "not read", and a lead read along less than PARTLY_READ_BELOW of its window says so in its title.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ecgcore.constants import CLASS_NAMES, LABELS, LEAD_NAMES
from ecgcore.read.physics import derived_mask
from ecgcore.synth.params import PARAMS, Dist, pdf

PAPER_BG = "#fff7f5"
MINOR_GRID = "#f6c6c6"
MAJOR_GRID = "#e88b8b"
INK = "#111111"
REFERENCE = "#6d8fb5"
LABEL_TITLES = {"normal": "Normal", "non_mi_abnormality": "Non-MI abnormality", "mi": "Myocardial infarction"}
LABEL_COLORS = {"normal": "#2e9a4e", "non_mi_abnormality": "#d99a1e", "mi": "#c8283c", "synthetic": "#7a7a7a"}
NOT_READ_FILL = "rgba(110,110,110,0.16)"
NOT_READ_TEXT = "#6b6b6b"
PARTLY_READ_COLOR = "#a01010"
DERIVED = "#7a3fb0"  # a limb lead's samples derived from the other two of its law (never read), drawn dotted
_COMPACT = dict(margin=dict(l=10, r=10, t=30, b=10))
PARTLY_READ_BELOW = 0.5  # a lead read along less of its window than this is titled "partly read (x%)"
UNREAD_MIN_S = 0.1  # unread stretches at least this long are shaded; shorter ones are gaps in a line
UNREAD_NAMED_S = 0.6  # ... and at least this long also carry the words "not read"

LeadWindows = dict[str, list[tuple[float, float]]]  # lead name -> the (t0, t1) seconds its cells show


def lead_windows(boxes: Sequence[Any]) -> LeadWindows:
    """The seconds each lead is shown for, from a digitised record's lead boxes (LeadBox: name, t0, t1)."""
    windows: LeadWindows = {}
    for box in boxes:
        windows.setdefault(str(box.name), []).append((float(box.t0), float(box.t1)))
    return windows


def window_mask(read: np.ndarray, fs: float, spans: Sequence[tuple[float, float]] = ()) -> np.ndarray:
    """The samples of a lead's window: the union of its spans (seconds) and of the samples read (a reading may run
    a sample past its cell's edge, and whatever was read is drawn), or, with no span known, from its first to its
    last read sample. ``read`` is the lead's boolean "was read" per sample."""
    n = read.size
    mask = read.copy()
    for t0, t1 in spans:
        i0, i1 = max(0, int(round(t0 * fs))), min(n, int(round(t1 * fs)))
        mask[i0:i1] = True
    if not spans and read.any():
        idx = np.flatnonzero(read)
        mask[idx[0]: idx[-1] + 1] = True
    return mask


def window_slice(mask: np.ndarray) -> slice:
    """The samples from a window's first to its last (what a lead's panel spans; empty for an empty window)."""
    idx = np.flatnonzero(mask)
    return slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else slice(0, 0)


def read_fractions(signal: np.ndarray, fs: float, windows: LeadWindows | None = None) -> dict[str, float]:
    """Per lead, the share of its window that was read (0..1; 0 for a lead without a window or a read sample)."""
    signal = np.asarray(signal, np.float64)
    out = {}
    for lead, name in enumerate(LEAD_NAMES):
        read = np.isfinite(signal[:, lead])
        mask = window_mask(read, fs, (windows or {}).get(name, ()))
        out[name] = float(read[mask].mean()) if mask.any() else 0.0
    return out


def lead_title(name: str, fraction: float) -> str:
    """A lead's panel title: its name, plus "not read" or "partly read (x%)" when little of its window was read."""
    if fraction <= 0.0:
        return f"{name} - not read"
    if fraction < PARTLY_READ_BELOW:
        share = f"{fraction:.0%}" if fraction >= 0.01 else "<1%"
        return f"{name} - partly read ({share})"
    return name


def unread_spans(read: np.ndarray, mask: np.ndarray, fs: float, min_s: float = UNREAD_MIN_S) -> list[tuple[float, float]]:
    """The stretches (seconds) of a lead's window that were not read, at least ``min_s`` long."""
    gap = (mask & ~read).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.r_[0, gap, 0]))
    starts, ends = edges[0::2], edges[1::2]
    keep = (ends - starts) >= max(1, int(round(min_s * fs)))
    return [(float(a) / fs, float(b) / fs) for a, b in zip(starts[keep], ends[keep])]


def pdf_figure(names: Sequence[str], dists: dict[str, Dist], drawn: dict[str, Any], cols: int = 3) -> go.Figure:
    """One small density plot per numeric parameter, with the value drawn for the preview marked in red."""
    names = [n for n in names if not PARAMS[n].categorical]
    rows = max(1, -(-len(names) // cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.06, vertical_spacing=0.14)
    for i, name in enumerate(names):
        param, dist = PARAMS[name], dists[name]
        x, y = pdf(param, dist)
        row, col = i // cols + 1, i % cols + 1
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line=dict(color="#3a6ec8", width=2), fill="tozeroy",
                                 hovertemplate=f"{name}=%{{x:.3g}}<br>density %{{y:.3g}}<extra></extra>"),
                      row=row, col=col)
        value = drawn.get(name)
        if value is not None:
            top = float(y.max()) if y.size and y.max() > 0 else 1.0
            fig.add_trace(go.Scatter(x=[value, value], y=[0, top], mode="lines", line=dict(color="#c8283c", width=2),
                                     hovertemplate=f"drawn: {float(value):.4g}<extra></extra>"), row=row, col=col)
        fig.update_yaxes(showticklabels=False, row=row, col=col)
    fig.update_layout(showlegend=False, height=170 * rows + 30, **_COMPACT)
    fig.update_annotations(font_size=11)
    return fig


def timings_figure(timings_ms: dict[str, float]) -> go.Figure:
    """Horizontal bars: milliseconds per synthesis stage."""
    stages = list(timings_ms)
    values = [timings_ms[s] for s in stages]
    fig = go.Figure(go.Bar(x=values, y=stages, orientation="h", marker_color="#3a6ec8",
                           text=[f"{v:.1f} ms" for v in values], textposition="auto"))
    fig.update_layout(height=40 + 24 * len(stages), xaxis_title="ms", yaxis=dict(autorange="reversed"), **_COMPACT)
    return fig


def metrics_figure(metrics: list[dict[str, Any]]) -> go.Figure:
    """One line per metric over steps (epochs), losses and scores on separate panels."""
    keys = sorted({k for m in metrics for k in m if k not in ("step", "t")})
    losses = [k for k in keys if "loss" in k]
    scores = [k for k in keys if k not in losses]
    panels = [p for p in (losses, scores) if p]
    fig = make_subplots(rows=1, cols=max(1, len(panels)),
                        subplot_titles=["loss" if p is losses else "metrics" for p in panels] or [""])
    for col, panel in enumerate(panels, start=1):
        for key in panel:
            pts = [(m.get("step"), m[key]) for m in metrics if key in m and m[key] is not None]
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=key),
                          row=1, col=col)
        fig.update_xaxes(title_text="step", row=1, col=col)
    fig.update_layout(height=320, legend=dict(orientation="h", y=-0.25), **_COMPACT)
    return fig


def class_counts_figure(before: dict[str, int], after: dict[str, int]) -> go.Figure:
    """Samples per class before curation (all) and after (without the discarded)."""
    labels = [lab for lab in (*LABELS, "synthetic") if lab in before or lab in after]
    fig = go.Figure([
        go.Bar(name="before", x=labels, y=[before.get(lab, 0) for lab in labels], marker_color="#9db4d6"),
        go.Bar(name="after", x=labels, y=[after.get(lab, 0) for lab in labels], marker_color="#3a6ec8",
               text=[after.get(lab, 0) for lab in labels], textposition="outside"),
    ])
    fig.update_layout(barmode="group", height=260, **_COMPACT)
    return fig


def probabilities_figure(probabilities: dict[str, float]) -> go.Figure:
    """The three class probabilities as horizontal bars, in the fixed label order."""
    labels = [lab for lab in LABELS if lab in probabilities]
    values = [float(probabilities[lab]) for lab in labels]
    fig = go.Figure(go.Bar(
        x=values, y=[LABEL_TITLES[lab] for lab in labels], orientation="h",
        marker_color=[LABEL_COLORS[lab] for lab in labels], text=[f"{v:.0%}" for v in values], textposition="auto",
    ))
    fig.update_layout(height=180, xaxis=dict(range=[0, 1], tickformat=".0%", dtick=0.25),
                      yaxis=dict(autorange="reversed"), margin=dict(l=10, r=30, t=10, b=10))
    return fig


def _paper_axes(fig: go.Figure, row: int, col: int, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
    grid = dict(showgrid=True, gridcolor=MAJOR_GRID, gridwidth=1, zeroline=False,
                minor=dict(showgrid=True, gridcolor=MINOR_GRID, gridwidth=0.5), showline=False)
    fig.update_xaxes(range=x_range, dtick=0.2, minor_dtick=0.04, tick0=0, showticklabels=False, **grid,
                     row=row, col=col)
    fig.update_yaxes(range=y_range, dtick=0.5, minor_dtick=0.1, tick0=0, showticklabels=False, **grid,
                     row=row, col=col)


def ecg_paper_figure(
    signal: np.ndarray,
    fs: float,
    reference: np.ndarray | None = None,
    reference_fs: float | None = None,
    attribution: np.ndarray | None = None,
    lead_names: Sequence[str] = LEAD_NAMES,
    title: str = "",
    windows: LeadWindows | None = None,
    derived: dict[str, Any] | None = None,
) -> go.Figure:
    """The 12 leads on ECG paper: limb leads left, chest leads right; each panel spans the seconds its lead shows.

    ``signal`` is (n, 12) in mV with NaN where a lead is not on the image (a DigitizedEcg's signal). ``windows``
    (:func:`lead_windows` of its lead boxes) says which seconds each lead's cells show: the panel spans them, the
    line breaks wherever the lead was not read, unread stretches are shaded "not read", and a lead read along less
    than PARTLY_READ_BELOW of its window is titled so. ``reference`` (e.g. the source record) is drawn in blue
    behind it; ``attribution`` (12, n), aligned with ``signal``, shades the paper where the model looked.
    ``derived`` (a reading's ``quality["derived"]``: lead -> {"from", "samples"}) names the samples of a limb lead
    that were not read but derived from the other two of its law: they count as not read, shaded and named
    "derived", and are drawn dotted in DERIVED.
    """
    filled = np.asarray(signal, np.float64)
    n = filled.shape[0]
    is_derived = derived_mask(n, derived)
    signal = np.where(is_derived, np.nan, filled)  # what was read
    t = np.arange(n) / float(fs)
    order = [0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11]  # row-major over a 6 x 2 grid
    fractions = read_fractions(signal, fs, windows)
    titles = [lead_title(lead_names[i], fractions[LEAD_NAMES[i]]) + (", derived" if is_derived[:, i].any() else "")
              for i in order]
    fig = make_subplots(rows=6, cols=2, subplot_titles=titles, horizontal_spacing=0.03, vertical_spacing=0.045)
    for annotation, lead in zip(fig.layout.annotations, order):
        if fractions[LEAD_NAMES[lead]] < PARTLY_READ_BELOW:
            annotation.font.color = PARTLY_READ_COLOR
    for k, lead in enumerate(order):
        row, col = k // 2 + 1, k % 2 + 1
        y = signal[:, lead]
        shown = np.isfinite(y)
        mine = is_derived[:, lead]
        window = window_mask(shown | mine, fs, (windows or {}).get(LEAD_NAMES[lead], ()))
        span = window_slice(window)
        if window.any():
            x_range = (float(t[span.start]) - 0.04, float(t[span.stop - 1]) + 0.04)
        else:
            x_range = (0.0, float(t[-1]) if n else 1.0)
        drawn = filled[:, lead]
        lo, hi = (float(np.nanmin(drawn)), float(np.nanmax(drawn))) if np.isfinite(drawn).any() else (0.0, 0.0)
        if reference is not None:
            ref_fs = float(reference_fs or fs)
            ref = np.asarray(reference, np.float64)[:, lead]
            rt = np.arange(ref.size) / ref_fs
            keep = (rt >= x_range[0]) & (rt <= x_range[1])
            if keep.any():
                fig.add_trace(go.Scatter(x=rt[keep], y=ref[keep], mode="lines", line=dict(color=REFERENCE, width=2),
                                         name="source", showlegend=k == 0, legendgroup="ref",
                                         hovertemplate="%{x:.2f} s, %{y:.2f} mV<extra>source</extra>"),
                              row=row, col=col)
                lo, hi = min(lo, float(np.nanmin(ref[keep]))), max(hi, float(np.nanmax(ref[keep])))
        y_range = (min(-0.6, lo - 0.2), max(0.6, hi + 0.2))
        if attribution is not None and shown.any():
            a = np.asarray(attribution, np.float64)[lead, :n]
            a = np.where(shown, np.abs(a), np.nan)
            peak = np.nanmax(a) if np.isfinite(a).any() else 0.0
            if peak > 0:
                fig.add_trace(go.Heatmap(x=t, y=list(y_range), z=[a / peak, a / peak], zmin=0, zmax=1, showscale=False,
                                         colorscale=[[0, "rgba(255,160,0,0)"], [1, "rgba(255,120,0,0.65)"]],
                                         hoverinfo="skip"), row=row, col=col)
        # The window's samples with NaN where nothing was read: plotly breaks the line there (connectgaps off), so
        # a lead read in a few places is a few short strokes, never ramps and plateaus drawn across the gaps.
        fig.add_trace(go.Scatter(x=t[span], y=y[span], mode="lines",
                                 line=dict(color=INK, width=1.6), name="digitised", showlegend=k == 0,
                                 legendgroup="dig", connectgaps=False,
                                 hovertemplate="%{x:.2f} s, %{y:.2f} mV<extra>" + lead_names[lead] + "</extra>"),
                      row=row, col=col)
        if mine.any():
            # one sample either side joins the derived stretch to the read line
            joined = mine | np.concatenate([mine[1:], [False]]) | np.concatenate([[False], mine[:-1]])
            fig.add_trace(go.Scatter(x=t[span], y=np.where(joined, filled[:, lead], np.nan)[span], mode="lines",
                                     line=dict(color=DERIVED, width=1.6, dash="dot"), connectgaps=False,
                                     name="derived from the other limb leads", legendgroup="derived",
                                     showlegend=not is_derived[:, order[:k]].any(),
                                     hovertemplate="%{x:.2f} s, %{y:.2f} mV<extra>" + lead_names[lead]
                                                   + " derived</extra>"),
                          row=row, col=col)
        for a, b in unread_spans(shown, window, fs):
            fig.add_vrect(x0=a, x1=b, fillcolor=NOT_READ_FILL, line_width=0, layer="below", row=row, col=col,
                          exclude_empty_subplots=False)
            if b - a >= UNREAD_NAMED_S:
                inside = mine[int(round(a * fs)):int(round(b * fs)) + 1]
                text = f"derived: {derived[LEAD_NAMES[lead]]['from']}" if inside.size and inside.mean() > 0.5 else "not read"
                at = 0.0 if text == "not read" else y_range[1] - 0.1 * (y_range[1] - y_range[0])  # above the trace
                fig.add_annotation(x=(a + b) / 2, y=at, text=text, showarrow=False,
                                   yanchor="middle" if text == "not read" else "top",
                                   font=dict(color=DERIVED if text != "not read" else NOT_READ_TEXT, size=11),
                                   row=row, col=col, exclude_empty_subplots=False)
        _paper_axes(fig, row, col, x_range, y_range)
    fig.update_layout(height=6 * 150 + 60, plot_bgcolor=PAPER_BG, paper_bgcolor="white", title=title or None,
                      # the legend above the top row's lead titles (it sat on V1's)
                      legend=dict(orientation="h", y=1.025, yanchor="bottom", x=1, xanchor="right"),
                      margin=dict(l=10, r=10, t=90 if title else 60, b=10))
    fig.update_annotations(font_size=12)
    return fig


def class_map_colors(class_map: np.ndarray) -> np.ndarray:
    """An RGB picture of a class map (background black), for showing masks."""
    from ecgcore.constants import CLASS_COLORS

    return np.asarray(CLASS_COLORS, np.uint8)[np.clip(class_map, 0, len(CLASS_NAMES) - 1)]
