"""Reading listening-history exports: every real format, the zips services send, and each refusal as one sentence.

The fixtures under ``tests/fixtures/history/`` are small hand-written files in the exact layouts Spotify
(extended and account-data), Last.fm export tools and ListenBrainz produce; zips are assembled here the way the
services nest them. Expected values are computed from the fixture files themselves, not typed in.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from music.history import History, HistoryError, read_exports
from music.history import formats
from tests.paths import FIXTURES

FIX = FIXTURES / "history"
EXT = FIX / "spotify-extended"
ACC = FIX / "spotify-account"
AUDIO = sorted(EXT.glob("Streaming_History_Audio_*.json"))
VIDEO = EXT / "Streaming_History_Video_2020-2022.json"


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def extended_records() -> list[dict]:
    return [r for p in AUDIO for r in json.loads(p.read_text(encoding="utf-8"))]


def one_sentence(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.endswith(".") and "Traceback" not in text
    return text


def spotify_zip() -> bytes:
    folder = "Spotify Extended Streaming History/"
    members = {folder + p.name: p.read_bytes() for p in [*AUDIO, VIDEO]}
    members[folder + "ReadMeFirst_ExtendedStreamingHistory.pdf"] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
    return zipped(members)


# ---------------------------------------------------------------- Spotify

def test_spotify_extended_zip_as_spotify_sends_it():
    records = extended_records()
    music = [r for r in records if r["master_metadata_album_artist_name"]]
    history = read_exports([("my_spotify_data.zip", spotify_zip())])
    assert isinstance(history, History)
    rep = history.report
    assert rep["plays"] == len(music) == len(history.plays)
    assert rep["skipped_no_artist"] == len(records) - len(music) > 0  # the podcast and the audiobook
    assert rep["skipped_short"] == sum(r["ms_played"] < 30_000 for r in music) > 0
    assert rep["sources"] == {"spotify": len(music)}
    assert rep["duplicates"] == 0
    assert sorted(Path(f).name for f in rep["files"]) == sorted(p.name for p in AUDIO)
    ignored = {Path(f).name for f in rep["ignored_files"]}
    assert ignored == {VIDEO.name, "ReadMeFirst_ExtendedStreamingHistory.pdf"}
    assert "video" in rep["ignored_reasons"][f"my_spotify_data.zip/Spotify Extended Streaming History/{VIDEO.name}"]
    # accents survive, every column has its type, times are the UTC end of each play
    assert set(history.plays["artist"]) == {r["master_metadata_album_artist_name"] for r in music}
    assert {"Björk", "Sigur Rós", "Mötley Crüe", "Beyoncé"} <= set(history.plays["artist"])
    assert list(history.plays.columns) == formats.COLUMNS
    assert str(history.plays["played_at"].dtype) == "int64" and str(history.plays["ms_played"].dtype) == "int64"
    expected = sorted(int(datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).timestamp()) for r in music)
    assert sorted(history.plays["played_at"]) == expected
    skips = history.plays[history.plays["skip"]]
    assert set(skips["ms_played"]) == {r["ms_played"] for r in music if r["ms_played"] < 30_000}


def test_spotify_account_data_zip_reads_music_and_ignores_the_rest():
    folder = "MyData/"
    members = {folder + p.name: p.read_bytes() for p in ACC.iterdir()}
    history = read_exports([("my_spotify_data.zip", zipped(members))])
    music = json.loads((ACC / "StreamingHistory_music_0.json").read_text(encoding="utf-8"))
    assert history.report["sources"] == {"spotify-basic": len(music)}
    assert history.report["files"] == ["my_spotify_data.zip/MyData/StreamingHistory_music_0.json"]
    ignored = {Path(f).name for f in history.report["ignored_files"]}
    assert ignored == {"StreamingHistory_podcast_0.json", "Userdata.json", "Playlist1.json"}
    assert (history.plays["album"] == "").all()
    first = datetime.strptime(music[0]["endTime"], "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)
    assert int(first.timestamp()) in set(history.plays["played_at"])


def test_the_older_account_data_file_name_is_read_by_its_content():
    data = (ACC / "StreamingHistory_music_0.json").read_bytes()
    history = read_exports([("StreamingHistory0.json", data)])
    assert history.report["sources"] == {"spotify-basic": len(json.loads(data))}


def test_both_spotify_schemas_give_the_same_fingerprints_for_the_same_plays():
    extended = read_exports(AUDIO)
    basic = read_exports([ACC / "StreamingHistory_music_0.json"])
    assert len(basic.plays) == len(extended.plays)
    assert set(basic.plays["fingerprint"]) == set(extended.plays["fingerprint"])
    both = read_exports([*AUDIO, ACC / "StreamingHistory_music_0.json"])
    assert both.report["duplicates"] == len(basic.plays)
    assert both.report["plays"] == len(extended.plays)
    assert set(both.plays["source"]) == {"spotify"}  # the first read wins: the richer schema when given first


def test_reading_the_same_file_twice_drops_and_counts_the_duplicates():
    once = read_exports([AUDIO[0]])
    twice = read_exports([AUDIO[0], AUDIO[0]])
    assert twice.report["duplicates"] == len(once.plays) > 0
    assert twice.report["plays"] == len(once.plays)
    assert twice.plays["fingerprint"].is_unique
    assert list(twice.plays["fingerprint"]) == list(once.plays["fingerprint"])


def test_fingerprints_are_stable_across_reads_and_spellings():
    first, again = read_exports(AUDIO), read_exports([("copy.zip", spotify_zip())])
    assert sorted(first.plays["fingerprint"]) == sorted(again.plays["fingerprint"])
    one_by_one = [formats.fingerprint(a, t, p) for a, t, p in
                  first.plays[["artist", "track", "played_at"]].itertuples(index=False)]
    assert list(first.plays["fingerprint"]) == one_by_one
    assert formats.fingerprint("The Beatles", "Yesterday", 1646481480) == \
        formats.fingerprint("Beatles, The", "yesterday", 1646481480 + 59)
    assert formats.fingerprint("The Beatles", "Yesterday", 1646481480) != \
        formats.fingerprint("The Beatles", "Yesterday", 1646481480 + 60)


def test_artist_plays_merge_spellings_under_the_most_frequent_one():
    plays = [{"endTime": f"2021-01-0{d} 10:0{m}", "artistName": name, "trackName": "Jóga", "msPlayed": 200_000}
             for d, (m, name) in enumerate([(1, "Björk"), (2, "Bjork"), (3, "Björk"), (4, "Sigur Rós")], 1)]
    table = read_exports([("StreamingHistory_music_0.json", json.dumps(plays).encode())]).artist_plays()
    assert list(zip(table["artist"], table["plays"])) == [("Björk", 3), ("Sigur Rós", 1)]


def test_a_file_of_only_short_plays_is_read_with_every_play_a_skip():
    history = read_exports([FIX / "other" / "Streaming_History_Audio_2023_2.json"])
    assert len(history.plays) > 0
    assert history.plays["skip"].all()
    assert history.report["skipped_short"] == history.report["plays"] == len(history.plays)
    assert history.artist_plays().empty and history.report["artists"] == 0  # skips are never likes


def test_artist_plays_count_plays_without_skips_per_artist():
    history = read_exports(AUDIO)
    table = history.artist_plays()
    assert list(table["plays"]) == sorted(table["plays"], reverse=True)
    counts = dict(zip(table["artist"], table["plays"]))
    assert history.report["artists"] == len(table)
    music = [r for r in extended_records() if r["master_metadata_album_artist_name"] and r["ms_played"] >= 30_000]
    expected: dict[str, int] = {}
    for r in music:
        expected[r["master_metadata_album_artist_name"]] = expected.get(r["master_metadata_album_artist_name"], 0) + 1
    assert counts == expected


# ---------------------------------------------------------------- Last.fm

def test_lastfm_csv_without_header():
    path = FIX / "lastfm" / "lastfm-to-csv.csv"
    history = read_exports([path])
    plays = history.plays
    assert history.report["sources"] == {"lastfm": len(plays)}
    assert "Crosby, Stills, Nash & Young" in set(plays["artist"])  # a quoted comma stays inside the name
    assert "Earth, Wind & Fire" in set(plays["artist"])
    assert history.report["skipped_no_date"] == 1  # the "now playing" row
    assert history.report["skipped_no_artist"] == 1
    assert (plays["ms_played"] == -1).all() and not plays["skip"].any()  # no duration: never a skip
    joga = plays[plays["track"] == "Jóga"].iloc[0]
    assert joga["played_at"] == int(datetime(2019, 6, 12, 18, 35, tzinfo=timezone.utc).timestamp())


def test_lastfm_csv_with_header_and_byte_order_mark():
    path = FIX / "lastfm" / "scrobbles-export.csv"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    history = read_exports([path])
    assert history.report["plays"] == len(path.read_text(encoding="utf-8-sig").strip().splitlines()) - 1
    assert "The Best of Earth, Wind & Fire, Vol. 1" in set(history.plays["album"])
    # only a uts column for the time: the header is found only if the byte order mark is dropped
    data = b"\xef\xbb\xbfuts,artist,album,track\n1560364500,Bj\xc3\xb6rk,Homogenic,J\xc3\xb3ga\n"
    only_uts = read_exports([("scrobbles.csv", data)])
    assert list(only_uts.plays["played_at"]) == [1560364500]
    assert list(only_uts.plays["artist"]) == ["Björk"]


def test_the_two_lastfm_forms_of_the_same_scrobbles_are_duplicates():
    a = read_exports([FIX / "lastfm" / "lastfm-to-csv.csv"])
    b = read_exports([FIX / "lastfm" / "scrobbles-export.csv"])
    shared = set(a.plays["fingerprint"]) & set(b.plays["fingerprint"])
    assert len(shared) >= 3  # includes "Beatles, The" = "The Beatles"
    both = read_exports([FIX / "lastfm" / "lastfm-to-csv.csv", FIX / "lastfm" / "scrobbles-export.csv"])
    assert both.report["duplicates"] == len(shared)


def test_unknown_artists_are_counted_not_imported():
    basic = [{"endTime": "2021-01-01 10:00", "artistName": "Unknown Artist", "trackName": "Unknown Track",
              "msPlayed": 200_000},
             {"endTime": "2021-01-01 10:04", "artistName": "Björk", "trackName": "Jóga", "msPlayed": 200_000}]
    history = read_exports([("StreamingHistory_music_0.json", json.dumps(basic).encode()),
                            ("scrobbles.csv", "[unknown],,Track 02,05 Mar 2022 12:10\nBjörk,Post,Isobel,05 Mar 2022 "
                                              "12:14\n".encode())])
    assert history.report["skipped_no_artist"] == 2
    assert set(history.plays["artist"]) == {"Björk"}


def test_a_zip_of_lastfm_csvs():
    members = {f"lastfm/{p.name}": p.read_bytes() for p in (FIX / "lastfm").glob("*.csv")}
    history = read_exports([("scrobbles.zip", zipped(members))])
    assert len(history.report["files"]) == 2
    assert history.report["sources"] == {"lastfm": history.report["plays"]}


# ---------------------------------------------------------------- ListenBrainz

def test_listenbrainz_json_lines_and_array():
    lines = FIX / "listenbrainz" / "listens" / "2021" / "1.jsonl"
    array = FIX / "listenbrainz" / "listens.json"
    jl = read_exports([lines])
    arr = read_exports([array])
    raw = [json.loads(line) for line in lines.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert sorted(jl.plays["played_at"]) == sorted(r["listened_at"] for r in raw)
    assert "東京事変" in set(jl.plays["artist"]) and "群青日和" in set(jl.plays["track"])
    assert len(arr.plays) == len(json.loads(array.read_text(encoding="utf-8")))
    for h in (jl, arr):
        assert set(h.plays["source"]) == {"listenbrainz"}
        assert (h.plays["ms_played"] == -1).all() and not h.plays["skip"].any()


def test_listenbrainz_export_zip_with_user_file():
    members = {
        "listenbrainz_bjorkfan/user.json": b'{"user_id": 4412, "username": "bjorkfan"}',
        "listenbrainz_bjorkfan/listens/2021/1.jsonl": (FIX / "listenbrainz/listens/2021/1.jsonl").read_bytes(),
        "listenbrainz_bjorkfan/listens.json": (FIX / "listenbrainz/listens.json").read_bytes(),
    }
    history = read_exports([("listenbrainz_bjorkfan.zip", zipped(members))])
    assert len(history.report["files"]) == 2
    assert [Path(f).name for f in history.report["ignored_files"]] == ["user.json"]


def test_listenbrainz_inserted_at_when_listened_at_is_missing():
    data = json.dumps([{"inserted_at": "2021-01-10T08:03:11+00:00", "user_name": "x",
                        "track_metadata": {"artist_name": "Björk", "track_name": "Isobel"}}]).encode()
    history = read_exports([("listens.json", data)])
    assert list(history.plays["played_at"]) == [int(datetime(2021, 1, 10, 8, 3, 11, tzinfo=timezone.utc).timestamp())]


# ---------------------------------------------------------------- refusals: one sentence, nothing returned

def test_a_truncated_json_file_is_refused_as_cut_off():
    path = FIX / "other" / "Streaming_History_Audio_2022-2023_3.json"
    with pytest.raises(HistoryError) as exc:
        read_exports([path])
    text = one_sentence(exc)
    assert path.name in text and "cut off" in text


def test_a_truncated_file_inside_a_zip_refuses_the_whole_zip():
    members = {"Spotify Extended Streaming History/" + p.name: p.read_bytes() for p in AUDIO}
    cut = FIX / "other" / "Streaming_History_Audio_2022-2023_3.json"
    members["Spotify Extended Streaming History/" + cut.name] = cut.read_bytes()
    with pytest.raises(HistoryError) as exc:
        read_exports([("my_spotify_data.zip", zipped(members))])
    assert "cut off" in one_sentence(exc) and cut.name in str(exc.value)


def test_a_truncated_json_lines_file_is_refused_as_cut_off():
    data = (FIX / "listenbrainz/listens/2021/1.jsonl").read_bytes()[:-120]
    with pytest.raises(HistoryError) as exc:
        read_exports([("1.jsonl", data)])
    assert "cut off" in one_sentence(exc)


def test_another_services_file_renamed_like_spotify_is_refused():
    path = FIX / "other" / "Streaming_History_Audio_2020.json"
    with pytest.raises(HistoryError) as exc:
        read_exports([path])
    text = one_sentence(exc)
    assert path.name in text and "named like a Spotify export" in text and "ListenBrainz" in text
    # the same content under its own name is read
    assert read_exports([("listens.json", path.read_bytes())]).report["plays"] > 0


def test_an_empty_zip_is_refused():
    with pytest.raises(HistoryError) as exc:
        read_exports([("my_spotify_data.zip", zipped({}))])
    assert "my_spotify_data.zip" in one_sentence(exc) and "no listening history" in str(exc.value)


def test_a_zip_without_history_files_is_refused():
    members = {"MyData/Userdata.json": (ACC / "Userdata.json").read_bytes(), "MyData/ReadMeFirst.pdf": b"%PDF-1.7"}
    with pytest.raises(HistoryError) as exc:
        read_exports([("my_spotify_data.zip", zipped(members))])
    assert "Userdata.json" in one_sentence(exc)


def test_a_zip_member_pointing_outside_is_refused():
    data = zipped({"../../Streaming_History_Audio_2019-2021_0.json": AUDIO[0].read_bytes()})
    with pytest.raises(HistoryError) as exc:
        read_exports([("my_spotify_data.zip", data)])
    assert "outside" in one_sentence(exc)


def test_a_file_in_no_known_format_names_what_it_found():
    with pytest.raises(HistoryError) as exc:
        read_exports([("plays.json", b'[{"a": 1, "b": 2, "c": 3}]')])
    assert "its first record has keys a, b, c" in one_sentence(exc)
    with pytest.raises(HistoryError) as exc:
        read_exports([("plays.csv", b"when,who,what\n2021,Bjork,Joga\n")])
    assert "its first line has columns when, who, what" in one_sentence(exc)


def test_a_bad_date_refuses_the_file_and_names_the_record():
    records = json.loads(AUDIO[0].read_text(encoding="utf-8"))
    at = next(i for i, r in enumerate(records) if i > 0 and not records[i - 1]["master_metadata_album_artist_name"])
    records[at]["ts"] = "yesterday"  # just after the podcast: numbered among all records, not among the music
    with pytest.raises(HistoryError) as exc:
        read_exports([("Streaming_History_Audio_2019.json", json.dumps(records).encode())])
    assert f"record {at + 1} " in one_sentence(exc) and "yesterday" in str(exc.value)


def test_budgets_upload_size_and_play_count(monkeypatch):
    monkeypatch.setattr(formats, "MAX_UPLOAD_BYTES", AUDIO[0].stat().st_size + 10)
    with pytest.raises(HistoryError) as exc:
        read_exports(AUDIO)
    assert "several parts" in one_sentence(exc)
    monkeypatch.setattr(formats, "MAX_UPLOAD_BYTES", 200 * formats.MB)
    monkeypatch.setattr(formats, "MAX_PLAYS", 5)
    assert len(read_exports([AUDIO[1]]).plays) > 0  # 4 records: under the cap
    with pytest.raises(HistoryError) as exc:
        read_exports(AUDIO)
    assert "5 plays" in one_sentence(exc)


def test_a_zip_member_over_the_member_cap_is_refused(monkeypatch):
    monkeypatch.setattr(formats, "MAX_MEMBER_BYTES", AUDIO[0].stat().st_size - 1)
    with pytest.raises(HistoryError) as exc:
        read_exports([("my_spotify_data.zip", spotify_zip())])
    assert AUDIO[0].name in one_sentence(exc) and "refused" in str(exc.value)


def test_nothing_given_or_a_missing_path_is_one_sentence(tmp_path):
    with pytest.raises(HistoryError) as exc:
        read_exports([])
    one_sentence(exc)
    with pytest.raises(HistoryError) as exc:
        read_exports([tmp_path / "nope.json"])
    assert "nope.json" in one_sentence(exc) and str(tmp_path) not in str(exc.value)
