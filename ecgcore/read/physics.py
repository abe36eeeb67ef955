"""Limb-lead physics: a quality measure of a reading that needs no ground truth.

Every electrocardiograph records I and II and derives III = II - I, aVR = -(I + II)/2, aVL = I - II/2 and
aVF = II - I/2. So on any right reading of any printout

- Einthoven: I + III - II = 0, and
- Goldberger: aVR + aVL + aVF = 0,

wherever those leads share time. Per law, the consistency is 10 log10(mean energy of its leads / energy of the
residual), each lead's median removed, over the samples where all its leads are read. True PTB-XL records score
15-24 dB; a swapped lead, an inverted lead, a row read from the wrong place or a column 50 ms off fall below 0 dB.

:func:`assess_reading` turns the two figures, the agreement of leads a layout shows twice and the digitiser's own
flags into a :class:`Reading`: ``reliable`` true or false, with the reasons in words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ecgcore.constants import LEAD_INDEX

# law name -> ((lead, coefficient), ...) whose weighted sum is zero on a true recording
LIMB_LAWS: dict[str, tuple[tuple[str, float], ...]] = {
    "einthoven": (("I", 1.0), ("III", 1.0), ("II", -1.0)),
    "goldberger": (("aVR", 1.0), ("aVL", 1.0), ("aVF", 1.0)),
}
RELIABLE_MIN_DB = 5.0  # each law at least this on a reading called reliable
MIN_SHARED_S = 0.5  # a law is measured over at least this much time that all its leads share
MIN_LAW_RMS_MV = 0.02  # leads this flat (RMS, mean over the law's leads) say nothing: not measured
MAX_DB = 60.0  # a residual of zero (a lead derived from the others) is reported as this
# A limb lead not read for at least this long where the two others of its law were is derived from them; shorter gaps
# (a QRS whose thin stroke was lost) stay gaps: derived there from two leads read at their own hardest place, they
# scored worse than the gap on fold-9 dev (8 of 100 pages 0.02-0.6 dB down at 1-7 samples)
MIN_DERIVED_S = 0.2
REPEAT_R_MIN = 0.8  # leads a layout shows twice must agree at least this well (Pearson r)
MIN_LEADS_READ = 10  # of 12 leads, read along most of their window
UNMEASURED_SCORE_DB = 0.0  # a law that cannot be measured, in consistency_score: no evidence either way ...
NO_LAW_SCORE_DB = -10.0  # ... unless neither can: a reading of no limb leads at all


def law_db(signal: np.ndarray, fs: int, law: str) -> float | None:
    """One limb-lead law's consistency in dB on a (n, 12) mV signal (NaN where not read), or None when its leads
    share less than MIN_SHARED_S of read time or are too flat to tell anything."""
    leads = LIMB_LAWS[law]
    x = np.asarray(signal, np.float64)[:, [LEAD_INDEX[name] for name, _ in leads]]
    shared = np.isfinite(x).all(axis=1)
    if shared.sum() < max(2, int(round(MIN_SHARED_S * fs))):
        return None
    return residual_db(x[shared], np.array([c for _, c in leads]))


def residual_db(x: np.ndarray, coefficients: np.ndarray) -> float | None:
    """10 log10(mean energy of the columns of ``x`` / energy of ``x @ coefficients``), each column's median removed;
    ``x`` is (n, k) with no NaN. None when the columns are too flat to tell anything (see MIN_LAW_RMS_MV)."""
    x = x - np.median(x, axis=0)
    energy = float(np.mean(np.sum(x**2, axis=0)))
    if len(x) == 0 or energy / len(x) < MIN_LAW_RMS_MV**2:
        return None
    residual = float(np.sum((x @ coefficients) ** 2))
    if residual <= energy * 10 ** (-MAX_DB / 10):
        return MAX_DB
    return float(10.0 * np.log10(energy / residual))


def derivation(lead: str) -> tuple[str, tuple[tuple[str, float], ...]]:
    """How a limb lead follows from the other two of its law: (law, ((lead, factor), ...)), e.g. III = II - I is
    ("einthoven", (("I", -1.0), ("II", 1.0)))."""
    for law, terms in LIMB_LAWS.items():
        for name, c in terms:
            if name == lead:
                return law, tuple((other, -ci / c) for other, ci in terms if other != lead)
    raise KeyError(f"{lead} is not a limb lead of {sorted(LIMB_LAWS)}")


def derivation_formula(lead: str) -> str:
    """The derivation in words a clinician reads: "II - I" for III, "-aVL - aVF" for aVR."""
    parts: list[str] = []
    for other, factor in sorted(derivation(lead)[1], key=lambda term: -term[1]):  # added terms first
        size = "" if abs(abs(factor) - 1.0) < 1e-9 else f"{abs(factor):g} "
        sign = "-" if factor < 0 else "+"
        parts.append(f"{sign if sign == '-' else ''}{size}{other}" if not parts else f"{sign} {size}{other}")
    return " ".join(parts)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The stretches [first, end) where a boolean mask is true."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def derive_unread_limb_leads(signal: np.ndarray, fs: int, shown: set[str] | None = None,
                             laws: dict[str, float | None] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """A limb lead not read (for MIN_DERIVED_S at least) where the two others of its law are, derived from them as the
    electrocardiograph itself computes it (III = II - I, aVF = -aVR - aVL, ...), on the lead's own 0 mV line where it
    was read elsewhere: (the signal with those samples filled, a copy; and per derived lead {"from": formula, "law",
    "seconds", "samples": [[first, end), ...]]}).

    Only a law the reading keeps (``laws``, its dB measured on the read samples, at least RELIABLE_MIN_DB, or not
    measurable: the lead read nowhere beside the others) gives leads: where it is broken, a derived lead would be as
    wrong as its sources. ``shown``, when given, names the leads the page prints (a lead the page does not print is
    not derived). The derived samples never count as evidence for the law (:func:`without_derived`)."""
    out = np.array(signal, dtype=np.float32, copy=True)
    full = np.asarray(signal, np.float64)
    derived: dict[str, Any] = {}
    for law, terms in LIMB_LAWS.items():
        db = laws.get(f"{law}_db") if laws is not None else law_db(signal, fs, law)
        if db is not None and db < RELIABLE_MIN_DB:
            continue
        for lead, _ in terms:
            if shown is not None and lead not in shown:
                continue
            sources = derivation(lead)[1]
            x = full[:, [LEAD_INDEX[other] for other, _ in sources]]
            own = full[:, LEAD_INDEX[lead]]
            where = ~np.isfinite(own) & np.isfinite(x).all(axis=1)
            for a, b in _runs(where):
                if b - a < MIN_DERIVED_S * fs:
                    where[a:b] = False
            if not where.any():
                continue
            value = x @ np.array([factor for _, factor in sources])
            # Each lead's 0 mV line is its own row's: where the lead was read beside the others, their difference
            # there moves the derived values onto the lead's line
            shared = np.isfinite(own) & np.isfinite(value)
            if shared.sum() >= MIN_SHARED_S * fs:
                value = value + float(np.median(own[shared] - value[shared]))
            out[where, LEAD_INDEX[lead]] = value[where]
            derived[lead] = {"from": derivation_formula(lead), "law": law, "seconds": round(float(where.sum()) / fs, 3),
                             "samples": [[a, b] for a, b in _runs(where)]}
    return out, derived


def derived_mask(n_samples: int, derived: dict[str, Any] | None) -> np.ndarray:
    """(n_samples, 12) bool: the samples a reading derived (its quality["derived"], :func:`derive_unread_limb_leads`)."""
    mask = np.zeros((n_samples, len(LEAD_INDEX)), bool)
    for lead, entry in (derived or {}).items():
        for a, b in entry["samples"]:
            mask[a:b, LEAD_INDEX[lead]] = True
    return mask


def without_derived(signal: np.ndarray, quality: dict[str, Any] | None) -> np.ndarray:
    """``signal`` with the samples the digitiser derived (quality["derived"]) blank again: what was read, the only
    evidence the laws may be measured on."""
    derived = (quality or {}).get("derived")
    if not derived:
        return signal
    return np.where(derived_mask(len(signal), derived), np.nan, signal)


def limb_consistency(signal: np.ndarray, fs: int) -> dict[str, float | None]:
    """Both laws, rounded: ``{"einthoven_db": ..., "goldberger_db": ...}`` (None where not measurable)."""
    out: dict[str, float | None] = {}
    for law in LIMB_LAWS:
        db = law_db(signal, fs, law)
        out[f"{law}_db"] = None if db is None else round(db, 2)
    return out


def consistency_score(signal: np.ndarray, fs: int) -> float:
    """One number for choosing between readings of the same page: the weaker law's dB, capped at 25 dB (beyond
    that a reading is as right as a true record), and UNMEASURED_SCORE_DB for a law that cannot be measured (its
    leads not read together): a reading that misses a lead does not win by that over one that keeps the law, and
    does over one that breaks it (a page whose aVL row is too faint to find, read as printed, against the same
    page read in another layout whose laws fall below 0 dB). A reading that measures neither law scores
    NO_LAW_SCORE_DB, below any that measures one (cells placed past the page's trace read nothing)."""
    values = [law_db(signal, fs, law) for law in LIMB_LAWS]
    if all(v is None for v in values):  # no limb leads read together at all: nothing to choose it by
        return NO_LAW_SCORE_DB
    return float(min(min(v, 25.0) if v is not None else UNMEASURED_SCORE_DB for v in values))


@dataclass
class Reading:
    """Whether a digitised record can be trusted, and why not: the ``reading`` object of ``classify --json``."""

    reliable: bool
    einthoven_db: float | None
    goldberger_db: float | None
    repeats_r: float | None
    reasons: list[str] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)  # limb leads derived where not read, "III = II - I (2.5 s)"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def reading_of(record: Any) -> Reading:
    """:func:`assess_reading` of a digitised record (anything with ``signal``, ``fs`` and, optionally,
    ``quality`` and ``layout_source``, as ecgcore.read.digitize.DigitizedEcg): the one way every caller judges a
    reading. Forced layouts and hand-drawn boxes go through the same rules (layout_source only names who chose
    them)."""
    return assess_reading(np.asarray(record.signal), int(record.fs), getattr(record, "quality", None) or {},
                          getattr(record, "layout_source", "auto"))


def assess_reading(signal: np.ndarray, fs: int, quality: dict[str, Any] | None = None,
                   layout_source: str = "auto") -> Reading:
    """Judge a reading: reliable only when both limb-lead laws hold at >= RELIABLE_MIN_DB, leads shown twice agree,
    at least MIN_LEADS_READ leads were read and the grid fit is sound. ``quality`` is the digitiser's report
    (DigitizedEcg.quality); ``layout_source`` says whether a person chose the layout or drew the boxes, which
    changes nothing in the rules (a forced layout is checked like any other) but is named in the reasons."""
    quality = quality or {}
    laws = limb_consistency(without_derived(signal, quality), fs)  # derived samples are no evidence
    reasons: list[str] = []
    names = {"einthoven_db": "I + III = II (Einthoven)", "goldberger_db": "aVR + aVL + aVF = 0 (Goldberger)"}
    derived = quality.get("derived") or {}
    for key, words in names.items():
        db = laws[key]
        gone = [f"{lead} (derived from {entry['from']})" for lead, entry in derived.items()
                if f"{entry['law']}_db" == key]
        if db is None and gone:
            reasons.append(f"{', '.join(gone)} was not read on the photo, so {words} cannot check the reading")
        elif db is None:
            reasons.append(f"the limb leads of {words} were not all read at the same time, so the reading cannot be "
                           "checked against it")
        elif db < RELIABLE_MIN_DB:
            reasons.append(f"the limb leads break {words}: {db:.1f} dB where a true recording gives at least "
                           f"{RELIABLE_MIN_DB:g} dB; rows, columns or lead names were probably misread, or the "
                           "printout's rows were not recorded at the same time")
    repeats = quality.get("repeats_r_median")
    if repeats is not None and repeats < REPEAT_R_MIN:
        reasons.append(f"a lead printed twice reads differently in its two places (r {repeats:.2f})")
    leads = quality.get("leads") or {}
    if leads:
        missing = [name for name, entry in leads.items() if entry.get("shown") is False]
        n_read = sum(1 for entry in leads.values() if entry.get("coverage", 0.0) >= 0.5)
        if missing:
            reasons.append(f"the page does not show {', '.join(missing)} ({12 - len(missing)} of 12 leads printed), "
                           "and the classifiers need all 12")
        elif n_read < MIN_LEADS_READ:
            reasons.append(f"only {n_read} of 12 leads were read along at least half of their window")
    flags = quality.get("flags") or []
    if "grid_fit_poor" in flags:
        reasons.append("the ECG paper's grid could not be fitted well")
    if reasons and layout_source in ("given", "boxes"):
        who = "the layout you chose" if layout_source == "given" else "the lead boxes you drew"
        reasons.append(f"(read with {who})")
    return Reading(reliable=not reasons, einthoven_db=laws["einthoven_db"], goldberger_db=laws["goldberger_db"],
                   repeats_r=None if repeats is None else round(float(repeats), 3), reasons=reasons,
                   derived=[f"{lead} = {entry['from']} ({entry['seconds']:g} s)" for lead, entry in derived.items()])
