"""The HTTP API end to end: TestClient, temp SQLite, the tiny model; keys, roles and every endpoint."""

from __future__ import annotations

import shutil

import pytest
from sqlmodel import Session

from router import store
from router.departments import DEPARTMENTS
from router.security import create_key, revoke_key
from test_api_helpers import api, tiny_artifact  # noqa: F401 - fixtures

INTAKE = "integration"


def make_ticket(api, text="The box was crushed and the lamp is dented.", **extra) -> dict:
    r = api.client.post("/v1/tickets", json={"text": text, **extra}, headers=api.auth(INTAKE))
    assert r.status_code == 201, r.text
    return r.json()


# (method, path, body) -> roles allowed
ENDPOINTS = [
    ("GET", "/readyz", None, {"integration", "agent", "supervisor"}),
    ("POST", "/v1/route", {"text": "my fridge is warm"}, {"agent", "supervisor"}),
    ("GET", "/v1/compare?text=my+fridge+is+warm", None, {"agent", "supervisor"}),
    ("POST", "/v1/compare", {"text": "my fridge is warm"}, {"agent", "supervisor"}),
    ("POST", "/v1/tickets", {"text": "my fridge is warm"}, {"integration", "supervisor"}),
    ("POST", "/v1/tickets:batch", {"tickets": [{"text": "my fridge is warm"}]}, {"integration", "supervisor"}),
    ("GET", "/v1/tickets", None, {"integration", "agent", "supervisor"}),
    ("GET", "/v1/tickets/1", None, {"integration", "agent", "supervisor"}),
    ("POST", "/v1/tickets/1/corrections", {"departments": ["Service"]}, {"supervisor"}),
    ("GET", "/v1/models", None, {"supervisor"}),
    ("POST", "/v1/models/nope/promote", None, {"supervisor"}),
    ("POST", "/v1/models/nope/rollback", None, {"supervisor"}),
    ("GET", "/v1/keys", None, {"supervisor"}),
    ("POST", "/v1/keys", {"name": "new-key", "role": "agent"}, {"supervisor"}),
    ("DELETE", "/v1/keys/nobody", None, {"supervisor"}),
]


def test_role_by_endpoint_matrix(api):
    make_ticket(api)
    for method, path, body, allowed in ENDPOINTS:
        for role in ("integration", "agent", "supervisor"):
            r = api.client.request(method, path, json=body, headers=api.auth(role))
            if role in allowed:
                assert r.status_code not in (401, 403), (method, path, role, r.text)
                assert r.status_code < 500, (method, path, role, r.text)
            else:
                assert r.status_code == 403, (method, path, role, r.text)
                assert f"the {role} role may not" in r.json()["detail"]
        for headers in ({}, {"Authorization": "Bearer trk_nope_nope"}, {"Authorization": "Basic abc"}):
            r = api.client.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["WWW-Authenticate"] == "Bearer"


def test_healthz_needs_no_key_and_docs_are_served(api):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/docs").status_code == 200
    paths = api.client.get("/openapi.json").json()["paths"]
    assert {"/v1/route", "/v1/tickets", "/v1/tickets:batch", "/v1/compare", "/v1/models/{version}/promote"} <= set(paths)


def test_revoked_key_is_refused_at_once(api):
    with Session(api.engine) as s:
        _, key = create_key(s, "temp", "agent")
    headers = {"Authorization": f"Bearer {key}"}
    assert api.client.post("/v1/route", json={"text": "hello"}, headers=headers).status_code == 200
    with Session(api.engine) as s:
        revoke_key(s, "temp")
    r = api.client.post("/v1/route", json={"text": "hello"}, headers=headers)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    tampered = {"Authorization": f"Bearer {api.keys['agent'][:-2]}xx"}
    assert api.client.get("/v1/tickets", headers=tampered).status_code == 401


def test_route_stores_nothing_and_returns_a_routing(api):
    r = api.client.post("/v1/route", json={"text": "The agent hung up on me.", "strategy": "zero-shot"},
                        headers=api.auth("agent"))
    assert r.status_code == 200
    out = r.json()
    assert out["strategy"] == "zero-shot" and out["departments"] and set(out["departments"]) <= set(DEPARTMENTS)
    assert set(out["confidence"]) == set(DEPARTMENTS) and out["input_tokens"] > 0
    assert api.ticket_count() == 0


def test_compare_runs_every_strategy(api):
    for r in (api.client.get("/v1/compare", params={"text": "Only 3 of 4 chairs came."}, headers=api.auth("agent")),
              api.client.post("/v1/compare", json={"text": "Only 3 of 4 chairs came."}, headers=api.auth("agent"))):
        assert r.status_code == 200
        assert [s["strategy"] for s in r.json()["strategies"]] == ["zero-shot", "multi-shot", "tuned"]
    r = api.client.get("/v1/compare", params={"text": "  "}, headers=api.auth("agent"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "text"


def test_intake_stores_ticket_with_routing_and_reads_back(api):
    created = make_ticket(api, external_id="crm-7", source="phone")
    assert created["routings"][0]["model_version"] == "tiny-prompt"
    assert created["departments"] == created["routings"][0]["departments"]
    got = api.client.get(f"/v1/tickets/{created['id']}", headers=api.auth("agent")).json()
    assert got == created
    r = api.client.get("/v1/tickets/999", headers=api.auth("agent"))
    assert r.status_code == 404 and "no ticket 999" in r.json()["detail"]


def test_low_confidence_routings_are_marked_for_review(api, tiny_service):
    tiny_service.settings = tiny_service.settings.model_copy(update={"confidence_threshold": 1.0})
    tiny_service.engine.threshold = 1.0
    ticket = make_ticket(api)
    assert ticket["needs_review"] and ticket["routings"][0]["needs_review"]
    listed = api.client.get("/v1/tickets", params={"needs_review": True}, headers=api.auth("agent")).json()
    assert [t["id"] for t in listed["tickets"]] == [ticket["id"]]
    tiny_service.engine.threshold = 0.0
    sure = make_ticket(api, text="another one")
    assert not sure["needs_review"]


def test_batch_intake_routes_together_and_respects_the_limit(api, tiny_service):
    body = {"tickets": [{"text": f"complaint number {i}", "external_id": f"b-{i}"} for i in range(5)]}
    r = api.client.post("/v1/tickets:batch", json=body, headers=api.auth(INTAKE))
    assert r.status_code == 201
    tickets = r.json()["tickets"]
    assert [t["external_id"] for t in tickets] == [f"b-{i}" for i in range(5)] and len({t["id"] for t in tickets}) == 5
    limit = tiny_service.settings.max_batch_tickets
    too_many = {"tickets": [{"text": "x"}] * (limit + 1)}
    r = api.client.post("/v1/tickets:batch", json=too_many, headers=api.auth(INTAKE))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "tickets" and str(limit) in r.json()["detail"]
    r = api.client.post("/v1/tickets:batch", json={"tickets": [{"text": "ok"}, {"text": ""}]}, headers=api.auth(INTAKE))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "tickets[1].text"
    assert api.ticket_count() == 5


def test_list_filters_and_keyset_pagination(api):
    ids = [make_ticket(api, text=f"complaint {i}")["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.client.get("/v1/tickets", params=params, headers=api.auth("agent")).json()
        seen += [t["id"] for t in page["tickets"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    target = api.client.get(f"/v1/tickets/{ids[2]}", headers=api.auth("agent")).json()
    wanted = "Marketing" if "Marketing" not in target["departments"] else "Planning"
    api.client.post(f"/v1/tickets/{ids[2]}/corrections", json={"departments": [wanted]}, headers=api.auth("supervisor"))
    by_dept = api.client.get("/v1/tickets", params={"department": wanted}, headers=api.auth("agent")).json()
    assert ids[2] in [t["id"] for t in by_dept["tickets"]]
    assert all(wanted in t["departments"] for t in by_dept["tickets"])
    since = api.client.get("/v1/tickets", params={"since": "2999-01-01T00:00:00Z"}, headers=api.auth("agent")).json()
    assert since["tickets"] == []
    for params, field in (({"department": "Sales"}, "department"), ({"limit": 0}, "limit"),
                          ({"cursor": "%%%"}, "cursor"), ({"since": "yesterday"}, "since")):
        r = api.client.get("/v1/tickets", params=params, headers=api.auth("agent"))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, (params, r.text)


def test_correction_by_supervisor_reroutes_and_reaches_precedents(api, monkeypatch):
    import rag.precedents

    shared = []
    monkeypatch.setattr(rag.precedents, "add_precedent", lambda settings, text, departments, source_id:
                        shared.append((text, departments, source_id)))
    ticket = make_ticket(api, text="Nobody in support could fix my router.")
    r = api.client.post(f"/v1/tickets/{ticket['id']}/corrections",
                        json={"departments": ["L3", "Service"], "why": "needs an expert"}, headers=api.auth("supervisor"))
    assert r.status_code == 201
    assert r.json()["who"] == "supervisor-key" and r.json()["departments"] == ["Service", "L3"]
    got = api.client.get(f"/v1/tickets/{ticket['id']}", headers=api.auth("integration")).json()
    assert got["departments"] == ["Service", "L3"] and got["corrections"][0]["why"] == "needs an expert"
    assert shared == [("Nobody in support could fix my router.", ["Service", "L3"], f"ticket-{ticket['id']}")]


def test_correction_survives_a_broken_precedent_store(api, monkeypatch):
    import rag.precedents

    def broken(*args, **kwargs):
        raise RuntimeError("chroma is down")

    monkeypatch.setattr(rag.precedents, "add_precedent", broken)
    ticket = make_ticket(api)
    r = api.client.post(f"/v1/tickets/{ticket['id']}/corrections", json={"departments": ["Packaging"]},
                        headers=api.auth("supervisor"))
    assert r.status_code == 201
    assert api.client.get(f"/v1/tickets/{ticket['id']}", headers=api.auth("agent")).json()["departments"] == ["Packaging"]


@pytest.fixture
def two_versions(api, tiny_artifact, tmp_path):
    from tuning.artifacts import update_metadata

    paths = [tmp_path / "v1-artifact", tmp_path / "v2-artifact"]
    for version, path in zip(("v1", "v2"), paths):
        shutil.copytree(tiny_artifact, path)
        update_metadata(path, version=version)
    with Session(api.engine) as s:
        for path in paths:
            store.register_model_version(s, path)
    return api


def test_promote_switches_the_served_model_without_restart_and_rollback_restores(two_versions):
    api = two_versions
    sup = api.auth("supervisor")
    assert api.client.post("/v1/models/v1/promote", headers=sup).status_code == 200
    r = api.client.post("/v1/models/v2/promote", headers=sup)
    assert r.status_code == 200 and r.json()["promoted_by"] == "supervisor-key" and r.json()["promoted_at"]
    assert api.client.post("/v1/route", json={"text": "late parcel"}, headers=api.auth("agent")).json()["model_version"] == "v2"
    statuses = {m["version"]: m["status"] for m in api.client.get("/v1/models", headers=sup).json()}
    assert statuses == {"v1": "retired", "v2": "active"}
    r = api.client.post("/v1/models/v2/rollback", headers=sup)
    assert r.status_code == 200 and r.json()["version"] == "v1"
    assert api.client.post("/v1/route", json={"text": "late parcel"}, headers=api.auth("agent")).json()["model_version"] == "v1"
    r = api.client.post("/v1/models/v2/rollback", headers=sup)
    assert r.status_code == 409 and "not active" in r.json()["detail"]
    assert api.client.post("/v1/models/v9/promote", headers=sup).status_code == 404


def test_promote_of_a_broken_artifact_changes_nothing(two_versions, tmp_path):
    api = two_versions
    sup = api.auth("supervisor")
    api.client.post("/v1/models/v1/promote", headers=sup)
    with Session(api.engine) as s:
        v2 = store.get_model_version(s, "v2")
    shutil.rmtree(v2.artifact_path)
    r = api.client.post("/v1/models/v2/promote", headers=sup)
    assert r.status_code == 409 and "cannot be served" in r.json()["detail"]
    statuses = {m["version"]: m["status"] for m in api.client.get("/v1/models", headers=sup).json()}
    assert statuses == {"v1": "active", "v2": "candidate"}


def test_another_workers_promotion_is_picked_up(two_versions):
    api = two_versions
    with Session(api.engine) as s:  # as `triage models promote` or another worker would
        store.promote(s, "v2", who="cli")
    assert api.client.app.state.core.registry.sync() == "v2"
    assert api.client.post("/v1/route", json={"text": "late parcel"}, headers=api.auth("agent")).json()["model_version"] == "v2"


def test_key_management_endpoints(api):
    sup = api.auth("supervisor")
    r = api.client.post("/v1/keys", json={"name": "crm-bot", "role": "integration"}, headers=sup)
    assert r.status_code == 201 and r.json()["key"].startswith("trk_")
    new = {"Authorization": f"Bearer {r.json()['key']}"}
    assert make_ticket(api)["id"]
    assert api.client.post("/v1/tickets", json={"text": "hi there"}, headers=new).status_code == 201
    listed = api.client.get("/v1/keys", headers=sup).json()
    assert "crm-bot" in [k["name"] for k in listed] and all("key" not in k and "hashed_secret" not in k for k in listed)
    assert api.client.post("/v1/keys", json={"name": "crm-bot", "role": "agent"}, headers=sup).status_code == 409
    assert api.client.post("/v1/keys", json={"name": "x", "role": "admin"}, headers=sup).status_code == 422
    assert api.client.delete("/v1/keys/crm-bot", headers=sup).json()["revoked_at"]
    assert api.client.post("/v1/tickets", json={"text": "hi there"}, headers=new).status_code == 401


def test_readyz_reports_an_unloaded_model(tiny_settings, tiny_base):
    from fastapi.testclient import TestClient

    from router.api import create_app
    from router.db import engine_for, upgrade
    from router.service import RouterService

    settings = tiny_settings.model_copy(update={"lazy_model_load": True, "model_poll_seconds": 0.0})
    engine = engine_for(settings)
    upgrade(engine)
    with Session(engine) as s:
        _, key = create_key(s, "a", "agent")
    service = RouterService(settings, base=tiny_base)
    with TestClient(create_app(settings, service)) as client:
        headers = {"Authorization": f"Bearer {key}"}
        r = client.get("/readyz", headers=headers)
        assert r.status_code == 503 and r.json()["model_loaded"] is False
        assert client.post("/v1/route", json={"text": "hello"}, headers=headers).status_code == 200
        assert client.get("/readyz", headers=headers).status_code == 200
