"""Profiles: who the feedback belongs to, the sidebar, and the store every tab writes through.

Why it looks like this (the policy itself is ``core.identity``):

- **With a login** (an ``[auth]`` section in Streamlit's secrets, ``st.login``): the profile is the logged-in
  account, keyed by issuer + subject. There is no picker and nothing in the URL selects a profile. Before
  logging in the tabs still recommend (nothing they show is personal), but no profile is open: no likes
  are read, and a click on 👍 / 💾 asks to log in instead of writing.
- **Without a login**: a profile is opened by its link, ``?p=<key>`` with 128 random bits in the key
  ("anyone with the link"). The picker lists only the profiles this browser session opened; a name alone
  selects nothing, and the old ``?profile=NAME`` is ignored. The first 👍 without a profile creates one.

Profile names are shown as plain text only (``st.text`` / escaped Markdown). The UI never opens the
database itself: one ``FeedbackStore`` per process (``st.cache_resource``), used through its API.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional

import streamlit as st

from core.feedback import FeedbackError, FeedbackStore
from core.identity import (NOBODY, Identity, IdentityError, admins_setting, anonymous_profile, from_login,
                           is_link_key, may_run_heavy)
from ui.common import md_text

log = logging.getLogger(__name__)

#: Session state: the active link profile's key, and every profile this session opened (key → display name).
STATE_KEY = "recs_profile"
OPENED_KEY = "recs_profiles_opened"
#: The URL parameter carrying a link profile's key, and the old by-name parameter (now ignored).
PARAM = "p"
LEGACY_PARAM = "profile"
#: The display name of a profile created by a first click (renamed by creating a named one).
FIRST_NAME = "My profile"



@st.cache_resource(show_spinner=False)
def store() -> FeedbackStore:
    """The feedback store of this process (``RECS_DATABASE_URL``, else SQLite under ``data/``)."""
    return FeedbackStore.open()


def settings() -> Mapping[str, Any]:
    """The ``[recs]`` section of Streamlit's secrets (``admins``, ``allow_builds``); empty without one."""
    try:
        return dict(st.secrets.get("recs", {}))
    except Exception:  # noqa: BLE001 - no secrets file: the defaults
        return {}


def login_configured() -> bool:
    """True when the secrets have an ``[auth]`` section (Streamlit's OIDC login)."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file: no login
        return False


def _login_info() -> Optional[dict[str, Any]]:
    """``st.user`` as a dict when a login is configured and active, else None."""
    if not login_configured():
        return None
    try:
        info = st.user.to_dict()
    except Exception:  # noqa: BLE001 - an older runtime without st.user: no login
        return None
    return info if info.get("is_logged_in") else None


def logged_in() -> bool:
    return _login_info() is not None


def identity() -> Identity:
    """Who this session is: the login's identity, else the link profile it opened, else ``NOBODY``."""
    if login_configured():
        info = _login_info()
        if info is None:
            return NOBODY
        try:
            return from_login(info, admins_setting(settings()))
        except IdentityError:
            log.warning("a login without a subject id was refused")
            return NOBODY
    key = st.session_state.get(STATE_KEY)
    opened = st.session_state.get(OPENED_KEY, {})
    return Identity(key, opened[key]) if key in opened else NOBODY


def current() -> str:
    """The active profile's key ("" when none is open: nothing is read or written)."""
    return identity().key


def display_markdown() -> str:
    """The active profile's name, escaped for Markdown (or a note that none is open)."""
    who = identity()
    return md_text(who.display) if who.has_profile else "none yet"


def heavy_permission() -> tuple[bool, str]:
    """``core.identity.may_run_heavy`` for this session: may it start builds, retrains or reviews? (and why not)"""
    return may_run_heavy(identity(), login_configured=login_configured(),
                         server_address=str(st.get_option("server.address") or ""), settings=settings())


def admin_tabs() -> list[tuple[str, str]]:
    """The (label, module) of pages only administrators see; the pages check the permission again."""
    return [("Review", "ui.review")] if heavy_permission()[0] else []


def _open(key: str, display: str) -> None:
    """Make a link profile this session's active one (remembered in the session's list and the URL)."""
    st.session_state.setdefault(OPENED_KEY, {})[key] = display
    st.session_state[STATE_KEY] = key
    st.query_params[PARAM] = key


def _sync_url() -> None:
    """Follow the URL: a login ignores it; without one only a well-formed, known ``?p=`` key opens a profile."""
    params = st.query_params
    if LEGACY_PARAM in params:
        del params[LEGACY_PARAM]
        st.session_state["profile_error"] = ("Profiles are no longer opened by name; use the profile's link "
                                             "(it ends in ?p=…).")
    if login_configured():
        if PARAM in params:
            del params[PARAM]
        who = identity()
        if who.logged_in and st.session_state.get("_recs_login_opened") != who.key:
            store().open_profile(who.key, who.display)  # its display name follows the login's verified e-mail
            st.session_state["_recs_login_opened"] = who.key
        return
    wanted, active = params.get(PARAM), st.session_state.get(STATE_KEY)
    if wanted and wanted != active:
        display = store().display_name(wanted) if is_link_key(wanted) else None
        if display is None:
            del params[PARAM]
            st.session_state["profile_error"] = ("That profile link is not known here: it was never used, was "
                                                 "forgotten, or is mistyped.")
        else:
            _open(wanted, display or FIRST_NAME)
            return
    if active and params.get(PARAM) != active:
        params[PARAM] = active  # a reload comes back to the same profile


def write(action: Callable[[FeedbackStore, str], Any]) -> Any:
    """Run one write for the active profile; a refused write becomes a message.

    Without a login, the first write of a session with no profile creates one (a new link). With a login
    configured, nothing is written before logging in. Called from the buttons' ``on_click``, so the event
    is committed at click time, before any rerun.
    """
    who = identity()
    try:
        db = store()
        if who.logged_in:
            if not db.has_profile(who.key):  # opened at login; again after "forget me"
                db.open_profile(who.key, who.display)
        elif not who.has_profile:
            if login_configured():
                raise FeedbackError("Log in to keep likes, saved items and tag edits.")
            who = anonymous_profile(FIRST_NAME)
            db.open_profile(who.key, who.display)
            _open(who.key, who.display)
        return action(db, who.key)
    except FeedbackError as exc:
        st.session_state["recs_feedback_error"] = str(exc)
        return None


def show_write_error() -> None:
    """Show (once) the message of a write refused in the last click."""
    message = st.session_state.pop("recs_feedback_error", None)
    if message:
        st.error(f"That feedback was not saved: {message}")


def render_picker() -> Identity:
    """The sidebar: who you are (log in / out, or your profile link and the profiles opened here), and
    "forget me" with a confirmation. Returns the active identity."""
    try:
        _sync_url()
    except FeedbackError as exc:  # a broken database must not take the app down
        st.sidebar.error(f"The feedback store cannot be opened: {exc}")
        return NOBODY
    who = identity()
    with st.sidebar:
        st.subheader("Profile")
        if login_configured():
            _login_panel(who)
        else:
            _link_panel(who)
        message = st.session_state.pop("profile_error", None)
        if message:
            st.error(message)
        if who.has_profile:
            _forget(who)
            counts = _counts(who.key)
            if counts:
                st.caption(counts)
        done = st.session_state.pop("profile_forgotten", None)
        if done:
            st.success(done)
    return who


def _login_panel(who: Identity) -> None:
    if who.logged_in:
        st.caption("Signed in as" + (" (administrator)" if who.admin else ""))
        st.text(who.display)
        if st.button("Log out", key="profile_logout"):
            st.logout()
        st.caption("Your likes, saved items and tag edits are kept under your account; nobody else can open them.")
        return
    st.button("Log in", key="profile_login", on_click=st.login, type="primary",
              help="Sign in with your account: your likes and saved items are then kept for you.")
    st.caption("The tabs work without logging in, but nothing is recorded: log in to keep likes, saved items "
               "and tag edits.")


def _link_panel(who: Identity) -> None:
    opened: dict[str, str] = st.session_state.get(OPENED_KEY, {})
    if who.has_profile:
        st.caption("Active profile")
        st.text(who.display)
        if len(opened) > 1:
            keys = list(opened)
            pick = f"profile_pick_{who.key}"  # a new widget per active profile, so it never shows a stale choice
            st.selectbox("Profiles opened in this browser session", keys, index=keys.index(who.key), key=pick,
                         format_func=lambda k: f"{opened.get(k, '?')} (…{k[-4:]})", on_change=_picked, args=(pick,))
        st.caption("Your profile link (anyone with it can open, change and delete this profile; keep it to come "
                   "back, share it only with people who may):")
        st.code(_link(who.key), language=None)
    with st.form("profile_new", clear_on_submit=True, border=False):
        st.text_input("New profile name", key="profile_new_name", max_chars=64,
                      help="Only shown to you; the profile is found by its link, never by its name.")
        st.form_submit_button("Create and switch", on_click=_create)
    st.caption("Without a login a profile is private to its link. Your first like creates one; this list "
               "shows only the profiles opened in this browser session.")


def _link(key: str) -> str:
    try:
        base = str(st.context.url).split("?", 1)[0]
    except Exception:  # noqa: BLE001 - no request context (tests): the relative link
        base = ""
    return f"{base.rstrip('/')}/?{PARAM}={key}"


def _counts(profile: str) -> str:
    try:
        stats = store().stats(profile)
    except FeedbackError:  # not created yet: nothing recorded
        return ""
    if not stats["events"] and not stats["saved"]:
        return ""
    return f"Stored: {stats['events']} feedback events, {stats['saved']} saved, {stats['tagged_images']} tagged images."


def _picked(key: str) -> None:
    chosen = st.session_state[key]
    opened = st.session_state.get(OPENED_KEY, {})
    if chosen in opened:  # only a profile this session already opened
        _open(chosen, opened[chosen])


def _create() -> None:
    if login_configured():
        return
    try:
        who = anonymous_profile(st.session_state.get("profile_new_name", ""))
        store().open_profile(who.key, who.display)
        _open(who.key, who.display)
    except (IdentityError, FeedbackError) as exc:
        st.session_state["profile_error"] = str(exc)


def _do_forget() -> None:
    """Delete the active profile's rows and stored images (a confirmed click): always the session's own
    identity at click time, never a name passed in."""
    who = identity()
    if not who.has_profile:
        return
    try:
        counts = store().forget(who.key)
    except FeedbackError:  # never recorded anything: nothing to delete
        counts = {"events": 0, "files": 0}
    log.info("a profile was forgotten from the app: %s", counts)
    st.session_state["profile_forget_sure"] = False
    st.session_state["profile_forgotten"] = (f"Forgot {md_text(who.display)}: {counts.get('events', 0)} events "
                                             f"and {counts.get('files', 0)} stored images deleted.")
    if not who.logged_in:
        st.session_state.get(OPENED_KEY, {}).pop(who.key, None)
        st.session_state.pop(STATE_KEY, None)
        if PARAM in st.query_params:
            del st.query_params[PARAM]
    else:
        st.session_state.pop("_recs_login_opened", None)


def _forget(who: Identity) -> None:
    with st.expander("Forget me"):
        st.write("Deletes everything this profile recorded: likes, dislikes, saved items, tag edits and the "
                 "images stored with them.")
        sure = st.checkbox("Yes, delete it all", key="profile_forget_sure")
        st.button("Forget me", key="profile_forget", disabled=not sure, type="primary", on_click=_do_forget)


def _rate(signal: str, active: bool, record: Callable[[FeedbackStore, str, str], Any],
          undo: Callable[[FeedbackStore, str], Any]) -> None:
    write(lambda db, profile: undo(db, profile) if active else record(db, profile, signal))


def rate_buttons(key: str, verdict: Optional[str], record: Callable[[FeedbackStore, str, str], Any],
                 undo: Callable[[FeedbackStore, str], Any]) -> None:
    """👍 and 👎 for one item; the current verdict is highlighted and clicking it again withdraws it.

    ``record(store, profile, signal)`` and ``undo(store, profile)`` run in the click's callback, so the
    event is in the database before the tab reruns (inside its fragment: the other tabs do not rerun).
    """
    for signal, icon, what in (("like", ":material/thumb_up:", "Like: more like this"), ("dislike", ":material/thumb_down:", "Dislike: never show this again")):
        active = verdict == signal
        st.button("", icon=icon, key=f"{key}_{signal}", type="primary" if active else "secondary",
                  help=f"{what} (click again to withdraw)" if not active else "Click again to withdraw",
                  on_click=_rate, args=(signal, active, record, undo))


def known() -> Optional[str]:
    """The active profile's key when it exists in the store, else None (nothing to read)."""
    profile = current()
    if not profile:
        return None
    try:
        return profile if store().has_profile(profile) else None
    except FeedbackError:
        return None


def save_button(key: str, is_saved: bool, tab: str, item: str) -> None:
    """💾 puts the item on the profile's saved list (🗑 takes it off again)."""
    if is_saved:
        st.button("", icon=":material/bookmark_remove:", key=f"{key}_unsave", help="Remove from your saved list",
                  on_click=write, args=(lambda db, p: db.unsave_item(p, tab, item),))
    else:
        st.button("", icon=":material/bookmark_add:", key=f"{key}_save", help="Save to your list",
                  on_click=write, args=(lambda db, p: db.save_item(p, tab, item),))


def item_buttons(key: str, verdict: Optional[str], record: Callable[[FeedbackStore, str, str], Any],
                 undo: Callable[[FeedbackStore, str], Any], tab: str, stored: str, is_saved: bool) -> None:
    """Like / dislike / save in one row under a search result (fashion and product search)."""
    with st.container(horizontal=True, gap="small"):
        rate_buttons(key, verdict, record, undo)
        save_button(key, is_saved, tab, stored)


def reranked_note(note: str, what: str) -> None:
    """The line that says the ranking moved, e.g. "Results re-ranked by your 3 likes"."""
    if note:
        st.caption(f":material/sync: Results {note}: :material/thumb_up: pulls the ranking toward what you liked, "
                   f":material/thumb_down: pushes it away and hides the {what}.")
