"""Widgets and helpers every tab uses: safe image uploads, progress bars, error panels.

Uploads are read as bytes and decoded by ``core.images.load_image``; the uploaded file's name is
shown to the user at most, never used to build a path.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

import streamlit as st
from PIL import Image

from core.images import MAX_BYTES, ImageError, load_image

log = logging.getLogger(__name__)

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]


def image_upload(label: str, key: str, help: Optional[str] = None) -> Optional[Image.Image]:
    """A file uploader that returns a decoded RGB image, or None (with a clear message on bad input).

    The message appears under the widget and the rest of the tab keeps working.
    """
    uploaded = st.file_uploader(label, type=IMAGE_TYPES, key=key, help=help)
    if uploaded is None:
        return None
    data = uploaded.getvalue()
    if len(data) > MAX_BYTES:
        st.error(f"That file is {len(data) / 1e6:.1f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB.")
        return None
    try:
        return load_image(data)
    except ImageError as exc:
        st.error(f"Could not use that file: {exc}")
        return None


def progress_callback(text: str) -> "tuple[Callable[[float, str], None], object]":
    """An ``st.progress`` bar and the ``(fraction, message)`` callback domain code drives it with."""
    bar = st.progress(0.0, text=text)

    def update(fraction: float, message: str) -> None:
        bar.progress(min(max(fraction, 0.0), 1.0), text=message or text)

    return update, bar


def show_error(exc: BaseException, what: str) -> None:
    """A readable error panel for expected failures (missing artifact, bad input) instead of a traceback."""
    log.info("%s: %s", what, exc)
    st.error(f"{what}: {exc}")
