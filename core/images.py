"""One image-decoding function for every upload, file and catalog item.

Why one function: every tab accepts user images, and every bad-input case (non-image bytes, truncated
files, decompression bombs, CMYK / 16-bit / palette / alpha / EXIF-rotated images, zero-byte files)
must give the same clear message everywhere. Callers get an RGB ``PIL.Image`` or an ``ImageError``
whose ``str()`` is safe to show a user as is.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

#: Uploads larger than this are refused before decoding (the app also caps uploads at this size).
MAX_BYTES = 20 * 1024 * 1024
#: Images with more pixels than this are refused (decompression-bomb guard; 64 MP covers any camera).
MAX_PIXELS = 64_000_000
#: Formats a user may upload. SVG is rasterised separately (``load_svg``) for the Tux Paint catalog only.
ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}

# Never let Pillow silently half-decode a truncated file: we want the error.
ImageFile.LOAD_TRUNCATED_IMAGES = False

ImageSource = Union[bytes, bytearray, str, Path, BinaryIO, Image.Image, np.ndarray]


class ImageError(ValueError):
    """An image could not be used. The message is written for the person who supplied it."""


def _read_bytes(source: ImageSource) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            raise ImageError(f"{path} is a folder, not an image file.")
        if not path.is_file():
            raise ImageError(f"No such image file: {path}")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ImageError(f"The file is {size / 1e6:.1f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB.")
        return path.read_bytes()
    if hasattr(source, "read"):
        data = source.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise ImageError(f"The file is larger than the {MAX_BYTES / 1e6:.0f} MB limit.")
        return data
    raise ImageError(f"Unsupported image source of type {type(source).__name__}.")


#: Bytes one decoded pixel takes in each Pillow mode: what the budget below counts before decoding. A palette
#: image is counted at the size of its RGB(A) conversion, the first copy made of it.
MODE_BYTES = {"1": 1, "L": 1, "P": 3, "LA": 2, "PA": 4, "La": 2, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2,
              "I": 4, "F": 4, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4,
              "CMYK": 4}
#: Memory one decoded frame may take (a 64-megapixel 8-bit RGB photo, or 96 MP of 16-bit grey). A 32-bit float
#: or CMYK image gets fewer pixels than an 8-bit one: the limit is on bytes, counted from the header.
MAX_DECODED_BYTES = 192 * 1024 * 1024
#: Long side of the returned image. No consumer needs more (encoders read 224–260 px, displays at most ~1,000),
#: and reducing right after decoding keeps every later copy (mode conversion, EXIF rotation) small.
MAX_SIDE = 2048
#: Rows converted at once when a 16-bit frame is brought to 8 bits (bounds the temporary copies to a few MB).
_ROWS = 256
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def decoded_bytes(mode: str, size: tuple[int, int]) -> int:
    """Bytes the decoded frame of an image of this mode and size takes (4 per pixel for unknown modes)."""
    return size[0] * size[1] * MODE_BYTES.get(mode, 4)


def _stretch_16bit(img: Image.Image) -> Image.Image:
    """16-bit grey → 8-bit ``L``, stretched over the image's own range, a few rows at a time.

    Why rows: a float64 copy of a 64-megapixel frame is 512 MB; here the temporaries are ``_ROWS`` rows of
    uint32 and the result is the 8-bit frame itself.
    """
    lo, hi = img.getextrema()
    width, height = img.size
    out = np.zeros((height, width), np.uint8)
    if hi > lo:
        for top in range(0, height, _ROWS):
            rows = np.asarray(img.crop((0, top, width, min(top + _ROWS, height)))).astype(np.uint32)
            out[top:top + len(rows)] = (rows - lo) * 255 // (hi - lo)
    return Image.fromarray(out)


def _stretch_wide(img: Image.Image) -> Image.Image:
    """32-bit integer or float grey (already reduced to at most ``MAX_SIDE``) → 8-bit ``L`` over its own range."""
    arr = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if hi > lo:
        arr -= lo
        arr *= 255.0 / (hi - lo)
        return Image.fromarray(arr.astype(np.uint8))
    return Image.fromarray(np.zeros(arr.shape, np.uint8))


def _reduce(img: Image.Image, max_side: int) -> Image.Image:
    """Box-average by a whole factor so the long side is at most ``max_side`` (modes Pillow can reduce)."""
    factor = -(-max(img.size) // max_side)
    if factor <= 1:
        return img
    if img.mode.startswith("I;16"):
        img = _stretch_16bit(img)  # 8-bit grey, a third of an RGB copy
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode in ("P", "PA"):
        img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
    return img.reduce(factor)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Bring any Pillow mode to 8-bit RGB, compositing transparency onto white; never through float64.

    White, because product photos and clip-art are shot or drawn on white; black would turn a
    transparent-background PNG into a dark blob that matches nothing.
    """
    if img.mode.startswith("I;16"):
        img = _stretch_16bit(img)
    elif img.mode in ("I", "F"):
        img = _stretch_wide(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, (255, 255, 255))
        alpha = img.getchannel("A")
        background.paste(img, mask=alpha)
        # how much of the picture was see-through: a cut-out (clip art, a stamp) rather than a photograph
        background.info["transparent"] = float((np.asarray(alpha) < 128).mean())
        return background
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return img


def _check_budget(img: Image.Image, max_pixels: int) -> None:
    """Refuse, from the header alone, an image whose pixels or decoded bytes exceed the limits."""
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(f"The image is {width}×{height} pixels; the limit is {max_pixels / 1e6:.0f} megapixels.")
    need = decoded_bytes(img.mode, img.size)
    if need > MAX_DECODED_BYTES:
        raise ImageError(
            f"The image is {width}×{height} pixels in mode {img.mode} and would take {need / 2**20:.0f} MB to "
            f"decode; the limit is {MAX_DECODED_BYTES / 2**20:.0f} MB (save it as an 8-bit JPEG or PNG, or smaller)."
        )


def load_image(source: ImageSource, *, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE) -> Image.Image:
    """Decode ``source`` into an upright 8-bit RGB image of at most ``max_side`` px, or raise ``ImageError``.

    Accepts raw bytes, a path, a binary file object, a PIL image or an ``(H, W[, C])`` uint8 array.
    Applies the EXIF orientation, takes the first frame of animations, refuses decompression bombs,
    images whose decoded frame would pass ``MAX_DECODED_BYTES`` and truncated files, and never trusts a
    filename (only the bytes are inspected).
    """
    if isinstance(source, Image.Image):
        return _to_rgb(_reduce(ImageOps.exif_transpose(source) or source, max_side))
    if isinstance(source, np.ndarray):
        arr = source
        if arr.dtype != np.uint8:
            raise ImageError(f"Image arrays must be uint8, got {arr.dtype}.")
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise ImageError(f"Image arrays must be (H, W), (H, W, 3) or (H, W, 4); got {arr.shape}.")
        return _to_rgb(_reduce(Image.fromarray(arr), max_side))

    data = _read_bytes(source)
    if len(data) == 0:
        raise ImageError("The file is empty (0 bytes).")
    # The limits are checked here, on the header's size and mode and before any pixel is decoded, instead of
    # through Pillow's process-wide MAX_IMAGE_PIXELS: the app decodes uploads from many sessions' threads at
    # once, and a per-call change of that global (or of the warnings filters) would leak into the others.
    # Pillow's own guard stays on as a second line (it refuses images past twice its default limit).
    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format or "unknown"
        if fmt not in ALLOWED_FORMATS:
            raise ImageError(f"Unsupported image format {fmt}; use JPEG, PNG, WebP or GIF.")
        _check_budget(img, max_pixels)
        img.seek(0)  # first frame of GIF / WebP animations
        orientation = img.getexif().get(0x0112)
        if fmt in ("JPEG", "MPO") and max(img.size) > max_side:
            img.draft("RGB", (max(1, img.size[0] * max_side // max(img.size)),
                              max(1, img.size[1] * max_side // max(img.size))))  # the decoder scales by 1/2–1/8
        img.load()
        img = _reduce(img, max_side)
        if orientation in _ORIENTATION:
            img = img.transpose(_ORIENTATION[orientation])
        return _to_rgb(img)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"The image is too large to decode safely (limit {max_pixels / 1e6:.0f} megapixels)."
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError("This file is not an image Pillow can read (is it a JPEG, PNG, WebP or GIF?).") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        log.debug("decode failed", exc_info=True)
        raise ImageError(f"The image file is damaged or truncated ({exc}).") from exc


_SVG_ENTITY = re.compile(r'<!ENTITY\s+(\w+)\s+"([^"]*)"\s*>')
_SVG_DOCTYPE = re.compile(r"<!DOCTYPE[^\[>]*(\[.*?\])?\s*>", re.S)


def load_svg(path: str | Path, size: int = 256) -> Image.Image:
    """Rasterise an SVG (Tux Paint ships a quarter of its stamps as SVG) onto white, ``size`` px wide.

    cairosvg (through defusedxml) rightly refuses DOCTYPE entity declarations. Illustrator exports
    among Tux Paint's SVGs (``loaf_of_bread.svg``) use them only as namespace shorthands
    (``&ns_svg;``), so on refusal we substitute *internal string* entities ourselves, drop the
    DOCTYPE and try once more; no external entity is ever resolved.
    """
    try:
        import cairosvg  # imported lazily: only catalog preparation needs it
    except ImportError as exc:  # pragma: no cover - cairosvg is in requirements.txt
        raise ImageError("SVG images need the cairosvg package (pip install cairosvg).") from exc
    try:
        png = cairosvg.svg2png(url=str(path), output_width=size)
    except Exception as first:  # cairosvg raises many unrelated types on bad files
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
            entities = dict(_SVG_ENTITY.findall(text))
            if not entities:
                raise first
            text = _SVG_DOCTYPE.sub("", text, count=1)
            for name, value in entities.items():
                text = text.replace(f"&{name};", value)
            png = cairosvg.svg2png(bytestring=text.encode("utf-8"), output_width=size)
        except Exception as exc:
            raise ImageError(f"Could not rasterise SVG {Path(path).name}: {exc}") from exc
    return load_image(png)


def load_any(path: str | Path, svg_size: int = 256) -> Image.Image:
    """Load a catalog file by its suffix: SVG through cairosvg, everything else through ``load_image``."""
    if str(path).lower().endswith(".svg"):
        return load_svg(path, svg_size)
    return load_image(path)


def letterbox(img: Image.Image, size: int, fill: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Scale the long side to ``size`` and centre on a square ``fill`` canvas: the whole object stays in view.

    This is how the image encoder sees every picture (``resize="pad"``); displays that overlay encoder
    outputs (attention heatmaps) use the same function so the two cannot drift apart.
    """
    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(img.convert("RGB").resize((nw, nh), Image.Resampling.BICUBIC), ((size - nw) // 2, (size - nh) // 2))
    return canvas


def thumbnail(img: Image.Image, size: int = 256) -> Image.Image:
    """A copy no larger than ``size`` px on its long side, for display."""
    out = img.copy()
    out.thumbnail((size, size), Image.Resampling.LANCZOS)
    return out
