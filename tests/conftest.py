"""Shared fixtures. Tests that need the shared real data find it through environment variables that default to
../shared/..., and skip with the reason when it is absent; everything else runs on data the tests make."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PTBXL_SUBSET = Path(os.environ.get("ECGLAB_PTBXL_SUBSET", REPO.parent / "shared" / "data" / "ptbxl-subset"))
REAL_IMAGES = Path(os.environ.get("ECGLAB_REAL_IMAGES", REPO.parent / "shared" / "data" / "real-ecg-images"))


@pytest.fixture(scope="session")
def ptbxl_dir() -> Path:
    if not (PTBXL_SUBSET / "ptbxl_database.csv").is_file():
        pytest.skip(f"PTB-XL subset not found at {PTBXL_SUBSET} (set ECGLAB_PTBXL_SUBSET); CI has it")
    return PTBXL_SUBSET


@pytest.fixture(scope="session")
def ptbxl(ptbxl_dir):
    from ecgcore.signals import PtbXl

    return PtbXl(ptbxl_dir)


@pytest.fixture(scope="session")
def real_images_dir() -> Path:
    if not REAL_IMAGES.is_dir():
        pytest.skip(f"real ECG images not found at {REAL_IMAGES} (set ECGLAB_REAL_IMAGES); CI has them")
    return REAL_IMAGES


@pytest.fixture(scope="session")
def synthetic():
    from ecgcore.signals import synthetic_record

    return synthetic_record(seed=7)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Iterator[Path]:
    """A small synthetic PTB-V dataset (8 samples, all layouts, 800x600), made once per test session."""
    from pipelines.generate_ptb_v import main

    out = tmp_path_factory.mktemp("ptbv") / "tiny"
    code = main(["--synthetic", "--out", str(out), "-n", "8", "--seed", "3", "--size", "800x600",
                 "--layout", "seed-3x4,3x4+II,6x2,12x1"])
    assert code == 0
    yield out
    # Shared by the whole session: a test that curates it must work on a copy, or later copies inherit its decisions.
    assert not (out / "curation.jsonl").exists(), "a test wrote curation decisions into the shared tiny_dataset"


@pytest.fixture
def curation_folder(tmp_path) -> Path:
    """An empty PTB-V dataset folder: the curation log needs the folder (its dataset.json), not its samples."""
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "dataset.json").write_text("{}\n")
    return folder


def open_app_page(page: str, workspace: Path, monkeypatch):
    """The app started in AppTest on a fresh workspace without PTB-XL, switched to ``page``, with no exception."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ECGLAB_WORKSPACE", str(workspace))
    monkeypatch.delenv("ECGLAB_PTBXL", raising=False)
    at = AppTest.from_file("../app.py", default_timeout=60).run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at
