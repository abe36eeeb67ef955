"""The prototype's jittered per-lead crops: jitter statistics, exact warping, the crops folder and its command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ecgcore.dataset import DatasetError, iter_samples, record_decisions
from ecgcore.train.crops import (
    CROPS_INDEX,
    build_crops,
    crop_quad,
    is_crops_folder,
    jitter_quad,
    lead_crops,
    load_crop,
    read_crops_index,
)

REPO = Path(__file__).resolve().parents[1]


def test_jitter_moves_corners_by_one_percent_and_turns_by_three_degrees():
    rng = np.random.default_rng(0)
    quad = np.array([[100.0, 200.0], [500.0, 200.0], [100.0, 400.0], [500.0, 400.0]])
    size = (1600, 1200)
    no_turn = np.stack([jitter_quad(quad, size, rng, angle_sd_deg=0.0) for _ in range(4000)])
    sd = (no_turn - quad).reshape(-1, 4, 2).std(axis=0).mean(axis=0)
    np.testing.assert_allclose(sd, [16.0, 12.0], rtol=0.06)  # 1% of width, 1% of height
    turned = np.stack([jitter_quad(quad, size, rng, corner_sd=0.0) for _ in range(4000)])
    top = turned[:, 1] - turned[:, 0]
    angles = np.degrees(np.arctan2(-top[:, 1], top[:, 0]))
    assert abs(np.std(angles) - 3.0) < 0.15 and abs(np.mean(angles)) < 0.2
    np.testing.assert_allclose(turned.mean(axis=1), np.broadcast_to(quad.mean(axis=0), (4000, 2)), atol=1e-9)


def test_crop_of_an_upright_box_is_the_exact_sub_image():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    mask = rng.integers(0, 4, (120, 160), dtype=np.uint8)
    quad = np.array([[10, 20], [59, 20], [10, 49], [59, 49]], np.float64)  # pixel centres of a 50 x 30 box
    img, msk = crop_quad(image, mask, quad)
    np.testing.assert_array_equal(img, image[20:50, 10:60])
    np.testing.assert_array_equal(msk, mask[20:50, 10:60])


def test_lead_crops_of_a_photo_contain_their_lead(synthetic):
    from ecgcore.synth.photo import synthesize_photo

    photo = synthesize_photo(synthetic, seed=3, layout="seed-3x4", size=(800, 600))
    crops = lead_crops(photo.image, photo.mask, photo.leads, np.random.default_rng(0))
    assert [c.name for c in crops] == [b.name for b in photo.leads]
    for crop in crops:
        assert crop.image.shape[:2] == crop.mask.shape and crop.image.dtype == np.uint8
        assert set(np.unique(crop.mask)) <= {0, 1, 2, 3}
        assert (crop.mask == 3).mean() > 0.005, f"lead {crop.name}: crop holds almost no curve"


def test_build_crops_writes_pairs_and_an_index_and_skips_discarded(tiny_dataset, tmp_path):
    data = tmp_path / "ds"
    shutil.copytree(tiny_dataset, data)
    record_decisions(data, ["000002"], "discard", reason="too dark")
    kept = list(iter_samples(data, include_discarded=False))
    index = build_crops(data, tmp_path / "crops", seed=5)
    assert is_crops_folder(tmp_path / "crops")
    assert index["n_crops"] == sum(len(s.leads) for s in kept)
    assert "000002" not in {e["sample_id"] for e in index["crops"]}
    assert index["source"]["kind"] == "synthetic" and "ids" not in index["source"]
    first = index["crops"][0]
    image, mask = load_crop(tmp_path / "crops", first)
    assert image.shape[:2] == mask.shape and mask.max() <= 3
    again = build_crops(data, tmp_path / "crops2", seed=5)
    assert [e["quad"] for e in again["crops"]] == [e["quad"] for e in index["crops"]]  # reproducible


def test_build_crops_refuses_a_folder_that_is_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="not a PTB-V dataset"):
        build_crops(tmp_path, tmp_path / "out")
    with pytest.raises(DatasetError):
        read_crops_index(tmp_path)


def test_crops_folder_trains_alongside_photos(tiny_dataset, tmp_path):
    from ecgcore.train.segmenter import ExampleStream

    build_crops(tiny_dataset, tmp_path / "crops", seed=0)
    stream = ExampleStream([tiny_dataset, tmp_path / "crops"], crop=128, seed=0)
    assert len(stream.crop_entries) > 0 and len(stream.photos) == 8
    images, masks = next(stream.batches(6))
    assert images.shape == (6, 128, 128, 3) and masks.shape == (6, 128, 128)
    assert set(np.unique(masks)) <= {0, 1, 2, 3, 255}


@pytest.mark.slow
def test_build_crops_command(tiny_dataset, tmp_path):
    out = tmp_path / "crops"
    proc = subprocess.run([sys.executable, "-m", "pipelines.build_crops", "--data", str(tiny_dataset), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    index = json.loads((out / CROPS_INDEX).read_text())
    assert len(list(out.glob("*_mask.png"))) == index["n_crops"] > 0
    mask = cv2.imread(str(out / index["crops"][0]["mask"]), cv2.IMREAD_UNCHANGED)
    assert mask.ndim == 2 and mask.dtype == np.uint8
    bad = subprocess.run([sys.executable, "-m", "pipelines.build_crops", "--data", str(tmp_path / "nope"), "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:") and "Traceback" not in bad.stderr
