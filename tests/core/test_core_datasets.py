"""The Tux Paint reader, on the installed package and on a fixture in its exact layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from core.datasets import TUXPAINT_DIR, DataUnavailable, load_tuxpaint


def _stamp(folder: Path, name: str, caption: str | None, suffixes=(".png",)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for s in suffixes:
        if s == ".png":
            Image.new("RGBA", (20, 20), (200, 0, 0, 255)).save(folder / f"{name}.png")
        else:
            (folder / f"{name}.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    if caption is not None:
        (folder / f"{name}.txt").write_text(f"{caption}\nfr.utf8=Traduction.\nde.utf8=Übersetzung.\n", encoding="utf-8")


def test_fixture_layout(tmp_path):
    _stamp(tmp_path / "animals" / "birds", "owl", "A snowy owl.")
    _stamp(tmp_path / "animals" / "birds", "owl_mirror", None)
    _stamp(tmp_path / "food", "cake", "A cake.", suffixes=(".png", ".svg"))
    _stamp(tmp_path / "food", "pie", None, suffixes=(".svg",))
    stamps = {s.id: s for s in load_tuxpaint(tmp_path)}
    assert set(stamps) == {"animals/birds/owl", "animals/birds/owl_mirror", "food/cake", "food/pie"}
    mirror = stamps["animals/birds/owl_mirror"]
    assert mirror.is_mirror and mirror.group == "animals/birds/owl" and mirror.caption == "A snowy owl."
    assert stamps["food/cake"].image_path.suffix == ".png" and stamps["food/cake"].alternates[0].suffix == ".svg"
    assert stamps["food/pie"].caption == "pie"  # no .txt: the name stands in
    assert stamps["animals/birds/owl"].category == ("animals", "birds")
    assert [s.id for s in load_tuxpaint(tmp_path, categories=["food"])] == ["food/cake", "food/pie"]


def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(DataUnavailable):
        load_tuxpaint(tmp_path / "nope")


def test_installed_package():
    if not TUXPAINT_DIR.is_dir():
        pytest.skip("tuxpaint-stamps-default is not installed (make test installs it where apt is usable)")
    stamps = load_tuxpaint()
    assert len(stamps) == 961
    mirrors = [s for s in stamps if s.is_mirror]
    assert len(mirrors) == 11
    ids = {s.id for s in stamps}
    assert all(m.group in ids and m.group != m.id for m in mirrors)
    owl = next(s for s in stamps if s.name == "owl" or "owl" in s.id)
    assert owl.caption and owl.caption[0].isupper()
