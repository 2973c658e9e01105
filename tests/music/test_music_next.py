"""Tests for music "up next": sessions, baskets, the leak-free split, the Caser network, baselines, metrics.

Each test would fail if the feature it names broke: the planted-pattern test trains a tiny CNN on
sequences where the next item is fully determined by the previous one (popularity cannot know it),
and the leakage test marks validation/test items so any leak into training samples is visible.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pandas as pd
import pytest

from music.next import caser as next_caser
from music.next import model as caser
from music.next.baselines import Popularity, RepeatRecency, SessionKNN
from music.next.data import (
    PAD,
    build_sequences,
    cut_sessions,
    history_before,
    last_items,
    leave_last_out,
    make_samples,
    target_of,
)
from music.next.evaluate import Evaluator, basket_metrics, target_ranks
from tests.paths import FIXTURES

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # a shared 2-core machine: one thread is ~10x faster than two under contention


def _events(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"])


# ----------------------------------------------------------------------------------------------
# sessions, baskets, split, samples


def test_sessions_cut_at_gaps_and_users() -> None:
    ev = _events([("a", "x", 0), ("a", "y", 100), ("a", "z", 100 + 1801), ("b", "x", 100 + 1802), ("b", "y", 5000)])
    s = cut_sessions(ev, gap_seconds=1800).tolist()
    assert s == [0, 0, 1, 2, 3]  # gap > 1800 s → new session; a new user always starts one
    with pytest.raises(ValueError):
        cut_sessions(_events([("a", "x", 10), ("a", "y", 5)]))


def test_month_baskets_merge_repeats_and_keep_order() -> None:
    jan, feb, mar = 1704067200, 1706745600, 1709251200  # 2024-01-01, 02-01, 03-01 UTC
    ev = _events([("u", "b", jan), ("u", "a", jan + 5), ("u", "b", jan + 9), ("u", "c", feb), ("u", "a", mar)])
    seqs = build_sequences(ev, ["a", "b", "c"], basket="month")
    baskets = [[seqs.item_id(i) for i in b] for b in seqs.baskets[0]]
    assert baskets == [["b", "a"], ["c"], ["a"]]  # a re-listen in another month is kept
    ev_seqs = build_sequences(ev, ["a", "b", "c"], basket="event", dedupe_in_basket=False)
    assert len(ev_seqs.baskets[0]) == 5


def test_unknown_items_are_dropped_and_counted() -> None:
    seqs = build_sequences(_events([("u", "a", 1), ("u", "zzz", 2)]), ["a"], basket="event")
    assert seqs.config["unknown_item_events"] == 1 and seqs.flat(0).tolist() == [1]


def test_samples_never_contain_validation_or_test_items() -> None:
    rows = []
    for u in range(5):
        for t in range(12):
            rows.append((f"u{u}", f"train{t % 6}", t * 10_000))
        rows.append((f"u{u}", f"val{u}", 200_000))
        rows.append((f"u{u}", f"test{u}", 300_000))
    items = [f"train{i}" for i in range(6)] + [f"val{u}" for u in range(5)] + [f"test{u}" for u in range(5)]
    seqs = build_sequences(_events(rows), items, basket="session")
    split = leave_last_out(seqs)
    held_out = {seqs.item_index(f"val{u}") for u in range(5)} | {seqs.item_index(f"test{u}") for u in range(5)}
    samples = make_samples(seqs, split.train_upto, L=5, T=3)
    assert len(samples) > 0
    seen = set(np.unique(samples.inputs)) | set(np.unique(samples.targets))
    assert not (seen & held_out)
    for u in range(5):
        assert seqs.item_id(int(target_of(seqs, split, u, "val")[0])) == f"val{u}"
        assert seqs.item_id(int(target_of(seqs, split, u, "test")[0])) == f"test{u}"
        # the test prediction may read the validation basket as input history, never the test basket
        hist = history_before(seqs, split, u, "test")
        assert seqs.item_index(f"val{u}") in hist and seqs.item_index(f"test{u}") not in hist


def test_sample_windows_are_left_padded() -> None:
    seqs = build_sequences(_events([("u", x, i) for i, x in enumerate("abcdefg")]), list("abcdefg"), basket="event")
    samples = make_samples(seqs, np.array([7]), L=3, T=2)
    assert samples.inputs[0].tolist() == [PAD, PAD, 1] and samples.targets[0].tolist() == [2, 3]
    assert samples.inputs[-1].tolist() == [4, 5, 6] and samples.targets[-1].tolist() == [7, PAD]
    assert last_items(np.array([5, 6], np.int32), 4).tolist() == [0, 0, 5, 6]


def test_repeat_history_of_a_sample_stops_at_its_basket() -> None:
    jan, feb, mar = 1704067200, 1706745600, 1709251200
    ev = _events([("u", "a", jan), ("u", "b", jan), ("u", "c", feb), ("u", "d", feb), ("u", "a", mar)])
    seqs = build_sequences(ev, list("abcd"), basket="month")
    samples = make_samples(seqs, np.array([3]), L=2, T=1)
    # targets b, c, d, a: b's basket starts at 0, c and d's at 2, a's (March) at 4
    assert samples.targets[:, 0].tolist() == [2, 3, 4, 1]
    assert samples.positions.tolist() == [0, 2, 2, 4]


def test_30music_fixture_gives_sessions() -> None:

    from music.data import load_dataset
    from music.next.data import from_dataset

    folder = FIXTURES / "music" / "30music"
    if not folder.exists():
        pytest.skip(f"30Music fixture not present at {folder}")
    seqs = from_dataset(load_dataset("30music", folder))
    assert seqs.n_users > 0 and seqs.config["basket"] == "session"
    assert all(len(b) > 0 for bs in seqs.baskets for b in bs)


# ----------------------------------------------------------------------------------------------
# metrics


def test_metrics_full_ranking_and_fair_ties() -> None:
    scores = np.array([-np.inf, 0.9, 0.5, 0.5, 0.1])
    tiebreak = np.array([0, 1, 3, 2, 4])  # item 3 wins the tie with item 2
    ranks = target_ranks(scores, np.array([2]), tiebreak)
    assert ranks.tolist() == [3]
    m = basket_metrics(ranks, k=10)
    assert m["hr@10"] == 1.0 and m["mrr"] == pytest.approx(1 / 3) and m["top1"] == 0.0
    assert m["ndcg@10"] == pytest.approx(1 / np.log2(4))
    two = basket_metrics(np.array([1, 2]), k=10)
    assert two["ndcg@10"] == pytest.approx(1.0) and two["top1"] == 1.0
    assert basket_metrics(np.array([11]), k=10)["hr@10"] == 0.0


# ----------------------------------------------------------------------------------------------
# the network


def test_model_shapes_and_filters() -> None:
    cfg = caser.CaserConfig(L=4, d=8, n_h=3, n_v=2)
    model = caser.build_model(cfg, n_items=30, n_users=7)
    out = caser.predict_scores(model, np.array([0, 6]), np.array([[0, 0, 1, 2], [3, 4, 5, 6]]))
    assert out.shape == (2, 31)
    assert np.all(out[:, PAD] < -1e8)  # padding never ranks
    assert [model.get_layer(f"h_conv_{h}").kernel_size[0] for h in range(1, 5)] == [1, 2, 3, 4]
    assert model.get_layer("features").output.shape[-1] == 4 * 3 + 2 * 8  # L·n_h horizontal + n_v·d vertical
    rep = caser.build_model(caser.CaserConfig(L=4, d=8, repeat=True), n_items=30, n_users=7)
    hist = [np.array([1, 1, 2]), np.array([5])]
    assert caser.predict_scores(rep, np.array([0, 1]), np.zeros((2, 4), np.int32), hist).shape == (2, 31)


def _planted(n_users: int = 60, n_items: int = 24, length: int = 30, seed: int = 0) -> pd.DataFrame:
    """Each item has one fixed successor (a random permutation); starts are random, so every item is
    about equally popular and popularity cannot predict the next item, while the last item does."""
    rng = np.random.default_rng(seed)
    succ = rng.permutation(n_items)
    rows = []
    for u in range(n_users):
        cur = int(rng.integers(n_items))
        for t in range(length):
            rows.append((f"u{u}", f"i{cur}", t * 60))
            cur = int(succ[cur])
    return _events(rows)


@pytest.mark.slow(reason="trains the CNN")
def test_cnn_learns_a_planted_sequence_that_popularity_cannot() -> None:
    # T=1: with T=3 the next three items of a deterministic chain share the target mass equally,
    # so top-1 would be a three-way tie by construction; the pattern under test is "next after last".
    ev = _planted()
    seqs = build_sequences(ev, [f"i{i}" for i in range(24)], basket="event")
    split = leave_last_out(seqs)
    ev_ = Evaluator(seqs, split, exclude_seen=False)
    cnn = next_caser.CaserNext(caser.CaserConfig(L=3, T=1, d=16, n_h=4, epochs=8, lr=1e-2, dropout=0.1, batch_size=64))
    cnn.fit(seqs, split.train_upto)
    pop = Popularity().fit(seqs, split.train_upto)
    cnn_top1 = ev_.evaluate(cnn, "test")["top1"]
    pop_top1 = ev_.evaluate(pop, "test")["top1"]
    assert cnn_top1 >= 0.8, cnn_top1
    assert pop_top1 <= 0.2, pop_top1


def test_sampled_softmax_and_repeat_channel_train() -> None:
    ev = _planted(n_users=20, length=15)
    seqs = build_sequences(ev, [f"i{i}" for i in range(24)], basket="event")
    split = leave_last_out(seqs)
    cfg = caser.CaserConfig(L=3, d=8, n_h=2, epochs=2, repeat=True, n_sampled=8)  # 25 > 8: sampled path
    cnn = next_caser.CaserNext(cfg).fit(seqs, split.train_upto)
    assert np.isfinite(cnn.info["history"][-1]["loss"])
    hist = [history_before(seqs, split, 0, "test")]
    assert cnn.score(np.array([0]), hist).shape == (1, 25)
    reason = cnn.explain(0, int(hist[0][-1]), hist[0])
    assert "driven by" in reason


def test_repeat_mixture_outputs_log_probabilities() -> None:
    cfg = caser.CaserConfig(L=3, d=8, n_h=2, repeat=True, mix=True)
    model = caser.build_model(cfg, n_items=12, n_users=3)
    hist = [np.array([1, 1, 2]), np.zeros(0, np.int32)]  # the second user has no history: explore only
    out = caser.predict_scores(model, np.array([0, 1]), np.array([[0, 1, 2], [0, 0, 3]]), hist)
    np.testing.assert_allclose(np.exp(out[:, 1:]).sum(axis=1), 1.0, rtol=1e-4)
    assert cfg.variant == "caser_onehot_mix"


def test_save_load_round_trip(tmp_path) -> None:
    ev = _planted(n_users=10, length=10)
    seqs = build_sequences(ev, [f"i{i}" for i in range(24)], basket="event")
    split = leave_last_out(seqs)
    for repeat, mix in ((False, False), (True, False), (True, True)):
        cfg = caser.CaserConfig(L=3, d=8, n_h=2, epochs=1, repeat=repeat, mix=mix)
        cnn = next_caser.CaserNext(cfg).fit(seqs, split.train_upto)
        hist = [history_before(seqs, split, u, "test") for u in range(3)]
        before = cnn.score(np.arange(3), hist)
        path = caser.save(cnn.model, cfg, tmp_path / f"m{repeat}{mix}", {"note": "test"})
        model, cfg2, manifest = caser.load(path)
        assert cfg2 == cfg and manifest["note"] == "test" and manifest["kind"] == "music-next-caser"
        seq_in = np.stack([last_items(h, 3) for h in hist])
        np.testing.assert_allclose(caser.predict_scores(model, np.arange(3), seq_in, hist), before, atol=1e-5)
    (tmp_path / "mFalseFalse.keras").write_bytes(b"not a zip")
    with pytest.raises(caser.ArtifactError):
        caser.load(tmp_path / "mFalseFalse")


def test_training_side_ignores_a_planted_test_period_event() -> None:
    """An extra event planted in every user's test basket changes nothing a model is fitted on.

    The planted item follows the last training item in each test session, so any leak of test baskets
    into training would give it a word2vec vector (and Caser samples, play counts, kNN sessions).
    """
    rows = []
    for u in range(6):
        for t in range(10):
            rows.append((f"u{u}", f"i{(t + u) % 7}", t * 10_000))
        rows.append((f"u{u}", f"i{u}", 200_000))  # validation session
        rows.append((f"u{u}", f"i{(u + 1) % 7}", 300_000))  # test session
    items = [f"i{i}" for i in range(7)] + ["planted"]
    clean = build_sequences(_events(rows), items, basket="session")
    planted_rows = rows + [(f"u{u}", "planted", 300_060) for u in range(6)]  # same session as each test target
    planted = build_sequences(_events(planted_rows), items, basket="session")
    sc, sp = leave_last_out(clean), leave_last_out(planted)
    np.testing.assert_array_equal(sc.train_upto, sp.train_upto)
    mark = planted.item_index("planted")
    assert all(mark in target_of(planted, sp, u, "test") for u in range(6))  # the plant is in every test basket

    cfg = caser.CaserConfig(init="word2vec", d=8, L=3, seed=3)
    t_clean = next_caser.CaserNext(cfg).initial_table(clean, sc.train_upto)
    t_planted = next_caser.CaserNext(cfg).initial_table(planted, sp.train_upto)
    np.testing.assert_array_equal(t_clean, t_planted)
    a, b = make_samples(clean, sc.train_upto, L=3, T=2), make_samples(planted, sp.train_upto, L=3, T=2)
    for field in ("users", "inputs", "targets", "positions"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(Popularity().fit(clean, sc.train_upto).counts,
                                  Popularity().fit(planted, sp.train_upto).counts)
    k_clean, k_planted = SessionKNN().fit(clean, sc.train_upto), SessionKNN().fit(planted, sp.train_upto)
    assert (k_clean.memory != k_planted.memory).nnz == 0
    # the test input history reads the validation basket, never the planted test item
    assert all(mark not in history_before(planted, sp, u, "test") for u in range(6))


def test_word2vec_table_is_rescaled_and_pads_with_zero() -> None:
    table = caser.word2vec_vectors([["1", "2", "3"], ["1", "2"]], n_items=5, d=8, window=2, seed=0, epochs=2)
    assert table.shape == (6, 8) and np.all(table[PAD] == 0)
    assert table[[1, 2, 3]].std() == pytest.approx(0.05, rel=1e-3)  # rescaled like the random init


# ----------------------------------------------------------------------------------------------
# baselines


def test_baselines_score_shapes_and_reasons() -> None:
    ev = _events([("a", "x", 0), ("a", "y", 60), ("a", "x", 120), ("b", "y", 0), ("b", "z", 60), ("b", "x", 120)])
    seqs = build_sequences(ev, ["x", "y", "z", "w"], basket="event")
    upto = np.array([3, 3])
    hist = [seqs.flat(0)]
    rep = RepeatRecency(decay=0.5).fit(seqs, upto)
    s = rep.score(np.array([0]), hist)[0]
    assert s.shape == (5,) and s[seqs.item_index("x")] > s[seqs.item_index("y")] > s[seqs.item_index("z")]
    assert "2 time(s)" in rep.explain(0, seqs.item_index("x"), hist[0])
    knn = SessionKNN(k=5, window=2).fit(seqs, upto)
    s = knn.score(np.array([0]), [np.array([seqs.item_index("y")])])[0]
    assert s[seqs.item_index("z")] > s[seqs.item_index("w")]  # z follows y in b's session; w is never played
    assert "nearest session" in knn.explain(0, seqs.item_index("z"), np.array([seqs.item_index("y")]))


# ----------------------------------------------------------------------------------------------
# real data (skipped with a reason when absent)


@pytest.mark.slow(reason="reads the real Last.fm-2K")
def test_lastfm_2k_month_baskets(lastfm_dir) -> None:
    from music.data import load_dataset
    from music.next.evaluate import repeats_in_data
    from music.next.data import from_dataset

    seqs = from_dataset(load_dataset("lastfm-2k", lastfm_dir))
    assert seqs.config["basket"] == "month" and seqs.n_users == 1892
    split = leave_last_out(seqs)
    assert len(split.test_users) == 1177  # users with at least three tagging months
    assert 0.1 < repeats_in_data(seqs, split) < 0.6  # re-tagging is common: history is not excluded


def test_movielens_100k_single_rating_baskets() -> None:
    from music.data import DataUnavailable, load_dataset
    from music.next.evaluate import repeats_in_data
    from music.next.data import from_dataset

    try:
        ds = load_dataset("movielens-100k")
    except (DataUnavailable, FileNotFoundError) as exc:
        pytest.skip(f"MovieLens-100K not available here: {exc}")
    seqs = from_dataset(ds)
    split = leave_last_out(seqs)
    assert seqs.config["basket"] == "event" and len(split.test_users) == 943
    assert repeats_in_data(seqs, split) == 0.0  # nobody rates a film twice → history items are excluded
