"""What the Music tab and the Data page's music sections call: the one door from ``ui/`` into the music package.

Why one door: the UI should not need to know which sub-package holds the trained bundles (``music.mf``), the
profile picks and their feedback (``music.mf.feedback``), imported histories (``music.history``), service logs
(``music.jobs``) or "up next" (``music.next``). The policies live in those modules; this one names them.
"""

from __future__ import annotations

from music import jobs as logs  # noqa: F401 - service logs → datasets (the Data page's "Listening logs")
from music.data import LABELS
from music.history import HistoryError
from music.history.jobs import MAX_UPLOAD_BYTES as HISTORY_MAX_BYTES, jobs_of as history_jobs
from music.history.jobs import queue_import as queue_history
from music.history.service import NO_REAL_NAMES, stored_report
from music.mf import feedback  # noqa: F401 - profile picks: likes, imported plays, fold-in, reasons
from music.mf import service as picks  # noqa: F401 - a listener's history and picks, new-listener picks
from music.mf.train import Bundle, bundle_dir, evaluated_datasets, load_bundle, load_results, trained_datasets
from music.next.evaluate import results_path as next_results_path
from music.next.service import HINT as NEXT_HINT, NextBundle, UnknownListener, bundle_stem as next_bundle_stem
from music.recommender import Recommendation, UnknownUser

__all__ = ["Bundle", "HISTORY_MAX_BYTES", "HistoryError", "LABELS", "NEXT_HINT", "NO_REAL_NAMES", "NextBundle",
           "Recommendation", "UnknownListener", "UnknownUser", "bundle_dir", "evaluated_datasets", "feedback",
           "history_jobs", "load_bundle", "load_results", "logs", "next_bundle_stem", "next_results_path", "picks",
           "queue_history", "stored_report", "trained_datasets"]
