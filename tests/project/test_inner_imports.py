"""Imports at the top of files: ``scripts/inner_imports.py`` over the repository, with an allow-list that can only
shrink.

Why: a file's header should show what it depends on. An import inside a function needs a comment saying why (an
optional heavy dependency, a cycle). ``tests/inner_imports_allowed.txt`` lists the unexplained ones that existed
when the bar was set, in files being rewritten at the time; a new one fails, and an entry that is gone (hoisted, or
given its reason) must be deleted from the list.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from scripts.inner_imports import ROOT, inner_imports

ALLOWED_FILE = ROOT / "tests" / "inner_imports_allowed.txt"


def _allowed() -> Counter:
    lines = ALLOWED_FILE.read_text(encoding="utf-8").splitlines()
    return Counter(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def test_no_unexplained_inner_import_outside_the_allow_list() -> None:
    found = Counter(f.key() for f in inner_imports([ROOT]))
    allowed = _allowed()
    new = sorted((found - allowed).elements())
    assert not new, f"imports inside functions with no comment saying why (hoist them, or say why): {new}"
    gone = sorted((allowed - found).elements())
    assert not gone, f"these are hoisted or explained now: delete them from {ALLOWED_FILE.name}: {gone}"


def test_allow_list_is_sorted_so_merges_stay_simple() -> None:
    entries = [line for line in ALLOWED_FILE.read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.startswith("#")]
    assert entries == sorted(entries)


SAMPLE = '''\
import os


def bare():
    import json
    return json


def noqa_only():
    import csv  # noqa: F401
    return csv


def same_line():
    import torch  # optional: torch is heavy
    return torch


def line_above():
    # a cycle: b imports this module
    from b import thing
    import c
    return thing, c


def optional():
    try:
        import faiss
    except ImportError:
        faiss = None
    return faiss


class Model:
    def fit(self):
        def step():
            import keras
            return keras
        return step


def after_code():
    x = 1
    # heavy
    import numpy
    import pandas

    import scipy
    return x, numpy, pandas, scipy
'''


def test_script_lists_only_unexplained_imports_inside_functions(tmp_path: Path) -> None:
    (tmp_path / "sample.py").write_text(SAMPLE)
    found = inner_imports([tmp_path], root=tmp_path)
    assert [(f.function, f.module) for f in found] == [
        ("bare", "json"), ("noqa_only", "csv"), ("Model.fit.step", "keras"), ("after_code", "scipy")]
    assert found[0].key() == "sample.py::bare::json" and found[0].line == 5


def test_script_exit_codes(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "inner_imports.py"
    (tmp_path / "bad.py").write_text("def f():\n    import json\n    return json\n")
    (tmp_path / "good.py").write_text("import json\n\n\ndef f():\n    return json\n")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout.split()[-1] == "json"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "good.py")], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout) == (0, "")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "missing")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
