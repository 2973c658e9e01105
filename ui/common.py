"""Widgets and helpers every tab uses: safe image uploads, progress bars, error panels, cache keys, builds.

Uploads are read as bytes and decoded by ``core.images.load_image``; the uploaded file's name is
shown to the user at most, never used to build a path. A decoded upload carries the SHA-1 of its bytes
in ``image.info["sha1"]``: the tabs key their ``st.cache_data`` results on it, so a rerun with the same
photo (another widget moved, the tab switched) recomputes nothing. Session state keeps that upload at
``UPLOAD_SIDE`` px at most, never the full decoded photo.

Text that came from people or files (catalog titles, CSV fields, tags, listener ids) goes through
``md_text`` before it reaches ``st.markdown`` / ``st.caption``: it is shown as typed, never as a link,
an image, a colour directive or HTML. Model calls a click starts go through ``heavy_slot``: one at a
time per session, a second says "busy" instead of queueing behind the first.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import threading
import weakref
from contextlib import contextmanager
from typing import Any, Hashable, Iterator, Optional

import streamlit as st
from PIL import Image

from core.images import MAX_BYTES, ImageError, load_image

log = logging.getLogger(__name__)

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]
#: Bounds of the per-input result caches: enough for every open session's last few queries, no more.
RESULT_ENTRIES = 256
RESULT_TTL = "1h"
#: The tabs are lazy (only the open one runs), and Streamlit forgets the value of a widget that a run did
#: not draw: every tab's settings keep ``persist_state=PERSIST`` so a user's choices survive a tab switch.
PERSIST = "session"
#: Session-state counter app.py raises on every tab switch: an uploader that comes back empty in a later
#: visit was re-created (Streamlit cannot keep a file upload across a run that did not draw it), not
#: cleared, so ``image_upload`` keeps showing the last photo.
TAB_VISIT = "recs_tab_visit"
#: Long side of the upload a session keeps (and the tabs use): the encoders read 224–260 px, displays less.
UPLOAD_SIDE = 1024
#: Model calls one session may run at once; a further click is told to wait instead of piling up work.
HEAVY_PER_SESSION = 1


def image_upload(label: str, key: str, help: Optional[str] = None) -> Optional[Image.Image]:
    """A file uploader that returns a decoded RGB image, or None (with a clear message on bad input).

    The message appears under the widget and the rest of the tab keeps working. After a switch to
    another tab and back, the last photo is still used (with a button to remove it).
    """
    uploaded = st.file_uploader(label, type=IMAGE_TYPES, key=key, help=help)
    memo_key, visit = f"_{key}_decoded", st.session_state.get(TAB_VISIT, 0)
    memo = st.session_state.get(memo_key)  # (sha1, image, tab visit, restored after a tab switch)
    if uploaded is None:
        if memo is None:
            return None
        if memo[2] == visit and not memo[3]:  # the user removed the file: forget it
            del st.session_state[memo_key]
            return None
        # The tab was closed since the upload, so the uploader came back empty: keep the photo.
        st.session_state[memo_key] = (memo[0], memo[1], visit, True)
        st.caption("Showing your last photo (upload another to replace it).")
        st.button("Remove this photo", key=f"{key}_forget", on_click=st.session_state.pop, args=(memo_key, None))
        return memo[1]
    data = uploaded.getvalue()
    if len(data) > MAX_BYTES:
        st.error(f"That file is {len(data) / 1e6:.1f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB.")
        return None
    digest = hashlib.sha1(data).hexdigest()
    if memo is not None and memo[0] == digest:  # the same upload on a rerun: no second decode
        st.session_state[memo_key] = (digest, memo[1], visit, False)
        return memo[1]
    try:
        image = load_image(data)
    except ImageError as exc:
        st.error(f"Could not use that file: {md_text(exc)}")
        return None
    if max(image.size) > UPLOAD_SIDE:  # what the session keeps is bounded, whatever was uploaded
        image.thumbnail((UPLOAD_SIDE, UPLOAD_SIDE), Image.Resampling.LANCZOS)
    image.info["sha1"] = digest
    st.session_state[memo_key] = (digest, image, visit, False)  # one bounded image per uploader and session
    return image


def image_digest(image: Optional[Image.Image]) -> Optional[str]:
    """The cache key of an uploaded image (SHA-1 of its bytes), or None for no image."""
    if image is None:
        return None
    digest = image.info.get("sha1")
    if digest is None:  # an image that did not come through image_upload: hash its pixels
        digest = hashlib.sha1(image.tobytes() + repr((image.mode, image.size)).encode()).hexdigest()
        image.info["sha1"] = digest
    return digest


_versions: dict[tuple[int, tuple[Hashable, ...]], Hashable] = {}
_versions_lock = threading.Lock()


def load_versioned(loader: Any, key: tuple[Hashable, ...], version: Hashable) -> Any:
    """``loader(*key, version)`` from its ``st.cache_resource``, releasing the entry of the previous version.

    Why: a model is cached per artifact version (its manifest's mtime), so a rebuild is picked up
    without a restart; without this the old version (a 70k-item index, 240 MB of grids) would stay in
    memory beside the new one until the cache's ``max_entries`` pushed it out.
    """
    slot = (id(loader), tuple(key))
    with _versions_lock:
        previous = _versions.get(slot)
        _versions[slot] = version
    if previous is not None and previous != version:
        log.info("releasing %s%r version %s (now %s)", getattr(loader, "__name__", "model"), key, previous, version)
        loader.clear(*key, previous)
    return loader(*key, version)


def show_error(exc: BaseException, what: str) -> None:
    """A readable error panel for expected failures (missing artifact, bad input) instead of a traceback."""
    log.info("%s: %s", what, exc)
    st.error(f"{what}: {md_text(exc)}")


# ------------------------------------------------------------------------------------------------
# Text from users is text

#: Characters that start Markdown (CommonMark, GitHub's extensions, Streamlit's ``:colour[...]`` /
#: ``:material/...:`` directives and ``$`` maths) or HTML anywhere in a line: emphasis, code, links and images,
#: tags and entities, tables, strike-through, directives, maths, e-mail autolinks. Each is backslash-escaped
#: (CommonMark shows any escaped ASCII punctuation as itself); the rest stays as typed, so ``it's`` and
#: ``T-shirt`` read the same in the source.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>!#|~$:&@])")
#: What only means something at the start of a line: list bullets, ``1.`` / ``1)`` list numbers.
_MD_LEADING = re.compile(r"^([-+])|^(\d+)([.)])")
#: GitHub's bare ``www.`` autolinks (``http://`` ones are already broken by the escaped colon).
_MD_WWW = re.compile(r"(?i)\b(www)\.")


def md_text(value: Any) -> str:
    """``value`` as literal text inside ``st.markdown`` / ``st.caption`` / captions: no link, image, directive
    or HTML.

    Line breaks become spaces, so a title cannot start a heading, a list or a block of its own.
    """
    text = _MD_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))
    text = _MD_LEADING.sub(lambda m: f"\\{m.group(1)}" if m.group(1) else f"{m.group(2)}\\{m.group(3)}", text)
    return _MD_WWW.sub(r"\1\\.", text)


def md_code(value: Any) -> str:
    """``value`` as an inline code span, whatever backticks it holds (the fence is longer than any run in it)."""
    text = " ".join(str(value).split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


# ------------------------------------------------------------------------------------------------
# Heavy work per session

class Busy(RuntimeError):
    """This session already runs a model call; the message asks the person to try again."""


_slots: "weakref.WeakValueDictionary[str, threading.BoundedSemaphore]" = weakref.WeakValueDictionary()
_slots_lock = threading.Lock()


def _session_id() -> str:
    from streamlit.runtime.scriptrunner import get_script_run_ctx  # the running session, if any

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"


@contextmanager
def heavy_slot() -> Iterator[None]:
    """Hold one of this session's ``HEAVY_PER_SESSION`` model-call slots, or raise ``Busy`` at once.

    Why not wait: a person who clicks again while a photo is being encoded would otherwise stack a second
    encode (and a third) behind the first on a 2-core server shared by every session. A slot lives only
    while someone holds it (a weak map), so sessions that ended leave nothing behind.
    """
    sid = _session_id()
    with _slots_lock:
        slot = _slots.get(sid)
        if slot is None:
            slot = threading.BoundedSemaphore(HEAVY_PER_SESSION)
            _slots[sid] = slot
    if not slot.acquire(blocking=False):
        raise Busy("Still working on your previous request: busy, try again in a moment.")
    try:
        yield
    finally:
        slot.release()


# ------------------------------------------------------------------------------------------------
# Where the app listens

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(address: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    host = address.strip().strip("[]")
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost, or empty (every interface)
        return False


def login_configured() -> bool:
    """True when ``[auth]`` is in Streamlit's secrets (the OIDC login that ``st.login`` uses)."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file (or an unreadable one) means no login
        return False


def warn_if_exposed() -> Optional[str]:
    """Log one warning when the server listens beyond loopback without a login; returns it (None when fine).

    The repo's ``.streamlit/config.toml`` binds 127.0.0.1; someone who serves on another address on purpose
    should know that every visitor can then reach every profile and start builds.
    """
    address = str(st.get_option("server.address") or "")
    if is_loopback(address) or login_configured():
        return None
    message = (f"Serving on {address or 'every interface'} without a login ([auth] in .streamlit/secrets.toml): "
               "anyone who can reach this address can use every profile and start builds.")
    log.warning(message)
    return message
