"""Segmentation: any-size inference, tiling, training steps, safe weights, one-sentence errors, metrics."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ecgcore.constants import CURVE, N_CLASSES
from ecgcore.errors import ModelError
from ecgcore.read.segmentation import (
    DEFAULT_MODEL_CONFIG,
    DEFAULT_SEGMENTATION_WEIGHTS,
    Segmenter,
    build_model,
    evaluate_segmentation,
    load_segmenter,
    sample_iou,
    save_weights,
    segmenter_from_model,
)

REPO = Path(__file__).resolve().parents[1]
# A small network keeps the training tests fast; the code paths are those of the shipped one.
SMALL = {"encoder_name": "tu-mobilenetv3_small_100", "encoder_depth": 4, "decoder_channels": [32, 16, 16, 8]}


@pytest.fixture(scope="module")
def random_segmenter() -> Segmenter:
    import torch

    torch.manual_seed(0)
    config = {**DEFAULT_MODEL_CONFIG, **SMALL}
    return segmenter_from_model(build_model(config), config)


@pytest.fixture(scope="module")
def shipped() -> Segmenter:
    return load_segmenter()


@pytest.fixture(scope="module")
def small_photo(synthetic):
    from ecgcore.synth.photo import synthesize_photo

    return synthesize_photo(synthetic, seed=11, layout="3x4+II", size=(800, 600))


@pytest.mark.parametrize("height, width", [(37, 53), (101, 333), (257, 129), (64, 64)])
def test_any_image_size_gives_probabilities_and_a_map_of_that_size(random_segmenter, height, width):
    rgb = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    proba = random_segmenter.predict_proba(rgb)
    assert proba.shape == (N_CLASSES, height, width) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=0), 1.0, atol=1e-4)
    class_map = random_segmenter.predict(rgb)
    assert class_map.shape == (height, width) and class_map.dtype == np.uint8
    np.testing.assert_array_equal(class_map, proba.argmax(axis=0))
    same_map, margin = random_segmenter.predict_with_margin(rgb)
    np.testing.assert_array_equal(same_map, class_map)
    assert margin.shape == (height, width) and margin.dtype == np.float32
    # the margin is positive exactly where the map says curve (ties aside)
    assert ((margin > 0) == (class_map == CURVE)).mean() > 0.999


def test_grayscale_and_rgba_inputs_are_accepted(random_segmenter):
    gray = np.full((70, 90), 200, np.uint8)
    rgba = np.full((70, 90, 4), 200, np.uint8)
    assert random_segmenter.predict(gray).shape == (70, 90)
    np.testing.assert_array_equal(random_segmenter.predict(rgba), random_segmenter.predict(gray))


def test_an_image_that_fits_one_tile_is_identical_tiled_or_not(random_segmenter):
    rgb = np.random.default_rng(1).integers(0, 256, (150, 210, 3), dtype=np.uint8)
    np.testing.assert_array_equal(random_segmenter.predict_proba(rgb, tiled=True),
                                  random_segmenter.predict_proba(rgb, tiled=False))


def test_tiled_matches_untiled_on_a_photo(shipped, small_photo):
    untiled = shipped.predict_proba(small_photo.image, tiled=False)
    tiler = Segmenter(shipped.model, shipped.config, tile=384, margin=64)
    tiled = tiler.predict_proba(small_photo.image, tiled=True)
    assert tiled.shape == untiled.shape
    assert np.abs(tiled - untiled).mean() < 0.01
    agree = (tiled.argmax(0) == untiled.argmax(0)).mean()
    assert agree > 0.995, f"tiled and untiled class maps agree on only {agree:.4f} of the pixels"


def test_a_photo_larger_than_max_side_is_segmented_at_the_working_size_and_mapped_back(random_segmenter):
    import cv2

    rgb = np.random.default_rng(3).integers(0, 256, (150, 210, 3), dtype=np.uint8)
    seg = Segmenter(random_segmenter.model, random_segmenter.config, max_side=200, work_side=105)
    proba = seg.predict_proba(rgb)
    assert proba.shape == (N_CLASSES, 150, 210)
    np.testing.assert_array_equal(seg.predict(rgb), proba.argmax(0))
    assert seg.predict_batch([rgb])[0].shape == (150, 210)
    # the same as segmenting the half-size image and scaling its scores up
    native = Segmenter(random_segmenter.model, random_segmenter.config, max_side=None)
    small = cv2.resize(rgb, (105, 75), interpolation=cv2.INTER_AREA)
    logits = native._logits(small, None)
    expected = np.stack([cv2.resize(c, (210, 150), interpolation=cv2.INTER_LINEAR) for c in logits])
    np.testing.assert_allclose(seg._logits(rgb, None), expected, atol=1e-5)
    # at or below max_side nothing changes
    np.testing.assert_array_equal(Segmenter(random_segmenter.model, random_segmenter.config, max_side=210).predict(rgb),
                                  native.predict(rgb))


def test_a_high_resolution_photo_segments_as_well_as_the_training_sized_one(shipped, synthetic):
    import cv2

    from ecgcore.synth.photo import synthesize_photo

    photo = synthesize_photo(synthetic, seed=12, layout="3x4+II", size=(1600, 1200))
    at_size = sample_iou(shipped.predict(photo.image), photo.mask)
    # the same paper photographed at twice the resolution (10 px/mm: a scan, or a phone camera's full size)
    big = cv2.resize(photo.image, (3200, 2400), interpolation=cv2.INTER_CUBIC)
    truth = cv2.resize(photo.mask, (3200, 2400), interpolation=cv2.INTER_NEAREST)
    large = sample_iou(shipped.predict(big), truth)
    assert large["iou_curve"] > at_size["iou_curve"] - 0.06, (large, at_size)  # at its own size: -0.09
    assert min(large["iou_grid_x"], large["iou_grid_y"]) > 0.77, large  # at its own size: 0.68


def test_tiles_cover_the_whole_image():
    from ecgcore.read.segmentation import _tile_starts

    for size in (1024, 1088, 1600, 2500, 4096):
        starts = _tile_starts(size, 1024, 64)
        kept = np.zeros(size, bool)
        for s in starts:
            lo = s if s == 0 else s + 64
            hi = s + 1024 if s + 1024 >= size else s + 1024 - 64
            kept[lo:hi] = True
        assert kept.all() and starts[-1] + 1024 == max(size, 1024)


@pytest.mark.parametrize("phases", [1, 2])
def test_batched_prediction_equals_one_by_one(random_segmenter, phases):
    seg = Segmenter(random_segmenter.model, random_segmenter.config, phases=phases)
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(65, 70, 3), (65, 70, 3), (40, 99, 3)]]
    batched = seg.predict_batch(images)
    for img, out in zip(images, batched):
        np.testing.assert_array_equal(out, seg.predict(img))


def test_phases_average_the_logits_of_the_photo_shifted_by_one_pixel(random_segmenter):
    """phases=2 is the mean of the photo's logits and those of the photo moved one pixel down and right (edge
    pixels repeated), read back at the photo's own pixels; unknown phase counts are refused."""
    rgb = np.random.default_rng(7).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    one = Segmenter(random_segmenter.model, random_segmenter.config, phases=1)
    two = Segmenter(random_segmenter.model, random_segmenter.config, phases=2)
    shifted = np.pad(rgb, ((1, 0), (1, 0), (0, 0)), mode="edge")
    expected = (one._logits(rgb, None) + one._logits(shifted, None)[:, 1:, 1:]) / 2
    np.testing.assert_allclose(two._logits(rgb, None), expected, atol=1e-5)
    assert not np.allclose(two._logits(rgb, None), one._logits(rgb, None), atol=1e-3)
    with pytest.raises(ValueError, match="phases must be one of"):
        Segmenter(random_segmenter.model, random_segmenter.config, phases=3).predict(rgb)


def test_shipped_weights_find_the_curve_in_a_synthetic_photo(shipped, small_photo):
    from ecgcore.read.segmentation import curve_f1_from_counts, curve_match_counts

    pred = shipped.predict(small_photo.image)
    ious = sample_iou(pred, small_photo.mask)
    assert ious["iou_grid_x"] > 0.5 and ious["iou_grid_y"] > 0.5, ious
    # At 800 x 600 the curve is about one pixel wide, so it is scored with one pixel of slack.
    scores = curve_f1_from_counts(curve_match_counts(pred, small_photo.mask))
    assert scores["curve_f1_1px"] > 0.8, scores
    assert shipped.card.get("held_out"), "the shipped model card must carry held-out metrics"


def test_a_few_training_steps_reduce_the_loss(tiny_dataset):
    import torch

    from ecgcore.train.segmenter import ExampleStream, make_loss

    torch.manual_seed(0)
    stream = ExampleStream([tiny_dataset], crop=64, seed=0, augment=False)
    images, masks = next(stream.batches(2))
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    y = torch.from_numpy(masks).long()
    model = build_model({**DEFAULT_MODEL_CONFIG, **SMALL}).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loss_fn = make_loss([0.5, 1.0, 1.0, 2.0], dice_weight=1.0)
    losses = []
    for _ in range(10):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_loss_ignores_unlabelled_pixels_and_weighs_thin_classes():
    import torch

    from ecgcore.train.segmenter import IGNORE, make_loss

    logits = torch.zeros(1, N_CLASSES, 4, 4)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, :] = CURVE
    loss_fn = make_loss([1.0, 1.0, 1.0, 1.0], dice_weight=0.0)
    with_ignored = target.clone()
    with_ignored[0, 3, :] = IGNORE
    logits_changed = logits.clone()
    logits_changed[0, 0, 3, :] = 50.0  # garbage where the label is IGNORE must not matter
    assert torch.isclose(loss_fn(logits, with_ignored), loss_fn(logits_changed, with_ignored))
    # With Dice the loss sees the 4 curve pixels much more than their 1/4 share of cross-entropy.
    assert make_loss([1, 1, 1, 1], 1.0)(logits, target) > loss_fn(logits, target) + 0.5


@pytest.mark.slow
def test_train_writes_a_run_folder_and_resumes(tiny_dataset, tmp_path):
    from ecgcore.train.segmenter import TrainConfig, train

    cfg = TrainConfig(data=[str(tiny_dataset)], out=str(tmp_path / "run"), val_samples=1, epochs=1,
                      steps_per_epoch=2, batch_size=2, crop=64, warmup_steps=1,
                      model={**DEFAULT_MODEL_CONFIG, **SMALL})
    first = train(cfg)
    run = tmp_path / "run"
    for name in ("config.json", "train.log", "metrics.csv", "checkpoints/last.pt", "best.safetensors", "best.json"):
        assert (run / name).is_file(), name
    assert first["epoch"] == 1 and first["step"] == 2
    cfg.epochs = 2
    second = train(cfg, resume=True)
    assert second["epoch"] == 2 and second["step"] == 4
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and "val_iou_curve" in rows[0]
    assert "resumed from" in (run / "train.log").read_text()
    load_segmenter(run / "best.safetensors")


def test_training_with_data_workers_draws_distinct_batches_and_finishes(tiny_dataset, tmp_path):
    from ecgcore.train.segmenter import TrainConfig, parallel_batches, stream_seed, train

    cfg = TrainConfig(data=[str(tiny_dataset)], out=str(tmp_path / "run"), val_samples=1, epochs=1,
                      steps_per_epoch=3, batch_size=2, crop=64, warmup_steps=1, workers=2,
                      model={**DEFAULT_MODEL_CONFIG, **SMALL})
    # each worker and each restart draws its own examples
    assert len({stream_seed(0, 0, 0), stream_seed(0, 0, 1), stream_seed(0, 5, 0), stream_seed(1, 0, 0)}) == 4
    batches = parallel_batches(cfg, {}, 0)
    drawn = [next(batches) for _ in range(4)]
    assert all(tuple(images.shape) == (2, 64, 64, 3) and tuple(masks.shape) == (2, 64, 64) for images, masks in drawn)
    assert len({np.asarray(images).tobytes() for images, _ in drawn}) == 4
    summary = train(cfg)
    assert summary["step"] == 3
    assert "data workers 2" in (tmp_path / "run" / "train.log").read_text()


def test_fine_tuning_starts_from_given_weights_and_refuses_another_architecture(tiny_dataset, tmp_path,
                                                                                 random_segmenter):
    import torch

    from ecgcore.train.segmenter import TrainConfig, train

    start = save_weights(random_segmenter.model, tmp_path / "start.safetensors", random_segmenter.config)
    cfg = TrainConfig(data=[str(tiny_dataset)], out=str(tmp_path / "run"), val_samples=1, epochs=1,
                      steps_per_epoch=1, batch_size=2, crop=64, warmup_steps=1, lr=1e-9, init=str(start),
                      model={**DEFAULT_MODEL_CONFIG, **SMALL})
    train(cfg)
    assert "initialised from" in (tmp_path / "run" / "train.log").read_text()
    tuned = load_segmenter(tmp_path / "run" / "best.safetensors").model.state_dict()
    # a learning rate of 1e-9 leaves the weights where --init put them (fp16 storage aside)
    ref = random_segmenter.model.state_dict()
    key = next(k for k, v in ref.items() if v.ndim == 4)
    assert torch.allclose(tuned[key].float(), ref[key].float(), atol=2e-3)

    other = TrainConfig(data=[str(tiny_dataset)], out=str(tmp_path / "run2"), val_samples=1, epochs=1,
                        steps_per_epoch=1, batch_size=2, crop=64, init=str(start), model=dict(DEFAULT_MODEL_CONFIG))
    with pytest.raises(ModelError, match="another architecture"):
        train(other)

    # --init-partial: a wider decoder takes the encoder (and whatever else matches) and trains the rest fresh
    wider = {**DEFAULT_MODEL_CONFIG, **SMALL}
    wider["decoder_channels"] = [c * 2 for c in wider["decoder_channels"]]
    partial = TrainConfig(data=[str(tiny_dataset)], out=str(tmp_path / "run3"), val_samples=1, epochs=1,
                          steps_per_epoch=1, batch_size=2, crop=64, warmup_steps=1, lr=1e-9, init=str(start),
                          init_partial=True, model=wider)
    train(partial)
    log = (tmp_path / "run3" / "train.log").read_text()
    assert "tensors from" in log and "(the rest fresh)" in log
    tuned = load_segmenter(tmp_path / "run3" / "best.safetensors").model.state_dict()
    enc = next(k for k, v in ref.items() if v.ndim == 4 and "encoder" in k)
    assert torch.allclose(tuned[enc].float(), ref[enc].float(), atol=2e-3)


def test_weights_are_safetensors_and_round_trip(tmp_path, random_segmenter, small_photo):
    path = save_weights(random_segmenter.model, tmp_path / "w.safetensors", random_segmenter.config,
                        card={"note": "test"})
    raw = path.read_bytes()
    header_len = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + header_len])  # a plain JSON header, then raw tensor bytes: nothing to execute
    assert header["__metadata__"]["format"] == "ecglab-segmentation/1"
    assert b"\x80\x04\x95" not in raw[:8 + header_len]  # no pickle stream in the header
    loaded = load_segmenter(path)
    assert loaded.card == {"note": "test"}
    a = random_segmenter.predict_proba(small_photo.image[:200, :300])
    b = loaded.predict_proba(small_photo.image[:200, :300])
    assert np.abs(a - b).max() < 0.02  # fp16 storage of the weights


def test_shipped_weights_are_small_enough():
    assert DEFAULT_SEGMENTATION_WEIGHTS.is_file()
    assert DEFAULT_SEGMENTATION_WEIGHTS.stat().st_size < 16 * 2**20
    card = json.loads(DEFAULT_SEGMENTATION_WEIGHTS.with_suffix(".json").read_text())
    for key in ("training", "held_out", "date"):
        assert key in card


@pytest.mark.parametrize("content, phrase", [
    (None, "not found"),
    (b"", "corrupt"),
    (b"\x00" * 64, "corrupt"),
    (b"PK\x03\x04 definitely not safetensors", "corrupt"),
])
def test_missing_or_corrupt_weights_give_one_sentence(tmp_path, content, phrase):
    path = tmp_path / "seg.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError) as err:
        load_segmenter(path)
    message = str(err.value)
    assert phrase in message and "\n" not in message and "Traceback" not in message


def test_truncated_weights_give_one_sentence(tmp_path, random_segmenter):
    path = save_weights(random_segmenter.model, tmp_path / "w.safetensors", random_segmenter.config)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelError, match="corrupt"):
        load_segmenter(path)


def test_weights_of_another_architecture_are_refused(tmp_path, random_segmenter):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={"format": "ecglab-segmentation/1",
                                                           "config": json.dumps(random_segmenter.config)})
    with pytest.raises(ModelError, match="do not match"):
        load_segmenter(path)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_segment_command_writes_class_maps_and_reports_bad_images(tmp_path, small_photo, random_segmenter):
    import cv2

    weights = save_weights(random_segmenter.model, tmp_path / "w.safetensors", random_segmenter.config)
    good = tmp_path / "photo.jpg"
    cv2.imwrite(str(good), cv2.cvtColor(small_photo.image[:301, :457], cv2.COLOR_RGB2BGR))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    proc = _run_cli("pipelines.segment", str(good), str(bad), "--out", str(out), "--overlay", "--weights", str(weights))
    assert proc.returncode == 1
    class_map = cv2.imread(str(out / "photo_seg.png"), cv2.IMREAD_UNCHANGED)
    assert class_map.shape == (301, 457) and class_map.dtype == np.uint8 and class_map.max() <= CURVE
    assert (out / "photo_overlay.png").is_file() and not (out / "broken_seg.png").exists()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert any("broken.png" in line for line in errors) and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_segment_command_with_missing_weights_fails_in_one_line(tmp_path):
    proc = _run_cli("pipelines.segment", "x.jpg", "--out", str(tmp_path), "--weights", str(tmp_path / "none.safetensors"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "not found" in proc.stderr


def test_loader_rate_measures_the_data_loader_and_bad_worker_counts_are_refused(tiny_dataset, tmp_path):
    proc = _run_cli("pipelines.train_segmentation", "--data", str(tiny_dataset), "--out", str(tmp_path / "run"),
                    "--batch-size", "2", "--crop", "64", "--loader-rate", "1")
    assert proc.returncode == 0, proc.stderr
    rate = json.loads(proc.stdout.strip().splitlines()[-1])
    assert rate["batches_per_s"] > 0 and rate["examples_per_s"] == pytest.approx(2 * rate["batches_per_s"], rel=0.01)
    assert not (tmp_path / "run").exists()  # measuring writes no run folder
    bad = _run_cli("pipelines.train_segmentation", "--data", str(tiny_dataset), "--out", str(tmp_path / "run"),
                   "--workers", "-1")
    assert bad.returncode == 2 and "--workers must be 0 or more" in bad.stderr


def test_training_refuses_validation_and_test_folds(tmp_path):
    from ecgcore.dataset import DatasetError
    from ecgcore.train.segmenter import check_training_folds

    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "dataset.json").write_text(json.dumps({"source": {"kind": "ptb-xl", "folds": [8, 10], "root": "x"}}))
    with pytest.raises(DatasetError, match="strat_fold 10"):
        check_training_folds(folder)
    (folder / "dataset.json").write_text(json.dumps({"source": {"kind": "ptb-xl", "folds": [1, 2, 8]}}))
    check_training_folds(folder)


def test_evaluate_segmentation_pools_a_dataset_and_skips_discarded(tiny_dataset, random_segmenter, tmp_path):
    import shutil

    from ecgcore.dataset import record_decisions

    copy = tmp_path / "ds"
    shutil.copytree(tiny_dataset, copy)
    record_decisions(copy, ["000000"], "discard", reason="test")
    seen = []
    result = evaluate_segmentation(random_segmenter, copy, on_sample=lambda sid, ious: seen.append(sid))
    assert result["n_samples"] == 7 and "000000" not in seen
    assert set(result) >= {"iou_background", "iou_grid_x", "iou_grid_y", "iou_curve", "per_sample"}
    assert np.array(result["confusion"]).sum() == 7 * 800 * 600


def test_sample_iou_of_a_perfect_and_an_empty_prediction():
    truth = np.zeros((10, 10), np.uint8)
    truth[2, :] = CURVE
    truth[:, 5] = 1
    perfect = sample_iou(truth, truth)
    assert perfect["iou_curve"] == 1.0 and perfect["iou_grid_x"] == 1.0 and np.isnan(perfect["iou_grid_y"])
    empty = sample_iou(np.zeros_like(truth), truth)
    assert empty["iou_curve"] == 0.0


def test_curve_one_pixel_off_scores_zero_iou_but_full_tolerant_f1():
    from ecgcore.read.segmentation import curve_f1_from_counts, curve_match_counts

    truth = np.zeros((20, 30), np.uint8)
    truth[10, 2:28] = CURVE
    shifted = np.roll(truth, 1, axis=0)
    assert sample_iou(shifted, truth)["iou_curve"] == 0.0
    scores = curve_f1_from_counts(curve_match_counts(shifted, truth))
    assert scores["curve_f1_1px"] == 1.0
    far = np.roll(truth, 3, axis=0)
    assert curve_f1_from_counts(curve_match_counts(far, truth))["curve_f1_1px"] == 0.0


def test_every_class_map_the_segmenter_gives_has_grid_coloured_lines_made_grid(random_segmenter, monkeypatch):
    """predict, predict_with_margin and predict_batch all pass the network's map through
    ecgcore.read.gridcolour.without_grid_coloured_lines with the photo (tested there)."""
    import ecgcore.read.segmentation as segmentation

    seen = []

    def marked(rgb, class_map, curve_margin=None):
        seen.append(rgb.shape[:2])
        return np.full_like(class_map, 2), curve_margin

    monkeypatch.setattr(segmentation, "without_grid_coloured_lines", marked)
    rgb = np.full((64, 96, 3), 230, np.uint8)
    assert (random_segmenter.predict(rgb) == 2).all()
    class_map, margin = random_segmenter.predict_with_margin(rgb)
    assert (class_map == 2).all() and margin.shape == (64, 96)
    assert all((m == 2).all() for m in random_segmenter.predict_batch([rgb, rgb]))
    assert len(seen) == 4
