"""User-given names stay inside the workspace: dataset names, preset names and upload names go through safe_join."""

from __future__ import annotations

import os

import pytest

from ecgcore.workspace import WorkspaceError, check_name, confine, list_datasets, safe_join, workspace_root


def test_plain_names_join_inside_the_root(tmp_path):
    assert safe_join(tmp_path, "my-dataset") == tmp_path.resolve() / "my-dataset"
    assert safe_join(tmp_path, "  harsh preset v2.json ") == tmp_path.resolve() / "harsh preset v2.json"


@pytest.mark.parametrize(
    "name",
    ["../escape", "..", "a/../../b", "/etc/passwd", "sub/dir", "..\\windows", ".hidden", "", "   ", "a\x00b",
     "x" * 200, "name..", "-rf"],
)
def test_traversal_and_odd_names_are_refused_with_one_sentence(tmp_path, name):
    with pytest.raises(WorkspaceError) as info:
        safe_join(tmp_path, name, what="dataset name")
    message = str(info.value)
    assert "dataset name" in message and message.endswith(".") and "\n" not in message


def test_a_symlink_pointing_outside_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(WorkspaceError, match="outside"):
        safe_join(root, "link")


def test_confine_accepts_paths_inside_and_refuses_the_rest(tmp_path):
    (tmp_path / "datasets").mkdir()
    assert confine(tmp_path, "datasets/a") == tmp_path.resolve() / "datasets" / "a"
    assert confine(tmp_path, tmp_path / "runs") == tmp_path.resolve() / "runs"
    with pytest.raises(WorkspaceError):
        confine(tmp_path, "../elsewhere")
    with pytest.raises(WorkspaceError):
        confine(tmp_path, "/tmp")


def test_workspace_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGLAB_WORKSPACE", str(tmp_path / "ws"))
    assert workspace_root() == (tmp_path / "ws").resolve()
    assert (tmp_path / "ws").is_dir()


def test_list_datasets_finds_only_ptbv_folders(tmp_path):
    datasets = tmp_path / "datasets"
    (datasets / "real").mkdir(parents=True)
    (datasets / "real" / "dataset.json").write_text("{}")
    (datasets / "empty").mkdir()
    assert [p.name for p in list_datasets(tmp_path)] == ["real"]


def test_check_name_returns_the_stripped_name():
    assert check_name(" run-1 ") == "run-1"
