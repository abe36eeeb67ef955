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


def test_sentences_quote_the_name_as_typed():
    with pytest.raises(WorkspaceError) as info:
        check_name("a\\b", what="preset name")
    assert "the preset name 'a\\b' contains a path" in str(info.value)  # one backslash, as typed
    assert "without '/', '\\' or '..'" in str(info.value)
    with pytest.raises(WorkspaceError) as info:
        check_name("tab\there", what="file name")
    assert "'tab\\there'" in str(info.value) and "\t" not in str(info.value)  # unprintable: escaped, one line


def test_a_suffix_is_added_after_the_check_so_the_sentence_is_about_the_typed_name(tmp_path):
    assert safe_join(tmp_path, "harsh", suffix=".json") == tmp_path.resolve() / "harsh.json"
    assert safe_join(tmp_path, "harsh.json", suffix=".json") == tmp_path.resolve() / "harsh.json"
    assert safe_join(tmp_path, "x" * 118, suffix=".json").name == "x" * 118 + ".json"  # the limit is the typed name's
    for typed, words in (("", "is empty"), ("x" * 121, "up to 120"), (".json", "'.json' is not allowed")):
        with pytest.raises(WorkspaceError) as info:
            safe_join(tmp_path, typed, what="preset name", suffix=".json")
        assert words in str(info.value)
        assert typed.endswith(".json") or ".json" not in str(info.value)  # no suffix the user did not type


def test_unique_path_keeps_both(tmp_path):
    from ecgcore.workspace import unique_path

    assert unique_path(tmp_path / "a.json") == tmp_path / "a.json"
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "a-2.json").write_text("{}")
    assert unique_path(tmp_path / "a.json") == tmp_path / "a-3.json"


@pytest.mark.parametrize("sentence", ["the file name 'a\\b' contains a path; use a plain name without '/', '\\' or '..'.",
                                      "the run name '*bold* _it_ [x](y) `c` $m$ <b> #h' is not allowed."])
def test_pages_show_sentences_literally(sentence):
    """st.error's text is Markdown; pages.plain escapes it so that CommonMark shows every character as typed."""
    import re

    from pages import plain

    escaped = plain(sentence)
    assert not re.search(r"(?<!\\)[*_`\[\]$<#]", escaped.replace("\\\\", ""))  # nothing left to format
    assert re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", escaped) == sentence  # CommonMark's unescape gives it back
