"""12-lead signal sources: PTB-XL in its official layout, and a built-in synthetic generator.

Every source yields an :class:`EcgRecord`: a (n_samples, 12) float32 array in mV, in the lead order of
:data:`ecgcore.constants.LEAD_NAMES`, with its sampling rate and provenance.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ecgcore.constants import (
    LABELS,
    LEAD_ALIASES,
    LEAD_NAMES,
    MI_CODES,
    NORMAL_MIN_LIKELIHOOD,
    SYNTHETIC_LABEL,
    TEST_FOLDS,
    TRAIN_FOLDS,
    VALIDATION_FOLDS,
)
from ecgcore.errors import DataSourceError  # noqa: F401  (raised here; defined with the other user errors)

PTBXL_ENV = "ECGLAB_PTBXL"
SUPPORTED_FS = (100, 500)
DOWNLOAD_HINT = "run ./download_datasets.sh (or pass --ptbxl DIR / set ECGLAB_PTBXL to a PTB-XL 1.0.3 folder)"



@dataclass
class EcgRecord:
    """A 12-lead recording in mV, shape (n_samples, 12), lead order LEAD_NAMES."""

    signal: np.ndarray
    fs: int
    source: dict = field(default_factory=dict)  # dataset, ecg_id, patient_id, fs, scp_codes (PRODUCT.md)
    label: str = SYNTHETIC_LABEL

    @property
    def duration_s(self) -> float:
        return self.signal.shape[0] / self.fs

    def lead(self, name: str) -> np.ndarray:
        return self.signal[:, LEAD_NAMES.index(name)]


def label_from_scp(scp_codes: dict[str, float]) -> str:
    """The seed's 3-class rule: MI if any MI code; else normal if NORM >= 80; else non-MI abnormality."""
    if any(code in MI_CODES for code in scp_codes):
        return "mi"
    if scp_codes.get("NORM", 0.0) >= NORMAL_MIN_LIKELIHOOD:
        return "normal"
    return "non_mi_abnormality"


def default_ptbxl_dir() -> Path | None:
    """The configured PTB-XL folder (ECGLAB_PTBXL), or None when none is configured."""
    value = os.environ.get(PTBXL_ENV)
    return Path(value) if value else None


class PtbXl:
    """PTB-XL in its official layout (ptbxl_database.csv, records100/, records500/), read in place."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataSourceError(f"PTB-XL folder {self.root} does not exist; {DOWNLOAD_HINT}.")
        if not (self.root / "ptbxl_database.csv").is_file():
            raise DataSourceError(f"{self.root} has no ptbxl_database.csv, so it is not a PTB-XL folder; {DOWNLOAD_HINT}.")
        if not (self.root / "records100").is_dir() and not (self.root / "records500").is_dir():
            raise DataSourceError(f"{self.root} has neither records100/ nor records500/; {DOWNLOAD_HINT}.")

    def fold_counts(self) -> list[dict[str, int | str]]:
        """Records per diagnostic class in the whole subset and in the train, validation and test folds."""
        meta = self.metadata
        rows = []
        for label in LABELS:
            of_label = meta["label"] == label
            rows.append({"class": label, "records": int(of_label.sum()),
                         f"train (folds {_span(TRAIN_FOLDS)})": int((of_label & meta["strat_fold"].isin(TRAIN_FOLDS)).sum()),
                         f"validation ({_span(VALIDATION_FOLDS)})": int((of_label & meta["strat_fold"].isin(VALIDATION_FOLDS)).sum()),
                         f"test ({_span(TEST_FOLDS)})": int((of_label & meta["strat_fold"].isin(TEST_FOLDS)).sum())})
        return rows

    @cached_property
    def metadata(self) -> pd.DataFrame:
        """One row per record, indexed by ecg_id, with parsed scp_codes and the 3-class label."""
        df = pd.read_csv(self.root / "ptbxl_database.csv", index_col="ecg_id")
        df["scp_codes"] = df["scp_codes"].apply(ast.literal_eval)
        df["label"] = df["scp_codes"].apply(label_from_scp)
        return df

    @cached_property
    def statement_classes(self) -> dict[str, tuple[str, str]]:
        """Diagnostic statement code -> (diagnostic class, subclass), from scp_statements.csv ({} without it)."""
        path = self.root / "scp_statements.csv"
        if not path.is_file():
            return {}
        df = pd.read_csv(path, index_col=0)
        df = df[df["diagnostic"] == 1]
        return {str(code): (str(row["diagnostic_class"]), str(row["diagnostic_subclass"])) for code, row in df.iterrows()}

    def statements(self, ecg_id: int) -> set[str]:
        """The record's statements as target names: ``scp:CODE`` for every SCP code, ``class:X`` and
        ``subclass:Y`` for the diagnostic classes of its diagnostic codes."""
        names = set()
        for code in self.metadata.loc[ecg_id, "scp_codes"]:
            names.add(f"scp:{code}")
            if code in self.statement_classes:
                klass, subclass = self.statement_classes[code]
                names.update((f"class:{klass}", f"subclass:{subclass}"))
        return names

    def ids(self, folds: tuple[int, ...] | list[int] | None = None, label: str | None = None) -> list[int]:
        """ecg_ids, optionally limited to strat_folds and a label, in ascending order."""
        df = self.metadata
        if folds is not None:
            df = df[df["strat_fold"].isin(list(folds))]
        if label is not None:
            df = df[df["label"] == label]
        return [int(i) for i in df.index]

    def record(self, ecg_id: int, fs: int = 100) -> EcgRecord:
        """Read one record at 100 or 500 Hz; a sentence names what is missing when it cannot."""
        import wfdb

        if fs not in SUPPORTED_FS:
            raise DataSourceError(f"PTB-XL has sampling rates 100 and 500 Hz, not {fs}.")
        if ecg_id not in self.metadata.index:
            raise DataSourceError(f"ecg_id {ecg_id} is not in {self.root / 'ptbxl_database.csv'}.")
        row = self.metadata.loc[ecg_id]
        rel = row["filename_lr"] if fs == 100 else row["filename_hr"]
        path = self.root / rel
        if not path.with_suffix(".hea").is_file() or not path.with_suffix(".dat").is_file():
            raise DataSourceError(
                f"the {fs} Hz file of ecg_id {ecg_id} ({rel}.hea/.dat) is missing under {self.root}; {DOWNLOAD_HINT}."
            )
        try:
            signal, fields = wfdb.rdsamp(str(path))
        except Exception as exc:  # wfdb raises many kinds on damaged files
            raise DataSourceError(f"could not read {path}.dat ({exc}); the file may be damaged.") from exc
        names = [LEAD_ALIASES.get(n.upper(), n) for n in fields["sig_name"]]
        order = [names.index(lead) for lead in LEAD_NAMES]
        signal = np.asarray(signal[:, order], dtype=np.float32)
        scp_codes = dict(row["scp_codes"])
        source = {
            "dataset": "ptb-xl",
            "ecg_id": int(ecg_id),
            "patient_id": int(row["patient_id"]),
            "fs": int(fs),
            "scp_codes": scp_codes,
            "strat_fold": int(row["strat_fold"]),
        }
        return EcgRecord(signal=signal, fs=int(fs), source=source, label=label_from_scp(scp_codes))


# --- synthetic source -------------------------------------------------------------------------------

# Lead directions of a simple dipole model: x to the patient's left, y inferior, z anterior.
_DEG = np.pi / 180.0


def _lead_vectors() -> np.ndarray:
    lead_i = np.array([1.0, 0.0, 0.0])
    lead_ii = np.array([np.cos(60 * _DEG), np.sin(60 * _DEG), 0.0])
    # Precordial leads in the horizontal plane, from right-anterior (V1) to left-lateral (V6).
    angles = np.array([120.0, 100.0, 80.0, 60.0, 35.0, 5.0]) * _DEG
    precordial = np.stack([np.cos(angles), np.full(6, 0.15), np.sin(angles)], axis=1)
    return np.vstack([lead_i, lead_ii, precordial])  # (8, 3): I, II, V1..V6


# Waves of one beat: (offset from R peak in s, width in s, amplitude in mV, direction x/y/z).
_WAVES = (
    ("P", -0.17, 0.022, 0.16, (0.55, 0.80, 0.15)),
    ("Q", -0.028, 0.009, 0.22, (-0.35, 0.15, 0.92)),  # septal depolarisation: r in V1, q in V6
    ("R", 0.0, 0.011, 1.35, (0.72, 0.52, -0.46)),
    ("S", 0.030, 0.011, 0.40, (-0.40, -0.45, -0.80)),
    ("T", 0.0, 0.055, 0.32, (0.65, 0.55, 0.30)),  # offset set from the QT interval per beat
)


def synthetic_record(seed: int, fs: int = 100, duration_s: float = 10.0) -> EcgRecord:
    """A plausible 12-lead ECG from a dipole model, deterministic by seed.

    P-QRS-T morphology with per-record axis and amplitude variation, heart-rate variability with a respiratory
    component, baseline wander and noise. The limb leads obey Einthoven's and Goldberger's relations exactly
    (III = II - I, aVR = -(I+II)/2, aVL = I - II/2, aVF = II - I/2). Labelled ``synthetic``, never a diagnosis.
    """
    if fs not in SUPPORTED_FS:
        raise DataSourceError(f"the synthetic source supports 100 and 500 Hz, not {fs}.")
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * fs))
    t = np.arange(n) / fs

    heart_rate = rng.uniform(52, 105)
    rr_mean = 60.0 / heart_rate
    resp_hz = rng.uniform(0.15, 0.35)
    beats = []
    tb = rng.uniform(0.1, rr_mean)
    while tb < duration_s + 0.5:
        beats.append(tb)
        rr = rr_mean * (1 + 0.04 * np.sin(2 * np.pi * resp_hz * tb) + 0.02 * rng.standard_normal())
        tb += rr
    beats = np.asarray(beats)
    qt = 0.40 * np.sqrt(rr_mean)  # Bazett: QT = QTc * sqrt(RR)

    # Per-record variation: rotate the whole dipole a little and scale each wave.
    yaw, pitch = rng.normal(0, 12, size=2) * _DEG
    rot = _rotation(yaw, pitch)
    dipole = np.zeros((n, 3))
    for name, offset, width, amplitude, direction in _WAVES:
        if name == "T":
            offset = qt - 0.12
        amp = amplitude * rng.uniform(0.8, 1.2)
        wid = width * rng.uniform(0.9, 1.1)
        centres = beats + offset + rng.normal(0, 0.002, size=beats.size)
        shape = np.exp(-0.5 * ((t[:, None] - centres[None, :]) / wid) ** 2).sum(axis=1)
        dipole += amp * shape[:, None] * (rot @ np.asarray(direction))[None, :]

    projected = dipole @ _lead_vectors().T  # (n, 8): I, II, V1..V6
    # Baseline wander (respiration) and electrode noise, per independent lead.
    wander = 0.06 * np.sin(2 * np.pi * resp_hz * t[:, None] + rng.uniform(0, 2 * np.pi, size=8))
    noise = rng.normal(0, 0.008, size=(n, 8))
    projected = projected + wander + noise

    lead_i, lead_ii = projected[:, 0], projected[:, 1]
    limb = np.stack(
        [lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2, lead_ii - lead_i / 2], axis=1
    )
    signal = np.concatenate([limb, projected[:, 2:]], axis=1).astype(np.float32)
    source = {"dataset": "synthetic", "seed": int(seed), "fs": int(fs), "heart_rate_bpm": round(float(heart_rate), 1)}
    return EcgRecord(signal=signal, fs=fs, source=source, label=SYNTHETIC_LABEL)


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    about_x = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return about_y @ about_x


def _span(folds: tuple[int, ...]) -> str:
    """(1, ..., 8) -> '1-8'; (9,) -> '9'."""
    return f"{folds[0]}-{folds[-1]}" if len(folds) > 1 and list(folds) == list(range(folds[0], folds[-1] + 1)) else ",".join(map(str, folds))
