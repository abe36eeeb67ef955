"""Curation's model, without Streamlit: the samples table, quality scores, the "suspect" rule, and class counts.

Scores are computed by a background job (``python -m pipelines.score_dataset --data DIR``) and kept beside the
samples: ``DIR/scores.csv`` (one row per sample) and ``DIR/scores/`` (each sample's predicted class map and digitised
signal, for the detail view). The page only reads them.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgcore.constants import LABELS
from ecgcore.dataset import (
    DATASET_FILE,
    DISCARDED,
    UNDO,
    UndoResult,
    clean_curator,
    discarded_ids,
    iter_samples,
    read_decisions,
)
from ecgcore.train.scores import SCORE_COLUMNS, SuspectRule, read_scores

# Parameters of the synthesis worth seeing in the table (the usual culprits of unreadable samples).
PARAM_COLUMNS = ("rotation_angle", "shadow_alpha", "white_noise_sd", "white_noise_p", "blur_factor", "motion_blur",
                 "jpeg_quality")


def sample_image_path(folder: str | Path, sid: str) -> Path:
    """The photo of sample ``sid``: ID.jpg, or ID.png for a scan saved losslessly."""
    folder = Path(folder)
    jpg = folder / f"{sid}.jpg"
    return jpg if jpg.is_file() or not (folder / f"{sid}.png").is_file() else folder / f"{sid}.png"


def sample_rows(folder: str | Path) -> pd.DataFrame:
    """One row per complete sample (discarded ones included): label, layout, key parameters and the scores."""
    folder = Path(folder)
    rows = []
    for sample in iter_samples(folder, include_discarded=True):
        params = sample.meta.get("params", {})
        rows.append({"id": sample.id, "label": sample.label, "layout": sample.meta.get("layout", ""),
                     **{p: params.get(p) for p in PARAM_COLUMNS}})
    table = pd.DataFrame(rows, columns=["id", "label", "layout", *PARAM_COLUMNS])
    scores = read_scores(folder)
    if len(scores):
        keep = [c for c in SCORE_COLUMNS if c in scores.columns]
        table = table.merge(scores[keep].drop_duplicates("id", keep="last"), on="id", how="left")
    for column in SCORE_COLUMNS[1:]:
        if column not in table.columns:
            table[column] = np.nan
    return table.sort_values("id").reset_index(drop=True)


def apply_curation(table: pd.DataFrame, discarded: set[str], rule: SuspectRule | None = None) -> pd.DataFrame:
    """The table with the current decisions (``discarded``) and the suspect flag under ``rule``."""
    rule = rule or SuspectRule()
    table = table.copy()
    table.insert(3, "discarded", table["id"].isin(discarded))
    reasons = [rule.reasons(row) for row in table.to_dict("records")]
    table.insert(4, "suspect", [bool(r) for r in reasons])
    table["why"] = ["; ".join(r) for r in reasons]
    return table


def samples_table(folder: str | Path, rule: SuspectRule | None = None) -> pd.DataFrame:
    """sample_rows with the dataset's current curation decisions and suspect flags, sorted by id."""
    return apply_curation(sample_rows(folder), discarded_ids(folder), rule)


def worst_first(table: pd.DataFrame) -> pd.DataFrame:
    """Suspects first, then by the weakest available score (lowest IoU, SNR, own-label probability, contrast)."""
    keys = pd.DataFrame(index=table.index)
    keys["suspect"] = ~table["suspect"]
    for column in ("seg_iou", "snr_db", "p_true", "ink_contrast"):
        keys[column] = pd.to_numeric(table[column], errors="coerce").fillna(np.inf)
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return table.loc[order]


def class_counts(table: pd.DataFrame) -> tuple[dict[str, int], dict[str, int]]:
    """Samples per class before curation (all) and after (not discarded)."""
    before = table["label"].value_counts().to_dict()
    after = table.loc[~table["discarded"], "label"].value_counts().to_dict()
    return {k: int(v) for k, v in before.items()}, {k: int(v) for k, v in after.items()}


def threshold_ids(table: pd.DataFrame, column: str, threshold: float, below: bool = True) -> list[str]:
    """Ids whose ``column`` is below (or above) ``threshold``; samples without that score are never selected."""
    values = pd.to_numeric(table[column], errors="coerce")
    chosen = values < threshold if below else values > threshold
    return table.loc[chosen.fillna(False), "id"].tolist()


def history_table(folder: str | Path, limit: int = 50) -> list[dict[str, Any]]:
    """The latest curation decisions and undos, newest first, for people to see who did what."""
    out = []
    for entry in reversed(read_decisions(folder)[-limit:]):
        decision, reason = entry["decision"], entry.get("reason", "")
        if decision == UNDO:
            decision = f"undo {entry.get('undid', '')}".strip()
            later = entry.get("overtaken_by")
            if isinstance(later, dict):
                reason = f"skipped: {later.get('by') or 'someone'}'s later {later.get('decision', '')} stands"
        out.append({"time": entry.get("time", "")[:19].replace("T", " "), "id": entry["id"],
                    "decision": decision, "reason": reason, "by": entry.get("by", "")})
    return out


def default_curator() -> str:
    """The name a new Curation session starts with: the user running the app (``curator`` when there is none)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        name = ""
    return clean_curator(name) or "curator"


def id_list(ids: list[str], limit: int = 6) -> str:
    """Sample ids for a message: all of them when few, else the first ones and how many more."""
    if len(ids) <= limit:
        return ", ".join(ids)
    return f"{', '.join(ids[:limit])} and {len(ids) - limit} more"


def decision_message(ids: list[str], decision: str) -> str:
    """The toast after a decision: exactly which samples it changed."""
    return f"{'Discarded' if decision == 'discard' else 'Restored'} {id_list(ids)}."


def undo_message(result: UndoResult) -> tuple[str, bool]:
    """The toast after an undo, saying exactly what happened to each sample, and whether it needs a warning.

    A sample whose later decision by another curator stood is named with that curator, so nobody believes their
    undo took effect when it did not.
    """
    if not result.items:
        return "Nothing of yours to undo.", False
    restored = [i.id for i in result.items if i.changed and i.state != DISCARDED]
    again = [i.id for i in result.items if i.changed and i.state == DISCARDED]
    kept_as_is = [i for i in result.items if not i.changed and i.overtaken_by is None]
    overtaken = [i for i in result.items if i.overtaken_by is not None]
    parts = []
    if restored:
        parts.append(f"Restored {id_list(restored)}.")
    if again:
        parts.append(f"Discarded {id_list(again)} again.")
    for item in kept_as_is:  # nothing changed: an earlier discard still stands, or it was kept anyway
        earlier = " (an earlier discard stands)" if item.state == DISCARDED else ""
        parts.append(f"Undid your {item.undid} of {item.id}; it stays {item.state}{earlier}.")
    for item in overtaken:
        later = item.overtaken_by or {}
        who = later.get("by") or "another curator"
        done = "discarded" if later.get("decision") == "discard" else "restored"
        parts.append(f"{item.id} stays {item.state}: {who} {done} it after your {item.undid}, so your undo leaves "
                     f"{who}'s decision in place.")
    return " ".join(parts), bool(overtaken)


def labels_in_order(counts: dict[str, int]) -> list[str]:
    return [lab for lab in (*LABELS, "synthetic") if lab in counts]


def dataset_info(folder: str | Path) -> dict[str, Any]:
    try:
        return json.loads((Path(folder) / DATASET_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


# --- the demo dataset: a newcomer's first dataset, one click from an empty Curation page ---------------------------

DEMO_NAME = "demo"
DEMO_JOB_NAME = "Demo dataset"
DEMO_SAMPLES = 24


def demo_generation_args(workspace: Path) -> list[str]:
    """``pipelines.generate_ptb_v`` arguments of the demo dataset: DEMO_SAMPLES small synthetic photos (no download
    needed) in three layouts, made in well under a minute on two cores."""
    from ecgcore.workspace import DATASETS

    return ["--synthetic", "--out", str(Path(workspace) / DATASETS / DEMO_NAME), "-n", str(DEMO_SAMPLES),
            "--seed", "1", "--size", "800x600", "--layout", "3x4+II,6x2,12x1"]


def demo_needs_scoring(jobs: list, folder: Path) -> bool:
    """Whether ``folder`` is the demo dataset, its generation job has finished and no scoring job has been started
    for it yet: then the page starts scoring, so that a newcomer curates scored samples."""
    made = [j for j in jobs if j.pipeline == "generate_ptb_v" and j.name == DEMO_JOB_NAME and str(folder) in j.args]
    scored = [j for j in jobs if j.pipeline == "score_dataset" and str(folder) in j.args]
    return bool(made) and made[0].status == "finished" and not scored
