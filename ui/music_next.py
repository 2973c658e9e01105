"""The "Up next" section of the Music tab: next items for the chosen listener, or for a sequence built by hand.

Why it is thin: prediction, reasons and attributions live in ``music.next.service``; this module only
lays out widgets and caches the loaded bundle (every click in the tab reruns it, so the model is
loaded once per file version through ``st.cache_resource``). It is the only "up next" module
that imports streamlit.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Optional

import pandas as pd
import streamlit as st

from core.artifacts import ArtifactError
from core.contract import Person, Request
from music import service as music
from music.service import NEXT, NEXT_HINT as HINT, NextBundle, UnknownListener
from music.service import next_results_path as results_path
from ui import model_card
from ui import profile as profiles
from ui.common import PERSIST, RESULT_ENTRIES, RESULT_TTL, md_text

log = logging.getLogger(__name__)

METHODS = {"CNN (Caser)": "cnn", "Session-kNN (nearest sessions)": "session_knn"}


def _bundle(dataset: str) -> NextBundle:
    """The "up next" model, loaded once per model version by the service (a retrain is picked up)."""
    with st.spinner("Loading the 'up next' model…"):
        return music.open(NEXT + dataset)


Feedback = tuple[tuple[str, ...], tuple[str, ...]]


@st.cache_data(show_spinner=False, max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _recommend(dataset: str, version: float, user: str | None, items: tuple[str, ...] | None, top: int,
               method: str, dislikes: tuple[str, ...] = (), profile: str = "") -> list[Any]:
    """Next items for a listener or a hand-built sequence, minus the profile's dislikes, once per (model
    version, input, options, dislikes)."""
    request = Request(user=user, k=top, options={"items": list(items or ()), "method": method})
    return music.query(_bundle(dataset), request, Person(profiles.store(), profile) if profile else None).hits


@st.cache_data(show_spinner=False, max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _explain(dataset: str, version: float, user: str | None, items: tuple[str, ...] | None, item: str) -> dict:
    """The top pick's attribution (a few model passes), once per (model version, input, pick)."""
    return _bundle(dataset).explain(user=user, items=list(items) if items else None, item=item)


def _who(feedback: Feedback) -> "tuple[tuple[str, ...], str]":
    """(dislikes, profile) when the profile disliked something, else nobody: picks without dislikes are shared."""
    return (feedback[1], profiles.known() or "") if feedback[1] else ((), "")


def _load(dataset: str) -> "tuple[NextBundle, float] | None":
    version = music.bundle_version(NEXT + dataset)
    if version is None:
        st.info(f"No 'up next' model for this dataset yet. Train one with `{HINT.format(dataset=dataset)}`.")
        return None
    try:
        return _bundle(dataset), version
    except ArtifactError as exc:
        st.error(f"The 'up next' model could not be loaded: {exc}")
        return None


def _picks_table(picks: list[Any]) -> None:
    frame = pd.DataFrame({
        "#": range(1, len(picks) + 1),
        "title": [p.title for p in picks],
        "artist": [p.artist for p in picks],
        "score": [round(p.score, 3) for p in picks],
        "why": [p.reason for p in picks],
    })
    st.dataframe(frame, hide_index=True, width="stretch",
                 column_config={"why": st.column_config.TextColumn(width="large")})


def _attribution(bundle: NextBundle, pick: Any, *, user: str | None, items: list[str] | None,
                 version: float) -> None:
    """Which input positions and filter groups drove the top pick (score drop when each is removed)."""
    ex = _explain(bundle.dataset, version, user, tuple(items) if items else None, pick.item)
    st.caption(f"Why **{md_text(pick.title)}** first: how much its score drops when one input position is blanked, "
               "or one group of convolution filters is switched off.")
    left, right = st.columns(2)
    with left:
        pos = pd.DataFrame({"input (oldest → latest)": ex["inputs"], "score drop": [round(v, 3) for v in ex["positions"]]})
        st.dataframe(pos, hide_index=True, width="stretch")
    with right:
        filt = pd.DataFrame({"filters": list(ex["filters"]), "score drop": [round(v, 3) for v in ex["filters"].values()]})
        st.dataframe(filt, hide_index=True, width="stretch")
    st.caption(f"Score parts — sequence: {ex['sequence_part']:.2f}, listener taste: {ex['user_part']:.2f}"
               + (f", re-listen channel: {ex['repeat_part']:.2f}" if ex.get("repeat_part") else ""))


def _quality(dataset: str) -> None:
    path = results_path(dataset)
    if not path.is_file():
        return
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
        runs = res["splits"]
        frames = {name: pd.DataFrame(run["methods"]).T[["hr@10", "ndcg@10", "mrr", "top1"]].astype(float)
                  for name, run in runs.items()}
    except (ValueError, KeyError, OSError, TypeError) as exc:
        st.caption(f"(evaluation results unreadable: {exc})")
        return
    with st.expander("How good is 'up next'? (held-out baskets, full ranking)"):
        for name, frame in frames.items():
            st.markdown(f"**{name} split**")
            st.dataframe(frame.round(4), width="stretch")
            head = runs[name].get("headline")
            if head:
                lo, hi = head["ratio_ci95"]
                st.caption(f"Picked on validation: {head['best_cnn']} vs {head['best_baseline']} — test HR@10 ratio "
                           f"{head['ratio']}× (95 % interval {lo}–{hi}, {head['users']} listeners).")
        if res.get("command"):
            st.caption(f"Reproduce with `{res['command']}`")


def _shown(picks: list[Any], rate: Optional[Callable[[list[Any]], None]]) -> list[Any]:
    """The picks (the service already left out the profile's dislikes), as a table with 👍 / 👎 rows."""
    _picks_table(picks)
    if rate is not None and picks:
        with st.expander("Rate these 'up next' picks :material/thumb_up: / :material/thumb_down:"):
            rate(picks)
    return picks


def render_up_next(dataset_name: str, user: str | None, rate: Optional[Callable[[list[Any]], None]] = None,
                   feedback: Feedback = ((), ())) -> None:
    """Draw "Up next" for ``dataset_name``: the chosen ``user``'s next items, and a build-your-own sequence.

    ``rate(picks)`` draws the 👍 / 👎 controls; ``feedback`` is the profile's (liked, disliked) ids, the key of
    the cached picks (the service leaves the disliked out)."""
    st.subheader("Up next")
    if dataset_name == "simulated":
        st.caption("Simulated listening log: the sequences are generated, not real listening history.")
    loaded = _load(dataset_name)
    if loaded is None:
        return
    bundle, version = loaded
    model_card.show(music.card, NEXT + dataset_name, key=f"next_card_{dataset_name}")
    dislikes, profile = _who(feedback)
    method_label = st.radio("Method", list(METHODS), horizontal=True, key=f"next_method_{dataset_name}",
                            persist_state=PERSIST)
    method = METHODS[method_label]
    top = st.slider("How many", 3, 20, 10, key=f"next_top_{dataset_name}", persist_state=PERSIST)
    mode = st.radio("From", ["This listener's latest items", "A sequence I build"], horizontal=True,
                    key=f"next_mode_{dataset_name}", persist_state=PERSIST)

    if mode == "This listener's latest items":
        if not user:
            st.info("Pick a listener above to see what comes next for them.")
            return
        try:
            hist = bundle.history(user)
        except UnknownListener as exc:
            st.warning(f"{md_text(exc)}.")
            return
        latest = [bundle.label(i) for i in hist[-bundle.cfg.L:]]
        st.caption("Latest items (oldest → latest): " + " → ".join(md_text(t) for t in latest))
        picks = _shown(_recommend(dataset_name, version, user, None, top, method, dislikes, profile), rate)
        if method == "cnn" and picks:
            _attribution(bundle, picks[0], user=user, items=None, version=version)
    else:
        options = bundle.search_items()[:2000]
        chosen = st.multiselect("Pick a few items in the order you'd play them", options,
                                format_func=lambda i: bundle.label(bundle.seqs.item_index(i)),
                                max_selections=bundle.cfg.L * 2, key=f"next_items_{dataset_name}",
                                    persist_state=PERSIST)
        if not chosen:
            st.info("Pick at least one item to see what the model would play next.")
            return
        picks = _shown(_recommend(dataset_name, version, None, tuple(chosen), top, method, dislikes, profile), rate)
        if method == "cnn" and picks:
            _attribution(bundle, picks[0], user=None, items=chosen, version=version)
    _quality(dataset_name)
