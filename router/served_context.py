"""Which retrieved context a routing gets: the tuned artifact's own, plus whatever the caller asks for.

A model tuned with context (``triage tune --context precedents|policy|both``) records it in its triage.json
(``"context": {"kind": "precedents", "precedents_k": 3, ...}``): serving it retrieves the same kind and number
of passages for every complaint, whether or not the caller asked. Asking a model for a context it was not
tuned with is served, with a warning: a model sees such text for the first time and routes worse with it
(the README's RAG table). Nothing here retrieves: the service does, through its grounder.
"""

from __future__ import annotations

from dataclasses import dataclass

NO_CONTEXT = {"kind": "none"}
CONTEXTS = ("none", "precedents", "policy", "both")  # what a tune may put in front of a complaint (--context)
PRECEDENT_CHARS = 160  # characters of a precedent's complaint shown in the prompt, for artifacts that record none


@dataclass(frozen=True)
class ContextPlan:
    policy: bool
    precedents: bool
    policy_k: int | None = None  # None: the settings' rag_top_k
    precedents_k: int | None = None  # None: the settings' precedents_k
    warning: str | None = None
    precedent_chars: int | None = None  # None: PRECEDENT_CHARS; 0: a precedent's departments only

    @property
    def wanted(self) -> bool:
        return self.policy or self.precedents


def uses_policy(kind: str) -> bool:
    """Whether a context kind puts policy passages in the prompt."""
    return kind in ("policy", "both")


def uses_precedents(kind: str) -> bool:
    """Whether a context kind puts labeled precedents in the prompt."""
    return kind in ("precedents", "both")


def recorded_context(metadata: dict | None) -> dict:
    """The context an artifact was tuned with ({"kind": "none"} for one tuned without)."""
    context = (metadata or {}).get("context") or NO_CONTEXT
    return context if isinstance(context, dict) and context.get("kind") else NO_CONTEXT


def precedent_form(context: dict) -> int | None:
    """How a recorded context shows each precedent: characters of its complaint (PRECEDENT_CHARS for artifacts tuned
    before the form was recorded), 0 for its departments alone; None for a context without precedents."""
    if not uses_precedents(str(context.get("kind"))):
        return None
    return context.get("precedent_chars", PRECEDENT_CHARS)


def plan_context(strategy: str, tuned, rag: bool, precedents: bool) -> ContextPlan:
    """What to retrieve for a routing with `strategy` (and `tuned`, the artifact it runs, if tuned)."""
    if strategy != "tuned" or tuned is None:
        return ContextPlan(bool(rag), bool(precedents))
    context = recorded_context(tuned.metadata)
    kind = context["kind"]
    form = precedent_form(context)
    own_policy, own_precedents = uses_policy(kind), form is not None
    extra = [name for name, asked, own in (("policy passages", rag, own_policy), ("precedents", precedents, own_precedents))
             if asked and not own]
    warning = None
    if extra:
        tuned_with = "no retrieved context" if kind == "none" else f"context {kind!r}"
        warning = (f"{tuned.version} was tuned with {tuned_with}; serving it with {' and '.join(extra)} shows it "
                   "text it never saw in training (tune one with `triage tune --context ...`)")
    return ContextPlan(own_policy or bool(rag), own_precedents or bool(precedents),
                       context.get("policy_k") if own_policy else None,
                       context.get("precedents_k") if own_precedents else None, warning, form)
