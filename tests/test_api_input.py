"""Bad input gets a 4xx JSON error naming the field and the problem, and nothing is written."""

from __future__ import annotations

import pytest

from test_api_helpers import api, tiny_artifact  # noqa: F401 - fixtures

JSON = {"Content-Type": "application/json"}


def send(api, path, *, json=None, content=None, headers=None, role="supervisor"):
    return api.client.post(path, json=json, content=content, headers={**api.auth(role), **(headers or {})})


@pytest.mark.parametrize("body, field, words", [
    ({"text": ""}, "text", "empty"),
    ({"text": " \n\t "}, "text", "empty"),
    ({"text": "x" * 2001}, "text", "limit is 2000"),
    ({"text": 42}, "text", "valid string"),
    ({"text": ["a"]}, "text", "valid string"),
    ({}, "text", "Field required"),
    ({"text": "ok", "colour": "red"}, "colour", "unknown field"),
    ({"text": "ok", "strategy": "best"}, "strategy", "zero-shot"),
    ({"text": "ok", "external_id": ""}, "external_id", "at least 1"),
    ({"text": "ok", "rag": "maybe"}, "rag", "boolean"),
    ({"text": "a\x00b"}, "text", "NUL"),
], ids=["empty", "blank", "too-long", "int", "list", "missing", "extra", "strategy", "empty-id", "bool", "nul"])
def test_bad_ticket_bodies(api, body, field, words):
    r = send(api, "/v1/tickets", json=body)
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert any(e["field"] == field and words.lower() in e["problem"].lower() for e in errors), errors
    assert field in r.json()["detail"]
    assert api.ticket_count() == 0


@pytest.mark.parametrize("content, headers, status, words", [
    (b'{"text": "broken', JSON, 422, "not valid JSON"),
    (b"text=hello", {"Content-Type": "application/x-www-form-urlencoded"}, 422, "must be JSON"),
    (b"hello", {"Content-Type": "text/plain"}, 422, "must be JSON"),
    (b"", JSON, 422, "missing"),
    (b'{"text": "caf\xe9 au lait"}', JSON, 400, "not valid UTF-8"),
    (b'{"text": "\xff\xfe"}', {}, 400, "not valid UTF-8"),
    (b'{"text": "a\\ud800b"}', JSON, 422, "lone surrogate"),
    (b'["a list"]', JSON, 422, "JSON object, not array"),
    (b"null", JSON, 422, "JSON object, not null"),
], ids=["truncated", "form", "text-plain", "empty", "latin1", "no-type", "surrogate", "array", "null"])
def test_unparseable_bodies(api, content, headers, status, words):
    r = send(api, "/v1/tickets", content=content, headers=headers)
    assert r.status_code == status, r.text
    body = r.json()
    assert words.lower() in body["detail"].lower(), body
    assert body["errors"] and body["errors"][0]["field"] in ("body", "text")
    assert api.ticket_count() == 0


def test_oversized_body_is_413_with_or_without_content_length(api, tiny_service):
    limit = tiny_service.settings.max_body_bytes
    big = b'{"text": "' + b"a" * (limit + 10) + b'"}'
    r = send(api, "/v1/tickets", content=big, headers=JSON)
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # streamed: no Content-Length to trust
        for _ in range(0, len(big), 65536):
            yield b"a" * 65536

    r = send(api, "/v1/tickets", content=chunks(), headers=JSON)
    assert r.status_code == 413 and r.json()["errors"][0]["field"] == "body"
    assert api.ticket_count() == 0


def test_bad_corrections_name_the_bad_department(api):
    ticket = send(api, "/v1/tickets", json={"text": "My router keeps dropping."}).json()
    path = f"/v1/tickets/{ticket['id']}/corrections"
    r = send(api, path, json={"departments": ["Service", "Sales"]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "departments[1]" and "'Sales'" in r.json()["detail"]
    r = send(api, path, json={"departments": ["service"]})
    assert r.status_code == 422 and "did you mean 'Service'" in r.json()["detail"]
    r = send(api, path, json={"departments": []})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "departments"
    r = send(api, path, json={"departments": "Service"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "departments"
    r = send(api, path, json={"departments": ["Service"], "who": "me"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "who"
    assert send(api, "/v1/tickets/999/corrections", json={"departments": ["Service"]}).status_code == 404
    assert api.client.get(f"/v1/tickets/{ticket['id']}", headers=api.auth("agent")).json()["corrections"] == []


def test_bad_route_and_batch_bodies(api):
    r = send(api, "/v1/route", json={"text": "ok", "shots": 99})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "shots"
    r = send(api, "/v1/tickets:batch", json={"tickets": []})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "tickets"
    r = send(api, "/v1/tickets:batch", json={"tickets": [{"text": "ok"}, {"text": 1}]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "tickets[1].text"
    r = send(api, "/v1/tickets:batch", json={"tickets": [{"text": "a", "external_id": "d"}, {"text": "b", "external_id": "d"}]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "tickets[1].external_id"
    r = api.client.get("/v1/tickets/abc", headers=api.auth("agent"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "ticket_id"
    r = send(api, "/v1/tickets", json={"text": "ok"}, headers={"Idempotency-Key": ""})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "Idempotency-Key"
    assert api.ticket_count() == 0
