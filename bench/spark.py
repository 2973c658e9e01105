"""What the Spark engines cost and deliver here: catalog encoding time, and ALS quality beside implicit's ALS.

    python bench/spark.py encode [--mnist 3000] [--master local[2]]
        → bench/results/spark_encode.json: seconds for Tux Paint clothes (48 colour images at 224 px) and the
          first N Fashion-MNIST items (96 px), in process vs on Spark (session start counted apart), and the
          worst cosine between the two engines' vectors.
    python bench/spark.py als --dataset lastfm-2k --path /work/shared/data/lastfm-2k [--master local[2]]
    python bench/spark.py als --dataset movielens-100k
        → bench/results/spark_als_<dataset>.json: Spark MLlib ALS vs implicit's ALS on the music tab's protocol
          (per-user 80/20 holdout of users with ≥ 5 items, full ranking over unseen items; parameters chosen on
          a validation split carved from train the same way; the same number of candidates and iterations for
          both), NDCG@10 with 95 % bootstrap intervals over users and the paired ratio Spark / implicit.

Both read values as log(1 + weight), so both solvers see confidence 1 + α·log(1 + plays) as the music tab's
implicit ALS does. Times on a shared 2-core machine are noisy; the JSON records the load average.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.metrics import ratio_ci, summarize, write_result  # noqa: E402
from core.encoders import l2_normalize  # noqa: E402
from core.spark import spark_session, stop_session  # noqa: E402
from fashion.data import load_catalog, load_fashion_mnist  # noqa: E402
from fashion.model import catalog_features  # noqa: E402
from fashion.train import default_config, spark_features  # noqa: E402
from scipy import sparse  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402
from music.data import load_dataset, user_holdout_split  # noqa: E402
from music.mf.spark_als import holdout_ndcg, train_als, tune_als  # noqa: E402

log = logging.getLogger("bench.spark")

#: Same budget for both solvers: 4 candidates at rank 64, 15 iterations (all a shared 2-core machine affords:
#: one Spark fit on Last.fm-2K took minutes under load). implicit's candidates are the music tab's own
#: (music.evaluate.ALS_GRID at 64 factors); Spark's λ is scaled by each row's count (ALS-WR), hence its smaller
#: values (0.01 × ~50 items per Last.fm user ≈ implicit's 0.5).
IMPLICIT_GRID = [{"factors": 64, "regularization": r, "alpha": a} for r in (0.05, 1.0) for a in (1.0, 5.0)]
SPARK_GRID = [{"rank": 64, "reg": r, "alpha": a} for r in (0.01, 0.05) for a in (1.0, 5.0)]
ITERATIONS = 15


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def bench_encode(master: str, mnist: int) -> dict[str, Any]:
    catalogs = {"tuxpaint-clothes": load_catalog("tuxpaint-clothes"),
                f"fashion-mnist-first-{mnist}": load_fashion_mnist().subset(np.arange(mnist))}
    started = time.perf_counter()
    spark = spark_session(master, ui=False)
    session_s = time.perf_counter() - started
    rows: dict[str, Any] = {}
    try:
        for name, catalog in catalogs.items():
            config = default_config(catalog.grey28)
            encoder = config.encoder()
            encoder.warm_up()  # ONNX export/load is not part of either timing
            t = time.perf_counter()
            local = catalog_features(catalog, encoder)
            local_s = time.perf_counter() - t
            stats: dict[str, Any] = {}
            t = time.perf_counter()
            remote = spark_features(catalog, config, master, stats=stats)
            spark_s = time.perf_counter() - t
            cosine = (l2_normalize(local) * l2_normalize(remote)).sum(axis=1)
            rows[name] = {"items": len(catalog), "input_px": encoder.input_size, "in_process_s": round(local_s, 1),
                          "spark_s": round(spark_s, 1), "spark_stats": stats,
                          "min_cosine": float(cosine.min()), "load_avg": _load()}
            log.info("%s: %s", name, rows[name])
    finally:
        stop_session(spark)
    return {"master": master, "session_start_s": round(session_s, 1), "catalogs": rows,
            "note": "under load: 2 cores shared by several jobs; Spark time excludes the session start"}


def _implicit_fit(u, i, v, n_users, n_items, *, factors, regularization, alpha, seed=0):
    # implicit is a benchmark-only peer (requirements-bench.txt), needed only by this step
    from implicit.cpu.als import AlternatingLeastSquares

    conf = sparse.csr_matrix((1.0 + alpha * v, (u, i)), shape=(n_users, n_items), dtype=np.float32)
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, iterations=ITERATIONS,
                                        random_state=seed, num_threads=0, calculate_training_loss=False)
        model.fit(conf, show_progress=False)
    return np.asarray(model.user_factors, np.float32), np.asarray(model.item_factors, np.float32)


def bench_als(dataset: str, path: str | None, master: str, seed: int = 42, tune: bool = True) -> dict[str, Any]:
    """Both solvers tuned on validation (``tune``) or, without, each at its first grid candidate."""
    data = load_dataset(dataset, path)
    split = user_holdout_split(data.interactions, test_fraction=0.2, min_items=5, seed=seed)
    inner = user_holdout_split(split.train, test_fraction=0.2, min_items=5, seed=seed + 1)
    n_users, n_items = data.n_users, data.n_items

    def triples(frame):
        u, i, w = data.codes(frame)
        return u, i, np.log1p(w).astype(np.float32)

    train, test = triples(split.train), triples(split.test)
    inner_train, inner_val = triples(inner.train), triples(inner.test)
    out: dict[str, Any] = {"dataset": dataset, "users": n_users, "items": n_items,
                           "interactions": int(len(data.interactions)), "master": master,
                           "protocol": f"per-user 80/20 holdout (users with >=5 items, seed {seed}); "
                                       + (f"parameters chosen on a validation split of train; {len(SPARK_GRID)} "
                                          "candidates" if tune else "no tuning: each solver's first candidate")
                                       + f", {ITERATIONS} iterations; values log1p(weight)", "tuned": tune}
    # implicit's ALS
    table = []
    for p in IMPLICIT_GRID if tune else []:
        t = time.perf_counter()
        U, V = _implicit_fit(*inner_train, n_users, n_items, **p)
        table.append({**p, "val_ndcg@10": round(float(holdout_ndcg(U, V, inner_train[:2], inner_val[:2]).mean()), 5),
                      "seconds": round(time.perf_counter() - t, 1)})
        log.info("implicit %s", table[-1])
    best_implicit = {k: v for k, v in max(table, key=lambda r: r["val_ndcg@10"]).items()
                     if k not in ("val_ndcg@10", "seconds")} if tune else dict(IMPLICIT_GRID[0])
    t = time.perf_counter()
    U, V = _implicit_fit(*train, n_users, n_items, **best_implicit)
    implicit_fit_s = time.perf_counter() - t
    implicit_ndcg = holdout_ndcg(U, V, train[:2], test[:2])
    out["implicit_als"] = {"params": best_implicit, "tuning": table, "fit_s": round(implicit_fit_s, 1),
                           "ndcg@10": summarize(implicit_ndcg), "threads": "implicit's OpenMP, all cores"}
    # Spark MLlib ALS
    started = time.perf_counter()
    spark = spark_session(master, ui=False)
    out["spark_session_start_s"] = round(time.perf_counter() - started, 1)
    try:
        best_spark, spark_table = (tune_als(inner_train, inner_val[:2], n_users, n_items, SPARK_GRID, implicit=True,
                                            spark=spark, max_iter=ITERATIONS) if tune
                                   else ({"max_iter": ITERATIONS, **SPARK_GRID[0]}, []))
        t = time.perf_counter()
        U, V = train_als(*train, n_users, n_items, implicit=True, seed=0, spark=spark, **best_spark)
        spark_fit_s = time.perf_counter() - t
    finally:
        stop_session(spark)
    spark_ndcg = holdout_ndcg(U, V, train[:2], test[:2])
    out["spark_als"] = {"params": best_spark, "tuning": spark_table, "fit_s": round(spark_fit_s, 1),
                        "ndcg@10": summarize(spark_ndcg)}
    ratio = float(spark_ndcg.mean() / implicit_ndcg.mean())
    out["spark_over_implicit_ndcg@10"] = {"ratio": ratio, "ci95": ratio_ci(spark_ndcg, implicit_ndcg),
                                         "bar": 0.9, "met": ratio >= 0.9}
    out["load_avg"] = _load()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("encode")
    p.add_argument("--mnist", type=int, default=3000)
    p.add_argument("--master", default="local[2]")
    p = sub.add_parser("als")
    p.add_argument("--dataset", default="lastfm-2k")
    p.add_argument("--path", default=None)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--no-tune", action="store_true", help="one candidate each (the grids' first), no validation runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.what == "encode":
        result = bench_encode(args.master, args.mnist)
        write_result("spark_encode", result)
    else:
        result = bench_als(args.dataset, args.path, args.master, tune=not args.no_tune)
        write_result(f"spark_als_{args.dataset}", result)
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
