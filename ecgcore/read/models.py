"""The models that read a photo, loaded once per process and weights file: the one cache behind the CLIs
(``pipelines.classify``, ``soak``, ``train_classifier``), the app's pages and its analysis worker.

A weights file replaced on disk (a training run exported over it) is loaded again: each file's modification time is
part of the key. A load that fails (weights missing or corrupt: ModelError) is not cached, so weights that appear
later are found on the next call. ``None`` stands for the shipped weights of each model.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

Weights = tuple[str | None, str | None, str | None]  # (segmentation, signal classifier, image classifier)


def stamp(path: str | Path | None) -> float | None:
    """The file's modification time (None when it does not exist)."""
    try:
        return os.stat(path).st_mtime if path else None
    except OSError:
        return None


def segmenter(weights: str | Path | None = None):
    """The segmenter of ``weights`` (the shipped one for None)."""
    from ecgcore.read.segmentation import DEFAULT_SEGMENTATION_WEIGHTS

    path = None if weights is None else str(weights)
    return _segmenter(path, stamp(path or DEFAULT_SEGMENTATION_WEIGHTS))


def classifiers(signal: str | Path | None = None, image: str | Path | None = None):
    """The classifiers of these weights (the shipped ones for None)."""
    from ecgcore.classify.classifiers import DEFAULT_IMAGE_WEIGHTS, DEFAULT_SIGNAL_WEIGHTS

    signal = None if signal is None else str(signal)
    image = None if image is None else str(image)
    return _classifiers(signal, image, (stamp(signal or DEFAULT_SIGNAL_WEIGHTS), stamp(image or DEFAULT_IMAGE_WEIGHTS)))


def load(segmentation: str | Path | None = None, signal: str | Path | None = None,
         image: str | Path | None = None):
    """(segmenter, classifiers). The classifiers are loaded first, as analyze_photo needs them first: when both are
    missing, the error names the classifier."""
    found = classifiers(signal, image)
    return segmenter(segmentation), found


@functools.lru_cache(maxsize=3)
def _segmenter(path: str | None, mtime: float | None):
    from ecgcore.read.segmentation import load_segmenter

    return load_segmenter(path)


@functools.lru_cache(maxsize=3)
def _classifiers(signal: str | None, image: str | None, mtimes: tuple):
    from ecgcore.classify.classifiers import load_classifiers

    return load_classifiers(signal, image)
