"""Curation: surface the worst PTB-V samples first, look at them closely, discard or restore, undo anything."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import streamlit as st

st.set_page_config(page_title="Curation - ECG Lab", page_icon=":material/cleaning_services:", layout="wide")

from ecgcore.app import curation as cur  # noqa: E402
from ecgcore.app.plots import class_counts_figure, class_map_colors, ecg_paper_figure  # noqa: E402
from ecgcore.dataset import (  # noqa: E402
    MAX_CURATOR_CHARS,
    DatasetError,
    Sample,
    clean_curator,
    read_curation,
    record_decisions,
    undo_last,
)
from ecgcore.jobs import JobError, JobRunner  # noqa: E402
from ecgcore.synth.photo import overlay  # noqa: E402
from ecgcore.train import scores  # noqa: E402
from ecgcore.workspace import list_datasets, workspace_root  # noqa: E402
from pages import PAGE_JOBS, plain  # noqa: E402

SCORE_LABELS = {"seg_iou": "segmentation IoU (curve)", "snr_db": "digitisation SNR (dB)",
                "p_true": "p(own label)", "confidence": "model confidence", "ink_contrast": "ink contrast"}
state = st.session_state
root = workspace_root()
runner = JobRunner(root)
# The curator's name: from this session, else the page address (?curator=NAME, so a reload or a bookmark keeps it),
# else the user running the app. "cur_curator_name" holds it while another page runs (Streamlit drops a widget's
# state when a run does not draw it).
if not state.get("curator"):
    state["curator"] = (state.get("cur_curator_name") or clean_curator(st.query_params.get("curator", ""))
                        or cur.default_curator())

st.title("Curation")
datasets = list_datasets(root)
if not datasets:
    st.info(f"No PTB-V datasets in the workspace yet. Make a demo dataset ({cur.DEMO_SAMPLES} synthetic photos, "
            "generated and then scored as background jobs, about a minute), or generate your own from the Jobs page "
            "or the Augmentation Studio.")
    if st.button("Make a demo dataset", icon=":material/play_arrow:", key="cur_demo", type="primary"):
        try:
            job = runner.launch("generate_ptb_v", cur.demo_generation_args(root), name=cur.DEMO_JOB_NAME, threads=1)
            st.success(f"Started job #{job.id}: the demo dataset appears here as its samples are made.")
        except JobError as exc:
            st.error(plain(str(exc)))
    st.page_link(PAGE_JOBS, label="Open Jobs", icon=":material/settings:")
    st.stop()

c_ds, c_me = st.columns([3, 1])
folder: Path = c_ds.selectbox("Dataset", datasets, format_func=lambda p: p.name, key="cur_dataset")


def _clean_name() -> None:
    """A blank or odd name falls back to a usable one before the page runs (decisions need a name)."""
    state["curator"] = clean_curator(state.get("curator", "")) or cur.default_curator()


curator = c_me.text_input(
    "Curator name", key="curator", on_change=_clean_name, max_chars=MAX_CURATOR_CHARS,
    help="Decisions are logged under this name, and Undo steps back through this name's own decisions only, newest "
         "first: one press per decision or batch. The name lives in the page address (?curator=NAME), so a reload "
         "or a bookmark keeps it; a new visit starts with the name of the user running the app. When several people "
         "curate, each should use their own name. If someone else decided on a sample after you, undo leaves their "
         "decision in place and says so.")
state["cur_curator_name"] = curator
if st.query_params.get("curator") != curator:
    st.query_params["curator"] = curator


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.0


@st.cache_data(max_entries=8, show_spinner="Reading the samples...")
def cached_rows(folder: str, scores_mtime: float, n_json: int):
    """Sample metadata and scores; re-read when scores.csv changes or samples are added."""
    return cur.sample_rows(folder)


@st.cache_data(max_entries=256, show_spinner=False)
def thumbnail(path: str, width: int = 360) -> np.ndarray:
    bgr = cv2.imread(path, cv2.IMREAD_REDUCED_COLOR_4)
    if bgr is None:
        return np.zeros((10, 10, 3), np.uint8)
    h, w = bgr.shape[:2]
    return cv2.cvtColor(cv2.resize(bgr, (width, max(1, h * width // w)), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_BGR2RGB)


try:
    rows = cached_rows(str(folder), _mtime(scores.scores_path(folder)), sum(1 for _ in folder.glob("[0-9]*.json")))
except DatasetError as exc:
    st.error(str(exc))
    st.stop()
recent_jobs = runner.list(limit=100)
making = next((j for j in recent_jobs if j.active and j.pipeline == "generate_ptb_v" and str(folder) in j.args), None)
if making is not None:
    made = runner.progress(making)
    st.progress(made.fraction or 0.0, text=f"Job #{making.id} is making {folder.name}: {made.done or 0}/"
                                          f"{made.total or '?'} samples - reload to see them")
if rows.empty:
    st.warning(f"{folder.name} has no complete samples yet.")
    st.stop()

# --- scores: computed by a background job ---------------------------------------------------------------
if cur.demo_needs_scoring(recent_jobs, folder):
    try:
        runner.launch("score_dataset", ["--data", str(folder)], name=f"score {folder.name}", threads=1)
        recent_jobs = runner.list(limit=100)
    except JobError as exc:
        st.error(plain(str(exc)))
score_jobs = [j for j in recent_jobs if j.pipeline == "score_dataset" and str(folder) in j.args]
running = next((j for j in score_jobs if j.active), None)
scored = rows["scored_with"].notna().any()
c_score, c_rule = st.columns([1.2, 2])
with c_score:
    if running:
        p = runner.progress(running)
        st.progress(p.fraction or 0.0, text=f"Scoring job #{running.id}: {p.done or 0}/{p.total or '?'} - reload to "
                                            "see the new scores")
    elif not scored:
        st.info("This dataset has no quality scores yet. Scoring runs as a background job (segmentation IoU, "
                "digitisation SNR, model confidence where the models are installed; ink contrast always).")
    else:
        st.caption(f"Scored with: {', '.join(sorted(rows['scored_with'].dropna().unique()))}")
    if not running and st.button("Score this dataset" if not scored else "Rescore (new samples or models)",
                                 icon=":material/analytics:", key="cur_score"):
        try:
            job = runner.launch("score_dataset", ["--data", str(folder)], name=f"score {folder.name}", threads=1)
            st.success(f"Started scoring job #{job.id}; follow it on the Jobs page.")
        except JobError as exc:
            st.error(str(exc))
with c_rule:
    with st.expander("Suspect rule (thresholds)"):
        r1, r2, r3, r4 = st.columns(4)
        rule = scores.SuspectRule(
            min_seg_iou=r1.number_input("IoU below", 0.0, 1.0, scores.SuspectRule.min_seg_iou, 0.05, key="cur_t_iou"),
            min_snr_db=r2.number_input("SNR below (dB)", -20.0, 40.0, scores.SuspectRule.min_snr_db, 1.0, key="cur_t_snr"),
            min_p_true=r3.number_input("p(own label) below", 0.0, 1.0, scores.SuspectRule.min_p_true, 0.05,
                                       key="cur_t_p"),
            min_ink_contrast=r4.number_input("ink contrast below", 0.0, 1.0, scores.SuspectRule.min_ink_contrast, 0.02,
                                             key="cur_t_ink"),
        )

log = read_curation(folder)  # one read per run: the state of every sample
table = cur.apply_curation(rows, log.discarded, rule)
before, after = cur.class_counts(table)

# --- filters and order -------------------------------------------------------------------------------------
f1, f2, f3, f4 = st.columns([1.2, 1.2, 1.4, 1])
show = f1.segmented_control("Show", ["all", "suspect", "kept", "discarded"], default="all", required=True,
                            key="cur_show")
labels = sorted(table["label"].unique())
label_filter = f2.multiselect("Classes", labels, default=labels, key="cur_labels")
order = f3.selectbox("Order", ["worst first", "id", *SCORE_LABELS], key="cur_order",
                     format_func=lambda k: SCORE_LABELS.get(k, k) + (" (lowest first)" if k in SCORE_LABELS else ""))
view = f4.segmented_control("View", ["table", "gallery"], default="table", required=True, key="cur_view")

shown = table[table["label"].isin(label_filter)]
if show == "suspect":
    shown = shown[shown["suspect"]]
elif show == "kept":
    shown = shown[~shown["discarded"]]
elif show == "discarded":
    shown = shown[shown["discarded"]]
if order == "worst first":
    shown = cur.worst_first(shown)
elif order in SCORE_LABELS:
    shown = shown.assign(_k=pd.to_numeric(shown[order], errors="coerce")).sort_values(
        "_k", na_position="last").drop(columns="_k")
ids = shown["id"].tolist()

m1, m2, m3, m4 = st.columns(4)
m1.metric("Samples", len(table))
m2.metric("Suspect", int(table["suspect"].sum()))
m3.metric("Discarded", int(table["discarded"].sum()))
m4.metric("Shown", len(ids))


def decide(sample_ids: list[str], decision: str, reason: str) -> None:
    if not sample_ids:
        return
    try:
        record_decisions(folder, sample_ids, decision, reason=reason, by=curator)
    except (DatasetError, OSError) as exc:
        state["cur_msg"] = (f"The decision was not saved: {exc}", ":material/warning:")
        return
    state["cur_msg"] = (cur.decision_message(sample_ids, decision), ":material/check_circle:")


def undo() -> None:
    """Step back through this curator's own decisions; say exactly what changed and what another curator kept."""
    try:
        message, warn = cur.undo_message(undo_last(folder, by=curator))
    except (DatasetError, OSError) as exc:
        message, warn = f"Nothing was undone: {exc}", True
    state["cur_msg"] = (message, ":material/warning:" if warn else ":material/undo:")
    if warn:  # a toast fades; a skipped undo must stay visible until the next action
        state["cur_warn"] = message


# --- table or gallery ----------------------------------------------------------------------------------------
columns = ["id", "label", "layout", "discarded", "suspect", "seg_iou", "snr_db", "p_true", "confidence",
           "ink_contrast", "why", "rotation_angle", "shadow_alpha", "white_noise_sd", "blur_factor"]
if view == "table":
    event = st.dataframe(
        shown[columns], hide_index=True, key=f"cur_table_{folder.name}", on_select="rerun",
        selection_mode="multi-row", height=320 if len(shown) > 8 else "auto",
        column_config={
            "seg_iou": st.column_config.NumberColumn("IoU", format="%.2f"),
            "snr_db": st.column_config.NumberColumn("SNR dB", format="%.1f"),
            "p_true": st.column_config.NumberColumn("p(own)", format="%.2f"),
            "confidence": st.column_config.NumberColumn("conf.", format="%.2f"),
            "ink_contrast": st.column_config.NumberColumn("contrast", format="%.2f"),
            "rotation_angle": st.column_config.NumberColumn("rot deg", format="%.1f"),
            "shadow_alpha": st.column_config.NumberColumn("shadow", format="%.2f"),
            "white_noise_sd": st.column_config.NumberColumn("noise sd", format="%.0f"),
            "blur_factor": st.column_config.NumberColumn("blur", format="%.2f"),
        },
    )
    picked = [ids[i] for i in event.selection.rows if i < len(ids)] if event and event.selection else []
    s1, s2, _ = st.columns([1, 1, 3])
    if s1.button(f"Discard selected ({len(picked)})", disabled=not picked, key="cur_discard_sel"):
        decide(picked, "discard", "selected in table")
        st.rerun()
    if s2.button(f"Restore selected ({len(picked)})", disabled=not picked, key="cur_restore_sel"):
        decide(picked, "restore", "selected in table")
        st.rerun()
    if picked and picked != state.get("cur_last_pick"):  # a new click in the table opens that sample
        state["cur_cursor"] = picked[-1]
    state["cur_last_pick"] = picked
else:
    per_page = 12
    pages = max(1, -(-len(ids) // per_page))
    page = st.number_input("Page", 1, pages, 1, key="cur_page") if pages > 1 else 1
    chunk = shown.iloc[(page - 1) * per_page: page * per_page]
    cols = st.columns(4)
    for i, row in enumerate(chunk.to_dict("records")):
        with cols[i % 4]:
            st.image(thumbnail(str(cur.sample_image_path(folder, row["id"]))), output_format="JPEG",
                     caption=f"{row['id']} {row['label']}" + (" - DISCARDED" if row["discarded"] else "")
                     + (" - suspect" if row["suspect"] else ""))
            if st.button("Open", key=f"cur_open_{row['id']}"):
                state["cur_cursor"] = row["id"]

# --- bulk by threshold -----------------------------------------------------------------------------------------
with st.expander("Discard or restore many by threshold"):
    b1, b2, b3 = st.columns(3)
    column = b1.selectbox("Score", list(SCORE_LABELS), format_func=SCORE_LABELS.get, key="cur_bulk_col")
    direction = b2.selectbox("Where the score is", ["below", "above"], key="cur_bulk_dir")
    threshold = b3.number_input("Threshold", value=0.5, step=0.05, key="cur_bulk_t")
    chosen = cur.threshold_ids(table, column, float(threshold), below=direction == "below")
    to_discard = [i for i in chosen if i not in set(table.loc[table["discarded"], "id"])]
    to_restore = [i for i in chosen if i in set(table.loc[table["discarded"], "id"])]
    st.caption(f"{len(chosen)} samples have {SCORE_LABELS[column]} {direction} {threshold:g} "
               f"({len(to_discard)} kept now, {len(to_restore)} discarded now). Samples without this score are "
               "never selected.")
    k1, k2, _ = st.columns([1, 1, 2])
    if k1.button(f"Discard {len(to_discard)}", disabled=not to_discard, key="cur_bulk_discard"):
        decide(to_discard, "discard", f"{column} {direction} {threshold:g}")
        st.rerun()
    if k2.button(f"Restore {len(to_restore)}", disabled=not to_restore, key="cur_bulk_restore"):
        decide(to_restore, "restore", f"{column} {direction} {threshold:g}")
        st.rerun()

# --- detail view with keyboard navigation --------------------------------------------------------------------
@st.fragment
def detail_view(ids: list[str], table: pd.DataFrame) -> None:
    """One sample up close. Moving to the next or previous one reruns only this view; a decision reruns the page
    (counts and table change)."""
    cursor = state.get("cur_cursor")
    if cursor not in ids:
        cursor = ids[0]
    index = ids.index(cursor)

    def move(step: int) -> None:
        state["cur_cursor"] = ids[(index + step) % len(ids)]

    row = table.set_index("id").loc[cursor]
    n1, n2, n3, n4, n5, n6 = st.columns([1, 1, 1, 1, 1, 2.5])
    n1.button("Previous", icon=":material/arrow_back:", shortcut="K", on_click=move, args=(-1,), key="cur_prev", help="Shortcut K")
    n2.button("Next", icon=":material/arrow_forward:", shortcut="J", on_click=move, args=(1,), key="cur_next", help="Shortcut J")
    if n3.button("Discard", icon=":material/delete:", shortcut="D", disabled=bool(row["discarded"]), key="cur_discard",
                 help="Shortcut D; moves on to the next sample"):
        decide([cursor], "discard", "detail view")
        move(1)
        st.rerun()
    if n4.button("Restore", icon=":material/restore_from_trash:", shortcut="A", disabled=not bool(row["discarded"]), key="cur_restore",
                 help="Shortcut A"):
        decide([cursor], "restore", "detail view")
        st.rerun()
    # A fixed help text: a widget whose parameters change between runs can lose the click that was sent for it.
    if n5.button("Undo", icon=":material/undo:", shortcut="U", key="cur_undo",
                 help="Undo your latest decision or batch; each press steps one further back through your own "
                      "decisions (shortcut U)"):
        undo()
        st.rerun()
    n6.markdown(f"**{cursor}** ({index + 1} of {len(ids)}) - {row['label']}, {row['layout']}"
                + (" - :red[DISCARDED]" if row["discarded"] else "") + (f" - :orange[suspect: {row['why']}]"
                                                                       if row["suspect"] else ""))
    if "cur_msg" in state:
        message, icon = state.pop("cur_msg")
        st.toast(message, icon=icon)
    if "cur_warn" in state:
        st.warning(state.pop("cur_warn"), icon=":material/warning:")

    sample = Sample(folder, json.loads((folder / f"{cursor}.json").read_text()))
    photo, truth = sample.image(), sample.mask()
    pred_path = scores.pred_mask_path(folder, cursor)
    pred = cv2.imread(str(pred_path), cv2.IMREAD_UNCHANGED) if pred_path.is_file() else None

    d1, d2, d4 = st.columns([2, 1, 1])
    with d1:
        boxes = st.toggle("Lead boxes", key="cur_boxes", value=True)
        st.image(overlay(photo, np.zeros_like(truth), sample.leads) if boxes else photo, output_format="JPEG",
                 caption="Photo")
    with d2:
        st.image(class_map_colors(truth), caption="Truth mask (blue x-lines, orange y-lines, red curve)")
        if pred is not None:
            st.image(class_map_colors(pred), caption=f"Predicted mask - curve IoU {row['seg_iou']:.2f}")
        else:
            st.info("No predicted mask: score the dataset with the segmentation model installed.")
    with d4:
        from ecgcore.classify.classimage import classification_image, lead_crops

        st.image(classification_image(lead_crops(pred if pred is not None else truth, sample.leads)),
                 caption="Classification input (prototype-style, from the "
                         + ("predicted" if pred is not None else "truth") + " mask)")

    dig = scores.load_digitized(folder, cursor)
    if dig is not None:
        try:
            from ecgcore.train.evaluate import sample_source_record

            record = sample_source_record(sample)
            reference, reference_fs = record.signal, record.fs
        except (ValueError, OSError, KeyError) as exc:  # the source may be gone (moved PTB-XL): show the signal alone
            reference, reference_fs = None, None
            st.caption(f"Source record unavailable: {exc}")
        st.plotly_chart(ecg_paper_figure(dig["signal"], dig["fs"], reference=reference, reference_fs=reference_fs,
                                         title=f"Digitised (black) over the source signal (blue) - SNR "
                                               f"{row['snr_db']:.1f} dB, from the {row['snr_from']}"),
                        key="cur_signal", config={"displayModeBar": False})
    elif isinstance(row.get("error"), str) and row["error"]:
        st.warning(row["error"])
    else:
        st.caption("No digitised signal yet: score the dataset (needs the digitisation module).")


st.subheader("Sample")
if ids:
    detail_view(ids, table)
else:
    st.info("No sample matches the filters.")

st.subheader("Classes before and after curation")
st.plotly_chart(class_counts_figure(before, after), key="cur_counts", config={"displayModeBar": False})
with st.expander("Decision log (newest first)"):
    st.dataframe(cur.history_table(folder), hide_index=True)
