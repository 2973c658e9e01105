"""The feedback verbs of ``python -m music``: ``recommend --profile`` (with ``--like``/``--dislike``) and
``evaluate-foldin``. Kept beside ``music.mf.feedback`` so ``__main__`` only registers them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from music.data import DATASETS


def recommend_profile(args: argparse.Namespace, bundle: Any, emit: Callable[[Any], None]) -> int:
    """``recommend --profile NAME [--like ID]... [--dislike ID]...``: record the feedback, then the picks."""
    # the store (SQLAlchemy) and the fold-in load only when the verb runs: `python -m music --help` reads this module
    from core.feedback.store import FeedbackError, FeedbackStore
    from music.mf import feedback

    try:
        store = FeedbackStore.open()
        for item in args.like:
            feedback.record(store, bundle, args.profile, item, "like")
        for item in args.dislike:
            feedback.record(store, bundle, args.profile, item, "dislike")
        if args.profile not in store.profiles():
            store.create_profile(args.profile)
        genres = [g.strip() for g in args.genres.split(",")] if args.genres else None
        out = feedback.profile_picks(store, bundle, args.profile, args.top, genres)
    except FeedbackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        emit(out.to_dict())
    else:
        print(f"[{bundle.label}] {args.profile}: {out.source} ({len(out.likes)} likes, {len(out.dislikes)} dislikes"
              + (f", {out.history['matched']} played artists matched" if out.history else "") + ")")
        for k, r in enumerate(out.picks, 1):
            print(f"{k:2d}. {r.title} — {r.artist} [{', '.join(r.genres)}] {r.score:.3f}  ({r.reason})")
    return 0


def cmd_import_history(args: argparse.Namespace) -> int:
    """``import-history FILE... --profile NAME --dataset NAME``: store the plays, print the match report."""
    # the store (SQLAlchemy), the readers and the bundle load only when the verb runs (see ``recommend_profile``)
    from core.feedback.store import FeedbackError, FeedbackStore
    from music.history import HistoryError, read_exports
    from music.history.service import import_history
    from music.mf.train import load_bundle

    bundle = load_bundle(args.dataset)
    try:
        history = read_exports([Path(f) for f in args.files])  # a bad file is refused before the database opens
        store = FeedbackStore.open()
        store.create_profile(args.profile)
        report = import_history(store, args.profile, history, bundle)
    except (FeedbackError, HistoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
        return 0
    print(f"{report['plays']} plays read, {report['skipped_short']} skipped (under 30 s), "
          f"{report.get('skipped_no_artist', 0)} without an artist; {report['added']} new, "
          f"{report['already']} already imported.")
    if report.get("note"):
        print(report["note"])
    else:
        print(f"{report['artists']} artists, {report['matched']} of them in {bundle.label}; not in it "
              f"(most played first): {', '.join(report['unmatched']) or 'none'}")
    return 0


def register_history(subparsers: Any, dataset_type: Callable[[str], str] = str) -> None:
    """Add ``import-history`` to the ``python -m music`` parser."""
    h = subparsers.add_parser("import-history", help="import a Spotify, Last.fm or ListenBrainz export into a profile")
    h.add_argument("files", nargs="+", metavar="FILE", help="export files or the .zip the service sent")
    h.add_argument("--profile", required=True, help="the profile the plays belong to (created if new)")
    h.add_argument("--dataset", default="lastfm-2k", type=dataset_type, help="the trained dataset to match names against")
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=cmd_import_history)


def cmd_evaluate_foldin(args: argparse.Namespace) -> int:
    from music.mf.evaluate_foldin import evaluate_foldin  # the evaluation's stack loads only when it runs

    kwargs = {"download": True} if args.dataset == "movielens-100k" else {}
    out = evaluate_foldin(args.dataset, args.path, seed=args.seed, retrain=not args.no_retrain,
                          fits_dir=args.fits, **kwargs)
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2, default=str) + "\n")
    else:
        for name, m in out.items():
            if name != "meta":
                print(f"{name:12s} ndcg@10={m['ndcg@10']:.4f} {m['ndcg@10_ci95']}  hr@10={m['hr@10']:.4f}")
        for name, b in out["meta"]["bars"].items():
            print(f"{name}: {b['ratio']:.3f} {b['ci95']} (bar {b['bar']}, met: {b['met']})")
    return 0


def register_foldin(subparsers: Any) -> None:
    """Add ``evaluate-foldin`` to the ``python -m music`` parser."""
    e = subparsers.add_parser("evaluate-foldin", help="picks from k likes by fold-in vs popularity, genre, retrain")
    e.add_argument("--dataset", default="lastfm-2k", choices=DATASETS)
    e.add_argument("--path", default=None)
    e.add_argument("--seed", type=int, default=42)
    e.add_argument("--no-retrain", action="store_true", help="skip the full-retrain upper bound")
    e.add_argument("--fits", default=None, metavar="DIR",
                   help="keep the two MF fits (validation and test side) in DIR and reuse them when they match")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_evaluate_foldin)
