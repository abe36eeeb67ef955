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
    derivation_formula,
    derive_unread_limb_leads,
    law_db,
    limb_consistency,
    without_derived,
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


def test_each_limb_lead_is_derived_from_the_other_two_of_its_law():
    assert [derivation_formula(lead) for lead in ("I", "II", "III", "aVR", "aVL", "aVF")] == [
        "II - III", "I + III", "II - I", "-aVL - aVF", "-aVR - aVF", "-aVR - aVL"]


@pytest.mark.parametrize("lead", ["I", "II", "III", "aVR", "aVL", "aVF"])
def test_a_limb_lead_not_read_is_derived_and_never_counts_as_evidence(synthetic, lead):
    """A 3x4 reading whose one limb lead was not read where its law's two others were: the lead comes back as the
    electrocardiograph computes it (within the read leads' noise), named with its samples; the law it came from is no
    longer measured (derived samples are no evidence: they would keep it at MAX_DB), and the reading is not reliable
    for that reason, named."""
    fs = synthetic.fs
    read = _as_3x4(_recorded(synthetic), fs)
    read[:, LEAD_INDEX[lead]] = np.nan
    filled, derived = derive_unread_limb_leads(read, fs)
    j = LEAD_INDEX[lead]
    column = slice(0, int(2.5 * fs)) if lead in ("I", "II", "III") else slice(int(2.5 * fs), int(5.0 * fs))
    true = np.asarray(synthetic.signal, np.float64)[column, j]
    assert np.isfinite(filled[column, j]).all() and np.isnan(np.delete(filled[:, j], np.r_[column])).all()
    assert np.sqrt(np.mean((filled[column, j] - true) ** 2)) < 0.03  # two leads' 0.01 mV noise
    assert list(derived) == [lead] and derived[lead]["samples"] == [[column.start, column.stop]]
    assert derived[lead]["seconds"] == pytest.approx(2.5) and derived[lead]["from"] == derivation_formula(lead)
    law = derived[lead]["law"]
    assert law_db(filled, fs, law) is not None  # the derived samples alone would let the law be "measured" ...
    quality = {"derived": derived}
    assert np.array_equal(np.isnan(without_derived(filled, quality)), np.isnan(read))
    reading = assess_reading(filled, fs, quality)  # ... and what the verdict measures instead
    assert reading.to_json()[f"{law}_db"] is None and not reading.reliable
    assert any(f"{lead} (derived from {derivation_formula(lead)}) was not read" in r for r in reading.reasons)
    assert reading.derived == [f"{lead} = {derivation_formula(lead)} (2.5 s)"]


def test_a_broken_law_or_a_lead_not_printed_gives_no_derived_lead(synthetic):
    """Where the read samples break the law, a derived lead would be as wrong as its sources: none. Nor is a lead
    derived that the page does not print, nor where two leads of the law are missing."""
    fs = synthetic.fs
    read = _recorded(synthetic)
    read[: int(2.5 * fs), LEAD_INDEX["III"]] = np.nan
    read[:, LEAD_INDEX["II"]] *= -1  # Einthoven broken where all three are read
    assert derive_unread_limb_leads(read, fs)[1] == {}
    read = _recorded(synthetic)
    read[:, LEAD_INDEX["aVF"]] = np.nan
    assert derive_unread_limb_leads(read, fs, shown={"I", "II", "III", "aVR", "aVL"})[1] == {}
    read[:, LEAD_INDEX["aVL"]] = np.nan
    assert derive_unread_limb_leads(read, fs)[1] == {}
    # a law that holds where all three were read derives the stretch where one was not
    read = _recorded(synthetic)
    read[100:180, LEAD_INDEX["aVR"]] = np.nan
    read[300:310, LEAD_INDEX["aVR"]] = np.nan  # 0.1 s, shorter than MIN_DERIVED_S: a gap it stays
    filled, derived = derive_unread_limb_leads(read, fs)
    assert derived["aVR"]["samples"] == [[100, 180]] and np.isfinite(np.delete(filled, np.s_[300:310], axis=0)).all()
    assert np.isnan(filled[300:310, LEAD_INDEX["aVR"]]).all()
    assert assess_reading(filled, fs, {"derived": derived}).reliable  # the law measured on the other 9.2 s
