"""Fold-in: a profile's likes become personal picks at once, dislikes never come back.

A planted catalogue: three genre clusters of 30 items; each listener plays items of one cluster (plus one
stray play). A listener known only by 5 likes from one cluster must get picks from that cluster.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from music.data import MusicDataset

CLUSTERS = ("rock", "jazz", "folk")


@pytest.fixture(scope="module")
def planted() -> MusicDataset:
    rng = np.random.default_rng(3)
    items = pd.DataFrame({"item": [f"{g}{k}" for g in CLUSTERS for k in range(30)],
                          "title": [f"{g.title()} song {k}" for g in CLUSTERS for k in range(30)],
                          "artist": [f"{g} band {k % 5}" for g in CLUSTERS for k in range(30)],
                          "genres": [[g] for g in CLUSTERS for _ in range(30)]})
    rows = []
    for u in range(150):
        g = CLUSTERS[u % 3]
        for k in rng.choice(30, 12, replace=False):
            rows.append((f"u{u}", f"{g}{k}", float(rng.integers(1, 50))))
        stray = CLUSTERS[(u + 1) % 3]
        rows.append((f"u{u}", f"{stray}{rng.integers(30)}", 1.0))
    inter = pd.DataFrame(rows, columns=["user", "item", "weight"]).drop_duplicates(["user", "item"])
    inter["weight"] = inter["weight"].astype(np.float32)
    return MusicDataset("planted", "implicit", inter.reset_index(drop=True), items)


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
    assert same >= 8, [p.item for p in out.picks]  # chance would be ~10/3
    assert not set(likes) & {p.item for p in out.picks}
    assert all(p.reason.startswith("because you liked ") for p in out.picks)
    liked_titles = {bundle.mf.catalogue.titles[bundle.mf.catalogue.items.index(i)] for i in likes}
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
    assert "folk4" not in items and sum(i.startswith("folk") for i in items) >= 8
    assert store.dislikes("cli", "music") == ["planted:folk4"]
    rc = main(["recommend", "--dataset", "planted", "--profile", "cli", "--like", "nope", "--json"])
    assert rc == 2 and "error: Unknown item" in capsys.readouterr().err


def test_foldin_solve_matches_the_objective_minimum(bundle):
    """The closed form is the minimiser of the weighted objective: its gradient there is zero."""
    from music.mf.foldin import FoldInModel

    f = FoldInModel(bundle.mf)
    liked = np.array([0, 5, 7])
    p = f.solve(liked).p
    y = np.zeros(len(f.Q))
    w = np.ones(len(f.Q))
    y[liked], w[liked] = 1.0, f.confidence
    grad = -2 * f.Q.T @ (w * (y - f.bi - f.Q @ p)) + 2 * f.l2 * p
    assert np.abs(grad).max() < 1e-8
