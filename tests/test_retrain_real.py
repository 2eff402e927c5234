"""Retraining on the real SmolLM2 with tiny tuning parameters (slow: `make test-slow`).

The worker's code runs in this process on the one loaded base model (a worker process
would load a second copy). Two retrains on 40 complaints plus supervisors' corrections,
each gated against the shipped model: the first, a prefix started from the business
instruction and barely moved (one epoch at the lowest learning rate), stays a candidate
and is then promoted by hand; the second learns a corrupted training file where every
complaint says Marketing, and the gate must keep it a candidate.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from sqlmodel import Session

from router import store
from router.settings import Settings, project_root
from test_retrain_helpers import correct, migrated
from tuning.assemble import read_provenance
from tuning.jobs import store as jobs
from tuning.jobs.worker import run_job

pytestmark = [pytest.mark.slow, pytest.mark.realmodel]

CORRECTIONS = [
    ("The sofa in your catalog has a recliner, the one delivered does not.", ["Planning", "Marketing"]),
    ("Three of the six glasses arrived broken, the box had no padding.", ["Warehouse", "Packaging"]),
    ("I called four times and nobody could configure my smart thermostat.", ["Service", "L3"]),
    ("The coffee machine leaks water from the bottom after a week.", ["Development"]),
    ("The app keeps logging me out and support just reads a script.", ["Service", "L3"]),
]
GENTLE = {"method": "prefix", "init": "text", "epochs": 1, "num_virtual_tokens": 4, "learning_rate": 0.01,
          "batch_size": 8, "val_fraction": 0.0}
CORRUPTING = {"method": "prompt", "epochs": 2, "num_virtual_tokens": 4, "learning_rate": 0.3, "batch_size": 4,
              "val_fraction": 0.0}


def head(path: Path, n: int, out: Path, relabel: str | None = None) -> Path:
    lines = path.read_text().splitlines()[:n]
    if relabel:
        lines = [json.dumps({"input": json.loads(line)["input"], "output": relabel}) for line in lines]
    out.write_text("\n".join(lines) + "\n")
    return out


def test_real_model_retrains_on_corrections_and_the_gate_keeps_a_corrupted_candidate_back(tmp_path):
    from router.modelio import load_base_model

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    data = project_root() / "data"
    settings = Settings(data_dir=tmp_path / "d", shots_file=head(data / "complaints.jsonl", 40, tmp_path / "base.jsonl"),
                        dev_file=head(data / "dev.jsonl", 40, tmp_path / "dev.jsonl"))
    base = load_base_model(settings)
    engine = migrated(settings)
    with Session(engine, expire_on_commit=False) as s:
        for text, departments in CORRECTIONS:
            correct(s, text, departments)
        first = jobs.create_job(s, GENTLE, who="boss")
    first = run_job(settings, first.id, base=base, engine=engine)
    assert first.state == "succeeded", first.error
    gate = first.result["gate"]
    assert gate["sets"]["dev"]["n"] == 40 and gate["sets"]["holdout"]["n"] == 1 and gate["sets"]["corrections"]["n"] == 4
    assert not first.result["promoted"], "nothing better to replace: the shipped model, or no model at all"
    records = read_provenance(Path(first.result["artifact_path"]))
    assert sum(r["source"] == "correction" for r in records if r["split"] == "train") == 4
    shipped = gate["active_version"]
    assert shipped is not None and gate["sets"]["dev"]["active"]["exact_set_accuracy"] > 0.5, "compared with the shipped model"
    with Session(engine, expire_on_commit=False) as s:
        assert len(store.untrained_corrections(s)) == 1, "only the held-out correction is still pending"
        second = jobs.create_job(s, CORRUPTING, who="boss",
                                 options={"base_file": str(head(data / "complaints.jsonl", 40, tmp_path / "bad.jsonl",
                                                                "Marketing"))})
    second = run_job(settings, second.id, base=base, engine=engine)
    assert second.state == "succeeded", second.error
    gate = second.result["gate"]
    dev = gate["sets"]["dev"]
    assert gate["active_version"] == shipped and second.result["promoted"] is False, dev
    assert dev["candidate"]["macro_f1"] < dev["active"]["macro_f1"], dev
    with Session(engine, expire_on_commit=False) as s:
        store.promote(s, first.version, who="boss")  # a supervisor may still promote a version by hand
    with Session(engine) as s:
        assert store.active_model_version(s).version == first.version
        assert store.get_model_version(s, second.version).status == "candidate"
    engine.dispose()
