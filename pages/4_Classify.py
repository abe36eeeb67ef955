"""Classify: a photo of a paper ECG -> segmentation -> digitised 12 leads -> probabilities, with honest limits."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import streamlit as st

st.set_page_config(page_title="Classify - ECG Lab", page_icon=":material/stethoscope:", layout="wide")

from ecgcore.app.home import flatten_numbers  # noqa: E402
from ecgcore.app.plots import LABEL_TITLES, ecg_paper_figure, lead_windows, probabilities_figure  # noqa: E402
from ecgcore.app.report import (  # noqa: E402
    BOX_COLUMNS,
    annotate_photo,
    boxes_to_rows,
    report,
    rows_to_boxes,
    signal_csv,
    verdict_lines,
    wfdb_zip,
)
from ecgcore.errors import DigitizationError, ModelError, UserError  # noqa: E402
from ecgcore.imageio import UPLOAD_TYPES, ImageError, read_image  # noqa: E402
from ecgcore.layouts import LAYOUT_NAMES  # noqa: E402
from ecgcore.logs import internal_error  # noqa: E402
from ecgcore.read.analyze import DISCLAIMER, explain_analysis  # noqa: E402
from ecgcore.read.digitize import wfdb_record_name  # noqa: E402
from ecgcore.read.isolate import WorkerError, analyze_with_weights, reread_with_weights  # noqa: E402
from ecgcore.workspace import UPLOADS, WorkspaceError, list_datasets, safe_join, subdir, workspace_root  # noqa: E402
from pages import active_weights, analysis_worker, load_active_models, plain, save_asking_first, shared_images_dir  # noqa: E402

state = st.session_state
st.title("Classify an ECG photo")
st.warning(DISCLAIMER, icon=":material/warning:")
with st.sidebar:
    st.caption(":material/warning: Not medical advice. In an emergency, call your local emergency number. The model "
               "always gives every class some probability.")


# --- input ---------------------------------------------------------------------------------------------------
@st.cache_data(max_entries=4, show_spinner=False)
def synthetic_example(seed: int) -> bytes:
    """A PTB-V photo made now from the built-in synthetic signal (JPEG bytes), so the page works with no data."""
    from ecgcore.signals import synthetic_record
    from ecgcore.synth.photo import synthesize_photo

    return synthesize_photo(synthetic_record(seed), seed=seed).jpeg


source = st.radio("Photo", ["Upload", "Pick a sample"], horizontal=True, key="cls_source")
name, data = None, None
if source == "Upload":
    upload = st.file_uploader("Photo of a paper ECG (JPEG, PNG, BMP, TIFF or WebP)", type=list(UPLOAD_TYPES),
                              key="cls_upload", help="Processed in memory; nothing is stored unless you save it.")
    if upload is not None:
        name, data = upload.name, upload.getvalue()
else:
    options: dict[str, Path | int] = {"synthetic example (made now, seed 11)": 11}
    images = shared_images_dir()
    if images is not None:
        for path in sorted(images.iterdir()):
            if path.suffix.lower().lstrip(".") in UPLOAD_TYPES:
                options[f"real photo: {path.name}"] = path
    for folder in list_datasets(workspace_root())[:10]:
        for path in sorted(folder.glob("[0-9]*.jpg"))[:5]:
            options[f"{folder.name}: {path.name}"] = path
    choice = st.selectbox("Sample", list(options), key="cls_pick")
    value = options[choice]
    name = choice
    data = synthetic_example(value) if isinstance(value, int) else value.read_bytes()

layout = st.selectbox("Layout", ["auto", *LAYOUT_NAMES], key="cls_layout",
                      help="auto detects the printout layout; choose one if detection gets it wrong.")
if data is None:
    st.info("Upload a photo, or pick a sample, to start.")
    st.stop()

try:
    loaded = read_image(data, name=name)
except ImageError as exc:
    st.error(str(exc))
    st.stop()
rgb = loaded.rgb
for note in loaded.notes:
    st.caption(note)
digest = hashlib.sha1(data).hexdigest()[:16]

if source == "Upload":
    with st.expander("Save this upload to the workspace"):
        save_name = st.text_input("File name", value=Path(name).name, key="cls_save_name")
        target = None
        if st.button("Save", key="cls_save", icon=":material/save:"):
            try:
                target = safe_join(subdir(UPLOADS), save_name, what="file name")
            except WorkspaceError as exc:
                st.error(plain(str(exc)))
        # The question about an existing file belongs to this upload: another upload does not inherit it.
        save_asking_first(f"cls_save_pending_{digest}", target, lambda path, data=data: path.write_bytes(data),
                          "file", "the workspace uploads folder")


# --- analysis ------------------------------------------------------------------------------------------------
STEP_TEXT = {"segment": "Segmenting grid and trace", "digitize": "Digitising the 12 leads",
             "classify": "Classifying", "explain": "Explaining (attribution)", "done": "Done"}


def run_analysis(rgb: np.ndarray, layout: str):
    """analyze_photo, in the server's analysis worker process, with a progress bar; returns (analysis, None) or
    (None, (kind, sentence))."""
    bar = st.progress(0.0, text="Loading the models...")

    def on_step(step: str, fraction: float) -> None:
        bar.progress(min(1.0, fraction), text=STEP_TEXT.get(step, step))

    try:
        weights = active_weights(workspace_root())  # the Home page's choice, loaded once by the worker
        # In a worker process: an image that makes the reader run away in memory or time costs that worker, never
        # the server. The attribution costs more than the verdict: it is computed when asked for (explained).
        analysis = analysis_worker().call(analyze_with_weights, rgb, layout, weights, on_progress=on_step)
    except WorkerError as exc:
        return None, ("limit", str(exc))
    except ModelError as exc:
        return None, ("missing", str(exc))
    except DigitizationError as exc:
        return None, ("no-ecg", str(exc))
    except Exception as exc:  # a bug, not the photo: logged with its traceback, and said so
        return None, ("error", internal_error(exc, "the analysis"))
    finally:
        bar.empty()
    return analysis, None


def explained(analysis):
    """The same analysis with the attributions (signal model per lead and time; image model on the photo)."""
    _, classifiers = load_active_models(workspace_root())
    with st.spinner("Computing where the models looked..."):
        return explain_analysis(rgb, analysis, layout, classifiers)


key = (digest, layout)
if state.get("cls_key") != key:
    state["cls_key"] = key
    state["cls_result"] = run_analysis(rgb, layout)
    state.pop("cls_override", None)
analysis, problem = state["cls_result"]
if problem is not None and problem[0] not in ("no-ecg", "limit"):
    state.pop("cls_key")  # models may be installed, or the glitch gone, by the next run: try again then

if problem is not None:
    kind, sentence = problem
    left, right = st.columns([2, 1])
    left.image(rgb, caption=name, output_format="JPEG")
    with right:
        if kind == "missing":
            st.error(f"Model missing: {sentence}", icon=":material/extension:")
            st.markdown("No verdict is shown without the models. The Home page lists which weights are installed; "
                        "the Jobs page trains them (`train_segmentation`, `train_classifier`), or restore the "
                        "shipped `weights/*.safetensors`.")
        elif kind == "no-ecg":
            st.warning(f"{sentence[:1].upper()}{sentence[1:]}", icon=":material/search:")
            st.markdown("No diagnosis is given for an image in which no ECG could be read. Try a sharper, "
                        "straighter photo that shows the whole printout, or choose the layout by hand.")
        else:
            st.error(f"{sentence[:1].upper()}{sentence[1:]}", icon=":material/error:")
            st.markdown("No verdict is shown. Try another photo; if it keeps happening, the Jobs page's logs and "
                        "`python -m pipelines.classify IMAGE` show more.")
    if st.button("Try again", key="cls_retry"):
        state.pop("cls_key", None)
        st.rerun()
    st.stop()

if (state.get("cls_attr") or state.get("cls_show_heat")) and analysis.signal_attribution is None:
    analysis = explained(analysis)
    state["cls_result"] = (analysis, None)
# The result shown: the automatic analysis, or its re-reading with the boxes a person corrected. Both are Analyses
# made by analyze_photo, so both carry the Reading that decides how the verdict is presented.
override = state.get("cls_override")
shown = override if override is not None else analysis
dig = shown.digitized
probabilities, prediction, reading = shown.probabilities, shown.prediction, shown.reading
windows = lead_windows(dig.leads)


def show_probabilities(research_only: bool) -> None:
    """The combined probabilities, each model's probabilities for this photo and the models' validation metrics."""
    st.plotly_chart(probabilities_figure(probabilities), key="cls_probs", config={"displayModeBar": False})
    if research_only:
        st.caption("Research output only, not a result: what the signal model gives for a reading that failed the "
                   "checks above. It always sums to 100%, also for a misread ECG or a photo unlike the training data.")
    else:
        st.caption("Calibrated probabilities of the signal model (the stronger one, see its model card). "
                   "They always sum to 100%, also for photos unlike the training data.")
    per_model, metrics = [], []
    for model, info in shown.models.items():
        if not isinstance(info, dict):
            continue
        probs = shown.model_probabilities.get(model, {})
        per_model.append({"model": model, **{LABEL_TITLES[k]: f"{v:.0%}" for k, v in probs.items()}})
        metrics.append({"model": model,
                        **{k: v for k, v in info.items() if isinstance(v, (int, float, str)) and k != "probabilities"},
                        **{k: round(v, 3) for k, v in flatten_numbers(info.get("test_metrics", {})).items()}})
    if per_model:
        st.markdown("**Each model's probabilities for this photo**" + (" (research output)" if research_only else ""))
        st.dataframe(per_model, hide_index=True)
        st.markdown("**The models' validation metrics** (from their model cards: measured on held-out test data, "
                    "not on this photo)")
        st.dataframe(metrics, hide_index=True)


# --- verdict -------------------------------------------------------------------------------------------------
headline, details = verdict_lines(reading, prediction)
if shown.reliable:
    v1, v2 = st.columns([1, 1.4])
    with v1:
        st.subheader(headline)
        st.markdown(f":material/check_circle: {details[0]}", help="Every ECG machine records I and II and computes III, aVR, aVL and aVF "
                    "from them, so on a correct reading I + III = II and aVR + aVL + aVF = 0. True recordings agree "
                    "to 15-24 dB; a reading is called reliable only when both laws hold to at least 5 dB.")
        for note in shown.notes:
            st.caption(f"Note: {note}")
    with v2:
        show_probabilities(research_only=False)
else:
    v1, v2 = st.columns([1.2, 1])
    with v1:
        st.subheader(headline)
        # A warning, not an error: the app worked; it is the photo's reading that cannot be trusted.
        st.warning("No verdict is given: the digitised leads fail checks that every correct reading of a real ECG "
                 "passes, so whatever the model says about them is not a result.\n\n"
                 + "\n".join(f"- {line}" for line in details), icon=":material/search:")
        st.markdown("**What to look at:** the photo on the right shows where each lead was read. Check that every "
                    "box holds its own lead's trace and that the leads below look like the printout. Choose the "
                    "layout by hand above, or correct the lead boxes further down, and the reading is checked again.")
        for note in shown.notes:
            st.caption(f"Note: {note}")
    with v2:
        st.image(annotate_photo(rgb, shown.class_map, dig.leads, dig.rotation_deg), output_format="JPEG",
                 caption="Where each lead was read (boxes), with the segmented grid and trace")
    with st.expander("Research output only, not a result: the model's probabilities for this unreliable reading"):
        show_probabilities(research_only=True)
st.caption("Timings: " + ", ".join(f"{k} {v:.0f} ms" for k, v in shown.timings_ms.items()))

# --- photo with detections, and box correction ---------------------------------------------------------------
st.subheader("What was found on the photo")
p1, p2 = st.columns([1.6, 1])
with p2:
    show_seg = st.toggle("Segmentation (grid and trace)", value=True, key="cls_show_seg")
    show_heat = st.toggle("What the image model looked at", value=False, key="cls_show_heat",
                          disabled=analysis.classification_image is None,
                          help=None if analysis.classification_image is not None else "the image model is not installed")
    st.markdown(f"Layout **{dig.layout}**, rotation **{dig.rotation_deg:+.1f} deg**, "
                f"**{dig.px_per_mm:.2f} px/mm**, {len(dig.leads)} lead boxes.")
    with st.expander("Correct the lead boxes"):
        st.caption("Edit a box's centre, size or angle (pixels of the photo) or its seconds, then re-digitise.")
        edited = st.data_editor(boxes_to_rows(dig.leads), num_rows="dynamic", key=f"cls_boxes_{digest}",
                                column_order=BOX_COLUMNS, hide_index=True)
        if st.button("Re-digitise with these boxes", key="cls_redigitize"):
            try:
                boxes = rows_to_boxes(edited)
                # The same path as the automatic reading (known class map, the drawn boxes), in the worker too (boxes
                # are typed by hand): the re-read gets its own Reading and the same honest presentation.
                weights = active_weights(workspace_root())
                state["cls_override"] = analysis_worker().call(
                    reread_with_weights, rgb, analysis.class_map, analysis.curve_margin, analysis.digitized.layout,
                    boxes, int(dig.fs), weights)
                st.rerun()
            except (UserError, WorkerError) as exc:  # a box that cannot be read, weights gone, a limit reached
                sentence = str(exc)
                st.error(f"{sentence[:1].upper()}{sentence[1:]}")
            except Exception as exc:  # a bug, not the boxes
                sentence = internal_error(exc, "the re-reading")
                st.error(f"{sentence[:1].upper()}{sentence[1:]}")
        if override is not None and st.button("Back to the automatic boxes", key="cls_reset_boxes"):
            state.pop("cls_override", None)
            st.rerun()
with p1:
    annotated = annotate_photo(rgb, analysis.class_map if show_seg else None, dig.leads, dig.rotation_deg,
                               analysis.image_attribution if show_heat else None)
    st.image(annotated, output_format="JPEG", caption=f"{name} - {rgb.shape[1]}x{rgb.shape[0]} px")

# --- the digitised leads -----------------------------------------------------------------------------------------
st.subheader("Digitised 12 leads")
show_attr = st.toggle("Shade where the signal model looked (attribution for MI)", value=False, key="cls_attr",
                      disabled=override is not None,
                      help="Integrated gradients towards MI; not available for hand-corrected boxes.")
st.plotly_chart(ecg_paper_figure(dig.signal, dig.fs, windows=windows,
                                 attribution=analysis.signal_attribution if show_attr and override is None else None,
                                 derived=dig.quality.get("derived")),
                key="cls_leads", config={"displayModeBar": False})
st.caption("Only what was read is drawn in black: grey stretches of a lead's window were not read, and a lead read "
           "along less than half of its window is named so in red. A limb lead not read where the other two of its "
           "law were is derived from them, as the electrocardiograph computes it, and drawn dotted in purple.")
if analysis.classification_image is not None:
    with st.expander("The image model's input (prototype-style segmentation image)"):
        st.image(analysis.classification_image, width=420)

# --- downloads ------------------------------------------------------------------------------------------------
st.subheader("Downloads")
# Every download is named as the WFDB record inside the zip: a valid record name is a valid file name too.
stem = wfdb_record_name(Path(name).stem if name else "")
d1, d2, d3, d4 = st.columns(4)
d1.download_button("Signal (CSV)", lambda: signal_csv(dig.signal, dig.fs), file_name=f"{stem}.csv", mime="text/csv",
                   key="cls_dl_csv")
d2.download_button("Record (WFDB, zip)", lambda: wfdb_zip(dig, stem), file_name=f"{stem}_wfdb.zip",
                   mime="application/zip", key="cls_dl_wfdb")
d3.download_button("Report (PNG)", lambda: report(annotated, dig.signal, dig.fs, probabilities, prediction, DISCLAIMER,
                                                  shown.models, "png", f"ECG Lab report - {name}", reading, windows),
                   file_name=f"{stem}_report.png", mime="image/png", key="cls_dl_png")
d4.download_button("Report (PDF)", lambda: report(annotated, dig.signal, dig.fs, probabilities, prediction, DISCLAIMER,
                                                  shown.models, "pdf", f"ECG Lab report - {name}", reading, windows),
                   file_name=f"{stem}_report.pdf", mime="application/pdf", key="cls_dl_pdf")
st.caption(DISCLAIMER)
