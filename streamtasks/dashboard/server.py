"""Serve the dashboard: check the bind address, start the tails, run uvicorn, stop the tails.

Invariant: a configuration mistake (a public address without a token) fails before anything
is started, with a message that says how to fix it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from streamtasks.dashboard.aggregates import Aggregates
from streamtasks.dashboard.security import TOKEN_ENV, Guard, check_bind
from streamtasks.dashboard.tails import Tails
from streamtasks.dashboard.web import create_app

if TYPE_CHECKING:
    from streamtasks.app import App

__all__ = ["serve"]


def serve(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    read_only: bool = False,
    cache_dir: Path | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Run the dashboard until interrupted (Ctrl-C or SIGTERM)."""
    token = token or os.environ.get(TOKEN_ENV) or None
    check_bind(host, token)
    guard = Guard.make(token, read_only=read_only)
    tails = Tails(app, Aggregates(), cache_dir=cache_dir)
    tails.start()
    shown = f"[{host}]" if ":" in host else host
    say(f"streamtasks dashboard for {app.name} at http://{shown}:{port}/")
    if guard.generated and not read_only:
        say(f"token for actions (redrive), made for this run: {guard.token}")
    try:
        uvicorn.run(create_app(tails, guard), host=host, port=port, log_level="warning")
    finally:
        tails.stop()
