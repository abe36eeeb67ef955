"""Faults: training killed with SIGKILL and resumed, a full disk during generation and digitisation, damaged
checkpoints and weights, and the job runner seen from a restarted app.

What must hold (PRODUCT.md, "job killed mid-way, disk full"): no half-written sample, record or checkpoint counts
as done; a resumed run repeats no epoch in its metrics; a full disk fails with one sentence naming the folder and
leaves what was written before intact; damaged model files are refused with a sentence, never a traceback; and a
new JobRunner (what a restarted app creates) tells running, interrupted and resumable jobs apart truthfully.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.badfiles import fake_ptbxl

REPO = Path(__file__).resolve().parents[1]
# A small network (as in test_segmentation) and tiny steps keep training runs to seconds.
SMALL_SEGMENTER = ["--encoder", "tu-mobilenetv3_small_100", "--decoder-channels", "32,16,16,8"]
SIGNAL_EPOCHS = 16


@pytest.fixture(scope="module")
def ptbxl(tmp_path_factory) -> Path:
    """A tiny PTB-XL-shaped folder of synthetic records: 40 training, 6 validation, 6 test."""
    return fake_ptbxl(tmp_path_factory.mktemp("fake") / "ptbxl")


def _popen(module: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _cli(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _wait_for(condition, proc: subprocess.Popen | None = None, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in stderr and len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# --- segmentation training killed mid-way -------------------------------------------------------------------------


def _seg_args(data: Path, out: Path, epochs: int) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--epochs", str(epochs), "--steps-per-epoch", "2",
            "--batch-size", "2", "--crop", "64", "--val-samples", "1", "--threads", "1", "--allow-any-fold",
            "--patience", "1000", *SMALL_SEGMENTER]


def _metric_epochs(path: Path) -> list[int]:
    with open(path, newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _checkpoint_epoch(path: Path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True)["state"]["epoch"])


def test_killed_segmentation_training_resumes_without_duplicates_or_half_checkpoints(tiny_dataset, tmp_path):
    run, epochs = tmp_path / "run", 25
    last = run / "checkpoints" / "last.pt"
    proc = _popen("pipelines.train_segmentation", *_seg_args(tiny_dataset, run, epochs))
    _wait_for(lambda: last.is_file(), proc, what="the first checkpoint")
    # Kill while the files on disk agree (metrics rows = checkpoint epoch): the moment between the two writes is
    # the known gap that test_segmentation_resume_after_a_kill_between_metrics_and_checkpoint pins down.
    for _ in range(200):
        os.killpg(proc.pid, signal.SIGSTOP)
        if _metric_epochs(run / "metrics.csv")[-1:] == [_checkpoint_epoch(last)]:
            break
        os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _checkpoint_epoch(last)  # the checkpoint on disk is whole: it loads
    assert 1 <= done_before < epochs, "the kill should land mid-run"

    resumed = _cli("pipelines.train_segmentation", *_seg_args(tiny_dataset, run, epochs), "--resume")
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr[-2000:]
    assert _metric_epochs(run / "metrics.csv") == list(range(1, epochs + 1))
    assert f"resumed from {last} at epoch {done_before}" in (run / "train.log").read_text()
    assert _checkpoint_epoch(last) == epochs and not (run / "checkpoints" / "last.pt.tmp").exists()
    from ecgcore.read.segmentation import load_segmenter

    load_segmenter(run / "best.safetensors")


class Killed(BaseException):
    """Stands for SIGKILL inside one process: nothing after the raise runs, and no handler catches it."""


def test_segmentation_resume_after_a_kill_between_metrics_and_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    from ecgcore.read.segmentation import DEFAULT_MODEL_CONFIG
    from ecgcore.train import segmenter as train_segmentation
    from ecgcore.train.segmenter import TrainConfig, train

    model = {**DEFAULT_MODEL_CONFIG, "encoder_name": "tu-mobilenetv3_small_100", "decoder_channels": [32, 16, 16, 8]}
    cfg = TrainConfig(data=[str(tiny_dataset)], out=str(tmp_path / "run"), val_samples=1, epochs=3, steps_per_epoch=1,
                      batch_size=2, crop=64, warmup_steps=1, allow_any_fold=True, model=model)
    real_save = train_segmentation._atomic_torch_save

    def save_then_die_at_epoch_2(obj, path):
        if path.name == "last.pt" and obj["state"]["epoch"] == 2:
            raise Killed  # epoch 2's metrics row is written, its checkpoint is not
        real_save(obj, path)

    monkeypatch.setattr(train_segmentation, "_atomic_torch_save", save_then_die_at_epoch_2)
    with pytest.raises(Killed):
        train(cfg)
    monkeypatch.setattr(train_segmentation, "_atomic_torch_save", real_save)
    train(cfg, resume=True)
    assert _metric_epochs(tmp_path / "run" / "metrics.csv") == [1, 2, 3]


def test_a_checkpoint_that_records_a_new_best_never_exists_without_its_weights(tiny_dataset, tmp_path, monkeypatch):
    """Killed while writing the first epoch's checkpoint (that epoch is always a new best): the best weights are
    already on disk, so a run never claims a best it cannot export."""
    from ecgcore.read.segmentation import DEFAULT_MODEL_CONFIG, load_segmenter
    from ecgcore.train import segmenter as train_segmentation
    from ecgcore.train.segmenter import TrainConfig, train

    model = {**DEFAULT_MODEL_CONFIG, "encoder_name": "tu-mobilenetv3_small_100", "decoder_channels": [32, 16, 16, 8]}
    cfg = TrainConfig(data=[str(tiny_dataset)], out=str(tmp_path / "run"), val_samples=1, epochs=2, steps_per_epoch=1,
                      batch_size=2, crop=64, warmup_steps=1, allow_any_fold=True, model=model)
    real_save = train_segmentation._atomic_torch_save

    def die_on_the_checkpoint(obj, path):
        if path.name == "last.pt":
            raise Killed
        real_save(obj, path)

    monkeypatch.setattr(train_segmentation, "_atomic_torch_save", die_on_the_checkpoint)
    with pytest.raises(Killed):
        train(cfg)
    run = tmp_path / "run"
    assert not (run / "checkpoints" / "last.pt").exists()
    load_segmenter(run / "best.safetensors")  # whole and loadable


# --- signal classifier training killed mid-way, seen through a restarted app ----------------------------------------


def _history_epochs(run: Path, member: int = 0) -> list[int]:
    lines = (run / "history.jsonl").read_text().splitlines()
    return [e["epoch"] for e in map(json.loads, lines) if e["member"] == member]


def _signal_args(ptbxl: Path, out: Path, epochs: int = SIGNAL_EPOCHS) -> list[str]:
    return ["--kind", "signal", "--ptbxl", str(ptbxl), "--out", str(out), "--epochs", str(epochs),
            "--batch-size", "16", "--patience", "1000", "--threads", "1"]


def test_restarted_app_sees_a_training_job_run_die_and_resume(ptbxl, tmp_path):
    """The app restarts while a training job runs; the job is then killed (SIGKILL to its process group, as when
    the host reboots); a fresh runner shows it interrupted and resumable; the resumed job finishes the run with
    every epoch exactly once, and its progress counts the epochs done before the crash."""
    from ecgcore import jobs as jobs_module
    from ecgcore.classify.classifiers import load_model
    from ecgcore.jobs import JobRunner

    workspace = tmp_path / "ws"
    out = workspace / "runs" / "signal"
    job = JobRunner(workspace).launch("train_classifier", _signal_args(ptbxl, out), threads=1)

    jobs_module._LAUNCHED.clear()  # a new app process holds no handle on the job's process
    restarted = JobRunner(workspace)
    def two_epochs_done() -> bool:
        progress = restarted.progress(job)  # the first bar counts records read; the training bar counts epochs
        return progress.total == SIGNAL_EPOCHS and (progress.done or 0) >= 2

    _wait_for(two_epochs_done, timeout=120, what="two epochs of progress")
    seen = restarted.get(job.id)
    progress = restarted.progress(seen)
    assert seen.status == "running" and progress.total == SIGNAL_EPOCHS and 2 <= progress.done < SIGNAL_EPOCHS

    os.killpg(job.pid, signal.SIGKILL)
    jobs_module._LAUNCHED.clear()
    fresh = JobRunner(workspace)
    crashed = fresh.wait(job.id, timeout=30)
    assert crashed.status == "interrupted" and crashed.resumable and crashed.exit_code is None
    assert crashed.ended is not None and not crashed.active
    done_before = len(_history_epochs(out))
    assert 1 <= done_before < SIGNAL_EPOCHS

    resumed = fresh.wait(fresh.resume(job.id).id, timeout=240)
    assert resumed.status == "finished" and resumed.parent_id == job.id, fresh.log_tail(resumed)
    assert _history_epochs(out) == list(range(SIGNAL_EPOCHS))
    assert "member 0: resumed after epoch" in fresh.log_tail(resumed, 400)
    assert fresh.progress(resumed).done == SIGNAL_EPOCHS
    assert not list(out.rglob("*.tmp"))
    card = load_model(out / "export" / "classifier_signal.safetensors", "signal").card
    assert card["training"]["epochs_run"] == [SIGNAL_EPOCHS]


def test_signal_resume_after_a_kill_between_history_and_checkpoint(tmp_path, monkeypatch):
    """The deterministic version of the gap a real kill may hit: epoch 2's history line is written, its checkpoint
    is not. The resumed member redoes epoch 2 once: history holds every epoch exactly once."""
    import torch

    from ecgcore.classify.classifiers import SIGNAL_CONFIG
    from ecgcore.train import loop
    from ecgcore.train.signal_trainer import NoiseOptions, SignalTrainConfig, evaluation_inputs, train_signal_member
    from tests.test_classify import QuietReporter, _separable_signals

    torch.set_num_threads(1)
    tiny = {**SIGNAL_CONFIG, "widths": [8, 16], "kernel": 5, "stem_kernel": 7, "dropout": 0.0}
    cfg = SignalTrainConfig(epochs=5, batch_size=16, lr=1e-2, patience=100, model=tiny)
    train, val = _separable_signals(48, 1), _separable_signals(12, 2)
    val_inputs = {k: v for k, v in evaluation_inputs(val, seed=0, options=NoiseOptions()).items() if "12x1" in k}
    real_save = loop.save_checkpoint

    def save_then_die_at_epoch_2(path, model, optimizer, scheduler, epoch, *rest):
        if epoch == 2:
            raise Killed
        real_save(path, model, optimizer, scheduler, epoch, *rest)

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die_at_epoch_2)  # the one loop's
    with pytest.raises(Killed):
        train_signal_member(0, cfg, train, val_inputs, val.labels, tmp_path, QuietReporter())
    assert _history_epochs(tmp_path) == [0, 1, 2]  # the state a kill in the gap leaves
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    reporter = QuietReporter()
    train_signal_member(0, cfg, train, val_inputs, val.labels, tmp_path, reporter)
    assert _history_epochs(tmp_path) == [0, 1, 2, 3, 4]
    assert "member 0: resumed after epoch 1" in reporter.messages
    assert json.loads((tmp_path / "member0" / "done.json").read_text())["best_epoch"] in range(5)


# --- damaged checkpoints ----------------------------------------------------------------------------------------------


def _damage(path: Path, how: str) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "empty":
        path.write_bytes(b"")
    elif how == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif how == "truncated":
        torch.save({"model": {"w": torch.zeros(64, 64)}, "epoch": 3}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "other_model":  # a whole file, of something else
        torch.save({"model": {"w": torch.zeros(3)}, "optimizer": {}, "scheduler": {}, "epoch": 3,
                    "best_score": 0.5, "best_epoch": 2}, path)
    else:
        raise ValueError(how)


@pytest.mark.parametrize("how", ["empty", "random", "truncated", "other_model"])
def test_damaged_signal_checkpoint_is_one_sentence_and_exit_2(how, ptbxl, tmp_path, capsys):
    from pipelines._cli import run
    from pipelines.train_classifier import main

    out = tmp_path / "run"
    checkpoint = out / "member0" / "checkpoint.pt"
    _damage(checkpoint, how)
    with pytest.raises(SystemExit) as exit_info:
        run(main, _signal_args(ptbxl, out, epochs=3))
    err = capsys.readouterr().err
    line = _one_error_line("\n".join(x for x in err.replace("\r", "\n").splitlines() if x.startswith("error")))
    assert exit_info.value.code == 2
    assert f"the training checkpoint {checkpoint}" in line and "delete it" in line, line
    assert "weights_only" not in err and "Traceback" not in err
    assert not (out / "export").exists() and not (out / "member0" / "done.json").exists()


def test_damaged_segmentation_checkpoint_is_one_sentence_and_exit_2(tiny_dataset, tmp_path, capsys):
    from pipelines._cli import run
    from pipelines.train_segmentation import main

    out = tmp_path / "run"
    _damage(out / "checkpoints" / "last.pt", "truncated")
    with pytest.raises(SystemExit) as exit_info:
        run(main, [*_seg_args(tiny_dataset, out, 2), "--resume"])
    line = _one_error_line("\n".join(x for x in capsys.readouterr().err.splitlines() if x.startswith("error")))
    assert exit_info.value.code == 2 and "last.pt" in line


# --- damaged or missing weights, in the library and through each command --------------------------------------------


def _bad_weights(kind: str, how: str, folder: Path) -> Path:
    """A .safetensors file for ``kind`` ("segmentation" or "signal") spoilt as ``how`` says."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ecgcore.classify.classifiers import DEFAULT_SIGNAL_WEIGHTS
    from ecgcore.read.segmentation import DEFAULT_SEGMENTATION_WEIGHTS

    good = DEFAULT_SEGMENTATION_WEIGHTS if kind == "segmentation" else DEFAULT_SIGNAL_WEIGHTS
    path = folder / f"{kind}_{how}.safetensors"
    if how == "missing":
        return path
    if how == "random":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    elif how == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif how == "pickle":
        torch.save({"weight": torch.zeros(4)}, path)  # a pickle named .safetensors: never unpickled
    elif how == "wrong_shape":  # the right header, a tensor of another shape
        with safe_open(str(good), framework="pt") as f:
            metadata = f.metadata()
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        first = sorted(k for k, v in tensors.items() if v.ndim >= 2)[0]
        tensors[first] = torch.zeros(*(n + 1 for n in tensors[first].shape), dtype=tensors[first].dtype)
        save_file(tensors, str(path), metadata=metadata)
    return path


WEIGHT_DAMAGE = ["missing", "random", "truncated", "pickle", "wrong_shape"]


@pytest.mark.parametrize("how", WEIGHT_DAMAGE)
def test_damaged_weights_raise_model_error_in_the_library(how, tmp_path):
    from ecgcore.classify.classifiers import load_model
    from ecgcore.errors import ModelError
    from ecgcore.read.segmentation import load_segmenter

    for kind, load in (("segmentation", load_segmenter), ("signal", lambda p: load_model(p, "signal"))):
        path = _bad_weights(kind, how, tmp_path)
        with pytest.raises(ModelError) as info:
            load(path)
        message = str(info.value)
        assert path.name in message and "\n" not in message and len(message) < 400, message


@pytest.mark.parametrize("how", WEIGHT_DAMAGE)
@pytest.mark.parametrize("command", ["segment", "digitize"])
def test_damaged_segmentation_weights_through_the_commands(command, how, tmp_path, capsys):
    from pipelines._cli import run

    main = __import__(f"pipelines.{command}", fromlist=["main"]).main
    weights = _bad_weights("segmentation", how, tmp_path)
    image = tmp_path / "photo.png"
    image.write_bytes(b"not read: the weights fail first")
    with pytest.raises(SystemExit) as exit_info:
        run(main, [str(image), "--out", str(tmp_path / "out"), "--weights", str(weights)])
    line = _one_error_line(capsys.readouterr().err)
    assert exit_info.value.code == 2 and weights.name in line, line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing written


@pytest.mark.parametrize("how", WEIGHT_DAMAGE)
@pytest.mark.parametrize("which", ["signal", "segmentation"])
def test_damaged_weights_through_classify_json(which, how, tmp_path, capsys):
    """classify's contract: one JSON object per image; without usable models each carries the same sentence."""
    from ecgcore.imageio import encode_png
    from pipelines._cli import run
    from pipelines.classify import main
    from tests.badfiles import ecg_like

    weights = _bad_weights(which, how, tmp_path)
    images = [tmp_path / "a.png", tmp_path / "b.png"]
    for image in images:
        image.write_bytes(encode_png(ecg_like(320, 240)))
    with pytest.raises(SystemExit) as exit_info:
        run(main, [*map(str, images), "--json", f"--{which}-weights", str(weights)])
    captured = capsys.readouterr()
    results = [json.loads(line) for line in captured.out.splitlines()]
    assert exit_info.value.code == 1 and "Traceback" not in captured.err
    assert [r["image"] for r in results] == list(map(str, images))
    assert all(set(r) == {"image", "error"} and weights.name in r["error"] for r in results), results
    assert results[0]["error"] == results[1]["error"] and "\n" not in results[0]["error"]


# --- a full disk -------------------------------------------------------------------------------------------------------

# Runs a pipeline module with a disk that is "full" for files whose name matches a pattern: the atomic writer's
# temporary file gets half its bytes and then ENOSPC (what a filling disk does mid-write); any other open for
# writing (wfdb's record files) fails with ENOSPC at once. Everything else writes normally.
FULL_DISK = r'''
import builtins, errno, os, re, runpy, sys

pattern = re.compile(sys.argv[1])


def full(name):
    return pattern.search(os.path.basename(name)) is not None


def no_space(name):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)


class FillingUp:
    def __init__(self, f, name):
        self.f, self.name = f, name

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise no_space(self.name)

    def __getattr__(self, attr):
        return getattr(self.f, attr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


real_fdopen, real_open = os.fdopen, builtins.open


def fdopen(fd, mode="r", *args, **kwargs):
    f = real_fdopen(fd, mode, *args, **kwargs)
    name = os.readlink(f"/proc/self/fd/{fd}")
    return FillingUp(f, name) if "w" in mode and full(name) else f


def open_(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") and full(os.fspath(file)):
        raise no_space(os.fspath(file))
    return real_open(file, mode, *args, **kwargs)


os.fdopen, builtins.open = fdopen, open_
module = sys.argv[2]
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
'''


def _with_full_disk(pattern: str, module: str, *args: str) -> subprocess.CompletedProcess:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("the full-disk simulation reads /proc/self/fd (Linux)")
    return subprocess.run([sys.executable, "-c", FULL_DISK, pattern, module, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_full_disk_during_generation_fails_clearly_and_keeps_earlier_samples(tmp_path):
    from ecgcore.dataset import iter_samples, open_dataset, validate_sample

    out = tmp_path / "d"
    args = ["--synthetic", "-n", "8", "--seed", "4", "--size", "320x256", "--out", str(out)]
    full = _with_full_disk(r"^\.?00000[3-9][._]", "pipelines.generate_ptb_v", *args)  # full from sample 3 on
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr[-2000:]
    errors = [line for line in full.stderr.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert errors == [f"error: writing to {out} failed (No space left on device); the samples written before are "
                      "complete, rerun to resume."]
    kept = [s.id for s in iter_samples(out)]
    assert kept == ["000000", "000001", "000002"]
    assert all(validate_sample(out, sid) == [] for sid in kept)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("00000")) == ["dataset.json"]
    assert not list(out.glob("00000[3-9]*")) and not list(out.glob(".*"))  # no half sample, no temporary file
    open_dataset(out)
    before = {p.name: p.read_bytes() for p in out.glob("00000[0-2]*")}

    resumed = _cli("pipelines.generate_ptb_v", *args)
    assert resumed.returncode == 0 and "5 of 8 samples to make" in resumed.stderr, resumed.stderr[-2000:]
    assert [s.id for s in iter_samples(out)] == [f"{i:06d}" for i in range(8)]
    assert all(validate_sample(out, s.id) == [] for s in iter_samples(out))
    assert all((out / name).read_bytes() == data for name, data in before.items())
    assert open_dataset(out)["complete"] == 8


@pytest.fixture(scope="module")
def two_photos(tmp_path_factory) -> Path:
    from ecgcore.imageio import encode_png
    from ecgcore.signals import synthetic_record
    from ecgcore.synth.photo import synthesize_photo

    folder = tmp_path_factory.mktemp("photos")
    for stem, seed in (("a", 1), ("b", 2)):
        photo = synthesize_photo(synthetic_record(seed), seed=seed, layout="6x2", size=(800, 600))
        (folder / f"{stem}.jpg").write_bytes(photo.jpeg)
        (folder / f"{stem}_mask.png").write_bytes(encode_png(photo.mask))
    return folder


@pytest.mark.parametrize("failing_write, pattern", [
    ("the WFDB record", r"^b\.(dat|hea)$"),
    ("the JSON after the record", r"^\.b\.json\."),
])
def test_full_disk_during_digitisation_leaves_no_half_record(failing_write, pattern, two_photos, tmp_path):
    out = tmp_path / "out"
    args = [str(two_photos / "a.jpg"), "--mask", str(two_photos / "a_mask.png"),
            str(two_photos / "b.jpg"), "--mask", str(two_photos / "b_mask.png"), "--out", str(out)]
    full = _with_full_disk(pattern, "pipelines.digitize", *args)
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr[-2000:]
    errors = [line for line in full.stderr.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert errors == [f"error: {two_photos / 'b.jpg'}: cannot write to {out} (No space left on device).",
                      "error: 1 of 2 images could not be digitised (reasons above)."]
    assert sorted(p.name for p in out.iterdir()) == ["a.dat", "a.hea", "a.json"]  # b: nothing, not half

    again = _cli("pipelines.digitize", *args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["a.dat", "a.hea", "a.json", "b.dat", "b.hea", "b.json"]


def test_full_disk_during_segmentation_leaves_no_half_class_map(two_photos, tmp_path):
    out = tmp_path / "out"
    full = _with_full_disk(r"^\.b_seg\.png\.", "pipelines.segment", str(two_photos / "a.jpg"),
                           str(two_photos / "b.jpg"), "--out", str(out))
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr[-2000:]
    errors = [line for line in full.stderr.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert errors == [f"error: {two_photos / 'b.jpg'}: cannot write to {out} (No space left on device).",
                      "error: 1 of 2 images could not be segmented."]
    assert sorted(p.name for p in out.iterdir()) == ["a_seg.png"]
