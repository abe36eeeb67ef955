"""The app under awkward and hostile input: the app's rows of PRODUCT.md's bad-input table (issue #7).

Classify gets every bad upload (one clear sentence, no traceback, no probabilities, nothing written, and the next
upload in the same session is still analysed), every awkward but valid image (a verdict), and photos without an ECG
("no ECG grid/trace found", never a diagnosis). The Studio refuses bad presets with the parameter named and keeps its
settings. Names typed into the Jobs forms, the Studio and Classify that would leave the workspace are refused with a
sentence and create nothing. The command-line rows of the table are in tests/test_hardening_cli.py.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from ecgcore.jobs import JobRunner
from tests.badfiles import bad_files, ecg_like, odd_inputs, png_bomb, variants
from tests.conftest import open_app_page

CLASSIFY = "pages/4_Classify.py"
STUDIO = "pages/1_Augmentation_Studio.py"
JOBS = "pages/2_Jobs.py"
CURATION = "pages/3_Curation.py"

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".bmp": "image/bmp",
        ".tiff": "image/tiff", ".webp": "image/webp", ".gif": "image/gif"}

# Readable images that hold no ECG: the verdict must be "no ECG grid/trace found", never a diagnosis.
NO_ECG = ("blank_ecg_paper.png", "white_paper.jpg", "room.jpg", "small_96x72.png")
# Awkward encodings of an upright ECG photo (16-bit, CMYK, palette, RGBA, EXIF, animated...): each gets a verdict.
# 'exif_rotated.jpg' of variants() is an upright photo tagged to be shown sideways, so it is a sideways ECG, and
# animated GIF is not among the upload types; the CLI and read_image tests cover both.
HANDLED = [n for n in variants() if n not in ("exif_rotated.jpg", "animated.gif")] + ["exif_upright.jpg",
                                                                                      "animated.png"]


def one_sentence(text: str) -> bool:
    """One line that ends like a sentence and has no second sentence in it ('a.png is ...' does not split)."""
    return "\n" not in text and text.rstrip().endswith(".") and not re.search(r"[.!?]\s+[A-Z]", text)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def peak_rss_reset() -> bool:
    """Reset this process's peak RSS (VmHWM) so that the next reading is the peak of what follows (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@pytest.fixture(scope="module")
def shipped_models():
    """The shipped models, so that a good upload really gets a verdict; skipped where weights/ lacks them."""
    try:
        from ecgcore.classify.classifiers import load_classifiers
        from ecgcore.read.segmentation import load_segmenter

        load_classifiers()
        load_segmenter()
    except Exception as exc:  # the model-missing state has its own test in test_app_classify.py
        pytest.skip(f"shipped models not loadable: {exc}")


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return {**bad_files(), **variants(), **odd_inputs(), "bomb_30000x30000.png": png_bomb()}


@pytest.fixture
def classify(tmp_path, monkeypatch, shipped_models):
    return open_app_page(CLASSIFY, tmp_path / "ws", monkeypatch)


def good_photo(variant: int) -> bytes:
    """The same upright ECG photo as PNG, one pixel changed per ``variant`` so that the page analyses it anew."""
    rgb = ecg_like().copy()
    rgb[0, variant % rgb.shape[1]] = (variant * 37) % 256
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(at, name: str, data: bytes, timeout: float = 120):
    mime = MIME.get(Path(name).suffix.lower(), "application/octet-stream")
    at.file_uploader(key="cls_upload").set_value((name, data, mime)).run(timeout=timeout)
    return at


def outcome(at) -> dict:
    """What the Classify page shows: exceptions, errors, the non-disclaimer warnings, verdict, charts."""
    return {
        "exceptions": [e.value for e in at.exception],
        "errors": [e.value for e in at.error],
        "warnings": [w.value for w in at.warning
                     if "not medical advice" not in w.value and not w.value.startswith("No verdict is given")],
        # the verdict, or its honest form for a reading that failed the checks (ecgcore.read.physics)
        "verdict": [h.value for h in at.subheader
                    if h.value.startswith("Model output:") or h.value == "Could not read this ECG reliably"],
        "charts": len(at.get("plotly_chart")),
        "disclaimer": any("not medical advice" in w.value for w in at.warning),
    }


def assert_verdict(at, what: str) -> None:
    shown = outcome(at)
    assert not shown["exceptions"] and not shown["errors"], (what, shown)
    assert len(shown["verdict"]) == 1 and shown["charts"] == 2, (what, shown)  # probabilities and the 12 leads
    assert shown["disclaimer"], what


# --- Classify ----------------------------------------------------------------------------------------------


def test_bad_uploads_get_one_sentence_and_the_next_upload_still_works(classify, files, tmp_path):
    """Empty, text named .png, random bytes, truncated and corrupt JPEG/PNG, tiny images and a 30,000 x 30,000 PNG
    bomb: each gets exactly one error sentence naming the file, no traceback and no probabilities; a good photo
    uploaded next in the same session gets its verdict; nothing lands in the workspace."""
    names = [*bad_files(), "small_20x15.png", "bomb_30000x30000.png"]
    before = snapshot(tmp_path / "ws")
    problems = {}
    for i, name in enumerate(names):
        peak_reset = peak_rss_reset()
        rss_kb = vm_kb("VmRSS")
        started = time.perf_counter()
        shown = outcome(upload(classify, name, files[name]))
        seconds = time.perf_counter() - started
        grown_mb = (vm_kb("VmHWM") - rss_kb) / 1024 if peak_reset else 0.0
        if shown["exceptions"] or len(shown["errors"]) != 1 or shown["verdict"] or shown["charts"] or shown["warnings"]:
            problems[name] = shown
        elif not (name in shown["errors"][0] and one_sentence(shown["errors"][0])):
            problems[name] = f"not one sentence naming the file: {shown['errors'][0]!r}"
        elif seconds > 15 or grown_mb > 300:  # refused before decoding: fast, and memory stays bounded
            problems[name] = f"took {seconds:.1f} s and {grown_mb:.0f} MB"
        elif not shown["disclaimer"]:
            problems[name] = "no disclaimer"
        upload(classify, f"good-after-{name}.png", good_photo(i))
        try:
            assert_verdict(classify, f"good upload after {name}")
        except AssertionError as exc:
            problems[f"after {name}"] = str(exc)
    assert problems == {}
    assert snapshot(tmp_path / "ws") == before  # uploads are processed in memory


def test_awkward_but_valid_images_get_a_verdict(classify, files, tmp_path):
    """Grayscale, 16-bit, palette, RGBA, CMYK, BMP/TIFF/WebP, a portrait phone shot upright only through its EXIF
    orientation, and an animated PNG (the first frame is used, and the page says so)."""
    before = snapshot(tmp_path / "ws")
    problems = {}
    for name in HANDLED:
        upload(classify, name, files[name])
        try:
            assert_verdict(classify, name)
        except AssertionError as exc:
            problems[name] = str(exc)
            continue
        captions = [c for image in classify.image for c in image.captions]
        if not any(c.startswith(f"{name} - 640x480 px") for c in captions):  # upright at its own size: EXIF applied
            problems[name] = f"analysed as {captions!r}"
    assert problems == {}
    assert any("2 frames; the first is used" in c.value for c in classify.caption)  # the last upload: animated.png
    assert snapshot(tmp_path / "ws") == before


def test_photos_without_an_ecg_get_no_diagnosis(classify, files):
    """Blank ECG paper, plain paper, a room, a thumbnail: "no ECG grid/trace found", no probabilities."""
    problems = {}
    for i, name in enumerate(NO_ECG):
        shown = outcome(upload(classify, name, files[name]))
        (warning, *more) = shown["warnings"] or [""]
        if shown["exceptions"] or shown["errors"] or shown["verdict"] or shown["charts"] or more:
            problems[name] = shown
        elif not warning.startswith("No ECG grid/trace found") or "\n" in warning:
            problems[name] = f"warning {warning!r}"
        upload(classify, f"good-after-{name}.png", good_photo(100 + i))
        try:
            assert_verdict(classify, f"good upload after {name}")
        except AssertionError as exc:
            problems[f"after {name}"] = str(exc)
    assert problems == {}


def test_saving_an_upload_stays_in_the_uploads_folder(classify, tmp_path):
    """Only an explicit save writes an upload, and only under the workspace's uploads folder by a plain name; the
    upload's own name (a browser sends what it likes) is reduced to its last component."""
    ws = tmp_path / "ws"
    upload(classify, "../../outside/ecg.png", good_photo(7))
    assert_verdict(classify, "an upload named with a path")
    assert classify.text_input(key="cls_save_name").value == "ecg.png"
    for bad in ("../escape.png", str(tmp_path / "abs.png"), "a/../../b.png", "nul\x00.png", "..", ".hidden.png"):
        classify.text_input(key="cls_save_name").set_value(bad)
        classify.button(key="cls_save").click().run()
        errors = [e.value for e in classify.error]
        assert len(errors) == 1 and "file name" in errors[0] and one_sentence(errors[0]), (bad, errors)
        assert not classify.exception
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]  # nothing next to the workspace
    assert not (ws / "uploads").exists() or not any((ws / "uploads").iterdir())
    classify.text_input(key="cls_save_name").set_value("kept.png")
    classify.button(key="cls_save").click().run()
    assert (ws / "uploads" / "kept.png").read_bytes() == good_photo(7)
    assert sorted(p.name for p in (ws / "uploads").iterdir()) == ["kept.png"]


def test_saving_an_upload_under_a_taken_name_asks_first(classify, tmp_path):
    uploads = tmp_path / "ws" / "uploads"
    upload(classify, "ecg.png", good_photo(8))
    classify.button(key="cls_save").click().run()
    upload(classify, "ecg.png", good_photo(9))
    classify.button(key="cls_save").click().run()
    assert (uploads / "ecg.png").read_bytes() == good_photo(8)  # not overwritten unasked
    assert any("'ecg.png' is already in the workspace uploads folder" in w.value.replace("\\", "")
               for w in classify.warning)
    next(b for b in classify.button if b.label == "Keep both: save as ecg-2.png").click().run()
    assert (uploads / "ecg-2.png").read_bytes() == good_photo(9) and (uploads / "ecg.png").read_bytes() == good_photo(8)
    classify.button(key="cls_save").click().run()
    next(b for b in classify.button if b.label == "Replace it").click().run()
    assert (uploads / "ecg.png").read_bytes() == good_photo(9)
    assert sorted(p.name for p in uploads.iterdir()) == ["ecg-2.png", "ecg.png"] and not classify.exception


# --- Studio: bad presets -------------------------------------------------------------------------------------

BAD_PRESETS = {  # file name -> (content, what the error must name)
    "not-json.json": (b"{rotation_angle: 3", "not valid JSON"),
    "binary.json": (b"\xff\xfe\x00\x81garbage\x00", "not valid JSON"),
    "deep.json": (b"[" * 100_000, "not valid JSON"),
    "empty.json": (b"", "not valid JSON"),
    "a-list.json": (b"[1, 2, 3]", "JSON object"),
    "unknown.json": (json.dumps({"rotation_angel": 3}).encode(), "'rotation_angel'"),
    "out-of-range.json": (json.dumps({"rotation_angle": {"dist": "normal", "mu": 99, "sd": 1}}).encode(),
                          "'rotation_angle': mu = 99 is out of range"),
    "negative-beta.json": (json.dumps({"shadow_alpha": {"dist": "beta", "a": -1, "b": 2}}).encode(), "'shadow_alpha'"),
    "nan.json": (b'{"white_noise_sd": NaN}', "'white_noise_sd'"),
    "huge-int.json": (json.dumps({"jpeg_quality": 10**400}).encode(), "'jpeg_quality'"),
    "word-for-number.json": (json.dumps({"rotation_angle": "wood"}).encode(), "'rotation_angle'"),
    "list-as-dist.json": (json.dumps({"rotation_angle": {"dist": ["normal"]}}).encode(), "'rotation_angle'"),
    "options-not-list.json": (json.dumps({"background": {"dist": "choice", "options": 5}}).encode(), "'background'"),
    "bad-option.json": (json.dumps({"background": {"dist": "choice", "options": ["lava"]}}).encode(), "'background'"),
    "extra-arg.json": (json.dumps({"blur_factor": {"dist": "normal", "mu": 1, "sd": 1, "skew": 2}}).encode(),
                       "'blur_factor'"),
}


@pytest.fixture
def studio(tmp_path, monkeypatch):
    return open_app_page(STUDIO, tmp_path / "ws", monkeypatch)


def test_bad_presets_are_refused_naming_the_parameter_and_settings_stay(studio):
    studio.slider(key="p:white_noise_sd:mu").set_value(40.0).run()
    problems = {}
    for name, (content, named) in BAD_PRESETS.items():
        studio.file_uploader(key="studio_upload").set_value((name, content, "application/json")).run()
        studio.button(key="studio_load_upload").click().run()
        errors = [e.value for e in studio.error]
        if studio.exception or len(errors) != 1:
            problems[name] = ([e.value for e in studio.exception], errors)
        elif not (errors[0].startswith(f"{name} was not loaded: ") and named in errors[0] and "\n" not in errors[0]):
            problems[name] = errors[0]
        elif studio.slider(key="p:white_noise_sd:mu").value != 40.0:
            problems[name] = "the previous settings changed"
    assert problems == {}
    diff = studio.dataframe[0].value
    assert diff["parameter"].tolist() == ["white_noise_sd"]  # nothing else moved either
    # ...and a good preset still loads afterwards
    good = json.dumps({"params": {"white_noise_sd": {"dist": "normal", "mu": 30, "sd": 5}}}).encode()
    studio.file_uploader(key="studio_upload").set_value(("good.json", good, "application/json")).run()
    studio.button(key="studio_load_upload").click().run()
    assert not studio.error and any(s.value == "Loaded good.json." for s in studio.success)
    assert studio.slider(key="p:white_noise_sd:mu").value == 30.0


def test_a_corrupt_saved_preset_is_refused_too(studio, tmp_path):
    """A preset file in the workspace that is not UTF-8 JSON (edited by hand, half-copied) gets the same sentence."""
    (tmp_path / "ws" / "presets" / "broken.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    studio.run()
    studio.selectbox(key="studio_saved").set_value("broken.json").run()
    studio.button(key="studio_load_saved").click().run()
    assert not studio.exception
    (error,) = [e.value for e in studio.error]
    assert error.startswith("broken.json was not loaded:") and "not valid JSON" in error


# --- names that would leave the workspace ------------------------------------------------------------------

def bad_names(tmp_path: Path) -> list[str]:
    return ["../x", str(tmp_path / "abs"), "a/../../b", "nul\x00name", "..", ".hidden", "   ", "a\\..\\b"]


def assert_nothing_outside(tmp_path: Path) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"], list(tmp_path.iterdir())


def test_names_typed_in_the_studio_stay_in_the_workspace(studio, tmp_path):
    for key, button, what in (("studio_preset_name", "studio_save", "preset name"),
                              ("studio_ds_name", "studio_to_jobs", "dataset name")):
        for bad in bad_names(tmp_path):
            studio.text_input(key=key).set_value(bad)
            studio.button(key=button).click().run()
            errors = [e.value for e in studio.error]
            assert not studio.exception and len(errors) == 1 and what in errors[0] and one_sentence(errors[0]), (
                key, bad, errors)
    assert_nothing_outside(tmp_path)
    assert not any((tmp_path / "ws" / "presets").iterdir())


@pytest.fixture
def jobs_page(tmp_path, monkeypatch, tiny_dataset):
    shutil.copytree(tiny_dataset, tmp_path / "ws" / "datasets" / "tiny")
    yield open_app_page(JOBS, tmp_path / "ws", monkeypatch)
    runner = JobRunner(tmp_path / "ws")  # should a refusal regress, stop what it let through
    for job in runner.list():
        if job.active:
            runner.cancel(job.id)
            runner.wait(job.id, timeout=30)


# pipeline -> (the form's output-name field, what the sentence calls it, other fields to fill first)
OUTPUT_FIELDS = {
    "generate_ptb_v": ("gen_name", "dataset name", {}),
    "build_crops": ("crops_out", "crops folder name", {"crops_data": "tiny"}),
    "build_classification_set": ("clsset_out", "classification set name", {"clsset_data": ["tiny"]}),
    "train_segmentation": ("seg_out", "run name", {"seg_data": ["tiny"]}),
}


def test_names_typed_in_the_jobs_forms_are_refused_and_nothing_runs(jobs_page, tmp_path):
    at = jobs_page
    for pipeline, (key, what, fill) in OUTPUT_FIELDS.items():
        at.selectbox(key="jobs_pipeline").set_value(pipeline).run()
        for other, value in fill.items():
            widget = at.multiselect(key=other) if isinstance(value, list) else at.selectbox(key=other)
            widget.set_value(value).run()
        for bad in bad_names(tmp_path):
            at.text_input(key=key).set_value(bad)
            at.button(key=f"launch_{pipeline}").click().run()
            errors = [e.value for e in at.error]
            assert not at.exception and len(errors) == 1 and what in errors[0] and one_sentence(errors[0]), (
                pipeline, bad, errors)
    assert JobRunner(tmp_path / "ws").list() == []
    assert_nothing_outside(tmp_path)
    assert sorted(p.name for p in (tmp_path / "ws" / "datasets").iterdir()) == ["tiny"]


def test_extra_arguments_cannot_move_the_output_out_of_the_workspace(jobs_page, tmp_path):
    """The form's name is confined, and a typed '--out /elsewhere' (or '--ou', '--out=') cannot override it."""
    at = jobs_page
    at.text_input(key="gen_name").input("fine")
    for extra in (f"--out {tmp_path / 'elsewhere'}", "--out=../../../escaped", "--ou ../../x", "--seed 1\x00"):
        at.text_input(key="generate_ptb_v_extra").set_value(extra)
        at.button(key="launch_generate_ptb_v").click().run()
        errors = [e.value for e in at.error]
        assert not at.exception and len(errors) == 1 and one_sentence(errors[0]), (extra, errors)
        assert ("outside the workspace" in errors[0]) != ("\x00" in extra), (extra, errors)
    assert JobRunner(tmp_path / "ws").list() == []
    assert_nothing_outside(tmp_path)


def test_the_job_runner_refuses_what_no_process_can_take(tmp_path):
    from ecgcore.jobs import JobError, confine_outputs

    runner = JobRunner(tmp_path / "ws")
    with pytest.raises(JobError, match="NUL character"):
        runner.launch("generate_ptb_v", ["--synthetic", "--out", str(tmp_path / "ws" / "d\x00x"), "-n", "1"])
    assert runner.list() == []
    confine_outputs(["--out", str(tmp_path / "ws" / "datasets" / "ok"), "--seed", "1"], tmp_path / "ws")  # inside
    for args in (["--out", str(tmp_path / "x")], ["--o", str(tmp_path / "x")], [f"--out={tmp_path}/ws/../x"],
                 ["--export", "r", "--to", "/tmp/w.safetensors"]):
        with pytest.raises(JobError, match="outside the workspace"):
            confine_outputs(args, tmp_path / "ws")


def test_the_curation_chooser_offers_only_workspace_datasets(tmp_path, monkeypatch, tiny_dataset):
    """The dataset is chosen from a closed list (no typed path): the workspace's datasets, nothing from outside."""
    shutil.copytree(tiny_dataset, tmp_path / "ws" / "datasets" / "tiny")
    shutil.copytree(tiny_dataset, tmp_path / "outside")  # a PTB-V folder elsewhere on the disk
    at = open_app_page(CURATION, tmp_path / "ws", monkeypatch)
    chooser = at.selectbox(key="cur_dataset")
    assert [Path(o).name for o in chooser.options] == ["tiny"]
    with pytest.raises(ValueError, match="'outside' is not in list"):  # what is not offered cannot be chosen
        chooser.set_value(tmp_path / "outside").run()
    at = open_app_page(CURATION, tmp_path / "ws", monkeypatch)
    at.button(key="cur_discard").click().run()
    assert not at.exception
    assert (tmp_path / "ws" / "datasets" / "tiny" / "curation.jsonl").is_file()
    assert not (tmp_path / "outside" / "curation.jsonl").exists()
