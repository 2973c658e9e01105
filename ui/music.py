"""The Music tab: pick a trained dataset and a listener → their history and picks with reasons;
a new listener picks genres → picks; the evaluation metrics as a chart; then "Up next".

Why it stays thin: all policy (blending thin histories, reasons, cold start) is in
``music.mf.service``; this module only lays out widgets and caches the loaded models
(every click in the tab reruns it, so loading must be cached and cheap).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import streamlit as st

from core.artifacts import ArtifactError
from core.contract import Person, Request
from core.evaluation import chart_frame
from music import service as music
from music.service import (
    LABELS, NO_REAL_NAMES, Bundle, Recommendation, UnknownUser, evaluated_datasets, load_results,
)
from music.service import feedback as mf_feedback
from music.service import picks as service
from ui import model_card
from ui import profile as profiles
from ui.common import PERSIST, RESULT_ENTRIES, RESULT_TTL, md_text

log = logging.getLogger(__name__)

#: Metrics plotted (counts such as "users" or timings would dwarf them on one axis).
METRICS = ["rmse", "mae", "precision@10", "recall@10", "ndcg@10", "hr@10", "coverage"]
YOU = "You (your imported history and likes)"
SIMULATED_NOTE = ("**Simulated data.** This listening log is simulated (seeded listeners with genre tastes, "
                  "long-tailed artists and songs, sessions); it is not real listening history.")


def bundle_for(dataset: str) -> Bundle:
    """The loaded models of ``dataset``, once per model version (shared with the Data page's match report);
    ``ArtifactError``/``OSError`` when they cannot be used."""
    with st.spinner("Loading music models…"):
        return music.open(dataset)


def _person(profile: str) -> "Person | None":
    return Person(profiles.store(), profile) if profile else None


Feedback = tuple[tuple[str, ...], tuple[str, ...]]


@st.cache_data(show_spinner=False, max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _listener(dataset: str, version: float, user: str, n: int, dislikes: tuple[str, ...] = (),
              profile: str = "") -> "tuple[pd.DataFrame, list[Recommendation]]":
    """A listener's history and picks (the profile's dislikes never among them), once per (model version,
    listener, count, dislikes)."""
    answer = music.query(bundle_for(dataset), Request(user=user, k=n, options={"mode": "listener"}), _person(profile))
    return answer.extra["history"], answer.hits


@st.cache_data(show_spinner=False, max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _new_listener(dataset: str, version: float, genres: tuple[str, ...], n: int, dislikes: tuple[str, ...] = (),
                  profile: str = "") -> list[Recommendation]:
    request = Request(genres=genres, k=n, options={"mode": "genres"})
    return music.query(bundle_for(dataset), request, _person(profile)).hits


@st.cache_data(show_spinner=False, max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _profile_picks(dataset: str, version: float, likes: tuple[str, ...], dislikes: tuple[str, ...], n: int,
                   genres: tuple[str, ...], profile: str = "", plays: str = "") -> mf_feedback.ProfilePicks:
    """Picks folded in from a profile's likes and imported plays; keyed on the likes themselves and on the
    history's version, so a click or an import changes them at once and nothing else is recomputed."""
    request = Request(genres=genres, k=n, options={"mode": "profile", "plays": bool(plays)})
    return music.query(bundle_for(dataset), request, _person(profile)).extra["picks"]


def _plays_version(profile: str | None) -> str:
    """The active profile's imported-history version ("" without one): part of the picks' cache key."""
    if not profile:
        return ""
    summary = profiles.store().play_summary(profile)
    return summary["version"] if summary["plays"] else ""


@st.cache_data(show_spinner=False, max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _search_songs(dataset: str, version: float, query: str, dislikes: tuple[str, ...] = (),
                  profile: str = "") -> list[Recommendation]:
    """Songs matching ``query``, minus the profile's dislikes."""
    request = Request(text=query, k=10, options={"mode": "search"})
    return music.query(bundle_for(dataset), request, _person(profile)).hits


def _who(feedback: Feedback) -> "tuple[tuple[str, ...], str]":
    """(dislikes, profile) when the profile disliked something, else nobody: picks without dislikes are
    computed once for everyone."""
    return (feedback[1], profiles.known() or "") if feedback[1] else ((), "")


def _feedback(dataset: str) -> Feedback:
    """The active profile's (liked, disliked) item ids in this dataset, most recent first."""
    profile = profiles.known()
    liked, disliked = music.profile_feedback(_person(profile) if profile else None, dataset)
    return tuple(liked), tuple(disliked)


def rate_rows(bundle: Bundle, picks: list[Any], section: str, feedback: tuple[tuple[str, ...], tuple[str, ...]],
              reasons: bool = False) -> None:
    """One line per pick with 👍 / 👎 (the store write happens in the click); ``reasons`` adds each "why"."""
    liked, disliked = set(feedback[0]), set(feedback[1])
    for p in picks:
        verdict = "like" if p.item in liked else "dislike" if p.item in disliked else None
        with st.container(horizontal=True, vertical_alignment="center"):
            text = f"{md_text(p.title)} — _{md_text(p.artist)}_" if p.artist else md_text(p.title)
            st.markdown(text + (f"  \n:gray[{md_text(p.reason)}]" if reasons else ""), width="stretch")
            profiles.rate_buttons(
                f"mrate_{section}_{p.item}", verdict,
                record=lambda db, prof, sig, item=p.item: music.record_feedback(Person(db, prof), bundle, item, sig),
                undo=lambda db, prof, item=p.item: db.undo(prof, mf_feedback.TAB,
                                                           mf_feedback.item_key(bundle.dataset, item)))


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _picks_frame(recs: list[Recommendation]) -> pd.DataFrame:
    return pd.DataFrame({
        "#": range(1, len(recs) + 1),
        "title": [r.title for r in recs],
        "artist": [r.artist for r in recs],
        "genres": [", ".join(r.genres) for r in recs],
        "score": [round(r.score, 3) for r in recs],
        "why": [r.reason for r in recs],
    })


def _show_picks(recs: list[Recommendation]) -> None:
    st.dataframe(_picks_frame(recs), hide_index=True, width="stretch", column_config={
        "#": st.column_config.NumberColumn(width="small"),
        "score": st.column_config.NumberColumn(width="small", help="model score (higher = better match)"),
        "why": st.column_config.TextColumn(width="large"),
    })


def render() -> None:
    """Draw the tab (called by app.py inside the "Music" tab)."""
    st.subheader("Music picks")
    datasets = [s.name for s in music.sources() if s.kind == "dataset"]
    if not datasets:
        st.info("No music models are trained yet. Run `python -m music train` (the simulated demo, under a "
                "minute) or `make run`, then reload this page.")
        _render_evaluation()
        return
    dataset = st.selectbox("Dataset", datasets, format_func=_label, key="music_dataset", persist_state=PERSIST)
    if dataset == "simulated":
        st.caption(SIMULATED_NOTE)
    try:
        version = music.bundle_version(dataset)
        bundle = bundle_for(dataset)
    except (ArtifactError, OSError) as exc:
        st.error(f"The {_label(dataset)} models cannot be used: {exc}")
        return
    model_card.show(music.card, dataset, key="music_card")
    users = service.users(bundle)
    if not users:
        st.warning(f"The {_label(dataset)} data has no listeners, so there is nothing to recommend from.")
        return
    summary = bundle.manifest.get("summary", {})
    st.caption(f"{bundle.label}: {summary.get('users', len(users)):,} listeners, "
               f"{summary.get('items', 0):,} items, {summary.get('interactions', 0):,} interactions.")

    # with an imported history, "You" comes first: that is what the person came back for
    plays = _plays_version(profiles.known())  # one look at the store per rerun
    modes = ([YOU] if plays else []) + ["A listener in the data", "A new listener"]
    mode = st.radio("Who is listening?", modes, horizontal=True, key="music_mode", persist_state=PERSIST)
    n = st.slider("How many picks", 5, 30, 10, key="music_top", persist_state=PERSIST)
    user: str | None = None
    profiles.show_write_error()
    feedback = _feedback(dataset)
    if mode == "A listener in the data":
        user = _render_listener(bundle, users, n, version, feedback)
    elif mode == "A new listener":
        _render_new_listener(bundle, n, version, feedback)
    _render_profile(bundle, n, version, feedback, plays)
    _render_evaluation(dataset)
    _render_up_next(bundle, user, feedback)


def _render_profile(bundle: Bundle, n: int, version: float, feedback: Feedback, plays: str = "") -> None:
    """Your picks: the active profile's likes folded into the trained model, and a search to like songs."""
    likes, dislikes = feedback
    st.markdown(f"**Your picks** (profile: {profiles.display_markdown()})")
    query = st.text_input("Find songs you like (title or artist)", key="music_search",
                          persist_state=PERSIST, max_chars=100).strip()
    if query:
        found = _search_songs(bundle.dataset, version, query, *_who(feedback))
        if found:
            rate_rows(bundle, found, "search", feedback)
        else:
            st.caption(f"No song or artist matches {md_text(repr(query))}.")
    genres = tuple(st.session_state.get("music_genres") or ())
    profile = profiles.known()
    mine = _profile_picks(bundle.dataset, version, likes, dislikes, n, genres, profile or "", plays)
    if plays and not mf_feedback.has_real_names(bundle):
        st.info(NO_REAL_NAMES)
    if mine.source == "history":
        _history_caption(mine, len(dislikes))
    elif mine.source == "fold_in":
        st.caption(f"Picks folded in from your {len(mine.likes)} like{'s' if len(mine.likes) != 1 else ''} "
                   "(no retraining: your taste is solved against the trained song factors); "
                   f"{len(dislikes)} disliked song{'s' if len(dislikes) != 1 else ''} never shown.")
    else:
        st.caption("No likes yet: these are genre picks. Like a few songs (:material/thumb_up: here, above, or in the search) "
                   "and personal picks appear at once.")
    rate_rows(bundle, mine.picks, "mine", feedback, reasons=True)
    if likes:
        with st.expander(f"Your {len(likes)} liked songs"):
            c = bundle.mf.catalog
            for item in likes:
                if item in c.items:
                    i = c.items.index(item)
                    st.markdown(f":material/thumb_up: {md_text(c.titles[i])} — _{md_text(c.artists[i])}_")


def _history_caption(mine: mf_feedback.ProfilePicks, n_dislikes: int) -> None:
    """What the history picks stand on: how much of the imported history this dataset knows."""
    h = mine.history or {}
    st.caption(f"Picks from your imported listening history: {h.get('counted_plays', 0):,} plays of "
               f"{h.get('artists', 0):,} artists, {h.get('matched', 0):,} of them in this dataset"
               + (f", plus {len(mine.likes)} like{'s' if len(mine.likes) != 1 else ''}" if mine.likes else "")
               + ". Nothing you played is picked again"
               + (f"; {n_dislikes} disliked never shown." if n_dislikes else "."))
    if h.get("unmatched"):
        with st.expander(f"{h.get('unmatched_artists', 0):,} of your artists are not in this dataset"):
            st.write(", ".join(md_text(a) for a in h["unmatched"])
                     + (" …" if h.get("unmatched_artists", 0) > len(h["unmatched"]) else ""))


def _render_listener(bundle: Bundle, users: list[str], n: int, version: float, feedback: Feedback) -> str | None:
    left, right = st.columns([2, 1])
    with left:
        picked = st.selectbox("Listener (type to search)", users, key="music_user", persist_state=PERSIST)
    with right:
        typed = st.text_input("…or enter a listener id", key="music_user_typed", persist_state=PERSIST).strip()
    user = typed or picked
    try:
        hist, recs = _listener(bundle.dataset, version, user, n, *_who(feedback))
    except UnknownUser:
        st.error(f"Unknown listener {md_text(repr(user))}: there is no such id in {bundle.label}. "
                 "Pick one from the list, or try \"A new listener\" to start from genres.")
        return None
    # Stacked, not side by side: the reasons are sentences and need the full width.
    with st.container():
        st.markdown(f"**Top {n} picks for {md_text(user)}**")
        if len(hist) and len(hist) < service.BLEND_BELOW:
            st.caption("A short history: personal picks are blended with picks from this listener's genres.")
        if not recs:
            st.info("Nothing left to recommend: this listener has heard everything.")
        else:
            _show_picks(recs)
            with st.expander("Rate these picks :material/thumb_up: / :material/thumb_down:"):
                rate_rows(bundle, recs, "listener", feedback)
    st.markdown(f"**{md_text(user)}'s top history**")
    if hist.empty:
        st.info("This listener has no history yet, so the picks above are simply the most popular.")
    else:
        st.dataframe(hist.drop(columns=["item"]), hide_index=True, width="stretch")
    return user


def _render_new_listener(bundle: Bundle, n: int, version: float, feedback: Feedback) -> None:
    options = service.genres(bundle)
    if not options:
        st.info("This dataset has no genre information, so new-listener picks are not available.")
        return
    chosen = st.multiselect("Pick a few genres you like", options, default=options[:2], key="music_genres",
                            persist_state=PERSIST)
    if not chosen:
        st.info("Pick at least one genre to get picks.")
        return
    recs = _new_listener(bundle.dataset, version, tuple(chosen), n, *_who(feedback))
    if not recs:
        st.info("No songs found in those genres.")
        return
    st.markdown(f"**Top {len(recs)} picks for {md_text(', '.join(chosen))}**")
    _show_picks(recs)
    with st.expander("Rate these picks :material/thumb_up: / :material/thumb_down:"):
        rate_rows(bundle, recs, "genre", feedback)


def _render_evaluation(current: str | None = None) -> None:
    """Bar charts of the saved evaluation results (``python -m music evaluate``), current dataset first."""
    names = sorted(evaluated_datasets(), key=lambda n: (n != current, n))
    with st.expander("How good are these models? (held-out evaluation)", expanded=False):
        if not names:
            st.info("No evaluation results yet. Run `python -m music evaluate --dataset simulated` "
                    "(or lastfm-2k / movielens-100k).")
            return
        name = st.selectbox("Evaluation of", names, format_func=_label, key="music_eval_dataset", persist_state=PERSIST)
        res: dict[str, Any] | None = load_results(name)
        if not res:
            st.warning("The results file could not be read.")
            return
        st.caption(f"{md_text(res.get('label', name))} — {md_text(res.get('protocol', ''))}")
        methods = res.get("methods", {})
        for method, m in methods.items():
            if "error" in m:
                st.caption(f"{md_text(method)}: {md_text(m['error'])}")
        frame = chart_frame(methods, METRICS)
        if frame.empty:
            st.info("The results file has no metrics to plot.")
            return
        st.bar_chart(frame.T, horizontal=False, stack=False)
        st.dataframe(frame.round(4), width="stretch")
        if name == "simulated":
            st.caption("Measured on the simulated listening log, not on real listeners.")
        if res.get("command"):
            st.caption(f"Reproduce with `{res['command']}`")


def _render_up_next(bundle: Bundle, user: str | None, feedback: Feedback) -> None:
    try:
        from ui.music_next import render_up_next
    except ImportError:
        return
    render_up_next(bundle.dataset, user, rate=lambda picks: rate_rows(bundle, picks, "next", feedback),
                   feedback=feedback)
