"""Fashion search latency and index build time, with scikit-learn's brute-force kNN beside ours.

    python bench/search.py [--queries 50] [--out bench/results/search.json]

Needs the Fashion-MNIST index (`python -m fashion index`, which this script times if it is missing
or if --rebuild is given). Query = one uploaded colour photo → catalog-look preprocessing → encode
(batch 1) → projection → exact top-10, measured end to end at 10k and 70k catalog items; the search
step alone is also timed for core.search.VectorIndex and sklearn NearestNeighbors(algorithm="brute",
metric="cosine"). p50/p95 over --queries queries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RECS_NO_TQDM", "1")

from core.search import VectorIndex  # noqa: E402
from fashion.data import load_tuxpaint_clothes  # noqa: E402
from fashion.train import build_index  # noqa: E402
from sklearn.neighbors import NearestNeighbors  # noqa: E402


def pct(values: list[float]) -> dict[str, float]:
    ms = np.asarray(values) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--rebuild", action="store_true", help="time a full index build (encode 70k + projection)")
    parser.add_argument("--out", default="bench/results/search.json")
    args = parser.parse_args()
    result: dict = {"load_avg": os.getloadavg()}

    start = time.perf_counter()
    index, built = build_index("fashion-mnist", force=args.rebuild)
    if built:
        result["index_build_s"] = round(time.perf_counter() - start, 1)
        result["index_build_items"] = len(index)

    clothes = load_tuxpaint_clothes()
    photos = [clothes.image(i % len(clothes)) for i in range(args.queries)]
    index.embed(photos[:2])  # warm-up
    embed_times, queries = [], []
    for p in photos:
        t = time.perf_counter()
        queries.append(index.embed([p])[0])
        embed_times.append(time.perf_counter() - t)
    result["encode_query"] = pct(embed_times)

    for size in (10_000, len(index)):
        vectors = index.vectors[:size]
        ours = VectorIndex(vectors, index.ids[:size], {"label": index.labels[:size]})
        knn = NearestNeighbors(n_neighbors=10, algorithm="brute", metric="cosine").fit(vectors)
        ours.search(queries[0][None], 10)
        knn.kneighbors(queries[0][None])
        t_ours, t_knn, t_e2e = [], [], []
        for q, e in zip(queries, embed_times):
            t = time.perf_counter()
            rows, _ = ours.search(q[None], 10)
            t_ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            _, knn_rows = knn.kneighbors(q[None])
            t_knn.append(time.perf_counter() - t)
            t_e2e.append(e + t_ours[-1])
            assert set(rows[0]) == set(knn_rows[0]), "both are exact: they must agree"
        result[f"{size}_items"] = {
            "search_vectorindex": pct(t_ours),
            "search_sklearn_brute": pct(t_knn),
            "query_end_to_end": pct(t_e2e),
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
