"""Intake is idempotent: retries return the original result, conflicting reuse is a 409, races store one ticket."""

from __future__ import annotations

import threading

from sqlmodel import Session, func, select

from router.db.models import IdempotencyRecord
from test_api_helpers import api, tiny_artifact  # noqa: F401 - fixtures

BODY = {"text": "Only 3 of the 4 chairs were delivered.", "external_id": None}


def post(api, body, key=None, role="integration", path="/v1/tickets"):
    headers = {**api.auth(role), **({"Idempotency-Key": key} if key else {})}
    return api.client.post(path, json=body, headers=headers)


def test_same_key_same_body_returns_the_same_response(api):
    first = post(api, {"text": "Only 3 of the 4 chairs came."}, key="req-1")
    again = post(api, {"text": "Only 3 of the 4 chairs came."}, key="req-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert (first.headers["Idempotent-Replayed"], again.headers["Idempotent-Replayed"]) == ("false", "true")
    assert api.ticket_count() == 1


def test_same_key_different_body_is_a_409_that_says_so(api):
    assert post(api, {"text": "Only 3 of the 4 chairs came."}, key="req-2").status_code == 201
    r = post(api, {"text": "The TV ad shows a red model."}, key="req-2")
    assert r.status_code == 409
    assert "Idempotency-Key" in r.json()["detail"] and "different request body" in r.json()["detail"]
    assert r.json()["errors"][0]["field"] == "Idempotency-Key"
    assert post(api, {"text": "Only 3 of the 4 chairs came.", "strategy": "zero-shot"}, key="req-2").status_code == 409
    assert api.ticket_count() == 1


def test_keys_are_per_client(api):
    a = post(api, {"text": "first client"}, key="shared", role="integration")
    b = post(api, {"text": "second client"}, key="shared", role="supervisor")
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]


def test_same_external_id_is_the_same_ticket(api):
    first = post(api, {"text": "My blender died.", "external_id": "crm-42"})
    again = post(api, {"text": "  My blender died. ", "external_id": "crm-42"})
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    r = post(api, {"text": "Something else entirely", "external_id": "crm-42"})
    assert r.status_code == 409 and "crm-42" in r.json()["detail"] and r.json()["errors"][0]["field"] == "external_id"
    assert api.ticket_count() == 1


def test_batch_retry_and_known_external_ids(api):
    body = {"tickets": [{"text": "a one", "external_id": "x1"}, {"text": "a two", "external_id": "x2"}]}
    first = post(api, body, key="batch-1", path="/v1/tickets:batch")
    again = post(api, body, key="batch-1", path="/v1/tickets:batch")
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    mixed = post(api, {"tickets": [{"text": "a two", "external_id": "x2"}, {"text": "a three"}]}, path="/v1/tickets:batch")
    assert mixed.status_code == 201
    assert mixed.json()["tickets"][0]["id"] == first.json()["tickets"][1]["id"]
    assert api.ticket_count() == 3
    clash = post(api, {"tickets": [{"text": "new", "external_id": "x1"}, {"text": "fine"}]}, path="/v1/tickets:batch")
    assert clash.status_code == 409 and clash.json()["errors"][0]["field"] == "tickets[0].external_id"
    assert api.ticket_count() == 3, "a refused batch stores nothing"


def test_concurrent_retries_end_with_one_ticket(api):
    results: list = []
    barrier = threading.Barrier(8)

    def client(i):
        barrier.wait()
        key = "race-key" if i % 2 else None
        results.append(post(api, {"text": "Racing complaint", "external_id": "race-1"}, key=key))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [201] * 8
    assert len({r.json()["id"] for r in results}) == 1
    assert api.ticket_count() == 1
    with Session(api.engine) as s:
        assert s.exec(select(func.count()).select_from(IdempotencyRecord)).one() == 1
