"""Model versions: register trained artifacts, promote one to active, roll back."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, col, select

from router.db.models import ModelVersion, utcnow
from router.store.errors import Conflict, InvalidInput, NotFound, add_unique, json_safe


def register_model_version(session: Session, artifact_path: str | Path, *, metrics: dict | None = None,
                           active_by: str | None = None) -> ModelVersion:
    """Add a tuned artifact (LoRA adapter or soft prompt) as a candidate version (active at once, promoted by `active_by`,
    when given: for the first version of an empty registry only).

    Its name is the artifact's own version (triage.json, else the directory name): the
    name every routing made with it records as model_version.
    """
    from router.artifact import ArtifactError, read_metadata

    path = Path(artifact_path).expanduser().resolve()
    try:
        meta = read_metadata(path)
    except ArtifactError as exc:
        raise InvalidInput(str(exc), "artifact_path") from exc
    name = meta.get("version") or path.name
    row = ModelVersion(version=name, artifact_path=str(path), meta=json_safe(meta),
                       metrics=json_safe(metrics if metrics is not None else _own_metrics(meta)))
    if active_by is not None:
        row.status, row.promoted_by, row.promoted_at = "active", active_by, utcnow()
    add_unique(session, row, f"model version {name!r} is already registered", "version")
    session.refresh(row)
    return row


def _own_metrics(meta: dict) -> dict:
    """The scores an artifact carries: a job's gate metrics, else `triage tune --dev`'s dev evaluation."""
    return dict(meta.get("metrics") or meta.get("dev_metrics") or {})


def list_model_versions(session: Session) -> list[ModelVersion]:
    """Every registered version, newest first."""
    return list(session.exec(select(ModelVersion).order_by(col(ModelVersion.id).desc())).all())


def get_model_version(session: Session, version: str) -> ModelVersion:
    row = session.exec(select(ModelVersion).where(ModelVersion.version == version)).first()
    if row is None:
        raise NotFound(f"no model version {version!r} (see GET /v1/models or `triage models list`)", "version")
    return row


def active_model_version(session: Session) -> ModelVersion | None:
    return session.exec(select(ModelVersion).where(ModelVersion.status == "active")).first()


def promote(session: Session, version: str, *, who: str) -> ModelVersion:
    """Make `version` the active one (the previous active version is retired), committed at once.

    Serving switches through router.application's ModelRegistry (loads the artifact first, then calls this).
    """
    row = get_model_version(session, version)
    previous = active_model_version(session)
    if previous is not None and previous.id != row.id:
        previous.status = "retired"
        session.add(previous)
    row.status, row.promoted_by, row.promoted_at = "active", who, utcnow()
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def rollback_target(session: Session, version: str) -> ModelVersion:
    """The version a rollback of the active `version` re-activates (Conflict when there is none)."""
    row = get_model_version(session, version)
    if row.status != "active":
        raise Conflict(f"model version {version!r} is {row.status}, not active: only the active version can be "
                       "rolled back", "version")
    earlier = session.exec(
        select(ModelVersion).where(ModelVersion.status == "retired", col(ModelVersion.promoted_at).is_not(None),
                                   ModelVersion.id != row.id)
        .order_by(col(ModelVersion.promoted_at).desc(), col(ModelVersion.id).desc())
    ).first()
    if earlier is None:
        raise Conflict(f"no earlier promoted version to roll back to from {version!r}", "version")
    return earlier


def rollback(session: Session, version: str, *, who: str) -> ModelVersion:
    """Retire the active `version` and re-activate the version that was active before it; returns that one."""
    current = get_model_version(session, version)
    earlier = rollback_target(session, version)
    current.status = "retired"
    earlier.status, earlier.promoted_by, earlier.promoted_at = "active", who, utcnow()
    session.add(current)
    session.add(earlier)
    session.commit()
    session.refresh(earlier)
    return earlier
