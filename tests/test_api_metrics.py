"""GET /metrics (Prometheus text format) and X-Request-ID with JSON request logs; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import re

from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, select

from router.api.observability import JsonFormatter, request_log
from router.db.models import Ticket
from test_api_helpers import api, tiny_artifact  # noqa: F401 - fixtures

SHEETS = "Where are the 2 extra sets of sheets that are supposed to come with my order?"


def scrape(api) -> dict[tuple[str, tuple], float]:
    response = api.client.get("/metrics", headers=api.auth("integration"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_a_key(api):
    assert api.client.get("/metrics").status_code == 401
    assert api.client.get("/metrics", headers={"Authorization": "Bearer trk_nope_nope"}).status_code == 401


def test_metrics_count_requests_routings_tickets_and_review(api):
    texts = [SHEETS, "The agent was rude and hung up on me.", "My toaster is dead out of the box."]
    for i, text in enumerate(texts):
        assert api.client.post("/v1/tickets", json={"text": text, "external_id": f"m{i}"},
                               headers=api.auth("integration")).status_code == 201
    assert api.client.post("/v1/tickets", json={"text": texts[0], "external_id": "m0"},
                           headers=api.auth("integration")).status_code == 201  # the known ticket: no new one
    routed = api.client.post("/v1/route", json={"text": SHEETS}, headers=api.auth("agent")).json()
    assert api.client.post("/v1/route", json={"text": "  "}, headers=api.auth("agent")).status_code == 422
    samples = scrape(api)

    assert value(samples, "triage_http_requests_total", method="POST", route="/v1/tickets", status="201") == 4
    assert value(samples, "triage_http_requests_total", method="POST", route="/v1/route", status="422") == 1
    assert value(samples, "triage_routing_latency_seconds_count", strategy="tuned") == 4
    assert value(samples, "triage_routing_batch_size_count") == 4
    assert value(samples, "triage_routings_total", strategy="tuned") == 4

    with Session(api.engine) as s:
        tickets = s.exec(select(Ticket)).all()
    assert value(samples, "triage_tickets_stored") == 3
    for name in ["Planning", "Development", "Service", "Warehouse", "L3", "Packaging", "Marketing"]:
        assert value(samples, "triage_tickets", department=name) == sum(name in t.departments for t in tickets)
    review = sum(t.needs_review for t in tickets)
    assert value(samples, "triage_tickets_needing_review") == review
    assert abs(value(samples, "triage_needs_review_ratio") - review / 3) < 1e-9
    assert value(samples, "triage_model_version_info", version=routed["model_version"]) == 1
    assert value(samples, "triage_tuning_jobs", state="running") == 0


def test_request_ids_are_echoed_or_made_and_logged_as_json(api):
    lines: list[dict] = []

    class Capture(logging.Handler):
        def emit(self, record):
            lines.append(json.loads(JsonFormatter().format(record)))

    handler = Capture()
    request_log.addHandler(handler)
    try:
        given = api.client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.42"})
        made = [api.client.get("/healthz") for _ in range(2)]
        unusable = api.client.get("/healthz", headers={"X-Request-ID": "has spaces and \"quotes\""})
        refused = api.client.post("/v1/route", json={"text": SHEETS}, headers={"X-Request-ID": "req-1"})
    finally:
        request_log.removeHandler(handler)
    assert given.headers["x-request-id"] == "lb-7f3a.42"
    ids = [r.headers["x-request-id"] for r in made]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and ids[0] != ids[1]
    assert re.fullmatch(r"[0-9a-f]{32}", unusable.headers["x-request-id"])
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "req-1"
    logged = {line["request_id"]: line for line in lines}
    assert logged["lb-7f3a.42"]["route"] == "/healthz" and logged["lb-7f3a.42"]["status"] == 200
    assert logged["req-1"]["status"] == 401 and logged["req-1"]["method"] == "POST" and logged["req-1"]["path"] == "/v1/route"
    assert set(ids) <= set(logged) and all(line["duration_ms"] >= 0 for line in lines)


def test_a_served_triage_logs_each_request_as_one_json_line(tmp_path, tiny_env):
    from scripts.loadbench import free_port, start_server, stop_server, wait_ready
    from test_api_helpers import keyed_data_dir

    data = tmp_path / "server-data"
    key = keyed_data_dir(data, ("ops", "integration"))["ops"]
    port, log = free_port(), tmp_path / "server.log"
    env = {**os.environ, **tiny_env, "TRIAGE_DATA_DIR": str(data), "TRIAGE_TORCH_THREADS": "1"}
    proc = start_server(env, port, log_path=log)
    try:
        import httpx

        base = f"http://127.0.0.1:{port}"
        wait_ready(base, key, proc)
        created = httpx.post(f"{base}/v1/tickets", json={"text": SHEETS}, timeout=60,
                             headers={"Authorization": f"Bearer {key}", "X-Request-ID": "ticket-from-crm-981"})
        assert created.status_code == 201 and created.headers["x-request-id"] == "ticket-from-crm-981"
        metrics = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30).text
        assert 'triage_http_requests_total{method="POST",route="/v1/tickets",status="201"} 1.0' in metrics
    finally:
        stop_server(proc)
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    [line] = [r for r in records if r.get("request_id") == "ticket-from-crm-981"]
    assert line["path"] == "/v1/tickets" and line["status"] == 201 and line["logger"] == "triage.requests"
