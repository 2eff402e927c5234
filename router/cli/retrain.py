"""triage retrain: retrain on the training file plus every correction, in a background job."""

from __future__ import annotations

import getpass
import sys
import time

import click

from router.cli.common import get_engine, get_settings
from router.cli.db import db_errors
from tuning.config import field_default as _default

POLL_S = 0.5


def _session(engine):
    from sqlmodel import Session

    return Session(engine, expire_on_commit=False)


def _line(job: dict) -> str:
    p = job.get("progress") or {}
    text = f"job {job['id']} {job['state']}: {job['phase']}"
    if job["phase"] == "training" and p.get("step"):
        text += (f" · epoch {p.get('epoch')}/{p.get('epochs')} · step {p['step']}/{p.get('steps_total')}"
                 f" · loss {p.get('loss', 0):.4f} · ETA {p.get('eta_s') or 0:.0f}s")
    return text


def _show_end(job: dict) -> None:
    from tuning.gate import format_decision
    from tuning.plots import loss_terminal

    result = job.get("result") or {}
    if job["state"] == "succeeded":
        if result.get("epoch_losses"):
            validation = result.get("val_losses") or []  # null where there was no validation set
            if not all(isinstance(v, (int, float)) for v in validation):
                validation = []
            click.echo(loss_terminal(result["epoch_losses"], validation), err=True)
        ts = result.get("training_set", {})
        click.echo(f"trained on {ts.get('n_train')} examples ({len(ts.get('trained_correction_ids', []))} new "
                   f"corrections, {ts.get('n_holdout')} held out for evaluation)")
        click.echo(format_decision(result.get("gate", {})))
        status = "active" if result.get("promoted") else "candidate"
        click.echo(f"{result.get('version')} registered as {status}: {result.get('artifact_path')}")
    else:
        click.echo(f"job {job['id']} {job['state']}: {job.get('error')}", err=True)


def _follow(engine, settings, job_id: int) -> int:
    from tuning.jobs import store as jobs

    last, tty = "", sys.stderr.isatty()
    try:
        while True:
            with _session(engine) as s:
                jobs.reap(settings, s)
                job = jobs.public(settings, jobs.get_job(s, job_id), with_curve=False).model_dump(mode="json")
            line = _line(job)
            if line != last:
                click.echo(("\r" + line + "   ") if tty else line, err=True, nl=not tty)
                last = line
            if job["state"] not in ("queued", "running"):
                if tty:
                    click.echo("", err=True)
                _show_end(job)
                return 0 if job["state"] == "succeeded" else 1
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        click.echo(f"\nstopped following; job {job_id} keeps running (triage retrain --cancel {job_id} stops it)",
                   err=True)
        return 130


@click.command()
@click.option("--method", type=click.Choice(["prompt", "prefix", "lora"]), default=None, help=f"Default {_default('method')}.")
@click.option("--init", "init", type=click.Choice(["text", "random"]), default=None, help="Initialization (default text).")
@click.option("--num-virtual-tokens", type=int, default=None, help=f"Length of the soft prompt (1-200, default {_default('num_virtual_tokens')}).")
@click.option("--batch-size", type=int, default=None, help=f"1-16 (default {_default('batch_size')}).")
@click.option("--epochs", type=int, default=None, help=f"1-50 (default {_default('epochs')}).")
@click.option("--learning-rate", type=float, default=None, help="0.01-0.5 for prompt/prefix, 0.00001-0.01 for LoRA.")
@click.option("--accumulation-steps", type=int, default=None, help=f"1-128 (default {_default('accumulation_steps')}).")
@click.option("--val-fraction", type=float, default=None, help="Share held out to pick the best epoch (0-0.5).")
@click.option("--patience", "early_stopping_patience", type=int, default=None, help="Early-stopping patience in epochs.")
@click.option("--lora-rank", type=int, default=None, help=f"LoRA rank (1-128, default {_default('lora_rank')}).")
@click.option("--lora-alpha", type=int, default=None, help=f"LoRA scaling numerator (1-512, default {_default('lora_alpha')}).")
@click.option("--seed", type=int, default=None)
@click.option("--base-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Training file the corrections are applied to (default: TRIAGE_SHOTS_FILE or data/complaints.jsonl).")
@click.option("--no-promote", is_flag=True, help="Keep the result a candidate whatever the evaluation gate says.")
@click.option("-f", "--follow", is_flag=True, help="Show progress until the job ends (Ctrl-C stops following, not the job).")
@click.option("--attach", "attach_id", type=int, default=None, metavar="ID", help="Follow a job that is already running.")
@click.option("--cancel", "cancel_id", type=int, default=None, metavar="ID", help="Stop job ID at its next step.")
@click.option("--list", "list_jobs", is_flag=True, help="Recent jobs and how they ended.")
@click.option("--who", default=None, help="Recorded as who started the job (default: cli:<user>).")
def retrain(base_file, no_promote, follow, attach_id, cancel_id, list_jobs, who, **params):
    """Retrain on the training file plus the supervisors' corrections, in its own process.

    The result is evaluated against the active model on the dev file and on held-out
    corrections, registered as a candidate, and promoted only when it is not worse.
    One job runs at a time. Exit status: 0 started (or, with --follow, succeeded);
    1 failed, cancelled or refused; 2 bad parameters.
    """
    from tuning.jobs import store as jobs
    from tuning.jobs.service import start_job

    settings = get_settings()
    with db_errors():
        engine = get_engine()
        with _session(engine) as s:
            for dead in jobs.reap(settings, s):
                click.echo(f"job {dead.id} marked failed: {dead.error}", err=True)
        if list_jobs:
            with _session(engine) as s:
                recent = jobs.list_jobs(s, 20)
                if not recent:
                    click.echo("no tuning jobs yet: triage retrain --follow starts one", err=True)
                for job in recent:
                    end = job.result.get("version", "") if job.state == "succeeded" else (job.error or "")
                    click.echo(f"{job.id:>4}  {job.state:<10} {job.who:<16} {job.created:%Y-%m-%d %H:%M}  {end}")
            return
        if cancel_id is not None:
            with _session(engine) as s:
                job = jobs.request_cancel(s, settings, cancel_id)
            click.echo(f"job {job.id}: cancel requested; it stops at its next step and registers nothing")
            return
        if attach_id is not None:
            with _session(engine) as s:
                jobs.get_job(s, attach_id)
            raise SystemExit(_follow(engine, settings, attach_id))
        given = {k: v for k, v in params.items() if v is not None}
        try:
            job = start_job(settings, engine, given, who=who or f"cli:{getpass.getuser()}",
                            auto_promote=not no_promote, base_file=base_file, watch_exit=False,
                            owned=False)  # detached: the job outlives this command
        except jobs.ParameterError as exc:
            raise click.BadParameter(str(exc), param_hint="tuning parameters") from None
    if job.state == "failed":
        click.echo(f"triage: error: job {job.id}: {job.error}", err=True)
        raise SystemExit(1)
    click.echo(f"started tuning job {job.id} (pid {job.pid}); it will register {job.version}")
    if follow:
        raise SystemExit(_follow(engine, settings, job.id))
    click.echo(f"follow it: triage retrain --attach {job.id}   cancel it: triage retrain --cancel {job.id}", err=True)
