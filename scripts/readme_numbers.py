"""Regenerate the README's (and docs/'s) number tables from the result files under ``bench/results/``.

Why: a number copied into a README by hand drifts from the run that produced it. Every evaluation and
benchmark writes its JSON with ``core.metrics.write_result`` (``bench/results/<name>.json``, committed); this
script rewrites each block of the README that is fenced by marker comments

    <!-- numbers:fashion_evaluate -->
    ...generated table, never edited by hand...
    <!-- /numbers -->

from the result file of the same name. ``make readme-numbers`` runs it; ``--check`` exits 1 when the README is
out of date (for CI). The same blocks work in ``docs/*.md``. Running it twice changes nothing the second time.

Adding a block for a new result:

1. make the evaluation write ``bench/results/<name>.json`` with ``core.metrics.write_result(name, obj)``;
2. write a renderer ``def render_<something>(result: dict, name: str) -> str`` returning Markdown, and register
   it in ``RENDERERS`` under a pattern matching ``<name>`` (``fnmatch`` style: ``music_evaluate_next_*``);
3. put ``<!-- numbers:<name> -->`` and ``<!-- /numbers -->`` in the README where the table belongs, run
   ``make readme-numbers`` and commit the README with the JSON.

A block whose result file does not exist yet, or whose result does not have the shape its renderer expects,
is left exactly as it is and logged, so blocks can be placed before their evaluation first runs. Numbers
with a ``ci95`` interval are shown as ``0.905 [0.899, 0.911]``; results from small sets say so.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("readme_numbers")

BLOCK = re.compile(r"(<!-- numbers:(?P<name>[A-Za-z0-9_.\-]+) -->\n)(?P<body>.*?)(<!-- /numbers -->)", re.S)

Renderer = Callable[[dict, str], str]


class ShapeError(Exception):
    """A result file does not have the fields its renderer reads (an older or newer format)."""


# ----------------------------------------------------------------------------------------------
# formatting helpers


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: fixed decimals for floats, thousands separators for ints, '—' for missing."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "—" if value != value else f"{value:.{digits}f}"
    return str(value)


def with_ci(value: Any, ci: Optional[list] = None, digits: int = 3) -> str:
    """``mean [lo, hi]``; accepts a bare number, or ``{"mean", "ci95"}`` as ``core.metrics.summarize`` writes."""
    if isinstance(value, dict) and "mean" in value:
        value, ci = value["mean"], value.get("ci95", ci)
    if ci and len(ci) == 2 and None not in ci:
        return f"{fmt(value, digits)} [{fmt(float(ci[0]), digits)}, {fmt(float(ci[1]), digits)}]"
    return fmt(value, digits)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def need(obj: Any, *keys: str) -> Any:
    """``obj[k1][k2]...`` or ShapeError naming the missing key."""
    for k in keys:
        if not isinstance(obj, dict) or k not in obj:
            raise ShapeError(f"missing {'/'.join(keys)}")
        obj = obj[k]
    return obj


def methods_table(methods: dict[str, dict], columns: list[str], labels: Optional[dict[str, str]] = None,
                  intervals: Optional[dict[str, dict]] = None, digits: int = 3) -> str:
    """One row per method, one column per metric; intervals from ``metrics['ci95']`` or ``intervals[m]['ci95']``."""
    rows = []
    for method, met in methods.items():
        ci = (met.get("ci95") if isinstance(met, dict) else None) or (intervals or {}).get(method, {}).get("ci95", {})
        rows.append([(labels or {}).get(method, f"`{method}`")]
                    + [with_ci(met.get(c), ci.get(c), digits) if c in met else "—" for c in columns])
    return table(["method"] + columns, rows)


def small_set_note(n: Any, unit: str) -> str:
    return f"Small set: {fmt(n)} {unit}; the intervals are wide for that reason."


# ----------------------------------------------------------------------------------------------
# renderers, one per result


def render_fashion_evaluate(result: dict, name: str) -> str:
    res = need(result, "results")
    cols = ["precision@1", "precision@10", "map@10", "ndcg@10"]
    labels = {"model": "**model** (the shipped index)", "frozen": "frozen ImageNet features, no projection",
              "pixel_knn": "pixel kNN baseline", "photo:catalog_look": "colour photos → catalog, our query path",
              "photo:plain": "colour photos → catalog, naive grey resize"}
    for m in ("model", "frozen", "pixel_knn"):
        need(res, m, "precision@10")
    out = [methods_table(res, cols, labels)]
    q = res["model"].get("queries")
    photos = res.get("photo:catalog_look", {})
    out.append("")
    out.append(f"{fmt(q)} test queries against the train images; 95 % bootstrap intervals over queries in brackets."
               + (f" The colour photos are a small set ({fmt(photos.get('queries'))} queries): their intervals are wide."
                  if photos.get("small_set") else ""))
    return "\n".join(out)


def render_multimodal_evaluate(result: dict, name: str) -> str:
    methods = need(result, "methods")
    intervals = result.get("intervals", {})
    alpha = result.get("fusion", {}).get("alpha")
    labels = {"text:tfidf": "`text:tfidf` (baseline)", "text:minilm": "`text:minilm`", "image": "`image`",
              "fused": f"**`fused`** (α = {alpha}, chosen on validation)" if alpha is not None else "**`fused`**",
              "text:projection": "`text:projection` (item text withheld)",
              "text:minilm:withheld": "`text:minilm:withheld` (chance: no text to match)",
              "text:imagenet:withheld": "`text:imagenet:withheld` (ImageNet labels, zero-shot)"}
    cols = ["precision@10", "recall@10", "ndcg@10", "mrr"]
    need(methods, "fused", "recall@10")
    out = [methods_table(methods, cols, labels, intervals)]
    split = result.get("split", {})
    n = intervals.get("fused", {}).get("n")
    note = (f"{fmt(split.get('test_products'))} held-out products of {fmt(split.get('categories'))} categories "
            f"(seeded split by group); relevant = same category; recall@10 = relevant found in the top 10 / all "
            f"relevant products of the category (a category larger than 10 cannot reach 1).")
    if intervals.get("fused", {}).get("small_set"):
        note += " " + small_set_note(n, "test products (the bootstrap resamples products)")
    out += ["", note]
    table_ = result.get("fusion", {}).get("validation_table", {})
    if table_:
        cells = ", ".join(f"{a} → {fmt(v.get('recall@10'))}" for a, v in table_.items() if isinstance(v, dict))
        out += ["", f"α (text weight) on the validation split of the training products, recall@10: {cells}; the app's "
                    f"slider starts at the chosen α = {alpha}."]
    bars = result.get("bars", {})
    if bars:
        out += [""] + [f"- {'met' if b.get('met') else '**not met**'}: {k}" for k, b in bars.items()]
    return "\n".join(out)


def render_hashtag_evaluate(result: dict, name: str) -> str:
    """Two tables: the Tux Paint test split and the real-photo set, the same five methods in each (with the
    judged ``precision@5_acceptable``/``hit@1_acceptable`` columns where the photos have judged tag lists)."""
    cols = ["precision@5", "recall@5", "f1@5", "hit@1", "precision@5_acceptable", "hit@1_acceptable"]
    order = ("model", "knn", "most_frequent", "concepts", "fused")

    def block(methods: dict, title: str) -> str:
        rows = {m: methods[m] for m in order if isinstance(methods.get(m), dict)}
        if not rows:
            raise ShapeError(f"no methods for {title}")
        n = next(iter(rows.values())).get("images")
        small = any(r.get("small_set") for r in rows.values())
        return (f"{title} ({fmt(n)} images{', a small set' if small else ''}):\n\n"
                + methods_table(rows, [c for c in cols if any(c in r for r in rows.values())]))

    def ceiling(methods: dict) -> list[str]:
        c = methods.get("ceiling")
        if not isinstance(c, dict) or c.get("precision@5_acceptable") is None:
            return []
        ci = (c.get("ci95") or {}).get("precision@5_acceptable")
        return [f"Ceiling: a perfect ranking of everything the two taggers propose ({c.get('candidates')}) would "
                f"reach `precision@5_acceptable` {with_ci(c['precision@5_acceptable'], ci)}."]

    def per_photo(methods: dict) -> list[str]:
        rows = methods.get("per_photo")
        if not isinstance(rows, list) or not rows:
            return []
        mark = {"concept": "c", "learned": "l", "both": "b"}
        body = [[f"`{r['photo']}`", " ".join(f"#{t}({mark.get(src, src)})" for t, src in r["fused"]),
                 "—" if r.get("acceptable") is None else str(r["acceptable"])] for r in rows]
        return ["Fused top 5 per held-out photo (c = concept, l = learned, b = both; judged = how many of the five "
                "are in the photo's judged list):\n\n" + table(["photo", "fused top 5", "judged"], body)]

    out = [block(result.get("results") or result, "Tux Paint test split")]
    if isinstance(result.get("real_photos"), dict):
        out += [block(result["real_photos"], "Real photographs (dev set)"), *ceiling(result["real_photos"])]
    if isinstance(result.get("real_photos_check"), dict):
        check = result["real_photos_check"]
        out += [block(check, "Real object photographs (held-out check set, never tuned on)"), *ceiling(check),
                *per_photo(check)]
    return "\n\n".join(out)


def _music_methods(result: dict) -> dict:
    for key in ("methods", "results", "models"):
        if isinstance(result.get(key), dict):
            return result[key]
    return {k: v for k, v in result.items() if isinstance(v, dict) and any(
        c in v for c in ("rmse", "ndcg@10", "hr@10", "mae"))} or need(result, "methods")


def render_music_evaluate(result: dict, name: str) -> str:
    methods = _music_methods(result)
    cols = [c for c in ("rmse", "mae", "ndcg@10", "hr@10", "precision@10", "recall@10", "coverage")
            if any(isinstance(m, dict) and c in m for m in methods.values())]
    if not cols:
        raise ShapeError("no known metric columns")
    rows = []
    for method, met in methods.items():
        ci = {c: met.get(f"{c}_ci95") for c in cols if met.get(f"{c}_ci95")} or met.get("ci95", {})
        rows.append([f"`{method}`"] + [with_ci(met.get(c), ci.get(c), 4) if c in met else "—" for c in cols])
    return table(["method"] + cols, rows)


def render_music_evaluate_next(result: dict, name: str) -> str:
    """Per split: the validation-picked headline (ratio with its paired interval) and every method's HR@10."""
    splits = result.get("splits") or {"": result}
    out = []
    for split, run in splits.items():
        head = need(run, "headline")
        title = f"**{split}** split" if split else "headline"
        out.append(f"{title}: best CNN `{head.get('best_cnn')}` vs best baseline `{head.get('best_baseline')}` "
                   f"(both picked on {head.get('picked_on', 'validation')}), test HR@10 ratio "
                   f"**{with_ci(head.get('ratio'), head.get('ratio_ci95'))}**")
        methods = run.get("methods") or {}
        cols = [c for c in ("hr@10", "ndcg@10", "mrr", "val_hr@10") if any(
            isinstance(m, dict) and c in m for m in methods.values())]
        if cols:
            rows = []
            for method, met in methods.items():
                rows.append([f"`{method}`"] + [with_ci(met.get(c), met.get(f"{c}_ci95")) if c in met else "—"
                                               for c in cols])
            out.append(table(["method"] + cols, rows))
    return "\n\n".join(out)


def render_music_foldin(result: dict, name: str) -> str:
    """Fold-in with k revealed likes beside popularity, genre picks and the full retrain, with intervals."""
    rows = []
    for method, met in result.items():
        if isinstance(met, dict) and "ndcg@10" in met:
            rows.append([f"`{method}`", with_ci(met.get("ndcg@10"), met.get("ndcg@10_ci95")),
                         with_ci(met.get("hr@10"), met.get("hr@10_ci95")), fmt(met.get("users"))])
    if not rows:
        raise ShapeError("no methods with ndcg@10")
    out = table(["method", "ndcg@10", "hr@10", "held-out users"], rows)
    meta = result.get("meta") or {}
    for bar, b in (meta.get("bars") or {}).items():
        out += (f"\n\n`{bar}` = {with_ci(b.get('ratio'), b.get('ci95'))} (bar {fmt(b.get('bar'))}: "
                f"{'met' if b.get('met') else 'not met'}).")
    chosen = (meta.get("validation") or {}).get("chosen")
    if chosen:
        out += ("\n\nFold-in constants chosen on " + fmt(meta["validation"].get("users")) + " validation users: "
                + ", ".join(f"{k} = {fmt(v)}" for k, v in chosen.items()) + ".")
    return out


def render_feedback(result: dict, name: str) -> str:
    """Next-page precision@10 with and without the profile's likes and dislikes (and Rocchio, the peer)."""
    method = result.get("method") or {}
    labels = {"without_feedback": "without feedback", "first_page": "first page",
              "with_feedback": "with feedback" + (f" ({_method_label(method)}, the tab's)" if method else ""),
              "rocchio": "with feedback (Rocchio, peer)"}
    rows = []
    for key in ("without_feedback", "with_feedback", "rocchio", "first_page"):
        if isinstance(result.get(key), dict) and (key != "rocchio" or method.get("kind") != "rocchio"):
            r = result[key]
            rows.append([labels[key], with_ci(r.get("precision@10"), r.get("ci95")),
                         fmt(r.get("queries") or r.get("sessions"))])
    if not rows:
        raise ShapeError("no with/without rows")
    out = table(["", "precision@10", "queries"], rows)
    gain = result.get("gain")
    if isinstance(gain, dict):
        out += f"\n\nGain {with_ci(gain.get('mean'), gain.get('ci95'))}"
        w = result.get("weights") or {}
        if method:
            out += f" with {_method_label(method)}"
        if w:
            out += (" on the candidates of the Rocchio query" if method and method.get("kind") != "rocchio"
                    else "") + " (Rocchio weights " + ", ".join(f"{k} = {v}" for k, v in w.items()) + ")"
        out += ", chosen on validation"
        peer = (result.get("rocchio") or {}).get("gain")
        if isinstance(peer, dict) and method.get("kind") != "rocchio":
            out += f"; Rocchio alone {with_ci(peer.get('mean'), peer.get('ci95'))}"
        out += "."
    return out


def _method_label(method: dict) -> str:
    """'linear SVM (C = 1, λ = 2)' from a re-ranker's description."""
    kind = method.get("kind")
    names = {"svm": "linear SVM", "fusion": "per-example fusion", "rocchio": "Rocchio"}
    params = ", ".join(f"{'λ' if k == 'lam' else 'τ' if k == 'tau' else k} = {v}"
                       for k, v in method.items() if k != "kind")
    return f"{names.get(kind, kind)}" + (f" ({params})" if params and kind != "rocchio" else "")


def render_scale(result: dict, name: str) -> str:
    """Vector search at catalog scale: recall@10 against exact, latency at batch 1, build time and memory."""
    methods = need(result, "methods")
    rows = []
    for method, m in methods.items():
        params = m.get("params")
        label = f"`{method}`" + (" (" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "")
        rows.append([label, with_ci(m.get("recall@10"), m.get("recall@10_ci95")), fmt(m.get("p50_ms"), 2),
                     fmt(m.get("p95_ms"), 2), fmt(m.get("build_s"), 1), fmt(m.get("index_mb"), 0)])
    note = (f"{fmt(result.get('n'))} vectors × {result.get('dim')} dims, {fmt(result.get('queries'))} queries; "
            f"load average before the run {result.get('load_avg_before')}.")
    if result.get("earlier_run"):
        fresh = result.get("measured_in_last_run") or [m for m in methods if m not in result.get("merged_from_earlier_run", [])]
        note += (f" Measured in parts on the same data and queries: {', '.join(f'`{m}`' for m in fresh) or 'none'} in the"
                 f" last run, the others earlier (load average {result['earlier_run'].get('load_avg_before')}).")
    return table(["method", "recall@10", "p50 ms", "p95 ms", "build s", "index MB"], rows) + "\n\n" + note


def render_scale_threshold(result: dict, name: str) -> str:
    """Exact vs FAISS flat vs HNSW per query by catalog size, and the size where search switches to HNSW."""
    sizes = need(result, "sizes")
    budget = need(result, "budget_ms")
    rows = []
    for n, row in sizes.items():
        exact, flat, hnsw = need(row, "numpy_exact"), need(row, "faiss_flat"), need(row, "faiss_hnsw")
        rows.append([fmt(int(n)), fmt(exact.get("cpu_p50_ms"), 2), fmt(flat.get("cpu_p50_ms"), 2),
                     fmt(hnsw.get("cpu_p50_ms"), 2), with_ci(hnsw.get("recall@10"), hnsw.get("recall@10_ci95")),
                     "yes" if exact.get("cpu_p50_ms", float("inf")) <= budget else "no"])
    threshold = result.get("threshold")
    note = (f"p50 CPU ms per query (batch 1, one thread; wall times in the JSON), {fmt(result.get('queries'))} queries per "
            f"size, HNSW at {', '.join(f'{k}={v}' for k, v in result.get('hnsw_params', {}).items())}; "
            f"load average {result.get('load_avg_before')} → {result.get('load_avg_after')}"
            + (" (**under load**)" if result.get("under_load") else "") + ". "
            + (f"This run puts the switch to HNSW at **{fmt(threshold)} items**; rule: {result.get('rule')}."
               if threshold else f"No measured size crossed the rule ({result.get('rule')})."))
    return table(["items", "exact p50 ms", "FAISS flat p50 ms", "HNSW p50 ms", "HNSW recall@10",
                  f"exact ≤ {fmt(float(budget), 0)} ms"], rows) + "\n\n" + note


def render_app_load(result: dict, name: str) -> str:
    """Concurrent browser sessions: per-action time to result, errors, server CPU per journey, RSS."""
    phases = need(result, "phases")
    actions = ("open", "hashtags", "fashion", "search", "listener")
    rows = []
    for n, ph in phases.items():
        acts = ph.get("actions", {})
        cells = [f"{fmt(acts[a].get('p50_s'), 1)} / {fmt(acts[a].get('p95_s'), 1)}" if a in acts else "—"
                 for a in actions]
        rows.append([str(n), f"{ph.get('errors', 0)} / {ph.get('page_load_timeouts', 0)}"] + cells
                    + [fmt(ph.get("server_cpu_s_per_journey"), 2), fmt(ph.get("rss_mb"), 0)])
    note = (f"load average at start {result.get('load_avg_at_start')}, at end {result.get('load_avg_at_end')}, "
            f"commit {result.get('commit')}.")
    for n, ph in phases.items():
        by_action = ph.get("server_cpu_s_by_action")
        if by_action:
            note += (f" Server CPU-s by action at {n} session(s): "
                     + ", ".join(f"{a} {fmt(v, 2)}" for a, v in by_action.items()) + ".")
    return table(["sessions", "errors / page-load timeouts"] + [f"{a} p50 / p95 s" for a in actions]
                 + ["server CPU-s per journey", "server RSS MB"], rows) + "\n\n" + note


def render_app_load_configs(result: dict, name: str) -> str:
    """Server settings compared at N sessions (``bench/app_load.py --config ... --repeats R``): per setting the
    medians over the interleaved rounds of each action's p50 / p95, the errors summed, the server's CPU-seconds
    per journey (median, and each round's), and the load average each round started at."""
    configs = need(result, "configs")
    actions = ("open", "hashtags", "fashion", "search", "listener")
    rows = []
    for label, entry in configs.items():
        env = ", ".join(f"{k}={v}" for k, v in entry.get("env", {}).items() if k not in ("RECS_MODELS_DIR", "RECS_ENCODER_CACHE"))
        loads = [r.get("load_avg_at_start", [None])[0] for r in entry.get("runs", [])]
        for n, med in need(entry, "median").items():
            acts = need(med, "actions")
            rows.append([f"{label} ({env})", str(n), str(med.get("runs")),
                         f"{med.get('errors', 0)} / {med.get('page_load_timeouts', 0)}"]
                        + [f"{fmt(acts[a].get('p50_s'), 1)} / {fmt(acts[a].get('p95_s'), 1)}" for a in actions]
                        + [f"{fmt(med.get('server_cpu_s_per_journey'), 2)} ("
                           + ", ".join(fmt(v, 2) for v in med.get("server_cpu_s_per_journey_runs", [])) + ")",
                           ", ".join(fmt(v, 1) for v in loads)])
    note = (f"Medians over {result.get('repeats')} round(s); each round started one fresh server per setting in the "
            f"order {', '.join(dict.fromkeys(result.get('order', [])))} (each with its warm-up journey, not "
            f"counted). Load average at start {result.get('load_avg_at_start')}, at end "
            f"{result.get('load_avg_at_end')}; {result.get('cpus')} CPUs; commit {result.get('commit')}.")
    return table(["setting", "sessions", "rounds", "errors / page-load timeouts"]
                 + [f"{a} p50 / p95 s" for a in actions]
                 + ["server CPU-s per journey (each round)", "load average at each round's start"], rows) + "\n\n" + note


def render_first_run(result: dict, name: str) -> str:
    """The first `make run` of a fresh clone: when the app answers, each model step by lane, and when all are ready.

    Older runs built every model before starting the app (no ``seconds_to_models_ready``): then the app answered
    only after the build, and the table says so.
    """
    steps = need(result, "steps")
    bar = result.get("bar_seconds", 240)
    healthy = result.get("seconds_to_healthy")
    verdict = "met" if healthy is not None and healthy <= bar else "not met"
    ready = result.get("seconds_to_models_ready")
    rows = [[s["lane"], f"`{s['step']}`", f"{s['seconds']} s"] for s in steps]
    rows.append(["both lanes side by side", "**all default models**", f"**{result.get('models_seconds')} s**"])
    if ready is None:  # the app started after the build
        rows.append(["", "**to a healthy app** (after the build)", f"**{fmt(healthy, 0)} s** (bar {bar} s: {verdict})"])
    else:
        rows.insert(0, ["", "**to a healthy app** (set-up, then the app; the build starts beside it)",
                        f"**{fmt(healthy, 0)} s** (bar {bar} s: {verdict})"])
        rows.append(["", "**to every tab with its model**", f"**{fmt(ready, 0)} s**"])
    note = (f"Commit {str(result.get('commit'))[:10]}, {result.get('cpus')} cores, load {result.get('load_at_start')} "
            f"at start; wheels installed with {result.get('installer')}, uv cache {result.get('uv_cache')}, "
            f"pip cache {result.get('pip_cache')}.")
    return table(["lane", "step", "wall time"], rows) + "\n\n" + note


def render_spark_als(result: dict, name: str) -> str:
    """Spark MLlib ALS beside implicit's ALS on the same split and validation budget."""
    rows = []
    for method in ("implicit_als", "spark_als"):
        m = need(result, method)
        rows.append([f"`{method}`", with_ci(m.get("ndcg@10"), m.get("ndcg@10_ci95")),
                     fmt(m.get("fit_seconds") or m.get("fit_s"), 1)])
    ratio = result.get("spark_over_implicit_ndcg@10")
    out = table(["method", "ndcg@10", "fit seconds"], rows)
    if isinstance(ratio, dict):
        out += f"\n\nSpark / implicit NDCG@10: {with_ci(ratio.get('ratio') or ratio.get('mean'), ratio.get('ci95'))}"
    elif ratio is not None:
        out += f"\n\nSpark / implicit NDCG@10: {fmt(ratio)}"
    return out


def render_encoders(result: dict, name: str) -> str:
    """``bench/encoders.py``: every engine's speed at batch 1 and 32 beside ONNX Runtime fp32, and int8's agreement
    with fp32 on the evaluation photos."""
    body = []
    for r in need(result, "rows"):
        agree = r.get("agreement") or {}
        cell = {k: with_ci(agree[k]["mean"], agree[k]["ci95"]) if k in agree else "" for k in
                ("top1_equal", "fp32_top1_in_top5")}
        ratio = ""
        if r["batch"] == 32 and "speedup_per_repeat_median" in r:
            ratio = f"{r['speedup_per_repeat_median']:.2f}; {r['speedup_vs_ort_fp32_b32']:.2f}"
        cosine = fmt(agree["embedding_cosine"]["mean"], 4) if "embedding_cosine" in agree else ""
        body.append([r["engine"], str(r["batch"]), fmt(r["img_per_s"], 1), fmt(r.get("img_per_cpu_s"), 1), ratio,
                     cell["top1_equal"], cell["fp32_top1_in_top5"], cosine])
    photos, machine = result.get("photos", {}), result.get("machine", {})
    load = machine.get("load_avg_start")
    note = (f"\n\n{result.get('backbone')} at {result.get('input_size')} px, {machine.get('threads')} threads, "
            f"{result.get('repeats')} interleaved repeats; agreement on {photos.get('distinct_real_photos')} distinct "
            f"real photos ({photos.get('list')})")
    note += f"; load average {load[0]:.1f} at the start." if load else "."
    return table(["engine", "batch", "img/s", "img/CPU-s", "× ORT fp32, batch 32 (median of per-repeat ratios; "
                  "ratio of medians)", "top-1 equal [95% CI]", "fp32 top-1 in int8 top-5", "embedding cosine"],
                 body) + note


def render_encoders_timing(result: dict, name: str) -> str:
    """``bench/encoders_timing.py``: images/s of one batch-32 timing depending on what ran just before it."""
    body = [[r["timing"], fmt(r["img_per_s"], 1), f"{min(r['img_per_s_all']):.0f}–{max(r['img_per_s_all']):.0f}"]
            for r in need(result, "rows")]
    load = need(result, "machine", "load_avg_start")[0]
    return table(["timed (batch 32, 2 threads, 2 calls)", "img/s (median)", "range"], body) + (
        f"\n\nMedians of {result.get('alternations')} alternations in one process; pause {result.get('settle_s')} s; "
        f"load average {load:.1f} at the start.")


def _agreement_cells(a: dict) -> list[str]:
    """top-1 equal [CI], fp32 top-1 in the top 5, embedding cosine: one engine's agreement with fp32."""
    return [with_ci(need(a, "top1_equal")), fmt(need(a, "fp32_top1_in_top5", "mean")),
            fmt(need(a, "embedding_cosine", "mean"), 4)]


def render_encoders_qat_dev(result: dict, name: str) -> str:
    """``bench/encoders_qat.py dev``: every int8 graph against the original fp32 on the dev images, with the
    fine-tuned weights' own fp32 agreement, and the product's own build of the chosen recipe."""
    body = [[label, *_agreement_cells(a), with_ci(a["fine_tuned_fp32"]["top1_equal"]) if "fine_tuned_fp32" in a
             else ""] for label, a in need(result, "rows").items()]
    if "product_build" in result:
        body.append(["the product's own `RECS_INT8_RECIPE=qat` build", *_agreement_cells(result["product_build"]), ""])
    dev = result.get("dev", {})
    return table(["int8 graph (dev)", "top-1 equal [95% CI]", "fp32 top-1 in int8 top-5", "embedding cosine",
                  "fine-tuned fp32 itself, top-1 equal"], body) + (
        f"\n\n{dev.get('images')} dev images from {dev.get('distinct_photos')} photos; reference: "
        f"{result.get('reference')}; {result.get('engine')} executing.")


def render_encoders_qat_eval(result: dict, name: str) -> str:
    """``bench/encoders_qat.py eval``: the chosen QAT weights' int8 graph against the original fp32 on the evaluation
    list, beside the shipped int8, with speed at batch 32 in the same run."""
    body = [[label, *_agreement_cells(r["agreement"]), fmt(r["speedup_per_repeat_median"], 2)]
            for label, r in need(result, "rows").items() if "agreement" in r]
    machine, photos = result.get("machine", {}), result.get("photos", {})
    load = machine.get("load_avg_start")
    return table(["against the original fp32", "top-1 equal [95% CI]", "fp32 top-1 in int8 top-5", "embedding cosine",
                  "× ORT fp32, batch 32 (median of per-repeat ratios)"], body) + (
        f"\n\n{photos.get('images')} photos ({photos.get('list')}); {machine.get('threads')} threads"
        + (f"; load average {load[0]:.1f} at the start." if load else "."))


def render_search(result: dict, name: str) -> str:
    sizes = [k for k in result if k.endswith("_items") and isinstance(result[k], dict)]
    if not sizes:
        raise ShapeError("no <N>_items entries")

    def p(d: Any) -> str:
        if isinstance(d, dict) and "p50" in d:
            return f"{fmt(d['p50'], 2)} / {fmt(d.get('p95'), 2)} ms"
        return fmt(d)

    keys = sorted({k for s in sizes for k in result[s]})
    return table([""] + [f"{int(s.split('_')[0]):,} items p50 / p95" for s in sizes],
                 [[f"`{k}`"] + [p(result[s].get(k)) for s in sizes] for k in keys])


def render_catalog_quality(result: dict, name: str) -> str:
    """Word and photo search precision@5 on the test catalog, by label, with what dev chose."""
    test = need(result, "test")
    words, photo = need(test, "word_search"), need(test, "photo_search")
    labels = sorted(need(words, "untitled", "by_label"))
    rows = [[label, fmt(words["untitled"]["by_label"][label]), fmt(words["titled"]["by_label"][label]),
             fmt(photo["catalog"]["by_label"].get(label)), fmt(photo["fashion_index"]["by_label"].get(label))]
            for label in labels]
    rows.append(["**mean**", with_ci(words["untitled"]["mean"], words["untitled"]["ci95"]),
                 with_ci(words["titled"]["mean"], words["titled"]["ci95"]),
                 with_ci(photo["catalog"]["mean"], photo["catalog"]["ci95"]),
                 with_ci(photo["fashion_index"]["mean"], photo["fashion_index"]["ci95"])])
    chosen, dup = need(result, "dev", "chosen"), need(test, "duplicates")
    recorded = result["dev"].get("choices_from")  # a further test set reuses the choices dev made earlier
    where = f" (as recorded in `{recorded}`)" if recorded else ""
    return (table(["label (test photos)", "word search, untitled", "word search, titled", "photo search",
                   "photo search, Fashion index"], rows)
            + f"\n\n{test['photos']} test photos ({result['dev']['photos']} dev), precision@5. Chosen on dev{where}: "
              f"word-match "
              f"floor {chosen['match_min']}, concept weight {chosen['concept_weight']}, title-word weight "
              f"{chosen['lexical_weight']}, title words matched as {chosen.get('title_words', 'plain')}"
              f"{' with IDF' if chosen.get('idf') else ''}. Near-duplicates at cosine ≥ {dup['threshold']}: {fmt(dup['copies_found'])} "
              f"of {dup['copies']} edited copies found, {fmt(dup['distinct_pairs_flagged'])} of {dup['distinct_pairs']} "
              "distinct same-label pairs flagged.\n")


def render_catalog_feedback(result: dict, name: str) -> str:
    """Next-screen precision@5 with and without likes on the test catalog, per kind of query, with dev's choice."""
    test, chosen = need(result, "test"), need(result, "dev", "chosen")
    labels = {"photo": "photo / more like this", "both": "words + photo", "words_untitled": "words, untitled",
              "words_titled": "words, titled", "all": "**all queries**"}
    rows = [[labels.get(kind, kind), fmt(r["queries"]), with_ci(r["no_feedback"]), with_ci(r["feedback"]),
             with_ci(r["difference"])] for kind, r in test.items()]
    return (table(["query (test photos)", "queries", "no feedback", "with likes and dislikes", "difference"], rows)
            + f"\n\nPrecision@5 of the next 5 unseen items after the first screen of 5. Chosen on dev: "
              f"α 1, β {chosen['beta']}, γ {chosen['gamma']}, word-search image share {chosen['word_image']}. "
            + small_set_note(test["all"]["queries"], "test queries") + "\n")


def render_catalog_build(result: dict, name: str) -> str:
    """Seconds, images/s and peak memory of a catalog build per size, beside the bare encoder."""
    sizes = need(result, "sizes")
    rows = [[fmt(int(n)), fmt(r.get("seconds"), 1), fmt(r.get("images_per_s"), 1), fmt(r.get("peak_rss_mb"), 0),
             fmt(r.get("encoder_images_per_s"), 1)] for n, r in sizes.items()]
    return table(["photos (~600 px JPEG)", "seconds, add → searchable", "images/s", "peak RSS (MB)",
                  "bare encoder images/s"], rows) + "\n"


def render_history_picks(result: dict, name: str) -> str:
    """Taste of the picks from a held-out listener's Spotify export, per method, with what validation chose."""
    test, val = need(result, "test"), need(result, "validation")
    labels = {"popularity": "most popular, not yet played", "fold_in_likes": "fold-in, each played artist one like",
              "history_listener": "fold-in, play counts (log, around the like confidence)",
              "history_damped": "fold-in, play counts (square root)", "history_raw": "fold-in, raw play counts"}
    rows = [[labels.get(m, m), with_ci(v["taste"], v.get("taste_ci95")), fmt(val[m]["taste"]), fmt(v["played_in_top10"])]
            for m, v in test.items()]
    head, match = need(result, "headline"), need(result, "matching")
    return (table(["method", "taste, test listeners", "taste, validation", "played artists in the top 10"], rows)
            + f"\n\nChosen on validation: `{result['chosen_scale_on_validation']}`. Test ratio to popularity "
              f"{with_ci(head['ratio_vs_popularity'], head['ratio_ci95'])} (bar {head['bar']}). Matching: every real "
              f"artist matched for {match['all_real_artists_matched']} of {match['listeners']} listeners; the invented "
              f"artists reported unmatched for {match['invented_reported_unmatched']}; {fmt(match['mean_plays'], 0)} "
              f"plays per export on average, {fmt(match['mean_skipped_short'], 0)} of them skips.\n")


def render_test_durations(result: dict, name: str) -> str:
    """The test tiers: the fast tier's measured run, the tests marked slow and why, and each file's time."""
    tests = need(result, "tests")
    slow_s = result.get("slow_seconds", 10)
    lines = []
    for expr, tier in result.get("tiers", {}).items():
        lines.append(f"`pytest -m \"{expr}\"`: {tier['tests']} tests in **{fmt(tier['seconds'], 0)} s** "
                     f"(exit code {tier['exit_code']}; {tier['cores']} cores, load average "
                     f"{tier['load_avg_before'][0]} before and {tier['load_avg_after'][0]} after).")
    slow = [(k, v) for k, v in tests.items() if "slow" in v.get("marks", [])]
    groups: dict[str, list[dict]] = {}  # one row per test function: its parametrised cases together
    for k, v in slow:
        groups.setdefault(k.split("[")[0], []).append(v)
    rows = [[f"`{k}`", str(len(vs)), fmt(sum(v["total"] for v in vs), 1), vs[0].get("slow_reason") or "—"]
            for k, vs in sorted(groups.items(), key=lambda kv: -sum(v["total"] for v in kv[1]))]
    lines += ["", f"Tests marked slow ({len(slow)} tests in {len(groups)} functions, "
              f"{fmt(sum(v['total'] for _, v in slow), 0)} s together), with the reason their mark gives:", "",
              table(["test", "cases", "seconds", "why slow"], rows)]
    unmarked = [k for k, v in tests.items() if v["total"] > slow_s and "slow" not in v.get("marks", [])]
    if unmarked:
        lines += ["", f"Over {slow_s} s but not marked slow: " + ", ".join(f"`{k}`" for k in unmarked) + "."]
    files: dict[str, list[dict]] = {}
    for k, v in tests.items():
        files.setdefault(k.split("::")[0], []).append(v)
    rows = [[f"`{f}`", str(len(vs)), fmt(sum(v["total"] for v in vs), 1),
             fmt(sum(v["total"] for v in vs if "slow" not in v.get("marks", [])), 1),
             str(sum("slow" in v.get("marks", []) for v in vs))]
            for f, vs in sorted(files.items(), key=lambda kv: -sum(v["total"] for v in kv[1]))]
    loads = [v["load_avg_1min"] for v in tests.values() if "load_avg_1min" in v]
    lines += ["", f"Each file's tests (setup + call + teardown; {len(tests)} tests, measured a few files at a time "
              f"with the load average between {fmt(min(loads), 1)} and {fmt(max(loads), 1)} on {result.get('cores')} "
              "cores):" if loads else "Each file's tests:", "",
              table(["file", "tests", "seconds", "seconds without slow", "slow tests"], rows)]
    return "\n".join(lines)


def render_generic(result: dict, name: str) -> str:
    """Any ``{method: {metric: number}}`` result (under ``methods``/``results`` or at the top level)."""
    methods = result.get("methods") or result.get("results") or result
    methods = {k: v for k, v in methods.items() if isinstance(v, dict) and k != "run"  # "run": what made the file
               and any(isinstance(x, (int, float, dict)) and not isinstance(x, bool) for x in v.values())}
    if not methods:
        raise ShapeError("no method table")
    cols: list[str] = []
    for met in methods.values():
        cols += [c for c, v in met.items() if c not in cols and c != "ci95" and not c.endswith("_ci95")
                 and (isinstance(v, (int, float)) and not isinstance(v, bool) or isinstance(v, dict) and "mean" in v)]
    return methods_table(methods, cols[:8], intervals=result.get("intervals"))



# ----------------------------------------------------------------------------------------------
# the README's headline block: one number per tab, read from several result files


def metric(met: dict, key: str, intervals: Optional[dict] = None) -> str:
    """One metric of one method with its interval, wherever the result keeps it (``ci95``, ``<key>_ci95``)."""
    ci = (met.get("ci95") or {}).get(key) or met.get(f"{key}_ci95") or ((intervals or {}).get("ci95") or {}).get(key)
    return with_ci(need(met, key), ci)


def headline_rows(results_dir: Path) -> list[list[str]]:
    """Why one number per tab: the front page says what each tab is good for; the docs page has the table."""
    def load(name: str) -> dict:
        path = results_dir / f"{name}.json"
        if not path.is_file():
            raise ShapeError(f"no {path.name}")
        return json.loads(path.read_text(encoding="utf-8"))

    tags, music = load("hashtag_evaluate"), need(load("music_evaluate_lastfm-2k"), "methods")
    garments, search = need(load("fashion_evaluate"), "results"), load("multimodal_evaluate")
    picks = load("history_picks")
    history, chosen = need(picks, "test"), f"history_{need(picks, 'chosen_scale_on_validation')}"
    photos = need(load("catalog_quality"), "test", "photo_search")
    catalog, fashion_index = need(photos, "catalog"), need(photos, "fashion_index")
    return [
        ["Hashtags", "F1@5, Tux Paint test split", f"{metric(tags['model'], 'f1@5')} "
         f"(kNN tag transfer {metric(need(tags, 'knn'), 'f1@5')})", "[docs/hashtag.md](docs/hashtag.md#results)"],
        ["Music", "NDCG@10, Last.fm-2K per-user holdout", f"{metric(need(music, 'mf'), 'ndcg@10')} "
         f"(popularity {metric(need(music, 'popularity'), 'ndcg@10')})", "[docs/music.md](docs/music.md#measured-numbers)"],
        ["Music, your history", "taste of the top 10 from a held-out listener's Spotify export (Last.fm tags)",
         f"{with_ci(need(history, chosen, 'taste'), history[chosen].get('taste_ci95'))} "
         f"(popularity {with_ci(need(history, 'popularity', 'taste'), history['popularity'].get('taste_ci95'))})",
         "[docs/imports.md](docs/imports.md#how-good-the-picks-are)"],
        ["Fashion", "precision@10, Fashion-MNIST test", f"{metric(need(garments, 'model'), 'precision@10')} "
         f"(pixel kNN {metric(need(garments, 'pixel_knn'), 'precision@10')})",
         "[docs/fashion.md](docs/fashion.md#evaluation)"],
        ["Product search", "precision@10, words + photo, held-out products",
         f"{metric(need(search, 'methods', 'fused'), 'precision@10', search.get('intervals', {}).get('fused'))} "
         f"(TF-IDF words {metric(need(search, 'methods', 'text:tfidf'), 'precision@10', search.get('intervals', {}).get('text:tfidf'))})",
         "[docs/multimodal.md](docs/multimodal.md#results)"],
        ["Data", "precision@5, photo search in your catalog of real photos",
         f"{with_ci(need(catalog, 'mean'), catalog.get('ci95'))} (the same photos in the Fashion index "
         f"{with_ci(need(fashion_index, 'mean'), fashion_index.get('ci95'))})",
         "[docs/catalogs.md](docs/catalogs.md#how-good-is-it)"],
    ]


def _downstream_row(label: str, runs: dict, path: tuple, bar: Optional[float]) -> list[str]:
    """One downstream number for fp32 and int8 from ``bench/encoders_downstream.py`` runs, with the difference
    and, where the product sets one, the verdict against the bar (|int8 − fp32| ≤ bar)."""
    *where, method, key = path
    values = {}
    cells = []
    for precision in ("fp32", "int8"):
        result = need(runs[precision], *where)
        met = need(result, method) if "methods" not in result else need(result, "methods", method)
        values[precision] = need(met, key)
        cells.append(metric(met, key, result.get("intervals", {}).get(method)))
    delta = values["int8"] - values["fp32"]
    verdict = "—" if bar is None else ("**met**" if abs(delta) <= bar else "**missed**") + f" (bar ±{bar})"
    return [label, *cells, f"{delta:+.4f}", verdict]


def render_encoders_downstream(results_dir: Path) -> str:
    """Fashion and product search with fp32 and with int8 image embeddings (the int8 engine the product uses),
    each precision run as its own process at the same time (``bench/encoders_downstream.py``)."""
    runs: dict[str, dict] = {}
    notes = []
    for step in ("fashion", "multimodal"):
        for precision in ("fp32", "int8"):
            path = results_dir / f"encoders_downstream_{step}_{precision}.json"
            if not path.is_file():
                raise ShapeError(f"no {path.name}")
            result = json.loads(path.read_text(encoding="utf-8"))
            run = need(result, "runs", precision, step)
            runs.setdefault(precision, {})[step] = run
            cpu = ", ".join(f"{name} {fmt(cmd.get('cpu_s'), 1)}" for name, cmd in run.items())
            load = [round(x, 1) for x in result.get("load_avg_start", [])[:1] + result.get("load_avg_end", [])[:1]]
            engine = result.get("int8_engine_resolved") or f"RECS_INT8_ENGINE={result.get('int8_engine')}"
            notes.append(f"{step} {precision} ({engine + ', ' if precision == 'int8' else ''}{result.get('threads')} "
                         f"thread): CPU-s {cpu}; load average {load[0] if load else '—'} at start, "
                         f"{load[1] if len(load) > 1 else '—'} at end")
    rows = [
        _downstream_row("Fashion-MNIST precision@10, 10,000 test queries, projection", runs,
                        ("fashion", "evaluate", "result", "model", "precision@10"), 0.005),
        _downstream_row("Fashion-MNIST precision@10, frozen features", runs,
                        ("fashion", "evaluate", "result", "frozen", "precision@10"), None),
        _downstream_row("colour-photo queries, catalog look, precision@10 (13 photos)", runs,
                        ("fashion", "evaluate", "result", "photo:catalog_look", "precision@10"), None),
        _downstream_row("Product search (Tux Paint) fused recall@10", runs,
                        ("multimodal", "evaluate", "result", "fused", "recall@10"), 0.01),
        _downstream_row("Product search image-only recall@10", runs,
                        ("multimodal", "evaluate", "result", "image", "recall@10"), None),
        _downstream_row("Product search image→text projection recall@10", runs,
                        ("multimodal", "evaluate", "result", "text:projection", "recall@10"), None),
    ]
    return (table(["number", "fp32", "int8", "int8 − fp32", "bar"], rows)
            + "\n\n95 % bootstrap intervals in brackets. " + "; ".join(notes) + ".")


#: The int8 speed runs on a quiet machine: the committed table's run, three more back to back, and the one before
#: each timing paused and made an untimed call first.
ENCODER_SPEED_RUNS = ("encoders", "encoders_quiet_a", "encoders_quiet_b", "encoders_quiet_c", "encoders_before_warmup")
INT8_ENGINES = ("ONNX Runtime int8 (QDQ)", "OpenVINO int8 (the same QDQ graph)")


def render_encoder_speed_runs(results_dir: Path) -> str:
    """One row per ``bench/encoders.py`` run: each int8 engine's batch-32 ratio to ONNX Runtime fp32 (median of the
    per-repeat ratios), the load average at the start and how the run timed; then the median of the warm runs."""
    rows, warm = [], {e: [] for e in INT8_ENGINES}
    for name in ENCODER_SPEED_RUNS:
        path = results_dir / f"{name}.json"
        if not path.is_file():
            raise ShapeError(f"no {path.name}")
        result = json.loads(path.read_text(encoding="utf-8"))
        ratios = {r["engine"]: need(r, "speedup_per_repeat_median") for r in need(result, "rows")
                  if r["batch"] == 32 and r["engine"] in INT8_ENGINES}
        for engine, ratio in ratios.items() if "timing" in result else ():
            warm[engine].append(ratio)
        rows.append([f"{name}.json", "pause + untimed call" if "timing" in result else "back to back, no untimed call",
                     str(result.get("repeats")), *[f"{ratios[e]:.2f}" if e in ratios else "" for e in INT8_ENGINES],
                     fmt(need(result, "machine", "load_avg_start")[0], 1)])
    medians = [f"**{statistics.median(warm[e]):.2f}**" if warm[e] else "" for e in INT8_ENGINES]
    rows.append(["median of the runs with pause + untimed call", "", "", *medians, ""])
    engines = [f"{e.split(' (')[0]} × ORT fp32" for e in INT8_ENGINES]
    return table(["run (bench/results/)", "timing", "repeats", *engines, "load average at start"], rows)


def render_headlines(results_dir: Path) -> str:
    return table(["tab", "measured", "headline (95 % interval), baseline", "full table"], headline_rows(results_dir)) + "\n"


#: Blocks built from several result files: name → (renderer of the results folder, the files it reads).
COMPOSITES: dict[str, tuple[Callable[[Path], str], str]] = {
    "headlines": (render_headlines, "hashtag_evaluate, music_evaluate_lastfm-2k, history_picks, fashion_evaluate, "
                                    "multimodal_evaluate, catalog_quality"),
    "encoder_speed_runs": (render_encoder_speed_runs, ", ".join(ENCODER_SPEED_RUNS)),
    "encoders_downstream": (render_encoders_downstream, "encoders_downstream_fashion_fp32, "
                                                        "encoders_downstream_fashion_int8, encoders_downstream_multimodal_fp32, "
                                                        "encoders_downstream_multimodal_int8"),
}

#: Pattern → renderer, first match wins. Results with an unknown shape keep their README block as it is.
RENDERERS: list[tuple[str, Renderer]] = [
    ("fashion_evaluate", render_fashion_evaluate),
    ("multimodal_evaluate", render_multimodal_evaluate),
    ("hashtag_evaluate*", render_hashtag_evaluate),
    ("music_evaluate_next_*", render_music_evaluate_next),
    ("music_evaluate_*", render_music_evaluate),
    ("encoders", render_encoders),
    ("encoders_qat_dev*", render_encoders_qat_dev),
    ("encoders_timing*", render_encoders_timing),
    ("encoders_qat_eval", render_encoders_qat_eval),
    ("search", render_search),
    ("scale_threshold*", render_scale_threshold),
    ("scale*", render_scale),
    ("app_load_threads*", render_app_load_configs),
    ("app_load*", render_app_load),
    ("music_foldin_*", render_music_foldin),
    ("fashion_feedback*", render_feedback),
    ("multimodal_feedback*", render_feedback),
    ("spark_als_*", render_spark_als),
    ("first_run", render_first_run),
    ("catalog_quality", render_catalog_quality),
    ("catalog_quality_test2", render_catalog_quality),
    ("catalog_feedback", render_catalog_feedback),
    ("catalog_build", render_catalog_build),
    ("history_picks", render_history_picks),
    ("test_durations", render_test_durations),
    ("*", render_generic),
]


def renderer_for(name: str) -> Renderer:
    return next(r for pattern, r in RENDERERS if fnmatch.fnmatchcase(name, pattern))


# ----------------------------------------------------------------------------------------------
# the README rewrite


def render_block(name: str, results_dir: Path) -> Optional[str]:
    """The generated Markdown for one block, or None to leave the block as it is (logged)."""
    if name in COMPOSITES:
        render, sources = COMPOSITES[name]
        try:
            text = render(results_dir)
        except (ShapeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("%s: a result it reads is missing or has another shape (%s); block left as it is", name, exc)
            return None
        source = f"<!-- generated by `make readme-numbers` from bench/results/{{{sources}}}.json; do not edit -->"
        return f"{source}\n{text.rstrip()}\n"
    path = results_dir / f"{name}.json"
    if not path.is_file():
        log.warning("%s: no %s yet; block left as it is", name, path)
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        text = renderer_for(name)(result, name)
    except (ShapeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s: %s does not have the expected shape (%s); block left as it is", name, path, exc)
        return None
    source = f"<!-- generated by `make readme-numbers` from bench/results/{name}.json; do not edit -->"
    return f"{source}\n{text.rstrip()}\n"


def regenerate(readme: str, results_dir: Path) -> str:
    """The README text with every numbers block rewritten from its result (or left as it was)."""

    def replace(m: re.Match) -> str:
        body = render_block(m.group("name"), results_dir)
        return m.group(0) if body is None else m.group(1) + body + m.group(4)

    return BLOCK.sub(replace, readme)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, action="append",
                        help="a Markdown file with numbers blocks (repeatable; default: README.md and docs/*.md)")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is not up to date; write nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    files = args.readme or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    stale = []
    for path in files:
        old = path.read_text(encoding="utf-8")
        names = [m.group("name") for m in BLOCK.finditer(old)]
        if not names:
            continue
        new = regenerate(old, args.results)
        if new != old:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
        log.info("%s: %d blocks (%s), %s", path.name, len(names), ", ".join(names),
                 "unchanged" if new == old else ("out of date" if args.check else "updated"))
    if args.check and stale:
        log.error("out of date: %s; run `make readme-numbers`", ", ".join(str(p) for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
