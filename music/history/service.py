"""Importing a person's listening history into their profile, and the report they see about it.

What the Data page and ``python -m music import-history`` call. An import is read whole (``read_exports``),
then stored in one transaction, so a bad file leaves nothing behind; plays already stored are skipped, so the
same export imported twice adds nothing. The report is about *this* import, matched to the chosen dataset:
``plays`` read (skips included), ``skipped_short``, ``artists`` (distinct, skips excluded), ``matched`` (how
many of them the dataset has), ``unmatched`` (the 20 most played it has not), plus ``added`` and ``already``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

from core.feedback.store import FeedbackStore, PlayCount
from music.history.formats import History, read_exports
from music.mf.feedback import has_real_names, match_counts

log = logging.getLogger(__name__)

#: What a dataset without real artist names says instead of a match report.
NO_REAL_NAMES = ("The simulated dataset's artists are invented, so no real listening history can match it; "
                 "train one with real names first: `python -m music train --dataset lastfm-2k --path "
                 "FOLDER` (Last.fm-2K), `--dataset lastfm-1k --path FILE`, or a service log on the Data page.")


def play_counts(history: History) -> list[PlayCount]:
    """One import's plays per (artist, track), skips apart: the shape the store's ``play_counts`` returns."""
    frame = history.plays
    if frame.empty:
        return []
    grouped = frame.assign(kept=~frame["skip"], ms=frame["ms_played"].where(~frame["skip"] & (frame["ms_played"] > 0), 0)) \
        .groupby(["artist", "track"], sort=False).agg(plays=("kept", "sum"), n=("skip", "size"), ms=("ms", "sum"))
    return [PlayCount(str(a), str(t), int(r.plays), int(r.n - r.plays), int(r.ms))
            for (a, t), r in grouped.iterrows()]


def import_history(store: FeedbackStore, profile: str,
                   files: History | Sequence[tuple[str, bytes]] | Sequence[str | Path],
                   bundle: Optional[Any] = None) -> dict[str, Any]:
    """Read ``files`` (paths or (name, bytes) uploads, or an export already read), store their plays under
    ``profile``, and report.

    Raises ``HistoryError`` (unreadable export) or ``FeedbackError`` (unknown profile) with nothing stored.
    With ``bundle``, the report says how this import matches that dataset's artists.
    """
    history = files if isinstance(files, History) else read_exports(files)
    stored = store.add_plays(profile, history.plays.to_dict("records"))
    report: dict[str, Any] = {"files": history.report.get("files", []),
                              "ignored_files": history.report.get("ignored_files", []),
                              "skipped_no_artist": int(history.report.get("skipped_no_artist", 0)),
                              "duplicates": int(history.report.get("duplicates", 0)), **stored}
    report.update(match_report(bundle, play_counts(history)) if bundle is not None else
                  {"plays": int(history.report.get("plays", len(history.plays))),
                   "skipped_short": int(history.report.get("skipped_short", 0))})
    log.info("imported %d plays for a profile (%d new)", report["plays"], stored["added"])
    return report


def match_report(bundle: Any, counts: Sequence[PlayCount]) -> dict[str, Any]:
    """How these plays match the bundle's dataset; a dataset with invented names says so instead."""
    if not has_real_names(bundle):
        skips = sum(c.skips for c in counts)
        return {"plays": sum(c.plays for c in counts) + skips, "skipped_short": skips, "dataset": bundle.dataset,
                "matched": 0, "unmatched": [], "note": NO_REAL_NAMES}
    return {**match_counts(bundle, counts).report, "dataset": bundle.dataset}


def stored_report(store: FeedbackStore, bundle: Any, profile: str) -> dict[str, Any]:
    """The whole stored history of ``profile`` matched to ``bundle``'s dataset (what the Music tab shows)."""
    return {**match_report(bundle, store.play_counts(profile)), **store.play_summary(profile)}


__all__ = ["NO_REAL_NAMES", "import_history", "match_report", "play_counts", "stored_report"]
