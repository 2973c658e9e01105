"""``python -m core catalog add|list|show|remove``: users' own catalogs from the command line.

    python -m core catalog add NAME SOURCE [--meta CSV] [--replace | --update] [--json]
    python -m core catalog add tuxpaint shipped:tuxpaint --update    # a shipped catalog, built the same way
    python -m core catalog list [--json]
    python -m core catalog show NAME [--json]
    python -m core catalog remove NAME [--json]

SOURCE is a folder of images (labels from sub-folders), a CSV with an image column, a Kaggle "Fashion Product
Images" folder (``styles.csv`` + ``images/``), a ``.zip`` of any of these, or ``shipped:NAME`` for a catalog that
ships with the app (``tuxpaint``, ``tuxpaint-clothes``), which keeps its own name. The build runs here, in this
process, with a progress bar; the app's Data page queues the same build for a worker instead.
"""

from __future__ import annotations

import argparse
import json

from core.artifacts import ArtifactError
from core.catalog.jobs import add_catalog, summary
from core.catalog.sources import CatalogError
from core.catalog.store import folder_of, list_catalogs, remove_catalog
from core.catalog.build import read_manifest
from core.cli import fail
from core.images import ImageError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register the ``catalog`` verb on ``python -m core``'s sub-parsers."""
    p = sub.add_parser("catalog", help="your own catalogs: add, list, show, remove",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="action", required=True)
    add = verbs.add_parser("add", help="build a catalog from a folder, CSV, Kaggle folder or zip")
    add.add_argument("name", help="1-64 letters, digits, '-' or '_'")
    add.add_argument("source", help="a folder, a CSV, a Kaggle folder, a .zip, or shipped:NAME")
    add.add_argument("--meta", default=None, help="a CSV of titles/categories for a folder's images")
    how = add.add_mutually_exclusive_group()
    how.add_argument("--replace", action="store_true", help="rebuild a catalog that already exists")
    how.add_argument("--update", action="store_true",
                     help="build only when missing or when its source or image encoder changed")
    for verb in ("list", "show", "remove"):
        q = verbs.add_parser(verb)
        if verb != "list":
            q.add_argument("name")
    for q in verbs.choices.values():
        q.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        result = _act(args)
    except (CatalogError, ArtifactError, ImageError, OSError) as exc:
        return fail(str(exc))
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        _print(args.action, result)
    return 0


def _act(args: argparse.Namespace) -> object:
    if args.action == "add":
        return add_catalog(args.name, args.source, meta=args.meta, replace=args.replace, update=args.update)
    if args.action == "list":
        return [summary(m) if "error" not in m else m for m in list_catalogs()]
    if args.action == "show":
        folder = folder_of(args.name)
        if not folder.is_dir():
            raise CatalogError(f"There is no catalog named {args.name}.")
        return read_manifest(folder)
    remove_catalog(args.name)
    return {"name": args.name, "removed": True}


def _print(action: str, result: object) -> None:
    if action == "add":
        r = result  # type: ignore[assignment]
        if not r.get("built", True):
            print(f"{r['name']} is up to date: {r['items']:,} images, built {r['created']}")
            return
        print(f"built {r['name']}: {r['items']:,} images in {r['seconds']:.1f} s ({r['images_per_s']} images/s), "
              f"{r['skipped']['count']} skipped, {r['duplicate_groups']} near-duplicate groups")
        for entry in r["skipped"]["files"][:20]:
            print(f"  skipped {entry['what']}: {entry['reason']}")
    elif action == "list":
        for r in result:  # type: ignore[union-attr]
            if "error" in r:
                print(f"{r['name']:24s} damaged: {r['error']}")
            else:
                print(f"{r['name']:24s} {r['items']:7,} images  {r['created']}  {r['source'].get('kind', '')}"
                      + ("  (shipped)" if r.get("shipped") else ""))
    elif action == "show":
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(f"removed {result['name']}")  # type: ignore[index]
