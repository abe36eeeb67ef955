"""Making one PTB-V sample from a dataset configuration: the unit of work of generation jobs.

It lives in the library (not in the command) so that worker processes (joblib's loky, Dask) can import it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from ecgcore.dataset import is_done, sample_id, sample_seed, write_sample
from ecgcore.signals import PtbXl, synthetic_record
from ecgcore.synth.backgrounds import list_background_photos
from ecgcore.synth.params import Preset
from ecgcore.synth.photo import synthesize_photo
from ecgcore.synth.render import PaperOptions

# Settings that define a dataset: a rerun must match them to resume into the same folder.
IDENTITY_KEYS = ("preset", "source", "layouts", "seed", "size", "paper", "fs", "backgrounds")


@functools.lru_cache(maxsize=2)
def _ptbxl(root: str) -> PtbXl:
    return PtbXl(root)


@functools.lru_cache(maxsize=2)
def _background_files(folder: str | None) -> list[Path] | None:
    return list_background_photos(folder) if folder else None


def make_sample(index: int, config: dict[str, Any], out: str) -> tuple[str, str, bool]:
    """Make and write sample ``index`` unless it is done. Returns (id, label, written). Runs in worker processes."""
    folder = Path(out)
    sid = sample_id(index)
    if is_done(folder, sid):
        return sid, "", False
    seed = sample_seed(config["seed"], index)
    rng = np.random.default_rng(seed)
    source = config["source"]
    if source["kind"] == "synthetic":
        record = synthetic_record(seed, fs=config["fs"])
    else:
        ids = source["ids"]
        record = _ptbxl(source["root"]).record(int(ids[index % len(ids)]), fs=config["fs"])
    layouts = config["layouts"]
    layout = layouts[int(rng.integers(len(layouts)))] if len(layouts) > 1 else layouts[0]
    paper = PaperOptions(**config["paper"])
    photo = synthesize_photo(
        record,
        seed=seed,
        preset=Preset.from_json(config["preset"]),
        layout=layout,
        paper_options=paper,
        size=tuple(config["size"]),
        background_files=_background_files(config["backgrounds"]),
    )
    meta = write_sample(folder, sid, photo, record, layout, seed)
    return sid, meta["label"], True


