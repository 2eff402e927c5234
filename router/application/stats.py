"""What the stored data says right now, for monitoring: tickets per department, review counts, jobs by state."""

from __future__ import annotations

import json

from sqlalchemy import Engine, String, cast, func
from sqlmodel import Session, select

from router.db.models import Ticket
from router.departments import DEPARTMENTS
from tuning.jobs.records import TuningJob


def stored_counts(database: Engine) -> dict:
    """{"departments": {name: tickets}, "review": {needs_review: tickets}, "jobs": {state: jobs}}."""
    with Session(database) as session:
        label_sets = session.exec(select(cast(Ticket.departments, String), func.count())
                                  .group_by(cast(Ticket.departments, String))).all()
        review = dict(session.exec(select(Ticket.needs_review, func.count()).group_by(Ticket.needs_review)).all())
        jobs = dict(session.exec(select(TuningJob.state, func.count()).group_by(TuningJob.state)).all())
    per_department = dict.fromkeys(DEPARTMENTS, 0)
    for text, count in label_sets:
        for name in json.loads(text):
            per_department[name] = per_department.get(name, 0) + count
    return {"departments": per_department, "review": review, "jobs": jobs}
