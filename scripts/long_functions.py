"""List every function longer than a limit (80 lines by default), longest first; exit 1 when any is.

Why: a function a reader cannot follow top to bottom on one screen hides its steps. The count runs from the
``def`` line (decorators excluded) to the function's last line, as ``ast`` reports it, so docstrings and
comments inside count too. Nested functions are listed on their own and also count towards their parent.

    python scripts/long_functions.py              # the repository, limit 80
    python scripts/long_functions.py --limit 60 music bench

Virtual environments, tests and hidden folders are skipped (see ``SKIP``). Output: one line per function,
``<lines>  <path>:<line>  <qualified name>``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Iterator, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 80
SKIP = {".venv", "venv", "node_modules", "tests", "models", "data", "test-artifacts", "__pycache__"}


class LongFunction(NamedTuple):
    """A function whose body is longer than the limit."""

    path: str
    line: int
    name: str
    length: int


def python_files(paths: list[Path]) -> Iterator[Path]:
    """Every ``.py`` file under ``paths``, outside the skipped folders and hidden ones."""
    for base in paths:
        candidates = [base] if base.is_file() else sorted(base.rglob("*.py"))
        for path in candidates:
            rel = path.relative_to(base) if base.is_dir() else Path(path.name)
            if not any(part in SKIP or part.startswith(".") for part in rel.parts[:-1]):
                yield path


def functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.AST]]:
    """Every function and method in ``tree`` with its qualified name (``Class.method``, ``outer.inner``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{node.name}"
            yield name, node
            yield from functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")
        else:
            yield from functions(node, prefix)


def long_functions(paths: list[Path], limit: int = LIMIT, root: Path = ROOT) -> list[LongFunction]:
    """The functions longer than ``limit`` lines under ``paths``, longest first."""
    found = []
    for path in python_files(paths):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = path.resolve().relative_to(root.resolve()).as_posix() if path.resolve().is_relative_to(root.resolve()) \
            else str(path)
        for name, node in functions(tree):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found.append(LongFunction(rel, node.lineno, name, length))
    return sorted(found, key=lambda f: (-f.length, f.path, f.line))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (default: the repository)")
    parser.add_argument("--limit", type=int, default=LIMIT, help="longest allowed function, in lines (default 80)")
    args = parser.parse_args(argv)
    if args.limit < 1:
        print("error: --limit must be a positive number of lines", file=sys.stderr)
        return 2
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        print(f"error: no such file or folder: {missing[0]}", file=sys.stderr)
        return 2
    found = long_functions(args.paths or [ROOT], args.limit)
    for f in found:
        print(f"{f.length:4d}  {f.path}:{f.line}  {f.name}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
