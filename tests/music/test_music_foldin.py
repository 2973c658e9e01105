"""Fold-in: a profile's likes become personal picks at once, dislikes never come back.

A planted catalog: three genre clusters of 30 items; each listener plays items of one cluster (plus one
stray play). A listener known only by 5 likes from one cluster must get picks from that cluster.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from music.data import MusicDataset

CLUSTERS = ("rock", "jazz", "folk")


def make_planted(plays: int = 12, users: int = 150) -> MusicDataset:
    """Listeners of one cluster each: ``plays`` items of it and one stray play."""
    rng = np.random.default_rng(3)
    items = pd.DataFrame({"item": [f"{g}{k}" for g in CLUSTERS for k in range(30)],
                          "title": [f"{g.title()} song {k}" for g in CLUSTERS for k in range(30)],
                          "artist": [f"{g} band {k % 5}" for g in CLUSTERS for k in range(30)],
                          "genres": [[g] for g in CLUSTERS for _ in range(30)]})
    rows = []
    for u in range(users):
        g = CLUSTERS[u % 3]
        for k in rng.choice(30, plays, replace=False):
            rows.append((f"u{u}", f"{g}{k}", float(rng.integers(1, 50))))
        stray = CLUSTERS[(u + 1 + rng.integers(2)) % 3]  # one stray play in another cluster
        rows.append((f"u{u}", f"{stray}{rng.integers(30)}", 1.0))
    inter = pd.DataFrame(rows, columns=["user", "item", "weight"]).drop_duplicates(["user", "item"])
    inter["weight"] = inter["weight"].astype(np.float32)
    return MusicDataset("planted", "implicit", inter.reset_index(drop=True), items)


@pytest.fixture(scope="module")
def planted() -> MusicDataset:
    return make_planted()


@pytest.fixture(scope="module")
def bundle(planted):
    from music.mf.train import load_bundle, train

    train("planted", data=planted, force=True, mf_params={"dim": 8, "epochs": 40, "lr": 0.03, "patience": 5})
    return load_bundle("planted")


@pytest.fixture()
def store(tmp_path, monkeypatch):
    from core.feedback.store import FeedbackStore

    url = f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    monkeypatch.setenv("RECS_DATABASE_URL", url)
    s = FeedbackStore.open(url, tmp_path / "images")
    yield s
    s.close()


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_likes_from_one_cluster_give_picks_from_that_cluster(bundle, cluster):
    from music.mf.feedback import picks_for_likes

    likes = [f"{cluster}{k}" for k in range(5)]
    out = picks_for_likes(bundle, likes, n=10)
    assert out.source == "fold_in"
    same = sum(p.item.startswith(cluster) for p in out.picks)
    # 25 unliked items of the cluster remain; a random top-10 would hold ~3.3 of them, stray plays add noise
    assert same >= 7, [p.item for p in out.picks]
    assert not set(likes) & {p.item for p in out.picks}
    assert all(p.reason.startswith("because you liked ") for p in out.picks)
    liked_titles = {bundle.mf.catalog.titles[bundle.mf.catalog.items.index(i)] for i in likes}
    assert all(any(t in p.reason for t in liked_titles) for p in out.picks)


def test_a_disliked_item_never_appears(bundle, store):
    from music.mf import feedback

    for k in range(3):
        feedback.record(store, bundle, "ana", f"jazz{k}", "like")
    first = feedback.profile_picks(store, bundle, "ana", 10)
    top = first.picks[0].item
    feedback.record(store, bundle, "ana", top, "dislike")
    again = feedback.profile_picks(store, bundle, "ana", 30)
    assert top not in {p.item for p in again.picks} and again.dislikes == [top]
    # the no-likes path (genre picks) filters dislikes too
    store.undo("ana", "music", feedback.item_key("planted", "jazz0"))
    store.undo("ana", "music", feedback.item_key("planted", "jazz1"))
    store.undo("ana", "music", feedback.item_key("planted", "jazz2"))
    genre = feedback.profile_picks(store, bundle, "ana", 90, genres=["jazz"])
    assert genre.source == "genre" and top not in {p.item for p in genre.picks} and genre.picks


def test_unknown_items_are_refused_and_nothing_is_written(bundle, store):
    from core.feedback.store import FeedbackError
    from music.mf import feedback

    with pytest.raises(FeedbackError, match="Unknown item"):
        feedback.record(store, bundle, "bo", "no-such-song", "like")
    assert store.events() == []


def test_recommend_profile_cli(bundle, store, capsys):
    from music.__main__ import main

    rc = main(["recommend", "--dataset", "planted", "--profile", "cli", "--like", "folk1", "--like", "folk2",
               "--like", "folk3", "--dislike", "folk4", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["source"] == "fold_in" and out["likes"] == ["folk3", "folk2", "folk1"]
    items = [p["item"] for p in out["picks"]]
    assert "folk4" not in items and sum(i.startswith("folk") for i in items) >= 7
    assert store.dislikes("cli", "music") == ["planted:folk4"]
    rc = main(["recommend", "--dataset", "planted", "--profile", "cli", "--like", "nope", "--json"])
    assert rc == 2 and "error: Unknown item" in capsys.readouterr().err


@pytest.mark.parametrize("constants", [None, {"confidence": 20.0, "l2": 3.0}])
def test_foldin_solve_matches_the_objective_minimum(bundle, constants):
    """The closed form is the minimiser of the weighted objective (with the chosen c and λ): zero gradient."""
    from music.mf.foldin import FoldInConstants, FoldInModel

    f = FoldInModel(bundle.mf, FoldInConstants(**constants) if constants else None)
    liked = np.array([0, 5, 7])
    p = f.solve(liked).p
    y = np.zeros(len(f.Q))
    w = np.ones(len(f.Q))
    y[liked], w[liked] = 1.0, f.confidence
    lam = constants["l2"] if constants else f.l2
    assert f.confidence == (constants["confidence"] if constants else pytest.approx(1 + np.log1p(f.like_value)))
    grad = -2 * f.Q.T @ (w * (y - f.bi - f.Q @ p)) + 2 * lam * p
    assert np.abs(grad).max() < 1e-8


def test_foldin_solve_is_implicits_recalculate_user_without_item_bias(bundle):
    """With the item biases at zero the solve is the standard iALS user step: implicit's ALS
    ``recalculate_user`` (confidence c on the liked items, 1 on every other, λ) gives the same factor."""
    from implicit.cpu.als import AlternatingLeastSquares
    from scipy import sparse

    from music.mf.foldin import FoldInConstants, FoldInModel

    f = FoldInModel(bundle.mf, FoldInConstants(confidence=40.0, l2=2.5))
    f.bi = np.zeros_like(f.bi)
    f.qb = np.zeros_like(f.qb)
    liked = np.array([3, 17, 44, 60])
    als = AlternatingLeastSquares(factors=f.Q.shape[1], regularization=2.5, dtype=np.float64)
    als.item_factors = f.Q.copy()
    row = sparse.csr_matrix((np.full(len(liked), 40.0), (np.zeros(len(liked), int), liked)), shape=(1, len(f.Q)))
    assert np.allclose(f.solve(liked).p, als.recalculate_user(0, row), atol=1e-6)


def test_colistening_weight_adds_the_liked_items_neighbours_in_the_training_history(bundle):
    """δ adds the asymmetric cosine of co-listening counts, counted on the model's own training history."""
    from music.mf.foldin import CoListening, FoldInConstants, FoldInModel

    h = bundle.mf.catalog.history
    b = (h.toarray() != 0).astype(float)
    co = CoListening(h)
    liked = np.array([0, 4, 9])
    n = np.maximum(b.sum(axis=0), 1)
    both = b[:, liked].T @ b  # listeners with both items
    for alpha in (0.5, 1.0):
        want = (both / (n[liked, None] ** alpha * n[None, :] ** (1 - alpha))).mean(axis=0)
        assert np.allclose(co.similarity(liked, alpha), want)
    only = FoldInModel(bundle.mf, FoldInConstants(bias_weight=0.0, colistening_weight=1e6, colistening_alpha=1.0))
    s = only.scores(only.solve(liked))
    assert np.argsort(-s)[:10].tolist() == np.argsort(-co.similarity(liked, 1.0), kind="stable")[:10].tolist()
    plain = FoldInModel(bundle.mf)
    assert np.allclose(plain.scores_many([plain.solve(liked)])[0], plain.scores(plain.solve(liked)))


def test_ranking_constants_weigh_item_bias_and_factor_similarity(bundle):
    """β scales the item bias in the score; γ adds the liked items' factor-space similarity (z-scored)."""
    from music.mf.foldin import FoldInConstants, FoldInModel

    liked = np.array([0, 1, 2])
    plain = FoldInModel(bundle.mf)
    no_bias = FoldInModel(bundle.mf, FoldInConstants(bias_weight=0.0))
    u = plain.solve(liked)
    assert np.allclose(plain.scores(u) - no_bias.scores(u), plain.bi)
    sim_only = FoldInModel(bundle.mf, FoldInConstants(similarity_weight=1e6))
    s = sim_only.scores(sim_only.solve(liked))
    assert np.argsort(-s)[:10].tolist() == np.argsort(-sim_only.similarity(liked))[:10].tolist()


def test_the_product_uses_the_constants_chosen_for_its_dataset(bundle):
    """``foldin-<dataset>.json`` beside the models is what the tab folds in with; another objective's file is
    ignored (the model's own values)."""
    from music.mf import feedback
    from music.mf.foldin import FoldInConstants, constants_path, load_constants, save_constants

    chosen = FoldInConstants(confidence=9.0, l2=2.0, bias_weight=0.5, similarity_weight=0.25,
                             colistening_weight=0.5, colistening_alpha=0.9)
    try:
        save_constants("planted", chosen, mode=str(bundle.mf.mode), engine="keras", chosen_on={"test": True})
        bundle._foldin = None
        f = feedback._foldin(bundle)
        assert f.constants == chosen and f.confidence == 9.0 and f.lam == 2.0
        liked = np.array([0, 1, 2])
        want = f.scores(f.solve(liked))
        want[liked] = -np.inf
        top = feedback.picks_for_likes(bundle, list(bundle.mf.catalog.items.externals(liked)), n=5).picks
        assert [p.item for p in top] == list(bundle.mf.catalog.items.externals(np.argsort(-want, kind="stable")[:5]))
        assert load_constants("planted", "explicit", "keras") == FoldInConstants()
    finally:
        constants_path("planted").unlink(missing_ok=True)
        bundle._foldin = None
    assert feedback._foldin(bundle).constants == FoldInConstants()


def test_a_fresh_machine_folds_in_with_the_committed_evaluations_constants(tmp_path, monkeypatch):
    """Without ``foldin-<dataset>.json`` beside the models (models just built, evaluation never run here) the
    constants recorded in ``bench/results/music_foldin_<dataset>.json`` are used, but only for the objective
    and engine they were chosen for."""
    from core.artifacts import write_json
    from music.mf import foldin

    monkeypatch.setattr(foldin, "RESULTS_DIR", tmp_path)
    assert foldin.load_constants("planted", "wmf", "keras") == foldin.FoldInConstants()  # no result at all
    chosen = {"confidence": 64.0, "l2": 30.0, "bias_weight": 2.0, "similarity_weight": 0.5,
              "colistening_weight": 0.25, "colistening_alpha": 1.0}
    write_json(tmp_path / "music_foldin_planted.json",
               {"meta": {"foldin": {"mode": "wmf", "engine": "keras"}, "validation": {"chosen": chosen}}})
    assert foldin.load_constants("planted", "wmf", "keras") == foldin.FoldInConstants.from_dict(chosen)
    assert foldin.load_constants("planted", "explicit", "keras") == foldin.FoldInConstants()
    assert foldin.load_constants("planted", "wmf", "spark") == foldin.FoldInConstants()
    # a constants file beside the models from an older search (no co-listening) gives way to the evaluation's
    old = {"kind": "music-foldin-constants", "schema": 1, "dataset": "planted", "mode": "wmf", "engine": "keras",
           "constants": {"confidence": 1024.0, "l2": 3000.0, "bias_weight": 1.0, "similarity_weight": 1.0}}
    try:
        write_json(foldin.constants_path("planted"), old)
        assert foldin.load_constants("planted", "wmf", "keras") == foldin.FoldInConstants.from_dict(chosen)
    finally:
        foldin.constants_path("planted").unlink(missing_ok=True)
    (tmp_path / "music_foldin_planted.json").write_text("{not json")
    assert foldin.load_constants("planted", "wmf", "keras") == foldin.FoldInConstants()


def test_evaluate_foldin_chooses_on_validation_listeners_and_reports_test(tmp_path, monkeypatch):
    """Constants are chosen on validation listeners disjoint from the test ones (with an MF that saw neither),
    written beside the models, and the test rows carry intervals and the paired ratio to popularity."""
    from music.mf import evaluate_foldin as ev
    from music.mf.foldin import FoldInConstants, constants_path, load_constants

    planted = make_planted(plays=18)  # held-out listeners need ≥ 15 items
    monkeypatch.setattr("core.metrics.RESULTS_DIR", tmp_path)
    monkeypatch.setattr(ev, "GRID", {"confidence": (3.0, 30.0), "l2": (0.1, 10.0), "bias_weight": (0.0, 1.0),
                                     "similarity_weight": (0.0, 1.0), "colistening_weight": (0.0, 1.0),
                                     "colistening_alpha": (0.5, 1.0)})
    setup = ev._setup(planted, 42)
    test_users, val_users = set(setup["test_users"]), set(setup["val_users"])
    assert val_users and not test_users & val_users
    assert not set(setup["train_val"]["user"]) & (test_users | val_users)
    params = {"dim": 8, "epochs": 15, "lr": 0.03, "patience": 3}
    out = ev.evaluate_foldin("planted", data=planted, retrain=False, mf_params=params, fits_dir=tmp_path / "fits")
    try:
        for key in ("fold_in_k1", "fold_in_k3", "fold_in_k5", "fold_in_k10", "popularity", "genre"):
            lo, hi = out[key]["ndcg@10_ci95"]
            assert lo <= out[key]["ndcg@10"] <= hi and "hr@10" in out[key]
        ratio = out["meta"]["bars"]["fold_in_k5_over_popularity"]
        assert ratio["ci95"][0] <= ratio["ratio"] <= ratio["ci95"][1]
        v = out["meta"]["validation"]
        chosen = FoldInConstants.from_dict(v["chosen"])
        # the winner is the best candidate on validation, at least as good as the model's own constants
        best = max(c["val_ndcg@10_mean"] for c in v["candidates"])
        assert v["fold_in_chosen"]["val_ndcg@10_mean"] == best >= v["fold_in_model_defaults"]["val_ndcg@10_mean"]
        assert load_constants("planted", "wmf", "keras") == chosen
        assert out["meta"]["foldin"]["l2"] == chosen.l2
        # a second run reuses both fits and chooses the same
        again = ev.evaluate_foldin("planted", data=planted, retrain=False, mf_params=params, save=False,
                                   fits_dir=tmp_path / "fits")
        assert again["meta"]["validation"]["chosen"] == v["chosen"]
        assert again["fold_in_k5"]["ndcg@10"] == out["fold_in_k5"]["ndcg@10"]
    finally:
        constants_path("planted").unlink(missing_ok=True)


def test_search_finds_songs_to_like(bundle):
    from music.mf.feedback import search_items

    found = search_items(bundle, "JAZZ song 1", 5)
    assert found and all("jazz song 1" in r.title.lower() for r in found)
    assert [r.score for r in found] == sorted((r.score for r in found), reverse=True)
    assert search_items(bundle, "   ") == [] and search_items(bundle, "zzz-nothing") == []


def test_foldin_protocol_holds_out_whole_listeners_and_never_counts_revealed_items(planted):
    from music.mf.evaluate_foldin import _rank_metrics, _setup, heldout_users

    users = heldout_users(planted, fraction=0.1, min_items=12, seed=1)
    assert len(users) == 15 and list(users) == list(heldout_users(planted, fraction=0.1, min_items=12, seed=1))
    setup = _setup(planted, 42)
    assert not set(setup["train"]["user"]) & set(setup["test_users"])  # whole listeners out of training
    # a ranking that puts the revealed items first still finds the rest: revealed items are skipped, not hits
    revealed, rest = [np.array([0, 1])], [np.array([2, 3])]
    scores = np.zeros(planted.n_items)
    scores[[0, 1, 2, 3]] = [9, 8, 7, 6]
    ndcg, hr = _rank_metrics(lambda r: scores, revealed, rest)
    assert ndcg[0] == pytest.approx(1.0) and hr[0] == 1.0
