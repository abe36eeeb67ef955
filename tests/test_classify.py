"""Classification: labels, the signal model's input, the models, training, calibration, weights, the end-to-end
analysis and the classify command's JSON contract."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgcore.classify.classifiers import (
    DEFAULT_IMAGE_WEIGHTS,
    DEFAULT_SIGNAL_WEIGHTS,
    IMAGE_CONFIG,
    SIGNAL_CONFIG,
    Classifiers,
    ImageNet,
    SignalEnsemble,
    build_model,
    layout_mask,
    load_model,
    prepare_signal,
    save_weights,
)
from ecgcore.constants import LABEL_INDEX, LABELS, LEAD_INDEX, MI_CODES
from ecgcore.errors import ModelError
from ecgcore.signals import label_from_scp, synthetic_record
from ecgcore.train.image_trainer import focal_loss
from ecgcore.train.metrics import auroc, classification_metrics, expected_calibration_error, fit_temperature, softmax
from ecgcore.train.signal_trainer import (
    NoiseOptions,
    SignalSet,
    SignalTrainConfig,
    aux_target_names,
    digitization_noise,
    evaluation_inputs,
    train_signal_member,
)

REPO = Path(__file__).resolve().parents[1]
TINY_SIGNAL = {**SIGNAL_CONFIG, "widths": [8, 16], "kernel": 5, "stem_kernel": 7, "dropout": 0.0}
TINY_IMAGE = {**IMAGE_CONFIG, "widths": [4, 8, 8, 8, 8], "dropout": 0.0}


# --- labels ------------------------------------------------------------------------------------------------


def test_label_rule_follows_the_seed():
    assert LABELS == ("normal", "non_mi_abnormality", "mi")
    assert label_from_scp({"NORM": 100.0}) == "normal"
    assert label_from_scp({"NORM": 80.0}) == "normal"
    assert label_from_scp({"NORM": 50.0, "SR": 0.0}) == "non_mi_abnormality"
    assert label_from_scp({"LVH": 100.0}) == "non_mi_abnormality"
    # Any MI code wins, even beside a confident NORM and whatever its own likelihood.
    for code in MI_CODES:
        assert label_from_scp({"NORM": 100.0, code: 0.0}) == "mi"
    assert label_from_scp({"IMI": 15.0, "LVH": 100.0}) == "mi"


def test_label_counts_of_the_ptbxl_subset_match_its_notice(ptbxl):
    counts = ptbxl.metadata["label"].value_counts().to_dict()
    assert counts == {"normal": 894, "non_mi_abnormality": 732, "mi": 475}


def test_statements_name_codes_classes_and_subclasses(ptbxl):
    """Auxiliary targets: each record's SCP codes, and the diagnostic class and subclass of its diagnostic codes."""
    df = ptbxl.metadata
    imi = next(i for i, codes in df["scp_codes"].items() if "IMI" in codes)
    have = ptbxl.statements(imi)
    assert {"scp:IMI", "class:MI", "subclass:IMI"} <= have
    norm = next(i for i, codes in df["scp_codes"].items() if set(codes) == {"NORM", "SR"})
    assert ptbxl.statements(norm) == {"scp:NORM", "scp:SR", "class:NORM", "subclass:NORM"}  # SR is a rhythm


def test_aux_targets_are_the_frequent_statements():
    data = SignalSet(np.zeros((4, 10, 12), np.float32), np.zeros(4, np.int64), np.arange(4),
                     [{"scp:A", "scp:B"}, {"scp:A"}, {"scp:A", "scp:C"}, {"scp:B"}])
    names = aux_target_names(data, min_count=2)
    assert names == ["scp:A", "scp:B"]
    np.testing.assert_array_equal(data.aux_matrix(names), [[1, 1], [1, 0], [1, 0], [0, 1]])


# --- the signal model's input --------------------------------------------------------------------------


def test_layout_masks_show_what_each_layout_prints():
    seed = layout_mask("seed-3x4")
    assert seed.shape == (1000, 12) and (seed.sum(axis=0) == 180).all() and not seed[180:].any()
    clinical = layout_mask("3x4+II")
    assert clinical[:, LEAD_INDEX["II"]].all()  # the 10 s rhythm strip
    assert clinical[:250, LEAD_INDEX["I"]].all() and not clinical[250:, LEAD_INDEX["I"]].any()
    assert clinical[750:, LEAD_INDEX["V6"]].all() and not clinical[:750, LEAD_INDEX["V6"]].any()
    assert (layout_mask("6x2").sum(axis=0) == 500).all()
    assert layout_mask("12x1").all()


def test_prepare_signal_masks_centres_and_pads():
    record = synthetic_record(seed=1)
    shown = np.where(layout_mask("3x4+II"), record.signal + 0.7, np.nan)  # a digitiser's baseline offset
    x = prepare_signal(shown[:900], fs=100)  # shorter than 10 s: padded
    assert x.shape == (24, 1000) and x.dtype == np.float32
    observed = x[12:] > 0
    assert not observed[:, 900:].any()
    assert (observed[:, :900] == layout_mask("3x4+II")[:900].T).all()
    assert (x[:12][~observed] == 0).all()
    lead_i = x[LEAD_INDEX["I"], :250]
    assert abs(np.median(lead_i)) < 1e-6  # the offset is gone
    # The same record at 500 Hz gives (nearly) the same input.
    record500 = synthetic_record(seed=1, fs=500)
    x500 = prepare_signal(record500.signal, fs=500)
    x100 = prepare_signal(synthetic_record(seed=1).signal, fs=100)
    assert x500.shape == (24, 1000)
    assert np.corrcoef(x500[1], x100[1])[0, 1] > 0.9


def test_prepare_signal_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match="12"):
        prepare_signal(np.zeros((1000, 8)))


def test_digitization_noise_keeps_only_the_layout_windows():
    record = synthetic_record(seed=2)
    rng = np.random.default_rng(0)
    for layout in ("seed-3x4", "3x4+II", "6x2", "12x1"):
        noisy = digitization_noise(record.signal, rng, layout, clean=False)
        assert noisy.shape == (1000, 12)
        assert not np.isfinite(noisy[~layout_mask(layout)]).any()
        assert np.isfinite(noisy).mean() > 0.5 * layout_mask(layout).mean()
    clean = digitization_noise(record.signal, np.random.default_rng(1), "12x1", clean=True)
    np.testing.assert_allclose(clean, record.signal, atol=1e-5)
    a = digitization_noise(record.signal, np.random.default_rng(5), "6x2", clean=False)
    b = digitization_noise(record.signal, np.random.default_rng(5), "6x2", clean=False)
    np.testing.assert_array_equal(a, b)
    # Noise imitates digitisation error; it must not bury the signal: amplitudes stay, and the waveform of the
    # first second matches the clean one up to a small time shift.
    lead = LEAD_INDEX["II"]
    noisy, clean_ii = a[:100, lead], record.signal[:100, lead]
    clean_range = clean_ii.max() - clean_ii.min()
    assert 0.5 * clean_range < np.nanmax(noisy) - np.nanmin(noisy) < 2.0 * clean_range
    best = max(np.corrcoef(np.roll(clean_ii, lag)[10:90], noisy[10:90])[0, 1] for lag in range(-8, 9))
    assert best > 0.7


# --- models --------------------------------------------------------------------------------------------


def test_model_output_shapes():
    signal_model = SignalEnsemble({**SIGNAL_CONFIG, "members": 2}).eval()
    x = torch.from_numpy(np.stack([prepare_signal(synthetic_record(seed=s).signal) for s in range(3)]))
    assert signal_model(x).shape == (3, 3)
    image_model = ImageNet(IMAGE_CONFIG).eval()
    assert image_model(torch.zeros(2, 3, 640, 640)).shape == (2, 3)
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("text", {})


def test_signal_model_ignores_what_is_not_observed():
    """Values under a 0 mask never reach the model (prepare_signal zeroes them), and masked pooling ignores the
    unobserved stretch: the seed layout's 1.8 s gives the same answer whatever length of padding follows."""
    model = SignalEnsemble(TINY_SIGNAL).eval()
    record = synthetic_record(seed=3)
    short = np.where(layout_mask("seed-3x4"), record.signal, np.nan)[:180]
    a = prepare_signal(short)
    b = prepare_signal(np.where(layout_mask("seed-3x4"), record.signal, np.nan))
    np.testing.assert_array_equal(a, b)
    with torch.no_grad():
        assert torch.allclose(model(torch.from_numpy(a[None])), model(torch.from_numpy(b[None])))


# --- training on separable synthetic data -----------------------------------------------------------------


class QuietReporter:
    """A training reporter that prints nothing and keeps the log messages (for tests that read them)."""

    def __init__(self):
        self.messages: list[str] = []

    def log(self, message):
        self.messages.append(message)

    def metrics(self, *_a, **_k):
        pass

    def advance(self, *_a, **_k):
        pass


def _separable_signals(n: int, seed: int) -> SignalSet:
    """Synthetic records whose class is visible in every layout: class 1 has tall precordial waves, class 2
    inverted limb leads."""
    labels = np.arange(n) % 3
    signals = []
    for i, label in enumerate(labels):
        s = synthetic_record(seed=seed * 1000 + i).signal.copy()
        if label == 1:
            s[:, 6:] *= 3.0
        elif label == 2:
            s[:, :6] *= -1.0
        signals.append(s)
    return SignalSet(np.stack(signals).astype(np.float32), labels.astype(np.int64), np.arange(n))


def test_short_signal_training_beats_chance(tmp_path):
    torch.set_num_threads(1)
    train, val, test = _separable_signals(96, 1), _separable_signals(30, 2), _separable_signals(45, 3)
    cfg = SignalTrainConfig(epochs=6, batch_size=16, lr=1e-2, patience=6, model=dict(TINY_SIGNAL))
    options = NoiseOptions()
    val_inputs = {k: v for k, v in evaluation_inputs(val, seed=0, options=options).items() if k.startswith("noisy/")}

    best = train_signal_member(0, cfg, train, val_inputs, val.labels, tmp_path, QuietReporter())
    assert (tmp_path / "member0" / "done.json").is_file() and (tmp_path / "member0" / "checkpoint.pt").is_file()
    model = build_model("signal", {**TINY_SIGNAL, "members": 1})
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(best)))
    model.eval()
    inputs = evaluation_inputs(test, seed=1, options=options)["noisy/3x4+II"]
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(inputs)).argmax(1).numpy() == test.labels).mean()
    assert accuracy > 0.6  # chance is 1/3


def _trained_aux_head(tmp_path: Path, aux_weight: float) -> tuple[SignalEnsemble, np.ndarray, np.ndarray]:
    """Train a tiny model for 8 epochs on records whose class says nothing, with one auxiliary statement ("scp:INV":
    the limb leads are inverted) on every other record. Returns the last epoch's model and noisy 6x2 test inputs
    with their statement."""
    torch.set_num_threads(1)

    def records(n: int, seed: int) -> tuple[SignalSet, np.ndarray]:
        inverted = np.arange(n) % 2 == 1
        signals = [synthetic_record(seed=seed * 1000 + i).signal.copy() for i in range(n)]
        for s, inv in zip(signals, inverted):
            s[:, :6] *= -1.0 if inv else 1.0
        data = SignalSet(np.stack(signals).astype(np.float32), (np.arange(n) // 2) % 3, np.arange(n),
                         [{"scp:INV"} if inv else set() for inv in inverted])
        return data, inverted

    (train, _), (test, inverted) = records(96, 1), records(40, 3)
    config = {**TINY_SIGNAL, "aux_targets": ["scp:INV"]}
    cfg = SignalTrainConfig(epochs=8, batch_size=16, lr=1e-2, patience=8, model=config, aux_weight=aux_weight)
    options = NoiseOptions()
    val_inputs = {"noisy/6x2": evaluation_inputs(test, seed=0, options=options)["noisy/6x2"]}

    train_signal_member(0, cfg, train, val_inputs, test.labels, tmp_path, QuietReporter())
    model = build_model("signal", {**config, "members": 1})
    model.load_state_dict(torch.load(tmp_path / "member0" / "checkpoint.pt", weights_only=True)["model"])
    return model.eval(), val_inputs["noisy/6x2"], inverted


def test_auxiliary_statements_are_learnt_and_left_out_of_the_answer(tmp_path):
    """With auxiliary targets the head has one more logit per statement and training learns it; the model still
    answers 3 class logits, and its weights round-trip. Without the auxiliary loss the same logit learns nothing."""
    model, inputs, inverted = _trained_aux_head(tmp_path / "aux", aux_weight=5.0)
    x = torch.from_numpy(inputs)
    with torch.no_grad():
        assert model(x).shape == (40, 3)
        learnt = auroc(inverted, model.members[0].forward_all(x)[:, 3].numpy())
    path = tmp_path / "aux.safetensors"
    save_weights(path, "signal", model)
    with torch.no_grad():
        assert torch.allclose(load_model(path, "signal").model(x), model(x))
    untrained, inputs, inverted = _trained_aux_head(tmp_path / "none", aux_weight=0.0)
    with torch.no_grad():
        chance = auroc(inverted, untrained.members[0].forward_all(torch.from_numpy(inputs))[:, 3].numpy())
    assert learnt > 0.9 and learnt > chance + 0.2


def test_short_image_training_beats_chance():
    """The image model and the focal loss learn which class channel carries the trace."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    labels = np.arange(48) % 3
    images = np.zeros((48, 3, 640, 640), np.float32)
    for i, label in enumerate(labels):
        y, x = rng.integers(0, 500, 2)
        images[i, label, y : y + 120, x : x + 120] = 1.0
    model = ImageNet(TINY_IMAGE)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    weights = torch.tensor([1.0, 1.0, 1.5])
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    for _ in range(4):
        for b in range(0, 48, 12):
            loss = focal_loss(model(x[b : b + 12]), y[b : b + 12], weights, gamma=2.0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.6


def test_focal_loss_weights_hard_examples_and_classes():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 0.5]])
    target = torch.tensor([0, 2])
    ones = torch.ones(3)
    easy_and_hard = focal_loss(logits, target, ones, gamma=2.0)
    # gamma 0 and unit weights is plain cross-entropy; gamma > 0 shrinks the easy example's share.
    assert torch.isclose(focal_loss(logits, target, ones, 0.0), torch.nn.functional.cross_entropy(logits, target))
    assert easy_and_hard < torch.nn.functional.cross_entropy(logits, target)
    assert focal_loss(logits, target, torch.tensor([1.0, 1.0, 1.5]), 2.0) > easy_and_hard


# --- metrics and calibration --------------------------------------------------------------------------------


def test_auroc_matches_its_definition():
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert auroc(np.array([0, 1, 0, 1]), np.full(4, 0.5)) == 0.5
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9])) == 0.75
    assert np.isnan(auroc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_metrics_of_a_perfect_and_a_wrong_classifier():
    y = np.array([0, 1, 2, 2, 1, 0])
    perfect = np.eye(3)[y] * 0.98 + 0.01 / 1
    m = classification_metrics(y, perfect / perfect.sum(1, keepdims=True))
    assert m["macro_f1"] == 1.0 and m["mi_auroc"] == 1.0 and m["confusion"] == np.diag([2, 2, 2]).tolist()
    wrong = np.eye(3)[(y + 1) % 3]
    m = classification_metrics(y, wrong)
    assert m["macro_f1"] == 0.0 and m["accuracy"] == 0.0


def test_temperature_scaling_recovers_the_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2.0, size=(4000, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    overconfident = true_logits * 3.0
    t = fit_temperature(overconfident, y)
    assert 2.6 < t < 3.4
    assert expected_calibration_error(y, softmax(overconfident, t)) < expected_calibration_error(y, softmax(overconfident))


# --- weights -----------------------------------------------------------------------------------------------


def test_weights_round_trip_without_executing_code(tmp_path):
    model = SignalEnsemble(TINY_SIGNAL).eval()
    path = tmp_path / "classifier_signal.safetensors"
    save_weights(path, "signal", model, temperature=1.7, card={"summary": {"mi_auroc": 0.5}, "date": "today"})
    loaded = load_model(path, "signal")
    assert loaded.temperature == pytest.approx(1.7) and loaded.card["summary"] == {"mi_auroc": 0.5}
    x = torch.from_numpy(prepare_signal(synthetic_record(seed=4).signal)[None])
    with torch.no_grad():
        assert torch.allclose(model(x), loaded.model(x))
    # A safetensors file is an 8-byte length, a JSON header and raw tensors: nothing that could run on load.
    data = path.read_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    assert header["__metadata__"]["kind"] == "signal"


def test_bad_weights_are_one_sentence(tmp_path):
    with pytest.raises(ModelError, match="missing; train it with"):
        load_model(tmp_path / "absent.safetensors", "signal")
    pickle_file = tmp_path / "pickled.safetensors"
    torch.save({"a": torch.zeros(2)}, pickle_file)  # a pickle is refused, never unpickled
    with pytest.raises(ModelError, match="corrupt"):
        load_model(pickle_file, "signal")
    image = tmp_path / "image.safetensors"
    save_weights(image, "image", ImageNet(TINY_IMAGE))
    with pytest.raises(ModelError, match="not a signal classifier"):
        load_model(image, "signal")


def test_shipped_weights_load_with_their_cards():
    if not DEFAULT_SIGNAL_WEIGHTS.is_file():
        pytest.skip("weights/classifier_signal.safetensors is not shipped in this checkout")
    model = load_model(DEFAULT_SIGNAL_WEIGHTS, "signal")
    assert DEFAULT_SIGNAL_WEIGHTS.stat().st_size < 16 * 2**20
    card = model.card
    for key in ("data", "command", "date", "metrics", "calibration", "summary"):
        assert key in card
    assert 0.0 <= card["metrics"]["test_fold_10"]["clean/12x1"]["mi_auroc"] <= 1.0
    assert (DEFAULT_SIGNAL_WEIGHTS.parent / card["plots"]["confusion"]).is_file()
    if DEFAULT_IMAGE_WEIGHTS.is_file():
        image = load_model(DEFAULT_IMAGE_WEIGHTS, "image")
        assert image.card["kind"] == "image" and "test_fold_10" in image.card["metrics"]
        assert DEFAULT_IMAGE_WEIGHTS.stat().st_size < 16 * 2**20


# --- the end-to-end analysis --------------------------------------------------------------------------------


@dataclass
class TruthDigitized:
    """A DigitizedEcg stand-in built from the ground truth (what a perfect digitiser would return)."""

    signal: np.ndarray
    fs: int
    layout: str
    leads: list
    rotation_deg: float = 0.0
    px_per_mm: float = 10.0
    quality: dict = field(default_factory=lambda: {"ok": True})


def test_analyze_photo_says_when_row_starts_were_left_unread(monkeypatch, tiny_classifiers):
    from ecgcore.read import analyze
    from ecgcore.synth.photo import synthesize_photo

    record = synthetic_record(seed=5)
    photo = synthesize_photo(record, seed=5, layout="3x4+II", size=(800, 600))
    signal = np.where(layout_mask("3x4+II"), record.signal, np.nan)[:1000]
    signal[:12, :3] = np.nan
    read = TruthDigitized(signal, 100, "3x4+II", photo.leads, quality={"ok": True, "row_starts_unread_s": 0.12})
    monkeypatch.setattr(analyze, "_digitize", lambda class_map, layout, curve_margin=None, **kw: read)
    result = analyze.analyze_photo(photo.image, segmenter=TruthSegmenter(photo.mask), classifiers=tiny_classifiers,
                                   explain=False)
    assert any("first 0.12 s of each row were left unread" in note for note in result.notes), result.notes


class TruthSegmenter:
    def __init__(self, mask):
        self.mask = mask

    def predict(self, rgb):
        return self.mask


@pytest.fixture
def tiny_classifiers(tmp_path):
    signal_path, image_path = tmp_path / "s.safetensors", tmp_path / "i.safetensors"
    save_weights(signal_path, "signal", SignalEnsemble(TINY_SIGNAL).eval(), card={"summary": {"mi_auroc": 0.9}})
    save_weights(image_path, "image", ImageNet(TINY_IMAGE).eval())
    return Classifiers(load_model(signal_path, "signal"), load_model(image_path, "image"))


def test_analyze_photo_keeps_every_step(monkeypatch, tiny_classifiers):
    from ecgcore.read import analyze
    from ecgcore.synth.photo import synthesize_photo

    record = synthetic_record(seed=5)
    photo = synthesize_photo(record, seed=5, layout="3x4+II", size=(800, 600))
    layout_len = 1000
    signal = np.where(layout_mask("3x4+II"), record.signal, np.nan)[:layout_len]
    monkeypatch.setattr(analyze, "_digitize", lambda class_map, layout, curve_margin=None, **kw: TruthDigitized(signal, 100, "3x4+II", photo.leads))
    steps = []
    result = analyze.analyze_photo(photo.image, segmenter=TruthSegmenter(photo.mask), classifiers=tiny_classifiers,
                                   on_step=lambda name, fraction: steps.append(name))
    assert steps == ["segment", "digitize", "classify", "explain", "done"]
    assert set(result.probabilities) == set(LABELS) and sum(result.probabilities.values()) == pytest.approx(1.0)
    assert result.prediction in LABELS
    assert set(result.model_probabilities) == {"signal", "image"}
    assert result.signal_attribution.shape == (12, layout_len)
    assert (result.signal_attribution[~np.isfinite(signal).T] == 0).all()
    assert result.image_attribution.shape == photo.image.shape[:2]
    assert result.classification_image.shape == (640, 640, 3)
    assert set(result.timings_ms) == {"segment", "digitize", "classify", "explain"}
    assert "not medical advice" in result.disclaimer
    out = result.to_json("photo.png")
    assert list(out) == ["image", "probabilities", "prediction", "models", "digitization", "reading"]
    assert out["reading"] == result.reading.to_json()  # computed once, in analyze_photo
    assert out["reading"]["reliable"] is True and out["reading"]["einthoven_db"] > 15 and not out["reading"]["reasons"]
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
    assert out["models"]["signal"]["test_metrics"] == {"mi_auroc": 0.9}
    assert out["digitization"]["layout"] == "3x4+II" and len(out["digitization"]["leads_found"]) == 12
    json.dumps(out)


def test_analyze_photo_refuses_an_image_without_a_trace(tiny_classifiers):
    from ecgcore.errors import DigitizationError
    from ecgcore.read.analyze import analyze_photo

    blank = np.full((400, 500, 3), 200, np.uint8)
    with pytest.raises(DigitizationError, match="no ECG grid/trace found"):
        analyze_photo(blank, segmenter=TruthSegmenter(np.zeros((400, 500), np.uint8)), classifiers=tiny_classifiers)


@pytest.fixture(scope="module")
def photo_seed_11():
    from ecgcore.synth.photo import synthesize_photo

    return synthesize_photo(synthetic_record(11), seed=11)


def test_a_forced_layout_or_drawn_boxes_get_the_same_reading_checks(photo_seed_11, tiny_classifiers):
    """Issue: a forced layout or boxes moved off the trace still gave a verdict with only a generic note. The
    Reading is made by analyze_photo for every path, so they are marked not reliable, with the reasons in words."""
    from ecgcore.errors import DigitizationError
    from ecgcore.layouts import LeadBox
    from ecgcore.read.analyze import analyze_photo

    photo = photo_seed_11
    run = dict(segmenter=TruthSegmenter(photo.mask), classifiers=tiny_classifiers, explain=False)
    auto = analyze_photo(photo.image, **run)
    assert auto.reliable and auto.reading.einthoven_db >= 5.0 and auto.reading.goldberger_db >= 5.0

    forced = analyze_photo(photo.image, layout="12x1", **run)  # the page is a 3x4 printout
    assert not forced.reliable and forced.digitized.layout_source == "given"
    assert forced.reading.reasons[-1] == "(read with the layout you chose)"
    assert forced.to_json("x.png")["reading"]["reliable"] is False

    def moved(dx: float, dy: float) -> list:
        return [LeadBox(b.name, b.quad + np.array([dx, dy]), b.t0, b.t1) for b in auto.digitized.leads]

    height = float(np.linalg.norm(auto.digitized.leads[0].quad[2] - auto.digitized.leads[0].quad[0]))
    drawn = analyze_photo(photo.image, lead_boxes=moved(0.0, height / 2), **run)  # half a row down
    assert drawn.digitized.layout_source == "boxes"
    assert not drawn.reliable, drawn.reading
    assert any("Einthoven" in reason for reason in drawn.reading.reasons)
    assert "(read with the lead boxes you drew)" in drawn.reading.reasons
    with pytest.raises(DigitizationError, match="is not on the 1600x1200 px image"):  # off the photo
        analyze_photo(photo.image, lead_boxes=moved(5000.0, 5000.0), **run)


def test_classify_text_output_says_could_not_read_first():
    from pipelines.classify import _emit

    result = {"image": "a.jpg", "probabilities": {"normal": 0.2, "non_mi_abnormality": 0.25, "mi": 0.55},
              "prediction": "mi", "digitization": {"layout": "3x4", "leads_found": ["I"] * 12},
              "reading": {"reliable": False, "einthoven_db": -3.0, "goldberger_db": 12.0, "repeats_r": None,
                          "reasons": ["the limb leads break I + III = II"]}}
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _emit(result, as_json=False)
        _emit({**result, "reading": {**result["reading"], "reliable": True, "einthoven_db": 17.2, "reasons": []}},
              as_json=False)
    unreliable, reliable = out.getvalue().splitlines()
    assert unreliable.startswith("a.jpg: could not read this ECG reliably: the limb leads break I + III = II")
    assert unreliable.index("Research output only") < unreliable.index("myocardial infarction 55%")
    assert reliable.startswith("a.jpg: myocardial infarction (") and "limb leads agree (Einthoven 17.2 dB" in reliable


def test_missing_signal_weights_name_the_fix(tmp_path):
    from ecgcore.classify.classifiers import load_classifiers

    with pytest.raises(ModelError, match="pipelines.train_classifier --kind signal"):
        load_classifiers(tmp_path / "none.safetensors")


# --- the classify command's JSON contract -------------------------------------------------------------------


@pytest.fixture(scope="module")
def classify_inputs(tmp_path_factory) -> dict[str, Path]:
    from ecgcore.imageio import encode_jpeg, encode_png
    from ecgcore.synth.photo import synthesize_photo

    folder = tmp_path_factory.mktemp("classify")
    photo = synthesize_photo(synthetic_record(seed=11), seed=11, layout="3x4+II", size=(1200, 900))
    paths = {"ecg": folder / "ecg.jpg", "corrupt": folder / "corrupt.png", "empty": folder / "empty.jpg",
             "not_ecg": folder / "landscape.png"}
    paths["ecg"].write_bytes(encode_jpeg(photo.image))
    paths["corrupt"].write_bytes(encode_png(photo.image)[:2000])  # truncated
    paths["empty"].write_bytes(b"")
    yy, xx = np.mgrid[0:600, 0:800]
    sky = np.stack([120 + yy // 8, 160 + xx // 10, 230 - yy // 6], axis=-1).clip(0, 255).astype(np.uint8)
    paths["not_ecg"].write_bytes(encode_png(sky))
    return paths


def _classify(*paths: Path) -> tuple[int, list[dict]]:
    proc = subprocess.run([sys.executable, "-m", "pipelines.classify", *map(str, paths), "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, lines


def _check_result(result: dict, image: Path) -> None:
    assert result["image"] == str(image)
    if "error" in result:
        assert set(result) == {"image", "error"}
        assert isinstance(result["error"], str) and 10 < len(result["error"]) < 400 and "\n" not in result["error"]
        return
    assert list(result) == ["image", "probabilities", "prediction", "models", "digitization", "reading"]
    assert list(result["probabilities"]) == list(LABELS)
    assert all(0.0 <= p <= 1.0 for p in result["probabilities"].values())
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert result["prediction"] == max(result["probabilities"], key=result["probabilities"].get)
    assert "signal" in result["models"] and "weights" in result["models"]["signal"]
    assert {"layout", "rotation_deg", "px_per_mm", "leads_found", "quality_ok"} <= set(result["digitization"])
    _check_reading(result["reading"])


def _check_reading(reading: dict) -> None:
    """The ``reading`` object of PRODUCT.md: reliable true/false, the two limb-lead figures, the reasons in words."""
    assert {"reliable", "einthoven_db", "goldberger_db", "repeats_r", "reasons"} <= set(reading)
    assert isinstance(reading["reliable"], bool) and isinstance(reading["reasons"], list)
    assert reading["reliable"] == (not reading["reasons"])
    if reading["reliable"]:  # PRODUCT.md: every reading called reliable keeps both laws at >= 5 dB
        assert reading["einthoven_db"] >= 5.0 and reading["goldberger_db"] >= 5.0
    assert all(isinstance(r, str) and len(r) > 10 and "\n" not in r for r in reading["reasons"])


@pytest.mark.slow
def test_classify_json_contract(classify_inputs):
    """One JSON object per image, in order; an ECG photo gets probabilities (or, while the segmentation or
    digitisation models are not installed, an error sentence saying so); bad files always get an error."""
    order = [classify_inputs[k] for k in ("ecg", "corrupt", "empty", "not_ecg")]
    code, results = _classify(*order)
    assert len(results) == 4
    for result, image in zip(results, order):
        _check_result(result, image)
    assert "error" in results[1] and "corrupt" in results[1]["error"]
    assert "error" in results[2] and "empty" in results[2]["error"]
    assert "error" in results[3]  # a landscape is never diagnosed
    assert code != 0  # some images failed


def test_classify_exit_code_for_a_good_photo(classify_inputs):
    code, results = _classify(classify_inputs["ecg"])
    assert len(results) == 1
    _check_result(results[0], classify_inputs["ecg"])
    assert (code == 0) == ("error" not in results[0])
    if "error" in results[0]:
        # Only a missing or unusable model may stop a clean synthetic photo, and the sentence says what to do.
        assert any(word in results[0]["error"] for word in ("missing", "not installed", "no ECG", "corrupt"))


def test_classify_needs_an_image_argument():
    proc = subprocess.run([sys.executable, "-m", "pipelines.classify", "--json"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "IMAGE" in proc.stderr


def test_label_index_is_the_model_output_order():
    assert [LABEL_INDEX[label] for label in LABELS] == [0, 1, 2]
