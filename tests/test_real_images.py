"""The ten real ECG images in ../shared/data/real-ecg-images, read with the shipped segmenter as the README's command
reads them: a guard on the limb-lead physics of what the product reads from real paper (no ground truth exists for
these; the laws are the measure, see ecgcore/read/physics.py). Runs where the images are (CI), skips elsewhere."""

from __future__ import annotations

import json

from pipelines.digitize import main

# Readings that keep both laws at >= 5 dB today (docs/reading.md, "Real printouts"): a change that loses one of them
# is a regression on real paper, whatever it gains on PTB-V.
CONSISTENT_TODAY = {"ecg00002", "ecg00015", "ecg00024", "ecg00047"}
MIN_CONSISTENT = 5  # of six (ecg00005 and ecg00010 keep them within 0.5 dB of the bound)


def test_the_real_images_keep_the_limb_lead_physics_they_keep_today(real_images_dir, tmp_path):
    images = sorted(p for p in real_images_dir.iterdir() if p.stem.startswith("ecg"))
    assert len(images) == 10
    main([*map(str, images), "--out", str(tmp_path), "--layout", "auto"])  # exits 2: ecg00008 is refused
    readings = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("ecg*.json")}
    assert len(readings) >= 9, sorted(readings)
    laws = {stem: (r["quality"].get("einthoven_db"), r["quality"].get("goldberger_db")) for stem, r in readings.items()}
    consistent = {stem for stem, (e, g) in laws.items() if e is not None and g is not None and min(e, g) >= 5.0}
    assert CONSISTENT_TODAY <= consistent and len(consistent) >= MIN_CONSISTENT, laws
    # the first page of a six-channel printout (limb leads only, 10 s each) is read as such, never as a 3x4 or 6x2
    assert readings["ecg00005"]["layout"] == "6x1", readings["ecg00005"]["quality"].get("hypotheses")
    for stem, r in readings.items():  # reliable means the physics holds (and more)
        if r["reading"]["reliable"]:
            assert stem in consistent, (stem, laws[stem])
