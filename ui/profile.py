"""Profiles: who the feedback belongs to, the sidebar picker, and the store every tab writes through.

Why it looks like this: on one machine a profile is only a *name* (anyone at the keyboard can pick any
name); when the app runs behind Streamlit's OIDC login (``st.login``) the profile is the logged-in
identity (``core.feedback.profile_name_for``) and the picker is hidden. The chosen name is kept in the
URL (``?profile=NAME``) so a reload or a bookmark comes back to the same profile. The UI never opens the
database itself: one ``FeedbackStore`` per process (``st.cache_resource``), used through its API.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import streamlit as st

from core.feedback import FeedbackError, FeedbackStore, profile_name_for

log = logging.getLogger(__name__)

#: The profile used until someone picks or creates another one.
DEFAULT_PROFILE = "guest"
STATE_KEY = "recs_profile"
PARAM = "profile"


@st.cache_resource(show_spinner=False)
def store() -> FeedbackStore:
    """The feedback store of this process (``RECS_DATABASE_URL``, else SQLite under ``data/``)."""
    return FeedbackStore.open()


def _login_info() -> Optional[dict[str, Any]]:
    """``st.user`` as a dict when an OIDC login is configured and active, else None."""
    try:
        info = st.user.to_dict()
    except Exception:  # noqa: BLE001 - no auth configured / older runtime: no login
        return None
    return info if info.get("is_logged_in") else None


def _auth_configured() -> bool:
    """True when ``.streamlit/secrets.toml`` has an ``[auth]`` section (Streamlit's OIDC login)."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file: no login
        return False


def logged_in() -> bool:
    return _login_info() is not None


def current() -> str:
    """The active profile: the login when logged in, else the picked name (session → URL → the default)."""
    info = _login_info()
    if info is not None:
        return profile_name_for(info, DEFAULT_PROFILE)
    name = st.session_state.get(STATE_KEY) or st.query_params.get(PARAM) or DEFAULT_PROFILE
    try:
        return profile_name_for(None, name)
    except FeedbackError:
        return DEFAULT_PROFILE


def _switch(name: str) -> None:
    st.session_state[STATE_KEY] = name
    st.query_params[PARAM] = name


def write(action: Callable[[FeedbackStore, str], Any]) -> Any:
    """Run one write for the active profile (created first if new); a refused write becomes a message.

    Called from the buttons' ``on_click``, so the event is committed at click time, before any rerun.
    """
    profile = current()
    try:
        db = store()
        db.create_profile(profile)
        return action(db, profile)
    except FeedbackError as exc:
        st.session_state["recs_feedback_error"] = str(exc)
        return None


def show_write_error() -> None:
    """Show (once) the message of a write refused in the last click."""
    message = st.session_state.pop("recs_feedback_error", None)
    if message:
        st.error(f"That feedback was not saved: {message}")


def render_picker() -> str:
    """The sidebar: the active profile, switch / create, and "forget me" with a confirmation."""
    profile = current()
    if STATE_KEY not in st.session_state or st.query_params.get(PARAM) != profile:
        if not logged_in():
            _switch(profile)  # keep the name in the URL so a reload restores it
    with st.sidebar:
        st.subheader("Profile")
        info = _login_info()
        if info is not None:
            st.markdown(f"Signed in as **{profile}**.")
            if st.button("Log out", key="profile_logout"):
                st.logout()
        else:
            if _auth_configured():
                st.button("Log in", key="profile_login", on_click=st.login,
                          help="Sign in with your account: your feedback is then tied to it.")
            try:
                names = store().profiles()
            except Exception as exc:  # noqa: BLE001 - a broken database must not take the app down
                st.error(f"The feedback store cannot be opened: {exc}")
                return profile
            options = sorted(set(names) | {profile})
            key = f"profile_pick_{profile}"  # a new widget per active profile, so it never shows a stale choice
            st.selectbox("Profile", options, index=options.index(profile), key=key, on_change=_picked, args=(key,))
            with st.form("profile_new", clear_on_submit=True, border=False):
                st.text_input("New profile name", key="profile_new_name", max_chars=64)
                st.form_submit_button("Create and switch", on_click=_create)
            message = st.session_state.pop("profile_error", None)
            if message:
                st.error(message)
        _forget(profile)
        st.caption(
            "Your likes, dislikes, saved items and tag edits are kept under this profile in a database and change "
            "the picks at once. **On one machine a profile is a name, not a login:** anyone here can pick any "
            "name. Deployed behind a login (README, \"Profiles and login\"), the profile is your account."
        )
        counts = _counts(profile)
        if counts:
            st.caption(counts)
    return profile


def _counts(profile: str) -> str:
    try:
        stats = store().stats(profile)
    except FeedbackError:  # not created yet: nothing recorded
        return ""
    if not stats["events"] and not stats["saved"]:
        return ""
    return f"Stored: {stats['events']} feedback events, {stats['saved']} saved, {stats['tagged_images']} tagged images."


def _picked(key: str) -> None:
    _switch(st.session_state[key])


def _create() -> None:
    try:
        _switch(store().create_profile(st.session_state.get("profile_new_name", "")))
    except FeedbackError as exc:
        st.session_state["profile_error"] = str(exc)


def _do_forget(profile: str) -> None:
    """Delete the profile's rows and stored images through the store (a confirmed click)."""
    try:
        counts = store().forget(profile)
    except FeedbackError:  # never recorded anything: nothing to delete
        counts = {"events": 0, "files": 0}
    log.info("profile %r forgotten from the app: %s", profile, counts)
    st.session_state["profile_forget_sure"] = False
    st.session_state["profile_forgotten"] = (f"Forgot {profile}: {counts.get('events', 0)} events and "
                                             f"{counts.get('files', 0)} stored images deleted.")
    if not logged_in():
        _switch(DEFAULT_PROFILE)


def _forget(profile: str) -> None:
    with st.expander("Forget me"):
        st.write(f"Deletes everything profile **{profile}** recorded: likes, dislikes, saved items, tag edits "
                 "and the images stored with them.")
        sure = st.checkbox("Yes, delete it all", key="profile_forget_sure")
        st.button("Forget me", key="profile_forget", disabled=not sure, type="primary", on_click=_do_forget,
                  args=(profile,))
    done = st.session_state.pop("profile_forgotten", None)
    if done:
        st.success(done)


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
    """The active profile when it has recorded anything (exists in the store), else None (nothing to read)."""
    profile = current()
    try:
        return profile if profile in store().profiles() else None
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
