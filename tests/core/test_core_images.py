"""Every kind of bad upload, through the one decoding function, each with its message."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from core.images import MAX_BYTES, MAX_DECODED_BYTES, MAX_SIDE, ImageError, decoded_bytes, load_image


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    return Image.fromarray(data.chelsea())


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_common_formats_decode_to_rgb(cat, fmt):
    out = load_image(_bytes(cat, fmt))
    assert out.mode == "RGB" and out.size == cat.size


def test_non_image_bytes_are_refused_with_a_message():
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"%PDF-1.4 this is a document, not a picture" * 10)


def test_zero_byte_file():
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


def test_truncated_jpeg(cat):
    raw = _bytes(cat, "JPEG")
    with pytest.raises(ImageError, match="damaged or truncated"):
        load_image(raw[: len(raw) // 2])


def test_decompression_bomb_is_refused():
    bomb = _bytes(Image.new("1", (9000, 9000)), "PNG")  # 81 MP in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match="megapixels"):
        load_image(bomb)


def test_oversized_file_is_refused_before_decoding():
    with pytest.raises(ImageError, match="limit"):
        load_image(io.BytesIO(b"\0" * (MAX_BYTES + 10)))


def test_cmyk_jpeg(cat):
    out = load_image(_bytes(cat.convert("CMYK"), "JPEG"))
    assert out.mode == "RGB"
    assert abs(np.asarray(out, float).mean() - np.asarray(cat, float).mean()) < 25


def test_16_bit_png_is_rescaled_not_clipped():
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    out = np.asarray(load_image(_bytes(Image.fromarray(ramp), "PNG")))
    assert out.shape == (64, 64, 3)
    assert out.min() == 0 and out.max() == 255  # full range kept, not saturated at 255


def test_palette_with_transparency_and_alpha_go_onto_white():
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))  # fully transparent red
    out = np.asarray(load_image(_bytes(rgba, "PNG")))
    assert (out == 255).all()
    pal = Image.new("P", (10, 10), 0)
    pal.putpalette([0, 0, 0] * 256)
    pal.info["transparency"] = 0
    out = np.asarray(load_image(_bytes(pal, "PNG", transparency=0)))
    assert (out == 255).all()


def test_exif_rotation_is_applied(cat):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    out = load_image(_bytes(cat, "JPEG", exif=exif.tobytes()))
    assert out.size == (cat.size[1], cat.size[0])


def test_gif_takes_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = np.asarray(load_image(buf.getvalue()))
    assert out[0, 0, 0] > 200 and out[0, 0, 2] < 50


def test_arrays_and_paths(tmp_path, cat):
    grey = np.zeros((5, 6), np.uint8)
    assert load_image(grey).size == (6, 5)
    path = tmp_path / "x.png"
    cat.save(path)
    assert load_image(path).size == cat.size
    with pytest.raises(ImageError, match="No such image"):
        load_image(tmp_path / "missing.png")


# ------------------------------------------------------------------------------------------------
# The decoding budget: small files that decode into huge frames, measured in a process of their own.

#: Peak resident memory a decode may reach, interpreter and imports included.
PEAK_MB = 600
ROOT = Path(__file__).resolve().parents[2]
# The outer process only waits for the decoder, so its RUSAGE_CHILDREN is the decoder's peak alone (the test
# process's own children, such as a Streamlit server started by another test, do not count).
_MEASURE = """
import json, resource, subprocess, sys
code = ("import sys\\nfrom core.images import ImageError, load_image\\n"
        "try:\\n    im = load_image(sys.argv[1]); print('ok', im.size[0], im.size[1])\\n"
        "except ImageError as exc:\\n    print('refused', exc)")
out = subprocess.run([sys.executable, "-c", code, sys.argv[1]], capture_output=True, text=True)
print(json.dumps({"stdout": out.stdout.strip(), "stderr": out.stderr[-2000:], "rc": out.returncode,
                  "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _decode_in_child(path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, env=env,
                         timeout=300)
    result = json.loads(out.stdout)
    assert result["rc"] == 0, result["stderr"]
    return result


def _float_tiff(path: Path, width: int, height: int) -> Path:
    """Three flat bands and a NaN block: a few hundred KB on disk, 4 bytes a pixel once decoded."""
    f = np.zeros((height, width), np.float32)
    f[:, width // 3:] = 0.5
    f[:, 2 * width // 3:] = 1.0
    f[height // 2:, : width // 4] = np.nan
    Image.fromarray(f, mode="F").save(path, compression="tiff_adobe_deflate")
    return path


@pytest.mark.slow(reason="a 64-megapixel image")
def test_small_16_bit_png_of_64_megapixels_decodes_within_the_budget(tmp_path):
    ramp = np.tile((np.arange(8000, dtype=np.uint32) * 8).astype(np.uint16), (8000, 1))
    path = tmp_path / "big16.png"
    Image.fromarray(ramp).save(path, compress_level=9)
    del ramp
    assert path.stat().st_size < 1_000_000  # a small upload...
    result = _decode_in_child(path)
    state, *size = result["stdout"].split()
    assert state == "ok", result
    assert max(map(int, size)) <= MAX_SIDE
    assert result["peak_mb"] < PEAK_MB, result  # ...that took 1.1 GB when decoded through float64


@pytest.mark.slow(reason="a child process with a memory limit")
def test_float_tiff_past_the_byte_budget_is_refused_before_decoding(tmp_path):
    path = _float_tiff(tmp_path / "bigf.tif", 8000, 8000)
    assert decoded_bytes("F", (8000, 8000)) > MAX_DECODED_BYTES >= decoded_bytes("RGB", (8000, 8000))
    result = _decode_in_child(path)
    assert result["stdout"].startswith("refused") and "\n" not in result["stdout"], result
    assert "mode F" in result["stdout"] and "MB" in result["stdout"]
    assert result["peak_mb"] < PEAK_MB, result


@pytest.mark.slow(reason="a child process with a memory limit")
def test_float_tiff_within_the_budget_decodes_without_float64_copies(tmp_path):
    path = _float_tiff(tmp_path / "midf.tif", 7000, 6000)  # 160 MB as float32: inside the budget
    result = _decode_in_child(path)
    assert result["stdout"].split()[0] == "ok", result
    assert result["peak_mb"] < PEAK_MB, result
    out = np.asarray(load_image(_float_tiff(tmp_path / "small.tif", 60, 40)))
    assert out.min() == 0 and out.max() == 255 and out.shape == (40, 60, 3)  # NaN → lowest, bands stretched


@pytest.mark.slow(reason="large images")
def test_large_images_come_back_bounded_and_upright(cat):
    big = cat.resize((cat.size[0] * 8, cat.size[1] * 8))  # 3,608 × 2,704
    exif = Image.Exif()
    exif[0x0112] = 6
    for fmt, kw in (("JPEG", {"exif": exif.tobytes()}), ("PNG", {"exif": exif.tobytes()})):
        out = load_image(_bytes(big, fmt, **kw))
        assert max(out.size) <= MAX_SIDE and out.size[1] > out.size[0], (fmt, out.size)  # rotated to portrait
    assert load_image(_bytes(big.convert("P"), "PNG")).size[0] <= MAX_SIDE
    assert load_image(_bytes(big.convert("CMYK"), "TIFF")).mode == "RGB"
