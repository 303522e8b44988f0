"""``streamtasks dlq ...``: inspect, redrive and purge dead letters (thin layer over
:mod:`streamtasks.ops.dlq`)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from streamtasks.cli.common import AppArg, fail, jsonable, require_broker
from streamtasks.errors import ConfigError, StreamtasksError
from streamtasks.wire import headers as hdr

__all__ = ["dlq_cli"]

dlq_cli = typer.Typer(
    help="Inspect, redrive and purge dead letters (a queue's .dlq topic).", no_args_is_help=True
)

QueueOpt = Annotated[str, typer.Option("--queue", "-q", help="The queue whose DLQ to use.")]
TaskOpt = Annotated[str | None, typer.Option("--task", help="Only dead letters of this task.")]
ErrorMatchOpt = Annotated[
    str | None,
    typer.Option("--error-match", help="Only errors matching this regex ('Type: message')."),
]
ReasonOpt = Annotated[
    str | None,
    typer.Option("--reason", help="Only this st-dlq-reason (e.g. max-attempts, undecodable)."),
]


@dlq_cli.command("list")
def dlq_list(
    app: AppArg,
    queue: QueueOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also show dead letters already redriven or purged.")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Show at most N (oldest first).")] = None,
) -> None:
    """List the dead letters of a queue: ref, task id, task, reason, error, attempts, age.

    Example: streamtasks dlq list myproj.tasks:app --queue emails --limit 20
    """
    from rich.console import Console
    from rich.table import Table

    from streamtasks._loading import load_app
    from streamtasks.ops.dlq import DeadLetterQueue, format_age, truncate
    from streamtasks.wire.envelope import now_ms

    try:
        the_app = load_app(app)
        require_broker(the_app)
        dlq = DeadLetterQueue(the_app, queue)
        letters = dlq.read(include_done=show_all)
    except StreamtasksError as exc:
        fail(exc)
    shown = letters if limit is None else letters[:limit]
    if as_json:
        typer.echo(json.dumps([d.to_json() for d in shown], indent=2))
        return
    now = now_ms()
    table = Table(
        title=f"{dlq.topic}: {len(letters)} {'letters' if show_all else 'dead'}",
        box=None,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    rows = [
        [
            d.ref,
            d.task_id or "-",
            d.task or "-",
            d.reason,
            truncate(d.error, 60),
            "-" if d.attempts is None else str(d.attempts),
            format_age(d.failed_at_ms, now),
            *([d.state] if show_all else []),
        ]
        for d in shown
    ]
    columns = ["ref", "task id", "task", "reason", "error", "tries", "age"]
    columns += ["state"] if show_all else []
    # At 80 columns the key columns (ref, id, tries, age) keep their width; the others wrap.
    for i, column in enumerate(columns):
        key = column in ("ref", "task id", "tries", "age", "state")
        widest = max([len(column), *(len(r[i]) for r in rows)])
        table.add_column(
            column,
            no_wrap=key,
            overflow="fold",
            min_width=widest if key else (12 if column == "error" else None),
        )
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    if len(shown) < len(letters):
        console.print(f"showing {len(shown)} of {len(letters)}; raise --limit to see more")


@dlq_cli.command("show")
def dlq_show(
    app: AppArg,
    ref: Annotated[str, typer.Argument(help="A ref 'partition:offset' or a task id.")],
    queue: QueueOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one dead letter: every header, the decoded arguments, the traceback.

    Example: streamtasks dlq show myproj.tasks:app 3:1042
    """
    from streamtasks._loading import load_app
    from streamtasks.ops.dlq import DeadLetterQueue

    try:
        the_app = load_app(app)
        require_broker(the_app)
        dlq = DeadLetterQueue(the_app, queue)
        letter = dlq.get(ref)
    except StreamtasksError as exc:
        fail(exc)
    out = letter.to_json()
    try:
        args, kwargs = dlq.arguments(letter)
        out["args"], out["kwargs"] = jsonable(list(args)), jsonable(kwargs)
        call = [*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())]
        shown_args = f"{letter.task}({', '.join(call)})"
    except StreamtasksError as exc:
        out["args_error"] = shown_args = str(exc)
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=repr))
        return
    for name in ("ref", "state", "task_id", "task", "reason", "attempts", "worker_id"):
        typer.echo(f"{name:14} {out[name]}")
    typer.echo(f"{'error':14} {letter.error}")
    typer.echo(f"{'origin':14} {letter.origin or '-'}")
    typer.echo(f"{'arguments':14} {shown_args}")
    typer.echo("headers:")
    for key, value in letter.headers.items():
        if key != hdr.TRACEBACK:
            typer.echo(f"  {key}: {value}")
    typer.echo("traceback:" if letter.traceback else "traceback: (none recorded)")
    if letter.traceback:
        typer.echo(letter.traceback.rstrip())


@dlq_cli.command("redrive")
def dlq_redrive(
    app: AppArg,
    queue: QueueOpt = "default",
    task: TaskOpt = None,
    error_match: ErrorMatchOpt = None,
    reason: ReasonOpt = None,
    limit: Annotated[int | None, typer.Option(help="Redrive at most N (oldest first).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would happen.")] = False,
) -> None:
    """Enqueue dead tasks again (same task id, attempt 1); each is redriven at most once.

    Example: streamtasks dlq redrive myproj.tasks:app --task billing.charge --error-match Timeout
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from streamtasks._loading import load_app
    from streamtasks.ops.dlq import DeadLetterQueue

    try:
        the_app = load_app(app)
        require_broker(the_app)
        dlq = DeadLetterQueue(the_app, queue)
        with Progress(
            TextColumn("redriving"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            job = bar.add_task("redrive", total=None)
            report = dlq.redrive(
                task=task,
                error_match=error_match,
                reason=reason,
                limit=limit,
                dry_run=dry_run,
                progress=lambda done, total: bar.update(job, completed=done, total=total),
            )
    except StreamtasksError as exc:
        fail(exc)
    for o in report.outcomes:
        if o.kind != "already-done":
            typer.echo(f"  {o.kind:13} {o.ref:>8} {o.task_id or '-'} {o.detail}".rstrip())
    typer.echo(report.summary())
    if report.failed:
        raise typer.Exit(1)


@dlq_cli.command("purge")
def dlq_purge(
    app: AppArg,
    queue: QueueOpt = "default",
    task: TaskOpt = None,
    error_match: ErrorMatchOpt = None,
    reason: ReasonOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Hide dead letters from list and redrive (records stay in Kafka; `list --all` shows them).

    Example: streamtasks dlq purge myproj.tasks:app --reason undecodable --yes
    """

    from streamtasks._loading import load_app
    from streamtasks.ops.dlq import DeadLetterQueue

    try:
        the_app = load_app(app)
        require_broker(the_app)
        dlq = DeadLetterQueue(the_app, queue)
        letters = dlq.select(task=task, error_match=error_match, reason=reason)
        if not letters:
            typer.echo("nothing to purge")
            return
        if not yes:
            if not sys.stdin.isatty():
                raise ConfigError(
                    f"purging {len(letters)} dead letters needs confirmation: run it in a "
                    "terminal or pass --yes"
                )
            typer.confirm(f"Purge {len(letters)} dead letters from {dlq.topic}?", abort=True)
        purged = dlq.purge_letters(letters)
    except StreamtasksError as exc:
        fail(exc)
    typer.echo(f"purged {purged} dead letters from {dlq.topic}")
