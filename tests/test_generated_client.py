"""A client nobody here wrote: openapi-python-client generates one from a live server's /openapi.json, and the
ticket lifecycle runs through it unedited (create with an idempotency key, replay, list by cursor, correct, read)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import httpx

from scripts.loadbench import free_port, start_server, stop_server, wait_ready
from test_api_helpers import keyed_data_dir

COMPLAINTS = ["Where are the 2 extra sets of sheets that are supposed to come with my order?",
              "The agent was rude and hung up on me.", "My toaster is dead out of the box."]


def generate(spec: Path, out: Path) -> None:
    bin_dir = Path(sys.executable).parent
    done = subprocess.run([str(bin_dir / "openapi-python-client"), "generate", "--path", str(spec), "--meta", "none",
                           "--output-path", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "api" / "tickets").is_dir(), done.stdout


def test_the_ticket_lifecycle_through_a_generated_client(tmp_path, tiny_env):
    data = tmp_path / "server-data"
    keys = keyed_data_dir(data, ("crm", "integration"), ("lead", "supervisor"))
    intake_key, supervisor_key = keys["crm"], keys["lead"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **tiny_env, "TRIAGE_DATA_DIR": str(data), "TRIAGE_TORCH_THREADS": "1"}
    proc = start_server(env, port, log_path=tmp_path / "server.log")
    try:
        wait_ready(base, intake_key, proc)
        spec = tmp_path / "openapi.json"
        spec.write_bytes(httpx.get(f"{base}/openapi.json", timeout=30).content)
        generate(spec, tmp_path / "triage_client")
        sys.path.insert(0, str(tmp_path))
        try:
            run_lifecycle(base, intake_key, supervisor_key)
        finally:
            sys.path.remove(str(tmp_path))
            for name in [m for m in sys.modules if m == "triage_client" or m.startswith("triage_client.")]:
                del sys.modules[name]
    finally:
        stop_server(proc)


def run_lifecycle(base: str, intake_key: str, supervisor_key: str) -> None:
    client_mod = importlib.import_module("triage_client")
    tickets = "triage_client.api.tickets."
    create = importlib.import_module(tickets + "create_ticket_v1_tickets_post")
    listing = importlib.import_module(tickets + "list_tickets_v1_tickets_get")
    read = importlib.import_module(tickets + "read_ticket_v1_tickets_ticket_id_get")
    correct = importlib.import_module(tickets + "correct_ticket_v1_tickets_ticket_id_corrections_post")
    models = importlib.import_module("triage_client.models")

    crm = client_mod.AuthenticatedClient(base_url=base, token=intake_key, timeout=httpx.Timeout(60.0))
    lead = client_mod.AuthenticatedClient(base_url=base, token=supervisor_key, timeout=httpx.Timeout(60.0))

    first = create.sync_detailed(client=crm, body=models.TicketIntake(text=COMPLAINTS[0], external_id="crm-1"),
                                 idempotency_key="k-1")
    assert first.status_code == 201 and isinstance(first.parsed, models.TicketPublic)
    assert first.headers["idempotent-replayed"] == "false" and first.parsed.departments
    replay = create.sync_detailed(client=crm, body=models.TicketIntake(text=COMPLAINTS[0], external_id="crm-1"),
                                  idempotency_key="k-1")
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.parsed.id == first.parsed.id
    conflict = create.sync_detailed(client=crm, body=models.TicketIntake(text="another text", external_id="crm-9"),
                                    idempotency_key="k-1")
    assert conflict.status_code == 409 and isinstance(conflict.parsed, models.ErrorOut) and conflict.parsed.detail
    ids = [first.parsed.id] + [create.sync(client=crm, body=models.TicketIntake(text=t, external_id=f"crm-{i}")).id
                               for i, t in enumerate(COMPLAINTS[1:], start=2)]

    seen, cursor = [], importlib.import_module("triage_client.types").UNSET
    while True:
        page = listing.sync(client=crm, limit=2, cursor=cursor)
        assert isinstance(page, models.TicketsPublic) and len(page.tickets) <= 2
        seen += [t.id for t in page.tickets]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == sorted(ids, reverse=True), "newest first, every ticket once across pages"

    fix = models.CorrectionCreate(departments=[models.CorrectionCreateDepartmentsItem("Service"),
                                               models.CorrectionCreateDepartmentsItem("L3")], why="experts were unhelpful")
    made = correct.sync_detailed(ids[1], client=lead, body=fix)
    assert made.status_code == 201 and isinstance(made.parsed, models.CorrectionPublic) and made.parsed.who == "lead"
    refused = correct.sync_detailed(ids[1], client=crm, body=fix)
    assert refused.status_code == 403 and isinstance(refused.parsed, models.ErrorOut)
    back = read.sync(ids[1], client=crm)
    assert back.departments == ["Service", "L3"] and [c.why for c in back.corrections] == ["experts were unhelpful"]
    missing = read.sync_detailed(999_999, client=crm)
    assert missing.status_code == 404 and isinstance(missing.parsed, models.ErrorOut)
