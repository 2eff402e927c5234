"""Where a retraining job starts: the active late prompt, continued, unless the caller asks for a fresh tune.

A retrain adds the supervisors' corrections to what the served model already knows. When the active version
is a late prompt tuned without retrieved context, the job starts from its keys/values (`init_prompt`), at its
prompt layer and length, and by default runs CONTINUE_EPOCHS epochs at CONTINUE_LEARNING_RATE (the learning rate
of the continuations that made r5 and r5m), distilling from the teacher the continued prompt was tuned with when its
triage.json names one that is still there (the corrections themselves are taught by their labels alone: the
teacher never saw them), and training on its recorded more-data files too (`recorded_more_data`; an example there
that a correction contradicts is left out). Measured as `triage tune` runs from r5m on 1221 held-out complaints:
the training file alone 1060 right, with the teacher 1062, with the teacher and the more-data files 1080 (r5m 1081;
README, "Where a job starts"). A fresh late prompt on the training file alone has
neither the teacher nor the extra data the shipped one learned from and routes far worse, and a fresh LoRA
adapter is a second model copy. Any other active version (a LoRA adapter, an ensemble, a context-tuned prompt),
a job that names another method, or start_from="scratch": the job tunes from its parameters alone, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlmodel import Session

StartFrom = Literal["active", "scratch"]
START_FROM = ("active", "scratch")
CONTINUE_LEARNING_RATE = 0.02
CONTINUE_EPOCHS = 2
SHAPE = ("prompt_layer", "num_virtual_tokens")  # what must match the prompt continued


def active_artifact(settings, session: Session) -> Path:
    """What a job is compared with and continues: the registry's active version, else what serving falls back to."""
    from router import store
    from router.settings import DEFAULT_TUNED

    row = store.active_model_version(session)
    if row is not None:
        return Path(row.artifact_path)
    return Path(settings.tuned_model or DEFAULT_TUNED)


def read_recipe(active: Path) -> dict[str, Any] | None:
    """The active artifact's triage.json, or None when it has none that can be read (then nothing is continued)."""
    from router.artifact import ArtifactError, read_metadata

    try:
        return read_metadata(active)
    except (ArtifactError, OSError):
        return None


def continuable(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """The recorded parameters of the artifact whose triage.json is `metadata`, if a job can continue it (a late
    prompt without context)."""
    metadata = metadata or {}
    parameters = metadata.get("parameters") or {}
    if metadata.get("method") != "late-prompt" or parameters.get("context", "none") != "none":
        return None
    if any(not isinstance(parameters.get(name), int) for name in SHAPE):
        return None
    return parameters


def recorded_teachers(recorded: dict[str, Any], active: Path) -> dict[str, Any]:
    """The continued prompt's distillation teacher(s) and weight as its triage.json names them, when they are still
    there (`router.artifact.recorded_file_places`); {} when it had none or one is gone."""
    from router.artifact import recorded_file_places

    out: dict[str, Any] = {}
    for name in ("teacher", "cross_teacher"):
        value = recorded.get(name)
        if not value:
            continue
        found = next((p for p in recorded_file_places(value, active) if (p / "adapter_config.json").is_file()), None)
        if found is None:
            return {}
        out[name] = str(found)
    if out:
        out["teacher_weight"] = recorded.get("teacher_weight", 0.5)
    return out


def recorded_more_data(metadata: dict[str, Any] | None, active: Path) -> list[str]:
    """The more-data files (training split only) that the continued late prompt's triage.json (`metadata`) records,
    where each is still there unchanged (same sha256; looked for as `router.artifact.recorded_file_places` says); a
    file that is gone or changed is left out."""
    from router.artifact import recorded_file_places
    from router.dataset import file_sha256

    found = []
    for entry in ((metadata or {}).get("training_data") or {}).get("more") or []:
        path = next((p for p in recorded_file_places(entry.get("path", ""), active) if p.is_file()), None)
        if path is not None and file_sha256(path) == entry.get("sha256"):
            found.append(str(path))
    return found


def job_parameters(given: dict[str, Any], active: Path, start_from: StartFrom = "active",
                   metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters a job runs with: `given` (already validated), continuing `active` when it can (`metadata`: its
    triage.json when the caller has read it).

    ParameterError when `given` asks for a late prompt of another shape than the one it would continue."""
    from tuning.jobs.store import ParameterError

    if start_from not in START_FROM:
        raise ParameterError([("start_from", f"must be one of {', '.join(START_FROM)} (got {start_from!r})")])
    if start_from == "scratch" or given.get("method") not in (None, "late-prompt"):
        return dict(given)
    recorded = continuable(read_recipe(active) if metadata is None else metadata)
    if recorded is None:
        return dict(given)
    for name in SHAPE:
        if given.get(name) is not None and given[name] != recorded[name]:
            raise ParameterError([(name, f"the active version ({active}) is a late prompt with {name} "
                                         f"{recorded[name]}, which a retrain continues: leave {name} out, or start "
                                         "from scratch (start_from=scratch, `triage retrain start --from-scratch`)")])
    defaults = {"method": "late-prompt", "learning_rate": CONTINUE_LEARNING_RATE, "epochs": CONTINUE_EPOCHS,
                **{name: recorded[name] for name in SHAPE}, **recorded_teachers(recorded, active)}
    given = {k: v for k, v in given.items() if v is not None}
    return {**defaults, **given, "init_prompt": str(active)}


def lost_recipe(active: Path, parameters: dict[str, Any], more_data: list[str],
                metadata: dict[str, Any] | None = None) -> list[str]:
    """What the continued prompt's triage.json (`metadata`, read from `active` when not given) records that the job
    could not find (it goes on without it)."""
    metadata = (read_recipe(active) if metadata is None else metadata) or {}
    recorded = metadata.get("parameters") or {}
    lost = [f"its recorded {name} {recorded[name]} was not found, so it does not distil"
            for name in ("teacher", "cross_teacher") if recorded.get(name) and not parameters.get(name)]
    entries = (metadata.get("training_data") or {}).get("more") or []
    if len(more_data) < len(entries):
        lost.append(f"{len(entries) - len(more_data)} of its {len(entries)} more-data files are missing or changed")
    return lost


def describe_start(parameters: dict[str, Any], more_data: list[str] | None = None, lost: list[str] = ()) -> str:
    """One line for the job's record: where its training started (and what of its recipe it could not find)."""
    if parameters.get("init_prompt"):
        teacher = f", distilling from its teacher {parameters['teacher']}" if parameters.get("teacher") else ""
        more = f", with its more-data files {', '.join(more_data)}" if more_data else ""
        missing = f" ({'; '.join(lost)})" if lost else ""
        return f"continues the active late prompt {parameters['init_prompt']}{teacher}{more}{missing}"
    return f"a fresh {parameters.get('method') or 'lora'} tune"


@dataclass
class JobStart:
    """What a job runs with: its parameters, the continued prompt's more-data files, and one line saying so."""

    parameters: dict[str, Any]
    more_data: list[str]
    description: str


def plan_start(given: dict[str, Any], active: Path, start_from: StartFrom = "active") -> JobStart:
    """`job_parameters`, plus the more-data files of the prompt it continues and what of its recipe is lost."""
    metadata = read_recipe(active) if start_from == "active" else None  # read once for the three steps below
    parameters = job_parameters(given, active, start_from, metadata)
    if not parameters.get("init_prompt"):
        return JobStart(parameters, [], describe_start(parameters))
    more = recorded_more_data(metadata, active)
    return JobStart(parameters, more, describe_start(parameters, more, lost_recipe(active, parameters, more, metadata)))


def active_change_note(result: dict[str, Any]) -> str | None:
    """A finished job's note when the active version changed between its creation and its run (a promotion or
    rollback by hand): it continued the version active when it was created and was gated against the one active
    when it ran, which is what a promotion would replace."""
    if not result.get("active_changed"):
        return None
    return (f"the active version changed while the job waited: it continued {result.get('continued')} (active when "
            f"the job was created) and was compared with {result.get('compared_with')} (active when it ran)")


__all__ = ["CONTINUE_EPOCHS", "CONTINUE_LEARNING_RATE", "START_FROM", "JobStart", "StartFrom", "active_artifact",
           "active_change_note",
           "continuable", "describe_start", "job_parameters", "plan_start", "lost_recipe", "read_recipe", "recorded_more_data", "recorded_teachers"]
