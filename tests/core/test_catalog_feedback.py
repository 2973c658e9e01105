"""Likes and dislikes re-rank a person's own catalog at once: photo search, "more like this", words, both.

The catalog is built from scikit-image's real photos (a cat, a cup of coffee, an astronaut, a rocket, a camera
man) plus two different crops of the coffee and of the cat, so each of those has a same-subject sibling that is
not the photo itself. What a test asserts is always relative to the same query without the feedback.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from core.catalog.jobs import add_catalog
from core.catalog.store import LIFTED, FeedbackWeights, open_catalog
from core.feedback.catalog import catalog_feedback, record_item_feedback
from core.feedback.rocchio import RocchioWeights
from core.feedback.store import FeedbackStore

NAME = "likes-shop"


def _crop(sample: str, box: tuple[float, float, float, float]) -> Image.Image:
    img = Image.fromarray(getattr(skdata, sample)()).convert("RGB")
    w, h = img.size
    return img.crop((int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h)))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("likes-shop")
    for name, sample in {"cat.png": "chelsea", "coffee.png": "coffee", "astronaut.png": "astronaut",
                         "rocket.png": "rocket", "camera.png": "camera"}.items():
        Image.fromarray(getattr(skdata, sample)()).save(folder / name)
    _crop("coffee", (0.0, 0.0, 0.65, 0.9)).save(folder / "coffee-left.jpg", quality=90)
    _crop("coffee", (0.3, 0.1, 1.0, 1.0)).save(folder / "coffee-right.jpg", quality=90)
    _crop("chelsea", (0.0, 0.0, 0.6, 1.0)).save(folder / "cat-left.jpg", quality=90)
    add_catalog(NAME, folder)
    return open_catalog(NAME)


def _rank(hits: list, item: str) -> int:
    ids = [h.id for h in hits]
    return ids.index(item) if item in ids else len(ids)


QUERIES = {"photo": dict(image=skdata.rocket()), "words": dict(text="rocket"),
           "both": dict(text="rocket", image=skdata.rocket())}


@pytest.mark.slow(reason="builds a small catalog (~30 s on a busy machine)")
@pytest.mark.parametrize("kind", sorted(QUERIES))
def test_a_like_moves_a_same_subject_item_up_on_the_next_search(catalog, kind):
    query = QUERIES[kind]
    plain = catalog.search(**query, k=len(catalog))
    liked = catalog.search(**query, k=len(catalog), liked=["coffee.png"])
    assert _rank(liked, "coffee-right.jpg") < _rank(plain, "coffee-right.jpg")
    lifted = next(h for h in liked if h.id == "coffee-right.jpg")
    assert lifted.reason.startswith(LIFTED)
    assert not any(h.reason.startswith(LIFTED) for h in plain)


@pytest.mark.slow(reason="needs the module's catalog")
def test_a_like_moves_more_like_this_too(catalog):
    plain = catalog.similar_items("rocket.png", len(catalog))
    liked = catalog.similar_items("rocket.png", len(catalog), liked=["cat.png"])
    assert _rank(liked, "cat-left.jpg") < _rank(plain, "cat-left.jpg")
    assert "rocket.png" not in [h.id for h in liked]


@pytest.mark.slow(reason="needs the module's catalog")
def test_a_dislike_hides_the_item_and_pushes_its_kind_down(catalog):
    plain = {h.id: h.score for h in catalog.search(image=skdata.rocket(), k=len(catalog))}
    hits = catalog.search(image=skdata.rocket(), k=len(catalog), disliked=["coffee.png"])
    assert "coffee.png" not in [h.id for h in hits] and len(hits) == len(catalog) - 1
    assert "coffee.png" not in [h.id for h in catalog.similar_items("cat.png", len(catalog), disliked=["coffee.png"])]
    pushed = {h.id: h.score for h in hits}
    assert pushed["coffee-right.jpg"] - pushed["astronaut.png"] < plain["coffee-right.jpg"] - plain["astronaut.png"]
    # disliking the very photo searched leaves a query to search with
    assert catalog.search(image=skdata.coffee(), k=3, disliked=["coffee.png"])


@pytest.mark.slow(reason="needs the module's catalog")
@pytest.mark.parametrize("kind", sorted(QUERIES))
def test_empty_feedback_is_the_plain_search_exactly(catalog, kind):
    plain = catalog.search(**QUERIES[kind], k=len(catalog))
    assert catalog.search(**QUERIES[kind], k=len(catalog), liked=[], disliked=()) == plain
    assert catalog.search(**QUERIES[kind], k=len(catalog), liked=["other-shop/coffee.png", "nope.jpg"]) == plain
    assert catalog.similar_items("cat.png", 4, liked=[], disliked=[]) == catalog.similar_items("cat.png", 4)


@pytest.mark.slow(reason="needs the module's catalog")
def test_feedback_of_another_catalog_or_profile_changes_nothing(catalog, tmp_path):
    store = FeedbackStore.open(f"sqlite:///{tmp_path / 'fb.sqlite3'}", tmp_path / "images")
    for profile in ("ann", "bob"):
        store.create_profile(profile)
    exists = set(catalog.ids).__contains__
    record_item_feedback(store, "ann", "multimodal", NAME, "coffee.png", "like", exists=exists, model_version="t")
    store.record("bob", "multimodal", "other-shop/cat.png", "like")  # the same id in another catalog
    store.record("bob", "multimodal", "other-shop/rocket.png", "dislike")
    plain = catalog.search(text="rocket", k=len(catalog))
    liked, disliked = catalog_feedback(store, "bob", "multimodal", NAME, exists)
    assert (liked, disliked) == ([], [])
    assert catalog.search(text="rocket", k=len(catalog), liked=liked, disliked=disliked) == plain
    liked, disliked = catalog_feedback(store, "ann", "multimodal", NAME, exists)
    assert liked == ["coffee.png"]
    assert catalog.search(text="rocket", k=len(catalog), liked=liked, disliked=disliked) != plain
    assert catalog_feedback(store, "ann", "fashion", NAME, exists) == ([], [])  # the other tab's likes stay there


@pytest.mark.slow(reason="needs the module's catalog")
def test_weights_are_used_as_given(catalog):
    """β = γ = 0 and no word-image share: the feedback moves nothing (only the dislike is hidden)."""
    still = FeedbackWeights(RocchioWeights(1.0, 0.0, 0.0), 0.0)
    for query in QUERIES.values():
        plain = {h.id: h.score for h in catalog.search(**query, k=len(catalog)) if h.id != "camera.png"}
        moved = catalog.search(**query, k=len(catalog), liked=["coffee.png"], disliked=["camera.png"], feedback=still)
        assert {h.id for h in moved} == set(plain)  # ties (word scores of 0) may come in another order
        assert np.allclose([h.score for h in moved], [plain[h.id] for h in moved], atol=1e-6)


def test_the_result_grid_passes_likes_and_dislikes_to_both_searches():
    """The shared grid's searches hand the profile's likes and dislikes to the catalog, and cache on them."""
    from ui import catalog_view

    class Spy:
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def search(self, **kwargs):
            self.calls.append(("search", kwargs["liked"], kwargs["disliked"]))
            return []

        def similar_items(self, item, k, categories, **kwargs):
            self.calls.append(("similar", kwargs["liked"], kwargs["disliked"]))
            return []

    spy = Spy()
    for liked in ((), ("a.jpg",)):
        catalog_view._search("spy-shop", 1.0, "dog", None, 1.0, 5, (), liked, ("b.jpg",), spy, None)
        catalog_view._similar("spy-shop", 1.0, "c.jpg", 5, (), liked, ("b.jpg",), spy)
    assert spy.calls == [("search", (), ("b.jpg",)), ("similar", (), ("b.jpg",)),
                         ("search", ("a.jpg",), ("b.jpg",)), ("similar", ("a.jpg",), ("b.jpg",))]


# -- how title words match a query word (titled catalogs) -----------------------------------------------------


@pytest.mark.parametrize("title_word, stands_for", [("men", "person"), ("women", "person"), ("heron", "bird"),
                                                    ("cathedrals", "church"), ("churches", "church"),
                                                    ("hens", "bird"), ("sledgehammer", "hammer")])
def test_a_title_word_stands_for_its_lemma_and_the_kinds_it_names(title_word, stands_for):
    from core.catalog.store import _title_forms

    assert stands_for in _title_forms(title_word, "kinds")
    assert stands_for not in _title_forms(title_word, "plain")


@pytest.mark.parametrize("title_word, not_for", [("heron", "person"), ("pliers", "person"), ("fish", "person"),
                                                 ("back", "person"), ("windmill", "tower")])
def test_a_title_word_takes_its_everyday_sense_only(title_word, not_for):
    """Heron of Alexandria, a 'plier' who plies a trade, the astrological Fish, a football back: not persons."""
    from core.catalog.store import _title_forms

    assert not_for not in _title_forms(title_word, "kinds")


def test_query_and_title_words_are_normalised_the_same_way():
    from core.catalog.store import _item_forms, _query_forms

    for query, title in (("churches", "Old church by a lake"), ("church", "Two churches"), ("mice", "A mouse"),
                         ("mouse", "Three mice")):
        assert _query_forms(query, "lemmas") & _item_forms(title, "lemmas"), (query, title)
    assert not _query_forms("churches", "plain") & _item_forms("Old church by a lake", "plain")


@pytest.mark.slow(reason="builds a small titled catalog (~30 s)")
def test_titled_word_search_counts_a_kind_named_in_a_title(tmp_path):
    from core.catalog.store import remove_catalog

    folder = tmp_path / "titled"
    folder.mkdir()
    for name, sample in {"astronaut.png": "astronaut", "rocket.png": "rocket", "coffee.png": "coffee"}.items():
        Image.fromarray(getattr(skdata, sample)()).save(folder / name)
    (folder / "catalog.csv").write_text("image,title\nastronaut.png,Woman in an orange suit\n"
                                        "rocket.png,Launch vehicle on the pad\ncoffee.png,Espresso in a white cup\n")
    add_catalog("kinds-shop", folder / "catalog.csv")
    catalog = open_catalog("kinds-shop")
    row = catalog.ids.index("astronaut.png")
    assert catalog._lexical("person", "kinds")[row] == 1.0 and catalog._lexical("person", "plain")[row] == 0.0
    with_kinds, _ = catalog.word_scores("person", title_words="kinds")
    plain, _ = catalog.word_scores("person", title_words="plain")
    assert with_kinds[row] > plain[row] and np.allclose(np.delete(with_kinds, row), np.delete(plain, row))
    remove_catalog("kinds-shop")
