"""The soak run (issue #7, part 4): many photos classified in one process must leave its memory flat.

A short version of ``python -m pipelines.soak --n 300 --trim`` (40 analyses cycling over 4 generated photos) in a
fresh process, returning freed heap to the OS after each image as the app does (``analyze.release_memory``): after
the warm-up the resident memory may not grow by more than 20 MB, nor trend upwards by more than 60 MB per 100 images.
Keeping each result alive (e.g. appending them to a global list) grows it by 83 MB over the 30 measured images, slope
276 MB per 100 images, and fails both bounds; identical runs measured here stay within 0.1 MB.

Without ``--trim`` the figure is the allocator's, not the reader's: freed heap that glibc keeps depends on how the
native libraries' threads interleave, and three identical runs side by side on this 2-core machine grew by -44 to
+92 MB (CI saw 31-108 MB) while the same runs with the trim stayed flat.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipelines.soak import fit_slope
from tests.conftest import REPO

MAX_GROWTH_MB = 20.0
MAX_SLOPE_MB_PER_100 = 60.0


@pytest.fixture(scope="module")
def shipped_models():
    try:
        from ecgcore.classify.classifiers import load_classifiers
        from ecgcore.read.segmentation import load_segmenter

        load_classifiers()
        load_segmenter()
    except Exception as exc:  # the soak needs the models; their absence has its own tests
        pytest.skip(f"shipped models not loadable: {exc}")


def soak(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.soak", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_memory_stays_flat_over_many_analyses_in_one_process(shipped_models):
    proc = soak("--n", "40", "--distinct", "4", "--size", "800x600", "--warmup", "10", "--every", "2",
                "--threads", "1", "--trim", "--json")
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    outcomes = figures["outcomes"]
    assert sum(outcomes.values()) == 40 and outcomes["error"] == 0, figures["problems"]
    assert outcomes["verdict"] >= 1, figures["problems"]  # the whole path (classification too) ran
    rss = figures["rss_mb"]
    assert rss["start"] < rss["models_loaded"] <= rss["peak"]
    assert figures["growth_after_warmup_mb"] < MAX_GROWTH_MB, figures
    assert figures["slope_mb_per_100_images"] < MAX_SLOPE_MB_PER_100, figures
    assert [i for i, _ in figures["samples"]] == list(range(0, 41, 2))
    assert figures["seconds_per_image"] > 0 and figures["distinct_photos"] == 4


def test_the_slope_is_a_least_squares_fit_in_mb_per_100_images():
    assert fit_slope([(20, 900.0), (30, 905.0), (40, 910.0)]) == pytest.approx(50.0)
    assert fit_slope([(20, 900.0), (30, 900.0), (40, 900.0)]) == pytest.approx(0.0, abs=1e-9)
    assert fit_slope([(20, 900.0), (30, 950.0)]) is None  # too few samples to call it a trend


def test_bad_arguments_get_one_line(tmp_path):
    proc = soak("--n", "0")
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --n must be at least 1, not 0."
    proc = soak("--data", str(tmp_path / "missing"), "--n", "3")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: dataset folder") and "\n" not in \
        proc.stderr.strip()
