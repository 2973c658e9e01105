"""List every import inside a function that no comment explains; exit 1 when there is one.

Why: a file's header is where a reader learns what it depends on. An import belongs inside a function only
for a reason worth a comment: an optional or heavy dependency (torch, keras, pyspark, faiss, open_clip,
openvino; streamlit kept out of worker processes) or an import cycle. The reason is a comment on the
import's own line or on the line above it; a comment above a run of consecutive imports covers the run.
``try: import x`` / ``except ImportError`` explains itself (the dependency is optional). Comments that only
silence a tool (``# noqa: F401``, ``# type: ignore``, ``# pragma: no cover``) are not reasons.

    python scripts/inner_imports.py              # the repository
    python scripts/inner_imports.py core music

Virtual environments, tests and hidden folders are skipped, as by ``scripts/long_functions.py``. Output: one
line per import, ``<path>:<line>  <qualified function>  <module>``; ``key()`` of an import is
``path::function::module``, the form ``tests/inner_imports_allowed.txt`` lists.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the scripts package sits under the repository root

from scripts.long_functions import python_files  # noqa: E402 - after the path line above

#: Comment text that silences a tool and says nothing about why.
TOOL_MARKS = re.compile(r"noqa(:\s*[A-Z]+\d+(,\s*[A-Z]+\d+)*)?|type:\s*ignore(\[[^\]]*\])?|pragma:\s*no\s*cover",
                        re.IGNORECASE)


class InnerImport(NamedTuple):
    """An import statement inside a function with no comment saying why."""

    path: str
    line: int
    function: str
    module: str

    def key(self) -> str:
        """``path::function::module``: stable while lines move, as the allow-list needs."""
        return f"{self.path}::{self.function}::{self.module}"


def _module(node: ast.Import | ast.ImportFrom) -> str:
    if isinstance(node, ast.Import):
        return ",".join(alias.name for alias in node.names)
    return "." * node.level + (node.module or "")


def _reasons(source: str) -> dict[int, bool]:
    """Line number → whether the line holds a comment with words besides tool marks."""
    out: dict[int, bool] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = TOOL_MARKS.sub("", tok.string.lstrip("#"))
            out[tok.start[0]] = bool(re.search(r"[A-Za-z]{2,}", text))
    return out


def _comment_only(lines: list[str], number: int) -> bool:
    return 1 <= number <= len(lines) and lines[number - 1].lstrip().startswith("#")


def _optional(handlers: list[ast.ExceptHandler]) -> bool:
    """True when a ``try`` catches ImportError (or ModuleNotFoundError): an optional dependency."""
    names = set()
    for handler in handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names.update(k.id for k in kinds if isinstance(k, ast.Name))
    return bool(names & {"ImportError", "ModuleNotFoundError"})


class _Finder:
    """Walks one file's tree, tracking the enclosing function and each import run's explanation."""

    def __init__(self, path: str, source: str) -> None:
        self.path, self.lines, self.reasons = path, source.splitlines(), _reasons(source)
        self.found: list[InnerImport] = []

    def explained(self, node: ast.stmt, previous: ast.stmt | None, run_explained: bool) -> bool:
        if self.reasons.get(node.lineno):
            return True
        above = node.lineno - 1
        if self.reasons.get(above) and _comment_only(self.lines, above):
            return True
        return isinstance(previous, (ast.Import, ast.ImportFrom)) and previous.end_lineno == above and run_explained

    def body(self, stmts: list[ast.stmt], scope: str, in_function: bool, optional: bool = False) -> None:
        previous, run_explained = None, False
        for node in stmts:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                run_explained = optional or self.explained(node, previous, run_explained)
                if in_function and not run_explained:
                    self.found.append(InnerImport(self.path, node.lineno, scope, _module(node)))
            self.visit(node, scope, in_function)
            previous = node

    def visit(self, node: ast.AST, scope: str, in_function: bool) -> None:
        """Recurse into every statement list; functions and classes extend the qualified name."""
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner = f"{scope}.{node.name}" if scope else node.name
            self.body(node.body, inner, in_function or not isinstance(node, ast.ClassDef))
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            self.body(node.body, scope, in_function, optional=_optional(node.handlers))
            for stmts in [h.body for h in node.handlers] + [node.orelse, node.finalbody]:
                self.body(stmts, scope, in_function)
        else:
            for field in ("body", "orelse"):
                stmts = getattr(node, field, None)
                if isinstance(stmts, list) and stmts and isinstance(stmts[0], ast.stmt):
                    self.body(stmts, scope, in_function)
            for case in getattr(node, "cases", None) or []:
                self.body(case.body, scope, in_function)


def inner_imports(paths: list[Path], root: Path = ROOT) -> list[InnerImport]:
    """The unexplained imports inside functions under ``paths``, in file and line order."""
    found: list[InnerImport] = []
    for path in python_files(paths):
        source = path.read_text(encoding="utf-8")
        rel = path.resolve().relative_to(root.resolve()).as_posix() if path.resolve().is_relative_to(root.resolve()) \
            else str(path)
        finder = _Finder(rel, source)
        finder.body(ast.parse(source, filename=str(path)).body, "", False)
        found.extend(sorted(finder.found, key=lambda f: f.line))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (default: the repository)")
    args = parser.parse_args(argv)
    paths = args.paths or [ROOT]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"error: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        found = inner_imports(paths)
    except SyntaxError as exc:
        print(f"error: {exc.filename}:{exc.lineno} does not parse: {exc.msg}", file=sys.stderr)
        return 2
    for f in found:
        print(f"{f.path}:{f.line}  {f.function}  {f.module}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
