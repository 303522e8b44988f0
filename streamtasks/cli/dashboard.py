"""``streamtasks dashboard APP``: the web dashboard (a thin layer over
:mod:`streamtasks.dashboard`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from streamtasks.cli.common import AppArg, fail, require_broker
from streamtasks.errors import ConfigError, StreamtasksError

__all__ = ["dashboard"]

_EXTRA_MODULES = ("starlette", "jinja2", "uvicorn", "multipart", "python_multipart")


def dashboard(
    app: AppArg,
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            help="Token for actions (redrive); default $STREAMTASKS_DASHBOARD_TOKEN, "
            "else one is made and printed."
        ),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Hide and refuse every action.")
    ] = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of the local result cache (default: next to the result store)."),
    ] = None,
) -> None:
    """Serve the web dashboard: queues, lag, tasks, failures, dead letters, schedules, workers.

    Example: streamtasks dashboard myproj.tasks:app --port 8765
    """
    from streamtasks._loading import load_app
    from streamtasks.dashboard import EXTRA_HINT
    from streamtasks.dashboard.security import TOKEN_ENV, check_bind

    try:
        from streamtasks.dashboard.server import serve
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in _EXTRA_MODULES:
            fail(ConfigError(f"{EXTRA_HINT} ({exc.name} is missing)"))
        raise
    try:
        check_bind(host, token or os.environ.get(TOKEN_ENV))
        the_app = load_app(app)
        require_broker(the_app)
        serve(
            the_app,
            host=host,
            port=port,
            token=token,
            read_only=read_only,
            cache_dir=cache_dir,
            say=lambda line: typer.echo(line, err=True),
        )
    except StreamtasksError as exc:
        fail(exc)
