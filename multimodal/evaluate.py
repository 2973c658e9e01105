"""Offline evaluation of multimodal search: text → item, image → item, fused, and the image→text projection.

Protocol (all in one run, fixed seeds; see docs/multimodal.md for the numbers):

- **Relevance** is the catalog's category (Tux Paint: the first two folder levels, e.g. ``animals/birds``;
  75 categories). A retrieved product is relevant iff it has the query's category.
- **Split**: products are split 80/20 by group (a ``_mirror`` copy stays with its original), stratified by
  category, seed 13. Test products are held out: they are never in the gallery they are queried against,
  never used to fit TF-IDF, the projection or the fusion weight.
- **Gallery text** for evaluation is the product text *without* category words (Tux Paint: the caption),
  because the category is the relevance label: leaving it in would let a query match the label itself.
- **Text → item** (``text:minilm``, ``text:tfidf``): gallery = training products (their text); queries =
  every category's name (``animals birds``; relevant = its training products) and one paraphrase per test
  product built from its file name, not its caption (``heron_greatblue`` → "heron greatblue" for "A great blue
  heron."; relevant = training products of its category). TF-IDF is fitted on the gallery texts only.
- **Image → item** (``image``): gallery = training products' images; queries = each test product's image, its
  mirror image and an 80 % centre crop (relevant = training products of its category).
- **Fused** (``fused``): same gallery, text and image; queries = (paraphrase, view) for each test product and
  each of the three views. ``alpha`` is chosen on a validation split carved from the training products
  (queries = validation products, gallery = the rest of training), never on test queries.
- **Text withheld** (``text:projection``): gallery = *test* products with their text withheld (image only);
  queries = category names and the test paraphrases (relevant = test products of the category). The
  projection is trained on the training products only. Without it (``text:minilm:withheld``) a text query has
  nothing to compare with, so the ranking is a seeded shuffle (the chance level); ``text:imagenet:withheld``
  is a zero-shot baseline: the ImageNet top-3 labels of each picture, embedded by MiniLM.
- **Metrics** (standard definitions, ``core.metrics``): ``precision@k`` = |relevant ∩ top k| / k;
  ``recall@k`` = |relevant ∩ top k| / |relevant| (a category with more than k members cannot reach 1);
  ``ndcg@10`` with binary gains; ``mrr`` = mean of 1 / rank of the first relevant product. Means over
  queries, each with a 95 % bootstrap interval (``intervals``) that resamples test products (a product's
  picture, mirror and crop are one draw); fewer than ``core.metrics.SMALL_SET`` units (190 test products)
  are flagged ``small_set``. Every table goes through ``core.evaluation.evaluate``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from core.artifacts import load_arrays, save_arrays, write_json
from core.encoders import get_image_encoder
from core.evaluation import ScoreRanker, Split, per_query
from core.evaluation import evaluate as run_evaluation
from core.text import get_text_encoder
from multimodal.data import (Catalog, category_query, compose_text, drop_unreadable_images, load_product_image,
                             paraphrase, split_groups)
from multimodal.model import index_dir
from multimodal.train import ProjectionConfig, center_crop, hflip, train_projection

log = logging.getLogger(__name__)

KS = (1, 5, 10)
LABEL_FIELDS = {"category", "category_path", "masterCategory", "subCategory", "articleType"}
ALPHAS = tuple(round(a, 2) for a in np.linspace(0.0, 1.0, 11))
SEED = 13


def metric_names(ks: Sequence[int] = KS) -> list[str]:
    """The table's columns: precision@k and recall@k for each k, NDCG@10 and MRR (``core.metrics`` definitions)."""
    return [f"precision@{k}" for k in ks] + [f"recall@{k}" for k in ks] + ["ndcg@10", "mrr"]


def rank_metrics(scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = KS,
                 groups: Optional[Sequence[Any]] = None, intervals: bool = True) -> dict[str, Any]:
    """Mean precision@k, recall@k, NDCG@10 and MRR over queries, with 95 % bootstrap intervals (``ci95``).

    ``scores`` is (queries × gallery), ``relevant`` the boolean relevance matrix of the same shape; the whole
    gallery is ranked (ties by gallery order), so recall@k counts *all* relevant items of the query and MRR
    finds the first hit at any depth. Queries without any relevant gallery item are dropped (``queries`` says
    how many remain). ``groups`` names the unit the interval resamples: several queries made from one product
    (its picture, mirror and crop) are one draw; ``n`` is the number of such units, ``small_set`` is set below
    ``core.evaluation.SMALL_SET``.
    """
    keep = relevant.any(axis=1)
    scores, relevant = scores[keep], relevant[keep]
    names = metric_names(ks)
    if len(scores) == 0:
        return {**{m: float("nan") for m in names}, "queries": 0, "n": 0, "ci95": {}, "small_set": True}
    split = Split(np.arange(len(scores)), relevant, groups=None if groups is None else np.asarray(groups)[keep])
    ranker = ScoreRanker("scores", scores)
    if not intervals:  # e.g. the validation grid of fusion weights: only the means are compared
        ranked = np.take_along_axis(relevant, ranker.rank(split.queries, scores.shape[1]), axis=1)
        values = per_query(ranked, relevant.sum(axis=1), names)
        return {**{name: float(v.mean()) for name, v in values.items()}, "queries": int(len(scores))}
    return run_evaluation([ranker], split, names, k=scores.shape[1])["scores"].nested()


def relevance(query_cats: Sequence[str], gallery_cats: Sequence[str]) -> np.ndarray:
    return np.asarray(query_cats)[:, None] == np.asarray(gallery_cats)[None, :]


@dataclass
class Encoded:
    """Everything the evaluation needs, encoded once per catalog and cached (keyed by data + encoders)."""

    catalog: Catalog
    text: np.ndarray  # (N, 384) evaluation text (no category words)
    product_text: np.ndarray  # (N, 384) the full product text (what the app indexes)
    image: np.ndarray  # (N, 1280)
    image_flip: np.ndarray
    image_crop: np.ndarray
    eval_texts: list[str]


def encode_catalog(catalog: Catalog, *, pooling: str = "max", text_model: str = "all-MiniLM-L6-v2",
                   backbone: str = "efficientnet_lite0", cache: bool = True,
                   allow_download: bool = False) -> Encoded:
    """Encode texts and three views of every image, reusing ``<models>/multimodal/<name>-evalcache`` if fresh."""
    text_enc = get_text_encoder(text_model, allow_download=allow_download)
    image_enc = get_image_encoder(backbone, pooling=pooling, allow_download=allow_download)
    eval_fields = [f for f in catalog.text_fields if f not in LABEL_FIELDS] or ["title"]
    eval_texts = [compose_text(p.fields or {"title": p.title}, eval_fields) or p.title for p in catalog.products]
    stem = index_dir() / f"{catalog.name}-evalcache"
    expect = {"data_checksum": catalog.checksum(), "text_encoder": text_enc.spec, "image_encoder": image_enc.spec,
              "eval_fields": eval_fields}
    if cache:
        try:
            arrays, _ = load_arrays(stem, kind="multimodal-evalcache", expect=expect)
            keep = set(arrays["ids"].tolist())
            eval_texts = [t for p, t in zip(catalog.products, eval_texts) if p.id in keep]
            catalog = Catalog(catalog.name, catalog.kind, [p for p in catalog.products if p.id in keep],
                              catalog.source, catalog.text_fields, catalog.skipped)
            log.info("using cached evaluation embeddings %s", stem)
            return Encoded(catalog, arrays["text"], arrays["product_text"], arrays["image"], arrays["image_flip"],
                           arrays["image_crop"], eval_texts)
        except Exception as exc:  # noqa: BLE001 - any cache problem means re-encode
            log.info("encoding for evaluation (%s)", exc)
    full, images = drop_unreadable_images(catalog)
    keep_ids = set(full.ids)
    eval_texts = [t for p, t in zip(catalog.products, eval_texts) if p.id in keep_ids]
    enc = Encoded(
        catalog=full,
        text=text_enc.encode(eval_texts, desc="encoding evaluation text"),
        product_text=text_enc.encode([p.text for p in full.products], desc="encoding product text"),
        image=image_enc.encode(images),
        image_flip=image_enc.encode(hflip(images)),
        image_crop=image_enc.encode(center_crop(images)),
        eval_texts=eval_texts,
    )
    if cache:
        save_arrays(stem, {"text": enc.text, "product_text": enc.product_text, "image": enc.image,
                           "image_flip": enc.image_flip, "image_crop": enc.image_crop,
                           "ids": np.asarray(full.ids, dtype=str)},
                    {"kind": "multimodal-evalcache", **expect})
    return enc


def _tfidf_scores(gallery_texts: list[str], queries: list[str]) -> np.ndarray:
    vec = TfidfVectorizer(sublinear_tf=True, stop_words="english")
    g = vec.fit_transform(gallery_texts)
    q = vec.transform(queries)
    return (q @ g.T).toarray()


def choose_alpha(enc: Encoded, train: list[int], q_text: np.ndarray, seed: int = SEED) -> tuple[float, dict]:
    """Pick the fusion weight on a validation split of the *training* products (R@10, then MRR)."""
    sub = [enc.catalog.products[i] for i in train]
    tr_local, val_local = split_groups(sub, test_fraction=0.2, seed=seed + 1)
    gal, val = [train[i] for i in tr_local], [train[i] for i in val_local]
    cats = [p.category for p in enc.catalog.products]
    rel = relevance([cats[i] for i in val], [cats[i] for i in gal])
    t_scores = q_text[val] @ enc.text[gal].T
    i_scores = np.concatenate([v[val] @ enc.image[gal].T for v in (enc.image, enc.image_flip, enc.image_crop)])
    t_scores3 = np.concatenate([t_scores] * 3)
    rel3 = np.concatenate([rel] * 3)
    table = {}
    for a in ALPHAS:
        m = rank_metrics(a * t_scores3 + (1 - a) * i_scores, rel3, intervals=False)
        table[a] = (m["recall@10"], m["mrr"])
    best = max(ALPHAS, key=lambda a: table[a])
    return float(best), {str(a): {"recall@10": round(v[0], 4), "mrr": round(v[1], 4)} for a, v in table.items()}


def _imagenet_label_text(image_paths: Sequence, enc_text, backbone: str = "efficientnet_lite0") -> np.ndarray:
    preds = get_image_encoder(backbone).classify([load_product_image(p) for p in image_paths], top=3)
    return enc_text.encode([", ".join(lbl for lbl, _ in row) for row in preds], desc="encoding ImageNet labels")


@dataclass
class _Protocol:
    """One catalog encoded and split, with the query texts every part of the protocol shares."""

    enc: Any  # the encoded catalog (``encode_catalog``)
    cats: np.ndarray  # each product's category
    train: list[int]
    test: list[int]
    para_all: list[str]  # one held-out paraphrase per product
    para_vec_all: np.ndarray
    cat_vec: dict[str, np.ndarray]  # each category's query, encoded


def evaluate(
    catalog: Catalog,
    *,
    seed: int = SEED,
    projection_config: Optional[ProjectionConfig] = None,
    imagenet_baseline: bool = True,
    cache: bool = True,
    text_model: str = "all-MiniLM-L6-v2",
    backbone: str = "efficientnet_lite0",
    pooling: str = "max",
    allow_download: bool = False,
) -> dict[str, Any]:
    """Run the whole protocol; return ``{"methods": {method: metrics}, "details": {...}}``."""
    t0 = time.time()
    enc = encode_catalog(catalog, cache=cache, text_model=text_model, backbone=backbone, pooling=pooling,
                         allow_download=allow_download)
    products = enc.catalog.products
    cats = np.asarray([p.category for p in products])
    train, test = split_groups(products, test_fraction=0.2, seed=seed)
    text_enc = get_text_encoder(text_model, allow_download=allow_download)
    # queries: category names + held-out paraphrases (one per test product)
    para_all = [paraphrase(p) for p in products]
    para_vec_all = text_enc.encode(para_all, desc="encoding paraphrases")
    cat_names = sorted(set(cats))
    cat_vec = dict(zip(cat_names, text_enc.encode([category_query(c) for c in cat_names], desc="encoding categories")))
    run = _Protocol(enc, cats, train, test, para_all, para_vec_all, cat_vec)

    methods: dict[str, dict] = {}
    details: dict[str, Any] = {}
    _text_to_item(run, methods, details)
    _image_and_fused(run, seed, methods, details)
    details.update(_mirror_checks(enc, cats))
    label_text = (lambda: _imagenet_label_text([products[i].image_path for i in test], text_enc, backbone)) \
        if imagenet_baseline else None
    _text_withheld(run, projection_config or ProjectionConfig(), seed, label_text, methods, details)
    details["split"] = {"seed": seed, "train_products": len(train), "test_products": len(test),
                        "categories": len(cat_names), "relevance": "same category (first two folder levels)"}
    image_enc = get_image_encoder(backbone, pooling=pooling, allow_download=allow_download)
    details["encoders"] = {"text": text_enc.spec, "image": image_enc.spec}
    details["seconds"] = round(time.time() - t0, 1)
    return {"methods": {m: _means(v) for m, v in methods.items()},
            "intervals": {m: _interval(v) for m, v in methods.items()}, "details": details}


def _text_to_item(run: _Protocol, methods: dict[str, dict], details: dict[str, Any]) -> None:
    """Text → item over the training products: MiniLM and TF-IDF, for category names and paraphrases."""
    enc, cats, train, test = run.enc, run.cats, run.train, run.test
    train_cats = sorted(set(cats[train]))
    q_texts = [category_query(c) for c in train_cats] + [run.para_all[i] for i in test]
    q_cats = list(train_cats) + [cats[i] for i in test]
    q_vecs = np.concatenate([np.stack([run.cat_vec[c] for c in train_cats]), run.para_vec_all[test]])
    rel_text = relevance(q_cats, cats[train])
    gallery_texts = [enc.eval_texts[i] for i in train]
    s_minilm = q_vecs @ enc.text[train].T
    s_tfidf = _tfidf_scores(gallery_texts, q_texts)
    n_cat = len(train_cats)
    methods["text:minilm"] = rank_metrics(s_minilm, rel_text)
    methods["text:tfidf"] = rank_metrics(s_tfidf, rel_text)
    details["text_by_query_type"] = {
        "category names": {"text:minilm": rank_metrics(s_minilm[:n_cat], rel_text[:n_cat]),
                           "text:tfidf": rank_metrics(s_tfidf[:n_cat], rel_text[:n_cat])},
        "paraphrases": {"text:minilm": rank_metrics(s_minilm[n_cat:], rel_text[n_cat:]),
                        "text:tfidf": rank_metrics(s_tfidf[n_cat:], rel_text[n_cat:])},
    }


def _image_and_fused(run: _Protocol, seed: int, methods: dict[str, dict], details: dict[str, Any]) -> None:
    """Image → item (original, mirrored and cropped views of each test product) and image + paraphrase fused
    with the weight chosen on a validation split of the training products."""
    enc, train, test = run.enc, run.train, run.test
    views = {"original": enc.image, "mirrored": enc.image_flip, "cropped": enc.image_crop}
    rel_test = relevance(run.cats[test], run.cats[train])
    img_scores = {name: v[test] @ enc.image[train].T for name, v in views.items()}
    txt_scores = run.para_vec_all[test] @ enc.text[train].T
    s_image = np.concatenate(list(img_scores.values()))
    rel3 = np.concatenate([rel_test] * 3)
    views3 = np.tile(np.asarray(test), 3)  # the three views of one test product are one bootstrap unit
    methods["image"] = rank_metrics(s_image, rel3, groups=views3)
    alpha, alpha_table = choose_alpha(enc, train, run.para_vec_all, seed=seed)
    s_fused = alpha * np.concatenate([txt_scores] * 3) + (1 - alpha) * s_image
    methods["fused"] = rank_metrics(s_fused, rel3, groups=views3)
    details["fusion"] = {
        "alpha": alpha, "alpha_chosen_on": "validation split of the training products",
        "validation_table": alpha_table,
        "same_queries": {"text only (paraphrase)": rank_metrics(np.concatenate([txt_scores] * 3), rel3, groups=views3),
                         "image only": methods["image"], "fused": methods["fused"]},
        "image_by_view": {name: rank_metrics(s, rel_test) for name, s in img_scores.items()},
    }


def _mirror_checks(enc: Any, cats: np.ndarray) -> dict[str, Any]:
    """On the shipped held-out images: does each ``_mirror`` copy find its original first, and its category?"""
    products = enc.catalog.products
    mirrors = [i for i, p in enumerate(products) if p.is_mirror]
    if not mirrors:
        return {}
    originals = {p.id: i for i, p in enumerate(products)}
    non_mirror = [i for i, p in enumerate(products) if not p.is_mirror]
    s = enc.image[mirrors] @ enc.image[non_mirror].T
    target = np.zeros_like(s, dtype=bool)
    for r, i in enumerate(mirrors):
        target[r, non_mirror.index(originals[products[i].group])] = True
    return {"mirror_finds_original": rank_metrics(s, target),
            "mirror_category": rank_metrics(s, relevance(cats[mirrors], cats[non_mirror]))}


def _text_withheld(run: _Protocol, cfg: ProjectionConfig, seed: int,
                   label_text: Optional[Callable[[], np.ndarray]], methods: dict[str, dict],
                   details: dict[str, Any]) -> None:
    """Text withheld: the gallery is the test products, searched by image only, through a projection trained on
    the training products; against chance order and (``label_text``, encoding the test images' ImageNet labels
    as text) a classifier's words."""
    enc, cats, train, test = run.enc, run.cats, run.train, run.test
    products = enc.catalog.products
    proj, losses = train_projection([enc.image[train], enc.image_flip[train]], enc.product_text[train],
                                    [products[i].text for i in train], cfg)
    w_cats = sorted(set(cats[test]))
    wq_vecs = np.concatenate([np.stack([run.cat_vec[c] for c in w_cats]), run.para_vec_all[test]])
    wq_cats = w_cats + list(cats[test])
    rel_w = relevance(wq_cats, cats[test])
    s_proj = wq_vecs @ proj(enc.image[test]).T
    methods["text:projection"] = rank_metrics(s_proj, rel_w)
    rng = np.random.default_rng(seed)
    s_none = np.tile(rng.permutation(len(test)).astype(np.float32), (len(wq_vecs), 1))  # no text: chance order
    methods["text:minilm:withheld"] = rank_metrics(s_none, rel_w)
    if label_text is not None:
        methods["text:imagenet:withheld"] = rank_metrics(wq_vecs @ label_text().T, rel_w)
    n_w = len(w_cats)
    details["withheld_by_query_type"] = {
        "category names": rank_metrics(s_proj[:n_w], rel_w[:n_w]),
        "paraphrases": rank_metrics(s_proj[n_w:], rel_w[n_w:]),
    }
    details["projection"] = {"loss_first": losses[0], "loss_last": losses[-1], **proj.info}


def _means(met: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one method (means and query count), as the tab's table shows them."""
    return {k: v for k, v in met.items() if k not in ("ci95", "n", "small_set")}


def _interval(met: dict[str, Any]) -> dict[str, Any]:
    """95 % bootstrap intervals of one method, the number of resampled units, and the small-set flag."""
    return {"ci95": met.get("ci95", {}), "n": met.get("n"), "small_set": bool(met.get("small_set", False))}


def bars(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tab's three bars, each with the numbers it compares and whether it is met."""
    m = result["methods"]
    best_single = max(m["text:minilm"]["recall@10"], m["image"]["recall@10"])
    same = result["details"]["fusion"]["same_queries"]
    return {
        "fused R@10 >= best single modality": {
            "fused": m["fused"]["recall@10"], "text:minilm": m["text:minilm"]["recall@10"],
            "image": m["image"]["recall@10"],
            "text on the fused queries": same["text only (paraphrase)"]["recall@10"],
            "met": m["fused"]["recall@10"] >= max(best_single, same["text only (paraphrase)"]["recall@10"]),
        },
        "MiniLM >= TF-IDF on text queries": {
            "text:minilm": m["text:minilm"]["recall@10"], "text:tfidf": m["text:tfidf"]["recall@10"],
            "met": m["text:minilm"]["recall@10"] >= m["text:tfidf"]["recall@10"],
        },
        "projection improves text→item R@10 for withheld text": {
            "text:projection": m["text:projection"]["recall@10"],
            "without (chance)": m["text:minilm:withheld"]["recall@10"],
            "met": m["text:projection"]["recall@10"] > m["text:minilm:withheld"]["recall@10"],
        },
    }


def save_report(result: dict[str, Any], name: str = "tuxpaint") -> None:
    """Write the full evaluation (methods, details, bars) beside the index, for the UI to show.

    Only the default seed's run becomes ``<name>-evaluation.json`` (what the tab shows); other seeds are
    robustness checks and go to ``<name>-evaluation-seed<N>.json``.
    """
    seed = result.get("details", {}).get("split", {}).get("seed", SEED)
    suffix = "" if seed == SEED else f"-seed{seed}"
    write_json(index_dir() / f"{name}-evaluation{suffix}.json", {**result, "bars": bars(result)})
