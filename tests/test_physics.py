"""Limb-lead physics (ecgcore.read.physics): right readings keep Einthoven and Goldberger, wrong ones break them."""

from __future__ import annotations

import numpy as np
import pytest

from ecgcore.constants import LEAD_INDEX
from ecgcore.read.physics import (
    NO_LAW_SCORE_DB,
    RELIABLE_MIN_DB,
    UNMEASURED_SCORE_DB,
    assess_reading,
    consistency_score,
    law_db,
    limb_consistency,
)


def _recorded(synthetic, noise_mv: float = 0.01, seed: int = 0) -> np.ndarray:
    """The synthetic record with independent noise on every lead, as a printout read back would have."""
    rng = np.random.default_rng(seed)
    signal = np.asarray(synthetic.signal, np.float64)
    return signal + rng.normal(0.0, noise_mv, signal.shape)


def _as_3x4(signal: np.ndarray, fs: int) -> np.ndarray:
    """What a 3x4 printout shows: I, II, III for 0-2.5 s, aVR, aVL, aVF for 2.5-5 s; NaN elsewhere."""
    out = np.full_like(signal, np.nan)
    quarter = int(2.5 * fs)
    for col, leads in enumerate((("I", "II", "III"), ("aVR", "aVL", "aVF"), ("V1", "V2", "V3"), ("V4", "V5", "V6"))):
        for lead in leads:
            j = LEAD_INDEX[lead]
            out[col * quarter:(col + 1) * quarter, j] = signal[col * quarter:(col + 1) * quarter, j]
    return out


def test_a_true_recording_keeps_both_laws(synthetic):
    laws = limb_consistency(_recorded(synthetic), synthetic.fs)
    assert laws["einthoven_db"] > 15 and laws["goldberger_db"] > 15


def test_laws_are_measured_where_a_3x4_shows_the_limb_leads_together(synthetic):
    laws = limb_consistency(_as_3x4(_recorded(synthetic), synthetic.fs), synthetic.fs)
    assert laws["einthoven_db"] > 15 and laws["goldberger_db"] > 15


def test_swapped_leads_break_einthoven(synthetic):
    signal = _recorded(synthetic)
    signal[:, [LEAD_INDEX["I"], LEAD_INDEX["II"]]] = signal[:, [LEAD_INDEX["II"], LEAD_INDEX["I"]]]
    assert law_db(signal, synthetic.fs, "einthoven") < RELIABLE_MIN_DB


def test_a_window_50_ms_off_breaks_einthoven(synthetic):
    signal = _recorded(synthetic)
    shift = int(round(0.05 * synthetic.fs))
    signal[:, LEAD_INDEX["I"]] = np.roll(signal[:, LEAD_INDEX["I"]], shift)
    assert law_db(signal, synthetic.fs, "einthoven") < RELIABLE_MIN_DB


def test_an_inverted_lead_breaks_goldberger(synthetic):
    signal = _recorded(synthetic)
    signal[:, LEAD_INDEX["aVL"]] *= -1
    assert law_db(signal, synthetic.fs, "goldberger") < 0


def test_a_reading_missing_a_lead_scores_below_a_right_one_and_above_a_wrong_one(synthetic):
    """Choosing between readings of one page: a law that cannot be measured (aVL not read) is no evidence either
    way, so it loses to a reading that keeps both laws and wins over one that breaks a law."""
    right = _recorded(synthetic)
    missing = right.copy()
    missing[:, LEAD_INDEX["aVL"]] = np.nan
    wrong = right.copy()
    wrong[:, LEAD_INDEX["aVL"]] *= -1
    assert consistency_score(missing, synthetic.fs) == UNMEASURED_SCORE_DB
    assert consistency_score(right, synthetic.fs) > consistency_score(missing, synthetic.fs) > consistency_score(
        wrong, synthetic.fs)
    # a reading of no limb leads at all (cells placed past the trace) is below any reading that measures a law
    nothing = np.full_like(right, np.nan)
    assert consistency_score(nothing, synthetic.fs) == NO_LAW_SCORE_DB < consistency_score(wrong, synthetic.fs)


def test_real_records_keep_the_laws_and_misreadings_break_them(ptbxl):
    """On 20 held-out PTB-XL records: true readings keep both laws at >= 10 dB; III read where V3 is (boxes a row
    off), I and II swapped, or aVL inverted fall below RELIABLE_MIN_DB on every record."""
    for ecg_id in ptbxl.ids(folds=(10,))[:20]:
        signal = ptbxl.record(ecg_id, fs=100).signal.astype(np.float64)
        laws = limb_consistency(signal, 100)
        assert laws["einthoven_db"] >= 10 and laws["goldberger_db"] >= 10, (ecg_id, laws)
        row_off = signal.copy()
        row_off[:, LEAD_INDEX["III"]] = signal[:, LEAD_INDEX["V3"]]
        swapped = signal.copy()
        swapped[:, [LEAD_INDEX["I"], LEAD_INDEX["II"]]] = signal[:, [LEAD_INDEX["II"], LEAD_INDEX["I"]]]
        inverted = signal.copy()
        inverted[:, LEAD_INDEX["aVL"]] *= -1
        assert law_db(row_off, 100, "einthoven") < RELIABLE_MIN_DB, ecg_id
        assert law_db(swapped, 100, "einthoven") < RELIABLE_MIN_DB, ecg_id
        assert law_db(inverted, 100, "goldberger") < RELIABLE_MIN_DB, ecg_id


def test_leads_not_read_together_or_flat_are_not_measured(synthetic):
    signal = _recorded(synthetic)
    signal[: len(signal) // 2, LEAD_INDEX["I"]] = np.nan
    signal[len(signal) // 2:, LEAD_INDEX["II"]] = np.nan
    assert law_db(signal, synthetic.fs, "einthoven") is None
    flat = np.zeros_like(signal)
    assert law_db(flat, synthetic.fs, "goldberger") is None


def test_assess_reading_says_why_a_reading_is_not_reliable(synthetic):
    good = assess_reading(_recorded(synthetic), synthetic.fs, {"repeats_r_median": 0.95})
    assert good.reliable and not good.reasons and good.repeats_r == pytest.approx(0.95)
    signal = _recorded(synthetic)
    signal[:, LEAD_INDEX["aVF"]] *= -1
    bad = assess_reading(signal, synthetic.fs, {"repeats_r_median": 0.3}, layout_source="given")
    assert not bad.reliable
    text = " ".join(bad.reasons)
    assert "Goldberger" in text and "printed twice" in text and "layout you chose" in text
    # a broken law names both causes: a misreading, or a printout whose rows were not recorded together (ecg00036)
    assert "misread" in text and "not recorded at the same time" in text
    assert bad.to_json()["reliable"] is False


def test_missing_limb_leads_are_not_reliable(synthetic):
    signal = _recorded(synthetic)
    signal[:, LEAD_INDEX["III"]] = np.nan
    reading = assess_reading(signal, synthetic.fs)
    assert not reading.reliable and reading.einthoven_db is None
    assert any("not all read at the same time" in r for r in reading.reasons)
