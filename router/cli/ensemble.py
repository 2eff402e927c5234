"""triage ensemble: several soft prompts for one task that route by vote, on the one frozen base model."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("members", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_path", type=click.Path(file_okay=False), required=True,
              help="Artifact directory to write (must not exist).")
@click.option("--version", required=True, help="Version name of the ensemble (registry, API `model`, --model).")
@click.option("--note", default=None, help="One line for the model card: how the members were chosen.")
def ensemble(members: tuple[str, ...], out_path: str, version: str, note: str | None) -> None:
    """Combine soft-prompt artifacts MEMBERS (best first) into a prompt ensemble.

    Every complaint is routed with each prompt in shared batches on the one base model, and a department is
    routed to when more than half of the prompts route to it (no majority at all: the first prompt's answer).
    A majority of the prompts runs first; the others only where it disagrees. Use an odd number of members.
    Members must be soft prompts (late-prompt, prompt, prefix) tuned on the same base model; LoRA adapters
    are refused. The members are copied into the artifact, which serves like any other
    (TRIAGE_TUNED_MODEL, --model, `triage models register`).
    """
    from tuning.ensemble import assemble_prompt_ensemble

    out = assemble_prompt_ensemble([Path(m) for m in members], Path(out_path), version, note)
    if len(members) % 2 == 0:
        click.echo(f"warning: {len(members)} members: an even vote can tie; a tie leaves a department out", err=True)
    click.echo(str(out))
