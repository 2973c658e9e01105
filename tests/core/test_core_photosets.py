"""Labelled real-photo sets: loading (skipping absent packages with one clear warning), the committed check
sets' own rules, and the synthetic JPEG folders made from them for speed benchmarks."""

import csv
import logging
import re

import pytest
from PIL import Image

from core import photo_archives
from core.photosets import (CHECKSETS_DIR, GROUPS, MIN_TEST_PER_LABEL, Photo, PhotoSetError, load_photoset,
                            materialize_jpegs, read_rows, split_by_hash)

HASHTAG_SETS = [CHECKSETS_DIR / f"realphotos_{n}.csv" for n in ("dev", "check", "scenes")]


def _photo(path, color, size, label="thing"):
    Image.new("RGB", size, color).save(path)
    return Photo(path=path, label=label, group="object", title=f"{label} photo", acceptable=(), package="test")


def test_load_photoset_reads_rows_and_skips_absent_packages_with_one_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(photo_archives, "DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(photo_archives, "CACHE_DIR", tmp_path / "cache")
    img = tmp_path / "cup.png"
    Image.new("RGB", (20, 10), "white").save(img)
    csv_path = tmp_path / "set.csv"
    csv_path.write_text("package,path,label,group,title,acceptable\n"
                        f"demo,{img},cup,object,White cup,mug teacup\n"
                        "gonepkg,deb:gonepkg_*.deb!usr/share/a.jpg,dog,animal,A dog,puppy\n"
                        "gonepkg,deb:gonepkg_*.deb!usr/share/b.jpg,cat,animal,A cat,\n"
                        "gonedeb,/nonexistent/photo.jpg,tree,plant,A tree,\n")
    with caplog.at_level(logging.WARNING, logger="core.photosets"):
        (photo,) = load_photoset(csv_path)
    assert photo == Photo(path=img, label="cup", group="object", title="White cup",
                          acceptable=("mug", "teacup"), package="demo")
    (warning,) = caplog.records
    assert "gonedeb, gonepkg" in warning.getMessage()
    assert "make heldout-photos" in warning.getMessage() and "apt-get install gonedeb" in warning.getMessage()


@pytest.mark.parametrize("body, message", [
    ("package,path,label,group\nx,/a.jpg,cup,object\n", "lacks the column(s) title"),
    ("package,path,label,group,title\nx,/a.jpg,cup,furniture,A cup\n", "group 'furniture'"),
    ("package,path,label,group,title\nx,/a.jpg,tea cup,object,A cup\n", "one lowercase word"),
    ("package,path,label,group,title\nx,/a.jpg,../up,object,A cup\n", "one lowercase word"),
])
def test_malformed_photoset_is_refused_with_the_reason(tmp_path, body, message):
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text(body)
    with pytest.raises(PhotoSetError, match=re.escape(message)):
        load_photoset(csv_path)


def test_materialize_jpegs_makes_varied_photo_sized_files_reproducibly(tmp_path):
    pool = [_photo(tmp_path / "red.png", (200, 30, 30), (120, 80), "red"),
            _photo(tmp_path / "grad.png", (10, 10, 10), (60, 90), "grey")]
    Image.linear_gradient("L").resize((60, 90)).convert("RGB").save(pool[1].path)  # flips must show
    made = materialize_jpegs(pool, tmp_path / "a", n=7, size=64, seed=3)
    assert len(made) == len(set(made)) == 7
    names = [p.parent.name for p in made]
    assert sorted([names.count("grey"), names.count("red")]) == [3, 4]  # whole passes: balanced labels
    for p in made:
        with Image.open(p) as im:
            assert im.format == "JPEG" and 57 <= max(im.size) <= 71
    again = materialize_jpegs(pool, tmp_path / "b", n=7, size=64, seed=3)
    assert [p.read_bytes() for p in made] == [p.read_bytes() for p in again]
    other = materialize_jpegs(pool, tmp_path / "c", n=7, size=64, seed=4)
    assert [p.read_bytes() for p in made] != [p.read_bytes() for p in other]
    assert (tmp_path / "a" / "manifest.json").is_file()
    with pytest.raises(ValueError, match="No photos"):
        materialize_jpegs([], tmp_path / "d", n=3)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_committed_check_sets_follow_their_rules():
    sets = {name: read_rows(CHECKSETS_DIR / f"{name}.csv")
            for name in ("catalog_dev", "catalog_test", "hashtag_heldout", "product_shots")}
    for rows in sets.values():
        assert all(r["group"] in GROUPS and r["title"] for r in rows)
        assert len({r["path"] for r in rows}) == len(rows)  # no photo twice in a set
    dev, test = sets["catalog_dev"], sets["catalog_test"]
    counts = {label: sum(r["label"] == label for r in test) for label in {r["label"] for r in test}}
    assert len(counts) >= 8 and min(counts.values()) >= MIN_TEST_PER_LABEL
    assert {r["label"] for r in dev} == set(counts)  # dev holds other photos of every test label
    assert not {r["path"] for r in dev} & {r["path"] for r in test}
    redo_dev, redo_test = split_by_hash(dev + test)  # the split is the written rule, not a choice
    assert [r["path"] for r in redo_test] == [r["path"] for r in test]
    assert [r["path"] for r in redo_dev] == [r["path"] for r in dev]
    used = {r["path"] for p in HASHTAG_SETS for r in _rows(p)}
    assert used and not used & {r["path"] for r in sets["hashtag_heldout"] + sets["product_shots"]}
    assert len(sets["product_shots"]) >= 15
    assert {"animal", "tool", "object", "structure"} <= {r["group"] for r in sets["hashtag_heldout"]}


def test_second_catalog_test_set_is_independent_of_the_first():
    """catalog_test2.csv: the same format, every label with enough photos for precision@5 (at least 6, so a photo
    query has 5 others of its label), no photo shared with catalog_dev/catalog_test, none a hashtag model was
    fitted on, and no ImageNet validation photo (foolbox ships those: the CNN's own domain)."""
    second = read_rows(CHECKSETS_DIR / "catalog_test2.csv")
    assert all(r["title"] and r["acceptable"] for r in second)
    assert len({r["path"] for r in second}) == len(second)
    counts = {label: sum(r["label"] == label for r in second) for label in {r["label"] for r in second}}
    assert len(counts) >= 12 and min(counts.values()) >= 6
    first = read_rows(CHECKSETS_DIR / "catalog_dev.csv") + read_rows(CHECKSETS_DIR / "catalog_test.csv")
    assert not {r["path"] for r in first} & {r["path"] for r in second}
    assert not any(r["package"] == "foolbox" or "foolbox" in r["path"] for r in second)
    fitted = {r["path"] for p in HASHTAG_SETS for r in _rows(p)}
    assert not fitted & {r["path"] for r in second}  # no photo a hashtag model was fitted on
