"""The policy passages and precedents a RAG routing cited."""

from __future__ import annotations

from rich.markup import escape
from textual.containers import VerticalScroll
from textual.widgets import Static

from router.results import Passage


class EvidencePanel(VerticalScroll):
    """Title, score and snippet of every cited passage; a hint when RAG is off."""

    def show(self, passages: list[Passage] | None, rag: bool, available: bool, grounded: bool = True) -> None:
        """grounded: False when RAG was asked for but the retrieval store could not answer."""
        self.remove_children()
        if not available:
            self.mount(Static("RAG is unavailable: no retrieval store is configured (triage rag ingest).", classes="hint"))
            return
        if not rag:
            self.mount(Static("RAG is off. Ctrl+R turns it on for the next complaint.", classes="hint"))
            return
        if not grounded:
            self.mount(Static("RAG was on, but the retrieval store could not answer (is the policy index built? "
                              "triage rag ingest); this routing is not grounded.", classes="hint"))
            return
        if not passages:
            self.mount(Static("No passage was retrieved for this complaint.", classes="hint"))
            return
        for passage in passages:
            head = f"[b]{escape(passage.title)}[/b]  [dim]{escape(passage.origin)} · score {passage.score:.2f}[/dim]"
            self.mount(Static(f"{head}\n{escape(passage.snippet)}", classes="passage"))
