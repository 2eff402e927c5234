"""The database and the store on real SQLite with the tiny model."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect
from sqlmodel import Session, SQLModel, select

from router import store
from router.db import SCHEMA_VERSION, SchemaError, check_schema, current_version, make_engine, upgrade
from router.db.models import Correction, IdempotencyRecord, Ticket, TicketCreate
from router.application.intake import intake
from router.application.registry import ModelRegistry
from router.application.scheduler import RequestScheduler
from router.results import Routing
from test_api_helpers import tiny_artifact  # noqa: F401 - one trained tiny artifact per module


# The same tests run on PostgreSQL when a throwaway database is given, e.g.
# TRIAGE_TEST_POSTGRES_URL=postgresql+psycopg://triage@127.0.0.1:55432/triage_test (everything in it is dropped).
PG_URL = os.environ.get("TRIAGE_TEST_POSTGRES_URL")


def _wipe(engine) -> None:
    from sqlalchemy import MetaData

    reflected = MetaData()
    reflected.reflect(engine)
    reflected.drop_all(engine)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="set TRIAGE_TEST_POSTGRES_URL to a throwaway PostgreSQL database"))])
def engine(request, tmp_path):
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'db' / 'triage.db'}")
    else:
        engine = make_engine(PG_URL)
        _wipe(engine)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine):
    with Session(engine, expire_on_commit=False) as s:
        yield s


def routing(departments, conf=0.9, review=False) -> Routing:
    confidence = {d: (conf if d in departments else 0.01) for d in
                  ["Planning", "Development", "Service", "Warehouse", "L3", "Packaging", "Marketing"]}
    return Routing(departments, confidence, "tuned", 10, 3, 5.0, 4, "v1", review)


def test_missing_schema_is_refused_with_the_fix(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    with pytest.raises(SchemaError, match="does not exist yet.*triage db upgrade"):
        check_schema(engine)
    assert not (tmp_path / "fresh.db").exists(), "a refusal leaves no empty database file behind"
    assert [m.version for m in upgrade(engine)] == list(range(1, SCHEMA_VERSION + 1))
    check_schema(engine)
    assert upgrade(engine) == [] and current_version(engine) == SCHEMA_VERSION


def test_migrated_schema_matches_the_models(engine):
    insp = inspect(engine)
    for name, table in SQLModel.metadata.tables.items():
        if name not in {"tickets", "routings", "corrections", "model_versions", "api_keys", "idempotency_records"}:
            continue
        in_db = {c["name"]: c for c in insp.get_columns(name)}
        assert set(in_db) == {c.name for c in table.columns}, name
        for column in table.columns:
            assert bool(in_db[column.name]["nullable"]) == bool(column.nullable), f"{name}.{column.name}"


def test_sqlite_runs_in_wal_mode_with_busy_timeout(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db' / 'triage.db'}")
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_a_failed_migration_leaves_nothing_behind(tmp_path, monkeypatch):
    from router.db import migrations

    def broken(conn):
        migrations._v1_initial(conn)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(migrations, "MIGRATIONS", (migrations.Migration(1, "broken", broken),))
    engine = make_engine(f"sqlite:///{tmp_path / 'half.db'}")
    with pytest.raises(RuntimeError):
        migrations.upgrade(engine)
    assert current_version(engine) == 0
    assert not inspect(engine).has_table("tickets"), "the DDL of a failed migration is rolled back"


def test_ticket_with_routing_roundtrip(session):
    created = store.create_ticket_with_routing(session, "  My lamp is dented. ", routing(["Packaging"]),
                                               external_id="crm-1")
    got = store.get_ticket(session, created.id)
    assert got.text == "My lamp is dented."
    assert got.departments == ["Packaging"] and got.routings[0].model_version == "v1"
    assert got.created.tzinfo is not None
    with pytest.raises(store.NotFound):
        store.get_ticket(session, 999)
    with pytest.raises(store.Conflict, match="external_id"):
        store.create_ticket_with_routing(session, "other", routing(["Service"]), external_id="crm-1")


def test_intake_is_idempotent_on_external_id_and_key(session, tiny_service):
    first = intake(session, RequestScheduler(tiny_service), [TicketCreate(text="The box was crushed.", external_id="e1")])
    again = intake(session, RequestScheduler(tiny_service), [TicketCreate(text="The box was crushed.", external_id="e1")])
    assert again.tickets[0].id == first.tickets[0].id and again.replayed and not first.replayed
    with pytest.raises(store.Conflict, match="different text"):
        intake(session, RequestScheduler(tiny_service), [TicketCreate(text="Something else", external_id="e1")])

    keyed = intake(session, RequestScheduler(tiny_service), [TicketCreate(text="Rude agent.")], idempotency_key="k1")
    replay = intake(session, RequestScheduler(tiny_service), [TicketCreate(text="Rude agent.")], idempotency_key="k1")
    assert replay.body == keyed.body and replay.replayed
    with pytest.raises(store.Conflict, match="different request body"):
        intake(session, RequestScheduler(tiny_service), [TicketCreate(text="Polite agent.")], idempotency_key="k1")
    assert len(session.exec(select(Ticket)).all()) == 2


def test_batch_is_all_or_nothing(session, tiny_service):
    from router.service import InputError

    items = [TicketCreate(text="fine complaint"), TicketCreate(text="   ")]
    with pytest.raises(InputError) as err:
        intake(session, RequestScheduler(tiny_service), items, batch=True)
    assert err.value.field == "tickets[1].text"
    assert session.exec(select(Ticket)).all() == []
    ok = intake(session, RequestScheduler(tiny_service), [TicketCreate(text="a", external_id="x"),
                                                          TicketCreate(text="a", external_id="x"),
                                                          TicketCreate(text="b")], batch=True)
    ids = [t.id for t in ok.tickets]
    assert ids[0] == ids[1] != ids[2] and len(session.exec(select(Ticket)).all()) == 2


def test_concurrent_duplicate_intake_stores_one_ticket(engine, tiny_service):
    barrier = threading.Barrier(6)
    results, errors = [], []

    def worker(key):
        with Session(engine, expire_on_commit=False) as s:
            barrier.wait()
            try:
                results.append(intake(s, RequestScheduler(tiny_service), [TicketCreate(text="Same complaint", external_id="dup")],
                                            idempotency_key=key))
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"key-{i % 2}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({r.tickets[0].id for r in results}) == 1
    with Session(engine) as s:
        assert len(s.exec(select(Ticket)).all()) == 1
        assert len(s.exec(select(IdempotencyRecord)).all()) == 2


def test_list_tickets_filters_and_pages(session):
    for i in range(5):
        store.create_ticket_with_routing(session, f"complaint {i}", routing(["Warehouse"] if i % 2 else ["Service"],
                                                                             conf=0.3, review=i == 4))
    page1 = store.list_tickets(session, limit=2)
    page2 = store.list_tickets(session, limit=2, cursor=page1.next_cursor)
    page3 = store.list_tickets(session, limit=2, cursor=page2.next_cursor)
    assert [t.text for t in page1.tickets + page2.tickets + page3.tickets] == [f"complaint {i}" for i in range(4, -1, -1)]
    assert page3.next_cursor is None
    assert {t.text for t in store.list_tickets(session, department="Warehouse").tickets} == {"complaint 1", "complaint 3"}
    assert [t.text for t in store.list_tickets(session, needs_review=True).tickets] == ["complaint 4"]
    future = datetime.now(timezone.utc) + timedelta(minutes=1)
    assert store.list_tickets(session, since=future).tickets == []
    with pytest.raises(store.InvalidInput, match="Warehous'") as err:
        store.list_tickets(session, department="Warehous")
    assert err.value.field == "department"
    with pytest.raises(store.InvalidInput, match="cursor"):
        store.list_tickets(session, cursor="bogus!")


def test_correction_reroutes_ticket_and_feeds_review_queue(session):
    sure = store.create_ticket_with_routing(session, "sure", routing(["Service"], conf=0.95))
    unsure = store.create_ticket_with_routing(session, "unsure", routing(["L3"], conf=0.2, review=True))
    very = store.create_ticket_with_routing(session, "very unsure", routing(["L3"], conf=0.1, review=True))
    queue = store.review_queue(session)
    assert [(i.ticket.text, i.reason) for i in queue] == [("very unsure", "low-confidence"), ("unsure", "low-confidence")]

    with pytest.raises(store.InvalidInput) as err:
        store.add_correction(session, unsure.id, ["Service", "warehouse"], who="sup")
    assert err.value.field == "departments[1]" and "did you mean 'Warehouse'" in str(err.value)
    assert session.exec(select(Correction)).all() == []

    store.add_correction(session, unsure.id, ["Warehouse", "Service"], who="sup", why="missing item")
    got = store.get_ticket(session, unsure.id)
    assert got.departments == ["Service", "Warehouse"] and not got.needs_review
    assert got.corrections[0].who == "sup" and got.corrections[0].why == "missing item"
    queue = store.review_queue(session)
    assert [(i.ticket.text, i.reason) for i in queue] == [("very unsure", "low-confidence"),
                                                          ("unsure", "corrected-untrained")]
    untrained = store.untrained_corrections(session)
    assert store.mark_corrections_used(session, [c.id for c in untrained], "v2") == 1
    assert [i.ticket.id for i in store.review_queue(session)] == [very.id]
    assert sure.id not in [i.ticket.id for i in queue]


def test_model_versions_promote_and_rollback(session, tiny_service, tiny_artifact, tmp_path):
    import shutil

    from tuning.artifacts import update_metadata

    first, second = tmp_path / "first", tmp_path / "second"
    for path, version in ((first, "v1"), (second, "v2")):
        shutil.copytree(tiny_artifact, path)
        update_metadata(path, version=version)
    v1 = store.register_model_version(session, first)
    v2 = store.register_model_version(session, second, metrics={"f1": 0.5})
    assert (v1.version, v1.status, v2.metrics) == ("v1", "candidate", {"f1": 0.5})
    with pytest.raises(store.Conflict):
        store.register_model_version(session, second)
    with pytest.raises(store.InvalidInput):
        store.register_model_version(session, tmp_path)

    registry = ModelRegistry(session.get_bind(), tiny_service)
    registry.promote("v1", who="alice")
    promoted = registry.promote("v2", who="bob")
    assert promoted.promoted_by == "bob" and tiny_service.tuned_path() == second.resolve()
    assert tiny_service.route("my parcel is late", "tuned").model_version == "v2"
    assert {m.version: m.status for m in registry.versions()} == {"v1": "retired", "v2": "active"}

    back = registry.rollback("v2", who="carol")
    assert (back.version, back.status, back.promoted_by) == ("v1", "active", "carol")
    assert tiny_service.route("my parcel is late", "tuned").model_version == "v1"
    with pytest.raises(store.Conflict, match="not active"):
        store.rollback(session, "v2", who="carol")
    with pytest.raises(store.NotFound):
        store.promote(session, "v9", who="x")


def test_console_store_facade(tmp_path, tiny_settings):
    console = store.open_store(tiny_settings)  # a brand-new data dir: the SQLite database is created here
    ticket_id = console.record_routing("The kettle is out of stock.", routing(["Warehouse"], conf=0.2, review=True))
    console.record_correction(ticket_id, ["Warehouse", "Planning"], "stock planning")
    assert console.get_ticket(ticket_id).departments == ["Planning", "Warehouse"]
    assert console.get_ticket(ticket_id).corrections[0].who == "console"
