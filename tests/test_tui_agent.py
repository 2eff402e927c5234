"""The agent view on the tiny model: route a complaint, read the badges and the comparison, correct it."""

from __future__ import annotations

import pytest
from sqlmodel import select

from router.db.models import Correction, Ticket
from tests.tui_helpers import make_store, route, settle
from tui.app import create_app
from tui.widgets.comparison import ComparisonTable
from tui.widgets.complaint_input import ComplaintInput
from tui.widgets.department_board import DepartmentBadge, DepartmentBoard

pytestmark = pytest.mark.anyio

COMPLAINT = "Only 3 of the 4 chairs were in the delivery and the box was crushed."


def selected_badges(app) -> list[str]:
    return [b.department for b in app.screen.query(DepartmentBadge) if b.has_class("-selected")]


async def test_routing_shows_badges_and_every_strategy(tiny_settings, tiny_service):
    app = create_app(tiny_settings, tiny_service, make_store(tiny_settings))
    async with app.run_test(size=(80, 24)) as pilot:
        await route(pilot, COMPLAINT)
        expected = {s: tiny_service.route(COMPLAINT, s) for s in ("tuned", "zero-shot", "multi-shot")}
        assert selected_badges(app) == expected["tuned"].departments
        for badge in app.screen.query(DepartmentBadge):
            assert f"{expected['tuned'].confidence[badge.department]:.0%}" in badge.render()
        rows = app.screen.query_one(ComparisonTable).row_values()
        assert list(rows) == ["tuned", "zero-shot", "multi-shot"]
        for key, routing in expected.items():
            assert rows[key][1] == routing.label
            assert rows[key][2] == str(routing.input_tokens)
            assert rows[key][3] == str(routing.generated_tokens)
        assert rows["multi-shot"][2] != rows["tuned"][2], "tuned reads far fewer input tokens"
        marker = app.screen.query_one("#review-marker")
        assert marker.has_class("-on") == expected["tuned"].needs_review
        assert isinstance(app.screen.focused, DepartmentBoard), "after routing the keys 1-7 act on the badges"


async def test_multiline_complaint_and_empty_complaint(tiny_settings, tiny_service):
    app = create_app(tiny_settings, tiny_service, make_store(tiny_settings))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter")
        await settle(pilot)
        assert app.session.tickets == [], "an empty box routes nothing"
        assert any("empty" in n.message for n in app._notifications)
        box = app.screen.query_one(ComplaintInput)
        box.focus()
        await pilot.press(*"first line", "ctrl+j", *"second line")
        assert box.text == "first line\nsecond line"
        await pilot.press("enter")
        await settle(pilot)
        assert app.session.tickets[0].text == "first line\nsecond line"


async def test_correction_is_stored_in_the_database(tiny_settings, tiny_service):
    store = make_store(tiny_settings)
    app = create_app(tiny_settings, tiny_service, store)
    async with app.run_test(size=(80, 24)) as pilot:
        await route(pilot, COMPLAINT)
        routed = selected_badges(app)
        want = ["Warehouse", "Packaging"] if routed != ["Warehouse", "Packaging"] else ["Packaging"]
        for index, name in enumerate(("Planning", "Development", "Service", "Warehouse", "L3", "Packaging", "Marketing"), 1):
            if (name in routed) != (name in want):
                await pilot.press(str(index))
        assert selected_badges(app) == want
        await pilot.press("r", *"two items short", "enter")
        await settle(pilot)
        ticket = app.session.tickets[0]
        assert ticket.status == "corrected" and ticket.final == want
    with store.session() as s:
        rows = s.exec(select(Correction)).all()
        assert [(r.departments, r.why, r.ticket_id) for r in rows] == [(want, "two items short", ticket.ticket_id)]
        stored = s.get(Ticket, ticket.ticket_id)
        assert stored.text == COMPLAINT and stored.departments == want and not stored.needs_review


async def test_accept_keeps_the_routing_and_leaves_no_correction(tiny_settings, tiny_service):
    store = make_store(tiny_settings)
    app = create_app(tiny_settings, tiny_service, store)
    async with app.run_test(size=(80, 24)) as pilot:
        await route(pilot, COMPLAINT)
        await pilot.press("a")
        await settle(pilot)
        ticket = app.session.tickets[0]
        assert ticket.status == "accepted"
    with store.session() as s:
        assert s.exec(select(Correction)).all() == []
        assert s.get(Ticket, ticket.ticket_id).needs_review is False


async def test_history_search_and_reopen(tiny_settings, tiny_service):
    app = create_app(tiny_settings, tiny_service, make_store(tiny_settings))
    async with app.run_test(size=(80, 24)) as pilot:
        await route(pilot, "The kettle I want is out of stock.")
        await pilot.press("n")
        await route(pilot, "The agent was rude and hung up on me.")
        await pilot.press("h")
        panel = app.screen.query_one("#history-panel")
        assert panel.shown_numbers() == [2, 1]
        await pilot.press(*"kettle")
        assert panel.shown_numbers() == [1]
        await pilot.press("enter", "enter")
        await settle(pilot)
        assert app.screen.ticket.number == 1
        assert app.screen.query_one(ComplaintInput).text == "The kettle I want is out of stock."


async def test_rag_adds_grounded_rows_and_shows_the_cited_passages(tiny_settings, tiny_base, tmp_path):
    from rag.grounding import build_grounder
    from rag.ingest import ingest_policies
    from router.service import RouterService
    from tests.rag_helpers import small_corpus
    from tui.widgets.evidence import EvidencePanel

    ingest_policies(tiny_settings, small_corpus(tmp_path / "policies"))
    service = RouterService(tiny_settings, base=tiny_base, grounder=build_grounder(tiny_settings))
    app = create_app(tiny_settings, service, make_store(tiny_settings))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        assert "RAG on" in str(app.screen.query_one("#rag-state").render())
        await route(pilot, "Where are the 2 extra sets of sheets that are supposed to come with my order?")
        rows = app.screen.query_one(ComparisonTable).row_values()
        assert list(rows) == ["tuned+rag", "zero-shot+rag", "multi-shot+rag", "tuned", "zero-shot", "multi-shot"]
        assert all(cells[1] != "…" for cells in rows.values()), "every row filled in"
        assert int(rows["tuned+rag"][2]) > int(rows["tuned"][2]), "the policy passages are in the prompt"
        primary = app.session.tickets[0].primary
        assert primary.rag and primary.passages
        await pilot.press("e")
        shown = [str(s.render()) for s in app.screen.query_one(EvidencePanel).query(".passage")]
        assert len(shown) == len(primary.passages)
        for passage, text in zip(primary.passages, shown):
            assert passage.title in text and f"score {passage.score:.2f}" in text


async def test_a_strategy_that_cannot_run_says_why_and_the_others_still_run(tiny_settings, tiny_base, tmp_path):
    from router.service import RouterService

    settings = tiny_settings.model_copy(update={"tuned_model": tmp_path / "no-such-artifact"})
    service = RouterService(settings, base=tiny_base)
    app = create_app(settings, service, make_store(settings))
    async with app.run_test(size=(80, 24)) as pilot:
        await route(pilot, COMPLAINT)
        rows = app.screen.query_one(ComparisonTable).row_values()
        assert rows["tuned"][1].startswith("failed:") and "no-such-artifact" in rows["tuned"][1]
        assert rows["zero-shot"][1] == service.route(COMPLAINT, "zero-shot").label
        assert rows["multi-shot"][1] == service.route(COMPLAINT, "multi-shot").label
        assert "not saved" in str(app.screen.query_one("#ticket-info").render())
        assert app.session.tickets[0].ticket_id is None


async def test_the_evidence_says_which_precedent_is_a_correction_and_of_which_ticket():
    from textual.app import App

    from router.results import Passage
    from tui.widgets.evidence import EvidencePanel

    class Host(App):
        def compose(self):
            yield EvidencePanel()

    passages = [Passage("p-1", "Service, Marketing", "My points were never credited.", 0.91, "precedent", "ticket-7",
                        corrected=True),
                Passage("p-2", "Marketing", "The sale price was not applied.", 0.8, "precedent", "complaints.jsonl:12")]
    async with Host().run_test(size=(80, 24)) as pilot:
        panel = pilot.app.query_one(EvidencePanel)
        panel.show(passages, rag=True, available=True)
        await pilot.pause()
        shown = [str(s.render()) for s in panel.query(".passage")]
    assert "Service, Marketing" in shown[0] and "correction · ticket-7" in shown[0]
    assert "precedent · complaints.jsonl:12" in shown[1] and "correction" not in shown[1]
