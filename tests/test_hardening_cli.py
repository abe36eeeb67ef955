"""PRODUCT.md's bad-input table over the command line, as a matrix: every awkward or hostile input against
``pipelines.segment``, ``pipelines.digitize`` and ``pipelines.classify --json`` run as real processes.

Each command starts twice (once on the inputs it must handle, once on those it must refuse) and the assertions are
per image: the exit code, one error line (or one JSON error object) per refused image that names it and says why, no
traceback, and nothing left in --out for a refused image (no half file, no temporary file). A blank page or a photo
without an ECG may be segmented (a class map is defined for any picture) but is never digitised or diagnosed.
The decompression bomb runs alone under each command, timed and with the child's peak memory read from the kernel.
Then the generator's preset and PTB-XL inputs: one line naming the parameter or the missing piece, exit 2, nothing
written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.badfiles import bad_files, fake_ptbxl, odd_inputs, png_bomb, variants

REPO = Path(__file__).resolve().parents[1]
FIGURES_ENV = "ECGLAB_FIGURES"  # a JSON file to merge the measured figures into (for the README)


@dataclass(frozen=True)
class Case:
    file: str  # file name in the input folder
    kind: str  # "valid": must be handled; "no_ecg": readable, but no ECG to read; "bad": refused
    reason: str = ""  # phrase the refusal must contain (bad and no_ecg)


NO_ECG = "no ECG grid/trace found"
CASES = [
    # valid but awkward: every format and pixel mode a phone, scanner or editor produces
    Case("photo.jpg", "valid"),
    Case("photo_webp.webp", "valid"),
    Case("gray.png", "valid"),
    Case("gray16.png", "valid"),
    Case("palette.png", "valid"),
    Case("rgba.png", "valid"),
    Case("cmyk.jpg", "valid"),
    Case("exif_upright.jpg", "valid"),  # stored sideways, upright once its EXIF orientation is applied
    Case("animated.gif", "valid"),  # first frame
    Case("apng.png", "valid"),  # animated PNG, first frame
    # readable pictures without an ECG to read
    Case("blank_ecg_paper.png", "no_ecg", NO_ECG),
    Case("white_paper.jpg", "no_ecg", NO_ECG),
    Case("room.jpg", "no_ecg", NO_ECG),
    Case("small_96x72.png", "no_ecg", NO_ECG),  # an ECG, but far too small to read
    Case("sideways.jpg", "no_ecg", NO_ECG),  # an ECG turned a quarter (EXIF says so): not read, not diagnosed
    # refused before any model sees them
    Case("empty.png", "bad", "empty (0 bytes)"),
    Case("text.png", "bad", "not an image"),
    Case("random.jpg", "bad", "not an image"),
    Case("truncated.jpg", "bad", "truncated or corrupt"),
    Case("truncated_png.png", "bad", "truncated or corrupt"),
    Case("corrupt.png", "bad", "truncated or corrupt"),
    Case("bomb.png", "bad", "30000x30000 pixels"),
    Case("tiny.png", "bad", "only 12x9 pixels"),
    Case("small_20x15.png", "bad", "only 20x15 pixels"),
    Case("missing.png", "bad", "no such file"),
    Case("folder.png", "bad", "is a folder"),
]
BY_FILE = {c.file: c for c in CASES}
HANDLED = [c for c in CASES if c.kind == "valid"]
REFUSED = [c for c in CASES if c.kind != "valid"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """The input folder with one file (or folder, or nothing) per case."""
    folder = tmp_path_factory.mktemp("inputs")
    made = {**variants(), **bad_files(), **odd_inputs()}
    renamed = {"photo.png": "photo_png.png", "photo.webp": "photo_webp.webp", "exif_rotated.jpg": "sideways.jpg",
               "animated.png": "apng.png", "truncated.png": "truncated_png.png"}  # one stem per file (outputs use it)
    for name, data in made.items():
        (folder / renamed.get(name, name)).write_bytes(data)
    (folder / "bomb.png").write_bytes(png_bomb())
    (folder / "folder.png").mkdir()
    assert not (folder / "missing.png").exists()
    assert all((folder / c.file).exists() for c in CASES if c.file != "missing.png")
    return folder


@dataclass
class Run:
    """A finished command: exit code, output, wall time and the child's own peak memory (from the kernel)."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mb: float


# Runs ``python -m MODULE ARGS`` and, as the process ends, writes its own peak RSS (VmHWM, kB) to argv[1]. The kernel's
# ru_maxrss for a child is not its own: a child started by vfork/fork carries the parent's high-water mark across
# exec, so a test process that loaded models would report its own size for every child.
PEAK_WRAPPER = r"""
import atexit, runpy, sys


def write_peak(path=sys.argv[1]):
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    with open(path, "w") as out:
        out.write(str(kb))


atexit.register(write_peak)
module = sys.argv[2]
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def run_measured(module: str, *args: str, timeout: float = 300) -> Run:
    """``python -m module args`` from the repository root, with its wall time and its own peak RSS."""
    import tempfile

    if not Path("/proc/self/status").is_file():
        pytest.skip("the peak memory is read from /proc (Linux)")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "peak_kb"
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", PEAK_WRAPPER, str(peak_file), module, *args], cwd=REPO,
                                stdout=out, stderr=err)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        peak_mb = int(peak_file.read_text()) / 1024 if peak_file.is_file() else float("nan")
        return Run(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"), wall,
                   peak_mb)


def _error_lines(stderr: str) -> list[str]:
    # tqdm redraws its bar with carriage returns; the messages are whole lines between them.
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("error:")]


def _upright_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file as people see it (EXIF orientation applied)."""
    from ecgcore.imageio import read_image

    return read_image(path).rgb.shape[:2]


# --- one run per command and group, shared by the per-image tests ------------------------------------------------


def _runs_into_out(module: str, inputs: Path, tmp_path_factory) -> dict:
    """``module`` run once on the handled and once on the refused images, each into a fresh --out folder."""
    runs = {}
    for group, cases in (("handled", HANDLED), ("refused", REFUSED)):
        out = tmp_path_factory.mktemp(f"{module.rsplit('.', 1)[-1]}_{group}")
        images = [str(inputs / c.file) for c in cases]
        runs[group] = (run_measured(module, *images, "--out", str(out)), out)
    return runs


@pytest.fixture(scope="module")
def segment_runs(inputs, tmp_path_factory):
    return _runs_into_out("pipelines.segment", inputs, tmp_path_factory)


@pytest.fixture(scope="module")
def digitize_runs(inputs, tmp_path_factory):
    return _runs_into_out("pipelines.digitize", inputs, tmp_path_factory)


@pytest.fixture(scope="module")
def classify_runs(inputs):
    runs = {}
    for group, cases in (("handled", HANDLED), ("refused", REFUSED)):
        images = [str(inputs / c.file) for c in cases]
        proc = run_measured("pipelines.classify", *images, "--json")
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        runs[group] = (proc, {Path(r["image"]).name: r for r in lines}, lines, images)
    return runs


def _group(case: Case) -> str:
    return "handled" if case.kind == "valid" else "refused"


# --- pipelines.segment ------------------------------------------------------------------------------------------


def test_segment_runs_exit_as_documented(segment_runs):
    handled, _ = segment_runs["handled"]
    refused, _ = segment_runs["refused"]
    for proc in (handled, refused):
        assert "Traceback" not in proc.stderr, proc.stderr
    assert handled.returncode == 0, handled.stderr
    assert refused.returncode == 1
    n_bad = sum(c.kind == "bad" for c in REFUSED)
    assert _error_lines(refused.stderr)[-1] == f"error: {n_bad} of {len(REFUSED)} images could not be segmented."


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_segment(case, inputs, segment_runs):
    proc, out = segment_runs[_group(case)]
    path = inputs / case.file
    mine = [line for line in _error_lines(proc.stderr) if line.startswith(f"error: {path}: ")]
    seg = out / f"{path.stem}_seg.png"
    if case.kind == "bad":
        assert len(mine) == 1 and case.reason in mine[0] and mine[0].endswith("."), (mine, proc.stderr)
        assert not seg.exists()
    else:
        # Any readable picture gets its class map, the size of the image as people see it (EXIF applied).
        assert mine == []
        class_map = cv2.imread(str(seg), cv2.IMREAD_UNCHANGED)
        assert class_map is not None and class_map.dtype == np.uint8 and class_map.max() <= 3
        assert class_map.shape == _upright_size(path)
        if case.kind == "valid":  # the trace survived the mode conversion: the network finds it
            assert (class_map == 3).mean() > 0.005, case.file
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_segment_refuses_two_images_with_the_same_stem(inputs, tmp_path):
    (tmp_path / "photo.png").write_bytes((inputs / "photo_png.png").read_bytes())
    proc = run_measured("pipelines.segment", str(inputs / "photo.jpg"), str(tmp_path / "photo.png"),
                        "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: two images have the same file name stem; their outputs would overwrite each other."]
    assert not (tmp_path / "out").exists()


# --- pipelines.digitize -----------------------------------------------------------------------------------------


def test_digitize_runs_exit_as_documented(digitize_runs):
    handled, _ = digitize_runs["handled"]
    refused, _ = digitize_runs["refused"]
    assert "Traceback" not in handled.stderr + refused.stderr
    assert handled.returncode == 0, handled.stderr
    assert refused.returncode == 2
    assert _error_lines(refused.stderr)[-1] == (
        f"error: {len(REFUSED)} of {len(REFUSED)} images could not be digitised (reasons above).")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_digitize(case, inputs, digitize_runs):
    proc, out = digitize_runs[_group(case)]
    path = inputs / case.file
    mine = [line for line in _error_lines(proc.stderr) if line.startswith(f"error: {path}: ")]
    outputs = {f"{path.stem}{suffix}" for suffix in (".dat", ".hea", ".json", "_digitized.png")}
    written = sorted(p.name for p in out.iterdir() if p.name in outputs)
    if case.kind == "valid":
        assert mine == []
        assert written == [f"{path.stem}.dat", f"{path.stem}.hea", f"{path.stem}.json"]
        info = json.loads((out / f"{path.stem}.json").read_text())
        assert info["layout"] == "seed-3x4" and info["quality"]["leads_ok"] >= 9, (case.file, info["quality"])
        height, width = _upright_size(path)
        quads = np.array([lead["quad"] for lead in info["leads"]], float).reshape(-1, 2)
        assert (quads[:, 0] < width + 1).all() and (quads[:, 1] < height + 1).all()  # boxes in this image's pixels
    else:
        assert len(mine) == 1 and case.reason in mine[0], (mine, proc.stderr)
        assert written == [], written
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary record folder or file


# --- pipelines.classify --json ----------------------------------------------------------------------------------


def test_classify_runs_print_one_object_per_image_in_order(classify_runs):
    for group in ("handled", "refused"):
        proc, _, lines, images = classify_runs[group]
        assert "Traceback" not in proc.stderr, proc.stderr
        assert [r["image"] for r in lines] == images
    assert classify_runs["handled"][0].returncode == 0
    assert classify_runs["refused"][0].returncode == 1


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_classify(case, classify_runs):
    _, by_name, _, _ = classify_runs[_group(case)]
    result = by_name[case.file]
    if case.kind == "valid":
        assert set(result) == {"image", "probabilities", "prediction", "models", "digitization", "reading"}, result
        assert isinstance(result["reading"]["reliable"], bool) and isinstance(result["reading"]["reasons"], list)
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert result["digitization"]["layout"] == "seed-3x4"
    else:
        # Never probabilities for what is not a readable ECG: one sentence instead, naming the file as it is.
        assert set(result) == {"image", "error"}, result
        sentence = result["error"]
        assert case.reason.lower() in sentence.lower() and "\n" not in sentence and sentence.endswith("."), sentence
        if case.kind == "bad":
            assert sentence.startswith(case.file), sentence


# --- the decompression bomb: refused fast, with bounded memory ----------------------------------------------------


BOMB_RGB_MB = 30_000 * 30_000 * 3 / 2**20  # what decoding it to RGB would take (2575 MB)
PEAK_RSS_LIMIT_MB = 1500.0  # PRODUCT.md's memory target for the app with its models loaded


@pytest.mark.parametrize("command", ["segment", "digitize", "classify"])
def test_runs_with_the_bomb_stay_within_the_memory_target(command, segment_runs, digitize_runs, classify_runs):
    """The refused group, bomb included, never holds a decoded copy of the bomb: the whole process (Python, torch,
    the models, the other images) stays under PRODUCT.md's 1.5 GB, which is well below the bomb's 2.6 GB as RGB."""
    run = {"segment": segment_runs, "digitize": digitize_runs, "classify": classify_runs}[command]["refused"][0]
    assert run.peak_rss_mb < min(PEAK_RSS_LIMIT_MB, BOMB_RGB_MB / 1.5), f"peak RSS {run.peak_rss_mb:.0f} MB"
    _record_figure(f"peak_rss_mb_{command}_refused_group", round(run.peak_rss_mb))


def test_the_bomb_alone_is_refused_within_seconds(inputs):
    """End to end as a user would run it: the answer comes back within seconds (model loading included) and the
    process peaks far below one decoded copy of the bomb."""
    run = run_measured("pipelines.classify", str(inputs / "bomb.png"), "--json")
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    result = json.loads(run.stdout)
    assert result == {"image": str(inputs / "bomb.png"), "error": (
        "bomb.png is 30000x30000 pixels (900 MP), over the 40 MP limit; please downscale it first.")}
    assert run.wall_s < 30, f"{run.wall_s:.1f} s"
    assert run.peak_rss_mb < min(PEAK_RSS_LIMIT_MB, BOMB_RGB_MB / 1.5), f"peak RSS {run.peak_rss_mb:.0f} MB"
    _record_figure("bomb_classify_cli", {"wall_s": round(run.wall_s, 2), "peak_rss_mb": round(run.peak_rss_mb)})


def test_the_bomb_is_refused_from_its_header_in_milliseconds(inputs):
    """read_image, the one reader every command and the app use, refuses the 30,000 x 30,000 PNG before decoding."""
    import resource

    from ecgcore.imageio import ImageError, read_image

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ImageError, match="over the 40 MP limit"):
        read_image(inputs / "bomb.png")
    elapsed = time.perf_counter() - start
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert elapsed < 1.0 and grown_mb < 50
    _record_figure("bomb_read_image", {"seconds": round(elapsed, 4), "peak_growth_mb": round(grown_mb, 1),
                                       "file_kb": round((inputs / "bomb.png").stat().st_size / 1024)})


def _record_figure(key: str, value) -> None:
    """Merge a measured figure into $ECGLAB_FIGURES (JSON) when set: the README's numbers come from these tests."""
    target = os.environ.get(FIGURES_ENV)
    if not target:
        return
    path = Path(target)
    figures = json.loads(path.read_text()) if path.is_file() else {}
    figures[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")


# --- presets: rejected with the parameter named, nothing written --------------------------------------------------


PRESETS = {
    "bad_json": ('{"rotation_angle": ', "is not valid JSON"),
    "empty": ("", "is not valid JSON"),
    "binary": (b"\xff\xfe\x00\x13garbage", "is not valid JSON"),
    "not_an_object": ("[1, 2]", "must be a JSON object"),
    "unknown_parameter": ('{"rotation_angel": 2}', "unknown parameter 'rotation_angel'"),
    "out_of_range": ('{"white_noise_sd": {"dist": "normal", "mu": 500, "sd": 1}}',
                     "parameter 'white_noise_sd': mu = 500 is out of range"),
    "low_above_high": ('{"rotation_angle": {"dist": "uniform", "low": 5, "high": 1}}', "parameter 'rotation_angle'"),
    "wrong_type": ('{"rotation_angle": "fast"}', "parameter 'rotation_angle'"),
    "not_finite": ('{"rotation_angle": NaN}', "parameter 'rotation_angle'"),
    "unknown_distribution": ('{"blur_factor": {"dist": "cauchy", "x": 1}}', "parameter 'blur_factor': unknown distribution"),
    "unknown_option": ('{"background": {"dist": "choice", "options": ["moon"]}}', "parameter 'background'"),
    "deeply_nested": ("[" * 100_000, "nested too deeply"),
    "huge_integer": ('{"jpeg_quality": 1' + "0" * 400 + '}', "parameter 'jpeg_quality'"),
    "options_not_a_list": ('{"background": {"dist": "choice", "options": "wood"}}', "must be a list"),
    "missing_file": (None, "does not exist"),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_generate_rejects_bad_presets_in_one_line(name, tmp_path, capsys):
    from pipelines._cli import run
    from pipelines.generate_ptb_v import main

    content, phrase = PRESETS[name]
    preset = tmp_path / f"{name}.json"
    if content is not None:
        preset.write_bytes(content.encode() if isinstance(content, str) else content)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        run(main, ["--synthetic", "--preset", str(preset), "--out", str(out), "-n", "1", "--size", "256x256"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], lines
    assert not out.exists(), "nothing is written when the preset is bad"


# --- PTB-XL: missing, incomplete, a record absent or damaged -------------------------------------------------------


@pytest.fixture(scope="module")
def small_ptbxl(tmp_path_factory) -> Path:
    return fake_ptbxl(tmp_path_factory.mktemp("ptbxl") / "ptbxl", per_fold=(2,) * 10)


def _ptbxl_variant(small_ptbxl: Path, tmp_path: Path, what: str) -> tuple[Path, list[str]]:
    """A broken copy of the small PTB-XL folder, and extra generator arguments."""
    import shutil

    root = tmp_path / "ptbxl"
    if what == "missing":
        return root, []
    shutil.copytree(small_ptbxl, root)
    if what == "no_csv":
        (root / "ptbxl_database.csv").unlink()
    elif what == "no_records":
        shutil.rmtree(root / "records100")
    elif what == "record_absent":
        (root / "records100" / "00000" / "00003_lr.dat").unlink()
        return root, ["--ids", "3"]
    elif what == "record_damaged":
        (root / "records100" / "00000" / "00003_lr.hea").write_text("00003_lr 12 100\n")  # no signal lines
        return root, ["--ids", "3"]
    elif what == "id_not_in_csv":
        return root, ["--ids", "3,424242"]
    return root, []


@pytest.mark.parametrize("what, phrase", [
    ("missing", "does not exist; run ./download_datasets.sh"),
    ("no_csv", "has no ptbxl_database.csv"),
    ("no_records", "has neither records100/ nor records500/"),
    ("record_absent", "the 100 Hz file of ecg_id 3 (records100/00000/00003_lr.hea/.dat) is missing"),
    ("record_damaged", "could not read"),
    ("id_not_in_csv", "ecg_id 424242 is not in"),
])
def test_generate_names_what_is_missing_in_ptbxl(what, phrase, small_ptbxl, tmp_path, capsys):
    from pipelines._cli import run
    from pipelines.generate_ptb_v import main

    root, extra = _ptbxl_variant(small_ptbxl, tmp_path, what)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        run(main, ["--ptbxl", str(root), *extra, "--out", str(out), "-n", "2", "--size", "256x256"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert len(lines) == 1 and phrase in lines[0], lines
    assert not out.exists()


@pytest.mark.parametrize("where, phrase", [
    (None, "give --ptbxl DIR or set ECGLAB_PTBXL"),
    ("nowhere", "does not exist; run ./download_datasets.sh"),
])
def test_signal_training_names_the_missing_ptbxl(where, phrase, tmp_path, monkeypatch, capsys):
    from pipelines._cli import run
    from pipelines.train_classifier import main

    monkeypatch.delenv("ECGLAB_PTBXL", raising=False)
    extra = ["--ptbxl", str(tmp_path / where)] if where else []
    with pytest.raises(SystemExit) as exit_info:
        run(main, ["--kind", "signal", *extra, "--out", str(tmp_path / "run")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and phrase in lines[0], lines


# --- sanity of the matrix itself ----------------------------------------------------------------------------------


def test_the_matrix_covers_the_product_table(inputs):
    """Every row of PRODUCT.md's bad-input table that concerns files has at least one case here."""
    kinds = {c.file for c in CASES}
    for needed in ("empty.png", "text.png", "truncated.jpg", "truncated_png.png", "corrupt.png", "random.jpg", "bomb.png",
                   "gray16.png", "cmyk.jpg", "palette.png", "rgba.png", "gray.png", "exif_upright.jpg", "animated.gif",
                   "apng.png", "blank_ecg_paper.png", "room.jpg", "small_20x15.png", "missing.png", "folder.png"):
        assert needed in kinds
    from PIL import Image

    assert Image.open(inputs / "apng.png").n_frames == 2 and Image.open(inputs / "cmyk.jpg").mode == "CMYK"
    assert Image.open(inputs / "gray16.png").mode.startswith("I") and Image.open(inputs / "palette.png").mode == "P"
    stored = Image.open(inputs / "exif_upright.jpg")
    assert stored.size == (480, 640) and stored.getexif()[0x0112] == 6
    assert _upright_size(inputs / "exif_upright.jpg") == (480, 640)  # (height, width): landscape once upright
