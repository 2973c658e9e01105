"""The catalog-build benchmark end to end on 20 small JPEGs: a real ``catalog add`` subprocess, the bare encoder
beside it, and the JSON the issue's bars are read from.

The photos are scikit-image's real samples, named as a photo set names a PyPI package's files, so the test needs
no Debian package and runs the same code path as the 1,000- and 10,000-image runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import catalog_build  # noqa: E402

PARENT_MB = 2500
SAMPLES = [("chelsea", "cat", "animal"), ("coffee", "coffee", "food"), ("astronaut", "astronaut", "person"),
           ("motorcycle_left", "motorcycle", "vehicle")]


def _photoset(folder: Path) -> Path:
    csv_path = folder / "samples.csv"
    lines = ["package,path,label,group,title"]
    lines += [f"scikit-image,skimage/data/{stem}.png,{label},{group},a {label}" for stem, label, group in SAMPLES]
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path


@pytest.mark.slow(reason="runs the benchmark in subprocesses")
def test_benchmark_writes_every_key_the_bars_need(tmp_path):
    photoset = _photoset(tmp_path)
    out = tmp_path / "result.json"
    ballast = bytearray(PARENT_MB * 2**20)  # a test session that has grown large: its peak must not leak in
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))
    code = catalog_build.main(["--sizes", "20", "--repeats", "1", "--cache", str(tmp_path / "cache"),
                               "--photosets", str(photoset), "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["cpus"] >= 1 and len(result["load_avg_start"]) == 3 and len(result["load_avg_end"]) == 3
    assert "onnxruntime" in result["environment"]
    row = result["sizes"]["20"]
    assert row["images"] == 20  # every materialised JPEG was built; the folder's manifest.json is skipped
    assert row["seconds"] > row["cli_seconds"] > 0  # the wall time includes the interpreter and imports
    assert row["images_per_s"] == round(20 / row["seconds"], 1)
    assert 50 < row["peak_rss_mb"] < PARENT_MB  # the build's own peak, not the parent's carried across exec
    del ballast
    assert {"decode_wait", "encode", "words", "text", "index", "duplicates"} <= set(row["phases"])
    assert row["encoder_images_per_s"] > 0 and row["encoder"]["repeats"] == 1
    assert set(row["bars"]) == {"peak_rss_mb_le_2048"}  # 20 images: only the memory bar applies


def test_jpeg_folder_is_made_once_and_reused(tmp_path):
    photoset = _photoset(tmp_path)
    folder = catalog_build.jpeg_folder(6, tmp_path, size=96, photosets=[str(photoset)])
    files = sorted(folder.rglob("*.jpg"))
    assert len(files) == 6 and {f.parent.name for f in files} <= {label for _, label, _ in SAMPLES}
    stamp = files[0].stat().st_mtime_ns
    assert catalog_build.jpeg_folder(6, tmp_path, size=96, photosets=[str(photoset)]) == folder
    assert files[0].stat().st_mtime_ns == stamp  # reused, not remade


def test_bars_follow_the_issue():
    fast = {"seconds": 30.0, "images_per_s": 33.3, "peak_rss_mb": 900.0}
    slow = {"seconds": 400.0, "images_per_s": 25.0, "peak_rss_mb": 2100.0}
    assert catalog_build.bars_for(1000, fast) == {"peak_rss_mb_le_2048": True, "seconds_le_40": True,
                                                  "images_per_s_ge_25": True}
    assert catalog_build.bars_for(10000, slow) == {"peak_rss_mb_le_2048": False, "seconds_le_360": False}


def test_bad_sizes_exit_2(tmp_path, capsys):
    assert catalog_build.main(["--sizes", "0", "--out", str(tmp_path / "x.json")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
