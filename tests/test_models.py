"""The one model cache (ecgcore.read.models): loaded once per weights file, again when the file is replaced, and a
failed load is not kept."""

from __future__ import annotations

import os

import pytest

from ecgcore.errors import ModelError
from ecgcore.read import models, segmentation


def test_a_weights_file_is_loaded_once_and_again_when_replaced(tmp_path, monkeypatch):
    calls = []

    def fake_load(path):
        if not os.path.isfile(path):
            raise ModelError(f"{path} does not exist.")
        calls.append(path)
        return object()

    monkeypatch.setattr(segmentation, "load_segmenter", fake_load)
    models._segmenter.cache_clear()
    weights = tmp_path / "seg.safetensors"
    with pytest.raises(ModelError):
        models.segmenter(weights)  # not there yet: the error is not cached ...
    weights.write_bytes(b"x")
    first = models.segmenter(weights)  # ... so the file is found once it appears
    assert models.segmenter(weights) is first and len(calls) == 1
    os.utime(weights, (1e9, 1e9))  # replaced (a training run exported over it)
    assert models.segmenter(weights) is not first and len(calls) == 2
    models._segmenter.cache_clear()
