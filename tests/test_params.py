"""The parameter schema: one table for CLI, presets and sliders; every error names the parameter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecgcore.synth.params import PARAMS, SCHEMA, STAGES, Preset, PresetError, pdf

PROTOTYPE = {
    "original_image_scaling_factor": ("normal", (1.0, 0.0)),
    "blur_factor": ("normal", (0.1, 0.05)),
    "ecg_paper_scale": ("normal", (1.02, 0.02)),
    "ecg_paper_y_skew": ("normal", (1.0, 0.08)),
    "rotation_angle": ("normal", (0.0, 1.5)),
    "ecg_paper_relative_translation_x": ("normal", (0.0, 0.05)),
    "ecg_paper_relative_translation_y": ("normal", (0.0, 0.05)),
    "shadow_color": ("beta", (0.3, 0.3)),
    "shadow_alpha": ("beta", (8.0, 25.0)),
    "shadow_relative_start_point": ("normal", (0.0, 0.1)),
    "shadow_relative_end_point": ("normal", (1.0, 0.1)),
    "shadow_blur_factor": ("normal", (50.0, 3.0)),
    "white_noise_p": ("beta", (5.0, 5.0)),
    "white_noise_sd": ("normal", (20.0, 5.0)),
}


def test_schema_has_every_prototype_parameter_with_its_default():
    for name, (kind, args) in PROTOTYPE.items():
        assert PARAMS[name].default.kind == kind, name
        assert PARAMS[name].default.args == args, name


def test_every_param_is_documented_and_staged():
    for p in SCHEMA:
        assert p.stage in STAGES and len(p.help) > 15, p.name
        if not p.categorical:
            assert p.low < p.high


def test_sampling_is_deterministic_and_within_bounds():
    preset = Preset()
    draws = [preset.sample(seed) for seed in range(300)]
    assert preset.sample(5) == draws[5]
    for p in SCHEMA:
        values = [d[p.name] for d in draws]
        if not p.categorical:
            assert min(values) >= p.low and max(values) <= p.high, p.name
    angles = np.array([d["rotation_angle"] for d in draws])
    assert abs(angles.mean()) < 0.3 and 1.2 < angles.std() < 1.8
    shadow = np.array([d["shadow_color"] for d in draws])
    assert ((shadow < 0.2) | (shadow > 0.8)).mean() > 0.5  # Beta(0.3, 0.3) is U-shaped


def test_changing_one_distribution_leaves_other_draws_alone():
    base = Preset().sample(42)
    moved = Preset.from_json({"rotation_angle": {"dist": "normal", "mu": 5, "sd": 1}}).sample(42)
    assert moved["rotation_angle"] != base["rotation_angle"]
    assert {k: v for k, v in moved.items() if k != "rotation_angle"} == {
        k: v for k, v in base.items() if k != "rotation_angle"
    }


def test_preset_round_trips_through_json(tmp_path):
    preset = Preset.from_json({"rotation_angle": {"dist": "uniform", "low": -5, "high": 5}, "jpeg_quality": 40,
                               "background": {"dist": "choice", "options": ["wood", "desk"], "weights": [1, 3]}})
    path = tmp_path / "p.json"
    path.write_text(json.dumps(preset.to_json()))
    again = Preset.load(path)
    assert again.dists == preset.dists
    assert set(again.diff()) == {"rotation_angle", "jpeg_quality", "background"}


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"rotaton_angle": 3}, "unknown parameter 'rotaton_angle'"),
        ({"rotation_angle": 90}, "parameter 'rotation_angle': value = 90 is out of range"),
        ({"blur_factor": {"dist": "normal", "mu": 1, "sd": -1}}, "parameter 'blur_factor': sd = -1"),
        ({"shadow_alpha": {"dist": "gamma", "k": 2}}, "parameter 'shadow_alpha': unknown distribution 'gamma'"),
        ({"white_noise_sd": {"dist": "normal", "mu": 20}}, "parameter 'white_noise_sd': normal needs mu, sd"),
        ({"background": "marble"}, "parameter 'background': 'marble' is not one of"),
        ({"jpeg_quality": {"dist": "normal", "mu": "high", "sd": 1}}, "parameter 'jpeg_quality'"),
        ([1, 2], "a preset must be a JSON object"),
    ],
)
def test_bad_presets_name_the_parameter(spec, message):
    with pytest.raises(PresetError, match=message.replace("(", r"\(")):
        Preset.from_json(spec)


def test_bad_preset_files(tmp_path):
    with pytest.raises(PresetError, match="does not exist"):
        Preset.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PresetError, match="not valid JSON"):
        Preset.load(bad)


def test_pdf_integrates_to_one_and_marks_constants():
    for name in ("rotation_angle", "shadow_alpha", "white_noise_p"):
        p = PARAMS[name]
        x, y = pdf(p, p.default)
        assert np.trapezoid(y, x) == pytest.approx(1.0, abs=0.05), name
    x, y = pdf(PARAMS["jpeg_quality"], PARAMS["jpeg_quality"].default)
    assert y.argmax() == np.abs(x - 95).argmin()


def test_categorical_constant_round_trips():
    preset = Preset.from_json({"background": "wood"})
    again = Preset.from_json(json.loads(json.dumps(preset.to_json())))
    assert again.dists["background"] == preset.dists["background"]
    assert again.sample(1)["background"] == "wood"
