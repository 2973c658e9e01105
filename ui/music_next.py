"""The "Up next" section of the Music tab: next items for the chosen listener, or for a sequence built by hand.

Why it is thin: prediction, reasons and attributions live in ``music.next.service``; this module only
lays out widgets and caches the loaded bundle (every click in the tab reruns it, so the model is
loaded once per file version through ``st.cache_resource``). It is the only "up next" module
that imports streamlit.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import pandas as pd
import streamlit as st

from core.artifacts import ArtifactError
from music.service import NEXT_HINT as HINT, NextBundle, UnknownListener
from music.service import next_bundle_stem as bundle_stem, next_results_path as results_path
from ui.common import PERSIST, RESULT_ENTRIES, RESULT_TTL, load_versioned, md_text

log = logging.getLogger(__name__)

METHODS = {"CNN (Caser)": "cnn", "Session-kNN (nearest sessions)": "session_knn"}


@st.cache_resource(show_spinner="Loading the 'up next' model…", max_entries=4)
def _bundle(dataset: str, stamp: float) -> NextBundle:
    """Load once per (dataset, manifest mtime): a retrain is picked up without a restart."""
    return NextBundle(dataset)


@st.cache_data(show_spinner=False, max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _recommend(dataset: str, stamp: float, user: str | None, items: tuple[str, ...] | None, top: int,
               method: str) -> list[Any]:
    """Next items for a listener or a hand-built sequence, once per (model version, input, options)."""
    return _bundle(dataset, stamp).recommend(user=user, items=list(items) if items else None, top=top, method=method)


@st.cache_data(show_spinner=False, max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _explain(dataset: str, stamp: float, user: str | None, items: tuple[str, ...] | None, item: str) -> dict:
    """The top pick's attribution (a few model passes), once per (model version, input, pick)."""
    return _bundle(dataset, stamp).explain(user=user, items=list(items) if items else None, item=item)


def _load(dataset: str) -> "tuple[NextBundle, float] | None":
    manifest = bundle_stem(dataset).with_suffix(".json")
    if not manifest.is_file():
        st.info(f"No 'up next' model for this dataset yet. Train one with `{HINT.format(dataset=dataset)}`.")
        return None
    try:
        stamp = manifest.stat().st_mtime
        return load_versioned(_bundle, (dataset,), stamp), stamp
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
                 stamp: float) -> None:
    """Which input positions and filter groups drove the top pick (score drop when each is removed)."""
    ex = _explain(bundle.dataset, stamp, user, tuple(items) if items else None, pick.item)
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
        import json

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


def _shown(picks: list[Any], hidden: frozenset[str], top: int, rate: Optional[Callable[[list[Any]], None]]) -> list[Any]:
    """The picks minus the profile's dislikes (never shown again), as a table with 👍 / 👎 rows."""
    picks = [p for p in picks if p.item not in hidden][:top]
    _picks_table(picks)
    if rate is not None and picks:
        with st.expander("Rate these 'up next' picks :material/thumb_up: / :material/thumb_down:"):
            rate(picks)
    return picks


def render_up_next(dataset_name: str, user: str | None, rate: Optional[Callable[[list[Any]], None]] = None,
                   hidden: frozenset[str] = frozenset()) -> None:
    """Draw "Up next" for ``dataset_name``: the chosen ``user``'s next items, and a build-your-own sequence.

    ``rate(picks)`` draws the 👍 / 👎 controls; ``hidden`` are item ids the profile disliked."""
    st.subheader("Up next")
    if dataset_name == "simulated":
        st.caption("Simulated listening log: the sequences are generated, not real listening history.")
    loaded = _load(dataset_name)
    if loaded is None:
        return
    bundle, stamp = loaded
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
        picks = _shown(_recommend(dataset_name, stamp, user, None, top + len(hidden), method), hidden, top, rate)
        if method == "cnn" and picks:
            _attribution(bundle, picks[0], user=user, items=None, stamp=stamp)
    else:
        options = bundle.search_items()[:2000]
        chosen = st.multiselect("Pick a few items in the order you'd play them", options,
                                format_func=lambda i: bundle.label(bundle.seqs.item_index(i)),
                                max_selections=bundle.cfg.L * 2, key=f"next_items_{dataset_name}",
                                    persist_state=PERSIST)
        if not chosen:
            st.info("Pick at least one item to see what the model would play next.")
            return
        picks = _shown(_recommend(dataset_name, stamp, None, tuple(chosen), top + len(hidden), method), hidden, top,
                       rate)
        if method == "cnn" and picks:
            _attribution(bundle, picks[0], user=None, items=chosen, stamp=stamp)
    _quality(dataset_name)
