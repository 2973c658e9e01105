"""Every verb of every command line answers a bad argument the same way: one ``error: ...`` line, exit 2.

Each case runs the real ``python -m <package>`` in a subprocess (against the session's empty models folder), so
argparse's own complaints, the commands' checks and the libraries' exceptions are all seen as a user sees them.
Cases are chosen to fail before any model loads, which keeps the walk fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
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
