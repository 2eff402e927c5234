"""Corrections become training data, end to end on the tiny model, in process.

Complaints come in through the API, supervisors correct them, a retrain job runs
(the worker's own code, in this process so it can share the tiny base model), the
gate compares the candidate with the active model, and the API switches to a promoted
version without a restart. The tiny random model cannot learn which complaint goes
where, but a prefix tuned on a consistent label learns to answer it: supervisors here
correct advertising complaints to Marketing, which the active model never answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlmodel import Session

from router import store
from router.api import create_app
from router.artifact import read_metadata
from router.cli import cli
from router.db.models import ROLES
from router.security import create_key
from test_retrain_helpers import migrated, wait_for, write_jsonl
from tuning.assemble import read_provenance
from tuning.jobs import store as jobs
from tuning.jobs.paths import JobPaths
from tuning.jobs.worker import run_job

PARAMS = {"method": "prefix", "epochs": 10, "num_virtual_tokens": 4, "learning_rate": 0.5, "batch_size": 4,
          "val_fraction": 0.0, "early_stopping_patience": 0}
BASE = [("The TV ad shows a red model you do not sell.", "Marketing"),
        ("Your flyer promised a gift that never came.", "Marketing"),
        ("The poster at the mall shows the wrong price.", "Marketing")]
DEV = [("The billboard shows a color you never made.", "Marketing"),
       ("Your radio spot promises free shipping that does not exist.", "Marketing"),
       ("The brochure lists a feature the product lacks.", "Marketing"),
       ("The website banner advertises a discount nobody honors.", "Marketing")]
CORRECTED = ["The commercial claims it works underwater.", "The magazine ad shows six colors.",
             "Your newsletter promised a launch party.", "The social media post shows a bigger screen.",
             "The jingle says it is made locally.", "The sign in the shop window lists a sale that ended."]


class Scenario:
    def __init__(self, client: TestClient, keys: dict[str, str], engine, settings, base):
        self.client, self.keys, self.engine, self.settings, self.base = client, keys, engine, settings, base

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def intake(self, text: str) -> dict:
        r = self.client.post("/v1/tickets", json={"text": text}, headers=self.auth("integration"))
        assert r.status_code == 201, r.text
        return r.json()

    def correct(self, ticket_id: int, departments: list[str]) -> None:
        r = self.client.post(f"/v1/tickets/{ticket_id}/corrections", json={"departments": departments},
                             headers=self.auth("supervisor"))
        assert r.status_code == 201, r.text

    def retrain(self, who: str = "supervisor-key", **params):
        with self.session() as s:
            job = jobs.create_job(s, {**PARAMS, **params}, who=who)
        return run_job(self.settings, job.id, base=self.base)

    def route(self, text: str) -> dict:
        r = self.client.post("/v1/route", json={"text": text}, headers=self.auth("agent"))
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def scenario(tmp_path, tiny_settings, tiny_service, tiny_base, tiny_artifact):
    settings = tiny_settings.model_copy(update={
        "shots_file": write_jsonl(tmp_path / "base.jsonl", BASE), "dev_file": write_jsonl(tmp_path / "dev.jsonl", DEV),
        "model_poll_seconds": 0.1})
    tiny_service.settings = settings
    engine = migrated(settings)
    keys = {}
    with Session(engine, expire_on_commit=False) as s:
        for role in ROLES:
            keys[role] = create_key(s, f"{role}-key", role)[1]
        store.register_model_version(s, tiny_artifact)
        store.promote(s, "tiny-prompt", who="setup")
    with TestClient(create_app(settings, tiny_service)) as client:
        yield Scenario(client, keys, engine, settings, tiny_base)
    engine.dispose()


def corrected_to_marketing(sc: Scenario) -> list[dict]:
    tickets = [sc.intake(text) for text in CORRECTED]
    assert all(t["departments"] != ["Marketing"] for t in tickets), "precondition: the active model never says Marketing"
    for t in tickets:
        sc.correct(t["id"], ["Marketing"])
    return tickets


def test_corrections_are_trained_on_and_a_better_candidate_is_promoted_and_served(scenario):
    sc = scenario
    tickets = corrected_to_marketing(sc)
    job = sc.retrain()
    assert job.state == "succeeded", job.error
    result = job.result
    version = result["version"]
    assert result["promoted"] is True and version == job.version

    # The gate: evaluated on the dev file, the held-out correction and the trained corrections, against tiny-prompt.
    gate = result["gate"]
    assert gate["active_version"] == "tiny-prompt" and gate["promote"] is True
    dev = gate["sets"]["dev"]
    assert dev["n"] == len(DEV) and dev["gated"]
    assert dev["candidate"]["exact_set_accuracy"] == 1.0 > dev["active"]["exact_set_accuracy"]
    gained = (dev["candidate"]["exact_set_accuracy"] - dev["active"]["exact_set_accuracy"]) * len(DEV)
    assert dev["paired"]["losses"] == 0 and dev["paired"]["wins"] == round(gained) > 0, "complaint by complaint"
    holdout, trained = gate["sets"]["holdout"], gate["sets"]["corrections"]
    assert holdout["n"] == 1 and holdout["gated"] and trained["n"] == 5 and not trained["gated"]
    assert {row["input"] for row in holdout["examples"] + trained["examples"]} == set(CORRECTED)
    assert all(row["candidate"] == ["Marketing"] and row["active"] != ["Marketing"] for row in trained["examples"])

    # The registry: the new version is active, promoted by the gate; the old one is retired.
    with sc.session() as s:
        versions = {v.version: v for v in store.list_model_versions(s)}
        assert versions[version].status == "active" and versions["tiny-prompt"].status == "retired"
        assert versions[version].promoted_by == f"gate:job-{job.id}" and versions[version].promoted_at
        assert versions[version].metrics["compared_with"]["version"] == "tiny-prompt"
        pending = store.untrained_corrections(s)
    held_out_text = holdout["examples"][0]["input"]
    assert [c.ticket_id for c in pending] == [t["id"] for t in tickets if t["text"] == held_out_text], \
        "only the held-out correction stays pending; the others are marked trained"

    # The artifact: PEFT files, triage.json naming its training files, every example traceable.
    path = Path(result["artifact_path"])
    meta = read_metadata(path)
    assert meta["training_set"]["provenance_file"] == "provenance.jsonl" and (path / "adapter_config.json").is_file()
    assert meta["training_data"]["path"] == str(path / "train.jsonl") and meta["gate"]["promote"] is True
    from_corrections = {r["input"]: r for r in read_provenance(path) if r["split"] == "train" and r["source"] == "correction"}
    assert set(from_corrections) == set(CORRECTED) - {held_out_text}
    assert all(r["who"] == "supervisor-key" and r["output"] == "Marketing" for r in from_corrections.values())
    assert not JobPaths.of(sc.settings, job.id).staging.exists(), "the staging copy is gone once registered"

    # Serving switched without a restart, and the corrected complaints are now routed as corrected.
    wait_for(lambda: sc.route(CORRECTED[0])["model_version"] == version, timeout=10, what="the API to switch versions")
    for text in CORRECTED:
        assert sc.route(text)["departments"] == ["Marketing"], text


def test_a_worse_candidate_stays_a_candidate_and_the_comparison_is_kept(scenario):
    sc = scenario
    tickets = corrected_to_marketing(sc)
    first = sc.retrain()
    assert first.result["promoted"], first.result["gate"]["reasons"]
    # A supervisor then relabels the same complaints wrongly: the latest correction wins, the model learns it...
    for t in tickets:
        sc.correct(t["id"], ["Development"])
    second = sc.retrain()
    assert second.state == "succeeded", second.error
    gate = second.result["gate"]
    assert second.result["promoted"] is False and gate["promote"] is False
    assert gate["active_version"] == first.result["version"]
    dev = gate["sets"]["dev"]
    assert dev["candidate"]["exact_set_accuracy"] < dev["active"]["exact_set_accuracy"] == 1.0
    assert any(r.startswith("dev: exact_set_accuracy") for r in gate["reasons"])
    with sc.session() as s:
        versions = {v.version: v for v in store.list_model_versions(s)}
    worse = versions[second.result["version"]]
    assert worse.status == "candidate" and versions[first.result["version"]].status == "active"
    assert worse.metrics["gate"]["promote"] is False
    assert worse.metrics["compared_with"]["exact_set_accuracy"] == 1.0 > worse.metrics["exact_set_accuracy"]
    listed = CliRunner().invoke(cli, ["models", "list"])
    row = next(line.split() for line in listed.output.splitlines() if line.startswith(worse.version))
    assert row[1:5] == ["candidate", f"{worse.metrics['exact_set_accuracy']:.3f}", f"{worse.metrics['macro_f1']:.3f}",
                        f"{worse.metrics['exact_set_accuracy'] - 1.0:+.3f}"]
    # ...and serving keeps the better version.
    assert sc.route(CORRECTED[0])["model_version"] == first.result["version"]
    # A promotion by hand is still possible and recorded with who and when.
    r = sc.client.post(f"/v1/models/{worse.version}/promote", headers=sc.auth("supervisor"))
    assert r.status_code == 200 and r.json()["promoted_by"] == "supervisor-key" and r.json()["promoted_at"]


def test_a_margin_keeps_an_equal_candidate_waiting(scenario, tiny_artifact):
    sc = scenario
    sc.settings = sc.settings.model_copy(update={"promote_margin": 0.1})
    corrected_to_marketing(sc)
    first = sc.retrain()
    assert first.result["promoted"]
    again = sc.retrain()  # both answer Marketing everywhere: equal scores on the dev file
    gate = again.result["gate"]
    assert gate["sets"]["dev"]["candidate"] == gate["sets"]["dev"]["active"]
    assert not again.result["promoted"] and any("+ margin 0.1" in r for r in gate["reasons"])


def test_progress_and_result_are_readable_through_the_api(scenario):
    sc = scenario
    corrected_to_marketing(sc)
    job = sc.retrain()
    got = sc.client.get(f"/v1/tuning/jobs/{job.id}", headers=sc.auth("supervisor"))
    assert got.status_code == 200
    body = got.json()
    assert body["state"] == "succeeded" and body["phase"] == "done" and body["who"] == "supervisor-key"
    progress = body["progress"]
    steps_total = progress["steps_total"]
    assert progress["epochs"] == PARAMS["epochs"] and len(progress["epochs_done"]) == PARAMS["epochs"]
    assert [s for s, _loss in progress["loss_curve"]] == list(range(1, steps_total + 1))
    assert body["result"]["training_set"]["n_train"] == len(BASE) + 5
    listed = sc.client.get("/v1/tuning/jobs", headers=sc.auth("supervisor")).json()
    assert [j["id"] for j in listed] == [job.id] and "loss_curve" not in listed[0]["progress"]
    assert sc.client.get("/v1/tuning/jobs", headers=sc.auth("agent")).status_code == 403
    missing = sc.client.get("/v1/tuning/jobs/999", headers=sc.auth("supervisor"))
    assert missing.status_code == 404 and "no tuning job 999" in missing.json()["detail"]
    r = sc.client.post(f"/v1/tuning/jobs/{job.id}/cancel", headers=sc.auth("supervisor"))
    assert r.status_code == 409 and "already ended (succeeded)" in r.json()["detail"]
