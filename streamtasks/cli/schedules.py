"""``streamtasks scheduler`` and ``streamtasks schedules``: run an app's periodic tasks, list
them (thin layers over :mod:`streamtasks.scheduler` and :mod:`streamtasks.schedules`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from streamtasks.cli.common import AppArg, fail, require_broker, timestamp
from streamtasks.errors import StreamtasksError

__all__ = ["scheduler", "schedules"]


def scheduler(app: AppArg) -> None:
    """Publish APP's periodic tasks. Run 2+ replicas: one leads, the others stand by.

    Each schedule fires once per fire time across replicas and restarts; SIGTERM stops it
    (another replica takes over at once).

    Example: streamtasks scheduler myproj.tasks:app
    """
    from streamtasks._loading import load_app
    from streamtasks.scheduler import Scheduler

    try:
        Scheduler(load_app(app)).run()
    except StreamtasksError as exc:
        fail(exc)


def schedules(
    app: AppArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List APP's schedules with their next fire times and last recorded fire.

    Example: streamtasks schedules myproj.tasks:app --json
    """
    from datetime import UTC, datetime

    from streamtasks._loading import load_app
    from streamtasks.schedules import next_fire

    try:
        the_app = load_app(app)
        state: dict[str, Any] = {}
        if the_app.settings.bootstrap_servers:
            from streamtasks.scheduler import read_state

            require_broker(the_app)
            state = read_state(the_app)
    except StreamtasksError as exc:
        fail(exc)
    now = datetime.now(UTC)
    rows = []
    for s in sorted(the_app.schedules.values(), key=lambda s: s.name):
        last = state.get(s.name)
        rows.append(
            {
                "name": s.name,
                "task": s.task_name,
                "when": f"cron {s.cron} ({s.tz})" if s.cron else f"every {s.every}",
                "misfire": s.misfire,
                "next_fire": next_fire(s, now).isoformat(),
                "last_fire": last[0].isoformat() if last else None,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    # distances from the same instant the next fire times were computed at: a fire due within
    # the second is "(in 0s)", never "(0s ago)" because the table was drawn a moment later
    now_epoch_ms = int(now.timestamp() * 1000)

    def shown(iso: str | None) -> str:
        if iso is None:
            return "-"
        return timestamp(int(datetime.fromisoformat(iso).timestamp() * 1000), now_epoch_ms)

    table = Table(title=f"schedules of {the_app.name}", box=None, padding=(0, 1, 0, 0))
    for col in ("name", "task", "when", "misfire", "next fire", "last fire"):
        table.add_column(col, overflow="fold", min_width=20 if col.endswith(" fire") else None)
    for r in rows:
        table.add_row(
            r["name"],
            r["task"],
            r["when"],
            r["misfire"],
            shown(r["next_fire"]),
            shown(r["last_fire"]),
        )
    Console().print(table)
