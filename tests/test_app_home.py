"""Home, driven through AppTest: data sources, datasets, models (with the missing ones named) and page links."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from ecgcore.app.home import model_cards


@pytest.fixture
def home(tmp_path, monkeypatch, tiny_dataset):
    import shutil

    shutil.copytree(tiny_dataset, tmp_path / "ws" / "datasets" / "tiny")
    monkeypatch.setenv("ECGLAB_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("ECGLAB_PTBXL", raising=False)
    return AppTest.from_file("../app.py", default_timeout=60)


def test_home_lists_datasets_models_and_links(home):
    at = home.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [h.value for h in at.header] == ["Data sources", "Datasets in the workspace", "Models"]
    datasets = at.dataframe[0].value
    assert datasets.loc[0, "dataset"] == "tiny" and datasets.loc[0, "samples"] == 8
    models = at.dataframe[1].value
    assert set(models["model"]) >= {"segmentation_unet", "classifier_signal", "classifier_image"}
    links = {link.label for link in at.get("page_link")}
    assert links == {"Augmentation Studio", "Jobs", "Curation", "Classify"}
    assert all(link.proto.icon.startswith(":material/") for link in at.get("page_link"))
    assert any("PTB-XL is not configured" in w.value for w in at.warning)


def test_icons_are_material_symbols_not_emoji():
    """Emoji show as empty boxes where no emoji font is installed; Streamlit's Material icons come with the app."""
    import re

    from tests.conftest import REPO

    emoji = re.compile("[\u2190-\u2bff\u2600-\u27bf\ufe0f\U0001f000-\U0001ffff]")
    for path in [REPO / "app.py", *sorted((REPO / "pages").glob("*.py"))]:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            assert not emoji.search(line), f"{path.name}:{number}: {line.strip()}"


def test_home_shows_ptbxl_when_configured(home, ptbxl_dir, monkeypatch):
    monkeypatch.setenv("ECGLAB_PTBXL", str(ptbxl_dir))
    at = home.run()
    assert any("PTB-XL: 2,101 records" in s.value for s in at.success)
    classes = at.dataframe[0].value
    assert classes["records"].sum() == 2101


def test_missing_models_are_named_with_the_command_that_makes_them(tmp_path):
    rows = model_cards(tmp_path)  # an empty weights folder
    assert {r["model"]: r["status"] for r in rows} == {
        "segmentation_unet": "missing", "classifier_signal": "missing", "classifier_image": "optional, not installed"}
    assert all("python -m pipelines.train_" in r["command"] for r in rows)


def _signal_weights(path):
    import torch

    from ecgcore.classify import classifiers as classify
    torch.manual_seed(0)
    model = classify.build_model("signal", dict(classify.SIGNAL_CONFIG))
    model.config = dict(classify.SIGNAL_CONFIG)
    classify.save_weights(path, "signal", model, card={"summary": {"mi_auroc": 0.5}})
    return path


def test_a_trained_run_can_be_made_the_active_model(home, tmp_path):
    from ecgcore.app.home import read_active

    weights = _signal_weights(tmp_path / "ws" / "runs" / "my-run" / "classifier_signal.safetensors")
    at = home.run()
    box = at.selectbox(key="home_active_signal")
    assert box.options[-1] == "runs/my-run/classifier_signal.safetensors"
    box.set_value(str(weights)).run()
    assert read_active(tmp_path / "ws")["signal"] == str(weights)
    assert any("Classify now uses" in s.value for s in at.success)
    at.run()
    assert at.selectbox(key="home_active_signal").value == str(weights)  # kept for the next session too


def test_a_segmentation_card_shows_each_held_out_sets_curve_iou():
    from ecgcore.app.home import headline_metrics

    sets = ("default", "harsh", "3x4+II", "device", "black")
    card = {"held_out": {name: {"iou_curve": 0.7 + i / 100, "curve_iou_median": 0.5, "iou_grid_x": 0.8}
                         for i, name in enumerate(sets)}}
    assert headline_metrics(card) == {f"{name} curve IoU": 0.7 + i / 100 for i, name in enumerate(sets)}
