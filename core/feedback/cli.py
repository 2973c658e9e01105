"""``python -m core feedback stats|export|forget [--profile NAME] [--json]``: look after the feedback store.

``stats`` counts events per tab and signal; ``export`` prints everything stored (JSON); ``forget`` deletes
a profile with all its events and stored images. The database is ``RECS_DATABASE_URL`` or the SQLite file
under ``data/`` (``--database URL`` overrides both).
"""

from __future__ import annotations

import argparse
import json
import sys

from core.feedback.store import FeedbackError, FeedbackStore


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register the ``feedback`` verb on ``python -m core``'s sub-parsers."""
    p = sub.add_parser("feedback", help="feedback store: stats, export, forget a profile",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["stats", "export", "forget"])
    p.add_argument("--profile", default=None, help="one profile (required for forget)")
    p.add_argument("--database", default=None, help="SQLAlchemy URL (default: RECS_DATABASE_URL or data/feedback.sqlite3)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "forget" and not args.profile:
            raise FeedbackError("forget needs --profile NAME")
        store = FeedbackStore.open(args.database)
        if args.action == "stats":
            result = store.stats(args.profile)
        elif args.action == "export":
            result = store.export(args.profile)
        else:
            result = {"profile": args.profile, "deleted": store.forget(args.profile)}
    except FeedbackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json or args.action == "export":
        print(json.dumps(result, indent=2, ensure_ascii=False))
    elif args.action == "stats":
        print(f"{result['events']} events, {result['profiles']} profile(s), {result['tagged_images']} tagged images, "
              f"{result['saved']} saved items")
        for tab, signals in result["by_tab"].items():
            print(f"  {tab:11s} " + "  ".join(f"{sig}={n}" for sig, n in signals.items()))
    else:
        print(f"forgot {args.profile}: " + ", ".join(f"{n} {what}" for what, n in result["deleted"].items()))
    return 0
