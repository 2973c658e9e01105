"""A ListenBrainz listens dump (many listeners) trains a music dataset: read from the .tar.xz as published, a
zip or a folder, never extracted; bad lines counted; a dump with nothing usable refused in one sentence."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import pytest

from music.data import DataUnavailable, load_dataset
from music.logs import train_log
from music.mf.train import load_bundle, trained_datasets

ARTISTS = [("Björk", "Jóga"), ("Sigur Rós", "Hoppípolla"), ("Radiohead", "Reckoner"), ("Portishead", "Roads"),
           ("Massive Attack", "Teardrop"), ("Air", "La femme d'argent"), ("Moby", "Porcelain"), ("Daft Punk", "Da Funk")]


def _lines(users: int = 12) -> str:
    """One listens file of the dump: each listener plays a few tracks in three sessions, a day apart."""
    out, t = [], 1_672_531_200
    for u in range(users):
        for session in range(3):
            for k in range(4):
                artist, track = ARTISTS[(u + session + k) % len(ARTISTS)]
                t += 200
                out.append(json.dumps({"user_name": f"listener{u}", "listened_at": t + session * 86_400,
                                       "recording_msid": f"msid-{artist}-{track}",
                                       "track_metadata": {"artist_name": artist, "track_name": track,
                                                          "release_name": "Album", "additional_info": {}}},
                                      ensure_ascii=False))
    out.append('{"user_name": "x", "listened_at": 1, "track_metadata": {}}')  # no artist: counted, skipped
    out.append('{"broken json')
    return "\n".join(out) + "\n"


def _tar_xz(tmp_path, text: str):
    path = tmp_path / "listenbrainz-listens-dump-1-20230101-000000-full.tar.xz"
    data = text.encode()
    with tarfile.open(path, "w:xz") as tf:
        info = tarfile.TarInfo("listenbrainz-listens-dump-1-20230101-000000-full/listens/2023/1.listens")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        evil = tarfile.TarInfo("../outside.listens")  # read in memory, never written anywhere
        evil.size = 0
        tf.addfile(evil, io.BytesIO(b""))
    return path


def test_the_published_tar_xz_reads_as_a_dated_log(tmp_path):
    data = load_dataset("listenbrainz", _tar_xz(tmp_path, _lines()))
    assert data.n_users == 12 and data.kind == "implicit"
    assert data.report["malformed_rows"] == 2 and data.report["plays"] == 12 * 3 * 4
    assert len(data.events) == 12 * 3 * 4
    assert set(data.items["artist"]) == {a for a, _ in ARTISTS}
    assert not (tmp_path.parent / "outside.listens").exists()


def test_zip_and_folder_read_the_same(tmp_path):
    folder = tmp_path / "dump" / "listens" / "2023"
    folder.mkdir(parents=True)
    (folder / "1.listens").write_text(_lines(), encoding="utf-8")
    archive = tmp_path / "dump.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(folder / "1.listens", "listens/2023/1.listens")
    a, b = load_dataset("listenbrainz", tmp_path / "dump"), load_dataset("listenbrainz", archive)
    assert a.checksum() == b.checksum()


def test_a_dump_with_nothing_usable_is_refused(tmp_path):
    with pytest.raises(DataUnavailable, match="no usable listen"):
        load_dataset("listenbrainz", _tar_xz(tmp_path, '{"listened_at": 5}\n'))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataUnavailable, match="no ListenBrainz listens files"):
        load_dataset("listenbrainz", tmp_path / "empty")
    (tmp_path / "not-a-dump.tar.xz").write_bytes(b"hello")
    with pytest.raises(DataUnavailable, match="not a ListenBrainz dump"):
        load_dataset("listenbrainz", tmp_path / "not-a-dump.tar.xz")


def test_a_dump_trains_mf_and_up_next_under_its_name(tmp_path):
    result = train_log("lb-radio", "listenbrainz", _tar_xz(tmp_path, _lines()))
    assert "lb-radio" in trained_datasets()
    assert load_bundle("lb-radio").manifest["summary"]["users"] == 12
    assert result["up_next"]["trained"] is True  # dated listens: up next learns from the sessions
