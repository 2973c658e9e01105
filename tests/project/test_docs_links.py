"""The README is a front page and docs/ the manual: every relative link lands, each generated table lives once.

Why: the README links to a docs page for every detail it leaves out, so a renamed page or heading would leave a
newcomer at a dead end; and a generated table kept in two files is two places to go stale.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
BLOCK = re.compile(r"<!-- numbers:([A-Za-z0-9_.\-]+) -->")


def prose(path: Path) -> str:
    """The page without its fenced code blocks (a `# comment` in a shell block is not a heading)."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", prose(path), re.M)}


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path)) if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading with that anchor)")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_link_check_sees_a_broken_link(tmp_path):
    """The check itself: a link to a missing page or heading is found, an external one is not checked."""
    (tmp_path / "other.md").write_text("# A heading: with `code`\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-heading-with-code) [gone](missing.md) [web](https://example.org/x)\n"
                    "```\n[in code](nowhere.md)\n```\n")
    assert relative_links(page) == ["other.md#a-heading-with-code", "missing.md"]
    assert "a-heading-with-code" in anchors(tmp_path / "other.md")


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail to docs/"
    for command in ("make run", "make test"):
        assert any(line.startswith(command) for line in lines), command
    linked = {Path(t.partition("#")[0]).name for t in relative_links(ROOT / "README.md")}
    missing = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name not in linked)
    assert not missing, f"README.md does not link to {missing}"


def test_each_generated_block_lives_in_one_file():
    seen: dict[str, list[str]] = {}
    for page in PAGES:
        for name in BLOCK.findall(page.read_text(encoding="utf-8")):
            seen.setdefault(name, []).append(page.relative_to(ROOT).as_posix())
    twice = {name: files for name, files in seen.items() if len(files) > 1}
    assert not twice, f"numbers blocks in more than one place: {twice}"
    assert seen, "no numbers blocks found at all"
