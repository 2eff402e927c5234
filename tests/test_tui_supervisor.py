"""The supervisor view on the tiny model and a temp SQLite store: key gate, review, training data, retrain, models."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from router.db.models import Correction, ModelVersion
from router.report import label_distribution
from router.security import create_key
from tests.conftest import TINY_TRAIN
from tests.tui_helpers import make_store, route, settle
from tui.app import create_app
from tui.panes.retrain import RetrainPane
from tui.panes.review import ReviewPane
from tui.panes.training_data import TrainingDataPane
from tui.screens.supervisor import SupervisorScreen
from tui.widgets.loss_plot import LossPlot

pytestmark = pytest.mark.anyio


def new_key(store, name: str, role: str) -> str:
    with store.session() as s:
        return create_key(s, name, role)[1]


@pytest.fixture
def store(tiny_settings):
    return make_store(tiny_settings)


async def test_supervisor_view_needs_a_supervisor_key(tiny_settings, tiny_service, store):
    agent_key, boss_key = new_key(store, "ann", "agent"), new_key(store, "boss", "supervisor")
    app = create_app(tiny_settings, tiny_service, store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "KeyPrompt"
        app.screen.query_one("#key-input").value = agent_key  # pasted
        await pilot.press("enter")
        await pilot.pause()
        assert "Not a valid supervisor key" in str(app.screen.query_one("#key-error").render())
        app.screen.query_one("#key-input").value = boss_key
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SupervisorScreen)


async def test_review_queue_correct_in_place(tiny_settings, tiny_service, store):
    app = create_app(tiny_settings, tiny_service, store, supervisor_key=new_key(store, "boss", "supervisor"))
    async with app.run_test(size=(80, 24)) as pilot:
        await route(pilot, "The kettle I want is out of stock.")
        ticket = app.session.tickets[0]
        assert ticket.primary.needs_review, "the random tiny model is never confident"
        await pilot.press("f3")
        await settle(pilot)
        pane = app.screen.query_one(ReviewPane)
        assert [(i.ticket.id, i.reason) for i in pane.items] == [(ticket.ticket_id, "low-confidence")]
        app.screen.query_one("#review-table").focus()
        board = pane.query_one("#review-board")
        for i, name in enumerate(("Planning", "Development", "Service", "Warehouse", "L3", "Packaging", "Marketing"), 1):
            if (name in board.chosen) != (name == "Warehouse"):
                await pilot.press(str(i))
        assert board.chosen == ["Warehouse"]
        await pilot.press("s")
        await settle(pilot)
        assert [(i.ticket.id, i.reason) for i in pane.items] == [(ticket.ticket_id, "corrected-untrained")]
    with store.session() as s:
        assert [(c.ticket_id, c.departments) for c in s.exec(select(Correction)).all()] == [(ticket.ticket_id, ["Warehouse"])]


async def test_training_data_counts_include_pending_corrections(tiny_settings, tiny_service, store):
    app = create_app(tiny_settings, tiny_service, store, supervisor_key=new_key(store, "boss", "supervisor"))
    async with app.run_test(size=(80, 24)) as pilot:
        await route(pilot, "My blender arrived without its lid and the ad showed a glass jar.")
        await pilot.press("1", "6", "7")  # toggle: whatever the model said, the correction differs
        await pilot.press("s")
        await settle(pilot)
        final = app.session.tickets[0].final
        await pilot.press("f3")
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        pane = app.screen.query_one(TrainingDataPane)
        assert pane.data is not None and pane.data.pending == 1
        expected = label_distribution(pane.data.assembled.examples)
        assert expected.n == len(TINY_TRAIN) + 1
        assert expected.label_sets[", ".join(final)] >= 1
        table = pane.query_one("#label-sets")
        shown = {table.get_row(k)[1]: int(table.get_row(k)[0]) for k in table.rows}
        assert shown == dict(expected.label_sets)
        alone = pane.query_one("#alone-paired")
        assert alone.get_row("Development")[1:3] == [str(expected.alone["Development"]), str(expected.paired["Development"])]
        pairs = pane.query_one("#pairs")
        assert pairs.get_row("Warehouse")[6] == str(expected.pairs[("Warehouse", "Packaging")])
        warnings = str(pane.query_one("#data-warnings").render())
        assert "Development appears alone" in warnings


@pytest.fixture
def job_console(tmp_path, tiny_model_dir, tiny_dir_artifact, tiny_train_file):
    """A console whose retraining jobs really run: settings a worker process can load (the tiny model saved as a
    Hugging Face directory), a dev file for the gate, a migrated temp SQLite store."""
    from router.service import RouterService
    from router.settings import Settings
    from test_retrain_helpers import write_jsonl

    settings = Settings(data_dir=tmp_path / "job-data", base_model=str(tiny_model_dir), tuned_model=tiny_dir_artifact,
                        shots_file=tiny_train_file, dev_file=write_jsonl(tmp_path / "dev.jsonl", TINY_TRAIN[:4]),
                        model_poll_seconds=0)
    return settings, RouterService(settings), make_store(settings)


async def wait_until(pilot, condition, timeout: float = 180.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the retraining job"
        await pilot.pause(0.2)


async def open_retrain(app, pilot) -> tuple[RetrainPane, object]:
    """The supervisor's Retrain tab: the pane and its parameter form."""
    await settle(pilot)
    await pilot.press("t")
    pane = app.screen.query_one(RetrainPane)
    return pane, pane.query_one("#tuning-form")


async def test_console_retrain_runs_a_job_shows_its_loss_live_and_the_gate(job_console):
    settings, service, store = job_console
    complaint = "The lamp came without its shade and the manual."
    ticket_id = store.record_routing(complaint, service.route(complaint))
    store.record_correction(ticket_id, ["Packaging"], "shade and manual missing")
    app = create_app(settings, service, store, supervisor=True, supervisor_key=new_key(store, "boss", "supervisor"))
    async with app.run_test(size=(120, 34)) as pilot:
        pane, form = await open_retrain(app, pilot)
        form.set_value("epochs", "99")
        await pilot.press("ctrl+s")
        errors = str(pane.query_one("#retrain-errors").render())
        assert "epochs" in errors and "1 to 50" in errors
        assert not pane.running and pane.job is None, "nothing started"
        for name, value in {"method": "prompt", "epochs": 2, "batch_size": 4, "num_virtual_tokens": 4,
                            "learning_rate": 0.3, "val_fraction": 0.0}.items():
            form.set_value(name, value)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: pane.job is not None and not pane.running)
        await settle(pilot)
        job = pane.job
        assert job.state == "succeeded", job.error
        curve = job.progress["loss_curve"]
        plot = pane.query_one(LossPlot)
        assert plot.steps == [step for step, _ in curve] and plot.steps[-1] == job.progress["steps_total"]
        assert all(loss > 0 for loss in plot.losses)
        gate = job.result["gate"]
        table = pane.query_one("#retrain-eval")
        dev = table.get_row("dev")
        assert dev[0] == "dev (4)" and dev[1] == (f"{gate['sets']['dev']['candidate']['exact_set_accuracy']:.3f} / "
                                                  f"{gate['sets']['dev']['active']['exact_set_accuracy']:.3f}")
        assert table.get_row("gate")[1] == ("promoted" if gate["promote"] else "stays a candidate")
        assert job.result["version"] in str(pane.query_one("#retrain-status").render())
    with store.session() as s:
        rows = {row.version: row for row in s.exec(select(ModelVersion)).all()}
        assert job.result["version"] in rows, "the job registered its version"
        (correction,) = s.exec(select(Correction)).all()
        held_out = correction.id in job.result["training_set"]["holdout_correction_ids"]
        assert correction.used_in_version == (None if held_out else job.result["version"])


async def test_stopping_a_console_retrain_cancels_the_job_and_registers_nothing(job_console):
    settings, service, store = job_console
    app = create_app(settings, service, store, supervisor=True, supervisor_key=new_key(store, "boss", "supervisor"))
    async with app.run_test(size=(120, 34)) as pilot:
        pane, form = await open_retrain(app, pilot)
        for name, value in {"method": "prompt", "learning_rate": 0.3, "epochs": 50, "batch_size": 1,
                            "num_virtual_tokens": 4, "val_fraction": 0.0, "early_stopping_patience": 0}.items():
            form.set_value(name, value)
        await pilot.press("ctrl+s")
        plot = pane.query_one(LossPlot)
        await wait_until(pilot, lambda: plot.losses)
        assert pane.running, "training started and reported progress"
        await pilot.press("ctrl+b")
        await wait_until(pilot, lambda: not pane.running)
        await settle(pilot)
        assert pane.job.state == "cancelled"
        assert "nothing was registered" in str(pane.query_one("#retrain-status").render())
        assert len(plot.losses) < 600, "stopped long before 50 epochs of 12 updates"
    assert not (settings.models_dir / pane.job.version).exists(), "no artifact was kept"
    with store.session() as s:
        assert s.exec(select(ModelVersion)).all() == []


def version_copy(artifact, models_dir, name: str):
    """The tiny artifact copied under another version name (as a retrain would have saved it)."""
    import shutil

    from tuning.artifacts import update_metadata

    path = models_dir / name
    shutil.copytree(artifact, path)
    update_metadata(path, version=name)
    return path


async def test_promote_switches_the_running_model_and_rollback_returns(tiny_settings, tiny_service, store, tiny_artifact):
    from router import store as store_api

    first = version_copy(tiny_artifact, tiny_settings.models_dir, "v-one")
    second = version_copy(tiny_artifact, tiny_settings.models_dir, "v-two")
    with store.session() as s:
        store_api.register_model_version(s, first, metrics={"exact_set_accuracy": 0.5})
        store_api.promote(s, "v-one", who="test")
        store_api.register_model_version(s, second, metrics={"exact_set_accuracy": 0.7})
    app = create_app(tiny_settings, tiny_service, store, supervisor=True,
                     supervisor_key=new_key(store, "boss", "supervisor"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        table = app.screen.query_one("#models-table")
        assert [table.get_row(k)[:3] for k in table.rows] == [["v-two", "candidate", "0.700"], ["v-one", "active", "0.500"]]
        table.move_cursor(row=0)
        await pilot.press("p")
        await settle(pilot)
        assert [table.get_row(k)[1] for k in table.rows] == ["active", "retired"]
        assert tiny_service.tuned_path() == second.resolve()
        assert tiny_service.tuned_model.version == "v-two"
        await pilot.press("b")
        await settle(pilot)
        assert [table.get_row(k)[1] for k in table.rows] == ["retired", "active"]
        assert tiny_service.tuned_path() == first.resolve()
        assert tiny_service.tuned_model.version == "v-one"
