"""Signal sources: the PTB-XL reader on the shared subset, and the built-in synthetic source."""

from __future__ import annotations

import numpy as np
import pytest

from ecgcore.constants import LEAD_NAMES, SYNTHETIC_LABEL
from ecgcore.signals import DataSourceError, PtbXl, label_from_scp, synthetic_record


@pytest.mark.parametrize(
    "codes, label",
    [
        ({"NORM": 100.0, "SR": 0.0}, "normal"),
        ({"NORM": 50.0}, "non_mi_abnormality"),
        ({"NORM": 80.0}, "normal"),
        ({"IMI": 15.0, "NORM": 100.0}, "mi"),
        ({"AFLT": 100.0}, "non_mi_abnormality"),
        ({"PMI": 0.0}, "mi"),
        ({}, "non_mi_abnormality"),
    ],
)
def test_seed_label_rule(codes, label):
    assert label_from_scp(codes) == label


def test_label_rule_reproduces_the_subset_counts(ptbxl):
    counts = ptbxl.metadata["label"].value_counts().to_dict()
    assert counts == {"normal": 894, "non_mi_abnormality": 732, "mi": 475}


def test_reads_a_record_in_lead_order(ptbxl):
    record = ptbxl.record(9)
    assert record.signal.shape == (1000, 12) and record.signal.dtype == np.float32
    assert record.fs == 100 and record.label == "normal"
    assert record.source["ecg_id"] == 9 and record.source["patient_id"] == 18792
    # Einthoven holds in real data too (to the recorder's rounding)
    lead = {name: record.signal[:, i] for i, name in enumerate(LEAD_NAMES)}
    assert np.abs(lead["II"] - lead["I"] - lead["III"]).max() < 0.05


def test_folds_select_records(ptbxl):
    train, test = ptbxl.ids(folds=range(1, 9)), ptbxl.ids(folds=[10])
    assert not set(train) & set(test)
    assert all(ptbxl.metadata.loc[i, "strat_fold"] == 10 for i in test)


def test_500hz_absent_for_training_folds_is_a_sentence(ptbxl):
    fold1 = ptbxl.ids(folds=[1])[0]
    with pytest.raises(DataSourceError, match="500 Hz file of ecg_id"):
        ptbxl.record(fold1, fs=500)
    fold10 = ptbxl.ids(folds=[10])[0]
    assert ptbxl.record(fold10, fs=500).signal.shape == (5000, 12)


def test_missing_folder_and_record_are_sentences(tmp_path, ptbxl):
    with pytest.raises(DataSourceError, match="does not exist; run ./download_datasets.sh"):
        PtbXl(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match="no ptbxl_database.csv"):
        PtbXl(tmp_path / "empty")
    with pytest.raises(DataSourceError, match="ecg_id 123456789 is not in"):
        ptbxl.record(123456789)
    with pytest.raises(DataSourceError, match="100 and 500 Hz"):
        ptbxl.record(9, fs=250)


def test_synthetic_source_is_deterministic_and_consistent():
    a, b, c = synthetic_record(3), synthetic_record(3), synthetic_record(4)
    assert np.array_equal(a.signal, b.signal) and not np.array_equal(a.signal, c.signal)
    assert a.label == SYNTHETIC_LABEL and a.source["dataset"] == "synthetic"
    s = {name: a.signal[:, i].astype(np.float64) for i, name in enumerate(LEAD_NAMES)}
    np.testing.assert_allclose(s["III"], s["II"] - s["I"], atol=1e-5)
    np.testing.assert_allclose(s["aVR"], -(s["I"] + s["II"]) / 2, atol=1e-5)
    np.testing.assert_allclose(s["aVL"], s["I"] - s["II"] / 2, atol=1e-5)
    np.testing.assert_allclose(s["aVF"], s["II"] - s["I"] / 2, atol=1e-5)


def test_synthetic_source_looks_like_an_ecg():
    record = synthetic_record(11, fs=500)
    lead_ii = record.lead("II")
    assert record.signal.shape == (5000, 12)
    # R peaks: a plausible heart rate and amplitude
    from scipy.signal import find_peaks

    peaks, _ = find_peaks(lead_ii, height=0.5 * lead_ii.max(), distance=int(0.3 * 500))
    rate = 60 * (len(peaks) - 1) / ((peaks[-1] - peaks[0]) / 500)
    assert 45 <= rate <= 110
    assert 0.4 <= lead_ii.max() - np.median(lead_ii) <= 3.0
    # heart-rate variability: RR intervals are not all equal
    assert np.std(np.diff(peaks)) > 0
