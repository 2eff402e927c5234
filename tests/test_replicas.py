"""Two `triage serve` replicas on shared state: one PostgreSQL database, one Chroma server, one data directory.

What a user of two replicas behind a load balancer would notice: the same Idempotency-Key or external_id sent to
both at once makes one ticket; kill -9 of one mid-load loses no acknowledged ticket, and clients retrying on the
other make no duplicates; a promote through one is served by the other within 5 s without a restart; a retraining
job requested through both runs once and both show its progress; a correction saved through one grounds routings
on the other. A tiny random-weight model (quick to load and route), real servers everywhere.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session

from conftest import TINY_TRAIN, tune_tiny
from rag_helpers import small_corpus
from replica_helpers import NO_POSTGRES, PG_URL, ChromaServer, Cluster, Replica, all_at_once, fresh_postgres, replica_env
from router import store
from router.security import create_key
from router.settings import Settings
from test_retrain_helpers import TINY_PARAMS, write_jsonl
from tuning.jobs.paths import JobPaths

pytestmark = pytest.mark.skipif(not PG_URL, reason=NO_POSTGRES)

TEXTS = [t for t, _ in TINY_TRAIN]
PROMOTED = "replica-promoted"  # the version name of the artifact the promote test registers
JOB_PARAMS = {**TINY_PARAMS, "epochs": 10, "batch_size": 1}  # ~1-3 s of training: long enough to be seen mid-way


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_model_dir, tiny_dir_artifact):
    root = tmp_path_factory.mktemp("replicas")
    engine = fresh_postgres(PG_URL)
    with Session(engine) as s:
        keys = {role: create_key(s, f"{role}-replicas", role)[1] for role in ("integration", "agent", "supervisor")}
    train = write_jsonl(root / "train.jsonl", TINY_TRAIN)
    chroma = ChromaServer(root / "chroma-server")
    cluster = None
    try:
        shared = {"TRIAGE_DATA_DIR": str(root / "data"), "TRIAGE_DATABASE_URL": PG_URL,
                  "TRIAGE_CHROMA_HOST": "127.0.0.1", "TRIAGE_CHROMA_PORT": str(chroma.port),
                  "TRIAGE_BASE_MODEL": str(tiny_model_dir), "TRIAGE_TUNED_MODEL": str(tiny_dir_artifact),
                  "TRIAGE_SHOTS_FILE": str(train), "TRIAGE_DEV_FILE": str(write_jsonl(root / "dev.jsonl", TINY_TRAIN[:4]))}
        seed_chroma(root, chroma.port, train)
        env = replica_env(root, shared)
        cluster = Cluster([Replica("a", env, root), Replica("b", env, root)], keys, engine)
        cluster.ensure_up()
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        chroma.stop()
        engine.dispose()


def seed_chroma(root, port: int, train) -> None:
    """Policy passages and labeled precedents on the Chroma server (what `triage rag ingest[-examples]` do)."""
    from rag.ingest import ingest_policies
    from rag.precedents import ingest_examples

    settings = Settings(data_dir=root / "seed", chroma_host="127.0.0.1", chroma_port=port)
    ingest_policies(settings, small_corpus(root / "policies"))
    ingest_examples(settings, train)


@pytest.fixture
def replicas(cluster) -> Cluster:
    cluster.ensure_up()  # a replica an earlier test killed is started again
    return cluster


@pytest.fixture(scope="module")
def promoted_artifact(tmp_path_factory, tiny_model_dir):
    """A second tuned artifact on the same tiny base, version PROMOTED."""
    from router.modelio import load_base_model

    root = tmp_path_factory.mktemp("promoted")
    base = load_base_model(Settings(data_dir=root / "d", base_model=str(tiny_model_dir)))
    path, _ = tune_tiny(base, write_jsonl(root / "train.jsonl", TINY_TRAIN), root / PROMOTED, epochs=1)
    return path


def test_the_same_key_or_external_id_sent_to_both_replicas_at_once_makes_one_ticket(replicas):
    a, b = replicas.replicas
    run, pairs = uuid.uuid4().hex[:8], 16
    auth = replicas.auth("integration")
    calls = []
    for i in range(pairs):  # the same Idempotency-Key (no external_id) to both replicas
        body = {"text": f"{TEXTS[i % len(TEXTS)]} (keyed {run}-{i})"}
        calls += [("POST", f"{r.url}/v1/tickets", body, {**auth, "Idempotency-Key": f"{run}-{i}"}) for r in (a, b)]
    for i in range(pairs):  # the same external_id (no key) to both replicas
        body = {"text": f"{TEXTS[i % len(TEXTS)]} (external {run}-{i})", "external_id": f"{run}-{i}"}
        calls += [("POST", f"{r.url}/v1/tickets", body, auth) for r in (a, b)]
    answers = all_at_once(calls)
    bad = [x if isinstance(x, Exception) else (x.status_code, x.text[:200]) for x in answers
           if isinstance(x, Exception) or x.status_code != 201]
    assert bad == [], bad[:5]
    both = [answers[j:j + 2] for j in range(0, len(answers), 2)]
    assert all(x.json()["id"] == y.json()["id"] for x, y in both), "both replicas answered with the same ticket"
    assert all(sorted(r.headers["idempotent-replayed"] for r in pair) == ["false", "true"] for pair in both[:pairs])
    with replicas.engine.connect() as conn:
        stored = conn.execute(text("SELECT text, COUNT(*) FROM tickets WHERE text LIKE :run GROUP BY text"),
                              {"run": f"%{run}-%"}).all()
    assert len(stored) == 2 * pairs and {n for _, n in stored} == {1}, "exactly one ticket per key and per external_id"


def test_a_promote_through_one_replica_is_served_by_the_other_within_5_s(replicas, promoted_artifact):
    a, b = replicas.replicas
    with Session(replicas.engine) as s:
        store.register_model_version(s, promoted_artifact)
    b_pid, agent = b.proc.pid, replicas.auth("agent")
    seen: list[tuple[float, object, str | None]] = []  # (answered at, status or error, model_version)
    stop = threading.Event()

    def keep_routing() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                try:
                    r = client.post(f"{b.url}/v1/route", json={"text": TEXTS[0]}, headers=agent)
                    seen.append((time.monotonic(), r.status_code, r.json().get("model_version")))
                except httpx.HTTPError as exc:
                    seen.append((time.monotonic(), repr(exc), None))

    clients = [threading.Thread(target=keep_routing) for _ in range(3)]
    for c in clients:
        c.start()
    try:
        time.sleep(1.0)
        promoted = httpx.post(f"{a.url}/v1/models/{PROMOTED}/promote", headers=replicas.auth("supervisor"), timeout=60)
        promoted_at = time.monotonic()
        assert promoted.status_code == 200, promoted.text
        on_a = httpx.post(f"{a.url}/v1/route", json={"text": TEXTS[0]}, headers=agent, timeout=60).json()
        assert on_a["model_version"] == PROMOTED, "the replica that promoted serves the version at once"
        deadline = promoted_at + 30
        while time.monotonic() < deadline and not any(t > promoted_at and v == PROMOTED for t, _, v in seen):
            time.sleep(0.02)
        time.sleep(1.0)  # B keeps serving after the switch
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=60)
    first = min((t for t, _, v in seen if t > promoted_at and v == PROMOTED), default=None)
    assert first is not None, f"replica b never served {PROMOTED}: {seen[-3:]}\n{b.tail()}"
    delay = first - promoted_at
    print(f"promote through a served by b after {delay:.2f} s ({len(seen)} routings on b meanwhile)")
    assert {status for _, status, _ in seen} == {200}, "no request dropped or failed during the switch"
    assert {v for t, _, v in seen if t > first} == {PROMOTED}, "once switched, b serves only the promoted version"
    assert b.running() and b.proc.pid == b_pid, "b switched without a restart"
    assert delay <= 5.0, f"b served the promoted version {delay:.2f} s after the promote"


def test_a_job_requested_through_both_replicas_runs_once_and_both_show_its_progress(replicas):
    a, b = replicas.replicas
    boss = replicas.auth("supervisor")
    answers = all_at_once([("POST", f"{r.url}/v1/tuning/jobs", {"parameters": JOB_PARAMS, "auto_promote": False}, boss)
                           for r in (a, b)])
    assert sorted(r.status_code for r in answers) == [202, 409], [r.text[:300] for r in answers]
    job = next(r for r in answers if r.status_code == 202).json()
    refused = next(r for r in answers if r.status_code == 409).json()["detail"]
    assert f"job {job['id']} (" in refused, "the refusal names the job that runs"
    views: dict[str, list[dict]] = {"a": [], "b": []}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for r in (a, b):
            got = httpx.get(f"{r.url}/v1/tuning/jobs/{job['id']}", headers=boss, timeout=30)
            assert got.status_code == 200, got.text
            views[r.name].append(got.json())
        if all(v[-1]["state"] not in ("queued", "running") for v in views.values()):
            break
        time.sleep(0.2)
    final = views["a"][-1]
    assert final["state"] == "succeeded", (final["state"], final.get("error"))
    assert views["b"][-1] == final, "both replicas show the same finished job, progress and result"
    for name, seen in views.items():
        training = [v for v in seen if v["state"] == "running" and v["progress"].get("step")]
        assert training, f"replica {name} never showed the job's training progress: {[v['phase'] for v in seen]}"
        assert {v["pid"] for v in training} == {final["pid"]}, "one worker process, the same on both replicas"
    assert len(final["progress"]["epochs_done"]) == JOB_PARAMS["epochs"], "every epoch once"
    for r in (a, b):
        listed = httpx.get(f"{r.url}/v1/tuning/jobs", headers=boss, timeout=30).json()
        assert [j["id"] for j in listed if j["id"] >= job["id"]] == [job["id"]], "one job for the two requests"
        versions = [m["version"] for m in httpx.get(f"{r.url}/v1/models", headers=boss, timeout=30).json()]
        assert versions.count(job["version"]) == 1
    log = JobPaths(replicas.replicas[0].log_dir / "data" / "jobs" / str(job["id"])).log.read_text()
    assert log.count(f"tuning job {job['id']}: training") == 1, "the job trained once"


def test_a_correction_through_one_replica_grounds_routings_on_the_other(replicas):
    a, b = replicas.replicas
    complaint = f"The lamp in the ad was blue, mine is grey ({uuid.uuid4().hex[:8]})."
    ticket = httpx.post(f"{a.url}/v1/tickets", json={"text": complaint}, headers=replicas.auth("integration"),
                        timeout=60).json()
    fixed = httpx.post(f"{a.url}/v1/tickets/{ticket['id']}/corrections", headers=replicas.auth("supervisor"),
                       json={"departments": ["Planning", "Marketing"], "why": "the ad shows a model we do not sell"},
                       timeout=120)
    assert fixed.status_code == 201, fixed.text
    routed = httpx.post(f"{b.url}/v1/route", json={"text": complaint, "precedents": True},
                        headers=replicas.auth("agent"), timeout=120).json()
    cited = [p for p in routed["passages"] if p["kind"] == "precedent" and p["snippet"] == complaint]
    assert [p["title"] for p in cited] == ["Planning, Marketing"], routed["passages"]
    assert cited[0]["corrected"] and cited[0]["ticket"] == f"/v1/tickets/{ticket['id']}"  # a link to the ticket
    assert httpx.get(f"{b.url}{cited[0]['ticket']}", headers=replicas.auth("agent"), timeout=30).json()["text"] == complaint


def test_kill_9_of_one_replica_mid_load_loses_no_acknowledged_ticket_and_retries_make_no_duplicate(replicas):
    a, b = replicas.replicas
    run, total = uuid.uuid4().hex[:8], 300
    auth = replicas.auth("integration")
    acked: dict[str, tuple[int, str, str]] = {}  # external_id -> (ticket id, replica, idempotent-replayed)
    cut_off, errors, lock = [], [], threading.Lock()
    todo = iter(range(total))

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                body = {"text": f"{TEXTS[i % len(TEXTS)]} (load {run}-{i})", "external_id": f"{run}-{i}"}
                order = (a, b) if i % 2 == 0 else (b, a)
                for attempt in range(6):  # a client retries on the other replica, same key and body
                    replica = order[attempt % 2]
                    try:
                        r = http.post(f"{replica.url}/v1/tickets", json=body,
                                      headers={**auth, "Idempotency-Key": f"{run}-k{i}"})
                    except httpx.HTTPError as exc:  # in flight when a died, or refused afterwards
                        with lock:
                            cut_off.append((i, type(exc).__name__))
                        continue
                    with lock:
                        if r.status_code == 201:
                            acked[body["external_id"]] = (r.json()["id"], replica.name, r.headers["idempotent-replayed"])
                        else:
                            errors.append((i, r.status_code, r.text[:200]))
                    break
                else:
                    with lock:
                        errors.append((i, "no replica answered", None))

    clients = [threading.Thread(target=client) for _ in range(16)]
    for c in clients:
        c.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sum(1 for _, name, _ in list(acked.values()) if name == "a") < 40:
        time.sleep(0.01)
    a.kill()  # kill -9 mid-load
    killed_with = len(acked)
    for c in clients:
        c.join(timeout=300)
    assert errors == [], errors[:5]
    assert killed_with < total and cut_off, "the kill happened mid-load and cut requests off"
    with replicas.engine.connect() as conn:
        stored = conn.execute(text("SELECT external_id, id FROM tickets WHERE external_id LIKE :run"),
                              {"run": f"{run}-%"}).all()
    by_external = dict(stored)
    assert len(stored) == len(by_external) == total, "one ticket per complaint: no duplicate from the retries"
    lost = {e: t for e, (t, _, _) in acked.items() if by_external.get(e) != t}
    assert lost == {} and len(acked) == total, "every acknowledged ticket is stored, under the id it was given"
    with httpx.Client(timeout=60) as http:  # what a was acknowledging before it died, read back through b
        for external_id, (ticket_id, _, _) in [(e, v) for e, v in acked.items() if v[1] == "a"][:40]:
            back = http.get(f"{b.url}/v1/tickets/{ticket_id}", headers=auth)
            assert back.status_code == 200 and back.json()["external_id"] == external_id, back.text
    retried = {i for i, _ in cut_off}
    replayed = sum(1 for e, (_, _, again) in acked.items() if again == "true" and int(e.split("-")[-1]) in retried)
    kinds = sorted(Counter(kind for _, kind in cut_off).items())
    print(f"kill -9 of a after {killed_with}/{total} acknowledged; {len(retried)} complaints cut off ({kinds}) and "
          f"retried on b, {replayed} of them stored by a before it died (b replayed those); {len(stored)} tickets, "
          f"0 duplicates, 0 lost")
