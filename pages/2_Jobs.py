"""Jobs: launch every pipeline from a form; watch progress, logs and metrics live; cancel, re-run, resume."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import streamlit as st

st.set_page_config(page_title="Jobs - ECG Lab", page_icon=":material/settings:", layout="wide")

from ecgcore.app.plots import metrics_figure  # noqa: E402
from ecgcore.app.studio import JobsPrefill  # noqa: E402
from ecgcore.classify.classimage import CLASS_SET_FILE  # noqa: E402
from ecgcore.constants import GRID_COLORS, MINOR_GRIDS, SEED_MAX  # noqa: E402
from ecgcore.jobs import PIPELINES, Job, JobError, JobRunner, confine_outputs, format_duration  # noqa: E402
from ecgcore.layouts import LAYOUT_NAMES  # noqa: E402
from ecgcore.signals import default_ptbxl_dir  # noqa: E402
from ecgcore.synth.render import PRINT_STYLES, PaperOptions  # noqa: E402
from ecgcore.workspace import (  # noqa: E402  # noqa: E402
    BACKGROUNDS,
    CLASS_SETS,
    CROPS,
    DATASETS,
    EVALUATIONS,
    PRESETS,
    PRESETS_DIR,
    REPO_ROOT,
    RUNS,
    WorkspaceError,
    list_datasets,
    list_folders,
    safe_join,
    subdir,
    workspace_root,
)
from pages import plain  # noqa: E402

LISTED_JOBS = 200  # the newest jobs the table shows
SIZES = ("1600x1200", "1200x900", "800x600", "400x300")
state = st.session_state
root = workspace_root()
runner = JobRunner(root)

st.title("Jobs")
st.caption("Every job is a `python -m pipelines.NAME` process of its own: it keeps running when you close the page or "
           "restart the app, and its log, progress and metrics are kept in the workspace.")

# --- hand-over from the Studio ------------------------------------------------------------------------------
prefill: JobsPrefill | None = state.pop("jobs_prefill", None)
if prefill is not None:
    state["jobs_pipeline"] = prefill.pipeline
    state["gen_name"] = prefill.out
    state["gen_preset"] = prefill.preset
    state["gen_layouts"] = [prefill.layout]
    state["gen_seed"] = prefill.seed
    state["gen_backgrounds"] = prefill.backgrounds
    st.info(f"The Studio's preset is saved as `{Path(prefill.preset).name}`: choose the number of samples and "
            "launch.")


def preset_choices() -> dict[str, str]:
    """Label -> path of the presets a generation job can use: the workspace's and the shipped ones."""
    choices = {"default (the prototype's distributions)": ""}
    for path in sorted(subdir(PRESETS, root).glob("*.json")):
        choices[f"workspace: {path.stem}"] = str(path)
    for path in sorted(PRESETS_DIR.glob("*.json")):
        choices[f"shipped: {path.stem}"] = str(path)
    return choices


def dataset_names() -> list[str]:
    return [p.name for p in list_datasets(root)]


def out_folder(kind: str, name: str, what: str) -> str:
    return str(safe_join(subdir(kind, root), name, what=what))


def extra_args(text: str) -> list[str]:
    try:
        return shlex.split(text or "")
    except ValueError as exc:
        raise WorkspaceError(f"the extra arguments cannot be parsed ({exc}).") from exc


# --- forms: one per pipeline; each returns the argument list --------------------------------------------------
def form_generate() -> list[str]:
    st.text_input("Dataset name", key="gen_name", placeholder="e.g. ptbv-train-1000",
                  help="Created under the workspace's datasets folder; the same name resumes an unfinished dataset.")
    c1, c2, c3 = st.columns(3)
    for k, v in (("gen_n", 100), ("gen_seed", 0), ("gen_workers", 1)):
        state.setdefault(k, v)
    n = c1.number_input("Samples (-n)", 1, 1_000_000, key="gen_n")
    seed = c2.number_input("Seed", 0, SEED_MAX, key="gen_seed")
    workers = c3.number_input("Worker processes", 1, 64, key="gen_workers")
    ptbxl = default_ptbxl_dir()
    sources = ["PTB-XL", "synthetic"] if ptbxl else ["synthetic"]
    source = c1.selectbox("Source", sources, key="gen_source",
                          help="PTB-XL comes from $ECGLAB_PTBXL; synthetic needs no data (labels are 'synthetic').")
    folds = c2.text_input("PTB-XL folds", "1-8", key="gen_folds", help="1-8 train, 9 validation, 10 test")
    size = c3.selectbox("Photo size", SIZES, key="gen_size")
    choices = preset_choices()
    labels = list(choices)
    current = state.get("gen_preset", "")
    index = next((i for i, label in enumerate(labels) if choices[label] == current), 0)
    preset_label = st.selectbox("Preset", labels, index=index, key="gen_preset_label")
    c1, c2 = st.columns([3, 1])
    layouts = c1.multiselect("Layouts (one drawn per sample)", LAYOUT_NAMES, default=state.get("gen_layouts", ["seed-3x4"]),
                             key="gen_layouts_widget")
    print_style = c2.selectbox("Print style", PRINT_STYLES, key="gen_print_style",
                               help="ptb-v: lead labels above the cells, as the prototype printed them. device: labels "
                                    "on the trace and dotted lines where the lead changes, as many electrocardiographs "
                                    "print (neither is ECG curve in the masks).")
    c1, c2, _ = st.columns([1, 1, 2])
    grid_color = c1.selectbox("Grid colour", list(GRID_COLORS), key="gen_grid_color")
    minor_grid = c2.selectbox("Minor grid", MINOR_GRIDS, key="gen_minor_grid",
                              help="thin lines, or a dot at every 1 mm crossing (as some printers and screen exports)")
    args = ["--out", out_folder(DATASETS, state.get("gen_name", ""), "dataset name"), "-n", str(int(n)),
            "--seed", str(int(seed)), "--workers", str(int(workers)), "--size", size,
            "--layout", ",".join(layouts or ["seed-3x4"])]
    for flag, value, default in (("--print-style", print_style, PaperOptions.print_style),
                                 ("--grid-color", grid_color, PaperOptions.grid_color),
                                 ("--minor-grid", minor_grid, PaperOptions.minor_grid)):
        if value != default:
            args += [flag, value]
    backgrounds_dir = subdir(BACKGROUNDS, root)
    state.setdefault("gen_backgrounds", False)
    if st.checkbox(f"Use the background photos in {backgrounds_dir} (for the 'folder' background)",
                   key="gen_backgrounds"):
        args += ["--backgrounds", str(backgrounds_dir)]
    args += ["--ptbxl", str(ptbxl), "--folds", folds] if source == "PTB-XL" else ["--synthetic"]
    if choices[preset_label]:
        args += ["--preset", choices[preset_label]]
    return args


def folder_names(kind: str, marker: str) -> list[str]:
    return [p.name for p in list_folders(kind, marker, root)]


def form_build_crops() -> list[str]:
    data = st.selectbox("Dataset (--data)", dataset_names(), key="crops_data", index=None, placeholder="choose a dataset")
    c1, c2 = st.columns(2)
    name = c1.text_input("Crops folder name (--out)", key="crops_out", placeholder="e.g. crops-train")
    copies = c2.number_input("Jittered copies per lead", 1, 20, 1, key="crops_copies")
    if not data:
        raise WorkspaceError("choose a dataset first.")
    return ["--data", str(subdir(DATASETS, root) / data), "--out", out_folder(CROPS, name, "crops folder name"),
            "--copies", str(int(copies))]


def form_build_classification_set() -> list[str]:
    data = st.multiselect("Datasets (--data)", dataset_names(), key="clsset_data")
    c1, c2 = st.columns(2)
    name = c1.text_input("Classification set name (--out)", key="clsset_out", placeholder="e.g. clsimg-train")
    source = c2.selectbox("Class maps from (--source)", ["truth", "segmenter"], key="clsset_source",
                          help="truth: the ground-truth masks; segmenter: the segmentation model on the photos")
    if not data:
        raise WorkspaceError("choose at least one dataset.")
    return ["--data", ",".join(str(subdir(DATASETS, root) / d) for d in data),
            "--out", out_folder(CLASS_SETS, name, "classification set name"), "--source", source]


def form_train_segmentation() -> list[str]:
    data = st.multiselect("Training datasets (--data)", dataset_names(), key="seg_data")
    crops = st.multiselect("Extra lead-crop folders", folder_names(CROPS, CROPS_MARKER), key="seg_crops",
                           help="made by 'Build per-lead segmentation crops'")
    c1, c2 = st.columns(2)
    name = c1.text_input("Run name (--out)", key="seg_out", placeholder="e.g. seg-unet-1")
    val = c2.selectbox("Validation dataset (--val)", dataset_names(), index=None, key="seg_val",
                       placeholder="2% of the training data")
    c3, c4 = st.columns(2)
    epochs = c3.number_input("Epochs", 1, 1000, 20, key="seg_epochs")
    device = c4.selectbox("Device", ["cpu", "cuda"], key="seg_device")
    if not data:
        raise WorkspaceError("choose at least one training dataset.")
    folders = [str(subdir(DATASETS, root) / d) for d in data] + [str(subdir(CROPS, root) / c) for c in crops]
    args = ["--data", ",".join(folders), "--out", out_folder(RUNS, name, "run name"), "--epochs", str(int(epochs)),
            "--device", device]
    if val:
        args += ["--val", str(subdir(DATASETS, root) / val)]
    return args


def form_train_classifier() -> list[str]:
    c1, c2 = st.columns(2)
    kind = c1.selectbox("Kind", ["signal", "image"], key="cls_kind",
                        help="signal: 1D CNN on the 12 leads (PTB-XL); image: the prototype's segmentation image")
    name = c2.text_input("Run name (--out)", key="cls_out", placeholder="e.g. cls-signal-1",
                         help="rerunning the same command resumes the run")
    data = None
    if kind == "image":
        data = st.selectbox("Classification set (--data)", folder_names(CLASS_SETS, CLASS_SET_MARKER), index=None,
                            key="cls_data", placeholder="made by 'Build the prototype-style classification set'")
    # every field is drawn before any is checked, so that all of them show whatever is missing
    args = ["--kind", kind, "--out", out_folder(RUNS, name, "run name")]
    if kind == "image":
        if not data:
            raise WorkspaceError("the image model trains on a classification set; build one first.")
        args += ["--data", str(subdir(CLASS_SETS, root) / data)]
    else:
        ptbxl = default_ptbxl_dir()
        if not ptbxl:
            raise WorkspaceError("the signal model trains on PTB-XL records; set ECGLAB_PTBXL to a PTB-XL folder.")
        args += ["--ptbxl", str(ptbxl)]
    return args


def form_evaluate() -> list[str]:
    c1, c2, c3 = st.columns(3)
    command = c1.selectbox("What", ["segmentation", "digitization", "classification"], key="eval_what")
    data = c2.selectbox("Dataset (--data)", dataset_names(), index=None, key="eval_data",
                        placeholder="e.g. a strat_fold 10 set")
    limit = c3.number_input("At most N samples (0 = all)", 0, 1_000_000, 0, key="eval_limit")
    masks = "truth"
    if command != "segmentation":
        masks = st.radio("Class maps (--masks)", ["predicted", "truth"], horizontal=True, key="eval_masks",
                         help="truth digitises the ground-truth masks: an upper bound, not the pipeline's score")
    if not data:
        raise WorkspaceError("choose a dataset first.")
    out = subdir(EVALUATIONS, root) / f"{command}-{data}-{masks}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    args = [command, "--data", str(subdir(DATASETS, root) / data), "--out", str(out)]
    if command != "segmentation":
        args += ["--masks", masks]
    if limit:
        args += ["--limit", str(int(limit))]
    return args


def form_score() -> list[str]:
    data = st.selectbox("Dataset (--data)", dataset_names(), key="score_data", index=None, placeholder="choose a dataset")
    if not data:
        raise WorkspaceError("choose a dataset first.")
    return ["--data", str(subdir(DATASETS, root) / data)]


FORMS = {
    "generate_ptb_v": form_generate,
    "build_crops": form_build_crops,
    "train_segmentation": form_train_segmentation,
    "build_classification_set": form_build_classification_set,
    "train_classifier": form_train_classifier,
    "evaluate": form_evaluate,
    "score_dataset": form_score,
}
CROPS_MARKER = "crops.json"  # ecgcore.train.crops.CROPS_INDEX
CLASS_SET_MARKER = CLASS_SET_FILE


@st.cache_data(ttl=600, show_spinner="Asking the command for its options...")
def pipeline_help(name: str) -> str:
    proc = subprocess.run([sys.executable, "-m", f"pipelines.{name}", "--help"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    return (proc.stdout or proc.stderr).strip()


with st.expander("Launch a job", expanded=True):
    names = list(PIPELINES)
    state.setdefault("jobs_pipeline", names[0])
    pipeline = st.selectbox("Pipeline", names, key="jobs_pipeline",
                            format_func=lambda n: PIPELINES[n].title + ("" if PIPELINES[n].available()
                                                                        else "  (not in this checkout yet)"))
    spec = PIPELINES[pipeline]
    if not spec.available():
        st.warning(f"`pipelines/{pipeline}.py` is not in this checkout yet, so this job cannot be launched.")
    else:
        # Plain widgets, not st.form: a choice (e.g. the classifier kind) must show its own fields at once.
        with st.container(border=True):
            error = ""
            try:
                args = FORMS[pipeline]()
            except WorkspaceError as exc:
                args, error = [], str(exc)
            c1, c2 = st.columns([3, 1])
            extra = c1.text_input("Extra arguments", key=f"{pipeline}_extra",
                                  placeholder="e.g. --batch-size 8 (appended to the command)")
            threads = c2.number_input("CPU threads", 1, 64, 1, key=f"{pipeline}_threads",
                                      help="Caps OMP/MKL threads of the job, so jobs do not starve the app.")
            submitted = st.button("Launch", type="primary", icon=":material/rocket_launch:", key=f"launch_{pipeline}")
        if submitted:
            try:
                if error:
                    raise WorkspaceError(error)
                command = args + extra_args(extra)
                confine_outputs(command, root)  # the extra arguments must not move the output out of the workspace
                job = runner.launch(pipeline, command, threads=int(threads))
                state["jobs_selected"] = job.id
                st.success(f"Started job #{job.id}: `{job.command}`")
            except (WorkspaceError, JobError) as exc:
                st.error(plain(str(exc)))
        if st.toggle("Show the command's --help", key=f"{pipeline}_help"):
            st.code(pipeline_help(pipeline), language="text")


def jobs_table(jobs: list[Job]) -> list[dict]:
    rows = []
    for job in jobs:
        p = runner.progress(job)
        rows.append({
            "id": job.id,
            "job": job.name,
            "pipeline": job.pipeline,
            "status": job.status,
            "progress": p.fraction if p.fraction is not None else (1.0 if job.status == "finished" else 0.0),
            "done": f"{p.done}/{p.total}" if p.total else "",
            "ETA": format_duration(p.eta_s) if job.active else "",
            "elapsed": format_duration(job.duration_s),
            "started": time.strftime("%m-%d %H:%M", time.localtime(job.started)) if job.started else "",
        })
    return rows


def start_again(job_id: int, how: str) -> None:
    """Re-run or resume ``job_id`` (a button callback) and show the new job; a refusal is kept for the old one."""
    try:
        new = runner.rerun(job_id) if how == "rerun" else runner.resume(job_id)
    except JobError as exc:
        state["jobs_notice"] = (job_id, "error", str(exc))
        return
    state["jobs_selected"] = new.id
    verb = "re-run" if how == "rerun" else "resumption"
    state["jobs_notice"] = (new.id, "success", f"Started job #{new.id}, the {verb} of #{job_id}: `{new.command}`")


def live_jobs(timed: bool) -> None:
    """The table and the selected job's details; refreshes itself every 2 s without rerunning the page while a job
    runs (``timed``)."""
    jobs = runner.list(limit=LISTED_JOBS)
    if not jobs:
        st.info("No jobs yet. Launch one above.")
        return
    if not timed and any(j.active for j in jobs):
        st.rerun()  # a job started here (Re-run, Resume): the whole page runs again, to turn the timer on
    st.dataframe(jobs_table(jobs), hide_index=True, key="jobs_table", column_config={
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
        "id": st.column_config.NumberColumn("id", format="%d"),
    })
    ids = [j.id for j in jobs]
    selected = state.get("jobs_selected")
    if selected not in ids:
        state["jobs_selected"] = ids[0]
    job_id = st.selectbox("Job", ids, key="jobs_selected",
                          format_func=lambda i: f"#{i} {next(j.name for j in jobs if j.id == i)}")
    job = runner.get(job_id)
    p = runner.progress(job)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Status", job.status)
    c2.metric("Progress", f"{p.fraction:.0%}" if p.fraction is not None else "-",
              help=f"{p.done}/{p.total} {p.message}" if p.total else None)
    c3.metric("ETA", format_duration(p.eta_s) if job.active and p.eta_s is not None else "-")
    c4.metric("Elapsed", format_duration(job.duration_s) or "-")
    if p.fraction is not None and job.active:
        st.progress(p.fraction, text=p.message or None)
    st.code(job.command, language="bash", wrap_lines=True)
    if job.status == "failed":
        st.error(f"Failed (exit code {job.exit_code}): {runner.error_line(job)}")
    elif job.status == "interrupted":
        st.warning("The job's process ended without an exit code (the machine restarted or the process was killed). "
                   + ("Resume continues where it stopped." if job.resumable else "Re-run starts it over."))
    notice = state.get("jobs_notice")
    if notice and notice[0] == job.id:  # kept until another job is shown, so the fragment's refresh cannot hide it
        if notice[1] == "success":
            st.success(notice[2])
        else:
            st.error(plain(notice[2]))
    b1, b2, b3, _ = st.columns([1, 1, 1, 3])
    if b1.button("Cancel", icon=":material/stop_circle:", disabled=not job.active, key=f"cancel_{job.id}"):
        runner.cancel(job.id)
        st.rerun(scope="fragment")
    # Callbacks run before the selectbox is drawn, so they may select the new job; set after it, Streamlit refuses.
    b2.button("Re-run", icon=":material/replay:", disabled=job.active, key=f"rerun_{job.id}",
              on_click=start_again, args=(job.id, "rerun"))
    b3.button("Resume", icon=":material/fast_forward:", disabled=not job.resumable, key=f"resume_{job.id}",
              on_click=start_again, args=(job.id, "resume"),
              help="Continue where it stopped (generation keeps finished samples; trainers get --resume).")
    if p.metrics:
        st.plotly_chart(metrics_figure(p.metrics), key=f"metrics_{job.id}", config={"displayModeBar": False})
    st.caption(f"Log tail - {job.log_path}")
    st.code(runner.log_tail(job, 40) or "(no output yet)", language="text", wrap_lines=True)


st.subheader("Jobs")
# Refresh on a timer only while something runs; a finished list does not need it.
refresh_every = 2.0 if any(j.active for j in runner.list(limit=LISTED_JOBS)) else None
st.fragment(run_every=refresh_every)(live_jobs)(refresh_every is not None)
