"""ECG Lab: the app's entry point and its Home page (which data and models this installation has, where to go next).

Run with ``streamlit run app.py`` (or ``make run``). The other pages live in pages/, one file each.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

st.set_page_config(page_title="ECG Lab", page_icon=":material/ecg_heart:", layout="wide")

from ecgcore.app.home import (  # noqa: E402
    MODEL_KINDS,
    dataset_summary,
    model_candidates,
    model_cards,
    read_active,
    training_runs,
    write_active,
)
from ecgcore.jobs import JobRunner  # noqa: E402
from ecgcore.workspace import RUNS, WEIGHTS_DIR, list_datasets, subdir, workspace_root  # noqa: E402
from pages import PAGE_CLASSIFY, PAGE_CURATION, PAGE_JOBS, PAGE_STUDIO, ptbxl_or_none, shared_images_dir  # noqa: E402


def home() -> None:
    """The Home page: data sources, workspace datasets, models with their metrics, quick links."""
    st.title("ECG Lab")
    st.markdown("Photographed paper ECGs -> segmentation -> digitised 12-lead signal -> myocardial-infarction "
                "assessment. Synthesise training photos (PTB-V), train and curate, and demo the classifier.")

    c1, c2, c3, c4 = st.columns(4)
    c1.page_link(PAGE_STUDIO, label="Augmentation Studio", icon=":material/tune:", help="Tune the photo synthesis with sliders")
    c2.page_link(PAGE_JOBS, label="Jobs", icon=":material/settings:", help="Generate datasets, train and evaluate in the background")
    c3.page_link(PAGE_CURATION, label="Curation", icon=":material/cleaning_services:", help="Find and discard distorted samples")
    c4.page_link(PAGE_CLASSIFY, label="Classify", icon=":material/stethoscope:", help="Upload an ECG photo and see what the model thinks")

    root = workspace_root()
    st.header("Data sources")
    db, note = ptbxl_or_none()
    left, right = st.columns(2)
    with left:
        if db is not None:
            st.success(f"PTB-XL: {len(db.metadata):,} records at `{db.root}`.")
            st.dataframe(db.fold_counts(), hide_index=True)
        else:
            st.warning(note)
        st.info("Built-in synthetic 12-lead signals are always available: every page and job runs without downloads. "
                "Their label is 'synthetic', never a diagnosis.")
        images = shared_images_dir()
        if images is not None:
            st.caption(f"Real ECG photos for trying Classify: `{images}` "
                       f"({sum(1 for p in images.iterdir() if p.suffix.lower() in ('.jpg', '.png', '.bmp', '.jpeg'))} images).")
    with right:
        with st.expander("How to get PTB-XL", expanded=db is None):
            st.markdown(
                "PTB-XL 1.0.3 (21,799 records, about 3 GB) is published by PhysioNet under CC BY 4.0.\n\n"
                "```bash\n./download_datasets.sh            # resumable, checksums verified\n"
                "export ECGLAB_PTBXL=$PWD/data/ptb-xl-1.0.3\nmake run\n```\n"
                "Or by hand: `wget -r -N -c -np https://physionet.org/files/ptb-xl/1.0.3/` and point `ECGLAB_PTBXL` "
                "at the folder holding `ptbxl_database.csv`, `records100/` and `records500/`."
            )
        st.caption(f"Workspace (datasets, runs, jobs, presets): `{root}` - set ECGLAB_WORKSPACE to move it.")

    st.header("Datasets in the workspace")
    datasets = [dataset_summary(p) for p in list_datasets(root)]
    if datasets:
        st.dataframe(datasets, hide_index=True, column_config={"scored": st.column_config.CheckboxColumn("scored")})
    else:
        st.caption("No PTB-V datasets yet: make one from the Augmentation Studio or the Jobs page.")

    st.header("Models")
    cards = model_cards()
    table_columns = ("model", "what", "status", "size_mb", "date", "metrics")
    st.dataframe([{k: c[k] for k in table_columns} for c in cards], hide_index=True, column_config={
        "size_mb": st.column_config.NumberColumn("MB", format="%.1f"),
        "metrics": st.column_config.TextColumn("headline metrics", width="large"),
    })
    for card in (c for c in cards if c["status"] == "ready"):
        with st.expander(f"{card['model']}: model card"):
            metrics = card["headline"]
            for start in range(0, len(metrics), 4):
                for col, (label, value) in zip(st.columns(4), list(metrics.items())[start:start + 4]):
                    col.metric(label, f"{value:.3f}")
            plots = [WEIGHTS_DIR / p for p in card["plots"] if (WEIGHTS_DIR / p).is_file()]
            if plots:
                for col, plot in zip(st.columns(len(plots)), plots):
                    col.image(str(plot), caption=plot.name)
            if card["command"]:
                st.code(card["command"], language="bash", wrap_lines=True)
    missing = [c for c in cards if c["status"] == "missing"]
    if missing:
        st.warning("Missing model weights: " + ", ".join(c["model"] for c in missing) + ". Classify and the curation "
                   "scores say so plainly until they are trained (Jobs page) and exported to weights/:")
        st.code("\n".join(c["command"] for c in missing), language="bash", wrap_lines=True)

    with st.expander("Active models (used by Classify)"):
        st.caption("The shipped weights unless you choose a trained run's weights here; the choice is kept in the "
                   "workspace for every session.")
        active = read_active(root)
        candidates = model_candidates(root)
        choice: dict[str, str | None] = {}
        for col, (kind, stem) in zip(st.columns(3), MODEL_KINDS.items()):
            options = [None] + [str(p) for p in candidates[kind] if p.parent != WEIGHTS_DIR]
            current = active.get(kind) if active.get(kind) in options else None
            choice[kind] = col.selectbox(kind, options, index=options.index(current), key=f"home_active_{kind}",
                                         format_func=lambda p, stem=stem: f"shipped ({stem})" if p is None
                                         else str(Path(p).relative_to(root)) if Path(p).is_relative_to(root) else p)
        if choice != active:
            write_active(root, choice)
            st.success("Saved: Classify now uses " + ", ".join(f"{k} = {Path(v).parent.name if v else 'shipped'}"
                                                                for k, v in choice.items()) + ".")

    runs = training_runs(subdir(RUNS, root))
    if runs:
        with st.expander(f"Training runs in the workspace ({len(runs)})"):
            st.dataframe(runs, hide_index=True)

    active = [j for j in JobRunner(root).list(limit=50) if j.active]
    if active:
        st.info(f"{len(active)} job(s) running: " + ", ".join(f"#{j.id} {j.name}" for j in active))
        st.page_link(PAGE_JOBS, label="Open Jobs", icon=":material/settings:")


navigation = st.navigation([
    st.Page(home, title="Home", icon=":material/home:", default=True),
    st.Page(PAGE_STUDIO, title="Augmentation Studio", icon=":material/tune:", url_path="studio"),
    st.Page(PAGE_JOBS, title="Jobs", icon=":material/settings:", url_path="jobs"),
    st.Page(PAGE_CURATION, title="Curation", icon=":material/cleaning_services:", url_path="curation"),
    st.Page(PAGE_CLASSIFY, title="Classify", icon=":material/stethoscope:", url_path="classify"),
])
navigation.run()
