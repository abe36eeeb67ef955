"""The Augmentation Studio, driven through Streamlit's AppTest: every schema parameter has its widgets, a slider move
re-renders the preview within budget, presets save / load / refuse bad input, and the hand-over to Jobs."""

from __future__ import annotations

import json
import re

import pytest
from streamlit.testing.v1 import AppTest

from ecgcore.synth.params import SCHEMA
from tests.conftest import open_app_page

STUDIO = "pages/1_Augmentation_Studio.py"


@pytest.fixture
def studio(tmp_path, monkeypatch):
    return open_app_page(STUDIO, tmp_path / "ws", monkeypatch)


def _ms(at, label):
    return float(re.match(r"(\d+) ms", next(m.value for m in at.metric if m.label.startswith(label))).group(1))


def test_every_schema_parameter_has_a_widget_grouped_by_stage(studio):
    keys = {w.key for w in [*studio.selectbox, *studio.multiselect, *studio.slider] if w.key}
    for param in SCHEMA:
        part = "options" if param.categorical else "kind"
        assert f"p:{param.name}:{part}" in keys, param.name
    assert studio.selectbox(key="p:rotation_angle:kind").value == "normal"
    assert studio.slider(key="p:rotation_angle:mu").value == 0.0
    assert studio.selectbox(key="p:rotation_angle:kind").help.startswith("Counter-clockwise rotation")
    stage_titles = [e.label for e in studio.sidebar.expander]
    assert "Paper geometry" in stage_titles and "Sensor noise and compression" in stage_titles
    assert [t.label for t in studio.tabs] == ["Distributions", "Grid of draws", "Diff vs defaults",
                                              "Presets and dataset"]


def test_a_slider_move_re_renders_the_preview_and_shows_the_time(studio):
    before = studio.image[0].value
    studio.slider(key="p:rotation_angle:mu").set_value(20.0).run()
    assert not studio.exception
    assert studio.image[0].value != before
    # Measured and shown; the 250 ms budget is for the preview re-render on the 2-core machine, with headroom
    # here because the test machine is shared with other jobs.
    assert 0 < _ms(studio, "Re-render") < 1500
    assert _ms(studio, "Whole page run") > 0
    diff = studio.dataframe[0].value
    assert diff["parameter"].tolist() == ["rotation_angle"]
    assert "mu=20" in diff["current"].iloc[0]


def test_switching_the_distribution_kind_offers_its_own_arguments(studio):
    studio.selectbox(key="p:shadow_alpha:kind").set_value("uniform").run()
    low, high = studio.slider(key="p:shadow_alpha:range").value
    assert 0.0 <= low < high <= 1.0
    studio.selectbox(key="p:jpeg_quality:kind").set_value("constant").run()
    assert studio.slider(key="p:jpeg_quality:value").value == 95


def test_grid_of_draws_on_demand(studio):
    studio.slider(key="studio_k").set_value(3).run()
    n_images = len(studio.image)
    studio.button(key="studio_draw").click().run()
    assert len(studio.image) == n_images + 3
    assert any("3 draws in" in c.value for c in studio.caption)


def test_presets_save_load_and_refuse_bad_files(studio, tmp_path):
    studio.slider(key="p:white_noise_sd:mu").set_value(40.0).run()
    studio.text_input(key="studio_preset_name").input("noisy").run()
    studio.button(key="studio_save").click().run()
    saved = tmp_path / "ws" / "presets" / "noisy.json"
    assert json.loads(saved.read_text())["params"]["white_noise_sd"] == {"dist": "normal", "mu": 40.0, "sd": 5.0}

    studio.button(key="studio_reset").click().run()
    assert studio.slider(key="p:white_noise_sd:mu").value == 20.0
    studio.selectbox(key="studio_saved").set_value("noisy.json").run()
    studio.button(key="studio_load_saved").click().run()
    assert studio.slider(key="p:white_noise_sd:mu").value == 40.0

    bad = json.dumps({"rotation_angle": {"dist": "normal", "mu": 99, "sd": 1}}).encode()
    studio.file_uploader(key="studio_upload").set_value(("bad.json", bad, "application/json")).run()
    studio.button(key="studio_load_upload").click().run()
    assert any("rotation_angle" in e.value and "out of range" in e.value for e in studio.error)
    assert studio.slider(key="p:white_noise_sd:mu").value == 40.0  # nothing changed


def test_a_preset_name_with_a_path_is_refused(studio, tmp_path):
    studio.text_input(key="studio_preset_name").input("../../evil").run()
    studio.button(key="studio_save").click().run()
    assert any("preset name" in e.value for e in studio.error)
    assert not list((tmp_path / "ws").rglob("evil*"))


def test_generate_a_dataset_hands_over_to_jobs(studio, tmp_path):
    studio.slider(key="p:rotation_angle:sd").set_value(4.0).run()
    studio.text_input(key="studio_ds_name").input("rotated").run()
    studio.button(key="studio_to_jobs").click().run()
    assert not studio.exception, [e.value for e in studio.exception]
    assert studio.text_input(key="gen_name").value == "rotated"
    preset = json.loads((tmp_path / "ws" / "presets" / "rotated.json").read_text())
    assert preset["params"]["rotation_angle"]["sd"] == 4.0
    assert any("rotated.json" in i.value for i in studio.info)


def test_folder_background_uses_the_workspace_photos_or_says_what_is_missing(studio, tmp_path):
    studio.multiselect(key="p:background:options").set_value(["folder"]).run()
    assert not studio.exception
    assert any("backgrounds" in w.value and "folder" in w.value for w in studio.warning)
    assert studio.image  # the preview still renders, without 'folder'

    import cv2
    import numpy as np

    folder = tmp_path / "ws" / "backgrounds"
    folder.mkdir(exist_ok=True)
    cv2.imwrite(str(folder / "table.png"), np.full((300, 400, 3), (40, 90, 160), np.uint8))
    studio.run()
    assert not studio.warning and not studio.exception
    assert studio.dataframe[0].value["parameter"].tolist() == ["background"]


def test_ptbxl_records_can_be_the_source(tmp_path, monkeypatch, ptbxl_dir):
    monkeypatch.setenv("ECGLAB_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("ECGLAB_PTBXL", str(ptbxl_dir))
    at = AppTest.from_file("../app.py", default_timeout=60).run()
    at.switch_page(STUDIO).run()
    at.radio(key="studio_source").set_value("PTB-XL record").run()
    at.selectbox(key="studio_label").set_value("mi").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.value.startswith("mi - scp_codes") for c in at.caption)
    first = at.image[0].value
    at.selectbox(key="studio_ecg_id").select_index(1).run()
    assert at.image[0].value != first


def test_widget_state_round_trips_every_preset():
    from ecgcore.app.studio import preset_from_state, preset_json, state_from_preset
    from ecgcore.synth.params import Preset, constant
    from ecgcore.workspace import PRESETS_DIR

    presets = [Preset(), Preset({"background": constant("cloth")})]
    presets += [Preset.load(p) for p in sorted(PRESETS_DIR.glob("*.json"))]
    for preset in presets:
        again = preset_from_state(state_from_preset(preset))
        assert again.diff(preset) == {}
        assert Preset.from_json(json.loads(json.dumps(preset_json(preset)))).diff(preset) == {}


def _as_shown(markdown: str) -> str:
    """What CommonMark shows for an escaped sentence (pages.plain escapes every punctuation character)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def test_preset_name_sentences_are_about_what_was_typed(studio, tmp_path):
    for typed, words in (("", "the preset name is empty"), ("a\\b", "the preset name 'a\\b' contains a path"),
                         ("x" * 121, "'" + "x" * 121 + "' is not allowed; use up to 120")):
        studio.text_input(key="studio_preset_name").set_value(typed)
        studio.button(key="studio_save").click().run()
        shown = [_as_shown(e.value) for e in studio.error]
        assert len(shown) == 1 and words in shown[0] and ".json" not in shown[0], (typed, shown)
    studio.text_input(key="studio_preset_name").set_value("a\\b")
    studio.button(key="studio_save").click().run()
    assert "without '/', '\\' or '..'" in _as_shown(studio.error[0].value)  # the backslash survives Markdown
    studio.text_input(key="studio_preset_name").set_value("x" * 118)  # 118 + '.json' is fine: the name is 118 long
    studio.button(key="studio_save").click().run()
    assert not studio.error and (tmp_path / "ws" / "presets" / ("x" * 118 + ".json")).is_file()


def test_saving_over_an_existing_preset_asks_first(studio, tmp_path):
    presets = tmp_path / "ws" / "presets"
    studio.text_input(key="studio_preset_name").set_value("noisy")
    studio.button(key="studio_save").click().run()
    first = (presets / "noisy.json").read_text()

    studio.slider(key="p:white_noise_sd:mu").set_value(40.0).run()
    studio.button(key="studio_save").click().run()
    assert (presets / "noisy.json").read_text() == first  # not overwritten unasked
    assert any("'noisy.json' is already in the workspace presets folder" in _as_shown(w.value) for w in studio.warning)
    studio.button(key="studio_save_pending_keep").click().run()
    assert (presets / "noisy.json").read_text() == first
    assert json.loads((presets / "noisy-2.json").read_text())["params"]["white_noise_sd"]["mu"] == 40.0
    assert not studio.warning and any("Saved noisy-2.json" in _as_shown(s.value) for s in studio.success)

    studio.button(key="studio_save").click().run()
    studio.button(key="studio_save_pending_replace").click().run()
    assert json.loads((presets / "noisy.json").read_text())["params"]["white_noise_sd"]["mu"] == 40.0
    studio.button(key="studio_save").click().run()
    studio.button(key="studio_save_pending_cancel").click().run()
    assert not studio.warning and sorted(p.name for p in presets.iterdir()) == ["noisy-2.json", "noisy.json"]


def test_continue_in_jobs_keeps_a_preset_of_the_same_name(studio, tmp_path):
    presets = tmp_path / "ws" / "presets"
    presets.mkdir(parents=True, exist_ok=True)
    (presets / "rotated.json").write_text('{"note": "the user\'s own preset"}\n')
    studio.text_input(key="studio_ds_name").input("rotated").run()
    studio.button(key="studio_to_jobs").click().run()
    assert not studio.exception, [e.value for e in studio.exception]
    assert (presets / "rotated.json").read_text() == '{"note": "the user\'s own preset"}\n'
    assert "params" in json.loads((presets / "rotated-2.json").read_text())


def test_new_seed_at_the_largest_seed_starts_again_and_says_so(studio):
    from ecgcore.constants import SEED_MAX

    studio.number_input(key="studio_seed").set_value(SEED_MAX - 1).run()
    studio.button(key="studio_new_seed").click().run()
    assert studio.number_input(key="studio_seed").value == SEED_MAX and not studio.exception
    studio.button(key="studio_new_seed").click().run()
    assert studio.number_input(key="studio_seed").value == 0
    assert any(f"{SEED_MAX} is the largest seed" in c.value for c in studio.caption)


def test_shipped_mixed_preset_loads_into_the_print_widgets(studio):
    studio.selectbox(key="studio_saved").set_value("shipped: mixed.json").run()
    studio.button(key="studio_load_saved").click().run()
    assert not studio.exception, [e.value for e in studio.exception]
    assert set(studio.multiselect(key="p:capture:options").value) == {"photo", "scan"}
    assert "row_end" in studio.multiselect(key="p:pulse_place:options").value
    assert _ms(studio, "Re-render") < 2000
