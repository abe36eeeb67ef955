"""Streamlit helpers shared by the pages (Streamlit does not list ``__init__.py`` as a page).

Heavy objects are loaded once per server process: PTB-XL metadata (``st.cache_resource``) and the models
(ecgcore.read.models, the one cache the CLIs and the analysis worker use too). Everything else lives in ``ecgcore``;
the pages stay thin.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from ecgcore.signals import DataSourceError, EcgRecord, PtbXl, default_ptbxl_dir, synthetic_record
from ecgcore.workspace import unique_path

PAGE_STUDIO = "pages/1_Augmentation_Studio.py"
PAGE_JOBS = "pages/2_Jobs.py"
PAGE_CURATION = "pages/3_Curation.py"
PAGE_CLASSIFY = "pages/4_Classify.py"


# CommonMark lets a backslash escape any ASCII punctuation character, and shows the character itself.
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def plain(sentence: str) -> str:
    """``sentence`` as literal text for st.error, st.warning, st.success: their text is Markdown, which would drop
    a backslash and read '*', '_', '[' or '$' in a name the user typed as formatting."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", sentence)


def save_asking_first(key: str, target: Path | None, write: Callable[[Path], None], what: str, where: str) -> None:
    """Save with ``write(path)`` at ``target`` (the path just asked for by a Save button; None on other runs), but
    never over an existing file unasked: then the page asks (under ``key``) to replace it, keep both (the new one
    under the next free name, ``NAME-2.EXT``) or cancel, and the question stays until it is answered. ``what``
    names the thing ('preset'), ``where`` the folder ('the workspace presets folder')."""
    state = st.session_state
    if target is not None:
        state.pop(key, None)
        if target.exists() or target.is_symlink():
            state[key] = str(target)
        else:
            _save(key, target, write, where)
    if f"{key}_done" in state:
        kind, text = state.pop(f"{key}_done")
        (st.success if kind == "success" else st.error)(plain(text))
    pending = state.get(key)
    if pending is None:
        return
    path = Path(pending)
    other = unique_path(path)
    st.warning(plain(f"A {what} named '{path.name}' is already in {where}: replace it, or keep both?"))
    c1, c2, c3 = st.columns(3)
    # Callbacks: they run before the page is drawn again, so the question is gone when the answer is shown.
    c1.button("Replace it", key=f"{key}_replace", on_click=_save, args=(key, path, write, where))
    c2.button(f"Keep both: save as {other.name}", key=f"{key}_keep", on_click=_save,
              args=(key, path, write, where, True))
    c3.button("Cancel", key=f"{key}_cancel", on_click=state.pop, args=(key, None))


def _save(key: str, path: Path, write: Callable[[Path], None], where: str, keep_both: bool = False) -> None:
    st.session_state.pop(key, None)
    if keep_both:  # the free name now, should another session have taken the one offered
        path = unique_path(path)
    try:
        write(path)
        st.session_state[f"{key}_done"] = ("success", f"Saved {path.name} in {where}.")
    except OSError as exc:
        st.session_state[f"{key}_done"] = ("error", f"{path.name} could not be saved ({exc.strerror or exc}).")


@st.cache_resource(show_spinner="Reading PTB-XL metadata...")
def ptbxl(root: str) -> PtbXl:
    """PTB-XL with its metadata parsed once per server process."""
    db = PtbXl(root)
    _ = db.metadata
    return db


def ptbxl_or_none() -> tuple[PtbXl | None, str]:
    """The configured PTB-XL (``$ECGLAB_PTBXL``), or None and a sentence saying why not."""
    root = default_ptbxl_dir()
    if root is None:
        return None, "PTB-XL is not configured: set ECGLAB_PTBXL to a PTB-XL 1.0.3 folder (./download_datasets.sh fetches it)."
    try:
        return ptbxl(str(root)), ""
    except DataSourceError as exc:
        return None, str(exc)


@st.cache_data(max_entries=64, show_spinner=False)
def ptbxl_record(root: str, ecg_id: int, fs: int = 100) -> EcgRecord:
    return ptbxl(root).record(int(ecg_id), fs=fs)


@st.cache_data(max_entries=64, show_spinner=False)
def synthetic(seed: int, fs: int = 100) -> EcgRecord:
    return synthetic_record(int(seed), fs=fs)


def shared_images_dir() -> Path | None:
    """The folder of real ECG photos offered as samples ($ECGLAB_REAL_IMAGES, else ../shared/data/real-ecg-images)."""
    import os

    value = os.environ.get("ECGLAB_REAL_IMAGES")
    folder = Path(value) if value else Path(__file__).resolve().parents[2] / "shared" / "data" / "real-ecg-images"
    return folder if folder.is_dir() else None


def active_weights(workspace: Path) -> tuple[str, str, str | None]:
    """The weight files chosen on the Home page (the shipped ones by default): (segmentation, signal, image)."""
    from ecgcore.app.home import read_active
    from ecgcore.classify.classifiers import DEFAULT_SIGNAL_WEIGHTS
    from ecgcore.read.segmentation import DEFAULT_SEGMENTATION_WEIGHTS

    active = read_active(workspace)
    return (active["segmentation"] or str(DEFAULT_SEGMENTATION_WEIGHTS), active["signal"] or str(DEFAULT_SIGNAL_WEIGHTS),
            active["image"])


def load_active_models(workspace: Path):
    """The models chosen on the Home page (the shipped ones by default): (segmenter, classifiers), from the one
    model cache of the process (ecgcore.read.models: a replaced weights file is loaded again, a failed load is
    not kept). Raises ModelError (weights missing or corrupt)."""
    from ecgcore.read import models

    with st.spinner("Loading the models..."):
        return models.load(*active_weights(workspace))


@st.cache_resource(show_spinner=False)
def analysis_worker():
    """The server's one analysis worker process (ecgcore.read.isolate.Worker): whatever an image makes the reader do
    (memory, time, a crash), the server and every other session survive it. It loads the Home page's models when
    it starts and keeps them; a worker that fails is replaced on the next call."""
    import functools

    from ecgcore.read.isolate import Worker, load_models
    from ecgcore.workspace import workspace_root

    return Worker(warmup=functools.partial(load_models, active_weights(workspace_root())))
