"""Printer styles: every style renders, the masks stay exact (curve = the traces' ink, never labels, text or marks),
lead labels are boxed and named, the default output is byte-identical to the code before styles, and the shipped
presets resolve by name."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ecgcore.constants import CURVE, CURVE_MASK_MIN_COVERAGE, LEAD_NAMES
from ecgcore.layouts import LAYOUT_NAMES, LayoutStyle, make_layout, styled_layout
from ecgcore.signals import synthetic_record
from ecgcore.synth.params import PARAMS, SCHEMA, Preset, PresetError, resolve_preset
from ecgcore.synth.printstyle import LABEL_FONTS, LABEL_PLACES, LEAD_MARKS, TEXT_BLOCKS, PrintStyle, printer_style
from ecgcore.synth.render import PaperOptions, render

REPO = Path(__file__).resolve().parents[1]
PPM = 4.0  # small papers keep these tests fast


@pytest.fixture(scope="module")
def record():
    return synthetic_record(5)


# --- the default output is the code's before printer styles (sha256 computed on the unmodified branch) -----------
BEFORE = {
    "default": {"0.jpg": "2d3111300a92500a047088b7c935672755d4bedcc757da9338528d4e4cd4caa0",
                "0_mask.png": "a31027d7a1e6281a8d174ce38cdb2752e154f1c64c742594d34f61e69f5f7718",
                "1.jpg": "855e8ccbb774aa11505554e8104214d495b931b5d06477699d193c1c8b534a61",
                "1_mask.png": "305432c4a7106f58f8423ea9bd7379867bff7ca7e7669ff9693d3d8387f3d7d9"},
    "harsh": {"0.jpg": "efb94e3420a419fab56cb98da2a0a8e3d63eaeabc7468be387fc864b88b95eb4",
              "0_mask.png": "78f263478f1d29cb0fe52b843713c7a4c0544eaeec636c71c152f74373b288cc",
              "1.jpg": "591aca4ed6ba2b9b06e7b7a00a41b155eaaede8dd4f23ca93b05eb2ff1b6e0b4",
              "1_mask.png": "aea108ab6499940b87f43f1f3aa53591d5d4ce03f8ce06961e18352c5bf721e4"},
    "device": {"0.jpg": "c5b60c2b3706391d37f1bb78b66782dea96b515ce289fed0f813c26abed4cc1e",
               "0_mask.png": "a31027d7a1e6281a8d174ce38cdb2752e154f1c64c742594d34f61e69f5f7718",
               "1.jpg": "8372c1774f8eec21ee29565d89b5b4575019e38f846a7846d43ae18b6162fb15",
               "1_mask.png": "581169f15a71740b4107163c3ecad3ede62cbf8d9916ec309e0d24dc85f01654"},
}


@pytest.mark.parametrize("case", sorted(BEFORE))
def test_default_and_harsh_samples_are_byte_identical_to_before_styles(case, tmp_path):
    from ecgcore.synth.generate import make_sample

    preset = resolve_preset("harsh") if case == "harsh" else Preset()
    paper = {"paper_speed": 25.0, "gain": 10.0, "grid_color": "red"}
    layouts = {"default": ["seed-3x4", "3x4+II", "6x2"], "harsh": ["3x4+3", "12x1"], "device": ["3x4", "6x2"]}[case]
    if case == "device":
        paper.update(grid_color="black", print_style="device", minor_grid="dots")
    config = {"preset": preset.to_json(), "source": {"kind": "synthetic"}, "layouts": layouts, "seed": 3,
              "size": [480, 360], "paper": paper, "fs": 100, "backgrounds": None}
    for i in range(2):
        make_sample(i, config, str(tmp_path))
    got = {name: hashlib.sha256((tmp_path / f"00000{name}").read_bytes()).hexdigest() for name in BEFORE[case]}
    assert got == BEFORE[case]


def test_dark_one_second_lines_are_grid_and_leave_the_trace_as_it_was(record):
    """grid_second_mm draws every fifth vertical 5 mm line (each second) wider and darker, as real ecg00010's printer
    does: they are GRID_X in the mask and the curve class is the same pixels as without them."""
    from ecgcore.constants import CURVE, GRID_X
    from ecgcore.synth.photo import synthesize_photo

    values = {"capture": "scan"}
    plain = synthesize_photo(record, seed=3, layout="3x4+II", size=(1200, 900), values=values)
    dark = synthesize_photo(record, seed=3, layout="3x4+II", size=(1200, 900), values={**values, "grid_second_mm": 0.5})
    assert ((dark.mask == CURVE) == (plain.mask == CURVE)).all()
    added = (dark.mask == GRID_X) & (plain.mask != GRID_X)
    assert added.any() and not (added & (plain.mask == CURVE)).any()
    # the added line pixels are darker than the plain page's there, and only there does the paper change much
    darker = plain.image.astype(int).sum(axis=2) - dark.image.astype(int).sum(axis=2)
    assert np.median(darker[added]) > 100
    assert np.median(np.abs(darker[(dark.mask != GRID_X) & (dark.mask != CURVE)])) <= 2


def test_default_parameters_make_no_style():
    for seed in range(5):
        layout_style, style, paper = printer_style(Preset().sample(seed), seed)
        assert style is None and layout_style.is_default() and paper == {}


@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_default_layout_style_is_make_layout(name):
    assert styled_layout(name, 25.0, LayoutStyle()) == make_layout(name, 25.0)
    assert styled_layout(name, 50.0) == make_layout(name, 50.0)


# --- every style renders and the mask stays exact -------------------------------------------------------------------
def assert_exact(paper, expect_labels: bool = True) -> None:
    """Curve is the traces' ink (pulses included): every visibly inked pixel is curve, every curve pixel has ink (the
    render's rule: the aliased pen plus the anti-aliased fringe), so no label, text or mark pixel is curve."""
    curve = paper.mask == CURVE
    inked = paper.ink >= round(CURVE_MASK_MIN_COVERAGE * 255)
    assert not (inked & ~curve).any()
    assert not (curve & (paper.ink == 0)).any()
    labels = [a for a in paper.annotations if a.kind == "label"]
    if expect_labels:
        assert labels and {a.name for a in labels} == {c.lead for c in paper.layout.cells}
    h, w = paper.mask.shape
    dark = paper.image.min(axis=2) < 128
    for a in paper.annotations:
        if a.kind in ("label", "text"):
            x0, y0 = np.floor(a.quad.min(axis=0)).astype(int)
            x1, y1 = np.ceil(a.quad.max(axis=0)).astype(int)
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
            assert x1 > x0 and y1 > y0, a
            box = (slice(y0, y1), slice(x0, x1))
            # the label is printed there (dark pixels that are not trace ink), and none of those pixels is curve
            printed = dark[box] & ~inked[box]
            assert printed.any(), a
            assert not (curve[box] & printed).any()


def styled(record, layout="3x4+II", options=None, style=None, lstyle=None):
    options = options or PaperOptions(px_per_mm=PPM)
    lay = styled_layout(layout, options.paper_speed, lstyle or LayoutStyle(pulse_place="row_start"))
    return render(record, lay, options, style=style or PrintStyle())


@pytest.mark.parametrize("font", [f for f in LABEL_FONTS])
def test_every_label_font_renders_labels_that_are_never_curve(record, font):
    paper = styled(record, style=PrintStyle(label_font=font, label_size_mm=3.0))
    assert_exact(paper)


@pytest.mark.parametrize("place", LABEL_PLACES)
def test_every_label_place(record, place):
    lstyle = LayoutStyle(left_mm=9.0 if place == "margin" else 0.0, pulse_place="row_start")
    paper = styled(record, "6x2", style=PrintStyle(label_place=place, label_font="dejavu_serif",
                                                   label_weight="bold"), lstyle=lstyle)
    assert_exact(paper, expect_labels=place != "none")
    if place == "none":
        assert not [a for a in paper.annotations if a.kind == "label"]


@pytest.mark.parametrize("marks", LEAD_MARKS)
def test_every_lead_mark_is_not_curve(record, marks):
    paper = styled(record, "3x4", style=PrintStyle(lead_marks=marks))
    assert_exact(paper)
    drawn = [a for a in paper.annotations if a.kind == "mark"]
    if marks in ("ticks", "bars", "dotted", "gap"):
        assert len(drawn) == 9  # three lead changes in each of the three rows
    if marks == "gap":  # the trace is cut: no ink, so no curve, in the middle of each gap
        for a in drawn:
            xc = int(round(a.quad[:, 0].mean()))
            y0, y1 = int(a.quad[:, 1].min()) + 1, int(a.quad[:, 1].max()) - 1
            assert paper.ink[y0:y1, xc].max() == 0


@pytest.mark.parametrize("blocks", TEXT_BLOCKS)
def test_text_blocks_are_boxed_and_never_curve(record, blocks):
    header = {"header": 9.0, "full": 24.0}.get(blocks, 0.0)
    paper = styled(record, style=PrintStyle(text_blocks=blocks, text_seed=4),
                   lstyle=LayoutStyle(header_mm=header, pulse_place="row_start"))
    assert_exact(paper)
    texts = {a.name for a in paper.annotations if a.kind == "text"}
    expected = {"none": set(), "auto": {"footer"}, "footer": {"footer"}, "header": {"header", "footer"},
                "full": {"header", "measurements", "interpretation", "footer"}}[blocks]
    assert texts == expected


@pytest.mark.parametrize("place", ["layout", "row_start", "row_end", "each_cell", "none"])
@pytest.mark.parametrize("columns", ["layout", "follow", "gap"])
def test_pulses_and_columns_keep_each_cells_time_window(record, place, columns):
    base = make_layout("3x4+II")
    lstyle = LayoutStyle(pulse_place=place, columns=columns, column_gap_mm=3.0, pulse_s=(0.0, 0.12, 0.1))
    lay = styled_layout("3x4+II", 25.0, lstyle)
    assert [(c.lead, c.t0, c.t1) for c in lay.cells] == [(c.lead, c.t0, c.t1) for c in base.cells]
    paper = render(record, lay, PaperOptions(px_per_mm=PPM), style=PrintStyle())
    assert_exact(paper)
    pulses = [a for a in paper.annotations if a.kind == "pulse"]
    expected = {"layout": 4, "row_start": 4, "row_end": 4, "each_cell": 13, "none": 0}[place]
    assert len(pulses) == expected
    for a in pulses:  # every pulse is drawn, and is curve
        x0, y0 = np.floor(a.quad.min(axis=0)).astype(int)
        x1, y1 = np.ceil(a.quad.max(axis=0)).astype(int)
        assert (paper.mask[y0:y1, x0:x1] == CURVE).sum() > 10
    if columns == "gap":  # blank paper between the columns of a row
        row = sorted((c for c in lay.cells if c.row == 0), key=lambda c: c.x_mm)
        assert all(b.x_mm - (a.x_mm + a.w_mm) == pytest.approx(3.0) for a, b in zip(row, row[1:]))


@pytest.mark.parametrize("strips", ["1", "2", "3"])
@pytest.mark.parametrize("name", ["3x4+II", "3x4+3"])
def test_rhythm_strips(record, name, strips):
    lay = styled_layout(name, 25.0, LayoutStyle(rhythm_strips=strips))
    assert len([c for c in lay.cells if c.t1 - c.t0 == 10.0]) == int(strips)
    assert_exact(render(record, lay, PaperOptions(px_per_mm=PPM), style=PrintStyle()))


@pytest.mark.parametrize("page", ["a4", "letter"])
def test_pages_margins_and_offsets_move_the_block(record, page):
    plain = styled_layout("3x4+II", 25.0, LayoutStyle(page=page))
    moved = styled_layout("3x4+II", 25.0, LayoutStyle(page=page, offset_mm=(3.0, 2.0), margin_mm=8.0))
    assert (plain.width_mm, plain.height_mm) == pytest.approx({"a4": (297.0, 210.0), "letter": (279.4, 215.9)}[page])
    for a, b in zip(plain.cells, moved.cells):
        assert (b.x_mm - a.x_mm, b.y_mm - a.y_mm) == pytest.approx((6.0, 5.0))


def test_trace_colour_width_and_grid_options(record):
    params = {**Preset().sample(1), "trace_color": "dark_blue", "trace_width_mm": 0.45, "grid_color": "orange",
              "grid_major_mm": 0.3, "minor_grid": "none"}
    lstyle, style, changes = printer_style(params, 1)
    assert changes == {"grid_color": "orange", "minor_grid": "none", "curve_line_mm": 0.45, "major_line_mm": 0.3}
    paper = render(record, styled_layout("6x2", 25.0, lstyle), PaperOptions(px_per_mm=8.0, **changes), style=style)
    assert_exact(paper)
    core = paper.ink == 255
    # the pen's colour (labels printed over the trace in black are the rest)
    assert np.mean(np.abs(paper.image[core].astype(int) - (0x1E, 0x2A, 0x78)).max(axis=1) <= 1) > 0.97


# --- photos and scans: ground truth mapped like the lead quads -----------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_mixed_photos_and_scans_carry_label_boxes(record, seed):
    from ecgcore.synth.photo import synthesize_photo

    values = {"capture": "scan" if seed % 2 else "photo", "scan_dpi": 80.0, "label_place": "on_trace"}
    photo = synthesize_photo(record, seed, resolve_preset("mixed"), layout=LAYOUT_NAMES[seed], size=(480, 360),
                             values=values)
    h, w = photo.mask.shape
    assert photo.image.shape[:2] == (h, w)
    if values["capture"] == "scan":  # the page at the scan's resolution, no background
        lay = photo.paper.layout
        assert (w, h) == pytest.approx((lay.width_mm * 80 / 25.4, lay.height_mm * 80 / 25.4), abs=1.5)
        # The same scan without labels (same seed, so the same noise; PNG, so no JPEG blocks): the labels are what
        # differs, inside their mapped boxes and nowhere else.
        values = {**values, "scan_format": "png"}
        with_labels = synthesize_photo(record, seed, resolve_preset("mixed"), layout=LAYOUT_NAMES[seed],
                                       size=(480, 360), values=values)
        without = synthesize_photo(record, seed, resolve_preset("mixed"), layout=LAYOUT_NAMES[seed],
                                   size=(480, 360), values={**values, "label_place": "none"})
        changed = np.abs(with_labels.image.astype(int) - without.image.astype(int)).max(axis=2) > 30
        inside = np.zeros_like(changed)
        for a in with_labels.annotations:
            if a.kind == "label":
                (x0, y0), (x1, y1) = np.floor(a.quad.min(axis=0)).astype(int), np.ceil(a.quad.max(axis=0)).astype(int)
                box = (slice(max(y0 - 1, 0), y1 + 2), slice(max(x0 - 1, 0), x1 + 2))
                assert changed[box].any(), a
                inside[box] = True
        assert changed.any() and not (changed & ~inside).any()
    labels = [a for a in photo.annotations if a.kind == "label"]
    assert {a.name for a in labels} == set(LEAD_NAMES)
    # a label's box is where its paper box maps: inside the frame, near its lead's cell
    for a in labels:
        assert np.all(a.quad.min(axis=0) > -5) and a.quad[:, 0].max() < w + 5 and a.quad[:, 1].max() < h + 5


def test_scan_png_sample_is_valid(tmp_path):
    from ecgcore.dataset import validate_sample, write_sample
    from ecgcore.synth.photo import synthesize_photo

    record = synthetic_record(2)
    values = {"capture": "scan", "scan_dpi": 75.0, "scan_format": "png", "label_place": "above"}
    photo = synthesize_photo(record, 3, resolve_preset("mixed"), layout="6x2", values=values)
    meta = write_sample(tmp_path, "000000", photo, record, "6x2", 3)
    assert meta["image"] == "000000.png" and (tmp_path / "000000.png").read_bytes().startswith(b"\x89PNG")
    assert validate_sample(tmp_path, "000000") == []
    assert meta["print"]["capture"] == "scan" and len(meta["labels"]) == 12
    from ecgcore.app.curation import sample_image_path

    assert sample_image_path(tmp_path, "000000").name == "000000.png"  # the Curation page's thumbnails find it


# --- the schema and presets -----------------------------------------------------------------------------------------
def test_print_parameters_are_in_the_schema_with_neutral_defaults():
    for name in ("pulse_place", "pulse_width_s", "columns", "rhythm_strips", "lead_marks", "label_font",
                 "label_place", "text_blocks", "trace_color", "trace_width_mm", "grid_color", "minor_grid",
                 "page_size", "page_margin_mm", "grid_offset_x_mm", "capture", "scan_dpi", "scan_format"):
        assert name in PARAMS
    assert {p.stage for p in SCHEMA} >= {"print", "ink", "capture"}
    assert PARAMS["capture"].default.args == ("photo",)


def test_mixed_draws_from_every_print_parameter():
    mixed = resolve_preset("mixed")
    assert mixed.diff()  # differs from the defaults
    drawn = [mixed.sample(s) for s in range(60)]
    for name in ("pulse_place", "columns", "lead_marks", "label_font", "label_place", "text_blocks", "capture",
                 "grid_color", "page_size", "rhythm_strips", "trace_color", "minor_grid"):
        assert len({d[name] for d in drawn}) >= 3 or name in ("capture", "page_size"), name
    assert {d["capture"] for d in drawn} == {"photo", "scan"}


def test_presets_resolve_by_name_and_by_path(tmp_path):
    assert resolve_preset("default").to_json() == Preset().to_json() == resolve_preset(None).to_json()
    shipped = REPO / "weights" / "presets"
    for name in ("harsh", "mixed"):
        assert resolve_preset(name).to_json() == Preset.load(shipped / f"{name}.json").to_json()
        assert resolve_preset(str(shipped / f"{name}.json")).to_json() == resolve_preset(name).to_json()
    local = tmp_path / "mixed"  # a file in the way wins over the shipped name
    local.write_text(json.dumps({"rotation_angle": 2.0}))
    assert resolve_preset(str(local)).dists["rotation_angle"].args == (2.0,)
    with pytest.raises(PresetError, match="known presets: default, harsh, mixed"):
        resolve_preset("nosuch")
    with pytest.raises(PresetError, match="does not exist"):
        resolve_preset("nosuch.json")


def test_generate_mixed_by_name_from_synthetic(tmp_path):
    from ecgcore.dataset import iter_samples, validate_sample
    from pipelines.generate_ptb_v import main

    out = tmp_path / "m"
    assert main(["--synthetic", "--out", str(out), "-n", "3", "--preset", "mixed", "--size", "480x360",
                 "--layout", "3x4+II,6x2,12x1"]) == 0
    samples = list(iter_samples(out))
    assert len(samples) == 3
    for s in samples:
        assert validate_sample(out, s.id) == []
        assert s.meta["params"]["label_font"] in LABEL_FONTS
        assert all(label["lead"] in LEAD_NAMES for label in s.meta["labels"])


def test_generate_mixed_from_ptbxl(ptbxl_dir, tmp_path):
    from ecgcore.dataset import iter_samples, validate_sample
    from pipelines.generate_ptb_v import main

    out = tmp_path / "p"
    assert main(["--ptbxl", str(ptbxl_dir), "--out", str(out), "-n", "2", "--preset", "mixed", "--folds", "10",
                 "--size", "480x360", "--layout", "3x4+3,seed-3x4"]) == 0
    for s in iter_samples(out):
        assert validate_sample(out, s.id) == [] and s.label != "synthetic"


def test_dataset_made_before_print_parameters_still_resumes(tmp_path):
    """A dataset.json whose preset lacks the new parameters is the same preset (they are at their defaults)."""
    from pipelines.generate_ptb_v import main

    out = tmp_path / "old"
    args = ["--synthetic", "--out", str(out), "-n", "1", "--size", "320x256"]
    assert main(args) == 0
    info = json.loads((out / "dataset.json").read_text())
    info["preset"] = {k: v for k, v in info["preset"].items() if PARAMS[k].stage not in ("print", "ink", "capture")}
    (out / "dataset.json").write_text(json.dumps(info))
    assert main(["--synthetic", "--out", str(out), "-n", "2", "--size", "320x256"]) == 0
    assert (out / "000001.json").is_file()


def test_replace_keeps_unknown_style_errors_readable():
    with pytest.raises(ValueError, match="label_font must be one of"):
        replace(PrintStyle(), label_font="comic").validate()
    with pytest.raises(ValueError, match="pulse_place must be one of"):
        styled_layout("6x2", 25.0, LayoutStyle(pulse_place="middle"))


def test_studio_preview_shows_scans_at_preview_size_with_boxes():
    from ecgcore.app.studio import PREVIEW_SIZE, preset_from_state, render_preview, state_from_preset

    mixed = resolve_preset("mixed")
    assert preset_from_state(state_from_preset(mixed)).diff(mixed) == {}  # choice weights survive the widgets
    preview = render_preview(synthetic_record(1), mixed.with_values({"capture": "scan", "label_place": "below"}), 2,
                             "3x4+II", show_mask=True, show_boxes=True)
    assert max(preview.picture.shape[:2]) <= max(PREVIEW_SIZE)
    assert [a for a in preview.photo.annotations if a.kind == "label"]
