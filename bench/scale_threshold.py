"""Where exact search stops being fast enough: exact vs FAISS flat vs HNSW per query, by catalog size.

    python bench/scale_threshold.py                       # 10k … 1M items (~40 min on 2 busy cores)
    python bench/scale_threshold.py --sizes 10000,50000   # a quick look
    python bench/scale_threshold.py --table               # print bench/results/scale_threshold.json as Markdown

Why: ``core.search.choose_kind`` answers catalogs below ``EXACT_BELOW`` items exactly and larger ones with
HNSW. That constant is set from this measurement, not extrapolated from one catalog size.

The vectors are bench/scale.py's (the 70,000 real Fashion-MNIST embeddings grown to 1,000,000 along
real nearest-neighbour edges, same seed); a catalog of ``n`` items is the first ``n`` rows, so up to
70,000 items it is the real catalog. ``--queries`` queries made the same way (not in the catalog) are
timed one at a time (batch 1, one thread) against:

- ``numpy_exact``: ``core.search.VectorIndex`` with no FAISS structure (the product's exact path);
- ``faiss_flat``: FAISS ``IndexFlatIP`` through the same ``VectorIndex.search`` call;
- ``faiss_hnsw``: FAISS HNSW at the product's defaults (``core.search.DEFAULT_PARAMS``), through the same
  call; one graph grown in steps (one ``add`` per size), measured when it reaches each size. That is
  cheaper than a build per size, but such a graph is less accurate than one built in one call as the
  product does (0.935 vs 0.990 recall@10 at 200,000 items, ``hnsw_one_call_check`` in the result), so its
  recall is a lower bound; its latency is comparable.

Per query both wall time and the CPU time of the searching thread are recorded. The machine is shared,
so wall time includes waiting for a core; CPU time does not, and the rule below uses it.

The rule: exact search is kept while its p50 CPU time per query is at most ``--budget-ms`` (5 ms, the
per-query budget of the 1M bar). ``threshold`` = the smallest measured size where exact exceeds the
budget while HNSW, at recall@10 ≥ 0.95, is faster; ``EXACT_BELOW`` in core/search.py is set to it.
Writes ``bench/results/scale_threshold.json`` after every size, so a stopped run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RECS_NO_TQDM", "1")

from bench.scale import K, TARGET_RECALL, common_args, grow, recall_per_query, seed_data, table_only  # noqa: E402
from core.metrics import bootstrap_ci, write_result  # noqa: E402
from core.search import DEFAULT_PARAMS, EXACT_BELOW, VectorIndex, factory_string  # noqa: E402
import faiss  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

log = logging.getLogger("bench.scale_threshold")
SIZES = (10_000, 25_000, 50_000, 75_000, 100_000, 150_000, 200_000, 300_000, 500_000, 1_000_000)


def time_queries(fn: Callable[[np.ndarray], np.ndarray], queries: np.ndarray) -> "tuple[np.ndarray, np.ndarray, np.ndarray]":
    """Per query (batch 1): wall seconds, CPU seconds of this thread, and the top-K rows; 3 warm-ups first."""
    for q in queries[:3]:
        fn(q[None])
    wall, cpu = np.empty(len(queries)), np.empty(len(queries))
    rows = np.full((len(queries), K), -1, np.int64)
    for i, q in enumerate(queries):
        t, c = time.perf_counter(), time.thread_time()
        r = fn(q[None])
        cpu[i], wall[i] = time.thread_time() - c, time.perf_counter() - t
        rows[i, : min(K, r.shape[1])] = r[0, :K]
    return wall, cpu, rows


def stats(wall: np.ndarray, cpu: np.ndarray, rows: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    rec = recall_per_query(rows, truth)
    ms = lambda a, p: round(float(np.percentile(a, p)) * 1000, 3)  # noqa: E731
    return {"cpu_p50_ms": ms(cpu, 50), "cpu_p95_ms": ms(cpu, 95), "wall_p50_ms": ms(wall, 50), "wall_p95_ms": ms(wall, 95),
            "recall@10": round(float(rec.mean()), 4), "recall@10_ci95": [round(v, 4) for v in bootstrap_ci(rec)]}


def pick_threshold(sizes: dict[str, dict[str, Any]], budget_ms: float) -> dict[str, Any]:
    """The smallest measured size where exact's p50 CPU time exceeds the budget and HNSW (recall ≥ target) is
    faster; also the largest size exact stayed within the budget, so the reader sees the bracket."""
    within = [int(n) for n, row in sizes.items() if row["numpy_exact"]["cpu_p50_ms"] <= budget_ms]
    over = [int(n) for n, row in sizes.items()
            if row["numpy_exact"]["cpu_p50_ms"] > budget_ms and "faiss_hnsw" in row
            and row["faiss_hnsw"]["recall@10"] >= TARGET_RECALL
            and row["faiss_hnsw"]["cpu_p50_ms"] < row["numpy_exact"]["cpu_p50_ms"]]
    threshold = min(over) if over else None
    return {"threshold": threshold, "largest_exact_within_budget": max([n for n in within if threshold is None or n < threshold],
                                                                         default=None)}


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES), help="catalog sizes (comma-separated)")
    parser.add_argument("--queries", type=int, default=300, help="timed queries per size (default 300)")
    parser.add_argument("--budget-ms", type=float, default=5.0, help="exact search's p50 budget per query (default 5 ms)")
    parser.add_argument("--threads", type=int, default=1, help="FAISS threads for growing the HNSW graph (queries use 1)")
    common_args(parser, "scale_threshold")
    args = parser.parse_args(argv)
    if table_only(args, markdown_table):
        return

    sizes = sorted(int(s) for s in args.sizes.split(","))
    started, load_before = time.time(), os.getloadavg()
    rng = np.random.default_rng(0)  # bench/scale.py's seed and order: the same catalog rows
    n_max = max(sizes)
    real, labels, nn_rows, sigma, _ = seed_data(args.source, n_max)  # as bench/scale.py --n n_max
    base, _ = grow(real, labels, n_max, rng, keep_real=True, neighbours=nn_rows, sigma=sigma)
    # queries from an independent stream, so none of them is one of bench/scale.py's validation or test queries
    queries, _ = grow(real, labels, args.queries, np.random.default_rng(1), keep_real=False,
                      neighbours=nn_rows, sigma=sigma)
    hnsw_params = dict(DEFAULT_PARAMS["hnsw"])
    result: dict[str, Any] = {
        "dim": int(base.shape[1]), "k": K, "queries": args.queries, "budget_ms": args.budget_ms,
        "data": "bench/scale.py's vectors (70,000 real Fashion-MNIST embeddings, then rows interpolated along real "
                "nearest-neighbour edges plus noise); a catalog of n items is the first n rows",
        "rule": (f"exact while its p50 CPU time per query (batch 1, one thread) is ≤ {args.budget_ms:g} ms; "
                 f"threshold = the smallest measured size where exact exceeds it and HNSW at recall@10 ≥ "
                 f"{TARGET_RECALL} is faster; core.search.EXACT_BELOW is set to it"),
        "hnsw_params": hnsw_params,
        "threads": {"hnsw_build": args.threads, "query": 1},
        "load_avg_before": [round(x, 2) for x in load_before],
        "sizes": {},
    }
    hnsw = faiss.index_factory(base.shape[1], factory_string("hnsw", hnsw_params), faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = int(hnsw_params["efConstruction"])
    grown, hnsw_build_s = 0, 0.0
    for size in sizes:
        catalog = base[:size]
        ix = VectorIndex(catalog, [str(i) for i in range(size)], normalize=False)
        with threadpool_limits(1):
            faiss.omp_set_num_threads(1)
            truth, _ = ix.search(queries, K, exact=True, block=64)
            row: dict[str, Any] = {"load_avg": [round(x, 2) for x in os.getloadavg()]}
            row["numpy_exact"] = stats(*time_queries(lambda q: ix.search(q, K)[0], queries), truth)
            flat = faiss.IndexFlatIP(catalog.shape[1])
            flat.add(catalog)
            ix.faiss, ix.info = flat, {"kind": "flat", "params": {}}
            row["faiss_flat"] = stats(*time_queries(lambda q: ix.search(q, K)[0], queries), truth)
            ix.faiss = None
            del flat
        faiss.omp_set_num_threads(args.threads)
        t = time.perf_counter()
        hnsw.add(base[grown:size])
        hnsw_build_s += time.perf_counter() - t
        grown = size
        faiss.omp_set_num_threads(1)
        ix.faiss, ix.info = hnsw, {"kind": "hnsw", "params": hnsw_params}
        with threadpool_limits(1):
            row["faiss_hnsw"] = stats(*time_queries(lambda q: ix.search(q, K)[0], queries), truth)
        row["faiss_hnsw"]["build_s_cumulative"] = round(hnsw_build_s, 1)
        ix.faiss = None
        result["sizes"][str(size)] = row
        result.update(pick_threshold(result["sizes"], args.budget_ms))
        result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
        result["under_load"] = max(result["load_avg_before"][0], result["load_avg_after"][0]) > 1.5
        result["minutes"] = round((time.time() - started) / 60, 1)
        write_result(args.out, result)
        log.info("%d items: exact %.3f ms, flat %.3f ms, hnsw %.3f ms (recall %.3f) CPU p50", size,
                 row["numpy_exact"]["cpu_p50_ms"], row["faiss_flat"]["cpu_p50_ms"], row["faiss_hnsw"]["cpu_p50_ms"],
                 row["faiss_hnsw"]["recall@10"])
    result["exact_below_in_code"] = EXACT_BELOW
    path = write_result(args.out, result)
    print(json.dumps({key: result[key] for key in ("threshold", "largest_exact_within_budget", "rule")}, indent=2))
    print(f"wrote {path}", file=sys.stderr)


def markdown_table(result: dict[str, Any]) -> str:
    """The result as the Markdown table docs/scale.md shows (the README's block is scripts/readme_numbers.py's)."""
    lines = ["| items | exact (numpy) p50 ms | FAISS flat p50 ms | HNSW p50 ms | HNSW recall@10 |", "|---|---|---|---|---|"]
    for n, row in result["sizes"].items():
        lines.append(f"| {int(n):,} | {row['numpy_exact']['cpu_p50_ms']:.2f} | {row['faiss_flat']['cpu_p50_ms']:.2f} | "
                     f"{row['faiss_hnsw']['cpu_p50_ms']:.2f} | {row['faiss_hnsw']['recall@10']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
