"""What a routing returns, shared by the CLI, the API and the console."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

Strategy = Literal["zero-shot", "multi-shot", "tuned"]  # how the one frozen model is prompted
STRATEGIES: tuple[str, ...] = get_args(Strategy)


@dataclass
class Passage:
    """A retrieved policy passage or precedent cited by a routing."""

    doc_id: str
    title: str
    snippet: str
    score: float
    kind: str = "policy"  # "policy" or "precedent"
    source: str | None = None  # a precedent's origin: "ticket-12" (a supervisor's correction) or "<file>:<line>"
    corrected: bool = False  # a precedent that is a supervisor's correction (the prompt marks it as one)

    @property
    def origin(self) -> str:
        """What it is and where it came from: 'correction · ticket-7', 'precedent · complaints.jsonl:12',
        'policy · <document id>'."""
        return f"{'correction' if self.corrected else self.kind} · {self.source or self.doc_id}"


@dataclass
class Routing:
    departments: list[str]
    confidence: dict[str, float]
    strategy: str
    input_tokens: int
    generated_tokens: int
    latency_ms: float
    virtual_tokens: int = 0
    model_version: str | None = None
    needs_review: bool = False
    rag: bool = False
    passages: list[Passage] = field(default_factory=list)
    context_unavailable: str | None = None  # retrieval was wanted (asked for, or the model was tuned with it) but failed

    @property
    def label(self) -> str:
        return ", ".join(self.departments)

    def to_json(self) -> dict:
        data = asdict(self)
        data["latency_ms"] = round(self.latency_ms, 2)
        return data
