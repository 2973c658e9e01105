"""Feedback used by the tabs: fashion and product-search re-ranking (Rocchio, fusion, SVM) and hashtag
training on users' tagged images.

Small real data: Fashion-MNIST pixels (the Debian dataset) for the relevance-feedback protocol, the
hashtag CSV fixture and its three pictures for training with users' pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.feedback import FeedbackError, FeedbackStore, RocchioWeights
from core.feedback.rerank import FeedbackMethod
from core.feedback.store import close_engine
from tests.paths import FIXTURES

FIXTURE = FIXTURES / "hashtag" / "csv"


@pytest.fixture()
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'fb.sqlite3'}"
    yield FeedbackStore.open(url, images_dir=tmp_path / "images")
    close_engine(url)


@pytest.fixture(scope="module")
def fmnist_pixels():
    from core.datasets import DataUnavailable
    from fashion.data import load_fashion_mnist

    try:
        catalog = load_fashion_mnist()
    except DataUnavailable as exc:
        pytest.skip(str(exc))
    rng = np.random.default_rng(0)
    split = np.asarray(catalog.split)
    rows = np.concatenate([rng.choice(np.nonzero(split == "train")[0], 4000, replace=False),
                           rng.choice(np.nonzero(split == "test")[0], 400, replace=False)])
    pixels = catalog.pixels[rows].reshape(len(rows), -1).astype(np.float32)
    return pixels, np.asarray(catalog.labels)[rows], split[rows], [catalog.ids[i] for i in rows]


@pytest.mark.slow(reason="encodes a Fashion-MNIST sample")
def test_relevance_feedback_improves_the_second_page_on_fashion_mnist(fmnist_pixels):
    from fashion.evaluate_feedback import evaluate_feedback

    pixels, labels, split, _ = fmnist_pixels
    result = evaluate_feedback(pixels - pixels.mean(0), labels, split, val_queries=300)
    with_fb, without = result["with_feedback"], result["without_feedback"]
    assert with_fb["queries"] == without["queries"] == 400
    assert with_fb["ci95"][0] <= with_fb["precision@10"] <= with_fb["ci95"][1]
    # the simulated user's likes and dislikes must help on held-out queries
    assert with_fb["precision@10"] >= without["precision@10"] + 0.05, result
    assert result["gain"]["ci95"][0] > 0
    grid = {(g["beta"], g["gamma"]): g["precision@10"] for g in result["validation"]["grid"]}
    chosen = (result["weights"]["beta"], result["weights"]["gamma"])
    assert grid[chosen] == max(grid.values())  # chosen on validation, as documented
    assert grid[(0.0, 0.0)] == result["validation"]["without_feedback"] or grid[(0.0, 0.0)] <= grid[chosen]
    # every re-ranker had the same budget on the same validation queries, and the best of them is the tab's
    candidates = result["validation"]["candidates"]
    assert {k: c["settings"] for k, c in candidates.items()} == {"rocchio": 35, "fusion": 35, "svm": 35}
    assert candidates["rocchio"]["precision@10"] == grid[chosen]
    best = max(candidates.values(), key=lambda c: c["precision@10"])
    assert result["method"] == result["with_feedback"]["method"] == best["best"]
    for kind in ("fusion", "svm"):
        assert candidates[kind]["precision@10"] == max(g["precision@10"] for g in candidates[kind]["grid"])
    # Rocchio stays reported beside the chosen re-ranker, on the same test queries
    assert result["rocchio"]["queries"] == 400
    assert result["rocchio"]["gain"]["mean"] == pytest.approx(
        result["rocchio"]["precision@10"] - without["precision@10"], abs=2e-4)


@pytest.mark.slow(reason="builds an index")
def test_fashion_rerank_moves_toward_likes_and_never_shows_dislikes(fmnist_pixels, store):
    from fashion.feedback import profile_feedback, record_feedback, rerank_with_feedback, search_with_feedback
    from fashion.model import EncoderConfig, FashionIndex

    pixels, labels, split, ids = fmnist_pixels
    index = FashionIndex("fashion-mnist", ids, labels.tolist(), labels.tolist(), pixels - pixels.mean(0),
                         EncoderConfig(), True)
    store.create_profile("ann")
    query_id = ids[0]
    before = [h.id for h in index.similar(query_id, 10)]
    wanted = "Bag" if labels[0] != "Bag" else "Trouser"
    liked = [i for i, lab in zip(ids, labels) if lab == wanted][:3]
    for item in liked:
        record_feedback(store, "ann", index, item, "like")
    record_feedback(store, "ann", index, before[0], "dislike")
    with pytest.raises(FeedbackError, match="not an item"):
        record_feedback(store, "ann", index, "no-such-item", "like")
    assert profile_feedback(store, "ann", index) == (liked[::-1], [before[0]])
    hits, note = search_with_feedback(store, "ann", index, item_id=query_id, k=10)
    assert note == "re-ranked by your 3 likes and 1 dislike"
    got = [h.id for h in hits]
    assert before[0] not in got and query_id not in got
    n_wanted = sum(labels[ids.index(i)] == wanted for i in got)
    assert n_wanted > sum(labels[ids.index(i)] == wanted for i in before)
    store.create_profile("bob")  # another profile's feedback changes nothing for bob
    assert search_with_feedback(store, "bob", index, item_id=query_id, k=10) == (index.similar(query_id, 10), "")
    for method in (FeedbackMethod("svm", c=1.0, lam=4.0), FeedbackMethod("fusion", beta=2.0, gamma=1.0, tau=0.05),
                   FeedbackMethod("rocchio", beta=1.0, gamma=1.0)):
        hits = rerank_with_feedback(index, index.vectors[0], liked, [before[0]], 10, exclude=[query_id],
                                    method=method)
        got = [h.id for h in hits]
        assert len(got) == 10 and before[0] not in got and query_id not in got, method
        assert sum(labels[ids.index(i)] == wanted for i in got) > sum(labels[ids.index(i)] == wanted
                                                                     for i in before), method
    only_likes = rerank_with_feedback(index, None, liked, [], 10, exclude=liked)
    assert all(labels[ids.index(h.id)] == wanted for h in only_likes)


@pytest.mark.slow(reason="trains a hashtag model")
def test_hashtag_training_with_users_pairs(store, tmp_path):
    from hashtag import data
    from hashtag.feedback import record_tag_edits
    from hashtag.service import HashtagService
    from hashtag.train import TrainConfig, train

    ds = data.build_dataset(data.csv_examples(FIXTURE / "hashtags.csv"), tmp_path / "csv", name="csv")
    store.create_profile("ann")
    record = record_tag_edits(store, "ann", (FIXTURE / "images" / "cat.png").read_bytes(), ["cat", "tree"],
                              ["cat", "kitten"])
    record_tag_edits(store, "ann", (FIXTURE / "images" / "beach.jpg").read_bytes(), ["sea"], ["sea", "sand"])
    signals = [(e.signal, e.value) for e in store.events("ann", "hashtag") if e.item == record.sha256]
    assert signals == [("tag_accepted", "cat"), ("tag_removed", "tree"), ("tag_added", "kitten")]
    config = TrainConfig(epochs=2, batch_size=4, flips=True)
    plain = train(ds.root, config, out=tmp_path / "plain", evaluate_after=False)
    assert plain["feedback"] == {"user_pairs": 0}
    pending = train(ds.root, config, out=tmp_path / "pending", evaluate_after=False, with_feedback=True, store=store)
    assert pending["feedback"]["user_pairs"] == 0  # edits nobody has reviewed never reach the model
    for edit in store.tagged_images(review="pending"):
        store.review_tag_edit(edit.id, "accepted", "admin-key")
    fed = train(ds.root, config, evaluate_after=False, with_feedback=True, store=store)  # the tab's model folder
    assert fed["feedback"]["user_pairs"] == 2 and fed["feedback"]["split"] == "user"
    assert fed["train_samples"] == fed["train_images"] + 2
    assert {"kitten", "sand"} <= set(fed["vocab"]) and "kitten" not in plain["vocab"]
    assert fed["key"] != plain["key"]  # a model trained without users' pairs is never taken for one with them
    service = HashtagService(ds.root)  # a vocabulary grown by users' tags loads and predicts
    assert service.predict(FIXTURE / "images" / "cat.png", k=3)


def test_product_search_rerank_uses_both_parts_and_drops_dislikes(fmnist_pixels, store):
    from multimodal.feedback import profile_feedback, record_feedback, rerank_with_feedback
    from multimodal.model import MultimodalIndex

    pixels, labels, _, ids = fmnist_pixels
    n = 600
    image = pixels[:n] - pixels[:n].mean(0)
    onehot = (labels[:n, None] == np.unique(labels)[None, :]).astype(np.float32)  # text that names the class
    text = onehot + np.random.default_rng(0).normal(0, 0.8, onehot.shape).astype(np.float32)
    index = MultimodalIndex(ids[:n], labels[:n].tolist(), labels[:n].tolist(), [""] * n, text, image,
                            manifest={"catalog": {"name": "fmnist-sample"}})
    store.create_profile("ann")
    query = 0
    before = index.search(text_vec=index.text[query], image_vec=index.image[query], k=10, exclude_id=ids[query])
    wanted = "Bag" if labels[query] != "Bag" else "Trouser"
    liked = [i for i, lab in zip(ids[:n], labels[:n]) if lab == wanted][:4]
    for item in liked:
        record_feedback(store, "ann", index, item, "like")
    record_feedback(store, "ann", index, before[0].id, "dislike")
    with pytest.raises(FeedbackError, match="not an item"):
        record_feedback(store, "ann", index, "nope", "like")
    got_liked, got_disliked = profile_feedback(store, "ann", index)
    assert set(got_liked) == set(liked) and got_disliked == [before[0].id]
    after = rerank_with_feedback(index, text_vec=index.text[query], image_vec=index.image[query], liked=got_liked,
                                 disliked=got_disliked, k=10, exclude=[ids[query]],
                                 weights=RocchioWeights(1.0, 4.0, 0.5))  # strong enough to reach another class
    assert before[0].id not in [r.id for r in after] and ids[query] not in [r.id for r in after]
    assert sum(r.category == wanted for r in after) > sum(r.category == wanted for r in before)
    for method in (FeedbackMethod("svm", c=1.0, lam=4.0), FeedbackMethod("fusion", beta=4.0, gamma=0.5, tau=0.05)):
        reranked = rerank_with_feedback(index, text_vec=index.text[query], image_vec=index.image[query],
                                        liked=got_liked, disliked=got_disliked, k=10, exclude=[ids[query]],
                                        weights=RocchioWeights(1.0, 4.0, 0.5), method=method)
        got = [r.id for r in reranked]
        assert len(got) == 10 and before[0].id not in got and ids[query] not in got, method
        assert sum(r.category == wanted for r in reranked) > sum(r.category == wanted for r in before), method
        assert all(a.score >= b.score for a, b in zip(reranked, reranked[1:]))  # the re-ranker's order
    by_likes = rerank_with_feedback(index, liked=liked, k=5, exclude=liked)
    assert [r.category for r in by_likes] == [wanted] * 5


@pytest.mark.slow(reason="python -m processes")
@pytest.mark.parametrize("package", ["fashion", "multimodal"])
def test_evaluate_feedback_without_an_index_says_how_to_build_it(package, tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", package, "evaluate-feedback", "--json"], cwd=root, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(root), RECS_MODELS_DIR=str(tmp_path),
                                             RECS_RESULTS_DIR=str(tmp_path / "results")))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: ") and f"python -m {package} index" in out.stderr
    assert not (tmp_path / "results").exists()
