"""A person's imported listening history → their profile's picks: matched honestly, folded in at once with a
reason per pick, nothing played or skipped picked, nothing imported twice, and gone with "forget me".

The dataset is a slice of real Last.fm-2K (the 200 most listened artists, 100 listeners, real names) trained
by the app's own trainer; the export is in Spotify's extended streaming-history schema, zipped as Spotify
sends it.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from core.feedback.store import FeedbackStore, close_engine
from music.data.sources import load_csv
from music.history import HistoryError
from music.history.service import NO_REAL_NAMES, import_history
from music.mf import feedback
from music.mf.train import load_bundle, train

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "music" / "lastfm2k_top200.csv"
DATASET = "lastfm-top200"

#: (artist as the export writes it, counted plays, skips): accents, case and "The" differ from Last.fm-2K's
#: spelling on purpose; "Zq Garage Band" is in no dataset; Muse is only ever skipped.
LISTENING = [("Björk", 20, 2), ("sigur ros", 10, 0), ("Beatles, The", 8, 1), ("Radiohead", 12, 0),
             ("Portishead", 6, 0), ("Zq Garage Band", 4, 0), ("Muse", 0, 3)]


def spotify_zip(listening=LISTENING, start: int = 1_672_531_200) -> bytes:
    """A ``my_spotify_data.zip`` holding an extended streaming history with these plays."""
    records, k = [], 0
    for artist, plays, skips in listening:
        for n in range(plays + skips):
            k += 1
            records.append({
                "ts": f"2023-01-{1 + k // 100:02d}T{(k // 60) % 24:02d}:{k % 60:02d}:00Z", "platform": "ios",
                "ms_played": 210_000 if n < plays else 4_000, "conn_country": "IS",
                "master_metadata_track_name": f"Song {n % 3}", "master_metadata_album_artist_name": artist,
                "master_metadata_album_album_name": "Album", "spotify_track_uri": f"spotify:track:{k:022d}",
                "episode_name": None, "episode_show_name": None, "spotify_episode_uri": None,
                "reason_start": "clickrow", "reason_end": "trackdone", "shuffle": False,
                "skipped": n >= plays, "offline": False, "incognito_mode": False})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("Spotify Extended Streaming History/Streaming_History_Audio_2023_0.json",
                    json.dumps(records, ensure_ascii=False))
        zf.writestr("Spotify Extended Streaming History/ReadMeFirst_ExtendedStreamingHistory.pdf", b"%PDF-1.4")
    return buf.getvalue()


@pytest.fixture(scope="module")
def bundle():
    train(DATASET, data=load_csv(FIXTURE), force=True)
    return load_bundle(DATASET)


@pytest.fixture()
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    db = FeedbackStore.open(url, images_dir=tmp_path / "images")
    db.create_profile("me")
    yield db
    close_engine(url)


def _artists(bundle, items) -> set[str]:
    c = bundle.mf.catalog
    return {c.artists[c.items.index(i)] for i in items}


def test_import_reports_what_matched_and_what_did_not(store, bundle):
    report = import_history(store, "me", [("my_spotify_data.zip", spotify_zip())], bundle)
    assert report["plays"] == sum(p + s for _, p, s in LISTENING)
    assert report["skipped_short"] == sum(s for _, _, s in LISTENING)
    assert report["artists"] == 6  # Muse was only skipped: not a taste
    assert report["matched"] == 5 and report["unmatched"] == ["Zq Garage Band"]
    assert report["added"] == report["plays"] and report["already"] == 0


def test_picks_fold_the_history_in_with_reasons_and_never_repeat_it(store, bundle):
    import_history(store, "me", [("my_spotify_data.zip", spotify_zip())], bundle)
    out = feedback.profile_picks(store, bundle, "me", 10)
    assert out.source == "history" and len(out.picks) == 10
    played = {"Björk", "Sigur Rós", "The Beatles", "Radiohead", "Portishead", "Muse"}
    assert not _artists(bundle, [p.item for p in out.picks]) & played
    assert all(p.reason.startswith("because you played ") and " times" in p.reason for p in out.picks)
    assert any("Björk 20 times" in p.reason or "Radiohead 12 times" in p.reason for p in out.picks)


def test_picks_follow_the_history(store, bundle):
    """Two different histories give different picks (the history is used, not popularity)."""
    import_history(store, "me", [("my_spotify_data.zip", spotify_zip())], bundle)
    store.create_profile("pop")
    pop_fan = [("Lady Gaga", 30, 0), ("Britney Spears", 20, 0), ("Rihanna", 15, 0), ("Katy Perry", 10, 0)]
    import_history(store, "pop", [("my_spotify_data.zip", spotify_zip(pop_fan))], bundle)
    mine = [p.item for p in feedback.profile_picks(store, bundle, "me", 10).picks]
    theirs = [p.item for p in feedback.profile_picks(store, bundle, "pop", 10).picks]
    assert len(set(mine) & set(theirs)) <= 5


def test_reimport_adds_nothing_and_forget_removes_the_plays(store, bundle):
    first = import_history(store, "me", [("my_spotify_data.zip", spotify_zip())], bundle)
    again = import_history(store, "me", [("my_spotify_data.zip", spotify_zip())], bundle)
    assert again["added"] == 0 and again["already"] == first["added"]
    assert store.play_summary("me")["plays"] == first["added"]
    assert store.forget("me")["plays"] == first["added"]


def test_a_bad_export_stores_nothing(store, bundle, tmp_path):
    good = ("Streaming_History_Audio_2023_0.json", json.dumps([{"ts": "2023-01-01T00:00:00Z", "ms_played": 200000,
            "master_metadata_track_name": "Jóga", "master_metadata_album_artist_name": "Björk"}]).encode())
    truncated = ("Streaming_History_Audio_2023_1.json", good[1][: len(good[1]) // 2])
    with pytest.raises(HistoryError):
        import_history(store, "me", [good, truncated], bundle)
    assert store.play_summary("me")["plays"] == 0


def test_a_dislike_and_a_like_shape_the_history_picks(store, bundle):
    import_history(store, "me", [("my_spotify_data.zip", spotify_zip())], bundle)
    first = feedback.profile_picks(store, bundle, "me", 10).picks[0]
    feedback.record(store, bundle, "me", first.item, "dislike")
    after = feedback.profile_picks(store, bundle, "me", 10)
    assert first.item not in [p.item for p in after.picks]


@pytest.mark.slow(reason="trains a simulated bundle (~5 s)")
def test_the_simulated_dataset_says_it_cannot_match(store):
    train("simulated")
    report = import_history(store, "me", [("my_spotify_data.zip", spotify_zip())], load_bundle("simulated"))
    assert report["note"] == NO_REAL_NAMES and "lastfm-2k" in report["note"]


@pytest.mark.slow(reason="two python -m music subprocesses")
def test_cli_imports_then_recommends(tmp_path, bundle):
    export = tmp_path / "my_spotify_data.zip"
    export.write_bytes(spotify_zip())
    env_db = {"RECS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "music", *a], capture_output=True, text=True,  # noqa: E731
                                    cwd=ROOT, env={**__import__("os").environ, **env_db}, timeout=300)
    done = run("import-history", str(export), "--profile", "cli-me", "--dataset", DATASET, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"plays", "skipped_short", "artists", "matched", "unmatched"} <= set(report)
    assert report["matched"] == 5
    picks = run("recommend", "--profile", "cli-me", "--dataset", DATASET, "--json")
    assert picks.returncode == 0, picks.stderr
    out = json.loads(picks.stdout)
    assert out["source"] == "history" and out["picks"] and out["history"]["matched"] == 5
    bad = tmp_path / "Streaming_History_Audio_2023_0.json"
    bad.write_text('[{"ts": "2023-01-01T00:00:00Z", "ms_pla', encoding="utf-8")
    failed = run("import-history", str(bad), "--profile", "cli-me", "--dataset", DATASET)
    assert failed.returncode == 2 and failed.stderr.startswith("error: ") and len(failed.stderr.splitlines()) == 1


def test_the_import_job_stores_the_plays_and_reports_only_to_its_owner(tmp_path, bundle, monkeypatch):
    """The Data page's path: the upload is queued, a job (run here in-process) reads, stores and reports; a
    bad export fails the job with one sentence and stores nothing; the uploads are gone either way."""
    from core.jobs import JobQueue
    from core.jobs.handlers import Progress, execute
    from music.history import jobs

    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    monkeypatch.setenv("RECS_DATABASE_URL", url)
    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda _url: None)  # no worker process in a test
    queue = JobQueue(url)
    db = FeedbackStore.open(url, images_dir=tmp_path / "images")
    db.create_profile("owner")
    good = jobs.queue_import("owner", [("my_spotify_data.zip", spotify_zip())], DATASET, queue=queue)
    bad = jobs.queue_import("owner", [("Streaming_History_Audio_2023_0.json", b'[{"ts": "2023')], DATASET, queue=queue)
    assert [j.id for j in jobs.jobs_of("owner", queue=queue)] == [bad, good]
    assert jobs.jobs_of("someone-else", queue=queue) == []
    done = execute(jobs.HANDLER, queue.get(good).params, Progress(None, tmp_path / "scratch"))
    assert done["done"]["matched"] == 5 and done["done"]["added"] == db.play_summary("owner")["plays"]
    failed = execute(jobs.HANDLER, queue.get(bad).params, Progress(None, tmp_path / "scratch"))
    assert "cut off" in failed["failed"] and db.play_summary("owner")["plays"] == done["done"]["added"]
    assert not list(jobs.uploads_dir().glob("history-*"))
    assert queue.claim("test-worker").id == good and queue.finish(good, done["done"])
    assert db.forget("owner")["jobs"] == 1  # the finished import's report (it names artists) goes with the profile
    assert [j.id for j in jobs.jobs_of("owner", queue=queue)] == [bad]
    with pytest.raises(HistoryError, match="MB"):
        monkeypatch.setattr(jobs, "MAX_UPLOAD_BYTES", 10)
        jobs.queue_import("owner", [("my_spotify_data.zip", spotify_zip())], DATASET, queue=queue)
    close_engine(url)
