"""The Jobs page: a generation job launched from its form runs as a real process and finishes on tiny data; bad
names are refused before anything runs; the table and details show status, progress and the log."""

from __future__ import annotations

import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from ecgcore.jobs import JobRunner
from tests.conftest import open_app_page

JOBS = "pages/2_Jobs.py"


@pytest.fixture
def jobs_page(tmp_path, monkeypatch):
    return open_app_page(JOBS, tmp_path / "ws", monkeypatch)


def test_forms_exist_for_every_pipeline(jobs_page):
    titles = jobs_page.selectbox(key="jobs_pipeline").options
    for text in ("Generate a PTB-V dataset", "Train the segmentation U-Net", "Train a classifier",
                 "Build per-lead segmentation crops", "Build the prototype-style classification set", "Evaluate",
                 "Score a dataset for curation"):
        assert any(t.startswith(text) for t in titles), text
    assert jobs_page.text_input(key="gen_name") is not None
    assert any("No jobs yet" in i.value for i in jobs_page.info)


def test_a_generation_job_launched_from_the_form_finishes(jobs_page, tmp_path):
    at = jobs_page
    at.text_input(key="gen_name").input("tiny")
    at.number_input(key="gen_n").set_value(3)
    at.selectbox(key="gen_size").set_value("400x300")
    at.button(key="launch_generate_ptb_v").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Started job #1" in s.value for s in at.success), [e.value for e in at.error]

    job = JobRunner(tmp_path / "ws").wait(1, timeout=90)
    assert job.status == "finished", JobRunner(tmp_path / "ws").log_tail(job)
    assert len(list((tmp_path / "ws" / "datasets" / "tiny").glob("[0-9]*.json"))) == 3

    at.run()
    table = at.dataframe[0].value
    assert table.loc[0, "status"].endswith("finished") and table.loc[0, "done"] == "3/3"
    assert table.loc[0, "progress"] == 1.0
    assert table.loc[0, "job"] == "Generate PTB-V: tiny (3 samples)"  # named by what it makes
    assert at.selectbox(key="jobs_selected").options[0] == "#1 Generate PTB-V: tiny (3 samples)"
    assert any("--out" in c.value and "tiny" in c.value for c in at.code)  # the command, pasteable
    assert any("3 samples complete" in c.value for c in at.code)  # the log tail
    assert at.button(key="cancel_1").disabled and not at.button(key="rerun_1").disabled

    at.button(key="rerun_1").click().run()
    assert JobRunner(tmp_path / "ws").wait(2, timeout=90).status == "finished"


def test_the_print_style_and_grid_choices_reach_the_dataset(jobs_page, tmp_path):
    at = jobs_page
    at.text_input(key="gen_name").input("device")
    at.number_input(key="gen_n").set_value(1)
    at.selectbox(key="gen_size").set_value("400x300")
    at.selectbox(key="gen_print_style").set_value("device")
    at.selectbox(key="gen_grid_color").set_value("black")
    at.selectbox(key="gen_minor_grid").set_value("dots")
    at.button(key="launch_generate_ptb_v").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = JobRunner(tmp_path / "ws").wait(1, timeout=90)
    assert job.status == "finished", JobRunner(tmp_path / "ws").log_tail(job)
    assert "--print-style device" in " ".join(job.args)
    info = json.loads((tmp_path / "ws" / "datasets" / "device" / "dataset.json").read_text())
    sample = json.loads((tmp_path / "ws" / "datasets" / "device" / "000000.json").read_text())
    assert info["paper"]["print_style"] == "device" and sample["paper"]["print_style"] == "device"
    assert "--grid-color black --minor-grid dots" in " ".join(job.args)
    assert sample["paper"]["grid_color"] == "black" and sample["paper"]["minor_grid"] == "dots"


def test_a_dataset_name_with_a_path_is_refused_and_nothing_runs(jobs_page, tmp_path):
    at = jobs_page
    at.text_input(key="gen_name").input("../outside")
    at.button(key="launch_generate_ptb_v").click().run()
    assert any("dataset name" in e.value and "path" in e.value for e in at.error)
    assert JobRunner(tmp_path / "ws").list() == []


def test_a_failed_job_shows_its_reason(jobs_page, tmp_path):
    at = jobs_page
    at.text_input(key="gen_name").input("bad")
    at.text_input(key="generate_ptb_v_extra").input("--workers 0")
    at.button(key="launch_generate_ptb_v").click().run()
    assert JobRunner(tmp_path / "ws").wait(1, timeout=60).status == "failed"
    at.run()
    assert any("--workers must be at least 1" in e.value for e in at.error)


def test_metrics_become_charts_and_a_dead_job_shows_as_interrupted(jobs_page, tmp_path):
    import json
    import os
    import signal

    runner = JobRunner(tmp_path / "ws")
    out = tmp_path / "ws" / "datasets" / "killed"
    job = runner.launch("generate_ptb_v", ["--synthetic", "--out", str(out), "-n", "500", "--size", "400x300"])
    deadline = time.monotonic() + 60
    while (runner.progress(job).done or 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    with open(job.events_path, "a") as f:  # what a trainer reports per epoch (ecgcore.progress.Reporter.metrics)
        for epoch, loss in enumerate([0.9, 0.6, 0.45], start=1):
            f.write(json.dumps({"t": 1.0 * epoch, "kind": "metrics", "step": epoch,
                                "values": {"train_loss": loss, "val_iou_curve": 1 - loss}}) + "\n")
    os.killpg(job.pid, signal.SIGKILL)
    assert runner.wait(job.id, timeout=30).status == "interrupted"

    jobs_page.run()
    assert jobs_page.dataframe[0].value.loc[0, "status"].endswith("interrupted")
    assert any("ended without an exit code" in w.value for w in jobs_page.warning)
    assert not jobs_page.button(key=f"resume_{job.id}").disabled
    charts = jobs_page.get("plotly_chart")
    assert len(charts) == 1 and "val_iou_curve" in charts[0].proto.spec
    jobs_page.button(key=f"resume_{job.id}").click().run()
    resumed = runner.list()[0]
    assert resumed.parent_id == job.id and resumed.args == job.args
    runner.cancel(resumed.id)
    assert runner.wait(resumed.id, timeout=30).status == "cancelled"


FORM_INPUTS = {
    "generate_ptb_v": {"gen_name": "g"},
    "build_crops": {"crops_data": "tiny", "crops_out": "c"},
    "train_segmentation": {"seg_data": ["tiny"], "seg_crops": ["crops1"], "seg_out": "r", "seg_val": "tiny"},
    "build_classification_set": {"clsset_data": ["tiny"], "clsset_out": "cs"},
    "train_classifier": {"cls_kind": "image", "cls_data": "set1", "cls_out": "ri"},
    "evaluate": {"eval_what": "digitization", "eval_data": "tiny", "eval_masks": "truth", "eval_limit": 3},
    "score_dataset": {"score_data": "tiny"},
}


@pytest.mark.parametrize("pipeline", list(FORM_INPUTS))
def test_every_form_builds_a_command_its_pipeline_accepts(tmp_path, monkeypatch, tiny_dataset, pipeline):
    """The arguments each form produces parse with the pipeline's own argparse parser (no job is started)."""
    import importlib
    import shutil

    from ecgcore import jobs
    ws = tmp_path / "ws"
    shutil.copytree(tiny_dataset, ws / "datasets" / "tiny")
    (ws / "crops" / "crops1").mkdir(parents=True)
    (ws / "crops" / "crops1" / "crops.json").write_text("{}")
    (ws / "classification_sets" / "set1").mkdir(parents=True)
    (ws / "classification_sets" / "set1" / "classification_set.json").write_text("{}")
    monkeypatch.setenv("ECGLAB_WORKSPACE", str(ws))
    monkeypatch.delenv("ECGLAB_PTBXL", raising=False)
    launched = []

    def record(self, name, args, **kwargs):
        launched.append((name, args))
        raise jobs.JobError("recorded, not started.")

    monkeypatch.setattr(jobs.JobRunner, "launch", record)
    at = AppTest.from_file("../app.py", default_timeout=60).run()
    at.switch_page(JOBS).run()
    at.selectbox(key="jobs_pipeline").set_value(pipeline).run()
    for key, value in FORM_INPUTS[pipeline].items():
        _widget(at, key).set_value(value)
        at.run()  # a choice may reveal further fields
    at.button(key=f"launch_{pipeline}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert launched, [e.value for e in at.error]
    name, args = launched[0]
    parsed = importlib.import_module(f"pipelines.{name}").build_parser().parse_args(args)
    assert parsed is not None
    out = getattr(parsed, "out", None)
    if out is not None:  # outputs land inside the workspace
        assert str(out).startswith(str(ws.resolve()))


def _widget(at, key):
    for kind in ("text_input", "number_input", "selectbox", "multiselect", "radio"):
        try:
            return getattr(at, kind)(key=key)
        except KeyError:
            continue
    raise KeyError(key)


def test_rerun_and_resume_of_a_cancelled_job_select_the_new_job(jobs_page, tmp_path):
    """Re-run (and then Resume) on a cancelled job start a new job and show it, with no widget-state error; each
    further click on the shown job works too."""
    runner = JobRunner(tmp_path / "ws")
    out = tmp_path / "ws" / "datasets" / "long"
    job = runner.launch("generate_ptb_v", ["--synthetic", "--out", str(out), "-n", "500", "--size", "400x300"])
    runner.cancel(job.id)
    assert runner.wait(job.id, timeout=30).status == "cancelled"

    at = jobs_page
    at.run()
    assert at.selectbox(key="jobs_selected").value == job.id
    at.button(key=f"rerun_{job.id}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    rerun = runner.list()[0]
    assert rerun.parent_id == job.id
    assert at.selectbox(key="jobs_selected").value == rerun.id
    assert any(f"Started job #{rerun.id}" in s.value for s in at.success)
    assert not at.button(key=f"cancel_{rerun.id}").disabled  # the view shows the new, running job

    at.button(key=f"cancel_{rerun.id}").click().run()
    assert runner.wait(rerun.id, timeout=30).status == "cancelled"
    at.run()
    at.button(key=f"resume_{rerun.id}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    resumed = runner.list()[0]
    assert resumed.parent_id == rerun.id and at.selectbox(key="jobs_selected").value == resumed.id
    runner.cancel(resumed.id)
    assert runner.wait(resumed.id, timeout=30).status == "cancelled"
