"""Augmentation Studio: tune the PTB-V photo-synthesis distributions with sliders and see the result at once."""

from __future__ import annotations

import json
import time

import streamlit as st

PAGE_START = time.perf_counter()
st.set_page_config(page_title="Augmentation Studio - ECG Lab", page_icon=":material/tune:", layout="wide")

from ecgcore.app import studio  # noqa: E402
from ecgcore.app.plots import pdf_figure, timings_figure  # noqa: E402
from ecgcore.constants import SEED_MAX  # noqa: E402
from ecgcore.errors import DataSourceError  # noqa: E402
from ecgcore.layouts import LAYOUT_NAMES  # noqa: E402
from ecgcore.synth.backgrounds import list_background_photos  # noqa: E402
from ecgcore.synth.params import (  # noqa: E402
    PARAMS,
    SCHEMA,
    SHIPPED_PRESETS_DIR,
    STAGE_TITLES,
    STAGES,
    Preset,
    PresetError,
)
from ecgcore.workspace import BACKGROUNDS, PRESETS, WorkspaceError, safe_join, subdir, unique_path  # noqa: E402
from pages import PAGE_JOBS, plain, ptbxl_or_none, ptbxl_record, save_asking_first, synthetic  # noqa: E402

REBUDGET_MS = 250.0
state = st.session_state

# --- widget state ----------------------------------------------------------------------------------------
# Streamlit forgets the state of widgets that were not drawn in a run (e.g. while the user visits another page),
# so the preset is also kept under a plain key and the widgets are restored from it.
if "studio_preset" not in state:
    state["studio_preset"] = studio.preset_json(Preset())
for k, v in studio.state_from_preset(Preset.from_json(state["studio_preset"])).items():
    state.setdefault(k, v)
state.setdefault("studio_seed", 1)
state.setdefault("studio_layout", "seed-3x4")
state.setdefault("studio_k", 6)


def apply_preset(preset: Preset) -> None:
    """Show ``preset`` in every widget (used by load and reset; runs as a callback, before widgets are drawn)."""
    for name in PARAMS:
        for part in ("kind", "mu", "sd", "a", "b", "range", "value", "options", "weights"):
            state.pop(studio.key(name, part), None)
    state.update(studio.state_from_preset(preset))
    state["studio_preset"] = studio.preset_json(preset)


def on_kind_change(name: str) -> None:
    """Switching a parameter's distribution kind starts from arguments centred where it was."""
    param = PARAMS[name]
    previous = Preset.from_json(state["studio_preset"]).dists[name]
    for k, v in studio.default_args(param, state[studio.key(name, "kind")], previous).items():
        state[k] = v


def new_seed() -> None:
    """The next seed; after the largest one it starts again at 0, and says so."""
    seed = int(state["studio_seed"])
    state["studio_seed"] = seed + 1 if seed < SEED_MAX else 0
    if seed >= SEED_MAX:
        state["studio_seed_note"] = f"{SEED_MAX} is the largest seed, so New seed started again at 0."


# --- sidebar: every schema parameter, grouped by stage ------------------------------------------------------
with st.sidebar:
    st.header("Distributions")
    st.caption("Each parameter is drawn per photo from its distribution. The preview uses one draw (the seed); "
               "the grid shows several.")
    for stage in STAGES:
        with st.expander(STAGE_TITLES[stage], expanded=stage in ("geometry",)):
            for param in (p for p in SCHEMA if p.stage == stage):
                name = param.name
                label = f"{name} ({param.unit})" if param.unit else name
                if param.categorical:
                    st.multiselect(label, param.options, key=studio.key(name, "options"), help=param.help)
                    continue
                kind = st.selectbox(label, studio.NUMERIC_KINDS, key=studio.key(name, "kind"), help=param.help,
                                    on_change=on_kind_change, args=(name,))
                if kind == "normal":
                    parts = (("mu", "mean"), ("sd", "standard deviation"))
                elif kind == "beta":
                    parts = (("a", "beta a"), ("b", "beta b"))
                elif kind == "uniform":
                    parts = (("range", "range"),)
                else:
                    parts = (("value", "value"),)
                for part, text in parts:
                    spec = studio.slider_spec(param, part)
                    st.slider(text, min_value=spec.low, max_value=spec.high, step=spec.step, format=spec.fmt,
                              key=studio.key(name, part))

try:
    preset = studio.preset_from_state(state)
    preset_error = ""
except PresetError as exc:
    preset = Preset.from_json(state["studio_preset"])
    preset_error = str(exc)
state["studio_preset"] = studio.preset_json(preset)
background_files, background_note = None, ""
if studio.uses_folder_background(preset):
    backgrounds_dir = subdir(BACKGROUNDS)
    try:
        background_files = list_background_photos(backgrounds_dir)
    except DataSourceError as exc:
        # Without photos the preview leaves 'folder' out rather than failing; the saved preset keeps it.
        background_note = f"{exc} Put photos of tables or walls in {backgrounds_dir} to preview 'folder'."
        options = [o for o in state.get(studio.key("background", "options"), []) if o != "folder"] or ["wood"]
        preset = studio.preset_from_state({**state, studio.key("background", "options"): options})

# --- main area ----------------------------------------------------------------------------------------------
st.title("Augmentation Studio")
if preset_error:
    st.error(f"That setting is not valid, so the last valid one is shown: {preset_error}")

db, ptbxl_note = ptbxl_or_none()
c_source, c_record, c_layout, c_seed, c_view = st.columns([1.1, 1.4, 1.0, 1.0, 1.2])
with c_source:
    sources = ["Synthetic signal", "PTB-XL record"] if db is not None else ["Synthetic signal"]
    source = st.radio("Source record", sources, key="studio_source", horizontal=False)
with c_record:
    if source == "PTB-XL record" and db is not None:
        label_filter = st.selectbox("Class", ["any", "normal", "non_mi_abnormality", "mi"], key="studio_label")
        ids = db.ids(label=None if label_filter == "any" else label_filter)
        ecg_id = st.selectbox("ecg_id", ids, key="studio_ecg_id")
        record = ptbxl_record(str(db.root), int(ecg_id))
        st.caption(f"{record.label} - scp_codes {record.source['scp_codes']}")
    else:
        signal_seed = st.number_input("Synthetic signal seed", 0, 10_000, 7, key="studio_signal_seed")
        record = synthetic(int(signal_seed))
        st.caption("Built-in synthetic 12-lead signal (label: synthetic, never a diagnosis). " + (ptbxl_note or ""))
with c_layout:
    layout = st.selectbox("Layout", LAYOUT_NAMES, key="studio_layout")
    k_draws = st.slider("Grid draws (K)", 2, 12, key="studio_k")
with c_seed:
    seed = st.number_input("Seed", 0, SEED_MAX, key="studio_seed")
    st.button("New seed", on_click=new_seed, icon=":material/casino:", shortcut="N", help="Next seed (shortcut N)",
              key="studio_new_seed")
    if "studio_seed_note" in state:
        st.caption(state.pop("studio_seed_note"))
with c_view:
    show_mask = st.toggle("Mask overlay", key="studio_mask")
    show_boxes = st.toggle("Lead boxes", key="studio_boxes")

if background_note:
    st.warning(background_note)
preview = studio.render_preview(record, preset, int(seed), layout, show_mask, show_boxes,
                                background_files=background_files)
photo = preview.photo

col_img, col_info = st.columns([3, 1.25])
with col_img:
    st.image(preview.picture, output_format="JPEG",
             caption=f"Preview {photo.image.shape[1]}x{photo.image.shape[0]} px, seed {seed}, {layout}; "
                     f"rotation {photo.angle_deg:+.2f} deg, {photo.px_per_mm:.2f} px/mm")
with col_info:
    ok = preview.rerender_ms <= REBUDGET_MS
    st.metric("Re-render (synthesis + overlay)", f"{preview.rerender_ms:.0f} ms",
              delta=f"budget {REBUDGET_MS:.0f} ms", delta_color="normal" if ok else "inverse", delta_arrow="off")
    page_metric = st.empty()
    st.plotly_chart(timings_figure(photo.timings_ms), key="studio_timings", config={"displayModeBar": False})
    if show_mask:
        st.caption("Mask colours: blue = major grid lines x = const, orange = y = const, red = ECG curve.")
    if show_boxes:
        st.caption("Boxes: dark green = lead cells, green = lead labels, purple = text, blue = lead-change marks, "
                   "orange = calibration pulses.")

tab_pdf, tab_grid, tab_diff, tab_presets = st.tabs(["Distributions", "Grid of draws", "Diff vs defaults",
                                                    "Presets and dataset"])
@st.fragment
def distributions_panel(dists: dict, drawn: dict) -> None:
    """PDFs of one stage's parameters; choosing another stage redraws only this panel."""
    stage = st.segmented_control("Stage", STAGES, format_func=lambda s: STAGE_TITLES[s], key="studio_pdf_stage",
                                 default="geometry", required=True)
    names = [n for n in studio.stage_params(stage or "geometry") if not PARAMS[n].categorical]
    if names:
        st.plotly_chart(pdf_figure(names, dists, drawn), key="studio_pdfs", config={"displayModeBar": False})
        st.caption("Blue: the distribution each photo draws from. Red: the value drawn for this preview.")
    else:
        shown = ", ".join(f"{n} = {drawn[n]!r}" for n in studio.stage_params(stage or "geometry"))
        st.info(f"This stage has only categorical parameters: {shown}.")


@st.fragment
def grid_panel(record, preset: Preset, seed: int, layout: str, k: int, background_files) -> None:
    """K draws from the current distributions; drawing them reruns only this panel, not the whole page."""
    grid_key = json.dumps([studio.preset_json(preset), seed, layout, k, record.source], sort_keys=True, default=str)
    auto = st.toggle("Redraw on every change", key="studio_grid_auto",
                     help="Off: the grid is redrawn only with the button, so slider moves stay fast.")
    if st.button("Draw the grid", icon=":material/grid_view:", key="studio_draw") or (auto and state.get("studio_grid_key") != grid_key):
        started = time.perf_counter()
        photos = studio.draw_grid(record, preset, seed, layout, k, background_files=background_files)
        state["studio_grid"] = [(p.image, p.params) for p in photos]
        state["studio_grid_key"] = grid_key
        state["studio_grid_ms"] = (time.perf_counter() - started) * 1000
    if not state.get("studio_grid"):
        st.caption("Press 'Draw the grid' to see K photos drawn from the current distributions.")
        return
    if state.get("studio_grid_key") != grid_key:
        st.caption("Drawn from earlier settings: press 'Draw the grid' to update.")
    else:
        st.caption(f"{len(state['studio_grid'])} draws in {state['studio_grid_ms']:.0f} ms (seeds {seed + 1}.."
                   f"{seed + len(state['studio_grid'])}).")
    cols = st.columns(3)
    for i, (image, params) in enumerate(state["studio_grid"]):
        cols[i % 3].image(image, output_format="JPEG",
                          caption=f"rot {params['rotation_angle']:+.1f} deg, shadow {params['shadow_alpha']:.2f}, "
                                  f"noise sd {params['white_noise_sd']:.0f}, {params['background']}"
                                  + (" (scan)" if params.get("capture") == "scan" else ""))


with tab_pdf:
    distributions_panel(preset.dists, photo.params)
with tab_grid:
    grid_panel(record, preset, int(seed), layout, int(k_draws), background_files)

with tab_diff:
    diff = preset.diff()
    if diff:
        st.dataframe([{"parameter": n, "stage": PARAMS[n].stage, "default": studio.describe(a),
                       "current": studio.describe(b)} for n, (a, b) in diff.items()], hide_index=True)
    else:
        st.success("Every parameter is at its default (the prototype's distributions).")
    st.button("Reset all to defaults", on_click=apply_preset, args=(Preset(),), key="studio_reset")

with tab_presets:
    presets_dir = subdir(PRESETS)
    c_save, c_load = st.columns(2)
    with c_save:
        st.subheader("Save")
        preset_name = st.text_input("Preset name", key="studio_preset_name", placeholder="e.g. harsh-phone")
        target = None
        if st.button("Save preset", icon=":material/save:", key="studio_save"):
            try:
                target = safe_join(presets_dir, preset_name, what="preset name", suffix=".json")
            except WorkspaceError as exc:
                st.error(plain(str(exc)))
        save_asking_first("studio_save_pending", target, lambda path, preset=preset: path.write_text(
            json.dumps(studio.preset_file_json(preset, path.stem), indent=1) + "\n"),
            "preset", "the workspace presets folder")
        st.download_button("Download preset JSON", json.dumps(studio.preset_file_json(preset, preset_name or "preset"),
                                                              indent=1), file_name=f"{preset_name or 'preset'}.json",
                           mime="application/json", key="studio_download")
    with c_load:
        st.subheader("Load")
        saved = sorted(p.name for p in presets_dir.glob("*.json"))
        # the presets shipped with the code (harsh, mixed) can be loaded and tuned too
        shipped = {f"shipped: {p.name}": p for p in sorted(SHIPPED_PRESETS_DIR.glob("*.json"))}
        chosen = st.selectbox("Saved presets", [*saved, *shipped], index=None, key="studio_saved",
                              placeholder="choose a preset")
        uploaded = st.file_uploader("...or upload a preset JSON", type=["json"], key="studio_upload")

        def load(source_name: str, text: str | bytes) -> None:
            try:
                apply_preset(Preset.from_text(text, "the file"))
                state["studio_load_msg"] = ("success", f"Loaded {source_name}.")
            except PresetError as exc:
                state["studio_load_msg"] = ("error", f"{source_name} was not loaded: {exc}")

        if chosen:
            st.button("Load saved preset", key="studio_load_saved", on_click=lambda: load(
                chosen, (shipped[chosen] if chosen in shipped else safe_join(presets_dir, chosen)).read_bytes()))
        if uploaded is not None:
            st.button("Load uploaded preset", key="studio_load_upload", on_click=lambda: load(
                uploaded.name, uploaded.getvalue()))
        if "studio_load_msg" in state:
            kind, text = state.pop("studio_load_msg")
            (st.success if kind == "success" else st.error)(text)
    st.divider()
    st.subheader("Generate a dataset with this preset")
    ds_name = st.text_input("Dataset name", key="studio_ds_name", placeholder="e.g. harsh-1000")
    if st.button("Continue in Jobs", icon=":material/arrow_forward:", type="primary", key="studio_to_jobs"):
        try:
            name = (ds_name or "").strip()
            path = safe_join(presets_dir, name, what="dataset name", suffix=".json")
            text = json.dumps(studio.preset_file_json(preset, name), indent=1) + "\n"
            if path.exists() and path.read_text(errors="replace") != text:
                path = unique_path(path)  # a preset of that name holds other settings: keep both
            path.write_text(text)
            state["jobs_prefill"] = studio.JobsPrefill(out=name, preset=str(path), layout=layout, seed=int(seed),
                                                       backgrounds=background_files is not None)
            st.switch_page(PAGE_JOBS)
        except WorkspaceError as exc:
            st.error(plain(str(exc)))

page_ms = (time.perf_counter() - PAGE_START) * 1000
page_metric.metric("Whole page run", f"{page_ms:.0f} ms", help="Server time of this run, all widgets and plots.")
