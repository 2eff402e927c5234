"""The service layer: the one place the CLI, the API and the console route through."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Sequence

from router.artifact import TunedModel, load_tuned_model
from router.dataset import Example, load_examples
from router.draft import load_or_fit_draft
from router.engine import Engine, by_prompt
from router.memory import release_freed_memory
from router.modelio import BaseModel, load_base_model
from router.results import STRATEGIES, Routing
from router.retrieval import RetrievalUnavailable
from router.served_context import ContextPlan, plan_context
from router.settings import DEFAULT_TUNED, SHIPPED_ARTIFACTS, Settings

log = logging.getLogger(__name__)


class InputError(ValueError):
    """A complaint the product will not route (empty, too long, not text)."""

    def __init__(self, message: str, field: str = "text"):
        super().__init__(message)
        self.field = field


def validate_text(text, max_chars: int, field: str = "text") -> str:
    if not isinstance(text, str):
        raise InputError(f"{field} must be a string", field)
    stripped = text.strip()
    if not stripped:
        raise InputError(f"{field} is empty", field)
    if len(stripped) > max_chars:
        raise InputError(f"{field} is {len(stripped)} characters; the limit is {max_chars}", field)
    return stripped


class RouterService:
    """Loads the base model once and routes with any strategy, optionally grounded by RAG."""

    def __init__(self, settings: Settings, *, base: BaseModel | None = None, grounder=None, tuned_path: Path | None = None):
        self.settings = settings
        self._base = base
        self._engine: Engine | None = None
        self._tuned_model: TunedModel | None = None
        self._tuned_path = tuned_path
        self._named = None  # tuned models requests name (router.tuned_models), loaded on first use
        self.grounder = grounder
        self._lock = threading.RLock()

    # -- loading ----------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                base = self._base or load_base_model(self.settings)
                self._base = base
                pool = self._shots_pool()
                draft = load_or_fit_draft(pool, self.settings.cache_dir) if self.settings.speculative_draft else None
                self._engine = Engine(base, pool, self.settings.confidence_threshold, draft,
                                      batch_tokens=self.settings.batch_tokens)
            return self._engine

    def _shots_pool(self) -> list[Example]:
        path = self.settings.resolved_shots_file
        if not path.is_file():
            log.warning("no shots file at %s; multi-shot is unavailable", path)
            return []
        return load_examples(path, self.settings.max_input_chars)

    def tuned_path(self) -> Path:
        return Path(self._tuned_path or self.settings.tuned_model or DEFAULT_TUNED)

    @property
    def tuned_model(self) -> TunedModel:
        with self._lock:
            if self._tuned_model is None:
                self._tuned_model = load_tuned_model(self.tuned_path(), self.engine.base)
            return self._tuned_model

    def load_tuned(self, path: Path) -> TunedModel:
        """Load (and so check) a tuned artifact for this base model without serving it."""
        return load_tuned_model(path, self.engine.base)

    def use_tuned(self, path: Path, loaded: TunedModel | None = None) -> TunedModel:
        """Serve another artifact (`loaded`: it, loaded already); in-flight calls finish on the old one, which is
        then released with everything the engine prepared for it."""
        new = loaded if loaded is not None else self.load_tuned(path)
        with self._lock:
            self._tuned_path, self._tuned_model = Path(path), new
        release_freed_memory()  # the previous model's weights (a merged copy for LoRA) go back to the OS
        return new

    def serve_later(self, path: Path) -> None:
        """Serve another artifact, loaded on the next tuned routing (a process that has not loaded the model)."""
        with self._lock:
            self._tuned_path, self._tuned_model = Path(path), None

    def drop_tuned(self) -> None:
        """Forget the loaded tuned model (the next tuned routing loads the configured one again)."""
        with self._lock:
            self._tuned_model = None

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    # -- routing ----------------------------------------------------------------
    def route(self, text: str, strategy: str | None = None, *, shots: int | None = None, rag: bool = False,
              precedents: bool = False, model: str | Path | None = None) -> Routing:
        return self.route_many([text], strategy, shots=shots, rag=rag, precedents=precedents, model=model)[0]

    def tuned_for(self, model: str | Path | None) -> TunedModel:
        """The tuned model a request names (an artifact directory or a version name); None: the active one."""
        if model is None:
            return self.tuned_model
        from router.tuned_models import UnknownModel

        try:
            return self._tuned_models().get(model)
        except UnknownModel as exc:
            raise InputError(str(exc), "model") from None

    def _tuned_models(self):
        from router.tuned_models import TunedModels

        with self._lock:
            if self._named is None:
                self._named = TunedModels(lambda: self.engine.base, [self.settings.models_dir, SHIPPED_ARTIFACTS])
            return self._named

    def route_mixed(self, texts: Sequence[str], models: Sequence[str | Path | None], *,
                    batch_size: int | None = None) -> list[Routing]:
        """Each text with the tuned model it names; soft prompts share batches on the one base model. When one of
        them was tuned with retrieved context, each model's texts are routed (and grounded) on their own."""
        clean = [validate_text(t, self.settings.max_input_chars) for t in texts]
        tuned = [self.tuned_for(m) for m in models]
        size = batch_size or self.settings.batch_size
        if not any(plan_context("tuned", t, False, False).wanted for t in tuned):
            return self.engine.route_mixed(clean, tuned, batch_size=size)
        results: list = [None] * len(clean)
        for model, indices in by_prompt(tuned):
            routed = self._route([clean[i] for i in indices], "tuned", model, k=0, rag=False, precedents=False,
                                 exclude_self=False, batch_size=size)
            for i, routing in zip(indices, routed):
                results[i] = routing
        return results

    def route_many(self, texts: Sequence[str], strategy: str | None = None, *, shots: int | None = None,
                   rag: bool = False, precedents: bool = False, exclude_self: bool = False,
                   batch_size: int | None = None, model: str | Path | None = None) -> list[Routing]:
        strategy = strategy or self.settings.default_strategy
        if strategy not in STRATEGIES:
            raise InputError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}", "strategy")
        if model is not None and strategy != "tuned":
            raise InputError(f"a model applies to the tuned strategy only, not {strategy}", "model")
        clean = [validate_text(t, self.settings.max_input_chars) for t in texts]
        soft = self.tuned_for(model) if strategy == "tuned" else None
        k = self.settings.shots if shots is None else shots
        return self._route(clean, strategy, soft, k=k, rag=rag, precedents=precedents, exclude_self=exclude_self,
                           batch_size=batch_size or self.settings.batch_size)

    def _route(self, clean: list[str], strategy: str, soft: TunedModel | None, *, k: int, rag: bool, precedents: bool,
               exclude_self: bool, batch_size: int) -> list[Routing]:
        plan = plan_context(strategy, soft, rag, precedents)  # a context-tuned artifact brings its own context
        if plan.warning:
            log.warning(plan.warning)
        grounded, unavailable = self._ground(clean, plan, exclude_self)
        contexts = [g.context for g in grounded] if grounded else None
        routed = self.engine.route_many(clean, strategy, shots=k, tuned=soft, contexts=contexts, batch_size=batch_size)
        for routing, grounding in zip(routed, grounded or []):
            routing.passages = grounding.passages
        for routing in routed if unavailable else []:
            routing.context_unavailable = unavailable
        return routed

    def _ground(self, texts, plan: ContextPlan, exclude_self: bool):
        """(groundings or None, why retrieval was wanted but unavailable or None); one retrieval for the batch."""
        if not plan.wanted:
            return None, None
        if self.grounder is None:
            log.warning("RAG requested but no retrieval store is configured; routing without it")
            return None, "no retrieval store is configured"
        try:
            return self.grounder.ground_many(list(texts), policy=plan.policy, precedents=plan.precedents,
                                             exclude_self=exclude_self, policy_k=plan.policy_k,
                                             precedents_k=plan.precedents_k,
                                             precedent_chars=plan.precedent_chars), None
        except RetrievalUnavailable as exc:
            log.warning("RAG unavailable (%s); routing without it", exc)
            return None, str(exc)
