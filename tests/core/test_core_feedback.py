"""The feedback store: concurrency, crash safety, migrations, validation, forgetting; on SQLite and PostgreSQL.

Every store test runs twice, against a SQLite file and against a real PostgreSQL server that
``tests/pg_fixture.py`` starts for the session.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine, text

from core.feedback import FeedbackError, FeedbackStore, RocchioWeights, feedback_note, rocchio
from core.feedback.store import MAX_IMAGE_BYTES, close_engine, schema_revision, upgrade
from tests.pg_fixture import postgres_server  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_server").database()
    yield url
    close_engine(url)


@pytest.fixture()
def store(db_url, tmp_path) -> FeedbackStore:
    return FeedbackStore.open(db_url, images_dir=tmp_path / "images")


def _png(color=(200, 30, 30), size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _snapshot(store: FeedbackStore) -> tuple:
    files = sorted(p.name for p in store.images_dir.glob("*")) if store.images_dir.exists() else []
    return store.stats(), store.profiles(), files


# ----------------------------------------------------------------------------------------------
# reliability


@pytest.mark.slow(reason="10,000 writes per store")
def test_ten_threads_write_ten_thousand_events_none_lost(store):
    store.create_profile("ann")
    ids: list[list[int]] = [[] for _ in range(10)]
    start = threading.Barrier(10)

    def writer(k: int) -> None:
        start.wait()  # all ten at once
        for i in range(1000):
            ids[k].append(store.record("ann", "music", f"track-{k}-{i}", "like" if i % 2 else "dislike"))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for chunk in ids for i in chunk]
    assert len(all_ids) == len(set(all_ids)) == 10_000
    events = store.events("ann")
    assert len(events) == 10_000
    assert {e.id for e in events} == set(all_ids)
    assert {e.item for e in events} == {f"track-{k}-{i}" for k in range(10) for i in range(1000)}
    assert store.stats()["by_tab"] == {"music": {"dislike": 5000, "like": 5000}}


_WRITER = """
import sys
from core.feedback import FeedbackStore
store = FeedbackStore.open(sys.argv[1], images_dir=sys.argv[2])
store.create_profile("crash")
print("ready", flush=True)
i = 0
while True:
    event_id = store.record("crash", "fashion", f"item-{i}", "like", value=str(i))
    print(event_id, flush=True)  # acknowledged: printed only after the commit returned
    i += 1
"""


@pytest.mark.slow(reason="a writer process is killed")
def test_writer_killed_mid_stream_keeps_every_acknowledged_event(db_url, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, db_url, str(tmp_path / "images")], stdout=subprocess.PIPE,
                            env=env, cwd=ROOT)
    lines = []
    deadline = time.time() + 120
    assert proc.stdout.readline().strip() == b"ready"
    while len(lines) < 300 and time.time() < deadline:
        lines.append(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    rest = proc.stdout.read()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    text_out = b"".join(lines) + rest
    acknowledged = [int(x) for x in text_out.decode().split("\n")[:-1] if x.strip()]  # the last, partial line dropped
    assert len(acknowledged) >= 300
    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite:///")
        con = sqlite3.connect(path)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        con.close()
    store = FeedbackStore.open(db_url, images_dir=tmp_path / "images")
    stored = {e.id for e in store.events("crash")}
    assert set(acknowledged) <= stored
    assert len(stored) - len(acknowledged) <= 1  # at most the one committed but not yet printed
    store.record("crash", "fashion", "after-restart", "like")  # the database is still writable


def _head_revision() -> str:
    """The newest migration's id, read from the migration scripts themselves."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from core.feedback.store import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def test_database_at_first_revision_upgrades_with_data_kept(db_url, tmp_path):
    engine = create_engine(db_url)
    upgrade(engine, "0001")
    assert schema_revision(engine) == "0001"
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO profiles (name, created_at) VALUES ('old', CURRENT_TIMESTAMP)"))
        pid = conn.execute(text("SELECT id FROM profiles WHERE name = 'old'")).scalar_one()
        for i in range(5):
            conn.execute(text("INSERT INTO events (profile_id, tab, item, signal, created_at) "
                              "VALUES (:p, 'music', :item, 'like', CURRENT_TIMESTAMP)"), {"p": pid, "item": f"s{i}"})
        tables_before = set(conn.dialect.get_table_names(conn))
    assert "tagged_images" not in tables_before
    engine.dispose()

    store = FeedbackStore.open(db_url, images_dir=tmp_path / "images")
    assert schema_revision(store.engine) == _head_revision()
    assert store.profiles() == ["old"]
    assert store.play_summary("old")["plays"] == 0  # the imported-history table exists, empty
    assert store.likes("old", "music") == [f"s{i}" for i in reversed(range(5))]
    record = store.store_tagged_image("old", _png(), ["cat"])  # a table only the second revision has
    assert [t.sha256 for t in store.tagged_images("old")] == [record.sha256]
    assert [t.review for t in store.tagged_images("old")] == ["pending"]  # waits for an administrator
    store.save_item("old", "fashion", "x1")
    assert store.saved("old", "fashion") == ["x1"]


def test_tag_edits_stored_before_reviews_existed_wait_for_review(db_url, tmp_path):
    engine = create_engine(db_url)
    upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO profiles (name, created_at) VALUES ('old', CURRENT_TIMESTAMP)"))
        pid = conn.execute(text("SELECT id FROM profiles WHERE name = 'old'")).scalar_one()
        conn.execute(text("INSERT INTO tagged_images (profile_id, sha256, bytes, width, height, tags, created_at, "
                          "updated_at) VALUES (:p, :sha, 1, 1, 1, '[\"cat\"]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                     {"p": pid, "sha": "a" * 64})
    engine.dispose()
    store = FeedbackStore.open(db_url, images_dir=tmp_path / "images")
    assert schema_revision(store.engine) == _head_revision()
    assert [(t.tags, t.review) for t in store.tagged_images()] == [(["cat"], "pending")]
    assert store.tagged_images(review="accepted") == [] and store.display_name("old") == ""


def test_malformed_or_oversized_feedback_writes_nothing(store):
    store.create_profile("ann")
    store.record("ann", "music", "song-1", "like")
    before = _snapshot(store)
    huge = "x" * (10 * 1024 * 1024)
    bad_calls = [
        (lambda: store.record("nobody", "music", "song-2", "like"), "Unknown profile"),
        (lambda: store.record("ann", "cinema", "song-2", "like"), "Unknown tab"),
        (lambda: store.record("ann", "music", "song-2", "love"), "Unknown signal"),
        (lambda: store.record("ann", "music", huge, "like"), "at most 512"),
        (lambda: store.record("ann", "music", "", "like"), "empty"),
        (lambda: store.record("ann", "hashtag", "img", "tag_added", value=huge), "at most 256"),
        (lambda: store.record("ann", "music", "a\x00b", "like"), "control"),
        (lambda: store.store_tagged_image("ann", _png(), [huge]), "at most 64"),
        (lambda: store.store_tagged_image("ann", _png(), ["ok", "no spaces"]), "only letters"),
        (lambda: store.store_tagged_image("ann", _png(), "cat"), "list"),
        (lambda: store.store_tagged_image("ann", b"\x89PNG" + b"\0" * (MAX_IMAGE_BYTES + 1), ["cat"]),
         "limit is 10 MB"),
        (lambda: store.store_tagged_image("ann", b"this is not an image", ["cat"]), "not an image"),
        (lambda: store.store_tagged_image("nobody", _png(), ["cat"]), "Unknown profile"),
        (lambda: store.store_tagged_image("ann", "/etc/passwd", ["cat"]), "not a path"),
        (lambda: store.create_profile("p" * 65), "at most 64"),
        (lambda: store.create_profile("   "), "empty"),
        (lambda: store.forget("nobody"), "Unknown profile"),
        (lambda: store.image_path("../../etc/passwd"), "sha256"),
    ]
    for call, message in bad_calls:
        with pytest.raises(FeedbackError, match=message):
            call()
    assert _snapshot(store) == before
    for call, _ in bad_calls:  # messages stay short: a 10 MB input is never echoed back
        try:
            call()
        except FeedbackError as exc:
            assert len(str(exc)) < 200


# ----------------------------------------------------------------------------------------------
# behaviour


def test_likes_follow_the_latest_click_and_undo(store):
    store.create_profile("ann")
    store.record("ann", "fashion", "a", "like")
    store.record("ann", "fashion", "b", "like")
    store.record("ann", "fashion", "c", "dislike")
    store.record("ann", "fashion", "a", "dislike")  # changed their mind
    store.record("ann", "multimodal", "z", "like")
    assert store.likes("ann", "fashion") == ["b"]
    assert store.dislikes("ann", "fashion") == ["a", "c"]
    assert store.undo("ann", "fashion", "a") == 2
    assert "a" not in store.likes("ann", "fashion") + store.dislikes("ann", "fashion")
    assert store.likes("ann", "multimodal") == ["z"]
    store.create_profile("bob")
    assert store.likes("bob", "fashion") == []


def test_tagged_image_is_content_addressed_and_forget_removes_only_its_own(store):
    store.create_profile("ann")
    store.create_profile("bob")
    first = store.store_tagged_image("ann", _png(), ["#Cat", "cat", "Sunset"], model_version="m1")
    assert first.tags == ["cat", "sunset"]
    path = Path(first.path)
    assert path.parent == store.images_dir and path.name == f"{first.sha256}.png"
    assert Image.open(path).size == (64, 48)
    again = store.store_tagged_image("ann", _png(), ["dog"])  # the same picture: its tags are replaced
    assert again.sha256 == first.sha256 and [t.tags for t in store.tagged_images("ann")] == [["dog"]]
    big = store.store_tagged_image("bob", _png((0, 0, 255), (2000, 1000)), ["sky"])
    assert (big.width, big.height) == (512, 256)  # shrunk before storing
    shared = store.store_tagged_image("bob", _png(), ["kitten"])
    assert shared.sha256 == first.sha256
    store.save_item("ann", "fashion", "item-9")
    store.record("ann", "hashtag", first.sha256, "tag_removed", value="cat")

    gone = store.forget("ann")
    assert gone == {"events": 1, "tagged_images": 1, "imports": 0, "saved": 1, "plays": 0, "jobs": 0,
                    "files": 0}  # bob still uses that picture
    assert path.is_file() and store.profiles() == ["bob"]
    assert store.forget("bob")["files"] == 2
    assert not path.is_file() and not Path(big.path).is_file()
    assert store.stats()["tagged_images"] == 0


def test_stats_and_export(store):
    store.create_profile("ann")
    store.create_profile("bob")
    store.record("ann", "music", "s1", "like", model_version="mf-1")
    store.record("ann", "music", "s2", "dislike")
    store.record("bob", "hashtag", "img", "tag_added", value="beach")
    stats = store.stats()
    assert stats["by_tab"] == {"hashtag": {"tag_added": 1}, "music": {"dislike": 1, "like": 1}}
    assert stats["events"] == 3 and stats["profiles"] == 2
    assert store.stats("bob")["by_tab"] == {"hashtag": {"tag_added": 1}}
    exported = store.export("ann")
    json.dumps(exported)
    assert [(e["item"], e["signal"], e["model_version"]) for e in exported["events"]] == [
        ("s1", "like", "mf-1"), ("s2", "dislike", None)]


@pytest.mark.slow(reason="several python -m core processes")
def test_cli_stats_export_forget(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    store = FeedbackStore.open(url, images_dir=tmp_path / "images")
    store.create_profile("ann")
    for i in range(3):
        store.record("ann", "fashion", f"i{i}", "like")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "core", "feedback", *args, "--database", url], cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT), RECS_DATA_DIR=str(tmp_path)),
                              capture_output=True, text=True)

    out = cli("stats", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["by_tab"] == {"fashion": {"like": 3}}
    out = cli("export", "--profile", "ann", "--json")
    assert len(json.loads(out.stdout)["events"]) == 3
    for bad in (("forget",), ("forget", "--profile", "nobody"), ("stats", "--profile", "x" * 100)):
        out = cli(*bad)
        assert out.returncode == 2 and out.stdout == ""
        assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1
    out = cli("forget", "--profile", "ann", "--json")
    assert json.loads(out.stdout)["deleted"]["events"] == 3
    assert FeedbackStore.open(url).profiles() == []


# ----------------------------------------------------------------------------------------------
# pure functions


def test_rocchio_moves_toward_likes_and_away_from_dislikes():
    rng = np.random.default_rng(0)
    q = rng.normal(size=16)
    liked = rng.normal(size=(3, 16)) + 2.0
    disliked = rng.normal(size=(2, 16)) - 2.0
    w = RocchioWeights(1.0, 0.8, 0.3)
    out = rocchio(q, liked, disliked, w)
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    liked_mean = np.mean([unit(v) for v in liked], axis=0)
    expected = unit(unit(q) + 0.8 * liked_mean - 0.3 * np.mean([unit(v) for v in disliked], axis=0))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    centre_like, centre_dislike = unit(liked.mean(0)), unit(disliked.mean(0))
    assert out @ centre_like > unit(q) @ centre_like
    assert out @ centre_dislike < unit(q) @ centre_dislike
    np.testing.assert_allclose(rocchio(q, None, None, w), unit(q), atol=1e-6)  # no feedback, no change
    np.testing.assert_allclose(rocchio(None, liked, None, w), unit(liked_mean), atol=1e-5)
    with pytest.raises(ValueError):
        rocchio(None, None, None, w)
    assert feedback_note(3, 1) == "re-ranked by your 3 likes and 1 dislike"
    assert feedback_note(0, 0) == ""


def _unit_rows(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_fusion_scores_are_per_example_and_reduce_to_rocchio_with_the_mean():
    from core.feedback.rerank import FeedbackMethod, feedback_scores

    rng = np.random.default_rng(1)
    items = _unit_rows(rng.normal(size=(50, 8)))
    q, liked, disliked = rng.normal(size=8), rng.normal(size=(3, 8)), rng.normal(size=(2, 8))
    lu, du = _unit_rows(liked), _unit_rows(disliked)
    base = items @ _unit_rows(q)
    mean = feedback_scores(items, q, liked, disliked, FeedbackMethod("fusion", beta=2.0, gamma=0.5, tau=math.inf))
    np.testing.assert_allclose(mean, base + 2.0 * items @ lu.mean(0) - 0.5 * items @ du.mean(0), atol=1e-5)
    top = feedback_scores(items, q, liked, disliked, FeedbackMethod("fusion", beta=1.0, gamma=1.0, tau=0.0))
    np.testing.assert_allclose(top, base + (items @ lu.T).max(1) - (items @ du.T).max(1), atol=1e-5)
    smooth = feedback_scores(items, q, liked, disliked, FeedbackMethod("fusion", beta=1.0, gamma=1.0, tau=1e-4))
    np.testing.assert_allclose(smooth, top, atol=1e-3)  # a small temperature is the max
    with pytest.raises(ValueError):
        feedback_scores(items, None, None, disliked, FeedbackMethod("fusion"))
    with pytest.raises(ValueError):
        FeedbackMethod("knn")


def test_svm_feedback_puts_the_liked_look_alike_first():
    from core.feedback.rerank import FeedbackMethod, feedback_scores

    # Two tight look-alike kinds side by side along axis 1, and a far third kind: the means of the liked
    # (kind A) and disliked (kind B) items are nearly the same direction, the SVM still finds the boundary.
    rng = np.random.default_rng(2)
    a = _unit_rows(np.c_[np.full(40, 5.0), np.full(40, 0.3), rng.normal(0, 0.05, size=(40, 6))])
    b = _unit_rows(np.c_[np.full(40, 5.0), np.full(40, -0.3), rng.normal(0, 0.05, size=(40, 6))])
    items = np.vstack([a, b])
    q = b[0] * 0.5 + a[0] * 0.5  # a query in between
    liked, disliked = a[:3], b[:7]
    svm = feedback_scores(items, q, liked, disliked, FeedbackMethod("svm", c=1.0, lam=4.0))
    top = np.argsort(-svm)[:20]
    assert (top < 40).all()  # every one of the 20 best is of the liked kind
    # the liked side always outscores the disliked side under the SVM term
    assert svm[:40].min() > svm[40:].max()
    no_dislikes = feedback_scores(items, q, liked, None, FeedbackMethod("svm", c=1.0, lam=4.0))
    np.testing.assert_allclose(no_dislikes, feedback_scores(items, q, liked, None,
                                                            FeedbackMethod("rocchio", beta=1.0, gamma=0.0)), atol=1e-6)


def test_rerank_pool_never_returns_blocked_rows_and_rocchio_keeps_its_ranking():
    from core.feedback.rerank import FeedbackMethod, rerank

    rng = np.random.default_rng(3)
    items = _unit_rows(rng.normal(size=(300, 8))).astype(np.float32)
    q = items[0]
    liked, disliked = np.array([1, 2, 3]), np.array([4, 5])
    blocked = np.zeros(300, bool)
    blocked[[0, 4, 5, 10]] = True
    w = RocchioWeights(1.0, 1.0, 1.0)
    rows, scores = rerank(items, q, liked, disliked, FeedbackMethod("rocchio", beta=1.0, gamma=1.0), w,
                          blocked=blocked, pool=1000)
    assert len(rows) == 296 and not set(rows) & {0, 4, 5, 10}
    full = items @ rocchio(q, items[liked], items[disliked], w)
    full[blocked] = -np.inf
    np.testing.assert_array_equal(rows[:20], np.argsort(-full, kind="stable")[:20])
    assert (np.diff(scores) <= 0).all()
    rows, _ = rerank(items, q, liked, disliked, FeedbackMethod("svm"), w, blocked=blocked, pool=50)
    assert len(rows) == 50 and set(rows) <= set(np.argsort(-full)[:50])  # only the pool is re-ranked
