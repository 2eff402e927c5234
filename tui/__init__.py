"""The triage terminal console (Textual): agent and supervisor views over the service layer."""


def create_app(*args, **kwargs):
    """Build the console app (see tui.app.create_app)."""
    from tui.app import create_app as factory

    return factory(*args, **kwargs)
