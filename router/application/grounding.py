"""Retrieval for the application: the grounder routing uses, and corrections shared as precedents at once."""

from __future__ import annotations

import logging

from router.settings import Settings

log = logging.getLogger(__name__)


def build_grounder(settings: Settings):
    """The RAG grounder over `settings`' Chroma store (a router.retrieval.Grounder), or None without rag."""
    try:
        from rag.grounding import build_grounder as build
    except ModuleNotFoundError:
        return None
    return build(settings)


def share_precedent(settings: Settings, text: str, departments: list[str], source_id: str) -> bool:
    """Make a correction retrievable by RAG at once, if the precedent store exists. Never raises."""
    try:
        from rag.precedents import add_precedent
    except ImportError:
        return False
    try:
        add_precedent(settings, text, departments, source_id)
        return True
    except Exception as exc:  # noqa: BLE001 - retrieval is optional: the correction itself is already stored
        log.warning("correction stored, but not added to the precedent store: %s", exc)
        return False
