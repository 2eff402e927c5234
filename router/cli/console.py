"""triage console: the terminal console for agents and supervisors."""

from __future__ import annotations

import click

from router.cli.common import get_application


@click.command()
@click.option("--supervisor", is_flag=True, help="Open the supervisor view (review, training data, retrain, models).")
@click.option("--key", envvar="TRIAGE_CONSOLE_KEY", default=None,
              help="Supervisor API key (else the console asks for it when the supervisor view opens).")
@click.option("--theme", type=click.Choice(["dark", "light"]), default=None, help="Colour theme (Ctrl+T switches).")
def console(supervisor: bool, key: str | None, theme: str | None) -> None:
    """Route complaints interactively; correct them; retrain and promote models.

    \b
    triage console                 agent view: type a complaint, Enter routes it
    triage console --supervisor    supervisor view (asks for a supervisor key)
    """
    from router.application.errors import SchemaError
    from tui.app import create_app

    core = get_application()
    try:
        core.database  # noqa: B018 - the embedded SQLite database is created and migrated here on first use
    except SchemaError as exc:
        click.echo(f"triage: error: {exc} (the console saves tickets and corrections there)", err=True)
        raise SystemExit(1) from exc
    app = create_app(core.settings, core=core, supervisor=supervisor, supervisor_key=key,
                     theme={"dark": "textual-dark", "light": "textual-light"}.get(theme or ""))
    app.run()
