"""Reading and validating catalog sources: every refusal is one sentence, every skip is listed by name.

Each rule has its own case, with small real files made here (PNG/JPEG through Pillow, zips through zipfile,
byte-patched where a hostile archive must lie about itself).
"""

from __future__ import annotations

import os
import stat
import struct
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from core.catalog import archive
from core.catalog.sources import (
    LIMITS,
    CatalogError,
    Limits,
    SourceReport,
    builtin_source,
    check_name,
    read_source,
)
from tests.paths import FIXTURES

KAGGLE_HEADER = ("id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,"
                 "productDisplayName\n")


# ----------------------------------------------------------------------------------------------
# helpers


def png(path: Path, color=(200, 30, 30), size=(8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="PNG")
    return path


def jpeg(path: Path, color=(30, 30, 200), size=(8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="JPEG")
    return path


def image_bytes(fmt: str = "PNG", color=(10, 120, 10)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format=fmt)
    return buf.getvalue()


def make_zip(path: Path, entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def refusal(exc: pytest.ExceptionInfo, *server_paths: Path) -> str:
    """The message, checked to be one sentence that names no server folder."""
    msg = str(exc.value)
    assert "\n" not in msg and msg.endswith("."), msg
    for p in server_paths:
        assert str(p) not in msg, msg
    return msg


def reasons(report: SourceReport) -> dict[str, str]:
    return {s.what: s.reason for s in report.skipped}


# ----------------------------------------------------------------------------------------------
# catalog names


@pytest.mark.parametrize("name", ["shop", "a", "My-shop_2", "x" * 64])
def test_name_whitelist_accepts(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["../x", "", "x" * 65, "café", "日本", "a b", "a/b", "a.b", "shop\n", None])
def test_name_whitelist_refuses(name):
    with pytest.raises(CatalogError) as exc:
        check_name(name)
    assert "1 to 64 letters" in refusal(exc)


# ----------------------------------------------------------------------------------------------
# zip validation (nothing is written when the archive is refused)


def refused_zip(tmp_path: Path, zip_path: Path, limits: Limits = LIMITS) -> str:
    work = tmp_path / "work"
    with pytest.raises(CatalogError) as exc:
        read_source(zip_path, workdir=work, limits=limits)
    assert not work.exists() or not any(p.is_file() for p in work.rglob("*")), "nothing may be unpacked"
    return refusal(exc, tmp_path)


@pytest.mark.parametrize("bad", ["../evil.png", "photos/../../evil.png", "..\\..\\evil.png"])
def test_zip_traversal_refused(tmp_path, bad):
    z = make_zip(tmp_path / "up.zip", {"photos/ok.png": image_bytes(), bad: image_bytes()})
    assert "outside the archive" in refused_zip(tmp_path, z)


@pytest.mark.parametrize("bad", ["/etc/evil.png", "C:/evil.png"])
def test_zip_absolute_path_refused(tmp_path, bad):
    z = tmp_path / "up.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok.png", image_bytes())
        info = zipfile.ZipInfo("placeholder")
        info.filename = bad  # ZipInfo() strips a leading "/", a hostile tool does not
        zf.writestr(info, image_bytes())
    assert "absolute path" in refused_zip(tmp_path, z)


def test_zip_symlink_refused(tmp_path):
    z = tmp_path / "up.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok.png", image_bytes())
        link = zipfile.ZipInfo("passwd.png")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    assert "symbolic link" in refused_zip(tmp_path, z)


def test_zip_bomb_by_entry_ratio_refused(tmp_path):
    z = make_zip(tmp_path / "up.zip", {"ok.png": image_bytes(), "zeros.png": bytes(3 * 1024 * 1024)})
    assert "zip bomb" in refused_zip(tmp_path, z)


def test_zip_bomb_by_total_ratio_refused(tmp_path):
    # each entry is under the per-entry floor, together they inflate ~1000-fold
    entries = {f"z{i}.png": bytes(600 * 1024) for i in range(6)}
    z = make_zip(tmp_path / "up.zip", entries)
    assert "zip bomb" in refused_zip(tmp_path, z) and "it would unpack" in refused_zip(tmp_path, z)


def test_zip_total_size_cap_from_headers(tmp_path):
    z = make_zip(tmp_path / "up.zip", {f"p{i}.png": image_bytes(color=(i, 0, 0)) for i in range(5)})
    limits = Limits(max_total_bytes=sum(len(image_bytes(color=(i, 0, 0))) for i in range(5)) - 1)
    assert "would unpack to" in refused_zip(tmp_path, z, limits)


def test_zip_total_size_cap_enforced_while_streaming(tmp_path, monkeypatch):
    """With the header checks fooled, the copy itself stops at the cap and removes what it wrote."""
    data = os.urandom(300 * 1024)  # incompressible, so no ratio rule fires
    z = make_zip(tmp_path / "up.zip", {f"p{i}.bin": data for i in range(4)})
    honest = archive.check_archive

    def fooled(path, limits):  # what a header that under-reports sizes would let through
        return honest(path, Limits())

    monkeypatch.setattr(archive, "check_archive", fooled)
    work = tmp_path / "work"
    with pytest.raises(CatalogError) as exc:
        archive.extract_archive(z, work, Limits(max_total_bytes=700 * 1024))
    assert "limit was reached while unpacking" in refusal(exc, tmp_path)
    assert not any(p.is_file() for p in work.rglob("*")), "the partial copy is removed"


def test_zip_header_that_lies_about_size_refused(tmp_path):
    """A central directory claiming fewer bytes than the entry holds is caught by what is actually read."""
    z = make_zip(tmp_path / "up.zip", {"a.png": image_bytes(), "b.png": image_bytes(color=(1, 2, 3))})
    raw = bytearray(z.read_bytes())
    at = raw.find(b"PK\x01\x02")  # first central directory header; uncompressed size at offset 24
    (real,) = struct.unpack_from("<I", raw, at + 24)
    struct.pack_into("<I", raw, at + 24, real // 2)
    z.write_bytes(bytes(raw))
    assert "damaged" in refused_zip(tmp_path, z)


def test_zip_too_many_entries_refused(tmp_path):
    z = make_zip(tmp_path / "up.zip", {f"p{i}.png": image_bytes() for i in range(6)})
    assert "more than 5 entries" in refused_zip(tmp_path, z, Limits(max_entries=5))


def test_zip_over_archive_size_cap_refused(tmp_path):
    z = make_zip(tmp_path / "up.zip", {"p.png": image_bytes()})
    assert "archives over" in refused_zip(tmp_path, z, Limits(max_archive_bytes=100))


def test_not_a_zip_refused(tmp_path):
    z = tmp_path / "up.zip"
    z.write_text("these are my photos, honest\n" * 20)
    assert "not a zip archive" in refused_zip(tmp_path, z)


def test_zip_encrypted_entry_refused(tmp_path):
    z = make_zip(tmp_path / "up.zip", {"secret.png": image_bytes()})
    raw = bytearray(z.read_bytes())
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central "encrypted" bit
        at = raw.find(sig)
        raw[at + flag_at] |= 0x01
    z.write_bytes(bytes(raw))
    assert "password-protected" in refused_zip(tmp_path, z)


# ----------------------------------------------------------------------------------------------
# folders


def test_folder_labels_and_skips(tmp_path):
    root = tmp_path / "shop"
    png(root / "shoes" / "red.png")
    jpeg(root / "shoes" / "winter" / "boot.jpg")
    png(root / "loose.png")
    (root / "logo.svg").write_text('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="4" '
                                   'height="4"><rect width="4" height="4"/></svg>')
    (root / "notes.txt").write_text("prices next week")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "empty.png").write_bytes(b"")
    os.symlink(root / "gone.png", root / "dangling.png")
    png(root / ".hidden.png")
    (root / ".DS_Store").write_bytes(b"\0\0")
    png(root / "__MACOSX" / "shoes" / "._red.png")
    report = read_source(root)
    assert report.kind == "folder" and report.columns == [] and report.root == root.resolve()
    by_id = {item.id: item for item in report.items}
    assert set(by_id) == {"shoes/red.png", "shoes/winter/boot.jpg", "loose.png", "logo.svg"}
    assert by_id["shoes/winter/boot.jpg"].category == "shoes" and by_id["loose.png"].category == ""
    for item in report.items:
        assert item.image.is_absolute() and item.image.is_file() and item.image.is_relative_to(report.root)
    assert reasons(report) == {
        "notes.txt": "not an image",
        "broken.jpg": "not a readable image",
        "empty.png": "empty file",
        "dangling.png": "cannot be read (no such file or directory)",
    }


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_folder_unreadable_file_listed(tmp_path):
    png(tmp_path / "ok.png")
    secret = png(tmp_path / "secret.png")
    secret.chmod(0)
    try:
        assert reasons(read_source(tmp_path)) == {"secret.png": "cannot be read (permission denied)"}
    finally:
        secret.chmod(0o644)


def test_folder_link_outside_root_not_followed(tmp_path):
    outside = png(tmp_path / "private" / "passport.png")
    root = tmp_path / "shop"
    png(root / "ok.png")
    os.symlink(outside, root / "passport.png")
    os.symlink(outside.parent, root / "private")
    report = read_source(root)
    assert [i.id for i in report.items] == ["ok.png"]
    assert reasons(report) == {"passport.png": "link to a file outside the folder",
                               "private": "link to a folder, not followed"}


def test_folder_oversized_image_skipped(tmp_path):
    png(tmp_path / "small.png")
    png(tmp_path / "big.png", size=(300, 300))
    limit = (tmp_path / "big.png").stat().st_size - 1
    assert "over the" in reasons(read_source(tmp_path, limits=Limits(max_image_bytes=limit)))["big.png"]


def test_folder_without_images_refused(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.doc").write_text("x")
    with pytest.raises(CatalogError) as exc:
        read_source(tmp_path)
    msg = refusal(exc, tmp_path)
    assert "No usable images" in msg and "2 files skipped" in msg and "a.txt: not an image" in msg


def test_missing_source_refused(tmp_path):
    with pytest.raises(CatalogError) as exc:
        read_source(tmp_path / "nowhere")
    assert "does not exist" in refusal(exc)


# ----------------------------------------------------------------------------------------------
# CSV


def csv_shop(tmp_path: Path, text: str, images=("a.png", "b.png", "c.png")) -> Path:
    for i, name in enumerate(images):
        png(tmp_path / name, color=(40 * i, 0, 0))
    path = tmp_path / "shop.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_roles_and_attributes(tmp_path):
    path = csv_shop(tmp_path, "SKU,Name,Image Path,label,desc,colour\n"
                              "17,Red scarf,a.png,scarves,Warm wool,red\n"
                              '18,"Boots, winter",b.png,shoes,,black\n')
    report = read_source(path)
    assert report.kind == "csv" and report.columns == ["SKU", "Name", "Image Path", "label", "desc", "colour"]
    first, second = report.items
    assert (first.id, first.title, first.category, first.description) == ("17", "Red scarf", "scarves", "Warm wool")
    assert dict(first.attributes) == {"colour": "red"} and second.title == "Boots, winter"
    assert first.image == (tmp_path / "a.png").resolve() and report.skipped == []


def test_csv_missing_image_column_names_columns_found(tmp_path):
    path = csv_shop(tmp_path, "sku,title,price\n1,Scarf,10\n")
    with pytest.raises(CatalogError) as exc:
        read_source(path)
    assert "no image column (columns found: sku, title, price)" in refusal(exc, tmp_path)


def test_csv_image_not_found_row_skipped(tmp_path):
    path = csv_shop(tmp_path, "id,image\n1,a.png\n2,missing.png\n3,b.png\n")
    report = read_source(path)
    assert [i.id for i in report.items] == ["1", "3"]
    assert reasons(report) == {"row 3": "image not found: missing.png"}


def test_csv_paths_outside_root_skipped(tmp_path):
    root = tmp_path / "shop"
    outside = png(tmp_path / "private.png")
    os.symlink(outside, png(root / "x.png").with_name("link.png"))
    path = csv_shop(root, f"id,image\n1,a.png\n2,../private.png\n3,{outside}\n4,link.png\n5,http://x.org/a.png\n")
    report = read_source(path)
    assert [i.id for i in report.items] == ["1"]
    assert reasons(report) == {
        "row 3": "image outside the catalog folder: ../private.png",
        "row 4": f"absolute image path not allowed: {outside}",
        "row 5": "image outside the catalog folder: link.png",
        "row 6": "image is a web address, not a file in the catalog: http://x.org/a.png",
    }


def test_csv_duplicate_id_skipped(tmp_path):
    report = read_source(csv_shop(tmp_path, "id,image\n17,a.png\n17,b.png\n18,c.png\n"))
    assert [i.id for i in report.items] == ["17", "18"] and reasons(report) == {"row 3": "duplicate id 17"}


def test_csv_wrong_field_count_skipped(tmp_path):
    report = read_source(csv_shop(tmp_path, "id,image,title,category\n1,a.png,Scarf,x\n2,b.png,Boots\n"))
    assert [i.id for i in report.items] == ["1"] and reasons(report) == {"row 3": "3 fields, expected 4"}


def test_csv_non_utf8_row_skipped(tmp_path):
    path = csv_shop(tmp_path, "")
    path.write_bytes("id,image,title\n1,a.png,Café crème\n".encode("utf-8")
                     + "2,b.png,Café noir\n".encode("latin-1") + b"3,c.png,Tea\n")
    report = read_source(path)
    assert [(i.id, i.title) for i in report.items] == [("1", "Café crème"), ("3", "Tea")]
    assert reasons(report) == {"row 3": "not UTF-8"}


def test_csv_empty_cells_skipped(tmp_path):
    report = read_source(csv_shop(tmp_path, "id,image\n,a.png\n2,\n3,c.png\n"))
    assert [i.id for i in report.items] == ["3"]
    assert reasons(report) == {"row 2": "empty id", "row 3": "empty image cell"}


def test_csv_without_id_column_uses_image_path(tmp_path):
    png(tmp_path / "photos" / "d.png")
    report = read_source(csv_shop(tmp_path, "filename,title\nphotos/d.png,Dog\na.png,Cat\n"))
    assert [i.id for i in report.items] == ["photos/d.png", "a.png"]


def test_csv_semicolon_delimiter(tmp_path):
    report = read_source(csv_shop(tmp_path, "id;image;title\n1;a.png;Scarf, red\n"))
    assert [(i.id, i.title) for i in report.items] == [("1", "Scarf, red")]


def test_csv_all_rows_bad_refused(tmp_path):
    path = csv_shop(tmp_path, "id,image\n1,x.png\n2,y.png\n2,a.png,extra\n", images=("a.png",))
    with pytest.raises(CatalogError) as exc:
        read_source(path)
    msg = refusal(exc, tmp_path)
    assert msg.startswith("No usable images in shop.csv: 3 rows skipped (row 2: image not found: x.png;")


def test_csv_utf16_refused(tmp_path):
    path = csv_shop(tmp_path, "")
    path.write_bytes("id,image\n1,a.png\n".encode("utf-16"))
    with pytest.raises(CatalogError) as exc:
        read_source(path)
    assert "UTF-16" in refusal(exc, tmp_path)


def test_folder_with_one_csv_is_a_csv_catalog(tmp_path):
    root = tmp_path / "shop"
    rows = "id,image,title\n1,a.png,Scarf\n2,b.png,Boots\n2,c.png,Boots again\n"
    csv_shop(root, rows, images=("a.png", "b.png", "c.png", "d.png"))
    report = read_source(root)
    assert report.kind == "csv" and [i.id for i in report.items] == ["1", "2"]
    assert reasons(report) == {"row 4": "duplicate id 2", "d.png": "not listed in shop.csv"}


def test_folder_with_one_csv_of_ids_describes_the_images(tmp_path):
    root = tmp_path / "shop"
    csv_shop(root, "sku,title\na,Scarf\nb,Boots\n")
    report = read_source(root)
    assert report.kind == "folder" and report.columns == ["sku", "title"]
    assert {(i.id, i.title) for i in report.items} == {("a", "Scarf"), ("b", "Boots"), ("c.png", "")}


def test_folder_with_an_unrelated_csv_lists_it(tmp_path):
    root = tmp_path / "shop"
    csv_shop(root, "title,price\nScarf,10\n")
    report = read_source(root)
    assert report.kind == "folder" and [i.id for i in report.items] == ["a.png", "b.png", "c.png"]
    assert reasons(report) == {"shop.csv": "not used: no image or id column (columns found: title, price)"}


# ----------------------------------------------------------------------------------------------
# Kaggle "Fashion Product Images"


def kaggle_folder(root: Path) -> Path:
    for i, item in enumerate((15970, 39386, 59263)):
        jpeg(root / "images" / f"{item}.jpg", color=(60 * i, 80, 80))
    (root / "styles.csv").write_text(
        KAGGLE_HEADER
        + "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt\n"
        + "39386,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual,Peter England Men Party Blue Jeans\n"
        + "59263,Women,Accessories,Watches,Watches,Silver,Winter,2016,Casual,Titan Women Silver, Gold Watch\n"
        + "11111,Men,Footwear,Shoes,Casual Shoes,White,Summer,2012,Casual,Missing Picture Shoe\n"
        + "22222,Men,Footwear\n",
        encoding="utf-8",
    )
    return root


def test_kaggle_layout_with_comma_rows_recovered(tmp_path):
    root = kaggle_folder(tmp_path / "fashion")
    for source in (root, root / "styles.csv"):
        report = read_source(source)
        assert report.kind == "kaggle" and report.columns[0] == "id"
        by_id = {i.id: i for i in report.items}
        assert set(by_id) == {"15970", "39386", "59263"}
        watch = by_id["59263"]
        assert watch.title == "Titan Women Silver, Gold Watch" and watch.category == "Watches"
        assert watch.attributes["gender"] == "Women" and "productDisplayName" not in watch.attributes
        assert watch.image == (root / "images" / "59263.jpg").resolve()
        assert reasons(report) == {"row 5": "image not found: images/11111.jpg", "row 6": "3 fields, expected 10"}


# ----------------------------------------------------------------------------------------------
# zips of each layout


def test_zip_of_folder_descends_into_single_top_folder(tmp_path):
    z = make_zip(tmp_path / "upload.zip", {
        "my-shop/shoes/red.png": image_bytes(),
        "my-shop/bags/tote.jpg": image_bytes("JPEG"),
        "my-shop/readme.txt": b"hello",
        "__MACOSX/my-shop/shoes/._red.png": b"\0\5\26\7",
        "my-shop/.DS_Store": b"\0",
    })
    report = read_source(z, workdir=tmp_path / "work")
    assert report.kind == "zip:folder" and report.root.name == "my-shop"
    assert report.root.is_relative_to((tmp_path / "work").resolve())
    assert {(i.id, i.category) for i in report.items} == {("shoes/red.png", "shoes"), ("bags/tote.jpg", "bags")}
    assert reasons(report) == {"readme.txt": "not an image"}


def test_zip_of_csv(tmp_path):
    z = make_zip(tmp_path / "upload.zip", {
        "catalog.csv": b"id,image,title\n1,pics/a.png,Scarf\n2,pics/b.png,Boots\n",
        "pics/a.png": image_bytes(), "pics/b.png": image_bytes("JPEG"),
    })
    report = read_source(z, workdir=tmp_path / "work")
    assert report.kind == "zip:csv" and [(i.id, i.title) for i in report.items] == [("1", "Scarf"), ("2", "Boots")]


def test_zip_of_kaggle(tmp_path):
    root = kaggle_folder(tmp_path / "fashion")
    entries = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    report = read_source(make_zip(tmp_path / "upload.zip", entries), workdir=tmp_path / "work")
    assert report.kind == "zip:kaggle" and {i.id for i in report.items} == {"15970", "39386", "59263"}


def test_zip_needs_a_workdir(tmp_path):
    with pytest.raises(ValueError):
        read_source(make_zip(tmp_path / "up.zip", {"a.png": image_bytes()}))


# ----------------------------------------------------------------------------------------------
# metadata CSV for a folder


def test_meta_csv_merged_by_path_and_id(tmp_path):
    root = tmp_path / "photos"
    png(root / "shoes" / "red.png")
    png(root / "shoes" / "blue.png")
    png(root / "bags" / "tote.png")
    meta = tmp_path / "meta.csv"
    meta.write_text("image,title,category,colour\nshoes/red.png,Red sneaker,sneakers,red\n"
                    "nowhere.png,Lost,x,y\n", encoding="utf-8")
    report = read_source(root, meta=meta)
    by_id = {i.id: i for i in report.items}
    assert report.kind == "folder" and report.columns == ["image", "title", "category", "colour"]
    assert (by_id["shoes/red.png"].title, by_id["shoes/red.png"].category) == ("Red sneaker", "sneakers")
    assert dict(by_id["shoes/red.png"].attributes) == {"colour": "red"}
    assert (by_id["shoes/blue.png"].title, by_id["shoes/blue.png"].category) == ("", "shoes")
    assert reasons(report) == {"meta.csv row 3": "image not found: nowhere.png"}

    by_sku = tmp_path / "skus.csv"
    by_sku.write_text("sku,title\ntote,Canvas tote\nred,Red sneaker\n", encoding="utf-8")
    ids = {i.id: i.title for i in read_source(root, meta=by_sku).items}
    assert ids == {"tote": "Canvas tote", "red": "Red sneaker", "shoes/blue.png": ""}


def test_meta_csv_without_image_or_id_refused(tmp_path):
    png(tmp_path / "photos" / "a.png")
    meta = tmp_path / "meta.csv"
    meta.write_text("title,price\nScarf,10\n")
    with pytest.raises(CatalogError) as exc:
        read_source(tmp_path / "photos", meta=meta)
    assert "neither an image nor an id column (columns found: title, price)" in refusal(exc, tmp_path)


# ----------------------------------------------------------------------------------------------
# built-in catalogs


def test_builtin_tuxpaint_clothes():
    try:
        report = builtin_source("tuxpaint-clothes")
    except CatalogError as exc:
        pytest.skip(str(exc))
    assert report.kind == "shipped" and len(report.items) > 20
    assert {i.category for i in report.items} <= {"hats", "dresses", "bottoms", "tops", "footwear", "accessories"}
    assert all(i.image.is_file() and i.image.is_relative_to(report.root) and i.title for i in report.items)
    assert len({i.id for i in report.items}) == len(report.items)


def test_builtin_unknown_refused():
    with pytest.raises(CatalogError) as exc:
        builtin_source("../etc")
    assert "tuxpaint-clothes, tuxpaint" in refusal(exc)


# ----------------------------------------------------------------------------------------------
# committed fixture in the real Kaggle format


FIXTURE = FIXTURES / "catalog" / "kaggle"


def test_kaggle_fixture_reads_as_folder_and_as_zip(tmp_path):
    from core.images import load_any

    entries = {f"kaggle/{p.relative_to(FIXTURE).as_posix()}": p.read_bytes() for p in FIXTURE.rglob("*") if p.is_file()}
    zipped = read_source(make_zip(tmp_path / "kaggle.zip", entries), workdir=tmp_path / "work")
    for report, kind in ((read_source(FIXTURE), "kaggle"), (zipped, "zip:kaggle")):
        assert report.kind == kind and report.skipped == []
        assert [(i.id, i.category) for i in report.items] == [
            ("15970", "Shirts"), ("39386", "Jeans"), ("59263", "Watches")]
        assert report.items[2].title == "Titan Women Silver, Gold Dial Watch"
        assert report.items[2].attributes["baseColour"] == "Silver"
        assert all(load_any(i.image).size == (40, 48) for i in report.items)
