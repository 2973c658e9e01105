"""The result grid Fashion and Product search share, for the shipped indexes and for people's own catalogs.

Why one grid: the two tabs show the same thing (a picture, what it is, why it came up, then buttons), and a person
should read a result the same way wherever it appears. Each tab builds its ``Cell``s and passes what is its own
(a "More like this" button, its feedback buttons) as ``under``; the grid draws the rest. Text is escaped here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import streamlit as st

from ui.common import md_text

COLUMNS = 5


@dataclass(frozen=True)
class Cell:
    """One result as the grid draws it, top to bottom."""

    id: str
    image: Any = None            # a PIL image, bytes or a path; None draws "(image unavailable)"
    image_caption: str = ""      # under the picture (own catalogs name the file there)
    title: str = ""              # bold
    subtitle: str = ""           # on the title's second line (the score, for Fashion)
    lines: tuple[str, ...] = ()  # small print: category, scores, the reason it came up
    why: str = ""                # hover text of the small print (the service's explanation)


def show(cells: Sequence[Cell], *, under: Optional[Callable[[Cell], None]] = None, columns: int = COLUMNS,
         empty: str = "Nothing matches (try removing the category filter).") -> None:
    """Rows of ``columns`` cells; ``under(cell)`` draws the tab's own part of each (buttons)."""
    if not cells:
        st.info(empty)
        return
    for start in range(0, len(cells), columns):
        for col, cell in zip(st.columns(columns), cells[start : start + columns]):
            with col:
                _cell(cell)
                if under is not None:
                    under(cell)


def _cell(cell: Cell) -> None:
    if cell.image is not None:
        st.image(cell.image, width="stretch", caption=md_text(cell.image_caption) if cell.image_caption else None)
    else:
        st.caption("(image unavailable)")
    if cell.title:
        st.markdown(f"**{md_text(cell.title)}**" + (f"  \n{md_text(cell.subtitle)}" if cell.subtitle else ""))
    if cell.lines:
        st.caption(" · ".join(md_text(line) for line in cell.lines if line), help=md_text(cell.why) if cell.why else None)
