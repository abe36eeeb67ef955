"""generate_ptb_v: valid samples, determinism, resume after a kill, and one-sentence errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ecgcore.constants import LEAD_NAMES, SAMPLE_SCHEMA
from ecgcore.dataset import iter_samples, open_dataset
from pipelines.generate_ptb_v import main

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.generate_ptb_v", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "dataset.json"}


def test_tiny_synthetic_dataset_is_valid(tiny_dataset):
    info = open_dataset(tiny_dataset)
    assert info["schema"] == SAMPLE_SCHEMA and info["complete"] == 8 and info["source"] == {"kind": "synthetic"}
    samples = list(iter_samples(tiny_dataset))
    assert [s.id for s in samples] == [f"{i:06d}" for i in range(8)]
    for s in samples:
        meta = s.meta
        assert meta["schema"] == SAMPLE_SCHEMA and meta["label"] == "synthetic"
        assert (meta["width"], meta["height"]) == (800, 600)
        image, mask = s.image(), s.mask()
        assert image.shape == (600, 800, 3) and mask.shape == (600, 800) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1, 2, 3}
        names = [lead["name"] for lead in meta["leads"]]
        assert set(names) == set(LEAD_NAMES)
        assert all(len(lead["quad"]) == 8 for lead in meta["leads"])
        assert set(meta["params"]) >= {"rotation_angle", "shadow_color", "white_noise_sd", "background"}
    assert len({s.meta["layout"] for s in samples}) >= 2


def test_ptbxl_samples_carry_source_and_label(ptbxl_dir, tmp_path):
    out = tmp_path / "d"
    assert main(["--ptbxl", str(ptbxl_dir), "--out", str(out), "-n", "4", "--seed", "1", "--folds", "10",
                 "--size", "800x600"]) == 0
    for s in iter_samples(out):
        src = s.meta["source"]
        assert src["dataset"] == "ptb-xl" and src["strat_fold"] == 10 and src["fs"] == 100
        assert s.label in ("normal", "non_mi_abnormality", "mi")
        assert isinstance(src["scp_codes"], dict) and isinstance(src["patient_id"], int)


def test_same_seed_gives_byte_identical_samples_whatever_the_workers(tmp_path):
    args = ["--synthetic", "-n", "4", "--seed", "5", "--size", "640x480"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--workers", "2"]) == 0
    assert file_bytes(tmp_path / "a") == file_bytes(tmp_path / "b")
    assert main(["--synthetic", "-n", "4", "--seed", "6", "--size", "640x480", "--out", str(tmp_path / "c")]) == 0
    assert file_bytes(tmp_path / "a") != file_bytes(tmp_path / "c")


def test_killed_generation_resumes_without_duplicates_or_half_files(tmp_path):
    out = tmp_path / "killed"
    args = ["--synthetic", "-n", "30", "--seed", "9", "--size", "640x480", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.generate_ptb_v", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob("*.json"))) < 6:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = sorted(p.stem for p in out.glob("[0-9]*.json"))
    assert 0 < len(partial) < 30, "the kill should land mid-run"
    for sid in partial:  # every sample that counts as done is whole
        assert (out / f"{sid}.jpg").stat().st_size > 0 and (out / f"{sid}_mask.png").stat().st_size > 0
    before = {sid: (out / f"{sid}.json").read_bytes() for sid in partial}

    result = cli(*args)
    assert result.returncode == 0, result.stderr
    assert "of 30 samples to make" in result.stderr
    ids = sorted(p.stem for p in out.glob("[0-9]*.json"))
    assert ids == [f"{i:06d}" for i in range(30)]
    assert not list(out.glob(".*.tmp"))
    assert all((out / f"{sid}.json").read_bytes() == data for sid, data in before.items())  # kept, not redone
    reference = tmp_path / "reference"
    assert main([*args[:-1], str(reference)]) == 0
    assert file_bytes(out) == file_bytes(reference)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert lines and lines[-1].startswith("error: ")
    return lines[-1]


def test_bad_inputs_give_one_sentence(tmp_path, ptbxl_dir):
    out = str(tmp_path / "x")
    assert "does not exist; run ./download_datasets.sh" in one_line_error(
        cli("--ptbxl", str(tmp_path / "no-ptbxl"), "--out", out, "-n", "2"))
    assert "ecg_id 999999 is not in" in one_line_error(
        cli("--ptbxl", str(ptbxl_dir), "--ids", "9,999999", "--out", out, "-n", "2"))
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps({"rotation_angel": 2}))
    assert "unknown parameter 'rotation_angel'" in one_line_error(
        cli("--synthetic", "--preset", str(preset), "--out", out, "-n", "2"))
    preset.write_text(json.dumps({"white_noise_sd": {"dist": "normal", "mu": 500, "sd": 1}}))
    assert "parameter 'white_noise_sd': mu = 500 is out of range" in one_line_error(
        cli("--synthetic", "--preset", str(preset), "--out", out, "-n", "2"))
    assert "unknown layout" in one_line_error(cli("--synthetic", "--layout", "4x4", "--out", out, "-n", "2"))
    assert not Path(out).exists(), "nothing is written when the input is bad"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; the read-only case is checked via a file")
def test_unwritable_output_folder_non_root(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert "cannot write to output folder" in one_line_error(cli("--synthetic", "--out", str(ro / "d"), "-n", "1"))


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert "cannot write to output folder" in one_line_error(cli("--synthetic", "--out", str(blocker / "d"), "-n", "1"))


def test_rerun_with_other_settings_is_refused(tmp_path):
    out = str(tmp_path / "d")
    assert main(["--synthetic", "-n", "1", "--size", "640x480", "--out", out]) == 0
    assert "other settings (layouts)" in one_line_error(
        cli("--synthetic", "-n", "1", "--size", "640x480", "--layout", "12x1", "--out", out))


def test_rerun_into_a_folder_of_another_generator_version_is_refused(tmp_path):
    """Samples of two generator versions (e.g. 1.1 and 1.2 curve masks) never share a folder."""
    out = tmp_path / "d"
    assert main(["--synthetic", "-n", "1", "--size", "640x480", "--out", str(out)]) == 0
    info = json.loads((out / "dataset.json").read_text())
    info["generator_version"] = "1.1.0"
    (out / "dataset.json").write_text(json.dumps(info))
    error = one_line_error(cli("--synthetic", "-n", "2", "--size", "640x480", "--out", str(out)))
    assert "made by generator 1.1.0" in error and "use a new --out" in error
    assert not (out / "000001.jpg").exists()


def test_print_style_is_part_of_the_dataset_identity_only_when_not_the_default(tmp_path):
    out = str(tmp_path / "d")
    assert main(["--synthetic", "-n", "1", "--size", "640x480", "--out", out]) == 0
    info = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert "print_style" not in info["paper"]  # identical to datasets made before the option existed
    assert main(["--synthetic", "-n", "2", "--size", "640x480", "--print-style", "ptb-v", "--out", out]) == 0
    assert "other settings (paper)" in one_line_error(
        cli("--synthetic", "-n", "3", "--size", "640x480", "--print-style", "device", "--out", out))
    assert "invalid choice: 'dotted'" in cli("--synthetic", "-n", "1", "--print-style", "dotted", "--out", out).stderr


def test_minor_grid_and_black_grid_reach_the_samples_and_the_identity_only_when_not_the_default(tmp_path):
    out = str(tmp_path / "d")
    assert main(["--synthetic", "-n", "1", "--size", "640x480", "--out", out]) == 0
    info = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert "minor_grid" not in info["paper"]  # identical to datasets made before the option existed
    assert "other settings (paper)" in one_line_error(
        cli("--synthetic", "-n", "2", "--size", "640x480", "--minor-grid", "dots", "--out", out))
    dots = str(tmp_path / "dots")
    assert main(["--synthetic", "-n", "1", "--size", "640x480", "--grid-color", "black", "--minor-grid", "dots",
                 "--out", dots]) == 0
    info = json.loads((tmp_path / "dots" / "dataset.json").read_text())
    sample = json.loads((tmp_path / "dots" / "000000.json").read_text())
    assert info["paper"]["minor_grid"] == "dots" and info["paper"]["grid_color"] == "black"
    assert sample["paper"]["minor_grid"] == "dots" and sample["paper"]["grid_color"] == "black"
    assert "invalid choice: 'purple'" in cli("--synthetic", "-n", "1", "--grid-color", "purple", "--out", dots).stderr
    assert "invalid choice: 'hatched'" in cli("--synthetic", "-n", "1", "--minor-grid", "hatched", "--out", dots).stderr


def test_dask_backend_on_a_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        args = ["--synthetic", "-n", "4", "--seed", "2", "--size", "640x480"]
        assert main([*args, "--out", str(tmp_path / "dask"), "--backend", "dask",
                     "--scheduler", cluster.scheduler_address]) == 0
    assert main([*args, "--out", str(tmp_path / "local")]) == 0
    assert file_bytes(tmp_path / "dask") == file_bytes(tmp_path / "local")


def test_samples_pass_the_contract_check(tiny_dataset):
    from ecgcore.dataset import validate_sample

    for s in iter_samples(tiny_dataset):
        assert validate_sample(tiny_dataset, s.id) == []
    broken = tiny_dataset.parent / "broken"
    broken.mkdir()
    (broken / "000000.json").write_text(json.dumps({"schema": "ptb-v/1"}))
    assert "missing key 'leads'" in validate_sample(broken, "000000")
