""""About this model": every tab shows its model card the same way (``core.contract.ModelCard``).

Why one component: a person comparing tabs should find the model, its data, its version and its measured
quality in the same place and the same words, each number with its 95 % interval and the file it came from.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

import streamlit as st

from core.contract import ModelCard
from ui.common import md_code, md_text

log = logging.getLogger(__name__)

TITLE = "About this model"


def card_markdown(card: ModelCard) -> str:
    """The card as Markdown: what it is, what it learned from, which version, how good (with intervals), limits."""
    built = f", built {card.built}" if card.built else " (not built on this machine)"
    lines = [f"**Model:** {md_text(card.model)}", f"**Data:** {md_text(card.data)}",
             f"**Version:** {md_text(card.name)}{md_text(built)}"]
    if card.metrics:
        lines.append("**Measured quality** (95 % bootstrap intervals"
                     + (f"; {md_text(card.protocol)}" if card.protocol else "") + "):")
        lines += [f"- {md_text(m.sentence())}" for m in card.metrics]
        lines.append(f"Read from {md_code(card.results)}; reproduce with {md_code(card.command)}.")
    else:
        lines.append("**Measured quality:** not measured yet"
                     + (f" (run {md_code(card.command)})." if card.command else "."))
    if card.limits:
        lines.append("**Known limits:**")
        lines += [f"- {md_text(limit)}" for limit in card.limits]
    return "  \n".join(lines[:3]) + "\n\n" + "\n\n".join(_blocks(lines[3:]))


def _blocks(lines: list[str]) -> list[str]:
    """Headings with their bullet lists kept together (a blank line between a heading and its list breaks it)."""
    out: list[str] = []
    for line in lines:
        if line.startswith("- ") and out:
            out[-1] += "\n" + line
        else:
            out.append(line)
    return out


def show(card_of: Callable[[str], ModelCard], name: str, *, key: str, expanded: bool = False) -> Optional[ModelCard]:
    """The "About this model" expander of one tab: ``card_of`` is the tab service's ``card``."""
    try:
        card = card_of(name)
    except Exception as exc:  # noqa: BLE001 - the card is information; the tab keeps working without it
        log.warning("no model card for %s: %s", name, exc)
        return None
    with st.expander(TITLE, expanded=expanded, key=key):
        st.markdown(card_markdown(card))
    return card
