"""Text from people and files (catalog titles, CSV fields, tags) reaches the page as text, never as Markdown or HTML.

Streamlit renders ``st.markdown`` / ``st.caption`` in the browser, so a test sees the Markdown source the app
sent. Each case renders that source with a CommonMark parser (markdown-it-py, which Streamlit's own ``rich``
dependency brings) with raw HTML allowed, the most permissive reading: no link, image or tag may come out, and the
visible text must be the hostile string as typed.
"""

from __future__ import annotations

import html
import re

import pytest

from ui.common import md_code, md_text

markdown_it = pytest.importorskip("markdown_it")

HOSTILE = [
    "![x](http://a/b.png)[Sign in](http://a)",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script> **bold** _it_ `code` ~~gone~~ :red[red] :material/home: $x^2$",
    "# heading\n- list item\n> quote",
    "www.evil.example <http://auto.example> [ref]: http://a",
    "- starts a list",
    "3. starts a numbered list",
    "+ another bullet & an &amp; entity",
]


def _render(source: str) -> str:
    md = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("strikethrough").enable("table")
    return md.render(source)


def _visible(rendered: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()


@pytest.mark.parametrize("text", HOSTILE)
def test_md_text_and_md_code_render_as_the_literal_text(text):
    for source, allowed in ((md_text(text), ()), (md_code(text), ("code",))):
        rendered = _render(source)
        tags = set(re.findall(r"<([a-z0-9]+)\b", rendered)) - {"p", *allowed}
        assert not tags, rendered
        assert _visible(rendered) == " ".join(text.split())  # line breaks fold to spaces, nothing else changes


def _grid_with_hostile_titles():
    import math
    from types import SimpleNamespace

    from ui.fashion import _results_grid

    title = "![x](http://a/b.png)[Sign in](http://a)"
    label = "<img src=x onerror=alert(1)>"
    catalog = SimpleNamespace(row=lambda item_id: None)  # no picture: only the text is under test
    hits = [SimpleNamespace(id="i1", score=0.5, meta={"label": label, "title": title}),
            SimpleNamespace(id="i2", score=math.nan, meta={"label": title, "title": label})]
    _results_grid(catalog, hits, None)


def test_hostile_catalog_title_and_label_show_as_text_in_the_fashion_grid():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_grid_with_hostile_titles, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    sources = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert sources
    shown = []
    for source in sources:
        rendered = _render(source)
        assert not re.search(r"<(a|img|script)\b", rendered), (source, rendered)
        shown.append(_visible(rendered))
    for hostile in ("![x](http://a/b.png)[Sign in](http://a)", "<img src=x onerror=alert(1)>"):
        assert sum(hostile in s for s in shown) == 2, shown  # once as a label, once as a title
