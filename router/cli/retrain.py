"""triage retrain: retraining jobs on the training file plus every correction (start, list, follow, cancel)."""

from __future__ import annotations

import getpass
import sys

import click

from router.application.retraining import CONTINUE_EPOCHS, CONTINUE_LEARNING_RATE, LR_RANGES, METHODS, stage_line
from router.application.retraining import field_default as _default
from router.cli.common import get_application
from router.cli.db import db_errors


def _line(job) -> str:
    p = job.progress or {}
    text = f"job {job.id} {job.state}: {job.phase}"
    if job.phase == "training" and stage_line(p):
        text += f" · {stage_line(p)}"
    elif job.phase == "training" and p.get("step"):
        text += (f" · epoch {p.get('epoch')}/{p.get('epochs')} · step {p['step']}/{p.get('steps_total')}"
                 f" · loss {p.get('loss', 0):.4f} · ETA {p.get('eta_s') or 0:.0f}s")
    return text


def _show_end(job) -> None:
    from router.application.retraining import active_change_note, format_decision, loss_terminal

    result = job.result or {}
    if job.state == "succeeded":
        if result.get("epoch_losses"):
            validation = result.get("val_losses") or []  # null where there was no validation set
            if not all(isinstance(v, (int, float)) for v in validation):
                validation = []
            click.echo(loss_terminal(result["epoch_losses"], validation), err=True)
        ts = result.get("training_set", {})
        more = result.get("more_data") or {}
        extra = f", plus {sum(more.values())} from the continued prompt's more-data files" if more else ""
        click.echo(f"trained on {ts.get('n_train')} examples ({len(ts.get('trained_correction_ids', []))} new "
                   f"corrections, {ts.get('n_holdout')} held out for evaluation){extra}")
        click.echo(format_decision(result.get("gate", {})))
        note = active_change_note(result)
        if note:
            click.echo(f"note: {note}")
        status = "active" if result.get("promoted") else "candidate"
        click.echo(f"{result.get('version')} registered as {status}: {result.get('artifact_path')}")
    else:
        click.echo(f"job {job.id} {job.state}: {job.error}", err=True)


def _retraining():
    """The invocation's retraining jobs; says which jobs were found dead (and are now marked failed)."""
    core = get_application()
    core.database  # noqa: B018 - opening it reaps dead workers' jobs
    for dead in core.reaped_jobs:
        click.echo(f"job {dead.id} marked failed: {dead.error}", err=True)
    core.reaped_jobs = []
    return core.retraining


def _follow(job_id: int) -> int:
    retraining = _retraining()
    last, tty, job = "", sys.stderr.isatty(), None
    try:
        for job in retraining.follow(job_id):
            line = _line(job)
            if line != last:
                click.echo(("\r" + line + "   ") if tty else line, err=True, nl=not tty)
                last = line
    except KeyboardInterrupt:
        click.echo(f"\nstopped following; job {job_id} keeps running (triage retrain cancel {job_id} stops it)",
                   err=True)
        return 130
    if tty:
        click.echo("", err=True)
    _show_end(job)
    return 0 if job.state == "succeeded" else 1


@click.group()
def retrain() -> None:
    """Retrain on the training file plus the supervisors' corrections, in a job of its own process.

    The result is evaluated against the active model on the dev file and on held-out corrections,
    registered as a candidate, and promoted only when it is not worse. One job runs at a time.
    """


@retrain.command(name="list")
def list_() -> None:
    """Recent jobs and how they ended."""
    with db_errors():
        recent = _retraining().list(20)
    if not recent:
        click.echo("no tuning jobs yet: triage retrain start --follow starts one", err=True)
    for job in recent:
        end = job.result.get("version", "") if job.state == "succeeded" else (job.error or "")
        click.echo(f"{job.id:>4}  {job.state:<10} {job.who:<16} {job.created:%Y-%m-%d %H:%M}  {end}")


@retrain.command()
@click.argument("job_id", type=int)
def cancel(job_id: int) -> None:
    """Stop job JOB_ID at its next step; it registers nothing."""
    with db_errors():
        job = _retraining().cancel(job_id)
    click.echo(f"job {job.id}: cancel requested; it stops at its next step and registers nothing")


@retrain.command()
@click.argument("job_id", type=int)
def follow(job_id: int) -> None:
    """Show job JOB_ID's progress until it ends, then the evaluation gate (Ctrl-C stops following, not the job).
    Exit status 0 when it succeeded, 1 when it failed or was cancelled."""
    with db_errors():
        _retraining().get(job_id)
        raise SystemExit(_follow(job_id))


@retrain.command()
@click.option("--method", type=click.Choice(METHODS), default=None,
              help="Default: the active version's method when it is a late prompt (continued), else "
                   f"{_default('method')}.")
@click.option("--init", "init", type=click.Choice(["text", "random"]), default=None, help="Initialization (default text).")
@click.option("--num-virtual-tokens", type=int, default=None, help=f"Length of the soft prompt (1-200, default {_default('num_virtual_tokens')}).")
@click.option("--batch-size", type=int, default=None, help=f"1-16 (default {_default('batch_size')}).")
@click.option("--epochs", type=int, default=None,
              help=f"1-50 (default {CONTINUE_EPOCHS} when the job continues the active late prompt, else "
                   f"{_default('epochs')}).")
@click.option("--learning-rate", type=float, default=None,
              help="Per method: " + ", ".join(f"{m} {lo:g}-{hi:g}" for m, (lo, hi) in LR_RANGES.items())
                   + f" (default {CONTINUE_LEARNING_RATE:g} when the job continues the active late prompt).")
@click.option("--accumulation-steps", type=int, default=None, help=f"1-128 (default {_default('accumulation_steps')}).")
@click.option("--val-fraction", type=float, default=None, help="Share held out to pick the best epoch (0-0.5).")
@click.option("--patience", "early_stopping_patience", type=int, default=None, help="Early-stopping patience in epochs.")
@click.option("--lora-rank", type=int, default=None, help=f"LoRA rank (1-128, default {_default('lora_rank')}).")
@click.option("--lora-alpha", type=int, default=None, help=f"LoRA scaling numerator (1-512, default {_default('lora_alpha')}).")
@click.option("--seed", type=int, default=None)
@click.option("--base-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Training file the corrections are applied to (default: TRIAGE_SHOTS_FILE or data/complaints.jsonl).")
@click.option("--no-promote", is_flag=True, help="Keep the result a candidate whatever the evaluation gate says.")
@click.option("--from-scratch", is_flag=True,
              help="Tune afresh from these parameters (LoRA unless --method says otherwise). Without it, when the "
                   "active version is a late prompt the job continues it with its recipe: same layer and length, its "
                   "recorded teacher and more-data files, 2 epochs at learning rate 0.02 unless given.")
@click.option("-f", "--follow", "follow_it", is_flag=True,
              help="Show progress until the job ends (Ctrl-C stops following, not the job).")
@click.option("--who", default=None, help="Recorded as who started the job (default: cli:<user>).")
def start(base_file, no_promote, from_scratch, follow_it, who, **params):
    """Start a retraining job (detached: it outlives this command).

    Exit status: 0 started (or, with --follow, succeeded); 1 failed, cancelled or refused; 2 bad parameters.
    """
    from router.application import ParameterError

    given = {k: v for k, v in params.items() if v is not None}
    with db_errors():
        try:
            job = _retraining().start(given, who=who or f"cli:{getpass.getuser()}",
                                                     auto_promote=not no_promote, base_file=base_file, detached=True,
                                     start_from="scratch" if from_scratch else "active")
        except ParameterError as exc:
            raise click.BadParameter(str(exc), param_hint="tuning parameters") from None
    if job.state == "failed":
        click.echo(f"triage: error: job {job.id}: {job.error}", err=True)
        raise SystemExit(1)
    click.echo(f"started tuning job {job.id} (pid {job.pid}): {job.options.get('start', 'a fresh tune')}; it will "
               f"register {job.version}")
    if follow_it:
        raise SystemExit(_follow(job.id))
    click.echo(f"follow it: triage retrain follow {job.id}   cancel it: triage retrain cancel {job.id}", err=True)
