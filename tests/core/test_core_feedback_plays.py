"""Imported listening history in the feedback store, on SQLite and PostgreSQL: kept whole or not at all,
never twice, counted per (artist, track) with skips apart, and gone with "forget me"."""

from __future__ import annotations

import pytest

from core.feedback.store import FeedbackError, FeedbackStore
from tests.pg_fixture import postgres_server  # noqa: F401 - the fixture db_url asks for
from tests.core.test_core_feedback import db_url  # noqa: F401 - a fresh database of each kind


@pytest.fixture()
def store(db_url, tmp_path) -> FeedbackStore:  # noqa: F811 - the imported fixture
    return FeedbackStore.open(db_url, images_dir=tmp_path / "images")


def _play(i: int, artist: str = "Björk", track: str = "Jóga", skip: bool = False) -> dict:
    return {"source": "spotify", "fingerprint": f"{artist}|{track}|{i}", "artist": artist, "track": track,
            "album": "Homogenic", "played_at": 1_600_000_000 + 60 * i, "ms_played": 5_000 if skip else 200_000,
            "skip": skip}


def test_plays_are_counted_per_track_with_skips_apart(store):
    store.create_profile("ana")
    plays = [_play(i) for i in range(5)] + [_play(10 + i, skip=True) for i in range(2)] + \
        [_play(20, "Sigur Rós", "Hoppípolla")]
    assert store.add_plays("ana", plays) == {"added": 8, "already": 0}
    counts = {(c.artist, c.track): c for c in store.play_counts("ana")}
    assert counts[("Björk", "Jóga")].plays == 5 and counts[("Björk", "Jóga")].skips == 2
    assert counts[("Björk", "Jóga")].ms_played == 5 * 200_000  # skipped plays add no listening time
    assert counts[("Sigur Rós", "Hoppípolla")].plays == 1
    summary = store.play_summary("ana")
    assert summary["plays"] == 8 and summary["skips"] == 2 and summary["sources"] == {"spotify": 8}


def test_reimporting_adds_nothing_twice_and_changes_no_version(store):
    store.create_profile("ana")
    plays = [_play(i) for i in range(4)]
    store.add_plays("ana", plays)
    version = store.play_summary("ana")["version"]
    assert store.add_plays("ana", plays + [_play(9)]) == {"added": 1, "already": 4}
    assert store.play_summary("ana")["plays"] == 5
    assert store.play_summary("ana")["version"] != version
    assert store.add_plays("ana", plays) == {"added": 0, "already": 4}


def test_a_bad_play_stores_nothing_of_the_import(store):
    store.create_profile("ana")
    bad = [_play(i) for i in range(3)] + [{**_play(4), "artist": "  "}]
    with pytest.raises(FeedbackError, match="no artist"):
        store.add_plays("ana", bad)
    with pytest.raises(FeedbackError):
        store.add_plays("ana", [{**_play(5), "source": "napster"}])
    assert store.play_summary("ana")["plays"] == 0


def test_histories_are_per_profile_and_forget_removes_them(store):
    store.create_profile("ana")
    store.create_profile("ben")
    store.add_plays("ana", [_play(i) for i in range(3)])
    store.add_plays("ben", [_play(i) for i in range(2)])  # same fingerprints, another person: both kept
    assert store.play_summary("ben")["plays"] == 2
    assert store.export("ana")["plays"][0]["plays"] == 3
    assert store.forget("ana")["plays"] == 3
    assert store.play_summary("ben")["plays"] == 2
    assert store.forget_plays("ben") == 2 and store.play_counts("ben") == []
