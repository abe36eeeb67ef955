"""The job runner: real pipeline processes, recorded in SQLite, surviving a runner restart, cancellable, resumable."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from ecgcore.jobs import PIPELINES, JobError, JobRunner, format_duration, read_progress, tail_text


@pytest.fixture
def runner(tmp_path):
    return JobRunner(tmp_path / "ws")


def _generate_args(out, n, size="256x256"):
    return ["--synthetic", "--out", str(out), "-n", str(n), "--seed", "1", "--size", size]


def test_a_generation_job_runs_to_the_end_and_reports_progress(runner, tmp_path):
    out = tmp_path / "ws" / "datasets" / "tiny"
    job = runner.launch("generate_ptb_v", _generate_args(out, 3), name="tiny set")
    assert job.status == "running" and job.pid
    job = runner.wait(job.id, timeout=60)
    assert job.status == "finished" and job.exit_code == 0
    assert len(list(out.glob("[0-9]*.json"))) == 3
    progress = runner.progress(job)
    assert (progress.done, progress.total) == (3, 3) and progress.fraction == 1.0
    assert any("samples complete" in m for m in progress.logs)
    assert "python -m pipelines.generate_ptb_v --synthetic" in job.command
    assert "samples complete" in runner.log_tail(job)


def test_bad_input_fails_with_the_pipelines_own_sentence(runner, tmp_path):
    job = runner.wait(runner.launch("generate_ptb_v", _generate_args(tmp_path / "x", 0)).id, timeout=60)
    assert job.status == "failed" and job.exit_code == 2
    assert runner.error_line(job) == "-n must be at least 1, not 0."


def test_only_registered_pipelines_can_be_launched(runner):
    with pytest.raises(JobError, match="unknown pipeline"):
        runner.launch("os_system", ["rm -rf /"])


def test_jobs_survive_a_restart_of_the_app(runner, tmp_path):
    job = runner.launch("generate_ptb_v", _generate_args(tmp_path / "ws" / "datasets" / "r", 40, "512x384"))
    restarted = JobRunner(runner.workspace)  # a new app process reads the same database
    from ecgcore import jobs as jobs_module
    jobs_module._LAUNCHED.clear()  # the new app does not hold the process handles
    assert restarted.get(job.id).status == "running"
    assert [j.id for j in restarted.list()] == [job.id]
    assert restarted.wait(job.id, timeout=90).status == "finished"


def test_cancel_stops_the_whole_process_group(runner, tmp_path):
    out = tmp_path / "ws" / "datasets" / "big"
    job = runner.launch("generate_ptb_v", _generate_args(out, 5000))
    _wait_for_progress(runner, job)
    job = runner.cancel(job.id)
    assert job.status in ("cancelling", "cancelled")
    job = runner.wait(job.id, timeout=30)
    assert job.status == "cancelled"
    n = len(list(out.glob("[0-9]*.json")))
    time.sleep(1.0)
    assert len(list(out.glob("[0-9]*.json"))) == n, "samples were still being written after the cancel"
    assert 0 < n < 5000


def test_a_killed_job_shows_as_interrupted_and_resumes_where_it_stopped(runner, tmp_path):
    out = tmp_path / "ws" / "datasets" / "crash"
    n = 60
    job = runner.launch("generate_ptb_v", _generate_args(out, n))
    _wait_for_progress(runner, job)
    os.killpg(job.pid, signal.SIGKILL)  # a crash: no exit code, nobody cancelled
    job = runner.wait(job.id, timeout=30)
    assert job.status == "interrupted" and job.resumable
    made_before = len(list(out.glob("[0-9]*.json")))
    resumed = runner.wait(runner.resume(job.id).id, timeout=120)
    assert resumed.status == "finished" and resumed.parent_id == job.id
    assert len(list(out.glob("[0-9]*.json"))) == n
    log = runner.log_tail(resumed, 200)
    assert f"{n - made_before} of {n} samples to make" in log or made_before == n


def test_rerun_is_the_same_command_as_a_new_job(runner, tmp_path):
    first = runner.wait(runner.launch("generate_ptb_v", _generate_args(tmp_path / "ws" / "d", 1)).id, timeout=60)
    second = runner.rerun(first.id)
    assert second.id != first.id and second.args == first.args and second.parent_id == first.id
    assert runner.wait(second.id, timeout=60).status == "finished"


def test_resume_adds_the_flag_for_trainers(runner, monkeypatch):
    assert PIPELINES["train_segmentation"].resume == "flag" and PIPELINES["generate_ptb_v"].resume == "rerun"
    assert PIPELINES["evaluate"].resume is None


def test_progress_rate_and_eta_ignore_the_jump_over_finished_work(tmp_path):
    events = tmp_path / "events.jsonl"
    lines = [
        {"t": 100.0, "kind": "progress", "done": 0, "total": 100},
        {"t": 100.1, "kind": "progress", "done": 50, "total": 100},  # resumed: 50 were already there
        {"t": 110.0, "kind": "progress", "done": 55, "total": 100},
        {"t": 120.0, "kind": "progress", "done": 60, "total": 100},
        {"t": 121.0, "kind": "metrics", "step": 1, "values": {"loss": 0.5}},
    ]
    events.write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"t": 122, "kind": "prog')  # torn last line
    p = read_progress(events)
    assert (p.done, p.total) == (60, 100)
    assert p.rate_per_s == pytest.approx(0.5)
    assert p.eta_s == pytest.approx(80.0)
    assert p.metrics == [{"step": 1, "t": 121.0, "loss": 0.5}]


def test_log_tail_collapses_progress_bar_redraws(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("start\nsamples:  10%|#\rsamples:  50%|#####\rsamples: 100%|##########\nerror: disk full.\n")
    assert tail_text(log) == "start\nsamples: 100%|##########\nerror: disk full."


def test_format_duration():
    assert [format_duration(s) for s in (None, 5, 65, 3725)] == ["", "5 s", "1 min 05 s", "1 h 02 min"]


def _wait_for_progress(runner, job, at_least=2, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = runner.progress(job)
        if (p.done or 0) >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job.id} made no progress: {runner.log_tail(job)}")


def test_two_jobs_never_write_to_the_same_folder_at_once(runner, tmp_path):
    out = tmp_path / "ws" / "datasets" / "shared"
    first = runner.launch("generate_ptb_v", _generate_args(out, 300))
    with pytest.raises(JobError, match=f"job {first.id} is still writing to"):
        runner.launch("generate_ptb_v", _generate_args(out, 5))
    runner.cancel(first.id)
    runner.wait(first.id, timeout=30)
    assert runner.wait(runner.launch("generate_ptb_v", _generate_args(out, 1)).id, timeout=60).status == "finished"


def test_jobs_are_named_by_what_they_make(runner, tmp_path):
    from ecgcore.jobs import job_name

    ws = tmp_path / "ws"
    assert job_name("generate_ptb_v", ["--synthetic", "--out", str(ws / "datasets" / "d"), "-n", "50"]) == \
        "Generate PTB-V: d (50 samples)"
    assert job_name("train_segmentation", ["--data", "a,b", "--out", str(ws / "runs" / "run_x")]) == \
        "Train segmentation: run_x"
    assert job_name("train_classifier", ["--kind", "image", "--out=runs/ri"]) == "Train classifier (image): ri"
    assert job_name("evaluate", ["digitization", "--data", str(ws / "datasets" / "test")]) == \
        "Evaluate digitization: test"
    assert job_name("score_dataset", ["--data", "datasets/tiny"]) == "Score dataset: tiny"
    assert job_name("build_crops", ["--data", "d", "--out", "crops/c1"]) == "Build crops: c1"
    assert job_name("generate_ptb_v", []) == PIPELINES["generate_ptb_v"].title  # nothing to name it by

    job = runner.launch("generate_ptb_v", ["--synthetic", "--out", str(ws / "datasets" / "one"), "-n", "1",
                                           "--size", "256x256"])
    assert job.name == "Generate PTB-V: one (1 sample)"
    runner.wait(job.id, timeout=60)
    # a job recorded before jobs were named by what they make shows the new name too
    import sqlite3

    with sqlite3.connect(runner.db_path) as db:
        db.execute("UPDATE jobs SET name = ? WHERE id = ?", (PIPELINES["generate_ptb_v"].title, job.id))
    assert runner.get(job.id).name == "Generate PTB-V: one (1 sample)"
