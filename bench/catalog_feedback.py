"""Do likes help on a person's own catalog? A simulated user on the labelled real photos.

    python bench/catalog_feedback.py           # choose the weights on dev, report once on test
    → bench/results/catalog_feedback.json

The photos and the two builds per split (untitled, titled) are those of ``bench/catalog_quality.py``. One
simulated session per query:

1. the first screen is the plain search's top 5 (the query photo itself is never a result);
2. the user likes the hits that share the query's label and dislikes the others;
3. the next screen is the top 5 of the items not yet seen, searched again with those likes and dislikes
   (``BuiltCatalog.query_scores``, the scoring ``search`` and ``similar_items`` use);
4. score: precision@5 of that next screen (the share with the query's label), beside the plain search's
   next 5 unseen items (ranks 6-10) for the same query.

Queries: *photo* (each photo queries the rest: photo search and "more like this" score the same vectors),
*both* (the label word and a photo of that label, words weight 0.5, untitled catalog) and *words* (the label
word, untitled and titled catalogs). A query counts only when an unseen item of its label is left after the
first screen. Rocchio's β and γ (α = 1) are chosen on dev's photo and both queries, then the word search's
image share on dev's word queries; test is scored once with those, with 95 % bootstrap intervals over queries
and of the paired difference.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.catalog_quality import build_split  # noqa: E402  (sets a private RECS_MODELS_DIR)
from core import artifacts  # noqa: E402
from core.catalog import store  # noqa: E402
from core.feedback.rocchio import RocchioWeights  # noqa: E402
from core.metrics import bootstrap_ci, write_result  # noqa: E402

log = logging.getLogger("catalog_feedback")
SCREEN = 5
BETA_GRID = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
GAMMA_GRID = (0.0, 0.15, 0.25, 0.5, 1.0)
WORD_IMAGE_GRID = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
IMAGE_KINDS = ("photo", "both")
WORD_KINDS = ("words_untitled", "words_titled")


@dataclass
class Session:
    """One simulated query: its catalog, label, query parts and what the first screen showed."""

    kind: str
    catalog: store.BuiltCatalog
    label: str
    text_scores: Optional[np.ndarray]
    query: Optional[np.ndarray]
    blocked: np.ndarray  # rows never shown: the query photo itself, then the first screen
    liked: np.ndarray
    disliked: np.ndarray
    plain: np.ndarray  # the plain scores, for the baseline's next screen
    row_labels: np.ndarray  # the label of every catalog row


def top_rows(scores: np.ndarray, blocked: np.ndarray, k: int = SCREEN) -> np.ndarray:
    masked = np.where(blocked, -np.inf, scores)
    return np.argsort(-masked, kind="stable")[:k]


def sessions_of(kind: str, catalog: store.BuiltCatalog, labels: dict[str, str]) -> list[Session]:
    """Every query of ``kind`` whose label still has an unseen item after the first screen."""
    row_label = np.array([labels[i] for i in catalog.ids])
    if kind in IMAGE_KINDS:
        queries = [(row_label[r], row_label[r] if kind == "both" else None, r) for r in range(len(catalog))]
    else:
        queries = [(label, label, None) for label in sorted(set(row_label))]
    word_cache: dict[str, np.ndarray] = {}
    out = []
    for label, text, row in queries:
        if text is not None and text not in word_cache:
            word_cache[text] = catalog.word_scores(text)[0]
        text_scores = word_cache.get(text) if text is not None else None
        query = catalog.index.vectors[row] if row is not None else None
        plain = catalog.query_scores(text_scores, query, alpha=0.5)
        blocked = np.zeros(len(catalog), bool)
        if row is not None:
            blocked[row] = True
        first = top_rows(plain, blocked)
        blocked[first] = True
        if not ((row_label == label) & ~blocked).any():
            continue
        same = row_label[first] == label
        out.append(Session(kind, catalog, label, text_scores, query, blocked, first[same], first[~same], plain,
                           row_label))
    return out


def next_screen_precision(s: Session, weights: Optional[store.FeedbackWeights]) -> float:
    """Precision@5 of the next screen of unseen items, with the feedback (or plain when ``weights`` is None)."""
    if weights is None:
        scores = s.plain
    else:
        scores = s.catalog.query_scores(s.text_scores, s.query, alpha=0.5, liked_rows=s.liked,
                                        disliked_rows=s.disliked, feedback=weights)
    return float((s.row_labels[top_rows(scores, s.blocked)] == s.label).sum()) / SCREEN


def mean_precision(sessions: list[Session], weights: Optional[store.FeedbackWeights]) -> float:
    return float(np.mean([next_screen_precision(s, weights) for s in sessions])) if sessions else float("nan")


def choose(dev: dict[str, list[Session]]) -> tuple[store.FeedbackWeights, dict]:
    """β, γ on dev's image queries, then the word search's image share on dev's word queries."""
    image = [s for kind in IMAGE_KINDS for s in dev[kind]]
    grid = {(b, g): mean_precision(image, store.FeedbackWeights(RocchioWeights(1.0, b, g), 0.0))
            for b in BETA_GRID for g in GAMMA_GRID}
    default = store.FEEDBACK.rocchio
    beta, gamma = max(grid, key=lambda bg: (round(grid[bg], 6), -abs(bg[0] - default.beta), -abs(bg[1] - default.gamma)))
    words = [s for kind in WORD_KINDS for s in dev[kind]]
    rocchio_weights = RocchioWeights(1.0, beta, gamma)
    word_grid = {w: mean_precision(words, store.FeedbackWeights(rocchio_weights, w)) for w in WORD_IMAGE_GRID}
    share = max(word_grid, key=lambda w: (round(word_grid[w], 6), -w))
    return store.FeedbackWeights(rocchio_weights, share), {
        "beta": beta, "gamma": gamma, "word_image": share,
        "grid_image_queries": {f"beta {b}, gamma {g}": round(v, 4) for (b, g), v in grid.items()},
        "grid_word_image": {str(w): round(v, 4) for w, v in word_grid.items()},
        "no_feedback": {"image_queries": round(mean_precision(image, None), 4),
                        "word_queries": round(mean_precision(words, None), 4)}}


def report(sessions: list[Session], weights: store.FeedbackWeights) -> dict:
    """Per-query precision with and without the feedback, their intervals and the paired difference's."""
    plain = np.array([next_screen_precision(s, None) for s in sessions])
    moved = np.array([next_screen_precision(s, weights) for s in sessions])

    def summary(values: np.ndarray) -> dict:
        return {"mean": round(float(values.mean()), 4), "ci95": [round(v, 4) for v in bootstrap_ci(values)]}

    return {"queries": len(sessions), "no_feedback": summary(plain), "feedback": summary(moved),
            "difference": summary(moved - plain),
            "likes_per_query": round(float(np.mean([len(s.liked) for s in sessions])), 2)}


def split_sessions(split: str, work: Path) -> dict[str, list[Session]]:
    labels, built, _, _ = build_split(split, work)
    out = {}
    for kind, catalog in (("photo", "untitled"), ("both", "untitled"), ("words_untitled", "untitled"),
                          ("words_titled", "titled")):
        out[kind] = sessions_of(kind, built[catalog], labels)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="catalog_feedback")
    parser.add_argument("--dev-only", action="store_true", help="choose on dev, print the grids, never touch test")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    work = Path(tempfile.mkdtemp(prefix="catalog-feedback-"))
    dev = split_sessions("dev", work)
    weights, chosen = choose(dev)
    if args.dev_only:
        print(json.dumps({"queries": {k: len(v) for k, v in dev.items()}, **chosen}, indent=1))
        return 0
    test = split_sessions("test", work)
    by_kind = {kind: report(sessions, weights) for kind, sessions in test.items()}
    result = {
        "protocol": ("bench/checksets/catalog_{dev,test}.csv; first screen = plain top 5; likes = its hits with the "
                     "query's label, dislikes = the rest; precision@5 of the next 5 unseen items; chosen on dev"),
        "dev": {"queries": {k: len(v) for k, v in dev.items()}, "chosen": chosen},
        "test": {**by_kind, "all": report([s for v in test.values() for s in v], weights)},
        "environment": artifacts.environment(),
    }
    write_result(args.out, result)
    for kind, r in result["test"].items():
        print(f"{kind}: next-screen P@5 {r['no_feedback']['mean']:.3f} {r['no_feedback']['ci95']} → "
              f"{r['feedback']['mean']:.3f} {r['feedback']['ci95']} with likes ({r['queries']} queries)")
    print(f"chosen on dev: beta {chosen['beta']}, gamma {chosen['gamma']}, word image share {chosen['word_image']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
