"""Classify, driven through AppTest: the disclaimer is always there; a sample photo gives probabilities when the
models are installed and the plain "model missing" state when they are not; bad uploads get one sentence."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from ecgcore.app.plots import LABEL_TITLES
from ecgcore.app.report import boxes_to_rows, rows_to_boxes, signal_csv
from ecgcore.errors import DigitizationError

CLASSIFY = "pages/4_Classify.py"


def _models_installed() -> bool:
    try:
        from ecgcore.classify.classifiers import load_classifiers
        from ecgcore.read.segmentation import load_segmenter

        load_classifiers()
        load_segmenter()
        return True
    except Exception:  # missing weights or module: the page must show the "model missing" state
        return False


@pytest.fixture
def page(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGLAB_WORKSPACE", str(tmp_path / "ws"))
    at = AppTest.from_file("../app.py", default_timeout=120).run()
    at.switch_page(CLASSIFY).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _headline(text: str) -> bool:
    """The verdict's headline: the model's output, or, for a reading that failed the checks, the honest refusal."""
    return text.startswith("Model output:") or text == "Could not read this ECG reliably"


def _disclaimer_shown(at) -> bool:
    return any("not medical advice" in w.value and "emergency" in w.value for w in at.warning)


def test_the_disclaimer_is_always_visible(page):
    assert _disclaimer_shown(page)
    assert any("Upload a photo" in i.value for i in page.info)


def test_a_sample_photo_gives_probabilities_or_the_model_missing_state(page):
    page.radio(key="cls_source").set_value("Pick a sample").run()
    assert not page.exception, [e.value for e in page.exception]
    assert _disclaimer_shown(page)
    if _models_installed():
        assert any(_headline(h.value) for h in page.subheader)
        assert len(page.get("plotly_chart")) >= 2  # probabilities and the 12 leads
    else:
        errors = [e.value for e in page.error]
        assert any(e.startswith("Model missing:") for e in errors), errors
        assert not any(h.value.startswith("Model output") for h in page.subheader)  # no invented verdict


def test_an_uploaded_png_is_analysed_in_memory(page, tmp_path):
    from ecgcore.signals import synthetic_record
    from ecgcore.synth.photo import synthesize_photo

    photo = synthesize_photo(synthetic_record(5), seed=5, size=(1200, 900))
    buffer = io.BytesIO()
    Image.fromarray(photo.image).save(buffer, format="PNG")
    page.file_uploader(key="cls_upload").set_value(("ecg.png", buffer.getvalue(), "image/png")).run()
    assert not page.exception, [e.value for e in page.exception]
    assert any(e.value.startswith("Model missing:") for e in page.error) or any(
        _headline(h.value) for h in page.subheader)
    assert not (tmp_path / "ws" / "uploads").exists() or not any((tmp_path / "ws" / "uploads").iterdir())


@pytest.mark.parametrize("payload, name", [(b"", "empty.png"), (b"not an image at all", "notes.jpg"),
                                            (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "truncated.png")])
def test_bad_uploads_get_one_sentence(page, payload, name):
    page.file_uploader(key="cls_upload").set_value((name, payload, "image/png")).run()
    assert not page.exception, [e.value for e in page.exception]
    (error,) = [e.value for e in page.error]
    assert name in error and "\n" not in error


def test_lead_box_rows_round_trip_through_the_editor_format():
    from ecgcore.layouts import LeadBox

    top, side = np.array([200.0, -10.0]), np.array([10.0, 200.0]) / 2  # a rotated 200 x 100 px rectangle
    tl = np.array([100.0, 200.0])
    quad = np.array([tl, tl + top, tl + side, tl + top + side])
    rows = boxes_to_rows([LeadBox("V1", quad, 0.0, 2.5)])
    assert rows[0]["lead"] == "V1" and rows[0]["angle_deg"] > 0  # turned counter-clockwise on screen
    (box,) = rows_to_boxes(rows)
    assert np.allclose(box.quad, quad, atol=1.0) and (box.t0, box.t1) == (0.0, 2.5)
    with pytest.raises(DigitizationError, match="lead must be one of"):
        rows_to_boxes([{**rows[0], "lead": "V9"}])


def test_signal_csv_leaves_cells_empty_where_a_lead_is_not_shown():
    signal = np.full((3, 12), np.nan, np.float32)
    signal[:, 0] = [0.1, 0.2, 0.3]
    lines = signal_csv(signal, 100).decode().splitlines()
    assert lines[0].startswith("time_s,I_mV,II_mV") and lines[2] == "0.0100,0.2000" + "," * 11


@pytest.fixture
def working_models(monkeypatch, tmp_path):
    """Stand-ins for the shipped models, so the verdict path is tested whatever weights/ holds: a segmenter that
    returns the true mask of the photo under test, and an untrained signal classifier in real .safetensors."""
    import torch

    from ecgcore.classify import classifiers as classify
    from ecgcore.signals import synthetic_record
    from ecgcore.synth.photo import synthesize_photo

    photo = synthesize_photo(synthetic_record(11), seed=11)

    class TrueMaskSegmenter:
        def predict(self, rgb):
            assert rgb.shape[:2] == photo.mask.shape
            return photo.mask

    torch.manual_seed(0)
    model = classify.build_model("signal", dict(classify.SIGNAL_CONFIG))
    model.config = dict(classify.SIGNAL_CONFIG)
    weights = tmp_path / "classifier_signal.safetensors"
    classify.save_weights(weights, "signal", model, card={"date": "2026-11-25", "architecture": "untrained",
                                                          "summary": {"mi_auroc": 0.5}})
    classifiers = classify.load_classifiers(weights, with_image=False)
    photo.loaded_with = []  # the weights paths the page asked for

    def load_models(segmentation, signal, image):
        photo.loaded_with.append((segmentation, signal, image))
        return TrueMaskSegmenter(), classifiers

    analyse_in_process(monkeypatch, load_models)
    return photo


class InProcess:
    """The analysis worker's interface (ecgcore.read.isolate.Worker.call) run in this process, so that models made in a
    test (closures that no other process can load) serve the page."""

    def call(self, fn, *args, on_progress=None, timeout_s=None, **kwargs):
        if on_progress is not None:
            kwargs["on_step"] = on_progress
        return fn(*args, **kwargs)


def analyse_in_process(monkeypatch, load_models) -> None:
    """The page's analysis with ``load_models(segmentation, signal, image)``'s models, in this process (the one model
    cache, ecgcore.read.models, serves the page and the worker alike)."""
    import pages
    from ecgcore.read import models
    monkeypatch.setattr(pages, "analysis_worker", InProcess)
    monkeypatch.setattr(models, "load", lambda segmentation=None, signal=None, image=None:
                        load_models(segmentation, signal, image))
    monkeypatch.setattr(models, "classifiers", lambda signal=None, image=None: load_models(None, signal, image)[1])


def test_with_models_the_page_shows_the_verdict_leads_and_boxes(page, working_models):
    buffer = io.BytesIO()
    Image.fromarray(working_models.image).save(buffer, format="PNG")
    page.file_uploader(key="cls_upload").set_value(("synthetic.png", buffer.getvalue(), "image/png")).run(timeout=120)
    assert not page.exception, [e.value for e in page.exception]
    assert not page.error, [e.value for e in page.error]
    (verdict,) = [h.value for h in page.subheader if h.value.startswith("Model output:")]
    assert verdict.split(": ")[1] in ("Normal", "Non-MI abnormality", "Myocardial infarction")
    per_model, metrics = page.dataframe[0].value, page.dataframe[1].value  # (the box editor comes after)
    assert list(per_model.columns) == ["model", "Normal", "Non-MI abnormality", "Myocardial infarction"]
    assert metrics.loc[0, "model"] == "signal" and metrics.loc[0, "mi_auroc"] == 0.5  # the card's metrics
    assert any("Layout **seed-3x4**" in m.value for m in page.markdown)
    assert len(page.get("plotly_chart")) == 2
    assert _disclaimer_shown(page)

    # re-digitise from the boxes in the editor (AppTest cannot type into it): the hand-made-boxes path runs
    page.button(key="cls_redigitize").click().run(timeout=120)
    assert not page.exception and not page.error, [e.value for e in page.error]
    override = page.session_state["cls_override"]
    assert override.digitized.layout_source == "boxes" and override.reading is not None  # checked like any reading
    assert page.button(key="cls_reset_boxes") is not None  # showing the hand-corrected result


def test_the_active_models_chosen_on_home_are_the_ones_used(page, working_models, tmp_path):
    from ecgcore.app.home import write_active

    chosen = tmp_path / "ws" / "runs" / "r" / "classifier_signal.safetensors"
    chosen.parent.mkdir(parents=True)
    chosen.write_bytes(b"weights")  # read_active keeps only paths that exist
    write_active(tmp_path / "ws", {"signal": str(chosen)})
    buffer = io.BytesIO()
    Image.fromarray(working_models.image).save(buffer, format="PNG")
    page.file_uploader(key="cls_upload").set_value(("synthetic.png", buffer.getvalue(), "image/png")).run(timeout=120)
    assert working_models.loaded_with[0][1] == str(chosen)  # the signal classifier
    assert working_models.loaded_with[0][0].endswith("weights/segmentation_unet.safetensors")  # shipped


def test_downloads_wfdb_zip_and_png_pdf_reports():
    import zipfile

    from ecgcore.app.report import report, wfdb_zip
    from ecgcore.read.digitized import DigitizedEcg
    from ecgcore.signals import synthetic_record

    signal = synthetic_record(3).signal.copy()
    signal[250:, :6] = np.nan  # limb leads shown for 2.5 s only
    dig = DigitizedEcg(signal=signal, fs=100, layout="3x4+II", rotation_deg=1.0, px_per_mm=6.0, leads=[],
                       quality={"ok": True})
    names = zipfile.ZipFile(io.BytesIO(wfdb_zip(dig, "upload"))).namelist()
    assert {"upload.hea", "upload.dat"} <= set(names)
    photo = np.full((300, 400, 3), 255, np.uint8)
    probs = {"normal": 0.7, "non_mi_abnormality": 0.2, "mi": 0.1}
    png = report(photo, signal, 100, probs, "normal", "Not medical advice.", {}, "png")
    pdf = report(photo, signal, 100, probs, "normal", "Not medical advice.", {}, "pdf")
    assert png.startswith(b"\x89PNG") and pdf.startswith(b"%PDF")
    assert Image.open(io.BytesIO(png)).size[0] > 800


def test_the_attribution_is_computed_only_when_asked_for(page, working_models):
    buffer = io.BytesIO()
    Image.fromarray(working_models.image).save(buffer, format="PNG")
    page.file_uploader(key="cls_upload").set_value(("synthetic.png", buffer.getvalue(), "image/png")).run(timeout=120)
    analysis, _ = page.session_state["cls_result"]
    assert analysis.signal_attribution is None and "explain" not in analysis.timings_ms  # a fast first verdict
    page.toggle(key="cls_attr").set_value(True).run(timeout=120)
    analysis, _ = page.session_state["cls_result"]
    assert analysis.signal_attribution is not None
    assert '"heatmap"' in page.get("plotly_chart")[-1].proto.spec


def test_a_photo_without_an_ecg_gets_no_diagnosis(page, monkeypatch, tmp_path):
    import torch

    from ecgcore.classify import classifiers as classify
    class NothingFound:
        def predict(self, rgb):
            return np.zeros(rgb.shape[:2], np.uint8)  # no grid, no trace

    torch.manual_seed(0)
    model = classify.build_model("signal", dict(classify.SIGNAL_CONFIG))
    model.config = dict(classify.SIGNAL_CONFIG)
    classify.save_weights(tmp_path / "c.safetensors", "signal", model)
    classifiers = classify.load_classifiers(tmp_path / "c.safetensors", with_image=False)
    analyse_in_process(monkeypatch, lambda *a: (NothingFound(), classifiers))
    rng = np.random.default_rng(0)
    holiday = (rng.random((600, 800, 3)) * 255).astype(np.uint8)  # no ECG anywhere
    buffer = io.BytesIO()
    Image.fromarray(holiday).save(buffer, format="JPEG")
    page.file_uploader(key="cls_upload").set_value(("holiday.jpg", buffer.getvalue(), "image/jpeg")).run()
    assert not page.exception
    assert any("No ECG grid/trace found" in w.value for w in page.warning)
    assert not any(h.value.startswith("Model output") for h in page.subheader)
    assert _disclaimer_shown(page)


# --- the honest verdict: a reading that is not reliable is no result -----------------------------------------------


def _upload(page, image: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    page.file_uploader(key="cls_upload").set_value(("synthetic.png", buffer.getvalue(), "image/png")).run(timeout=120)
    assert not page.exception, [e.value for e in page.exception]


def test_a_reliable_reading_shows_the_verdict_and_that_the_limb_leads_agree(page, working_models):
    _upload(page, working_models.image)
    analysis, _ = page.session_state["cls_result"]
    assert analysis.reliable
    assert page.subheader[0].value == f"Model output: {LABEL_TITLES[analysis.prediction]}"
    agree = [m.value for m in page.markdown if "limb leads agree" in m.value]
    assert agree == [f":material/check_circle: The limb leads agree (Einthoven {analysis.reading.einthoven_db:.1f} dB, "
                     f"Goldberger {analysis.reading.goldberger_db:.1f} dB)."]
    assert not any("No verdict is given" in w.value for w in page.warning)
    assert not any("Research output" in e.label for e in page.expander)
    # the table named for what it shows, and the validation metrics under their own name
    titles = [m.value for m in page.markdown if m.value.startswith("**")]
    assert "**Each model's probabilities for this photo**" in titles
    assert any(t.startswith("**The models' validation metrics**") for t in titles)
    assert not any("Models and their validation metrics" in m.value for m in page.markdown)


def test_an_unreliable_reading_says_so_first_and_its_probabilities_are_research_output(page, working_models):
    """Issue: a reading that breaks the limb-lead physics showed "Model output: ..." in large type. The layout
    forced to 12x1 on a 3x4 printout reads the wrong rows: the page must say it could not read the ECG."""
    page.selectbox(key="cls_layout").set_value("12x1").run()
    _upload(page, working_models.image)
    analysis, _ = page.session_state["cls_result"]
    assert not analysis.reliable
    assert page.subheader[0].value == "Could not read this ECG reliably"
    assert not any(h.value.startswith("Model output") for h in page.subheader)
    assert not page.error  # the app worked: the reading is what cannot be trusted
    (error,) = [w.value for w in page.warning if w.value.startswith("No verdict is given")]
    assert "(read with the layout you chose)" in error and "Einthoven" in error
    assert any(m.value.startswith("**What to look at:**") for m in page.markdown)
    captions = [caption for image in page.get("image") for caption in image.captions]
    assert captions[0].startswith("Where each lead was read")  # the overlay to look at, beside the reasons
    (research,) = [e for e in page.expander if e.label.startswith("Research output only, not a result")]
    assert len(research.get("plotly_chart")) == 1  # the probabilities live only in the marked section
    assert any(c.value.startswith("Research output only, not a result") for c in research.caption)
    assert any("(research output)" in m.value for m in research.markdown)
    assert len(page.get("plotly_chart")) == 2  # the probabilities (in the expander) and the leads
    assert _disclaimer_shown(page)


def test_leads_read_along_a_sliver_of_their_window_are_not_drawn_as_traces():
    """Issue: leads read for ~2% of their window were drawn as straight ramps and plateaus. The figure holds the
    window's samples with NaN where nothing was read (plotly breaks the line there), and the panel says so."""
    from ecgcore.app.plots import ecg_paper_figure, lead_windows, read_fractions
    from ecgcore.constants import LEAD_INDEX
    from ecgcore.layouts import LeadBox
    from ecgcore.signals import synthetic_record

    signal = synthetic_record(3).signal[:1000].astype(np.float64)
    quad = np.zeros((4, 2))
    boxes = [LeadBox(name, quad, 2.5 * (i // 3), 2.5 * (i // 3) + 2.5)
             for i, name in enumerate(["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"])]
    windows = lead_windows(boxes)
    for name, (t0, t1) in ((n, spans[0]) for n, spans in windows.items()):
        keep = np.zeros(1000, bool)
        keep[int(t0 * 100): int(t1 * 100)] = True
        signal[~keep, LEAD_INDEX[name]] = np.nan
    iii = LEAD_INDEX["III"]
    signal[:250, iii] = np.nan
    signal[100:105, iii] = 0.3  # 5 of 250 samples: 2%
    signal[60:160, LEAD_INDEX["II"]] = np.nan  # a one-second gap in the middle of II
    fractions = read_fractions(signal, 100, windows)
    assert fractions["III"] == pytest.approx(0.02) and fractions["II"] == pytest.approx(0.6) and fractions["I"] == 1

    fig = ecg_paper_figure(signal, 100, windows=windows)
    titles = [a.text for a in fig.layout.annotations]
    assert "III - partly read (2%)" in titles and "II" in titles and "I" in titles
    traces = {t.hovertemplate.split("<extra>")[1].split("</extra>")[0]: t for t in fig.data if t.hovertemplate}
    x, y = np.asarray(traces["III"].x, float), np.asarray(traces["III"].y, float)
    assert x.size == 250 and x[0] == 0.0  # the whole window, not just the read samples
    assert np.isfinite(y).sum() == 5 and (y[100:105] == 0.3).all() and np.isnan(np.delete(y, range(100, 105))).all()
    assert traces["III"].connectgaps is False
    y_ii = np.asarray(traces["II"].y, float)
    assert np.isnan(y_ii[60:160]).all() and np.isfinite(y_ii[:60]).all()  # a gap, not a ramp across it
    shaded = [(s.x0, s.x1) for s in fig.layout.shapes]
    assert (0.6, 1.6) in shaded and any(a.text == "not read" for a in fig.layout.annotations)


def test_a_derived_limb_lead_is_drawn_dotted_and_named_never_as_read():
    """A limb lead derived where it was not read (quality["derived"]) is not drawn as read: its samples count as not
    read in the panel's title and shading, the shading is named with the derivation, and the values are a separate
    dotted trace; the verdict's lines name it whether or not the reading is reliable."""
    from ecgcore.app.plots import DERIVED, ecg_paper_figure
    from ecgcore.app.report import verdict_lines
    from ecgcore.constants import LEAD_INDEX
    from ecgcore.read.physics import Reading
    from ecgcore.signals import synthetic_record

    signal = synthetic_record(3).signal[:1000].astype(np.float64)
    derived = {"III": {"from": "II - I", "law": "einthoven", "seconds": 2.5, "samples": [[0, 250]]}}
    windows = {name: [(0.0, 10.0)] for name in LEAD_INDEX}
    fig = ecg_paper_figure(signal, 100, windows=windows, derived=derived)
    titles = [a.text for a in fig.layout.annotations]
    assert "III, derived" in titles and "derived: II - I" in titles and "not read" not in titles
    dotted = [t for t in fig.data if t.line is not None and t.line.dash == "dot"]
    assert len(dotted) == 1 and dotted[0].line.color == DERIVED and dotted[0].name.startswith("derived")
    y = np.asarray(dotted[0].y, float)
    assert np.isfinite(y[:250]).all() and np.isfinite(y).sum() == 251  # joined to the first read sample
    read = next(t for t in fig.data if t.hovertemplate and t.hovertemplate.endswith("<extra>III</extra>"))
    assert np.isnan(np.asarray(read.y, float)[:250]).all() and np.isfinite(np.asarray(read.y, float)[250:]).all()

    for reliable in (True, False):
        reading = Reading(reliable, None if not reliable else 17.0, 15.0, None,
                          [] if reliable else ["III (derived from II - I) was not read"], ["III = II - I (2.5 s)"])
        _, lines = verdict_lines(reading, "mi")
        assert lines[-1] == "Not read on the photo, derived from the other limb leads: III = II - I (2.5 s)."

def test_the_report_says_could_not_read_first_and_names_the_partly_read_lead():
    from matplotlib import pyplot as plt

    from ecgcore.app.report import report_figure
    from ecgcore.constants import LEAD_INDEX
    from ecgcore.read.physics import Reading
    from ecgcore.signals import synthetic_record

    signal = synthetic_record(3).signal[:250].astype(np.float64)
    signal[:, LEAD_INDEX["V3"]] = np.nan
    signal[10:15, LEAD_INDEX["V3"]] = 0.2
    probs = {"normal": 0.2, "non_mi_abnormality": 0.22, "mi": 0.58}
    windows = {name: [(0.0, 2.5)] for name in LEAD_INDEX}  # every lead shown for the 2.5 s of a 3x4 cell
    unreliable = Reading(False, -4.0, 12.0, None, ["the limb leads break I + III = II (Einthoven): -4.0 dB"])
    fig = report_figure(np.full((300, 400, 3), 255, np.uint8), signal, 100, probs, "mi", "Not medical advice.",
                        {}, reading=unreliable, windows=windows)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    plt.close(fig)
    assert "Could not read this ECG reliably" in texts
    assert any("The limb leads break I + III = II" in t for t in texts)
    assert "Research output only, not a result (the reading is not reliable)" in titles
    assert not any(t.startswith("Model output") for t in titles + texts)
    assert "V3 - partly read (2%)" in titles and "V2" in titles

    reliable = Reading(True, 17.2, 15.9, 0.93, [])
    fig = report_figure(np.full((300, 400, 3), 255, np.uint8), signal, 100, probs, "mi", "Not medical advice.",
                        {}, reading=reliable)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    plt.close(fig)
    assert "Model output: Myocardial infarction" in titles and "Could not read this ECG reliably" not in texts
    assert "The limb leads agree (Einthoven 17.2 dB, Goldberger 15.9 dB)." in "\n".join(texts)


# --- whatever an image or a typed box makes the reader do, the page answers with a sentence --------------------


def hog_memory(rgb, layout, weights, on_step=None):
    """What the reader did on the tracker's line chart (sized arrays from a bogus grid fit until the kernel killed
    the server): touch memory in 256 MB blocks, up to 6 GB, beyond the worker's 4 GB allowance."""
    blocks = [np.ones(2**25) for _ in range(24)]
    return len(blocks)


def test_a_runaway_analysis_costs_the_worker_not_the_server(page, monkeypatch):
    from ecgcore.read import isolate
    from ecgcore.signals import synthetic_record
    from ecgcore.synth.photo import synthesize_photo

    real = isolate.analyze_with_weights
    monkeypatch.setattr(isolate, "analyze_with_weights", hog_memory)  # sent to the page's worker process
    buffer = io.BytesIO()
    Image.fromarray(synthesize_photo(synthetic_record(4), seed=4, size=(1200, 900)).image).save(buffer, format="PNG")
    page.file_uploader(key="cls_upload").set_value(("chart.png", buffer.getvalue(), "image/png")).run(timeout=300)
    assert not page.exception, [e.value for e in page.exception]
    (error,) = [e.value for e in page.error]
    assert error.startswith("Reading this image needed more memory than allowed") and "\n" not in error
    assert not any(h.value.startswith("Model output") for h in page.subheader)
    assert _disclaimer_shown(page)
    # The server lives on, and the next analysis gets a fresh worker.
    monkeypatch.setattr(isolate, "analyze_with_weights", real)
    page.button(key="cls_retry").click().run(timeout=300)
    assert not page.exception, [e.value for e in page.exception]
    if _models_installed():
        assert any(h.value.startswith("Model output:") for h in page.subheader), [e.value for e in page.error]
    else:
        assert any(e.value.startswith("Model missing:") for e in page.error)


def _typed(monkeypatch, **edit) -> None:
    """AppTest cannot type into the lead-box editor: the rows it hands over get ``edit`` in their second row, as a
    person would type it."""
    from ecgcore.app import report as ui_report
    original = ui_report.rows_to_boxes

    def rows_to_boxes(rows):
        rows = [dict(r) for r in (rows.to_dict("records") if hasattr(rows, "to_dict") else rows)]
        rows[1].update(edit)
        return original(rows)

    monkeypatch.setattr(ui_report, "rows_to_boxes", rows_to_boxes)


@pytest.mark.parametrize("edit, phrase", [
    ({"t1": 1_000_000}, "t1 <= 60"),  # was: Unable to allocate 2.24 GiB ... (100000000, 12) int16
    ({"centre_x": 99_999_999_999}, "is not on the"),  # was: cv2.error putText Can't parse 'org', page gone
    ({"width": 1e12}, "beyond the ECG paper"),
])
def test_unusable_typed_lead_boxes_get_one_sentence_and_the_page_stays(page, working_models, monkeypatch, edit,
                                                                      phrase):
    buffer = io.BytesIO()
    Image.fromarray(working_models.image).save(buffer, format="PNG")
    page.file_uploader(key="cls_upload").set_value(("synthetic.png", buffer.getvalue(), "image/png")).run(timeout=120)
    _typed(monkeypatch, **edit)
    page.button(key="cls_redigitize").click().run(timeout=120)
    assert not page.exception, [e.value for e in page.exception]
    (error,) = [e.value for e in page.error]
    assert phrase in error and "\n" not in error and error[0].isupper()
    assert "cls_override" not in page.session_state  # the automatic reading stays
    assert len(page.get("plotly_chart")) == 2  # the verdict and the leads
    assert any(h.value == "What was found on the photo" for h in page.subheader)  # and the photo section
