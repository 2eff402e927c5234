"""The small interface the routing core uses for retrieval; rag.grounding implements it.

The core defines it, so it never imports rag: no LangChain or Chroma types cross it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from router.results import Passage


@dataclass
class Grounding:
    """What retrieval adds to one complaint's prompt, and what it cites."""

    context: str  # text placed before the complaint in the prompt ('' = nothing)
    passages: list[Passage] = field(default_factory=list)


class Grounder(Protocol):
    def ground(self, text: str, *, policy: bool = True, precedents: bool = False, exclude_self: bool = False) -> Grounding:
        """Retrieve policy passages and/or labeled precedents for a complaint.

        exclude_self: never return a precedent whose text is this complaint (evaluation).
        """

    def ground_many(self, texts: list[str], *, policy: bool = True, precedents: bool = False,
                    exclude_self: bool = False, policy_k: int | None = None,
                    precedents_k: int | None = None, precedent_chars: int | None = None) -> list[Grounding]:
        """ground() for a batch of complaints (one embedding call per collection); k: None = the settings'.

        precedent_chars: how much of each precedent's complaint the prompt shows (None: the default; 0: its
        departments only), as the served artifact was tuned with.
        """


class RetrievalUnavailable(RuntimeError):
    """The store is missing or unreachable; routing goes on without RAG."""
