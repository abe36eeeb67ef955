"""The curation log's undo, without Streamlit: undo steps back through a curator's own decisions in order, never
silently overrides another curator's later decision, is replayed from the log alone (so it survives a reload), and
logs written before undo records existed still read the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecgcore.app.curation import decision_message, history_table, undo_message
from ecgcore.dataset import (
    CURATION_FILE,
    UNDO,
    DatasetError,
    discarded_ids,
    read_curation,
    read_decisions,
    record_decisions,
    record_id,
    undo_last,
)


@pytest.fixture
def folder(curation_folder) -> Path:
    return curation_folder


def test_undo_steps_back_in_order_instead_of_toggling(folder):
    """Issue item 6: discard 000000, discard 000016, undo twice restores 000016 then 000000."""
    record_decisions(folder, ["000000"], "discard", by="alice")
    record_decisions(folder, ["000016"], "discard", by="alice")
    first = undo_last(folder, by="alice")
    assert discarded_ids(folder) == {"000000"}
    second = undo_last(folder, by="alice")
    assert discarded_ids(folder) == set()  # the toggling undo discarded 000016 again here
    assert undo_message(first) == ("Restored 000016.", False)
    assert undo_message(second) == ("Restored 000000.", False)
    third = undo_last(folder, by="alice")
    assert not third and undo_message(third) == ("Nothing of yours to undo.", False)
    assert discarded_ids(folder) == set()


def test_undo_records_reference_the_decision_they_undo(folder):
    (decision,) = record_decisions(folder, ["000016"], "discard", reason="dark", by="alice")
    result = undo_last(folder, by="alice")
    (undo,) = result.records
    assert undo["decision"] == UNDO and undo["undoes"] == decision["rid"] and undo["undid"] == "discard"
    assert undo["id"] == "000016" and undo["by"] == "alice" and "overtaken_by" not in undo
    lines = [json.loads(line) for line in (folder / CURATION_FILE).read_text().splitlines()]
    assert lines == [decision, undo]  # append-only: the discard is still there, the undo is a new line
    assert [r["decision"] for r in history_table(folder)] == ["undo discard", "discard"]


def test_undo_of_a_restore_discards_again_and_batches_undo_as_a_whole(folder):
    record_decisions(folder, ["a", "b", "c"], "discard", by="alice")
    record_decisions(folder, ["a", "b"], "restore", by="alice")
    assert discarded_ids(folder) == {"c"}
    result = undo_last(folder, by="alice")
    assert discarded_ids(folder) == {"a", "b", "c"}
    assert undo_message(result) == ("Discarded a, b again.", False)
    assert undo_message(undo_last(folder, by="alice")) == ("Restored a, b, c.", False)
    assert discarded_ids(folder) == set()


def test_undo_never_silently_overrides_another_curators_later_decision(folder):
    """Issue item 5: A discards, B (stale page) discards the same sample, A undoes: B's discard stands, A is told."""
    record_decisions(folder, ["000000"], "discard", by="alice")
    record_decisions(folder, ["000000"], "discard", by="bob")
    result = undo_last(folder, by="alice")
    assert discarded_ids(folder) == {"000000"}  # the old undo wrote a restore over bob's discard here
    (item,) = result.items
    assert not item.changed and item.state == "discarded" and item.overtaken_by["by"] == "bob"
    message, warn = undo_message(result)
    assert warn and message == ("000000 stays discarded: bob discarded it after your discard, so your undo leaves "
                                "bob's decision in place.")
    assert result.records[0]["overtaken_by"]["by"] == "bob"
    assert "bob's later discard stands" in history_table(folder)[0]["reason"]
    # alice's undo stack moved past it: her next undo does not try again, and bob's own undo still works
    assert not undo_last(folder, by="alice")
    assert undo_message(undo_last(folder, by="bob")) == ("Restored 000000.", False)
    assert discarded_ids(folder) == set()  # alice withdrew hers, so nothing is left under bob's


def test_undoing_a_restore_of_a_withdrawn_discard_keeps_the_sample(folder):
    record_decisions(folder, ["000000"], "discard", by="alice")
    record_decisions(folder, ["000000"], "restore", by="bob")  # bob disagrees, after seeing alice's discard
    message, warn = undo_message(undo_last(folder, by="alice"))
    assert warn and message.startswith("000000 stays kept: bob restored it after your discard")
    assert undo_message(undo_last(folder, by="bob")) == ("Undid your restore of 000000; it stays kept.", False)
    assert discarded_ids(folder) == set()


def test_a_later_restore_by_another_curator_stands_too(folder):
    record_decisions(folder, ["x", "y"], "discard", by="alice")
    record_decisions(folder, ["x"], "restore", by="bob")
    message, warn = undo_message(undo_last(folder, by="alice"))
    assert discarded_ids(folder) == set()
    assert warn and message.startswith("Restored y. x stays kept: bob restored it after your discard")


def test_undo_only_touches_the_curators_own_decisions(folder):
    record_decisions(folder, ["a"], "discard", by="alice")
    record_decisions(folder, ["b"], "discard", by="bob")
    assert undo_message(undo_last(folder, by="alice")) == ("Restored a.", False)
    assert discarded_ids(folder) == {"b"}
    assert not undo_last(folder, by="carol")
    with pytest.raises(DatasetError, match="needs a curator name"):
        undo_last(folder, by="  ")
    assert discarded_ids(folder) == {"b"}


def test_an_undo_that_leaves_an_earlier_identical_decision_says_so(folder):
    record_decisions(folder, ["a"], "discard", by="alice")
    record_decisions(folder, ["a", "b"], "discard", by="alice")  # a table selection with an already discarded one
    message, warn = undo_message(undo_last(folder, by="alice"))
    assert discarded_ids(folder) == {"a"}
    assert not warn and message == "Restored b. Undid your discard of a; it stays discarded (an earlier discard stands)."


def test_the_undo_stack_is_replayed_from_the_log_alone(folder):
    """Issue item 7 (library side): a new session with the same name, in a new process, continues the same stack."""
    record_decisions(folder, ["a"], "discard", by="alice")
    record_decisions(folder, ["b"], "discard", by="alice")
    record_decisions(folder, ["c"], "discard", by="bob")
    undo_last(folder, by="alice")
    log = read_curation(folder)  # what a reloaded page sees: nothing but the file
    assert log.discarded == {"a", "c"}
    assert [[e["id"] for e in batch] for batch in log.undo_stack("alice")] == [["a"]]
    assert [[e["id"] for e in batch] for batch in log.undo_stack("bob")] == [["c"]]
    assert log.state("a") == "discarded" and log.state("b") == "kept" and log.state("zzz") == "kept"


def test_old_logs_without_record_ids_stay_readable(folder):
    """Logs from before undo records: no rid, and an undo was the inverse decision. Same state, and undoable."""
    old = [
        {"id": "a", "decision": "discard", "reason": "", "by": "session-1a2b3c", "time": "2026-01-01T00:00:00.000+00:00",
         "batch": "b1"},
        {"id": "b", "decision": "discard", "reason": "", "by": "session-1a2b3c", "time": "2026-01-01T00:00:01.000+00:00",
         "batch": "b2"},
        {"id": "b", "decision": "restore", "reason": "undo of batch b2", "by": "session-1a2b3c",
         "time": "2026-01-01T00:00:02.000+00:00", "batch": "b3"},
        {"id": "c", "decision": "discard", "reason": "very old", "by": "", "time": "2026-01-01T00:00:03.000+00:00"},
    ]
    (folder / CURATION_FILE).write_text("".join(json.dumps(e) + "\n" for e in old))
    assert read_decisions(folder) == old
    assert discarded_ids(folder) == {"a", "c"}
    assert record_id(old[0]) == "legacy:b1:a" and record_id(old[3]).startswith("legacy:2026-01-01")
    result = undo_last(folder, by="session-1a2b3c")  # the latest old batch is the legacy undo (a restore)
    assert result.records[0]["undoes"] == "legacy:b3:b" and discarded_ids(folder) == {"a", "b", "c"}
    assert undo_message(undo_last(folder, by="session-1a2b3c")) == ("Restored b.", False)
    assert discarded_ids(folder) == {"a", "c"}


def test_a_torn_last_line_does_not_swallow_the_next_decision(folder):
    (folder / CURATION_FILE).write_text('{"id": "a", "decision": "discard", "by": "x"}\n{"id": "b", "decis')
    record_decisions(folder, ["c"], "discard", by="x")
    assert [e["id"] for e in read_decisions(folder)] == ["a", "c"]
    assert discarded_ids(folder) == {"a", "c"}


def test_decisions_need_a_dataset_and_are_one_per_sample(folder, tmp_path):
    with pytest.raises(DatasetError, match="not a PTB-V dataset"):
        record_decisions(tmp_path, ["a"], "discard", by="x")
    with pytest.raises(DatasetError, match="not a PTB-V dataset"):
        undo_last(tmp_path, by="x")
    assert not (tmp_path / CURATION_FILE).exists()
    assert not undo_last(folder, by="x") and not (folder / CURATION_FILE).exists()  # nothing to undo, nothing written
    assert [e["id"] for e in record_decisions(folder, ["a", "a", "b"], "discard", by="x")] == ["a", "b"]
    assert decision_message(["a", "b"], "discard") == "Discarded a, b."
    assert decision_message([f"{i:06d}" for i in range(8)], "restore") == (
        "Restored 000000, 000001, 000002, 000003, 000004, 000005 and 2 more.")
