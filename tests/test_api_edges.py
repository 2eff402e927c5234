"""Defects found by using the API as a client would: ids no row can have, key names, deep JSON, 403 wording,
repeated departments, and errors that must not cost the client its keep-alive connection (a real uvicorn)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest
import uvicorn
from sqlalchemy import text
from sqlmodel import Session

from router.db.models import ApiKey
from test_api_helpers import api, tiny_artifact  # noqa: F401 - fixtures

HUGE = 2**63  # one past the largest id a database integer key holds
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("method, path, body", [
    ("GET", f"/v1/tickets/{HUGE}", None),
    ("GET", f"/v1/tickets/{10**30}", None),
    ("GET", "/v1/tickets/-9223372036854775809", None),
    ("POST", f"/v1/tickets/{HUGE}/corrections", {"departments": ["Service"]}),
    ("GET", f"/v1/tuning/jobs/{HUGE}", None),
    ("POST", f"/v1/tuning/jobs/{HUGE}/cancel", None),
], ids=["ticket", "ticket-1e30", "ticket-negative", "correction", "job", "job-cancel"])
def test_ids_no_row_can_have_are_a_422_naming_the_id(api, method, path, body):
    r = api.client.request(method, path, json=body, headers=api.auth("supervisor"))
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] in ("ticket_id", "job_id"), error
    assert "less than or equal to" in error["problem"] or "greater than or equal to" in error["problem"], error


def test_a_cursor_with_a_huge_id_is_refused_as_a_bad_cursor(api):
    import base64

    cursor = base64.urlsafe_b64encode(f"t:{HUGE}".encode()).decode().rstrip("=")
    r = api.client.get(f"/v1/tickets?cursor={cursor}", headers=api.auth("agent"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cursor"


@pytest.mark.parametrize("name, shown", [
    ("../x", "'/'"), ("a/b", "'/'"), ("line\nbreak", "'\\n'"), ("\x1b[31mred", "'\\x1b'"), ("two words", "' '"),
    ("", "empty"),
], ids=["dotdot", "slash", "newline", "ansi", "space", "empty"])
def test_key_names_outside_the_declared_pattern_are_refused(api, name, shown):
    r = api.client.post("/v1/keys", json={"name": name, "role": "agent"}, headers=api.auth("supervisor"))
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "name" and shown in error["problem"], error
    assert r.json()["detail"].startswith("name: ")
    with Session(api.engine) as s:
        assert s.query(ApiKey).filter(ApiKey.name == name).first() is None


def test_key_names_in_the_pattern_work_end_to_end(api):
    sup = api.auth("supervisor")
    for name in ("crm-bot", "alice@example.com", "svc.intake_2"):
        assert api.client.post("/v1/keys", json={"name": name, "role": "agent"}, headers=sup).status_code == 201
        assert api.client.delete(f"/v1/keys/{name}", headers=sup).json()["revoked_at"]


def test_a_key_named_with_a_slash_before_names_were_checked_can_still_be_revoked(api):
    with Session(api.engine) as s:  # a row written by an older triage, which did not check names
        s.add(ApiKey(name="team/old", role="agent", prefix="abc123abc123", salt="00", hashed_secret="x"))
        s.commit()
    r = api.client.delete("/v1/keys/team/old", headers=api.auth("supervisor"))
    assert r.status_code == 200 and r.json()["name"] == "team/old" and r.json()["revoked_at"]


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_deeply_nested_json_is_a_422_naming_the_body(api, depth):
    body = '{"text": "hello", "x": ' + "[" * depth + "]" * depth + "}"
    r = api.client.post("/v1/tickets", content=body.encode(), headers={**api.auth("integration"), **JSON})
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [{"field": "body", "problem": r.json()["errors"][0]["problem"]}]
    assert "nested too deeply" in r.json()["detail"]
    assert api.ticket_count() == 0


def test_403_says_in_words_what_the_role_may_not_do(api):
    cases = {("agent", "GET", "/v1/keys"): "the agent role may not manage API keys; that needs a key with role supervisor",
             ("agent", "GET", "/v1/models"): "the agent role may not manage model versions and tuning jobs",
             ("integration", "POST", "/v1/route"): "the integration role may not route complaints; that needs a key "
                                                   "with role agent or supervisor",
             ("agent", "POST", "/v1/tickets"): "the agent role may not take in tickets"}
    for (role, method, path), words in cases.items():
        r = api.client.request(method, path, json={"text": "my fridge is warm"}, headers=api.auth(role))
        assert r.status_code == 403 and words in r.json()["detail"], r.text


def test_a_correction_naming_a_department_twice_is_refused(api):
    ticket = api.client.post("/v1/tickets", json={"text": "The box was crushed."}, headers=api.auth("integration")).json()
    path = f"/v1/tickets/{ticket['id']}/corrections"
    r = api.client.post(path, json={"departments": ["Packaging", "Service", "Packaging"]}, headers=api.auth("supervisor"))
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "departments[2]" and "'Packaging' is listed twice" in error["problem"]
    assert api.client.get(f"/v1/tickets/{ticket['id']}", headers=api.auth("agent")).json()["corrections"] == []


# -- a real server: the keep-alive connection survives an error -----------------------------------------
@pytest.fixture
def served(api):
    """The same app under a real uvicorn (HTTP/1.1 keep-alive) in a thread."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api.client.app, host="127.0.0.1", port=port, log_level="critical",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield api, port
    server.should_exit = True
    thread.join(timeout=10)


def exchange(conn: http.client.HTTPConnection, method: str, path: str, headers: dict, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers={**headers, **JSON})
    response = conn.getresponse()
    return response.status, response.getheader("connection"), json.loads(response.read() or b"null")


def test_keep_alive_survives_huge_ids_and_a_server_error(served):
    api, port = served
    sup = api.auth("supervisor")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        assert exchange(conn, "GET", "/healthz", {})[0] == 200
        local = conn.sock.getsockname()
        for path in (f"/v1/tickets/{HUGE}", f"/v1/tuning/jobs/{HUGE}"):
            status, connection, _ = exchange(conn, "GET", path, sup)
            assert status == 422 and connection != "close"
        assert exchange(conn, "GET", "/v1/tickets/1", sup)[0] == 404
        with api.engine.begin() as db:  # the database loses a table under the running server
            db.execute(text("ALTER TABLE tickets RENAME TO tickets_gone"))
        status, connection, body = exchange(conn, "GET", "/v1/tickets/1", sup)
        assert status == 500 and body["detail"] == "internal server error (logged on the server)"
        assert connection != "close"
        assert exchange(conn, "GET", "/healthz", {})[0] == 200
        assert conn.sock is not None and conn.sock.getsockname() == local, "the same connection all along"
    finally:
        conn.close()
        with api.engine.begin() as db:
            db.execute(text("ALTER TABLE tickets_gone RENAME TO tickets"))
