"""The prototype-style classification image: lead slots, rectification, merging, augmentation, mapping evidence
back to the photo, and the dataset builder."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from ecgcore.classify.classimage import (
    CANVAS,
    CHANNEL_CLASSES,
    SLOT_H,
    SLOT_W,
    augment_slots,
    build_slots,
    classification_image,
    heatmap_to_photo,
    lead_crops,
    merge_slots,
    rectify_lead,
    slot_origin,
    stretch_slot,
)
from ecgcore.constants import CURVE, LEAD_INDEX, LEAD_NAMES
from ecgcore.layouts import LeadBox
from ecgcore.signals import synthetic_record
from ecgcore.synth.render import render
from ecgcore.train.image_trainer import canvas_to_slots


@pytest.fixture(scope="module")
def paper():
    return render(synthetic_record(seed=4), "seed-3x4")


def test_slots_follow_the_prototype_grid():
    # Leads 0-3, 4-7, 8-11 in columns 0, 1, 2 (210 px apart); row = index mod 4 (120 px).
    assert slot_origin(0) == (0, 0)
    assert slot_origin(3) == (0, 360)
    assert slot_origin(LEAD_INDEX["aVL"]) == (210, 0)
    assert slot_origin(LEAD_INDEX["V6"]) == (420, 360)
    assert CHANNEL_CLASSES[-1] == CURVE


def test_classification_image_from_a_rendered_paper(paper):
    crops = lead_crops(paper.mask, paper.leads)
    assert len(crops) == 12 and all(c is not None for c in crops)
    assert all(c.shape[0] <= SLOT_H and c.shape[1] <= SLOT_W and c.shape[2] == 3 for c in crops)
    canvas = classification_image(crops)
    assert canvas.shape == (CANVAS, CANVAS, 3) and canvas.dtype == np.uint8
    assert not canvas[480:].any() and not canvas[:, 630:].any()  # 3 columns x 4 rows, black elsewhere
    for i in range(12):
        x, y = slot_origin(i)
        slot = canvas[y : y + SLOT_H, x : x + SLOT_W]
        assert slot[..., 2].max() > 128, LEAD_NAMES[i]  # every lead's curve is there
        assert slot[..., 0].any() and slot[..., 1].any()  # and its grid lines
    np.testing.assert_array_equal(canvas_to_slots(canvas), build_slots(paper.mask, paper.leads))
    np.testing.assert_array_equal(merge_slots(canvas_to_slots(canvas)), canvas)


def test_rectification_undoes_a_rotation(paper):
    """A rotated class map with correspondingly rotated quads gives (nearly) the same lead crop."""
    box = paper.leads[0]
    upright = rectify_lead(paper.mask, box)[..., 2] > 127
    h, w = paper.mask.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 7.0, 1.0)
    rotated_mask = cv2.warpAffine(paper.mask, matrix, (w + 200, h + 200), flags=cv2.INTER_NEAREST)
    quad = np.hstack([box.quad, np.ones((4, 1))]) @ matrix.T
    rotated = rectify_lead(rotated_mask, LeadBox(box.name, quad, box.t0, box.t1))[..., 2] > 127
    assert rotated.shape == upright.shape
    # Thin curves: compare after a small dilation, which forgives the one-pixel resampling differences.
    kernel = np.ones((3, 3), np.uint8)
    overlap = (cv2.dilate(rotated.astype(np.uint8), kernel) > 0) & upright
    assert overlap.sum() / upright.sum() > 0.9


def test_a_lead_shown_twice_uses_its_first_cell_and_missing_leads_stay_black():
    clinical = render(synthetic_record(seed=5), "3x4+II")
    crops = lead_crops(clinical.mask, clinical.leads)
    first_ii = next(b for b in clinical.leads if b.name == "II")
    assert first_ii.t1 - first_ii.t0 == pytest.approx(2.5)
    # The 2.5 s cell (plus pulse) is about 70 x 40 mm; the 10 s strip would be ~260 mm wide.
    ii = crops[LEAD_INDEX["II"]]
    assert ii.shape[1] / ii.shape[0] < 2.5
    without_v1 = [b for b in clinical.leads if b.name != "V1"]
    slots = build_slots(clinical.mask, without_v1)
    assert not slots[LEAD_INDEX["V1"]].any() and slots[LEAD_INDEX["V2"]].any()


def test_stretch_scales_the_slot_content():
    slot = np.zeros((SLOT_H, SLOT_W, 3), np.uint8)
    slot[:100, :200] = 255
    half = stretch_slot(slot, 0.5, 1.0)
    cols = np.flatnonzero(half[..., 0].max(axis=0) > 127)
    assert 95 <= cols.max() + 1 <= 105 and half[:, :, 0].max(axis=1)[:100].min() > 0
    wider = stretch_slot(slot, 1.5, 1.0)
    assert wider.shape == slot.shape and (wider[:100, :, 0] > 127).all()  # cut back to the slot


def test_augmentation_swaps_one_or_two_leads_per_channel(paper):
    slots = build_slots(paper.mask, paper.leads)
    blank_donor = np.zeros_like(slots)
    for seed in range(5):
        out = augment_slots(slots, [blank_donor], np.random.default_rng(seed))
        assert out.shape == slots.shape
        for channel in range(3):
            emptied = sum(1 for i in range(12) if not out[i, ..., channel].any())
            assert 1 <= emptied <= 2
    a = augment_slots(slots, [blank_donor], np.random.default_rng(9))
    b = augment_slots(slots, [blank_donor], np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)
    # Without donors only the stretch applies: every lead keeps its curve.
    alone = augment_slots(slots, [], np.random.default_rng(1))
    assert all(alone[i, ..., 2].any() for i in range(12))


def test_heat_on_a_slot_lands_on_that_lead_in_the_photo(paper):
    heat = np.zeros((CANVAS, CANVAS), np.float32)
    x, y = slot_origin(LEAD_INDEX["V2"])
    heat[y : y + SLOT_H, x : x + SLOT_W] = 1.0
    on_photo = heatmap_to_photo(heat, paper.leads, paper.mask.shape)
    assert on_photo.shape == paper.mask.shape
    box = next(b for b in paper.leads if b.name == "V2")
    (x0, y0), (x1, y1) = box.quad[0], box.quad[3]
    inside = on_photo[int(y0) + 2 : int(y1) - 2, int(x0) + 2 : int(x1) - 2]
    assert inside.mean() > 0.95
    outside = on_photo.copy()
    outside[int(y0) - 2 : int(y1) + 3, int(x0) - 2 : int(x1) + 3] = 0
    assert outside.max() < 0.05


def test_builder_skips_curated_out_samples(tiny_dataset, tmp_path):
    from ecgcore.dataset import iter_samples, record_decisions
    from pipelines.build_classification_set import main, read_index

    data = tmp_path / "ds"  # a copy: the session's shared dataset must keep an empty curation log
    shutil.copytree(tiny_dataset, data)
    ids = [s.id for s in iter_samples(data)]
    out = tmp_path / "cls"
    record_decisions(data, [ids[0]], "discard", reason="test")
    assert main(["--data", str(data), "--out", str(out)]) == 0
    entries = read_index(out)
    assert sorted(e["id"] for e in entries) == ids[1:]
    image = cv2.imread(str(out / entries[0]["file"]), cv2.IMREAD_COLOR)
    assert image.shape == (CANVAS, CANVAS, 3) and image[..., 0].max() > 0  # red channel = curve (BGR)
    info = json.loads((out / "classification_set.json").read_text())
    assert info["samples"] == len(ids) - 1 and info["source"] == "truth"
    # Rerunning resumes: nothing is added twice.
    assert main(["--data", str(data), "--out", str(out)]) == 0
    assert len(read_index(out)) == len(ids) - 1
