"""Operations: Prometheus metrics (`GET /metrics`) and a request id on every request, logged as JSON.

Each app has its own registry. Counters and histograms are this process's (requests, routing latency,
batch sizes, routings and how many need review); the ticket, review and tuning-job gauges are read from
the shared database at scrape time (cached for `DB_TTL` seconds), so every replica reports the same
totals. Every response carries `X-Request-ID` (the caller's, when it sent a usable one, else a new one)
and every request is logged as one JSON line on the `triage.requests` logger with that id.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from router.results import STRATEGIES, Routing

REQUEST_ID = contextvars.ContextVar("request_id", default=None)
HEADER = b"x-request-id"
_USABLE_ID = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")
DB_TTL = 5.0
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request id and any `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        data = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage(),
                "request_id": getattr(record, "request_id", None) or REQUEST_ID.get()}
        data.update(getattr(record, "fields", {}))
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


JsonFormatter.converter = time.gmtime
request_log = logging.getLogger("triage.requests")


def _json_request_log() -> None:
    if not any(isinstance(h.formatter, JsonFormatter) for h in request_log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        request_log.addHandler(handler)
        request_log.setLevel(logging.INFO)
        request_log.propagate = False


class Metrics:
    def __init__(self, read_counts: Callable[[], dict], served_version):
        """read_counts: the stored data's counts (the core's stored_counts); served_version: the version served."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("triage_http_requests", "HTTP requests by method, route template and status",
                                ["method", "route", "status"], registry=r)
        self.request_seconds = Histogram("triage_http_request_duration_seconds", "HTTP request duration by route",
                                         ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.routing_seconds = Histogram("triage_routing_latency_seconds",
                                         "Model latency of one routing by strategy (from its batch's start)",
                                         ["strategy"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("triage_routing_batch_size", "Complaints per batched model call",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.routings = Counter("triage_routings", "Routings by strategy", ["strategy"], registry=r)
        self.needs_review = Counter("triage_routings_needs_review", "Routings marked needs_review, by strategy",
                                    ["strategy"], registry=r)
        for strategy in STRATEGIES:
            self.routings.labels(strategy), self.needs_review.labels(strategy)
        self.last_version: str | None = None
        r.register(_DatabaseCollector(read_counts, lambda: served_version() or self.last_version))

    def observe(self, routings: Sequence[Routing]) -> None:
        """Called with every batch the API routes."""
        if not routings:
            return
        self.batch_size.observe(len(routings))
        for routing in routings:
            self.routing_seconds.labels(routing.strategy).observe(routing.latency_ms / 1000)
            self.routings.labels(routing.strategy).inc()
            if routing.needs_review:
                self.needs_review.labels(routing.strategy).inc()
            if routing.strategy == "tuned" and routing.model_version:
                self.last_version = routing.model_version

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _DatabaseCollector:
    """Gauges read from the database: shared by every replica, cached for DB_TTL seconds."""

    def __init__(self, read_counts: Callable[[], dict], served_version):
        self.read_counts, self.served_version = read_counts, served_version
        self._lock = threading.Lock()
        self._cached: tuple[float, dict] | None = None

    def describe(self) -> Iterable:
        return []  # read at scrape time only (never when registering)

    def collect(self) -> Iterable:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > DB_TTL:
                self._cached = (time.monotonic(), self.read_counts())
            data = self._cached[1]
        tickets = GaugeMetricFamily("triage_tickets", "Stored tickets routed to each department", labels=["department"])
        for name, count in data["departments"].items():
            tickets.add_metric([name], count)
        yield tickets
        review, total = data["review"].get(True, 0), sum(data["review"].values())
        yield GaugeMetricFamily("triage_tickets_stored", "Stored tickets", value=total)
        yield GaugeMetricFamily("triage_tickets_needing_review", "Stored tickets marked needs_review", value=review)
        yield GaugeMetricFamily("triage_needs_review_ratio", "Share of stored tickets marked needs_review",
                                value=review / total if total else 0.0)
        jobs = GaugeMetricFamily("triage_tuning_jobs", "Retraining jobs by state", labels=["state"])
        for state in sorted({"queued", "running", "succeeded", "failed", "cancelled", *data["jobs"]}):
            jobs.add_metric([state], data["jobs"].get(state, 0))
        yield jobs
        version = GaugeMetricFamily("triage_model_version_info", "The tuned model version this process serves",
                                    labels=["version"])
        version.add_metric([self.served_version() or "unknown"], 1)
        yield version


class RequestContext:
    """Pure-ASGI middleware: X-Request-ID in and out, one JSON log line and the request metrics per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics
        _json_request_log()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers") or []).get(HEADER, b"").decode("latin-1").strip()
        request_id = sent if _USABLE_ID.match(sent) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, request_id.encode("latin-1"))]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(seconds)
            request_log.info("request", extra={"request_id": request_id, "fields": {
                "method": scope["method"], "path": scope["path"], "route": route, "status": status,
                "duration_ms": round(seconds * 1000, 1)}})
            REQUEST_ID.reset(token)
