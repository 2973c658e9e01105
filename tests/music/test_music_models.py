"""Music models: MF learns planted taste structure (beats popularity), seen items excluded, reasons,
genre cold start, save/load round trip, stale and corrupt artifacts explained."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.artifacts import ArtifactError
from music.data import load_dataset, ratio_split, user_holdout_split
from music.mf.baselines import GenreRecommender, Popularity
from music.mf.evaluate import rating_metrics, topn_metrics
from music.mf.model import KerasMF
from music.recommender import UnknownUser


@pytest.fixture(scope="module")
def small():
    """A small simulated log: 200 listeners whose tastes concentrate on a few of 12 genres."""
    return load_dataset("simulated", n_users=200, n_songs=400, n_artists=40, sessions_mean=8, seed=11)


@pytest.fixture(scope="module")
def fitted(small):
    split = user_holdout_split(small.interactions, seed=3)
    mf = KerasMF(dim=32, epochs=12, l2=1e-3, lr=5e-3, batch_size=256, seed=0).fit(small, split.train)
    return small, split, mf


def test_mf_recovers_planted_structure_and_beats_popularity(fitted):
    data, split, mf = fitted
    pop = Popularity().fit(data, split.train)
    m_mf, m_pop = topn_metrics(mf, split.test), topn_metrics(pop, split.test)
    assert m_mf["ndcg@10"] > 1.3 * m_pop["ndcg@10"], (m_mf, m_pop)
    assert m_mf["hr@10"] > m_pop["hr@10"]
    # The embedding space groups songs by genre: nearest neighbours share a genre far above chance.
    genres = mf.catalog.genres
    share = []
    for i in range(0, mf.catalog.n_items, 10):
        item = mf.catalog.items.external(i)
        for j, _ in mf.similar_items(item, 5):
            share.append(bool(set(genres[i]) & set(genres[mf.catalog.items.index(j)])))
    assert np.mean(share) > 0.5


@pytest.mark.parametrize("params", [
    {"mode": "wmf", "dim": 32, "epochs": 8, "l2": 0.05, "lr": 1e-2, "batch_size": 512},
    {"mode": "bpr", "dim": 32, "epochs": 8, "l2": 1e-4, "lr": 1e-2, "batch_size": 256},
], ids=["wmf", "bpr"])
def test_other_implicit_objectives_beat_popularity(small, params):
    """The iALS-style objective (the default for play counts) and BPR learn the same planted structure."""
    split = user_holdout_split(small.interactions, seed=3)
    wmf = KerasMF(**params).fit(small, split.train)
    m_wmf = topn_metrics(wmf, split.test)
    m_pop = topn_metrics(Popularity().fit(small, split.train), split.test)
    assert m_wmf["ndcg@10"] > 1.3 * m_pop["ndcg@10"], (m_wmf, m_pop)


def test_recommend_excludes_seen_and_explains(fitted):
    data, split, mf = fitted
    user = split.train["user"].iloc[0]
    seen = set(split.train.loc[split.train["user"] == user, "item"])
    recs = mf.recommend(user, 20)
    assert len(recs) == 20 and not seen & {r.item for r in recs}
    titles = set(data.items.set_index("item").loc[list(seen), "title"])
    for r in recs:
        assert r.reason.startswith("because you listened to ")
        assert any(t in r.reason for t in titles)  # the reason names a song from this user's history
        assert r.title == data.item_info().loc[r.item, "title"]  # titles belong to the predicted ids
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    with_seen = {r.item for r in mf.recommend(user, 400, exclude_seen=False)}
    assert seen <= with_seen
    with pytest.raises(UnknownUser):
        mf.recommend("nobody", 5)


def test_genre_cold_start_and_popularity_reason(small):
    genre = GenreRecommender().fit(small)
    recs = genre.recommend_for_genres(["jazz"], 10)
    assert recs and all("jazz" in r.genres for r in recs)
    assert all(r.reason == "popular in jazz" for r in recs)
    assert genre.recommend_for_genres(["no-such-genre"]) == []
    pop = Popularity().fit(small)
    assert pop.recommend(small.interactions["user"].iloc[0], 3)[0].reason.startswith("popular")


def test_save_load_round_trip(fitted, tmp_path):
    data, split, mf = fitted
    mf.save(tmp_path / "mf")
    assert (tmp_path / "mf.keras").is_file()
    manifest = json.loads((tmp_path / "mf.json").read_text())
    assert manifest["dataset_checksum"] == data.checksum() and "keras" in manifest["versions"]
    back = KerasMF.load(tmp_path / "mf", expect_checksum=data.checksum())
    users = np.arange(5)
    np.testing.assert_allclose(back.score(users), mf.score(users), rtol=1e-5, atol=1e-5)
    user = split.train["user"].iloc[0]
    assert [r.item for r in back.recommend(user, 10)] == [r.item for r in mf.recommend(user, 10)]
    # the .keras file itself loads and scores like the factors
    km = back.keras_model()
    assert km.get_layer("mf").n_items == mf.catalog.n_items
    g = GenreRecommender().fit(data, split.train)
    g.save(tmp_path / "genre")
    assert [r.item for r in GenreRecommender.load(tmp_path / "genre").recommend_for_genres(["rock"])] == \
        [r.item for r in g.recommend_for_genres(["rock"])]


def test_stale_and_corrupt_artifacts_are_explained(fitted, tmp_path):
    data, split, mf = fitted
    mf.save(tmp_path / "mf")
    with pytest.raises(ArtifactError, match="stale"):
        KerasMF.load(tmp_path / "mf", expect_checksum="0000")
    (tmp_path / "mf.keras").write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        KerasMF.load(tmp_path / "mf")
    (tmp_path / "mf.json").write_text("{ broken")
    with pytest.raises(ArtifactError, match="corrupt"):
        KerasMF.load(tmp_path / "mf")
    with pytest.raises(ArtifactError, match="music train"):
        Popularity.load(tmp_path / "missing")


@pytest.mark.slow(reason="trains an explicit MF")
def test_explicit_mf_beats_global_mean():
    """Explicit mode on planted ratings: r = 3 + (user taste · item profile), with noise."""
    import pandas as pd

    from music.data import make_dataset

    rng = np.random.default_rng(0)
    U, I = rng.normal(size=(150, 3)), rng.normal(size=(120, 3))
    u, i = rng.integers(0, 150, 6000), rng.integers(0, 120, 6000)
    r = np.clip(np.round(3 + (U[u] * I[i]).sum(1) + rng.normal(0, 0.3, len(u))), 1, 5)
    raw = pd.DataFrame({"user": u.astype(str), "item": i.astype(str), "weight": r})
    data = make_dataset("csv", "explicit", raw, pd.DataFrame({"item": np.arange(120).astype(str)}))
    sp = ratio_split(data.interactions, seed=1)
    mf = KerasMF(dim=8, l2=1e-3, epochs=25, batch_size=128, lr=5e-3).fit(data, sp.train)
    pred = mf.predict(mf.catalog.users.indices(sp.test["user"]), mf.catalog.items.indices(sp.test["item"]),
                      clip=(1, 5))
    rmse = rating_metrics(pred, sp.test["weight"])["rmse"]
    base = rating_metrics(np.full(len(sp.test), sp.train["weight"].mean()), sp.test["weight"])["rmse"]
    assert rmse < 0.8 * base, (rmse, base)
