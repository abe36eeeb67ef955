"""SNR / r / RMSE as ecgcore.train.evaluate defines them, the per-sample score for Curation, and pipelines.evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecgcore.train.evaluate import compare_signals, sample_digitization_scores, sample_snr, snr_db, subsample_timing


def _signal(n=1000, seed=0):
    t = np.arange(n) / 100
    rng = np.random.default_rng(seed)
    return np.sin(2 * np.pi * 1.3 * t)[:, None] * rng.uniform(0.5, 1.5, 12)[None, :]


def test_snr_of_known_noise():
    true = _signal()
    noise = np.random.default_rng(1).normal(size=true.shape)
    noise *= np.sqrt((true**2).sum(axis=0) / (noise**2).sum(axis=0)) / 10.0  # power ratio 100 -> 20 dB
    snr = snr_db(true, true + noise, fs=100, max_shift_s=0.0)
    assert np.allclose(snr, 20.0, atol=1.0)  # the median removal takes a little of the noise


def test_baseline_offset_is_ignored_and_small_shift_forgiven():
    true = _signal()
    shifted = np.roll(true, 3, axis=0) + 0.7  # 30 ms late and 0.7 mV up
    scores = compare_signals(true, shifted, fs=100)
    assert (scores.snr_db > 40).all()
    assert np.allclose(np.abs(scores.shift_s), 0.03)
    assert np.allclose(scores.pearson_r, 1.0, atol=1e-6)
    too_late = compare_signals(true, np.roll(true, 12, axis=0), fs=100)  # 120 ms: beyond +-50 ms
    assert (too_late.snr_db < 10).all()


def test_subsample_timing_tells_a_late_reading_from_a_wrong_shape():
    t = np.arange(1000) / 100
    rng = np.random.default_rng(3)
    # sharp QRS-like spikes (where half a sample costs most) on a slow wave
    beats = sum(np.exp(-0.5 * ((t - c) / 0.012) ** 2) for c in np.arange(0.4, 10, 0.83))
    true = (beats + 0.2 * np.sin(2 * np.pi * 0.3 * t))[:, None] * rng.uniform(0.5, 1.5, 3)[None, :]
    late = np.stack([np.interp(t - 0.004, t, true[:, j]) for j in range(3)], axis=1)  # drawn 4 ms late
    whole = compare_signals(true, late, fs=100).snr_db
    shift_s, exact = subsample_timing(true, late, fs=100)
    assert np.allclose(shift_s, 0.004, atol=0.0011)
    assert (exact > whole + 6).all() and (exact > 25).all()  # the score's whole samples leave 4 ms of 10
    wrong = late + 0.3 * rng.normal(size=late.shape) * true.std(axis=0)  # a wrong shape stays wrong on time
    _, exact_wrong = subsample_timing(true, wrong, fs=100)
    assert (exact_wrong < 15).all()
    est = late.copy()
    est[:, 1] = np.nan  # a lead not shown: NaN, as in the score
    shift_s, exact = subsample_timing(true, est, fs=100)
    assert np.isnan(shift_s[1]) and np.isnan(exact[1]) and np.isfinite(exact[[0, 2]]).all()


def test_only_the_plotted_window_counts():
    true = _signal()
    est = np.full_like(true, np.nan)
    est[250:500] = true[250:500] + 0.01 * np.random.default_rng(2).normal(size=(250, 12))
    est[:, 5] = np.nan  # a lead not on the image
    scores = compare_signals(true, est, fs=100)
    assert np.isnan(scores.snr_db[5]) and np.isfinite(np.delete(scores.snr_db, 5)).all()
    assert (np.delete(scores.rmse_uv, 5) < 15).all()  # in uV
    assert scores.summary()["leads_scored"] == 11


def test_sample_snr_for_curation(tiny_dataset):
    from ecgcore.dataset import iter_samples

    sample = next(iter(iter_samples(tiny_dataset)))
    scores = sample_digitization_scores(sample)
    assert scores["error"] is None and scores["layout_correct"]
    assert scores["snr_db"] > 5.0 and len(scores["per_lead"]) == 12
    assert isinstance(scores["reliable"], bool) and (scores["einthoven_db"] is None or scores["einthoven_db"] > -60)
    assert sample_snr(sample) == pytest.approx(scores["snr_db"])
    # an unreadable class map is a score with a reason, not an exception
    bad = sample_digitization_scores(sample, class_map=np.zeros_like(sample.mask()))
    assert bad["error"] and np.isnan(bad["snr_db"])


def test_pipeline_digitization_json(tiny_dataset, tmp_path, capsys):
    from pipelines.evaluate import main

    out = tmp_path / "dig.json"
    assert main(["digitization", "--data", str(tiny_dataset), "--limit", "4", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["masks"] == "truth" and "not an upper bound" in result["note"]
    # the timing diagnostic: within a photo pixel (800x600: ~17 ms), and whole-sample shifts are among its shifts
    assert result["timing_error_ms_median_abs"] < 17.0
    for row in result["per_sample"]:
        assert abs(row["timing_ms"]) < 17.0 and row["snr_db_exact_timing"] >= row["snr_db"] - 0.01
    assert result["n_samples"] == 4 and result["n_failed"] == 0
    assert result["snr_db_median_all_leads"] > 5.0
    assert json.loads(capsys.readouterr().out)["n_samples"] == 4
    # the limb-lead physics next to the SNR: per set and per sample, and the share of readings marked reliable
    for scope in (result, *result["by_layout"].values()):
        assert {"einthoven_db_median", "goldberger_db_median", "reliable_share"} <= set(scope)
    assert 0.0 <= result["reliable_share"] <= 1.0 and result["einthoven_db_median"] > 5.0
    for row in result["per_sample"]:
        assert {"einthoven_db", "goldberger_db", "reliable", "reasons"} <= set(row)
        assert row["reliable"] == (not row["reasons"])
        if row["reliable"]:
            assert row["einthoven_db"] >= 5.0 and row["goldberger_db"] >= 5.0
    reliable = [r for r in result["per_sample"] if r["reliable"]]
    assert result["reliable_share"] == pytest.approx(len(reliable) / 4)


def test_pipeline_predicted_without_weights_is_one_sentence(tiny_dataset, tmp_path, capsys):
    from pipelines._cli import run
    from pipelines.evaluate import main

    with pytest.raises(SystemExit) as exit_info:
        run(main, ["digitization", "--data", str(tiny_dataset), "--masks", "predicted",
                   "--weights", str(tmp_path / "missing.safetensors")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: segmentation weights")
