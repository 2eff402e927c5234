"""The request scheduler: concurrent routing calls share one batched forward pass (like a database's group
commit), for every front end (API requests, console workers, the CLI).

The model runs one batch at a time anyway. While it runs, new requests queue up;
whichever waiting thread gets the model next routes every queued request with the
same options in one `route_many` call. A lone request runs at once (no added wait).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

from router.results import Routing
from router.service import RouterService, validate_text

log = logging.getLogger(__name__)


@dataclass
class _Job:
    texts: list[str]
    key: tuple
    done: threading.Event = field(default_factory=threading.Event)
    result: list[Routing] | None = None
    error: BaseException | None = None


class RequestScheduler:
    """`route` / `route_many` of the routing service, with concurrent calls batched together."""

    def __init__(self, service: RouterService, max_texts: int | None = None):
        self.service = service
        self.max_texts = max_texts or max(service.settings.batch_size * 2, 1)
        self._pending: list[_Job] = []
        self._queue_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self.observe: Callable[[Sequence[Routing]], None] | None = None  # sees every batch routed (metrics)

    def route(self, text: str, strategy: str | None = None, **options) -> Routing:
        return self.route_many([text], strategy, **options)[0]

    def route_many(self, texts: Sequence[str], strategy: str | None = None, **options) -> list[Routing]:
        if not self.service.settings.group_routing:
            return self._observed(self.service.route_many(texts, strategy, **options))
        max_chars = self.service.settings.max_input_chars
        clean = [validate_text(t, max_chars) for t in texts]  # a bad text fails its own request only
        job = _Job(clean, (strategy, tuple(sorted(options.items()))))
        with self._queue_lock:
            self._pending.append(job)
        while not job.done.is_set():
            with self._model_lock:
                if not job.done.is_set():
                    self._run(self._take(job))
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _take(self, job: _Job) -> list[_Job]:
        """`job` plus queued jobs with the same options, up to max_texts texts, in arrival order."""
        with self._queue_lock:
            taken, size = [job], len(job.texts)
            for other in self._pending:
                if other is not job and other.key == job.key and size + len(other.texts) <= self.max_texts:
                    taken.append(other)
                    size += len(other.texts)
            self._pending = [p for p in self._pending if p not in taken]
        return taken

    def _run(self, jobs: list[_Job]) -> None:
        strategy, options = jobs[0].key
        kwargs = dict(options)
        try:
            routed = self._observed(self.service.route_many([t for j in jobs for t in j.texts], strategy, **kwargs))
        except Exception as exc:  # noqa: BLE001 - retried one by one so each request gets its own answer
            if len(jobs) == 1:
                self._finish(jobs[0], None, exc)
                return
            for job in jobs:
                try:
                    self._finish(job, self._observed(self.service.route_many(job.texts, strategy, **kwargs)), None)
                except Exception as one:  # noqa: BLE001 - handed to the waiting request
                    self._finish(job, None, one)
            return
        start = 0
        for job in jobs:
            self._finish(job, routed[start : start + len(job.texts)], None)
            start += len(job.texts)

    def _observed(self, routed: list[Routing]) -> list[Routing]:
        if self.observe is not None:
            try:
                self.observe(routed)
            except Exception:  # noqa: BLE001 - metrics never fail a routing
                log.exception("could not record routing metrics")
        return routed

    @staticmethod
    def _finish(job: _Job, result: list[Routing] | None, error: BaseException | None) -> None:
        job.result, job.error = result, error
        job.done.set()

