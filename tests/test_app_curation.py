"""Curation, driven through AppTest on a tiny generated dataset: discard / restore / undo round trips, bulk
decisions by threshold on the scores written by the scoring job, and two curators at once losing nothing."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from ecgcore.app.curation import samples_table, threshold_ids
from ecgcore.dataset import discarded_ids, iter_samples, read_decisions, record_decisions
from ecgcore.train.scores import SuspectRule, ink_contrast, read_scores

CURATION = "pages/3_Curation.py"


@pytest.fixture
def workspace(tmp_path, monkeypatch, tiny_dataset):
    ws = tmp_path / "ws"
    shutil.copytree(tiny_dataset, ws / "datasets" / "tiny")
    monkeypatch.setenv("ECGLAB_WORKSPACE", str(ws))
    monkeypatch.delenv("ECGLAB_PTBXL", raising=False)
    return ws


def _open(curator: str) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=60).run()
    at.session_state["curator"] = curator
    at.switch_page(CURATION).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _open_url(query: dict[str, str] | None = None) -> AppTest:
    """A fresh browser session opening the Curation page at an address with these query parameters (a reload)."""
    at = AppTest.from_file("../app.py", default_timeout=60)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    at.switch_page(CURATION).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metric(at, label):
    return int(next(m.value for m in at.metric if m.label == label))


def _toasts(at) -> list[str]:
    return [t.value for t in at.toast]


def test_discard_then_undo_round_trip(workspace):
    folder = workspace / "datasets" / "tiny"
    at = _open("alice")
    assert _metric(at, "Samples") == 8 and _metric(at, "Discarded") == 0
    at.button(key="cur_discard").click().run()
    assert _metric(at, "Discarded") == 1
    (gone,) = discarded_ids(folder)
    assert gone not in {s.id for s in iter_samples(folder, include_discarded=False)}  # builders skip it
    assert read_decisions(folder)[-1]["by"] == "alice"

    at.button(key="cur_undo").click().run()
    assert _metric(at, "Discarded") == 0 and discarded_ids(folder) == set()
    # nothing is ever deleted: the undo is a record of its own, naming the discard it withdraws
    discard, undo = read_decisions(folder)
    assert (discard["decision"], undo["decision"], undo["undoes"]) == ("discard", "undo", discard["rid"])


def test_next_and_previous_walk_the_samples(workspace):
    at = _open("alice")
    at.selectbox(key="cur_order").set_value("id").run()
    assert any(m.value.startswith("**000000** (1 of 8)") for m in at.markdown)
    at.button(key="cur_next").click().run()
    assert at.session_state["cur_cursor"] == "000001"
    at.button(key="cur_prev").click().run()
    at.button(key="cur_prev").click().run()
    assert at.session_state["cur_cursor"] == "000007"  # wraps around


def test_scores_from_the_scoring_job_drive_bulk_decisions(workspace):
    from pipelines.score_dataset import main as score

    folder = workspace / "datasets" / "tiny"
    assert score(["--data", str(folder), "--limit", "3"]) == 0  # with whatever models are installed
    scores = read_scores(folder)
    assert len(scores) == 3 and scores["ink_contrast"].between(0.05, 1.0).all()
    if scores["seg_iou"].notna().any():  # the segmenter is installed: its masks are kept for the detail view
        assert (folder / "scores" / "000000_pred.png").is_file()
    before = (folder / "scores.csv").stat().st_mtime_ns
    assert score(["--data", str(folder), "--limit", "3"]) == 0  # a rerun keeps what was scored with the same models
    assert read_scores(folder).equals(scores) and (folder / "scores.csv").stat().st_mtime_ns >= before

    at = _open("bob")
    assert any("Scored with" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert table["ink_contrast"].notna().sum() == 3
    readable = scores.loc[scores["snr_db"].notna(), "id"].tolist()
    if readable:  # the digitiser is installed: the detail view draws the digitised over the true signal
        at.session_state["cur_cursor"] = readable[0]
        at.run()
        assert len(at.get("plotly_chart")) == 2
    at.selectbox(key="cur_bulk_col").set_value("ink_contrast").run()
    at.selectbox(key="cur_bulk_dir").set_value("above").run()
    at.number_input(key="cur_bulk_t").set_value(0.0).run()
    at.button(key="cur_bulk_discard").click().run()
    assert _metric(at, "Discarded") == 3  # the scored ones; unscored samples are never selected
    at.button(key="cur_undo").click().run()  # one click undoes the whole batch
    assert _metric(at, "Discarded") == 0


def test_two_curators_at_once_lose_nothing_and_undo_only_their_own(workspace):
    folder = workspace / "datasets" / "tiny"
    alice, bob = _open("alice"), _open("bob")
    alice.selectbox(key="cur_order").set_value("id").run()
    bob.selectbox(key="cur_order").set_value("id").run()
    alice.button(key="cur_discard").click().run()  # 000000
    bob.button(key="cur_next").click().run()
    bob.button(key="cur_discard").click().run()  # 000001
    assert discarded_ids(folder) == {"000000", "000001"}
    alice.button(key="cur_undo").click().run()
    assert discarded_ids(folder) == {"000001"}
    bob.run()
    assert _metric(bob, "Discarded") == 1


def test_undo_steps_back_through_own_decisions_with_exact_toasts(workspace):
    """Issue item 6: discard 000000, discard 000005, Undo twice: each undo steps one decision back, and says which."""
    folder = workspace / "datasets" / "tiny"
    at = _open("alice")
    at.selectbox(key="cur_order").set_value("id").run()
    at.button(key="cur_discard").click().run()  # 000000
    assert _toasts(at) == ["Discarded 000000."]
    at.session_state["cur_cursor"] = "000005"
    at.run()
    at.button(key="cur_discard").click().run()
    assert discarded_ids(folder) == {"000000", "000005"}
    at.button(key="cur_undo").click().run()
    assert discarded_ids(folder) == {"000000"} and _toasts(at) == ["Restored 000005."]
    at.button(key="cur_undo").click().run()
    assert discarded_ids(folder) == set() and _toasts(at) == ["Restored 000000."]
    assert _metric(at, "Discarded") == 0
    at.button(key="cur_undo").click().run()
    assert _toasts(at) == ["Nothing of yours to undo."] and discarded_ids(folder) == set()


def test_undo_does_not_override_a_later_decision_by_another_curator(workspace):
    """Issue item 5: A discards 000000, B (page not refreshed) discards it too, A undoes: B's discard stands and A
    is told so, by name."""
    folder = workspace / "datasets" / "tiny"
    alice, bob = _open("alice"), _open("bob")
    for at in (alice, bob):
        at.selectbox(key="cur_order").set_value("id").run()
    alice.button(key="cur_discard").click().run()  # 000000
    assert any("**000000**" in m.value and "DISCARDED" not in m.value for m in bob.markdown)  # bob's page is stale
    # Bob discards 000000 from his stale table ("Discard selected"; a click on the detail view's Discard would be
    # dropped, as Streamlit ignores a button that is disabled by the time it reruns). AppTest cannot select table
    # rows, so the decision is written as that button writes it; the browser suite clicks it for real.
    record_decisions(folder, ["000000"], "discard", reason="selected in table", by="bob")
    alice.button(key="cur_undo").click().run()
    assert discarded_ids(folder) == {"000000"}
    (toast,) = _toasts(alice)
    assert toast == "000000 stays discarded: bob discarded it after your discard, so your undo leaves bob's decision " \
                    "in place."
    assert any("bob" in w.value for w in alice.warning)  # and it stays on screen after the toast fades
    for at in (alice, bob):  # after a reload both show bob's discard
        at.run()
        assert _metric(at, "Discarded") == 1
    alice.button(key="cur_undo").click().run()
    assert _toasts(alice) == ["Nothing of yours to undo."] and discarded_ids(folder) == {"000000"}
    bob.button(key="cur_undo").click().run()  # bob's own undo still works, and alice's discard is withdrawn
    assert _toasts(bob) == ["Restored 000000."] and discarded_ids(folder) == set()


def test_undo_says_when_another_curator_restored_the_sample_since(workspace):
    """Item 5 through both pages: bob restores alice's discard from his page; alice's undo leaves it to bob."""
    folder = workspace / "datasets" / "tiny"
    alice = _open("alice")
    alice.selectbox(key="cur_order").set_value("id").run()
    alice.button(key="cur_discard").click().run()  # 000000
    bob = _open("bob")  # loaded after alice's discard: bob sees it and disagrees
    bob.selectbox(key="cur_order").set_value("id").run()
    bob.button(key="cur_restore").click().run()
    alice.button(key="cur_undo").click().run()  # alice's page was not refreshed
    (toast,) = _toasts(alice)
    assert toast.startswith("000000 stays kept: bob restored it after your discard")
    assert [e["decision"] for e in read_decisions(folder)] == ["discard", "restore", "undo"]
    assert read_decisions(folder)[-1]["overtaken_by"]["by"] == "bob" and discarded_ids(folder) == set()


def test_the_curator_name_survives_a_reload_and_undo_continues(workspace):
    """Issue item 7: the name is kept in the page address, so after a reload Undo still finds this curator's work."""
    from ecgcore.app.curation import default_curator

    folder = workspace / "datasets" / "tiny"
    at = _open_url()  # a first visit: the name of the user running the app, written to the address
    assert at.text_input(key="curator").value == default_curator()
    assert at.query_params["curator"] == default_curator()
    at.text_input(key="curator").set_value("  alice ").run()
    assert at.text_input(key="curator").value == "alice" and at.query_params["curator"] == "alice"
    at.selectbox(key="cur_order").set_value("id").run()
    at.button(key="cur_discard").click().run()
    assert read_decisions(folder)[-1]["by"] == "alice"

    at.switch_page("pages/2_Jobs.py").run()  # another page and back, in the same session
    at.switch_page(CURATION).run()
    assert at.text_input(key="curator").value == "alice"

    reloaded = _open_url({"curator": "alice"})  # a reload: a new session, the same address
    assert reloaded.text_input(key="curator").value == "alice"
    reloaded.button(key="cur_undo").click().run()
    assert _toasts(reloaded) == ["Restored 000000."] and discarded_ids(folder) == set()

    reloaded.text_input(key="curator").set_value("   ").run()  # a blank name falls back to the default
    assert reloaded.text_input(key="curator").value == default_curator()


def test_suspect_rule_and_thresholds():
    rule = SuspectRule(min_seg_iou=0.5)
    assert rule.reasons({"seg_iou": 0.3, "snr_db": float("nan"), "error": float("nan")}) == [
        "segmentation IoU 0.30 < 0.5"]
    assert rule.reasons({"seg_iou": 0.9, "ink_contrast": 0.5}) == []
    table = pd.DataFrame({"id": ["a", "b", "c"], "seg_iou": [0.2, 0.8, None]})
    assert threshold_ids(table, "seg_iou", 0.5) == ["a"]  # no score, never selected
    assert threshold_ids(table, "seg_iou", 0.5, below=False) == ["b"]


def test_ink_contrast_drops_when_the_trace_is_washed_out(tiny_dataset):
    sample = next(iter_samples(tiny_dataset))
    rgb, mask = sample.image(), sample.mask()
    sharp = ink_contrast(rgb, mask)
    washed = (rgb.astype(float) * 0.15 + 255 * 0.85).astype("uint8")  # a flash over the whole photo
    assert sharp > 0.3 and ink_contrast(washed, mask) < 0.5 * sharp
    assert samples_table(tiny_dataset)["suspect"].dtype == bool


def test_gallery_view_opens_a_sample(workspace):
    at = _open("alice")
    at.segmented_control(key="cur_view").set_value("gallery").run()
    assert not at.exception
    assert len(at.image) >= 8 + 1  # eight thumbnails and the detail view's photo
    at.button(key="cur_open_000005").click().run()
    assert any(m.value.startswith("**000005**") for m in at.markdown)


def test_an_empty_workspace_makes_a_demo_dataset_that_is_scored_when_made(tmp_path, monkeypatch):
    """A newcomer on an empty Curation page: one click makes a small dataset as a job, progress shows while it is
    made, and scoring starts by itself when it is done, so curating needs no trip to the Jobs page."""
    import time

    from ecgcore.app.curation import DEMO_JOB_NAME, DEMO_SAMPLES
    from ecgcore.jobs import JobRunner

    ws = tmp_path / "ws"
    monkeypatch.setenv("ECGLAB_WORKSPACE", str(ws))
    monkeypatch.delenv("ECGLAB_PTBXL", raising=False)
    at = _open("newcomer")
    assert any("Make a demo dataset" in i.value for i in at.info)
    at.button(key="cur_demo").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("appears here as its samples are made" in s.value for s in at.success)
    runner = JobRunner(ws)
    (job,) = [j for j in runner.list() if j.name == DEMO_JOB_NAME]
    deadline = time.time() + 300

    def now():  # list() brings the status up to date (the wrapper's exit is noticed there)
        return {j.id: j for j in runner.list()}[job.id]

    while now().active and time.time() < deadline:
        time.sleep(1)
    assert now().status == "finished", runner.log_tail(now())
    assert len(list((ws / "datasets" / "demo").glob("[0-9]*.json"))) == DEMO_SAMPLES
    at.run()  # the page sees the finished demo set and starts scoring it
    assert not at.exception, [e.value for e in at.exception]
    scoring = [j for j in runner.list() if j.pipeline == "score_dataset"]
    assert len(scoring) == 1 and str(ws / "datasets" / "demo") in scoring[0].args
    at.run()  # and only once
    assert len([j for j in runner.list() if j.pipeline == "score_dataset"]) == 1
    runner.cancel(scoring[0].id)
