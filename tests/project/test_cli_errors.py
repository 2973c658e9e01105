"""Every verb of every command line answers a bad argument the same way: one ``error: ...`` line, exit 2.

Each case runs the real ``python -m <package>`` in a subprocess (against the session's empty models folder), so
argparse's own complaints, the commands' checks and the libraries' exceptions are all seen as a user sees them.
Cases are chosen to fail before any model loads, which keeps the walk fast.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MISSING = "/nonexistent/recs-studio/photo.jpg"

# (package, verb, arguments after the verb); "{text}" becomes a path to a file that is not an image
CASES = [
    ("fashion", "index", ["--catalog", "/nonexistent/recs-studio/catalog"]),
    ("fashion", "search", [MISSING, "--catalog", "tuxpaint-clothes"]),
    ("fashion", "similar", ["item-1", "--catalog", "no-such-catalog"]),
    ("fashion", "evaluate", ["--queries", "0"]),
    ("multimodal", "index", ["--catalog", "csv", "--catalog-path", "/nonexistent/recs-studio/products.csv"]),
    ("multimodal", "search", ["--text", "red fruit", "--alpha", "2"]),
    ("multimodal", "search", ["--text", "hat", "--top", "many"]),
    ("multimodal", "evaluate", ["--catalog", "fashion", "--catalog-path", "/nonexistent/recs-studio/fashion"]),
    ("hashtag", "build-dataset", ["--source", "csv"]),
    ("hashtag", "train", ["--dataset", "/nonexistent/recs-studio/dataset"]),
    ("hashtag", "predict", ["{text}"]),
    ("hashtag", "evaluate", ["--dataset", "/nonexistent/recs-studio/dataset"]),
    ("core", "prepare", ["--no-such-flag"]),
    ("core", "classify", ["{text}"]),
    ("core", "backbones", ["--top", "3"]),
]


@pytest.mark.slow(reason="one python -m process per case")
@pytest.mark.parametrize("package,verb,args", CASES, ids=[f"{p}-{v}-{i}" for i, (p, v, _) in enumerate(CASES)])
def test_bad_argument_is_one_error_line_and_exit_2(package, verb, args, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is a shopping list, not a picture\n")
    argv = [str(text) if a == "{text}" else a for a in args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RECS_NO_TQDM": "1"}
    out = subprocess.run([sys.executable, "-m", package, verb, *argv, "--json"] if verb != "prepare" and
                         package != "core" else [sys.executable, "-m", package, verb, *argv],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert len(errors) == 1, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "usage:" not in out.stderr
    assert out.stdout.strip() == ""


# ------------------------------------------------------------------------------------------------
# Files that are not what they claim: a folder for a file, bad JSON, a pickle for weights, binary for text.

def _bad_files(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "a-folder"
    folder.mkdir(exist_ok=True)
    broken = tmp_path / "broken-dataset"
    broken.mkdir(exist_ok=True)
    (broken / "dataset.json").write_text("{not json")
    pickled = tmp_path / "weights.pkl"
    pickled.write_bytes(pickle.dumps({"conv.weight": [1.0, 2.0]}))
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    return {"{dir}": str(folder), "{badjson}": str(broken), "{pickle}": str(pickled), "{binary}": str(binary)}


FILE_CASES = [
    ("core", "classify", ["{dir}"]),
    ("fashion", "search", ["{dir}", "--catalog", "tuxpaint-clothes"]),
    ("fashion", "index", ["--catalog", "tuxpaint-clothes", "--weights", "{dir}"]),
    ("fashion", "index", ["--catalog", "tuxpaint-clothes", "--backbone", "resnet50", "--weights", "{pickle}"]),
    ("hashtag", "predict", ["{dir}"]),
    ("hashtag", "train", ["--dataset", "{badjson}"]),
    ("hashtag", "evaluate", ["--dataset", "{badjson}"]),
    ("hashtag", "build-dataset", ["--source", "csv", "--path", "{dir}"]),
    ("hashtag", "build-dataset", ["--source", "csv", "--path", "{binary}"]),
    ("multimodal", "search", ["--image", "{dir}", "--text", "hat"]),
    ("multimodal", "index", ["--catalog", "csv", "--catalog-path", "{dir}"]),
    ("multimodal", "index", ["--catalog", "csv", "--catalog-path", "{binary}"]),
    ("music", "train", ["--dataset", "csv", "--path", "{binary}"]),
    ("music", "train", ["--dataset", "lastfm-2k", "--path", "{dir}"]),
    ("music", "evaluate-next", ["--dataset", "csv", "--path", "{dir}"]),
]


def _cli(package: str, verb: str, args: list[str], models: Path) -> subprocess.CompletedProcess:
    """``python -m package verb args --json`` against ``models`` as the models folder."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RECS_NO_TQDM": "1", "RECS_MODELS_DIR": str(models)}
    return subprocess.run([sys.executable, "-m", package, verb, *args, "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def _assert_one_error_line(out: subprocess.CompletedProcess) -> str:
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert len(errors) == 1, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "usage:" not in out.stderr
    assert out.stdout.strip() == ""
    return errors[0]


def _written(models: Path) -> list[str]:
    return sorted(str(p.relative_to(models)) for p in models.rglob("*") if p.is_file()) if models.exists() else []


@pytest.mark.slow(reason="one python -m process per case")
@pytest.mark.parametrize("package,verb,args", FILE_CASES, ids=[f"{p}-{v}-{i}" for i, (p, v, _) in enumerate(FILE_CASES)])
def test_a_file_that_is_not_what_it_claims_is_one_error_line(package, verb, args, tmp_path):
    files = _bad_files(tmp_path)
    models = tmp_path / "models"
    _assert_one_error_line(_cli(package, verb, [files.get(a, a) for a in args], models))
    assert _written(models) == []


# ------------------------------------------------------------------------------------------------
# Training refuses garbage: each case exits 2 with one line and leaves the models folder empty.

def _ratings(tmp_path: Path, rows: list[str]) -> str:
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,rating\n" + "\n".join(rows) + "\n")
    return str(path)


def _grid(extreme: str) -> list[str]:
    """20 listeners × 15 items of ordinary 1–5 ratings, one of them replaced by ``extreme``."""
    return [f"u{u},i{i},{extreme if (u, i) == (1, 1) else 1 + (u * 7 + i * 3) % 5}" for u in range(20) for i in range(15)]


def test_music_train_refuses_a_one_row_csv(tmp_path):
    models = tmp_path / "models"
    line = _assert_one_error_line(_cli("music", "train", ["--dataset", "csv", "--path",
                                                          _ratings(tmp_path, ["u1,i1,4"])], models))
    assert "too small to train on" in line
    assert _written(models) == []


def test_music_train_refuses_a_rating_of_1e30(tmp_path):
    models = tmp_path / "models"
    line = _assert_one_error_line(_cli("music", "train", ["--dataset", "csv", "--path",
                                                          _ratings(tmp_path, _grid("1e30"))], models))
    assert "1e30" in line and "-100..100" in line
    assert _written(models) == []


def test_music_train_refuses_a_folder_given_as_the_csv(tmp_path):
    models = tmp_path / "models"
    folder = tmp_path / "ratings"
    folder.mkdir()
    line = _assert_one_error_line(_cli("music", "train", ["--dataset", "csv", "--path", str(folder)], models))
    assert "is a folder" in line
    assert _written(models) == []


def test_music_train_refuses_constant_and_non_finite_ratings(tmp_path):
    models = tmp_path / "models"
    constant = [f"u{u},i{i},4" for u in range(3) for i in range(3)]
    for rows, words in ((constant, "constant"), (_grid("nan"), "not finite")):
        line = _assert_one_error_line(_cli("music", "train", ["--dataset", "csv", "--path",
                                                              _ratings(tmp_path, rows)], models))
        assert words in line
    assert _written(models) == []


@pytest.mark.slow(reason="a python -m process")
def test_fashion_index_refuses_a_pickle_as_weights(tmp_path):
    models = tmp_path / "models"
    pickled = tmp_path / "weights.pkl"
    pickled.write_bytes(pickle.dumps({"conv_stem.weight": [[1.0]]}))
    line = _assert_one_error_line(_cli("fashion", "index", ["--catalog", "tuxpaint-clothes", "--weights",
                                                            str(pickled)], models))
    assert "not a state-dict file that can be loaded safely" in line
    assert _written(models) == []
