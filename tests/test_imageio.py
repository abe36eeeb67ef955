"""read_image: every image mode is handled, every bad file is refused with one sentence, huge ones stay bounded."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ecgcore.imageio import ImageError, read_image
from tests.badfiles import bad_files, png_bomb, variants

VARIANTS = variants()
BAD = bad_files()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_awkward_but_valid_images_decode_to_rgb(name):
    loaded = read_image(VARIANTS[name], name=name)
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.ndim == 3 and loaded.rgb.shape[2] == 3
    h, w = loaded.rgb.shape[:2]
    if name == "exif_rotated.jpg":
        assert (w, h) == (480, 640)  # portrait after applying the EXIF orientation
    else:
        assert (w, h) == (640, 480)
    assert loaded.rgb.std() > 10  # not a blank decode


def test_animated_images_use_the_first_frame_and_say_so():
    assert any("first is used" in note for note in read_image(VARIANTS["animated.gif"], name="a.gif").notes)


def test_sixteen_bit_keeps_its_dynamic_range():
    rgb = read_image(VARIANTS["gray16.png"]).rgb
    assert rgb.max() > 200 and rgb.min() < 80


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_are_refused_with_one_sentence(name):
    with pytest.raises(ImageError) as err:
        read_image(BAD[name], name=name)
    message = str(err.value)
    assert name in message and "\n" not in message and message.endswith(".")


def test_missing_path_is_a_sentence(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.jpg")


def test_large_images_are_downscaled_to_a_bounded_size():
    from PIL import Image

    from tests.badfiles import encode

    big = encode(Image.new("RGB", (6000, 3000), "white"), "PNG")
    loaded = read_image(big, name="big.png")
    assert max(loaded.rgb.shape[:2]) == 4096 and loaded.original_size == (6000, 3000)


def test_decompression_bomb_is_refused_fast_with_bounded_memory(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb())
    script = textwrap.dedent(f"""
        import resource, time
        from ecgcore.imageio import read_image, ImageError
        start = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            read_image({str(bomb)!r})
            print("DECODED")
        except ImageError as exc:
            print("REFUSED", exc)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print("MB", grown, "S", time.perf_counter() - start)
    """)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60).stdout
    assert "REFUSED" in out and "30000x30000" in out, out
    grown_mb = float(out.split("MB ")[1].split()[0])
    assert grown_mb < 200, out
    assert time.perf_counter() - start < 20


def test_huge_jpeg_is_decoded_downscaled():
    from PIL import Image

    from tests.badfiles import encode

    huge = encode(Image.new("RGB", (9000, 6000), (250, 240, 240)), "JPEG", quality=50)
    loaded = read_image(huge, name="huge.jpg")
    assert loaded.original_size == (9000, 6000)
    assert max(loaded.rgb.shape[:2]) <= 4096
    assert any("decoded downscaled" in note for note in loaded.notes)
