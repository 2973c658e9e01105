"""What the Music tab and the Data page's music sections call: the one door from ``ui/`` into the music package.

Why one door: the UI should not need to know which sub-package holds the trained bundles (``music.mf``), the
profile picks and their feedback (``music.mf.feedback``), imported histories (``music.history``), service logs
(``music.jobs``) or "up next" (``music.next``). The policies live in those modules; this one names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from core.artifacts import ArtifactError
from core.contract import (Answer, Handles, Metric, ModelCard, Person, Request, Source, built_date, committed, count,
                           file_version, metrics_of, read_results, source_of, without)
from music import jobs as logs  # noqa: F401 - service logs → datasets (the Data page's "Listening logs")
from music.data import LABELS
from music.history import HistoryError
from music.history.jobs import MAX_UPLOAD_BYTES as HISTORY_MAX_BYTES, jobs_of as history_jobs
from music.history.jobs import queue_import as queue_history
from music.history.service import NO_REAL_NAMES, stored_report
from music.mf import feedback  # noqa: F401 - profile picks: likes, imported plays, fold-in, reasons
from music.mf import service as picks  # noqa: F401 - a listener's history and picks, new-listener picks
from music.mf.evaluate import results_path
from music.mf.train import Bundle, bundle_dir, evaluated_datasets, load_bundle, load_results, trained_datasets
from music.next.evaluate import results_path as next_results_path
from music.next.service import HINT as NEXT_HINT, NextBundle, UnknownListener, bundle_stem as next_bundle_stem
from music.recommender import Recommendation, UnknownUser

__all__ = ["Bundle", "HISTORY_MAX_BYTES", "HistoryError", "LABELS", "NEXT_HINT", "NO_REAL_NAMES", "NextBundle",
           "Recommendation", "UnknownListener", "UnknownUser", "bundle_dir", "evaluated_datasets", "feedback",
           "history_jobs", "load_bundle", "load_results", "logs", "next_bundle_stem", "next_results_path", "picks",
           "queue_history", "stored_report", "trained_datasets",
           # the contract every tab's service offers (core.contract)
           "sources", "open", "query", "record_feedback", "explain", "card"]


# ----------------------------------------------------------------------------------------------
# the contract every tab's service offers (core.contract)

#: "Up next" models are served under this prefix beside the datasets' picks models ("next:lastfm-2k").
NEXT = "next:"

#: Loaded bundles, one per (name, version), shared by the app's sessions and the CLI.
_HANDLES = Handles(keep=6)

LIMITS = (
    "Picks come from listening patterns in one dataset; a song or artist it never saw cannot be picked.",
    "The simulated listening log is generated, not real listeners: its numbers say nothing about real taste.",
    "A listener with a short history gets picks blended with their genres' most played items.",
)


def _manifest_path(name: str) -> Path:
    if name.startswith(NEXT):
        return next_bundle_stem(name[len(NEXT):]).with_suffix(".json")
    return bundle_dir(name) / "bundle.json"


def bundle_version(name: str) -> Optional[float]:
    """The trained bundle's version (its manifest's modification time), or None when it is not trained."""
    return file_version(_manifest_path(name))


def sources() -> list[Source]:
    """Trained datasets (picks for listeners), then the trained "up next" models (``next:<dataset>``)."""
    found = [source_of(d, "dataset", _manifest_path(d), LABELS.get(d, d)) for d in trained_datasets()]
    for d in trained_datasets():
        if bundle_version(NEXT + d) is not None:
            found.append(source_of(NEXT + d, "up next", _manifest_path(NEXT + d), f"Up next — {LABELS.get(d, d)}"))
    return found


def open(name: str) -> "Bundle | NextBundle":  # noqa: A001 - the contract's name for "give me one"
    """A dataset's trained bundle, or ``next:<dataset>``'s "up next" model, loaded once per version and shared;
    ``ArtifactError`` (with the command to run) when it is not trained or stale."""
    version = bundle_version(name)
    if version is None:
        raise ArtifactError(f"No trained music model {name!r}; train it with "
                            + (f"`{NEXT_HINT.format(dataset=name[len(NEXT):])}`." if name.startswith(NEXT)
                               else f"`python -m music train --dataset {name}`."))
    key = str(_manifest_path(name))
    if name.startswith(NEXT):
        return _HANDLES.get(key, version, lambda: NextBundle(name[len(NEXT):]))
    return _HANDLES.get(key, version, lambda: load_bundle(name))


def profile_feedback(person: Optional[Person], dataset: str) -> "tuple[list[str], list[str]]":
    """(liked, disliked) item ids of ``person`` in ``dataset``, most recent first; empty for nobody."""
    if person is None or not person.profile:
        return [], []
    prefix = feedback.item_key(dataset, "")
    mine = lambda keys: [k[len(prefix):] for k in keys if k.startswith(prefix)]  # noqa: E731
    return (mine(person.store.likes(person.profile, feedback.TAB)),
            mine(person.store.dislikes(person.profile, feedback.TAB)))


def query(handle: Any, request: Request, person: Optional[Person] = None) -> Answer:
    """The tab's picks; what ``person`` disliked is never among them.

    For a picks bundle, ``request.options["mode"]`` (inferred when absent): ``search`` songs by
    ``request.text``; ``listener`` — picks for ``request.user`` (``extra["history"]``: their top history);
    ``genres`` — a new listener's picks for ``request.genres``; ``profile`` — ``person``'s own picks from their
    likes and imported plays (``extra["picks"]``: the ``ProfilePicks``). For an "up next" model: the next items
    after ``request.user``'s latest, or after ``request.options["items"]``, by ``options["method"]``.
    """
    if isinstance(handle, NextBundle):
        return _up_next(handle, request, person)
    mode = request.options.get("mode") or ("search" if request.text else "listener" if request.user
                                            else "genres" if request.genres else "profile")
    likes, dislikes = profile_feedback(person, handle.dataset)
    k, extra = request.k, {}
    if mode == "search":
        hits = feedback.search_items(handle, str(request.text or ""), k + len(dislikes))
    elif mode == "listener":
        extra["history"] = picks.history(handle, str(request.user), n=10)
        extra["blended"] = 0 < len(extra["history"]) < picks.BLEND_BELOW
        hits = picks.recommend_user(handle, str(request.user), k + len(dislikes))
    elif mode == "genres":
        hits = picks.recommend_new_listener(handle, list(request.genres), k + len(dislikes))
    elif mode == "profile":
        history = (feedback.history_match(person.store, handle, person.profile)
                   if person is not None and person.profile and request.options.get("plays") else None)
        mine = feedback.picks_for_likes(handle, likes, dislikes, k, list(request.genres) or None, history=history)
        return Answer(mine.picks, "", {"picks": mine})
    else:
        raise ValueError(f"Unknown music query mode {mode!r}; use search, listener, genres or profile.")
    return Answer(without(hits, dislikes, k, key=lambda r: r.item), "", extra)


def _up_next(handle: "NextBundle", request: Request, person: Optional[Person]) -> Answer:
    """Next items for a listener or a hand-built sequence, minus ``person``'s dislikes."""
    _, dislikes = profile_feedback(person, handle.dataset)
    items = list(request.options.get("items") or ()) or None
    found = handle.recommend(user=None if items else request.user, items=items, top=request.k + len(dislikes),
                             method=str(request.options.get("method", "cnn")))
    return Answer(without(found, dislikes, request.k, key=lambda p: p.item))


def record_feedback(person: Person, handle: Any, item: str, signal: str) -> int:
    """Store ``person``'s like or dislike of a song of this dataset (the profile is created if new)."""
    return feedback.record(person.store, handle, str(person.profile), item, signal)


def explain(handle: Any, hit: Any) -> str:
    """Why ``hit`` was picked: the model's own reason (the liked songs or genres it is close to)."""
    who = f"{hit.title} — {hit.artist}" if getattr(hit, "artist", "") else hit.title
    return f"{who}: {hit.reason}" if getattr(hit, "reason", "") else f"{who}: score {hit.score:.2f}."


def card(name: str) -> ModelCard:
    """The model card of a dataset's picks (or ``next:<dataset>``'s "up next"): what was trained on what, and the
    held-out quality with 95 % intervals from the last ``python -m music evaluate`` (the artifact's own report,
    else the committed ``bench/results/music_evaluate_<dataset>.json``)."""
    if name.startswith(NEXT):
        return _next_card(name)
    version = bundle_version(name)
    manifest = read_results(_manifest_path(name)) or {}
    summary = manifest.get("summary", {})
    path, results = _first_results([results_path(name), committed(f"music_evaluate_{name}")])
    summary = summary or (results or {}).get("summary", {})
    models = manifest.get("models") or ["mf", "genre", "popularity"]
    params = manifest.get("mf_params", {})
    detail = f" ({params.get('mode', 'MF')}, {params.get('dim')} factors)" if params.get("dim") else ""
    model = (f"matrix factorisation{detail} in Keras, with {', '.join(m for m in models if m != 'mf')} "
             "fallbacks")
    data = (f"{LABELS.get(name, name)}: {count(summary.get('users'))} listeners, {count(summary.get('items'))} items, "
            f"{count(summary.get('interactions'))} interactions" if summary else LABELS.get(name, name))
    wanted = [(m, metric) for metric in ("ndcg@10", "hr@10", "rmse", "mae")
              for m in ("mf", "implicit_als", "spark_als", "popularity", "surprise_svd", "global_mean")]
    metrics = metrics_of((results or {}).get("methods", {}), wanted, n_keys=("users", "n"))
    return ModelCard(name, model, data, version, built_date(version), metrics, str(path) if metrics else "",
                     protocol=str((results or {}).get("protocol", "")) if metrics else "",
                     limits=LIMITS,
                     command=str((results or {}).get("command", f"python -m music evaluate --dataset {name} --json")))


def _next_card(name: str) -> ModelCard:
    """"Up next": the CNN chosen on validation against the best baseline, as a test HR@10 ratio per split."""
    dataset = name[len(NEXT):]
    version = bundle_version(name)
    path, results = _first_results([next_results_path(dataset), committed(f"music_evaluate_next_{dataset}")])
    metrics = []
    for split, run in ((results or {}).get("splits") or {}).items():
        head = run.get("headline") or {}
        if isinstance(head.get("ratio"), (int, float)) and len(head.get("ratio_ci95") or ()) == 2:
            lo, hi = head["ratio_ci95"]
            metrics.append(Metric(f"{head.get('best_cnn')} ÷ {head.get('best_baseline')}",
                                  f"{head.get('metric', 'hr@10')} ratio ({split})", float(head["ratio"]),
                                  float(lo), float(hi), head.get("users")))
    return ModelCard(name, "Caser (convolutional sequence model) beside session-kNN",
                     f"{LABELS.get(dataset, dataset)}: listening sequences in time order", version, built_date(version),
                     tuple(metrics), str(path) if metrics else "",
                     protocol=str((results or {}).get("protocol", "")) if metrics else "",
                     limits=("Next items follow the order of past listening; a listener's first plays have no "
                             "sequence.",),
                     command=str((results or {}).get("command",
                                                     f"python -m music evaluate-next --dataset {dataset} --json")))


def _first_results(paths: "list[Path]") -> "tuple[Optional[Path], Optional[dict[str, Any]]]":
    """The first readable results file of ``paths`` (the artifact's before the committed one)."""
    for path in paths:
        data = read_results(path)
        if data:
            return path, data
    return None, None
