"""Every kind of bad upload, through the one decoding function, each with its message."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from core.images import MAX_BYTES, ImageError, load_image


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
