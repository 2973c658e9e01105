"""Does feedback help? Second-page precision@10 with and without a simulated user's likes and dislikes.

Protocol (``python -m fashion evaluate-feedback``), on the shipped Fashion-MNIST index:

1. A query is a Fashion-MNIST test image; the catalog is the 60,000 train images (as in ``evaluate``).
2. The first page is the query's top 10. The simulated user likes every item of the query's class on it
   and dislikes the others (a user who knows what kind of garment they want).
3. The second page is the next 10 items not already shown: ranks 11-20 of the same query
   (``without_feedback``), or the top 10 the tab's re-ranker gives with the page's likes and dislikes,
   leaving out the 10 already shown (``with_feedback``; the Rocchio query alone is reported beside it as
   ``rocchio``).
4. precision@10 of the second page (an item is relevant when it has the query's class), per query, with a
   95 % bootstrap interval over queries (``core.metrics``), and the paired gain with its interval.

The Rocchio weights, then the re-ranker (Rocchio itself, per-example fusion or a linear SVM re-ranking the
Rocchio query's candidate pool; 35 settings each, ``core.feedback.relevance.choose_method``) are chosen on
validation queries drawn from the train split, never on test: 3,000
train items are held out, the index's projection recipe is refitted on the other 57,000, and the held-out
items are searched against those (``held_out_validation``): queries the projection never saw, as test
queries are for the shipped index.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import numpy as np

from core.feedback.relevance import PAGE, choose_method, choose_weights, method_pages, precision_summary, second_pages
from core.evaluation import summarize_row
from core.metrics import precision_at_k
from fashion.data import load_fashion_mnist
from fashion.evaluate import cached_features
from fashion.model import apply_projection
from fashion.train import ProjectionConfig, open_index, train_projection

log = logging.getLogger(__name__)

#: The bar the feature must clear: second-page precision@10 with feedback ≥ without + this.
BAR = 0.05


def evaluate_feedback(
    vectors: np.ndarray,
    labels: Sequence[str],
    split: Sequence[str],
    *,
    max_queries: Optional[int] = None,
    validation: Optional[tuple[np.ndarray, np.ndarray, np.ndarray, str]] = None,
    val_queries: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The whole protocol on arrays (index vectors, class labels, "train"/"test" per row); returns the report.

    ``validation`` = (vectors, catalog rows, query rows, description) to choose the weights on; without it,
    ``val_queries`` train items are searched against the rest of train in the same vectors.
    """
    split = np.asarray(split)
    train_rows = np.nonzero(split == "train")[0]
    test_rows = np.nonzero(split == "test")[0]
    if len(train_rows) < 2 * PAGE + 1 or not len(test_rows):
        raise ValueError("the feedback evaluation needs a train split (the catalog) and a test split (the queries)")
    if max_queries is not None and max_queries < len(test_rows):
        test_rows = np.sort(np.random.default_rng(seed).choice(test_rows, max_queries, replace=False))
    if validation is None:
        queries = np.random.default_rng(seed).choice(train_rows, min(val_queries, len(train_rows)), replace=False)
        validation = (vectors, train_rows, queries, "train items searched against the rest of train")
    weights, chosen = choose_weights(validation[0], labels, validation[1], validation[2], validation[3])
    rocchio_val = next(g["precision@10"] for g in chosen["grid"]
                       if (g["beta"], g["gamma"]) == (weights.beta, weights.gamma))
    method, candidates = choose_method(validation[0], labels, validation[1], validation[2], weights, rocchio_val)
    chosen["candidates"] = candidates
    pages = second_pages(vectors, labels, train_rows, test_rows, [weights])
    first = precision_at_k(pages["first"], PAGE)
    without = precision_at_k(pages["without"], PAGE)
    rocchio_fb = precision_at_k(pages["with:0"], PAGE)
    if method.kind == "rocchio":
        with_fb = rocchio_fb
    else:
        with_fb = precision_at_k(method_pages(vectors, labels, train_rows, test_rows, weights, [method])[0], PAGE)

    def gain_of(values: np.ndarray, base: np.ndarray = without) -> dict[str, Any]:
        """Paired difference per query, its mean and 95 % interval (``core.evaluation``)."""
        s = summarize_row({"gain": values - base}, seed=seed).metrics["gain"]
        return {"mean": round(s.mean, 4), "ci95": [round(x, 4) for x in s.ci95]}

    gain = with_fb - without
    result = {
        "with_feedback": {**precision_summary(with_fb, seed), "method": method.describe()},
        "without_feedback": precision_summary(without, seed),
        "rocchio": {**precision_summary(rocchio_fb, seed), "gain": gain_of(rocchio_fb)},
        "first_page": precision_summary(first, seed),
        "gain": gain_of(with_fb),
        "versus_rocchio": gain_of(with_fb, rocchio_fb),
        "bar": {"with_minus_without_at_least": BAR, "met": bool(gain.mean() >= BAR)},
        "method": method.describe(),
        "weights": {"alpha": weights.alpha, "beta": weights.beta, "gamma": weights.gamma},
        "validation": chosen,
        "protocol": "Fashion-MNIST test queries vs the train catalog; first page = top 10; simulated user likes the "
                    "query's class on it and dislikes the rest; second page = next 10 unseen items, ranked by the "
                    "same query (without), the Rocchio query (rocchio) or the chosen re-ranker of the Rocchio "
                    "query's 1,000 best candidates (with); Rocchio weights, re-ranker and its constants chosen on "
                    "validation queries from train, 35 settings per re-ranker",
    }
    log.info("second-page precision@10: with %.4f, without %.4f", with_fb.mean(), without.mean())
    return result


def held_out_validation(index, n_queries: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Validation vectors in which the queries are unseen, like test queries are for the shipped index.

    The shipped projection was fitted on every train item, so train queries sit unnaturally close to their
    class and would choose weights for an easier task. Here ``n_queries`` train items are held out, the same
    projection recipe is fitted on the other train items only, and the held-out items are the queries.
    """
    catalog = load_fashion_mnist()
    if list(catalog.ids) != list(index.ids):
        raise ValueError("the index does not list the Fashion-MNIST catalog in its own order; rebuild it")
    features = cached_features(catalog, index.encoder_config)
    labels = np.asarray(catalog.labels)
    train_rows = np.nonzero(np.asarray(catalog.split) == "train")[0]
    queries = np.sort(np.random.default_rng(seed).choice(train_rows, n_queries, replace=False))
    fit_rows = np.setdiff1d(train_rows, queries)
    weights, _ = train_projection(features[fit_rows], labels[fit_rows].tolist(), ProjectionConfig())
    source = (f"{n_queries} Fashion-MNIST train items held out from a projection fitted (same recipe) on the other "
              f"{len(fit_rows)}, searched against those")
    return apply_projection(weights, features), fit_rows, queries, source


def evaluate_shipped(max_queries: Optional[int] = None, val_queries: int = 3000) -> dict[str, Any]:
    """Run the protocol on the built Fashion-MNIST index (``python -m fashion index``)."""
    index = open_index("fashion-mnist")
    split = [i.split("-", 1)[0] for i in index.ids]  # Fashion-MNIST ids are train-NNNNN / test-NNNNN
    validation = held_out_validation(index, val_queries) if index.projection is not None else None
    result = evaluate_feedback(index.vectors, index.labels, split, max_queries=max_queries, validation=validation,
                               val_queries=val_queries)
    result["index"] = {"catalog": index.catalog, "items": len(index), "encoder": index.manifest.get("encoder"),
                       "projection": index.projection is not None, "created": index.manifest.get("created")}
    return result
