"""``streamtasks topics ...``: an app's Kafka topics (a thin layer over ``App.apply_topics``)."""

from __future__ import annotations

import typer

from streamtasks.cli.common import AppArg, fail
from streamtasks.errors import StreamtasksError

__all__ = ["topics_cli"]

topics_cli = typer.Typer(help="Manage the app's Kafka topics.", no_args_is_help=True)


@topics_cli.command("apply")
def topics_apply(app: AppArg) -> None:
    """Create APP's topics if missing (idempotent; existing topics are left as they are).

    Example: streamtasks topics apply myproj.tasks:app
    """
    from streamtasks._loading import load_app
    from streamtasks.kafka import clients

    try:
        the_app = load_app(app)
        outcome = the_app.apply_topics()
    except StreamtasksError as exc:
        fail(exc)
    for name, state in sorted(outcome.items()):
        typer.echo(f"{state:8} {name}")
    problems = clients.partition_mismatches(outcome, the_app.topic_specs())
    if problems:  # each was logged with its fix by apply_topics
        typer.secho(
            f"error: {len(problems)} topic(s) exist with another partition count than the "
            "app's config; the warnings above say how to fix them",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
