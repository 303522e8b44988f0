"""``streamtasks events``: print the lifecycle events and heartbeats on ``{ns}.events`` (thin
layer over :mod:`streamtasks.ops.events`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from streamtasks.cli.common import AppArg, fail, require_broker
from streamtasks.errors import StreamtasksError

__all__ = ["events_command"]


def events_command(
    app: AppArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    task: Annotated[
        list[str] | None, typer.Option("--task", help="Only this task (repeat for more).")
    ] = None,
    type_: Annotated[
        list[str] | None,
        typer.Option(
            "--type", help="Only these types, e.g. FAILED,DEAD or HEARTBEAT (repeat or comma)."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--from", help="Start: ISO-8601 or -10m (default: the beginning; now with --follow)."
        ),
    ] = None,
) -> None:
    """Print task lifecycle events and worker heartbeats, like `celery events --dump`.

    Task events are written by workers started with --events (or App(events=True)); every
    worker sends a heartbeat every few seconds and an offline one when it stops.

    Example: streamtasks events myproj.tasks:app --follow
    Example: streamtasks events myproj.tasks:app --type FAILED,DEAD --from -1h
    Example: streamtasks events myproj.tasks:app --json --task reports.build | jq .type
    """
    from streamtasks._loading import load_app
    from streamtasks.ops.events import EventFilter, describe, read_events
    from streamtasks.ops.replayspec import parse_time
    from streamtasks.wire.envelope import now_ms

    try:
        the_app = load_app(app)
        wanted = EventFilter.of(task or (), type_ or ())
        now = now_ms()
        start = parse_time(since, now) if since is not None else (now if follow else None)
        require_broker(the_app)
        for event in read_events(the_app, since_ms=start, follow=follow, kinds=wanted.kinds()):
            if wanted(event):
                line = json.dumps(event.as_dict()) if as_json else describe(event)
                typer.echo(line)
    except StreamtasksError as exc:
        fail(exc)
    except KeyboardInterrupt:
        return
